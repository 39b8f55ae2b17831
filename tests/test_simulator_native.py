"""The simulator's C core (``planner.perf._simcore``) against its Python loop, the reference: the same
SimResult float for float (``==`` and ``assert_array_equal``, never approx) over seeded random scenarios
covering every rule the core implements (aggregated, disaggregated, prefill-only and decode-only runs;
pipelines of 1, 2 and 4 stages; both routings; tight KV caches with rejections and waiting; chunked and
whole prompts; small token budgets; batch caps; KV transfers; stop_on_miss under both SLO rules; closed
loops), both cost models it prices, and goodput searches probe by probe. CI builds the core
(``pip install -e .``), so a missing build fails here instead of silently testing Python against itself."""

import dataclasses
import importlib
import math
import random

import numpy as np
import pytest

from planner.errors import InputError
from planner.inputs import SLO, LengthDist, Workload, poisson_workload
from planner.perf import Pool, distserve_cost, goodput, latency_model_cost, simulate, simulator_core

FIELDS = ("tokens_generated", "kv_peak_tokens", "busy_s", "steps", "sim_end_s", "complete", "concurrency",
          "think_time_s", "pool_names", "kv_capacity_tokens", "num_gpus")
U = LengthDist.uniform


def test_core_is_built():
    """Fails when the extension did not compile (pip install -e . builds it; setup.py)."""
    core = importlib.import_module("planner.perf._simcore")
    assert callable(core.run)


def _run(monkeypatch, core, workload, pools, **kw):
    monkeypatch.setenv("MOEPLAN_SIM_CORE", core)
    return simulate(workload, pools, **kw)


def _assert_same(a, b):
    for name in ("first_token_s", "finish_s", "rejected", "prefill_instance", "decode_instance"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.workload.arrival_s, b.workload.arrival_s)
    for name in FIELDS:
        assert getattr(a, name) == getattr(b, name), name


def _both(monkeypatch, workload, pools, **kw):
    py = _run(monkeypatch, "python", workload, pools, **kw)
    c = _run(monkeypatch, "native", workload, pools, **kw)
    _assert_same(py, c)
    return py


# -- cost models ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def costs():
    ds1 = distserve_cost("opt-13b", tp=1)
    ds_link = distserve_cost("opt-13b", tp=2, kv_link_bytes_per_s=25e9, kv_transfer_latency_s=0.002)
    ds_pp2 = distserve_cost("opt-13b", tp=1, pp=2)
    ds_pp4 = distserve_cost("opt-13b", tp=2, pp=4)
    lm = latency_model_cost("qwen3-30b-a3b", "h100", "tp1pp1dp2ep2", max_context_tokens=8192)
    lm_pp2 = latency_model_cost("qwen3-30b-a3b", "h100", "tp1pp2dp1ep1", max_context_tokens=8192, max_batch_size=48,
                                max_prefill_batch=8)
    return {"ds1": ds1, "ds_link": ds_link, "ds_pp2": ds_pp2, "ds_pp4": ds_pp4, "lm": lm, "lm_pp2": lm_pp2}


def _tight(cost, rng):
    """The same cost model with a small KV cache: rejections, and requests waiting for room."""
    return dataclasses.replace(cost, kv_capacity_tokens=rng.choice([600, 2500, 6000, 20000]))


def _workload(rng, n):
    rate = rng.choice([0.5, 2.0, 8.0, 40.0])
    gaps = [rng.expovariate(rate) for _ in range(n)]
    if rng.random() < 0.4:  # bursts: requests arriving together (ties)
        gaps = [0.0 if rng.random() < 0.5 else g for g in gaps]
    arrival = np.cumsum(gaps)
    arrival -= arrival[0]
    hi_in = rng.choice([64, 600, 3000, 9000])
    hi_out = rng.choice([1, 4, 80, 400])
    inp = [rng.randint(1, hi_in) for _ in range(n)]
    out = [1 if rng.random() < 0.15 else rng.randint(1, hi_out) for _ in range(n)]
    return Workload(arrival, inp, out, source="random")


def _pool(rng, cost, phase):
    return Pool(cost, rng.choice([1, 1, 2, 3]), phase=phase,
                token_budget=rng.choice([None, None, 16, 100, 512, 4096]),
                chunked_prefill=rng.choice([None, True, False]),
                max_batch_size=rng.choice([None, None, 1, 3, 16]),
                routing=rng.choice(["least_loaded", "round_robin"]))


def _scenario(seed, costs):
    rng = random.Random(seed)
    w = _workload(rng, rng.randint(20, 160))
    names = sorted(costs)

    def cost():
        c = costs[rng.choice(names)]
        return _tight(c, rng) if rng.random() < 0.35 else c

    kind = rng.choice(["both", "both", "disagg", "disagg", "prefill", "decode"])
    if kind == "disagg":
        pools = [_pool(rng, cost(), "prefill"), _pool(rng, cost(), "decode")]
    else:
        pools = [_pool(rng, cost(), kind)]
    kw = {}
    load = rng.random()
    if load < 0.25:
        kw = {"concurrency": rng.choice([1, 3, 16]), "think_time_s": rng.choice([0.0, 0.0, 0.05, 1.0])}
    elif load < 0.6:
        kw = {"stop_on_miss": SLO(rng.choice([50.0, 300.0, 3000.0, math.inf]), rng.choice([10.0, 40.0, 200.0]),
                                  attainment_target=rng.choice([0.5, 0.9, 0.99]),
                                  rule=rng.choice(["percentile", "per_request"]))}
    return w, pools, kw


@pytest.mark.parametrize("seed", range(160))
def test_random_scenarios(monkeypatch, costs, seed):
    w, pools, kw = _scenario(seed, costs)
    _both(monkeypatch, w, pools, **kw)


def _tie_scenario(seed, costs):
    """Identical requests arriving in bursts on several identical instances: steps of different instances
    end at the same instant, so the order of events at one time (the heap's sequence numbers, dirty
    instances poked by pool and index) decides routing and queue order."""
    rng = random.Random(seed)
    n = rng.randint(30, 120)
    arrival = np.repeat(np.arange(n // 6 + 1) * rng.choice([0.01, 0.2, 1.0]), 6)[:n]
    prompt = rng.choice([16, 200, 1000])
    out = [rng.choice([1, 2, 8, 8, 30]) for _ in range(n)]
    w = Workload(arrival, [prompt] * n, out, source="bursts")
    cost = costs[rng.choice(["ds1", "ds_link", "lm", "ds_pp2"])]
    routing = rng.choice(["least_loaded", "round_robin"])
    if rng.random() < 0.5:
        pools = [Pool(cost, rng.choice([2, 3]), phase="prefill", max_batch_size=rng.choice([None, 2]), routing=routing),
                 Pool(_tight(cost, rng) if rng.random() < 0.5 else cost, rng.choice([2, 3]), phase="decode",
                      max_batch_size=rng.choice([None, 4]), routing=routing)]
    else:
        pools = [Pool(cost, rng.choice([2, 3]), token_budget=rng.choice([None, 256]),
                      max_batch_size=rng.choice([None, 4]), routing=routing)]
    kw = {"concurrency": rng.choice([4, 9])} if rng.random() < 0.3 else {}
    return w, pools, kw


@pytest.mark.parametrize("seed", range(40))
def test_simultaneous_events(monkeypatch, costs, seed):
    w, pools, kw = _tie_scenario(seed, costs)
    _both(monkeypatch, w, pools, **kw)


def test_scenarios_cover_the_rules(monkeypatch, costs):
    """The random scenarios reach what they are meant to: rejections, stopped runs, pipelines, transfers."""
    seen = set()
    for seed in range(160):
        w, pools, kw = _scenario(seed, costs)
        r = _run(monkeypatch, "native", w, pools, **kw)
        seen.add(tuple(p.phase for p in pools))
        seen.add(("pp", max(p.cost.pipeline_stages for p in pools)))
        if r.rejected.any():
            seen.add("rejected")
        if not r.complete:
            seen.add("stopped")
        if "concurrency" in kw:
            seen.add("closed")
    assert {("both",), ("prefill", "decode"), ("prefill",), ("decode",), ("pp", 1), ("pp", 2), ("pp", 4),
            "rejected", "stopped", "closed"} <= seen


# -- larger runs of each cost model --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ds1", "ds_pp2", "lm", "lm_pp2"])
def test_aggregated_under_load(monkeypatch, costs, name):
    w = poisson_workload(6.0, 600, input_tokens=U(128, 4096), output_tokens=U(2, 300), seed=3)
    r = _both(monkeypatch, w, [Pool(costs[name], 2, token_budget=1024)])
    assert r.steps[0][0] > 1000


@pytest.mark.parametrize("prefill,decode", [("ds_link", "ds1"), ("lm", "lm"), ("lm_pp2", "ds_pp2")])
def test_disaggregated_with_transfers(monkeypatch, costs, prefill, decode):
    w = poisson_workload(4.0, 500, input_tokens=U(64, 3000), output_tokens=U(1, 200), seed=5)
    _both(monkeypatch, w, [Pool(costs[prefill], 2, phase="prefill"),
                           Pool(_tight(costs[decode], random.Random(1)), 2, phase="decode", routing="round_robin")])


@pytest.mark.parametrize("rule", ["percentile", "per_request"])
def test_goodput_search_same_probes(monkeypatch, costs, rule):
    w = poisson_workload(2.0, 300, input_tokens=U(128, 2048), output_tokens=U(2, 200), seed=7)
    slo = SLO(400.0, 60.0, rule=rule)
    pools = [Pool(costs["ds1"], 2, token_budget=512)]
    found = []
    for core in ("python", "native"):
        monkeypatch.setenv("MOEPLAN_SIM_CORE", core)
        found.append(goodput(w, pools, slo, stop_early=True))
    py, c = found
    assert len(py.probes) == len(c.probes) > 3
    assert any(not p.complete for p in py.probes)  # some probes stopped at a certain miss
    for a, b in zip(py.probes, c.probes):
        np.testing.assert_array_equal(np.array([a.rate_req_per_s, a.attainment, a.ttft_ms_percentile, a.tpot_ms_percentile]),
                                      np.array([b.rate_req_per_s, b.attainment, b.ttft_ms_percentile, b.tpot_ms_percentile]))
        assert (a.met, a.complete) == (b.met, b.complete)
    assert (py.rate_req_per_s, py.upper_req_per_s) == (c.rate_req_per_s, c.upper_req_per_s)


# -- choosing the core ----------------------------------------------------------------------------------
def test_env_var_checked(monkeypatch, costs):
    w = poisson_workload(2.0, 10, input_tokens=100, output_tokens=5, seed=0)
    monkeypatch.setenv("MOEPLAN_SIM_CORE", "fortran")
    with pytest.raises(InputError, match="MOEPLAN_SIM_CORE"):
        simulate(w, Pool(costs["ds1"]))


def test_native_refuses_what_it_cannot_run(monkeypatch, costs):
    """Step logs and progress callbacks stay in Python: ``native`` says so, ``auto`` falls back."""
    w = poisson_workload(2.0, 10, input_tokens=100, output_tokens=5, seed=0)
    monkeypatch.setenv("MOEPLAN_SIM_CORE", "native")
    with pytest.raises(InputError, match="Python loop"):
        simulate(w, Pool(costs["ds1"]), record_steps=True)
    monkeypatch.setenv("MOEPLAN_SIM_CORE", "auto")
    assert simulate(w, Pool(costs["ds1"]), record_steps=True).steps_log is not None


def test_simulator_core_names_the_core(monkeypatch):
    monkeypatch.setenv("MOEPLAN_SIM_CORE", "python")
    assert simulator_core() == "python"
    for core in ("auto", "native"):
        monkeypatch.setenv("MOEPLAN_SIM_CORE", core)
        assert simulator_core() == "native"
