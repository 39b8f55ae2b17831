"""GPU and model profiles: the shipped YAML files under ``profiles/`` and the one loader for them.

Built-ins are read through ``importlib.resources.files("profiles")`` (never a path relative to the
working directory) and cached. Users can pass their own YAML file, a Hugging Face ``config.json``
or a directory holding one wherever a name is accepted. Every file is validated before use; an
:class:`~planner.errors.InputError` names the file and the field (``profiles/gpus/h100.yaml:
memory_bytes must be > 0``). The YAML schemas and units are described in ``profiles/README.md``.

Examples
--------
>>> get_model("deepseek-ai/DeepSeek-R1").id
'deepseek-v3'
>>> get_model("deepseek-v3").bytes_per_expert
44040192
>>> get_gpu("H100-SXM").memory_bytes
80000000000.0
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

from planner import _params
from planner._hf_config import fields_from_hf_config
from planner._profile_schema import (
    GPU_SCHEMA,
    MODEL_SCHEMA,
    FieldError,
    check_model,
    load_yaml_text,
    parse,
)
from planner.errors import InputError, ProfileNotFound

__all__ = [
    "GpuSpec",
    "AttentionSpec",
    "ModelArch",
    "get_model",
    "get_gpu",
    "list_models",
    "list_gpus",
    "model_from_hf_config",
    "load_model_yaml",
    "load_gpu_yaml",
]


@dataclass(frozen=True)
class GpuSpec:
    """One GPU type in SI units; bandwidths are per GPU (see ``profiles/README.md``)."""

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
    provenance: dict = field(default_factory=dict, compare=False)


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


@dataclass(frozen=True)
class ModelArch:
    """Architecture of one MoE model: layer pattern, widths, experts, attention, storage size.

    Layer ``i`` is MoE iff ``i >= first_dense_layers``, ``i % moe_layer_freq == 0`` (the DeepSeek
    modelling code's rule) and ``i not in mlp_only_layers``; every other layer has a dense FFN of
    ``dense_intermediate_size``. ``shared_expert_intermediate_size`` is the total width of all
    shared experts (0 when none). Parameter formulas: :mod:`planner._params`.
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
    weight_bytes_per_param: float
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
        return _params.expert_params(self.hidden_size, self.moe_intermediate_size, self.expert_bias)

    @property
    def bytes_per_expert(self) -> int:
        """Bytes of one routed expert at ``weight_bytes_per_param``."""
        return math.ceil(self.params_per_expert * self.weight_bytes_per_param)

    @property
    def attention_params_per_layer(self) -> int:
        """Parameters of one layer's attention block."""
        return _params.attention_params(self.attention, self.hidden_size)

    @property
    def dense_layer_params(self) -> int:
        """Parameters of one dense layer: attention, norms and dense FFN."""
        return _params.dense_layer_params(self)

    @property
    def moe_layer_nonexpert_params(self) -> int:
        """Parameters of one MoE layer except routed experts: attention, norms, router, shared experts."""
        return _params.moe_layer_nonexpert_params(self)

    @property
    def bytes_per_dense_layer(self) -> int:
        """Bytes of one dense layer at ``weight_bytes_per_param``."""
        return math.ceil(self.dense_layer_params * self.weight_bytes_per_param)

    @property
    def embedding_params(self) -> int:
        """Input embeddings, lm_head (unless tied) and final norm."""
        return _params.embedding_params(self)

    def total_params(self) -> int:
        """All parameters (multi-token-prediction modules excluded).

        >>> round(get_model("mixtral-8x7b").total_params() / 1e9, 2)
        46.7
        """
        n_moe = len(self.moe_layers)
        moe = n_moe * (self.moe_layer_nonexpert_params + self.num_routed_experts * self.params_per_expert)
        dense = (self.num_hidden_layers - n_moe) * self.dense_layer_params
        return moe + dense + self.embedding_params

    def active_params(self) -> int:
        """Parameters one token computes with: all but the unchosen routed experts and the input
        embedding table (a lookup). The gpt-oss model card counts active parameters this way."""
        idle = len(self.moe_layers) * (self.num_routed_experts - self.top_k) * self.params_per_expert
        return self.total_params() - idle - self.vocab_size * self.hidden_size

    def kv_bytes_per_token(self, dtype_bytes: float = 2) -> int:
        """KV-cache bytes per token over all layers (windows ignored: an upper bound for gpt-oss).

        >>> get_model("deepseek-v3").kv_bytes_per_token()  # (512 + 64) x 2 B x 61 layers
        70272
        """
        per_layer = _params.kv_elements_per_token_per_layer(self.attention)
        return math.ceil(per_layer * self.num_hidden_layers * dtype_bytes)

    def kv_bytes_per_sequence(self, context_tokens: int, dtype_bytes: float = 2) -> int:
        """KV-cache bytes of one sequence of ``context_tokens`` tokens, sliding-window layers capped."""
        per_layer = _params.kv_elements_per_token_per_layer(self.attention)
        tokens = 0
        for layer in range(self.num_hidden_layers):
            window = self.attention.window_tokens(layer)
            tokens += context_tokens if window is None else min(context_tokens, window)
        return math.ceil(per_layer * tokens * dtype_bytes)


def _build_gpu(data: Any, label: str) -> GpuSpec:
    return GpuSpec(**parse(data, GPU_SCHEMA, label))


def _build_model(data: Any, label: str) -> ModelArch:
    fields = parse(data, MODEL_SCHEMA, label)
    fields["attention"] = AttentionSpec(**fields["attention"])
    try:
        return ModelArch(**fields)
    except FieldError as exc:
        raise InputError(f"{label}: {exc.field_name} {exc.reason}") from None


def _read_text(path: str | Path) -> tuple[str, str]:
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8"), str(p)
    except OSError as exc:
        raise InputError(f"{p}: cannot read file ({exc.strerror or exc})") from None


def load_gpu_yaml(path: str | Path) -> GpuSpec:
    """Read and validate a user GPU profile (schema of ``profiles/gpus/*.yaml``).

    Raises
    ------
    InputError
        Unreadable file, invalid YAML, or a missing / mistyped / out-of-range field (named).
    """
    text, label = _read_text(path)
    return _build_gpu(load_yaml_text(text, label), label)


def load_model_yaml(path: str | Path) -> ModelArch:
    """Read and validate a user model profile (schema of ``profiles/models/*.yaml``).

    Raises
    ------
    InputError
        Unreadable file, invalid YAML, or a missing / mistyped / inconsistent field (named).
    """
    text, label = _read_text(path)
    return _build_model(load_yaml_text(text, label), label)


def model_from_hf_config(path: str | Path) -> ModelArch:
    """Model profile from a Hugging Face ``config.json`` on disk (a file, or a directory holding one).

    Supported ``model_type``: deepseek_v2, deepseek_v3, kimi_k2, qwen2_moe, qwen3_moe, mixtral,
    olmoe, gpt_oss. ``reference_total_params`` is left empty; ``id`` is ``_name_or_path`` or the
    directory / file name.

    Raises
    ------
    InputError
        No such file, invalid JSON, unsupported model type, or a missing / bad key (named).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    text, label = _read_text(p)
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{label}: invalid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{label}: top level must be a JSON object")
    default_id = p.parent.name if p.name == "config.json" and p.parent.name else p.stem
    return _build_model(fields_from_hf_config(cfg, label, default_id), label)


@functools.lru_cache(maxsize=None)
def _builtins(kind: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(profiles by id, lower-cased id/alias -> id) of ``profiles/<kind>/*.yaml``."""
    build = _build_gpu if kind == "gpus" else _build_model
    by_id: dict[str, Any] = {}
    index: dict[str, str] = {}
    for entry in sorted(files("profiles").joinpath(kind).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        label = f"profiles/{kind}/{entry.name}"
        profile = build(load_yaml_text(entry.read_text(encoding="utf-8"), label), label)
        if profile.id != entry.name[: -len(".yaml")]:
            raise InputError(f"{label}: id '{profile.id}' does not match the file name")
        by_id[profile.id] = profile
        for key in {profile.id.lower(), *(n.lower() for n in profile.names)}:
            if index.setdefault(key, profile.id) != profile.id:
                raise InputError(f"{label}: name '{key}' is also used by '{index[key]}'")
    return by_id, index


def _lookup(name: str | Path, kind: str, what: str, load_file: Callable[[Path], Any]) -> Any:
    by_id, index = _builtins(kind)
    key = str(name).strip().lower()
    if key in index:
        return by_id[index[key]]
    loaded = load_file(Path(name))
    if loaded is not None:
        return loaded
    raise ProfileNotFound(f"unknown {what} {str(name)!r}; known: {', '.join(sorted(by_id))}")


def _model_file(p: Path) -> ModelArch | None:
    if p.is_file() and p.suffix.lower() in (".yaml", ".yml"):
        return load_model_yaml(p)
    if (p.is_file() and p.suffix.lower() == ".json") or (p.is_dir() and (p / "config.json").is_file()):
        return model_from_hf_config(p)
    return None


def _gpu_file(p: Path) -> GpuSpec | None:
    return load_gpu_yaml(p) if p.is_file() and p.suffix.lower() in (".yaml", ".yml") else None


def get_model(name: str | Path) -> ModelArch:
    """A model by id or alias (case-insensitive), or from a YAML / ``config.json`` file or directory.

    Parameters
    ----------
    name : a shipped id or alias (``"deepseek-v3"``, ``"Qwen/Qwen3-30B-A3B"``); otherwise a path to
        a ``.yaml``/``.yml`` profile, a ``config.json`` (any ``.json``) or a directory holding one.
        Shipped names win over a same-named path; write ``./name`` to force the path.

    Returns
    -------
    ModelArch
        The cached shipped profile, or a new one parsed from the file.

    Raises
    ------
    ProfileNotFound
        Unknown name that is no such file; the message lists the known ids.
    InputError
        The named file is invalid.

    Examples
    --------
    >>> get_model("Mixtral-8x7B").moe_layers[:3]
    (0, 1, 2)
    """
    return _lookup(name, "models", "model", _model_file)


def get_gpu(name: str | Path) -> GpuSpec:
    """A GPU by id or alias (case-insensitive), or from a YAML file.

    Parameters
    ----------
    name : a shipped id or alias (``"h100"``, ``"NVIDIA H100 80GB HBM3"``) or a path to a
        ``.yaml``/``.yml`` profile.

    Returns
    -------
    GpuSpec

    Raises
    ------
    ProfileNotFound
        Unknown name that is no such file; the message lists the known ids.
    InputError
        The named file is invalid.

    Examples
    --------
    >>> get_gpu("a10g").fp8_flops_per_s is None
    True
    """
    return _lookup(name, "gpus", "GPU", _gpu_file)


def list_models() -> list[ModelArch]:
    """Every shipped model profile, sorted by id."""
    by_id, _ = _builtins("models")
    return [by_id[k] for k in sorted(by_id)]


def list_gpus() -> list[GpuSpec]:
    """Every shipped GPU profile, sorted by id."""
    by_id, _ = _builtins("gpus")
    return [by_id[k] for k in sorted(by_id)]
