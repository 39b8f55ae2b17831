"""JSON layouts of expert-load files (see planner.inputs.readers for the formats)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from planner.common.jsontext import parse_json
from planner.common.fileio import decode_text
from planner.errors import InputError
from planner.inputs._common import BadContent, make_loads
from planner.inputs._engine_dumps import drop_unfilled_steps
from planner.inputs.loads import ExpertLoads

__all__ = ["read_json_bytes", "provenance_dict"]

_NUMBER_TYPES = {int, float}
# Top-level descriptive fields copied into provenance when a JSON file carries them.
_JSON_META = ("source", "license", "date", "dataset", "phase", "note", "top_k", "sequence_length")
_JSON_LAYOUTS = "'counts' (moeplan, OLMoE analysis), 'logical_count' (SGLang) or a bare 2-D/3-D list"


# -- JSON -------------------------------------------------------------------------------------
def read_json_bytes(data: bytes, where: str, name: str) -> ExpertLoads:
    text = decode_text(data, where)
    if not text.strip():
        raise InputError(f"{where}: empty file")
    doc = parse_json(text, where)
    try:
        counts, layer_ids, model, provenance = _json_layout(doc)
    except BadContent as exc:
        raise InputError(f"{where}: {exc}") from None
    provenance.setdefault("source", name)
    provenance["file"] = name
    return make_loads(where, counts, layer_ids, model, name, provenance)


def _json_layout(doc: Any) -> tuple[np.ndarray, tuple[int, ...], str | None, dict[str, str]]:
    """Counts, layer ids, model and provenance of a parsed JSON document (any accepted layout)."""
    if isinstance(doc, list):
        return _json_counts(doc, "counts"), (), None, {"format": "json-list"}
    if not isinstance(doc, dict):
        raise BadContent(f"unknown JSON layout: top level is {_kind(doc)}; expected an object with {_JSON_LAYOUTS}")
    if "counts" in doc and "logical_count" in doc:
        raise BadContent("unknown JSON layout: both 'counts' and 'logical_count' present; keep one")
    if "logical_count" in doc:
        return _sglang_layout(doc)
    if "counts" not in doc:
        raise BadContent(f"unknown JSON layout: found keys {sorted(doc)}; accepted: {_JSON_LAYOUTS}")
    counts = _json_counts(doc["counts"], "counts")
    if "layer_ids" in doc and "layers" in doc:
        raise BadContent("both 'layer_ids' and 'layers' present; keep one")
    olmoe = "layers" in doc  # the OLMoE routing-analysis files name the hidden layers 'layers'
    key = "layers" if olmoe else "layer_ids"
    layer_ids = _json_ints(doc[key], key) if key in doc else ()
    if "num_experts" in doc:
        declared = doc["num_experts"]
        if type(declared) is not int or declared != counts.shape[-1]:
            have = counts.shape[-1]
            raise BadContent(f"num_experts mismatch: file says {declared!r} but counts have {have} experts per layer")
    provenance = provenance_dict(doc.get("provenance", {}))
    for field in _JSON_META:
        if field in doc and field not in provenance:
            provenance[field] = _as_text(doc[field])
    provenance["format"] = "olmoe-analysis-json" if olmoe else "moeplan-json"
    return counts, layer_ids, _json_model(doc.get("model")), provenance


def _sglang_layout(doc: dict) -> tuple[np.ndarray, tuple[int, ...], str | None, dict[str, str]]:
    counts = _json_counts(doc["logical_count"], "logical_count")
    provenance = {"format": "sglang-logical-count-json"}
    if counts.ndim == 3:  # a recorder buffer: rows never written are zero
        counts, dropped = drop_unfilled_steps(counts)
        provenance["unfilled_steps_dropped"] = str(dropped)
        if dropped:
            provenance["reader_notes"] = (f"{dropped} of {counts.shape[0] + dropped} recorder buffer rows were "
                                          "empty (never written) and were dropped")
    rows = counts if counts.ndim == 2 else counts.sum(axis=0)
    zero = [i for i in range(rows.shape[0]) if not rows[i].any()]
    # SGLang indexes every hidden layer; dense layers (e.g. DeepSeek-V3's first three) stay all-zero.
    provenance["all_zero_layers"] = ",".join(map(str, zero))
    for field in _JSON_META:
        if field in doc:
            provenance[field] = _as_text(doc[field])
    return counts, tuple(range(rows.shape[0])), _json_model(doc.get("model")), provenance


def _json_counts(value: Any, key: str) -> np.ndarray:
    """A nested JSON list checked to be a rectangular 2-D or 3-D array of numbers, as float64."""
    shape, probe = [], value
    while isinstance(probe, list):
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    if not shape:
        raise BadContent(f"{key}: expected a 2-D or 3-D list of numbers, got {_kind(value)}")
    if 0 in shape:
        raise BadContent(f"{key}: empty array")
    if len(shape) not in (2, 3):
        raise BadContent(f"{key}: expected 2-D or 3-D, got {len(shape)}-D")
    _check_rect(value, shape, key, "")
    try:
        return np.array(value, dtype=np.float64)
    except OverflowError:
        raise BadContent(f"{key}: a count is too large for a float") from None


def _check_rect(node: list, shape: list[int], key: str, at: str) -> None:
    """Raise on the first entry that breaks the shape or is not a number (bools and null included)."""
    if len(shape) == 1:
        if set(map(type, node)) <= _NUMBER_TYPES:
            return
        for i, x in enumerate(node):
            if isinstance(x, list):
                raise BadContent(f"{key}: ragged array: {key}{at}[{i}] is a list, expected a number")
            if type(x) not in _NUMBER_TYPES:
                kind = "" if x is None else f" ({_kind(x)})"
                raise BadContent(f"{key}: non-numeric value {json.dumps(x)}{kind} at {key}{at}[{i}]")
        return
    for i, child in enumerate(node):
        where = f"{at}[{i}]"
        if not isinstance(child, list):
            raise BadContent(f"{key}: ragged array: {key}{where} is {_kind(child)}, expected a list of {shape[1]}")
        if len(child) != shape[1]:
            first = key + "[0]" * where.count("[")
            raise BadContent(f"{key}: ragged array: {key}{where} has length {len(child)}, {first} has {shape[1]}")
        _check_rect(child, shape[1:], key, where)


def _json_ints(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, list) or any(type(i) is not int for i in value):
        raise BadContent(f"{key}: expected a list of integers, got {json.dumps(value)[:80]}")
    return tuple(value)


def _json_model(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadContent(f"model: expected a string, got {_kind(value)}")
    return value


def provenance_dict(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadContent(f"provenance: expected an object, got {_kind(value)}")
    return {str(k): _as_text(v) for k, v in value.items()}


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _kind(value: Any) -> str:
    names = {bool: "a bool", type(None): "null", str: "a string", int: "a number", float: "a number",
             list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)
