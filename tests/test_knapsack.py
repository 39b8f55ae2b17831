"""Multiple-choice knapsack: DP against brute force and the MILP, tie-break, infeasibility, input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.knapsack import min_budget_for_target, multiple_choice_knapsack


def brute_force(values, costs, budget):
    """Best total value, and the smallest total cost reaching it, over every choice."""
    v, c = np.asarray(values, dtype=float), np.asarray(costs)
    best, best_cost = -np.inf, None
    for choice in itertools.product(range(v.shape[1]), repeat=v.shape[0]):
        cost = sum(int(c[layer, k]) for layer, k in enumerate(choice))
        value = sum(v[layer, k] for layer, k in enumerate(choice))  # same order as the DP: exact ties
        if cost <= budget and value > -np.inf and (value > best or (value == best and cost < best_cost)):
            best, best_cost = value, cost
    return best, best_cost


def check_choice(choice, values, costs, budget):
    v, c = np.asarray(values, dtype=float), np.asarray(costs)
    assert choice.shape == (v.shape[0],)
    assert np.all(np.isfinite(v[np.arange(v.shape[0]), choice])), "an unavailable option was chosen"
    assert c[np.arange(v.shape[0]), choice].sum() <= budget


@st.composite
def instances(draw, max_layers=4, max_options=4):
    layers = draw(st.integers(1, max_layers))
    options = draw(st.integers(1, max_options))
    unit = draw(st.sampled_from([1, 2, 4]))
    costs = np.array(draw(st.lists(st.integers(0, 6), min_size=layers * options, max_size=layers * options)))
    costs = costs.reshape(layers, options) * unit
    # a few distinct values so that ties happen
    values = np.array(draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, -np.inf]),
                                    min_size=layers * options, max_size=layers * options)))
    values = values.reshape(layers, options)
    values[:, 0] = np.where(np.isinf(values[:, 0]), 0.0, values[:, 0])  # every layer keeps an option
    budget = draw(st.integers(0, 6 * unit * layers))
    return values, costs, budget


@settings(max_examples=150, deadline=None)
@given(instances())
def test_dp_matches_brute_force(inst):
    values, costs, budget = inst
    choice, rep = multiple_choice_knapsack(values, costs, budget)
    best, best_cost = brute_force(values, costs, budget)
    if best == -np.inf:
        assert choice is None and rep.status == "infeasible"
        return
    check_choice(choice, values, costs, budget)
    assert rep.status == "optimal" and rep.stop_reason == "completed"
    assert rep.objective == best and rep.bound == best and rep.gap == 0.0
    assert np.asarray(costs)[np.arange(len(choice)), choice].sum() == best_cost  # cheapest optimum


@settings(max_examples=25, deadline=None)
@given(instances(max_layers=6, max_options=5))
def test_milp_matches_dp(inst):
    values, costs, budget = inst
    c_dp, r_dp = multiple_choice_knapsack(values, costs, budget, method="dp")
    c_ip, r_ip = multiple_choice_knapsack(values, costs, budget, method="milp", time_limit_s=5.0)
    assert r_dp.status == r_ip.status
    if c_dp is None:
        assert c_ip is None
        return
    check_choice(c_ip, values, costs, budget)
    assert r_ip.status == "optimal" and r_ip.solver == "scipy-highs-milp"
    assert r_ip.objective == pytest.approx(r_dp.objective, abs=1e-9)
    assert r_ip.bound >= r_ip.objective  # a maximisation: the bound is an upper bound
    assert r_ip.gap == pytest.approx(0.0, abs=1e-8)


def test_milp_matches_dp_at_craft_scale():
    rng = np.random.default_rng(7)
    counts = np.array([0, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256])
    gains = np.sort(rng.random((58, counts.size)) * 0.2, axis=1)
    gains[:, 0] = 0.0
    costs = np.tile(counts, (58, 1))
    c_dp, r_dp = multiple_choice_knapsack(gains, costs, 3712)
    c_ip, r_ip = multiple_choice_knapsack(gains, costs, 3712, method="milp", time_limit_s=20.0)
    check_choice(c_dp, gains, costs, 3712)
    assert r_ip.objective == pytest.approx(r_dp.objective, rel=1e-9)
    assert r_dp.wall_time_s < 2.0


def test_tie_break_prefers_cheaper_then_lower_index():
    values = [[1.0, 1.0, 1.0, 1.0]]
    choice, _ = multiple_choice_knapsack(values, [[3, 1, 2, 1]], 5)
    assert choice.tolist() == [1]
    choice, _ = multiple_choice_knapsack([[0.5, 0.5], [0.5, 0.5]], [[2, 2], [2, 2]], 4)
    assert choice.tolist() == [0, 0]


def test_gcd_scaling_keeps_budget_semantics():
    values = [[0.0, 1.0], [0.0, 1.0]]
    costs = [[0, 4], [0, 4]]
    assert multiple_choice_knapsack(values, costs, 7)[1].objective == 1.0
    assert multiple_choice_knapsack(values, costs, 8)[1].objective == 2.0


def test_zero_costs_and_large_budget():
    choice, rep = multiple_choice_knapsack([[0.0, 2.0], [1.0, 0.0]], [[0, 0], [0, 0]], 10**9)
    assert choice.tolist() == [1, 0] and rep.objective == 3.0


def test_infeasible_names_minimum_budget():
    choice, rep = multiple_choice_knapsack([[0.0, 1.0], [0.0, 1.0]], [[2, 4], [3, 4]], 4)
    assert choice is None
    assert rep.status == "infeasible" and rep.stop_reason == "infeasible"
    assert "minimum needed, 5" in rep.message
    _, rep = multiple_choice_knapsack([[0.0, 1.0], [0.0, 1.0]], [[2, 4], [3, 4]], 4, method="milp")
    assert rep.status == "infeasible" and "5" in rep.message


def test_nan_and_minus_inf_are_unavailable():
    choice, rep = multiple_choice_knapsack([[np.nan, 1.0, -np.inf]], [[0, 3, 0]], 3)
    assert choice.tolist() == [1]
    _, rep = multiple_choice_knapsack([[np.nan, -np.inf]], [[0, 0]], 3)
    assert rep.status == "infeasible" and "layer 0" in rep.message


def test_inputs_are_not_mutated():
    values = np.array([[np.nan, 1.0]])
    costs = np.array([[0, 1]])
    multiple_choice_knapsack(values, costs, 1)
    assert np.isnan(values[0, 0]) and costs.tolist() == [[0, 1]]


@settings(max_examples=60, deadline=None)
@given(instances(), st.floats(-1.0, 8.0))
def test_min_budget_for_target_is_the_first_budget_that_reaches(inst, target):
    values, costs, _ = inst
    top = int(np.asarray(costs).max(axis=1).sum())
    reached = [b for b in range(top + 1)
               if (r := multiple_choice_knapsack(values, costs, b)[1]).status == "optimal"
               and r.objective >= target - 1e-9 * max(1.0, abs(target))]
    assert min_budget_for_target(values, costs, target) == (reached[0] if reached else None)


def test_min_budget_for_target_examples():
    values = [[0.0, 0.5, 0.6], [0.0, 0.15, 0.2]]
    costs = [[0, 2, 4], [0, 2, 4]]
    assert min_budget_for_target(values, costs, 0.0) == 0
    assert min_budget_for_target(values, costs, 0.5) == 2
    assert min_budget_for_target(values, costs, 0.8) == 8
    assert min_budget_for_target(values, costs, 0.81) is None
    assert min_budget_for_target([[-np.inf]], [[0]], 0.0) is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"values": [1.0, 2.0]}, "values"),
        ({"values": [[np.inf, 1.0]]}, r"\+inf"),
        ({"costs": [[0, 1, 2]]}, "costs"),
        ({"costs": [[-1, 1]]}, "costs"),
        ({"costs": [[0.5, 1]]}, "costs"),
        ({"budget": -1}, "budget"),
        ({"budget": 2.5}, "budget"),
        ({"method": "greedy"}, "method"),
        ({"time_limit_s": 0}, "time_limit_s"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"values": [[0.0, 1.0]], "costs": [[0, 1]], "budget": 1} | kwargs
    with pytest.raises(ValueError, match=match):
        multiple_choice_knapsack(args.pop("values"), args.pop("costs"), args.pop("budget"), **args)


def test_min_budget_bad_input():
    with pytest.raises(ValueError, match="target_sum"):
        min_budget_for_target([[0.0]], [[0]], float("nan"))
    with pytest.raises(ValueError, match="rel_tol"):
        min_budget_for_target([[0.0]], [[0]], 0.0, rel_tol=-1.0)
