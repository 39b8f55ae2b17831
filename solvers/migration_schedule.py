"""Ordered move schedule for a slot matching (:func:`solvers.migration.match_slots`), and its checker.

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

import numpy as np

from solvers._checks import non_negative_int
from solvers.migration import (
    MigrationInfeasible,
    SlotCopy,
    SlotMatching,
    SlotWrite,
    changed_slots,
    read_only_ints,
)

__all__ = ["schedule_moves", "check_schedule", "MoveSchedule"]

# Move-graph nodes besides experts: -1 an empty position (as the expert of a slot: unlimited supply),
# _BOT the release of a staging slot, -3 - g GPU g.
_BOT = -2


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
        for g, k in changed_slots(matching.old, matching.target):
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

    >>> from solvers.migration import match_slots
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
    changed = changed_slots(old, mt)
    for g, k in changed:
        pool[(g, int(mt[g, k]))].append(int(matching.origin[g, k]))
    for g, k in changed:
        origin[g, k] = pool[(g, int(target[g, k]))].pop(0)
    moves = tuple(sorted(state.moves))
    return MoveSchedule(tuple(steps), read_only_ints(target), read_only_ints(origin), moves, spare)


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
