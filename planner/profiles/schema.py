"""Field schemas and checks of the profile files (private helper of ``profiles``).

A schema maps each field to ``(check, default)``: the check converts a value or raises
``ValueError`` with the reason; a nested schema is a mapping; ``REQUIRED`` marks a field without
default. Field types and signs are checked here while parsing a file; cross-field consistency of a
model is checked by :func:`check_model`, which ``ModelArch.__post_init__`` runs.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping

import yaml

from planner.common.limits import MAX_EXPERTS, MAX_LAYERS
from planner.errors import InputError
from planner.profiles.precision import COMPONENT_ROLES, Precision, get_format

if TYPE_CHECKING:  # pragma: no cover
    from planner.profiles import ModelArch

__all__ = [
    "FieldError",
    "check_model",
    "parse",
    "load_yaml_text",
    "REQUIRED",
    "GPU_SCHEMA",
    "ATTENTION_SCHEMA",
    "PRECISION_SCHEMA",
    "MODEL_SCHEMA",
    "VARIANT_FIELDS",
    "LEGACY_WEIGHT_FORMATS",
    "model_precision",
]


class FieldError(InputError):
    """A bad field; the loader re-raises it with the file name in front."""

    def __init__(self, owner: str, field_name: str, reason: str):
        super().__init__(f"{owner}: {field_name} {reason}")
        self.field_name, self.reason = field_name, reason


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"must be a finite number, got {v!r}")
    return v


def _pos(v: Any) -> float:
    if _num(v) <= 0:
        raise ValueError(f"must be > 0, got {v!r}")
    return float(v)


def _pos_number(v: Any) -> float:
    _pos(v)
    return v  # an int stays an int (weight bytes 1 or 2)


def _nonneg(v: Any) -> float:
    if _num(v) < 0:
        raise ValueError(f"must be >= 0, got {v!r}")
    return float(v)


def _int(minimum: int, maximum: int | None = None, limit: str = "") -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"must be an integer, got {v!r}")
        if v < minimum:
            raise ValueError(f"must be >= {minimum}, got {v!r}")
        if maximum is not None and v > maximum:
            raise ValueError(f"must be <= {maximum} ({limit}, docs/limits.md), got {v!r}")
        return v

    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"must be a non-empty string, got {v!r}")
    return v


def _list_of(check: Callable[[Any], Any]) -> Callable[[Any], tuple]:
    def run(v: Any) -> tuple:
        if not isinstance(v, list):
            raise ValueError(f"must be a list, got {v!r}")
        return tuple(check(x) for x in v)

    return run


def _nullable(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else check(v)


def _one_of(*choices: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    return check


def _provenance(v: Any) -> dict:
    if not isinstance(v, Mapping):
        raise ValueError("must be a mapping {source, license, date, notes}")
    return {str(k): "" if x is None else str(x) for k, x in v.items()}  # YAML may parse dates


def _format(role: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        try:
            return get_format(v, role=role).name
        except InputError as exc:
            raise ValueError(exc.message) from None

    return check


REQUIRED = object()
Schema = Mapping[str, tuple[Any, Any]]  # field -> (check or nested schema, default)
_POS_INT, _NONNEG_INT = _int(1), _int(0)
#: counts that size per-layer and per-expert arrays: bounded before anything is allocated
_LAYER_COUNT, _LAYER_INDEX = _int(1, MAX_LAYERS, "MAX_LAYERS"), _int(0, MAX_LAYERS, "MAX_LAYERS")
_EXPERT_COUNT, _EXPERT_COUNT0 = _int(1, MAX_EXPERTS, "MAX_EXPERTS"), _int(0, MAX_EXPERTS, "MAX_EXPERTS")

GPU_SCHEMA: Schema = {
    "id": (_str, REQUIRED),
    "names": (_list_of(_str), ()),
    "vendor": (_str, REQUIRED),
    "memory_bytes": (_pos, REQUIRED),
    "hbm_bytes_per_s": (_pos, REQUIRED),
    "bf16_flops_per_s": (_pos, REQUIRED),
    "fp8_flops_per_s": (_nullable(_pos), None),
    "intra_node_bytes_per_s": (_pos, REQUIRED),
    "inter_node_bytes_per_s": (_pos, REQUIRED),
    "host_link_bytes_per_s": (_pos, REQUIRED),
    "gpus_per_node": (_POS_INT, REQUIRED),
    "price_per_hour_usd": (_nonneg, REQUIRED),
    "int8_ops_per_s": (_nullable(_pos), None),
    "fp4_flops_per_s": (_nullable(_pos), None),
    "provenance": (_provenance, {}),
}

ATTENTION_SCHEMA: Schema = {
    "kind": (_one_of("mla", "gqa"), REQUIRED),
    "num_heads": (_POS_INT, REQUIRED),
    **{
        name: (_nullable(_POS_INT), None)
        for name in ("num_kv_heads", "head_dim", "q_lora_rank", "kv_lora_rank")
        + ("qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "sliding_window")
    },
    "sliding_window_pattern": (_nullable(_int(2)), None),
    "qkv_bias": (_bool, False),
    "o_bias": (_bool, False),
    "qk_norm": (_one_of("none", "per_head", "full"), "none"),
    "sinks": (_bool, False),
}

PRECISION_SCHEMA: Schema = {name: (_format(role), None) for name, role in COMPONENT_ROLES.items()}

#: the deprecated ``weight_bytes_per_param`` shorthand -> the precision it stands for
LEGACY_WEIGHT_FORMATS: dict[float, dict[str, str]] = {
    4: {"base": "fp32"},
    2: {"base": "bf16"},
    1: {"base": "bf16", "attention": "fp8", "experts": "fp8", "activations": "fp8"},
}
#: the fields a variant (a file with ``extends``) may set; the rest is its base profile's
VARIANT_FIELDS = ("id", "names", "precision", "provenance")

MODEL_SCHEMA: Schema = {
    "id": (_str, REQUIRED),
    "names": (_list_of(_str), ()),
    "hf_model_type": (_nullable(_str), None),
    "num_hidden_layers": (_LAYER_COUNT, REQUIRED),
    "first_dense_layers": (_LAYER_INDEX, 0),
    "moe_layer_freq": (_LAYER_COUNT, 1),
    "mlp_only_layers": (_list_of(_LAYER_INDEX), ()),
    "hidden_size": (_POS_INT, REQUIRED),
    "moe_intermediate_size": (_POS_INT, REQUIRED),
    "dense_intermediate_size": (_nullable(_POS_INT), None),
    "num_routed_experts": (_EXPERT_COUNT, REQUIRED),
    "num_shared_experts": (_EXPERT_COUNT0, 0),
    "shared_expert_intermediate_size": (_NONNEG_INT, 0),
    "shared_expert_gate": (_bool, False),
    "top_k": (_EXPERT_COUNT, REQUIRED),
    "num_expert_groups": (_nullable(_EXPERT_COUNT), None),
    "topk_groups": (_nullable(_EXPERT_COUNT), None),
    "router_bias": (_bool, False),
    "expert_bias": (_bool, False),
    "attention": (ATTENTION_SCHEMA, REQUIRED),  # nested mapping
    "vocab_size": (_POS_INT, REQUIRED),
    "tie_word_embeddings": (_bool, False),
    "precision": (PRECISION_SCHEMA, None),  # nested mapping; None: BF16 throughout
    "weight_bytes_per_param": (_nullable(_pos_number), None),  # deprecated shorthand, see model_precision
    "max_position_embeddings": (_nullable(_POS_INT), None),
    "reference_total_params": (_nullable(_pos), None),
    "provenance": (_provenance, {}),
}


def parse(data: Any, schema: Schema, label: str, prefix: str = "") -> dict[str, Any]:
    """Checked and converted fields of ``data`` (defaults filled in); errors name ``label`` and the field."""
    if not isinstance(data, Mapping):
        raise InputError(f"{label}: {prefix.rstrip('.') or 'top level'} must be a mapping")
    unknown = sorted(set(map(str, data)) - set(schema))
    if unknown:
        raise InputError(f"{label}: unknown field '{prefix}{unknown[0]}' (known: {', '.join(schema)})")
    out: dict[str, Any] = {}
    for name, (check, default) in schema.items():
        if name not in data:
            if default is REQUIRED:
                raise InputError(f"{label}: missing field '{prefix}{name}'")
            out[name] = dict(default) if isinstance(default, dict) else default
        elif isinstance(check, Mapping):
            out[name] = parse(data[name], check, label, f"{prefix}{name}.")
        else:
            try:
                out[name] = check(data[name])
            except ValueError as exc:
                raise InputError(f"{label}: {prefix}{name} {exc}") from None
    return out


def model_precision(fields: dict[str, Any], label: str) -> Precision:
    """The :class:`Precision` of parsed model fields: the ``precision`` mapping (missing components take
    its ``base``), or the deprecated ``weight_bytes_per_param`` (4 FP32, 2 BF16, 1 FP8 weights and
    activations with BF16 embeddings), or BF16 throughout. Pops ``weight_bytes_per_param``."""
    legacy = fields.pop("weight_bytes_per_param", None)
    given = fields.get("precision")
    if legacy is not None:
        if given is not None:
            raise InputError(f"{label}: give precision or weight_bytes_per_param (deprecated), not both")
        if legacy not in LEGACY_WEIGHT_FORMATS:
            raise InputError(
                f"{label}: weight_bytes_per_param {legacy!r} names no format (4, 2 or 1); write precision: "
                "{attention: ..., experts: ...} instead (profiles/README.md)"
            )
        given = LEGACY_WEIGHT_FORMATS[legacy]
    return Precision(**{k: v for k, v in (given or {}).items() if v is not None})


def check_model(m: ModelArch) -> None:
    """Cross-field checks (field types and signs are checked by the loader)."""

    def bad(name: str, reason: str) -> FieldError:
        return FieldError(f"model {m.id!r}", name, reason)

    L, att = m.num_hidden_layers, m.attention
    if m.first_dense_layers > L:
        raise bad("first_dense_layers", f"must be <= num_hidden_layers ({L})")
    if any(not 0 <= i < L for i in m.mlp_only_layers):
        raise bad("mlp_only_layers", f"must hold layer indices in [0, {L})")
    if not m.moe_layers:
        raise bad("num_hidden_layers", "leaves no MoE layer (first_dense_layers / mlp_only_layers)")
    if m.dense_layers and not m.dense_intermediate_size:
        raise bad("dense_intermediate_size", f"is required: {len(m.dense_layers)} layers are dense")
    if m.top_k > m.num_routed_experts:
        raise bad("top_k", f"must be <= num_routed_experts ({m.num_routed_experts})")
    if (m.num_shared_experts > 0) != (m.shared_expert_intermediate_size > 0):
        raise bad("shared_expert_intermediate_size", "must be > 0 exactly when num_shared_experts > 0")
    if (m.num_expert_groups is None) != (m.topk_groups is None):
        raise bad("topk_groups", "and num_expert_groups must both be set or both be null")
    if m.num_expert_groups is not None:
        if m.num_routed_experts % m.num_expert_groups:
            raise bad("num_expert_groups", f"must divide num_routed_experts ({m.num_routed_experts})")
        if m.topk_groups > m.num_expert_groups:
            raise bad("topk_groups", f"must be <= num_expert_groups ({m.num_expert_groups})")
    need = ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
    for name in need if att.kind == "mla" else ("num_kv_heads", "head_dim"):
        if getattr(att, name) is None:
            raise bad(f"attention.{name}", f"is required for attention kind {att.kind!r}")
    if att.kind == "gqa" and att.num_heads % att.num_kv_heads:
        raise bad("attention.num_kv_heads", f"must divide num_heads ({att.num_heads})")
    if att.sliding_window_pattern is not None and att.sliding_window is None:
        raise bad("attention.sliding_window_pattern", "needs attention.sliding_window")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``80.0e9`` and ``3e12`` as floats (YAML 1.2), not strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml_text(text: str, label: str) -> Any:
    """Parsed YAML document; a syntax error becomes an InputError naming ``label``."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise InputError(f"{label}: invalid YAML: {exc}") from None
