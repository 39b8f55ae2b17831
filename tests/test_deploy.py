"""The deployment search: invariants of its result, its plan's verification (and tampering), rate mode,
infeasibility in numbers, the CLI, and replica plans' bytes unchanged by the new plan kind."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from planner.cli import app
from planner.deploy import plan_deployment, verify_deployment
from planner.deploy.result import pareto_front
from planner.errors import Infeasible, InputError
from planner.inputs import SLO
from planner.plans.io import read_plan, write_plan
from planner.plans.schema import DeploymentPlan, parse_plan_json

SMALL = dict(isl=1024, osl=128, num_requests=300, max_candidates_per_role=2, alternatives=2)


@pytest.fixture(scope="module")
def result():
    return plan_deployment("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"), num_gpus=4, **SMALL)


def test_result_invariants(result):
    assert all(d.num_gpus <= 4 for d in result.deployments)
    assert {d.mode for d in result.deployments} == {"disaggregated", "aggregated"}
    chosen = result.chosen
    assert chosen.meets_slo and chosen.rate_req_per_s > 0
    assert chosen.ttft_ms <= 1000 and chosen.tpot_ms <= 50
    served = [d for d in result.deployments if d.meets_slo]
    assert chosen.rate_req_per_s == max(d.rate_req_per_s for d in served)
    assert chosen.tokens_per_s_per_user == pytest.approx(1000 / chosen.tpot_ms)
    # the front is exactly the non-dominated simulated deployments
    pts = [(d.tokens_per_s_per_user, d.tokens_per_s_per_gpu) for d in served]
    for i, (x, y) in enumerate(pts):
        dominated = any(a >= x and b >= y and (a, b) != (x, y) for a, b in pts)
        on_front = served[i] in [result.deployments[j] for j in result.pareto]
        assert on_front != dominated or (x, y) in [pts[j] for j in range(i)]
    assert "wins" in result.comparison


def test_plan_verifies_round_trips_and_tampering_fails(result, tmp_path):
    plan = result.plan
    assert isinstance(plan, DeploymentPlan) and plan.kind == "deployment"
    assert verify_deployment(plan).ok
    path = write_plan(plan, tmp_path / "dep.json")
    again = read_plan(path)
    assert again.to_json() == plan.to_json()
    doc = json.loads(plan.to_json())
    doc["chosen"]["attainment"] = doc["chosen"]["attainment"] * 0.9
    bad = verify_deployment(parse_plan_json(json.dumps(doc)))
    assert not bad.ok and bad.failures[0].name == "simulation"
    doc = json.loads(plan.to_json())
    doc["chosen"]["pools"][0]["instances"] += 1
    assert not verify_deployment(parse_plan_json(json.dumps(doc))).ok


def test_rate_mode_serves_the_target_with_fewest_gpus():
    r = plan_deployment("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"), rate_req_per_s=4.0, **SMALL)
    assert r.chosen.meets_slo and r.chosen.rate_req_per_s == 4.0
    met = [d for d in r.deployments if d.meets_slo]
    assert r.chosen.num_gpus == min(d.num_gpus for d in met)
    assert verify_deployment(r.plan).ok


def test_infeasible_gives_the_closest_miss_in_numbers():
    with pytest.raises(Infeasible, match=r"TTFT 1 ms .* ms"):
        plan_deployment("qwen3-30b-a3b", "h100", SLO(1, 50, rule="percentile"), num_gpus=2, **SMALL)


def test_pareto_front_brute_force():
    pts = [(1.0, 5.0), (2.0, 4.0), (2.0, 3.0), (3.0, 1.0), (0.5, 5.0), (3.0, 1.0)]
    front = pareto_front(pts)
    for i, p in enumerate(pts):
        dominated = any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in pts)
        assert (i in front) or dominated or p in [pts[j] for j in front]


def test_cli_deploy_json_and_exit_3(tmp_path):
    runner = CliRunner()
    out = tmp_path / "dep.json"
    res = runner.invoke(app, ["deploy", "-m", "qwen3-30b-a3b", "-g", "h100", "--gpus", "2", "--ttft-ms", "1000",
                              "--tpot-ms", "50", "--isl", "1024", "--osl", "128", "--requests", "300", "-o", str(out),
                              "--memory-fraction-of", "free", "--memory-utilization", "0.85", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["chosen"]["num_gpus"] <= 2 and doc["plan"]["kind"] == "deployment"
    assert (doc["request"]["memory_fraction_of"], doc["request"]["memory_utilization"]) == ("free", 0.85)
    res = runner.invoke(app, ["verify", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["export", str(out), "--target", "sglang", "-o", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "not implemented yet" in res.output
    res = runner.invoke(app, ["deploy", "-m", "qwen3-30b-a3b", "-g", "h100", "--gpus", "2", "--ttft-ms", "1",
                              "--tpot-ms", "50", "--isl", "1024", "--osl", "128", "--requests", "300"])
    assert res.exit_code == 3 and "TTFT 1 ms" in res.output


def test_default_scenario_plan_bytes_unchanged(tmp_path):
    """Replica plans keep their schema and bytes now that deployment plans exist."""
    from planner.scenario.run import load_scenario, run_scenario

    r = run_scenario(load_scenario("builtin:olmoe-arxiv-ep8"), tmp_path)
    digest = hashlib.sha256(open(r.files["plan"], "rb").read()).hexdigest()
    # changed once on purpose: the swap search is bounded by work (parameters gained swap_evaluations,
    # swap_time_limit_s is null by default); the layout and metrics are the same bytes as before
    assert digest == "68b7d443ac6939cf5ab599f5eb20a2fe4b93de6c5d04264d54c51a58275d73f0"


def test_precision_is_recorded_and_an_fp8_kv_cache_holds_more_requests(result):
    """The latency model prices the formats asked for; the plan records them and re-simulates with them."""
    native = result.plan.inputs.precision
    assert native == {"attention": "bf16", "experts": "bf16", "kv_cache": "bf16", "activations": "bf16",
                      "base": "bf16"}
    fp8 = plan_deployment("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"), num_gpus=4,
                          precision={"kv_cache": "fp8"}, **SMALL)
    assert fp8.plan.inputs.precision["kv_cache"] == "fp8"
    assert verify_deployment(fp8.plan).ok
    pools = lambda r: {p.cost["layout"]: p for d in [r.plan.chosen] for p in d.pools}  # noqa: E731
    for layout, pool in pools(fp8).items():
        assert pool.cost["precision"]["kv_cache"] == "fp8"
    from planner.perf import latency_model_cost

    grid = dict(max_context_tokens=2048, max_batch_size=32, max_prefill_batch=4)
    bf16 = latency_model_cost("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1", **grid).kv_capacity_tokens
    one_byte = latency_model_cost("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1", precision={"kv_cache": "fp8"},
                                  **grid).kv_capacity_tokens
    assert 1.95 * bf16 <= one_byte <= 2.0 * bf16 + 1


def test_skipped_candidates_leave_the_best_solution_and_refining_follows_the_fine_path(monkeypatch):
    """The search does not simulate a candidate whose bound cannot reach the rate the integer program already
    predicts for its kind, and bisects to 4 % only the deployments that can still win. Against the exhaustive
    path (every candidate scored, every deployment bisected to 4 %): the program's best predicted rate of each
    kind is the same, every skipped candidate's bound is below it, and a deployment simulated by both gets the
    same goodput when the fast search refined it (a coarse search continued from its bracket takes the fine
    search's path), at most 10 % less (its coarse bracket) when it did not."""
    import planner.deploy.end_to_end as end_to_end
    import planner.deploy.search as search

    args = ("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"))
    kw = dict(num_gpus=8, isl=2048, osl=256, num_requests=300)
    fast = plan_deployment(*args, **kw)
    assert any(n.startswith("candidates not simulated") for n in fast.notes)
    monkeypatch.setattr(search, "_reach", lambda setup, cand: float("inf"))
    monkeypatch.setattr(end_to_end, "COARSE_TOL", end_to_end.REL_TOL)
    full = plan_deployment(*args, **kw)
    assert [r.objective for r in fast.solve_reports] == [r.objective for r in full.solve_reports]
    scored = {(s.candidate.role, s.candidate.label) for s in fast.scores}
    skipped = [s for s in full.scores if (s.candidate.role, s.candidate.label) not in scored]
    best = {"prefill": fast.solve_reports[0].objective, "decode": fast.solve_reports[0].objective,
            "both": fast.solve_reports[1].objective}  # max_rate: the programs' best predicted rates
    assert skipped and all((8 // s.candidate.num_gpus) * s.candidate.bound_req_per_s < best[s.candidate.role]
                           for s in skipped)
    full_rate = {d.label: d.rate_req_per_s for d in full.deployments}
    both = [d for d in fast.deployments if d.label in full_rate]
    assert fast.chosen in both
    for d in both:  # the same search path: the coarse bracket's met rate, or the fine search's
        assert 0.9 * full_rate[d.label] <= d.rate_req_per_s <= full_rate[d.label]
    assert fast.chosen.rate_req_per_s == full_rate[fast.chosen.label]


def test_search_checks_its_chosen_deployment_and_verify_every_alternative(result):
    plan = result.plan
    quick = verify_deployment(plan, alternatives=False)
    assert quick.ok and "not re-simulated" in [c for c in quick.checks if c.name == "alternatives"][0].detail
    doc = json.loads(plan.to_json())
    doc["alternatives"][0]["attainment"] = doc["alternatives"][0]["attainment"] * 0.9
    tampered = parse_plan_json(json.dumps(doc))
    assert verify_deployment(tampered, alternatives=False).ok
    assert not verify_deployment(tampered).ok


@pytest.mark.parametrize("name", ["alternatives", "max_candidates_per_role"])
def test_zero_alternatives_or_candidates_is_refused_not_called_infeasible(name):
    """alternatives counts the best combination too: 0 used to simulate nothing and report Infeasible."""
    with pytest.raises(InputError, match=r"integer >= 1") as err:
        plan_deployment("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"), isl=1024, osl=128, num_gpus=2,
                        **{name: 0})
    assert err.value.param == name


def test_memory_rule_is_searched_recorded_and_reverified(result):
    """--memory-fraction-of free (TensorRT-LLM's rule) gives every layout more KV room than vLLM's cap on the
    total; the plan records the rule in each pool's cost arguments, and the verifier rebuilds the same capacity."""
    free = plan_deployment("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"), num_gpus=4,
                           memory_fraction_of="free", **SMALL)
    assert free.request["memory_fraction_of"] == "free" and result.request["memory_fraction_of"] == "total"
    caps = lambda r: {p.cost["layout"]: p.kv_capacity_tokens  # noqa: E731
                      for d in [r.plan.chosen, *r.plan.alternatives] for p in d.pools}
    for pool in free.plan.chosen.pools:
        assert (pool.cost["memory_fraction_of"], pool.cost["memory_utilization"]) == ("free", 0.9)
    shared = caps(free).keys() & caps(result).keys()
    assert shared and all(caps(free)[k] > caps(result)[k] for k in shared)
    assert verify_deployment(free.plan).ok
    tampered = free.plan.model_copy(deep=True)
    tampered.chosen.pools[0].cost["memory_fraction_of"] = "total"
    assert not verify_deployment(tampered).ok
    for kwargs, param in ((dict(memory_utilization=1.5), "memory_utilization"),
                          (dict(memory_fraction_of="rest"), "memory_fraction_of")):
        with pytest.raises(InputError, match=param):
            plan_deployment("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"), num_gpus=4, **kwargs, **SMALL)


def test_wide_search_keeps_every_candidate_and_the_default_is_its_subset():
    """max_candidates_per_role=None (benchmarks/deploy_width.py's wide search): no candidate dropped at screening,
    dominated ones included; the default search's candidates are among them."""
    from planner.deploy.scoring import prune

    kw = dict(SMALL, max_candidates_per_role=None)
    wide = plan_deployment("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"), num_gpus=2, **kw)
    narrow = plan_deployment("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"), num_gpus=2, **SMALL)
    labels = lambda r: {(s.candidate.role, s.candidate.label) for s in r.scores}  # noqa: E731
    assert labels(narrow) <= labels(wide) and len(labels(wide)) > len(labels(narrow))
    cands = [s.candidate for s in wide.scores]
    assert len(prune(cands, None)) == len(cands) >= len(prune(cands, 10 ** 6))
    per_gpu = [c.bound_req_per_s / c.num_gpus for c in prune(cands, None)]
    assert per_gpu == sorted(per_gpu, reverse=True)


def test_aggregated_candidates_try_both_token_budgets_within_their_cost_tables():
    """An aggregated layout is screened with 2048 and 8192 tokens per rank and step (Sarathi-Serve's largest
    chunk, TensorRT-LLM's default max_num_tokens); every scored candidate's budget fits the cost table its plan
    records, so verify prices the same steps. (A closed-loop search scores every candidate it keeps.)"""
    kw = dict(SMALL, max_candidates_per_role=None, load="closed")
    wide = plan_deployment("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"), num_gpus=2, **kw)
    budgets: dict[str, set[int]] = {}
    for s in wide.scores:
        c = s.candidate
        if c.role == "both":
            budgets.setdefault(c.instance.label, set()).add(c.token_budget // c.instance.layout.dp)
    assert budgets and all(b == {2048, 8192} for b in budgets.values()), budgets
    for d in [wide.plan.chosen, *wide.plan.alternatives]:
        for p in d.pools:
            if p.token_budget is not None:
                assert p.token_budget <= p.cost["max_batch_tokens"], (d, p)


def test_given_balancedness_prices_the_moe_layouts_and_is_checked():
    """balancedness={ep: b} (or one b for all): those EP sizes take it, in the screening, the recorded pools and
    verify; a harsher imbalance never serves more; bad values and conflicting inputs are refused by name."""
    slo = SLO(1000, 50, rule="percentile")
    given = plan_deployment("qwen3-30b-a3b", "h100", slo, num_gpus=4, balancedness={2: 0.5, 4: 0.3}, **SMALL)
    seen = {p.cost["layout"]: p.cost["balancedness"] for d in [given.plan.chosen, *given.plan.alternatives]
            for p in d.pools}
    for label, b in seen.items():
        ep = int(label.split("ep")[1].split("moe")[0])
        assert b == {1: 1.0, 2: 0.5, 4: 0.3}[ep], (label, b)
    assert any("the caller's balancedness b = 0.3000" in n for n in given.notes)
    assert verify_deployment(given.plan).ok
    even = plan_deployment("qwen3-30b-a3b", "h100", slo, num_gpus=4, balancedness=1.0, **SMALL)
    harsh = plan_deployment("qwen3-30b-a3b", "h100", slo, num_gpus=4, balancedness=0.25, **SMALL)
    assert harsh.chosen.rate_req_per_s <= even.chosen.rate_req_per_s
    for bad in (0.0, 1.5, float("nan"), {1: 0.5}, {2: True}, {}, "0.5"):
        with pytest.raises(InputError) as e:
            plan_deployment("qwen3-30b-a3b", "h100", slo, num_gpus=4, balancedness=bad, **SMALL)
        assert e.value.param == "balancedness"
    from planner.inputs.synthetic import synthetic_trace

    with pytest.raises(InputError) as e:
        plan_deployment("qwen3-30b-a3b", "h100", slo, num_gpus=4, balancedness=0.5,
                        loads=synthetic_trace(num_steps=2, seed=0, num_layers=2, num_experts=128), **SMALL)
    assert e.value.param == "balancedness"
    args = ["deploy", "-m", "qwen3-30b-a3b", "-g", "h100", "--ttft-ms", "1000", "--tpot-ms", "50", "--gpus", "4",
            "--isl", "1024", "--osl", "128", "--requests", "300"]
    ok = CliRunner().invoke(app, args + ["--balancedness", "2=0.5,4=0.3", "--json"])
    assert ok.exit_code == 0, ok.output
    for text in ("2=0.5,4=x", "0.5,2=1", "2=0.5,2=0.6", "abc"):
        res = CliRunner().invoke(app, args + ["--balancedness", text])
        assert res.exit_code == 2 and "--balancedness" in res.output, (text, res.output)
