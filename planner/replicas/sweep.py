"""The memory <-> KV-cache trade-off of a uniform replica budget, and the auto-budget that picks one.

Every redundant slot on a GPU costs ``bytes_per_expert`` in each MoE layer, i.e. KV-cache tokens
(:func:`planner.perf.memory.kv_tokens_for_budget`). :func:`budget_sweep` plans each uniform budget and
reports balancedness next to the KV tokens it leaves. :func:`choose_budget` (``plan_replicas(...,
budget="auto")``) maximises the **throughput proxy** ``b x kv_tokens``: decode throughput grows with
the concurrent requests the KV cache holds (memory-bound regime), and the MoE layer time grows with
the busiest GPU, i.e. as ``1 / b`` for a fixed total load. The proxy ignores the dense part of the step
(which does not depend on b) and batch caps, so it favours replicas less than a full simulation would
when MoE is a small share of the step; it is the CRAFT trade-off in one line, not a latency model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dataclasses import replace

from planner.common.tables import format_table
from planner.errors import Infeasible, InputError
from planner.inputs.loads import ExpertLoads
from planner.perf.layout import ParallelLayout
from planner.perf.memory import kv_tokens_for_budget
from planner.profiles import GpuSpec, ModelArch, get_gpu
from planner.replicas.place import plan_request
from planner.replicas.request import ReplicaRequest, resolve_request

__all__ = ["BudgetPoint", "budget_sweep", "budget_points", "choose_budget", "sweep_table", "default_candidates"]


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


def default_candidates(num_experts: int, num_gpus: int) -> list[int]:
    """The smallest redundancy that makes slots divide over GPUs, and four more steps of one slot per GPU.

    >>> default_candidates(256, 32)
    [0, 32, 64, 96, 128]
    >>> default_candidates(60, 8)
    [4, 12, 20, 28, 36]
    """
    base = (-num_experts) % num_gpus
    return sorted({base + k * num_gpus for k in range(0, 5)})


def budget_points(req: ReplicaRequest, *, layout: ParallelLayout | str | None = None,
                  candidates: list[int] | None = None) -> list[BudgetPoint]:
    """Plan ``req`` at each uniform redundant-slot budget; balancedness and the KV tokens each leaves.

    ``req.gpu`` must be set (the memory model prices a replica in KV tokens). ``layout`` is the parallel
    layout of the instance for the memory model (default ``tp1pp1dp{D}ep{D}``: DP attention with wide EP,
    the layout EP deployments use). Budgets whose weights do not fit are left out.
    """
    arch, spec, D = req.arch, req.gpu, req.num_gpus
    if spec is None:
        raise InputError("the auto-budget needs a GPU profile (the memory model prices replicas in KV tokens)",
                         param="gpu")
    E = arch.num_routed_experts
    lay = layout if isinstance(layout, ParallelLayout) else (
        ParallelLayout.parse(layout) if layout else ParallelLayout(tp=1, pp=1, dp=D, ep=D))
    if lay.ep != D:
        raise InputError(f"{lay.label} has ep={lay.ep} but num_gpus is {D}", param="layout")
    candidates = default_candidates(E, D) if candidates is None else list(candidates)
    bad = [r for r in candidates if (E + r) % D]
    if bad:
        raise InputError(f"{bad} redundant slots do not make slots divisible by {D} GPUs", param="candidates")
    slots = [(E + r) // D for r in candidates]
    kv = kv_tokens_for_budget(arch, spec, lay, slots)
    if not kv.any():
        raise Infeasible(f"GPU {spec.id}: {arch.id} does not fit at {lay.label} even without redundant experts")
    points = []
    for r, s, tokens in zip(candidates, slots, kv.tolist()):
        if tokens <= 0:
            continue
        m = plan_request(req.with_redundant(r)).replicas.predicted
        b_used = m.holdout_replay_balancedness_mean if req.holdout_steps else m.replay_balancedness_mean
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


def budget_sweep(
    loads: ExpertLoads,
    model: ModelArch | str,
    gpu: GpuSpec | str,
    *,
    num_gpus: int,
    num_nodes: int = 1,
    layout: ParallelLayout | str | None = None,
    candidates: list[int] | None = None,
    window_steps: int | None = None,
    holdout_steps: int = 0,
    algorithm: str = "stepaware",
    sample_steps: int | None = 200,
) -> list[BudgetPoint]:
    """Plan each uniform redundant-slot budget on ``gpu``; report balancedness and the KV tokens it leaves.

    The other planning options are :func:`~planner.replicas.plan_replicas`'s defaults; see
    :func:`budget_points` for ``layout`` and ``candidates``.
    """
    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    req = resolve_request(loads, model, num_gpus=num_gpus, num_nodes=num_nodes, algorithm=algorithm,
                          window_steps=window_steps, holdout_steps=holdout_steps, sample_steps=sample_steps)
    return budget_points(replace(req, gpu=spec), layout=layout, candidates=candidates)


def choose_budget(points: list[BudgetPoint]) -> BudgetPoint:
    """The budget with the highest throughput proxy (ties: fewer replicas)."""
    if not points:
        raise Infeasible("no budget fits in GPU memory")
    return max(points, key=lambda p: (p.proxy, -p.redundant_slots))


def sweep_table(points: list[BudgetPoint], chosen: BudgetPoint | None = None) -> str:
    """The sweep as a text table; ``*`` marks the chosen budget."""
    rows = [
        [p.redundant_slots, p.slots_per_gpu, f"{p.replica_bytes_per_gpu / 1e9:.2f}", p.kv_tokens,
         f"{p.balancedness_in:.4f}", "-" if p.balancedness_holdout is None else f"{p.balancedness_holdout:.4f}",
         f"{p.proxy:.4g}" + (" *" if p is chosen else "")]
        for p in points
    ]
    return format_table(["redundant", "slots/gpu", "replica_GB/gpu", "kv_tokens/gpu", "b_in", "b_holdout", "b*kv_tokens"], rows)
