"""One formula, one function: every merged formula gives the same numbers, bit for bit, as each
copy it replaced. The copies are written out here as they stood (``profiles/params.py``,
``profiles/specs.py``, ``perf/memory.py``, ``perf/estimate.py``, ``perf/latency.py``), so a change
of operation order that would move a plan or estimate byte fails here first."""

import itertools
import math
from dataclasses import replace

import pytest

from planner.errors import InputError
from planner.perf import ParallelLayout, memory_per_stage
from planner.profiles import list_models
from planner.profiles.params import (
    attention_params,
    gated_ffn_params,
    kv_elements_per_token_per_layer,
    kv_heads_per_rank,
    kv_per_sequence,
)

MODELS = list_models()
TPS = (1, 2, 4, 8, 16)


# -- the replaced copies, verbatim ----------------------------------------------------------------
def old_attention_params(att, hidden_size):  # profiles/params.py
    H, nh = hidden_size, att.num_heads
    if att.kind == "mla":
        qk_dim = att.qk_nope_head_dim + att.qk_rope_head_dim
        if att.q_lora_rank:
            q = H * att.q_lora_rank + att.q_lora_rank + att.q_lora_rank * nh * qk_dim
            q_bias = att.q_lora_rank
        else:
            q = H * nh * qk_dim
            q_bias = nh * qk_dim
        kv_a = att.kv_lora_rank + att.qk_rope_head_dim
        kv = H * kv_a + att.kv_lora_rank + att.kv_lora_rank * nh * (att.qk_nope_head_dim + att.v_head_dim)
        o_in = nh * att.v_head_dim
        params = q + kv + o_in * H
        if att.qkv_bias:
            params += q_bias + kv_a
    else:
        d, nkv = att.head_dim, att.num_kv_heads
        o_in = nh * d
        params = H * nh * d + 2 * H * nkv * d + o_in * H
        if att.qkv_bias:
            params += nh * d + 2 * nkv * d
        if att.qk_norm == "per_head":
            params += 2 * d
        elif att.qk_norm == "full":
            params += (nh + nkv) * d
    if att.o_bias:
        params += H
    if att.sinks:
        params += nh
    return params


def old_attention_params_per_rank(att, H, tp):  # perf/memory.py
    nh = att.num_heads // tp
    if att.kind == "mla":
        qk = att.qk_nope_head_dim + att.qk_rope_head_dim
        kv_a = att.kv_lora_rank + att.qk_rope_head_dim
        if att.q_lora_rank:
            q = H * att.q_lora_rank + att.q_lora_rank + att.q_lora_rank * nh * qk
            q_bias = att.q_lora_rank
        else:
            q = H * nh * qk
            q_bias = nh * qk
        kv = H * kv_a + att.kv_lora_rank + att.kv_lora_rank * nh * (att.qk_nope_head_dim + att.v_head_dim)
        params = q + kv + nh * att.v_head_dim * H
        if att.qkv_bias:
            params += q_bias + kv_a
    else:
        d, kv_heads = att.head_dim, att.num_kv_heads // min(tp, att.num_kv_heads)
        params = 2 * H * nh * d + 2 * H * kv_heads * d
        if att.qkv_bias:
            params += nh * d + 2 * kv_heads * d
        if att.qk_norm == "per_head":
            params += 2 * d
        elif att.qk_norm == "full":
            params += (att.num_heads + att.num_kv_heads) * d
    if att.o_bias:
        params += H
    if att.sinks:
        params += nh
    return params


def old_kv_elements_per_token_per_layer(att):  # profiles/params.py
    if att.kind == "mla":
        return att.kv_lora_rank + att.qk_rope_head_dim
    return 2 * att.num_kv_heads * att.head_dim


def old_kv_elements_per_layer(att, tp):  # perf/memory.py
    if att.kind == "mla":
        return att.kv_lora_rank + att.qk_rope_head_dim
    return 2 * att.head_dim * (att.num_kv_heads // min(tp, att.num_kv_heads))


def old_expert_params(hidden_size, intermediate_size, with_bias):  # profiles/params.py
    params = 3 * hidden_size * intermediate_size
    if with_bias:
        params += 2 * intermediate_size + hidden_size
    return params


def old_expert_per_moe_tp_rank(model, moe_tp):  # perf/memory.py _stages
    H = model.hidden_size
    expert = 3 * H * model.moe_intermediate_size // moe_tp
    if model.expert_bias:
        expert += 2 * model.moe_intermediate_size // moe_tp + H
    return expert


def old_model_kv_bytes_per_sequence(model, context_tokens, dtype_bytes):  # profiles/specs.py
    per_layer = old_kv_elements_per_token_per_layer(model.attention)
    tokens = 0
    for layer in range(model.num_hidden_layers):
        window = model.attention.window_tokens(layer)
        tokens += context_tokens if window is None else min(context_tokens, window)
    return math.ceil(per_layer * tokens * dtype_bytes)


def old_breakdown_kv_bytes_per_sequence(mem, context):  # perf/estimate.py and MemoryBreakdown.sequences_that_fit
    per_layer = mem.kv_bytes_per_token / mem.stage_layers
    full = mem.stage_layers - mem.kv_windowed_layers
    windowed = min(context, mem.kv_window_tokens or 0) * mem.kv_windowed_layers
    return per_layer * (full * context + windowed)


# -- attention variants beyond the shipped models: every flag of the formula ---------------------
def _attention_variants(att):
    flags = itertools.product((False, True), (False, True), (False, True), ("none", "per_head", "full"))
    for qkv_bias, o_bias, sinks, qk_norm in flags:
        yield replace(att, qkv_bias=qkv_bias, o_bias=o_bias, sinks=sinks, qk_norm=qk_norm)
        if att.kind == "mla":
            yield replace(att, q_lora_rank=None, qkv_bias=qkv_bias, o_bias=o_bias, sinks=sinks)


def _tps(att):
    return [tp for tp in TPS if att.num_heads % tp == 0]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.id)
def test_attention_params_is_both_copies(model):
    H = model.hidden_size
    for att in _attention_variants(model.attention):
        assert attention_params(att, H) == old_attention_params(att, H)
        for tp in _tps(att):
            assert attention_params(att, H, tp) == old_attention_params_per_rank(att, H, tp)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.id)
def test_kv_elements_is_both_copies(model):
    att = model.attention
    assert kv_elements_per_token_per_layer(att) == old_kv_elements_per_token_per_layer(att)
    for tp in _tps(att):
        assert kv_elements_per_token_per_layer(att, tp) == old_kv_elements_per_layer(att, tp)
        if att.kind == "gqa":  # latency.py's max(1, ...) never bound
            assert kv_heads_per_rank(att, tp) == max(1, att.num_kv_heads // min(tp, att.num_kv_heads))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.id)
def test_gated_ffn_params_is_every_copy(model):
    H = model.hidden_size
    for bias in (False, True):
        assert gated_ffn_params(H, model.moe_intermediate_size, with_bias=bias) == old_expert_params(
            H, model.moe_intermediate_size, bias
        )
    for moe_tp in (1, 2, 4, 8):
        if model.moe_intermediate_size % moe_tp == 0:
            got = gated_ffn_params(H, model.moe_intermediate_size, with_bias=model.expert_bias, tp=moe_tp)
            assert got == old_expert_per_moe_tp_rank(model, moe_tp)
    # dense FFN and shared experts: (layers x 3 H I) // tp before, layers x (3 H I // tp) now; equal
    # wherever ParallelLayout.validate lets the layout through (tp divides the width)
    for tp in TPS:
        for width in (model.dense_intermediate_size or 0, model.shared_expert_intermediate_size):
            if width % tp == 0:
                for layers in (0, 1, 7, model.num_hidden_layers):
                    assert layers * gated_ffn_params(H, width, tp=tp) == layers * 3 * H * width // tp


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.id)
def test_model_kv_bytes_per_sequence_is_the_old_loop(model):
    for context, dtype_bytes in itertools.product((1, 100, 127, 128, 129, 4096, 131_072), (2, 1, 0.5, 1.5, 0.1, 2.2)):
        assert model.kv_bytes_per_sequence(context, dtype_bytes) == old_model_kv_bytes_per_sequence(
            model, context, dtype_bytes
        )
    layers = range(model.num_hidden_layers)
    old_count = sum(1 for i in layers if model.attention.window_tokens(i) is not None)
    assert model.attention.windowed_layers(layers) == old_count


def _breakdowns():
    for model, tp, pp in itertools.product(MODELS, (1, 2, 4, 8), (1, 2)):
        for kv_cache in ("bf16", "fp8", "fp32"):
            layout = ParallelLayout(tp=tp, pp=pp, ep=tp)
            try:
                yield from memory_per_stage(model, "h200", layout, precision={"kv_cache": kv_cache})
            except InputError:
                continue


def test_breakdown_kv_bytes_per_sequence_is_the_old_expression():
    count = 0
    for mem in _breakdowns():
        for context in (1, 64, 128, 129, 1000, 2176, 32_768):
            new = mem.kv_bytes_per_sequence(context)
            old = old_breakdown_kv_bytes_per_sequence(mem, context)
            assert new == old and type(new) is type(old)
            fit = max(0, math.floor(mem.kv_cache_bytes / old))
            assert mem.sequences_that_fit(context) == fit
        count += 1
    assert count > 50


def test_kv_per_sequence_caps_windowed_layers():
    assert kv_per_sequence(10, 100, layers=4, windowed_layers=2, window_tokens=16) == 10 * (2 * 100 + 2 * 16)
    assert kv_per_sequence(10, 8, layers=4, windowed_layers=2, window_tokens=16) == 10 * 4 * 8
    assert kv_per_sequence(2.5, 100, layers=4, windowed_layers=0, window_tokens=None) == 2.5 * 400
