"""Optimal static split: never worse than the even split, hand-computed optima, valid fractions,
agreement with a max-flow bisection for one step, the per-layer wrapper and bad input."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.split import optimal_split, optimal_split_layers, split_objective


def check_fractions(frac, phy2log, num_experts):
    p2l = np.asarray(phy2log)
    assert frac.shape == p2l.shape
    assert np.all(frac >= 0)
    np.testing.assert_allclose(np.bincount(p2l, weights=frac, minlength=num_experts), 1.0, atol=1e-12)


def even_split(phy2log):
    p2l = np.asarray(phy2log)
    return 1.0 / np.bincount(p2l)[p2l]


def flow_optimum(weight, phy2log, slot_gpu, num_gpus, iterations=200):
    """Smallest busiest-GPU load for one step, by bisection on M with networkx maximum flow."""
    w = np.asarray(weight, dtype=float)
    g = nx.DiGraph()
    for e, load in enumerate(w):
        g.add_edge("s", ("e", e), capacity=float(load))
    for e, gpu in zip(np.asarray(phy2log).tolist(), np.asarray(slot_gpu).tolist(), strict=True):
        g.add_edge(("e", e), ("g", gpu))  # no capacity attribute: unbounded
    total = float(w.sum())

    def routes_everything(m):
        for gpu in range(num_gpus):
            g.add_edge(("g", gpu), "t", capacity=m)
        return nx.maximum_flow_value(g, "s", "t") >= total * (1 - 1e-12)

    lo, hi = total / num_gpus, total
    for _ in range(iterations):
        if hi - lo <= 1e-10 * max(1.0, hi):
            break
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if routes_everything(mid) else (mid, hi)
    return hi


@st.composite
def placements(draw, max_steps=4):
    gpus = draw(st.integers(1, 4))
    experts = draw(st.integers(1, 8))
    extra = draw(st.integers(0, 6))
    p2l = np.concatenate([np.arange(experts),
                          np.array(draw(st.lists(st.integers(0, experts - 1), min_size=extra, max_size=extra)),
                                   dtype=np.int64)])
    gpu = np.array(draw(st.lists(st.integers(0, gpus - 1), min_size=p2l.size, max_size=p2l.size)), dtype=np.int64)
    steps = draw(st.integers(1, max_steps))
    w = np.array(draw(st.lists(st.floats(0, 100, allow_subnormal=False), min_size=steps * experts,
                               max_size=steps * experts))).reshape(steps, experts)
    return w, p2l, gpu, gpus


@settings(max_examples=80, deadline=None)
@given(placements())
def test_never_worse_than_the_even_split(inst):
    w, p2l, gpu, gpus = inst
    frac, rep = optimal_split(w, p2l, gpu, gpus)
    check_fractions(frac, p2l, w.shape[1])
    assert rep.status == "optimal" and rep.stop_reason == "completed" and rep.solver == "scipy-highs-lp"
    assert rep.objective == pytest.approx(split_objective(w, p2l, gpu, frac, gpus), rel=1e-12)
    assert rep.objective <= split_objective(w, p2l, gpu, even_split(p2l), gpus) * (1 + 1e-9) + 1e-9
    assert rep.bound <= rep.objective
    assert rep.objective <= rep.bound * (1 + 1e-7) + 1e-7  # the LP optimum is the objective


@settings(max_examples=40, deadline=None)
@given(placements(max_steps=1))
def test_one_step_equals_max_flow(inst):
    w, p2l, gpu, gpus = inst
    _, rep = optimal_split(w[0], p2l, gpu, gpus)
    assert rep.objective == pytest.approx(flow_optimum(w[0], p2l, gpu, gpus), rel=1e-6, abs=1e-6)


def test_hand_computed_split():
    # expert 0 (load 10) on GPUs 0 and 1; GPU 0 also holds expert 1 (2), GPU 1 expert 2 (4):
    # 2 + 10 x = 4 + 10 (1 - x)  =>  x = 0.6, both GPUs at 8
    frac, rep = optimal_split([10.0, 2.0, 4.0], [0, 1, 0, 2], [0, 0, 1, 1], 2)
    np.testing.assert_allclose(frac, [0.6, 1.0, 0.4, 1.0], atol=1e-9)
    assert rep.objective == pytest.approx(8.0) and rep.bound == pytest.approx(8.0)


def test_hand_computed_split_over_two_steps():
    # same placement, loads (10, 2, 4) then (20, 6, 0). With x on GPU 0 the two steps' maxima are
    # max(2 + 10x, 14 - 10x) and max(6 + 20x, 20 - 20x), balanced at x = 0.6 and x = 0.35; the sum
    # is 34 - 30x below 0.35, 20 + 10x on [0.35, 0.6], 8 + 30x above: x = 0.35, objective 23.5
    w = [[10.0, 2.0, 4.0], [20.0, 6.0, 0.0]]
    frac, rep = optimal_split(w, [0, 1, 0, 2], [0, 0, 1, 1], 2)
    np.testing.assert_allclose(frac, [0.35, 1.0, 0.65, 1.0], atol=1e-9)
    assert rep.objective == pytest.approx(23.5) and rep.bound == pytest.approx(23.5)


def test_replicas_on_one_gpu_and_unused_experts_get_even_splits():
    # expert 0 twice on GPU 0, expert 1 has no load, expert 2 alone
    frac, rep = optimal_split([5.0, 0.0, 3.0], [0, 0, 1, 1, 2], [0, 0, 0, 1, 1], 2)
    assert frac.tolist() == [0.5, 0.5, 0.5, 0.5, 1.0]
    assert rep.status == "optimal" and rep.objective == 5.0


def test_duplicates_on_one_gpu_share_that_gpu_evenly():
    frac, _ = optimal_split([9.0, 3.0], [0, 0, 0, 1], [0, 0, 1, 1], 2)
    assert frac[0] == pytest.approx(frac[1])
    assert split_objective([9.0, 3.0], [0, 0, 0, 1], [0, 0, 1, 1], frac, 2) == pytest.approx(6.0)


def test_time_limit_falls_back_to_the_even_split():
    rng = np.random.default_rng(0)
    w = rng.random((50, 64))
    p2l = np.concatenate([np.arange(64), rng.integers(0, 64, 64)])
    gpu = np.arange(128) // 8
    frac, rep = optimal_split(w, p2l, gpu, 16, time_limit_s=1e-6)
    if rep.status != "optimal":  # HiGHS may still finish inside a microsecond on a fast machine
        assert rep.stop_reason == "time_limit"
        np.testing.assert_allclose(frac, even_split(p2l))
        assert rep.bound <= rep.objective


def test_layers_match_single_layer_calls_and_pad_with_zeros():
    rng = np.random.default_rng(1)
    w = rng.random((3, 2, 4))
    p2l = np.array([[0, 1, 2, 3, 0, 1], [0, 1, 2, 3, 3, -1]])
    gpu = np.array([[0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 0, -1]])
    frac, rep = optimal_split_layers(w, p2l, gpu, 2)
    assert frac.shape == (2, 6) and frac[1, 5] == 0.0
    objective = bound = 0.0
    for layer in range(2):
        real = p2l[layer] >= 0
        f, r = optimal_split(w[:, layer], p2l[layer][real], gpu[layer][real], 2)
        np.testing.assert_allclose(frac[layer, real], f, atol=1e-9)
        objective += r.objective
        bound += r.bound
    assert rep.status == "optimal"
    assert rep.objective == pytest.approx(objective) and rep.bound == pytest.approx(bound)


def test_layers_accept_one_step_as_two_dimensional():
    frac, rep = optimal_split_layers([[10.0, 2.0, 4.0]], [[0, 1, 0, 2]], [[0, 0, 1, 1]], 2)
    np.testing.assert_allclose(frac, [[0.6, 1.0, 0.4, 1.0]], atol=1e-9)
    assert rep.objective == pytest.approx(8.0)


def test_inputs_are_not_mutated():
    w = np.array([[10.0, 2.0, 4.0]])
    p2l, gpu = np.array([0, 1, 0, 2]), np.array([0, 0, 1, 1])
    optimal_split(w, p2l, gpu, 2)
    assert w.tolist() == [[10.0, 2.0, 4.0]] and p2l.tolist() == [0, 1, 0, 2] and gpu.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight": [-1.0, 2.0, 3.0]}, "weight"),
        ({"weight": [np.inf, 2.0, 3.0]}, "weight"),
        ({"phy2log": [0, 1, 1, 1]}, "expert 2"),
        ({"phy2log": [0, 1, 2, 3]}, "phy2log"),
        ({"phy2log": [0.0, 1.0, 2.0, 0.0]}, "phy2log"),
        ({"slot_gpu": [0, 0, 1]}, "same shape"),
        ({"slot_gpu": [0, 0, 1, 2]}, "slot_gpu"),
        ({"num_gpus": 0}, "num_gpus"),
        ({"time_limit_s": 0.0}, "time_limit_s"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"weight": [1.0, 2.0, 3.0], "phy2log": [0, 1, 2, 0], "slot_gpu": [0, 0, 1, 1], "num_gpus": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        optimal_split(args.pop("weight"), args.pop("phy2log"), args.pop("slot_gpu"), args.pop("num_gpus"), **args)


def test_layers_bad_padding():
    with pytest.raises(ValueError, match="padding"):
        optimal_split_layers(np.ones((1, 3)), [[0, 1, 2, -1]], [[0, 0, 1, 1]], 2)
    with pytest.raises(ValueError, match="layer 0"):
        optimal_split_layers(np.ones((1, 3)), [[0, 1, -1, -1]], [[0, 0, -1, -1]], 2)
