"""Optimal static token split between the replicas of a fixed placement, as an LP.

Data: loads ``w[t, e] >= 0`` over ``T`` steps and ``E`` experts; a fixed placement of ``P`` slots,
slot ``s`` holding expert ``e(s)`` on GPU ``g(s)`` of ``D``. Engines with static dispatch send a
fixed fraction of an expert's tokens to each replica, the same fraction at every step.

Variables: ``x[s] >= 0``, the fraction of expert ``e(s)``'s tokens sent to slot ``s``;
``M[t]``, the busiest GPU's load at step ``t``.

Constraints:

1. every token goes somewhere: ``sum_{s : e(s) = e} x[s] = 1`` for every expert ``e``;
2. busiest GPU: ``M[t] >= sum_{s : g(s) = g} w[t, e(s)] x[s]`` for every ``t, g``.

Objective: minimise ``sum_t M[t]``.

Reductions before the LP (they change no optimum): an expert with one slot, no load, or all its
slots on one GPU has nothing to choose (its slots get an even split and its load becomes a constant
per GPU); slots of one expert on one GPU share one variable, split evenly; rows (2) only for GPUs
that hold a choice, the others enter as lower bounds on ``M[t]``, as does ``sum_e w[t, e] / D``.
HiGHS solves the LP (``scipy.optimize.linprog(method="highs")``, sparse matrices).

For ``T = 1`` this is a parametric flow problem: source -> expert ``e`` with capacity ``w[e]``,
expert -> each GPU holding one of its replicas (unbounded), GPU -> sink with capacity ``M``; the
optimum is the smallest ``M`` at which the maximum flow carries every token (one parametric
max-flow, Gallo, Grigoriadis and Tarjan 1989, or a binary search on ``M``), and the flow on
``e -> g`` divided by ``w[e]`` is the split. With ``T > 1`` one split must serve every step, which
leaves the flow structure, hence the LP.
"""

from __future__ import annotations

import time

import numpy as np

from solvers._checks import check_weight, int_array, positive_float, positive_int
from solvers.backends import scipy_highs_version
from solvers.replay import busiest_gpu_sum
from solvers.report import SolveReport, relative_gap

__all__ = ["optimal_split", "optimal_split_layers", "split_objective"]

SOLVER = "scipy-highs-lp"


def optimal_split(
    weight,
    phy2log,
    slot_gpu,
    num_gpus: int,
    *,
    time_limit_s: float = 10.0,
) -> tuple[np.ndarray, SolveReport]:
    """Fractions of each expert's tokens per replica minimising the summed busiest-GPU load.

    Parameters
    ----------
    weight : array_like of float, shape (T, E) or (E,)
        Non-negative load of each expert at each step (one step when 1-D).
    phy2log : array_like of int, shape (P,)
        Expert held by each slot; every expert needs at least one slot.
    slot_gpu : array_like of int, shape (P,)
        GPU of each slot, in ``[0, num_gpus)`` (any order; the other modules use GPU-major).
    num_gpus : int
        GPUs ``D``.
    time_limit_s : float
        Wall-clock limit handed to HiGHS.

    Returns
    -------
    fractions : ndarray of float64, shape (P,)
        Share of its expert's tokens each slot receives: ``>= 0``, summing to 1 per expert.
        Experts without a choice (one slot, no load, or all slots on one GPU) are split evenly.
    report : SolveReport
        ``objective``: ``sum_t max_g`` load under the returned split (recomputed); ``bound``: the
        LP optimum; ``status`` ``"optimal"``. If HiGHS stops early the even split is returned
        with ``status="feasible"`` and a simple lower bound.

    Raises
    ------
    ValueError
        On bad shapes or values, or an expert without a slot.

    Examples
    --------
    Expert 0 has replicas on both GPUs, which also hold experts 1 (load 2) and 2 (load 4):

    >>> frac, rep = optimal_split([10.0, 2.0, 4.0], [0, 1, 0, 2], [0, 0, 1, 1], 2)
    >>> frac.round(6).tolist(), rep.objective, rep.status
    ([0.6, 1.0, 0.4, 1.0], 8.0, 'optimal')
    """
    start = time.perf_counter()
    w = check_weight(weight, "(T, E)")
    num_gpus = positive_int(num_gpus, "num_gpus")
    p2l, gpu = _check_placement(phy2log, slot_gpu, w.shape[1], num_gpus, "")
    time_limit_s = positive_float(time_limit_s, "time_limit_s")
    return _solve_layer(w, p2l, gpu, num_gpus, time_limit_s, start)


def optimal_split_layers(
    weight,
    phy2log,
    slot_gpu,
    num_gpus: int,
    *,
    time_limit_s: float = 10.0,
) -> tuple[np.ndarray, SolveReport]:
    """:func:`optimal_split` for every layer of a padded placement; one report for all layers.

    Parameters
    ----------
    weight : array_like of float, shape (T, L, E) or (L, E)
        Non-negative loads (one step when 2-D).
    phy2log, slot_gpu : array_like of int, shape (L, Pmax)
        Per layer, as in :func:`optimal_split`; ``-1`` in both marks padding slots.
    num_gpus : int
        GPUs ``D``.
    time_limit_s : float
        Wall-clock limit for all layers together; each layer gets what is left.

    Returns
    -------
    fractions : ndarray of float64, shape (L, Pmax)
        Per-slot fractions, 0 on padding.
    report : SolveReport
        ``objective`` and ``bound`` summed over layers; ``status`` ``"optimal"`` only when every
        layer is; layers reached after the time limit keep the even split.

    Raises
    ------
    ValueError
        On bad shapes or values, padding that differs between the two arrays, or an expert
        without a slot in some layer.

    Examples
    --------
    >>> w = [[[10.0, 2.0, 4.0], [1.0, 1.0, 1.0]]]
    >>> frac, rep = optimal_split_layers(w, [[0, 1, 0, 2], [0, 1, 2, -1]], [[0, 0, 1, 1], [0, 0, 1, -1]], 2)
    >>> frac.round(6).tolist(), rep.objective
    ([[0.6, 1.0, 0.4, 1.0], [1.0, 1.0, 1.0, 0.0]], 10.0)
    """
    start = time.perf_counter()
    w = check_weight(weight, "(T, L, E)")
    steps, layers, experts = w.shape
    num_gpus = positive_int(num_gpus, "num_gpus")
    p2l = int_array(phy2log, "phy2log", ("L", "Pmax"))
    gpu = int_array(slot_gpu, "slot_gpu", ("L", "Pmax"))
    if p2l.shape != gpu.shape or p2l.shape[0] != layers:
        raise ValueError(f"phy2log and slot_gpu must both have shape ({layers}, Pmax), got {p2l.shape} and {gpu.shape}")
    if not np.array_equal(p2l < 0, gpu < 0):
        raise ValueError("phy2log and slot_gpu must have their -1 padding in the same places")
    time_limit_s = positive_float(time_limit_s, "time_limit_s")
    real = p2l >= 0
    placements = [_check_placement(p2l[i][real[i]], gpu[i][real[i]], experts, num_gpus, f" in layer {i}")
                  for i in range(layers)]

    deadline = start + time_limit_s
    fractions = np.zeros(p2l.shape)
    reports = []
    for layer, (p, g) in enumerate(placements):
        left = deadline - time.perf_counter()
        if left <= 0:
            frac = _even(p)
            obj = split_objective(w[:, layer], p, g, frac, num_gpus)
            reports.append(SolveReport("feasible", "time_limit", obj, _simple_bound(w[:, layer], num_gpus), None,
                                       0.0, SOLVER, "", "time limit reached before this layer"))
        else:
            frac, rep = _solve_layer(w[:, layer], p, g, num_gpus, left, time.perf_counter())
            reports.append(rep)
        fractions[layer, real[layer]] = frac

    objective = float(sum(r.objective for r in reports))
    bound = float(sum(r.bound for r in reports))
    worst = next((r for r in reports if r.status != "optimal"), None)
    status, stop = ("optimal", "completed") if worst is None else (worst.status, worst.stop_reason)
    message = "" if worst is None else f"{sum(r.status != 'optimal' for r in reports)} of {layers} layers not optimal"
    report = SolveReport(status, stop, objective, bound, relative_gap(objective, bound),
                         time.perf_counter() - start, SOLVER, scipy_highs_version(), message)
    return fractions, report


def split_objective(weight, phy2log, slot_gpu, fractions, num_gpus: int) -> float:
    """``sum_t max_g`` GPU load when slot ``s`` receives ``fractions[s]`` of its expert's tokens.

    Examples
    --------
    >>> split_objective([10.0, 2.0, 4.0], [0, 1, 0, 2], [0, 0, 1, 1], [0.5, 1.0, 0.5, 1.0], 2)
    9.0
    """
    w = np.atleast_2d(np.asarray(weight, dtype=np.float64))
    p2l = np.asarray(phy2log, dtype=np.int64)
    gpu = np.asarray(slot_gpu, dtype=np.int64)
    per_slot = w[:, p2l] * np.asarray(fractions, dtype=np.float64)
    return busiest_gpu_sum(per_slot, gpu, num_gpus)


# --- validation -------------------------------------------------------------------------------


def _check_placement(phy2log, slot_gpu, experts: int, num_gpus: int, where: str):
    p2l = int_array(phy2log, "phy2log", ("P",))
    gpu = int_array(slot_gpu, "slot_gpu", ("P",))
    if p2l.shape != gpu.shape:
        raise ValueError(f"phy2log and slot_gpu must have the same shape{where}, got {p2l.shape} and {gpu.shape}")
    if np.any(p2l < 0) or np.any(p2l >= experts):
        raise ValueError(f"phy2log must hold experts in [0, {experts}){where}")
    if np.any(gpu < 0) or np.any(gpu >= num_gpus):
        raise ValueError(f"slot_gpu must hold GPUs in [0, {num_gpus}){where}")
    missing = np.flatnonzero(np.bincount(p2l, minlength=experts) == 0)
    if missing.size:
        raise ValueError(f"phy2log has no slot for expert {int(missing[0])}{where}")
    return p2l, gpu


# --- model ------------------------------------------------------------------------------------


def _even(p2l: np.ndarray) -> np.ndarray:
    return 1.0 / np.bincount(p2l)[p2l]


def _simple_bound(w: np.ndarray, num_gpus: int) -> float:
    return float((w.sum(axis=1) / num_gpus).sum())


def _solve_layer(w, p2l, gpu, num_gpus, time_limit_s, start) -> tuple[np.ndarray, SolveReport]:
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    steps, experts = w.shape
    version = scipy_highs_version()
    # one variable u[j] per distinct (expert, GPU) pair of an expert with a choice
    pair = p2l * num_gpus + gpu
    pairs, slot_pair, per_pair = np.unique(pair, return_inverse=True, return_counts=True)
    pair_e, pair_g = pairs // num_gpus, pairs % num_gpus
    gpus_of = np.bincount(pair_e, minlength=experts)
    free = (gpus_of[pair_e] > 1) & (w.sum(axis=0)[pair_e] > 0)
    fixed_share = per_pair / np.bincount(p2l, minlength=experts)[pair_e]  # the even split per slot

    base = np.zeros((steps, num_gpus))  # load of the slots without a choice
    np.add.at(base.T, pair_g[~free], (w[:, pair_e[~free]] * fixed_share[~free]).T)
    lower_m = np.maximum(base.max(axis=1), w.sum(axis=1) / num_gpus)

    share = np.where(free, np.nan, fixed_share)
    n_u = int(free.sum())
    res = None
    if n_u:
        j_e, j_g = pair_e[free], pair_g[free]
        col_e = np.unique(j_e, return_inverse=True)[1]
        rows_g = np.unique(j_g)  # GPUs that hold a choice get rows (2)
        row_of_g = np.full(num_gpus, -1)
        row_of_g[rows_g] = np.arange(rows_g.size)
        n_g = rows_g.size
        # (1) route[e]: sum_j u[j] = 1
        a_eq = csr_matrix((np.ones(n_u), (col_e, np.arange(n_u))), shape=(int(col_e.max()) + 1, n_u + steps))
        # (2) busiest[t, g]: sum_{j on g} w[t, e_j] u[j] - M[t] <= -base[t, g]
        t_, j_ = np.meshgrid(np.arange(steps), np.arange(n_u), indexing="ij")
        r_u = (t_ * n_g + row_of_g[j_g][j_]).ravel()
        r_m = (np.arange(steps)[:, None] * n_g + np.arange(n_g)[None, :]).ravel()
        a_ub = csr_matrix(
            (np.concatenate([w[t_, j_e[j_]].ravel(), -np.ones(r_m.size)]),
             (np.concatenate([r_u, r_m]), np.concatenate([j_.ravel(), n_u + r_m // n_g]))),
            shape=(steps * n_g, n_u + steps),
        )
        cost = np.concatenate([np.zeros(n_u), np.ones(steps)])  # objective: sum_t M[t]
        bounds = np.column_stack([np.concatenate([np.zeros(n_u), lower_m]),
                                  np.concatenate([np.ones(n_u), np.full(steps, np.inf)])])
        res = linprog(cost, A_ub=a_ub, b_ub=-base[:, rows_g].ravel(), A_eq=a_eq, b_eq=np.ones(a_eq.shape[0]),
                      bounds=bounds, method="highs", options={"time_limit": time_limit_s})
        if res.status == 0:
            u = np.clip(res.x[:n_u], 0.0, None)
            u /= np.bincount(col_e, weights=u)[col_e]  # exact sums of 1 despite round-off
            share[free] = u

    if res is not None and res.status != 0:  # stopped early: keep the even split
        share[free] = fixed_share[free]
    fractions = share[slot_pair] / per_pair[slot_pair]
    objective = split_objective(w, p2l, gpu, fractions, num_gpus)
    elapsed = time.perf_counter() - start
    if res is None:
        bound = objective  # nothing to choose: the objective is the optimum
        report = SolveReport("optimal", "completed", objective, bound, relative_gap(objective, bound), elapsed,
                             SOLVER, version, "no expert has a choice of GPU")
    elif res.status == 0:
        bound = min(float(res.fun), objective)  # the LP optimum; above the objective only by round-off
        report = SolveReport("optimal", "completed", objective, bound, relative_gap(objective, bound), elapsed,
                             SOLVER, version)
    else:
        bound = float(lower_m.sum())
        stop = "time_limit" if res.status == 1 else "error"
        report = SolveReport("feasible", stop, objective, bound, relative_gap(objective, bound), elapsed,
                             SOLVER, version, f"HiGHS stopped early ({res.message}); even split returned")
    return fractions, report
