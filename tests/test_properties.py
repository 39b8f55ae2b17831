"""Property tests for every planner (issue 14): random small feasible instances give a plan that passes the
independent, solver-free verifier of its kind; random infeasible ones raise
:class:`~planner.errors.Infeasible` whose message carries the numbers that make them so.

Derandomized (the same examples on every run and machine), few examples each, no deadline: the fast
lane stays fast and CI deterministic.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.errors import Infeasible
from planner.inputs.synthetic import synthetic_trace
from planner.plans.verify import verify_plan

FAST = settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
FEW = settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

NUMBER = re.compile(r"\d")


def _has_numbers(exc: Exception) -> bool:
    return len(NUMBER.findall(str(exc))) >= 2


def _loads(steps: int, seed: int, experts: int = 8, layers: int = 3, first_layer: int = 0):
    return synthetic_trace(num_steps=steps, num_layers=layers, num_experts=experts, top_k=2, tokens_per_step=256,
                           first_layer=first_layer, seed=seed)


# -- replicas ------------------------------------------------------------------------------------------------
replica_instances = st.fixed_dictionaries({
    "gpus": st.sampled_from([1, 2, 4, 8]),
    "per_gpu": st.integers(0, 2),
    "steps": st.integers(1, 6),
    "seed": st.integers(0, 10_000),
    "algorithm": st.sampled_from(["stepaware", "eplb", "none"]),
    "mode": st.sampled_from(["uniform", "per-layer"]),
    "nodes": st.sampled_from([1, 2]),
})


def _replica_plan(inst, loads):
    from planner.replicas import plan_replicas

    algorithm = inst["algorithm"] if inst["mode"] == "uniform" else "stepaware"
    nodes = inst["nodes"] if inst["gpus"] % inst["nodes"] == 0 else 1
    return plan_replicas(loads, "mixtral-8x7b", num_gpus=inst["gpus"], num_nodes=nodes,
                         redundant_slots=inst["per_gpu"] * inst["gpus"], algorithm=algorithm, mode=inst["mode"],
                         swap_evaluations=200_000)


@FAST
@given(replica_instances)
def test_replica_plans_verify(inst):
    loads = _loads(inst["steps"], inst["seed"])
    plan = _replica_plan(inst, loads)
    report = verify_plan(plan, loads)
    assert report.ok, report.failures
    assert verify_plan(plan).ok  # the checks a plan file alone supports agree


@FAST
@given(gpus=st.sampled_from([1, 2, 4]), gpu=st.sampled_from(["l4", "h100", "a100-80gb"]), seed=st.integers(0, 99))
def test_replica_plans_that_cannot_fit_are_infeasible_with_numbers(gpus, gpu, seed):
    """DeepSeek-V3's routed experts (about 650 GB in bf16) on at most 4 GPUs fit nowhere."""
    from planner.replicas import plan_replicas

    loads = _loads(1, seed, experts=256, layers=2, first_layer=3)
    with pytest.raises(Infeasible) as exc:
        plan_replicas(loads, "deepseek-v3", gpu, num_gpus=gpus)
    assert _has_numbers(exc.value), str(exc.value)


# -- migration -----------------------------------------------------------------------------------------------
@FAST
@given(gpus=st.sampled_from([2, 4, 8]), a=st.integers(0, 2), b=st.integers(0, 2), spare=st.integers(0, 2),
       seed=st.integers(0, 10_000), relabel=st.booleans())
def test_migrations_reach_a_target_that_verifies_or_are_infeasible_with_numbers(gpus, a, b, spare, seed, relabel):
    from planner.migration import plan_migration
    from planner.replicas import plan_replicas

    old, new = _loads(3, seed), _loads(3, seed + 1)
    cur = plan_replicas(old, "mixtral-8x7b", num_gpus=gpus, redundant_slots=a * gpus, swap_evaluations=0)
    nxt = plan_replicas(new, "mixtral-8x7b", num_gpus=gpus, redundant_slots=b * gpus, swap_evaluations=0)
    try:
        m = plan_migration(cur, nxt, relabel=relabel, spare_slots_per_gpu=spare, loads=new)
    except Infeasible as exc:
        assert _has_numbers(exc), str(exc)
        return
    assert verify_plan(m.target_plan, new).ok


# -- xpyd (the deployment integer program) -------------------------------------------------------------------
xpyd_instances = st.fixed_dictionaries({
    "nodes": st.lists(st.sampled_from([2, 4, 8]), min_size=1, max_size=3),
    "roles": st.lists(st.lists(st.tuples(st.sampled_from([1, 2, 4, 8]), st.floats(0.5, 20.0)), min_size=1,
                                        max_size=3, unique_by=lambda t: t[0]), min_size=1, max_size=2),
})


@FAST
@given(xpyd_instances, st.sampled_from(["max_rate", "max_rate_per_gpu"]))
def test_xpyd_counts_pass_the_independent_check(inst, objective):
    from solvers.xpyd import choose_instance_counts, evaluate_counts

    g = [[s for s, _ in role] for role in inst["roles"]]
    cap = [[c for _, c in role] for role in inst["roles"]]
    sol, rep = choose_instance_counts(g, cap, inst["nodes"], objective=objective)
    if sol is None:
        assert rep.status == "infeasible"
        return
    rate, used, problems = evaluate_counts(g, cap, inst["nodes"], sol.choice, sol.nodes, sol.spanning)
    assert not problems and used <= sum(inst["nodes"])
    assert rate == pytest.approx(sol.rate, rel=1e-6)


@FAST
@given(xpyd_instances)
def test_xpyd_unreachable_targets_are_infeasible(inst):
    from solvers.xpyd import choose_instance_counts

    g = [[s for s, _ in role] for role in inst["roles"]]
    cap = [[c for _, c in role] for role in inst["roles"]]
    target = 1.0 + sum(inst["nodes"]) * 20.0  # more than every GPU at the best capacity per GPU could serve
    sol, rep = choose_instance_counts(g, cap, inst["nodes"], objective="min_gpus", target_req_per_s=target)
    assert sol is None and rep.status == "infeasible"


# -- deploy --------------------------------------------------------------------------------------------------
@pytest.mark.slow
@FEW
@given(gpus=st.sampled_from([1, 2]), isl=st.sampled_from([256, 1024]), osl=st.sampled_from([32, 128]))
def test_deployments_verify(gpus, isl, osl):
    from planner.deploy import plan_deployment, verify_deployment
    from planner.inputs import SLO

    r = plan_deployment("qwen3-30b-a3b", "h100", SLO(2000, 100), num_gpus=gpus, isl=isl, osl=osl, num_requests=150)
    report = verify_deployment(r.plan)
    assert report.ok, report.failures


@settings(FEW, max_examples=2)
@given(ttft=st.sampled_from([0.5, 1.0, 2.0]), isl=st.sampled_from([1024, 4096]))
def test_deployments_that_miss_the_slo_are_infeasible_with_numbers(ttft, isl):
    from planner.deploy import plan_deployment
    from planner.inputs import SLO

    with pytest.raises(Infeasible) as exc:
        plan_deployment("qwen3-30b-a3b", "h100", SLO(ttft, 50), num_gpus=2, isl=isl, osl=64, num_requests=100)
    assert _has_numbers(exc.value), str(exc.value)


# -- cluster -------------------------------------------------------------------------------------------------
cluster_nodes = st.lists(st.tuples(st.sampled_from(["h100", "a100-80gb", "l4"]), st.sampled_from([1, 2, 4])),
                         min_size=2, max_size=4)


def _cluster(nodes):
    from planner.inputs.cluster import parse_cluster

    doc = {"coordinator": {"region": "a"},
           "network": {"intra_region_bytes_per_s": 1.0e10, "inter_region_bytes_per_s": 1.0e9},
           "nodes": [{"name": f"n{i}", "gpu": gpu, "gpus": k, "nic_bytes_per_s": 2.5e10, "region": "ab"[i % 2]}
                     for i, (gpu, k) in enumerate(nodes)]}
    return parse_cluster(doc)


@FEW
@given(cluster_nodes, st.integers(0, 100))
def test_cluster_plans_verify(nodes, seed):
    from planner.cluster import plan_cluster, verify_cluster

    cluster = _cluster(nodes)
    try:
        r = plan_cluster(cluster, "mixtral-8x7b", iterations=100, chains=1, seed=seed, chain_milp=False)
    except Infeasible as exc:  # e.g. small GPUs that cannot hold all 32 layers together
        assert _has_numbers(exc), str(exc)
        return
    report = verify_cluster(r.plan, cluster)
    assert report.ok, report.failures


@FEW
@given(st.lists(st.sampled_from([1, 2]), min_size=1, max_size=3))
def test_clusters_too_small_for_the_model_are_infeasible_with_numbers(counts):
    from planner.cluster import plan_cluster

    with pytest.raises(Infeasible) as exc:
        plan_cluster(_cluster([("t4", 1)] + [("t4", 1) for _ in counts]), "deepseek-v3", iterations=0, chains=1)
    assert _has_numbers(exc.value), str(exc.value)


# -- fleet ---------------------------------------------------------------------------------------------------
def _fleet_table(tmp_path, rates):
    rows = ["gpu,gpus_per_instance,input_tokens,output_tokens,max_rate_req_per_s"]
    for gpu, (short, long) in zip(("l4", "h100"), rates):
        rows += [f"{gpu},1,512,128,{short}", f"{gpu},1,4096,512,{long}"]
    path = tmp_path / "table.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _workload(n_short, n_long):
    from planner.inputs import Workload

    n = n_short + n_long
    return Workload(np.arange(n) * 0.1, [200] * n_short + [3000] * n_long, [50] * n_short + [400] * n_long, "mix")


fleet_rates = st.tuples(st.tuples(st.floats(0.5, 4.0), st.floats(0.05, 0.5)),
                        st.tuples(st.floats(4.0, 16.0), st.floats(0.5, 4.0)))


@FAST
@given(fleet_rates, st.floats(1.0, 40.0), st.integers(1, 30), st.integers(1, 30))
def test_fleet_plans_verify(tmp_path_factory, rates, rate, n_short, n_long):
    from planner.cluster import plan_fleet, verify_fleet

    table = _fleet_table(tmp_path_factory.mktemp("fleet"), rates)
    r = plan_fleet(None, None, None, _workload(n_short, n_long), profile_table=table, rate_req_per_s=rate,
                   prices={"l4": 0.8, "h100": 3.78})
    report = verify_fleet(r.plan)
    assert report.ok, report.failures


@FAST
@given(fleet_rates, st.floats(50.0, 200.0))
def test_fleets_short_of_gpus_are_infeasible_with_numbers(tmp_path_factory, rates, rate):
    from planner.cluster import plan_fleet

    table = _fleet_table(tmp_path_factory.mktemp("fleet"), rates)
    with pytest.raises(Infeasible) as exc:
        plan_fleet(None, None, None, _workload(10, 10), profile_table=table, rate_req_per_s=rate,
                   prices={"l4": 0.8, "h100": 3.78}, available_gpus={"l4": 1, "h100": 1})
    assert _has_numbers(exc.value), str(exc.value)
