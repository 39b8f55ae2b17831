"""solvers/fleet.py: the covering program's optimum equals brute force on small instances; the evaluator
catches every broken constraint; infeasibility is explained by the servable scale."""

import itertools
import math

import numpy as np
import pytest
from scipy.optimize import linprog

from solvers.fleet import cheapest_fleet, evaluate_fleet, greedy_fleet, max_servable_scale


def _shares_fit(lam, R, n):
    """Can buckets be split over types so that no type's load exceeds its count? (an LP, scipy directly)"""
    T, B = R.shape
    cells = [(b, t) for b in range(B) for t in range(T) if R[t, b] > 0]
    A_eq = [[1.0 if bb == b else 0.0 for bb, _ in cells] for b in range(B)]
    A_ub = [[lam[b] / R[t, b] if tt == t else 0.0 for b, tt in cells] for t in range(T)]
    res = linprog(np.zeros(len(cells)), A_ub=A_ub, b_ub=n, A_eq=A_eq, b_eq=np.ones(B), bounds=[(0, 1)] * len(cells),
                  method="highs")
    return res.status == 0


def _brute_continuous(lam, R, c, s, grp, A):
    T = R.shape[0]
    need = [math.ceil(sum(lam[b] / R[t, b] for b in range(len(lam)) if R[t, b] > 0)) for t in range(T)]
    best = math.inf
    for n in itertools.product(*(range(k + 1) for k in need)):
        n = np.array(n)
        if any((s * n)[grp == g].sum() > A[g] for g in range(len(A))):
            continue
        cost = float(c @ n)
        if cost < best - 1e-12 and _shares_fit(lam, R, n):
            best = cost
    return best


def _brute_slices(lam, R, c, s, grp, A, S):
    T, B = R.shape
    best = math.inf
    for owner in itertools.product(range(T), repeat=S * B):
        load = np.zeros(T)
        ok = True
        for k, t in enumerate(owner):
            b = k // S
            if R[t, b] <= 0:
                ok = False
                break
            load[t] += lam[b] / (S * R[t, b])
        if not ok:
            continue
        n = np.ceil(load - 1e-9).astype(int)
        if any((s * n)[grp == g].sum() > A[g] for g in range(len(A))):
            continue
        best = min(best, float(c @ n))
    return best


def _instance(rng, T=3, B=2):
    lam = rng.uniform(0.5, 6.0, B).round(2)
    R = rng.uniform(0.5, 5.0, (T, B)).round(2)
    R[rng.random((T, B)) < 0.2] = 0.0
    R[0] = np.maximum(R[0], 0.5)  # type 0 serves everything: most instances are feasible
    c = rng.uniform(0.5, 4.0, T).round(2)
    s = rng.integers(1, 3, T)
    grp = np.array([0, 0, 1][:T])
    A = np.array([rng.choice([4, 8, np.inf]), rng.choice([2, 6, np.inf])])
    return lam, R, c, s, grp, A


@pytest.mark.parametrize("seed", range(12))
def test_optimum_equals_brute_force_continuous_shares(seed):
    lam, R, c, s, grp, A = _instance(np.random.default_rng(seed))
    sol, rep = cheapest_fleet(lam, R, c, gpus_per_instance=s, group=grp, available_gpus=A)
    best = _brute_continuous(lam, R, c, s, grp, A)
    if math.isinf(best):
        assert sol is None and rep.status == "infeasible"
        assert max_servable_scale(lam, R, gpus_per_instance=s, group=grp, available_gpus=A) < 1
        return
    assert rep.status == "optimal" and rep.gap == 0.0
    assert sol.cost_per_hour == pytest.approx(best, abs=1e-9)
    chk = evaluate_fleet(lam, R, c, sol.counts, sol.shares, gpus_per_instance=s, group=grp, available=A)
    assert chk.problems == () and chk.cost_per_hour == pytest.approx(best)


@pytest.mark.parametrize("seed", range(8))
def test_optimum_equals_brute_force_with_slices(seed):
    lam, R, c, s, grp, A = _instance(np.random.default_rng(100 + seed))
    sol, rep = cheapest_fleet(lam, R, c, gpus_per_instance=s, group=grp, available_gpus=A, slices=2)
    best = _brute_slices(lam, R, c, s, grp, A, 2)
    if math.isinf(best):
        assert sol is None and rep.status == "infeasible"
        return
    assert sol.cost_per_hour == pytest.approx(best, abs=1e-9)
    assert all(abs(x * 2 - round(x * 2)) < 1e-9 for row in sol.shares for x in row)
    # continuous shares are a relaxation of slices: never dearer
    cont, _ = cheapest_fleet(lam, R, c, gpus_per_instance=s, group=grp, available_gpus=A)
    assert cont.cost_per_hour <= sol.cost_per_hour + 1e-9


def test_greedy_is_never_cheaper_than_the_optimum():
    for seed in range(20):
        lam, R, c, s, grp, _ = _instance(np.random.default_rng(200 + seed))
        sol, _ = cheapest_fleet(lam, R, c, gpus_per_instance=s, group=grp)
        g = greedy_fleet(lam, R, c, gpus_per_instance=s, group=grp)
        assert g is not None and g.cost_per_hour >= sol.cost_per_hour - 1e-9


def test_evaluator_catches_each_broken_constraint():
    lam, R, c = [2.0, 1.0], [[2.0, 1.0], [4.0, 0.0]], [1.0, 1.5]
    ok = evaluate_fleet(lam, R, c, [1, 1], [[0.0, 1.0], [1.0, 0.0]], available=[1, 1])
    assert ok.problems == () and ok.cost_per_hour == 2.5
    assert "constraint 1" in evaluate_fleet(lam, R, c, [1, 1], [[0.5, 0.0], [1.0, 0.0]]).problems[0]
    assert "constraint 2" in evaluate_fleet(lam, R, c, [0, 1], [[0.0, 1.0], [1.0, 0.0]]).problems[0]
    assert "constraint 3" in evaluate_fleet(lam, R, c, [2, 1], [[0.0, 1.0], [1.0, 0.0]], available=[1, 1]).problems[0]
    assert "cannot serve" in evaluate_fleet(lam, R, c, [1, 1], [[0.0, 1.0], [0.0, 1.0]]).problems[0]
    assert "multiple of 1/2" in evaluate_fleet(lam, R, c, [2, 1], [[0.3, 0.7], [1.0, 0.0]], slices=2).problems[0]


def test_infeasible_instance_reports_how_much_could_be_served():
    sol, rep = cheapest_fleet([4.0], [[2.0]], [1.0], available_gpus=[1])
    assert sol is None and rep.status == "infeasible"
    assert max_servable_scale([4.0], [[2.0]], available_gpus=[1]) == pytest.approx(0.5)
    assert max_servable_scale([4.0], [[2.0]]) == math.inf


def test_bad_arrays_are_value_errors():
    with pytest.raises(ValueError, match="capacity"):
        cheapest_fleet([1.0, 2.0], [[1.0]], [1.0])
    with pytest.raises(ValueError, match="price"):
        cheapest_fleet([1.0], [[1.0]], [-1.0])
    with pytest.raises(ValueError, match="slices"):
        cheapest_fleet([1.0], [[1.0]], [1.0], slices=0)
