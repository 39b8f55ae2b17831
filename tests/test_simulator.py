"""The serving simulator against closed forms (M/D/1 queueing, DistServe's fitted forms) and invariants
that hold for any run: every request finishes once, tokens are conserved, times are ordered, TPOT
is never below one step, the KV cache never exceeds its capacity, goodput is monotone in the SLO; a run
stopped at a certain miss misses, and a goodput search that stops probes early takes the same path."""

import math

import numpy as np
import pytest

from planner.errors import InputError
from planner.inputs import SLO, Workload, builtin_trace, poisson_workload
from planner.perf import (
    Pool,
    distserve_cost,
    goodput,
    simulate,
)

LOADS = (0.3, 0.6, 0.8)
PROMPT = 512


def _mean_ttft_s(cost, rate, seeds, n):
    """Mean TTFT over several seeded Poisson runs of identical prompts, one request at a time."""
    total = count = 0.0
    for seed in seeds:
        w = poisson_workload(rate, n, input_tokens=PROMPT, output_tokens=1, seed=seed)
        res = simulate(w, Pool(cost, phase="prefill", max_batch_size=1))
        assert res.served_requests == n
        total += res.ttft_ms.sum() / 1e3
        count += n
    return total / count


# M/D/1 (DistServe §3, reference §1.2): Poisson arrivals at R, deterministic service D, FCFS, no batching.
# Runs: 4 seeds x 50,000 requests at rho = 0.8 (the mean's standard error there is about 1 %).
@pytest.mark.parametrize("rho", LOADS)
def test_md1_single_gpu(rho):
    cost = distserve_cost("opt-13b", tp=1)
    D = cost.prefill_time_s([PROMPT])
    R = rho / D
    expected = D + R * D * D / (2 * (1 - R * D))
    seeds = range(4) if rho >= 0.8 else range(2)
    assert _mean_ttft_s(cost, R, seeds, 50_000) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("rho", LOADS)
def test_md1_intra_op(rho):
    """A K-times faster instance (TP2 with DistServe's coefficients: K = D_tp1 / D_tp2 = 1.43):
    D/K + R D^2 / (2K (K - R D)), with rho = R D / K."""
    D = distserve_cost("opt-13b", tp=1).prefill_time_s([PROMPT])
    fast = distserve_cost("opt-13b", tp=2)
    K = D / fast.prefill_time_s([PROMPT])
    assert 1 < K < 2
    R = rho * K / D
    expected = D / K + R * D * D / (2 * K * (K - R * D))
    seeds = range(4) if rho >= 0.8 else range(2)
    assert _mean_ttft_s(fast, R, seeds, 50_000) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("overhead_ms", [0.0, 1.0])
def test_md1_inter_op(overhead_ms):
    """Two pipeline stages: D_s + R D_m^2 / (2 (1 - R D_m)), D_s the latency, D_m the stage time."""
    cost = distserve_cost("opt-13b", tp=1, pp=2, pp_prefill_overhead_ms=overhead_ms)
    Ds = cost.prefill_time_s([PROMPT])
    Dm = Ds / 2
    base = distserve_cost("opt-13b", tp=1).prefill_time_s([PROMPT])
    assert Ds == pytest.approx(base + 2 * 2 * overhead_ms / 1e3)  # pp x (D/pp + 1 ms x pp)
    R = 0.7 / Dm
    expected = Ds + R * Dm * Dm / (2 * (1 - R * Dm))
    assert _mean_ttft_s(cost, R, range(2), 50_000) == pytest.approx(expected, rel=0.05)


# -- DistServe's fitted forms on single steps ------------------------------------------------------------
def test_distserve_forms_on_single_steps():
    c = distserve_cost("opt-13b", tp=1)
    a, b, q = c.prefill_ms
    lens = [100, 700, 1500]
    assert c.prefill_time_s(lens) * 1e3 == pytest.approx(a + b * sum(lens) + q * sum(x * x for x in lens))
    for bs, table in [(10, c.decode_small_batch_ms), (94, c.decode_small_batch_ms), (95, c.decode_large_batch_ms),
                      (300, c.decode_large_batch_ms)]:
        ctx = [400 + i for i in range(bs)]
        a, b, q = table
        assert c.decode_time_s(ctx) * 1e3 == pytest.approx(a + b * sum(ctx) + q * bs)
    # a prompt in chunks pays the same quadratic work: squares telescope to l^2
    chunks = [(0, 300), (300, 300), (600, 200)]
    squares = sum((p + k) ** 2 - p ** 2 for p, k in chunks)
    assert squares == 800 ** 2
    # mixed step: the larger fixed cost once, every token's work added
    a_p, b_p, q_p = c.prefill_ms
    a_d, b_d, q_d = c.decode_small_batch_ms
    mixed = c.step_time_s(1, 256, 256.0 ** 2, 8, 8 * 500) * 1e3
    assert mixed == pytest.approx(max(a_p, a_d) + b_p * 256 + q_p * 256 ** 2 + b_d * 4000 + q_d * 8)
    # pipeline: each of pp stages takes T / pp (+ 1 ms x pp on prefill)
    c2 = distserve_cost("opt-13b", tp=1, pp=2)
    assert c2.decode_time_s([500] * 4) == pytest.approx(c.decode_time_s([500] * 4))
    assert c2.prefill_time_s([500]) == pytest.approx(c.prefill_time_s([500]) + 2 * 2e-3)


def test_distserve_data_and_errors():
    assert distserve_cost("facebook/opt-66b", tp=4).kv_capacity_tokens == 78496
    with pytest.raises(InputError) as err:
        distserve_cost("opt-66b", tp=1)
    assert err.value.param == "tp"
    with pytest.raises(InputError) as err:
        distserve_cost("opt-13b", tp=1, pp=3)
    assert err.value.param == "pp" and "tp1pp2" in str(err.value)
    with pytest.raises(InputError) as err:
        distserve_cost("llama", tp=1)
    assert err.value.param == "model"
    c = distserve_cost("opt-13b", tp=1, kv_link_bytes_per_s=100e9, kv_transfer_latency_s=1e-3)
    assert c.kv_transfer_time_s(1000) == pytest.approx(1e-3 + 1000 * 819200 / 100e9)


# -- invariants -----------------------------------------------------------------------------------------------
CONV = builtin_trace("azure-2023-conv").head(3000)


def _deployments():
    tp1, tp2 = distserve_cost("opt-13b", tp=1), distserve_cost("opt-13b", tp=2)
    pp2 = distserve_cost("opt-13b", tp=1, pp=2)
    link = distserve_cost("opt-13b", tp=2, kv_link_bytes_per_s=25e9)
    return {
        "aggregated": [Pool(tp1, 3, token_budget=1024)],
        "aggregated-whole-prompts": [Pool(tp1, 3, token_budget=4096, chunked_prefill=False, max_batch_size=48)],
        "aggregated-pp2": [Pool(pp2, 2, token_budget=1024)],
        "disaggregated": [Pool(tp2, 1, phase="prefill"), Pool(tp1, 2, phase="decode", max_batch_size=64)],
        "disaggregated-link-rr": [Pool(link, 2, phase="prefill", token_budget=8192, routing="round_robin"),
                                  Pool(pp2, 1, phase="decode")],
        "prefill-only": [Pool(tp2, 1, phase="prefill")],
        "decode-only": [Pool(tp1, 2, phase="decode")],
    }


def _step_lower_bound_s(cost, max_batch):
    """The shortest decode step any batch can take: one token per sequence, the least context."""
    return min(cost.step_time_s(0, 0, 0.0, bs, bs) for bs in range(1, max_batch + 1))


@pytest.mark.parametrize("name", list(_deployments()))
def test_invariants(name):
    pools = _deployments()[name]
    w = CONV.head(1500).with_rate(3.0)
    res = simulate(w, pools, record_steps=True)
    out = w.output_tokens
    assert res.num_rejected == 0
    assert np.isfinite(res.finish_s).all() and np.isfinite(res.first_token_s).all()
    assert (res.first_token_s >= w.arrival_s).all() and (res.finish_s >= res.first_token_s).all()
    prefill_only = pools[-1].phase == "prefill"
    assert res.tokens_generated == (len(w) if prefill_only else w.total_output_tokens)
    log = res.steps_log
    # one token per decoding sequence per step; the first token of each request comes from its prefill
    assert int(log.decode_batch.sum()) == (0 if prefill_only else int((out - 1).sum()))
    for i, pool in enumerate(pools):
        sel = log.pool == i
        assert (log.kv_used_tokens[sel] <= pool.cost.kv_capacity_tokens).all()
        assert max(res.kv_peak_tokens[i]) <= pool.cost.kv_capacity_tokens
        assert (log.end_s[sel] > log.start_s[sel]).all()
        budget = pool.resolved_token_budget
        if budget is not None and pool.resolved_chunked:  # decodes first, prompt chunks into what is left
            tokens = log.prefill_tokens[sel] + log.decode_batch[sel]
            assert (tokens[log.prefill_tokens[sel] > 0] <= budget).all()
        max_batch = pool.max_batch_size or pool.cost.max_batch_size
        assert (log.decode_batch[sel] <= max_batch).all()
    if not prefill_only:
        cost = pools[-1].cost
        bound_s = _step_lower_bound_s(cost, int(log.decode_batch.max()))
        tpot = res.tpot_ms[out > 1]
        assert (tpot >= bound_s * 1e3 * (1 - 1e-9)).all()
    else:
        assert np.isnan(res.tpot_ms).all() and (res.finish_s == res.first_token_s).all()
    if pools[0].phase == "decode":
        assert (res.ttft_ms == 0).all()


def test_same_inputs_same_result():
    pools = _deployments()["disaggregated-link-rr"]
    a, b = simulate(CONV, pools), simulate(CONV, pools)
    assert a.finish_s.tolist() == b.finish_s.tolist() and a.first_token_s.tolist() == b.first_token_s.tolist()


def test_round_robin_cycles_and_least_loaded_spreads():
    tp1 = distserve_cost("opt-13b", tp=1)
    w = poisson_workload(4.0, 300, input_tokens=256, output_tokens=16, seed=0)
    rr = simulate(w, Pool(tp1, 3, routing="round_robin"))
    assert rr.prefill_instance.tolist() == [i % 3 for i in range(300)]
    ll = simulate(w, Pool(tp1, 3))
    assert set(np.bincount(ll.prefill_instance).tolist()) != {300}


def test_requests_larger_than_the_kv_are_rejected():
    w = builtin_trace("mooncake-conversation").head(400).with_rate(0.5)
    tp1 = distserve_cost("opt-13b", tp=1)  # 66,144 KV tokens; some Mooncake prompts are longer
    res = simulate(w, Pool(tp1, 2))
    too_big = (w.input_tokens + w.output_tokens) > tp1.kv_capacity_tokens
    assert too_big.any()
    assert res.rejected.tolist() == too_big.tolist()
    assert np.isnan(res.ttft_ms[too_big]).all()
    assert res.attainment(SLO(math.inf, math.inf)) == pytest.approx(1 - too_big.mean())


def test_kv_transfer_delays_decode_not_first_token():
    w = poisson_workload(1.0, 200, input_tokens=1000, output_tokens=20, seed=1)
    free = [Pool(distserve_cost("opt-13b", tp=2), phase="prefill"), Pool(distserve_cost("opt-13b", tp=1), phase="decode")]
    slow = [Pool(distserve_cost("opt-13b", tp=2, kv_link_bytes_per_s=1e9), phase="prefill"), free[1]]
    a, b = simulate(w, free), simulate(w, slow)
    assert a.ttft_ms.tolist() == b.ttft_ms.tolist()
    transfer_s = 1000 * 819200 / 1e9
    assert (b.finish_s - a.finish_s >= transfer_s - 1e-9).all()


def test_slo_rules():
    w = CONV.with_rate(3.0)
    res = simulate(w, _deployments()["aggregated"])
    slo = SLO(ttft_ms=res.percentile("ttft_ms", 50), tpot_ms=res.percentile("tpot_ms", 50))
    manual = np.mean([(t <= slo.ttft_ms) and (np.isnan(p) or p <= slo.tpot_ms) for t, p in zip(res.ttft_ms, res.tpot_ms)])
    assert res.attainment(slo) == pytest.approx(manual)
    assert res.attainment(slo) <= 0.5 + 1e-9  # both limits at the medians: at most half attain both
    loose = SLO(res.percentile("ttft_ms", 90) + 1e-6, res.percentile("tpot_ms", 90) + 1e-6, rule="percentile")
    assert res.meets(loose) and not res.meets(SLO(loose.ttft_ms / 2, loose.tpot_ms, rule="percentile"))
    assert "attainment" in res.summary(slo)


def test_goodput_is_monotone_in_the_slo():
    w = builtin_trace("azure-2023-conv").head(400)
    pools = [Pool(distserve_cost("opt-13b", tp=2), phase="prefill"), Pool(distserve_cost("opt-13b", tp=1), phase="decode")]
    rates = []
    for scale in (0.5, 1.0, 2.0, 4.0):
        g = goodput(w, pools, SLO(200 * scale, 100 * scale), rel_tol=0.05)
        assert g.probes and all(p.met for p in g.probes if p.rate_req_per_s <= g.rate_req_per_s)
        assert g.upper_req_per_s > g.rate_req_per_s
        rates.append(g.rate_req_per_s)
    assert rates == sorted(rates) and rates[-1] > rates[0] > 0
    assert g.per_gpu == pytest.approx(g.rate_req_per_s / 3)


def test_goodput_poisson_and_impossible_slo():
    w = builtin_trace("azure-2023-conv").head(300)
    pools = Pool(distserve_cost("opt-13b", tp=1))
    g = goodput(w, pools, SLO(1000, 100), arrivals="poisson")
    assert g.rate_req_per_s > 0 and g.arrivals == "poisson"
    never = goodput(w, pools, SLO(1.0, 100), max_probes=10)  # 1 ms TTFT: below one prefill step
    assert never.rate_req_per_s == 0.0 and not any(p.met for p in never.probes)
    seen = []
    goodput(w, pools, SLO(200, 100), progress=seen.append, max_probes=5)
    assert len(seen) == 5


def test_progress_and_bad_arguments():
    calls = []
    w = poisson_workload(2.0, 250, input_tokens=64, output_tokens=4, seed=0)
    simulate(w, Pool(distserve_cost("opt-13b", tp=1)), progress=lambda d, n: calls.append((d, n)), progress_every=100)
    assert calls == [(100, 250), (200, 250), (250, 250)]
    tp1 = distserve_cost("opt-13b", tp=1)
    for bad, param in [([Pool(tp1, phase="decode"), Pool(tp1, phase="prefill")], "pools"), ([], "pools")]:
        with pytest.raises(InputError) as err:
            simulate(w, bad)
        assert err.value.param == param
    for kwargs, param in [({"instances": 0}, "instances"), ({"phase": "mixed"}, "phase"),
                          ({"routing": "random"}, "routing"), ({"token_budget": 0}, "token_budget")]:
        with pytest.raises(InputError) as err:
            Pool(tp1, **kwargs)
        assert err.value.param == param
    with pytest.raises(InputError) as err:
        goodput(w, Pool(tp1), SLO(1, 1), arrivals="uniform")
    assert err.value.param == "arrivals"


def test_one_token_outputs_have_no_tpot():
    w = Workload([0.0, 0.1, 0.2], [10, 20, 30], [1, 5, 1])
    res = simulate(w, Pool(distserve_cost("opt-13b", tp=1)))
    assert np.isnan(res.tpot_ms[[0, 2]]).all() and res.tpot_ms[1] > 0
    assert res.tokens_generated == 7


# stop_on_miss: a run stops only when it certainly misses the SLO; a run that meets it is the same as without
WATCHED_SLOS = [SLO(400, 100, rule="percentile"), SLO(800, 60, rule="per_request"), SLO(300, math.inf, rule="percentile"),
                SLO(math.inf, 80, rule="percentile"), SLO(250, 150, 0.5, rule="per_request")]


@pytest.mark.parametrize("name", list(_deployments()))
def test_stop_on_miss_stops_only_runs_that_miss(name):
    pools = _deployments()[name]
    w = CONV.head(250)
    stopped = 0
    full_runs = {rate: simulate(w.with_rate(rate), pools) for rate in (1.0, 4.0, 12.0)}
    for slo in WATCHED_SLOS:
        for rate, full in full_runs.items():
            part = simulate(w.with_rate(rate), pools, stop_on_miss=slo)
            if part.complete:
                assert np.array_equal(part.first_token_s, full.first_token_s, equal_nan=True)
                assert np.array_equal(part.finish_s, full.finish_s, equal_nan=True)
                assert part.meets(slo) == full.meets(slo)
            else:
                stopped += 1
                assert not full.meets(slo) and not part.meets(slo)
                assert part.sim_end_s <= full.sim_end_s
    assert stopped > 0


@pytest.mark.parametrize("slo", WATCHED_SLOS[:2], ids=["percentile", "per_request"])
def test_goodput_stopping_early_takes_the_same_path(slo):
    w = CONV.head(400)
    for pools in (_deployments()["disaggregated"], _deployments()["aggregated-pp2"]):
        full = goodput(w, pools, slo, rel_tol=0.03)
        fast = goodput(w, pools, slo, rel_tol=0.03, stop_early=True)
        assert [(p.rate_req_per_s, p.met) for p in fast.probes] == [(p.rate_req_per_s, p.met) for p in full.probes]
        assert (fast.rate_req_per_s, fast.upper_req_per_s) == (full.rate_req_per_s, full.upper_req_per_s)
        for a, b in zip(fast.probes, full.probes):
            assert a == b or (not a.complete and not b.met)
        assert any(not p.complete for p in fast.probes)


def test_goodput_growth_cap_and_bracket():
    w = CONV.head(400)
    pools = _deployments()["disaggregated"]
    slo = SLO(400, 100)
    full = goodput(w, pools, slo, rel_tol=0.02)
    # a coarse search continued from its bracket takes the same path as the fine search
    coarse = goodput(w, pools, slo, rel_tol=0.2)
    rest = goodput(w, pools, slo, rel_tol=0.02, bracket_req_per_s=(coarse.rate_req_per_s, coarse.upper_req_per_s))
    assert [p.rate_req_per_s for p in coarse.probes + rest.probes] == [p.rate_req_per_s for p in full.probes]
    assert rest.rate_req_per_s == full.rate_req_per_s
    # a small first step from a good guess: a tight bracket, fewer probes, an answer within the tolerance
    near = goodput(w, pools, slo, rel_tol=0.02, rate_req_per_s=full.rate_req_per_s * 0.9, growth=1.15)
    assert near.upper_req_per_s - near.rate_req_per_s <= 0.02 * near.upper_req_per_s
    assert [p.met for p in near.probes if p.rate_req_per_s == near.rate_req_per_s] == [True]
    assert len(near.probes) < len(full.probes)
    # the cap: a met probe at the cap ends the search there
    cap = full.rate_req_per_s / 2
    capped = goodput(w, pools, slo, rate_req_per_s=cap / 3, max_rate_req_per_s=cap)
    assert capped.rate_req_per_s == cap and math.isinf(capped.upper_req_per_s)
    assert max(p.rate_req_per_s for p in capped.probes) == cap
    for kwargs, param in [({"growth": 1.0}, "growth"), ({"growth": 3}, "growth"),
                          ({"bracket_req_per_s": (2.0, 1.0)}, "bracket_req_per_s"),
                          ({"max_rate_req_per_s": 0}, "max_rate_req_per_s")]:
        with pytest.raises(InputError) as err:
            goodput(w, pools, slo, **kwargs)
        assert err.value.param == param


@pytest.mark.parametrize("name", list(_deployments()))
def test_coasting_decode_steps_changes_nothing(monkeypatch, name):
    """Pure decode steps that end before the next event run outside the event queue (Engine.coast); a run
    that records its steps goes through the queue for every step: both give the same times, bit for bit."""
    monkeypatch.setenv("MOEPLAN_SIM_CORE", "python")  # the Python loop's coasting, not the C core
    pools = _deployments()[name]
    for rate in (0.3, 3.0):
        w = CONV.head(200).with_rate(rate)
        fast, slow = simulate(w, pools), simulate(w, pools, record_steps=True)
        assert np.array_equal(fast.first_token_s, slow.first_token_s, equal_nan=True)
        assert np.array_equal(fast.finish_s, slow.finish_s, equal_nan=True)
        assert (fast.steps, fast.busy_s, fast.kv_peak_tokens, fast.tokens_generated, fast.sim_end_s) == \
            (slow.steps, slow.busy_s, slow.kv_peak_tokens, slow.tokens_generated, slow.sim_end_s)


@pytest.mark.parametrize("phase", ["both", "decode", "disaggregated"])
def test_coasting_with_queued_requests_changes_nothing(monkeypatch, phase):
    """Decode steps also coast while the queues' heads wait for KV room or a batch slot, and stop after the step
    whose finished sequences let one in: the same times as through the queue, bit for bit, under overload
    and with a miss watch."""
    monkeypatch.setenv("MOEPLAN_SIM_CORE", "python")  # the Python loop's coasting, not the C core
    from dataclasses import replace

    tight = replace(distserve_cost("opt-13b", tp=1), kv_capacity_tokens=12_000)  # a few requests' worth
    pools = {"both": [Pool(tight, 2, token_budget=1024, max_batch_size=8)],
             "decode": [Pool(tight, 1, phase="decode", max_batch_size=6)],
             "disaggregated": [Pool(distserve_cost("opt-13b", tp=2), 1, phase="prefill"),
                               Pool(tight, 1, phase="decode", max_batch_size=6)]}[phase]
    w = poisson_workload(1.0, 200, input_tokens=1500, output_tokens=400, seed=3)
    for rate in (0.2, 2.0, 20.0):
        for watch in (None, SLO(ttft_ms=4000, tpot_ms=80)):
            fast = simulate(w.with_rate(rate), pools, stop_on_miss=watch)
            slow = simulate(w.with_rate(rate), pools, stop_on_miss=watch, record_steps=True)
            assert np.array_equal(fast.first_token_s, slow.first_token_s, equal_nan=True)
            assert np.array_equal(fast.finish_s, slow.finish_s, equal_nan=True)
            assert (fast.steps, fast.busy_s, fast.kv_peak_tokens, fast.tokens_generated, fast.sim_end_s,
                    fast.complete) == (slow.steps, slow.busy_s, slow.kv_peak_tokens, slow.tokens_generated,
                                       slow.sim_end_s, slow.complete)
