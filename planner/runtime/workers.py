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
after ``warmup``), and the time of the rank's expert kernels alone (:class:`_ComputeClock`).
:func:`predicted_rank_tokens` (:mod:`planner.runtime.dispatch`) computes the same counts from ``routing`` without
workers; the plan's ``predicted.gpu_load_tokens`` (an exact even split on the counts it was made
from) differs from ``"even"``'s integer rows by less than the number of the GPU's slots whose
expert has two or more replicas (each such slot's round-robin share is off by less than one row).

torch is imported inside the functions (house rule). The dispatch arithmetic is numpy; the
predictions evaluate the rules' closed forms, not the per-row assignment the workers run (both use
the same largest-remainder quotas and static table). Outputs equal :func:`planner.runtime.moe.reference_forward` up to
fp32 summation order (``docs/runtime.md``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from planner.errors import InputError
from planner.runtime.dist import BACKENDS, run_workers
from planner.runtime.dispatch import (
    DISPATCHES,
    _assign_slots,
    _Layout,
    _layout,
    _replicas,
    _static_table,
    _token_offsets,
    predicted_rank_tokens,
    predicted_slot_tokens,
    routing_counts,
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
]


@dataclass(frozen=True)
class RunResult:
    """What the workers computed and measured.

    ``outputs`` [T, H] float32 hidden states after the last layer, tokens in input order;
    ``rank_tokens`` [L, W] rows each rank received per layer (its measured load, rows = token x
    top-k pairs); ``slot_tokens`` [L] arrays [P_l] rows each slot computed; ``local_tokens``
    [L, W] rows a rank dispatched to itself (no network); ``step_ms`` [L, W] per-layer wall time
    per rank, median over ``repeats``; ``expert_ms`` [L, W] time of the rank's expert kernels alone,
    the minimum over ``repeats`` (CPU time on CPU, CUDA events on GPU: see :class:`_ComputeClock`); ``tokens_per_rank``
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
        raise InputError(f"dispatch: unknown or repeated {bad or list(dispatches)}; known: {', '.join(DISPATCHES)}")
    if backend not in BACKENDS:
        raise InputError(f"backend: unknown {backend!r}; known: {', '.join(BACKENDS)}")
    for name, value, low in (("warmup", warmup, 0), ("repeats", repeats, 1)):
        if not isinstance(value, int) or value < low:
            raise InputError(f"{name}: must be an integer >= {low}, got {value!r}")
    layers, x = check_stack(model_layers, tokens)
    layout = _layout(plan, len(layers))
    W = layout.num_gpus if world_size is None else world_size
    if W != layout.num_gpus:
        raise InputError(f"world_size: the plan places slots on {layout.num_gpus} GPUs, got world_size={W}")
    return _serve_layout(layout, layers, x, dispatches, backend=backend, warmup=warmup, repeats=repeats,
                         timeout_s=timeout_s, threads_per_worker=threads_per_worker)


def _serve_layout(layout: _Layout, layers: list[MoELayer], x: np.ndarray, dispatches: tuple[str, ...], *,
                  backend: str, warmup: int, repeats: int, timeout_s: float, threads_per_worker: int) -> dict[str, RunResult]:
    """:func:`serve_dispatches` on a checked layout and stack (the live apply's recovery uses it too)."""
    for i, layer in enumerate(layers):
        if layer.num_experts != layout.num_experts:
            raise InputError(f"model_layers[{i}]: {layer.num_experts} experts, but the plan has {layout.num_experts}")
    per_rank = run_workers(
        _serve_worker, layout.num_gpus, args=(layout, layers, x, dispatches, warmup, repeats, backend == "nccl"),
        backend=backend, timeout_s=timeout_s, threads_per_worker=threads_per_worker,
    )
    return {d: _result(layout, [res["runs"][i] for res in per_rank], x.shape[-2], d, backend, repeats)
            for i, d in enumerate(dispatches)}


def _result(layout: _Layout, runs: list[dict], num_tokens: int, dispatch: str, backend: str, repeats: int) -> RunResult:
    """Assemble every rank's record of one rule into a RunResult."""
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
        tokens_per_rank=np.diff(_token_offsets(num_tokens, layout.num_gpus)),
        dispatch=dispatch,
        backend=backend,
        repeats=repeats,
    )


def _router_state(layer: MoELayer, device) -> dict:
    """What every rank keeps of a layer besides its expert copies: the router and the shared expert."""
    return {"router": layer.router_weight.clone().to(device), "top_k": layer.top_k, "routing": dict(layer.routing),
            "score_bias": None if layer.score_bias is None else layer.score_bias.clone().to(device),
            "shared": None if layer.shared is None else tuple(t.clone().to(device) for t in layer.shared)}


def _held_row(layout: _Layout, row: int, rank: int, copies: list, router: dict) -> dict:
    """A rank's serving state of one row: its slot ids, every slot's index on its rank, the dispatch
    tables, and ``copies`` (one ``(gate, up, down)`` per slot of this rank, in slot order)."""
    p2l, gpu = layout.physical_to_logical[row], layout.slot_gpu[row]
    local = np.zeros(p2l.size, dtype=np.int64)  # position of a slot among its rank's slots
    for g in range(layout.num_gpus):
        on_g = np.flatnonzero(gpu == g)
        local[on_g] = np.arange(on_g.size)
    width = int(np.bincount(gpu, minlength=layout.num_gpus).max())
    return {"slots": np.flatnonzero(gpu == rank), "copies": copies, "local": local, "width": width,
            "replicas": _replicas(p2l, layout.num_experts), "static": _static_table(layout, row)[rank], **router}


def _load_slots(layout: _Layout, layers: list[MoELayer], rank: int, device) -> list[dict]:
    """Per row: this rank's serving state with one weight copy per slot, taken from the source layer."""
    held = []
    for row, layer in enumerate(layers):
        p2l = layout.physical_to_logical[row]
        copies = []
        for s in np.flatnonzero(layout.slot_gpu[row] == rank):
            e = int(p2l[s])
            if not 0 <= e < layer.num_experts:
                raise InputError(f"rank {rank}: plan row {row} slot {int(s)} holds expert {e}, but the layer has experts 0..{layer.num_experts - 1}")
            copies.append(tuple(t[e].clone().to(device) for t in (layer.gate_proj, layer.up_proj, layer.down_proj)))
        held.append(_held_row(layout, row, rank, copies, _router_state(layer, device)))
    return held


def _layer_step(x, layout: _Layout, row: int, rank: int, h: dict, dispatch: str):
    """One layer on one rank: route, dispatch, compute, return, combine. Returns x + y and counts."""
    import torch
    import torch.distributed as dist

    from planner.runtime.moe import route, swiglu

    W, E, dev = layout.num_gpus, layout.num_experts, x.device
    weights, experts = route(x, h["router"], h["top_k"], h["routing"], h["score_bias"])
    flat = experts.reshape(-1).cpu().numpy()
    token = np.repeat(np.arange(x.shape[0]), h["top_k"])
    counts = None
    if dispatch != "deterministic":
        mine = torch.as_tensor(np.bincount(flat, minlength=E), device=dev)
        gathered = [torch.empty_like(mine) for _ in range(W)]
        dist.all_gather(gathered, mine)
        counts = torch.stack(gathered).cpu().numpy()
    slot = _assign_slots(flat, rank, h["replicas"], h["static"], layout.dispatch_weights[row], counts, dispatch)
    dest, local = layout.slot_gpu[row][slot], h["local"][slot]
    order = np.lexsort((local, dest))  # by destination rank, then its slot
    send_counts = np.zeros((W, h["width"]), dtype=np.int64)
    np.add.at(send_counts, (dest, local), 1)
    recv_counts = torch.empty(W * h["width"], dtype=torch.int64, device=dev)
    dist.all_to_all_single(recv_counts, torch.as_tensor(send_counts.reshape(-1), device=dev))
    recv_counts = recv_counts.cpu().numpy().reshape(W, h["width"])
    in_splits, out_splits = send_counts.sum(axis=1).tolist(), recv_counts.sum(axis=1).tolist()

    order_t = torch.as_tensor(order, device=dev)
    send_x = x[torch.as_tensor(token, device=dev)[order_t]]
    recv_x = x.new_empty((sum(out_splits), x.shape[1]))
    dist.all_to_all_single(recv_x, send_x, output_split_sizes=out_splits, input_split_sizes=in_splits)
    # received rows come by source rank, then by this rank's slot: label each with its slot
    label = np.repeat(np.tile(np.arange(h["width"]), W), recv_counts.reshape(-1))
    y = torch.empty_like(recv_x)
    clock = _ComputeClock(dev)
    for j, (gate, up, down) in enumerate(h["copies"]):
        rows = torch.as_tensor(np.flatnonzero(label == j), device=dev)
        if rows.numel():
            y[rows] = swiglu(recv_x[rows], gate, up, down)
    clock.stop()
    back = x.new_empty(send_x.shape)
    dist.all_to_all_single(back, y, output_split_sizes=in_splits, input_split_sizes=out_splits)
    # a shared expert is dense: every rank runs it on its own tokens (no dispatch)
    combined = torch.zeros_like(x) if h["shared"] is None else swiglu(x, *h["shared"])
    w_sorted = weights.reshape(-1)[order_t]
    combined.index_add_(0, torch.as_tensor(token[order], device=dev), back * w_sorted[:, None])
    stats = {
        "received": int(recv_x.shape[0]),
        "slot_rows": recv_counts.sum(axis=0)[: len(h["copies"])],
        "local": int(send_counts[rank].sum()),
        "expert_clock": clock,  # read by _forward_once once the layer is done (no extra GPU sync here)
    }
    return x + combined, stats


class _ComputeClock:
    """Time of a rank's expert kernels alone. On CPU it is the process's **CPU time**
    (``time.process_time``, all its threads): the work done, unaffected by other processes taking
    the cores in between (4 workers on 2 cores) and by waits for peers. On GPU, two CUDA events
    around the kernels; :meth:`ms` reads them after the layer's own synchronisation, so timing adds
    no sync in the middle of a layer."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            import torch

            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.process_time()

    def stop(self) -> None:
        if self.cuda:
            self.end.record()
        else:
            self.cpu_ms = (time.process_time() - self.t0) * 1e3

    def ms(self) -> float:
        """Milliseconds; on GPU valid once the stream has passed ``stop`` (after a synchronise)."""
        return float(self.start.elapsed_time(self.end)) if self.cuda else self.cpu_ms


def _serve_worker(rank: int, world_size: int, layout: _Layout, layers: list[MoELayer], tokens: np.ndarray,
                  dispatches: tuple[str, ...], warmup: int, repeats: int, use_cuda: bool, local_rank: int | None = None) -> dict:
    """Spawned by :func:`serve_dispatches`, one per rank: load the rank's slots, run the forwards.
    Under torchrun (:mod:`planner.runtime.torchrun`) the GPU is ``cuda:local_rank``."""
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", rank if local_rank is None else local_rank) if use_cuda else torch.device("cpu")
    try:
        held, failure = _load_slots(layout, layers, rank, device), None
    except InputError as exc:
        held, failure = None, exc
    del layers  # from here on the rank uses only its slots' copies and the routers
    # agree that every rank loaded its slots: only a rank that failed raises, the others return
    # (were they to wait in a collective, the dead peer would fail them too and could be reported first)
    flags = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world_size)]
    dist.all_gather(flags, torch.tensor([int(failure is not None)], device=device))
    if failure is not None:
        raise failure
    if any(int(f.item()) for f in flags):
        return {"aborted": True}
    return {"runs": [_forwards(_rank_tokens(tokens, rank, world_size, device), layout, rank, held, d, warmup, repeats, use_cuda)
                     for d in dispatches]}


def _rank_tokens(tokens: np.ndarray, rank: int, world_size: int, device):
    """This rank's block of tokens (``[t, H]``, or ``[L, t, H]`` for per-layer inputs) as a tensor."""
    import torch

    bounds = _token_offsets(tokens.shape[-2], world_size)
    return torch.from_numpy(tokens[..., bounds[rank]:bounds[rank + 1], :].copy()).to(device)


def _forward_once(x0, layout: _Layout, rank: int, held: list[dict], dispatch: str, use_cuda: bool):
    """One forward of every row: the stack (``x0`` ``[t, H]``) or each row on its own input
    (``x0`` ``[L, t, H]``). Returns the output (``[t, H]`` / ``[L, t, H]``), per-row stats and ms."""
    import torch
    import torch.distributed as dist

    per_layer = x0.ndim == 3
    x, outs, stats, ms = x0, [], [], []
    for row in range(len(held)):
        dist.barrier()
        t0 = time.perf_counter()
        y, s = _layer_step(x0[row] if per_layer else x, layout, row, rank, held[row], dispatch)
        if use_cuda:
            torch.cuda.synchronize(y.device)
        ms.append((time.perf_counter() - t0) * 1e3)
        s["expert_ms"] = s.pop("expert_clock").ms()
        stats.append(s)
        if per_layer:
            outs.append(y)
        else:
            x = y
    return (torch.stack(outs) if per_layer else x), stats, ms


def _forwards(x0, layout: _Layout, rank: int, held: list[dict], dispatch: str, warmup: int, repeats: int, use_cuda: bool) -> dict:
    """``warmup + repeats`` forwards under one rule; the last one's outputs and counts."""
    import torch

    L = len(held)
    times, expert = np.zeros((repeats, L)), np.zeros((repeats, L))
    with torch.no_grad():
        for it in range(warmup + repeats):
            x, stats, ms = _forward_once(x0, layout, rank, held, dispatch, use_cuda)
            if it >= warmup:
                times[it - warmup] = ms
                expert[it - warmup] = [s["expert_ms"] for s in stats]
    return {
        "outputs": x.cpu().numpy(),
        "received": np.array([s["received"] for s in stats], dtype=np.int64),
        "local": np.array([s["local"] for s in stats], dtype=np.int64),
        "slot_rows": [(held[row]["slots"], stats[row]["slot_rows"]) for row in range(L)],
        "step_ms": np.median(times, axis=0),
        "expert_ms": expert.min(axis=0),  # least-disturbed run: contention only ever adds CPU time
    }


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
