"""When to re-plan: simulate re-planning policies on a load trace with drift and recommend one.

A policy re-plans the replica layout either every ``every_steps`` steps, or when the balancedness
replayed over the last ``check_steps`` steps falls below ``threshold_b``. Each new plan is made from the
most recent ``window_steps`` steps (what an engine's load recorder holds), then used unchanged until
the next re-plan. Every step after the warm-up is scored with the plan in force (replayed
balancedness, mean over layers). A re-plan moves weights: on every GPU, each expert copy the new
layout holds and the old one did not must be copied in, so the cost is
``copies moved x bytes per expert`` (slot order within a GPU is free: the engine re-indexes). GPUs of
equal capacity are interchangeable, so each new plan is first relabelled to keep the most copies where
they are (a linear assignment per layer).

Recommendation rule (stated, not learned): among the simulated policies, take the ones whose mean
balancedness is within ``tolerance_b`` of the best, and recommend the one that moves the fewest
bytes. Re-planning more often than that buys less than ``tolerance_b`` of balance for more traffic.

In wall time (``gpu`` given to :func:`simulate_replanning`, a step rate to :func:`wall_time_rows`):

- **fabric seconds** of one re-plan: every GPU receives the copies it lacks, each from a GPU of its own
  node when one holds that expert (``intra_node_bytes_per_s`` of the GPU profile) and across nodes
  otherwise (``inter_node_bytes_per_s``); a GPU's copies go one after the other, GPUs in parallel, so
  the re-plan takes ``max_g (intra_g / intra_bw + inter_g / inter_bw) x bytes per expert``. Link
  bandwidths are the profile's, not measured; protocol overheads are ignored (a lower bound).
- **time saved**: the MoE layers' time is set by the busiest GPU, ``1 / b`` of a perfect balance, so a
  policy at mean ``b`` against the static plan (planned once, never again) at ``b0`` saves at most
  ``steps x (1 - b0 / b)`` steps' worth of MoE time — an upper bound: the whole step is not MoE.
- at ``step_rate`` steps/s the trace lasts ``steps / step_rate`` s; saved steps and fabric seconds are
  converted both ways. The wall-time rule recommends the policy with the largest net = saved - fabric
  seconds (moves that stall serving: the conservative case; with staging slots they overlap).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planner.errors import InputError
from planner.inputs.loads import ExpertLoads
from planner.profiles import GpuSpec, ModelArch, get_gpu, get_model
from planner.replicas.request import align_loads, default_redundant_slots
from planner.common.tables import format_table
from solvers.eplb import eplb
from solvers.migration import copies_to_move, relabel_gpus
from solvers.replay import replay_balancedness
from solvers.stepaware import plan_stepaware

__all__ = ["ReplanPolicy", "ReplanResult", "simulate_replanning", "recommend_policy", "replan_table", "static_policy",
           "received_copies", "WallTimeRow", "wall_time_rows", "recommend_wall_time", "wall_time_table"]


#: a policy that plans once and never again (the baseline of the time saved): every_steps past any trace
STATIC_POLICY_STEPS = 10**12


@dataclass(frozen=True)
class ReplanPolicy:
    """Re-plan every ``every_steps`` steps, or when recent balancedness drops below ``threshold_b``."""

    every_steps: int | None = None
    threshold_b: float | None = None
    check_steps: int = 10
    window_steps: int = 100

    def __post_init__(self) -> None:
        if (self.every_steps is None) == (self.threshold_b is None):
            raise InputError("a re-planning policy takes exactly one of every_steps and threshold_b")
        if self.every_steps is not None and self.every_steps < 1:
            raise InputError(f"must be >= 1, got {self.every_steps}", param="every_steps")
        if self.threshold_b is not None and not 0 < self.threshold_b <= 1:
            raise InputError(f"must be in (0, 1], got {self.threshold_b}", param="threshold_b")
        for name in ("window_steps", "check_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"must be >= 1, got {getattr(self, name)}", param=name)

    @property
    def label(self) -> str:
        if self.every_steps == STATIC_POLICY_STEPS:
            return "static"
        if self.every_steps is not None:
            return f"every {self.every_steps}"
        return f"b < {self.threshold_b:g}"


@dataclass(frozen=True)
class ReplanResult:
    policy: ReplanPolicy
    balancedness_per_step: np.ndarray  # [steps scored], mean over layers
    replan_steps: tuple[int, ...]  # steps at which a new plan took effect (the first is the warm-up plan)
    slots_moved: int  # over all re-plans after the first
    bytes_moved: int
    plan_seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    fabric_seconds: tuple[float, ...] | None = None  # per re-plan after the first (module docstring); None: no GPU given

    @property
    def mean_b(self) -> float:
        return float(self.balancedness_per_step.mean())

    @property
    def num_replans(self) -> int:
        return len(self.replan_steps) - 1


def static_policy(window_steps: int = 100) -> ReplanPolicy:
    """The static baseline: plan once from the first window, never re-plan."""
    return ReplanPolicy(every_steps=STATIC_POLICY_STEPS, window_steps=window_steps)


def received_copies(old_p2l, old_sg, new_p2l, new_sg, num_gpus: int, num_experts: int,
                    gpus_per_node: int) -> tuple[np.ndarray, np.ndarray]:
    """Copies each GPU receives going from the old layout to the new one, summed over layers:
    ``(intra_node [D], inter_node [D])`` — intra when a GPU of its node holds the expert in the old layout.

    >>> intra, inter = received_copies([[0, 1, 2, 3]], [[0, 1, 2, 3]], [[1, 0, 2, 3]], [[0, 1, 2, 3]], 4, 4, 2)
    >>> intra.tolist(), inter.tolist()
    ([1, 1, 0, 0], [0, 0, 0, 0])
    """
    op, og, np_, ng = (np.atleast_2d(np.asarray(a, dtype=np.int64)) for a in (old_p2l, old_sg, new_p2l, new_sg))
    node = np.arange(num_gpus) // gpus_per_node
    intra, inter = np.zeros(num_gpus, dtype=np.int64), np.zeros(num_gpus, dtype=np.int64)
    for r in range(op.shape[0]):
        old_t, new_t = np.zeros((num_gpus, num_experts), np.int64), np.zeros((num_gpus, num_experts), np.int64)
        np.add.at(old_t, (og[r], op[r]), 1)
        np.add.at(new_t, (ng[r], np_[r]), 1)
        need = np.maximum(new_t - old_t, 0)
        held_on_node = np.zeros((node.max() + 1, num_experts), np.int64)
        np.add.at(held_on_node, node, old_t)
        local = held_on_node[node] > 0
        intra += (need * local).sum(axis=1)
        inter += (need * ~local).sum(axis=1)
    return intra, inter


def _fabric_seconds(intra: np.ndarray, inter: np.ndarray, bytes_per_expert: int, gpu: GpuSpec) -> float:
    return float(np.max(intra * bytes_per_expert / gpu.intra_node_bytes_per_s
                        + inter * bytes_per_expert / gpu.inter_node_bytes_per_s, initial=0.0))


def _planner(algorithm: str, num_slots: int, num_gpus: int, num_nodes: int, groups: int, sample_steps: int | None):
    def plan(weight_tle: np.ndarray):
        if algorithm == "eplb":
            layout, _ = eplb(weight_tle.sum(axis=0), num_slots, num_gpus, num_groups=groups, num_nodes=num_nodes)
            p2l = layout.phy2log
            return p2l, np.broadcast_to(np.arange(num_slots) // (num_slots // num_gpus), p2l.shape).copy()
        p2l, sg, _ = plan_stepaware(weight_tle, num_slots, num_gpus, num_nodes=num_nodes, sample_steps=sample_steps)
        return p2l, sg

    return plan


def simulate_replanning(
    loads: ExpertLoads,
    model: ModelArch | str,
    policies: list[ReplanPolicy],
    *,
    num_gpus: int,
    num_nodes: int = 1,
    redundant_slots: int | None = None,
    algorithm: str = "stepaware",
    sample_steps: int | None = 50,
    relabel: bool = True,
    gpu: GpuSpec | str | None = None,
    progress=None,
) -> list[ReplanResult]:
    """Replay ``loads`` step by step under each policy; see the module docstring.

    The first plan is made from the ``window_steps`` steps before the first scored step, so every
    policy is scored on the same steps: ``max(window_steps)`` .. end. With ``relabel`` (default) each
    new plan's GPUs are permuted to keep the most copies in place (:func:`solvers.migration.relabel_gpus`),
    which changes no load, only the traffic. With ``gpu`` (a profile) every re-plan's fabric seconds are
    recorded (``ReplanResult.fabric_seconds``, module docstring).
    """
    import time

    arch = model if isinstance(model, ModelArch) else get_model(model)
    spec = gpu if isinstance(gpu, GpuSpec) or gpu is None else get_gpu(gpu)
    aligned = align_loads(loads, arch)
    E = arch.num_routed_experts
    R = default_redundant_slots(E, num_gpus) if redundant_slots is None else redundant_slots
    P = E + R
    if P % num_gpus:
        raise InputError(f"{P} slots do not divide over {num_gpus} GPUs", param="redundant_slots")
    if not policies:
        raise InputError("give at least one re-planning policy", param="policies")
    start = max(p.window_steps for p in policies)
    T = aligned.num_steps
    if T - start < 2:
        raise InputError(f"{T} steps leave nothing to score after a {start}-step planning window", param="loads")
    counts = aligned.counts
    gpn = num_gpus // num_nodes if num_nodes > 1 else None
    plan = _planner(algorithm, P, num_gpus, num_nodes, arch.num_expert_groups or 1 if num_nodes > 1 else 1, sample_steps)
    results = []
    for i, pol in enumerate(policies):
        t0 = time.perf_counter()
        p2l, sg = plan(counts[start - pol.window_steps:start])
        replans, moved, b_steps, fabric = [start], 0, [], []
        last = start
        for t in range(start, T):
            due = (pol.every_steps is not None and t - last >= pol.every_steps) or (
                pol.threshold_b is not None
                and t - last >= pol.check_steps
                and np.mean(b_steps[-pol.check_steps:]) < pol.threshold_b
            )
            if due:
                new_p2l, new_sg = plan(counts[max(0, t - pol.window_steps):t])
                if relabel:
                    new_p2l, new_sg = relabel_gpus(p2l, sg, new_p2l, new_sg, num_gpus, E, gpus_per_node=gpn)
                moved += int(copies_to_move(p2l, sg, new_p2l, new_sg, num_gpus, E).sum())
                if spec is not None:
                    got = received_copies(p2l, sg, new_p2l, new_sg, num_gpus, E, num_gpus // num_nodes)
                    fabric.append(_fabric_seconds(*got, arch.bytes_per_expert, spec))
                p2l, sg, last = new_p2l, new_sg, t
                replans.append(t)
            b_steps.append(float(replay_balancedness(counts[t:t + 1], p2l, sg, num_gpus)[0].mean()))
        results.append(
            ReplanResult(pol, np.asarray(b_steps), tuple(replans), moved, moved * arch.bytes_per_expert,
                         plan_seconds=time.perf_counter() - t0,
                         fabric_seconds=tuple(fabric) if spec is not None else None)
        )
        if progress is not None:
            progress(i + 1, len(policies), pol.label)
    return results


def recommend_policy(results: list[ReplanResult], *, tolerance_b: float = 0.005) -> ReplanResult:
    """The policy moving the fewest bytes among those within ``tolerance_b`` of the best mean b."""
    if not results:
        raise InputError("nothing to recommend from", param="results")
    best = max(r.mean_b for r in results)
    good = [r for r in results if r.mean_b >= best - tolerance_b]
    return min(good, key=lambda r: (r.bytes_moved, -r.mean_b))


def replan_table(results: list[ReplanResult], recommended: ReplanResult | None = None) -> str:
    """Policy, re-plans, mean / worst-step b, weights moved (GB)."""
    rows = []
    for r in results:
        rows.append([
            r.policy.label + (" *" if r is recommended else ""),
            r.policy.window_steps,
            r.num_replans,
            f"{r.mean_b:.4f}",
            f"{r.balancedness_per_step.min():.4f}",
            f"{r.bytes_moved / 1e9:.2f}",
            f"{r.plan_seconds:.1f}",
        ])
    return format_table(["policy", "window_steps", "replans", "mean_b", "worst_step_b", "moved_GB", "wall_s"], rows)


@dataclass(frozen=True)
class WallTimeRow:
    """One policy in wall time at a step rate (module docstring): what it moves and what it saves."""

    policy: str
    replans: int
    moved_gb: float
    fabric_s: float  # over all re-plans
    fabric_s_max: float  # the longest single re-plan
    fabric_steps: float  # fabric_s x step rate
    mean_b: float
    saved_steps: float  # upper bound, against the static plan
    saved_s: float
    net_s: float  # saved_s - fabric_s
    interval_s: float | None  # periodic policies: every_steps / step rate

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def wall_time_rows(results: list[ReplanResult], static: ReplanResult, step_rate_per_s: float) -> list[WallTimeRow]:
    """Each policy's weights moved and balance gained, in seconds and steps at ``step_rate_per_s`` steps/s.

    ``static`` is the baseline (:func:`static_policy` simulated on the same trace); the results need
    fabric seconds (``simulate_replanning(..., gpu=...)``).
    """
    if not step_rate_per_s > 0:
        raise InputError(f"must be > 0, got {step_rate_per_s}", param="step_rate_per_s")
    rows = []
    for r in results:
        if r.fabric_seconds is None:
            raise InputError("fabric seconds need the GPU profile: simulate_replanning(..., gpu=...)", param="gpu")
        n = r.balancedness_per_step.size
        saved = n * max(0.0, 1.0 - static.mean_b / r.mean_b) if r.mean_b > 0 else 0.0
        fabric = float(sum(r.fabric_seconds))
        rows.append(WallTimeRow(
            policy=r.policy.label, replans=r.num_replans, moved_gb=r.bytes_moved / 1e9, fabric_s=fabric,
            fabric_s_max=max(r.fabric_seconds, default=0.0), fabric_steps=fabric * step_rate_per_s, mean_b=r.mean_b,
            saved_steps=saved, saved_s=saved / step_rate_per_s, net_s=saved / step_rate_per_s - fabric,
            interval_s=None if r.policy.every_steps in (None, STATIC_POLICY_STEPS) else r.policy.every_steps / step_rate_per_s))
    return rows


def recommend_wall_time(rows: list[WallTimeRow]) -> WallTimeRow:
    """The policy with the largest net seconds saved (ties: fewer GB moved); include the static row to
    allow "never re-plan" as the answer."""
    if not rows:
        raise InputError("nothing to recommend from", param="results")
    return max(rows, key=lambda w: (w.net_s, -w.moved_gb))


def wall_time_table(rows: list[WallTimeRow], recommended: WallTimeRow | None = None) -> str:
    """Policy, GB moved, fabric seconds (total, longest re-plan, in steps), MoE time saved and the net."""
    out = [[w.policy + (" *" if w is recommended else ""), w.replans, f"{w.moved_gb:.2f}", f"{w.fabric_s:.3f}",
            f"{w.fabric_s_max:.4f}", f"{w.fabric_steps:.1f}", f"{w.mean_b:.4f}", f"{w.saved_steps:.1f}",
            f"{w.saved_s:.3f}", f"{w.net_s:+.3f}"] for w in rows]
    return format_table(["policy", "replans", "moved_GB", "fabric_s", "longest_replan_s", "fabric_steps", "mean_b",
                         "saved_steps<=", "saved_s<=", "net_s"], out)
