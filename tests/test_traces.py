"""Workloads and request traces: the readers on the shipped traces and on fixtures, every bad row named
by file:line and field, synthetic arrivals against their distributions, time compression."""

import math

import numpy as np
import pytest

from planner.errors import InputError
from planner.inputs import (
    SLO,
    LengthDist,
    Workload,
    builtin_trace,
    gamma_workload,
    list_builtin_traces,
    poisson_workload,
    read_trace,
    synthetic_workload,
    with_synthetic_arrivals,
)

FIXTURE = __import__("pathlib").Path(__file__).parent / "data" / "traces" / "burstgpt-sample.csv"

# request counts of the shipped traces (planner/data/traces/PROVENANCE.md, from the upstream releases)
COUNTS = {"azure-2023-code": 8819, "azure-2023-conv": 19366, "mooncake-conversation": 12031}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_shipped_traces_read_whole(name):
    w = builtin_trace(name)
    assert len(w) == COUNTS[name]
    assert w.arrival_s[0] == 0 and (np.diff(w.arrival_s) >= 0).all()
    assert w.input_tokens.min() >= 1 and w.output_tokens.min() >= 1
    assert w.provenance["license"] in ("CC-BY-4.0", "Apache-2.0")
    assert read_trace(f"builtin:{name}").input_tokens.tolist() == w.input_tokens.tolist()
    # about one hour each (Azure: 2023-11-16 18:15-19:14 UTC; Mooncake: 3,537 s)
    assert 3300 < w.duration_s < 3600


def test_list_builtin_traces():
    assert list_builtin_traces() == sorted(COUNTS)
    with pytest.raises(InputError, match="unknown built-in trace 'nope'"):
        read_trace("builtin:nope")


def test_azure_reader_times_and_columns(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:15:46.6805900,374,44\n"
                 "2023-11-16 18:15:50.9951690,396,109\n"
                 "2023-11-16 18:16:00.0000000,10,1\n", encoding="utf-8")
    w = read_trace(p)
    assert w.arrival_s.tolist() == pytest.approx([0.0, 4.314579, 13.319410], abs=1e-6)
    assert w.input_tokens.tolist() == [374, 396, 10] and w.output_tokens.tolist() == [44, 109, 1]
    assert w.provenance["format"] == "azure" and w.provenance["start"] == "2023-11-16 18:15:46.6805900"


def test_mooncake_reader_ignores_extra_keys(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"timestamp": 1000, "input_length": 5, "output_length": 2, "hash_ids": [1]}\n\n'
                 '{"timestamp": 1500, "input_length": 7, "output_length": 3}\n', encoding="utf-8")
    w = read_trace(p)
    assert w.arrival_s.tolist() == [0.0, 0.5] and w.input_tokens.tolist() == [5, 7]


def test_burstgpt_fixture_drops_failed_and_selects():
    w = read_trace(FIXTURE)
    assert w.provenance["format"] == "burstgpt" and w.provenance["dropped_failed_rows"] == "1"
    assert w.arrival_s.tolist() == [0.0, 40.0, 113.0, 115.0]
    assert w.input_tokens.tolist() == [472, 1087, 417, 52] and w.output_tokens.tolist() == [18, 230, 276, 7]
    chat = read_trace(FIXTURE, model="ChatGPT", log_type="Conversation log")
    assert chat.input_tokens.tolist() == [472, 1087] and chat.provenance["unselected_rows"] == "2"
    with pytest.raises(InputError, match="no requests after selecting"):
        read_trace(FIXTURE, model="Claude")


BAD = [
    ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,12,3\n2023-11-16 18:15:47.1,x,3\n",
     r"t\.csv:3: ContextTokens: expected a whole number of tokens, got 'x'"),
    ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,12,0\n",
     r"t\.csv:2: GeneratedTokens: 0 tokens"),
    ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,12,3\n2023-11-16 18:15:45.1,12,3\n",
     r"t\.csv:3: TIMESTAMP: .* before the previous request"),
    ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,12,3\n", r"t\.csv:2: TIMESTAMP: expected"),
    ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,12\n", r"t\.csv:2: expected 3 fields"),
    ("azure", "TIMESTAMP,Context,Generated\n2023-11-16 18:15:46.1,12,3\n", r"unrecognised trace"),
    ("burstgpt", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,-3,18,490,API log\n",
     r"t\.csv:2: Request tokens: -3 tokens"),
    ("burstgpt", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\nsoon,ChatGPT,3,18,490,API log\n",
     r"t\.csv:2: Timestamp: expected a non-negative time"),
    ("mooncake", '{"timestamp": 0, "input_length": 5, "output_length": 2}\n{"timestamp": 10, "input_length": 5}\n',
     r"t\.jsonl:2: missing field\(s\) output_length"),
    ("mooncake", '{"timestamp": 0, "input_length": 5, "output_length": 2}\n{"timestamp": 10, "input_length": 5.5, '
                 '"output_length": 1}\n', r"t\.jsonl:2: input_length: expected a whole number"),
    ("mooncake", '{"timestamp": 0, "input_length": 5, "output_length": 2}\n{"timestamp": 10,\n',
     r"t\.jsonl:2: malformed JSON"),
    ("mooncake", '{"timestamp": 9, "input_length": 5, "output_length": 2}\n{"timestamp": 1, "input_length": 5, '
                 '"output_length": 2}\n', r"t\.jsonl:2: timestamp: .* before the previous request"),
]


@pytest.mark.parametrize("fmt, text, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_rows_are_named(tmp_path, fmt, text, message):
    p = tmp_path / ("t.jsonl" if fmt == "mooncake" else "t.csv")
    p.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message) as err:
        read_trace(p)
    assert err.value.param == "path"


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_trace(tmp_path / "none.csv")
    (tmp_path / "e.csv").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="empty file"):
        read_trace(tmp_path / "e.csv")
    with pytest.raises(InputError) as err:
        read_trace(FIXTURE, fmt="csv")
    assert err.value.param == "fmt"


def test_workload_checks_name_the_request():
    with pytest.raises(InputError, match="request 1: arrival") as err:
        Workload([1.0, 0.5], [1, 1], [1, 1])
    assert err.value.param == "arrival_s"
    with pytest.raises(InputError, match="request 2: 0 tokens") as err:
        Workload([0, 1, 2], [1, 1, 0], [1, 1, 1])
    assert err.value.param == "input_tokens"
    with pytest.raises(InputError, match="one entry per request"):
        Workload([0, 1], [1], [1, 1])
    with pytest.raises(InputError, match="whole number"):
        Workload([0], [1.5], [1])
    w = Workload([0, 1], [3, 4], [5, 6])
    with pytest.raises(ValueError):
        w.input_tokens[0] = 9  # read-only


def test_time_compression_keeps_the_pattern():
    w = builtin_trace("azure-2023-code")
    fast = w.with_rate(10 * w.rate_req_per_s)
    assert fast.rate_req_per_s == pytest.approx(10 * w.rate_req_per_s)
    assert fast.duration_s == pytest.approx(w.duration_s / 10)
    assert fast.stats().interarrival_cv == pytest.approx(w.stats().interarrival_cv)
    assert fast.input_tokens is w.input_tokens or fast.input_tokens.tolist() == w.input_tokens.tolist()
    assert fast.provenance["license"] == "CC-BY-4.0" and "rescaled_to_rate_req_per_s" in fast.provenance
    with pytest.raises(InputError) as err:
        w.with_rate(0)
    assert err.value.param == "rate_req_per_s"


def test_stats_percentiles_match_numpy():
    w = builtin_trace("azure-2023-conv")
    s = w.stats()
    assert s.input_tokens_p[90] == np.percentile(w.input_tokens, 90)
    assert s.output_tokens_mean == pytest.approx(w.output_tokens.mean())
    assert s.rate_req_per_s == pytest.approx((len(w) - 1) / w.duration_s)
    assert "p99" in w.summary()


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0])
def test_gamma_arrivals_have_the_rate_and_cv(cv):
    w = gamma_workload(4.0, 100_000, cv=cv, input_tokens=10, output_tokens=2, seed=7)
    gaps = np.diff(w.arrival_s)
    assert gaps.mean() == pytest.approx(0.25, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.03)


def test_poisson_counts_are_poisson():
    # counts per 1-s window of a Poisson process at rate 3 have mean = variance = 3
    w = poisson_workload(3.0, 60_000, input_tokens=1, output_tokens=1, seed=2)
    counts = np.bincount(w.arrival_s.astype(int))[:-1]
    assert counts.mean() == pytest.approx(3.0, rel=0.02) and counts.var() == pytest.approx(3.0, rel=0.05)


def test_generators_are_seeded_and_lengths_independent_of_arrivals():
    a = synthetic_workload(2.0, 500, input_tokens=LengthDist.uniform(10, 20), output_tokens=5, seed=11)
    b = synthetic_workload(2.0, 500, input_tokens=LengthDist.uniform(10, 20), output_tokens=5, seed=11)
    c = synthetic_workload(2.0, 500, input_tokens=LengthDist.lognormal(100, 2.0), output_tokens=9, seed=11)
    assert a.arrival_s.tolist() == b.arrival_s.tolist() == c.arrival_s.tolist()
    assert a.input_tokens.tolist() == b.input_tokens.tolist()
    assert 10 <= a.input_tokens.min() and a.input_tokens.max() <= 20
    assert synthetic_workload(2.0, 500, input_tokens=5, output_tokens=5, seed=12).arrival_s[0] != a.arrival_s[0]


def test_resampling_a_trace_keeps_pairs():
    trace = builtin_trace("azure-2023-conv")
    w = synthetic_workload(1.0, 2000, input_tokens=trace, seed=0)
    pairs = set(zip(trace.input_tokens.tolist(), trace.output_tokens.tolist()))
    assert set(zip(w.input_tokens.tolist(), w.output_tokens.tolist())) <= pairs
    with pytest.raises(InputError) as err:
        synthetic_workload(1.0, 10, input_tokens=trace, output_tokens=3)
    assert err.value.param == "output_tokens"


def test_lognormal_lengths_mean_and_cap():
    rng = np.random.default_rng(0)
    x = LengthDist.lognormal(487, 1.5, max_tokens=4096).sample(200_000, rng)
    assert x.max() <= 4096 and x.min() >= 1
    y = LengthDist.lognormal(210, 0.8).sample(200_000, rng)
    assert y.mean() == pytest.approx(210, rel=0.02) and y.std() / y.mean() == pytest.approx(0.8, rel=0.05)
    e = LengthDist.empirical([3, 5]).sample(1000, rng)
    assert set(e.tolist()) == {3, 5}


def test_with_synthetic_arrivals_keeps_requests():
    trace = builtin_trace("mooncake-conversation").head(1000)
    w = with_synthetic_arrivals(trace, seed=3)
    assert w.input_tokens.tolist() == trace.input_tokens.tolist()
    assert w.rate_req_per_s == pytest.approx(trace.rate_req_per_s, rel=0.1)
    assert w.stats().interarrival_cv == pytest.approx(1.0, abs=0.1)


def test_bad_generator_arguments_name_the_parameter():
    for kwargs, param in [({"rate_req_per_s": 0}, "rate_req_per_s"), ({"num_requests": 0}, "num_requests"),
                          ({"cv": -1}, "cv"), ({"seed": -1}, "seed"), ({"input_tokens": "x"}, "input_tokens")]:
        args = {"rate_req_per_s": 1.0, "num_requests": 5, "input_tokens": 3, "output_tokens": 2, **kwargs}
        with pytest.raises(InputError) as err:
            synthetic_workload(args.pop("rate_req_per_s"), args.pop("num_requests"), **args)
        assert err.value.param == param, kwargs


def test_slo_checks():
    assert SLO(200, 100).rule == "per_request"
    assert SLO(200, math.inf).tpot_ms == math.inf
    for kwargs, param in [({"ttft_ms": 0}, "ttft_ms"), ({"attainment_target": 1.5}, "attainment_target"),
                          ({"rule": "p90"}, "rule")]:
        args = {"ttft_ms": 200, "tpot_ms": 100, **kwargs}
        with pytest.raises(InputError) as err:
            SLO(**args)
        assert err.value.param == param
