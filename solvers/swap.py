"""Swap local search for replica layouts (optional after a packing: ``docs/replicas.md``, "Why these methods").

Per layer, repeatedly: rank GPUs by how often they are a step's busiest; for the busiest ones,
evaluate every swap of one of their replicas with a replica on another GPU (vectorised over the
pairs and the steps; the three largest GPU loads of each step give the maximum of the GPUs a swap
does not touch) and apply the best swap that strictly raises ``sum_t mean_t / max_t``. A swap never
puts two replicas of an expert on a GPU, stays inside a node when asked, and keeps every GPU's slot
count. It stops when no swap improves, at the swap cap, when its work budget is spent (candidate
swaps x steps evaluated: the same inputs give the same layout on any machine load) or, only if one
is given, at a wall-clock time limit (then the result depends on the machine and the report says
``time_limit``).
"""

from __future__ import annotations

import time

import numpy as np

from solvers._checks import check_padded_layout, check_weight, positive_int
from solvers.replay import gpu_major_layout, replay_gpu_loads  # noqa: F401  (doctest)

__all__ = ["swap_search", "search_swaps"]

_TIE_RTOL = 1e-12  # scores this close (relative) count as equal


def swap_search(weight, phy2log, slot_gpu, num_gpus, *, max_evaluations=None, time_limit_s=None, max_steps=None,
                gpus_per_node=None):
    """Swap replicas between GPUs while ``sum_t mean_t / max_t`` grows, per layer.

    Each round takes the GPUs by how often they are a step's busiest, evaluates every swap of one
    of their replicas with a replica on another GPU (vectorised over pairs and steps; the top 3
    GPUs of each step give the maximum of the untouched GPUs) and applies the best strictly
    improving one. Swaps never put two replicas of an expert on a GPU, stay inside a node with
    `gpus_per_node`, and keep every GPU's slot count.

    Parameters
    ----------
    weight, phy2log, slot_gpu, num_gpus
        As in :func:`solvers.replay.replay_gpu_loads` (even split).
    max_evaluations : int, optional
        Work budget of the call: candidate swaps x steps evaluated (about 10^8 per second on one
        core); each layer gets an equal share of the budget left. Default: no budget beyond
        `max_steps`. The result depends only on the inputs.
    time_limit_s : float, optional
        Wall-clock cap for the call (opt-in; each layer gets an equal share of the time left).
        When it stops a layer the result depends on the machine's speed and load.
    max_steps : int, optional
        Cap on applied swaps per layer (default ``4 * Pmax``).
    gpus_per_node : int, optional
        Restrict swaps to GPUs of one node.

    Returns
    -------
    phy2log, slot_gpu : ndarray of int64

    Examples
    --------
    >>> w = [[8.0, 1, 3, 7]]
    >>> replay_gpu_loads(w, [[0, 3, 1, 2]], [[0, 0, 1, 1]], 2).tolist()
    [[[15.0, 4.0]]]
    >>> p2l, gpu = swap_search(w, [[0, 3, 1, 2]], [[0, 0, 1, 1]], 2)
    >>> p2l.tolist(), replay_gpu_loads(w, p2l, gpu, 2).tolist()
    ([[2, 3, 0, 1]], [[[10.0, 9.0]]])
    """
    w = check_weight(weight, "(T, L, E)")
    return search_swaps(w, phy2log, slot_gpu, num_gpus, time_limit_s, max_steps, gpus_per_node,
                        max_evaluations=max_evaluations)[:2]


def search_swaps(w, phy2log, slot_gpu, num_gpus, time_limit_s, max_steps, gpus_per_node, *, max_evaluations=None):
    """:func:`swap_search` on loads already checked (a ``(T, L, E)`` float array, as
    :func:`solvers._checks.check_weight` returns them); also returns the stop reason
    (``"completed"``, ``"iteration_limit"`` for the swap cap or the work budget, or ``"time_limit"``),
    for planners that report it."""
    layers, experts = w.shape[1:]
    p2l, sg, counts = check_padded_layout(phy2log, slot_gpu, num_gpus, experts, layers)
    cap_steps = 4 * p2l.shape[1] if max_steps is None else positive_int(max_steps, "max_steps")
    budget = None if max_evaluations is None else positive_int(max_evaluations, "max_evaluations")
    end = None if time_limit_s is None else time.perf_counter() + float(time_limit_s)
    node = np.arange(num_gpus) // (gpus_per_node or num_gpus)
    stop = "completed"
    for layer in range(layers):
        used = p2l[layer] >= 0
        ex, gpu = p2l[layer, used], sg[layer, used]  # copies, changed in place and written back
        deadline = None
        if end is not None:  # the layers left share the time left
            now = time.perf_counter()
            deadline = now + (end - now) / (layers - layer)
        share = None if budget is None else budget // (layers - layer)  # ... and the work left
        reason, used_work = _swap_layer(w[:, layer, ex] / counts[layer, ex], ex, gpu, experts, node, deadline,
                                        cap_steps, share)
        if budget is not None:
            budget -= used_work
        stop = reason if stop != "time_limit" and reason != "completed" else stop
        p2l[layer, used], sg[layer, used] = ex, gpu
    return *gpu_major_layout(np.where(p2l >= 0, sg, 0), p2l, experts), stop


def _swap_layer(vec, ex, gpu, experts, node, deadline, cap_steps, work_cap):
    """Swaps in one layer, in place on ``ex`` (expert of each slot) and ``gpu``; returns the stop reason
    and the work done (candidate swaps x steps evaluated). The work cap is checked before each
    evaluation, so the layer never exceeds it and stops at the same point on any machine."""
    num_gpus = len(node)
    load = np.zeros((vec.shape[0], num_gpus))
    np.add.at(load.T, gpu, vec.T)
    mean = load.mean(axis=1)
    holds = np.zeros((experts, num_gpus), dtype=bool)
    holds[ex, gpu] = True
    work = 0
    for _ in range(cap_steps):
        if deadline is not None and time.perf_counter() > deadline:
            return "time_limit", work
        peak = load.max(axis=1)
        current = np.divide(mean, peak, out=np.ones_like(peak), where=peak > 0).sum()
        padded = np.pad(load, ((0, 0), (0, 3)), constant_values=-np.inf)  # >= 3 columns
        top = np.argsort(-padded, axis=1, kind="stable")[:, :3]
        top_val = np.take_along_axis(padded, top, axis=1)
        busiest = np.bincount(load.argmax(axis=1), minlength=num_gpus)
        for a in np.argsort(-busiest, kind="stable")[: np.count_nonzero(busiest)]:
            mine = np.flatnonzero(gpu == a)
            theirs = np.flatnonzero((gpu != a) & (node[gpu] == node[a]))
            b = gpu[theirs]
            cost = mine.size * theirs.size * vec.shape[0]
            if work_cap is not None and work + cost > work_cap:
                return "iteration_limit", work
            work += cost
            ok = ~holds[ex[theirs], a][None, :] & ~holds[ex[mine][:, None], b[None, :]]
            if not ok.any():
                continue
            delta = vec[:, theirs].T[None] - vec[:, mine].T[:, None]  # [i, j, T]: change on GPU a
            outside = (top[None] != a) & (top[None] != b[:, None, None])  # [j, T, 3]
            other = np.take_along_axis(top_val[None], outside.argmax(axis=2)[..., None], axis=2)[..., 0]
            new_peak = np.maximum(np.maximum(load[:, a] + delta, load[:, b].T[None] - delta), other[None])
            score = np.divide(mean, new_peak, out=np.ones_like(new_peak), where=new_peak > 0).sum(axis=2)
            i, j = np.unravel_index(np.where(ok, score, -np.inf).argmax(), ok.shape)
            if ok[i, j] and score[i, j] > current * (1 + _TIE_RTOL) + _TIE_RTOL:
                si, sj, bj = mine[i], theirs[j], b[j]
                load[:, a] += delta[i, j]
                load[:, bj] -= delta[i, j]
                holds[ex[si], a] = holds[ex[sj], bj] = False
                holds[ex[si], bj] = holds[ex[sj], a] = True
                gpu[si], gpu[sj] = bj, a
                break
        else:
            return "completed", work
    return "iteration_limit", work
