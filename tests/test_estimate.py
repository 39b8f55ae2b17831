"""`estimate` and `moeplan estimate`: the numbers are finite and follow their definitions, the
breakdowns close, batch and balancedness move them the right way, replica plans are checked,
and what does not fit is refused in one line with exit code 3."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from typer.testing import CliRunner

from planner import builtin_loads, plan_replicas
from planner.cli import app
from planner.errors import Infeasible, InputError
from planner.perf.calibration import calibrated_factors
from planner.perf.estimate import Estimate, estimate
from planner.perf.factors import DEFAULT_FACTORS
from planner.perf.latency import decode_step_time_s
from planner.plans.io import write_plan

DSV3_H200 = dict(dp=8, ep=8, isl=2048, osl=256)


@pytest.fixture(scope="module")
def dsv3() -> Estimate:
    return estimate("deepseek-v3", "h200", batch=16, **DSV3_H200)


@pytest.fixture(scope="module")
def olmoe_plan():
    return plan_replicas(builtin_loads("olmoe-arxiv"), "olmoe-1b-7b", num_gpus=8, redundant_slots=8)


def _with_balancedness(plan, replay: float, holdout: float | None = None):
    predicted = plan.replicas.predicted.model_copy(
        update={"replay_balancedness_mean": replay, "holdout_replay_balancedness_mean": holdout}
    )
    return plan.model_copy(update={"replicas": plan.replicas.model_copy(update={"predicted": predicted})})


def run(*args):
    return CliRunner().invoke(app, ["estimate", *(str(a) for a in args)])


def test_deepseek_h200_numbers_are_finite_positive_and_follow_their_definitions(dsv3):
    e = dsv3
    for name in ("ttft_ms", "tpot_ms", "e2e_latency_ms", "tokens_per_s_per_gpu", "tokens_per_s_per_user",
                 "memory_per_gpu_bytes", "kv_cache_needed_bytes"):  # fmt: skip
        value = getattr(e, name)
        assert math.isfinite(value) and value > 0, name
    assert (e.layout, e.num_gpus, e.requests_per_instance) == ("tp1pp1dp8ep8", 8, 128)
    assert e.decode_context_tokens == 2048 + 128
    assert e.ttft_ms == pytest.approx(e.prefill.total_s * 1e3, rel=1e-12)
    assert e.tpot_ms == pytest.approx(e.decode.total_s * 1e3, rel=1e-12)
    assert e.e2e_latency_ms == pytest.approx(e.ttft_ms + 255 * e.tpot_ms, rel=1e-12)
    assert e.tokens_per_s_per_gpu == pytest.approx(16 * 8 * 1000 / e.tpot_ms / 8, rel=1e-12)
    assert e.tokens_per_s_per_user == pytest.approx(1000 / e.tpot_ms, rel=1e-12)
    assert e.expert_slots_per_gpu == 32 and e.balancedness == 1.0
    assert e.total_params > e.active_params > 0
    assert e.factors_source == calibrated_factors("h200").source  # AIConfigurator's H200 kernel tables
    assert e.factor_sources["moe"].startswith("AIConfigurator trtllm")


def test_breakdowns_sum_to_their_totals(dsv3):
    e = dsv3
    for step in (e.prefill, e.decode):
        assert sum(step.components().values()) == pytest.approx(step.total_s, rel=1e-12)
        assert all(v >= 0 for v in step.components().values())
    m = e.memory
    weights = (m.attention_weights_bytes + m.dense_ffn_weights_bytes + m.shared_expert_weights_bytes
               + m.routed_expert_weights_bytes + m.router_and_norm_bytes + m.embedding_bytes)  # fmt: skip
    assert weights == pytest.approx(m.total_weights_bytes, rel=1e-12)
    fixed = m.total_weights_bytes + m.activation_bytes + m.runtime_overhead_bytes
    assert fixed + m.kv_cache_bytes == pytest.approx(m.usable_memory_bytes, rel=1e-12)
    assert e.memory_per_gpu_bytes == pytest.approx(fixed + e.kv_cache_needed_bytes, rel=1e-12)
    assert e.kv_tokens_needed_per_gpu == 16 * (2048 + 256)
    assert e.kv_cache_needed_bytes == pytest.approx(e.kv_tokens_needed_per_gpu * m.kv_bytes_per_token)
    assert e.memory_per_gpu_bytes <= m.usable_memory_bytes


def test_tpot_is_the_mean_decode_step():
    """The step at isl + osl/2 equals the mean of every decode step (attention is affine in the context)."""
    e = estimate("qwen3-235b-a22b", "h100", tp=8, ep=8, batch=8, isl=1000, osl=20, calibrated=False)
    steps = [decode_step_time_s("qwen3-235b-a22b", "h100", e.layout, 8, 1000 + j).total_s for j in range(1, 20)]
    assert e.tpot_ms == pytest.approx(1e3 * sum(steps) / len(steps), rel=1e-9)


def test_more_batch_raises_ttft_and_throughput_per_gpu():
    runs = [estimate("deepseek-v3", "h200", batch=b, **DSV3_H200) for b in (1, 4, 16, 64)]
    for small, large in zip(runs, runs[1:]):
        assert large.ttft_ms > small.ttft_ms
        assert large.tokens_per_s_per_gpu > small.tokens_per_s_per_gpu
        assert large.tpot_ms >= small.tpot_ms  # per-user speed falls as the batch grows
        assert large.memory_per_gpu_bytes > small.memory_per_gpu_bytes


def test_replica_plan_sets_slots_and_lower_balancedness_means_more_moe_time(olmoe_plan):
    args = dict(dp=8, ep=8, batch=32, isl=1024, osl=64, calibrated=False)
    plain = estimate("olmoe-1b-7b", "h100", **args)
    good = estimate("olmoe-1b-7b", "h100", replica_plan=olmoe_plan, **args)
    bad = estimate("olmoe-1b-7b", "h100", replica_plan=_with_balancedness(olmoe_plan, 0.6), **args)
    assert plain.expert_slots_per_gpu == 8 and good.expert_slots_per_gpu == 9  # 64 experts + 8 redundant
    assert good.balancedness == pytest.approx(olmoe_plan.replicas.predicted.replay_balancedness_mean)
    assert bad.balancedness == 0.6
    for phase in ("prefill", "decode"):
        a, b = getattr(good, phase), getattr(bad, phase)
        assert b.moe_expert_s > a.moe_expert_s and b.moe_dispatch_s > a.moe_dispatch_s
        assert b.total_s > a.total_s
        assert b.attention_core_s == a.attention_core_s
    assert bad.tokens_per_s_per_gpu < good.tokens_per_s_per_gpu
    assert good.memory.routed_expert_weights_bytes > plain.memory.routed_expert_weights_bytes
    assert any("replica plan" in a for a in good.assumptions)


def test_replica_plan_held_out_balancedness_wins(olmoe_plan):
    plan = _with_balancedness(olmoe_plan, 0.95, holdout=0.8)
    e = estimate("olmoe-1b-7b", "h100", dp=8, ep=8, batch=4, isl=256, osl=16, replica_plan=plan, calibrated=False)
    assert e.balancedness == 0.8
    assert any("held-out" in a for a in e.assumptions)


def test_replica_plan_for_another_model_or_ep_is_refused(olmoe_plan):
    with pytest.raises(InputError, match="olmoe-1b-7b.*qwen1.5-moe-a2.7b"):
        estimate("qwen1.5-moe-a2.7b", "h100", dp=8, ep=8, batch=1, isl=128, osl=8, replica_plan=olmoe_plan)
    with pytest.raises(InputError, match="8 GPUs.*ep=4"):
        estimate("olmoe-1b-7b", "h100", dp=4, ep=4, batch=1, isl=128, osl=8, replica_plan=olmoe_plan)
    with pytest.raises(InputError, match="Plan"):
        estimate("olmoe-1b-7b", "h100", dp=8, ep=8, batch=1, isl=128, osl=8, replica_plan={"replicas": {}})


@pytest.mark.parametrize(
    "layout, match",
    [
        (dict(tp=3), "tp=3 does not divide the 128 attention heads"),
        (dict(dp=8, ep=4), "ep x moe_tp"),
        (dict(tp=0), "tp must be an integer >= 1"),
        (dict(pp=62), "pp=62 exceeds the 61 layers"),
        (dict(tp=2, ep=1, moe_tp=2, dp=1), None),  # valid: expert-TP; must not raise
    ],
)
def test_bad_layouts_are_input_errors(layout, match):
    kwargs = dict(batch=1, isl=128, osl=8, calibrated=False)
    if match is None:
        estimate("mixtral-8x7b", "h100", **layout, **kwargs)
        return
    with pytest.raises(InputError, match=match):
        estimate("deepseek-v3", "h200", **layout, **kwargs)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(batch=0), "batch"),
        (dict(batch=1.5), "batch"),
        (dict(isl=0), "isl"),
        (dict(osl=1), "osl"),
        (dict(precision={"kv_cache": "mxfp4"}), "kv_cache"),
        (dict(precision={"experts": "fp7"}), "experts"),
        (dict(precision={"kv": "fp8"}), "precision"),
        (dict(memory_utilization=1.2), "memory_utilization"),
        (dict(calibrated="yes"), "calibrated"),
    ],
)
def test_bad_numbers_are_input_errors(bad, match):
    kwargs = dict(tp=2, batch=1, isl=128, osl=8) | bad
    with pytest.raises(InputError, match=match):
        estimate("mixtral-8x7b", "h100", **kwargs)


def test_kv_cache_that_does_not_fit_is_infeasible_with_the_largest_batch():
    args = dict(dp=16, ep=16, isl=2048, osl=256, calibrated=False)
    with pytest.raises(Infeasible, match=r"KV cache .* GB per GPU.* at most (\d+) requests per DP rank fit") as err:
        estimate("deepseek-v3", "h100", batch=64, **args)
    fit = int(str(err.value).rsplit("at most ", 1)[1].split()[0])
    assert 0 < fit < 64
    assert estimate("deepseek-v3", "h100", batch=fit, **args).memory_per_gpu_bytes > 0
    with pytest.raises(Infeasible):
        estimate("deepseek-v3", "h100", batch=fit + 1, **args)


def test_calibrated_factors_where_tables_exist():
    args = dict(tp=2, batch=4, isl=512, osl=32)
    cal = estimate("mixtral-8x7b", "h100", **args)
    raw = estimate("mixtral-8x7b", "h100", calibrated=False, **args)
    assert "h100" in cal.factors_source and cal.factors_source != DEFAULT_FACTORS.source
    assert raw.factors_source == DEFAULT_FACTORS.source
    assert cal.tpot_ms != raw.tpot_ms


def test_pipeline_layout_is_estimated_and_stated():
    e = estimate("deepseek-v3", "h200", tp=8, pp=2, batch=8, isl=1024, osl=64)
    assert e.num_gpus == 16 and e.prefill.pp_send_s > 0
    assert any(a.startswith("pp=2") for a in e.assumptions)


def test_table_has_units_and_the_breakdown(dsv3):
    text = dsv3.table()
    for needle in ("TTFT, ms", "TPOT, ms", "tokens/s/GPU", "tokens/s/user", "prefill_ms", "decode_step_ms",
                   "moe_expert", "GB", "routed-expert weights", "assumptions:", "factors:"):  # fmt: skip
        assert needle in text, needle


def test_to_dict_is_json_with_units_in_names(dsv3):
    data = json.loads(json.dumps(dsv3.to_dict()))
    units = ("_ms", "_bytes", "_tokens", "_s", "_per_s_per_gpu", "_per_s_per_user", "_params", "_per_gpu",
             "_per_dp_rank", "_per_instance", "_gpus")  # fmt: skip
    unitless = {"model", "gpu", "layout", "balancedness", "assumptions", "factors_source", "factor_sources",
                "memory_breakdown", "prefill_step", "decode_step", "precision", "gemm_modes"}  # fmt: skip
    for key in data:
        assert key in unitless or key.endswith(units), key
    assert data["ttft_ms"] == pytest.approx(dsv3.ttft_ms)
    assert data["memory_per_gpu_bytes"] == pytest.approx(dsv3.memory_per_gpu_bytes)
    assert data["prefill_step"]["total_s"] == pytest.approx(dsv3.prefill.total_s)


# ---- through the CLI --------------------------------------------------------------------------


def test_cli_weights_that_do_not_fit_exit_3_in_one_line():
    res = run("--model", "deepseek-v3", "--gpu", "h100", "--tp", 8, "--batch", 1, "--isl", 2048, "--osl", 256)
    assert res.exit_code == 3, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "GB" in lines[0] and "does not fit" in lines[0]
    assert res.stdout == ""


def test_cli_kv_that_does_not_fit_exits_3():
    res = run("-m", "deepseek-v3", "-g", "h100", "--dp", 16, "--batch", 64, "--isl", 2048, "--osl", 256)
    assert res.exit_code == 3
    assert len(res.stderr.strip().splitlines()) == 1 and "GB" in res.stderr and "KV cache" in res.stderr


def test_cli_json_parses_and_names_carry_units():
    res = run("-m", "mixtral-8x7b", "-g", "h100", "--tp", 2, "--batch", 16, "--isl", 2048, "--osl", 256, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    for key in ("ttft_ms", "tpot_ms", "e2e_latency_ms", "tokens_per_s_per_gpu", "tokens_per_s_per_user",
                "memory_per_gpu_bytes", "kv_tokens_needed_per_gpu", "isl_tokens", "osl_tokens"):  # fmt: skip
        assert data[key] > 0, key
    assert data["layout"] == "tp2pp1dp1ep2" and "h100" in data["factors_source"]
    assert not {"ttft", "tpot", "memory", "batch"} & set(data)


def test_cli_human_output_and_uncalibrated_flag():
    res = run("-m", "mixtral-8x7b", "-g", "h100", "--tp", 2, "--batch", 4, "--isl", 512, "--osl", 32, "--uncalibrated")
    assert res.exit_code == 0, res.output
    assert "TTFT, ms" in res.stdout and "uncalibrated efficiency factors by request" in res.stdout


def test_cli_replica_plan_file(tmp_path, olmoe_plan):
    path = write_plan(olmoe_plan, tmp_path / "plan.json")
    args = ("-m", "olmoe-1b-7b", "-g", "h100", "--batch", 8, "--isl", 512, "--osl", 32, "--replicas", path, "--json")
    ok = run("--dp", 8, *args)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["expert_slots_per_gpu"] == 9
    wrong = run("--dp", 4, *args)
    assert wrong.exit_code == 2 and "ep=4" in wrong.stderr
    missing = run("--dp", 8, *args[:-3], "--replicas", tmp_path / "nope.json")
    assert missing.exit_code == 2 and "not found" in missing.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("-m", "deepseek-v3", "-g", "h200", "--tp", 3, "--batch", 1, "--isl", 128, "--osl", 8),  # tp vs 128 heads
        ("-m", "deepseek-v3", "-g", "h200", "--dp", 8, "--ep", 4, "--batch", 1, "--isl", 128, "--osl", 8),
        ("-m", "no-such-model", "-g", "h200", "--batch", 1, "--isl", 128, "--osl", 8),
        ("-m", "mixtral-8x7b", "-g", "h100", "--tp", 2, "--batch", 1, "--isl", 128, "--osl", 1),
    ],
)
def test_cli_bad_input_exit_2(args):
    res = run(*args)
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("moeplan: error:") and len(res.stderr.strip().splitlines()) == 1


# ---- balancedness, your own factors, where factors come from ------------------------------------


def test_balancedness_loads_the_busiest_gpu():
    args = dict(dp=8, ep=8, batch=4, isl=2048, osl=64)
    even = estimate("deepseek-v3", "h200", **args)
    skewed = estimate("deepseek-v3", "h200", balancedness=0.5, **args)
    assert skewed.balancedness == 0.5 and skewed.prefill.moe_rows_busiest_gpu == 2 * even.prefill.moe_rows_busiest_gpu
    assert skewed.prefill.moe_expert_s > even.prefill.moe_expert_s
    assert skewed.prefill.attention_core_s == even.prefill.attention_core_s
    assert any("0.5000 as given" in a for a in skewed.assumptions)
    with pytest.raises(InputError, match="balancedness must be a number > 0 and <= 1.0"):
        estimate("deepseek-v3", "h200", balancedness=1.5, **args)


def test_given_factors_win_and_every_group_names_its_source():
    args = dict(tp=2, batch=4, isl=512, osl=32)
    mine = dataclasses.replace(DEFAULT_FACTORS, source="mine", sources=(("gemm", "my own GEMM table"),))
    e = estimate("mixtral-8x7b", "h100", factors=mine, **args)
    assert e.factors_source == "mine" and e.factor_sources["gemm"] == "my own GEMM table"
    assert e.factor_sources["moe"] == "my own GEMM table"  # the grouped GEMMs fall back to the dense ones
    assert e.factor_sources["attention"] == "mine"
    cal = estimate("mixtral-8x7b", "h100", **args)
    assert cal.factor_sources["moe"].startswith("AIConfigurator trtllm 1.3.0rc20 moe table")
    assert "where each efficiency factor comes from" in cal.table()
    assert json.loads(json.dumps(cal.to_dict()))["factor_sources"]["gemm"].startswith("Vidur h100")
    with pytest.raises(InputError, match="factors must be EfficiencyFactors"):
        estimate("mixtral-8x7b", "h100", factors="h100", **args)


def test_cli_profile_and_balancedness(tmp_path):
    """--profile fits your op timings on top of the shipped calibration; --balancedness skews the routing."""
    rows = ["device,model,op,num_tokens,tp,m,n,k,size_bytes,num_workers,devices_per_node,time_ms"]
    for m in (16, 64, 256, 1024, 4096):  # GEMMs at 40 % of peak: slower than the shipped fit
        rows.append(f"h100,mine,gemm,{m},1,{m},4096,4096,,,,{2 * m * 4096 * 4096 / (0.4 * 989.4e12) * 1e3 + 0.01}")
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    base = ("-m", "mixtral-8x7b", "-g", "h100", "--tp", 2, "--batch", 4, "--isl", 512, "--osl", 32, "--json")
    plain = run(*base)
    mine = run(*base, "--profile", tmp_path / "p.csv", "--balancedness", 0.8)
    assert plain.exit_code == 0 and mine.exit_code == 0, mine.output
    a, b = json.loads(plain.stdout), json.loads(mine.stdout)
    assert b["ttft_ms"] > a["ttft_ms"] and b["balancedness"] == 0.8
    assert "your profile" in b["factor_sources"]["gemm"] and b["factor_sources"]["moe"] == a["factor_sources"]["moe"]
    bad = run(*base, "--profile", tmp_path / "nope.csv")
    assert bad.exit_code == 2 and bad.stderr.startswith("moeplan: error: --profile:")
