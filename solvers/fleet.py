r"""The cheapest mix of GPU instance types that serves a request mix: Mélange's covering program.

Mélange (Griggs et al., arXiv 2404.14527; ``docs/fleet.md``) cuts the requests into size buckets
(input length x output length) and measures, for every GPU type, the highest rate one GPU sustains
on requests of one bucket within the SLO. Serving ``r`` req/s of bucket ``b`` on type ``t`` then
takes ``r / R[t, b]`` of an instance ("load"), loads of different buckets on one instance add up
(time-sharing), and the cheapest fleet is a small integer covering program.

Data:

- instance types ``t = 1..T``: price ``c[t] >= 0`` ($/hour per instance), GPUs per instance
  ``s[t] >= 1`` (a GPU type whose model does not fit one GPU is served by multi-GPU instances), and the
  GPU type ``g(t)`` it draws from;
- availability ``A[g]``: the most GPUs of type ``g`` the fleet may use (``inf``: unlimited);
- buckets ``b = 1..B`` with rate ``lam[b] >= 0`` req/s;
- capacity ``R[t, b] >= 0``: the highest rate of bucket-``b`` requests one instance of ``t`` sustains
  within the SLO (``0``: cannot serve them at all, e.g. the SLO is missed even unloaded);
- ``S`` (optional): Mélange's slice factor; each bucket's rate is cut into ``S`` equal slices, each
  served by one type. Without it a bucket's rate may be split in any proportion.

Variables:

- ``n[t] in Z+``: instances of type ``t``;
- ``x[b, t] in [0, 1]``: share of bucket ``b``'s rate served by type ``t`` (with ``S``:
  ``x[b, t] = k[b, t] / S`` with ``k[b, t] in Z+``); ``x[b, t] = 0`` where ``R[t, b] = 0``.

Constraints:

1. every bucket is served: ``sum_t x[b, t] = 1`` for every ``b`` with ``lam[b] > 0``;
2. load: ``sum_b lam[b] x[b, t] / R[t, b] <= n[t]`` for every ``t``;
3. availability: ``sum_{t: g(t) = g} s[t] n[t] <= A[g]`` for every ``g`` with finite ``A[g]``.

Objective: minimise ``sum_t c[t] n[t]`` ($/hour).

Solved with HiGHS through :func:`scipy.optimize.milp` (branch and bound; its dual bound is reported,
so a time-limited answer carries its gap). :func:`evaluate_fleet` checks any answer against 1-3 without
a solver; :func:`max_servable_scale` (an LP) says how much of the rate the available GPUs could serve
at most, which explains an infeasible instance in numbers; :func:`greedy_fleet` is the naive baseline
(each bucket whole on its cheapest type per req/s). ``tests/test_fleet_solver.py`` compares the optimum
with brute force over every count vector on small instances.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from solvers._checks import positive_float
from solvers.backends import scipy_highs_version
from solvers.report import SolveReport

__all__ = ["FleetSolution", "FleetCheck", "cheapest_fleet", "evaluate_fleet", "greedy_fleet", "max_servable_scale",
           "FLEET_TOL"]

#: relative tolerance of the load and coverage checks (HiGHS' feasibility tolerance is 1e-7)
FLEET_TOL = 1e-6


@dataclass(frozen=True)
class FleetSolution:
    """Instances per type, the share of each bucket each type serves, and what they cost.

    ``shares[b][t]`` is ``x[b, t]``; ``loads[t]`` the instances' worth of work type ``t`` carries
    (``<= counts[t]``); ``cost_per_hour`` is ``sum_t c[t] n[t]``.
    """

    counts: tuple[int, ...]
    shares: tuple[tuple[float, ...], ...]
    loads: tuple[float, ...]
    cost_per_hour: float
    gpus: tuple[int, ...]


@dataclass(frozen=True)
class FleetCheck:
    """What :func:`evaluate_fleet` recomputed: cost, loads, GPUs per type and every broken constraint."""

    cost_per_hour: float
    loads: tuple[float, ...]
    gpus_by_group: dict
    problems: tuple[str, ...]


def _check(rates, capacity, price, gpus_per_instance, group, available):
    lam = np.asarray(rates, dtype=np.float64)
    R = np.asarray(capacity, dtype=np.float64)
    c = np.asarray(price, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError("rates must be a non-empty 1-D array (one rate per bucket)")
    if R.ndim != 2 or R.shape[1] != lam.size or R.shape[0] == 0:
        raise ValueError(f"capacity must be [types, buckets] = [T, {lam.size}], got shape {R.shape}")
    T = R.shape[0]
    if c.shape != (T,):
        raise ValueError(f"price must have one entry per type ({T}), got shape {c.shape}")
    for name, arr in (("rates", lam), ("capacity", R), ("price", c)):
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise ValueError(f"{name} must be finite and >= 0")
    s = np.ones(T, dtype=np.int64) if gpus_per_instance is None else np.asarray(gpus_per_instance)
    if s.shape != (T,) or not np.issubdtype(s.dtype, np.integer) or (s < 1).any():
        raise ValueError(f"gpus_per_instance must be {T} integers >= 1")
    grp = np.arange(T) if group is None else np.asarray(group)
    if grp.shape != (T,) or not np.issubdtype(grp.dtype, np.integer) or (grp < 0).any():
        raise ValueError(f"group must be {T} non-negative integers (the GPU type of each instance type)")
    G = int(grp.max()) + 1
    A = np.full(G, np.inf) if available is None else np.asarray(available, dtype=np.float64)
    if A.shape != (G,) or np.isnan(A).any() or (A < 0).any():
        raise ValueError(f"available must have one entry >= 0 (inf: unlimited) per group ({G})")
    return lam, R, c, s.astype(np.int64), grp.astype(np.int64), A


def evaluate_fleet(rates, capacity, price, counts, shares, *, gpus_per_instance=None, group=None, available=None,
                   slices: int | None = None) -> FleetCheck:
    """Recompute cost, loads and GPUs of a fleet and list the constraints (1-3, slices) it breaks.

    >>> chk = evaluate_fleet([2.0], [[4.0], [1.0]], [3.0, 1.0], [1, 0], [[1.0, 0.0]])
    >>> chk.cost_per_hour, chk.loads, chk.problems
    (3.0, (0.5, 0.0), ())
    """
    lam, R, c, s, grp, A = _check(rates, capacity, price, gpus_per_instance, group, available)
    T, B = R.shape
    n = np.asarray(counts)
    x = np.asarray(shares, dtype=np.float64)
    problems: list[str] = []
    if n.shape != (T,) or not np.issubdtype(n.dtype, np.integer) or (n < 0).any():
        return FleetCheck(math.nan, (), {}, (f"counts must be {T} non-negative integers",))
    if x.shape != (B, T) or not np.isfinite(x).all() or (x < -FLEET_TOL).any():
        return FleetCheck(math.nan, (), {}, (f"shares must be [buckets, types] = [{B}, {T}], finite and >= 0",))
    loads = np.zeros(T)
    for b in range(B):
        if lam[b] > 0 and abs(x[b].sum() - 1.0) > FLEET_TOL:
            problems.append(f"bucket {b}: shares sum to {x[b].sum():.6g}, not 1 (constraint 1)")
        for t in range(T):
            if x[b, t] <= FLEET_TOL:
                continue
            if R[t, b] <= 0:
                problems.append(f"bucket {b}: type {t} serves a share {x[b, t]:.3g} but cannot serve it at all")
                continue
            loads[t] += lam[b] * x[b, t] / R[t, b]
            if slices is not None and abs(x[b, t] * slices - round(x[b, t] * slices)) > 1e-6:
                problems.append(f"bucket {b}: share {x[b, t]:.6g} of type {t} is not a multiple of 1/{slices}")
    for t in range(T):
        if loads[t] > n[t] * (1 + FLEET_TOL) + FLEET_TOL:
            problems.append(f"type {t}: load {loads[t]:.6g} instances exceeds its {int(n[t])} instances (constraint 2)")
    used = {int(g): int((s * n)[grp == g].sum()) for g in np.unique(grp)}
    for g, u in used.items():
        if u > A[g]:
            problems.append(f"group {g}: {u} GPUs used, {A[g]:g} available (constraint 3)")
    return FleetCheck(float(c @ n), tuple(float(v) for v in loads), used, tuple(problems))


def _milp(lam, R, c, s, grp, A, slices, time_limit_s, integral=True):
    from scipy.optimize import Bounds, LinearConstraint, milp

    T, B = R.shape
    active = [b for b in range(B) if lam[b] > 0]
    cells = [(b, t) for b in active for t in range(T) if R[t, b] > 0]
    nv = T + len(cells)
    scale = float(slices) if slices else 1.0  # with slices the share variables count slices
    obj = np.zeros(nv)
    obj[:T] = c
    rows, lo, hi = [], [], []
    for b in active:  # (1) every bucket served
        row = np.zeros(nv)
        for j, (bb, t) in enumerate(cells):
            if bb == b:
                row[T + j] = 1.0
        rows.append(row), lo.append(scale), hi.append(scale)
    for t in range(T):  # (2) load within the instances
        row = np.zeros(nv)
        row[t] = -1.0
        for j, (b, tt) in enumerate(cells):
            if tt == t:
                row[T + j] = lam[b] / (R[t, b] * scale)
        rows.append(row), lo.append(-np.inf), hi.append(0.0)
    for g in np.unique(grp):  # (3) availability
        if math.isfinite(A[g]):
            row = np.zeros(nv)
            row[:T] = np.where(grp == g, s, 0)
            rows.append(row), lo.append(-np.inf), hi.append(float(A[g]))
    # most instances a type can need: all its buckets on it alone, and no more than its GPUs allow
    need = np.array([sum(lam[b] / R[t, b] for b in active if R[t, b] > 0) for t in range(T)])
    upper_n = np.minimum(np.ceil(need + 1e-9), np.where(np.isfinite(A[grp]), np.floor(A[grp] / s), np.inf))
    upper = np.concatenate([upper_n, np.full(len(cells), scale)])
    integrality = np.zeros(nv)
    if integral:
        integrality[:T] = 1
        if slices:
            integrality[T:] = 1
    opts = {"time_limit": max(0.05, float(time_limit_s)), "presolve": True}
    res = milp(obj, constraints=LinearConstraint(np.array(rows), lo, hi) if rows else None,
               integrality=integrality, bounds=Bounds(np.zeros(nv), upper), options=opts)
    return res, cells


def _solution(res, cells, lam, R, c, s, slices) -> FleetSolution:
    T, B = R.shape
    n = np.rint(res.x[:T]).astype(np.int64)
    x = np.zeros((B, T))
    for j, (b, t) in enumerate(cells):
        v = res.x[T + j]
        x[b, t] = (round(v) / slices) if slices else max(0.0, float(v))
    for b in range(B):  # exact sums despite the solver's tolerance
        tot = x[b].sum()
        if tot > 0:
            x[b] /= tot
    loads = [float(sum(lam[b] * x[b, t] / R[t, b] for b in range(B) if x[b, t] > 0)) for t in range(T)]
    return FleetSolution(tuple(int(v) for v in n), tuple(tuple(float(v) for v in row) for row in x),
                         tuple(loads), float(c @ n), tuple(int(v) for v in n * s))


def cheapest_fleet(
    rates_req_per_s: Sequence[float],
    capacity_req_per_s,
    price_per_hour: Sequence[float],
    *,
    gpus_per_instance: Sequence[int] | None = None,
    group: Sequence[int] | None = None,
    available_gpus: Sequence[float] | None = None,
    slices: int | None = None,
    time_limit_s: float = 10.0,
) -> tuple[FleetSolution | None, SolveReport]:
    """The cheapest instance counts and bucket shares (module docstring for the model).

    Parameters
    ----------
    rates_req_per_s : ``lam[b]``, the rate of each bucket.
    capacity_req_per_s : ``R[t, b]``, shape ``[types, buckets]``; 0 where a type cannot serve a bucket.
    price_per_hour : ``c[t]``, $/hour per instance.
    gpus_per_instance : ``s[t]`` (default 1).
    group : ``g(t)``, the GPU type each instance type draws from (default: each its own).
    available_gpus : ``A[g]`` per group (``inf``: unlimited; default all unlimited).
    slices : Mélange's slice factor ``S`` (None: shares are continuous).
    time_limit_s : HiGHS' time limit.

    Returns
    -------
    (FleetSolution or None, SolveReport)
        ``None`` when no fleet serves every bucket (report ``infeasible``) or none was found in time.
        The report's objective is the cost per hour, its bound HiGHS' dual bound.

    Raises
    ------
    ValueError
        Malformed data (shapes, negative values, slices < 1).

    Examples
    --------
    Two buckets, a cheap type good at the first and a dear one good at both:

    >>> sol, rep = cheapest_fleet([4.0, 1.0], [[4.0, 0.25], [4.0, 2.0]], [1.0, 3.0])
    >>> sol.counts, sol.cost_per_hour, rep.status
    ((1, 1), 4.0, 'optimal')
    """
    start = time.perf_counter()
    lam, R, c, s, grp, A = _check(rates_req_per_s, capacity_req_per_s, price_per_hour, gpus_per_instance, group,
                                  available_gpus)
    if slices is not None and (isinstance(slices, bool) or not isinstance(slices, (int, np.integer)) or slices < 1):
        raise ValueError(f"slices must be an integer >= 1, got {slices!r}")
    limit = positive_float(time_limit_s, "time_limit_s")

    def report(status, stop, value, bound, message=""):
        gap = None
        if value is not None and bound is not None:
            gap = 0.0 if value <= 0 else max(0.0, (value - bound) / value)
        return SolveReport(status, stop, value, bound, gap, time.perf_counter() - start, "fleet-milp-highs",
                           scipy_highs_version(), message)

    orphan = [b for b in range(lam.size) if lam[b] > 0 and not (R[:, b] > 0).any()]
    if orphan:
        return None, report("infeasible", "infeasible", None, None, f"bucket {orphan[0]}: no type serves it")
    res, cells = _milp(lam, R, c, s, grp, A, slices, limit)
    # scipy.optimize.milp status: 0 optimal, 1 iteration or time limit, 2 infeasible, 3 unbounded, 4 other
    if res.status == 2:
        return None, report("infeasible", "infeasible", None, None, "the available GPUs cannot serve every bucket")
    if res.x is None:
        stop = "time_limit" if res.status == 1 else "error"
        return None, report("error", stop, None, getattr(res, "mip_dual_bound", None), str(res.message))
    sol = _solution(res, cells, lam, R, c, s, slices)
    chk = evaluate_fleet(lam, R, c, sol.counts, sol.shares, gpus_per_instance=s, group=grp, available=A,
                         slices=slices)
    if chk.problems:  # the model and the evaluation disagree: a bug, never a user's error
        raise AssertionError(f"solver answer breaks the model: {chk.problems}")
    bound = getattr(res, "mip_dual_bound", None)
    bound = sol.cost_per_hour if res.status == 0 else (None if bound is None else min(float(bound), sol.cost_per_hour))
    if res.status == 0:
        return sol, report("optimal", "completed", sol.cost_per_hour, sol.cost_per_hour)
    return sol, report("feasible", "time_limit", sol.cost_per_hour, bound)


def greedy_fleet(rates_req_per_s, capacity_req_per_s, price_per_hour, *, gpus_per_instance=None, group=None,
                 available_gpus=None) -> FleetSolution | None:
    """The naive baseline: each bucket whole on the type with the lowest price per req/s of it
    (``c[t] / R[t, b]``), then each type's load rounded up to instances; None if that breaks availability.

    >>> greedy_fleet([4.0, 1.0], [[4.0, 0.25], [4.0, 2.0]], [1.0, 3.0]).counts
    (1, 1)
    """
    lam, R, c, s, grp, A = _check(rates_req_per_s, capacity_req_per_s, price_per_hour, gpus_per_instance, group,
                                  available_gpus)
    T, B = R.shape
    x = np.zeros((B, T))
    for b in range(B):
        if lam[b] <= 0:
            continue
        ok = np.flatnonzero(R[:, b] > 0)
        if ok.size == 0:
            return None
        x[b, ok[np.argmin(c[ok] / R[ok, b])]] = 1.0
    loads = np.array([sum(lam[b] * x[b, t] / R[t, b] for b in range(B) if x[b, t] > 0) for t in range(T)])
    n = np.ceil(loads * (1 - FLEET_TOL)).astype(np.int64)
    chk = evaluate_fleet(lam, R, c, n, x, gpus_per_instance=s, group=grp, available=A)
    if chk.problems:
        return None
    return FleetSolution(tuple(int(v) for v in n), tuple(tuple(float(v) for v in row) for row in x),
                         tuple(float(v) for v in loads), float(c @ n), tuple(int(v) for v in n * s))


def max_servable_scale(rates_req_per_s, capacity_req_per_s, *, gpus_per_instance=None, group=None,
                       available_gpus=None) -> float:
    """The largest ``a`` such that the available GPUs could serve ``a x lam`` with fractional instances (an LP;
    ``inf`` when nothing is limited). Below 1 it proves the instance infeasible and says by how much.

    >>> max_servable_scale([4.0], [[2.0]], available_gpus=[1])
    0.5
    """
    from scipy.optimize import linprog

    lam, R, _, s, grp, A = _check(rates_req_per_s, capacity_req_per_s, np.zeros(np.shape(capacity_req_per_s)[0]),
                                  gpus_per_instance, group, available_gpus)
    T, B = R.shape
    active = [b for b in range(B) if lam[b] > 0]
    if not active or any(not (R[:, b] > 0).any() for b in active):
        return 0.0 if active else math.inf
    # variables: y[b, t] rate of bucket b on t (req/s), then a; maximise a
    cells = [(b, t) for b in active for t in range(T) if R[t, b] > 0]
    nv = len(cells) + 1
    obj = np.zeros(nv)
    obj[-1] = -1.0
    A_eq, b_eq, A_ub, b_ub = [], [], [], []
    for b in active:
        row = np.zeros(nv)
        for j, (bb, t) in enumerate(cells):
            if bb == b:
                row[j] = 1.0
        row[-1] = -lam[b]
        A_eq.append(row), b_eq.append(0.0)
    for g in np.unique(grp):
        if not math.isfinite(A[g]):
            continue
        row = np.zeros(nv)
        for j, (b, t) in enumerate(cells):
            if grp[t] == g:
                row[j] = s[t] / R[t, b]
        A_ub.append(row), b_ub.append(float(A[g]))
    res = linprog(obj, A_ub=np.array(A_ub) if A_ub else None, b_ub=b_ub or None, A_eq=np.array(A_eq), b_eq=b_eq,
                  bounds=[(0, None)] * nv, method="highs")
    if res.status == 3:  # unbounded: an unlimited type serves every bucket
        return math.inf
    return float(res.x[-1]) if res.status == 0 else 0.0
