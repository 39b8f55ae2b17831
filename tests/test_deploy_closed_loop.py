"""Closed-loop capacity: ``planner.perf.max_concurrency``, the steady-window SLO judgement, and the deployment
search with ``load="closed"`` (ranking, plan records, re-simulating verification, tampering, the CLI, bad input)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from planner.cli import app
from planner.deploy import plan_deployment, verify_deployment
from planner.errors import InputError
from planner.inputs import SLO, poisson_workload
from planner.perf import Pool, distserve_cost, max_concurrency, simulate
from planner.plans.schema import parse_plan_json

SLO_PCT = SLO(400, 60, rule="percentile")
SMALL = dict(isl=1024, osl=128, num_requests=3000, max_candidates_per_role=2, alternatives=2)


@pytest.fixture(scope="module")
def workload():
    return poisson_workload(1.0, 3000, input_tokens=512, output_tokens=64, seed=0)


@pytest.fixture(scope="module")
def pool():
    return Pool(distserve_cost("opt-13b", tp=1))


def test_max_concurrency_answer_meets_and_the_bracket_above_misses(workload, pool):
    r = max_concurrency(workload, pool, SLO_PCT)
    assert r.clients > 0 and not r.capped and r.upper_clients is not None
    assert r.upper_clients - r.clients <= max(1, r.clients // 32)
    by_n = {p.clients: p for p in r.probes}
    assert by_n[r.clients].met and not by_n[r.upper_clients].met
    # every probe's verdict is the SLO on its own steady window, re-simulated independently here
    for p in r.probes:
        res = simulate(workload.head(p.num_requests), pool, concurrency=p.clients)
        st = res.steady_state()
        assert p.met == (st["ttft_ms_p90"] <= 400 and st["tpot_ms_p90"] <= 60)
        assert p.ttft_ms_percentile == pytest.approx(st["ttft_ms_p90"])
    assert r.requests_per_s == pytest.approx(r.result.steady_state()["requests_per_s"])
    assert r.result.concurrency == r.clients


def test_a_looser_slo_never_serves_fewer_clients(workload, pool):
    tight = max_concurrency(workload, pool, SLO_PCT)
    loose = max_concurrency(workload, pool, SLO(400, 90, rule="percentile"))
    assert loose.clients >= tight.clients


def test_workload_length_caps_the_clients_and_says_so(pool):
    w = poisson_workload(1.0, 60, input_tokens=512, output_tokens=64, seed=0)
    r = max_concurrency(w, pool, SLO(1e6, 1e6, rule="percentile"), start=4)
    assert r.capped and r.clients == 20 and r.upper_clients is None


def test_no_client_count_meets_an_impossible_slo(workload, pool):
    r = max_concurrency(workload, pool, SLO(1, 1, rule="percentile"))
    assert r.clients == 0 and r.result is None and r.best is None and r.requests_per_s == 0.0
    assert [p.clients for p in r.probes] == [8, 4, 2, 1]


@pytest.mark.parametrize("kw, param", [({"start": 0}, "start"), ({"max_clients": True}, "max_clients"),
                                       ({"bisect_to": 1.5}, "bisect_to"), ({"start": 9, "max_clients": 8}, "start")])
def test_max_concurrency_bad_arguments(workload, pool, kw, param):
    with pytest.raises(InputError) as e:
        max_concurrency(workload, pool, SLO_PCT, **kw)
    assert e.value.param == param


def test_steady_window_judgement_matches_steady_state(workload, pool):
    res = simulate(workload.head(600), pool, concurrency=16)
    st = res.steady_state()
    mask = res.steady_mask()
    assert mask.sum() == st["requests"]
    assert res.percentile("tpot_ms", 90, steady=True) == pytest.approx(st["tpot_ms_p90"])
    ok = res.attains(SLO_PCT)[mask]
    assert res.attainment(SLO_PCT, steady=True) == pytest.approx(ok.mean())
    with pytest.raises(InputError):
        simulate(workload.head(100), pool).steady_mask()  # an open loop has no steady window


@pytest.fixture(scope="module")
def closed():
    return plan_deployment("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"), num_gpus=4, load="closed",
                           **SMALL)


def test_closed_search_ranks_by_the_steady_rate_and_records_clients(closed):
    served = [d for d in closed.deployments if d.meets_slo]
    assert closed.chosen.concurrency > 0 and closed.chosen.meets_slo
    assert closed.chosen.rate_req_per_s == max(d.rate_req_per_s for d in served)
    assert all(d.concurrency is not None for d in closed.deployments)
    assert closed.chosen.ttft_ms <= 1000 and closed.chosen.tpot_ms <= 50
    assert closed.plan.chosen.concurrency == closed.chosen.concurrency
    assert closed.plan.inputs.parameters["load"] == "closed"
    assert closed.request["load"] == "closed" and "clients" in closed.table()
    assert any(n.startswith("closed loop:") for n in closed.notes)


def test_closed_plan_verifies_and_tampering_fails(closed):
    plan = closed.plan
    assert verify_deployment(plan).ok
    doc = json.loads(plan.to_json())
    doc["chosen"]["rate_req_per_s"] *= 1.05
    bad = verify_deployment(parse_plan_json(json.dumps(doc)))
    assert not bad.ok and bad.failures[0].name == "simulation"
    doc = json.loads(plan.to_json())
    doc["chosen"]["concurrency"] = 4 * doc["chosen"]["concurrency"]  # far more clients: misses or other numbers
    assert not verify_deployment(parse_plan_json(json.dumps(doc))).ok
    doc = json.loads(plan.to_json())
    doc["chosen"]["concurrency"] = 10 ** 6  # no steady window in the plan's requests
    bad = verify_deployment(parse_plan_json(json.dumps(doc)))
    assert not bad.ok and "steady window" in bad.failures[0].detail


def test_closed_loop_scores_every_candidate_and_changes_only_step_five(closed):
    """Steps 1-4 are the open search's, except that no candidate is skipped (the skip rule bounds open-loop
    goodput, not the closed loop's ranking): the open search's scores are among the closed one's."""
    open_ = plan_deployment("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"), num_gpus=4, **SMALL)
    as_text = lambda s: json.dumps(s.to_dict(), sort_keys=True)  # noqa: E731  (nan == nan)
    closed_scores = {as_text(s) for s in closed.scores}
    assert {as_text(s) for s in open_.scores} <= closed_scores
    assert not any("not simulated" in n for n in closed.notes)
    assert all(d.concurrency is None for d in open_.deployments)
    assert np.isfinite([d.rate_req_per_s for d in closed.deployments]).all()


@pytest.mark.parametrize("kw, param", [({"load": "closed", "rate_req_per_s": 2.0}, "load"),
                                       ({"load": "fixed", "num_gpus": 4}, "load")])
def test_closed_search_bad_input(kw, param):
    with pytest.raises(InputError) as e:
        plan_deployment("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"), **SMALL, **kw)
    assert e.value.param == param


def test_cli_deploy_load_closed(tmp_path):
    runner = CliRunner()
    out = tmp_path / "dep.json"
    res = runner.invoke(app, ["deploy", "-m", "qwen3-30b-a3b", "-g", "h100", "--gpus", "2", "--ttft-ms", "1000",
                              "--tpot-ms", "50", "--isl", "1024", "--osl", "128", "--requests", "3000", "--load",
                              "closed", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["chosen"]["concurrency"] > 0 and doc["plan"]["chosen"]["concurrency"] == doc["chosen"]["concurrency"]
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    page = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(out), "-o", str(page), "--rate-points", "2"])
    assert res.exit_code == 0, res.output
    html = page.read_text(encoding="utf-8")
    assert f"closed loop: {doc['chosen']['concurrency']} clients" in html
    assert "Served rate and latency vs clients" in html and "Goodput vs request rate" not in html
    res = runner.invoke(app, ["deploy", "-m", "qwen3-30b-a3b", "-g", "h100", "--rate", "2", "--ttft-ms", "1000",
                              "--tpot-ms", "50", "--isl", "1024", "--osl", "128", "--load", "closed"])
    assert res.exit_code == 2 and "--load" in res.output
