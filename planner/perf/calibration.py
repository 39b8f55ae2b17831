r"""Fit the efficiency factors of :mod:`planner.perf.latency` to measured op timings.

(Past ~450 lines: the fit, its error report, the held-out protocols built on them and the per-GPU
assembly of the calibrated factors from the Vidur and kernel-table fits are one job.)

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
from dataclasses import replace

import numpy as np

from planner.errors import InputError
from planner.perf.fit_report import FamilyError, FitReport, fit_log_time
from planner.perf.factors import (
    DEFAULT_FACTORS,
    FACTOR_GROUPS,
    EfficiencyFactors,
    GemmFactors,
    LinkFactors,
    MemoryOpFactors,
)
from planner.perf.kernel_fit import fit_kernel_tables, held_out_kernels
from planner.perf.kernel_tables import list_kernel_tables
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
    "calibrated_gpus",
    "vidur_factors",
    "held_out_kernel_tables",
    "KERNEL_GROUPS_NOT_FITTED",
    "MEMORY_OPS_FROM",
    "TARGET_MEDIAN_REL_ERROR",
    "alternate_split",
    "held_out_alternate",
    "profile_factors",
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
    return fit_log_time(lambda f: predict_time_ms(table, spec, f), table.time_ms, base, field, build, x0, low, high)


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
def _vidur(gpu_id: str) -> tuple[EfficiencyFactors, dict]:
    """Factors fitted to the Vidur tables of one GPU (DEFAULT_FACTORS elsewhere) and each fitted group's source."""
    spec = get_gpu(gpu_id)
    models = [m for g, m in list_compute_tables() if g == spec.id]
    factors, sources = DEFAULT_FACTORS, {}
    if models:
        factors, _ = fit_compute([load_compute_table(spec.id, m) for m in models], gpu=spec)
        text = f"Vidur {spec.id} compute tables ({', '.join(models)}; MIT), moeplan fit"
        sources.update(dict.fromkeys(("gemm", "norm", "add", "act", "rope", "embedding"), text))
    if any(g == spec.id for g, _ in list_network_tables()):
        table = _network_table(spec)
        factors, _ = fit_collectives(table, gpu=spec, base=factors)
        spans = table.devices_per_node < table.num_workers
        have = {_LINK_FIELD[c, bool(s)] for c, s in zip(_link_class(table), spans)}
        for field in have:
            sources[field] = f"Vidur {spec.id} DGX collective tables (NCCL; MIT), moeplan fit"
    return factors, sources


#: groups not fitted to a GPU's kernel tables, and why (docs/performance.md, "Calibration per GPU")
KERNEL_GROUPS_NOT_FITTED = {
    "a100-80g": {"mla_decode": "TensorRT-LLM 1.0's MLA decode on A100 reads the latent cache serially "
                               "(3.9 ms at batch 1 and 32k tokens, 25x H100): not the kernel of an MLA deployment"},
}
#: GPUs without Vidur compute tables take the memory-bound ops (norm, add, act, rope, embedding) of this fit
MEMORY_OPS_FROM = "h100"


def _kernel_keep(gpu_id: str, vidur_sources: dict) -> tuple[str, ...]:
    """Groups the kernel tables do not fit on ``gpu_id``: Vidur's dense GEMMs and send/recv where it
    has them (so the Vidur protocol's numbers stay the calibration's), and :data:`KERNEL_GROUPS_NOT_FITTED`."""
    kept = [g for g in ("gemm", "p2p_intra") if g in vidur_sources]
    return tuple(kept + list(KERNEL_GROUPS_NOT_FITTED.get(gpu_id, {})))


def held_out_kernel_tables(gpu: GpuSpec | str) -> tuple[FitReport, ...]:
    """The kernel tables' held-out protocol (:func:`~planner.perf.kernel_fit.held_out_kernels`) on the
    base and with the kept groups :func:`calibrated_factors` uses for ``gpu``.

    Raises
    ------
    InputError
        No kernel tables ship for ``gpu``.
    """
    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    if not any(g == spec.id for g, _ in list_kernel_tables()):
        raise InputError(f"no kernel tables for GPU {spec.id!r}", param="gpu")
    factors, sources = _vidur(spec.id)
    return held_out_kernels(spec, base=factors, keep=_kernel_keep(spec.id, sources))


@functools.cache
def _calibrated(gpu_id: str) -> EfficiencyFactors:
    spec = get_gpu(gpu_id)
    factors, sources = _vidur(spec.id)
    sources = dict(sources)
    parts = []
    if sources:
        parts.append("Vidur tables (" + ", ".join(sorted(set(sources))) + ")")
    if "gemm" not in sources and spec.id != MEMORY_OPS_FROM:  # memory-bound ops fitted on another GPU
        donor, donor_sources = _vidur(MEMORY_OPS_FROM)
        for op in ("norm", "add", "act", "rope", "embedding"):
            factors = replace(factors, **{op: getattr(donor, op)})
            sources[op] = f"{donor_sources[op]}, transferred to {spec.id} (HBM shares of the same kernels)"
    if any(g == spec.id for g, _ in list_kernel_tables()):
        fit = fit_kernel_tables(spec, base=replace(factors, sources=()), keep=_kernel_keep(spec.id, sources))
        factors = fit.factors
        sources.update(fit.sources)
        parts.append("AIConfigurator kernel tables (" + ", ".join(fit.fitted) + ")")
    # groups with values of their own that no table fitted keep the defaults
    kept = [g for g in FACTOR_GROUPS
            if g not in sources and (getattr(factors, g) is not None or FACTOR_GROUPS[g] is None)]  # fmt: skip
    for group in kept:
        sources[group] = f"uncalibrated default ({DEFAULT_FACTORS.source})"
    skipped = KERNEL_GROUPS_NOT_FITTED.get(spec.id, {})
    for group in FACTOR_GROUPS:  # a group without data of its own takes the group it falls back to
        if group not in sources:
            back = FACTOR_GROUPS[group]
            while back not in sources:
                back = FACTOR_GROUPS[back]
            why = f"not fitted ({skipped[group]})" if group in skipped else "no table of its own"
            sources[group] = f"as {back}, {why}: {sources[back]}"
    summary = f"moeplan fit for {spec.id}: {'; '.join(parts)}"
    if skipped:
        summary += "; not fitted: " + ", ".join(f"{g} ({why.split(':')[0]})" for g, why in skipped.items())
    if kept:
        summary += f"; defaults kept: {', '.join(kept)}"
    return replace(factors, source=summary, sources=tuple(sources.items()))


def vidur_factors(gpu: GpuSpec | str) -> EfficiencyFactors:
    """The factors fitted to ``gpu``'s Vidur tables alone (compute and collectives; H100 and A100),
    every other group at :data:`DEFAULT_FACTORS`: the fit ``DEFAULT_FACTORS`` averages, and the one
    ``benchmarks/calibration.py`` reports for the Vidur held-out protocol.

    >>> vidur_factors("h100").source_of("gemm").split(" (")[0]
    'Vidur h100 compute tables'
    """
    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    factors, sources = _vidur(spec.id)
    if not sources:
        raise InputError(f"no Vidur tables for GPU {spec.id!r}; shipped for: "
                         f"{', '.join(sorted({g for g, _ in list_compute_tables()}))}", param="gpu")  # fmt: skip
    return replace(factors, source=f"moeplan fit to Vidur {spec.id} tables", sources=tuple(sources.items()))


def calibrated_gpus() -> list[str]:
    """GPU ids with shipped measured tables (Vidur compute or network tables, or kernel tables).

    >>> calibrated_gpus()
    ['a100-80g', 'b200', 'h100', 'h200']
    """
    have = {g for g, _ in list_compute_tables()} | {g for g, _ in list_network_tables()}
    return sorted(have | {g for g, _ in list_kernel_tables()})


def calibrated_factors(gpu: GpuSpec | str) -> EfficiencyFactors:
    """Factors fitted to every shipped table of ``gpu`` (cached), with the source of every group.

    - Vidur's tables (H100, A100): dense GEMMs, memory-bound ops and their NCCL collectives;
    - AIConfigurator's kernel tables (H100, H200, B200, A100; :mod:`planner.perf.kernel_fit`): the
      GEMM modes, the grouped MoE GEMMs, attention and MLA kernels, the engine's all-reduce, the
      expert-parallel dispatch, and the dense GEMMs and NCCL collectives where Vidur has none;
    - GPUs without Vidur compute tables take the memory-bound ops fitted on H100
      (:data:`MEMORY_OPS_FROM`); groups without any data keep :data:`DEFAULT_FACTORS`.

    ``sources`` names the table, framework and version of every fitted group
    (:meth:`~planner.perf.factors.EfficiencyFactors.source_of`).

    Raises
    ------
    InputError
        No shipped tables for ``gpu``; the message lists the GPUs that have some.

    Examples
    --------
    >>> f = calibrated_factors("h100")
    >>> f.source_of("gemm").split(" (")[0], f.source_of("moe").split(" (")[0]
    ('Vidur h100 compute tables', 'AIConfigurator trtllm 1.3.0rc20 moe table')
    """
    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    have = calibrated_gpus()
    if spec.id not in have:
        raise InputError(f"no measured tables for GPU {spec.id!r}; shipped for: {', '.join(have)}", param="gpu")
    return _calibrated(spec.id)


def profile_factors(path, gpu: GpuSpec | str, *, base: EfficiencyFactors | None = None) -> EfficiencyFactors:
    """Factors fitted to your own op-timing CSV (``moeplan profile``'s output) on top of ``base``.

    The compute rows fit the dense GEMM and memory-op groups, the collective rows the link groups
    (:func:`fit_compute`, :func:`fit_collectives`); every other group keeps ``base`` (default
    :func:`calibrated_factors` of ``gpu`` where tables ship, else ``DEFAULT_FACTORS``). ``sources``
    name the file for the groups it fitted.

    Raises
    ------
    InputError
        An unreadable or malformed CSV (:func:`~planner.perf.measured.load_op_table`), or one
        without compute or collective rows.
    """
    from planner.perf.measured import load_op_table

    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    if base is None:
        base = calibrated_factors(spec) if spec.id in calibrated_gpus() else DEFAULT_FACTORS
    try:
        table = load_op_table(path)
    except InputError as exc:  # name the parameter, so the CLI shows it under --profile
        raise InputError(str(exc), param="path") from None
    factors, named = base, dict(base.sources)
    compute = table.select(~np.isin(table.op, COLLECTIVE_OPS))
    if len(compute):
        factors, _ = fit_compute(compute, gpu=spec, base=factors, min_tokens=1)
        fitted = {op for op in compute.op.tolist()}
        groups = (["gemm"] if fitted & set(GEMM_OPS) else []) + [op for op in MEMORY_OPS if op in fitted]
        named.update(dict.fromkeys(groups, f"your profile {path} ({len(compute)} compute rows), moeplan fit"))
    collectives = table.select(np.isin(table.op, COLLECTIVE_OPS))
    if len(collectives):
        factors, _ = fit_collectives(collectives, gpu=spec, base=factors)
        spans = collectives.devices_per_node < collectives.num_workers
        for field in {_LINK_FIELD[c, bool(s)] for c, s in zip(_link_class(collectives), spans)}:
            named[field] = f"your profile {path} ({len(collectives)} collective rows), moeplan fit"
    if not (len(compute) or len(collectives)):
        raise InputError(f"{path}: no compute or collective rows to fit", param="path")
    return replace(factors, source=f"moeplan fit to your profile {path}; others: {base.source}",
                   sources=tuple(named.items()))  # fmt: skip


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
