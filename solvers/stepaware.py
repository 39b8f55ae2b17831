"""Per-step-aware replica planner: EPLB replication + time-greedy projected packing.

(Past 450 lines on purpose: one planner's three steps, each public, and the checks they share.)

Data: loads ``w[t, l, e] >= 0`` for ``T`` planning steps, ``L`` layers, ``E`` experts; ``P_l``
slots in layer ``l``; ``D`` GPUs with ``cap[l, g]`` slots of layer ``l`` on GPU ``g``
(``sum_g cap[l, g] = P_l``); optionally ``N`` nodes of ``D / N`` GPUs and a node ``n[l, e]`` per
expert (hierarchical deployments).

Decisions, per layer: replica counts ``c[l, e] >= 1`` with ``sum_e c = P_l``, and a GPU for every
replica: ``cap`` slots per GPU, at most one replica of an expert per GPU, replicas in their
expert's node.

Objective (replay): minimise ``sum_l mean_t max_g x[t, l, g]``, where a replica carries
``w[t, l, e] / c[l, e]`` and ``x`` sums the replicas on a GPU: the busiest GPU of every step,
which sets the layer's time. Replayed balancedness ``mean_g x / max_g x`` is its score
(:mod:`solvers.replay`).

Method (step 1 is deepseek-ai/EPLB's; why these steps, with the measurements behind them:
``docs/replicas.md``, "Why these methods"):

1. counts: every expert starts with one replica; each further slot goes to the expert with the
   largest summed load per replica ``W / c`` among those with fewer than ``D`` copies
   (:func:`replica_counts_greedy`);
2. packing: the replicas, each with its per-step vector ``w[:, l, e] / c[l, e]``, are placed in
   decreasing total load. Greedy rule: the item goes to the eligible GPU (room left, no replica of
   that expert yet, right node) minimising ``sum_t max_g proj[t, g]`` with
   ``proj = load + free slots x mean vector of the unplaced items`` (of that GPU's node); ties to
   the lower current total load, then the lower GPU index (:func:`pack_stepaware`). Without the
   projection, when ``P % D != 0`` the GPUs that keep an extra slot end up the busiest;
3. optional: swaps of two replicas between GPUs while ``sum_t mean_t / max_t`` grows
   (:func:`swap_search`; on a per-step trace it adds nothing held-out, so it is off by default).

Layouts are padded arrays ``phy2log [L, Pmax]`` and ``slot_gpu [L, Pmax]`` (``-1`` = padding at
the row end), slots GPU-major and by expert id within a GPU. Step 2 costs ``O(T L D Pmax)``: one
``[T, L, D]`` update per item rank, vectorised over the layers.
"""

from __future__ import annotations

import time

import numpy as np

from solvers._checks import check_weight, int_array, positive_int
from solvers.packing import balanced_packing
from solvers.replay import gpu_major_layout, replay_gpu_loads
from solvers.report import SolveReport, relative_gap
from solvers.swap import search_swaps, swap_search

__all__ = [
    "plan_stepaware", "replica_counts_greedy", "pack_stepaware", "swap_search", "spread_capacity",
    "assign_groups_to_nodes",
]

_TIE_RTOL = 1e-12  # candidate objectives this close (relative) count as equal


def plan_stepaware(weight, num_slots, num_gpus, *, num_nodes=1, capacity=None, expert_nodes=None,
                   sample_steps=200, swap_evaluations=0, swap_time_limit_s=None, seed=0):
    """Replicate and place experts so that the busiest GPU is light in every step.

    Parameters
    ----------
    weight : array_like of float, shape (T, L, E) or (L, E)
        Per-step loads of the planning window (a 2-D array is one aggregated step).
    num_slots : int or array_like of int, shape (L,)
        Slots per layer ``P_l``, ``E <= P_l <= E * D`` (``E * D / N`` with nodes).
    num_gpus : int
        GPUs ``D``.
    num_nodes : int, default 1
        Nodes ``N`` (divides ``D``); only used with `expert_nodes`.
    capacity : array_like of int, shape (L, D), optional
        Slots per GPU per layer; default :func:`spread_capacity`.
    expert_nodes : array_like of int, shape (L, E), optional
        Node of each expert (see :func:`assign_groups_to_nodes`); replicas stay on their node's
        GPUs and the counts are chosen per node, with that node's slots (each node needs at
        least as many slots as it has experts; pass `capacity` if the default spread does not
        give them).
    sample_steps : int or None, default 200
        Plan on at most this many evenly spaced steps (None: all). Time is linear in the steps
        (1.3 s for 200 steps at L = 58, E = 256, D = 64, P = 320 on one core; 0.3 s for 50), so
        the default bounds it on long traces. Planning on 50 of 200 steps cost 0.6-0.8 point of
        balancedness in-window and <= 0.3 held-out (``docs/replicas.md``, "Why these methods").
    swap_evaluations : int, default 0
        Work budget of :func:`swap_search` after the packing (candidate swaps x steps evaluated,
        about 5 x 10^7 per second on one core); 0 skips it unless `swap_time_limit_s` is given.
    swap_time_limit_s : float, optional
        Opt-in wall-clock cap of the swap search (0 or None: none; a positive value alone runs the
        search until it completes or the time is up, which makes the result depend on the machine).
    seed : int, default 0
        Unused: the method is deterministic. Kept for the common solver signature.

    Returns
    -------
    phy2log, slot_gpu : ndarray of int64, shape (L, max P_l)
        Padded layout (``-1`` after the ``P_l`` used slots of a row).
    report : SolveReport
        ``objective`` = sum over layers of the mean over all given steps of the busiest GPU's
        load; ``bound`` = the same for the per-step bound
        ``max(total / D, max_e w / min(copy cap, P_l - E + 1))``; ``stop_reason`` is
        ``"time_limit"`` or ``"iteration_limit"`` if the swap search hit a cap (its time limit, or
        its work budget / swap cap).

    Raises
    ------
    ValueError
        Bad shapes or values, ``P_l`` out of range, inconsistent capacities or nodes.

    Examples
    --------
    >>> w = np.array([[[9.0, 1, 1, 1]], [[1.0, 1, 1, 9]], [[5.0, 1, 1, 5]]])
    >>> phy2log, slot_gpu, rep = plan_stepaware(w, 6, 2)
    >>> phy2log.tolist(), slot_gpu.tolist(), rep.solver
    ([[0, 1, 3, 0, 2, 3]], [[0, 0, 0, 1, 1, 1]], 'stepaware')
    """
    start = time.perf_counter()
    w = check_weight(weight, "(T, L, E)")
    steps, layers, experts = w.shape
    num_gpus, num_nodes = positive_int(num_gpus, "num_gpus"), positive_int(num_nodes, "num_nodes")
    if num_gpus % num_nodes:
        raise ValueError(f"num_nodes ({num_nodes}) must divide num_gpus ({num_gpus})")
    slots = _slots(num_slots, layers)
    gpn = num_gpus // num_nodes if expert_nodes is not None else num_gpus
    for layer in np.flatnonzero((slots < experts) | (slots > experts * gpn))[:1]:
        raise ValueError(f"layer {layer}: num_slots {slots[layer]} is outside [E, E * {gpn}] = "
                         f"[{experts}, {experts * gpn}]")
    if capacity is None:
        cap = spread_capacity(slots, num_gpus)
    else:
        cap = int_array(capacity, "capacity", (layers, num_gpus))
        for layer in np.flatnonzero((cap < 0).any(axis=1) | (cap.sum(axis=1) != slots))[:1]:
            raise ValueError(f"capacity of layer {layer} must be >= 0 and sum to num_slots = {slots[layer]}")
    plan_w = w
    if sample_steps is not None and steps > positive_int(sample_steps, "sample_steps"):
        plan_w = w[np.unique(np.linspace(0, steps - 1, sample_steps).round().astype(np.int64))]
    nodes = None if expert_nodes is None else _expert_nodes(expert_nodes, layers, experts, num_nodes)
    if nodes is None:
        counts = replica_counts_greedy(plan_w.sum(axis=0), slots, max_copies=num_gpus)
    else:
        counts = _node_counts(plan_w.sum(axis=0), nodes, cap.reshape(layers, num_nodes, gpn).sum(axis=2), gpn)
    phy2log, slot_gpu = pack_stepaware(plan_w, counts, cap, expert_nodes=nodes, gpus_per_node=gpn)
    solver, stop = "stepaware", "completed"
    time_cap = swap_time_limit_s if swap_time_limit_s else None
    if swap_evaluations or time_cap is not None:
        phy2log, slot_gpu, stop = search_swaps(plan_w, phy2log, slot_gpu, num_gpus, time_cap, None,
                                               None if nodes is None else gpn,
                                               max_evaluations=int(swap_evaluations) or None)
        solver += "+swap"
    objective = float(replay_gpu_loads(w, phy2log, slot_gpu, num_gpus).max(axis=2).mean(axis=0).sum())
    spread = np.minimum(gpn, slots - experts + 1)
    bound = float(np.maximum(w.sum(axis=2) / num_gpus, w.max(axis=2) / spread).mean(axis=0).sum())
    report = SolveReport("feasible", stop, objective, bound, relative_gap(objective, bound),
                         time.perf_counter() - start, solver, "moeplan-stepaware-1")
    return phy2log, slot_gpu, report


def replica_counts_greedy(weight_le, num_slots, *, max_copies) -> np.ndarray:
    """EPLB's replica counts: each extra slot to the expert with the largest load per replica.

    Parameters
    ----------
    weight_le : array_like of float, shape (L, E)
        Summed loads.
    num_slots : int or array_like of int, shape (L,)
        Slots per layer, ``E <= P_l <= E * max_copies``.
    max_copies : int
        Cap on replicas per expert (the number of GPUs, so no expert needs two copies on a GPU).

    Returns
    -------
    ndarray of int64, shape (L, E)
        Row sums equal `num_slots`. Ties go to the lowest expert id, as in
        :func:`solvers.eplb.replicate_experts` (same counts when the cap does not bind).

    Examples
    --------
    >>> replica_counts_greedy([[6.0, 2.0, 4.0]], 5, max_copies=2).tolist()
    [[2, 1, 2]]
    >>> replica_counts_greedy([[6.0, 2.0, 4.0]], [6], max_copies=2).tolist()
    [[2, 2, 2]]
    """
    w = _weight2(weight_le)
    layers, experts = w.shape
    slots, cap = _slots(num_slots, layers), positive_int(max_copies, "max_copies")
    for layer in np.flatnonzero((slots < experts) | (slots > experts * cap))[:1]:
        raise ValueError(f"layer {layer}: num_slots {slots[layer]} is outside [E, E * max_copies] = "
                         f"[{experts}, {experts * cap}]")
    return _greedy_counts(w, np.ones((layers, experts), dtype=np.int64), slots - experts, cap)


def pack_stepaware(weight, counts, capacity, *, expert_nodes=None, gpus_per_node=None, projection=True):
    """Place replicas greedily so that every step's busiest GPU stays light (step 2 of :func:`plan_stepaware`).

    Parameters
    ----------
    weight : array_like of float, shape (T, L, E) or (L, E)
    counts : array_like of int, shape (L, E)
        Replicas per expert, ``1 <= counts <= D`` (``<= gpus_per_node`` with nodes).
    capacity : array_like of int, shape (L, D)
        Slots per GPU per layer; each row sums to that layer's total count.
    expert_nodes : array_like of int, shape (L, E), optional
        Node of each expert; GPU ``g`` is on node ``g // gpus_per_node``.
    gpus_per_node : int, optional
        Required with `expert_nodes`.
    projection : bool, default True
        Add ``free slots x mean unplaced item`` to every GPU before taking the step maximum.

    Returns
    -------
    phy2log, slot_gpu : ndarray of int64, shape (L, max P_l)

    Raises
    ------
    ValueError
        On inconsistent inputs, including capacities that cannot hold the counts with at most one
        replica of an expert per GPU (Gale-Ryser, checked up front); the message names the layer.

    Notes
    -----
    When every GPU with room already holds the item's expert (this happens, e.g. for ``P % D != 0``
    where the GPU with the extra slot is filled early), an augmenting path of replica moves makes
    room; one exists whenever the remaining replicas fit at all, so the greedy never dead-ends.

    Examples
    --------
    Expert 0 is hot in step 0, expert 3 in step 1; they end up on different GPUs:

    >>> w = [[[8.0, 1, 1, 1]], [[1.0, 1, 1, 8]]]
    >>> p2l, gpu = pack_stepaware(w, [[1, 1, 1, 1]], [[2, 2]])
    >>> p2l.tolist(), gpu.tolist()
    ([[0, 1, 2, 3]], [[0, 0, 1, 1]])
    """
    w = check_weight(weight, "(T, L, E)")
    layers, experts = w.shape[1:]
    c = int_array(counts, "counts", (layers, experts))
    cap = int_array(capacity, "capacity", (layers, "D"))
    num_gpus = cap.shape[1]
    gpn = num_gpus if expert_nodes is None else positive_int(gpus_per_node, "gpus_per_node")
    if num_gpus % gpn:
        raise ValueError(f"gpus_per_node ({gpn}) must divide the number of GPUs ({num_gpus})")
    for layer, e in np.argwhere((c < 1) | (c > gpn))[:1]:
        raise ValueError(f"counts[{layer}, {e}] = {c[layer, e]} must be in [1, {gpn}] (GPUs it may use)")
    for layer in np.flatnonzero((cap < 0).any(axis=1) | (cap.sum(axis=1) != c.sum(axis=1)))[:1]:
        raise ValueError(f"capacity of layer {layer} must be >= 0 and sum to its {c[layer].sum()} replicas")
    if expert_nodes is None:
        nodes = np.zeros((layers, experts), dtype=np.int64)
    else:
        nodes = _expert_nodes(expert_nodes, layers, experts, num_gpus // gpn)
        demand, supply = _node_sum(c, nodes, num_gpus // gpn), cap.reshape(layers, -1, gpn).sum(axis=2)
        for layer, n in np.argwhere(demand != supply)[:1]:
            raise ValueError(f"layer {layer} node {n}: {demand[layer, n]} replicas for {supply[layer, n]} slots")
    _check_spreadable(c, cap, nodes, gpn)
    gpu_of_item, item_expert = _place(w, c, cap, nodes, gpn, projection)
    return gpu_major_layout(gpu_of_item, item_expert, experts)


def spread_capacity(num_slots, num_gpus) -> np.ndarray:
    """Slots per GPU per layer, even within each layer and over the layers (CRAFT §3.3 step 5).

    Each layer gives ``P_l // D`` slots to every GPU and its ``P_l % D`` others to the GPUs with
    the fewest slots so far (lowest index on ties), so the GPUs' totals over the layers are within
    1 of each other (equal memory left for KV cache).

    Examples
    --------
    >>> spread_capacity([5, 5, 4], 2).tolist()
    [[3, 2], [2, 3], [2, 2]]
    """
    slots, num_gpus = _slots(num_slots, np.size(num_slots)), positive_int(num_gpus, "num_gpus")
    cap = np.repeat((slots // num_gpus)[:, None], num_gpus, axis=1)
    running = np.zeros(num_gpus, dtype=np.int64)
    for layer, extra in enumerate(slots % num_gpus):  # one cheap step per layer
        cap[layer, np.argsort(running, kind="stable")[:extra]] += 1
        running += cap[layer]
    return cap


def assign_groups_to_nodes(weight_le, num_groups, num_nodes) -> np.ndarray:
    """Node ``[L, E]`` of every expert: EPLB's step 1, groups of ``E / G`` consecutive experts
    packed onto nodes, ``G / N`` each, heaviest group to the lightest non-full node.

    Examples
    --------
    Group loads 10, 8, 2, 4: node 0 gets the groups of 10 and 2, node 1 those of 8 and 4.

    >>> assign_groups_to_nodes([[5.0, 5, 4, 4, 1, 1, 2, 2]], 4, 2).tolist()
    [[0, 0, 1, 1, 0, 0, 1, 1]]
    """
    w = _weight2(weight_le)
    layers, experts = w.shape
    groups, nodes = positive_int(num_groups, "num_groups"), positive_int(num_nodes, "num_nodes")
    if experts % groups or groups % nodes:
        raise ValueError(f"need E ({experts}) % num_groups ({groups}) == 0 and num_groups % num_nodes ({nodes}) == 0")
    node_of_group, _ = balanced_packing(w.reshape(layers, groups, -1).sum(axis=2), nodes)
    return np.repeat(node_of_group, experts // groups, axis=1)


# -- step 1: counts -------------------------------------------------------------------------------
def _greedy_counts(w, counts, extra, cap):
    """Add ``extra[r]`` replicas to row ``r``, one at a time to ``argmax w / c`` over ``0 < c < cap``."""
    counts, rows = counts.copy(), np.arange(len(counts))
    for s in range(int(extra.max(initial=0))):
        ratio = np.divide(w, counts, out=np.full(w.shape, -np.inf), where=(counts > 0) & (counts < cap))
        live = extra > s
        counts[rows[live], ratio[live].argmax(axis=1)] += 1
    return counts


def _node_counts(w_sum, nodes, node_slots, gpn):
    """Counts when each node's experts share that node's slots (one greedy row per layer and node)."""
    experts = w_sum.shape[1]
    member = nodes[:, None, :] == np.arange(node_slots.shape[1])[:, None]  # [L, N, E]
    size = member.sum(axis=2)
    for layer, n in np.argwhere((node_slots < size) | (node_slots > size * gpn))[:1]:
        raise ValueError(f"layer {layer} node {n}: {node_slots[layer, n]} slots for {size[layer, n]} experts "
                         f"(at most {gpn} copies each)")
    rows_w = np.broadcast_to(w_sum[:, None, :], member.shape).reshape(-1, experts)
    counts = _greedy_counts(rows_w, member.reshape(-1, experts).astype(np.int64), (node_slots - size).ravel(), gpn)
    return counts.reshape(member.shape).sum(axis=1)


# -- step 2: packing ------------------------------------------------------------------------------
def _place(w, c, cap, nodes, gpn, projection):
    """GPU of every item ``[L, Pmax]`` and its expert; items by decreasing per-replica total load."""
    steps, layers, experts = w.shape
    num_gpus, rows = cap.shape[1], np.arange(layers)
    num_nodes, gpu_node = num_gpus // gpn, np.arange(num_gpus) // gpn
    order = np.argsort(-w.sum(axis=0) / c, axis=1, kind="stable")  # ties: lower expert id first
    size = c.sum(axis=1)
    item_expert = np.full((layers, int(size.max())), -1, dtype=np.int64)
    for layer in range(layers):  # cheap: one np.repeat per layer
        item_expert[layer, : size[layer]] = np.repeat(order[layer], c[layer, order[layer]])
    gpu_of_item = np.full(item_expert.shape, -1, dtype=np.int64)
    load, proj, scratch = (np.zeros((steps, layers, num_gpus)) for _ in range(3))  # buffers reused
    total, free = np.zeros((layers, num_gpus)), cap.astype(np.float64)
    holds = np.zeros((layers, experts, num_gpus), dtype=bool)
    member = (nodes[:, None, :] == np.arange(num_nodes)[:, None]).astype(np.float64)
    remaining = np.einsum("tle,lne->tln", w, member)  # unplaced load per node
    left = _node_sum(c, nodes, num_nodes).astype(np.float64)  # unplaced items per node
    for k in range(item_expert.shape[1]):
        active = k < size
        e = np.where(active, item_expert[:, k], 0)
        n = nodes[rows, e]
        vec = w[:, rows, e] / c[rows, e] * active  # [T, L]
        remaining[:, rows, n] -= vec
        left[rows, n] -= active
        if projection:
            mean = np.divide(remaining, left, out=np.zeros_like(remaining), where=left > 0)
            mean = mean[:, :, gpu_node] if num_nodes > 1 else mean  # [T, L, D] or [T, L, 1]
            np.multiply(free, mean, out=proj)
            proj += load
            rise = vec[:, :, None] - mean  # the item takes the place of one projected mean item
        else:
            np.copyto(proj, load)
            rise = vec[:, :, None]
        ok = (free > 0) & ~holds[rows, e] & (gpu_node == n[:, None])
        cand = np.where(ok, _step_max_sums(proj, rise, scratch), np.inf)
        best = cand.min(axis=1, keepdims=True)
        g = np.where(ok & (cand <= best + _TIE_RTOL * np.abs(best)), total, np.inf).argmin(axis=1)
        for layer in np.flatnonzero(active & ~ok.any(axis=1)):
            g[layer] = _repair(layer, k, w, c, item_expert, gpu_of_item, load, total, free, holds, gpu_node == n[layer])
        la, ga = rows[active], g[active]
        load[:, la, ga] += vec[:, active]
        total[la, ga] += vec[:, active].sum(axis=0)
        free[la, ga] -= 1
        holds[la, e[active], ga] = True
        gpu_of_item[la, k] = ga
    return gpu_of_item, item_expert


def _step_max_sums(proj, rise, scratch):
    """``sum_t max(proj[t, l, g] + rise[t, l, g], max_{h != g} proj[t, l, h])`` as ``[L, D]``.

    Uses ``max(proj + rise, others) = max(proj, others - rise) + rise`` (the ``+ rise`` term is
    dropped when it does not depend on ``g``, a per-layer constant); ``others`` is the step
    maximum ``top1``, except on the busiest GPU where it is the runner-up ``top2``: the sum is
    taken with ``top1`` and that column corrected. Works in `scratch` to avoid allocations.
    """
    layers, num_gpus = proj.shape[1:]
    arg1 = proj.argmax(axis=2)[:, :, None]
    top1 = np.take_along_axis(proj, arg1, axis=2)
    np.copyto(scratch, proj)
    np.put_along_axis(scratch, arg1, -np.inf, axis=2)
    top2 = np.take_along_axis(scratch, scratch.argmax(axis=2)[:, :, None], axis=2)
    per_gpu = rise.shape[2] > 1
    rise1 = np.take_along_axis(rise, arg1, axis=2) if per_gpu else rise
    excess = np.maximum(top1, top1 - rise1) - np.maximum(top1, top2 - rise1)  # >= 0, busiest column
    if per_gpu:
        np.subtract(top1, rise, out=scratch)
        np.maximum(proj, scratch, out=scratch)
        scratch += rise
    else:
        np.maximum(proj, top1 - rise, out=scratch)
    flat = (np.arange(layers) * num_gpus + arg1[:, :, 0]).ravel()
    fix = np.bincount(flat, weights=excess.ravel(), minlength=layers * num_gpus).reshape(layers, num_gpus)
    return scratch.sum(axis=0) - fix


def _repair(layer, k, w, c, item_expert, gpu_of_item, load, total, free, holds, in_node):
    """Make room for item ``k`` of layer ``l`` when every GPU with room holds its expert; returns its GPU.

    Breadth-first search for an augmenting path (the packing is a bipartite b-matching): a full
    GPU without the expert takes the item and passes one of its replicas to a GPU lacking that
    replica's expert, which passes one on in turn, until a GPU with a free slot is reached.
    """
    parent = {int(h): None for h in np.flatnonzero(in_node & ~holds[layer, item_expert[layer, k]])}
    for h in (queue := list(parent)):
        for j in np.flatnonzero(gpu_of_item[layer, :k] == h):
            for g in map(int, np.flatnonzero(in_node & ~holds[layer, item_expert[layer, j]])):
                if g in parent:
                    continue
                parent[g] = (h, j)
                if free[layer, g] == 0:
                    queue.append(g)
                    continue
                free[layer, g] -= 1
                while parent[g] is not None:  # walk back: replica j moves from h to g
                    h, j = parent[g]
                    y = item_expert[layer, j]
                    vec = w[:, layer, y] / c[layer, y]
                    load[:, layer, h] -= vec
                    load[:, layer, g] += vec
                    total[layer, h] -= vec.sum()
                    total[layer, g] += vec.sum()
                    holds[layer, y, h], holds[layer, y, g], gpu_of_item[layer, j] = False, True, g
                    g = h
                free[layer, g] += 1
                return g
    raise ValueError(f"layer {layer}: no GPU can take another replica of expert {item_expert[layer, k]}")


# -- validation -----------------------------------------------------------------------------------
def _weight2(weight):
    return check_weight(weight, "(L, E)", name="weight_le")


def _slots(num_slots, layers):
    arr = np.asarray(num_slots)
    if not np.issubdtype(arr.dtype, np.integer) or arr.ndim > 1 or (arr.ndim == 1 and arr.shape != (layers,)):
        raise ValueError(f"num_slots must be an int or {layers} ints, got {num_slots!r}")
    return np.broadcast_to(arr.astype(np.int64), (layers,)).copy()


def _expert_nodes(expert_nodes, layers, experts, num_nodes):
    nodes = int_array(expert_nodes, "expert_nodes", (layers, experts))
    for layer, e in np.argwhere((nodes < 0) | (nodes >= num_nodes))[:1]:
        raise ValueError(f"expert_nodes[{layer}, {e}] = {nodes[layer, e]} is not a node in [0, {num_nodes})")
    return nodes


def _node_sum(c, nodes, num_nodes):
    """``c`` summed over the experts of each node, ``[L, N]``."""
    flat = (np.arange(c.shape[0])[:, None] * num_nodes + nodes).ravel()
    summed = np.bincount(flat, weights=c.ravel(), minlength=c.shape[0] * num_nodes)
    return summed.reshape(-1, num_nodes).astype(np.int64)


def _check_spreadable(c, cap, nodes, gpn):
    """Gale-Ryser: the replicas fit with at most one per (expert, GPU) iff, in every layer and
    node, the ``k`` largest capacities sum to at most ``sum_e min(c_e, k)`` for every ``k``."""
    layers, num_nodes = c.shape[0], cap.shape[1] // gpn
    need = np.cumsum(-np.sort(-cap.reshape(layers, num_nodes, gpn), axis=2), axis=2)  # [L, N, k]
    member = (nodes[:, None, :] == np.arange(num_nodes)[:, None]).astype(np.int64)
    have = np.einsum("lne,lek->lnk", member, np.minimum(c[:, :, None], np.arange(1, gpn + 1)))
    for layer, n, k in np.argwhere(need > have)[:1]:
        where = f"layer {layer}" + (f" node {n}" if num_nodes > 1 else "")
        raise ValueError(f"{where}: the {k + 1} largest GPU capacities need {need[layer, n, k]} replicas but only "
                         f"{have[layer, n, k]} fit without two of an expert on a GPU")
