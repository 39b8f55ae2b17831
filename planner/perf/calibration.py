r"""Fit the efficiency factors of :mod:`planner.perf.latency` to measured op timings.

(Past ~450 lines: the fit, its error report and the held-out protocols built on them are one job.)

Method. Each op family has its own parameters (the fields of one group of
:class:`~planner.perf.factors.EfficiencyFactors`), fitted by ``scipy.optimize.least_squares``
(trust-region reflective, bounds: fractions in (0, 1], times positive through their logarithm) on
log-time residuals ``log t_model - log t_measured``, i.e. on relative error, so a 2 us kernel
counts as much as a 5 ms one (DistServe fits its latency model on relative error too)::

    GEMMs (attn_pre_proj, attn_post_proj, mlp_up_proj, mlp_down_proj, gemm)  e_max, x_half, eta, tau
    norm                                                                       eta, tau, rho
    add, act, rope, embedding                                                  eta, tau
    all_reduce within a node / across nodes                                    lambda, alpha
    send_recv + all_to_all within a node / across nodes (p2p)                  lambda, alpha

Errors are ``|t_model / t_measured - 1|`` per family: median, 90th percentile and the number of
points; compute ops only at ``num_tokens >= min_tokens`` (64 by default -- below it most kernels
take 1-6 us, at the 1 us resolution of the measurements).

Held-out protocols (what ``benchmarks/calibration.py`` prints and the tests check):

- compute: for each GPU and each of the three Vidur models, fit on the other two models' tables
  and report the errors on the held-out one (target: median <= 15 % for every op family);
- collectives, ``workers``: within each collective and link class (one node / spanning nodes),
  leave one group shape ``(num_workers, devices_per_node)`` out, fit on the others, predict it;
- collectives, ``sizes``: fit on messages below 8 MiB, predict the larger ones (extrapolation
  into the bandwidth-bound range that prefill all-reduces and dispatches fall in);
- one table, ``alternate`` (a local profile, :mod:`planner.runtime.profile`): fit on alternate
  token counts and message sizes, predict the others (:func:`held_out_alternate`).

Attention has no measured table here: its factors stay as given (``base``, default the
module's assumptions).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.optimize import least_squares

from planner.errors import InputError
from planner.perf.factors import DEFAULT_FACTORS, EfficiencyFactors, GemmFactors, LinkFactors, MemoryOpFactors
from planner.perf.op_times import collective_time_s, gemm_time_s, memory_op_time_s
from planner.perf.measured import (
    COLLECTIVE_OPS,
    GEMM_OPS,
    MEMORY_OPS,
    ComputeTable,
    NetworkTable,
    OpTable,
    list_compute_tables,
    list_network_tables,
    load_compute_table,
    load_network_table,
)
from planner.profiles import GpuSpec, get_gpu

__all__ = [
    "FamilyError",
    "FitReport",
    "predict_time_ms",
    "evaluate",
    "fit_compute",
    "fit_collectives",
    "held_out_compute",
    "held_out_collectives",
    "calibrated_factors",
    "TARGET_MEDIAN_REL_ERROR",
    "alternate_split",
    "held_out_alternate",
]

#: the target for the held-out compute errors (median, every op family, tokens >= 64; docs/performance.md)
TARGET_MEDIAN_REL_ERROR = 0.15
_SIZE_SPLIT_BYTES = 8 * 2**20  # collectives "sizes" split: train below, predict at or above
_LOG_TAU = (math.log(1e-9), math.log(1e-3))  # kernel overheads and link latencies: 1 ns .. 1 ms
_LINK_FIELD = {  # (collective class, spans nodes) -> EfficiencyFactors field
    ("all_reduce", False): "all_reduce_intra",
    ("all_reduce", True): "all_reduce_inter",
    ("p2p", False): "p2p_intra",
    ("p2p", True): "p2p_inter",
}


@dataclass(frozen=True)
class FamilyError:
    """Relative error of the model on one op family: ``|t_model / t_measured - 1|``."""

    family: str
    n_points: int
    median_rel_error: float
    p90_rel_error: float


@dataclass(frozen=True)
class FitReport:
    """Errors per op family of one set of factors on one set of measurements."""

    gpu: str
    fitted_on: str
    evaluated_on: str
    min_tokens: int
    errors: tuple[FamilyError, ...]

    def error(self, family: str) -> FamilyError:
        """The row of ``family``; InputError if it was not evaluated."""
        for row in self.errors:
            if row.family == family:
                return row
        raise InputError(f"no error row for {family!r}; have {', '.join(r.family for r in self.errors)}")

    def worst(self) -> FamilyError:
        """The family with the largest median error."""
        return max(self.errors, key=lambda r: r.median_rel_error)

    def table(self) -> str:
        """Markdown table: family, points, median and p90 relative error in %."""
        lines = ["| op family | points | median error | p90 error |", "|---|---:|---:|---:|"]
        for r in self.errors:
            lines.append(
                f"| {r.family} | {r.n_points} | {100 * r.median_rel_error:.1f} % | {100 * r.p90_rel_error:.1f} % |"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return asdict(self)


def _as_op_table(tables) -> OpTable:
    if isinstance(tables, (OpTable, ComputeTable, NetworkTable)):
        tables = [tables]
    converted = []
    for t in tables:
        if isinstance(t, (ComputeTable, NetworkTable)):
            t = t.to_op_table()
        if not isinstance(t, OpTable):
            raise InputError(f"expected OpTable, ComputeTable or NetworkTable, got {type(t).__name__}")
        converted.append(t)
    table = OpTable.concat(converted)
    if len(table) == 0:
        raise InputError("no measurements given")
    return table


def _gpu_for(table: OpTable, gpu) -> GpuSpec:
    if gpu is not None:
        return gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    devices = sorted(set(table.device.tolist()))
    if len(devices) != 1:
        raise InputError(f"measurements from several devices ({', '.join(devices)}): fit one GPU at a time")
    return get_gpu(devices[0])


def _link_class(table: OpTable) -> np.ndarray:
    """``all_reduce`` or ``p2p`` (send_recv, all_to_all) per row; '' for compute rows."""
    return np.where(table.op == "all_reduce", "all_reduce", np.where(np.isin(table.op, COLLECTIVE_OPS), "p2p", ""))


def predict_time_ms(table: OpTable, gpu: GpuSpec | str, factors: EfficiencyFactors) -> np.ndarray:
    """Model time of every row of ``table`` in ms (2-byte elements, BF16/FP16 peak)."""
    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    out = np.full(len(table), np.nan)
    gemm = np.isin(table.op, GEMM_OPS)
    if gemm.any():
        out[gemm] = gemm_time_s(table.m[gemm], table.n[gemm], table.k[gemm], spec, factors=factors)
    for op in MEMORY_OPS:
        rows = table.op == op
        if rows.any():
            n = table.n[rows] if op == "act" else None
            out[rows] = memory_op_time_s(op, table.m[rows], table.k[rows], spec, factors=factors, n=n)
    for op in COLLECTIVE_OPS:
        rows = table.op == op
        if rows.any():
            out[rows] = collective_time_s(
                op, table.size_bytes[rows], table.num_workers[rows], spec, factors=factors,
                devices_per_node=table.devices_per_node[rows],
            )  # fmt: skip
    return out * 1e3


def _family(table: OpTable) -> np.ndarray:
    """Report label per row: the op, with ``/intra`` or ``/inter`` for collectives."""
    spans = np.where(table.devices_per_node < table.num_workers, "/inter", "/intra")
    return np.where(np.isin(table.op, COLLECTIVE_OPS), np.char.add(table.op.astype(str), spans), table.op)


def evaluate(tables, factors: EfficiencyFactors, *, gpu=None, min_tokens: int = 64,
             fitted_on: str = "", label: str | None = None) -> FitReport:  # fmt: skip
    """Errors of ``factors`` on measured ``tables``, per op family.

    Parameters
    ----------
    tables : OpTable, ComputeTable, NetworkTable or a sequence of them (one GPU).
    factors : the factors to check.
    gpu : the GPU spec; default the tables' device.
    min_tokens : compute rows with fewer tokens (``num_tokens``, else ``m``) are left out;
        collectives are all kept.
    fitted_on, label : descriptions written into the report.
    """
    table = _as_op_table(tables)
    spec = _gpu_for(table, gpu)
    tokens = np.where(table.num_tokens > 0, table.num_tokens, table.m)  # a user table may leave num_tokens empty
    keep = np.isin(table.op, COLLECTIVE_OPS) | (tokens >= min_tokens)
    table = table.select(keep)
    rel = np.abs(predict_time_ms(table, spec, factors) / table.time_ms - 1.0)
    family = _family(table)
    order = list(GEMM_OPS + MEMORY_OPS) + [f"{op}/{s}" for op in COLLECTIVE_OPS for s in ("intra", "inter")]
    rows = []
    for name in order:
        e = rel[family == name]
        if e.size:
            rows.append(FamilyError(name, int(e.size), float(np.median(e)), float(np.percentile(e, 90))))
    evaluated = label if label is not None else "; ".join(sorted(set(table.model.tolist()) - {""})) or table.source
    return FitReport(spec.id, fitted_on, evaluated, int(min_tokens), tuple(rows))


def _fit_group(table: OpTable, spec: GpuSpec, base: EfficiencyFactors, field: str, build, x0, low, high):
    """Least squares on log-time residuals over the parameters of one factor group."""
    measured = np.log(table.time_ms)

    def residuals(x):
        trial = replace(base, **{field: build(x)})
        return np.log(predict_time_ms(table, spec, trial)) - measured

    result = least_squares(residuals, x0, bounds=(low, high), method="trf")
    return build(result.x)


def _gemm_group(x) -> GemmFactors:
    return GemmFactors(peak_fraction=float(x[0]), half_tokens=float(math.exp(x[1])),
                       hbm_fraction=float(x[2]), overhead_s=float(math.exp(x[3])))  # fmt: skip


def _memory_group(x) -> MemoryOpFactors:
    rho = float(math.exp(x[2])) if len(x) > 2 else 0.0
    return MemoryOpFactors(hbm_fraction=float(x[0]), overhead_s=float(math.exp(x[1])), row_s_per_elem=rho)


def _link_group(x) -> LinkFactors:
    return LinkFactors(bandwidth_fraction=float(x[0]), latency_s=float(math.exp(x[1])))


def _check_base(base) -> EfficiencyFactors:
    base = DEFAULT_FACTORS if base is None else base
    if not isinstance(base, EfficiencyFactors):
        raise InputError(f"base must be EfficiencyFactors, got {type(base).__name__}")
    return base


def fit_compute(tables, *, gpu=None, base: EfficiencyFactors | None = None,
                min_tokens: int = 64) -> tuple[EfficiencyFactors, FitReport]:  # fmt: skip
    """Fit the GEMM and memory-op factors to measured compute tables of one GPU.

    Parameters
    ----------
    tables : OpTable, ComputeTable or a sequence of them (GEMM and memory-op rows are used;
        a family without rows keeps ``base``'s factors).
    gpu : the GPU spec; default the tables' device.
    base : factors for everything not fitted; default :data:`~planner.perf.factors.DEFAULT_FACTORS`.
    min_tokens : only for the report (the fit uses every row).

    Returns
    -------
    (EfficiencyFactors, FitReport)
        Fitted factors (``source`` names the tables) and their in-sample errors.

    Examples
    --------
    >>> from planner.perf.measured import load_compute_table
    >>> f, report = fit_compute([load_compute_table("a100", "Llama-2-7b-hf")])
    >>> 0.6 < f.gemm.peak_fraction < 0.9, report.worst().median_rel_error < 0.15
    (True, True)
    """
    table = _as_op_table(tables)
    spec = _gpu_for(table, gpu)
    factors = _check_base(base)
    gemm = table.select(np.isin(table.op, GEMM_OPS))
    if len(gemm):
        x0 = [0.7, math.log(100.0), 0.8, math.log(5e-6)]  # e_max, log x_half, eta, log tau
        low, high = [0.01, math.log(0.1), 0.01, _LOG_TAU[0]], [1.0, math.log(1e5), 1.0, _LOG_TAU[1]]
        factors = replace(factors, gemm=_fit_group(gemm, spec, factors, "gemm", _gemm_group, x0, low, high))
    for op in MEMORY_OPS:
        rows = table.select(table.op == op)
        if not len(rows):
            continue
        x0, low, high = [0.5, math.log(2e-6)], [0.01, _LOG_TAU[0]], [1.0, _LOG_TAU[1]]
        if op == "norm":  # the row latency rho: 1e-14 .. 1e-6 s per element
            x0, low, high = x0 + [math.log(1e-10)], low + [math.log(1e-14)], high + [math.log(1e-6)]
        factors = replace(factors, **{op: _fit_group(rows, spec, factors, op, _memory_group, x0, low, high)})
    models = ", ".join(sorted(set(table.model.tolist()) - {""})) or table.source
    source = f"fitted by moeplan to {spec.id} compute tables ({models}); others: {factors.source}"
    factors = replace(factors, source=source)
    return factors, evaluate(table, factors, gpu=spec, min_tokens=min_tokens, fitted_on=models)


def fit_collectives(tables, *, gpu=None,
                    base: EfficiencyFactors | None = None) -> tuple[EfficiencyFactors, FitReport]:  # fmt: skip
    """Fit the link factors (all-reduce, p2p; within a node and across nodes) to collective tables.

    ``send_recv`` and ``all_to_all`` rows both fit the p2p factors. A link class without rows
    keeps ``base``'s factors. Returns the factors and their in-sample errors.
    """
    table = _as_op_table(tables)
    spec = _gpu_for(table, gpu)
    factors = _check_base(base)
    link = _link_class(table)
    spans = table.devices_per_node < table.num_workers
    fitted = []
    for (cls, inter), field in _LINK_FIELD.items():
        rows = table.select((link == cls) & (spans == inter))
        if not len(rows):
            continue
        x0, low, high = [0.5, math.log(2e-5)], [0.001, _LOG_TAU[0]], [1.0, _LOG_TAU[1]]
        factors = replace(factors, **{field: _fit_group(rows, spec, factors, field, _link_group, x0, low, high)})
        fitted.append(field)
    if not fitted:
        raise InputError("no collective rows (all_reduce, send_recv, all_to_all) to fit")
    source = f"links fitted by moeplan to {spec.id} collectives ({', '.join(fitted)}); others: {factors.source}"
    factors = replace(factors, source=source)
    return factors, evaluate(table, factors, gpu=spec, fitted_on=", ".join(fitted), label="collectives (in-sample)")


def held_out_compute(gpu: str, *, min_tokens: int = 64) -> tuple[FitReport, ...]:
    """The held-out-model protocol: for each shipped model of ``gpu``, fit on the others, report it.

    Raises
    ------
    InputError
        Fewer than two shipped compute tables for ``gpu``.

    Examples
    --------
    >>> reports = held_out_compute("h100")
    >>> [r.evaluated_on for r in reports]
    ['Llama-2-70b-hf', 'Llama-2-7b-hf', 'Qwen-72B']
    """
    spec = get_gpu(gpu) if not isinstance(gpu, GpuSpec) else gpu
    models = [m for g, m in list_compute_tables() if g == spec.id]
    if len(models) < 2:
        raise InputError(f"{spec.id}: held-out fitting needs >= 2 shipped compute tables, have {len(models)}")
    reports = []
    for held in models:
        train = [load_compute_table(spec.id, m) for m in models if m != held]
        factors, _ = fit_compute(train, gpu=spec, min_tokens=min_tokens)
        trained_on = ", ".join(m for m in models if m != held)
        reports.append(evaluate(load_compute_table(spec.id, held), factors, gpu=spec, min_tokens=min_tokens,
                                fitted_on=trained_on, label=held))  # fmt: skip
    return tuple(reports)


def _network_table(spec: GpuSpec) -> OpTable:
    names = [c for g, c in list_network_tables() if g == spec.id]
    if not names:
        raise InputError(f"{spec.id}: no shipped network tables; have {sorted({g for g, _ in list_network_tables()})}")
    return _as_op_table([load_network_table(spec.id, c) for c in names])


def held_out_collectives(gpu: str) -> tuple[FitReport, ...]:
    """The collective held-out splits (module docstring): one report per held-out group shape
    (``workers``) and one per collective and link class (``sizes``)."""
    spec = get_gpu(gpu) if not isinstance(gpu, GpuSpec) else gpu
    table = _network_table(spec)
    spans = table.devices_per_node < table.num_workers
    reports = []
    for op in sorted(set(table.op.tolist())):
        for inter in (False, True):
            cls = table.select((table.op == op) & (spans == inter))
            if not len(cls):
                continue
            where = "inter" if inter else "intra"
            shapes = sorted(set(zip(cls.num_workers.tolist(), cls.devices_per_node.tolist())))
            for n, g in shapes if len(shapes) > 1 else []:
                held = (cls.num_workers == n) & (cls.devices_per_node == g)
                factors, _ = fit_collectives(cls.select(~held), gpu=spec)
                others = ", ".join(f"n={a}/{b} per node" for a, b in shapes if (a, b) != (n, g))
                reports.append(evaluate(cls.select(held), factors, gpu=spec, fitted_on=f"workers split: {others}",
                                        label=f"{op}/{where} n={n} ({g} per node)"))  # fmt: skip
            small = cls.size_bytes < _SIZE_SPLIT_BYTES
            factors, _ = fit_collectives(cls.select(small), gpu=spec)
            reports.append(evaluate(cls.select(~small), factors, gpu=spec, fitted_on="sizes split: < 8 MiB",
                                    label=f"{op}/{where} sizes >= 8 MiB"))  # fmt: skip
    return tuple(reports)


@functools.cache
def _calibrated(gpu_id: str) -> EfficiencyFactors:
    spec = get_gpu(gpu_id)
    models = [m for g, m in list_compute_tables() if g == spec.id]
    factors, parts = DEFAULT_FACTORS, []
    if models:
        factors, _ = fit_compute([load_compute_table(spec.id, m) for m in models], gpu=spec)
        parts.append(f"compute ({', '.join(models)})")
    if any(g == spec.id for g, _ in list_network_tables()):
        table = _network_table(spec)
        factors, _ = fit_collectives(table, gpu=spec, base=factors)
        spans = table.devices_per_node < table.num_workers
        have = {_LINK_FIELD[c, bool(s)] for c, s in zip(_link_class(table), spans)}
        parts.append(f"links ({', '.join(f for f in _LINK_FIELD.values() if f in have)})")
        missing = [f for f in _LINK_FIELD.values() if f not in have]
    else:
        missing = list(_LINK_FIELD.values())
    kept = ", ".join(["attention"] + missing)
    source = f"moeplan fit to Vidur {spec.id} tables: {'; '.join(parts)}; defaults kept: {kept}"
    return replace(factors, source=source)


def calibrated_factors(gpu: GpuSpec | str) -> EfficiencyFactors:
    """Factors fitted to every shipped table of ``gpu`` (cached): compute tables of all models and
    its collective tables; link classes without data and attention keep the defaults.

    Raises
    ------
    InputError
        No shipped tables for ``gpu``; the message lists the GPUs that have some.

    Examples
    --------
    >>> f = calibrated_factors("h100")
    >>> f.source.split("; ")[-1]
    'defaults kept: attention, all_reduce_inter'
    """
    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    have = sorted({g for g, _ in list_compute_tables()} | {g for g, _ in list_network_tables()})
    if spec.id not in have:
        raise InputError(f"no measured tables for GPU {spec.id!r}; shipped for: {', '.join(have)}")
    return _calibrated(spec.id)


def alternate_split(values) -> np.ndarray:
    """True where a value is the 1st, 3rd, 5th, ... of its sorted distinct values: the training
    side of :func:`held_out_alternate` (the rest is held out).

    >>> alternate_split([1, 2, 4, 8, 2]).tolist()
    [True, False, True, False, False]
    """
    values = np.asarray(values)
    return np.isin(values, np.unique(values)[::2])


def held_out_alternate(table: OpTable, gpu: GpuSpec | str) -> tuple[EfficiencyFactors, FitReport, OpTable]:
    """The one-table protocol (a local profile): fit on alternate token counts, and per collective
    on alternate message sizes (:func:`alternate_split`), predict the other rows.

    Compute factors are fitted on the training compute rows, then the link factors on the training
    collective rows when any collective row is held out; every token count counts
    (``min_tokens = 1``).

    Returns
    -------
    (EfficiencyFactors, FitReport, OpTable)
        The fitted factors, their errors per op family on the held-out rows, and those rows.

    Raises
    ------
    InputError
        Fewer than two token counts among the compute rows.
    """
    collective = np.isin(table.op, COLLECTIVE_OPS)
    if np.unique(table.num_tokens[~collective]).size < 2:
        raise InputError("held-out calibration needs >= 2 token counts in the profile")
    train = np.zeros(len(table), dtype=bool)
    train[~collective] = alternate_split(table.num_tokens[~collective])
    for op in np.unique(table.op[collective]):
        train[table.op == op] = alternate_split(table.size_bytes[table.op == op])
    factors, _ = fit_compute(table.select(train & ~collective), gpu=gpu, min_tokens=1)
    if (collective & ~train).any():
        factors, _ = fit_collectives(table.select(train & collective), gpu=gpu, base=factors)
    held = table.select(~train)
    report = evaluate(held, factors, gpu=gpu, min_tokens=1, fitted_on="alternate token counts / sizes",
                      label="the other token counts / sizes")  # fmt: skip
    return factors, report, held
