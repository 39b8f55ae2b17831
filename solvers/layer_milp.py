r"""Stage-chain integer program: the best layout in which the model is one chain of stages.

A *chain* layout tiles ``[0, L)`` with stages ``[b_j, b_{j+1})``; every node used holds exactly one
stage, and a stage's capacity is the sum of its nodes' ``T(b_{j+1} - b_j)``. On a network that never
binds its max-flow is the smallest stage capacity. Helix's published layouts and the best layouts
known for single24 (``docs/cluster.md``) are chains; the integer program below finds the best chain
by bisection on the flow ``F``, one feasibility program per step.

Data: node classes ``c`` (nodes with identical capacity tables) with ``n_c`` nodes, ``K_c`` layers at
most and ``T_c(l)``, ``l = 1..K_c``; ``L`` layers; a target ``F``.

Variables (a chain is a multiset of stages: on a network that never binds their order does not matter,
so stages are *slots* ``(l, j)``, the ``j``-th stage of length ``l``, ``j < min(L / l, nodes that hold l)``):

- ``w[l, j] in {0, 1}``: slot ``(l, j)`` is a stage of the chain;
- ``y[c, l, j] in Z+``: nodes of class ``c`` on it, at most ``m[c, l] = min(n_c, ceil(F / T_c(l)))``
  (more than that many of one class are never needed).

Constraints:

1. the stages tile the model: ``sum_{l, j} l w[l, j] = L``;
2. every stage carries ``F``: ``sum_c T_c(l) y[c, l, j] >= F w[l, j]``;
3. node counts: ``sum_{l, j} y[c, l, j] <= n_c``;
4. symmetry: ``w[l, j] >= w[l, j + 1]`` (slots of one length are used in order);
5. nodes only on used slots: ``y[c, l, j] <= m[c, l] w[l, j]``.

Objective: none (zero): any feasible point answers the question, and HiGHS stops at the first one
(minimising the nodes used took 3-10x longer per program on hetero42). Nodes left over are spares,
which :func:`chain_layout` adds to the weakest stages they can hold. The stages are laid out from
layer 0, longest first. (A first version indexed stages by their first layer,
``u[s, l]`` with path constraints: 5x the variables, 27-48 s per program on hetero42.)

Bisection keeps ``lo`` (a chain with min stage capacity ``>= lo`` exists; after a feasible solve
``lo`` becomes that chain's actual minimum) and ``hi`` (no chain reaches it: proven only when the solver
proved infeasibility; a solve stopped by its time limit also lowers ``hi`` but marks the bound
unproven). Solved with HiGHS through :func:`scipy.optimize.milp`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from solvers.backends import scipy_highs_version
from solvers.report import SolveReport, relative_gap

__all__ = ["ChainResult", "chain_layout", "chain_feasible"]


@dataclass(frozen=True)
class ChainResult:
    """The best chain found: per-node ranges (spares included), its min stage capacity, the bisection."""

    starts: tuple[int, ...] | None
    sizes: tuple[int, ...] | None
    value: float
    upper: float
    upper_proven: bool
    solves: int
    report: SolveReport


def _classes(capacity, L):
    keys: dict = {}
    members: list[list[int]] = []
    for i, c in enumerate(capacity):
        key = tuple(float(x) for x in c[:L])
        if key not in keys:
            keys[key] = len(members)
            members.append([])
        members[keys[key]].append(i)
    tables = [np.asarray(k, dtype=np.float64) for k in keys]
    return tables, members


def chain_feasible(tables, counts, L: int, F: float, time_limit_s: float, node_limit: int | None = None):
    """One feasibility program (module docstring): ``(status, stages)`` with ``status`` one of
    ``"feasible"``, ``"infeasible"``, ``"unknown"`` and ``stages`` a list of ``(s, l, {class: nodes})``,
    the stages laid out from layer 0 in slot order."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    kmax = max(t.size for t in tables)
    w_idx: dict = {}
    for l in range(1, min(kmax, L) + 1):
        holders = sum(n for t, n in zip(tables, counts) if t.size >= l and t[l - 1] > 0)
        for j in range(min(L // l, holders)):
            w_idx[(l, j)] = len(w_idx)
    y_idx: dict = {}
    cap: dict = {}
    for c, t in enumerate(tables):
        for (l, j) in w_idx:
            if l <= t.size and t[l - 1] > 0:
                y_idx[(c, l, j)] = len(w_idx) + len(y_idx)
                cap[(c, l, j)] = float(min(counts[c], np.ceil(F / t[l - 1] - 1e-12)))
    nvar = len(w_idx) + len(y_idx)
    rows, cols, vals, lo, hi = [], [], [], [], []

    def row(entries, low, high):
        r = len(lo)
        for j, v in entries:
            rows.append(r), cols.append(j), vals.append(v)
        lo.append(low)
        hi.append(high)

    row([(j, float(l)) for (l, _), j in w_idx.items()], float(L), float(L))  # (1)
    by_slot: dict = {}
    for (c, l, j), v in y_idx.items():
        by_slot.setdefault((l, j), []).append((c, v))
    for (l, j), wj in w_idx.items():  # (2), (4)
        row([(wj, -F)] + [(v, float(tables[c][l - 1])) for c, v in by_slot.get((l, j), [])], 0.0, np.inf)
        if (l, j + 1) in w_idx:
            row([(wj, 1.0), (w_idx[(l, j + 1)], -1.0)], 0.0, np.inf)
    for c in range(len(tables)):  # (3)
        row([(v, 1.0) for (cc, _, _), v in y_idx.items() if cc == c], 0.0, float(counts[c]))
    for key, v in y_idx.items():  # (5)
        row([(v, 1.0), (w_idx[key[1:]], -cap[key])], -np.inf, 0.0)
    A = coo_matrix((vals, (rows, cols)), shape=(len(lo), nvar)).tocsr()
    cost = np.zeros(nvar)  # pure feasibility: HiGHS stops at the first integer point
    ub = np.ones(nvar)
    for key, v in y_idx.items():
        ub[v] = cap[key]
    res = milp(cost, constraints=LinearConstraint(A, lo, hi), integrality=np.ones(nvar),
               bounds=Bounds(np.zeros(nvar), ub), options={"time_limit": max(0.01, time_limit_s), "presolve": True,
                                                           **({"node_limit": int(node_limit)} if node_limit else {})})
    if res.x is None:
        return ("infeasible" if res.status == 2 else "unknown"), None
    x = np.rint(res.x)
    stages, at = [], 0
    for (l, j), wj in sorted(w_idx.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
        if x[wj] > 0.5:
            nodes = {c: int(x[v]) for c, v in by_slot.get((l, j), []) if x[v] > 0.5}
            stages.append((at, l, nodes))
            at += l
    return "feasible", stages


def _layout(tables, members, stages, L):
    """Per-node ranges of a chain; spare nodes go, largest first, to the weakest stage they can hold."""
    n = sum(len(m) for m in members)
    starts, sizes = [0] * n, [1] * n
    cap = {(s, l): 0.0 for s, l, _ in stages}
    free = [list(m) for m in members]
    for s, l, nodes in stages:
        for c, count in nodes.items():
            for _ in range(count):
                i = free[c].pop(0)
                starts[i], sizes[i] = s, l
                cap[(s, l)] += float(tables[c][l - 1])
    value = min(cap.values())
    spares = sorted(((c, i) for c in range(len(free)) for i in free[c]), key=lambda ci: (-float(tables[ci[0]].max()), ci[1]))
    for c, i in spares:
        fits = [(v, s, l) for (s, l), v in cap.items() if l <= tables[c].size]
        if fits:
            v, s, l = min(fits)
            starts[i], sizes[i] = s, l
            cap[(s, l)] += float(tables[c][l - 1])
        else:
            starts[i], sizes[i] = 0, min(tables[c].size, L)
    return starts, sizes, value, min(cap.values())


def chain_layout(capacity, num_layers: int, *, lower: float = 0.0, upper: float, time_limit_s: float = 30.0,
                 solve_time_limit_s: float = 10.0, node_limit: int | None = 2000, max_solves: int = 30,
                 rel_tol: float = 1e-4) -> ChainResult:
    """The best chain layout by bisection on ``F`` between ``lower`` and ``upper`` (module docstring).

    Work is bounded by ``max_solves`` programs of at most ``node_limit`` branch-and-bound nodes each
    (deterministic); ``time_limit_s`` (all solves) and ``solve_time_limit_s`` (one solve) are safety caps.
    A solve stopped by a limit counts as "not reached" (it lowers ``hi``, unproven).

    ``value`` is the chain's smallest stage capacity without spares (its max-flow on a network that
    never binds is at least that). ``upper`` is where bisection stopped; ``upper_proven`` says whether
    every step that lowered it was a proof of infeasibility.

    >>> r = chain_layout([[10.0, 4.0], [10.0, 4.0], [3.0]], 2, upper=20.0, time_limit_s=5)
    >>> r.value, sorted(zip(r.starts, r.sizes))
    (10.0, [(0, 1), (0, 1), (1, 1)])
    """
    t_start = time.perf_counter()
    L = int(num_layers)
    tables, members = _classes(capacity, L)
    counts = [len(m) for m in members]
    lo, hi, proven = float(lower), float(upper), True
    best = None
    solves = 0
    while hi - lo > rel_tol * max(hi, 1e-9):
        left = time_limit_s - (time.perf_counter() - t_start)
        if left <= 0 or solves >= max_solves:
            break
        target = 0.5 * (lo + hi) if best is not None or lo > 0 else 0.5 * hi
        status, stages = chain_feasible(tables, counts, L, target, min(solve_time_limit_s, left), node_limit)
        solves += 1
        if status == "feasible":
            s, k, v, _ = _layout(tables, members, stages, L)
            best = (s, k, v)
            lo = max(lo, v)
        else:
            hi = target
            proven = proven and status == "infeasible"
    wall = time.perf_counter() - t_start
    value = best[2] if best else 0.0
    stopped = hi - lo > rel_tol * max(hi, 1e-9)
    report = SolveReport(
        status="feasible" if best else "infeasible" if proven else "error",
        stop_reason="time_limit" if stopped else "gap_limit",
        objective=value, bound=hi if proven else None,
        gap=relative_gap(-value, -hi) if proven and best else None,
        wall_time_s=wall, solver="stage-chain MILP bisection (scipy.optimize.milp)", solver_version=scipy_highs_version(),
        message=f"{solves} feasibility programs; bound {'proven' if proven else 'not proven (a solve hit its limit)'} for chains only",
    )
    return ChainResult(tuple(best[0]) if best else None, tuple(best[1]) if best else None, value, hi, proven, solves, report)
