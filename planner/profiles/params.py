"""Parameter-count formulas of a decoder-only MoE transformer (private helper of ``profiles``).

What one model holds, in parameters (H hidden size, V vocabulary, E routed experts, I expert
width, I_d dense FFN width, I_s total shared-expert width; every norm is an RMSNorm with a weight
vector only)::

    expert        = 3 H I                       (gate, up, down; + 2 I + H biases if expert_bias)
    attention GQA = H n_h d + 2 H n_kv d + n_h d H
                    (+ n_h d + 2 n_kv d q/k/v biases, + H o bias, + n_h sinks,
                     + 2 d per-head q/k norms or + (n_h + n_kv) d full-width q/k norms)
    attention MLA = q: H q_r + q_r + q_r n_h (d_nope + d_rope)   (or H n_h (d_nope + d_rope) without q LoRA)
                    kv: H (kv_r + d_rope) + kv_r + kv_r n_h (d_nope + d_v)
                    o: n_h d_v H
    dense layer   = attention + 2 H + 3 H I_d
    MoE layer     = attention + 2 H + E H (router) + E (router bias) + 3 H I_s (+ H shared gate) + E expert
    embeddings    = V H (+ V H lm_head unless tied) + H (final norm)

These terms reproduce the meta-device counts of transformers 5.23.0 for all shipped models
within 0.03 % (``tests/test_profiles.py``). Multi-token-prediction modules are not counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from planner.profiles import AttentionSpec, ModelArch

__all__ = [
    "expert_params",
    "attention_params",
    "dense_layer_params",
    "moe_layer_nonexpert_params",
    "embedding_params",
    "kv_elements_per_token_per_layer",
]


def expert_params(hidden_size: int, intermediate_size: int, with_bias: bool) -> int:
    """Parameters of one gated (SwiGLU) expert: gate, up and down projections (+ their biases)."""
    params = 3 * hidden_size * intermediate_size
    if with_bias:
        params += 2 * intermediate_size + hidden_size
    return params


def attention_params(att: AttentionSpec, hidden_size: int) -> int:
    """Parameters of one attention block (projections, biases, q/k norms, sinks)."""
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
        if att.qkv_bias:  # HF attention_bias puts biases on q_a/q and kv_a projections
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


def dense_layer_params(model: ModelArch) -> int:
    """Parameters of one dense decoder layer: attention, two norms, dense FFN (0 FFN if none)."""
    H = model.hidden_size
    ffn = 3 * H * model.dense_intermediate_size if model.dense_intermediate_size else 0
    return attention_params(model.attention, H) + 2 * H + ffn


def moe_layer_nonexpert_params(model: ModelArch) -> int:
    """Parameters of one MoE layer except its routed experts: attention, norms, router, shared experts."""
    H, E = model.hidden_size, model.num_routed_experts
    params = attention_params(model.attention, H) + 2 * H + E * H
    if model.router_bias:
        params += E
    params += 3 * H * model.shared_expert_intermediate_size
    if model.shared_expert_gate:
        params += H
    return params


def embedding_params(model: ModelArch) -> int:
    """Input embeddings, lm_head (unless tied) and the final norm."""
    table = model.vocab_size * model.hidden_size
    return table * (1 if model.tie_word_embeddings else 2) + model.hidden_size


def kv_elements_per_token_per_layer(att: AttentionSpec) -> int:
    """KV-cache elements one token adds in one layer: MLA latent + rope key, or K and V of every KV head."""
    if att.kind == "mla":
        return att.kv_lora_rank + att.qk_rope_head_dim
    return 2 * att.num_kv_heads * att.head_dim
