"""Map a Hugging Face ``config.json`` onto the fields of a model profile (private helper of ``profiles``).

Only what is on disk is read; there is no network access. Each supported ``model_type`` is mapped
the way the matching transformers modelling code builds its layers:

- ``deepseek_v2`` / ``deepseek_v3`` / ``kimi_k2``: MLA attention; layer ``i`` is MoE iff
  ``i >= first_k_dense_replace and i % moe_layer_freq == 0``; shared experts are
  ``n_shared_experts`` experts of ``moe_intermediate_size``; V3 routers carry
  ``e_score_correction_bias``; ``topk_method == "greedy"`` means no group-limited routing.
- ``qwen2_moe`` / ``qwen3_moe``: layer ``i`` is MoE iff ``i not in mlp_only_layers and
  (i + 1) % decoder_sparse_step == 0``; Qwen2-MoE has q/k/v biases and one gated shared expert of
  ``shared_expert_intermediate_size``; Qwen3-MoE normalises q and k per head.
- ``mixtral`` / ``olmoe`` / ``gpt_oss``: every layer MoE, experts of ``intermediate_size``; OLMoE
  normalises q and k over the full projection width; gpt-oss has router and expert biases,
  attention sinks and sliding-window layers given by ``layer_types``.

The native precision (:mod:`planner.profiles.precision`) comes from ``torch_dtype`` (or ``dtype``) and
``quantization_config``: ``quant_method: fp8`` quantises every linear layer, with 128 x 128 block
scales when ``weight_block_size`` is ``[128, 128]`` (DeepSeek-V3, Kimi-K2, Qwen3-FP8) and per tensor
without it, activations FP8; ``mxfp4`` quantises the routed experts only (gpt-oss lists attention,
router, embeddings and lm_head in ``modules_to_not_convert``), activations stay in the model dtype;
``awq`` with 4 bits in groups of 128 quantises every linear layer (``int4-awq``). Any other method is
counted at the model dtype, and the profile's provenance says so.
"""

from __future__ import annotations

from typing import Any, Mapping

from planner.errors import InputError

__all__ = ["fields_from_hf_config", "SUPPORTED_MODEL_TYPES"]

_FAMILY = {
    "deepseek_v2": "deepseek",
    "deepseek_v3": "deepseek",
    "kimi_k2": "deepseek",
    "qwen2_moe": "qwen",
    "qwen3_moe": "qwen",
    "mixtral": "plain",
    "olmoe": "plain",
    "gpt_oss": "plain",
}
SUPPORTED_MODEL_TYPES = tuple(sorted(_FAMILY))
_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
_MISSING = object()


def _int(cfg: Mapping[str, Any], key: str, label: str, *, minimum: int = 1, default: Any = _MISSING) -> Any:
    value = cfg.get(key, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise InputError(f"{label}: missing key '{key}'")
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{label}: key '{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def _first_int(cfg: Mapping[str, Any], keys: tuple[str, ...], label: str) -> int:
    for key in keys:
        if cfg.get(key) is not None:
            return _int(cfg, key, label)
    raise InputError(f"{label}: missing key '{keys[0]}' (or {' / '.join(keys[1:])})")


def _sliding_pattern(cfg: Mapping[str, Any], num_layers: int, label: str) -> tuple[int | None, int | None]:
    """(sliding_window, sliding_window_pattern) from ``sliding_window`` and ``layer_types``."""
    window = _int(cfg, "sliding_window", label, default=None)
    layer_types = cfg.get("layer_types")
    if window is None or layer_types is None:
        return window, None
    if not isinstance(layer_types, list) or len(layer_types) != num_layers:
        raise InputError(f"{label}: key 'layer_types' must be a list of {num_layers} layer types")
    sliding = [t == "sliding_attention" for t in layer_types]
    if all(sliding):
        return window, None
    if not any(sliding):
        return None, None
    for pattern in range(2, num_layers + 1):  # layer i is full iff (i + 1) % pattern == 0
        if sliding == [(i + 1) % pattern != 0 for i in range(num_layers)]:
            return window, pattern
    raise InputError(f"{label}: key 'layer_types' has no regular sliding/full pattern (not supported)")


def _precision(cfg: Mapping[str, Any], label: str) -> tuple[dict[str, str], str]:
    """(the ``precision`` mapping, a note for the provenance) from the dtype and ``quantization_config``."""
    key = "torch_dtype" if "torch_dtype" in cfg else "dtype"
    dtype = cfg.get(key)
    if dtype is None:
        base, note = "bf16", "no torch_dtype/dtype given: assumed bfloat16"
    elif dtype in _DTYPES:
        base, note = _DTYPES[dtype], f"{key} {dtype}"
    else:
        raise InputError(f"{label}: key '{key}' must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    quant = cfg.get("quantization_config") or {}
    if not isinstance(quant, Mapping):
        raise InputError(f"{label}: key 'quantization_config' must be an object")
    method = str(quant.get("quant_method", "")).lower()
    out = {"base": base}
    if method == "fp8":
        block = quant.get("weight_block_size")
        if block is not None and list(block) != [128, 128]:
            raise InputError(f"{label}: key 'quantization_config.weight_block_size' {block!r} is not supported "
                             "(fp8-block has 128 x 128 blocks)")
        fmt = "fp8-block" if block is not None else "fp8"
        out.update(attention=fmt, experts=fmt, activations="fp8")
        note += f"; quantization_config fp8 -> {fmt} weights, fp8 activations"
    elif method == "mxfp4":
        out.update(experts="mxfp4")
        note += "; quantization_config mxfp4 -> mxfp4 routed experts"
    elif method == "awq" and quant.get("bits", quant.get("w_bit")) == 4 and \
            quant.get("group_size", quant.get("q_group_size")) == 128:  # fmt: skip
        out.update(attention="int4-awq", experts="int4-awq")
        note += "; quantization_config awq (4 bits, groups of 128) -> int4-awq weights"
    elif method:
        note += f"; quantization_config {method} not modelled (counted at {base})"
    return out, note


def fields_from_hf_config(cfg: Mapping[str, Any], label: str, default_id: str) -> dict[str, Any]:
    """Profile fields (the YAML schema of ``profiles/models``) from a parsed HF ``config.json``.

    Parameters
    ----------
    cfg : the parsed JSON object.
    label : the file name used in error messages.
    default_id : id to use when the config has no ``_name_or_path``.

    Returns
    -------
    dict
        Fields for :class:`planner.profiles.ModelArch`, not yet validated.

    Raises
    ------
    InputError
        A missing or bad key, or an unsupported ``model_type``; the message names the key and file.
    """
    model_type = cfg.get("model_type")
    if model_type is None:
        raise InputError(f"{label}: missing key 'model_type'")
    family = _FAMILY.get(model_type)
    if family is None:
        raise InputError(
            f"{label}: key 'model_type' {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    L = _int(cfg, "num_hidden_layers", label)
    H = _int(cfg, "hidden_size", label)
    nh = _int(cfg, "num_attention_heads", label)
    E = _first_int(cfg, ("n_routed_experts", "num_experts", "num_local_experts"), label)
    top_k = _first_int(cfg, ("num_experts_per_tok", "experts_per_token"), label)
    has_moe_width = cfg.get("moe_intermediate_size") is not None
    expert_width = _int(cfg, "moe_intermediate_size" if has_moe_width else "intermediate_size", label)
    attention_bias = bool(cfg.get("attention_bias", False))
    f: dict[str, Any] = {
        "hf_model_type": "deepseek_v3" if model_type == "kimi_k2" else model_type,
        "num_hidden_layers": L,
        "first_dense_layers": 0,
        "moe_layer_freq": 1,
        "mlp_only_layers": [],
        "hidden_size": H,
        "moe_intermediate_size": expert_width,
        "num_routed_experts": E,
        "num_shared_experts": 0,
        "shared_expert_intermediate_size": 0,
        "top_k": top_k,
        "router_bias": model_type in ("deepseek_v3", "kimi_k2", "gpt_oss"),
        "expert_bias": model_type == "gpt_oss",
        "vocab_size": _int(cfg, "vocab_size", label),
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "max_position_embeddings": _int(cfg, "max_position_embeddings", label, default=None),
    }
    if family == "deepseek":
        f["first_dense_layers"] = _int(cfg, "first_k_dense_replace", label, minimum=0)
        f["moe_layer_freq"] = _int(cfg, "moe_layer_freq", label, default=1)
        f["num_shared_experts"] = _int(cfg, "n_shared_experts", label, minimum=0, default=0)
        f["shared_expert_intermediate_size"] = expert_width * f["num_shared_experts"]
        if cfg.get("topk_method") != "greedy":
            f["num_expert_groups"] = _int(cfg, "n_group", label, default=None)
            f["topk_groups"] = _int(cfg, "topk_group", label, default=None)
        q_lora = _int(cfg, "q_lora_rank", label, minimum=0, default=None)
        f["attention"] = {
            "kind": "mla",
            "num_heads": nh,
            "q_lora_rank": q_lora or None,
            "kv_lora_rank": _int(cfg, "kv_lora_rank", label),
            "qk_nope_head_dim": _int(cfg, "qk_nope_head_dim", label),
            "qk_rope_head_dim": _int(cfg, "qk_rope_head_dim", label),
            "v_head_dim": _int(cfg, "v_head_dim", label),
            "qkv_bias": attention_bias,
            "o_bias": attention_bias,
        }
    else:
        head_dim = _int(cfg, "head_dim", label, default=None) or H // nh
        window, pattern = _sliding_pattern(cfg, L, label)
        if family == "qwen":
            if cfg.get("use_sliding_window"):
                raise InputError(f"{label}: key 'use_sliding_window' true is not supported (Qwen max_window_layers)")
            window, pattern = None, None
            step = _int(cfg, "decoder_sparse_step", label, default=1)
            mlp_only = cfg.get("mlp_only_layers") or []
            if not isinstance(mlp_only, list) or not all(isinstance(i, int) and 0 <= i < L for i in mlp_only):
                raise InputError(f"{label}: key 'mlp_only_layers' must be a list of layer indices in [0, {L})")
            dense = set(mlp_only) | {i for i in range(L) if (i + 1) % step != 0}
            f["mlp_only_layers"] = sorted(dense)
            if model_type == "qwen2_moe":
                shared = _int(cfg, "shared_expert_intermediate_size", label, minimum=0)
                f["num_shared_experts"] = 1 if shared else 0
                f["shared_expert_intermediate_size"] = shared
                f["shared_expert_gate"] = bool(shared)
        f["attention"] = {
            "kind": "gqa",
            "num_heads": nh,
            "num_kv_heads": _int(cfg, "num_key_value_heads", label, default=nh),
            "head_dim": head_dim,
            "qkv_bias": attention_bias or model_type == "qwen2_moe",
            "o_bias": attention_bias and model_type != "qwen2_moe",
            "qk_norm": {"qwen3_moe": "per_head", "olmoe": "full"}.get(model_type, "none"),
            "sinks": model_type == "gpt_oss",
            "sliding_window": window,
            "sliding_window_pattern": pattern,
        }
    has_dense = f["first_dense_layers"] > 0 or f["moe_layer_freq"] > 1 or f["mlp_only_layers"]
    if has_dense:
        f["dense_intermediate_size"] = _int(cfg, "intermediate_size", label)
    f["precision"], dtype_note = _precision(cfg, label)
    name = cfg.get("_name_or_path")
    f["id"] = name if isinstance(name, str) and name else default_id
    f["names"] = []
    f["provenance"] = {
        "source": label,
        "license": "unknown (user-supplied config.json)",
        "date": "",
        "notes": f"parsed from a Hugging Face config.json (model_type {model_type}); {dtype_note}",
    }
    return f
