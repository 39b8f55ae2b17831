"""What one expert-parallel rank runs inside the process group: load its slots, then route,
dispatch, compute and combine every layer (:mod:`planner.runtime.workers`, items 1-5).

Internal to :mod:`planner.runtime` (a private module): the local launcher
(:func:`planner.runtime.workers.serve_layout`), the live apply (:mod:`planner.runtime.apply`) and
the torchrun entry point (:mod:`planner.runtime.torchrun`) call these functions on every rank; the
parent side (checks, the process group, assembling a
:class:`~planner.runtime.workers.RunResult`) is in :mod:`planner.runtime.workers`.

torch is imported inside the functions (house rule).
"""

from __future__ import annotations

import time

import numpy as np

from planner.errors import InputError
from planner.runtime.dispatch import Layout, assign_slots, replica_slots, static_table, token_offsets
from planner.runtime.moe import MoELayer

__all__ = ["router_state", "held_row", "serve_worker", "token_block", "forward_once", "ComputeClock", "timing_worker"]


def router_state(layer: MoELayer, device) -> dict:
    """What every rank keeps of a layer besides its expert copies, on ``device``: the router weight,
    top-k, routing options, score bias and the shared expert (the input of :func:`held_row`)."""
    return {"router": layer.router_weight.clone().to(device), "top_k": layer.top_k, "routing": dict(layer.routing),
            "score_bias": None if layer.score_bias is None else layer.score_bias.clone().to(device),
            "shared": None if layer.shared is None else tuple(t.clone().to(device) for t in layer.shared)}


def held_row(layout: Layout, row: int, rank: int, copies: list, router: dict) -> dict:
    """A rank's serving state of one row, what :func:`forward_once` runs on: its slot ids, every
    slot's index on its rank, the dispatch tables, ``copies`` (one ``(gate, up, down)`` per slot
    of this rank, in slot order) and ``router`` (:func:`router_state`)."""
    p2l, gpu = layout.physical_to_logical[row], layout.slot_gpu[row]
    local = np.zeros(p2l.size, dtype=np.int64)  # position of a slot among its rank's slots
    for g in range(layout.num_gpus):
        on_g = np.flatnonzero(gpu == g)
        local[on_g] = np.arange(on_g.size)
    width = int(np.bincount(gpu, minlength=layout.num_gpus).max())
    return {"slots": np.flatnonzero(gpu == rank), "copies": copies, "local": local, "width": width,
            "replicas": replica_slots(p2l, layout.num_experts), "static": static_table(layout, row)[rank], **router}


def _load_slots(layout: Layout, layers: list[MoELayer], rank: int, device) -> list[dict]:
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
        held.append(held_row(layout, row, rank, copies, router_state(layer, device)))
    return held


def _layer_step(x, layout: Layout, row: int, rank: int, h: dict, dispatch: str):
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
    slot = assign_slots(flat, rank, h["replicas"], h["static"], layout.dispatch_weights[row], counts, dispatch)
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
    clock = ComputeClock(dev)
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
        "expert_clock": clock,  # read by forward_once once the layer is done (no extra GPU sync here)
    }
    return x + combined, stats


class ComputeClock:
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


def serve_worker(rank: int, world_size: int, layout: Layout, layers: list[MoELayer], tokens: np.ndarray,
                 dispatches: tuple[str, ...], warmup: int, repeats: int, use_cuda: bool, local_rank: int | None = None) -> dict:
    """One rank's whole run, inside a joined process group: load the rank's slots, run the forwards.

    Spawned by :func:`~planner.runtime.workers.serve_layout`, one per rank; called by :mod:`planner.runtime.torchrun` on
    each torchrun rank, where the GPU is ``cuda:local_rank``. Returns ``{"runs": [record per rule]}``
    (:func:`~planner.runtime.workers.gather_result` assembles them), or ``{"aborted": True}`` when another rank could not
    load its slots."""
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
    return {"runs": [_forwards(token_block(tokens, rank, world_size, device), layout, rank, held, d, warmup, repeats, use_cuda)
                     for d in dispatches]}


def token_block(tokens: np.ndarray, rank: int, world_size: int, device):
    """Rank ``rank``'s block of tokens (item 2; ``[t, H]``, or ``[L, t, H]`` for per-layer inputs)
    as a tensor on ``device``."""
    import torch

    bounds = token_offsets(tokens.shape[-2], world_size)
    return torch.from_numpy(tokens[..., bounds[rank]:bounds[rank + 1], :].copy()).to(device)


def forward_once(x0, layout: Layout, rank: int, held: list[dict], dispatch: str, use_cuda: bool):
    """One forward of every row on this rank (inside the process group), ``held`` from
    :func:`held_row`: the stack (``x0`` ``[t, H]``) or each row on its own input (``x0``
    ``[L, t, H]``). Returns the output (``[t, H]`` / ``[L, t, H]``), per-row stats and ms."""
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


def _forwards(x0, layout: Layout, rank: int, held: list[dict], dispatch: str, warmup: int, repeats: int, use_cuda: bool) -> dict:
    """``warmup + repeats`` forwards under one rule; the last one's outputs and counts."""
    import torch

    L = len(held)
    times, expert = np.zeros((repeats, L)), np.zeros((repeats, L))
    with torch.no_grad():
        for it in range(warmup + repeats):
            x, stats, ms = forward_once(x0, layout, rank, held, dispatch, use_cuda)
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


def timing_worker(rank: int, world_size: int, layouts: list[Layout], layers: list[MoELayer], tokens: np.ndarray,
                  dispatch: str, warmup: int, repeats: int, use_cuda: bool) -> dict:
    """Time several placements on one process group, interleaved: load every placement's slots from
    the source, run ``warmup`` untimed forwards of each, then ``repeats`` rounds in which each
    placement serves once, in order. Returns ``{"ms": [placements, repeats, L]}``, this rank's wall
    time per layer of every timed forward (the parent takes the slowest rank per layer)."""
    import torch

    device = torch.device("cuda", rank) if use_cuda else torch.device("cpu")
    held = [_load_slots(layout, layers, rank, device) for layout in layouts]
    del layers
    x0 = token_block(tokens, rank, world_size, device)
    ms = np.zeros((len(layouts), repeats, len(held[0])))
    with torch.no_grad():
        for it in range(warmup + repeats):
            for i, layout in enumerate(layouts):
                _, _, t = forward_once(x0, layout, rank, held[i], dispatch, use_cuda)
                if it >= warmup:
                    ms[i, it - warmup] = t
    return {"ms": ms}
