"""Readers for request traces: Azure LLM inference 2023 (CSV), Mooncake (JSONL) and BurstGPT (CSV).

Formats (``fmt``), each one row per request:

``azure``
    header ``TIMESTAMP,ContextTokens,GeneratedTokens``; ``TIMESTAMP`` a UTC date-time
    ``YYYY-MM-DD HH:MM:SS[.fraction]`` (the 2023 release writes 7 fractional digits).
``mooncake``
    one JSON object per line with ``timestamp`` (milliseconds from the trace start),
    ``input_length`` and ``output_length``; other keys (``hash_ids``) are ignored.
``burstgpt``
    header ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``; ``Timestamp``
    in seconds from the trace start. BurstGPT marks failed requests with 0 response tokens: those
    rows are dropped and counted in the provenance (``dropped_failed_rows``). ``model`` and
    ``log_type`` select rows (``"ChatGPT"`` / ``"GPT-4"``, ``"Conversation log"`` / ``"API log"``).

Every reader checks every row and raises :class:`~planner.errors.InputError` naming
``file:line`` and the field (a missing or extra column, a non-number, a token count below 1, a time
before the previous row's). Arrival times are returned relative to the first request (which
arrives at 0 s); the provenance records the original start.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np

from planner.common.fileio import check_input_file, decode_text
from planner.errors import InputError, one_line
from planner.inputs.workload import Workload

__all__ = ["read_trace", "builtin_trace", "list_builtin_traces", "TRACE_FORMATS"]

TRACE_FORMATS = ("azure", "mooncake", "burstgpt")
_BUILTIN = "builtin:"
_AZURE_HEADER = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
_BURST_HEADER = ["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"]
_MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")
_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2}(?:\.\d+)?)(?:Z|\+00:?00)?")

# licence and upstream of each shipped trace (planner/data/traces/PROVENANCE.md has the details)
_SHIPPED = {
    "azure-2023-code": ("azure-2023-code.csv", "Azure/AzurePublicDataset data/AzureLLMInferenceTrace_code.csv",
                        "CC-BY-4.0", ""),
    "azure-2023-conv": ("azure-2023-conv.csv", "Azure/AzurePublicDataset data/AzureLLMInferenceTrace_conv.csv",
                        "CC-BY-4.0", ""),
    "mooncake-conversation": ("mooncake-conversation.jsonl",
                              "kvcache-ai/Mooncake FAST25-release/traces/conversation_trace.jsonl", "Apache-2.0",
                              "kept timestamp, input_length, output_length; dropped hash_ids"),
}


class _Bad(Exception):
    """A bad row; the caller prefixes ``file:line``."""


# -- public API ----------------------------------------------------------------------------------
def read_trace(path, *, fmt: str | None = None, model: str | None = None, log_type: str | None = None) -> Workload:
    """Read a request trace file (or ``builtin:NAME``) into a :class:`Workload`.

    Parameters
    ----------
    path : str or Path
        A trace file, or ``builtin:NAME`` for a shipped one (:func:`list_builtin_traces`).
    fmt : ``"azure"``, ``"mooncake"``, ``"burstgpt"`` or None to decide by the CSV header or
        the ``.jsonl`` extension.
    model, log_type : BurstGPT only: keep rows of this ``Model`` / ``Log Type``.

    Returns
    -------
    Workload
        Arrivals in seconds from the first request; ``source`` the file name; provenance with
        ``source``, ``format``, ``file``, ``start`` (the first row's time as written) and, for the
        shipped traces, ``license`` and ``upstream``.

    Raises
    ------
    InputError
        ``file:line: field: problem`` for a bad row; a missing, empty or unrecognised file.

    Examples
    --------
    >>> w = read_trace("builtin:azure-2023-code")
    >>> len(w), w.provenance["license"]
    (8819, 'CC-BY-4.0')
    >>> round(w.rate_req_per_s, 2)
    2.57
    """
    if fmt is not None and fmt not in TRACE_FORMATS:
        raise InputError(f"unknown trace format {fmt!r}; known: {', '.join(TRACE_FORMATS)}", param="fmt")
    if (model is not None or log_type is not None) and fmt not in (None, "burstgpt"):
        raise InputError("model and log_type select rows of BurstGPT traces only", param="model")
    if isinstance(path, str) and path.startswith(_BUILTIN):
        return builtin_trace(path[len(_BUILTIN):])
    if not isinstance(path, (str, Path)):
        raise InputError(f"expected a file path, got {type(path).__name__}", param="path")
    p = Path(path)
    where = str(path)
    check_input_file(p, "trace file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{where}: cannot read: {exc.strerror or one_line(exc)}", param="path") from exc
    text = decode_text(data, where)
    kind = fmt or _detect(text, p, where)
    if kind != "burstgpt" and (model is not None or log_type is not None):
        raise InputError(f"{where}: model and log_type select rows of BurstGPT traces only; this is {kind}",
                         param="model")
    return _parse(text, where, p.name, kind, model=model, log_type=log_type)


def list_builtin_traces() -> list[str]:
    """Names of the traces shipped in ``planner/data/traces`` (sorted).

    >>> list_builtin_traces()
    ['azure-2023-code', 'azure-2023-conv', 'mooncake-conversation']
    """
    return sorted(_SHIPPED)


def builtin_trace(name: str) -> Workload:
    """A shipped trace by name, read through :mod:`importlib.resources` (never the working directory).

    >>> len(builtin_trace("mooncake-conversation"))
    12031
    """
    if name not in _SHIPPED:
        raise InputError(f"unknown built-in trace {name!r}; known: {', '.join(list_builtin_traces())}", param="path")
    file, upstream, licence, transformed = _SHIPPED[name]
    entry = resources.files("planner") / "data" / "traces" / file
    kind = "mooncake" if file.endswith(".jsonl") else "azure"
    w = _parse(entry.read_bytes().decode("utf-8-sig"), f"{_BUILTIN}{name}", file, kind)
    prov = dict(w.provenance, license=licence, upstream=upstream, source=f"{_BUILTIN}{name}")
    if transformed:
        prov["transformed"] = transformed
    return Workload(w.arrival_s, w.input_tokens, w.output_tokens, f"{_BUILTIN}{name}", prov)


# -- dispatch ------------------------------------------------------------------------------------
def _detect(text: str, path: Path, where: str) -> str:
    if path.suffix.lower() == ".jsonl":
        return "mooncake"
    first = text.lstrip().split("\n", 1)[0].strip()
    if first.startswith("{"):
        return "mooncake"
    try:
        header = [c.strip() for c in next(csv.reader([first]), [])]
    except csv.Error:  # e.g. a lone \r inside the first line: no known header
        header = []
    if header == _AZURE_HEADER:
        return "azure"
    if header == _BURST_HEADER:
        return "burstgpt"
    if not first:
        raise InputError(f"{where}: empty file", param="path")
    raise InputError(
        f"{where}: unrecognised trace; expected a CSV with header {','.join(_AZURE_HEADER)} (Azure 2023) or "
        f"{','.join(_BURST_HEADER)} (BurstGPT), or JSON lines with {', '.join(_MOONCAKE_KEYS)} (Mooncake)",
        param="path")


def _parse(text: str, where: str, file: str, kind: str, *, model=None, log_type=None) -> Workload:
    if kind == "mooncake":
        t, inp, out, start, extra = _mooncake(text, where)
    elif kind == "azure":
        t, inp, out, start, extra = _azure(text, where)
    else:
        t, inp, out, start, extra = _burstgpt(text, where, model, log_type)
    if not t:
        raise InputError(f"{where}: no requests" + (" after selecting rows" if extra else ""), param="path")
    arrival = np.asarray(t, dtype=np.float64)
    arrival = arrival - arrival[0]
    prov = {"source": file, "format": kind, "file": file, "start": start, **extra}
    return Workload(arrival, inp, out, file, prov)


def _positive_int(value, field: str) -> int:
    if isinstance(value, bool):
        raise _Bad(f"{field}: expected a whole number of tokens, got {value!r}")
    if isinstance(value, str):
        value = value.strip()
        if not re.fullmatch(r"[+-]?\d+", value):
            raise _Bad(f"{field}: expected a whole number of tokens, got {value!r}")
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise _Bad(f"{field}: expected a whole number of tokens, got {value!r}")
    if value < 1:
        raise _Bad(f"{field}: {value} tokens; every request needs at least 1")
    return value


def _seconds(value, field: str, scale: float = 1.0) -> float:
    try:
        x = float(value.strip()) if isinstance(value, str) else (float(value) if not isinstance(value, bool) else None)
    except ValueError:
        x = None
    if x is None or not math.isfinite(x) or x < 0:
        raise _Bad(f"{field}: expected a non-negative time, got {value!r}")
    return x * scale


def _ordered(times: list, t: float, field: str) -> None:
    if times and t < times[-1]:
        raise _Bad(f"{field}: {t:g} s is before the previous request ({times[-1]:g} s); traces must be sorted by time")


def _rows(text: str, where: str, header: list[str]):
    """(line number, row) of a CSV with exactly ``header``, blank lines skipped."""
    reader = csv.reader(io.StringIO(text, newline=""))  # newline="": a lone \r ends a line, as in a file
    try:
        first = next(reader)
    except StopIteration:
        raise InputError(f"{where}: empty file", param="path") from None
    except csv.Error as exc:
        raise InputError(f"{where}:1: {exc}", param="path") from None
    if [c.strip() for c in first] != header:
        raise InputError(f"{where}:1: expected header {','.join(header)}, got {','.join(first)}", param="path")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"{where}:{reader.line_num}: {exc}", param="path") from None
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise InputError(f"{where}:{reader.line_num}: expected {len(header)} fields ({','.join(header)}), "
                             f"got {len(row)}", param="path")
        yield reader.line_num, row


# -- formats -------------------------------------------------------------------------------------
def _azure_time(value: str) -> float:
    m = _DATETIME.fullmatch(value.strip())
    if m is None:
        raise _Bad(f"TIMESTAMP: expected 'YYYY-MM-DD HH:MM:SS.fraction', got {value!r}")
    y, mo, d, h, mi = (int(g) for g in m.groups()[:5])
    try:
        base = datetime(y, mo, d, h, mi, tzinfo=timezone.utc).timestamp()
    except ValueError as exc:
        raise _Bad(f"TIMESTAMP: {value!r} is not a date-time ({exc})") from None
    sec = float(m.group(6))
    if sec >= 61:
        raise _Bad(f"TIMESTAMP: {value!r} has {sec} seconds")
    return base + sec


def _azure(text: str, where: str):
    t, inp, out = [], [], []
    start = ""
    for line, row in _rows(text, where, _AZURE_HEADER):
        try:
            ts = _azure_time(row[0])
            if t and ts < t[-1]:
                raise _Bad(f"TIMESTAMP: {row[0].strip()} is before the previous request; traces must be sorted by time")
            i = _positive_int(row[1], "ContextTokens")
            o = _positive_int(row[2], "GeneratedTokens")
        except _Bad as exc:
            raise InputError(f"{where}:{line}: {exc}", param="path") from None
        start = start or row[0].strip()
        t.append(ts)
        inp.append(i)
        out.append(o)
    return t, inp, out, start, {}


def _mooncake(text: str, where: str):
    t, inp, out = [], [], []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}:{line}: malformed JSON at column {exc.colno}: {exc.msg}", param="path") from None
        try:
            if not isinstance(obj, dict):
                raise _Bad(f"expected a JSON object, got {type(obj).__name__}")
            missing = [k for k in _MOONCAKE_KEYS if k not in obj]
            if missing:
                raise _Bad(f"missing field(s) {', '.join(missing)}; expected {', '.join(_MOONCAKE_KEYS)}")
            ts = _seconds(obj["timestamp"], "timestamp", 1e-3)
            _ordered(t, ts, "timestamp")
            i = _positive_int(obj["input_length"], "input_length")
            o = _positive_int(obj["output_length"], "output_length")
        except _Bad as exc:
            raise InputError(f"{where}:{line}: {exc}", param="path") from None
        t.append(ts)
        inp.append(i)
        out.append(o)
    start = f"{t[0] * 1e3:g} ms" if t else ""
    return t, inp, out, start, {}


def _burstgpt(text: str, where: str, model, log_type):
    t, inp, out = [], [], []
    failed = skipped = 0
    last = None
    for line, row in _rows(text, where, _BURST_HEADER):
        try:
            ts = _seconds(row[0], "Timestamp")
            if last is not None and ts < last:
                raise _Bad(f"Timestamp: {ts:g} s is before the previous row ({last:g} s); traces must be sorted by time")
            last = ts
            response = row[3].strip()
            if response in ("0", "0.0"):
                failed += 1  # BurstGPT's marker of a failed request
                continue
            i = _positive_int(row[2], "Request tokens")
            o = _positive_int(row[3], "Response tokens")
        except _Bad as exc:
            raise InputError(f"{where}:{line}: {exc}", param="path") from None
        if (model is not None and row[1].strip() != model) or (log_type is not None and row[5].strip() != log_type):
            skipped += 1
            continue
        t.append(ts)
        inp.append(i)
        out.append(o)
    extra = {"dropped_failed_rows": failed}
    if model is not None or log_type is not None:
        extra.update(selected_model=model or "*", selected_log_type=log_type or "*", unselected_rows=skipped)
    start = f"{t[0]:g} s" if t else ""
    return t, inp, out, start, extra
