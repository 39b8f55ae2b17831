"""Heterogeneous layer placement: Helix's published flows reproduced, the fast evaluator against networkx,
valid heuristics, never worse than the best seed, the MILP against brute force, valid bounds, a user's
fleet planned and verified, bad cluster files as one-line errors."""

import itertools
import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from planner.cli import app
from planner.cluster import plan_cluster, verify_cluster
from planner.cluster.capacity import node_tables
from planner.cluster.graph import build_flow_graph, layout_max_flow
from planner.cluster.place import cluster_instance
from planner.errors import Infeasible, InputError
from planner.inputs import list_helix_instances, read_cluster, read_helix_instance, read_helix_layouts
from planner.plans.schema import ClusterPlan
from solvers.layer_flow import LayoutFlow
from solvers.layer_heuristics import crossing_upper_bound, helix_upper_bound
from solvers.layer_milp import chain_layout
from solvers.layer_placement import place_layers, seed_layouts

EXAMPLE = "examples/cluster-mixed.yaml"
runner = CliRunner()


def _instance(name, pruned=False):
    cluster = read_helix_instance(name, pruned=pruned)
    return cluster_instance(cluster, node_tables(cluster))


def _nx_value(inst, starts, sizes):
    c, t = inst.cluster, inst.tables
    names = [c.nodes[i].name for i in inst.index]
    ranges = [(s, s + k) if k else None for s, k in zip(starts, sizes)]
    caps = [t.tables[i][k - 1] if k else 0.0 for i, k in zip(inst.index, sizes)]
    nic = [(c.nodes[i].nic_in_bytes_per_s / t.activation_bytes, c.nodes[i].nic_out_bytes_per_s / t.activation_bytes)
           for i in inst.index]
    links = {}
    for j, a in enumerate(names):
        if inst.source[j] > 0:
            links[("source", a)] = inst.source[j]
        if inst.sink[j] > 0:
            links[(a, "sink")] = inst.sink[j]
        for k, b in enumerate(names):
            if inst.link[j, k] > 0:
                links[(a, b)] = inst.link[j, k]
    return layout_max_flow(build_flow_graph(t.num_layers, ranges, caps, nic, links, names))[0]


PUBLISHED = [(name, lay) for name in list_helix_instances() for lay in read_helix_layouts(name)
             if lay["objective_tokens_per_s"] is not None]


@pytest.mark.parametrize("name, layout", PUBLISHED, ids=[f"{n}-{x['name']}-{'pruned' if x['pruned'] else 'full'}" for n, x in PUBLISHED])
def test_published_objectives_are_reproduced(name, layout):
    """Every published Helix MILP value is the max-flow of its layout (fast evaluator and networkx), 1e-5."""
    inst = _instance(name, pruned=layout["pruned"])
    ranges = [r or [0, 0] for r in layout["ranges"]]
    starts, sizes = [r[0] for r in ranges], [r[1] - r[0] for r in ranges]
    want = layout["objective_tokens_per_s"]
    assert inst.flow().value(starts, sizes) == pytest.approx(want, rel=1e-5)
    assert _nx_value(inst, starts, sizes) == pytest.approx(want, rel=1e-5)


def _random_layout(rng, lf):
    starts, sizes = [], []
    for K in lf.max_layers:
        k = rng.randint(1, K)
        starts.append(rng.randint(0, lf.num_layers - k))
        sizes.append(k)
    return starts, sizes


def _abutting_layout(rng, lf):
    """Random chains of random nodes, so that many edges abut (random ranges rarely connect)."""
    L, n = lf.num_layers, len(lf.max_layers)
    starts, sizes = [0] * n, [1] * n
    order = list(range(n))
    rng.shuffle(order)
    at = 0
    for i in order:
        k = rng.randint(1, min(lf.max_layers[i], L - at))
        starts[i], sizes[i] = at, k
        at = 0 if at + k >= L else at + k
    return starts, sizes


@pytest.mark.parametrize("name, pruned", [("single24-llama2-70b", False), ("geo24-llama2-70b", False),
                                          ("geo24-llama2-70b", True), ("hetero42-llama2-70b", True),
                                          ("geo8-l4-llama1-30b", False)])
def test_fast_evaluator_equals_networkx(name, pruned):
    inst = _instance(name, pruned)
    lf = inst.flow()
    rng = random.Random(7)
    pool = [(sd.starts, sd.sizes) for sd in seed_layouts(lf, inst.types)]
    for lay in read_helix_layouts(name):
        ranges = [r or [0, 0] for r in lay["ranges"]]
        if all(r[1] > r[0] for r in ranges):
            pool.append(([r[0] for r in ranges], [r[1] - r[0] for r in ranges]))
    seeds = [(s, k) for s, k in pool if lf.value(s, k) > 0]
    nonzero = 0
    for t in range(40):
        if t % 2 and seeds:  # a good layout with two nodes moved
            base = seeds[rng.randrange(len(seeds))]
            starts, sizes = list(base[0]), list(base[1])
            a, b = _random_layout(rng, lf)
            for i in rng.sample(range(len(starts)), t % 3):
                starts[i], sizes[i] = a[i], b[i]
        else:
            starts, sizes = (_random_layout if t % 4 == 0 else _abutting_layout)(rng, lf)
        fast = lf.value(starts, sizes)
        assert fast == pytest.approx(_nx_value(inst, starts, sizes), rel=1e-9, abs=1e-9)
        assert fast <= lf.crossing_bound(starts, sizes) * (1 + 1e-9)
        nonzero += fast > 0
    assert nonzero >= 5 or not seeds


@pytest.mark.parametrize("name", ["single24-llama2-70b", "geo24-llama2-70b", "hetero42-llama2-70b", "cluster10-llama1-30b"])
def test_heuristics_are_valid_and_below_the_bounds(name):
    inst = _instance(name)
    lf = inst.flow()
    seeds = seed_layouts(lf, inst.types)
    bound = min(helix_upper_bound(lf.capacity, lf.num_layers), crossing_upper_bound(lf.capacity, lf.num_layers))
    assert {s.name.split()[0] for s in seeds} >= {"petals", "swarm", "type-pipelines", "tail-chain"}
    for s in seeds:
        lf.check_layout(s.starts, s.sizes)
        assert s.value <= bound * (1 + 1e-9)
    assert crossing_upper_bound(lf.capacity, lf.num_layers) <= helix_upper_bound(lf.capacity, lf.num_layers) * (1 + 1e-12)


def test_optimiser_never_worse_than_its_best_seed():
    inst = _instance("geo24-llama2-70b")
    lf = inst.flow()
    res = place_layers(lf, inst.types, iterations=300, chains=2, chain_milp=False)
    assert res.value >= max(s.value for s in res.seeds)
    assert res.value == pytest.approx(lf.value(res.starts, res.sizes))
    assert res.value <= res.bound * (1 + 1e-9) and res.report.gap is not None


def _brute_force(lf):
    options = [[(s, k) for k in range(1, K + 1) for s in range(lf.num_layers - k + 1)] for K in lf.max_layers]
    return max(lf.value([s for s, _ in c], [k for _, k in c]) for c in itertools.product(*options))


@pytest.mark.parametrize("seed", range(4))
def test_milp_and_search_optimal_on_tiny_instances(seed):
    """Tiny random instances on a fast network: the optimiser reaches the brute-force optimum; the
    stage-chain MILP never exceeds it and reaches it when the optimum is a chain; bounds hold."""
    rng = np.random.default_rng(seed)
    L, n = 5, 4
    caps = []
    for _ in range(n):
        K = int(rng.integers(1, 4))
        t1 = float(rng.uniform(5, 20))
        caps.append([t1 / k * float(rng.uniform(0.8, 1.0)) for k in range(1, K + 1)])
    while sum(len(c) for c in caps) < L:
        caps[0].append(caps[0][-1] * 0.8)
    big = np.full((n, n), 1e6)
    lf = LayoutFlow(L, caps, big, np.full(n, 1e6), np.full(n, 1e6))
    opt = _brute_force(lf)
    res = place_layers(lf, list(range(n)), iterations=3000, chains=2, seed=seed, chain_milp=False)
    assert res.value == pytest.approx(opt, rel=1e-9)
    chain = chain_layout(caps, L, upper=helix_upper_bound(caps, L), time_limit_s=10, rel_tol=1e-9)
    assert chain.value <= opt * (1 + 1e-9)
    assert lf.value(chain.starts, chain.sizes) >= chain.value * (1 - 1e-9)
    assert crossing_upper_bound(caps, L) >= opt * (1 - 1e-9)


def test_chain_milp_finds_the_chain_optimum():
    """Nodes that hold one layer each must form stages: the best chain (two stages of a fast and a slow
    node) is the optimum."""
    caps = [[10.0], [10.0], [4.0], [4.0]]
    lf = LayoutFlow(2, caps, np.full((4, 4), 1e6), np.full(4, 1e6), np.full(4, 1e6))
    opt = _brute_force(lf)
    chain = chain_layout(caps, 2, upper=helix_upper_bound(caps, 2), time_limit_s=10, rel_tol=1e-9)
    assert chain.value == pytest.approx(opt) == 14.0 and chain.upper_proven


def test_single24_reaches_the_layer_crossing_bound():
    """The stage-chain MILP proves single24's optimum: its value equals the layer-crossing bound."""
    r = plan_cluster("helix:single24-llama2-70b", iterations=0)
    assert r.plan.report.status == "optimal"
    assert r.plan.throughput_tokens_per_s == pytest.approx(r.plan.crossing_bound_tokens_per_s, rel=1e-9)
    assert r.plan.throughput_tokens_per_s > 1289.56  # Helix's published Gurobi value
    assert verify_cluster(r.plan, read_cluster("helix:single24-llama2-70b")).ok


def test_user_fleet_plans_and_verifies(tmp_path):
    r = plan_cluster(EXAMPLE, "mixtral-8x7b", iterations=500, chains=1, chain_milp=False, time_limit_s=30)
    assert verify_cluster(r.plan, read_cluster(EXAMPLE)).ok
    plan = r.plan
    assert plan.throughput_tokens_per_s > 0 and plan.pipelines
    assert all(p.layer_partition.count(",") == len(p.nodes) - 1 for p in plan.pipelines)
    assert ClusterPlan.from_json(plan.to_json()) == plan
    again = plan_cluster(EXAMPLE, "mixtral-8x7b", iterations=500, chains=1, chain_milp=False, time_limit_s=30)
    assert again.plan.to_json() == plan.to_json()  # deterministic: same inputs, same bytes
    fp8 = plan_cluster(EXAMPLE, "mixtral-8x7b", precision={"weights": "fp8"}, iterations=0, chain_milp=False)
    assert max(len(n.capacity_table_tokens_per_s) for n in fp8.plan.nodes) >= max(len(n.capacity_table_tokens_per_s) for n in plan.nodes)


def test_verifier_catches_tampering():
    r = plan_cluster("helix:single8-l4-llama1-30b", iterations=100, chain_milp=False)
    data = json.loads(r.plan.to_json())
    data["throughput_tokens_per_s"] *= 1.01
    assert not verify_cluster(ClusterPlan.model_validate(data)).ok
    data = json.loads(r.plan.to_json())
    data["nodes"][0]["last_layer"] += 1
    assert not verify_cluster(ClusterPlan.model_validate(data)).ok


@pytest.mark.slow
def test_cli_end_to_end_subprocess(tmp_path):
    """The default command on the example fleet, the plan written, then `moeplan verify --cluster`."""
    import subprocess
    import sys

    plan = tmp_path / "plan.json"
    run = [sys.executable, "-m", "planner.cli", "cluster", EXAMPLE, "--model", "mixtral-8x7b", "-o", str(plan), "--json"]
    out = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["plan"]["kind"] == "cluster"
    ver = subprocess.run([sys.executable, "-m", "planner.cli", "verify", str(plan), "--cluster", EXAMPLE],
                         capture_output=True, text=True, timeout=300)
    assert ver.returncode == 0, ver.stderr


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


GOOD = """
coordinator: {region: a}
network: {intra_region_bytes_per_s: 1.0e10, inter_region_bytes_per_s: 1.0e9}
nodes:
  - {name: x, gpu: h100, gpus: 2, nic_bytes_per_s: 5.0e10, region: a}
  - {name: y, gpu: l4, gpus: 1, nic_bytes_per_s: 1.0e10, region: b}
"""
BAD = [
    ("unknown-gpu", GOOD.replace("gpu: l4", "gpu: l5"), 2, "unknown gpu type 'l5'"),
    ("no-link", GOOD.replace("network: {intra_region_bytes_per_s: 1.0e10, inter_region_bytes_per_s: 1.0e9}",
                             "links: [{between: [x, coordinator], bytes_per_s: 1.0e9}]"), 2, "node 'y' has no link"),
    ("negative-bandwidth", GOOD + "links: [{between: [x, y], bytes_per_s: -5}]", 2, "bytes_per_s: must be > 0"),
    ("negative-network", GOOD.replace("inter_region_bytes_per_s: 1.0e9", "inter_region_bytes_per_s: -1.0e9"), 2, "inter_region_bytes_per_s"),
    ("bad-name", GOOD.replace("name: y", "name: y/1"), 2, "has no '/'"),
    ("unknown-field", GOOD.replace("region: b}", "region: b, colour: red}"), 2, "unknown field 'colour'"),
    ("fits-nowhere", GOOD.replace("gpu: h100, gpus: 2", "gpu: t4, gpus: 1").replace("gpu: l4", "gpu: t4"), 3, "no node can hold"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_cluster_files_are_one_line_errors(tmp_path, case):
    _, text, code, keyword = case
    path = _write(tmp_path, text)
    res = runner.invoke(app, ["cluster", str(path), "--model", "deepseek-v3", "-o", str(tmp_path / "p.json")])
    assert res.exit_code == code, res.output
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("moeplan: error:"), err
    assert keyword.lower() in err.lower(), err
    assert not (tmp_path / "p.json").exists()


def test_library_errors_name_the_item(tmp_path):
    with pytest.raises(InputError, match="node 'y' has no link"):
        read_cluster(_write(tmp_path, BAD[1][1]))
    with pytest.raises(Infeasible):
        plan_cluster(_write(tmp_path, BAD[-1][1]), "deepseek-v3")
    with pytest.raises(InputError, match="model"):
        plan_cluster(_write(tmp_path, GOOD))
