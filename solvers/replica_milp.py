"""Exact replica counts and placement for one small layer, as a MILP (certificate and bound).

Data: loads ``w[t, e] >= 0`` over ``T`` sampled steps and ``E`` experts; ``D`` GPUs, GPU ``g``
with ``cap[g]`` slots (``P / D`` each by default), ``P = sum_g cap[g] >= E`` slots in all;
``D+`` GPUs with at least one slot. An expert may have ``k = 1 .. K`` replicas,
``K = min(D+, P - E + 1)``, at most one per GPU; each replica takes ``w[t, e] / k`` (the even split
the engines assume). ``W[e] = sum_t w[t, e]``.

Variables:

- ``y[e, k] in {0, 1}``: expert ``e`` has ``k`` replicas;
- ``z[e, g, k] in {0, 1}``: a replica of ``e`` sits on GPU ``g`` while ``e`` has ``k`` replicas;
- ``M[t] >= 0``: load of the busiest GPU at step ``t``.

Constraints:

1. one replica count per expert: ``sum_k y[e, k] = 1``;
2. ``k`` replicas on ``k`` distinct GPUs: ``sum_g z[e, g, k] = k * y[e, k]`` (``z`` is binary, so
   no GPU holds two replicas of one expert);
3. GPU slots filled: ``sum_{e, k} z[e, g, k] = cap[g]``;
4. busiest GPU: ``M[t] >= sum_{e, k} (w[t, e] / k) * z[e, g, k]`` for every ``t, g``;
5. cuts: ``M[t] >= sum_e w[t, e] / D+`` (as a bound on ``M[t]``) and
   ``M[t] >= sum_k (w[t, e] / k) * y[e, k]`` for every ``t, e``;
6. symmetry breaking, valid because permuting GPUs of equal capacity maps a solution to one with
   the same objective. ``symmetry="pin"`` (default, only when all GPUs have the same capacity):
   the heaviest expert ``h`` (largest ``W``) with ``k`` replicas sits on GPUs ``0 .. k-1``,
   ``z[h, g, k] = y[h, k]`` for ``g < k``. ``symmetry="loads"``: within each class of GPUs with
   equal capacity, summed loads do not increase with the index,
   ``sum_{e, k} (W[e] / k) (z[e, g, k] - z[e, g', k]) >= 0`` for consecutive ``g < g'``; it also
   holds for unequal capacities, but with it HiGHS was 3-10x slower on placement-only E = 16,
   D = 4, T = 10 layers, and its joint-model bound stayed at the mean;
7. with a warm start of value ``V``: ``sum_t M[t] <= V`` (up to round-off), a cutoff.

Objective: minimise ``sum_t M[t]``.

Variant 4' (``counts`` given): ``y`` is fixed, so only the placement ``z`` is optimised.

The model goes to HiGHS through ``scipy.optimize.milp``: pulp's HiGHS interface needs
``highspy``, which is not a dependency, and scipy's result keeps the dual bound and the
time-limit stop apart. scipy's interface takes no
starting solution, so a warm start becomes cutoff (7) and the fallback answer when HiGHS stops
without a better incumbent.

The GPU-symmetric model has a weak LP bound (close to perfect balance): HiGHS proved optimality
only for placement-only models at E = 16 and left gaps of 2-8 % for the joint model at E = 16..32
after 60-120 s per layer (measurements in ``docs/replicas.md``, "Why these methods"). Use it as a
certificate on small layers, not as a planner.
"""

from __future__ import annotations

import math
import time
from typing import Literal

import numpy as np

from solvers._checks import check_weight, int_array, positive_float, positive_int
from solvers.backends import scipy_highs_version
from solvers.replay import busiest_gpu_sum
from solvers.report import SolveReport, relative_gap

__all__ = ["exact_replica_milp", "placement_objective"]

SOLVER = "scipy-highs-milp"

Symmetry = Literal["pin", "loads", "none"]


def exact_replica_milp(
    weight,
    num_slots: int,
    num_gpus: int,
    *,
    capacity=None,
    counts=None,
    time_limit_s: float = 10.0,
    warm_start=None,
    rel_gap: float = 1e-6,
    symmetry: Symmetry = "pin",
) -> tuple[np.ndarray | None, np.ndarray | None, SolveReport]:
    """Choose replica counts and a placement minimising the summed per-step busiest-GPU load.

    Parameters
    ----------
    weight : array_like of float, shape (T, E) or (E,)
        Non-negative load of each expert at each sampled step (one step when 1-D).
    num_slots : int
        Slots ``P`` of the layer, ``>= E``.
    num_gpus : int
        GPUs ``D``; must divide `num_slots` unless `capacity` is given.
    capacity : array_like of int, shape (D,), optional
        Slots per GPU, non-negative, summing to `num_slots`. Default ``P / D`` each.
    counts : array_like of int, shape (E,), optional
        Fixed replica counts (``>= 1``, summing to `num_slots`): only the placement is optimised.
    time_limit_s : float
        Wall-clock limit handed to HiGHS.
    warm_start : tuple (phy2log, slot_gpu), optional
        A valid placement of this layer (same capacity, and `counts` if given). It becomes a
        cutoff and is returned if HiGHS finds nothing better in time.
    rel_gap : float
        Relative MIP gap at which HiGHS stops and the result counts as optimal.
    symmetry : {"pin", "loads", "none"}
        Symmetry-breaking constraint (6); see the module notes. ``"pin"`` adds nothing when the
        GPUs' capacities differ.

    Returns
    -------
    phy2log : ndarray of int64, shape (P,), or None
        Logical expert of each slot; within a GPU, experts in increasing order.
    slot_gpu : ndarray of int64, shape (P,), or None
        GPU of each slot, GPU-major (non-decreasing).
    report : SolveReport
        ``objective``: ``sum_t max_g load`` recomputed from the returned placement.
        ``bound``: HiGHS's proven lower bound, never below the simple bound
        ``sum_t max(sum_e w[t, e] / D+, max_e w[t, e] / K)``, never above ``objective``.
        ``status`` is ``"optimal"`` only when HiGHS closed the gap to `rel_gap`; a time-limited
        incumbent is ``"feasible"`` with ``stop_reason="time_limit"``; without any incumbent the
        arrays are None and ``status`` is ``"error"``. ``"infeasible"`` (arrays None) when no
        placement without duplicate replicas on a GPU exists.

    Raises
    ------
    ValueError
        On bad shapes or values, ``P < E``, ``P % D != 0`` without `capacity`, counts or capacity
        that do not sum to ``P``, or an invalid warm start.

    Examples
    --------
    >>> w = [[6.0, 3.0, 2.0, 1.0], [5.0, 4.0, 2.0, 1.0]]
    >>> phy2log, slot_gpu, rep = exact_replica_milp(w, 6, 2, time_limit_s=5.0)
    >>> rep.status, rep.objective, slot_gpu.tolist()
    ('optimal', 13.0, [0, 0, 0, 1, 1, 1])
    >>> sorted(np.bincount(phy2log).tolist())
    [1, 1, 2, 2]
    >>> exact_replica_milp(w, 6, 2, counts=[1, 1, 2, 2])[2].objective  # placement only
    14.0
    """
    start = time.perf_counter()
    w = check_weight(weight, "(T, E)")
    steps, experts = w.shape
    num_slots = positive_int(num_slots, "num_slots")
    num_gpus = positive_int(num_gpus, "num_gpus")
    if num_slots < experts:
        raise ValueError(f"num_slots ({num_slots}) must be at least the number of experts ({experts})")
    cap = _check_capacity(capacity, num_slots, num_gpus)
    fixed = None if counts is None else _check_counts(counts, experts, num_slots)
    time_limit_s = positive_float(time_limit_s, "time_limit_s")
    if not (0.0 <= rel_gap < 1.0):
        raise ValueError(f"rel_gap must be in [0, 1), got {rel_gap!r}")
    if symmetry not in ("pin", "loads", "none"):
        raise ValueError(f"symmetry must be 'pin', 'loads' or 'none', got {symmetry!r}")
    warm = None if warm_start is None else _check_warm_start(warm_start, experts, cap, fixed)
    version = scipy_highs_version()

    reason = _infeasibility(cap, experts, fixed)
    if reason:
        report = SolveReport("infeasible", "infeasible", None, None, None,
                             time.perf_counter() - start, SOLVER, version, reason)
        return None, None, report

    active = int((cap > 0).sum())
    kmax = min(active, num_slots - experts + 1) if fixed is None else int(fixed.max())
    simple_bound = float(np.maximum(
        w.sum(axis=1) / active,
        (w / (kmax if fixed is None else fixed)).max(axis=1),
    ).sum())
    warm_value = None if warm is None else placement_objective(w, warm[0], warm[1], num_gpus)

    model = _build_model(w, cap, kmax, fixed, symmetry, warm_value)
    res = _solve(model, time_limit_s, rel_gap)

    found = None
    if res.x is not None:
        found = _extract(res.x, model, cap)
    candidates = [p for p in (found, warm) if p is not None]
    elapsed = time.perf_counter() - start
    if not candidates:
        stop = "time_limit" if res.status == 1 else "error"
        report = SolveReport("error", stop, None, simple_bound, None, elapsed, SOLVER, version,
                             f"HiGHS stopped without a solution: {res.message}")
        return None, None, report

    values = [placement_objective(w, p, g, num_gpus) for p, g in candidates]
    best = int(np.argmin(values))  # the solver's answer first on ties
    phy2log, slot_gpu = candidates[best]
    objective = values[best]
    bound = simple_bound
    dual = getattr(res, "mip_dual_bound", None)
    if dual is not None and math.isfinite(dual):
        bound = max(bound, float(dual))
    bound = min(bound, objective)  # a lower bound above a feasible value is round-off

    if res.status == 0 and found is not None:
        status, stop, message = "optimal", "completed", ""
    elif res.status == 1:
        status, stop, message = "feasible", "time_limit", ""
    else:  # HiGHS failed, or its answer broke (2)-(3) after rounding: only the warm start is sure
        status, stop = "feasible", "error"
        message = f"HiGHS stopped with status {res.status} ({res.message}); returning the best valid placement"
    report = SolveReport(status, stop, objective, bound, relative_gap(objective, bound),
                         elapsed, SOLVER, version, message)
    return phy2log, slot_gpu, report


def placement_objective(weight, phy2log, slot_gpu, num_gpus: int) -> float:
    """``sum_t max_g`` GPU load of a placement, each expert's load split evenly over its replicas.

    Parameters
    ----------
    weight : array_like of float, shape (T, E) or (E,)
    phy2log, slot_gpu : array_like of int, shape (P,)
        Expert and GPU of each slot; every expert needs at least one slot.
    num_gpus : int

    Returns
    -------
    float

    Examples
    --------
    >>> placement_objective([4.0, 2.0, 2.0], [0, 1, 0, 2], [0, 0, 1, 1], 2)
    4.0
    """
    w = np.atleast_2d(np.asarray(weight, dtype=np.float64))
    p2l = np.asarray(phy2log, dtype=np.int64)
    gpu = np.asarray(slot_gpu, dtype=np.int64)
    cnt = np.bincount(p2l, minlength=w.shape[1])
    per_slot = w[:, p2l] / cnt[p2l]
    return busiest_gpu_sum(per_slot, gpu, num_gpus)


# --- validation -------------------------------------------------------------------------------


def _check_capacity(capacity, num_slots: int, num_gpus: int) -> np.ndarray:
    if capacity is None:
        if num_slots % num_gpus:
            raise ValueError(f"num_slots ({num_slots}) must be a multiple of num_gpus ({num_gpus}) "
                             "unless capacity is given")
        return np.full(num_gpus, num_slots // num_gpus, dtype=np.int64)
    cap = int_array(capacity, "capacity", (num_gpus,))
    if np.any(cap < 0) or cap.sum() != num_slots:
        raise ValueError(f"capacity must be non-negative and sum to num_slots ({num_slots}), got {cap.tolist()}")
    return cap


def _check_counts(counts, experts: int, num_slots: int) -> np.ndarray:
    cnt = int_array(counts, "counts", (experts,))
    if np.any(cnt < 1) or cnt.sum() != num_slots:
        raise ValueError(f"counts must be >= 1 and sum to num_slots ({num_slots}), got {cnt.tolist()}")
    return cnt


def _check_warm_start(warm_start, experts: int, cap: np.ndarray, fixed) -> tuple[np.ndarray, np.ndarray]:
    try:
        p2l, gpu = warm_start
    except (TypeError, ValueError):
        raise ValueError("warm_start must be a pair (phy2log, slot_gpu)") from None
    size = int(cap.sum())
    p2l = int_array(p2l, "warm_start phy2log", (size,))
    gpu = int_array(gpu, "warm_start slot_gpu", (size,))
    if np.any(p2l < 0) or np.any(p2l >= experts):
        raise ValueError(f"warm_start phy2log must hold experts in [0, {experts})")
    if np.any(gpu < 0) or np.any(gpu >= cap.size) or not np.array_equal(np.bincount(gpu, minlength=cap.size), cap):
        raise ValueError(f"warm_start slot_gpu must give each GPU its capacity {cap.tolist()}")
    cnt = np.bincount(p2l, minlength=experts)
    if np.any(cnt < 1):
        raise ValueError(f"warm_start phy2log leaves expert {int(np.argmin(cnt))} without a slot")
    if fixed is not None and not np.array_equal(cnt, fixed):
        raise ValueError("warm_start replica counts differ from counts")
    pairs = p2l * cap.size + gpu
    if np.unique(pairs).size != size:
        raise ValueError("warm_start puts two replicas of one expert on one GPU")
    order = np.lexsort((p2l, gpu))
    return p2l[order], gpu[order]


def _infeasibility(cap: np.ndarray, experts: int, fixed) -> str:
    """No placement without duplicates exists. Joint model: a GPU with more slots than experts
    (otherwise dealing experts round-robin over the slots, GPU-major, is a placement). Fixed
    counts: the Gale-Ryser condition for a 0-1 expert x GPU matrix with these row and column sums.
    """
    if cap.max() > experts:
        g = int(np.argmax(cap))
        return (f"GPU {g} has {int(cap[g])} slots but there are only {experts} experts "
                "(no GPU may hold two replicas of one expert)")
    if fixed is not None:
        rows = np.sort(fixed)[::-1]
        for k in range(1, experts + 1):
            if rows[:k].sum() > np.minimum(cap, k).sum():
                return (f"no placement has these counts: the {k} largest need {int(rows[:k].sum())} "
                        f"slots on distinct GPUs, the GPUs offer {int(np.minimum(cap, k).sum())}")
    return ""


# --- model ------------------------------------------------------------------------------------


class _Model:
    """Arrays for ``scipy.optimize.milp`` plus the variable layout: y, then z, then M."""

    def __init__(self, experts: int, gpus: int, kmax: int, steps: int):
        self.experts, self.gpus, self.kmax, self.steps = experts, gpus, kmax, steps
        self.n_y = experts * kmax
        self.n_z = experts * gpus * kmax
        self.n = self.n_y + self.n_z + steps
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.names: list[str] = []  # one name per constraint block, for debugging
        self.n_rows = 0

    def y(self, e, k):  # k = 1 .. kmax
        return np.asarray(e) * self.kmax + (np.asarray(k) - 1)

    def z(self, e, g, k):
        return self.n_y + (np.asarray(e) * self.gpus + np.asarray(g)) * self.kmax + (np.asarray(k) - 1)

    def m(self, t):
        return self.n_y + self.n_z + np.asarray(t)

    def add(self, name: str, row, col, val, lo, hi, count: int) -> None:
        """Append ``count`` constraint rows ``lo <= A x <= hi``; `row` is local to the block."""
        row, col, val = (np.asarray(a).ravel() for a in np.broadcast_arrays(row, col, val))
        self.rows.append(row + self.n_rows)
        self.cols.append(col)
        self.vals.append(val.astype(np.float64))
        self.lo.append(np.broadcast_to(np.asarray(lo, dtype=np.float64), (count,)))
        self.hi.append(np.broadcast_to(np.asarray(hi, dtype=np.float64), (count,)))
        self.names.append(f"{name}[{count}]")
        self.n_rows += count


def _build_model(w: np.ndarray, cap: np.ndarray, kmax: int, fixed, symmetry: str, warm_value) -> tuple:
    steps, experts = w.shape
    gpus = cap.size
    md = _Model(experts, gpus, kmax, steps)
    E, G, K, T = np.arange(experts), np.arange(gpus), np.arange(1, kmax + 1), np.arange(steps)
    active = int((cap > 0).sum())

    lower = np.zeros(md.n)
    upper = np.ones(md.n)
    upper[md.m(T)] = np.inf
    upper[md.z(E[:, None, None], G[None, :, None][:, cap == 0], K)] = 0.0  # GPUs without slots
    if fixed is not None:  # variant 4': y[e, k] = 1 iff k = counts[e]
        onehot = (K[None, :] == fixed[:, None]).astype(np.float64)
        lower[: md.n_y] = upper[: md.n_y] = onehot.ravel()
        upper[md.z(E[:, None, None], G[None, :, None], K[None, None, :])] *= onehot[:, None, :]

    # (1) one_count[e]: sum_k y[e, k] = 1
    e_, k_ = np.meshgrid(E, K, indexing="ij")
    md.add("one_count", e_, md.y(e_, k_), 1.0, 1.0, 1.0, experts)
    # (2) spread[e, k]: sum_g z[e, g, k] - k y[e, k] = 0
    e_, g_, k_ = np.meshgrid(E, G, K, indexing="ij")
    row = e_ * kmax + (k_ - 1)  # the row of spread[e, k] is the column of y[e, k]
    md.add("spread", np.concatenate([row.ravel(), np.arange(md.n_y)]),
           np.concatenate([md.z(e_, g_, k_).ravel(), np.arange(md.n_y)]),
           np.concatenate([np.ones(row.size), -np.tile(K, experts).astype(np.float64)]),
           0.0, 0.0, experts * kmax)
    # (3) slots[g]: sum_{e, k} z[e, g, k] = cap[g]
    md.add("slots", g_, md.z(e_, g_, k_), 1.0, cap, cap, gpus)
    # (4) busiest[t, g]: sum_{e, k} (w[t, e] / k) z[e, g, k] - M[t] <= 0
    t4, e4, g4, k4 = np.meshgrid(T, E, G, K, indexing="ij")
    rows4 = t4 * gpus + g4
    md.add("busiest", np.concatenate([rows4.ravel(), (T[:, None] * gpus + G[None, :]).ravel()]),
           np.concatenate([md.z(e4, g4, k4).ravel(), np.repeat(md.m(T), gpus)]),
           np.concatenate([(w[t4, e4] / k4).ravel(), -np.ones(steps * gpus)]),
           -np.inf, 0.0, steps * gpus)
    # (5) mean cut as a bound on M[t]; expert cut heavy[t, e]: sum_k (w[t, e] / k) y[e, k] <= M[t]
    lower[md.m(T)] = w.sum(axis=1) / active
    t5, e5, k5 = np.meshgrid(T, E, K, indexing="ij")
    md.add("heavy", np.concatenate([(t5 * experts + e5).ravel(), np.arange(steps * experts)]),
           np.concatenate([md.y(e5, k5).ravel(), np.repeat(md.m(T), experts)]),
           np.concatenate([(w[t5, e5] / k5).ravel(), -np.ones(steps * experts)]),
           -np.inf, 0.0, steps * experts)
    # (6) symmetry breaking
    total = w.sum(axis=0)
    if symmetry == "loads":
        e_, k_ = np.meshgrid(E, K, indexing="ij")
        coef = (total[e_] / k_).ravel()
        for size in np.unique(cap[cap > 0]):
            same = np.flatnonzero(cap == size)
            for a, b in zip(same[:-1], same[1:], strict=True):  # order[g=a >= g=b]
                md.add(f"order[{a},{b}]", np.zeros(2 * coef.size, dtype=np.int64),
                       np.concatenate([md.z(e_, a, k_).ravel(), md.z(e_, b, k_).ravel()]),
                       np.concatenate([coef, -coef]), 0.0, np.inf, 1)
    elif symmetry == "pin" and np.all(cap == cap[0]):
        heaviest = int(np.argmax(total))
        # pin[e=heaviest, g, k]: with k replicas it sits on GPUs 0 .. k-1, z[e, g, k] - y[e, k] = 0
        g_, k_ = np.meshgrid(G, K, indexing="ij")
        keep = (g_ < k_).ravel()
        n_pin = int(keep.sum())
        md.add("pin", np.tile(np.arange(n_pin), 2),
               np.concatenate([md.z(heaviest, g_, k_).ravel()[keep], md.y(heaviest, k_).ravel()[keep]]),
               np.concatenate([np.ones(n_pin), -np.ones(n_pin)]), 0.0, 0.0, n_pin)
    # (7) cutoff from the warm start; the slack keeps the warm start itself feasible
    if warm_value is not None:
        md.add("cutoff", np.zeros(steps, dtype=np.int64), md.m(T), 1.0,
               -np.inf, warm_value * (1 + 1e-9) + 1e-9, 1)

    cost = np.zeros(md.n)
    cost[md.m(T)] = 1.0  # objective: minimise sum_t M[t]
    integrality = np.ones(md.n)
    integrality[md.m(T)] = 0
    return md, cost, integrality, lower, upper


def _solve(model, time_limit_s: float, rel_gap: float):
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix

    md, cost, integrality, lower, upper = model
    a = csr_matrix((np.concatenate(md.vals), (np.concatenate(md.rows), np.concatenate(md.cols))),
                   shape=(md.n_rows, md.n))
    cons = LinearConstraint(a, np.concatenate(md.lo), np.concatenate(md.hi))
    return milp(cost, constraints=cons, integrality=integrality, bounds=Bounds(lower, upper),
                options={"time_limit": time_limit_s, "mip_rel_gap": rel_gap, "disp": False})


def _extract(x: np.ndarray, model, cap: np.ndarray):
    """Placement from the z values, GPU-major, experts increasing inside a GPU; None if the
    rounded solution breaks (2)-(3) (HiGHS round-off)."""
    md = model[0]
    z = x[md.n_y: md.n_y + md.n_z].reshape(md.experts, md.gpus, md.kmax) > 0.5
    held = z.any(axis=2)  # held[e, g]
    if not np.array_equal(held.sum(axis=0), cap) or np.any(held.sum(axis=1) < 1):
        return None
    gpu, expert = np.nonzero(held.T)  # row-major over (g, e): GPU-major, experts increasing
    return expert.astype(np.int64), gpu.astype(np.int64)
