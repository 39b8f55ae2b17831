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

**C. Move schedule** (:func:`schedule_moves`, checked by :func:`check_schedule`). A step overwrites
some slots; each write receives an expert from a source slot. (4) *serving*: during a step every
expert keeps >= 1 slot that is not being written (a written slot serves its new expert only after
the step); (5) *memory*: on each GPU at most ``spare`` staging slots (positions ``cap[g] ..
cap[g] + spare - 1``) are in use, counting those being written; (6) *sources*: a source slot holds
the expert when the step starts and is not written in it; (7) at the end the kept slots are
untouched, every other position holds one of its GPU's incoming copies and the staging slots are
empty. A staged copy goes to a staging slot first; a *commit* (a local copy) later moves it into a
position and releases the staging slot. Which incoming copy of a GPU fills which of its changed
slots is left to the schedule (every pairing needs the same copies).

Feasibility without staging: write a move as an edge ``d -> c`` (a slot's old and new expert),
``x(e) = replicas - 1`` spare tokens. A move needs ``x(d) >= 1`` and passes a token from ``d`` to
``c``, so a valid order is a decomposition of the moves into trails that start where tokens are.
By an Euler-circuit argument this exists iff every expert keeps a replica at the end and every
weakly connected component of the moves that is balanced (in = out at every expert) holds an
expert with two replicas. Pairings on one GPU can be swapped to merge components, so with free
pairing the components to test are those of the graph where a GPU joins all experts leaving and
entering it. A *stuck* component (balanced, all single, no empty slot or staged copy) is a move
cycle of single-replica experts: without a staging slot no pairing and no order works.

Algorithm: stage one copy per stuck component in step 1; then, per step, greedily add every write
(in place, or a commit) that keeps (4)-(6), filling each slot with the incoming copy whose expert
unblocks most (a single replica that must leave elsewhere), first all at once and, if that leaves a
component stuck, one at a time keeping only writes after which none is (so it never dead-ends);
then stage copies still to come while a staging slot is free (staging never makes a component
stuck; one local copy more, fewer steps). Each stuck test is O(n + E) for n pending moves.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from solvers._checks import non_negative_int, positive_int

__all__ = [
    "relabel_gpus",
    "copies_to_move",
    "match_slots",
    "schedule_moves",
    "check_schedule",
    "SlotMatching",
    "SlotCopy",
    "SlotWrite",
    "MoveSchedule",
    "MigrationInfeasible",
]

# Move-graph nodes besides experts: -1 an empty position (as the expert of a slot: unlimited supply),
# _BOT the release of a staging slot, -3 - g GPU g.
_BOT = -2


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


def _frozen(a) -> np.ndarray:
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


def _moves(old: np.ndarray, target: np.ndarray) -> list[tuple[int, int]]:
    g, k = np.nonzero((target >= 0) & (target != old))
    return list(zip(g.tolist(), k.tolist()))


def _plan_sources(old: np.ndarray, target: np.ndarray, gpus_per_node: int | None) -> tuple[SlotCopy, ...]:
    sends = np.zeros(old.shape[0], dtype=np.int64)
    out = []
    for g, k in _moves(old, target):
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
    return SlotMatching(_frozen(old), _frozen(target), _frozen(origin), _frozen(cap), _frozen(pi),
                        _plan_sources(old, target, gpus_per_node), gpus_per_node)


@dataclass(frozen=True)
class MoveSchedule:
    """Ordered steps of writes and the placement they reach.

    ``target`` / ``origin``: the final placement, the matching's except that a GPU's incoming copies
    may sit in other of its changed slots (same kept slots, same copies); ``moves``: the copies
    with their final slot and planned source.
    """

    steps: tuple[tuple[SlotWrite, ...], ...]
    target: np.ndarray
    origin: np.ndarray
    moves: tuple[SlotCopy, ...]
    spare_slots_per_gpu: int

    @property
    def copies(self) -> int:
        """Transfers: direct writes and writes into a staging slot."""
        return sum(not w.commit for step in self.steps for w in step)

    @property
    def commits(self) -> int:
        """Local copies out of a staging slot."""
        return sum(w.commit for step in self.steps for w in step)


class _Step:
    """Writes chosen for one step: ``(kind, gpu, slot, expert, killed)``, kind direct/commit/stage."""

    def __init__(self, num_gpus: int, num_experts: int):
        self.writes: list[tuple[str, int, int, int, int]] = []
        self.taken = [set() for _ in range(num_gpus)]
        self.used = [Counter() for _ in range(num_gpus)]
        self.commits = [0] * num_gpus
        self.stages = [0] * num_gpus
        self.delta = np.zeros(num_experts, dtype=np.int64)  # replica count change after the step

    def add(self, kind: str, g: int, k: int, c: int, d: int) -> None:
        self.writes.append((kind, g, k, c, d))
        if kind != "stage":
            self.taken[g].add(k)
        if kind == "commit":
            self.commits[g] += 1
        else:
            self.used[g][c] += 1
            self.delta[c] += 1
        self.stages[g] += kind == "stage"
        if d >= 0:
            self.delta[d] -= 1

    def undo(self) -> None:
        kind, g, k, c, d = self.writes.pop()
        self.taken[g].discard(k)
        if kind == "commit":
            self.commits[g] -= 1
        else:
            self.used[g][c] -= 1
            self.delta[c] -= 1
        self.stages[g] -= kind == "stage"
        if d >= 0:
            self.delta[d] += 1


class _Scheduler:
    """State of one layer while it is scheduled: slot contents, pending slots, copies to come.

    Invariant: on every GPU, pending slots = copies still to come + staged copies.
    """

    def __init__(self, matching: SlotMatching, spare: int):
        self.spare = spare
        self.cap, self.gpn = matching.capacity, matching.gpus_per_node
        self.D, C = matching.old.shape
        self.cur = np.full((self.D, C + spare), -1, dtype=np.int64)
        self.cur[:, :C] = matching.old
        self.E = int(max(matching.old.max(initial=0), matching.target.max(initial=0))) + 1
        self.count = np.bincount(self.cur[self.cur >= 0], minlength=self.E)
        self.pend = [set() for _ in range(self.D)]
        self.inc = [Counter() for _ in range(self.D)]
        for g, k in _moves(matching.old, matching.target):
            self.pend[g].add(k)
            self.inc[g][int(matching.target[g, k])] += 1
        self.staged: list[list[tuple[int, int, int]]] = [[] for _ in range(self.D)]  # (slot, expert, src)
        self.planned = defaultdict(list)
        for c in matching.copies:
            self.planned[(c.gpu, c.expert)].append(c.src_gpu)
        self.moves: list[SlotCopy] = []

    def stuck(self, step: _Step) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """(experts, GPUs) of every component stuck after ``step``: a GPU joins its pending slots'
        experts, the experts still to come and, if it holds a staged copy, the release node."""
        parent: dict[int, int] = {}

        def find(x: int) -> int:
            while parent.get(x, x) != x:
                parent[x] = parent.get(parent[x], parent[x])
                x = parent[x]
            return x

        def union(a: int, b: int) -> None:
            a, b = find(a), find(b)
            if a != b:
                parent[a] = b

        balance: dict[int, int] = defaultdict(int)
        for g in range(self.D):
            node = -3 - g
            for k in self.pend[g] - step.taken[g]:
                d = int(self.cur[g, k])
                union(node, d)
                balance[d] += 1
            for c, n in (self.inc[g] - step.used[g]).items():
                union(node, c)
                balance[c] -= n
            if len(self.staged[g]) - step.commits[g] + step.stages[g] > 0:
                union(node, _BOT)
        count = self.count + step.delta
        fine = {find(n) for n, b in balance.items() if n < 0 or b != 0 or count[n] >= 2} | {find(_BOT)}
        comps: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        for n in balance:
            if find(n) not in fine:
                comps[find(n)][0].append(n)
        for g in range(self.D):
            if self.pend[g] - step.taken[g] and find(-3 - g) in comps:
                comps[find(-3 - g)][1].append(g)
        return sorted((tuple(sorted(e)), tuple(sorted(g))) for e, g in comps.values())

    def _best(self, g: int, step: _Step, needed: set[int]) -> list[int]:
        """Copies still to come on ``g``, the ones that unblock a kill elsewhere first."""
        rem = self.inc[g] - step.used[g]
        return sorted(rem, key=lambda c: (c not in needed, self.count[c] + step.delta[c], c))

    def fill(self, step: _Step, *, check: bool) -> None:
        """Add every direct write and commit that keeps (4); with ``check``, only if no component
        is stuck afterwards."""
        kills = self.count.copy()
        needed = {int(self.cur[g, k]) for g in range(self.D) for k in self.pend[g]}
        needed = {e for e in needed if e >= 0 and self.count[e] == 1}
        for g in range(self.D):
            for k in sorted(self.pend[g]):
                d = int(self.cur[g, k])
                if d >= 0 and kills[d] <= 1:  # (4)
                    continue
                options = ([None] if len(self.staged[g]) > step.commits[g] else []) + self._best(g, step, needed)
                for c in options[: None if check else 1]:
                    step.add("commit" if c is None else "direct", g, k, -1 if c is None else c, d)
                    if not check or not self.stuck(step):
                        if d >= 0:
                            kills[d] -= 1
                        break
                    step.undo()

    def stage_blocked(self, step: _Step) -> None:
        """Stage copies still to come while the GPU has a free staging slot (5); never makes a
        component stuck (the copy's expert gains a replica, its GPU a release node)."""
        needed = {e for e in range(self.E) if self.count[e] == 1}
        for g in range(self.D):
            while len(self.staged[g]) + step.stages[g] < self.spare and (self.inc[g] - step.used[g]):
                step.add("stage", g, -1, self._best(g, step, needed)[0], -1)

    def apply(self, step: _Step) -> tuple[SlotWrite, ...]:
        """Pick sources (6), apply the step and return its writes."""
        written, slots = set(), []
        for kind, g, k, c, _ in step.writes:
            if kind == "stage":
                k = next(t for t in range(int(self.cap[g]), int(self.cap[g]) + self.spare)
                         if self.cur[g, t] < 0 and (g, t) not in written)
            written.add((g, k))
            slots.append(k)
        sends: dict[int, int] = defaultdict(int)
        writes, release = [], []
        for (kind, g, _, c, _), k in zip(step.writes, slots):
            if kind == "commit":
                t, e, src = self.staged[g].pop(0)
                writes.append(SlotWrite(g, k, e, g, t, True))
                self.moves.append(SlotCopy(g, k, e, src))
                release.append((g, t))
                self.pend[g].discard(k)
                continue
            want = self.planned[(g, c)].pop(0)
            hs, js = np.nonzero(self.cur == c)
            h, j = min(((int(h), int(j)) for h, j in zip(hs, js) if (h, j) not in written),
                       key=lambda hj: (hj[0] != g, bool(self.gpn) and hj[0] // self.gpn != g // self.gpn,
                                       hj[0] != want, sends[hj[0]], hj))
            sends[h] += 1
            writes.append(SlotWrite(g, k, c, h, j))
            self.inc[g][c] -= 1
            if kind == "stage":
                self.staged[g].append((k, c, want))
            else:
                self.moves.append(SlotCopy(g, k, c, want))
                self.pend[g].discard(k)
        for w in writes:
            self.cur[w.gpu, w.slot] = w.expert
        for s in release:
            self.cur[s] = -1
        self.count = np.bincount(self.cur[self.cur >= 0], minlength=self.E)
        return tuple(writes)


def schedule_moves(matching: SlotMatching, *, spare_slots_per_gpu: int = 0) -> MoveSchedule:
    """Order one layer's copies into steps that keep every expert served (C).

    Parameters
    ----------
    matching : SlotMatching
        From :func:`match_slots`.
    spare_slots_per_gpu : int, default 0
        Staging slots each GPU may use beyond its ``capacity``; 0 means writes go in place only.

    Returns
    -------
    MoveSchedule
        Passes :func:`check_schedule` against its own ``target``; as many copies as the matching.

    Raises
    ------
    MigrationInfeasible
        A move cycle of single-replica experts and no staging slot.

    Examples
    --------
    Two GPUs swap their only copies of experts 0 and 1: impossible in place, two steps with a
    staging slot (stage both copies, then commit both).

    >>> m = match_slots([0, 1], [0, 1], [1, 0], [0, 1], 2, 2, relabel=False)
    >>> schedule_moves(m)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    solvers.migration.MigrationInfeasible: 1 move cycle(s) ... per GPU: experts [0, 1] on GPUs [0, 1]; ...
    >>> s = schedule_moves(m, spare_slots_per_gpu=1)
    >>> [len(step) for step in s.steps], s.copies, s.commits
    ([2, 2], 2, 2)
    >>> check_schedule(m.old, s.target, m.capacity, s.steps, spare_slots_per_gpu=1)
    []
    """
    spare = non_negative_int(spare_slots_per_gpu, "spare_slots_per_gpu")
    state = _Scheduler(matching, spare)
    stuck = state.stuck(_Step(state.D, state.E))
    if stuck and spare == 0:
        raise MigrationInfeasible(stuck, spare)
    # components are closed over GPUs, so stuck ones share no GPU: one staging slot each suffices
    first = [(min(gpus), min(+state.inc[min(gpus)])) for _, gpus in stuck]
    steps = []
    while any(state.pend):
        for check in (False, True):  # fast path: every locally safe write; else one at a time
            step = _Step(state.D, state.E)
            for g, c in first:
                step.add("stage", g, -1, c, -1)
            state.fill(step, check=check)
            state.stage_blocked(step)
            if not state.stuck(step):
                break
        if not step.writes:  # unreachable: a state with no stuck component has a safe write
            raise RuntimeError("internal error: migration schedule made no progress")
        first = []
        steps.append(state.apply(step))
    old, mt = matching.old, matching.target
    target = np.where(mt >= 0, state.cur[:, : old.shape[1]], -1)
    origin = np.where((mt >= 0) & (mt == old), matching.origin, -1)
    pool = defaultdict(list)
    changed = _moves(old, mt)
    for g, k in changed:
        pool[(g, int(mt[g, k]))].append(int(matching.origin[g, k]))
    for g, k in changed:
        origin[g, k] = pool[(g, int(target[g, k]))].pop(0)
    return MoveSchedule(tuple(steps), _frozen(target), _frozen(origin), tuple(sorted(state.moves)), spare)


def check_schedule(old, target, capacity, steps, *, spare_slots_per_gpu: int = 0) -> list[str]:
    """Replay a schedule and list every violation of (4)-(7); an empty list means it is valid.

    Independent of :func:`schedule_moves`: it simulates the slots step by step from ``old``.

    Examples
    --------
    Overwriting the only copy of expert 1 breaks (4):

    >>> check_schedule([[0], [1]], [[0], [0]], [1, 1], [[SlotWrite(1, 0, 0, 0, 0)]])
    ['step 1: expert 1 has no serving replica']
    """
    old, target = np.atleast_2d(np.asarray(old, dtype=np.int64)), np.atleast_2d(np.asarray(target, dtype=np.int64))
    cap = np.asarray(capacity, dtype=np.int64)
    spare = int(spare_slots_per_gpu)
    D, C = old.shape
    cur = np.full((D, C + spare), -1, dtype=np.int64)
    cur[:, :C] = old
    experts = set(np.unique(old[old >= 0]).tolist())
    problems = []
    for i, step in enumerate(steps, 1):
        where = f"step {i}"
        written: set[tuple[int, int]] = set()
        for w in step:
            if not (0 <= w.gpu < D and 0 <= w.slot < cap[w.gpu] + spare):  # (5): staging slots are cap .. cap + spare - 1
                problems.append(f"{where}: slot {w.slot} of GPU {w.gpu} does not exist (capacity + {spare} staging slots)")
                return problems
            if (w.gpu, w.slot) in written:
                problems.append(f"{where}: slot {w.slot} of GPU {w.gpu} written twice")
            written.add((w.gpu, w.slot))
        for w in step:
            src = (w.src_gpu, w.src_slot)
            if not (0 <= w.src_gpu < D and 0 <= w.src_slot < C + spare) or cur[src] != w.expert:
                problems.append(f"{where}: source slot {w.src_slot} of GPU {w.src_gpu} does not hold expert {w.expert}")  # (6)
            elif src in written:
                problems.append(f"{where}: source slot {w.src_slot} of GPU {w.src_gpu} is overwritten in the same step")
            if w.commit and not (w.src_gpu == w.gpu and w.src_slot >= cap[w.gpu] and w.slot < cap[w.gpu]):
                problems.append(f"{where}: commit into slot {w.slot} of GPU {w.gpu} is not from its own staging slot")
        serving = [int(cur[g, k]) for g in range(D) for k in range(C + spare) if cur[g, k] >= 0 and (g, k) not in written]
        for e in sorted(experts - set(serving)):  # (4)
            problems.append(f"{where}: expert {e} has no serving replica")
        for w in step:
            cur[w.gpu, w.slot] = w.expert
        for w in step:
            if w.commit:
                cur[w.src_gpu, w.src_slot] = -1
    for g in range(D):  # (7)
        for k in range(cap[g]):
            if target[g, k] >= 0 and cur[g, k] != target[g, k]:
                problems.append(f"end: slot {k} of GPU {g} holds expert {cur[g, k]}, not {target[g, k]}")
        if (cur[g, cap[g]:] >= 0).any():
            problems.append(f"end: GPU {g} still uses a staging slot")
    return problems
