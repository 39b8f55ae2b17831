"""Parameter-count and KV-cache formulas of a decoder-only MoE transformer, one function per formula.

What one model holds, in parameters (H hidden size, V vocabulary, E routed experts, I expert
width, I_d dense FFN width, I_s total shared-expert width; every norm is an RMSNorm with a weight
vector only)::

    gated FFN     = 3 H I                       (gate, up, down; + 2 I + H biases if expert_bias)
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

Tensor parallelism (``tp`` ranks; ``tp = 1`` gives the whole tensor): the gated FFN splits its
width (gate/up by columns, down by rows; the down bias is replicated); GQA splits the query heads
and the KV heads up to ``n_kv`` (one KV head per rank, replicated, beyond -- vLLM / SGLang
``QKVParallelLinear``); MLA splits ``q_b``, ``kv_b`` and ``o`` by heads and replicates the latent
down-projections ``q_a``, ``kv_a`` and their norms, as SGLang's and vLLM's DeepSeek modelling code
do. Output biases and full-width q/k norms are replicated; sinks split with the heads.

KV cache per token and layer: MLA ``kv_r + d_rope`` on every rank (the latent is not split: vLLM
``ModelConfig.get_num_kv_heads`` returns 1 for MLA, "during decode it becomes MQA"), GQA ``2 d``
per KV head of the rank. A
sliding-window layer keeps at most ``window`` tokens of a sequence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from planner.profiles import AttentionSpec, ModelArch

__all__ = [
    "gated_ffn_params",
    "kv_heads_per_rank",
    "attention_params",
    "dense_layer_params",
    "moe_layer_nonexpert_params",
    "embedding_params",
    "kv_elements_per_token_per_layer",
    "kv_per_sequence",
]


def gated_ffn_params(hidden_size: int, intermediate_size: int, *, with_bias: bool = False, tp: int = 1) -> int:
    """Parameters of one gated (SwiGLU) FFN -- a routed expert, the shared experts or a dense FFN --
    on one of ``tp`` ranks: gate, up and down projections (+ their biases).

    >>> gated_ffn_params(4096, 14336), gated_ffn_params(4096, 14336, tp=2) * 2
    (176160768, 176160768)
    """
    params = 3 * hidden_size * intermediate_size // tp
    if with_bias:  # gate and up biases split with the width, the down bias is whole on every rank
        params += 2 * intermediate_size // tp + hidden_size
    return params


def kv_heads_per_rank(att: AttentionSpec, tp: int = 1) -> int:
    """GQA key/value heads one of ``tp`` ranks holds: split up to ``num_kv_heads``, then one each."""
    return att.num_kv_heads // min(tp, att.num_kv_heads)


def attention_params(att: AttentionSpec, hidden_size: int, tp: int = 1) -> int:
    """Parameters of one attention block (projections, biases, q/k norms, sinks) on one of ``tp`` ranks."""
    H, nh = hidden_size, att.num_heads // tp
    if att.kind == "mla":
        qk = att.qk_nope_head_dim + att.qk_rope_head_dim
        kv_a = att.kv_lora_rank + att.qk_rope_head_dim
        if att.q_lora_rank:  # q_a + its norm replicated, q_b split by heads
            q = H * att.q_lora_rank + att.q_lora_rank + att.q_lora_rank * nh * qk
            q_bias = att.q_lora_rank
        else:
            q = H * nh * qk
            q_bias = nh * qk
        kv = H * kv_a + att.kv_lora_rank + att.kv_lora_rank * nh * (att.qk_nope_head_dim + att.v_head_dim)
        params = q + kv + nh * att.v_head_dim * H
        if att.qkv_bias:  # HF attention_bias puts biases on q_a/q and kv_a projections
            params += q_bias + kv_a
    else:
        d, kv_heads = att.head_dim, kv_heads_per_rank(att, tp)
        params = 2 * H * nh * d + 2 * H * kv_heads * d  # q and o, k and v
        if att.qkv_bias:
            params += nh * d + 2 * kv_heads * d
        if att.qk_norm == "per_head":
            params += 2 * d
        elif att.qk_norm == "full":  # full-width q/k norms: vLLM all-gathers q, k and keeps them whole
            params += (att.num_heads + att.num_kv_heads) * d
    if att.o_bias:
        params += H
    if att.sinks:
        params += nh
    return params


def dense_layer_params(model: ModelArch) -> int:
    """Parameters of one dense decoder layer: attention, two norms, dense FFN (0 FFN if none)."""
    H = model.hidden_size
    return attention_params(model.attention, H) + 2 * H + gated_ffn_params(H, model.dense_intermediate_size or 0)


def moe_layer_nonexpert_params(model: ModelArch) -> int:
    """Parameters of one MoE layer except its routed experts: attention, norms, router, shared experts."""
    H, E = model.hidden_size, model.num_routed_experts
    params = attention_params(model.attention, H) + 2 * H + E * H
    if model.router_bias:
        params += E
    params += gated_ffn_params(H, model.shared_expert_intermediate_size)
    if model.shared_expert_gate:
        params += H
    return params


def embedding_params(model: ModelArch) -> int:
    """Input embeddings, lm_head (unless tied) and the final norm."""
    table = model.vocab_size * model.hidden_size
    return table * (1 if model.tie_word_embeddings else 2) + model.hidden_size


def kv_elements_per_token_per_layer(att: AttentionSpec, tp: int = 1) -> int:
    """KV-cache elements one token adds in one layer on one of ``tp`` ranks: the MLA latent and rope
    key (whole on every rank), or K and V of every KV head the rank holds."""
    if att.kind == "mla":
        return att.kv_lora_rank + att.qk_rope_head_dim
    return 2 * att.head_dim * kv_heads_per_rank(att, tp)


def kv_per_sequence(per_token_per_layer, context_tokens: int, *, layers: int, windowed_layers: int,
                    window_tokens: int | None):  # fmt: skip
    """KV cache of one sequence of ``context_tokens`` tokens over ``layers`` layers, of which
    ``windowed_layers`` keep at most ``window_tokens`` tokens; in the unit of ``per_token_per_layer``
    (elements or bytes).

    >>> kv_per_sequence(64, 1000, layers=36, windowed_layers=18, window_tokens=128)
    1299456
    """
    full = layers - windowed_layers
    windowed = min(context_tokens, window_tokens or 0) * windowed_layers
    return per_token_per_layer * (full * context_tokens + windowed)
