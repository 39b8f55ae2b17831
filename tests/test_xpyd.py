"""solvers.xpyd: the instance-count MILP against brute-force enumeration of every count on small instances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from solvers.xpyd import choose_instance_counts, evaluate_counts


def _all_deployments(s, g, G, node_local):
    """Every choice of one layout per role and every per-node count (spanning instances for big layouts)."""
    gmax = max(G)
    R = len(s)
    for choice in itertools.product(*[range(len(x)) for x in s]):
        per_role = []
        for p in range(R):
            size = s[p][choice[p]]
            if size <= gmax:
                ranges = [range(0, Gk // size + 1) for Gk in G]
                per_role.append([(row, 0) for row in itertools.product(*ranges)])
            else:
                per_role.append([((0,) * len(G), k) for k in range(sum(G) // size + 1)])
        for combo in itertools.product(*per_role):
            nodes = tuple(c[0] for c in combo)
            spanning = tuple(c[1] for c in combo)
            rate, gpus, problems = evaluate_counts(s, g, G, choice, nodes, spanning, node_local=node_local)
            if not problems:
                yield choice, rate, gpus


def _instances(seed):
    rng = np.random.default_rng(seed)
    G = [4, 4] if seed % 3 else [4, 4, 2]
    sizes = [1, 2, 3, 4, 8]
    out = []
    for _ in range(2):
        k = int(rng.integers(1, 4))
        s = sorted(rng.choice(sizes, size=k, replace=False).tolist())
        out.append((s, np.round(rng.uniform(0.5, 10.0, size=k) * np.asarray(s) ** 0.8, 3).tolist()))
    return [o[0] for o in out], [o[1] for o in out], G


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("node_local", [False, True])
def test_max_rate_matches_brute_force(seed, node_local):
    s, g, G = _instances(seed)
    if node_local:
        s = [[x for x in row if x <= max(G)] or [1] for row in s]
        g = [gg[: len(ss)] for gg, ss in zip(g, s)]
    sol, rep = choose_instance_counts(s, g, G, node_local=node_local)
    best = max(r for _, r, _ in _all_deployments(s, g, G, node_local))
    if best == 0:  # e.g. node-local with no node holding both roles' layouts
        assert sol is None and rep.status == "infeasible"
        return
    assert rep.status == "optimal"
    assert sol.rate == pytest.approx(best, rel=1e-6)
    fewest = min(gp for _, r, gp in _all_deployments(s, g, G, node_local) if r >= best * (1 - 1e-9))
    assert sol.gpus == fewest


@pytest.mark.parametrize("seed", range(6))
def test_min_gpus_and_per_gpu_match_brute_force(seed):
    s, g, G = _instances(seed)
    every = list(_all_deployments(s, g, G, False))
    target = 0.6 * max(r for _, r, _ in every)
    sol, rep = choose_instance_counts(s, g, G, objective="min_gpus", target_req_per_s=target)
    assert sol.gpus == min(gp for _, r, gp in every if r >= target - 1e-9)
    assert sol.rate >= target - 1e-9
    sol, rep = choose_instance_counts(s, g, G, objective="max_rate_per_gpu")
    assert sol.rate_per_gpu == pytest.approx(max(r / gp for _, r, gp in every if gp), rel=1e-6)
    assert rep.status == "optimal"


def test_exclude_gives_the_next_combination():
    s, g, G = [[1, 2], [1, 2]], [[5.0, 15.0], [10.0, 30.0]], [4, 4]
    every = list(_all_deployments(s, g, G, False))
    seen, rates = [], []
    for _ in range(4):
        sol, _ = choose_instance_counts(s, g, G, exclude=seen)
        seen.append(sol.choice)
        rates.append(sol.rate)
        assert sol.rate == pytest.approx(max(r for c, r, _ in every if c == sol.choice))
    assert rates == sorted(rates, reverse=True) and len(set(seen)) == 4
    sol, rep = choose_instance_counts(s, g, G, exclude=seen)
    assert sol is None and rep.status == "infeasible"


def test_unreachable_target_and_bad_data():
    sol, rep = choose_instance_counts([[1]], [[1.0]], [4], objective="min_gpus", target_req_per_s=5.0)
    assert sol is None and rep.status == "infeasible"
    with pytest.raises(ValueError, match="neither fits"):
        choose_instance_counts([[6]], [[1.0]], [4, 4])
    with pytest.raises(ValueError, match="target_req_per_s"):
        choose_instance_counts([[1]], [[1.0]], [4], objective="min_gpus")
