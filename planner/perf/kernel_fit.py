r"""Fit the latency model's factors per GPU to measured kernel tables (:mod:`planner.perf.kernel_tables`).

(Past ~450 lines: pricing a table's rows, fitting each group on them and the held-out protocol that refits
the chain per fold are one job, and they change together when a family or a factor is added.)

Each table row is priced with the same functions the latency model runs on a step
(:mod:`planner.perf.op_times`, :func:`planner.perf.latency.attention_core_time_s`), and each factor
group is fitted on the rows of its family (:mod:`planner.perf.fit_report`: least squares on log
time)::

    family (rows used)                          group              parameters
    gemm, BF16 weights and activations          gemm               e_max, x_half, eta, tau
    gemm, each other mode                       gemm_modes.<mode>  s_mode
    moe, balanced routing, BF16                 moe                e_max, x_half (rows per expert), eta, tau
    moe, balanced routing, each other mode      moe_modes.<mode>   s_mode
    attention_decode, full attention            attention_decode   e_attn, eta_attn, tau_attn, eta_bulk, tau_bulk
    attention_prefill, BF16, full attention     attention          e_attn, L_half, tau_attn (eta from decode)
    mla_decode                                  mla_decode         e_attn, eta_attn, tau_attn, eta_bulk, tau_bulk
    mla_prefill                                 mla_prefill        e_attn, L_half, tau_attn (eta from decode)
    collective, the engine's custom all-reduce  all_reduce_intra   lambda, alpha, h (ring step)
    collective, NCCL all-gather / reduce-
      scatter / all-to-all                      p2p_intra          lambda, alpha, h
    moe_dispatch, normal mode, one node         ep_dispatch_intra  lambda, alpha
    moe_dispatch, normal mode, several nodes    ep_dispatch_inter  lambda, alpha
    moe_dispatch, low-latency mode, one node    ep_dispatch_low_latency  lambda, alpha

A MoE row is one EP rank's fused MoE on ``num_tokens`` tokens of the whole EP group: with balanced
routing it computes ``R = num_tokens x top_k / moe_ep`` rows over ``E / moe_ep`` experts of width
``inter / moe_tp`` (:func:`~planner.perf.op_times.moe_experts_time_s`); power-law rows (the busiest
rank of a skewed routing) are not fitted -- :func:`imbalance` reports how much slower they are.
MLA rows use DeepSeek-V3's latent dimensions (the only MLA shape AIConfigurator measures).

Held-out protocol (:func:`held_out_kernels`): each family's rows are split into folds by shape --
GEMMs by ``k``, MoE by model shape (hidden, inter, experts, top-k), GQA attention by heads per rank,
MLA by heads, collectives by GPU count, the dispatch by hidden size (one node) and by node count
(several) -- and every fold is predicted by factors fitted on the other folds (the whole chain:
the BF16 group first, then the modes). Fits to the Vidur tables (``gemm`` on H100 and A100) are
kept fixed and so predict every AIConfigurator row out of sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from planner.errors import InputError
from planner.perf.factors import (
    AttentionFactors,
    EfficiencyFactors,
    GemmFactors,
    LinkFactors,
    MODE_KEYS,
    mode_key,
)
from planner.perf.fit_report import FitReport, family_errors, fit_log_time, fit_parameters
from planner.perf.kernel_tables import (
    FAMILIES,
    KernelTable,
    kernel_table_provenance,
    list_kernel_tables,
    load_kernel_table,
)
from planner.perf.latency import attention_core_time_s
from planner.perf.op_times import (
    FP8_DISPATCH_BYTES,
    collective_time_s,
    ep_dispatch_time_s,
    gemm_time_s,
    moe_experts_time_s,
)
from planner.profiles import GpuSpec, gemm_mode, get_format, get_gpu, get_model

__all__ = ["KernelFit", "predict_kernel_ms", "family_labels", "fit_kernel_tables", "held_out_kernels", "imbalance"]

_LOG_TAU = (math.log(1e-8), math.log(1e-3))
# DeepSeek-V3's MLA dimensions: the shape of AIConfigurator's MLA tables
_MLA = get_model("deepseek-v3").attention


@dataclass(frozen=True)
class KernelFit:
    """Factors fitted to one GPU's kernel tables, the groups fitted and the source of each."""

    gpu: str
    factors: EfficiencyFactors
    fitted: tuple[str, ...]
    sources: dict


def _spec(gpu) -> GpuSpec:
    return gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)


def _modes(t: KernelTable, spec: GpuSpec) -> list:
    """GemmMode of every row (format columns ``weights``, ``activations``)."""
    cache = {}
    out = []
    for w, a in zip(t["weights"].tolist(), t["activations"].tolist()):
        if (w, a) not in cache:
            cache[w, a] = gemm_mode(w, a, spec)
        out.append(cache[w, a])
    return out


def _by_mode(t: KernelTable, spec: GpuSpec, fn) -> np.ndarray:
    out = np.empty(len(t))
    modes = _modes(t, spec)
    names = np.array([mode_key(m) + "|" + m.weights.name for m in modes])
    for name in dict.fromkeys(names.tolist()):
        rows = names == name
        fn(t.select(rows), modes[int(np.argmax(rows))], out, rows)
    return out


def _kv_bytes(t: KernelTable) -> np.ndarray:
    return np.array([get_format(x).bytes_per_element for x in t["kv_cache"].tolist()])


def predict_kernel_ms(table: KernelTable, gpu, factors: EfficiencyFactors) -> np.ndarray:
    """The latency model's time in ms for every row of a kernel table (module docstring)."""
    spec, t, f = _spec(gpu), table, factors
    fam = t.family
    if fam == "gemm":
        def fn(sub, mode, out, rows):
            out[rows] = gemm_time_s(sub["m"], sub["n"], sub["k"], spec, factors=f, mode=mode)
        return _by_mode(t, spec, fn) * 1e3
    if fam == "moe":
        def fn(sub, mode, out, rows):
            ep, tp = sub["moe_ep"].astype(float), sub["moe_tp"].astype(float)
            r = sub["num_tokens"] * sub["top_k"] / ep
            out[rows] = moe_experts_time_s(r, sub["hidden_size"], sub["inter_size"] / tp, sub["num_experts"] / ep,
                                           spec, factors=f, mode=mode)  # fmt: skip
        return _by_mode(t, spec, fn) * 1e3
    if fam in ("attention_prefill", "attention_decode"):
        phase = fam.split("_")[1]
        kvb = 2 * t["num_kv_heads"] * t["head_dim"] * _kv_bytes(t)
        tokens = t["isl_tokens"] if phase == "prefill" else t["context_tokens"]
        return attention_core_time_s("gqa", phase, t["num_heads"], t["num_kv_heads"], t["head_dim"], t["head_dim"],
                                     t["batch"], tokens, kvb, spec, window=t["window_tokens"], factors=f) * 1e3
    if fam in ("mla_prefill", "mla_decode"):
        nope, rope, v, lora = _MLA.qk_nope_head_dim, _MLA.qk_rope_head_dim, _MLA.v_head_dim, _MLA.kv_lora_rank
        kvb = (lora + rope) * _kv_bytes(t)
        if fam == "mla_prefill":  # multi-head attention on decompressed k/v
            return attention_core_time_s("mla", "prefill", t["num_heads"], t["num_heads"], nope + rope, v, t["batch"],
                                         t["isl_tokens"], kvb, spec, factors=f) * 1e3
        return attention_core_time_s("mla", "decode", t["num_heads"], 1, lora + rope, lora, t["batch"],
                                     t["context_tokens"], kvb, spec, factors=f) * 1e3
    if fam == "collective":
        out = np.empty(len(t))
        for op in dict.fromkeys(t["op"].tolist()):
            rows = t["op"] == op
            out[rows] = collective_time_s(op, t["size_bytes"][rows], t["num_gpus"][rows], spec, factors=f,
                                          devices_per_node=t["num_gpus"][rows])  # fmt: skip
        return out * 1e3
    if fam == "moe_dispatch":
        element = np.where(t["element"] == "fp8", FP8_DISPATCH_BYTES, 2.0)
        out = np.empty(len(t))
        for low in (False, True):
            rows = (t["mode"] == "low_latency") == low
            if rows.any():
                sub = t.select(rows)
                out[rows] = ep_dispatch_time_s(sub["tokens_per_rank"], sub["hidden_size"], sub["top_k"],
                                               sub["num_experts"], sub["ep"], spec, element_bytes=element[rows],
                                               factors=f, devices_per_node=sub["ep"] // sub["nodes"], low_latency=low)
        return out * 1e3
    raise InputError(f"unknown kernel family {fam!r}", param="family")


def family_labels(table: KernelTable, gpu) -> np.ndarray:
    """Report label of every row: the family with its mode, kernel, operation or link class."""
    t, spec = table, _spec(gpu)
    fam = t.family
    if fam in ("gemm", "moe"):
        return np.array([f"{fam} {mode_key(m)}" for m in _modes(t, spec)])
    if fam == "collective":
        return np.char.add(np.char.add(t["op"].astype(str), " "), t["implementation"].astype(str))
    if fam == "moe_dispatch":
        where = np.where(t["nodes"] > 1, "inter", "intra")
        return np.char.add(np.char.add(np.char.add("dispatch ", t["mode"].astype(str)), " "), where)
    if fam in ("attention_prefill", "attention_decode"):
        return np.where(t["window_tokens"] > 0, f"{fam} (sliding window)", fam)
    return np.full(len(t), fam)


# --- one fit per factor group ---------------------------------------------------------------------

def _gemm_group(x) -> GemmFactors:
    return GemmFactors(peak_fraction=float(x[0]), half_tokens=float(math.exp(x[1])), hbm_fraction=float(x[2]),
                       overhead_s=float(math.exp(x[3])), half_width=float(math.exp(x[4])))  # fmt: skip


def _fit_gemm(t: KernelTable, spec, base, field: str) -> EfficiencyFactors:
    """e_max, x_half, eta, tau and w_half of the 16-bit GEMMs of one kernel family."""
    x0 = [0.7, math.log(100.0), 0.8, math.log(5e-6), math.log(64.0)]
    low = [0.01, math.log(0.5), 0.05, _LOG_TAU[0], math.log(1.0)]
    high = [1.0, math.log(1e5), 1.0, _LOG_TAU[1], math.log(1e5)]
    group = fit_log_time(lambda f: predict_kernel_ms(t, spec, f), t["time_ms"], base, field, _gemm_group, x0, low, high)
    return replace(base, **{field: group})


def _fit_modes(t: KernelTable, spec, base, field: str) -> tuple[EfficiencyFactors, list[str]]:
    """One scale per mode key present (not w16a16), each on its own rows with the ramp fixed; the
    first mode with 8- or 4-bit activations (block-scaled FP8 first) also fits eta_q, the
    quantisation pass the kernel family shares."""
    modes = [mode_key(m) for m in _modes(t, spec)]
    present = list(dict.fromkeys(modes))
    keys = sorted((k for k in present if k in MODE_KEYS), key=lambda k: (k != "w8a8_block", k))
    peak = base.group("moe" if field == "moe_modes" else "gemm").peak_fraction
    fitted, quant_fitted = [], False
    for key in keys:
        rows = t.select(np.array(modes) == key)
        fit_quant = not key.endswith("a16") and not quant_fitted

        def apply(x, key=key, fit_quant=fit_quant):
            current = base.group(field)
            extra = dict(current.extra_overhead_s)
            extra[key] = float(math.exp(x[1]))
            changes = {key: float(x[0]), "extra_overhead_s": tuple(extra.items())}
            if fit_quant:
                changes["quant_hbm_fraction"] = float(x[2])
            return replace(base, **{field: replace(current, **changes)})

        x0, low, high = [min(0.8, 0.95 / peak), math.log(1e-6)], [0.02, _LOG_TAU[0]], [1.0 / peak, _LOG_TAU[1]]
        if fit_quant:
            x0, low, high = x0 + [0.5], low + [0.02], high + [1.0]
        x = fit_parameters(lambda f, rows=rows: predict_kernel_ms(rows, spec, f), rows["time_ms"], apply, x0, low, high)
        base = apply(x)
        quant_fitted |= fit_quant
        fitted.append(key)
    return base, fitted


def _attention_group(prefill: bool, eta: float):
    def build(x) -> AttentionFactors:
        if prefill:  # e_attn, L_half, tau; the HBM share is the decode kernel's
            return AttentionFactors(flops_fraction=float(x[0]), hbm_fraction=eta, overhead_s=float(math.exp(x[2])),
                                    half_tokens=float(math.exp(x[1])))  # fmt: skip
        return AttentionFactors(flops_fraction=float(x[0]), hbm_fraction=float(x[1]), overhead_s=float(math.exp(x[2])),
                                bulk_hbm_fraction=float(x[3]), bulk_overhead_s=float(math.exp(x[4])))  # fmt: skip

    return build


def _fit_attention(t: KernelTable, spec, base, field: str) -> EfficiencyFactors:
    prefill = field in ("attention", "mla_prefill")
    if prefill:
        decode = base.group("attention_decode" if field == "attention" else "mla_decode")
        eta = decode.bulk_hbm_fraction if decode.bulk_hbm_fraction is not None else decode.hbm_fraction
        x0 = [0.6, math.log(500.0), math.log(1e-5)]
        low, high = [0.02, math.log(1.0), _LOG_TAU[0]], [1.0, math.log(1e5), _LOG_TAU[1]]
    else:
        eta = 0.0  # e_attn, eta and tau of the one-block way, eta and tau of the bulk way
        x0 = [0.5, 0.5, math.log(1e-5), 0.9, math.log(3e-5)]
        low, high = [0.02, 0.02, _LOG_TAU[0], 0.02, _LOG_TAU[0]], [1.0, 1.0, _LOG_TAU[1], 1.0, _LOG_TAU[1]]
    # decode: also start with the bulk way out of reach, for kernels that have one way only
    starts = () if prefill else ([0.5, 0.8, math.log(1e-5), 0.05, math.log(5e-4)],)
    group = fit_log_time(lambda f: predict_kernel_ms(t, spec, f), t["time_ms"], base, field,
                         _attention_group(prefill, eta), x0, low, high, starts=starts)  # fmt: skip
    return replace(base, **{field: group})


def _link_group(x) -> LinkFactors:
    hop = float(math.exp(x[2])) if len(x) > 2 else 0.0
    return LinkFactors(bandwidth_fraction=float(x[0]), latency_s=float(math.exp(x[1])), hop_latency_s=hop)


def _fit_link(t: KernelTable, spec, base, field: str) -> EfficiencyFactors:
    """lambda and alpha; for the collectives of one node also the latency of a ring step."""
    x0, low, high = [0.6, math.log(2e-5)], [0.01, _LOG_TAU[0]], [1.0, _LOG_TAU[1]]
    if field in ("all_reduce_intra", "p2p_intra"):
        x0, low, high = x0 + [math.log(1e-6)], low + [math.log(1e-9)], high + [_LOG_TAU[1]]
    group = fit_log_time(lambda f: predict_kernel_ms(t, spec, f), t["time_ms"], base, field, _link_group, x0, low, high)
    return replace(base, **{field: group})


# rows of each group's fit
def _rows(t: KernelTable, spec, group: str) -> KernelTable:
    if group in ("gemm", "moe"):
        keep = np.array([mode_key(m) == "w16a16" for m in _modes(t, spec)])
        if group == "moe":
            keep &= t["distribution"] == "balanced"
        return t.select(keep)
    if group in ("gemm_modes", "moe_modes"):
        keep = np.array([mode_key(m) != "w16a16" for m in _modes(t, spec)])
        if group == "moe_modes":
            keep &= t["distribution"] == "balanced"
        return t.select(keep)
    if group == "attention":
        return t.select((t["compute"] == "bf16") & (t["kv_cache"] == "bf16") & (t["window_tokens"] == 0))
    if group == "attention_decode":
        return t.select(t["window_tokens"] == 0)
    if group == "all_reduce_intra":
        return t.select((t["op"] == "all_reduce") & (t["implementation"] == "custom"))
    if group == "p2p_intra":
        return t.select(np.isin(t["op"], ("all_gather", "reduce_scatter", "all_to_all")))
    if group == "ep_dispatch_intra":
        return t.select((t["mode"] == "normal") & (t["nodes"] == 1))
    if group == "ep_dispatch_inter":
        return t.select((t["mode"] == "normal") & (t["nodes"] > 1))
    if group == "ep_dispatch_low_latency":
        return t.select((t["mode"] == "low_latency") & (t["nodes"] == 1))
    return t


# (group, family, fit) in the order the fits run: later groups use earlier ones
_PLAN = (
    ("gemm", "gemm", _fit_gemm),
    ("gemm_modes", "gemm", _fit_modes),
    ("moe", "moe", _fit_gemm),
    ("moe_modes", "moe", _fit_modes),
    ("attention_decode", "attention_decode", _fit_attention),
    ("attention", "attention_prefill", _fit_attention),
    ("mla_decode", "mla_decode", _fit_attention),
    ("mla_prefill", "mla_prefill", _fit_attention),
    ("all_reduce_intra", "collective", _fit_link),
    ("p2p_intra", "collective", _fit_link),
    ("ep_dispatch_intra", "moe_dispatch", _fit_link),
    ("ep_dispatch_inter", "moe_dispatch", _fit_link),
    ("ep_dispatch_low_latency", "moe_dispatch", _fit_link),
)
_MIN_ROWS = 8


def _refit(table: KernelTable, spec, base: EfficiencyFactors, groups) -> EfficiencyFactors:
    """``base`` with every ``(group, fit)`` of ``groups`` fitted in turn on ``table``'s rows."""
    factors = base
    for group, fit in groups:
        rows = _rows(table, spec, group)
        if len(rows) >= _MIN_ROWS:
            factors = fit(rows, spec, factors, group)[0] if fit is _fit_modes else fit(rows, spec, factors, group)
    return factors


def _tables(gpu_id: str, tables) -> dict:
    if tables is not None:
        return dict(tables)
    return {fam: load_kernel_table(gpu_id, fam) for g, fam in list_kernel_tables() if g == gpu_id}


def _describe(gpu_id: str, group: str, family: str, table: KernelTable, rows: int, shipped: bool) -> str:
    """Where a group's rows come from: framework, version and table (the manifest's record)."""
    if not shipped:
        return f"{table.source} ({rows} rows)"
    p = kernel_table_provenance(gpu_id, family)
    what = {"all_reduce_intra": ("trtllm", "custom all-reduce"), "p2p_intra": ("nccl", "NCCL all-gather, "
            "reduce-scatter, all-to-all"), "ep_dispatch_intra": ("sglang", "DeepEP normal mode, one node"),
            "ep_dispatch_inter": ("sglang", "DeepEP normal mode, 2-8 nodes"),
            "ep_dispatch_low_latency": ("sglang", "DeepEP low-latency mode, one node")}.get(group)  # fmt: skip
    if what is None:
        versions = ", ".join(p["version"])
        where = f"profiles/measured/aic/{gpu_id}"
        return f"AIConfigurator {p['framework']} {versions} {family} table ({rows} rows, {where})"
    framework, kind = what
    versions = sorted({s.split("/")[-2] for s in p["source"] if f"/{framework}/" in s})
    return (f"AIConfigurator {framework} {', '.join(versions)} {kind} ({rows} rows of the {family} table, "
            f"profiles/measured/aic/{gpu_id})")  # fmt: skip


def fit_kernel_tables(gpu, *, base: EfficiencyFactors, tables=None, keep=()) -> KernelFit:
    """Fit every factor group the kernel tables of ``gpu`` cover (module docstring), on ``base``.

    Parameters
    ----------
    gpu : GPU profile or id.
    base : the factors to start from; groups without rows keep its values.
    tables : ``{family: KernelTable}``; default the shipped tables of ``gpu``.
    keep : groups not to fit (e.g. ``("gemm",)`` where another source fits the dense GEMMs).

    Returns
    -------
    KernelFit
        The factors (``sources`` per fitted group), the groups fitted and their sources.

    Examples
    --------
    >>> from planner.perf.factors import DEFAULT_FACTORS
    >>> fit = fit_kernel_tables("h200", base=DEFAULT_FACTORS)
    >>> "moe" in fit.fitted, 0 < fit.factors.moe_modes.scale("w8a8_block") < 1
    (True, True)
    """
    spec = _spec(gpu)
    tables = _tables(spec.id, tables)
    shipped = tables is None or all(t.source.startswith("profiles/measured/aic/") for t in tables.values())
    factors, fitted, sources = base, [], {}
    for group, family, fit in _PLAN:
        if group in keep or family not in tables:
            continue
        rows = _rows(tables[family], spec, group)
        if len(rows) < _MIN_ROWS:
            continue
        if fit is _fit_modes:
            factors, keys = fit(rows, spec, factors, group)
            if not keys:
                continue
        else:
            factors = fit(rows, spec, factors, group)
        fitted.append(group)
        sources[group] = _describe(spec.id, group, family, tables[family], len(rows), shipped)
    named = dict(factors.sources)
    named.update(sources)
    factors = replace(factors, sources=tuple(named.items()))
    return KernelFit(spec.id, factors, tuple(fitted), sources)


# --- held-out protocol ------------------------------------------------------------------------------

def _fold_keys(t: KernelTable) -> np.ndarray:
    fam = t.family
    if fam == "gemm":
        return np.char.add("k=", t["k"].astype(str))
    if fam == "moe":
        parts = [t[c].astype(str) for c in ("hidden_size", "inter_size", "num_experts", "top_k")]
        return np.array(["/".join(p) for p in zip(*parts)])
    if fam in ("attention_prefill", "attention_decode"):
        parts = [t[c].astype(str) for c in ("num_heads", "num_kv_heads", "head_dim")]
        return np.array(["/".join(p) for p in zip(*parts)])
    if fam in ("mla_prefill", "mla_decode"):
        return np.char.add("heads=", t["num_heads"].astype(str))
    if fam == "collective":
        return np.char.add("n=", t["num_gpus"].astype(str))
    if fam == "moe_dispatch":
        return np.where(t["nodes"] > 1, np.char.add("nodes=", t["nodes"].astype(str)),
                        np.char.add("hidden=", t["hidden_size"].astype(str)))  # fmt: skip
    raise InputError(f"unknown kernel family {fam!r}", param="family")


def _evaluated(t: KernelTable, spec) -> np.ndarray:
    """Rows a family's report counts: what its groups model (balanced MoE, BF16-compute prefill,
    normal-mode dispatch, every collective)."""
    fam = t.family
    if fam == "moe":
        return t["distribution"] == "balanced"
    if fam == "attention_prefill":
        return t["compute"] == "bf16"
    if fam == "moe_dispatch":  # the modes fitted: normal (one node, several) and low latency on one node
        return (t["mode"] == "normal") | (t["nodes"] == 1)
    if fam == "collective":  # the all-reduce group is fitted on the engine's custom all-reduce
        return ~((t["op"] == "all_reduce") & (t["implementation"] == "nccl"))
    return np.ones(len(t), dtype=bool)


def _kept_rows(t: KernelTable, spec, keep) -> np.ndarray:
    """Rows priced only by groups in ``keep`` (fitted elsewhere, e.g. Vidur's dense GEMMs)."""
    out = np.zeros(len(t), dtype=bool)
    if t.family == "gemm" and "gemm" in keep:
        out |= np.array([mode_key(m) == "w16a16" for m in _modes(t, spec)])
    if t.family == "collective" and "p2p_intra" in keep:
        out |= np.isin(t["op"], ("all_gather", "reduce_scatter", "all_to_all"))
    if t.family == "collective" and "all_reduce_intra" in keep:
        out |= t["op"] == "all_reduce"
    if t.family == "mla_decode" and "mla_decode" in keep:
        out[:] = True
    return out


def held_out_kernels(gpu, *, base: EfficiencyFactors, tables=None, keep=()) -> tuple[FitReport, ...]:
    """The held-out protocol (module docstring): one report per family of ``gpu``'s kernel tables,
    every row predicted by factors fitted without its fold.

    Examples
    --------
    >>> from planner.perf.factors import DEFAULT_FACTORS
    >>> from planner.perf.kernel_tables import load_kernel_table
    >>> tables = {f: load_kernel_table("h200", f) for f in ("gemm", "mla_decode")}  # a part, to keep it quick
    >>> [r.evaluated_on for r in held_out_kernels("h200", base=DEFAULT_FACTORS, tables=tables)]
    ['gemm', 'mla_decode']
    """
    spec = _spec(gpu)
    tables = _tables(spec.id, tables)
    reports = []
    for family in FAMILIES:
        if family not in tables:
            continue
        table = tables[family]
        groups = [(g, fit) for g, fam, fit in _PLAN if fam == family and g not in keep]
        folds = _fold_keys(table)
        evaluated = _evaluated(table, spec)
        predicted = np.full(len(table), np.nan)
        names = list(dict.fromkeys(folds.tolist()))
        for name in names if len(names) > 1 else []:
            test = folds == name
            factors = _refit(table.select(~test), spec, base, groups)
            predicted[test] = predict_kernel_ms(table.select(test), spec, factors)
        labels = family_labels(table, spec)
        # a label whose rows all lie in one fold (one shape measured) cannot be held out: report it in sample
        single = [name for name in dict.fromkeys(labels.tolist()) if len(set(folds[labels == name].tolist())) < 2]
        if single:
            factors = _refit(table, spec, base, groups)
            inside = np.isin(labels, single)
            predicted[inside] = predict_kernel_ms(table.select(inside), spec, factors)
            labels = np.where(inside, np.char.add(labels.astype(str), " (in sample: one shape)"), labels)
        kept = _kept_rows(table, spec, keep)
        if kept.any():  # rows whose group another source fits: out of sample by construction
            predicted[kept] = predict_kernel_ms(table.select(kept), spec, base)
            labels = np.where(kept, np.char.add(labels.astype(str), " (factors kept from the base)"), labels)
        ok = evaluated & np.isfinite(predicted)
        if not ok.any():
            continue
        errors = family_errors(predicted[ok], table["time_ms"][ok], labels[ok])
        reports.append(FitReport(spec.id, f"folds by {folds[0].split('=')[0] if '=' in folds[0] else 'shape'}",
                                 family, 1, errors))  # fmt: skip
    return tuple(reports)


def imbalance(table: KernelTable, *, min_tokens: int = 1024) -> tuple[dict, ...]:
    """How much slower the power-law rows of a MoE table are than the balanced ones of the same
    shape, mode, layout and tokens (``num_tokens >= min_tokens``): the median ratio per shape and
    layout, i.e. ``1 / b`` of the routing AIConfigurator measured with."""
    if table.family != "moe":
        raise InputError("imbalance needs a moe table", param="table")
    keys = ("weights", "hidden_size", "inter_size", "num_experts", "top_k", "moe_tp", "moe_ep", "num_tokens")
    balanced = {tuple(table[c][i] for c in keys): table["time_ms"][i] for i in range(len(table))
                if table["distribution"][i] == "balanced"}  # fmt: skip
    ratios: dict = {}
    for i in range(len(table)):
        dist = str(table["distribution"][i])
        key = tuple(table[c][i] for c in keys)
        if dist == "balanced" or key not in balanced or table["num_tokens"][i] < min_tokens:
            continue
        group = (dist, *key[:-1])
        ratios.setdefault(group, []).append(table["time_ms"][i] / balanced[key])
    out = []
    for (dist, w, h, inter, e, k, tp, ep), values in sorted(ratios.items()):
        out.append({"distribution": dist, "weights": str(w), "hidden_size": int(h), "inter_size": int(inter),
                    "num_experts": int(e), "top_k": int(k), "moe_tp": int(tp), "moe_ep": int(ep),
                    "points": len(values), "median_ratio": float(np.median(values))})  # fmt: skip
    return tuple(out)


