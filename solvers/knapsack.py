"""Multiple-choice knapsack: one replica budget per layer (CRAFT's allocation step).

Data: ``L`` layers, ``K`` options per layer; option ``k`` of layer ``l`` gains ``v[l, k]`` (e.g.
the replayed balancedness with ``r_k`` replicas) and costs ``c[l, k] >= 0`` integer units (the
replicas); a budget ``B`` of units. Options with ``v = -inf`` (or NaN) are unavailable.

Variables: ``x[l, k] in {0, 1}``, option ``k`` chosen for layer ``l`` (available options only).

Constraints:

1. one option per layer: ``sum_k x[l, k] = 1`` for every ``l``;
2. budget: ``sum_{l, k} c[l, k] x[l, k] <= B``.

Objective: maximise ``sum_{l, k} v[l, k] x[l, k]``.

Two methods solve it. ``"dp"`` is exact dynamic programming over layers and total cost: with
``f_l[b]`` the best gain of layers ``0..l`` at total cost exactly ``b``,
``f_l[b] = max_k f_{l-1}[b - c[l, k]] + v[l, k]``, vectorised over ``b``. Costs and budget are
divided by the gcd of the costs first (CRAFT's candidate counts are multiples of 2 or 4), and the
budget axis is cut at the largest total cost any choice can reach. ``"milp"`` states (1)-(2) as a
0-1 program for HiGHS (through ``scipy.optimize.milp``); it is there to cross-check the DP.

The reports returned here are for a *maximisation*: ``objective`` is the total gain of the chosen
options, ``bound`` is an upper bound on the optimum (the optimum itself for ``"dp"``, HiGHS's dual
bound for ``"milp"``), and ``gap = (bound - objective) / |objective|``.

Reference: CRAFT (Zhao et al., MLSys 2026, arXiv 2603.28768) section 3.3 step 4. What per-layer
budgets save on a synthetic DeepSeek-scale trace, and why most of it needs engine patches to
deploy: ``docs/replicas.md``, "Why these methods".
"""

from __future__ import annotations

import math
import time
from typing import Literal

import numpy as np

from solvers._checks import float_array, non_negative_int, positive_float
from solvers.backends import scipy_highs_version
from solvers.report import SolveReport, relative_gap

__all__ = ["multiple_choice_knapsack", "min_budget_for_target"]

Method = Literal["dp", "milp"]


def multiple_choice_knapsack(
    values,
    costs,
    budget: int,
    *,
    method: Method = "dp",
    time_limit_s: float = 10.0,
) -> tuple[np.ndarray | None, SolveReport]:
    """Pick one option per layer, within a total cost budget, maximising the total value.

    Parameters
    ----------
    values : array_like of float, shape (L, K)
        Gain of option ``k`` in layer ``l``; ``-inf`` or NaN marks an unavailable option.
        ``+inf`` is rejected.
    costs : array_like of int, shape (L, K)
        Non-negative integer cost (e.g. replicas) of each option.
    budget : int
        Largest total cost allowed, ``>= 0``.
    method : {"dp", "milp"}
        ``"dp"``: exact dynamic programming; ``"milp"``: 0-1 program solved by HiGHS.
    time_limit_s : float
        Wall-clock limit for ``"milp"``; the DP always runs to the end.

    Returns
    -------
    choice : ndarray of int64, shape (L,), or None
        Index of the chosen option per layer; ``None`` when no choice fits the budget (or the
        MILP stopped without a solution).
    report : SolveReport
        For a maximisation (see the module notes): ``objective`` is the recomputed total value,
        ``bound`` an upper bound on the optimum. ``status`` is ``"infeasible"`` with a message
        naming the minimum budget needed when even the cheapest options exceed `budget`.

    Raises
    ------
    ValueError
        On shapes that differ, ``+inf`` values, negative or fractional costs, a negative budget,
        an unknown method or a non-positive time limit.

    Notes
    -----
    ``"dp"`` takes ``O(L * K * B')`` time and ``O(L * B')`` memory, with ``B'`` the budget divided
    by the gcd of the costs (and cut at the largest reachable total). Ties are broken
    deterministically: among optimal choices the one with the smallest total cost; then, from the
    last layer backwards, the cheapest option and then the lowest index. ``"milp"`` returns an
    optimal choice but does not promise that tie-break.

    Examples
    --------
    >>> values = [[0.0, 0.5, 0.6], [0.0, 0.15, 0.2]]
    >>> costs = [[0, 2, 4], [0, 2, 4]]
    >>> choice, rep = multiple_choice_knapsack(values, costs, 4)
    >>> choice.tolist(), rep.status, round(rep.objective, 6)
    ([1, 1], 'optimal', 0.65)
    >>> round(multiple_choice_knapsack(values, costs, 4, method="milp")[1].objective, 6)
    0.65
    >>> multiple_choice_knapsack([[1.0, 2.0]], [[3, 5]], 2)[1].message
    'budget 2 is below the minimum needed, 3 (the cheapest available option in every layer)'
    """
    start = time.perf_counter()
    v, c, avail = _check_values_costs(values, costs)
    budget = non_negative_int(budget, "budget")
    if method not in ("dp", "milp"):
        raise ValueError(f"method must be 'dp' or 'milp', got {method!r}")
    time_limit_s = positive_float(time_limit_s, "time_limit_s")
    solver = "mckp-dp" if method == "dp" else "scipy-highs-milp"
    version = f"numpy {np.__version__}" if method == "dp" else scipy_highs_version()

    message = _infeasibility(c, avail, budget)
    if message:
        report = SolveReport("infeasible", "infeasible", None, None, None,
                             time.perf_counter() - start, solver, version, message)
        return None, report

    if method == "dp":
        choice = _solve_dp(v, c, avail, budget)
        objective = _total(v, choice)
        report = SolveReport("optimal", "completed", objective, objective, 0.0,
                             time.perf_counter() - start, solver, version)
        return choice, report
    return _solve_milp(v, c, avail, budget, time_limit_s, start, solver, version)


def min_budget_for_target(values, costs, target_sum: float, *, rel_tol: float = 1e-9) -> int | None:
    """Smallest budget whose knapsack optimum reaches a target total value.

    Answers "how many replicas in total do per-layer budgets need to reach EPLB's balancedness at
    a uniform budget": pass ``target_sum = L * b_EPLB`` and the per-layer gain tables.

    Parameters
    ----------
    values, costs : array_like, shape (L, K)
        As in :func:`multiple_choice_knapsack`.
    target_sum : float
        Total value to reach.
    rel_tol : float
        A total counts as reaching the target when it is at least
        ``target_sum - rel_tol * max(1, |target_sum|)``, so that a target computed with another
        summation order is still met.

    Returns
    -------
    int or None
        The smallest budget ``B`` with ``optimum(B) >= target_sum`` (within `rel_tol`); ``None``
        when no budget reaches it (or some layer has no available option).

    Raises
    ------
    ValueError
        On invalid `values` / `costs` (see :func:`multiple_choice_knapsack`), a non-finite target
        or a negative tolerance.

    Notes
    -----
    One DP over all reachable totals (``O(L * K * B_max)``), then a running maximum over the
    budget axis; the optimum is non-decreasing in the budget, so the first total that reaches the
    target is the answer.

    Examples
    --------
    >>> values = [[0.0, 0.5, 0.6], [0.0, 0.15, 0.2]]
    >>> costs = [[0, 2, 4], [0, 2, 4]]
    >>> min_budget_for_target(values, costs, 0.7), min_budget_for_target(values, costs, 0.9)
    (6, None)
    """
    v, c, avail = _check_values_costs(values, costs)
    target = float(target_sum)
    if not math.isfinite(target):
        raise ValueError(f"target_sum must be finite, got {target_sum!r}")
    if not (rel_tol >= 0.0):
        raise ValueError(f"rel_tol must be non-negative, got {rel_tol!r}")
    if not np.all(avail.any(axis=1)):
        return None
    unit = _cost_unit(c, avail)
    scaled = c // unit
    cap = int(np.where(avail, scaled, 0).max(axis=1).sum())
    best, _ = _dp_table(v, scaled, avail, cap)
    reachable = np.maximum.accumulate(best)
    hits = np.flatnonzero(reachable >= target - rel_tol * max(1.0, abs(target)))
    return int(hits[0]) * unit if hits.size else None


# --- validation -------------------------------------------------------------------------------


def _check_values_costs(values, costs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = float_array(values, "values", "(L, K)")
    v = np.where(np.isnan(v), -np.inf, v)  # a new array: the caller's values stay as given
    if np.any(v == np.inf):
        raise ValueError("values must not contain +inf")
    c_raw = float_array(costs, "costs", "(L, K)")
    if c_raw.shape != v.shape:
        raise ValueError(f"costs must have the shape of values {v.shape}, got {c_raw.shape}")
    if not np.all(np.isfinite(c_raw)) or np.any(c_raw < 0) or np.any(c_raw != np.round(c_raw)):
        raise ValueError("costs must be non-negative integers")
    return v, c_raw.astype(np.int64), v > -np.inf


def _infeasibility(c: np.ndarray, avail: np.ndarray, budget: int) -> str:
    """Cheap checks: a layer with no option, or a budget below the sum of cheapest options."""
    empty = np.flatnonzero(~avail.any(axis=1))
    if empty.size:
        return f"layer {int(empty[0])} has no available option (all values are -inf or NaN)"
    needed = int(np.where(avail, c, np.iinfo(np.int64).max).min(axis=1).sum())
    if needed > budget:
        return (f"budget {budget} is below the minimum needed, {needed} "
                "(the cheapest available option in every layer)")
    return ""


def _cost_unit(c: np.ndarray, avail: np.ndarray) -> int:
    unit = int(np.gcd.reduce(c[avail])) if avail.any() else 0
    return unit if unit > 0 else 1


def _total(v: np.ndarray, choice: np.ndarray) -> float:
    return float(sum(v[layer, k] for layer, k in enumerate(choice.tolist())))


# --- method "dp" ------------------------------------------------------------------------------


def _dp_table(v: np.ndarray, scaled: np.ndarray, avail: np.ndarray, cap: int):
    """``f[b]``: best total value at total scaled cost exactly ``b <= cap``; ``arg[l, b]``: the
    option layer ``l`` takes on the way to ``b`` (-1 where ``b`` is unreachable)."""
    layers = v.shape[0]
    f = np.full(cap + 1, -np.inf)
    f[0] = 0.0
    arg = np.full((layers, cap + 1), -1, dtype=np.int32)
    for layer in range(layers):
        opts = np.flatnonzero(avail[layer])
        # cheaper first, then lower index: argmax keeps the first maximum, which is the tie-break
        opts = opts[np.lexsort((opts, scaled[layer, opts]))]
        cand = np.full((opts.size, cap + 1), -np.inf)
        for j, k in enumerate(opts.tolist()):
            ck = int(scaled[layer, k])
            if ck <= cap:
                cand[j, ck:] = f[: cap + 1 - ck] + v[layer, k]
        pick = cand.argmax(axis=0)
        f = cand[pick, np.arange(cap + 1)]
        arg[layer] = np.where(f > -np.inf, opts[pick], -1)
    return f, arg


def _solve_dp(v: np.ndarray, c: np.ndarray, avail: np.ndarray, budget: int) -> np.ndarray:
    unit = _cost_unit(c, avail)
    scaled = c // unit
    reachable = int(np.where(avail, scaled, 0).max(axis=1).sum())
    cap = min(budget // unit, reachable)
    f, arg = _dp_table(v, scaled, avail, cap)
    b = int(np.flatnonzero(f == f.max())[0])  # smallest total cost among the optima
    choice = np.empty(v.shape[0], dtype=np.int64)
    for layer in range(v.shape[0] - 1, -1, -1):
        k = int(arg[layer, b])
        choice[layer] = k
        b -= int(scaled[layer, k])
    return choice


# --- method "milp" ----------------------------------------------------------------------------


def _solve_milp(v, c, avail, budget, time_limit_s, start, solver, version):
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix

    layers = v.shape[0]
    rows, cols = np.nonzero(avail)  # one binary x[l, k] per available option, layer-major
    n = rows.size
    # (1) one option per layer: sum_k x[l, k] = 1
    one_per_layer = LinearConstraint(csr_matrix((np.ones(n), (rows, np.arange(n))), shape=(layers, n)), 1, 1)
    # (2) budget: sum c[l, k] x[l, k] <= B
    within_budget = LinearConstraint(c[rows, cols].astype(np.float64)[None, :], -np.inf, budget)
    res = milp(
        -v[rows, cols],  # maximise the gain
        constraints=[one_per_layer, within_budget],
        integrality=np.ones(n),
        bounds=Bounds(0, 1),
        options={"time_limit": time_limit_s, "mip_rel_gap": 1e-9, "disp": False},
    )
    elapsed = time.perf_counter() - start
    if res.status == 2:
        return None, SolveReport("infeasible", "infeasible", None, None, None, elapsed, solver, version,
                                 "HiGHS proved the budget infeasible")
    if res.x is None:
        stop = "time_limit" if res.status == 1 else "error"
        return None, SolveReport("error", stop, None, None, None, elapsed, solver, version, res.message)
    picked = np.asarray(res.x) > 0.5
    choice = np.full(layers, -1, dtype=np.int64)
    choice[rows[picked]] = cols[picked]
    objective = _total(v, choice)
    dual = getattr(res, "mip_dual_bound", None)
    bound = -float(dual) if dual is not None and math.isfinite(dual) else None
    if bound is not None:
        bound = max(bound, objective)  # an upper bound below a feasible value is round-off
    status, stop = ("optimal", "completed") if res.status == 0 else ("feasible", "time_limit")
    gap = relative_gap(-objective, None if bound is None else -bound)
    return choice, SolveReport(status, stop, objective, bound, gap, elapsed, solver, version)
