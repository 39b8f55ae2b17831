"""Latency model: the op primitives follow their equations and are monotone, prefill attention is
quadratic in the prompt, decode attention linear in the KV read, the MoE block scales with 1/b,
the breakdown closes, and bad inputs are refused before modelling."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.errors import InputError
from planner.perf import ParallelLayout, memory_per_gpu
from planner.perf.factors import (
    DEFAULT_FACTORS,
    EfficiencyFactors,
    GemmFactors,
    LinkFactors,
    MemoryOpFactors,
)
from planner.perf.latency import StepTime, decode_step_time_s, prefill_time_s
from planner.perf.op_times import FP8_DISPATCH_BYTES, attention_time_s, collective_time_s, gemm_time_s, memory_op_time_s
from planner.profiles import get_gpu, get_model, list_models

H100 = get_gpu("h100")

# factors without fixed costs and with a flat GEMM utilisation: times are exact ratios of the work
NO_OVERHEAD = dataclasses.replace(
    DEFAULT_FACTORS,
    gemm=GemmFactors(peak_fraction=0.7, half_tokens=0.0, hbm_fraction=0.9, overhead_s=0.0),
    act=MemoryOpFactors(hbm_fraction=0.6, overhead_s=0.0),
    attention=dataclasses.replace(DEFAULT_FACTORS.attention, overhead_s=0.0),
    p2p_intra=LinkFactors(bandwidth_fraction=0.8, latency_s=0.0),
    source="test: no fixed costs",
)


# ---------------------------------------------------------------------------------------------
# op primitives


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 65536),
    n=st.integers(1, 65536),
    k=st.integers(1, 65536),
    half=st.floats(0.0, 2000.0),
    peak=st.floats(0.05, 1.0),
)
def test_gemm_time_is_monotone_in_tokens_and_flops(m, n, k, half, peak):
    f = dataclasses.replace(DEFAULT_FACTORS, gemm=dataclasses.replace(DEFAULT_FACTORS.gemm, half_tokens=half,
                                                                     peak_fraction=peak))  # fmt: skip
    t = gemm_time_s(m, n, k, H100, factors=f)
    assert t >= f.gemm.overhead_s
    assert gemm_time_s(m + 1, n, k, H100, factors=f) >= t  # more tokens never faster
    assert gemm_time_s(m, 2 * n, k, H100, factors=f) >= t  # more FLOPs never faster
    assert gemm_time_s(m, n, 2 * k, H100, factors=f) >= t
    # eq. (1) written out
    e = peak * m / (m + half)
    hbm = k * n * 2 + m * (k + n) * 2
    want = max(2 * m * n * k / (H100.bf16_flops_per_s * e), hbm / (H100.hbm_bytes_per_s * f.gemm.hbm_fraction))
    assert math.isclose(t, want + f.gemm.overhead_s, rel_tol=1e-12)


def test_gemm_efficiency_ramps_with_tokens():
    """Achieved FLOP/s grow with tokens towards e_max x peak and never exceed it."""
    tokens = np.array([1, 16, 64, 256, 1024, 4096, 16384])
    t = gemm_time_s(tokens, 8192, 8192, H100)
    achieved = 2 * tokens * 8192 * 8192 / t / H100.bf16_flops_per_s
    assert np.all(np.diff(achieved) > 0)
    assert achieved[-1] <= DEFAULT_FACTORS.gemm.peak_fraction
    assert achieved[-1] > 0.95 * DEFAULT_FACTORS.gemm.peak_fraction * 16384 / (16384 + DEFAULT_FACTORS.gemm.half_tokens)


def test_grouped_gemm_reads_every_group_once():
    """A grouped GEMM of g experts at tiny batch costs about g weight reads (memory bound)."""
    one = gemm_time_s(8, 4096, 2048, "h100", factors=NO_OVERHEAD)
    eight = gemm_time_s(64, 4096, 2048, H100, factors=NO_OVERHEAD, groups=8)
    assert eight == pytest.approx(8 * one, rel=0.01)


@pytest.mark.parametrize("op", ["norm", "add", "act", "rope", "embedding"])
def test_memory_ops_are_monotone_and_bandwidth_bound(op):
    rows = np.array([1, 64, 1024, 8192, 65536])
    t = memory_op_time_s(op, rows, 4096, H100)
    assert np.all(np.diff(t) >= 0) and t[-1] > 100 * t[0]
    f = getattr(DEFAULT_FACTORS, op)
    per_row = {"norm": 2, "add": 3, "act": 3, "rope": 2, "embedding": 2}[op] * 4096 * 2
    assert t[-1] == pytest.approx(65536 * per_row / (H100.hbm_bytes_per_s * f.hbm_fraction) + f.overhead_s)


def test_norm_waits_for_one_row():
    f = DEFAULT_FACTORS.norm
    assert memory_op_time_s("norm", 1, 8192, H100) == pytest.approx(8192 * f.row_s_per_elem + f.overhead_s)


def test_unknown_ops_are_refused():
    with pytest.raises(InputError, match="unknown memory op"):
        memory_op_time_s("softmax", 1, 1, H100)
    with pytest.raises(InputError, match="unknown collective"):
        collective_time_s("broadcast", 1, 2, H100)


def test_collective_equations():
    f, S = DEFAULT_FACTORS, 64e6
    intra = H100.intra_node_bytes_per_s / 2
    ar = f.all_reduce_intra
    assert collective_time_s("all_reduce", S, 8, H100) == pytest.approx(
        ar.latency_s + 2 * 7 / 8 * S / (intra * ar.bandwidth_fraction)
    )
    p2p = f.p2p_intra
    assert collective_time_s("all_to_all", S, 8, H100) == pytest.approx(
        p2p.latency_s + 7 / 8 * S / (intra * p2p.bandwidth_fraction)
    )
    x = f.p2p_inter
    assert collective_time_s("send_recv", S, 2, H100, devices_per_node=1) == pytest.approx(
        x.latency_s + S / (H100.inter_node_bytes_per_s * x.bandwidth_fraction)
    )
    # a 16-GPU group spans two nodes: the NIC share (8 / 16 of the bytes) bounds the all-to-all
    assert collective_time_s("all_to_all", S, 16, H100) == pytest.approx(
        x.latency_s + 8 / 16 * S / (H100.inter_node_bytes_per_s * x.bandwidth_fraction)
    )
    assert collective_time_s("all_reduce", S, 1, H100) == 0.0


@settings(max_examples=40, deadline=None)
@given(size=st.floats(1.0, 1e9), n=st.sampled_from([2, 4, 8, 16, 32]))
def test_collectives_are_monotone_in_bytes(size, n):
    for op in ("all_reduce", "all_to_all", "send_recv"):
        workers = 2 if op == "send_recv" else n
        assert collective_time_s(op, 2 * size, workers, H100) > collective_time_s(op, size, workers, H100) > 0


def test_attention_primitive_is_a_roofline():
    f = DEFAULT_FACTORS.attention
    flops, hbm = 1e12, 1e6
    assert attention_time_s(flops, hbm, H100) == pytest.approx(
        flops / (H100.bf16_flops_per_s * f.flops_fraction) + f.overhead_s
    )
    assert attention_time_s(0.0, 0.0, H100) == 0.0


# ---------------------------------------------------------------------------------------------
# the step model


def test_prefill_attention_is_quadratic_in_the_prompt():
    """Without a window, attention FLOPs are sum_i i = L (L + 1) / 2 per request."""
    def core(isl):
        return prefill_time_s("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1", 1, isl, factors=NO_OVERHEAD).attention_core_s

    L = 4096
    assert core(2 * L) / core(L) == pytest.approx((2 * L) * (2 * L + 1) / (L * (L + 1)), rel=1e-9)
    assert core(2 * L) / core(L) == pytest.approx(4, rel=1e-3)


def test_sliding_window_attention_grows_linearly_past_the_window():
    """gpt-oss with every layer windowed (128 tokens): each extra prompt token adds the same time."""
    arch = get_model("gpt-oss-120b")
    windowed = dataclasses.replace(arch, attention=dataclasses.replace(arch.attention, sliding_window_pattern=None))

    def core(model, isl):
        return prefill_time_s(model, "h100", "tp1pp1dp1ep1", 1, isl, factors=NO_OVERHEAD).attention_core_s

    L = 4096
    assert core(windowed, 3 * L) - core(windowed, 2 * L) == pytest.approx(core(windowed, 2 * L) - core(windowed, L))
    assert core(arch, 3 * L) - core(arch, 2 * L) > 1.5 * (core(arch, 2 * L) - core(arch, L))  # half the layers full


def test_decode_attention_follows_the_kv_read():
    def core(ctx):
        return decode_step_time_s("mixtral-8x7b", "h100", "tp2pp1dp1ep1moetp2", 64, ctx, factors=NO_OVERHEAD)

    short, long = core(2048), core(8192)
    assert long.attention_core_s / short.attention_core_s == pytest.approx(4, rel=0.02)  # q/o reads are tiny
    fp8 = decode_step_time_s("mixtral-8x7b", "h100", "tp2pp1dp1ep1moetp2", 64, 8192, factors=NO_OVERHEAD,
                             precision={"kv_cache": "fp8"})  # fmt: skip
    assert fp8.attention_core_s == pytest.approx(long.attention_core_s / 2, rel=0.02)
    assert long.moe_expert_s == short.moe_expert_s  # context does not touch the experts


def test_moe_busiest_gpu_scales_as_one_over_balancedness():
    args = ("deepseek-v3", "h200", "tp1pp1dp8ep8", 8, 4096)
    full = prefill_time_s(*args, factors=NO_OVERHEAD)
    half = prefill_time_s(*args, balancedness=0.5, factors=NO_OVERHEAD)
    assert full.moe_rows_busiest_gpu == pytest.approx(8 * 4096 * 8 / 8)  # T k / (ep b)
    assert half.moe_rows_busiest_gpu == pytest.approx(2 * full.moe_rows_busiest_gpu)
    # compute-bound experts and bandwidth-bound dispatch without fixed costs: exactly 1 / b
    assert half.moe_expert_s == pytest.approx(2 * full.moe_expert_s, rel=1e-9)
    assert half.moe_dispatch_s == pytest.approx(2 * full.moe_dispatch_s, rel=1e-9)
    # FP8 experts: DeepEP dispatches FP8 (1 + 4/128 bytes per element) and combines BF16 (2 bytes)
    assert half.moe_combine_s == pytest.approx(half.moe_dispatch_s * 2 / FP8_DISPATCH_BYTES, rel=1e-9)
    assert half.attention_core_s == full.attention_core_s  # attention does not see the imbalance


def test_decode_moe_is_weight_bound_at_small_batches():
    """Decode: few rows per expert, so the step reads the active experts' weights; halving b
    doubles the rows but adds little time while every slot is already active."""
    full = decode_step_time_s("deepseek-v3", "h200", "tp1pp1dp8ep8", 512, 2048, factors=NO_OVERHEAD)
    half = decode_step_time_s("deepseek-v3", "h200", "tp1pp1dp8ep8", 512, 2048, balancedness=0.5, factors=NO_OVERHEAD)
    assert half.moe_rows_busiest_gpu == 2 * full.moe_rows_busiest_gpu
    assert full.moe_expert_s < half.moe_expert_s < 1.2 * full.moe_expert_s


@settings(max_examples=25, deadline=None)
@given(b1=st.floats(0.05, 1.0), b2=st.floats(0.05, 1.0), batch=st.integers(1, 512))
def test_moe_time_never_falls_as_balance_worsens(b1, b2, batch):
    lo, hi = sorted((b1, b2))
    worse = decode_step_time_s("qwen3-30b-a3b", "h100", "tp1pp1dp4ep4", batch, 1024, balancedness=lo)
    better = decode_step_time_s("qwen3-30b-a3b", "h100", "tp1pp1dp4ep4", batch, 1024, balancedness=hi)
    assert worse.moe_expert_s >= better.moe_expert_s
    assert worse.total_s >= better.total_s


def test_balancedness_does_not_apply_without_ep():
    a = decode_step_time_s("mixtral-8x7b", "h100", "tp2pp1dp1ep1moetp2", 32, 1024)
    b = decode_step_time_s("mixtral-8x7b", "h100", "tp2pp1dp1ep1moetp2", 32, 1024, balancedness=0.5)
    assert a.components() == b.components()


LAYOUTS = {
    "deepseek-v3": "tp8pp1dp1ep8", "kimi-k2": "tp1pp2dp8ep8", "deepseek-v2-lite": "tp2pp1dp1ep2",
    "gpt-oss-120b": "tp2pp1dp2ep4", "mixtral-8x7b": "tp4pp2dp1ep1moetp4", "olmoe-1b-7b": "tp1pp1dp1ep1",
    "qwen1.5-moe-a2.7b": "tp2pp1dp1ep2", "qwen3-235b-a22b": "tp4pp2dp2ep8", "qwen3-30b-a3b": "tp2pp1dp1ep1moetp2",
    "qwen3-moe-tiny": "tp1pp1dp4ep4", "mixtral-tiny": "tp2pp1dp1ep2", "olmoe-tiny": "tp1pp2dp1ep1",
    "deepseek-v3-tiny": "tp1pp1dp2ep2", "qwen3-235b-a22b-fp8": "tp1pp1dp8ep8", "qwen3-30b-a3b-fp8": "tp1pp1dp1ep1",
}  # fmt: skip


@pytest.mark.parametrize("model", list_models(), ids=lambda m: m.id)
def test_breakdown_closes_for_every_model(model):
    layout = ParallelLayout.parse(LAYOUTS[model.id])
    for t in (prefill_time_s(model, "h200", layout, 4, 2048), decode_step_time_s(model, "h200", layout, 64, 4096)):
        assert isinstance(t, StepTime)
        parts = t.components()
        assert all(v >= 0 and math.isfinite(v) for v in parts.values())
        assert sum(parts.values()) == pytest.approx(t.total_s, rel=1e-12)
        assert sum(t.stage_s) + t.pp_send_s == pytest.approx(t.total_s, rel=1e-12)
        assert len(t.stage_s) == layout.pp and (t.pp_send_s > 0) == (layout.pp > 1)
        assert (t.moe_dispatch_s > 0) == (layout.ep > 1)
        assert t.to_dict()["total_s"] == pytest.approx(t.total_s)
        assert "total" in t.table()


def test_decode_reads_at_least_the_weights_once():
    """Cross-check with the memory model: a decode step that touches every expert cannot beat
    reading this GPU's weights (lm_head included, input embedding excluded) at full HBM speed."""
    layout = "tp1pp1dp8ep8"
    mem = memory_per_gpu("deepseek-v3", "h200", layout)
    read = mem.total_weights_bytes - mem.embedding_bytes / 2 - mem.router_and_norm_bytes
    t = decode_step_time_s("deepseek-v3", "h200", layout, 4096, 1024)
    assert t.total_s > read / get_gpu("h200").hbm_bytes_per_s


def test_prefill_grows_with_batch_and_prompt():
    base = prefill_time_s("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1", 2, 1024).total_s
    assert prefill_time_s("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1", 4, 1024).total_s > base
    assert prefill_time_s("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1", 2, 2048).total_s > base


def test_dp_attention_splits_requests():
    """With 8 DP groups the busiest holds ceil(9 / 8) = 2 requests."""
    two = decode_step_time_s("deepseek-v3", "h200", "tp1pp1dp8ep8", 9, 2048, factors=NO_OVERHEAD)
    ref = decode_step_time_s("deepseek-v3", "h200", "tp1pp1dp8ep8", 16, 2048, factors=NO_OVERHEAD)
    assert two.attention_core_s == pytest.approx(ref.attention_core_s)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch": 0}, "batch"),
        ({"batch": 2.5}, "batch"),
        ({"isl": 0}, "isl"),
        ({"balancedness": 0.0}, "balancedness"),
        ({"balancedness": 1.5}, "balancedness"),
        ({"layout": "tp3pp1dp1ep3"}, "tp=3"),
        ({"expert_slots_per_gpu": 2}, "cannot hold"),
        ({"factors": "fast"}, "EfficiencyFactors"),
    ],
)
def test_bad_inputs_are_refused(kwargs, match):
    args = {"model": "deepseek-v3", "gpu": "h200", "layout": "tp1pp1dp8ep8", "batch": 4, "isl": 1024}
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        prefill_time_s(args.pop("model"), args.pop("gpu"), args.pop("layout"), args.pop("batch"), args.pop("isl"),
                       **args)  # fmt: skip


def test_decode_context_must_be_positive():
    with pytest.raises(InputError, match="context_len"):
        decode_step_time_s("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1", 1, 0)


def test_efficiency_factors_are_checked():
    with pytest.raises(InputError, match="gemm.peak_fraction"):
        dataclasses.replace(DEFAULT_FACTORS, gemm=dataclasses.replace(DEFAULT_FACTORS.gemm, peak_fraction=1.2))
    with pytest.raises(InputError, match="norm.overhead_s"):
        dataclasses.replace(DEFAULT_FACTORS, norm=MemoryOpFactors(hbm_fraction=0.5, overhead_s=-1.0))
    with pytest.raises(InputError, match="source"):
        dataclasses.replace(DEFAULT_FACTORS, source=" ")
    assert isinstance(DEFAULT_FACTORS, EfficiencyFactors) and DEFAULT_FACTORS.source
    assert DEFAULT_FACTORS.to_dict()["gemm"]["peak_fraction"] == DEFAULT_FACTORS.gemm.peak_fraction


# ---- expert-parallel dispatch, eq. (9) ----------------------------------------------------------------


def test_token_reach_is_the_hypergeometric_probability():
    """1 - C(E - s, k) / C(E, k) for integer shares, and a brute-force count on a small case."""
    from itertools import combinations

    from planner.perf.op_times import token_reach

    assert float(token_reach(256, 8, 32 / 256)) == pytest.approx(1 - math.comb(224, 8) / math.comb(256, 8), rel=1e-12)
    hits = sum(1 for c in combinations(range(12), 3) if any(e < 4 for e in c))
    assert float(token_reach(12, 3, 4 / 12)) == pytest.approx(hits / math.comb(12, 3), rel=1e-12)
    assert float(token_reach(64, 8, 1.0)) == 1.0 and float(token_reach(64, 8, 0.0)) == 0.0


def test_dispatch_sends_each_token_once_per_rank_and_node():
    from planner.perf.op_times import ep_dispatch_time_s

    f = NO_OVERHEAD
    spec = get_gpu("h200")
    one_node = float(ep_dispatch_time_s(4096, 7168, 8, 256, 8, spec, element_bytes=2.0, factors=f))
    # de-duplicated: a token reaching a rank through several of its experts travels once -> fewer bytes
    # than the old count of every routed row (T k / ep rows into the busiest rank, (n - 1) / n over NVLink)
    rows = float(collective_time_s("all_to_all", 4096 * 8 * 7168 * 2, 8, spec, factors=f))
    assert 0.5 * rows < one_node < rows
    fp8 = float(ep_dispatch_time_s(4096, 7168, 8, 256, 8, spec, element_bytes=FP8_DISPATCH_BYTES, factors=f))
    assert fp8 == pytest.approx(one_node * FP8_DISPATCH_BYTES / 2, rel=1e-12)
    half = float(ep_dispatch_time_s(4096, 7168, 8, 256, 8, spec, element_bytes=2.0, factors=f, balancedness=0.5))
    assert half == pytest.approx(2 * one_node, rel=1e-12)
    # across two nodes a token crosses the network once per remote node it reaches, then NVLink forwards it
    from planner.perf.op_times import token_reach

    two = float(ep_dispatch_time_s(4096, 7168, 8, 256, 16, spec, element_bytes=2.0, factors=f))
    far, near = f.group("ep_dispatch_inter"), f.group("ep_dispatch_intra")
    nic = 4096 * 1 * float(token_reach(256, 8, 0.5)) * 7168 * 2 / (spec.inter_node_bytes_per_s * far.bandwidth_fraction)
    nvl = (4096 * float(token_reach(256, 8, 1 / 16)) * 7 * (1 + 8 / 8) * 7168 * 2
           / (spec.intra_node_bytes_per_s / 2 * near.bandwidth_fraction))  # fmt: skip
    assert two == pytest.approx(far.latency_s + max(nic, nvl), rel=1e-12) and nic > nvl  # the NIC binds
    assert float(ep_dispatch_time_s(4096, 7168, 8, 256, 1, spec, element_bytes=2.0, factors=f)) == 0.0


def test_decode_dispatch_takes_the_low_latency_factors():
    from planner.perf.factors import LinkFactors

    fast = dataclasses.replace(NO_OVERHEAD, ep_dispatch_low_latency=LinkFactors(bandwidth_fraction=1.0,
                                                                                 latency_s=0.0))  # fmt: skip
    slow = dataclasses.replace(fast, ep_dispatch_intra=LinkFactors(bandwidth_fraction=0.01, latency_s=1e-3))
    args = ("deepseek-v3", "h200", "tp1pp1dp8ep8", 8, 2048)
    assert decode_step_time_s(*args, factors=slow).moe_dispatch_s == decode_step_time_s(*args, factors=fast).moe_dispatch_s
    assert prefill_time_s(*args, factors=slow).moe_dispatch_s > prefill_time_s(*args, factors=fast).moe_dispatch_s
