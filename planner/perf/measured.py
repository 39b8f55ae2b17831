"""Measured operator and collective timings: the shipped Vidur tables and moeplan's op-timing CSV.

(Past 450 lines on purpose: each Vidur table converts to the op-timing format, the only one the
calibration reads, so the two formats and their converters change together.)

Shipped tables live in ``profiles/measured/`` and are read through ``importlib.resources`` (never a
path relative to the working directory); ``profiles/measured/PROVENANCE.md`` says where they come
from. Times are kernel times in **milliseconds**, as measured; sizes are bytes.

- ``compute/<gpu>-<model>-mlp.csv``: Vidur's per-operator times of one dense decoder layer
  (embedding, norms, QKV / output projections, rotary embedding, MLP up / activation / down, residual
  add) for 1-4096 tokens and tensor-parallel degrees 1, 2, 4, 8 -> :class:`ComputeTable`.
- ``network/<gpu>_dgx-<collective>.csv``: NCCL ``all_reduce`` / ``send_recv`` kernel times for
  2 KiB-64 MiB messages on DGX nodes -> :class:`NetworkTable`.

Both convert to an :class:`OpTable`, the one format the calibration reads. It is also the CSV that
moeplan's runtime profiler writes, so users can calibrate against their own hardware:

=================  ========================================================================
column             meaning
=================  ========================================================================
device             GPU profile id or alias (``h100``)
model              where the shapes come from (free text, may be empty)
op                 one of :data:`GEMM_OPS`, :data:`MEMORY_OPS`, :data:`COLLECTIVE_OPS`
num_tokens         tokens of the step (informational; 0 for collectives)
tp                 tensor-parallel degree the shapes were split by (informational)
m, n, k            GEMM ops: ``(m x k) @ (k x n)``; ``norm``, ``add``, ``rope``, ``embedding``:
                   ``m`` rows of ``k`` elements (rope: rotated elements per token);
                   ``act``: ``m`` rows, ``n`` input and ``k`` output elements per row
                   (``n = 2k`` for a gated SiLU-and-mul)
size_bytes         collectives: message bytes per GPU (the buffer handed to NCCL)
num_workers        collectives: GPUs in the group
devices_per_node   collectives: GPUs of the group on each node (< num_workers: spans nodes)
time_ms            measured time (median over repetitions), > 0
=================  ========================================================================

Columns that do not apply to a row are left empty. Elements are 2 bytes (FP16/BF16) unless the
latency model is told otherwise.

>>> t = load_compute_table("h100", "Llama-2-70b-hf")
>>> t.n_embd, t.n_expanded_embd, len(t)
(8192, 28672, 10440)
>>> float(t.time_ms[(t.op == "mlp_up_proj") & (t.num_tokens == 4096) & (t.tp == 1)][0])
5.6685
"""

from __future__ import annotations

import csv
import functools
import io
import math
from dataclasses import dataclass, fields
from importlib.resources import files
from pathlib import Path

import numpy as np

from planner.errors import InputError, ProfileNotFound
from planner.common.fileio import atomic_write_text, read_input_text
from planner.perf.op_times import MEMORY_OPS  # memory-bound ops: their time follows the bytes they move
from planner.profiles import PROFILES_PACKAGE, get_gpu

__all__ = [
    "GEMM_OPS",
    "MEMORY_OPS",
    "COLLECTIVE_OPS",
    "ComputeTable",
    "NetworkTable",
    "OpTable",
    "list_compute_tables",
    "list_network_tables",
    "load_compute_table",
    "load_network_table",
    "load_op_table",
    "write_op_table",
]

#: ops timed as a GEMM ``(m x k) @ (k x n)``; the named ones are Vidur's projections
GEMM_OPS = ("gemm", "attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
#: NCCL collectives
COLLECTIVE_OPS = ("all_reduce", "send_recv", "all_to_all")

# Vidur's file prefix -> moeplan GPU profile. Vidur profiles "a100" on DGX A100 80 GB nodes and
# "h100" on DGX H100 (Vidur README, "supported devices").
_GPU_OF_PREFIX = {"h100": "h100", "a100": "a100-80g"}
# Vidur operator (sarathi kernel timed by vidur/profiling/mlp/mlp_impl.py) -> moeplan op family
_VIDUR_OPS = {
    "emb": "embedding",
    "input_layernorm": "norm",
    "attn_pre_proj": "attn_pre_proj",
    "attn_rope": "rope",
    "attn_post_proj": "attn_post_proj",
    "post_attention_layernorm": "norm",
    "mlp_up_proj": "mlp_up_proj",
    "mlp_act": "act",
    "mlp_down_proj": "mlp_down_proj",
    "add": "add",
}
_OP_COLUMNS = (
    "device", "model", "op", "num_tokens", "tp", "m", "n", "k",
    "size_bytes", "num_workers", "devices_per_node", "time_ms",
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class OpTable:
    """Measured op times in moeplan's op-timing format, one array entry per measurement.

    Integer columns hold 0 where a column does not apply (``m`` of a collective, ``num_workers`` of
    a GEMM). Build one with :func:`load_op_table`, :meth:`ComputeTable.to_op_table`,
    :meth:`NetworkTable.to_op_table` or :meth:`concat`.
    """

    device: np.ndarray  # str, GPU profile id
    model: np.ndarray  # str
    op: np.ndarray  # str
    num_tokens: np.ndarray  # int64
    tp: np.ndarray  # int64
    m: np.ndarray  # int64
    n: np.ndarray  # int64
    k: np.ndarray  # int64
    size_bytes: np.ndarray  # float64
    num_workers: np.ndarray  # int64
    devices_per_node: np.ndarray  # int64
    time_ms: np.ndarray  # float64
    source: str = ""

    def __len__(self) -> int:
        return int(self.time_ms.size)

    def select(self, mask: np.ndarray) -> OpTable:
        """The rows where ``mask`` is true, as a new table."""
        cols = {f.name: getattr(self, f.name)[mask] for f in fields(self) if f.name != "source"}
        return OpTable(**cols, source=self.source)

    @staticmethod
    def concat(tables) -> OpTable:
        """All rows of several tables, in order; sources joined with ``"; "``."""
        tables = list(tables)
        if not tables:
            raise InputError("OpTable.concat: no tables given")
        cols = {
            f.name: np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(OpTable) if f.name != "source"
        }
        return OpTable(**cols, source="; ".join(dict.fromkeys(t.source for t in tables if t.source)))

    def to_csv_text(self) -> str:
        """The table in the op-timing CSV format (empty cells where a column does not apply)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(_OP_COLUMNS)
        for i in range(len(self)):
            row = []
            for name in _OP_COLUMNS:
                value = getattr(self, name)[i]
                if name in ("device", "model", "op"):
                    row.append(str(value))
                elif name == "time_ms":
                    row.append(repr(float(value)))
                elif name == "size_bytes":
                    row.append(repr(float(value)) if value > 0 else "")
                else:
                    row.append(str(int(value)) if value > 0 else "")
            writer.writerow(row)
        return out.getvalue()


@dataclass(frozen=True, eq=False)
class ComputeTable:
    """One shipped Vidur compute table: operator medians of one dense model on one GPU.

    One row per operator and measured step (``len = 10 x steps``). Shapes of the model are scalar
    fields; ``head_dim = n_embd / n_head``.
    """

    gpu: str  # moeplan GPU profile id
    model_name: str  # Vidur's model name, e.g. "Llama-2-70b-hf"
    n_head: int
    n_kv_head: int
    n_embd: int
    n_expanded_embd: int
    vocab_size: int
    use_gated_mlp: bool
    op: np.ndarray  # str, Vidur operator name (keys of the module's operator map)
    num_tokens: np.ndarray  # int64
    tp: np.ndarray  # int64, num_tensor_parallel_workers
    time_ms: np.ndarray  # float64, median kernel time over Vidur's 20 active steps

    def __len__(self) -> int:
        return int(self.time_ms.size)

    def to_op_table(self) -> OpTable:
        """Rows in the op-timing format, with the shape each operator computes on one TP rank.

        Sarathi's layers as Vidur times them (``vidur/profiling/mlp/mlp_impl.py``), with
        ``T`` tokens, ``d = n_embd / n_head`` and ``g = 2`` for a gated MLP:
        ``attn_pre_proj`` = QKV ``(T x n_embd) @ (n_embd x (n_head + 2 n_kv_head) d / tp)``;
        ``attn_post_proj`` = ``(T x n_head d / tp) @ (n_head d / tp x n_embd)``;
        ``mlp_up_proj`` = ``(T x n_embd) @ (n_embd x g n_expanded_embd / tp)``;
        ``mlp_down_proj`` = ``(T x n_expanded_embd / tp) @ (. x n_embd)``; norms, residual add
        and embedding work on ``T x n_embd`` (not split by TP); rope rotates q and k,
        ``(n_head + n_kv_head) d / tp`` elements per token; the activation reads
        ``g n_expanded_embd / tp`` and writes ``n_expanded_embd / tp`` per token.
        """
        T, tp = self.num_tokens, self.tp
        H, d = self.n_embd, self.n_embd // self.n_head
        inner = self.n_expanded_embd // tp
        g = 2 if self.use_gated_mlp else 1
        zero = np.zeros_like(T)
        shapes = {  # op -> (k, n) per row; m = T for every compute op
            "attn_pre_proj": (np.full_like(T, H), (self.n_head + 2 * self.n_kv_head) * d // tp),
            "attn_post_proj": (self.n_head * d // tp, np.full_like(T, H)),
            "mlp_up_proj": (np.full_like(T, H), g * inner),
            "mlp_down_proj": (inner, np.full_like(T, H)),
            "act": (inner, g * inner),
            "rope": ((self.n_head + self.n_kv_head) * d // tp, zero),
        }
        family = np.array([_VIDUR_OPS[o] for o in self.op])
        k, n = np.full_like(T, H), zero.copy()
        for name, (k_op, n_op) in shapes.items():
            rows = family == name
            k[rows], n[rows] = np.broadcast_to(k_op, T.shape)[rows], np.broadcast_to(n_op, T.shape)[rows]
        size = T.size
        return OpTable(
            device=np.full(size, self.gpu),
            model=np.full(size, self.model_name),
            op=family,
            num_tokens=T.copy(),
            tp=tp.copy(),
            m=T.copy(),
            n=n,
            k=k,
            size_bytes=np.zeros(size),
            num_workers=np.zeros(size, dtype=np.int64),
            devices_per_node=np.zeros(size, dtype=np.int64),
            time_ms=self.time_ms.copy(),
            source=f"vidur compute/{self.gpu}/{self.model_name}",
        )


@dataclass(frozen=True, eq=False)
class NetworkTable:
    """One shipped Vidur collective table: NCCL kernel medians vs message size and group shape."""

    gpu: str  # moeplan GPU profile id
    collective: str  # "all_reduce" or "send_recv"
    num_workers: np.ndarray  # int64, GPUs in the group
    devices_per_node: np.ndarray  # int64, GPUs of the group per node (< num_workers: multi-node)
    size_bytes: np.ndarray  # int64, message bytes per GPU (FP16 buffer of size_bytes / 2 elements)
    time_ms: np.ndarray  # float64, median NCCL kernel time

    def __len__(self) -> int:
        return int(self.time_ms.size)

    def to_op_table(self) -> OpTable:
        """Rows in the op-timing format."""
        size = len(self)
        zeros = np.zeros(size, dtype=np.int64)
        return OpTable(
            device=np.full(size, self.gpu),
            model=np.full(size, ""),
            op=np.full(size, self.collective),
            num_tokens=zeros.copy(),
            tp=zeros.copy(),
            m=zeros.copy(),
            n=zeros.copy(),
            k=zeros.copy(),
            size_bytes=self.size_bytes.astype(np.float64),
            num_workers=self.num_workers.copy(),
            devices_per_node=self.devices_per_node.copy(),
            time_ms=self.time_ms.copy(),
            source=f"vidur network/{self.gpu}/{self.collective}",
        )


def _measured_dir(kind: str):
    return files(PROFILES_PACKAGE).joinpath("measured", kind)


@functools.cache
def _index(kind: str) -> dict[tuple[str, str], str]:
    """(gpu id, model or collective) -> file name of the shipped tables of one kind."""
    out = {}
    for entry in _measured_dir(kind).iterdir():
        name = entry.name
        if not name.endswith(".csv"):
            continue
        if kind == "compute" and name.endswith("-mlp.csv"):
            prefix, _, rest = name[: -len("-mlp.csv")].partition("-")
        elif kind == "network" and "_dgx-" in name:
            prefix, _, rest = name[: -len(".csv")].partition("_dgx-")
        else:
            continue
        if prefix in _GPU_OF_PREFIX:
            out[(_GPU_OF_PREFIX[prefix], rest)] = name
    return out


def list_compute_tables() -> list[tuple[str, str]]:
    """``(gpu id, model name)`` of every shipped compute table, sorted.

    >>> list_compute_tables()[:2]
    [('a100-80g', 'Llama-2-70b-hf'), ('a100-80g', 'Llama-2-7b-hf')]
    """
    return sorted(_index("compute"))


def list_network_tables() -> list[tuple[str, str]]:
    """``(gpu id, collective)`` of every shipped network table, sorted.

    >>> list_network_tables()
    [('a100-80g', 'all_reduce'), ('a100-80g', 'send_recv'), ('h100', 'all_reduce'), ('h100', 'send_recv')]
    """
    return sorted(_index("network"))


def _gpu_id(gpu: str) -> str:
    key = str(gpu).strip().lower()
    if key in _GPU_OF_PREFIX:  # Vidur's own spelling ("a100")
        return _GPU_OF_PREFIX[key]
    try:
        return get_gpu(key).id
    except InputError:
        return key  # unknown: the caller reports it with the list of tables


def _find(kind: str, gpu: str, what: str) -> str:
    index = _index(kind)
    key = (_gpu_id(gpu), what)
    if key in index:
        return index[key]
    # model names are matched case-insensitively ("llama-2-70b-hf")
    for (g, w), name in index.items():
        if g == key[0] and w.lower() == str(what).strip().lower():
            return name
    known = ", ".join(f"{g}/{w}" for g, w in sorted(index))
    raise ProfileNotFound(f"no measured {kind} table for GPU {gpu!r} and {what!r}; shipped: {known}")


def _frozen(table):
    """Make the arrays of a cached table read-only, so no caller can change what others see."""
    for f in fields(table):
        value = getattr(table, f.name)
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return table


def _read_table(kind: str, gpu: str, what: str) -> tuple[list[dict[str, str]], str, str]:
    """Rows of the shipped table of ``kind`` for ``gpu`` and ``what``, its GPU id and its own name for ``what``."""
    name = _find(kind, gpu, what)
    text = _measured_dir(kind).joinpath(name).read_text(encoding="utf-8")
    gpu_id, what = next((g, w) for (g, w), n in _index(kind).items() if n == name)
    return list(csv.DictReader(io.StringIO(text))), gpu_id, what


@functools.cache
def load_compute_table(gpu: str, model_name: str) -> ComputeTable:
    """A shipped Vidur compute table as a tidy :class:`ComputeTable` (cached, read-only arrays).

    Parameters
    ----------
    gpu : GPU profile id or alias (``"h100"``, ``"a100-80g"``; Vidur's ``"a100"`` also works).
    model_name : Vidur's model name (``"Llama-2-7b-hf"``, ``"Llama-2-70b-hf"``, ``"Qwen-72B"``),
        case-insensitive.

    Raises
    ------
    ProfileNotFound
        No such table; the message lists the shipped ones.
    """
    rows, gpu_id, model = _read_table("compute", gpu, model_name)
    first = rows[0]
    ops = list(_VIDUR_OPS)
    count = len(rows)
    return _frozen(ComputeTable(
        gpu=gpu_id,
        model_name=model,
        n_head=int(first["n_head"]),
        n_kv_head=int(first["n_kv_head"]),
        n_embd=int(first["n_embd"]),
        n_expanded_embd=int(first["n_expanded_embd"]),
        vocab_size=int(first["vocab_size"]),
        use_gated_mlp=first["use_gated_mlp"].strip().lower() == "true",
        op=np.repeat(np.array(ops), count),
        num_tokens=np.tile(np.array([int(r["num_tokens"]) for r in rows], dtype=np.int64), len(ops)),
        tp=np.tile(np.array([int(r["num_tensor_parallel_workers"]) for r in rows], dtype=np.int64), len(ops)),
        time_ms=np.array([float(r[f"time_stats.{op}.median"]) for op in ops for r in rows]),
    ))


@functools.cache
def load_network_table(gpu: str, collective: str) -> NetworkTable:
    """A shipped Vidur collective table as a tidy :class:`NetworkTable` (cached, read-only arrays).

    Parameters
    ----------
    gpu : GPU profile id or alias.
    collective : ``"all_reduce"`` or ``"send_recv"``.

    Raises
    ------
    ProfileNotFound
        No such table; the message lists the shipped ones.

    Examples
    --------
    >>> t = load_network_table("h100", "all_reduce")
    >>> sorted(set(t.num_workers.tolist())), int(t.size_bytes.max())
    ([2, 4, 8], 67108864)
    """
    rows, gpu_id, what = _read_table("network", gpu, collective)
    return _frozen(NetworkTable(
        gpu=gpu_id,
        collective=what,
        num_workers=np.array([int(r["num_workers"]) for r in rows], dtype=np.int64),
        devices_per_node=np.array([int(r["devices_per_node"]) for r in rows], dtype=np.int64),
        size_bytes=np.array([int(r["size"]) for r in rows], dtype=np.int64),  # Vidur writes bytes
        time_ms=np.array([float(r[f"time_stats.{what}.median"]) for r in rows]),
    ))


def _cell(value: str, column: str, where: str, *, integer: bool):
    """A non-negative number from one CSV cell (an integer if asked); an empty cell is 0."""
    text = (value or "").strip()
    if not text:
        return 0 if integer else 0.0
    try:
        number = float(text)
    except ValueError:
        raise InputError(f"{where}: {column} must be a number, got {text!r}") from None
    if not math.isfinite(number) or number < 0 or (integer and number != int(number)):
        kind = "a non-negative integer" if integer else "a finite number >= 0"
        raise InputError(f"{where}: {column} must be {kind}, got {text!r}")
    return int(number) if integer else number


def _check_row(row: dict, where: str) -> None:
    op = row["op"]
    if op in GEMM_OPS and min(row["m"], row["n"], row["k"]) < 1:
        raise InputError(f"{where}: GEMM op {op!r} needs m, n, k >= 1")
    if op in MEMORY_OPS and min(row["m"], row["k"]) < 1:
        raise InputError(f"{where}: op {op!r} needs m (rows) and k (elements per row) >= 1")
    if op == "act" and row["n"] < row["k"]:
        raise InputError(f"{where}: op 'act' needs n (input elements per row) >= k (output elements)")
    bad_group = row["size_bytes"] <= 0 or row["num_workers"] < 2 or row["devices_per_node"] < 1
    if op in COLLECTIVE_OPS and bad_group:
        raise InputError(f"{where}: collective {op!r} needs size_bytes > 0, num_workers >= 2 and devices_per_node >= 1")
    if row["time_ms"] <= 0:
        raise InputError(f"{where}: time_ms must be > 0, got {row['time_ms']!r}")


def load_op_table(path: str | Path) -> OpTable:
    """Read a CSV in the op-timing format (module docstring); every row is checked.

    Raises
    ------
    InputError
        Unreadable file, a missing column, an unknown op, or a bad value (the message names the
        row and the column).
    """
    p = Path(path)
    text = read_input_text(p, "op-timing CSV")
    try:
        return _op_table_rows(p, csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InputError(f"{p}: not a CSV file ({exc})") from None


def _op_table_rows(p: Path, reader: csv.DictReader) -> OpTable:
    """The rows of :func:`load_op_table`, checked, as an :class:`OpTable`."""
    missing = [c for c in ("device", "op", "time_ms") if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{p}: missing column(s) {', '.join(missing)}; expected {','.join(_OP_COLUMNS)}")
    known = GEMM_OPS + MEMORY_OPS + COLLECTIVE_OPS
    rows = []
    for i, raw in enumerate(reader, start=2):  # line 1 is the header
        where = f"{p}: line {i}"
        op = (raw.get("op") or "").strip()
        if op not in known:
            raise InputError(f"{where}: unknown op {op!r}; known: {', '.join(known)}")
        device = (raw.get("device") or "").strip()
        if not device:
            raise InputError(f"{where}: device is empty")
        row = {"device": _gpu_id(device), "model": (raw.get("model") or "").strip(), "op": op}
        for name in ("num_tokens", "tp", "m", "n", "k", "num_workers", "devices_per_node"):
            row[name] = _cell(raw.get(name), name, where, integer=True)
        row["size_bytes"] = _cell(raw.get("size_bytes"), "size_bytes", where, integer=False)
        row["time_ms"] = _cell(raw.get("time_ms"), "time_ms", where, integer=False)
        _check_row(row, where)
        rows.append(row)
    if not rows:
        raise InputError(f"{p}: no rows")
    cols = {}
    for name in _OP_COLUMNS:
        values = [r[name] for r in rows]
        if name in ("device", "model", "op"):
            cols[name] = np.array(values, dtype=str)
        elif name in ("size_bytes", "time_ms"):
            cols[name] = np.array(values, dtype=np.float64)
        else:
            try:
                cols[name] = np.array(values, dtype=np.int64)
            except OverflowError:
                raise InputError(f"{p}: column {name}: a value beyond the 64-bit integer range") from None
    return OpTable(**cols, source=str(p))


def write_op_table(table: OpTable, path: str | Path) -> Path:
    """Write ``table`` atomically in the op-timing CSV format; :func:`load_op_table` reads it back."""
    return atomic_write_text(path, table.to_csv_text())
