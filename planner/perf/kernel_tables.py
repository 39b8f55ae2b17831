r"""Measured kernel tables per GPU: GEMMs by number format, MoE grouped GEMMs, attention, collectives.

The op-timing CSV of :mod:`planner.perf.measured` describes a dense layer (a GEMM is ``m, n, k``);
the kernels of a MoE serving step need more: the number formats of a GEMM, the tokens, experts and
routing of a fused MoE, the heads and lengths of an attention kernel, the ranks and nodes of an
expert-parallel dispatch. A **kernel table** is one CSV per (GPU, family) with the family's own
columns, every unit in its name, times in **milliseconds**:

==================  ===============================================================================
family              columns (besides ``time_ms``)
==================  ===============================================================================
gemm                ``weights, activations`` (moeplan format names), ``m, n, k``: ``(m x k) @ (k x n)``
moe                 ``weights, activations, num_tokens, hidden_size, inter_size, num_experts, top_k,
                    moe_tp, moe_ep, distribution``: one EP rank's fused MoE (gated up-projection,
                    activation, down-projection, routing) on ``num_tokens`` tokens of the whole EP
                    group; ``distribution`` ``balanced`` or ``power_law_<alpha>`` (the busiest rank)
attention_prefill   ``compute, kv_cache, batch, isl_tokens, num_heads, num_kv_heads, head_dim,
                    window_tokens`` (0 = full): causal attention of one rank's heads
attention_decode    ``kv_cache, batch, context_tokens, num_heads, num_kv_heads, head_dim,
                    window_tokens``: one new token per sequence against its KV cache
mla_prefill         ``kv_cache, batch, isl_tokens, num_heads``: DeepSeek MLA attention of one rank
mla_decode          ``kv_cache, batch, context_tokens, num_heads``
collective          ``op`` (``all_reduce``, ``all_gather``, ``reduce_scatter``, ``all_to_all``),
                    ``implementation`` (``nccl``, ``custom``), ``size_bytes``, ``num_gpus``: one node;
                    sizes as nccl-tests counts them (all_reduce the buffer, all_gather the gathered
                    output, reduce_scatter the input, all_to_all the send buffer of one rank)
moe_dispatch        ``phase`` (``dispatch``, ``combine``), ``mode`` (``normal``, ``low_latency``),
                    ``element`` (format sent), ``tokens_per_rank, hidden_size, top_k, num_experts,
                    ep, nodes``: DeepEP's expert-parallel all-to-all, time of one rank
==================  ===============================================================================

Shipped tables live in ``profiles/measured/aic/<gpu>/<family>.csv`` and were extracted from NVIDIA
AIConfigurator's silicon database (Apache-2.0; ``profiles/measured/aic/PROVENANCE.md`` and
``manifest.json`` name the source file, framework and version of each).
:func:`planner.perf.aic_database.read_installed` reads the same families straight from an
installed ``aiconfigurator`` (the optional extra ``aic``), so a newer database can be used without
moeplan shipping it.

>>> t = load_kernel_table("h200", "moe")
>>> t.family, len(t) > 100, float(t["time_ms"].min()) > 0
('moe', True, True)
>>> sorted(set(t["weights"].tolist()))[:2]
['bf16', 'fp8']
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np

from planner.common.fileio import atomic_write_text, read_input_text
from planner.errors import InputError, ProfileNotFound
from planner.profiles import PROFILES_PACKAGE, get_format, get_gpu

__all__ = [
    "FAMILIES",
    "TEXT_COLUMNS",
    "KernelTable",
    "list_kernel_tables",
    "load_kernel_table",
    "kernel_table_provenance",
    "load_kernel_csv",
    "write_kernel_table",
    "kernel_table_from_columns",
]

#: columns of each family, in file order (``time_ms`` last)
FAMILIES = {
    "gemm": ("weights", "activations", "m", "n", "k", "time_ms"),
    "moe": ("weights", "activations", "num_tokens", "hidden_size", "inter_size", "num_experts", "top_k",
            "moe_tp", "moe_ep", "distribution", "time_ms"),
    "attention_prefill": ("compute", "kv_cache", "batch", "isl_tokens", "num_heads", "num_kv_heads", "head_dim",
                          "window_tokens", "time_ms"),
    "attention_decode": ("kv_cache", "batch", "context_tokens", "num_heads", "num_kv_heads", "head_dim",
                         "window_tokens", "time_ms"),
    "mla_prefill": ("kv_cache", "batch", "isl_tokens", "num_heads", "time_ms"),
    "mla_decode": ("kv_cache", "batch", "context_tokens", "num_heads", "time_ms"),
    "collective": ("op", "implementation", "size_bytes", "num_gpus", "time_ms"),
    "moe_dispatch": ("phase", "mode", "element", "tokens_per_rank", "hidden_size", "top_k", "num_experts", "ep",
                     "nodes", "time_ms"),
}  # fmt: skip
#: columns holding names; every other column but ``time_ms`` holds non-negative integers
TEXT_COLUMNS = frozenset({"weights", "activations", "distribution", "compute", "kv_cache", "op", "implementation",
                          "phase", "mode", "element"})  # fmt: skip
_FORMAT_COLUMNS = ("weights", "activations", "compute", "kv_cache", "element")
_CHOICES = {
    "op": ("all_reduce", "all_gather", "reduce_scatter", "all_to_all"),
    "implementation": ("nccl", "custom"),
    "phase": ("dispatch", "combine"),
    "mode": ("normal", "low_latency"),
}
_DIR = "aic"


@dataclass(frozen=True, eq=False)
class KernelTable:
    """One family of measured kernel times on one GPU: a column name -> array mapping.

    Text columns are numpy string arrays, ``time_ms`` float64, the others int64. ``source`` says
    where the rows come from (a shipped file, a path, an installed database).
    """

    gpu: str
    family: str
    columns: dict = field(repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise InputError(f"unknown kernel family {self.family!r}; known: {', '.join(FAMILIES)}", param="family")
        missing = [c for c in FAMILIES[self.family] if c not in self.columns]
        if missing:
            raise InputError(f"{self.family} table lacks column(s) {', '.join(missing)}", param="columns")
        sizes = {np.asarray(v).shape[0] for v in self.columns.values()}
        if len(sizes) > 1:
            raise InputError(f"{self.family} table: columns of different lengths {sorted(sizes)}", param="columns")

    def __len__(self) -> int:
        return int(np.asarray(self.columns["time_ms"]).shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            raise InputError(f"{self.family} table has no column {name!r}; has {', '.join(self.columns)}") from None

    def select(self, mask) -> KernelTable:
        """The rows where ``mask`` is true, as a new table."""
        mask = np.asarray(mask)
        return KernelTable(self.gpu, self.family, {k: v[mask] for k, v in self.columns.items()}, self.source)

    def where(self, **equal) -> KernelTable:
        """The rows whose columns equal the given values (``t.where(weights="fp8-block", moe_ep=8)``)."""
        mask = np.ones(len(self), dtype=bool)
        for name, value in equal.items():
            mask &= self[name] == value
        return self.select(mask)

    @staticmethod
    def concat(tables) -> KernelTable:
        """All rows of several tables of one GPU and family, in order."""
        tables = list(tables)
        if not tables:
            raise InputError("KernelTable.concat: no tables given")
        first = tables[0]
        if any(t.family != first.family or t.gpu != first.gpu for t in tables):
            raise InputError("KernelTable.concat: tables of different GPUs or families")
        cols = {c: np.concatenate([t.columns[c] for t in tables]) for c in FAMILIES[first.family]}
        return KernelTable(first.gpu, first.family, cols, "; ".join(dict.fromkeys(t.source for t in tables)))

    def to_csv_text(self) -> str:
        """The table as CSV in the family's column order."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        names = FAMILIES[self.family]
        writer.writerow(names)
        arrays = [self.columns[c] for c in names]
        for i in range(len(self)):
            writer.writerow([_cell_text(c, a[i]) for c, a in zip(names, arrays)])
        return out.getvalue()


def _cell_text(column: str, value) -> str:
    if column in TEXT_COLUMNS:
        return str(value)
    if column == "time_ms":
        return f"{float(value):.6g}"
    return str(int(value))


def _root():
    return files(PROFILES_PACKAGE).joinpath("measured", _DIR)


@functools.cache
def _index() -> dict[tuple[str, str], str]:
    out = {}
    root = _root()
    if not root.is_dir():
        return out
    for gpu_dir in root.iterdir():
        if not gpu_dir.is_dir():
            continue
        for entry in gpu_dir.iterdir():
            name = entry.name
            if name.endswith(".csv") and name[:-4] in FAMILIES:
                out[(gpu_dir.name, name[:-4])] = f"{gpu_dir.name}/{name}"
    return out


def list_kernel_tables() -> list[tuple[str, str]]:
    """``(gpu id, family)`` of every shipped kernel table, sorted.

    >>> sorted({g for g, _ in list_kernel_tables()})
    ['a100-80g', 'b200', 'h100', 'h200']
    """
    return sorted(_index())


def _gpu_id(gpu) -> str:
    return gpu.id if hasattr(gpu, "id") else get_gpu(gpu).id


@functools.cache
def _manifest() -> dict:
    entry = _root().joinpath("manifest.json")
    return json.loads(entry.read_text(encoding="utf-8")) if entry.is_file() else {"files": {}}


def kernel_table_provenance(gpu, family: str) -> dict:
    """The manifest entry of a shipped table: source files, framework and version, licence, rows.

    >>> p = kernel_table_provenance("h200", "gemm")
    >>> p["framework"], p["license"]
    ('trtllm', 'Apache-2.0')
    """
    key = (_gpu_id(gpu), family)
    if key not in _index():
        raise ProfileNotFound(f"no shipped {family} kernel table for {key[0]}; shipped: "
                              f"{', '.join(f'{g}/{f}' for g, f in list_kernel_tables())}")  # fmt: skip
    return dict(_manifest()["files"][_index()[key]])


@functools.cache
def load_kernel_table(gpu, family: str) -> KernelTable:
    """A shipped kernel table (cached; its arrays are read-only).

    Raises
    ------
    ProfileNotFound
        No such table; the message lists the shipped ones.
    """
    key = (_gpu_id(gpu), family)
    index = _index()
    if key not in index:
        raise ProfileNotFound(f"no shipped {family} kernel table for {key[0]}; shipped: "
                              f"{', '.join(f'{g}/{f}' for g, f in list_kernel_tables())}")  # fmt: skip
    text = _root().joinpath(index[key]).read_text(encoding="utf-8")
    table = _parse(text, key[0], family, f"profiles/measured/{_DIR}/{index[key]}")
    for array in table.columns.values():
        array.flags.writeable = False
    return table


def load_kernel_csv(path: str | Path, gpu, family: str) -> KernelTable:
    """Read a kernel table of ``family`` for ``gpu`` from a CSV file (your own measurements).

    Raises
    ------
    InputError
        Unreadable file, a missing column, or a bad value (the message names line and column).
    """
    p = Path(path)
    text = read_input_text(p, "kernel table")
    return _parse(text, _gpu_id(gpu), family, str(p))


def _parse(text: str, gpu: str, family: str, where: str) -> KernelTable:
    if family not in FAMILIES:
        raise InputError(f"unknown kernel family {family!r}; known: {', '.join(FAMILIES)}", param="family")
    names = FAMILIES[family]
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in names if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{where}: missing column(s) {', '.join(missing)}; expected {','.join(names)}")
    values = {c: [] for c in names}
    for line, row in enumerate(reader, start=2):
        for c in names:
            values[c].append(_value(c, row.get(c), f"{where}: line {line}"))
    if not values["time_ms"]:
        raise InputError(f"{where}: no rows")
    cols = {}
    for c in names:
        if c in TEXT_COLUMNS:
            cols[c] = np.array(values[c], dtype=str)
        elif c == "time_ms":
            cols[c] = np.array(values[c], dtype=np.float64)
        else:
            cols[c] = np.array(values[c], dtype=np.int64)
    return KernelTable(gpu, family, cols, where)


def _value(column: str, text, where: str):
    text = (text or "").strip()
    if column in TEXT_COLUMNS:
        if not text:
            raise InputError(f"{where}: {column} is empty")
        if column in _FORMAT_COLUMNS:
            return get_format(text).name  # InputError names the unknown format
        if column in _CHOICES and text not in _CHOICES[column]:
            raise InputError(f"{where}: {column} must be one of {', '.join(_CHOICES[column])}, got {text!r}")
        if column == "distribution" and text != "balanced" and not text.startswith("power_law_"):
            raise InputError(f"{where}: distribution must be 'balanced' or 'power_law_<alpha>', got {text!r}")
        return text
    try:
        number = float(text)
    except ValueError:
        raise InputError(f"{where}: {column} must be a number, got {text!r}") from None
    if column == "time_ms":
        if not (math.isfinite(number) and number > 0):
            raise InputError(f"{where}: time_ms must be > 0, got {text!r}")
        return number
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise InputError(f"{where}: {column} must be a non-negative integer, got {text!r}")
    return int(number)


def write_kernel_table(table: KernelTable, path: str | Path) -> Path:
    """Write ``table`` atomically as CSV; :func:`load_kernel_csv` reads it back."""
    return atomic_write_text(path, table.to_csv_text())


def kernel_table_from_columns(gpu, family: str, columns: dict, source: str) -> KernelTable:
    """A table from a mapping of the family's columns to sequences (e.g. a data frame's), each cast to
    its column type (names as strings, ``time_ms`` float, the rest rounded to integers)."""
    if family not in FAMILIES:
        raise InputError(f"unknown kernel family {family!r}; known: {', '.join(FAMILIES)}", param="family")
    cols = {}
    for c in FAMILIES[family]:
        values = np.asarray(columns[c])
        if c in TEXT_COLUMNS:
            cols[c] = values.astype(str)
        elif c == "time_ms":
            cols[c] = values.astype(np.float64)
        else:
            cols[c] = np.rint(values.astype(np.float64)).astype(np.int64)
    return KernelTable(_gpu_id(gpu), family, cols, source)
