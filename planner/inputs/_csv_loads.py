"""SGLang per-rank CSV dumps ``layer_id,expert_id,count`` (see planner.inputs.readers)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from planner.common.fileio import decode_text
from planner.errors import InputError
from planner.inputs._common import BadContent, make_loads
from planner.inputs._engine_dumps import combine_ranks
from planner.inputs.loads import ExpertLoads

__all__ = ["read_csvs"]

_CSV_HEADER = ["layer_id", "expert_id", "count"]
# Without num_experts, a CSV's largest expert_id sizes the array; a typo must not allocate gigabytes.
_MAX_INFERRED_EXPERTS = 65_536


# -- per-rank CSV -----------------------------------------------------------------------------
def read_csvs(files: list[tuple[Path, str]], num_experts: int | None, rank_files: str = "auto") -> ExpertLoads:
    """One step of counts from per-rank files, summed (DP attention) or taken once (TP copies).

    ``rank_files`` (see :func:`~planner.inputs._engine_dumps.combine_ranks`): ``auto`` takes one file
    when all are identical (under tensor-parallel attention every rank's file holds every token),
    else sums them; ``sum`` and ``copies`` force one reading.
    """
    tables = [(where, _csv_table(path, where, num_experts)) for path, where in files]
    if num_experts is None:
        num_experts = _csv_num_experts(tables)
    layer_ids = sorted({layer for _, table in tables for layer, _ in table})
    row = {layer: i for i, layer in enumerate(layer_ids)}
    parts = []
    for _, table in tables:
        part = np.zeros((1, len(layer_ids), num_experts))
        for (layer, expert), count in table.items():
            part[0, row[layer], expert] = count
        parts.append(part)
    try:
        counts, note = combine_ranks(parts, [where for _, where in files], rank_files)
    except BadContent as exc:
        raise InputError(str(exc), param="rank_files") from None
    names = ", ".join(path.name for path, _ in files)
    provenance = {"source": names, "file": names, "format": "sglang-rank-csv", "ranks": str(len(files))}
    if len(files) > 1:
        provenance["rank_files"] = "copies" if counts is parts[0] else "sum"
    if note:
        provenance["reader_notes"] = note
    return make_loads(files[0][1], counts, layer_ids, None, names, provenance)


def _csv_table(path: Path, where: str, num_experts: int | None) -> dict[tuple[int, int], float]:
    """``{(layer_id, expert_id): count}`` of one rank file, every row checked."""
    text = decode_text(path.read_bytes(), where)
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
