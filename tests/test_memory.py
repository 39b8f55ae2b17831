"""Per-GPU memory model: the accounting closes over every GPU of a layout, the worked examples fit
(or do not) with the numbers the docs quote, expert slots trade linearly against KV tokens, and
layouts parse, print and validate."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.errors import Infeasible, InputError, exit_code_for
from planner.perf import (
    MemoryBreakdown,
    ParallelLayout,
    default_runtime_overhead_bytes,
    kv_tokens_for_budget,
    memory_per_gpu,
    memory_per_stage,
    total_params_check,
)
from planner.profiles import get_model, list_models

GiB = 1024**3


# ---------------------------------------------------------------------------------------------
# every parameter is placed exactly once (up to the replication the layout implies)


@pytest.mark.parametrize("model", list_models(), ids=lambda m: m.id)
def test_total_params_check_is_exact_for_every_builtin(model):
    assert total_params_check(model) < 1e-9


def _replicated_attention_params(model, tp: int) -> int:
    """Parameters of one attention block that a tp-way split copies instead of splitting, counted
    once per extra copy -- written out here independently of planner.perf.memory."""
    att, H = model.attention, model.hidden_size
    if att.kind == "mla":  # q_a + q_a_layernorm and kv_a (latent + rope key) + kv_a_layernorm
        latent = H * (att.kv_lora_rank + att.qk_rope_head_dim) + att.kv_lora_rank
        q_a = H * att.q_lora_rank + att.q_lora_rank if att.q_lora_rank else 0
        return (tp - 1) * (latent + q_a)
    copies = tp // min(tp, att.num_kv_heads)  # each KV head on tp / kv_heads ranks beyond kv_heads
    kv_proj = 2 * H * att.num_kv_heads * att.head_dim
    kv_proj += 2 * att.num_kv_heads * att.head_dim if att.qkv_bias else 0
    norms = {"none": 0, "per_head": 2 * att.head_dim, "full": (att.num_heads + att.num_kv_heads) * att.head_dim}
    o_bias = H if att.o_bias else 0  # the row-parallel output bias is whole on every rank
    return (copies - 1) * kv_proj + (tp - 1) * (norms[att.qk_norm] + o_bias)


LAYOUTS = [
    ParallelLayout(),
    ParallelLayout(tp=2, ep=2),
    ParallelLayout(tp=4, moe_tp=4),
    ParallelLayout(tp=8, ep=8),
    ParallelLayout(tp=8, moe_tp=8),
    ParallelLayout(dp=8, ep=8),
    ParallelLayout(tp=2, dp=4, ep=8),
    ParallelLayout(tp=4, dp=2, ep=4, moe_tp=2),
    ParallelLayout(tp=8, pp=2, ep=8),
    ParallelLayout(tp=2, pp=3, dp=2, ep=2, moe_tp=2),
    ParallelLayout(pp=4, dp=2, ep=2),
]


@pytest.mark.parametrize("model_id", ["deepseek-v3", "qwen3-235b-a22b", "mixtral-8x7b", "gpt-oss-120b"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.label)
def test_weights_over_all_gpus_close_to_total_params(model_id, layout):
    model = get_model(model_id)
    if model.attention.kind == "gqa" and model.attention.num_heads % layout.tp:
        pytest.skip("tp does not divide the heads")
    b_att, b_base = model.precision.attention.bytes_per_element, model.precision.base.bytes_per_element
    H = model.hidden_size
    stages = memory_per_stage(model, "h200", layout)
    assert len(stages) == layout.pp
    assert sum(s.stage_layers for s in stages) == model.num_hidden_layers
    assert sum(s.stage_moe_layers for s in stages) == len(model.moe_layers)
    ranks = layout.tp * layout.dp  # GPUs per stage

    def summed(field: str) -> float:
        return sum(getattr(s, field) for s in stages) * ranks

    # each component's sum over all GPUs, divided by how many GPUs hold each parameter
    down_bias_copies = (layout.moe_tp - 1) * H * b_base if model.expert_bias else 0  # whole on every moe_tp rank
    routed = summed("routed_expert_weights_bytes")  # every expert once per layer (E % ep == 0 here)
    routed -= len(model.moe_layers) * model.num_routed_experts * down_bias_copies
    dense = summed("dense_ffn_weights_bytes") / layout.dp  # split over tp, copied per DP group
    shared = summed("shared_expert_weights_bytes") / layout.dp
    router_norm = summed("router_and_norm_bytes") / ranks  # copied on every rank
    final_norm = H * b_base  # copied on every rank of the last stage; the tables are split over tp
    embedding = (summed("embedding_bytes") - ranks * final_norm) / layout.dp + final_norm
    extra = _replicated_attention_params(model, layout.tp) * model.num_hidden_layers * b_att
    attention = summed("attention_weights_bytes") / layout.dp - extra

    unique = routed + dense + shared + router_norm + embedding + attention
    assert math.isclose(unique, model.weight_bytes(), rel_tol=1e-12)  # the checkpoint, each part in its format
    assert math.isclose(
        routed, len(model.moe_layers) * model.num_routed_experts * model.bytes_per_expert, rel_tol=1e-12
    )
    for s in stages:
        parts = (
            s.attention_weights_bytes
            + s.dense_ffn_weights_bytes
            + s.shared_expert_weights_bytes
            + s.routed_expert_weights_bytes
            + s.router_and_norm_bytes
            + s.embedding_bytes
        )
        assert math.isclose(parts, s.total_weights_bytes, rel_tol=1e-12)
        left = s.usable_memory_bytes - s.total_weights_bytes - s.activation_bytes - s.runtime_overhead_bytes
        assert math.isclose(left, s.kv_cache_bytes, rel_tol=1e-9, abs_tol=1.0)


# ---------------------------------------------------------------------------------------------
# worked examples (the numbers quoted in docs/memory.md)


def test_deepseek_v3_fp8_fits_8x_h200_with_dp8_ep8():
    m = memory_per_gpu("deepseek-v3", "h200", "tp1pp1dp8ep8")
    # 58 MoE layers x 32 slots x 44,050,944 B (FP8 + fp32 128x128 block scales) = 81.76 GB per GPU
    assert m.expert_slots_per_gpu == 32 and m.stage_moe_layers == 58
    assert m.routed_expert_weights_bytes == 58 * 32 * 44_050_944 == 81_758_552_064
    # embedding and lm_head stay BF16 in the FP8 release: 2 x ceil(129,280 / 1) x 7,168 x 2 B + final norm
    assert m.embedding_bytes == (2 * 129_280 * 7168 + 7168) * 2
    assert m.kv_cache_bytes > 0 and m.kv_tokens > 0
    assert m.kv_bytes_per_token == 70_272
    assert m.kv_tokens_per_instance == 8 * m.kv_tokens
    assert m.kv_tokens == 303_834  # docs/memory.md
    assert m.runtime_overhead_bytes == 3_758_096_384 + 411_041_792


def test_deepseek_v3_on_8x_h100_is_infeasible_with_the_numbers():
    with pytest.raises(Infeasible) as info:
        memory_per_gpu("deepseek-v3", "h100", ParallelLayout(dp=8, ep=8))
    msg = str(info.value)
    assert "\n" not in msg
    for part in ("h100", "deepseek-v3", "tp1pp1dp8ep8", "need 105.5 GB", "have 72.0 GB", "routed experts 81.8 GB"):
        assert part in msg, (part, msg)
    assert exit_code_for(info.value) == 3


@pytest.mark.parametrize("layout", ["tp8pp1dp1ep8", "tp8pp1dp1ep1moetp8"])
def test_qwen3_235b_bf16_fits_8x_h100_tp8(layout):
    m = memory_per_gpu("qwen3-235b-a22b", "h100", layout)
    assert m.kv_tokens > 100_000
    # 4 KV heads over 8 ranks: one head per rank (replicated twice): 2 x 128 x 94 layers x 2 B
    assert m.kv_bytes_per_token == 2 * 128 * 94 * 2 == 48_128
    # EP and expert-TP hold the same expert bytes per GPU: 1/8 of 94 x 128 experts x 37.7 MB
    assert m.routed_expert_weights_bytes == 94 * 128 * 18_874_368 * 2 / 8


def test_mixtral_bf16_tp2_on_2x_h100_kv_budget_by_hand():
    # Per GPU, tp2 ep2, BF16 (2 B/param), H = 4096, 32 layers:
    #   attention   q, o 2 x 4096 x 4096 / 2 + k, v 2 x 4096 x 1024 / 2 = 20,971,520 params/layer
    #               x 32 x 2 B                                          =  1,342,177,280 B
    #   experts     4 slots x 32 layers x 176,160,768 params x 2 B      = 45,097,156,608 B
    #   router+norm 32 x (8 x 4096 + 2 x 4096) x 2 B                    =      2,621,440 B
    #   embedding   (2 x 32000 x 4096 / 2 + 4096 final norm) x 2 B      =    262,152,192 B
    #   weights                                                         = 46,704,107,520 B
    #   activations 2 B x 8192 tokens x (4 x 4096 + routed rows 8192 x 2 / 2 = 8192
    #               x (2 x 4096 + 3 x 14336) / 8192 per token) + 4 B x 256 x 16000 logits
    #               = 2 x 8192 x (16384 + 51200) + 16,384,000               =  1,123,680,256 B
    #   overhead    3.5 GiB + 342 MiB NCCL (group of 2)                     =  4,116,709,376 B
    #   usable      0.9 x 80e9                                          = 72,000,000,000 B
    #   KV cache    72e9 - weights - activations - overhead             = 20,055,502,848 B
    #   per token   2 x 8 KV heads / 2 x 128 x 32 layers x 2 B          =         65,536 B
    #   KV tokens   floor(20,055,502,848 / 65,536)                      =        306,022
    m = memory_per_gpu("mixtral-8x7b", "h100", ParallelLayout(tp=2, ep=2))
    assert m.total_weights_bytes == 46_704_107_520
    assert m.activation_bytes == 1_123_680_256
    assert m.runtime_overhead_bytes == 4_116_709_376
    assert m.kv_cache_bytes == pytest.approx(20_055_502_848, abs=1e-3)
    assert m.kv_bytes_per_token == 65_536
    assert m.kv_tokens == 306_022


# ---------------------------------------------------------------------------------------------
# replicas compete with KV


@pytest.mark.parametrize(
    ("model_id", "gpu", "layout", "slots"),
    [
        ("deepseek-v3", "h200", "tp1pp1dp8ep8", range(32, 41)),
        ("qwen3-235b-a22b", "h200", "tp8pp1dp1ep8", range(16, 21)),
        ("mixtral-8x7b", "h200", "tp2pp1dp1ep2", range(4, 7)),
    ],
)
def test_expert_slots_trade_linearly_against_kv_tokens(model_id, gpu, layout, slots):
    model = get_model(model_id)
    slots = list(slots)
    tokens = kv_tokens_for_budget(model, gpu, layout, slots)
    assert tokens.dtype == np.int64 and tokens.shape == (len(slots),)
    assert np.all(np.diff(tokens) < 0)  # strictly fewer
    one = [memory_per_gpu(model, gpu, layout, expert_slots_per_gpu=k) for k in slots]
    assert tokens.tolist() == [m.kv_tokens for m in one]
    slope = model.bytes_per_expert * len(model.moe_layers) / one[0].kv_bytes_per_token
    exact = [(m.kv_cache_bytes / m.kv_bytes_per_token) for m in one]
    assert np.allclose(np.diff(exact), -slope, rtol=1e-9)
    assert np.all(np.abs(tokens - (tokens[0] - slope * (np.array(slots) - slots[0]))) <= 1)


def test_budget_sweep_reports_zero_where_weights_do_not_fit():
    tokens = kv_tokens_for_budget("deepseek-v3", "h200", "tp1pp1dp8ep8", [32, 40, 48])
    assert tokens[0] > 0 and tokens[-1] == 0  # 48 slots: 123 GB of experts alone
    with pytest.raises(Infeasible):
        memory_per_gpu("deepseek-v3", "h200", "tp1pp1dp8ep8", expert_slots_per_gpu=48)


def test_budget_sweep_rejects_bad_slot_lists():
    for bad in ([31], [], [32.5], [[32]]):
        with pytest.raises(InputError):
            kv_tokens_for_budget("deepseek-v3", "h200", "tp1pp1dp8ep8", bad)
    with pytest.raises(InputError):
        kv_tokens_for_budget("deepseek-v3", "h200", "tp1pp1dp8ep8", [32], expert_slots_per_gpu=33)


def test_too_few_slots_for_the_experts_is_an_input_error():
    with pytest.raises(InputError, match="256 routed experts"):
        memory_per_gpu("deepseek-v3", "h200", "tp1pp1dp8ep8", expert_slots_per_gpu=31)


def test_uneven_ep_puts_ceil_experts_on_the_busiest_gpu():
    # 8 experts over ep=3 ranks: vLLM gives the first two ranks 3 experts
    m = memory_per_gpu("mixtral-8x7b", "b200", ParallelLayout(dp=3, ep=3))
    assert m.expert_slots_per_gpu == 3


# ---------------------------------------------------------------------------------------------
# KV cache per token


def test_mla_kv_per_token_deepseek_v3_is_not_split_over_tp():
    model = get_model("deepseek-v3")
    assert (512 + 64) * 61 * 2 == 70_272 == model.kv_bytes_per_token()
    for layout in ("tp1pp1dp8ep8", "tp8pp1dp1ep8", "tp2pp1dp4ep8"):
        assert memory_per_gpu(model, "h200", layout).kv_bytes_per_token == 70_272
    fp8_kv = memory_per_gpu(model, "h200", "tp8pp1dp1ep8", precision={"kv_cache": "fp8"})
    assert fp8_kv.kv_bytes_per_token == 35_136


def test_gqa_kv_splits_over_min_tp_kv_heads():
    per_layer = {1: 2 * 8 * 128 * 2, 2: 2 * 4 * 128 * 2, 4: 2 * 2 * 128 * 2, 8: 2 * 1 * 128 * 2}
    for tp, b in per_layer.items():
        m = memory_per_gpu("mixtral-8x7b", "h200", ParallelLayout(tp=tp, ep=tp))
        assert m.kv_bytes_per_token == b * 32
    qwen = [memory_per_gpu("qwen3-235b-a22b", "h200", ParallelLayout(tp=tp, ep=tp)).kv_bytes_per_token for tp in (4, 8)]
    assert qwen[0] == qwen[1]  # 4 KV heads: beyond tp 4 every rank keeps one head


def test_sliding_window_layers_are_counted_full_in_kv_tokens_and_capped_per_sequence():
    m = memory_per_gpu("gpt-oss-120b", "h200", ParallelLayout(tp=4, ep=4))
    assert m.kv_window_tokens == 128 and m.kv_windowed_layers == 18  # even layers of 36
    per_layer = m.kv_bytes_per_token / 36
    context = 8192
    assert m.sequences_that_fit(context) == math.floor(m.kv_cache_bytes / (per_layer * (18 * context + 18 * 128)))
    assert m.sequences_that_fit(context) > m.kv_tokens // context  # windows make room
    assert m.sequences_that_fit(64) == math.floor(m.kv_cache_bytes / (per_layer * 36 * 64))
    full = memory_per_gpu("mixtral-8x7b", "h200", ParallelLayout(tp=2, ep=2))
    assert full.kv_window_tokens is None and full.sequences_that_fit(1000) == full.kv_tokens // 1000


def test_kv_block_tokens_floors_to_whole_blocks():
    m = memory_per_gpu("mixtral-8x7b", "h100", "tp2pp1dp1ep2", kv_block_tokens=16)
    assert m.kv_tokens == 306_022 // 16 * 16


# ---------------------------------------------------------------------------------------------
# pipeline stages, arguments, output


def test_binding_stage_is_the_one_with_fewest_kv_tokens():
    stages = memory_per_stage("deepseek-v3", "h200", "tp8pp2dp1ep8")
    m = memory_per_gpu("deepseek-v3", "h200", "tp8pp2dp1ep8")
    assert m.kv_tokens == min(s.kv_tokens for s in stages)
    assert [s.stage_layers for s in stages] == [31, 30] and [s.stage_moe_layers for s in stages] == [28, 30]
    assert stages[0].dense_ffn_weights_bytes > 0 == stages[1].dense_ffn_weights_bytes  # 3 dense layers first


def test_embedding_on_first_stage_lm_head_and_norm_on_last():
    model = get_model("mixtral-8x7b")
    first, middle, last = memory_per_stage(model, "h200", ParallelLayout(tp=2, pp=3, ep=2))
    table = 32000 * 4096 // 2 * 2
    assert first.embedding_bytes == table and middle.embedding_bytes == 0
    assert last.embedding_bytes == table + 4096 * 2
    tied = dataclasses.replace(model, tie_word_embeddings=True)
    (one,) = memory_per_stage(tied, "h200", ParallelLayout(tp=2, ep=2))
    assert one.embedding_bytes == table + 4096 * 2  # one shared table without PP
    assert memory_per_stage(tied, "h200", ParallelLayout(tp=2, pp=2, ep=2))[1].embedding_bytes == table + 4096 * 2


def test_names_labels_and_objects_give_the_same_breakdown():
    a = memory_per_gpu("deepseek-v3", "h200", "tp1pp1dp8ep8")
    from planner.profiles import get_gpu

    b = memory_per_gpu(get_model("DeepSeek-R1"), get_gpu("H200-SXM"), ParallelLayout(dp=8, ep=8))
    assert a == b
    assert isinstance(a, MemoryBreakdown)


def test_options_change_what_they_should():
    base = memory_per_gpu("qwen3-235b-a22b", "h200", "tp8pp1dp1ep8")
    fp8 = memory_per_gpu("qwen3-235b-a22b", "h200", "tp8pp1dp1ep8", precision={"weights": "fp8"})
    quantised = base.total_weights_bytes - base.router_and_norm_bytes - base.embedding_bytes
    assert fp8.total_weights_bytes == pytest.approx(quantised / 2 + base.router_and_norm_bytes + base.embedding_bytes)
    assert (fp8.router_and_norm_bytes, fp8.embedding_bytes) == (base.router_and_norm_bytes, base.embedding_bytes)
    none = memory_per_gpu("qwen3-235b-a22b", "h200", "tp8pp1dp1ep8", max_batch_tokens=0, runtime_overhead_bytes=0)
    assert none.activation_bytes == 0 and none.runtime_overhead_bytes == 0
    assert none.kv_cache_bytes == pytest.approx(
        base.kv_cache_bytes + base.activation_bytes + base.runtime_overhead_bytes
    )
    more = memory_per_gpu("qwen3-235b-a22b", "h200", "tp8pp1dp1ep8", max_batch_tokens=32768)
    assert more.activation_bytes > base.activation_bytes
    half = memory_per_gpu("qwen3-235b-a22b", "h200", "tp8pp1dp1ep8", memory_utilization=0.5)
    assert half.usable_memory_bytes == 0.5 * 141e9


@pytest.mark.parametrize(
    "kwargs",
    [
        {"memory_utilization": 0},
        {"memory_utilization": 1.5},
        {"memory_utilization": float("nan")},
        {"runtime_overhead_bytes": -1},
        {"max_batch_tokens": -1},
        {"max_batch_tokens": 1.5},
        {"precision": {"kv_cache": "mxfp4"}},
        {"precision": {"weights": "fp7"}},
        {"precision": "fp8"},
        {"kv_block_tokens": 0},
        {"expert_slots_per_gpu": 0},
        {"expert_slots_per_gpu": True},
    ],
)
def test_bad_arguments_are_input_errors(kwargs):
    with pytest.raises(InputError):
        memory_per_gpu("mixtral-8x7b", "h200", "tp2pp1dp1ep2", **kwargs)


def test_default_runtime_overhead_follows_the_group_size():
    other = 3_758_096_384
    assert default_runtime_overhead_bytes(ParallelLayout()) == other
    assert default_runtime_overhead_bytes(ParallelLayout(tp=2, ep=2)) == other + 358_612_992
    for layout in (ParallelLayout(tp=4, ep=4), ParallelLayout(dp=8, ep=8), ParallelLayout(tp=8, dp=4, ep=32)):
        assert default_runtime_overhead_bytes(layout) == other + 411_041_792
    assert other == 3.5 * GiB


def test_to_dict_is_json_and_table_is_readable():
    m = memory_per_gpu("deepseek-v3", "h200", "tp1pp1dp8ep8")
    data = json.loads(json.dumps(m.to_dict()))
    assert data["layout"] == "tp1pp1dp8ep8" and data["kv_tokens"] == m.kv_tokens
    assert all(k.endswith("_bytes") for k in data if "bytes" in k and k != "kv_bytes_per_token")
    text = m.table()
    assert "deepseek-v3 on h200, tp1pp1dp8ep8" in text and "81.76 GB" in text and "303,834" in text
    assert "fp8-block; 32 slots" in text and data["precision"]["experts"] == "fp8-block"


# ---------------------------------------------------------------------------------------------
# layouts


@st.composite
def layouts(draw):
    tp = draw(st.sampled_from([1, 2, 3, 4, 8, 16]))
    dp = draw(st.integers(1, 16))
    pp = draw(st.integers(1, 64))
    group = tp * dp
    moe_tp = draw(st.sampled_from([d for d in range(1, group + 1) if group % d == 0]))
    return ParallelLayout(tp=tp, pp=pp, dp=dp, ep=group // moe_tp, moe_tp=moe_tp)


@settings(max_examples=200, deadline=None)
@given(layouts())
def test_label_parse_round_trip(layout):
    assert ParallelLayout.parse(layout.label) == layout
    assert ("moetp" in layout.label) == (layout.moe_tp > 1)
    assert layout.num_gpus == layout.tp * layout.dp * layout.pp
    assert str(layout) == layout.label


def test_parse_accepts_aiconfigurator_spelling():
    assert ParallelLayout.parse("tp1pp1dp8etp1ep8") == ParallelLayout(dp=8, ep=8)
    assert ParallelLayout.parse("tp4pp1dp1etp2ep2") == ParallelLayout(tp=4, ep=2, moe_tp=2)
    assert ParallelLayout.parse(" TP1PP1DP8EP8 ") == ParallelLayout(dp=8, ep=8)


@pytest.mark.parametrize(
    "label",
    [
        "",
        "tp1",
        "tp1pp1dp8",
        "tp1pp1dp8ep8x",
        "tp-1pp1dp1ep1",
        "tp0pp1dp1ep1",
        "tp2pp1dp1ep1",
        "tp1pp1dp8ep4",
        "tp2pp1dp1etp2ep1moetp1",
        "ep8dp8pp1tp1",
        None,
        8,
    ],
)
def test_bad_labels_raise_input_error(label):
    with pytest.raises(InputError):
        ParallelLayout.parse(label)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tp": 0}, "tp must be"),
        ({"dp": 2}, "ep x moe_tp"),
        ({"tp": 2.0, "ep": 2}, "tp must be"),
        ({"pp": True}, "pp must be"),
    ],
)
def test_bad_layouts_raise_on_construction(kwargs, match):
    with pytest.raises(InputError, match=match):
        ParallelLayout(**kwargs)


def _with_heads(model_id, heads, kv_heads):
    model = get_model(model_id)
    return dataclasses.replace(
        model, attention=dataclasses.replace(model.attention, num_heads=heads, num_kv_heads=kv_heads)
    )


@pytest.mark.parametrize(
    ("model", "layout", "match"),
    [
        (get_model("deepseek-v3"), ParallelLayout(tp=3, ep=3), "128 attention heads"),
        (get_model("qwen3-235b-a22b"), ParallelLayout(tp=3, ep=3), "64 attention heads"),
        (_with_heads("mixtral-8x7b", 48, 12), ParallelLayout(tp=8, ep=8), "12 KV heads"),
        (_with_heads("mixtral-8x7b", 24, 4), ParallelLayout(tp=6, ep=6), "not a multiple"),
        (get_model("mixtral-8x7b"), ParallelLayout(pp=33), "33 exceeds the 32 layers"),
        (get_model("mixtral-8x7b"), ParallelLayout(dp=3, moe_tp=3), "expert width 14336"),
        (
            dataclasses.replace(get_model("qwen1.5-moe-a2.7b"), shared_expert_intermediate_size=5640),
            ParallelLayout(tp=16, moe_tp=16),
            "shared-expert width 5640",
        ),
    ],
)
def test_invalid_layouts_for_a_model_name_the_problem(model, layout, match):
    with pytest.raises(InputError, match=match):
        layout.validate(model)
    with pytest.raises(InputError, match=match):
        memory_per_gpu(model, "h200", layout)


def test_valid_layouts_pass_including_kv_head_replication():
    ParallelLayout(tp=8, ep=8).validate(get_model("qwen3-235b-a22b"))  # 4 KV heads, each on 2 ranks
    ParallelLayout(tp=16, moe_tp=2, ep=8).validate(get_model("mixtral-8x7b"))
    ParallelLayout(dp=3, ep=3).validate(get_model("mixtral-8x7b"))  # uneven EP is allowed


def test_numpy_integers_are_accepted_and_results_stay_plain_python():
    m = memory_per_gpu(
        "mixtral-8x7b",
        "h100",
        ParallelLayout(tp=np.int64(2), ep=np.int64(2)),
        expert_slots_per_gpu=np.int32(4),
        max_batch_tokens=np.int64(8192),
    )
    assert m == memory_per_gpu("mixtral-8x7b", "h100", "tp2pp1dp1ep2")
    data = m.to_dict()
    assert all(type(v) in (int, float, str, type(None)) for k, v in data.items() if k != "precision")
    assert all(type(v) is str for v in data["precision"].values())


def test_free_fraction_rule_gives_the_kv_cache_its_share_of_what_is_left():
    """TensorRT-LLM's free_gpu_memory_fraction: KV = u x (GPU - weights - activations - overhead), so a layout
    whose weights pass 90 % of the GPU fits where vLLM's gpu_memory_utilization (a cap on the total) refuses it."""
    args = ("qwen3-235b-a22b-fp8", "h200", "tp1pp1dp2ep2")
    with pytest.raises(Infeasible, match=r"have 126\.9 GB \(0\.90 x 141\.0 GB\)"):
        memory_per_gpu(*args, max_batch_tokens=16384)
    free = memory_per_gpu(*args, max_batch_tokens=16384, memory_fraction_of="free")
    non_kv = free.total_weights_bytes + free.activation_bytes + free.runtime_overhead_bytes
    assert free.kv_cache_bytes == pytest.approx(0.9 * (141e9 - non_kv), rel=1e-12)
    assert free.usable_memory_bytes == pytest.approx(non_kv + free.kv_cache_bytes, rel=1e-12)
    assert free.memory_fraction_of == "free" and "0.90 x the rest of 141.0 GB" in free.table()
    assert free.kv_tokens == math.floor(free.kv_cache_bytes / free.kv_bytes_per_token)
    # the slot sweep follows the same rule, token for token
    from planner.perf import kv_tokens_for_budget

    sweep = kv_tokens_for_budget(*args, [64, 65], max_batch_tokens=16384, memory_fraction_of="free")
    assert sweep[0] == free.kv_tokens
    assert sweep[1] == memory_per_gpu(*args, max_batch_tokens=16384, memory_fraction_of="free",
                                      expert_slots_per_gpu=65).kv_tokens
    # a model that leaves much free: the two rules differ by (1 - u) x (weights + activations + overhead)
    total = memory_per_gpu("qwen3-30b-a3b", "h200", "tp1pp1dp1ep1")
    free = memory_per_gpu("qwen3-30b-a3b", "h200", "tp1pp1dp1ep1", memory_fraction_of="free")
    non_kv = total.total_weights_bytes + total.activation_bytes + total.runtime_overhead_bytes
    assert free.kv_cache_bytes - total.kv_cache_bytes == pytest.approx(0.1 * non_kv, rel=1e-9)
    with pytest.raises(InputError, match="memory_fraction_of"):
        memory_per_gpu("qwen3-30b-a3b", "h200", "tp1pp1dp1ep1", memory_fraction_of="rest")
    # weights beyond the whole GPU fit under neither rule
    with pytest.raises(Infeasible, match="weights, activations, overhead \\+ 0.90 x the rest of 141.0 GB"):
        memory_per_gpu("deepseek-v3", "h200", "tp1pp1dp1ep1", memory_fraction_of="free")
