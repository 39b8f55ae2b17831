"""Migrate a running expert placement to a new layout: GPU relabelling, slot matching, move schedule.

Per MoE layer. A placement puts expert copies in *slots*; slot ``k`` of GPU ``g`` is the ``k``-th
entry of the GPU's expert weight tensor (in a GPU-major slot list, the ``k``-th slot with
``slot_gpu == g``). Anchor: SpotServe's device mapper (Miao et al., ASPLOS 2024, arXiv 2311.15566),
a Kuhn-Munkres matching of the new configuration's positions to devices that maximises reused weights.

**A. GPU relabelling** (:func:`relabel_gpus`). GPUs of equal capacity are interchangeable for balance.
Data: ``old[g', e]`` copies of expert ``e`` on GPU ``g'`` in the running layout, ``new[g, e]`` in the
planned one. Variables: a permutation ``pi``; bin ``g`` of the new layout runs on physical GPU ``pi(g)``.
(1) ``pi`` maps a bin only to a GPU of the same capacity; (2) with nodes, only within its node.
Objective: maximise ``sum_g sum_e min(new[g, e], old[pi(g), e])``, the copies already in place.

**B. Slot matching** (:func:`match_slots`), on every physical GPU ``g`` independently (a copy never
changes GPU without a transfer). Data: the running slots ``old[g, k]``, the copies the (relabelled) new
layout puts on ``g``; positions ``k < cap[g] = max(old slots, new slots)``. Variables ``x[i, k]`` in
{0, 1}: copy ``i`` takes position ``k``. (3) every copy takes one position, every position holds at
most one copy. Objective: maximise ``sum x[i, k] [old[g, k] == expert(i)]``; every other copy is a
copy to transfer, so ``copies = sum_g sum_e max(new[g, e] - old[g, e], 0)`` after relabelling.
A linear assignment per GPU (scipy ``linear_sum_assignment``, O(cap^3)).

**C. Move schedule**: :mod:`solvers.migration_schedule`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from solvers._checks import positive_int

__all__ = [
    "relabel_gpus",
    "copies_to_move",
    "match_slots",
    "SlotMatching",
    "SlotCopy",
    "SlotWrite",
    "MigrationInfeasible",
    "read_only_ints",
    "changed_slots",
]

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


def _relabel_pi(old_t: np.ndarray, new_t: np.ndarray, gpus_per_node: int | None) -> np.ndarray:
    """(1)-(2): the permutation ``pi`` (bin -> GPU) keeping the most copies, one assignment problem."""
    D = old_t.shape[0]
    keep = np.minimum(new_t[:, None, :], old_t[None, :, :]).sum(axis=2).astype(np.float64)  # [bin, gpu]
    allowed = new_t.sum(axis=1)[:, None] == old_t.sum(axis=1)[None, :]  # (1) same capacity
    if gpus_per_node:
        nodes = np.arange(D) // gpus_per_node
        allowed &= nodes[:, None] == nodes[None, :]  # (2) same node
    allowed[np.arange(D), np.arange(D)] = True  # a bin must always be able to stay where it is
    rows, cols = linear_sum_assignment(np.where(allowed, -keep, float(new_t.sum() + 1) * 4))
    pi = np.empty(D, dtype=np.int64)
    pi[rows] = cols
    # unreachable: the identity is always allowed and cheaper than any forbidden pair
    return pi if allowed[rows, cols].all() else np.arange(D)


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
    for r in range(np_.shape[0]):
        pi = _relabel_pi(_table(op[r], og[r], D, E), _table(np_[r], ng[r], D, E), gpus_per_node)
        used = np_[r] >= 0
        gpu = pi[ng[r][used]]
        exp = np_[r][used]
        order = np.lexsort((exp, gpu))
        out_p2l[r, : order.size] = exp[order]
        out_gpu[r, : order.size] = gpu[order]
    return out_p2l, out_gpu


class SlotCopy(NamedTuple):
    """A copy the new placement needs: ``expert`` into slot ``slot`` of GPU ``gpu``, planned from
    ``src_gpu``, a GPU holding it in the running placement (same GPU, then same node, then the GPU
    sending the fewest copies so far)."""

    gpu: int
    slot: int
    expert: int
    src_gpu: int


class SlotWrite(NamedTuple):
    """One write of a schedule step: slot ``(gpu, slot)`` receives ``expert`` from ``(src_gpu,
    src_slot)``. ``commit``: the source is the GPU's own staging slot, released after the step."""

    gpu: int
    slot: int
    expert: int
    src_gpu: int
    src_slot: int
    commit: bool = False


def _short(ids, limit: int = 8) -> str:
    """``[0, 1, 2]``, or the first ``limit`` ids and how many more.

    >>> _short(range(10), 3)
    '[0, 1, 2, ... +7 more]'
    """
    ids = [int(i) for i in ids]
    return str(ids) if len(ids) <= limit else f"{str(ids[:limit])[:-1]}, ... +{len(ids) - limit} more]"


class MigrationInfeasible(ValueError):
    """No order of the copies keeps every expert served with the staging slots given.

    ``cycles`` holds ``(experts, gpus)`` of every move cycle of single-replica experts.
    """

    def __init__(self, cycles: list[tuple[tuple[int, ...], tuple[int, ...]]], spare_slots_per_gpu: int):
        self.cycles = tuple(cycles)
        parts = "; ".join(f"experts {_short(e)} on GPUs {_short(g)}" for e, g in self.cycles[:3])
        more = f" (+{len(self.cycles) - 3} more)" if len(self.cycles) > 3 else ""
        super().__init__(
            f"{len(self.cycles)} move cycle(s) of single-replica experts cannot run with "
            f"{spare_slots_per_gpu} staging slot(s) per GPU: {parts}{more}; each needs 1 staging slot"
        )


def read_only_ints(a) -> np.ndarray:
    """A read-only int64 copy of ``a`` (the arrays of a matching or schedule cannot change under a caller)."""
    out = np.array(a, dtype=np.int64)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class SlotMatching:
    """One layer's new placement in physical coordinates (B) and the copies it needs.

    ``old[g, k]`` / ``target[g, k]``: expert in slot ``k`` of GPU ``g`` now / after the migration
    (``-1``: empty, or released at the end); ``origin[g, k]``: index of that copy in the new layout's
    slot list; ``capacity[g]``: positions in use on ``g`` during the migration, ``max(old, new)``
    slots; ``gpu_of_bin[b]``: physical GPU running the new layout's GPU ``b``.
    """

    old: np.ndarray
    target: np.ndarray
    origin: np.ndarray
    capacity: np.ndarray
    gpu_of_bin: np.ndarray
    copies: tuple[SlotCopy, ...]
    gpus_per_node: int | None = None

    @property
    def kept(self) -> int:
        """Copies of the new layout already in their slot."""
        return int(((self.target >= 0) & (self.target == self.old)).sum())


def changed_slots(old: np.ndarray, target: np.ndarray) -> list[tuple[int, int]]:
    """``(gpu, slot)`` of every position whose target copy is not already there (a copy to write)."""
    g, k = np.nonzero((target >= 0) & (target != old))
    return list(zip(g.tolist(), k.tolist()))


def _plan_sources(old: np.ndarray, target: np.ndarray, gpus_per_node: int | None) -> tuple[SlotCopy, ...]:
    sends = np.zeros(old.shape[0], dtype=np.int64)
    out = []
    for g, k in changed_slots(old, target):
        e = int(target[g, k])
        holders = np.unique(np.nonzero(old == e)[0]).tolist()
        h = min(holders, key=lambda h: (h != g, bool(gpus_per_node) and h // gpus_per_node != g // gpus_per_node, sends[h], h))
        sends[h] += 1
        out.append(SlotCopy(g, k, e, h))
    return tuple(out)


def match_slots(old_phy2log, old_slot_gpu, new_phy2log, new_slot_gpu, num_gpus: int, num_experts: int,
                *, relabel: bool = True, gpus_per_node: int | None = None) -> SlotMatching:
    """Place one layer's new layout on the running GPUs and slots with the fewest copies (A, B).

    Parameters
    ----------
    old_phy2log, old_slot_gpu : array_like of int, shape (P_old,)
        Running layout: expert and GPU of every slot; the ``k``-th slot of GPU ``g`` in this order is
        physical slot ``k`` of ``g``.
    new_phy2log, new_slot_gpu : array_like of int, shape (P_new,)
        New layout (its GPUs are bins unless ``relabel`` is False).
    num_gpus, num_experts : int
    relabel : bool, default True
        Permute the new layout's GPUs first (:func:`relabel_gpus`); off keeps GPU ``g`` on GPU ``g``.
    gpus_per_node : int, optional
        Relabel within nodes only; prefer sources in the receiving GPU's node.

    Returns
    -------
    SlotMatching
        ``len(copies)`` is the minimum over GPU relabellings (when on) and slot positions.

    Raises
    ------
    ValueError
        Mismatched lengths, ids out of range, or an expert missing from either layout.

    Examples
    --------
    GPU 0 holds experts 0, 1 and GPU 1 holds 2, 3; the new layout swaps experts 1 and 2, listing
    GPU 0's copies as (2, 0). Expert 0 stays in slot 0; expert 2 comes from GPU 1 into slot 1.

    >>> m = match_slots([0, 1, 2, 3], [0, 0, 1, 1], [2, 0, 1, 3], [0, 0, 1, 1], 2, 4, relabel=False)
    >>> m.target.tolist(), m.kept, m.copies
    ([[0, 2], [1, 3]], 2, (SlotCopy(gpu=0, slot=1, expert=2, src_gpu=1), SlotCopy(gpu=1, slot=0, expert=1, src_gpu=0)))
    """
    D, E = positive_int(num_gpus, "num_gpus"), positive_int(num_experts, "num_experts")
    op, og, np_, ng = (np.asarray(a, dtype=np.int64).ravel() for a in (old_phy2log, old_slot_gpu, new_phy2log, new_slot_gpu))
    for name, p2l, sg in (("old", op, og), ("new", np_, ng)):
        if p2l.size != sg.size:
            raise ValueError(f"{name} layout: {p2l.size} experts for {sg.size} slot GPUs")
        if p2l.size and (p2l.min() < 0 or p2l.max() >= E or sg.min() < 0 or sg.max() >= D):
            raise ValueError(f"{name} layout: expert ids must be in 0..{E - 1} and GPUs in 0..{D - 1}")
        missing = np.flatnonzero(np.bincount(p2l, minlength=E) == 0)
        if missing.size:
            raise ValueError(f"{name} layout: experts {missing[:5].tolist()} have no replica")
    old_t, new_t = _table(op, og, D, E), _table(np_, ng, D, E)
    pi = _relabel_pi(old_t, new_t, gpus_per_node) if relabel else np.arange(D)
    n_old = old_t.sum(axis=1)
    n_new = np.empty(D, dtype=np.int64)
    n_new[pi] = new_t.sum(axis=1)
    cap = np.maximum(n_old, n_new)
    old = np.full((D, int(cap.max(initial=0))), -1, dtype=np.int64)
    target, origin = old.copy(), old.copy()
    for g in range(D):
        old[g, : n_old[g]] = op[og == g]
    for b in range(D):
        g = int(pi[b])
        idx = np.flatnonzero(ng == b)
        weight = (np_[idx][:, None] == old[g, : cap[g]][None, :]).astype(np.float64)
        rows, cols = linear_sum_assignment(weight, maximize=True)  # (3)
        target[g, cols], origin[g, cols] = np_[idx[rows]], idx[rows]
    arrays = (read_only_ints(a) for a in (old, target, origin, cap, pi))
    return SlotMatching(*arrays, _plan_sources(old, target, gpus_per_node), gpus_per_node)
