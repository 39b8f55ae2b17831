"""moeplan's latency model as a simulator cost model: the tabulated adapter reproduces direct calls of
the latency model on and off its grid, and its KV capacity is the memory model's."""

import pytest

from planner.perf import Pool, latency_model_cost, memory_per_gpu, simulate
from planner.perf.latency import decode_step_time_s, prefill_time_s
from planner.inputs import poisson_workload

CASES = [("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1"), ("deepseek-v3", "h200", "tp1pp1dp8ep8"),
         ("mixtral-8x7b", "h100", "tp2pp2dp1ep1moetp2")]


@pytest.fixture(scope="module", params=CASES, ids=[c[2] + "-" + c[0] for c in CASES])
def case(request):
    model, gpu, layout = request.param
    return model, gpu, layout, latency_model_cost(model, gpu, layout, max_context_tokens=16384, max_batch_size=256)


# uniform batches: (prompts, prompt tokens) and (sequences, context tokens), grid points and between them
PREFILLS = [(1, 16), (1, 512), (1, 1000), (2, 3000), (4, 700), (5, 2500), (8, 512), (12, 100), (64, 128), (1, 12000)]
DECODES = [(1, 128), (3, 1000), (8, 4096), (20, 777), (100, 3000), (256, 2048), (40, 12000)]


def test_prefill_matches_the_latency_model(case):
    model, gpu, layout, cost = case
    for n, length in PREFILLS:
        direct = prefill_time_s(model, gpu, layout, n, length).total_s
        assert cost.prefill_time_s([length] * n) == pytest.approx(direct, rel=0.03), (n, length)


def test_decode_matches_the_latency_model(case):
    model, gpu, layout, cost = case
    for b, ctx in DECODES:
        direct = decode_step_time_s(model, gpu, layout, b, ctx).total_s
        assert cost.decode_time_s([ctx] * b) == pytest.approx(direct, rel=0.03), (b, ctx)


def test_unequal_prompts_pay_their_own_attention(case):
    *_, cost = case
    # same tokens, one long and one short prompt attend to more pairs than two equal ones
    assert cost.prefill_time_s([3000, 1000]) > cost.prefill_time_s([2000, 2000])


def test_mixed_step_costs_at_least_its_parts(case):
    *_, cost = case
    prefill = cost.step_time_s(2, 1024, 2 * 512.0 ** 2, 0, 0)
    decode = cost.step_time_s(0, 0, 0.0, 32, 32 * 2000)
    mixed = cost.step_time_s(2, 1024, 2 * 512.0 ** 2, 32, 32 * 2000)
    assert max(prefill, decode) <= mixed <= prefill + decode


def test_capacity_gpus_and_transfer(case):
    model, gpu, layout, cost = case
    mem = memory_per_gpu(model, gpu, layout)
    assert cost.kv_capacity_tokens == mem.kv_tokens_per_instance
    assert cost.num_gpus == cost.layout.num_gpus and cost.pipeline_stages == cost.layout.pp
    assert cost.kv_transfer_time_s(1000) == pytest.approx(1000 * mem.kv_bytes_per_token / cost.kv_link_bytes_per_s)


def test_simulates_with_the_adapter(case):
    *_, cost = case
    w = poisson_workload(5.0, 300, input_tokens=1024, output_tokens=64, seed=0)
    res = simulate(w, Pool(cost, token_budget=2048))
    assert res.served_requests == 300 and res.tokens_generated == w.total_output_tokens
    assert res.percentile("tpot_ms", 50) >= cost.decode_time_s([1025]) * 1e3 * (1 - 1e-9)


def test_fast_step_time_equals_the_plain_table_reads_bit_for_bit(case):
    """step_time_s inlines the tables' bilinear reads (looked-up segments for integer batch sizes); it must
    return exactly the floats of the plain composition, on and off the grid and beyond its last points."""
    import random

    *_, cost = case
    rng = random.Random(0)
    steps = [(0, 0, 0.0, 0, 0), (1, 16, 256.0, 0, 0), (0, 0, 0.0, 1, 17), (2, 1024, 2 * 512.0 ** 2, 32, 32 * 2000)]
    for _ in range(3000):
        n = rng.choice([0, 0, 1, 2, 3, 5, 8, 13, 64, 65, 100])
        b = rng.choice([0, 0, 1, 2, 7, 64, 255, 256, 257, 600])
        chunks = [rng.randint(1, 20000) for _ in range(n)]
        done = [rng.choice([0, rng.randint(0, 8000)]) for _ in range(n)]
        squares = float(sum((p + c) ** 2 - p * p for p, c in zip(done, chunks)))
        ctx = sum(rng.randint(1, 40000) for _ in range(b))
        steps.append((n, sum(chunks), squares, b, ctx))
    for step in steps:
        assert cost.step_time_s(*step) == cost.step_time_reference_s(*step), step


def test_decode_step_reader_equals_step_time_bit_for_bit(case):
    """decode_step_reader(b)(ctx), what the simulator's runs of decode steps call, is step_time_s(0, 0, 0, b, ctx)
    exactly, on and off the grid and beyond its last points (batch and context); the base class's is too."""
    import random

    from planner.perf import distserve_cost

    *_, cost = case
    rng = random.Random(1)
    for b in (1, 2, 3, 7, 64, 255, 256, 257, 600):
        read = cost.decode_step_reader(b)
        for ctx in [b, b * 16, b * 17] + [sum(rng.randint(1, 40000) for _ in range(b)) for _ in range(40)]:
            assert read(ctx) == cost.step_time_s(0, 0, 0, b, ctx), (b, ctx)
    other = distserve_cost("opt-13b", tp=1)
    assert other.decode_step_reader(5)(5000) == other.step_time_s(0, 0, 0, 5, 5000)


def test_decode_step_times_equals_step_time_bit_for_bit(case):
    """decode_step_times(b, contexts), what the simulator prices long runs of decode steps with, is
    step_time_s(0, 0, 0, b, ctx) for every context exactly, on and off the grid and beyond its last points."""
    import numpy as np

    *_, cost = case
    for b in (1, 3, 64, 255, 256, 257, 600):
        ctx = np.array([b, b * 16, b * 17, b * 5000, b * 40000] + list(range(b * 100, b * 100 + 37 * b, b)))
        got = cost.decode_step_times(b, ctx)
        assert got.tolist() == [cost.step_time_s(0, 0, 0, b, int(c)) for c in ctx], b


def test_long_decode_runs_simulate_the_same_as_through_the_queue(monkeypatch, case):
    """At a low rate an instance runs long stretches of decode steps with no sequence finishing (priced at once,
    Engine.coast): the same times, bit for bit, as a run that goes through the event queue for every step."""
    monkeypatch.setenv("MOEPLAN_SIM_CORE", "python")  # the Python loop's coasting, not the C core
    import numpy as np

    *_, cost = case
    w = poisson_workload(1.0, 60, input_tokens=600, output_tokens=300, seed=2)
    for pools in ([Pool(cost, 1, phase="decode", max_batch_size=16)], [Pool(cost, 1, token_budget=1024)]):
        for rate in (0.05, 0.5):
            fast = simulate(w.with_rate(rate), pools)
            slow = simulate(w.with_rate(rate), pools, record_steps=True)
            assert np.array_equal(fast.first_token_s, slow.first_token_s, equal_nan=True)
            assert np.array_equal(fast.finish_s, slow.finish_s, equal_nan=True)
            assert (fast.steps, fast.busy_s, fast.tokens_generated, fast.sim_end_s) == \
                (slow.steps, slow.busy_s, slow.tokens_generated, slow.sim_end_s)
