"""Turn a solver's replica layout (padded arrays) into a Plan with its predicted metrics."""

from __future__ import annotations

import numpy as np

from planner import __version__
from planner.inputs.loads import ExpertLoads
from planner.common.numerics import round_float
from planner.plans.schema import (
    LoadsRef,
    Plan,
    PlanInputs,
    ReplicaMetrics,
    ReplicaPlan,
    ReportRecord,
    ToolInfo,
)
from planner.plans.verify import replica_lower_bound
from planner.profiles import ModelArch
from solvers.replay import replay_gpu_loads
from solvers.report import SolveReport

__all__ = ["build_replica_plan", "slot_fractions"]


def slot_fractions(phy2log: np.ndarray, num_experts: int) -> np.ndarray:
    """Even split: each used slot gets 1 / (replicas of its expert); padding (-1) gets 0. [L, Pmax]."""
    frac = np.zeros(phy2log.shape)
    for r in range(phy2log.shape[0]):
        used = phy2log[r] >= 0
        cnt = np.bincount(phy2log[r][used], minlength=num_experts)
        frac[r, used] = 1.0 / cnt[phy2log[r][used]]
    return frac


def _balancedness(loads: np.ndarray) -> np.ndarray:
    mx = loads.max(axis=-1)
    return np.where(mx > 0, loads.mean(axis=-1) / np.where(mx > 0, mx, 1.0), 1.0)


def _r(xs) -> list[float]:
    return [round_float(float(x)) for x in xs]


def build_replica_plan(
    loads: ExpertLoads,
    source_loads: ExpertLoads,
    arch: ModelArch,
    phy2log: np.ndarray,
    slot_gpu: np.ndarray,
    *,
    num_gpus: int,
    num_nodes: int,
    params: dict,
    report: SolveReport,
    duplicates_allowed: bool,
    mode: str = "uniform",
    split: np.ndarray | None = None,
    plan_steps: tuple[int, int] | None = None,
    holdout_steps: tuple[int, int] | None = None,
) -> Plan:
    """Assemble a Plan.

    ``loads`` are the planned layer rows (all steps); ``source_loads`` the loads as given, which the plan
    records by hash. ``phy2log`` / ``slot_gpu`` are ``[L, Pmax]`` with -1 padding, slots GPU-major.
    ``split`` holds per-slot dispatch fractions (None = even). Metrics are computed on
    ``plan_steps`` (default all steps) and replayed on ``holdout_steps`` when given.
    """
    E, D = arch.num_routed_experts, num_gpus
    gpn = D // num_nodes
    a, b = plan_steps if plan_steps is not None else (0, loads.num_steps)
    window = loads.counts[a:b]
    summed = window.sum(axis=0)
    frac = slot_fractions(phy2log, E) if split is None else np.asarray(split, dtype=np.float64)

    g_sum = replay_gpu_loads(summed[None], phy2log, slot_gpu, D, split=frac)[0]  # [L, D]
    g_steps = replay_gpu_loads(window, phy2log, slot_gpu, D, split=frac)  # [T, L, D]
    b_steps = _balancedness(g_steps)  # [T, L]
    hold_b = None
    if holdout_steps is not None:
        h = replay_gpu_loads(loads.counts[holdout_steps[0]:holdout_steps[1]], phy2log, slot_gpu, D, split=frac)
        hold_b = _balancedness(h).mean(axis=0)

    rows_p2l, rows_gpu, rows_node, rows_spg, rows_w = [], [], [], [], []
    bounds, step_bounds = [], []
    expert_bytes = np.zeros(D, dtype=np.int64)
    for r in range(loads.num_layers):
        used = phy2log[r] >= 0
        p2l, sg = phy2log[r][used].astype(np.int64), slot_gpu[r][used].astype(np.int64)
        P = p2l.size
        rows_p2l.append(p2l.tolist())
        rows_gpu.append(sg.tolist())
        rows_node.append((sg // gpn).tolist())
        spg = np.bincount(sg, minlength=D)
        rows_spg.append(spg.tolist())
        rows_w.append(_r(frac[r][used]))
        bounds.append(replica_lower_bound(summed[r], P, D))
        spread = max(1, min(D, P - E + 1))
        w = window[:, r, :]
        step_bounds.append(float(np.maximum(w.sum(axis=1) / D, w.max(axis=1) / spread).mean()))
        expert_bytes += spg * arch.bytes_per_expert

    replay_max = g_steps.max(axis=2).mean(axis=0)  # [L]
    objective = float(sum(_r(replay_max)))
    bound = float(sum(_r(step_bounds)))
    gap = max(0.0, (objective - bound) / objective) if objective > 0 else 0.0
    bal = _r(_balancedness(g_sum))
    replay = _r(b_steps.mean(axis=0))
    metrics = ReplicaMetrics(
        load_basis=f"sum over steps {a}-{b - 1}",
        plan_steps=(a, b),
        gpu_load_tokens=[_r(row) for row in g_sum],
        max_gpu_load_tokens=_r(g_sum.max(axis=1)),
        lower_bound_tokens=_r(bounds),
        balancedness=bal,
        balancedness_mean=round_float(float(np.mean(bal))),
        replay_balancedness=replay,
        replay_balancedness_mean=round_float(float(np.mean(replay))),
        replay_max_gpu_load_tokens=_r(replay_max),
        replay_lower_bound_tokens=_r(step_bounds),
        holdout_steps=holdout_steps,
        holdout_replay_balancedness=None if hold_b is None else _r(hold_b),
        holdout_replay_balancedness_mean=None if hold_b is None else round_float(float(np.mean(_r(hold_b)))),
        expert_bytes_per_gpu=expert_bytes.tolist(),
    )
    replica_plan = ReplicaPlan(
        layers=list(loads.layer_ids),
        num_hidden_layers=arch.num_hidden_layers,
        num_experts=E,
        num_gpus=D,
        num_nodes=num_nodes,
        gpus_per_node=gpn,
        bytes_per_expert=arch.bytes_per_expert,
        duplicates_allowed=duplicates_allowed,
        mode=mode,
        physical_to_logical=rows_p2l,
        slot_gpu=rows_gpu,
        slot_node=rows_node,
        slots_per_gpu=rows_spg,
        dispatch_weights=None if split is None else rows_w,
        predicted=metrics,
    )
    record = ReportRecord(
        status=report.status,
        stop_reason=report.stop_reason,
        objective=round_float(objective),
        bound=round_float(bound),
        gap=round_float(gap),
        solver=report.solver,
        solver_version=report.solver_version,
        message=report.message,
    )
    return Plan(
        tool=ToolInfo(version=__version__),
        inputs=PlanInputs(
            loads=LoadsRef(
                sha256=source_loads.sha256(),
                source=source_loads.source,
                shape=source_loads.shape,
                layer_ids=list(source_loads.layer_ids),
                model=source_loads.model,
            ),
            model=arch.id,
            parameters=params,
        ),
        replicas=replica_plan,
        report=record,
    ).attach(solve_report=report.with_(objective=objective, bound=bound, gap=gap))  # keeps the solve's wall time
