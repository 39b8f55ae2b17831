"""GPU and model profiles: the shipped YAML files under ``profiles/`` and the one loader for them.

Built-ins are read through ``importlib.resources.files("moeplan_profiles")``, never a path relative to
the working directory, and cached. ``moeplan_profiles`` is the repository's ``profiles/`` folder installed
under a distinct name, so that a ``profiles/`` folder beside a user's script cannot shadow it. Users can pass their own YAML file, a Hugging Face ``config.json``
or a directory holding one wherever a name is accepted. Every file is validated before use; an
:class:`~planner.errors.InputError` names the file and the field (``profiles/gpus/h100.yaml:
memory_bytes must be > 0``). The YAML schemas and units are described in ``profiles/README.md``.

A model file with ``extends: <shipped id>`` is a **variant**: the same architecture released in another
precision (``qwen3-235b-a22b-fp8`` extends ``qwen3-235b-a22b``). It sets only ``id``, ``names``,
``precision`` and ``provenance``; every other field is its base profile's.

Examples
--------
>>> get_model("deepseek-ai/DeepSeek-R1").id
'deepseek-v3'
>>> get_model("Qwen/Qwen3-235B-A22B-FP8").precision.experts.name
'fp8-block'
>>> get_gpu("H100-SXM").memory_bytes
80000000000.0
"""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

from planner.common.fileio import read_input_text
from planner.errors import InputError, ProfileNotFound
from planner.profiles.hf_config import fields_from_hf_config
from planner.profiles.schema import (
    GPU_SCHEMA,
    MODEL_SCHEMA,
    VARIANT_FIELDS,
    FieldError,
    load_yaml_text,
    model_precision,
    parse,
)
from planner.profiles.specs import AttentionSpec, GpuSpec, ModelArch

__all__ = [
    "get_model",
    "get_gpu",
    "list_models",
    "list_gpus",
    "model_from_hf_config",
    "load_model_yaml",
    "load_gpu_yaml",
    "PROFILES_PACKAGE",
]

#: the data package the shipped YAML files are installed as (the repository's ``profiles/`` folder)
PROFILES_PACKAGE = "moeplan_profiles"


def _build_gpu(data: Any, label: str) -> GpuSpec:
    return GpuSpec(**parse(data, GPU_SCHEMA, label))


def _build_model(data: Any, label: str) -> ModelArch:
    fields = parse(_with_base(data, label), MODEL_SCHEMA, label)
    fields["attention"] = AttentionSpec(**fields["attention"])
    fields["precision"] = model_precision(fields, label)
    try:
        return ModelArch(**fields)
    except FieldError as exc:
        raise InputError(f"{label}: {exc.field_name} {exc.reason}") from None


def _with_base(data: Any, label: str) -> Any:
    """A variant's fields over its base profile's (``extends``); any other document unchanged."""
    if not isinstance(data, dict) or "extends" not in data:
        return data
    extra = sorted(set(map(str, data)) - {"extends", *VARIANT_FIELDS})
    if extra:
        raise InputError(
            f"{label}: a variant (extends) sets only {', '.join(VARIANT_FIELDS)}; '{extra[0]}' belongs to its base"
        )
    raw = _shipped_model_documents()
    base = data["extends"]
    if base not in raw:
        known = ", ".join(sorted(raw))
        raise InputError(f"{label}: extends {base!r}, which is not a shipped model id (known: {known})")
    if "extends" in raw[base]:
        raise InputError(f"{label}: extends {base!r}, which is itself a variant; extend its base")
    merged = {k: v for k, v in raw[base].items() if k != "names"}
    if "precision" in data:
        merged.pop("weight_bytes_per_param", None)
    merged.update({k: v for k, v in data.items() if k != "extends"})
    return merged


def _read_text(path: str | Path) -> tuple[str, str]:
    p = Path(path)
    return read_input_text(p, "profile file"), str(p)


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
def _shipped_model_documents() -> dict[str, Any]:
    """The parsed YAML documents of ``profiles/models/*.yaml`` by file name (the id), unchecked."""
    out = {}
    for entry in sorted(files(PROFILES_PACKAGE).joinpath("models").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            label = f"profiles/models/{entry.name}"
            out[entry.name[: -len(".yaml")]] = load_yaml_text(entry.read_text(encoding="utf-8"), label)
    return out


@functools.lru_cache(maxsize=None)
def _builtins(kind: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(profiles by id, lower-cased id/alias -> id) of ``profiles/<kind>/*.yaml``."""
    build = _build_gpu if kind == "gpus" else _build_model
    by_id: dict[str, Any] = {}
    index: dict[str, str] = {}
    for entry in sorted(files(PROFILES_PACKAGE).joinpath(kind).iterdir(), key=lambda e: e.name):
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
