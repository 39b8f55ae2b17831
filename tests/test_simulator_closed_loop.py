"""Closed-loop load (``simulate(..., concurrency=N)``): closed forms on a fixed-step instance, Little's
law, one client = requests served one after another, the clients' arrival times, the same times as
an open-loop replay of those arrivals, the steady-state window, and bad arguments refused."""

import math

import numpy as np
import pytest

from planner.errors import InputError
from planner.inputs import SLO, Workload, builtin_trace
from planner.perf import CostModel, Pool, distserve_cost, simulate


class _FixedStep(CostModel):
    """Every step takes ``step_s``, whatever it holds: the simulator's schedule alone sets the times."""

    name = "fixed-step"
    num_gpus = 1
    pipeline_stages = 1

    def __init__(self, step_s: float, max_batch_size: int, kv_capacity_tokens: int = 10**9):
        self.step_s = step_s
        self.max_batch_size = max_batch_size
        self.kv_capacity_tokens = kv_capacity_tokens

    def step_time_s(self, num_prefills, prefill_tokens, prefill_token_squares, decode_batch, decode_context_tokens):
        return self.step_s


def _fixed(n: int, prompt: int, output: int) -> Workload:
    return Workload(np.zeros(n), np.full(n, prompt), np.full(n, output), source="fixed")


def _trace(n: int) -> Workload:
    return builtin_trace("azure-2023-conv").head(n)


TAU = 0.01  # s per step
OUT = 11  # tokens per request: a decode-only request takes OUT - 1 steps, an aggregated one OUT steps


@pytest.mark.parametrize("clients, batch, think, per_client_s", [
    (4, 8, 0.0, (OUT - 1) * TAU),  # all clients fit one batch: each request takes OUT - 1 steps
    (4, 8, 0.05, (OUT - 1) * TAU + 0.05),  # plus the think time (the idle instance starts at once)
    (16, 8, 0.0, 2 * (OUT - 1) * TAU),  # two cohorts of 8 take turns: each request waits one service
])
def test_decode_only_closed_form(clients, batch, think, per_client_s):
    """Decode-only pool, fixed step time: every client completes one request per ``per_client_s``,
    so throughput = concurrency / (latency + think), exactly."""
    res = simulate(_fixed(20 * clients, 100, OUT), Pool(_FixedStep(TAU, batch), phase="decode"),
                   concurrency=clients, think_time_s=think)
    s = res.steady_state()
    assert s["requests_per_s"] == pytest.approx(clients / per_client_s, rel=1e-9)
    assert s["output_tokens_per_s"] == pytest.approx(clients * OUT / per_client_s, rel=1e-9)
    assert s["e2e_ms_mean"] == pytest.approx(1e3 * (per_client_s - think), rel=1e-9)
    assert s["requests"] == 20 * clients - 2 * clients


def test_aggregated_closed_form():
    """An aggregated instance whose budget holds every client's prompt: one prefill step (first token
    at TAU) then OUT - 1 decode steps, so each request takes OUT steps and TTFT is one step."""
    clients = 6
    pool = Pool(_FixedStep(TAU, 64), token_budget=clients * 100)
    s = simulate(_fixed(30 * clients, 100, OUT), pool, concurrency=clients).steady_state()
    assert s["requests_per_s"] == pytest.approx(clients / (OUT * TAU), rel=1e-9)
    assert s["ttft_ms_p50"] == pytest.approx(1e3 * TAU, rel=1e-9)
    assert s["tpot_ms_p99"] == pytest.approx(1e3 * TAU, rel=1e-9)


@pytest.mark.parametrize("think", [0.0, 0.5])
def test_littles_law(think):
    """Over the steady window: requests/s x (mean latency + think time) = the number of clients."""
    clients = 12
    pools = [Pool(distserve_cost("opt-13b", tp=2), phase="prefill"), Pool(distserve_cost("opt-13b", tp=1), phase="decode")]
    s = simulate(_trace(1500), pools, concurrency=clients, think_time_s=think).steady_state()
    assert s["requests_per_s"] * (s["e2e_ms_mean"] / 1e3 + think) == pytest.approx(clients, rel=0.03)


@pytest.mark.parametrize("think", [0.0, 0.25])
def test_clients_send_as_requests_end(think):
    """The first N requests at 0; request N + k when the k-th request has ended, plus the think time;
    never more than N requests in flight."""
    clients, w = 10, _trace(400)
    res = simulate(w, Pool(distserve_cost("opt-13b", tp=1), 2, token_budget=1024), concurrency=clients,
                   think_time_s=think)
    assert res.served_requests == len(w) and res.concurrency == clients
    ends = np.sort(res.finish_s)
    assert np.array_equal(res.arrival_s[:clients], np.zeros(clients))
    assert np.allclose(res.arrival_s[clients:], ends[:len(w) - clients] + think, rtol=0, atol=1e-12)
    assert np.array_equal(res.workload.input_tokens, w.input_tokens)
    for t in res.arrival_s[::7]:
        assert ((res.arrival_s <= t) & (res.finish_s > t)).sum() <= clients


def test_one_client_is_sequential_service():
    """Concurrency 1: each request is sent when the previous one ends and takes what it takes alone."""
    w = _trace(30)
    pool = Pool(distserve_cost("opt-13b", tp=1), token_budget=512)
    res = simulate(w, pool, concurrency=1)
    assert np.array_equal(res.arrival_s[1:], res.finish_s[:-1])
    for i in range(len(w)):
        alone = simulate(Workload([0.0], w.input_tokens[i:i + 1], w.output_tokens[i:i + 1]), pool)
        assert res.e2e_ms[i] == pytest.approx(alone.e2e_ms[0], rel=1e-12, abs=1e-9)
        assert res.ttft_ms[i] == pytest.approx(alone.ttft_ms[0], rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("name", ["aggregated", "disaggregated", "decode-only", "pipeline"])
def test_same_times_as_an_open_loop_replay(monkeypatch, name):
    """A closed-loop run is an open-loop run on the arrival times its clients made: same times, bit for
    bit (the replay coasts through pure decode steps, the closed loop may not: a request that ends
    sends one that joins the next step)."""
    monkeypatch.setenv("MOEPLAN_SIM_CORE", "python")  # the Python loop's coasting, not the C core
    tp1, tp2 = distserve_cost("opt-13b", tp=1), distserve_cost("opt-13b", tp=2)
    pools = {"aggregated": [Pool(tp1, token_budget=1024)],
             "disaggregated": [Pool(tp2, phase="prefill"), Pool(tp1, phase="decode", max_batch_size=24)],
             "decode-only": [Pool(tp1, phase="decode", max_batch_size=16)],
             "pipeline": [Pool(distserve_cost("opt-13b", tp=1, pp=2), token_budget=1024)]}[name]
    res = simulate(_trace(600), pools, concurrency=20)
    replay = simulate(res.workload, pools)
    assert np.array_equal(replay.first_token_s, res.first_token_s)
    assert np.array_equal(replay.finish_s, res.finish_s)
    assert replay.tokens_generated == res.tokens_generated


def test_a_rejected_request_frees_its_client():
    w = Workload(np.zeros(6), [100, 100, 10**6, 100, 100, 100], [5] * 6)
    res = simulate(w, Pool(_FixedStep(TAU, 8, kv_capacity_tokens=10_000), phase="decode"), concurrency=2)
    assert res.num_rejected == 1 and res.served_requests == 5
    # requests 0 and 1 end after 4 steps and send 2 and 3; 2 is refused on arrival and sends 4 at once
    assert np.allclose(res.arrival_s, [0, 0, 4 * TAU, 4 * TAU, 4 * TAU, 8 * TAU], rtol=0, atol=1e-12)


def test_whole_run_and_steady_figures():
    """Whole-run throughput (first arrival to last finish, as vllm bench serve) includes the warm-up
    and the drain; the steady window does not; both are in the result."""
    res = simulate(_trace(800), Pool(distserve_cost("opt-13b", tp=1), token_budget=1024), concurrency=16)
    whole, steady = res.stats(), res.steady_state()
    assert whole["requests_per_s"] == pytest.approx(res.served_requests / float(np.max(res.finish_s)))
    assert steady["requests"] == 800 - 2 * 16
    assert steady["start_s"] < steady["end_s"] <= float(np.max(res.finish_s))
    assert steady["output_tokens_per_s_per_gpu"] == steady["output_tokens_per_s"] / res.num_gpus
    assert "closed loop of 16 clients" in res.summary()


@pytest.mark.parametrize("bad", [0, -3, 2.0, 1.5, True, "8", math.inf])
def test_bad_concurrency_refused(bad):
    with pytest.raises(InputError) as err:
        simulate(_trace(10), Pool(distserve_cost("opt-13b", tp=1)), concurrency=bad)
    assert err.value.param == "concurrency"


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, True, "1"])
def test_bad_think_time_refused(bad):
    with pytest.raises(InputError) as err:
        simulate(_trace(10), Pool(distserve_cost("opt-13b", tp=1)), concurrency=2, think_time_s=bad)
    assert err.value.param == "think_time_s"


def test_think_time_and_stop_on_miss_need_the_right_loop():
    pool = Pool(distserve_cost("opt-13b", tp=1))
    with pytest.raises(InputError) as err:
        simulate(_trace(10), pool, think_time_s=1.0)
    assert err.value.param == "think_time_s"
    with pytest.raises(InputError) as err:
        simulate(_trace(10), pool, concurrency=2, stop_on_miss=SLO(1000.0, 100.0))
    assert err.value.param == "stop_on_miss"


def test_steady_state_needs_a_closed_loop_with_a_window():
    pool = Pool(distserve_cost("opt-13b", tp=1))
    with pytest.raises(InputError, match="closed-loop"):
        simulate(_trace(10), pool).steady_state()
    with pytest.raises(InputError, match="more than 10"):
        simulate(_trace(10), pool, concurrency=5).steady_state()


def test_numpy_numbers_accepted():
    pool = Pool(distserve_cost("opt-13b", tp=1))
    a = simulate(_trace(40), pool, concurrency=np.int64(4), think_time_s=np.float64(0.1))
    b = simulate(_trace(40), pool, concurrency=4, think_time_s=0.1)
    assert a.concurrency == 4 and np.array_equal(a.finish_s, b.finish_s)
