"""Readers for expert-load files: ``.npz``, four JSON layouts and SGLang's per-rank CSV dumps.

Formats (``fmt``):

``npz``
    key ``counts`` (2-D ``[layers, experts]`` or 3-D ``[steps, layers, experts]``), optional
    ``layer_ids`` (1-D ints), ``model`` (0-d string) and ``provenance`` (0-d JSON string, written by
    :func:`write_loads_npz`). Read with ``allow_pickle=False``.
``json``
    one of: moeplan's own ``{"counts", "layer_ids"?, "model"?, "provenance"?}``; the OLMoE routing
    analysis files shipped in ``planner/data/expert_loads`` (``counts`` with ``layers`` and
    ``num_experts``); SGLang's ``{"logical_count": ...}`` (what its expert-distribution recorder dumps
    and ``--init-expert-location`` accepts; one row per hidden layer, dense layers as zero rows); or a
    bare 2-D / 3-D list of numbers.
``csv``
    ``layer_id,expert_id,count`` with that header, one file per rank (SGLang's first recorder, which
    writes only the experts that received tokens). Several files are summed into one step.

Every error is an :class:`~planner.errors.InputError` whose one-line message starts with the file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from planner.errors import InputError
from planner.inputs.loads import ExpertLoads

__all__ = ["read_loads", "write_loads_npz", "builtin_loads", "list_builtin_loads", "FORMATS"]

FORMATS = ("npz", "json", "csv")
_BUILTIN = "builtin:"
_CSV_HEADER = ["layer_id", "expert_id", "count"]
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NUMBER_TYPES = {int, float}
# Without num_experts, a CSV's largest expert_id sizes the array; a typo must not allocate gigabytes.
_MAX_INFERRED_EXPERTS = 65_536
# Top-level descriptive fields copied into provenance when a JSON file carries them.
_JSON_META = ("source", "license", "date", "dataset", "phase", "note", "top_k", "sequence_length")
_JSON_LAYOUTS = "'counts' (moeplan, OLMoE analysis), 'logical_count' (SGLang) or a bare 2-D/3-D list"


class _Bad(Exception):
    """A problem found inside a file; the caller prefixes the file name."""


# -- public API -------------------------------------------------------------------------------
def read_loads(paths, *, fmt: str | None = None, num_experts: int | None = None) -> ExpertLoads:
    """Read expert loads from one file, several per-rank CSV files, or a ``builtin:NAME``.

    Parameters
    ----------
    paths : str, Path, or a list of them. Several files are only allowed for ``csv`` (one per rank,
        summed into one step).
    fmt : ``"npz"``, ``"json"``, ``"csv"``, or None to decide by extension, then by content.
    num_experts : expected experts per layer. For CSV it sets the expert axis (ids must be below it);
        for other formats the file must match it.

    Returns
    -------
    ExpertLoads
        ``source`` is the file name(s); ``provenance`` has at least ``source``, ``format`` and
        ``file``, plus ``license`` / ``date`` when the file has them.

    Raises
    ------
    InputError
        One line starting with the file: missing or empty file, malformed JSON (line and column),
        unknown layout, wrong shape, non-numbers, negative or non-finite counts, bad CSV rows.

    Examples
    --------
    >>> loads = read_loads("builtin:olmoe-arxiv")
    >>> loads.shape, loads.layer_ids
    ((1, 3, 64), (0, 7, 15))
    >>> loads.provenance["license"]
    'Apache-2.0'
    """
    items = _path_list(paths)
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"fmt: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if num_experts is not None and (type(num_experts) is not int or num_experts < 1):
        raise InputError(f"num_experts: expected a positive integer, got {num_experts!r}")
    builtin = [p for p in items if isinstance(p, str) and p.startswith(_BUILTIN)]
    if builtin:
        if len(items) > 1:
            raise InputError(f"{builtin[0]}: a built-in load set cannot be combined with other files")
        if fmt not in (None, "json"):
            raise InputError(f"{builtin[0]}: built-in loads are JSON, not {fmt}")
        return _check_num_experts(builtin_loads(builtin[0][len(_BUILTIN):]), builtin[0], num_experts)

    found = []
    seen: dict[Path, str] = {}
    for p in items:
        where = str(p)
        path = Path(p)
        _check_file(path, where)
        key = path.resolve()
        if key in seen:
            raise InputError(f"{where}: given twice (also as {seen[key]})")
        seen[key] = where
        try:
            found.append((path, where, fmt or _detect(path, where)))
        except OSError as exc:
            raise InputError(f"{where}: cannot read: {exc.strerror or _one_line(exc)}") from exc
    if len(found) > 1:
        for _, where, kind in found:
            if kind != "csv":
                raise InputError(
                    f"{where}: several files are only allowed for the per-rank CSV format; this file is {kind}"
                )
        try:
            return _read_csvs([(path, where) for path, where, _ in found], num_experts)
        except OSError as exc:
            raise InputError(f"{exc.filename}: cannot read: {exc.strerror or _one_line(exc)}") from exc
    path, where, kind = found[0]
    try:
        if kind == "csv":
            return _read_csvs([(path, where)], num_experts)
        if kind == "npz":
            loads = _read_npz(path, where)
        else:
            loads = _read_json_bytes(path.read_bytes(), where, path.name)
    except OSError as exc:
        raise InputError(f"{where}: cannot read: {exc.strerror or _one_line(exc)}") from exc
    return _check_num_experts(loads, where, num_experts)


def list_builtin_loads() -> list[str]:
    """Short names of the load sets shipped in ``planner/data/expert_loads`` (sorted).

    >>> "olmoe-arxiv" in list_builtin_loads()
    True
    """
    return sorted(f.name[: -len(".json")] for f in _builtin_dir().iterdir() if f.name.endswith(".json"))


def builtin_loads(name: str) -> ExpertLoads:
    """A shipped load set by short name (``olmoe-arxiv``, ``mistral-github``, ...).

    The files are package data (see ``PROVENANCE.md`` next to them), found through
    :mod:`importlib.resources`, never relative to the working directory.

    >>> builtin_loads("mistral-c4").num_experts
    8
    """
    where = f"{_BUILTIN}{name}"
    known = list_builtin_loads()
    if name not in known:
        raise InputError(f"{where}: unknown built-in loads {name!r}; known: {', '.join(known)}")
    entry = _builtin_dir() / f"{name}.json"
    return _read_json_bytes(entry.read_bytes(), where, f"{name}.json")


def write_loads_npz(loads: ExpertLoads, path) -> Path:
    """Write ``loads`` as ``.npz`` atomically so that :func:`read_loads` returns the same loads.

    Stores ``counts`` (float64), ``layer_ids`` (int64), ``model`` (when set) and ``provenance`` (as
    a JSON string). The archive goes to a temporary file in the target's directory, is flushed to
    disk and renamed over the target, so readers never see a partial file.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{target}: output directory {parent} does not exist")
    if target.is_dir():
        raise InputError(f"{target}: is a directory, expected a file path")
    arrays = {"counts": np.asarray(loads.counts, dtype=np.float64),
              "layer_ids": np.asarray(loads.layer_ids, dtype=np.int64)}
    if loads.model is not None:
        arrays["model"] = np.array(str(loads.model))
    if loads.provenance:
        arrays["provenance"] = np.array(json.dumps(dict(loads.provenance), sort_keys=True))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


# -- dispatch ---------------------------------------------------------------------------------
def _path_list(paths) -> list:
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    if isinstance(paths, (list, tuple)) and paths:
        bad = [p for p in paths if not isinstance(p, (str, os.PathLike))]
        if not bad:
            return list(paths)
        raise InputError(f"paths: expected file paths, got {type(bad[0]).__name__} {bad[0]!r}")
    if isinstance(paths, (list, tuple)):
        raise InputError("paths: no files given")
    raise InputError(f"paths: expected a path or a list of paths, got {type(paths).__name__}")


def _check_file(path: Path, where: str) -> None:
    if not path.exists():
        raise InputError(f"{where}: file not found")
    if not path.is_file():
        raise InputError(f"{where}: not a regular file (a directory?)")
    if path.stat().st_size == 0:
        raise InputError(f"{where}: empty file")


def _detect(path: Path, where: str) -> str:
    """Format by extension, else by the first bytes."""
    ext = path.suffix.lower()
    if ext.lstrip(".") in FORMATS:
        return ext.lstrip(".")
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head.startswith(_ZIP_MAGIC):
        return "npz"
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text[:1] in ("{", "["):
        return "json"
    if [c.strip() for c in text.split("\n", 1)[0].split(",")] == _CSV_HEADER:
        return "csv"
    hint = " (SGLang .pt dumps: load with torch and save the dict as JSON)" if ext == ".pt" else ""
    raise InputError(
        f"{where}: unknown extension {ext or '(none)'!r} and unrecognised content; "
        f"expected .npz, .json or .csv{hint}"
    )


def _check_num_experts(loads: ExpertLoads, where: str, num_experts: int | None) -> ExpertLoads:
    if num_experts is not None and loads.num_experts != num_experts:
        raise InputError(
            f"{where}: num_experts mismatch: file has {loads.num_experts} experts per layer, "
            f"expected {num_experts}"
        )
    return loads


def _make(where: str, counts, layer_ids, model, source: str, provenance: dict) -> ExpertLoads:
    """Build the loads, naming the file in ExpertLoads' own validation errors."""
    try:
        return ExpertLoads(counts, layer_ids, model, source, provenance)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def _builtin_dir():
    return resources.files("planner") / "data" / "expert_loads"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# -- npz --------------------------------------------------------------------------------------
def _read_npz(path: Path, where: str) -> ExpertLoads:
    # np.load leaks its file handle when the archive is corrupt, so the handle is ours.
    try:
        with path.open("rb") as fh:
            if not fh.read(4).startswith(_ZIP_MAGIC):
                raise InputError(f"{where}: not a .npz archive (no zip signature)")
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as npz:
                stored = {key: _npz_member(npz, key) for key in npz.files}
    except InputError:
        raise
    except _Bad as exc:
        raise InputError(f"{where}: {exc}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{where}: unreadable .npz archive: {_one_line(exc)}") from exc
    if "counts" not in stored:
        raise InputError(
            f"{where}: no 'counts' array; found keys {sorted(stored)}; "
            "accepted: counts, layer_ids, model, provenance"
        )
    try:
        counts = _npz_counts(stored["counts"])
        layer_ids = _npz_layer_ids(stored.get("layer_ids"))
        model = _npz_string(stored.get("model"), "model")
        text = _npz_string(stored.get("provenance"), "provenance")
        provenance = _provenance_dict(json.loads(text)) if text is not None else {}
    except _Bad as exc:
        raise InputError(f"{where}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: provenance: malformed JSON string: {exc.msg}") from None
    # A converted file keeps the upstream source; "file" and "format" describe what was read now.
    if provenance.get("format", "npz") != "npz":
        provenance["original_format"] = provenance["format"]
    provenance.setdefault("source", path.name)
    provenance.update(file=path.name, format="npz")
    return _make(where, counts, layer_ids, model, path.name, provenance)


def _npz_member(npz, key: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:
        if "pickle" in str(exc):
            raise _Bad(f"{key}: stored as a pickled object array; only plain numeric arrays are read") from None
        raise


def _npz_counts(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind not in "iuf":
        raise _Bad(f"counts: non-numeric dtype {arr.dtype}; expected integers or floats")
    if arr.ndim not in (2, 3):
        raise _Bad(f"counts: expected 2-D or 3-D, got {arr.ndim}-D (shape {list(arr.shape)})")
    return arr


def _npz_layer_ids(arr: np.ndarray | None) -> tuple[int, ...]:
    if arr is None:
        return ()
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise _Bad(f"layer_ids: expected a 1-D integer array, got {arr.ndim}-D {arr.dtype}")
    return tuple(int(i) for i in arr)


def _npz_string(arr: np.ndarray | None, key: str) -> str | None:
    if arr is None:
        return None
    if arr.ndim != 0 or arr.dtype.kind not in "US":
        raise _Bad(f"{key}: expected a 0-d string array, got {arr.ndim}-D {arr.dtype}")
    value = arr[()]
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


# -- JSON -------------------------------------------------------------------------------------
def _read_json_bytes(data: bytes, where: str, name: str) -> ExpertLoads:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise InputError(f"{where}: empty file")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InputError(f"{where}: malformed JSON: nested too deeply") from None
    try:
        counts, layer_ids, model, provenance = _json_layout(doc)
    except _Bad as exc:
        raise InputError(f"{where}: {exc}") from None
    provenance.setdefault("source", name)
    provenance["file"] = name
    return _make(where, counts, layer_ids, model, name, provenance)


def _json_layout(doc: Any) -> tuple[np.ndarray, tuple[int, ...], str | None, dict[str, str]]:
    """Counts, layer ids, model and provenance of a parsed JSON document (any accepted layout)."""
    if isinstance(doc, list):
        return _json_counts(doc, "counts"), (), None, {"format": "json-list"}
    if not isinstance(doc, dict):
        raise _Bad(f"unknown JSON layout: top level is {_kind(doc)}; expected an object with {_JSON_LAYOUTS}")
    if "counts" in doc and "logical_count" in doc:
        raise _Bad("unknown JSON layout: both 'counts' and 'logical_count' present; keep one")
    if "logical_count" in doc:
        return _sglang_layout(doc)
    if "counts" not in doc:
        raise _Bad(f"unknown JSON layout: found keys {sorted(doc)}; accepted: {_JSON_LAYOUTS}")
    counts = _json_counts(doc["counts"], "counts")
    if "layer_ids" in doc and "layers" in doc:
        raise _Bad("both 'layer_ids' and 'layers' present; keep one")
    olmoe = "layers" in doc  # the OLMoE routing-analysis files name the hidden layers 'layers'
    key = "layers" if olmoe else "layer_ids"
    layer_ids = _json_ints(doc[key], key) if key in doc else ()
    if "num_experts" in doc:
        declared = doc["num_experts"]
        if type(declared) is not int or declared != counts.shape[-1]:
            have = counts.shape[-1]
            raise _Bad(f"num_experts mismatch: file says {declared!r} but counts have {have} experts per layer")
    provenance = _provenance_dict(doc.get("provenance", {}))
    for field in _JSON_META:
        if field in doc and field not in provenance:
            provenance[field] = _as_text(doc[field])
    provenance["format"] = "olmoe-analysis-json" if olmoe else "moeplan-json"
    return counts, layer_ids, _json_model(doc.get("model")), provenance


def _sglang_layout(doc: dict) -> tuple[np.ndarray, tuple[int, ...], str | None, dict[str, str]]:
    counts = _json_counts(doc["logical_count"], "logical_count")
    rows = counts if counts.ndim == 2 else counts.sum(axis=0)
    zero = [i for i in range(rows.shape[0]) if not rows[i].any()]
    # SGLang indexes every hidden layer; dense layers (e.g. DeepSeek-V3's first three) stay all-zero.
    provenance = {"format": "sglang-logical-count-json", "all_zero_layers": ",".join(map(str, zero))}
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
        raise _Bad(f"{key}: expected a 2-D or 3-D list of numbers, got {_kind(value)}")
    if 0 in shape:
        raise _Bad(f"{key}: empty array")
    if len(shape) not in (2, 3):
        raise _Bad(f"{key}: expected 2-D or 3-D, got {len(shape)}-D")
    _check_rect(value, shape, key, "")
    try:
        return np.array(value, dtype=np.float64)
    except OverflowError:
        raise _Bad(f"{key}: a count is too large for a float") from None


def _check_rect(node: list, shape: list[int], key: str, at: str) -> None:
    """Raise on the first entry that breaks the shape or is not a number (bools and null included)."""
    if len(shape) == 1:
        if set(map(type, node)) <= _NUMBER_TYPES:
            return
        for i, x in enumerate(node):
            if isinstance(x, list):
                raise _Bad(f"{key}: ragged array: {key}{at}[{i}] is a list, expected a number")
            if type(x) not in _NUMBER_TYPES:
                kind = "" if x is None else f" ({_kind(x)})"
                raise _Bad(f"{key}: non-numeric value {json.dumps(x)}{kind} at {key}{at}[{i}]")
        return
    for i, child in enumerate(node):
        where = f"{at}[{i}]"
        if not isinstance(child, list):
            raise _Bad(f"{key}: ragged array: {key}{where} is {_kind(child)}, expected a list of {shape[1]}")
        if len(child) != shape[1]:
            first = key + "[0]" * where.count("[")
            raise _Bad(f"{key}: ragged array: {key}{where} has length {len(child)}, {first} has {shape[1]}")
        _check_rect(child, shape[1:], key, where)


def _json_ints(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, list) or any(type(i) is not int for i in value):
        raise _Bad(f"{key}: expected a list of integers, got {json.dumps(value)[:80]}")
    return tuple(value)


def _json_model(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _Bad(f"model: expected a string, got {_kind(value)}")
    return value


def _provenance_dict(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Bad(f"provenance: expected an object, got {_kind(value)}")
    return {str(k): _as_text(v) for k, v in value.items()}


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _kind(value: Any) -> str:
    names = {bool: "a bool", type(None): "null", str: "a string", int: "a number", float: "a number",
             list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


# -- per-rank CSV -----------------------------------------------------------------------------
def _read_csvs(files: list[tuple[Path, str]], num_experts: int | None) -> ExpertLoads:
    tables = [(where, _csv_table(path, where, num_experts)) for path, where in files]
    if num_experts is None:
        num_experts = _csv_num_experts(tables)
    layer_ids = sorted({layer for _, table in tables for layer, _ in table})
    row = {layer: i for i, layer in enumerate(layer_ids)}
    counts = np.zeros((1, len(layer_ids), num_experts))
    for _, table in tables:
        for (layer, expert), count in table.items():
            counts[0, row[layer], expert] += count
    names = ", ".join(path.name for path, _ in files)
    provenance = {"source": names, "file": names, "format": "sglang-rank-csv", "ranks": str(len(files))}
    return _make(files[0][1], counts, layer_ids, None, names, provenance)


def _csv_table(path: Path, where: str, num_experts: int | None) -> dict[tuple[int, int], float]:
    """``{(layer_id, expert_id): count}`` of one rank file, every row checked."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text))
    header = [c.strip() for c in next(reader, [])]
    if header != _CSV_HEADER:
        got = ",".join(header)
        raise InputError(f"{where}: line 1: wrong CSV header {got!r}; expected 'layer_id,expert_id,count'")
    table: dict[tuple[int, int], float] = {}
    first_line: dict[tuple[int, int], int] = {}
    for fields in reader:
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != 3:
            raise InputError(f"{where}: line {line}: expected 3 fields, got {len(fields)}")
        layer, expert = (_csv_id(f, name, where, line) for f, name in zip(fields[:2], _CSV_HEADER[:2]))
        if num_experts is not None and expert >= num_experts:
            raise InputError(f"{where}: line {line}: expert_id {expert} >= num_experts {num_experts}")
        if (layer, expert) in table:
            raise InputError(
                f"{where}: line {line}: duplicate row for layer_id {layer}, expert_id {expert} "
                f"(first at line {first_line[(layer, expert)]})"
            )
        table[(layer, expert)] = _csv_count(fields[2], where, line)
        first_line[(layer, expert)] = line
    if not table:
        raise InputError(f"{where}: no data rows after the header")
    return table


def _csv_id(field: str, name: str, where: str, line: int) -> int:
    try:
        value = int(field.strip())
    except ValueError:
        raise InputError(f"{where}: line {line}: {name} {field.strip()!r} is not an integer") from None
    if value < 0:
        raise InputError(f"{where}: line {line}: negative {name} {value}")
    return value


def _csv_count(field: str, where: str, line: int) -> float:
    try:
        value = float(field.strip())
    except ValueError:
        raise InputError(f"{where}: line {line}: count {field.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: line {line}: non-finite count {field.strip()!r}")
    if value < 0:
        raise InputError(f"{where}: line {line}: negative count {field.strip()}")
    return value


def _csv_num_experts(tables: list[tuple[str, dict]]) -> int:
    """Experts per layer when not given: max id + 1 over all files, checked against dense files.

    A rank file lists only experts that received tokens, so a file's largest id is a lower bound,
    and files may differ. A file that lists every expert ``0..n-1`` in every layer, however, is a
    dense dump of ``n`` experts; another file with an id ``>= n`` comes from a different model.
    """
    sizes = [(where, 1 + max(e for _, e in table)) for where, table in tables]
    num_experts = max(n for _, n in sizes)
    if num_experts > _MAX_INFERRED_EXPERTS:
        where = next(w for w, m in sizes if m == num_experts)
        raise InputError(
            f"{where}: expert_id {num_experts - 1} is implausibly large; pass num_experts if it is right"
        )
    for (where, table), (_, n) in zip(tables, sizes):
        layers = {layer for layer, _ in table}
        if 2 <= n < num_experts and len(table) == n * len(layers):
            other = next(w for w, m in sizes if m == num_experts)
            raise InputError(
                f"{where}: num_experts mismatch: this file lists all {n} experts of every layer, "
                f"but {other} has expert_id {num_experts - 1}"
            )
    return num_experts
