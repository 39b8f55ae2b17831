"""Profile dataclasses: one GPU type (:class:`GpuSpec`), one attention block (:class:`AttentionSpec`)
and one MoE model architecture (:class:`ModelArch`), in SI units. Parameter and KV-cache formulas live in
:mod:`planner.profiles.params`, number formats in :mod:`planner.profiles.precision`; the YAML schema that
builds these objects in :mod:`planner.profiles.schema`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from planner.profiles import params
from planner.profiles.precision import TENSOR_TYPES, Precision
from planner.profiles.schema import check_model

__all__ = ["GpuSpec", "AttentionSpec", "ModelArch"]


@dataclass(frozen=True)
class GpuSpec:
    """One GPU type in SI units; bandwidths are per GPU (see ``profiles/README.md``).

    Dense tensor-core peaks, no 2:4 sparsity, one per tensor-core type; None where the GPU has no
    such tensor cores (a GEMM mode that needs them falls back, :mod:`planner.profiles.precision`).
    """

    id: str
    names: tuple[str, ...]
    vendor: str
    memory_bytes: float
    hbm_bytes_per_s: float
    bf16_flops_per_s: float  # dense; the T4 profile holds its FP16 figure (no BF16)
    fp8_flops_per_s: float | None  # None: no FP8 support
    intra_node_bytes_per_s: float  # NVLink / Infinity Fabric total; PCIe-only cards: the host link
    inter_node_bytes_per_s: float  # NIC per GPU, an assumption stated in the YAML
    host_link_bytes_per_s: float
    gpus_per_node: int
    price_per_hour_usd: float  # indicative only; pass your own
    int8_ops_per_s: float | None = None  # None: no INT8 tensor cores
    fp4_flops_per_s: float | None = None  # None: no FP4 tensor cores (everything before Blackwell)
    provenance: dict = field(default_factory=dict, compare=False)

    def tensor_peak_per_s(self, tensor_type: str) -> float | None:
        """Dense peak (FLOP/s, INT8: OP/s) of the ``bf16``, ``fp8``, ``int8`` or ``fp4`` tensor cores;
        None when the GPU has none of that type.

        >>> from planner.profiles import get_gpu
        >>> get_gpu("h100").tensor_peak_per_s("fp8"), get_gpu("h100").tensor_peak_per_s("fp4")
        (1978900000000000.0, None)
        """
        if tensor_type not in TENSOR_TYPES:
            raise ValueError(f"unknown tensor type {tensor_type!r}; known: {', '.join(TENSOR_TYPES)}")
        return {
            "bf16": self.bf16_flops_per_s,
            "fp8": self.fp8_flops_per_s,
            "int8": self.int8_ops_per_s,
            "fp4": self.fp4_flops_per_s,
        }[tensor_type]


@dataclass(frozen=True)
class AttentionSpec:
    """Attention block of one layer. ``kind`` "mla" uses the LoRA/rope fields, "gqa" the head fields.

    ``qk_norm`` is "none", "per_head" (RMSNorm over head_dim, Qwen3) or "full" (over the whole q/k
    projection, OLMoE). With ``sliding_window`` set, layer ``i`` uses the window unless
    ``sliding_window_pattern`` is set and ``(i + 1) % sliding_window_pattern == 0`` (gpt-oss: 2).
    """

    kind: str
    num_heads: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_nope_head_dim: int | None = None
    qk_rope_head_dim: int | None = None
    v_head_dim: int | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: str = "none"
    sinks: bool = False
    sliding_window: int | None = None
    sliding_window_pattern: int | None = None

    def window_tokens(self, layer: int) -> int | None:
        """Attention window of hidden layer ``layer`` in tokens (None: full attention)."""
        if self.sliding_window is None:
            return None
        if self.sliding_window_pattern and (layer + 1) % self.sliding_window_pattern == 0:
            return None
        return self.sliding_window

    def windowed_layers(self, layers: Iterable[int]) -> int:
        """How many of the hidden layers ``layers`` use the sliding window."""
        return sum(1 for layer in layers if self.window_tokens(layer) is not None)


@dataclass(frozen=True)
class ModelArch:
    """Architecture of one MoE model: layer pattern, widths, experts, attention, native precision.

    Layer ``i`` is MoE iff ``i >= first_dense_layers``, ``i % moe_layer_freq == 0`` (the DeepSeek
    modelling code's rule) and ``i not in mlp_only_layers``; every other layer has a dense FFN of
    ``dense_intermediate_size``. ``shared_expert_intermediate_size`` is the total width of all
    shared experts (0 when none). Parameter formulas: :mod:`planner.profiles.params`. ``precision``
    is the checkpoint's native number format per component (:class:`~planner.profiles.precision.Precision`);
    the byte sizes below use it.
    """

    id: str
    names: tuple[str, ...]
    hf_model_type: str | None
    num_hidden_layers: int
    first_dense_layers: int
    moe_layer_freq: int
    mlp_only_layers: tuple[int, ...]
    hidden_size: int
    moe_intermediate_size: int
    dense_intermediate_size: int | None
    num_routed_experts: int
    num_shared_experts: int
    shared_expert_intermediate_size: int
    shared_expert_gate: bool
    top_k: int
    num_expert_groups: int | None
    topk_groups: int | None
    router_bias: bool  # a per-expert router bias (gpt-oss) or DeepSeek-V3 e_score_correction_bias
    expert_bias: bool  # biases inside every expert (gpt-oss)
    attention: AttentionSpec
    vocab_size: int
    tie_word_embeddings: bool
    precision: Precision
    max_position_embeddings: int | None = None
    reference_total_params: float | None = None
    provenance: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_model(self)

    @property
    def moe_layers(self) -> tuple[int, ...]:
        """Hidden-layer indices whose FFN is a routed-expert block."""
        skip = set(self.mlp_only_layers)
        return tuple(
            i
            for i in range(self.first_dense_layers, self.num_hidden_layers)
            if i % self.moe_layer_freq == 0 and i not in skip
        )

    @property
    def dense_layers(self) -> tuple[int, ...]:
        """Hidden-layer indices with a dense FFN."""
        moe = set(self.moe_layers)
        return tuple(i for i in range(self.num_hidden_layers) if i not in moe)

    @property
    def params_per_expert(self) -> int:
        """Parameters of one routed expert (3 x hidden x moe_intermediate, + biases if ``expert_bias``)."""
        return params.gated_ffn_params(self.hidden_size, self.moe_intermediate_size, with_bias=self.expert_bias)

    @property
    def expert_bias_params(self) -> int:
        """Bias parameters of one routed expert (0 without ``expert_bias``); the rest are weight matrices."""
        return self.params_per_expert - params.gated_ffn_params(self.hidden_size, self.moe_intermediate_size)

    @property
    def bytes_per_expert(self) -> int:
        """Bytes of one routed expert in the native precision: weight matrices in the ``experts`` format,
        scales included, and biases in the ``base`` format (rounded up to a byte). What one expert copy
        costs on a GPU and what a migration moves.

        >>> from planner.profiles import get_model
        >>> get_model("deepseek-v3").bytes_per_expert  # 44,040,192 FP8 bytes + 3 x 56 x 16 fp32 block scales
        44050944
        """
        return self.expert_bytes(self.precision)

    def expert_bytes(self, precision: Precision) -> int:
        """Bytes of one routed expert in ``precision`` (see :attr:`bytes_per_expert`)."""
        bias = self.expert_bias_params
        matrices = self.params_per_expert - bias
        return math.ceil(precision.experts.bytes_for(matrices) + precision.base.bytes_for(bias))

    @property
    def attention_params_per_layer(self) -> int:
        """Parameters of one layer's attention block."""
        return params.attention_params(self.attention, self.hidden_size)

    @property
    def dense_layer_params(self) -> int:
        """Parameters of one dense layer: attention, norms and dense FFN."""
        return params.dense_layer_params(self)

    @property
    def moe_layer_nonexpert_params(self) -> int:
        """Parameters of one MoE layer except routed experts: attention, norms, router, shared experts."""
        return params.moe_layer_nonexpert_params(self)

    @property
    def bytes_per_dense_layer(self) -> int:
        """Bytes of one dense layer in the native precision: attention and FFN in the ``attention``
        format, the two norms in the ``base`` format."""
        norms = 2 * self.hidden_size
        p = self.precision
        return math.ceil(p.attention.bytes_for(self.dense_layer_params - norms) + p.base.bytes_for(norms))

    @property
    def embedding_params(self) -> int:
        """Input embeddings, lm_head (unless tied) and final norm."""
        return params.embedding_params(self)

    def total_params(self) -> int:
        """All parameters (multi-token-prediction modules excluded).

        >>> from planner.profiles import get_model
        >>> round(get_model("mixtral-8x7b").total_params() / 1e9, 2)
        46.7
        """
        n_moe = len(self.moe_layers)
        moe = n_moe * (self.moe_layer_nonexpert_params + self.num_routed_experts * self.params_per_expert)
        dense = (self.num_hidden_layers - n_moe) * self.dense_layer_params
        return moe + dense + self.embedding_params

    def weight_bytes(self, precision: Precision | None = None) -> float:
        """Bytes of every weight (multi-token-prediction modules excluded) in ``precision``, default the
        native one: attention, dense FFN and shared experts in the ``attention`` format, routed-expert
        matrices in the ``experts`` format, everything else (embeddings, lm_head, norms, router,
        biases) in the ``base`` format. The size of the checkpoint, scales included.

        >>> from planner.profiles import get_model
        >>> round(get_model("gpt-oss-120b").weight_bytes() / 2**30, 1)  # model card: 60.8 GiB
        60.8
        """
        p = self.precision if precision is None else precision
        H, E, n_moe = self.hidden_size, self.num_routed_experts, len(self.moe_layers)
        n_dense = self.num_hidden_layers - n_moe
        attention = self.num_hidden_layers * self.attention_params_per_layer
        ffn = n_dense * params.gated_ffn_params(H, self.dense_intermediate_size or 0)
        ffn += n_moe * params.gated_ffn_params(H, self.shared_expert_intermediate_size)
        experts = n_moe * E * (self.params_per_expert - self.expert_bias_params)
        rest = self.total_params() - attention - ffn - experts
        return p.attention.bytes_for(attention + ffn) + p.experts.bytes_for(experts) + p.base.bytes_for(rest)

    def active_params(self) -> int:
        """Parameters one token computes with: all but the unchosen routed experts and the input
        embedding table (a lookup). The gpt-oss model card counts active parameters this way."""
        idle = len(self.moe_layers) * (self.num_routed_experts - self.top_k) * self.params_per_expert
        return self.total_params() - idle - self.vocab_size * self.hidden_size

    def kv_bytes_per_token(self, dtype_bytes: float | None = None) -> int:
        """KV-cache bytes per token over all layers (windows ignored: an upper bound for gpt-oss), at
        ``dtype_bytes`` per element, default the native ``kv_cache`` format's.

        >>> from planner.profiles import get_model
        >>> get_model("deepseek-v3").kv_bytes_per_token()  # (512 + 64) x 2 B x 61 layers
        70272
        """
        per_layer = params.kv_elements_per_token_per_layer(self.attention)
        b = self.precision.kv_cache.bytes_per_element if dtype_bytes is None else dtype_bytes
        return math.ceil(per_layer * self.num_hidden_layers * b)

    def kv_bytes_per_sequence(self, context_tokens: int, dtype_bytes: float | None = None) -> int:
        """KV-cache bytes of one sequence of ``context_tokens`` tokens, sliding-window layers capped
        (``dtype_bytes`` per element, default the native ``kv_cache`` format's)."""
        per_layer = params.kv_elements_per_token_per_layer(self.attention)
        layers = self.num_hidden_layers
        elements = params.kv_per_sequence(
            per_layer,
            context_tokens,
            layers=layers,
            windowed_layers=self.attention.windowed_layers(range(layers)),
            window_tokens=self.attention.sliding_window,
        )
        return math.ceil(elements * (self.precision.kv_cache.bytes_per_element if dtype_bytes is None else dtype_bytes))
