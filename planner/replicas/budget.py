"""Replica budgets: per-layer allocation (CRAFT-style knapsack) and the memory <-> KV-cache trade-off.

Per-layer allocation
    For candidate redundant counts r in {0, D/16, D/8, 3D/16, D/4, 3D/8, D/2, 3D/4, D, 3D/2, 2D, 3D, 4D}
    (integers, capped at
    what E experts x D GPUs can hold) every layer is planned with the step-aware packer and replayed
    on the planning window: ``gain[l, r]`` = replayed balancedness. A multiple-choice knapsack
    (exact DP, :func:`solvers.knapsack.multiple_choice_knapsack`) picks one r per layer maximising
    the summed balancedness with ``sum_l r_l <= budget``. Per-GPU memory stays even because the
    final packing spreads each layer's slots so that per-GPU totals over layers differ by <= 1.

Memory <-> KV trade-off
    Every redundant slot on a GPU costs ``bytes_per_expert`` in each MoE layer, i.e. KV-cache tokens
    (:func:`planner.perf.memory.kv_tokens_for_budget`). :func:`budget_sweep` plans each uniform
    budget and reports balancedness next to the KV tokens it leaves. ``--auto-budget`` maximises the
    **throughput proxy** ``b x kv_tokens``: decode throughput grows with the concurrent requests the
    KV cache holds (memory-bound regime), and the MoE layer time grows with the busiest GPU, i.e. as
    ``1 / b`` for a fixed total load. The proxy ignores the dense part of the step (which does not
    depend on b) and batch caps, so it favours replicas less than a full simulation would when MoE
    is a small share of the step; it is the CRAFT trade-off in one line, not a latency model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from planner.errors import Infeasible, InputError
from planner.inputs.loads import ExpertLoads
from planner.profiles import ModelArch, get_gpu, get_model
from planner.common.tables import format_table
from solvers.knapsack import multiple_choice_knapsack
from solvers.replay import replay_balancedness
from solvers.stepaware import plan_stepaware

__all__ = [
    "candidate_redundancies",
    "gain_table",
    "allocate_per_layer",
    "BudgetPoint",
    "budget_sweep",
    "choose_budget",
    "sweep_table",
    "plot_budget_sweep",
]

_GAIN_SAMPLE_STEPS = 50  # gain tables plan on at most 50 steps: <= 0.3 point held-out (feasibility study)


def candidate_redundancies(num_gpus: int, num_experts: int, *, max_redundant: int | None = None) -> list[int]:
    """Redundant-slot counts tried per layer.

    Finer below D, where most layers end up under a tight budget (on the synthetic DeepSeek-scale
    trace at D = 64 the finer grid gained 0.3 point held-out over powers of two at equal budget).

    >>> candidate_redundancies(16, 64)
    [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    """
    D = num_gpus
    raw = {0, D // 16, D // 8, 3 * D // 16, D // 4, 3 * D // 8, D // 2, 3 * D // 4, D, 3 * D // 2, 2 * D, 3 * D, 4 * D}
    cap = num_experts * (D - 1)
    if max_redundant is not None:
        cap = min(cap, max_redundant)
    return sorted(r for r in raw if 0 <= r <= cap)


def gain_table(window: np.ndarray, candidates: list[int], num_gpus: int, *, num_nodes: int = 1,
               expert_nodes: np.ndarray | None = None, sample_steps: int | None = _GAIN_SAMPLE_STEPS) -> np.ndarray:
    """Replayed balancedness ``[L, K]`` of each layer planned with each candidate redundancy."""
    E = window.shape[2]
    out = np.empty((window.shape[1], len(candidates)))
    for k, r in enumerate(candidates):
        p2l, sg, _ = plan_stepaware(window, E + r, num_gpus, num_nodes=num_nodes, expert_nodes=expert_nodes,
                                    sample_steps=sample_steps)
        out[:, k] = replay_balancedness(window, p2l, sg, num_gpus).mean(axis=0)
    return out


def allocate_per_layer(window: np.ndarray, total_redundant: int, num_gpus: int, *, num_nodes: int = 1,
                       expert_nodes: np.ndarray | None = None, sample_steps: int | None = 200) -> np.ndarray:
    """Redundant slots per layer ``[L]`` (sum <= ``total_redundant``) maximising summed replayed b."""
    if total_redundant < 0:
        raise InputError(f"redundant: total budget must be >= 0, got {total_redundant}")
    E = window.shape[2]
    cands = candidate_redundancies(num_gpus, E, max_redundant=total_redundant)
    sample = _GAIN_SAMPLE_STEPS if sample_steps is None else min(sample_steps, _GAIN_SAMPLE_STEPS)
    values = gain_table(window, cands, num_gpus, num_nodes=num_nodes, expert_nodes=expert_nodes, sample_steps=sample)
    costs = np.broadcast_to(np.asarray(cands, dtype=np.int64), values.shape)
    choice, report = multiple_choice_knapsack(values, costs, int(total_redundant))
    if choice is None:  # cannot happen: r = 0 costs nothing
        raise Infeasible(report.message)
    return np.asarray(cands, dtype=np.int64)[choice]


@dataclass(frozen=True)
class BudgetPoint:
    redundant_slots: int  # per layer (uniform)
    slots_per_gpu: int  # per MoE layer
    replica_bytes_per_gpu: int  # redundant copies over all MoE layers
    kv_tokens: int  # per GPU, what the memory model leaves for KV cache
    balancedness_in: float  # replayed, planning window
    balancedness_holdout: float | None  # replayed, held-out steps
    proxy: float  # b x kv_tokens (b held-out when available)

    def to_dict(self) -> dict:
        return asdict(self)


def budget_sweep(
    loads: ExpertLoads,
    model: ModelArch | str,
    gpu: str,
    *,
    num_gpus: int,
    num_nodes: int = 1,
    layout: str | None = None,
    candidates: list[int] | None = None,
    window_steps: int | None = None,
    holdout_steps: int = 0,
    algorithm: str = "stepaware",
    sample_steps: int | None = 200,
) -> list[BudgetPoint]:
    """Plan each uniform redundant-slot budget; report balancedness and the KV tokens it leaves.

    ``layout`` is the parallel layout of the instance for the memory model (default
    ``tp1pp1dp{D}ep{D}``: DP attention with wide EP, the layout EP deployments use).
    """
    from planner.perf.layout import ParallelLayout
    from planner.perf.memory import kv_tokens_for_budget
    from planner.replicas import align_loads, plan_replicas, steps_for

    arch = model if isinstance(model, ModelArch) else get_model(model)
    spec = get_gpu(gpu)
    E, D = arch.num_routed_experts, num_gpus
    lay = ParallelLayout.parse(layout) if layout else ParallelLayout(tp=1, pp=1, dp=D, ep=D)
    if lay.ep != D:
        raise InputError(f"layout: {lay.label} has ep={lay.ep} but --gpus is {D}")
    if candidates is None:
        base = (-E) % D  # smallest redundancy that makes slots divisible by GPUs
        candidates = sorted({base + k * D for k in range(0, 5)})
    bad = [r for r in candidates if (E + r) % D]
    if bad:
        raise InputError(f"candidates: {bad} redundant slots do not make slots divisible by {D} GPUs")
    slots = [(E + r) // D for r in candidates]
    kv = kv_tokens_for_budget(arch, spec, lay, slots)
    if not kv.any():
        raise Infeasible(f"GPU {spec.id}: {arch.id} does not fit at {lay.label} even without redundant experts")
    align_loads(loads, arch)
    _, hold = steps_for(loads.num_steps, window_steps, holdout_steps)
    points = []
    for r, s, tokens in zip(candidates, slots, kv.tolist()):
        if tokens <= 0:
            continue
        plan = plan_replicas(loads, arch, num_gpus=D, num_nodes=num_nodes, redundant_slots=r, algorithm=algorithm,
                             window_steps=window_steps, holdout_steps=holdout_steps, sample_steps=sample_steps)
        m = plan.replicas.predicted
        b_used = m.holdout_replay_balancedness_mean if hold else m.replay_balancedness_mean
        points.append(BudgetPoint(
            redundant_slots=r,
            slots_per_gpu=s,
            replica_bytes_per_gpu=(r // D) * len(arch.moe_layers) * arch.bytes_per_expert,
            kv_tokens=int(tokens),
            balancedness_in=m.replay_balancedness_mean,
            balancedness_holdout=m.holdout_replay_balancedness_mean,
            proxy=float(b_used * tokens),
        ))
    return points


def choose_budget(points: list[BudgetPoint]) -> BudgetPoint:
    """The budget with the highest throughput proxy (ties: fewer replicas)."""
    if not points:
        raise Infeasible("no budget fits in GPU memory")
    return max(points, key=lambda p: (p.proxy, -p.redundant_slots))


def sweep_table(points: list[BudgetPoint], chosen: BudgetPoint | None = None) -> str:
    rows = [
        [p.redundant_slots, p.slots_per_gpu, f"{p.replica_bytes_per_gpu / 1e9:.2f}", p.kv_tokens,
         f"{p.balancedness_in:.4f}", "-" if p.balancedness_holdout is None else f"{p.balancedness_holdout:.4f}",
         f"{p.proxy:.4g}" + (" *" if p is chosen else "")]
        for p in points
    ]
    return format_table(["redundant", "slots/gpu", "replica_GB/gpu", "kv_tokens/gpu", "b_in", "b_holdout", "b*kv_tokens"], rows)


def plot_budget_sweep(points: list[BudgetPoint], path, *, title: str = "") -> None:
    """Balancedness and KV tokens against the replica budget, as a PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("plot: needs matplotlib (pip install 'moeplan[plot]')") from None
    from planner.common.fileio import atomic_write_bytes

    r = [p.redundant_slots for p in points]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.plot(r, [p.balancedness_in for p in points], "o-", label="b in-window")
    if points and points[0].balancedness_holdout is not None:
        ax.plot(r, [p.balancedness_holdout for p in points], "s--", label="b held-out")
    ax.set_xlabel("redundant slots per layer")
    ax.set_ylabel("replayed balancedness")
    ax2 = ax.twinx()
    ax2.plot(r, [p.kv_tokens / 1e3 for p in points], "^:", color="tab:red", label="KV tokens/GPU (k)")
    ax2.set_ylabel("KV-cache tokens per GPU (thousands)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower center", fontsize=8)
    ax.set_title(title or "replica budget: balance vs KV cache", fontsize=10)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
