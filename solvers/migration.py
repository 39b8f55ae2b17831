"""Relabel a new replica layout's GPUs so that it keeps as many expert copies in place as possible.

GPUs of equal capacity are interchangeable for balance: permuting which physical GPU receives which
"bin" of a new layout changes no load, only the weights that must be copied. Per layer:

Data: ``old[g', e]`` copies of expert ``e`` on GPU ``g'`` in the running layout, ``new[g, e]`` in the
planned one, capacities ``cap_new[g]``, ``cap_old[g']``; optional nodes (``g // gpus_per_node``).

Variables: a permutation ``pi`` of GPUs; bin ``g`` of the new layout goes to physical GPU ``pi(g)``.

Constraints: (1) ``pi`` maps a bin only to a GPU of the same capacity in this layer;
(2) with nodes, only within the same node (an expert's node locality is kept).

Objective: maximise ``sum_g sum_e min(new[g, e], old[pi(g), e])``, the copies already in place; then the
copies to move are ``sum_g sum_e max(new[g, e] - old[pi(g), e], 0)``.

This is a linear assignment problem per layer (scipy ``linear_sum_assignment``, Hungarian /
Jonker-Volgenant, O(D^3)); forbidden pairs get a prohibitive cost.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["relabel_gpus", "copies_to_move"]


def _table(p2l: np.ndarray, sg: np.ndarray, num_gpus: int, num_experts: int) -> np.ndarray:
    used = p2l >= 0
    flat = np.bincount(sg[used] * num_experts + p2l[used], minlength=num_gpus * num_experts)
    return flat.reshape(num_gpus, num_experts)


def copies_to_move(old_phy2log, old_slot_gpu, new_phy2log, new_slot_gpu, num_gpus: int, num_experts: int) -> np.ndarray:
    """Expert copies each layer of the new layout needs that its GPU does not hold yet, ``[L]``.

    Examples
    --------
    >>> copies_to_move([[0, 1, 1, 2]], [[0, 0, 1, 1]], [[0, 2, 1, 2]], [[0, 0, 1, 1]], 2, 3).tolist()
    [1]
    """
    op, og, np_, ng = (np.atleast_2d(np.asarray(a, dtype=np.int64)) for a in (old_phy2log, old_slot_gpu, new_phy2log, new_slot_gpu))
    return np.array([
        int(np.maximum(_table(np_[r], ng[r], num_gpus, num_experts) - _table(op[r], og[r], num_gpus, num_experts), 0).sum())
        for r in range(op.shape[0])
    ])


def relabel_gpus(old_phy2log, old_slot_gpu, new_phy2log, new_slot_gpu, num_gpus: int, num_experts: int,
                 *, gpus_per_node: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Permute the GPUs of the new layout (per layer) to keep the most expert copies in place.

    Parameters
    ----------
    old_phy2log, old_slot_gpu, new_phy2log, new_slot_gpu : array_like of int, shape (L, Pmax)
        Padded layouts (``-1`` padding), slots GPU-major.
    num_gpus, num_experts : int
    gpus_per_node : int, optional
        Keep every bin on a GPU of its own node.

    Returns
    -------
    phy2log, slot_gpu : ndarray of int64, shape (L, Pmax)
        The new layout with relabelled GPUs, renumbered GPU-major (by expert id within a GPU); the
        per-GPU loads of every step are a permutation of the input's, so balance is unchanged.

    Examples
    --------
    The new layout is the old one with GPUs swapped: relabelling moves nothing.

    >>> p2l, sg = relabel_gpus([[0, 1, 2, 3]], [[0, 0, 1, 1]], [[2, 3, 0, 1]], [[0, 0, 1, 1]], 2, 4)
    >>> p2l.tolist(), sg.tolist()
    ([[0, 1, 2, 3]], [[0, 0, 1, 1]])
    """
    op, og, np_, ng = (np.atleast_2d(np.asarray(a, dtype=np.int64)) for a in (old_phy2log, old_slot_gpu, new_phy2log, new_slot_gpu))
    if op.shape[0] != np_.shape[0]:
        raise ValueError(f"old and new layouts have {op.shape[0]} and {np_.shape[0]} layers")
    D, E = int(num_gpus), int(num_experts)
    out_p2l = np.full_like(np_, -1)
    out_gpu = np.full_like(ng, -1)
    big = float(np_.shape[1] + 1) * 4
    for r in range(np_.shape[0]):
        old_t, new_t = _table(op[r], og[r], D, E), _table(np_[r], ng[r], D, E)
        keep = np.minimum(new_t[:, None, :], old_t[None, :, :]).sum(axis=2).astype(np.float64)  # [bin, gpu]
        allowed = new_t.sum(axis=1)[:, None] == old_t.sum(axis=1)[None, :]  # (1) same capacity
        if gpus_per_node:
            nodes = np.arange(D) // gpus_per_node
            allowed &= nodes[:, None] == nodes[None, :]  # (2) same node
        for g in range(D):  # a bin must always be able to stay where it is
            allowed[g, g] = True
        cost = np.where(allowed, -keep, big)
        rows, cols = linear_sum_assignment(cost)
        pi = np.empty(D, dtype=np.int64)
        pi[rows] = cols
        if not allowed[rows, cols].all():  # unreachable: the identity is always allowed and cheaper
            pi = np.arange(D)
        used = np_[r] >= 0
        gpu = pi[ng[r][used]]
        exp = np_[r][used]
        order = np.lexsort((exp, gpu))
        out_p2l[r, : order.size] = exp[order]
        out_gpu[r, : order.size] = gpu[order]
    return out_p2l, out_gpu
