"""The built-in tiny Hugging Face MoE models: what each one is, and the name a model was loaded by.

Tiny models (fp32, 4 layers, vocabulary 1,024, ``experts_implementation="eager"``), built by
:func:`planner.runtime.hf.models.load_model`:

* ``qwen3-moe-tiny``: Qwen3MoeForCausalLM, hidden 128, 64 experts of width 256, top-8, softmax
  with ``norm_topk_prob``; 25.7 M parameters (103 MB).
* ``mixtral-tiny``: MixtralForCausalLM, hidden 64, 8 experts of width 128, top-2, softmax
  renormalised; 0.97 M parameters.
* ``olmoe-tiny``: OlmoeForCausalLM, hidden 64, 16 experts of width 128, top-2, softmax not
  renormalised; 1.77 M parameters.
* ``deepseek-v3-tiny``: DeepseekV3ForCausalLM, hidden 64, layer 0 dense (``first_k_dense_replace``
  1), 16 routed experts of width 128 in 4 groups (keep 2) + 1 shared, top-2, sigmoid scores with
  ``e_score_correction_bias``, ``routed_scaling_factor`` 2.5; 1.50 M parameters.

``qwen3-moe-tiny`` has OLMoE-1B-7B's expert count and top-k (64, top-8; ``profiles/models/
olmoe-1b-7b.yaml``) with Qwen3's ``norm_topk_prob=True``. ``qwen3-moe-tiny`` and ``mixtral-tiny``
have their routers fitted to measured loads (:mod:`planner.runtime.hf.skew`); the other two keep
their random routers.

Plain data and attribute access: no torch or transformers import here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TinySpec", "TINY_MODELS", "model_name", "set_model_name"]

_NAME_ATTR = "_moeplan_name"


@dataclass(frozen=True)
class TinySpec:
    """One built-in tiny model: transformers class names, config keywords and the skew it is fitted to.

    ``skew`` is ``(family, source_layers)``: the built-in loads ``builtin:<family>-<domain>`` summed
    over five domains, and for every MoE layer of the tiny model the measured layer its target
    comes from; ``None`` keeps the random router.
    """

    name: str
    model_class: str
    config_class: str
    config: Mapping[str, Any]
    skew: tuple[str, tuple[int, ...]] | None = None
    notes: str = ""


_COMMON = {
    "vocab_size": 1024,
    "num_hidden_layers": 4,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
}

#: the built-in tiny models by name
TINY_MODELS: dict[str, TinySpec] = {
    spec.name: spec
    for spec in (
        TinySpec(
            "qwen3-moe-tiny", "Qwen3MoeForCausalLM", "Qwen3MoeConfig",
            {**_COMMON, "hidden_size": 128, "intermediate_size": 256, "moe_intermediate_size": 256,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "num_experts": 64,
             "num_experts_per_tok": 8, "norm_topk_prob": True},
            skew=("olmoe", (0, 7, 7, 15)),
            notes="OLMoE's MoE shape (64 experts, top-8) in Qwen3-MoE's architecture",
        ),
        TinySpec(
            "mixtral-tiny", "MixtralForCausalLM", "MixtralConfig",
            {**_COMMON, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16, "num_local_experts": 8, "num_experts_per_tok": 2,
             "sliding_window": None},
            skew=("mistral", (0, 7, 15, 15)),
            notes="Mixtral-8x7B's MoE shape (8 experts, top-2)",
        ),
        TinySpec(
            "olmoe-tiny", "OlmoeForCausalLM", "OlmoeConfig",
            {**_COMMON, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
             "num_key_value_heads": 4, "num_experts": 16, "num_experts_per_tok": 2, "norm_topk_prob": False},
            notes="random router",
        ),
        TinySpec(
            "deepseek-v3-tiny", "DeepseekV3ForCausalLM", "DeepseekV3Config",
            {**_COMMON, "hidden_size": 64, "intermediate_size": 256, "moe_intermediate_size": 128,
             "num_attention_heads": 4, "num_key_value_heads": 4, "n_routed_experts": 16, "n_shared_experts": 1,
             "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2, "first_k_dense_replace": 1,
             "routed_scaling_factor": 2.5, "norm_topk_prob": True, "q_lora_rank": 32, "kv_lora_rank": 32,
             "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16},
            notes="random router; layer 0 dense",
        ),
    )
}


def model_name(model) -> str:
    """The name a model was loaded by (built-in name or directory), else its class name."""
    return getattr(model, _NAME_ATTR, None) or getattr(model.config, "_name_or_path", "") or type(model).__name__


def set_model_name(model, name: str) -> None:
    """Record the name ``model`` was loaded by (what :func:`model_name` returns)."""
    setattr(model, _NAME_ATTR, name)
