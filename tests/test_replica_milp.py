"""Exact replica MILP: optimum equals brute-force enumeration on tiny layers; placements valid;
bounds honest; time limits, warm starts, infeasibility and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.replica_milp import exact_replica_milp, placement_objective


def brute_force(weight, capacity, counts=None):
    """Smallest sum_t max_g load over every replica count vector and duplicate-free placement."""
    w = np.atleast_2d(np.asarray(weight, dtype=float))
    experts = w.shape[1]
    cap = np.asarray(capacity)
    gpus = cap.size
    best = np.inf

    def place(e, left, chosen):
        nonlocal best
        if e == experts:
            p2l = [x for x, gs in enumerate(chosen) for _ in gs]
            gpu = [g for gs in chosen for g in gs]
            best = min(best, placement_objective(w, p2l, gpu, gpus))
            return
        sizes = [counts[e]] if counts is not None else range(1, gpus + 1)
        for k in sizes:
            for gs in itertools.combinations(range(gpus), k):
                if all(left[g] > 0 for g in gs) and sum(left) - k >= experts - e - 1:
                    for g in gs:
                        left[g] -= 1
                    if e < experts - 1 or sum(left) == 0:
                        place(e + 1, left, chosen + [gs])
                    for g in gs:
                        left[g] += 1

    place(0, list(cap), [])
    return best


def check_placement(phy2log, slot_gpu, weight, capacity, counts=None):
    w = np.atleast_2d(weight)
    cap = np.asarray(capacity)
    assert phy2log.shape == slot_gpu.shape == (cap.sum(),)
    assert np.all(np.diff(slot_gpu) >= 0), "slot_gpu must be GPU-major"
    assert np.bincount(slot_gpu, minlength=cap.size).tolist() == cap.tolist()
    cnt = np.bincount(phy2log, minlength=w.shape[1])
    assert cnt.min() >= 1 and cnt.size == w.shape[1]
    if counts is not None:
        assert cnt.tolist() == list(counts)
    pairs = set(zip(phy2log.tolist(), slot_gpu.tolist(), strict=True))
    assert len(pairs) == phy2log.size, "two replicas of one expert on one GPU"


def check_report(rep, phy2log, slot_gpu, weight, num_gpus):
    w = np.atleast_2d(weight)
    assert rep.objective == pytest.approx(placement_objective(w, phy2log, slot_gpu, num_gpus), rel=1e-12)
    assert rep.bound <= rep.objective
    assert rep.bound >= (w.sum(axis=1) / num_gpus).sum() - 1e-9
    assert rep.solver == "scipy-highs-milp"


@st.composite
def tiny_layers(draw, fixed_counts=False, uneven=False):
    gpus = draw(st.integers(1, 3))
    experts = draw(st.integers(2, 6 if gpus < 3 else 5))
    if uneven:
        cap = np.array(draw(st.lists(st.integers(0, experts), min_size=gpus, max_size=gpus)))
        if cap.sum() < experts or cap.sum() > experts + 3:
            cap = np.full(gpus, 0)
            cap[: experts % gpus] = 1
            cap += experts // gpus
            cap[0] += draw(st.integers(0, min(2, experts - cap[0])))
    else:
        per_gpu = draw(st.integers(-(-experts // gpus), min(experts, (experts + 3) // gpus)))
        cap = np.full(gpus, per_gpu)
    steps = draw(st.integers(1, 3))
    weight = np.array(draw(st.lists(st.integers(0, 20), min_size=steps * experts, max_size=steps * experts)),
                      dtype=float).reshape(steps, experts)
    counts = None
    if fixed_counts:
        extra = int(cap.sum()) - experts
        counts = np.ones(experts, dtype=np.int64)
        for e in draw(st.lists(st.integers(0, experts - 1), min_size=extra, max_size=extra)):
            counts[e] += 1
    return weight, cap, counts


@settings(max_examples=80, deadline=None)
@given(tiny_layers())
def test_joint_model_matches_brute_force(inst):
    weight, cap, _ = inst
    p2l, gpu, rep = exact_replica_milp(weight, int(cap.sum()), cap.size, time_limit_s=5.0)
    check_placement(p2l, gpu, weight, cap)
    check_report(rep, p2l, gpu, weight, cap.size)
    assert rep.status == "optimal" and rep.stop_reason == "completed"
    assert rep.objective == pytest.approx(brute_force(weight, cap), rel=1e-6, abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(tiny_layers(fixed_counts=True))
def test_placement_only_matches_brute_force(inst):
    weight, cap, counts = inst
    p2l, gpu, rep = exact_replica_milp(weight, int(cap.sum()), cap.size, counts=counts, time_limit_s=5.0)
    best = brute_force(weight, cap, counts)
    if best == np.inf:
        assert rep.status == "infeasible" and p2l is None and gpu is None
        return
    check_placement(p2l, gpu, weight, cap, counts)
    check_report(rep, p2l, gpu, weight, cap.size)
    assert rep.status == "optimal"
    assert rep.objective == pytest.approx(best, rel=1e-6, abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(tiny_layers(uneven=True))
def test_uneven_capacity_matches_brute_force(inst):
    weight, cap, _ = inst
    p2l, gpu, rep = exact_replica_milp(weight, int(cap.sum()), cap.size, capacity=cap, time_limit_s=5.0)
    check_placement(p2l, gpu, weight, cap)
    check_report(rep, p2l, gpu, weight, cap.size)
    assert rep.status == "optimal"
    assert rep.objective == pytest.approx(brute_force(weight, cap), rel=1e-6, abs=1e-9)


WEIGHT = np.array([[9.0, 6.0, 4.0, 3.0, 2.0, 1.0], [8.0, 7.0, 3.0, 3.0, 2.0, 2.0], [10.0, 4.0, 5.0, 2.0, 1.0, 3.0]])


@pytest.mark.parametrize("symmetry", ["pin", "loads", "none"])
def test_every_symmetry_option_keeps_the_optimum(symmetry):
    best = brute_force(WEIGHT, [3, 3, 3])
    _, _, rep = exact_replica_milp(WEIGHT, 9, 3, symmetry=symmetry, time_limit_s=5.0)
    assert rep.status == "optimal" and rep.objective == pytest.approx(best, rel=1e-6)
    _, _, rep = exact_replica_milp(WEIGHT, 8, 3, capacity=[2, 3, 3], symmetry=symmetry, time_limit_s=5.0)
    assert rep.status == "optimal" and rep.objective == pytest.approx(brute_force(WEIGHT, [2, 3, 3]), rel=1e-6)


def test_one_dimensional_weight_is_one_step():
    p2l, gpu, rep = exact_replica_milp(WEIGHT[0], 8, 2, time_limit_s=5.0)
    assert rep.status == "optimal" and rep.objective == pytest.approx(brute_force(WEIGHT[:1], [4, 4]))


def _medium_layer(seed=0, experts=16, steps=10):
    rng = np.random.default_rng(seed)
    pop = rng.permutation(1.0 / np.arange(1, experts + 1) ** 0.7)
    return np.stack([rng.multinomial(2048, pop / pop.sum()) for _ in range(steps)]).astype(float)


def test_time_limit_gives_feasible_not_optimal():
    w = _medium_layer()
    p2l, gpu, rep = exact_replica_milp(w, 20, 4, time_limit_s=0.5)
    assert rep.stop_reason == "time_limit"
    assert rep.status in ("feasible", "error")  # never "optimal" at the limit
    if rep.status == "feasible":
        check_placement(p2l, gpu, w, [5, 5, 5, 5])
        check_report(rep, p2l, gpu, w, 4)
        assert rep.gap > 0
    else:
        assert p2l is None and gpu is None


def test_warm_start_is_kept_when_nothing_better_is_found():
    w = _medium_layer(seed=1)
    # round-robin placement, GPU-major: a valid warm start
    warm_p2l = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3])
    warm_gpu = np.repeat(np.arange(4), 5)
    warm_value = placement_objective(w, warm_p2l, warm_gpu, 4)
    p2l, gpu, rep = exact_replica_milp(w, 20, 4, warm_start=(warm_p2l, warm_gpu), time_limit_s=0.3)
    assert rep.status in ("feasible", "optimal")
    check_placement(p2l, gpu, w, [5, 5, 5, 5])
    check_report(rep, p2l, gpu, w, 4)
    assert rep.objective <= warm_value + 1e-9


def test_warm_start_at_the_optimum_stays_optimal():
    p2l, gpu, first = exact_replica_milp(WEIGHT, 9, 3, time_limit_s=5.0)
    shuffled = np.random.default_rng(0).permutation(9)
    p2l2, gpu2, rep = exact_replica_milp(WEIGHT, 9, 3, warm_start=(p2l[shuffled], gpu[shuffled]), time_limit_s=5.0)
    assert rep.status == "optimal" and rep.objective == pytest.approx(first.objective, rel=1e-9)


def test_infeasible_layers():
    _, _, rep = exact_replica_milp([1.0, 2.0, 3.0], 4, 2, capacity=[4, 0])
    assert rep.status == "infeasible" and "GPU 0" in rep.message
    p2l, gpu, rep = exact_replica_milp([1.0, 2.0], 4, 2, capacity=[3, 1], counts=[2, 2])
    assert rep.status == "infeasible" and p2l is None and gpu is None


def test_a_gpu_without_slots_is_left_empty():
    p2l, gpu, rep = exact_replica_milp(WEIGHT, 6, 3, capacity=[3, 0, 3], time_limit_s=5.0)
    check_placement(p2l, gpu, WEIGHT, [3, 0, 3])
    assert rep.status == "optimal"
    assert rep.objective == pytest.approx(brute_force(WEIGHT, [3, 0, 3]), rel=1e-6)


def test_inputs_are_not_mutated():
    w = WEIGHT.copy()
    counts = np.array([2, 2, 2, 1, 1, 1])
    exact_replica_milp(w, 9, 3, counts=counts, time_limit_s=5.0)
    assert np.array_equal(w, WEIGHT) and counts.tolist() == [2, 2, 2, 1, 1, 1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight": [[-1.0, 2.0, 3.0]]}, "weight"),
        ({"weight": [[np.nan, 2.0, 3.0]]}, "weight"),
        ({"weight": np.ones((2, 2, 2))}, "weight"),
        ({"num_slots": 2}, "num_slots"),
        ({"num_slots": 5}, "num_slots"),
        ({"num_gpus": 0}, "num_gpus"),
        ({"capacity": [1, 2]}, "capacity"),
        ({"capacity": [2, 2, 2]}, "capacity"),
        ({"counts": [2, 1]}, "counts"),
        ({"counts": [2, 2, 0]}, "counts"),
        ({"time_limit_s": -1.0}, "time_limit_s"),
        ({"rel_gap": 2.0}, "rel_gap"),
        ({"symmetry": "lex"}, "symmetry"),
        ({"warm_start": ([0, 1, 2, 0], [0, 0, 0, 1])}, "warm_start"),
        ({"warm_start": ([0, 0, 1, 2], [0, 0, 1, 1])}, "warm_start"),
        ({"warm_start": ([0, 1, 1, 1], [0, 0, 1, 1])}, "warm_start"),
        ({"warm_start": [0, 1, 2, 0]}, "warm_start"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"weight": [[1.0, 2.0, 3.0]], "num_slots": 4, "num_gpus": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        exact_replica_milp(args.pop("weight"), args.pop("num_slots"), args.pop("num_gpus"), **args)
