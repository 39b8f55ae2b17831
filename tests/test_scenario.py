"""The main job (docs/scenarios.md): scenario checks, the chain, its verifier, its engine artefacts."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from planner.cli import app
from planner.errors import InputError
from planner.plans.io import read_plan
from planner.scenario import load_scenario, run_scenario, verify_scenario
from planner.scenario.spec import list_builtin_scenarios, parse_scenario

SMALL = {
    "name": "mixtral-small",
    "model": "mixtral-8x7b",
    "gpus": ["h100", "a100-80g"],
    "num_gpus": 8,
    "slo": {"ttft_ms": 2000, "tpot_ms": 60},
    "workload": {"isl": 1024, "osl": 128, "num_requests": 300},
    "loads": "builtin:mistral-github",
    "running_plan": {"loads": "builtin:mistral-arxiv"},
    "cluster": "helix:cluster10-llama1-30b",
    "exports": ["sglang", "trtllm"],
}


# ---- scenario files: every value checked before any work (fast) -----------------------------------------

@pytest.mark.parametrize("change, key", [
    ({"redundant_slots": 8.5}, "redundant_slots"),
    ({"num_gpus": "eight"}, "num_gpus"),
    ({"gpus": [1, 2]}, "gpus[0]"),
    ({"gpus": ["h100", "h100"]}, "gpus"),
    ({"gpu": "h100"}, "gpu or gpus"),
    ({"slo": {"ttft_ms": 2000}}, "tpot_ms"),
    ({"slo": {"ttft_ms": float("nan"), "tpot_ms": 50}}, "slo.ttft_ms"),
    ({"slo": {"ttft_ms": 2000, "tpot_ms": 50, "percentile": 120}}, "slo.percentile"),
    ({"workload": {"isl": 100}}, "workload"),
    ({"workload": {"trace": "builtin:x", "isl": 1, "osl": 1}}, "workload"),
    ({"rate_req_per_s": 5}, "num_gpus"),
    ({"colour": "blue"}, "unknown keys"),
    ({"exports": ["tgi"]}, "tgi"),
    ({"spare_slots": -1}, "spare_slots"),
    ({"fleet": {"rate_req_per_s": 3}}, "fleet"),
    ({"prices": {"h100": -2}}, "prices.h100"),
    ({"load": "fixed"}, "load"),
    ({"load": 3}, "load"),
])
def test_bad_scenario_values_are_refused_naming_the_key(change, key):
    with pytest.raises(InputError) as err:
        parse_scenario({**SMALL, **change}, "s.yaml")
    assert key in str(err.value) and str(err.value).startswith("s.yaml")


def test_closed_loop_scenario_is_parsed_recorded_and_needs_a_budget():
    sc = parse_scenario({**SMALL, "load": "closed"}, "s.yaml")
    assert sc.load == "closed" and sc.to_dict()["load"] == "closed"
    assert parse_scenario(SMALL, "s.yaml").load == "open"
    rated = {k: v for k, v in SMALL.items() if k != "num_gpus"}
    with pytest.raises(InputError, match=r"^s\.yaml: load: a closed loop has no arrival rate"):
        parse_scenario({**rated, "rate_req_per_s": 5, "load": "closed"}, "s.yaml")


def test_replica_only_scenario_needs_loads_and_gpus():
    with pytest.raises(InputError, match="num_gpus"):
        parse_scenario({"name": "x", "model": "olmoe-1b-7b", "loads": "builtin:olmoe-c4"})


def test_builtin_scenarios_load_and_the_default_is_a_full_chain():
    assert {"default", "olmoe-arxiv-ep8"} <= set(list_builtin_scenarios())
    default = load_scenario(None)
    assert not default.replica_only and default.gpus and default.cluster and default.running_plan
    assert load_scenario("builtin:olmoe-arxiv-ep8").replica_only
    with pytest.raises(InputError, match="known: "):
        load_scenario("builtin:nope")


def test_scenario_file_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "s.yaml"
    f.write_text(yaml.safe_dump({**SMALL, "loads": "loads.npz"}))
    sc = load_scenario(f)
    assert sc.to_dict()["loads"] == str(tmp_path / "sub" / "loads.npz")
    assert sc.to_dict()["cluster"] == "helix:cluster10-llama1-30b"


# ---- the chain (one run shared by the tests below; slow: two deployment searches) -----------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenario")
    return run_scenario(parse_scenario(SMALL, "small"), out), out


@pytest.mark.slow
def test_chain_writes_a_verified_plan_and_every_artefact(small):
    res, out = small
    plan = read_plan(out / "plan.json")
    assert plan.kind == "scenario" and plan.to_json() == (out / "plan.json").read_text()
    assert verify_scenario(plan).ok
    assert [c.gpu for c in plan.gpu_choices] == ["h100", "a100-80g"]
    assert plan.chosen_gpu in ("h100", "a100-80g") and plan.decisions[0].startswith(f"GPU type {plan.chosen_gpu}")
    dep = next(d for d in plan.deployments if d.inputs.gpu == plan.chosen_gpu)
    moe_pools = [p for p in dep.chosen.pools if "ep1" not in p.layout or p.layout.endswith("ep16")]
    assert {r.role for r in plan.replicas} == {p.role for p in moe_pools}
    for r in plan.replicas:  # the balancedness the deployment was priced with is the plan's
        pool = next(p for p in dep.chosen.pools if p.role == r.role)
        assert r.plan.replicas.predicted.replay_balancedness_mean == pytest.approx(pool.balancedness, rel=1e-9)
        assert r.plan.replicas.predicted.replay_balancedness_mean > r.engine_default_balancedness
    assert {m.role for m in plan.migrations} == {r.role for r in plan.replicas}
    assert plan.cluster is not None and plan.cluster.throughput_tokens_per_s == pytest.approx(286.6, abs=0.1)
    names = {p.name for p in out.iterdir()}
    assert {"plan.json", "summary.txt", "launch-sglang.sh", "manifest.yaml"} <= names
    for r in plan.replicas:
        assert f"{r.role}-sglang-expert-location.json" in names and f"{r.role}-trtllm-moe-load-balancer.yaml" in names


@pytest.mark.slow
def test_launch_lines_and_manifest_match_the_chosen_deployment(small):
    res, out = small
    plan = res.plan
    dep = next(d for d in plan.deployments if d.inputs.gpu == plan.chosen_gpu).chosen
    script = (out / "launch-sglang.sh").read_text()
    lines = [l for l in script.splitlines() if l.startswith("python -m sglang.launch_server")]
    assert len(lines) == sum(p.instances for p in dep.pools)  # one node per instance at these sizes
    for p in dep.pools:
        mine = [l for l in lines if f"--port {30001 if p.role == 'decode' else 30000}" in l]
        from planner.perf import ParallelLayout

        lay = ParallelLayout.parse(p.layout)
        assert all(f"--tp-size {lay.tp * lay.dp}" in l for l in mine)
        if dep.mode == "disaggregated":
            assert all(f"--disaggregation-mode {p.role}" in l for l in mine)
        if lay.ep > 1:
            assert all(f"--init-expert-location {p.role}-sglang-expert-location.json" in l for l in mine)
    assert "sglang_router.launch_router" in script
    docs = list(yaml.safe_load_all((out / "manifest.yaml").read_text()))
    assert [d["metadata"]["name"].rsplit("-", 1)[1] for d in docs] == [p.role for p in dep.pools]
    for d, p in zip(docs, dep.pools):
        assert d["kind"] == "LeaderWorkerSet" and d["spec"]["replicas"] == p.instances
        limits = d["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] * d["spec"]["leaderWorkerTemplate"]["size"] == p.gpus_per_instance


@pytest.mark.slow
@pytest.mark.parametrize("tamper, check", [
    (lambda d: d["gpu_choices"][0].update(usd_per_million_tokens=d["gpu_choices"][0]["usd_per_million_tokens"] * 0.5),
     "gpu choice"),
    (lambda d: d.update(chosen_gpu=[c["gpu"] for c in d["gpu_choices"] if c["gpu"] != d["chosen_gpu"]][0]), "gpu choice"),
    (lambda d: d["replicas"][0].update(priced_balancedness=0.5), "replicas:"),
    (lambda d: d["replicas"][0].update(engine_default_balancedness=0.99), "replicas:"),
    (lambda d: d["migrations"][0].update(copies=d["migrations"][0]["copies"] + 1), "migration:"),
    (lambda d: d["migrations"][0].update(link_seconds=d["migrations"][0]["link_seconds"] * 3 + 1), "migration:"),
    (lambda d: d["migrations"][0]["schedule"]["layers"][0].update(steps=[]), "migration:"),
])
def test_verifier_catches_each_tampered_joint(small, tamper, check):
    from planner.plans.schema import ScenarioPlan

    doc = json.loads(small[0].plan.to_json())
    tamper(doc)
    report = verify_scenario(ScenarioPlan.model_validate(doc), alternatives=False)
    assert not report.ok and any(c.name.startswith(check) for c in report.failures), report.failures


@pytest.mark.slow
def test_plan_command_runs_a_scenario_file_deterministically(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({**SMALL, "gpus": ["h100"]}))
    runner = CliRunner()
    a = runner.invoke(app, ["plan", str(f), "-o", str(tmp_path / "a"), "--json"])
    assert a.exit_code == 0, a.output
    out = json.loads(a.stdout)
    assert out["kind"] == "scenario" and out["chosen_gpu"] == "h100" and out["decisions"]
    b = runner.invoke(app, ["plan", str(f), "-o", str(tmp_path / "b")])
    assert b.exit_code == 0, b.output
    for name in sorted(p.name for p in (tmp_path / "a").iterdir()):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    v = runner.invoke(app, ["verify", str(tmp_path / "a" / "plan.json")])
    assert v.exit_code == 0, v.output
    e = runner.invoke(app, ["export", str(tmp_path / "a" / "plan.json"), "--target", "sglang", "-o", str(tmp_path / "x.json")])
    assert e.exit_code == 2 and "moeplan plan" in e.stderr


@pytest.mark.slow
def test_default_scenario_runs_the_whole_chain(tmp_path):
    res = run_scenario(load_scenario(None), tmp_path)
    plan = res.plan
    assert plan.kind == "scenario" and len(plan.gpu_choices) == 2 and plan.replicas and plan.migrations
    assert plan.cluster is not None and verify_scenario(plan, alternatives=False).ok


@pytest.mark.slow
def test_report_of_a_scenario_plan_has_every_part_verified(small, tmp_path):
    from planner.report import build_report

    plan = small[0].plan
    res = build_report(plan)
    kinds = [p.kind for p, _ in res.parts]
    assert kinds[0] == "scenario" and kinds.count("deployment") == len(plan.deployments)
    assert kinds.count("replicas") == len(plan.replicas) and kinds.count("migration") == len(plan.migrations)
    assert kinds[-1] == "cluster" and res.verified and all(v.ok for _, v in res.parts)
    assert "cost per million tokens by GPU type" in res.html and res.figures >= 10
    # a tampered joint shows on the scenario's part and the pool's part, and the CLI refuses to write a page
    doc = json.loads(plan.to_json())
    doc["replicas"][0]["priced_balancedness"] = 0.5
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    out = CliRunner().invoke(app, ["report", str(tmp_path / "bad.json"), "-o", str(tmp_path / "r.html")])
    assert out.exit_code == 2 and "replicas:" in out.stderr and not (tmp_path / "r.html").exists()


def test_a_tampered_running_plan_file_is_refused_before_any_search(tmp_path):
    """Every path that reads a plan verifies it (issue 14): the scenario's running_plan file too."""
    import numpy as np

    from planner.inputs.loads import ExpertLoads
    from planner.replicas import plan_replicas

    counts = np.random.default_rng(0).integers(1, 100, size=(1, 3, 8)).astype(float)
    doc = json.loads(plan_replicas(ExpertLoads(counts, layer_ids=[0, 7, 15]), "mixtral-8x7b", num_gpus=8).to_json())
    doc["replicas"]["physical_to_logical"][0][0] = 999
    (tmp_path / "running.json").write_text(json.dumps(doc))
    sc = parse_scenario({**SMALL, "gpus": ["h100"], "running_plan": "running.json"}, "s", base=str(tmp_path))
    with pytest.raises(InputError, match="running_plan"):
        from planner.scenario.chain import _migrations  # noqa: the stage alone, without the searches

        _migrations(sc, None, [type("P", (), {"ep": 8, "role": "decode", "plan": None})()], "h100", [], lambda m: None)
