"""The dispatch rules of the EP workers and their predictions: pure numpy, no torch, no processes.

The workers (:mod:`planner.runtime.workers`, :mod:`planner.runtime.apply`) assign every (token,
top-k position) pair -- a *row* -- to one slot of its expert with :func:`assign_slots`; the
predictions (:func:`predicted_slot_tokens`, :func:`predicted_rank_tokens`) evaluate the same rules'
closed forms from the routing alone. Both use the same largest-remainder quotas and static table,
so the rows each rank receives can be checked exactly. The rules are stated in
:mod:`planner.runtime.workers` (item 3) and ``docs/runtime.md``.

``__all__`` is the public API. The other names without an underscore (:class:`Layout`,
:func:`layout_of`, :func:`token_offsets`, :func:`replica_slots`, :func:`static_table`,
:func:`assign_slots`, :func:`layout_rank_tokens`, :func:`check_dispatch`) are shared with the
workers, the live apply and the torchrun entry point of this package: change them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from planner.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from planner.plans.schema import Plan

__all__ = [
    "DISPATCHES",
    "predicted_slot_tokens",
    "predicted_rank_tokens",
    "routing_counts",
    # the runtime's own seams (workers, apply, torchrun, placements)
    "Layout",
    "layout_of",
    "token_offsets",
    "replica_slots",
    "static_table",
    "assign_slots",
    "layout_rank_tokens",
    "check_dispatch",
]

#: dispatch rules (:mod:`planner.runtime.workers`, item 3)
DISPATCHES = ("even", "plan", "deterministic")


@dataclass(frozen=True)
class Layout:
    """A replica placement as numpy, one entry per plan row (layer): what the workers serve.

    ``physical_to_logical[row]`` [P] the expert of every slot; ``slot_gpu[row]`` / ``slot_node[row]``
    [P] the rank and node holding it; ``dispatch_weights[row]`` [P] the weights of the ``"plan"``
    rule (ones when the plan has none). Built from a plan by :func:`layout_of`, or from the
    occupancy between migration rounds (:mod:`planner.runtime.placements`). Plain numpy, so it
    pickles to spawned workers without pydantic.
    """

    physical_to_logical: tuple[np.ndarray, ...]
    slot_gpu: tuple[np.ndarray, ...]
    slot_node: tuple[np.ndarray, ...]
    dispatch_weights: tuple[np.ndarray, ...]
    num_experts: int
    num_gpus: int
    gpus_per_node: int


def layout_of(plan: Plan, num_rows: int | None = None) -> Layout:
    """The :class:`Layout` of ``plan``'s replica rows, checked: shapes, GPUs in range, every expert
    held, dispatch weights finite and >= 0, and ``num_rows`` rows when given (the model's layers).
    The expert ids themselves are checked by the rank that loads each slot (as an engine would).

    Raises
    ------
    InputError
        The first row or slot that fails a check, named.
    """
    rp = plan.replicas
    rows = len(rp.physical_to_logical)
    if num_rows is not None and rows != num_rows:
        raise InputError(f"{num_rows} layer(s) but the plan has {rows} row(s) (layers {rp.layers})", param="model_layers")
    p2l, gpu, node, weights = [], [], [], []
    for row in range(rows):
        p = np.asarray(rp.physical_to_logical[row], dtype=np.int64)
        g = np.asarray(rp.slot_gpu[row], dtype=np.int64)
        n = np.asarray(rp.slot_node[row], dtype=np.int64)
        if g.shape != p.shape or n.shape != p.shape:
            raise InputError(f"plan row {row}: {p.size} slots in physical_to_logical but {g.size} in slot_gpu, {n.size} in slot_node")
        bad = np.flatnonzero((g < 0) | (g >= rp.num_gpus))
        if bad.size:
            s = int(bad[0])
            raise InputError(f"plan row {row} slot {s}: on GPU {int(g[s])}, but the plan has GPUs 0..{rp.num_gpus - 1}")
        held = set(p.tolist())
        lost = [e for e in range(rp.num_experts) if e not in held]
        if lost:
            raise InputError(f"plan row {row}: no slot holds expert {lost[0]} (every expert needs a replica)")
        if rp.dispatch_weights is not None:
            w = np.asarray(rp.dispatch_weights[row], dtype=np.float64)
            if w.shape != p.shape or not np.isfinite(w).all() or (w < 0).any():
                raise InputError(f"plan row {row}: dispatch_weights must be {p.size} finite values >= 0")
        else:
            w = np.ones(p.size)  # even: equal weights within each expert
        p2l.append(p)
        gpu.append(g)
        node.append(n)
        weights.append(w)
    return Layout(tuple(p2l), tuple(gpu), tuple(node), tuple(weights), rp.num_experts, rp.num_gpus, rp.gpus_per_node)


# -- the dispatch rules, shared by the workers and the predictions -------------------------------


def token_offsets(num_tokens: int, world_size: int) -> np.ndarray:
    """``[W + 1]`` bounds of the rank-owned token blocks: rank ``r`` owns tokens
    ``[o_r, o_{r+1})`` (the first ``T mod W`` ranks get one more; :mod:`planner.runtime.workers`, item 2).

    >>> token_offsets(10, 4).tolist()
    [0, 3, 6, 8, 10]
    """
    q, m = divmod(num_tokens, world_size)
    r = np.arange(world_size + 1)
    return r * q + np.minimum(r, m)


def replica_slots(p2l: np.ndarray, num_experts: int) -> list[np.ndarray]:
    """Per expert ``e``, the slots holding it in increasing id (``S_e``); a slot naming no valid
    expert serves nobody.

    >>> [s.tolist() for s in replica_slots(np.array([0, 1, 0, 2]), 3)]
    [[0, 2], [1], [3]]
    """
    return [np.flatnonzero(p2l == e) for e in range(num_experts)]


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers summing to ``total`` in proportion to ``weights``; ties go to the lower index."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(w.size, 1.0 / w.size)
    exact = total * w
    base = np.floor(exact).astype(np.int64)
    rest = exact - base
    short = total - int(base.sum())
    if short >= 0:
        base[np.argsort(-rest, kind="stable")[:short]] += 1
    else:  # floating point pushed a share past an integer: take back from the smallest remainders
        take = [i for i in np.argsort(rest, kind="stable") if base[i] > 0][:-short]
        base[take] -= 1
    return base


def static_table(layout: Layout, row: int) -> np.ndarray:
    """``[W, E]``: the slot that rank ``r`` sends expert ``e``'s pairs to under ``"deterministic"``
    (the lowest-id replica on ``r``, else one in ``r``'s node, else any; workers item 3)."""
    W, E = layout.num_gpus, layout.num_experts
    gpu, node = layout.slot_gpu[row], layout.slot_node[row]
    table = np.empty((W, E), dtype=np.int64)
    for e, reps in enumerate(replica_slots(layout.physical_to_logical[row], E)):  # every expert has one (layout_of)
        for r in range(W):
            here = reps[gpu[reps] == r]
            near = reps[node[reps] == r // layout.gpus_per_node]
            table[r, e] = here[0] if here.size else near[r % near.size] if near.size else reps[r % reps.size]
    return table


def assign_slots(experts: np.ndarray, rank: int, replicas: list[np.ndarray], static: np.ndarray,
                 weights: np.ndarray, rank_counts: np.ndarray | None, dispatch: str) -> np.ndarray:
    """Slot of each of rank ``rank``'s (token, top-k) pairs under ``dispatch``: the per-row rule
    the workers run; ``experts`` flat in occurrence order.

    ``replicas`` from :func:`replica_slots`; ``static`` the rank's row of :func:`static_table`
    (``"deterministic"``); ``weights`` the row's dispatch weights (``"plan"``); ``rank_counts``
    [W, E] every rank's occurrences per expert (``"even"`` / ``"plan"``).
    """
    if dispatch == "deterministic":
        return static[experts]
    # global occurrence index g = occurrences on lower ranks + local occurrence index
    order = np.argsort(experts, kind="stable")
    local = np.empty(experts.size, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(np.bincount(experts, minlength=rank_counts.shape[1]))[:-1]])
    local[order] = np.arange(experts.size) - starts[experts[order]]
    g = rank_counts[:rank].sum(axis=0)[experts] + local
    totals = rank_counts.sum(axis=0)
    slots = np.empty(experts.size, dtype=np.int64)
    for e in np.unique(experts):
        mask, reps = experts == e, replicas[e]
        if dispatch == "even":
            slots[mask] = reps[g[mask] % reps.size]
        else:
            quota = _largest_remainder(int(totals[e]), weights[reps])
            slots[mask] = reps[np.searchsorted(np.cumsum(quota), g[mask], side="right")]
    return slots


def check_dispatch(dispatch: str) -> None:
    """InputError unless ``dispatch`` is one of :data:`DISPATCHES`."""
    if dispatch not in DISPATCHES:
        raise InputError(f"unknown {dispatch!r}; known: {', '.join(DISPATCHES)}", param="dispatch")


def routing_counts(routing, num_experts: int) -> np.ndarray:
    """``[L, E]`` occurrences per expert of a ``[L, T, k]`` routing (what load files record).

    >>> routing_counts([[[0, 1], [1, 2]]], 4).tolist()
    [[1, 2, 1, 0]]
    """
    r = np.asarray(routing, dtype=np.int64)
    if r.ndim == 2:
        r = r[None]
    return np.stack([np.bincount(layer.reshape(-1), minlength=num_experts) for layer in r])


def _check_routing(layout: Layout, routing) -> np.ndarray:
    """``routing`` as int64 ``[L, T, k]``, checked against ``layout`` (rows, expert ids)."""
    r = np.asarray(routing)
    if r.ndim == 2:
        r = r[None]
    if r.ndim != 3 or not np.issubdtype(r.dtype, np.integer):
        raise InputError(f"expected integer expert ids [layers, tokens, top_k], got {r.dtype} {list(r.shape)}", param="routing")
    if r.shape[0] != len(layout.physical_to_logical):
        raise InputError(f"{r.shape[0]} layer(s) but the plan has {len(layout.physical_to_logical)} row(s)", param="routing")
    if r.size and (r.min() < 0 or r.max() >= layout.num_experts):
        raise InputError(f"expert ids must be in 0..{layout.num_experts - 1}", param="routing")
    return r.astype(np.int64)


def predicted_slot_tokens(plan: Plan, routing, *, dispatch: str = "even") -> list[np.ndarray]:
    """Rows each slot receives per layer under ``dispatch``, from the routing alone.

    Closed forms of the rules (module docstring): round-robin and largest-remainder quotas from the
    global counts, the static table from each rank's counts. No torch, no workers.

    Parameters
    ----------
    plan : the replica plan; its rows are the layers of ``routing``.
    routing : ``[L, T, k]`` expert ids (the second value of ``reference_forward``).
    dispatch : one of :data:`DISPATCHES`.

    Returns
    -------
    list of ``[P_l]`` int64 arrays, one per layer.
    """
    check_dispatch(dispatch)
    layout = layout_of(plan)
    return _predicted_slots(layout, _check_routing(layout, routing), dispatch)


def _predicted_slots(layout: Layout, r: np.ndarray, dispatch: str) -> list[np.ndarray]:
    """:func:`predicted_slot_tokens` on a checked layout and routing."""
    W, E = layout.num_gpus, layout.num_experts
    bounds = token_offsets(r.shape[1], W)
    out = []
    for row in range(r.shape[0]):
        per_rank = np.stack([np.bincount(r[row, bounds[g]:bounds[g + 1]].reshape(-1), minlength=E) for g in range(W)])
        reps = replica_slots(layout.physical_to_logical[row], E)
        slots = np.zeros(layout.physical_to_logical[row].size, dtype=np.int64)
        if dispatch == "deterministic":
            np.add.at(slots, static_table(layout, row), per_rank)
        else:
            for e, n in enumerate(per_rank.sum(axis=0)):
                if dispatch == "even":
                    q, m = divmod(int(n), reps[e].size)
                    slots[reps[e]] = q + (np.arange(reps[e].size) < m)
                else:
                    slots[reps[e]] = _largest_remainder(int(n), layout.dispatch_weights[row][reps[e]])
        out.append(slots)
    return out


def predicted_rank_tokens(plan: Plan, routing, *, dispatch: str = "even") -> np.ndarray:
    """``[L, W]`` rows each rank receives per layer under ``dispatch`` (sums of
    :func:`predicted_slot_tokens` over the rank's slots)."""
    layout = layout_of(plan)
    return _rank_sums(layout, predicted_slot_tokens(plan, routing, dispatch=dispatch))


def layout_rank_tokens(layout: Layout, routing, dispatch: str) -> np.ndarray:
    """:func:`predicted_rank_tokens` on a :class:`Layout` (e.g. a placement between migration
    rounds, which is no plan): ``[L, W]`` rows each rank receives per layer under ``dispatch``."""
    check_dispatch(dispatch)
    return _rank_sums(layout, _predicted_slots(layout, _check_routing(layout, routing), dispatch))


def _rank_sums(layout: Layout, slots: list[np.ndarray]) -> np.ndarray:
    """``[L, W]``: per-slot rows summed over each rank's slots."""
    return np.stack([np.bincount(layout.slot_gpu[row], weights=s, minlength=layout.num_gpus)
                     for row, s in enumerate(slots)]).astype(np.int64)
