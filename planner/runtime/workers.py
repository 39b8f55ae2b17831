r"""Expert-parallel workers that serve a stack of MoE layers with the replicas a plan gives them.

Data: a :class:`~planner.plans.schema.Plan` (row ``l`` of ``physical_to_logical`` / ``slot_gpu``
serves ``model_layers[l]``), ``W = plan.replicas.num_gpus`` ranks, ``T`` tokens.

1. Placement. Rank ``g`` holds one weight copy per slot ``s`` with ``slot_gpu[l][s] == g``, copied
   from the source layer's expert ``physical_to_logical[l][s]``; two slots of one expert on one
   rank are two copies (as an engine's physical slots are), each serving its own rows.
2. Tokens. Rank ``r`` owns the contiguous block ``[o_r, o_{r+1})`` of tokens
   (``o_r = r * (T // W) + min(r, T % W)``), a data-parallel attention rank; it routes them with the
   layer's own router.
3. Dispatch. Each (token, top-k position) pair routed to expert ``e`` goes to one slot of ``e``
   (its replicas ``S_e``, slots in increasing id), by a rule whose per-slot counts follow from the
   routing alone (:func:`predicted_slot_tokens`). Occurrence order is global token index, then
   top-k position; ``n_e`` is expert ``e``'s global number of occurrences:

   - ``"even"``: the ``j``-th occurrence goes to ``S_e[j mod |S_e|]`` (round-robin). Slot ``i``
     receives ``n_e // |S_e| + [i < n_e mod |S_e|]`` rows.
   - ``"plan"``: the plan's ``dispatch_weights`` (even when it has none). Slot quotas are the
     largest-remainder split of ``n_e`` by the weights (ties to the lower slot id); occurrences fill
     the slots in order, so slot ``i`` takes occurrences ``[q_0 + .. + q_{i-1}, q_0 + .. + q_i)``.
   - ``"deterministic"``: static, SGLang-like, no counts needed: from rank ``r`` every pair of
     expert ``e`` goes to the lowest-id replica on rank ``r``; with none there, to replica
     ``r mod m`` of the ``m`` replicas in ``r``'s node; with none there, to ``S_e[r mod |S_e|]``.

   ``"even"`` and ``"plan"`` need ``n_e`` and the occurrences on lower ranks: one ``all_gather``
   of every rank's ``[E]`` counts per layer (a real engine would fuse it with the count exchange).
4. All-to-all. Each rank sorts its pairs by (destination rank, destination slot), exchanges the
   ``[W, slots per rank]`` row counts with ``all_to_all_single``, then the rows (uneven splits).
5. Compute and return. The receiver runs each of its slots' SwiGLU on that slot's rows and sends
   the results back with a second ``all_to_all_single`` (splits swapped); the sender adds
   ``w_tj f(x_t)`` into token ``t`` (``index_add_``) and the residual, then the next layer.

Measured: rows each rank (and slot) receives per layer -- its load -- and per-layer wall times
(a barrier, then route + dispatch + compute + combine; per rank; median of ``repeats`` forwards
after ``warmup``), and the time of the rank's expert kernels alone
(:class:`planner.runtime._rank.ComputeClock`).
:func:`predicted_rank_tokens` (:mod:`planner.runtime.dispatch`) computes the same counts from ``routing`` without
workers; the plan's ``predicted.gpu_load_tokens`` (an exact even split on the counts it was made
from) differs from ``"even"``'s integer rows by less than the number of the GPU's slots whose
expert has two or more replicas (each such slot's round-robin share is off by less than one row).

torch is imported inside the functions (house rule). The dispatch arithmetic is numpy; the
predictions evaluate the rules' closed forms, not the per-row assignment the workers run (both use
the same largest-remainder quotas and static table). Outputs equal :func:`planner.runtime.moe.reference_forward` up to
fp32 summation order (``docs/runtime.md``).

What each rank runs is in :mod:`planner.runtime._rank`. ``__all__`` is the public API;
:func:`serve_layout` (any :class:`~planner.runtime.dispatch.Layout`, e.g. a placement between
migration rounds) and :func:`gather_result` are shared with the live apply
(:mod:`planner.runtime.apply`) and the torchrun entry point: change them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from planner.errors import InputError
from planner.runtime.dist import BACKENDS, run_workers
from planner.runtime._rank import serve_worker, timing_worker
from planner.runtime.dispatch import (
    DISPATCHES,
    check_dispatch,
    Layout,
    layout_of,
    predicted_rank_tokens,
    predicted_slot_tokens,
    routing_counts,
    token_offsets,
)
from planner.runtime.moe import MoELayer, check_stack

if TYPE_CHECKING:  # pragma: no cover
    from planner.plans.schema import Plan

__all__ = [
    "DISPATCHES",
    "RunResult",
    "serve_layers",
    "serve_dispatches",
    "predicted_slot_tokens",
    "predicted_rank_tokens",
    "routing_counts",
    "counts_report",
    # the runtime's own seams (apply, torchrun)
    "serve_layout",
    "gather_result",
    "time_layouts",
]


@dataclass(frozen=True)
class RunResult:
    """What the workers computed and measured.

    ``outputs`` [T, H] float32 hidden states after the last layer, tokens in input order;
    ``rank_tokens`` [L, W] rows each rank received per layer (its measured load, rows = token x
    top-k pairs); ``slot_tokens`` [L] arrays [P_l] rows each slot computed; ``local_tokens``
    [L, W] rows a rank dispatched to itself (no network); ``step_ms`` [L, W] per-layer wall time
    per rank, median over ``repeats``; ``expert_ms`` [L, W] time of the rank's expert kernels alone,
    the minimum over ``repeats`` (CPU time on CPU, CUDA events on GPU: see
    :class:`planner.runtime._rank.ComputeClock`); ``tokens_per_rank``
    [W] tokens each rank owns.
    """

    outputs: np.ndarray
    rank_tokens: np.ndarray
    slot_tokens: tuple[np.ndarray, ...]
    local_tokens: np.ndarray
    step_ms: np.ndarray
    expert_ms: np.ndarray
    tokens_per_rank: np.ndarray
    dispatch: str
    backend: str
    repeats: int


# -- the workers ----------------------------------------------------------------------------------


def serve_layers(
    plan: Plan,
    model_layers: Sequence[MoELayer],
    tokens,
    *,
    world_size: int | None = None,
    dispatch: str = "even",
    backend: str = "gloo",
    warmup: int = 1,
    repeats: int = 3,
    timeout_s: float = 120.0,
    threads_per_worker: int = 1,
) -> RunResult:
    """Serve ``model_layers`` on ``world_size`` expert-parallel ranks laid out as ``plan`` says.

    Parameters
    ----------
    plan : replica plan; row ``l`` places ``model_layers[l]``'s experts.
    model_layers : the stack (:class:`~planner.runtime.moe.MoELayer`, applied with a residual).
    tokens : ``[T, H]`` fp32 hidden states, split evenly over the ranks in order.
    world_size : ranks; must equal ``plan.replicas.num_gpus`` (the default).
    dispatch : ``"even"``, ``"plan"`` or ``"deterministic"`` (module docstring, item 3).
    backend : ``"gloo"`` (CPU) or ``"nccl"`` (rank ``r`` on ``cuda:r``).
    warmup, repeats : untimed and timed forwards; outputs and counts are the last forward's.
    timeout_s : deadline of the whole run (start-up included) and of every collective.
    threads_per_worker : torch threads per rank.

    Returns
    -------
    RunResult

    Raises
    ------
    InputError
        Plan rows that do not match the layers, a world size other than the plan's GPUs, a
        slot on a GPU the plan does not have, an expert no slot holds, unknown dispatch, bad
        tokens.
    RuntimeAdapterError
        A rank failed -- e.g. it was given a slot naming an expert the layer lacks (each rank
        checks the slots it loads, as an engine would; the ranks then agree, so only the failing
        rank raises); the message names the rank.
    """
    return serve_dispatches(
        plan, model_layers, tokens, dispatches=(dispatch,), world_size=world_size, backend=backend, warmup=warmup,
        repeats=repeats, timeout_s=timeout_s, threads_per_worker=threads_per_worker,
    )[dispatch]


def serve_dispatches(
    plan: Plan,
    model_layers: Sequence[MoELayer],
    tokens,
    *,
    dispatches: Sequence[str] = DISPATCHES,
    world_size: int | None = None,
    backend: str = "gloo",
    warmup: int = 1,
    repeats: int = 3,
    timeout_s: float = 120.0,
    threads_per_worker: int = 1,
) -> dict[str, RunResult]:
    """:func:`serve_layers` under several dispatch rules on one placement, in one process group
    (one start-up, which dominates a small run). Returns ``{rule: RunResult}`` in the given order."""
    dispatches = tuple(dispatches)
    bad = [d for d in dispatches if d not in DISPATCHES]
    if bad or not dispatches or len(set(dispatches)) != len(dispatches):
        raise InputError(f"unknown or repeated {bad or list(dispatches)}; known: {', '.join(DISPATCHES)}", param="dispatch")
    if backend not in BACKENDS:
        raise InputError(f"unknown {backend!r}; known: {', '.join(BACKENDS)}", param="backend")
    for name, value, low in (("warmup", warmup, 0), ("repeats", repeats, 1)):
        if not isinstance(value, int) or value < low:
            raise InputError(f"{name}: must be an integer >= {low}, got {value!r}")
    layers, x = check_stack(model_layers, tokens)
    layout = layout_of(plan, len(layers))
    W = layout.num_gpus if world_size is None else world_size
    if W != layout.num_gpus:
        raise InputError(f"the plan places slots on {layout.num_gpus} GPUs, got world_size={W}", param="world_size")
    return serve_layout(layout, layers, x, dispatches, backend=backend, warmup=warmup, repeats=repeats,
                        timeout_s=timeout_s, threads_per_worker=threads_per_worker)


def serve_layout(layout: Layout, layers: list[MoELayer], x: np.ndarray, dispatches: tuple[str, ...], *,
                 backend: str, warmup: int, repeats: int, timeout_s: float, threads_per_worker: int) -> dict[str, RunResult]:
    """:func:`serve_dispatches` on a :class:`~planner.runtime.dispatch.Layout` (any placement, e.g.
    one between migration rounds: the live apply's recovery serves it) and a stack checked by
    :func:`~planner.runtime.moe.check_stack`; ``dispatches`` checked by the caller."""
    for i, layer in enumerate(layers):
        if layer.num_experts != layout.num_experts:
            raise InputError(f"model_layers[{i}]: {layer.num_experts} experts, but the plan has {layout.num_experts}")
    per_rank = run_workers(
        serve_worker, layout.num_gpus, args=(layout, layers, x, dispatches, warmup, repeats, backend == "nccl"),
        backend=backend, timeout_s=timeout_s, threads_per_worker=threads_per_worker,
    )
    return {d: gather_result(layout, [res["runs"][i] for res in per_rank], x.shape[-2], d, backend, repeats)
            for i, d in enumerate(dispatches)}


def time_layouts(layouts: Sequence[Layout], layers: list[MoELayer], x: np.ndarray, *, dispatch: str = "even",
                 warmup: int = 1, repeats: int = 5, backend: str = "gloo", timeout_s: float = 120.0,
                 threads_per_worker: int = 1) -> np.ndarray:
    """Forward times of several placements measured in one process group, warm and interleaved
    (:func:`planner.runtime._rank.timing_worker`): ``[placements, repeats]`` ms, each the sum over
    layers of the slowest rank's wall time of the layer. Interleaving makes a slow drift of a
    shared host hit every placement alike; the warm-up keeps the one cold forward out."""
    check_dispatch(dispatch)
    for name, value, low in (("warmup", warmup, 0), ("repeats", repeats, 1)):
        if not isinstance(value, int) or value < low:
            raise InputError(f"{name}: must be an integer >= {low}, got {value!r}")
    layouts = list(layouts)
    if not layouts or len({lay.num_gpus for lay in layouts}) != 1:
        raise InputError("layouts: give one or more placements on the same GPUs")
    per_rank = run_workers(timing_worker, layouts[0].num_gpus,
                           args=(layouts, layers, x, dispatch, warmup, repeats, backend == "nccl"),
                           backend=backend, timeout_s=timeout_s, threads_per_worker=threads_per_worker)
    ms = np.stack([r["ms"] for r in per_rank])  # [W, P, repeats, L]
    return ms.max(axis=0).sum(axis=-1)


def gather_result(layout: Layout, runs: list[dict], num_tokens: int, dispatch: str, backend: str, repeats: int) -> RunResult:
    """Assemble every rank's record of one rule (the ``"runs"`` entries :func:`serve_worker` returns,
    by rank) into a :class:`RunResult`."""
    slot_tokens = [np.zeros(p.size, dtype=np.int64) for p in layout.physical_to_logical]
    for run in runs:
        for row, (slots, rows) in enumerate(run["slot_rows"]):
            slot_tokens[row][slots] = rows
    return RunResult(
        outputs=np.concatenate([run["outputs"] for run in runs], axis=runs[0]["outputs"].ndim - 2),
        rank_tokens=np.stack([run["received"] for run in runs], axis=1),
        slot_tokens=tuple(slot_tokens),
        local_tokens=np.stack([run["local"] for run in runs], axis=1),
        step_ms=np.stack([run["step_ms"] for run in runs], axis=1),
        expert_ms=np.stack([run["expert_ms"] for run in runs], axis=1),
        tokens_per_rank=np.diff(token_offsets(num_tokens, layout.num_gpus)),
        dispatch=dispatch,
        backend=backend,
        repeats=repeats,
    )


def counts_report(result: RunResult, plan: Plan, routing) -> str:
    """A per-layer text table: measured rows per rank, the rule's prediction from ``routing``, the
    plan's own ``predicted.gpu_load_tokens`` (its fractional split of the counts it was planned on:
    comparable only when those were these counts), rows kept on the rank, step times."""
    predicted = predicted_rank_tokens(plan, routing, dispatch=result.dispatch)
    plan_loads = plan.replicas.predicted.gpu_load_tokens
    lines = [f"dispatch={result.dispatch} backend={result.backend} ranks={result.rank_tokens.shape[1]} "
             f"tokens/rank={result.tokens_per_rank.tolist()} (rows = token x top-k pairs)"]
    for row in range(result.rank_tokens.shape[0]):
        match = bool((predicted[row] == result.rank_tokens[row]).all())
        lines += [
            f"layer row {row} (hidden layer {plan.replicas.layers[row]}):",
            f"  measured rows         {result.rank_tokens[row].tolist()}",
            f"  predicted rows        {predicted[row].tolist()}  ({'equal' if match else 'DIFFERENT'})",
            f"  plan gpu_load_tokens  {[round(v, 2) for v in plan_loads[row]]}",
            f"  rows kept on the rank {result.local_tokens[row].tolist()}",
            f"  step ms, median of {result.repeats} {[round(float(v), 2) for v in result.step_ms[row]]}",
            f"  expert kernels ms min {[round(float(v), 2) for v in result.expert_ms[row]]}",
        ]
    return "\n".join(lines)
