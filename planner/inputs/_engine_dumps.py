"""Load dumps in the serving engines' own formats (see planner.inputs.readers and docs/engines.md).

* SGLang ``stat`` recorder ``expert_distribution_recorder_<t>.pt``: ``torch.save`` of ``{"rank",
  "logical_count": int [buffer_steps, num_hidden_layers, E], "average_utilization_rate_over_window"}``,
  already summed over ranks. The buffer is circular (SGLang's default 1000 rows); rows not yet written
  are zero and are dropped here (:func:`drop_unfilled_steps`).
* vLLM PR #41141 ``expert_load_stats_path`` JSONL: an optional ``{"record_type": "eplb_load_meta"}``
  record, then one ``{"record_type": "eplb_load_stats", "step", "expert_load": [moe_layer][slot],
  "p2l_map": [moe_layer][slot]}`` record per step. Loads are per *slot* (physical expert); they are
  folded through ``p2l_map`` into per-expert counts. The layer axis is the MoE-layer index.
* TensorRT-LLM ``ExpertStatistic`` directory: ``meta_info.json`` (``num_experts``,
  ``num_experts_per_token``) and ``rank<r>.safetensors`` with one ``[E]`` count vector per key
  ``"<iter>_<layer>"`` (absolute layer index), each rank counting its own tokens.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from planner.common.jsontext import parse_json
from planner.common.fileio import decode_text, read_input_text
from planner.errors import InputError
from planner.inputs._common import BadContent, make_loads
from planner.inputs._safetensors import read_safetensors
from planner.inputs._torch_zip import read_torch_zip
from planner.inputs.loads import ExpertLoads

__all__ = ["RANK_FILES", "read_sglang_pt", "read_vllm_jsonl", "read_trtllm_dir", "is_trtllm_dir",
           "drop_unfilled_steps", "combine_ranks"]

RANK_FILES = ("auto", "sum", "copies")
_TRT_KEY = re.compile(r"^(\d+)_(\d+)$")
_TRT_RANK = re.compile(r"^rank(\d+)\.safetensors$")


# -- shared rules -----------------------------------------------------------------------------
def drop_unfilled_steps(counts: np.ndarray) -> tuple[np.ndarray, int]:
    """Steps of a recorder buffer that hold tokens, and how many all-zero rows were dropped.

    SGLang's recorder keeps a circular buffer of ``buffer_size`` steps (default 1000) and dumps all
    of it: before it wraps, the rows not yet written are zero. A step in which no MoE layer received a
    token carries no load either, so every all-zero step is dropped.
    """
    filled = counts.reshape(counts.shape[0], -1).any(axis=1)
    if not filled.any():
        raise BadContent(f"every one of the {counts.shape[0]} recorded steps is zero (nothing recorded yet)")
    return counts[filled], int((~filled).sum())


def combine_ranks(parts: list[np.ndarray], names: list[str], rank_files: str) -> tuple[np.ndarray, str]:
    """One count array from per-rank arrays, and a note saying how.

    ``sum``: ranks counted disjoint tokens (attention DP), the files add up. ``copies``: every rank
    saw every token (attention TP), so every file holds the full count: take one (they must be equal).
    ``auto``: ``copies`` when there are several files and all are identical, else ``sum``.
    """
    if rank_files not in RANK_FILES:
        raise InputError(f"unknown {rank_files!r}; known: {', '.join(RANK_FILES)}", param="rank_files")
    same = len(parts) > 1 and all(p.shape == parts[0].shape and np.array_equal(p, parts[0]) for p in parts[1:])
    if rank_files == "copies" or (rank_files == "auto" and same):
        if not same and len(parts) > 1:
            i = next(i for i, p in enumerate(parts[1:], 1) if p.shape != parts[0].shape or not np.array_equal(p, parts[0]))
            raise BadContent(f"rank files {names[0]} and {names[i]} differ, so they are not copies of one "
                             "tensor-parallel count; read them with rank_files='sum'")
        note = "" if len(parts) == 1 else (
            f"{len(parts)} identical rank files read as tensor-parallel copies (one counted, not summed; "
            "rank_files='sum' adds them)" if rank_files == "auto" else f"{len(parts)} rank files read as copies")
        return parts[0], note
    return np.sum(parts, axis=0), ""


# -- SGLang .pt -------------------------------------------------------------------------------
def read_sglang_pt(path: Path, where: str) -> ExpertLoads:
    try:
        doc = read_torch_zip(path)
    except BadContent as exc:
        raise InputError(f"{where}: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{where}: a torch file holding {type(doc).__name__}; expected SGLang's recorder dict")
    if "records" in doc:
        raise InputError(f"{where}: an SGLang per_pass/per_token recorder dump (key 'records'); record with "
                         "--expert-distribution-recorder-mode stat, whose dump holds 'logical_count'")
    if "logical_count" not in doc:
        raise InputError(f"{where}: no 'logical_count' tensor; found keys {sorted(map(str, doc))}")
    counts = doc["logical_count"]
    if not isinstance(counts, np.ndarray) or counts.ndim not in (2, 3):
        shape = list(getattr(counts, "shape", ()))
        raise InputError(f"{where}: logical_count: expected a 2-D or 3-D tensor, got {type(counts).__name__} {shape}")
    provenance = {"format": "sglang-recorder-pt", "source": path.name, "file": path.name}
    if "rank" in doc:
        provenance["rank"] = str(doc["rank"])
    if counts.ndim == 3:
        provenance["buffer_steps"] = str(counts.shape[0])
        try:
            counts, dropped = drop_unfilled_steps(counts)
        except BadContent as exc:
            raise InputError(f"{where}: logical_count: {exc}") from None
        provenance["unfilled_steps_dropped"] = str(dropped)
        if dropped:
            provenance["reader_notes"] = (f"{dropped} of {counts.shape[0] + dropped} recorder buffer rows were "
                                          "empty (never written) and were dropped")
        else:  # SGLang does not dump its write position: a wrapped buffer's oldest row is unknown
            provenance["reader_notes"] = (f"all {counts.shape[0]} recorder buffer rows are filled: if the recorder "
                                          "ran longer, they hold its last steps in circular order (SGLang does not "
                                          "record where the oldest is), so a --window/--holdout split is arbitrary")
    rows = counts.sum(axis=0) if counts.ndim == 3 else counts
    provenance["all_zero_layers"] = ",".join(str(i) for i in range(rows.shape[0]) if not rows[i].any())
    return make_loads(where, counts, tuple(range(rows.shape[0])), None, path.name, provenance)


# -- vLLM JSONL -------------------------------------------------------------------------------
def read_vllm_jsonl(path: Path, where: str, num_experts: int | None) -> ExpertLoads:
    text = decode_text(path.read_bytes(), where)
    meta: dict = {}
    steps: list[tuple[np.ndarray, np.ndarray]] = []
    step_ids: list[int] = []
    model = None
    E = num_experts
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        at = f"{where}: line {n}"
        rec = parse_json(line, at)
        kind = rec.get("record_type") if isinstance(rec, dict) else None
        if kind == "eplb_load_meta":
            meta = rec
            E = E or _meta_experts(rec, at)
            model = rec.get("model") if isinstance(rec.get("model"), str) else model
            continue
        if kind != "eplb_load_stats":
            hint = " (a placement, not loads: give it to vLLM as initial_mapping_path)" if kind == "eplb_initial_mapping" else ""
            raise InputError(f"{at}: record_type {kind!r}; expected 'eplb_load_meta' or 'eplb_load_stats'{hint}")
        try:
            load, p2l = _slot_table(rec, "expert_load", float), _slot_table(rec, "p2l_map", int)
        except BadContent as exc:
            raise InputError(f"{at}: {exc}") from None
        if load.shape != p2l.shape:
            raise InputError(f"{at}: expert_load is {list(load.shape)} but p2l_map is {list(p2l.shape)} "
                             "(one entry per MoE layer and slot in both)")
        if steps and load.shape[0] != steps[0][0].shape[0]:
            raise InputError(f"{at}: {load.shape[0]} MoE layers, the first record has {steps[0][0].shape[0]}")
        if (p2l < 0).any():
            raise InputError(f"{at}: p2l_map holds a negative expert id {int(p2l.min())}")
        if E is not None and (p2l >= E).any():
            raise InputError(f"{at}: p2l_map holds expert id {int(p2l.max())}, but there are {E} experts")
        if (load < 0).any() or not np.isfinite(load).all():
            raise InputError(f"{at}: expert_load holds a negative or non-finite value")
        steps.append((load, p2l))
        step_ids.append(int(rec["step"]) if isinstance(rec.get("step"), int) else len(step_ids))
        if isinstance(rec.get("model"), str):
            model = rec["model"]
    if not steps:
        raise InputError(f"{where}: no 'eplb_load_stats' records")
    if E is None:
        E = 1 + max(int(p2l.max()) for _, p2l in steps)
    counts = np.zeros((len(steps), steps[0][0].shape[0], E))
    for s, (load, p2l) in enumerate(steps):
        for layer in range(load.shape[0]):  # per-slot loads summed per logical expert
            np.add.at(counts[s, layer], p2l[layer], load[layer])
    provenance = {"format": "vllm-eplb-load-stats-jsonl", "source": path.name, "file": path.name,
                  "layer_axis": "moe-layer-index", "first_step": str(step_ids[0]), "last_step": str(step_ids[-1]),
                  "num_slots": str(steps[0][0].shape[1])}
    if meta:
        provenance["meta"] = json.dumps({k: v for k, v in meta.items() if k != "record_type"}, sort_keys=True)[:2000]
    return make_loads(where, counts, (), model, path.name, provenance)


def _meta_experts(rec: dict, at: str) -> int | None:
    for key in ("num_logical_experts", "num_experts", "logical_experts"):
        if key in rec:
            if type(rec[key]) is not int or rec[key] < 1:
                raise InputError(f"{at}: {key}: expected a positive integer, got {rec[key]!r}")
            return rec[key]
    return None


def _slot_table(rec: dict, key: str, kind) -> np.ndarray:
    value = rec.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(r, list) for r in value):
        raise BadContent(f"{key}: expected a list of per-slot lists, one per MoE layer")
    width = len(value[0])
    if width == 0 or any(len(r) != width for r in value):
        raise BadContent(f"{key}: rows differ in length (or are empty); every MoE layer has the same slots")
    types = {int} if kind is int else {int, float}
    if any(type(x) not in types for r in value for x in r):
        raise BadContent(f"{key}: expected {'integers' if kind is int else 'numbers'}")
    try:
        return np.array(value, dtype=np.int64 if kind is int else np.float64)
    except OverflowError:
        raise BadContent(f"{key}: a number beyond the 64-bit range") from None


# -- TensorRT-LLM ExpertStatistic directory ---------------------------------------------------
def is_trtllm_dir(path: Path) -> bool:
    """True when ``path`` is a directory holding ``meta_info.json`` and ``rank<r>.safetensors`` files."""
    return path.is_dir() and (path / "meta_info.json").is_file() and any(
        _TRT_RANK.match(p.name) for p in path.iterdir())


def read_trtllm_dir(path: Path, where: str, num_experts: int | None, rank_files: str) -> ExpertLoads:
    meta = parse_json(read_input_text(path / "meta_info.json", "TensorRT-LLM meta_info.json"), f"{where}/meta_info.json")
    E = meta.get("num_experts") if isinstance(meta, dict) else None
    if type(E) is not int or E < 1:
        raise InputError(f"{where}/meta_info.json: num_experts: expected a positive integer, got {E!r}")
    if num_experts is not None and num_experts != E:
        raise InputError(f"{where}: num_experts mismatch: meta_info.json says {E}, expected {num_experts}")
    ranks = sorted(((int(m.group(1)), p) for p in path.iterdir() if (m := _TRT_RANK.match(p.name))))
    if [r for r, _ in ranks] != list(range(len(ranks))):
        raise InputError(f"{where}: rank files {[p.name for _, p in ranks]} are not rank0..rank{len(ranks) - 1}")
    parts, keys = [], None
    for _, p in ranks:
        at = f"{where}/{p.name}"
        try:
            tensors = read_safetensors(p)
        except BadContent as exc:
            raise InputError(f"{at}: {exc}") from None
        table = {}
        for key, arr in tensors.items():
            m = _TRT_KEY.match(key)
            if not m:
                raise InputError(f"{at}: tensor {key!r} is not named '<iteration>_<layer>'")
            if arr.shape != (E,):
                raise InputError(f"{at}: tensor {key!r} has shape {list(arr.shape)}, expected [{E}] (num_experts)")
            table[(int(m.group(1)), int(m.group(2)))] = arr
        if not table:
            raise InputError(f"{at}: no count tensors")
        if keys is None:
            keys = sorted(table)
        elif sorted(table) != keys:
            missing = sorted(set(keys) ^ set(table))[0]
            raise InputError(f"{at}: iteration/layer keys differ from rank0's (e.g. {missing[0]}_{missing[1]})")
        iters = sorted({i for i, _ in keys})
        layers = sorted({l for _, l in keys})
        if len(keys) != len(iters) * len(layers):
            raise InputError(f"{at}: not every iteration has every layer ({len(keys)} keys for "
                             f"{len(iters)} iterations x {len(layers)} layers)")
        part = np.zeros((len(iters), len(layers), E))
        row_of, col_of = {i: n for n, i in enumerate(iters)}, {l: n for n, l in enumerate(layers)}
        for (i, l), arr in table.items():
            part[row_of[i], col_of[l]] = arr
        if (part < 0).any():
            raise InputError(f"{at}: negative count")
        parts.append(part)
    try:
        counts, note = combine_ranks(parts, [p.name for _, p in ranks], rank_files)
    except BadContent as exc:
        raise InputError(f"{where}: {exc}") from None
    provenance = {"format": "trtllm-expert-statistic", "source": path.name, "file": path.name,
                  "ranks": str(len(ranks)), "first_iteration": str(iters[0]), "last_iteration": str(iters[-1])}
    if isinstance(meta.get("num_experts_per_token"), int):
        provenance["top_k"] = str(meta["num_experts_per_token"])
    if note:
        provenance["reader_notes"] = note
    return make_loads(where, counts, tuple(layers), None, path.name, provenance)
