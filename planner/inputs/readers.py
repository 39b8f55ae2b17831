"""Readers for expert-load files: ``.npz``, four JSON layouts, and the serving engines' own dumps.

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
    writes only the experts that received tokens). Several files make one step: summed when the
    ranks counted different tokens (DP attention), taken once when every file is identical
    (tensor-parallel attention, where every rank sees every token); ``rank_files`` forces either.
``sglang-pt``
    SGLang's ``stat`` recorder dump ``expert_distribution_recorder_<t>.pt`` (``logical_count``
    ``[buffer_steps, num_hidden_layers, E]``); read without torch, empty buffer rows dropped.
``vllm-jsonl``
    vLLM PR #41141 ``expert_load_stats_path`` records: per-slot loads folded through ``p2l_map``
    into per-expert counts, one step per record, MoE-layer index as the layer axis.
``trtllm-stats``
    a TensorRT-LLM ``ExpertStatistic`` directory (``meta_info.json`` + ``rank<r>.safetensors``), ranks
    combined as for CSV, iterations as steps, absolute layer ids.

Notes a reader has for the user (rows dropped, rank files taken as copies) are in
``loads.provenance["reader_notes"]``; the engine formats are described in ``docs/engines.md``.

Every error is an :class:`~planner.errors.InputError` whose one-line message starts with the file.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np

from planner.errors import InputError, one_line
from planner.common.fileio import atomic_write_bytes, check_input_file
from planner.common.limits import MAX_TEXT_BYTES, check_load_shape
from planner.inputs._common import BadContent, make_loads
from planner.inputs._torch_zip import is_torch_zip
from planner.inputs._csv_loads import read_csvs
from planner.inputs._engine_dumps import RANK_FILES, is_trtllm_dir, read_sglang_pt, read_trtllm_dir, read_vllm_jsonl
from planner.inputs._json_loads import provenance_dict, read_json_bytes
from planner.inputs.loads import ExpertLoads

__all__ = ["read_loads", "write_loads_npz", "builtin_loads", "list_builtin_loads", "FORMATS", "RANK_FILES"]

FORMATS = ("npz", "json", "csv", "sglang-pt", "vllm-jsonl", "trtllm-stats")
_BUILTIN = "builtin:"
_CSV_HEADER = ["layer_id", "expert_id", "count"]
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


# -- public API -------------------------------------------------------------------------------
def read_loads(paths, *, fmt: str | None = None, num_experts: int | None = None,
               rank_files: str = "auto") -> ExpertLoads:
    """Read expert loads from one file, several per-rank CSV files, an engine dump, or a ``builtin:NAME``.

    Parameters
    ----------
    paths : str, Path, or a list of them. Several files are only allowed for ``csv`` (one per rank,
        summed into one step).
    fmt : one of :data:`FORMATS`, or None to decide by extension, then by content (a directory is a
        TensorRT-LLM statistic folder).
    num_experts : expected experts per layer. For CSV it sets the expert axis (ids must be below it);
        for other formats the file must match it.
    rank_files : how per-rank files (several CSVs, TensorRT-LLM ranks) combine: ``"auto"`` (identical
        files are tensor-parallel copies and count once, others are summed), ``"sum"`` or ``"copies"``.

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
        raise InputError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}", param="fmt")
    if num_experts is not None and (type(num_experts) is not int or num_experts < 1):
        raise InputError(f"expected a positive integer, got {num_experts!r}", param="num_experts")
    if rank_files not in RANK_FILES:
        raise InputError(f"unknown {rank_files!r}; known: {', '.join(RANK_FILES)}", param="rank_files")
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
            raise InputError(f"{where}: cannot read: {exc.strerror or one_line(exc)}") from exc
    if len(found) > 1:
        for _, where, kind in found:
            if kind != "csv":
                raise InputError(
                    f"{where}: several files are only allowed for the per-rank CSV format; this file is {kind}"
                )
        for path, where, _ in found:
            _check_text_size(path, where)
        try:
            return read_csvs([(path, where) for path, where, _ in found], num_experts, rank_files)
        except OSError as exc:
            raise InputError(f"{exc.filename}: cannot read: {exc.strerror or one_line(exc)}") from exc
    path, where, kind = found[0]
    if kind in ("csv", "json", "vllm-jsonl"):
        _check_text_size(path, where)
    try:
        if kind == "csv":
            return read_csvs([(path, where)], num_experts)
        if kind == "trtllm-stats":
            return read_trtllm_dir(path, where, num_experts, rank_files)
        if kind == "vllm-jsonl":
            loads = read_vllm_jsonl(path, where, num_experts)
        elif kind == "sglang-pt":
            loads = _read_pt(path, where)
        elif kind == "npz":
            loads = _read_npz(path, where)
        else:
            loads = read_json_bytes(path.read_bytes(), where, path.name)
    except OSError as exc:
        raise InputError(f"{where}: cannot read: {exc.strerror or one_line(exc)}") from exc
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
    return read_json_bytes(entry.read_bytes(), where, f"{name}.json")


def write_loads_npz(loads: ExpertLoads, path) -> Path:
    """Write ``loads`` as ``.npz`` atomically so that :func:`read_loads` returns the same loads.

    Stores ``counts`` (float64), ``layer_ids`` (int64), ``model`` (when set) and ``provenance`` (as
    a JSON string). The archive goes to a temporary file in the target's directory, is flushed to
    disk and renamed over the target, so readers never see a partial file.
    """
    arrays = {"counts": np.asarray(loads.counts, dtype=np.float64),
              "layer_ids": np.asarray(loads.layer_ids, dtype=np.int64)}
    if loads.model is not None:
        arrays["model"] = np.array(str(loads.model))
    if loads.provenance:
        arrays["provenance"] = np.array(json.dumps(dict(loads.provenance), sort_keys=True))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


# -- dispatch ---------------------------------------------------------------------------------
def _path_list(paths) -> list:
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    if isinstance(paths, (list, tuple)) and paths:
        bad = [p for p in paths if not isinstance(p, (str, os.PathLike))]
        if not bad:
            return list(paths)
        raise InputError(f"expected file paths, got {type(bad[0]).__name__} {bad[0]!r}", param="paths")
    if isinstance(paths, (list, tuple)):
        raise InputError("no files given", param="paths")
    raise InputError(f"expected a path or a list of paths, got {type(paths).__name__}", param="paths")


def _check_file(path: Path, where: str) -> None:
    try:
        check_input_file(path, "file", allow_dir=True)
    except InputError as exc:
        raise InputError(str(exc).replace(str(path), where, 1)) from None
    if path.is_dir():
        if is_trtllm_dir(path):
            return
        raise InputError(f"{where}: a directory, but not a TensorRT-LLM ExpertStatistic folder "
                         "(meta_info.json and rank<r>.safetensors)")
    if not path.is_file():
        raise InputError(f"{where}: not a regular file")
    if path.stat().st_size == 0:
        raise InputError(f"{where}: empty file")


def _check_text_size(path: Path, where: str) -> None:
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise InputError(f"{where}: {size} bytes of text, above the limit of {MAX_TEXT_BYTES} bytes "
                         "(MAX_TEXT_BYTES, docs/limits.md); convert it to .npz (docs/inputs.md)")


_EXTENSIONS = {".npz": "npz", ".json": "json", ".csv": "csv", ".pt": "sglang-pt", ".pth": "sglang-pt",
               ".jsonl": "vllm-jsonl"}


def _detect(path: Path, where: str) -> str:
    """Format by content where the content decides (zip kind, JSON lines), else by extension."""
    if path.is_dir():
        return "trtllm-stats"
    ext = path.suffix.lower()
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head.startswith(_ZIP_MAGIC):  # .npz and torch.save files are both zip archives
        try:
            with zipfile.ZipFile(path) as archive:
                return "sglang-pt" if is_torch_zip(archive) else "npz"
        except (zipfile.BadZipFile, NotImplementedError, ValueError):  # garbled version field, non-UTF-8 names
            return _EXTENSIONS.get(ext, "npz")
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("{") and '"record_type"' in text.split("\n", 1)[0] and '"eplb_' in text.split("\n", 1)[0]:
        return "vllm-jsonl"
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if text[:1] in ("{", "["):
        return "json"
    if [c.strip() for c in text.split("\n", 1)[0].split(",")] == _CSV_HEADER:
        return "csv"
    raise InputError(
        f"{where}: unknown extension {ext or '(none)'!r} and unrecognised content; "
        f"expected .npz, .json, .csv, .pt (SGLang), .jsonl (vLLM) or a TensorRT-LLM statistic folder"
    )


def _read_pt(path: Path, where: str) -> ExpertLoads:
    try:
        return read_sglang_pt(path, where)
    except InputError:
        raise
    except zipfile.BadZipFile:
        raise InputError(f"{where}: not a torch zip archive (torch before 1.6 wrote a legacy format, "
                         "not read: load and torch.save it again with a current torch)") from None
    except (ValueError, EOFError, NotImplementedError) as exc:
        raise InputError(f"{where}: unreadable torch file: {one_line(exc)}") from None


def _check_num_experts(loads: ExpertLoads, where: str, num_experts: int | None) -> ExpertLoads:
    if num_experts is not None and loads.num_experts != num_experts:
        raise InputError(
            f"{where}: num_experts mismatch: file has {loads.num_experts} experts per layer, "
            f"expected {num_experts}"
        )
    return loads


def _builtin_dir():
    return resources.files("planner") / "data" / "expert_loads"


# -- npz --------------------------------------------------------------------------------------
def _read_npz(path: Path, where: str) -> ExpertLoads:
    # np.load leaks its file handle when the archive is corrupt, so the handle is ours.
    try:
        with path.open("rb") as fh:
            if not fh.read(4).startswith(_ZIP_MAGIC):
                raise InputError(f"{where}: not a .npz archive (no zip signature)")
            fh.seek(0)
            _check_npz_header(fh, where)
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as npz:
                stored = {key: _npz_member(npz, key) for key in npz.files}
    except InputError:
        raise
    except BadContent as exc:
        raise InputError(f"{where}: {exc}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
        # NotImplementedError: zipfile's answer to a garbled version or compression field
        raise InputError(f"{where}: unreadable .npz archive: {one_line(exc)}") from exc
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
        provenance = provenance_dict(json.loads(text)) if text is not None else {}
    except BadContent as exc:
        raise InputError(f"{where}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: provenance: malformed JSON string: {exc.msg}") from None
    # A converted file keeps the upstream source; "file" and "format" describe what was read now.
    if provenance.get("format", "npz") != "npz":
        provenance["original_format"] = provenance["format"]
    provenance.setdefault("source", path.name)
    provenance.update(file=path.name, format="npz")
    return make_loads(where, counts, layer_ids, model, path.name, provenance)


def _check_npz_header(fh, where: str) -> None:
    """Refuse a ``counts`` member whose header declares a shape beyond the limits, before reading it."""
    try:
        with zipfile.ZipFile(fh) as archive:
            if "counts.npy" not in archive.namelist():
                return
            with archive.open("counts.npy") as member:
                version = np.lib.format.read_magic(member)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    return  # np.load says what is wrong
                shape, _, _ = read_header(member)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return  # np.load below reports the damage
    if len(shape) in (2, 3):
        check_load_shape(shape, f"{where}: counts")


def _npz_member(npz, key: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:
        if "pickle" in str(exc):
            raise BadContent(f"{key}: stored as a pickled object array; only plain numeric arrays are read") from None
        raise


def _npz_counts(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind not in "iuf":
        raise BadContent(f"counts: non-numeric dtype {arr.dtype}; expected integers or floats")
    if arr.ndim not in (2, 3):
        raise BadContent(f"counts: expected 2-D or 3-D, got {arr.ndim}-D (shape {list(arr.shape)})")
    return arr


def _npz_layer_ids(arr: np.ndarray | None) -> tuple[int, ...]:
    if arr is None:
        return ()
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise BadContent(f"layer_ids: expected a 1-D integer array, got {arr.ndim}-D {arr.dtype}")
    return tuple(int(i) for i in arr)


def _npz_string(arr: np.ndarray | None, key: str) -> str | None:
    if arr is None:
        return None
    if arr.ndim != 0 or arr.dtype.kind not in "US":
        raise BadContent(f"{key}: expected a 0-d string array, got {arr.ndim}-D {arr.dtype}")
    value = arr[()]
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
