r"""One serving configuration -> TTFT, TPOT, throughput and memory per GPU, with the breakdown.

(Just past ~450 lines: the estimate, its report and the assumptions it states are one job.)

Static batching, on which every number depends. One instance runs on ``tp x dp x pp`` GPUs; each
of its ``dp`` DP-attention ranks holds ``batch`` requests, so the instance serves
``B = batch x dp`` requests. They arrive together, are prefilled in one forward step, then decode
together; the prefill emits the first output token and ``osl - 1`` decode steps the others::

    (1) TTFT          = prefill_time_s(B requests of isl tokens).total_s     no queueing, no chunking
    (2) TPOT          = decode_step_time_s(B sequences, context c = isl + floor(osl / 2)).total_s
                        decode step j = 1 .. osl - 1 attends to isl + j tokens, on average
                        isl + osl / 2; only attention depends on the context, affinely while its
                        core stays HBM- or FLOP-bound, so this is the mean step time (a regime
                        change inside the decode makes it a slight underestimate)
    (3) E2E latency   = TTFT + (osl - 1) x TPOT
    (4) tokens/s/GPU  = B x 1000 / TPOT_ms / num_gpus   decode throughput: output tokens per second
                        of the running batch per GPU, prefill time excluded
    (5) tokens/s/user = 1000 / TPOT_ms
    (6) KV needed     = batch x (isl + osl) tokens on every GPU (each DP rank caches its own
                        requests; each of its TP ranks holds its share of every token's KV)
                        <= kv_tokens of the memory model, else Infeasible
    (7) memory/GPU    = weights + activations + runtime overhead + KV needed (6)

Times come from :mod:`planner.perf.latency`, memory from :mod:`planner.perf.memory` (activations
reserved for the engine's ``max_batch_tokens`` step). With a replica plan the routed experts take
the plan's slots per GPU and the MoE layers its replayed balancedness; without one, ``ceil(E / ep)``
slots and balancedness 1 (perfectly even routing, optimistic). Every assumption an estimate rests
on is listed in its ``assumptions``; ``docs/estimates.md`` discusses them.

>>> e = estimate("mixtral-8x7b", "h100", tp=2, batch=8, isl=1024, osl=128, calibrated=False)
>>> e.layout, e.ttft_ms > 0, e.tokens_per_s_per_gpu == 8 * 1000 / e.tpot_ms / 2
('tp2pp1dp1ep2', True, True)
"""

from __future__ import annotations

import math  # noqa: F401  (doctest)
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from planner.common.checks import POSITIVE, check_number
from planner.common.numerics import round_float
from planner.common.tables import format_table
from planner.errors import Infeasible, InputError
from planner.perf.calibration import calibrated_factors, calibrated_gpus
from planner.perf.factors import DEFAULT_FACTORS, FACTOR_GROUPS, EfficiencyFactors
from planner.perf.latency import StepTime, decode_step_time_s, prefill_time_s
from planner.perf.layout import ParallelLayout
from planner.perf.memory import memory_per_gpu
from planner.perf.memory_breakdown import MemoryBreakdown
from planner.perf.replica_effect import replica_plan_effect
from planner.plans.schema import Plan
from planner.profiles import GpuSpec, ModelArch, Precision, get_gpu, get_model, resolve_precision

__all__ = ["Estimate", "estimate"]


@dataclass(frozen=True)
class Estimate:
    """TTFT, TPOT, throughput and memory of one static batch on one instance (module docstring).

    Times in ms, throughputs in output tokens per second, memory per GPU in bytes (the binding
    GPU of :func:`~planner.perf.memory.memory_per_gpu`). ``batch`` is requests per DP-attention
    rank; ``requests_per_instance = batch x dp``. ``prefill`` and ``decode`` are the latency
    model's breakdowns (seconds) of the TTFT step and of the decode step at ``decode_context_tokens``.
    ``precision`` is the number format of each component the estimate priced, ``gemm_modes`` the
    mode each weight component's GEMMs run in on this GPU (``attention``, ``experts``, ``base``).
    """

    model: str
    gpu: str
    layout: str
    num_gpus: int
    batch: int
    requests_per_instance: int
    isl_tokens: int
    osl_tokens: int
    decode_context_tokens: int
    ttft_ms: float
    tpot_ms: float
    tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    e2e_latency_ms: float
    memory: MemoryBreakdown
    kv_tokens_needed_per_gpu: int
    kv_cache_needed_bytes: float
    memory_per_gpu_bytes: float
    total_params: int
    active_params: int
    balancedness: float
    expert_slots_per_gpu: int
    prefill: StepTime
    decode: StepTime
    assumptions: tuple[str, ...]
    factors_source: str
    precision: Precision
    gemm_modes: dict
    factor_sources: dict = None  # group -> where its factors come from

    def sources_by_origin(self) -> list[tuple[str, str]]:
        """``(groups, source)`` pairs: the factor groups that share a source, joined by ``, ``."""
        merged: dict[str, list[str]] = {}
        for group, source in (self.factor_sources or {}).items():
            merged.setdefault(source, []).append(group)
        return [(", ".join(groups), source) for source, groups in merged.items()]

    def to_dict(self) -> dict:
        """JSON-ready dict; every number's name carries its unit."""
        out = {
            "model": self.model,
            "gpu": self.gpu,
            "layout": self.layout,
            "num_gpus": self.num_gpus,
            "batch_requests_per_dp_rank": self.batch,
            "requests_per_instance": self.requests_per_instance,
            "isl_tokens": self.isl_tokens,
            "osl_tokens": self.osl_tokens,
            "decode_context_tokens": self.decode_context_tokens,
            "ttft_ms": self.ttft_ms,
            "tpot_ms": self.tpot_ms,
            "e2e_latency_ms": self.e2e_latency_ms,
            "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
            "tokens_per_s_per_user": self.tokens_per_s_per_user,
            "memory_per_gpu_bytes": self.memory_per_gpu_bytes,
            "weights_per_gpu_bytes": self.memory.total_weights_bytes,
            "kv_cache_needed_per_gpu_bytes": self.kv_cache_needed_bytes,
            "kv_cache_available_per_gpu_bytes": self.memory.kv_cache_bytes,
            "kv_tokens_needed_per_gpu": self.kv_tokens_needed_per_gpu,
            "kv_tokens_available_per_gpu": self.memory.kv_tokens,
            "usable_memory_per_gpu_bytes": self.memory.usable_memory_bytes,
            "total_params": self.total_params,
            "active_params": self.active_params,
            "balancedness": self.balancedness,
            "expert_slots_per_gpu": self.expert_slots_per_gpu,
            "precision": self.precision.to_dict(),
            "gemm_modes": {
                name: {"mode": m.name, "declared": m.declared, "tensor_type": m.tensor_type,
                       "weight_bytes_per_element": m.weights.bytes_per_element}
                for name, m in self.gemm_modes.items()
            },  # fmt: skip
            "memory_breakdown": self.memory.to_dict(),
            "prefill_step": self.prefill.to_dict(),
            "decode_step": self.decode.to_dict(),
            "assumptions": list(self.assumptions),
            "factors_source": self.factors_source,
            "factor_sources": dict(self.factor_sources or {}),
        }
        return {k: round_float(v) if isinstance(v, float) else v for k, v in out.items()}

    def table(self) -> str:
        """Human-readable report: key metrics, time per component in ms, memory per GPU in GB."""
        head = (
            f"{self.model} on {self.num_gpus} x {self.gpu}, {self.layout}: batch {self.batch} per DP rank "
            f"({self.requests_per_instance} requests), isl {self.isl_tokens:,} tokens, osl {self.osl_tokens:,} tokens"
        )
        metrics = format_table(
            ["metric", "value"],
            [
                ["TTFT, ms", f"{self.ttft_ms:,.2f}"],
                ["TPOT, ms", f"{self.tpot_ms:,.3f}"],
                ["end-to-end latency, ms", f"{self.e2e_latency_ms:,.1f}"],
                ["throughput, output tokens/s/GPU", f"{self.tokens_per_s_per_gpu:,.1f}"],
                ["throughput, output tokens/s/user", f"{self.tokens_per_s_per_user:,.1f}"],
                ["expert balancedness, mean/max GPU load", f"{self.balancedness:.4f}"],
                ["expert slots per GPU and MoE layer", f"{self.expert_slots_per_gpu}"],
                ["weights, attention / experts", f"{self.precision.attention} / {self.precision.experts}"],
                ["GEMM modes, attention / experts",
                 f"{self.gemm_modes['attention'].name} / {self.gemm_modes['experts'].name}"],
                ["KV cache / activations", f"{self.precision.kv_cache} / {self.precision.activations}"],
                ["parameters total / active, B", f"{self.total_params / 1e9:,.1f} / {self.active_params / 1e9:,.1f}"],
            ],
        )
        names = [n for n in self.prefill.components() if self.prefill.components()[n] or self.decode.components()[n]]
        times = format_table(
            ["component", "prefill_ms", "decode_step_ms"],
            [[n[:-2], f"{getattr(self.prefill, n) * 1e3:.3f}", f"{getattr(self.decode, n) * 1e3:.3f}"] for n in names]
            + [["total", f"{self.prefill.total_s * 1e3:.3f}", f"{self.decode.total_s * 1e3:.3f}"]],
            title=f"time by component (decode step at {self.decode_context_tokens:,} context tokens)",
        )
        m, p = self.memory, self.precision
        gb = [
            ["attention weights", m.attention_weights_bytes, p.attention.name],
            ["dense FFN weights", m.dense_ffn_weights_bytes, p.attention.name if m.dense_ffn_weights_bytes else ""],
            ["shared-expert weights", m.shared_expert_weights_bytes,
             p.attention.name if m.shared_expert_weights_bytes else ""],
            ["routed-expert weights", m.routed_expert_weights_bytes,
             f"{p.experts.name}; {m.expert_slots_per_gpu} slots x {m.stage_moe_layers} MoE layers"],
            ["router + norms", m.router_and_norm_bytes, p.base.name],
            ["embedding + lm_head", m.embedding_bytes, p.base.name],
            ["total weights", m.total_weights_bytes, ""],
            ["activations", m.activation_bytes, f"{m.max_batch_tokens:,} tokens per step"],
            ["runtime overhead", m.runtime_overhead_bytes, ""],
            ["KV cache, this batch", self.kv_cache_needed_bytes,
             f"{p.kv_cache.name}; {self.kv_tokens_needed_per_gpu:,} tokens = {self.batch} x ({self.isl_tokens:,} + "
             f"{self.osl_tokens:,})"],
            ["memory used", self.memory_per_gpu_bytes, ""],
            ["KV cache available", m.kv_cache_bytes, f"{m.kv_tokens:,} tokens"],
            ["usable memory", m.usable_memory_bytes, m.usable_note()],
        ]  # fmt: skip
        memory = format_table(
            ["memory per GPU", "GB", "note"],
            [[name, f"{value / 1e9:.2f}", note] for name, value, note in gb],
            title=f"memory per GPU (pipeline stage {m.pp_stage}, {m.stage_layers} layers)",
        )
        notes = ["assumptions:", *(f"  - {a}" for a in self.assumptions), f"factors: {self.factors_source}"]
        origin = ["where each efficiency factor comes from:"]
        origin += [f"  - {groups}: {source}" for groups, source in self.sources_by_origin()]
        return "\n\n".join([head + "\n" + metrics, times, memory, "\n".join(notes), "\n".join(origin)])


def estimate(
    model: ModelArch | str,
    gpu: GpuSpec | str,
    *,
    tp: int = 1,
    pp: int = 1,
    dp: int = 1,
    ep: int | None = None,
    moe_tp: int = 1,
    batch: int,
    isl: int,
    osl: int,
    replica_plan: Plan | None = None,
    balancedness: float | None = None,
    calibrated: bool = True,
    factors: EfficiencyFactors | None = None,
    precision: Precision | Mapping[str, Any] | None = None,
    memory_utilization: float = 0.9,
    max_batch_tokens: int = 8192,
    memory_fraction_of: str = "total",
) -> Estimate:
    """TTFT, TPOT, throughput and memory of one static batch on one instance.

    Parameters
    ----------
    model, gpu : profiles or their names.
    tp, pp, dp, ep, moe_tp : parallel degrees (:class:`~planner.perf.layout.ParallelLayout`);
        ``ep`` defaults to ``tp x dp`` (experts spread over every GPU of a stage).
    batch : requests per DP-attention rank; the instance holds ``batch x dp``.
    isl, osl : prompt and output tokens per request (``osl >= 2``: TPOT needs a decode step).
    replica_plan : a replica plan for this model with ``num_gpus == ep``: its largest slot count
        per GPU over the planned layers sizes the routed experts, and its replayed balancedness
        (held-out when the plan has it) loads the busiest GPU's experts.
    balancedness : mean over max GPU load of the routed experts, when no replica plan gives it
        (e.g. the routing skew a benchmark assumed); default 1 (perfectly even routing).
    calibrated : use :func:`~planner.perf.calibration.calibrated_factors` when measured tables
        exist for ``gpu``; otherwise, or when False, ``DEFAULT_FACTORS``.
    factors : efficiency factors to use instead (e.g. fitted to your own ``moeplan profile``,
        :func:`~planner.perf.calibration.profile_factors`); ``calibrated`` is then ignored.
    precision : number formats of the weights, KV cache and activations: a
        :class:`~planner.profiles.precision.Precision`, or a mapping of overrides of the model's
        native precision (keys ``weights``, ``attention``, ``experts``, ``kv_cache``,
        ``activations``; ``{"experts": "mxfp4", "kv_cache": "fp8"}``); default the native precision.
        Memory prices each component in its format; decode reads those bytes; GEMMs run at the peak
        of their GEMM mode on ``gpu`` (``docs/precision.md``).
    memory_utilization : share of GPU memory the engine may use; with ``memory_fraction_of="free"`` the
        KV cache's share of the memory left after weights, activations and overhead.
    memory_fraction_of : ``"total"`` (vLLM, SGLang) or ``"free"`` (TensorRT-LLM), as in
        :func:`~planner.perf.memory.memory_per_gpu`.
    max_batch_tokens : tokens of one forward step the engine reserves activations for, over the
        whole instance (its chunked-prefill size); the TTFT itself is priced unchunked.

    Returns
    -------
    Estimate

    Raises
    ------
    InputError
        A layout the model cannot use, an out-of-range argument, or a replica plan for another
        model or another number of EP ranks.
    Infeasible
        The weights, activations and overhead exceed the usable memory, or the KV cache left
        cannot hold ``batch x (isl + osl)`` tokens; one line with the numbers in GB.

    Examples
    --------
    >>> e = estimate("deepseek-v3", "h200", dp=8, ep=8, batch=16, isl=2048, osl=256)
    >>> e.layout, e.requests_per_instance, e.decode_context_tokens
    ('tp1pp1dp8ep8', 128, 2176)
    >>> math.isclose(e.ttft_ms, 1e3 * sum(e.prefill.components().values()))
    True
    >>> estimate("gpt-oss-120b", "h100", batch=1, isl=1024, osl=128).gemm_modes["experts"].name
    'w4a16'
    """
    # validate before modelling: names, layout, numbers, the plan -- then memory, then time
    arch = model if isinstance(model, ModelArch) else get_model(model)
    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    lay = ParallelLayout(tp=tp, pp=pp, dp=dp, ep=tp * dp if ep is None else ep, moe_tp=moe_tp)
    check_number("batch", batch, low=1, integer=True)
    check_number("isl", isl, low=1, integer=True)
    check_number("osl", osl, low=2, integer=True)
    if not isinstance(calibrated, bool):
        raise InputError(f"calibrated must be True or False, got {calibrated!r}", param="calibrated")
    if balancedness is not None:
        if replica_plan is not None:
            raise InputError("give balancedness or a replica plan, not both", param="balancedness")
        check_number("balancedness", balancedness, low=POSITIVE, high=1.0)
    if factors is not None and not isinstance(factors, EfficiencyFactors):
        raise InputError(f"factors must be EfficiencyFactors, got {type(factors).__name__}", param="factors")
    batch, isl, osl = int(batch), int(isl), int(osl)
    prec = resolve_precision(arch.precision, precision)
    modes = prec.gemm_modes(spec)
    slots, plan_balancedness, plan_note = _from_plan(replica_plan, arch, lay)
    if balancedness is None:
        balancedness = plan_balancedness
    else:
        balancedness = float(balancedness)
        plan_note = f"expert balancedness {balancedness:.4f} as given (mean / max GPU load of the routed experts)"
    lay.validate(arch, expert_slots_per_gpu=slots)
    slots = lay.expert_slots_per_gpu(arch, slots)

    mem = memory_per_gpu(arch, spec, lay, expert_slots_per_gpu=slots, precision=prec,
                         max_batch_tokens=max_batch_tokens, memory_utilization=memory_utilization,
                         memory_fraction_of=memory_fraction_of)  # fmt: skip
    context = isl + osl
    kv_needed_bytes = batch * mem.kv_bytes_per_sequence(context)
    if batch > mem.sequences_that_fit(context):
        _raise_kv(mem, batch, isl, osl, kv_needed_bytes)

    factors, factors_note = _factors_for(spec, calibrated, factors)
    requests = batch * lay.dp
    decode_context = isl + osl // 2
    common = dict(balancedness=balancedness, expert_slots_per_gpu=slots, factors=factors, precision=prec)
    prefill = prefill_time_s(arch, spec, lay, requests, isl, **common)
    decode = decode_step_time_s(arch, spec, lay, requests, decode_context, **common)

    ttft_ms, tpot_ms = prefill.total_s * 1e3, decode.total_s * 1e3
    used = mem.total_weights_bytes + mem.activation_bytes + mem.runtime_overhead_bytes + kv_needed_bytes
    assumptions = _assumptions(arch, spec, lay, batch, isl, osl, decode_context, mem, plan_note, factors_note,
                               prec, modes)  # fmt: skip
    return Estimate(
        model=arch.id,
        gpu=spec.id,
        layout=lay.label,
        num_gpus=lay.num_gpus,
        batch=batch,
        requests_per_instance=requests,
        isl_tokens=isl,
        osl_tokens=osl,
        decode_context_tokens=decode_context,
        ttft_ms=ttft_ms,
        tpot_ms=tpot_ms,
        tokens_per_s_per_gpu=requests * 1000.0 / tpot_ms / lay.num_gpus,
        tokens_per_s_per_user=1000.0 / tpot_ms,
        e2e_latency_ms=ttft_ms + (osl - 1) * tpot_ms,
        memory=mem,
        kv_tokens_needed_per_gpu=batch * context,
        kv_cache_needed_bytes=float(kv_needed_bytes),
        memory_per_gpu_bytes=float(used),
        total_params=arch.total_params(),
        active_params=arch.active_params(),
        balancedness=balancedness,
        expert_slots_per_gpu=slots,
        prefill=prefill,
        decode=decode,
        assumptions=assumptions,
        factors_source=factors.source,
        precision=prec,
        gemm_modes=modes,
        factor_sources={group: factors.source_of(group) for group in FACTOR_GROUPS},
    )


def _from_plan(plan: Plan | None, arch: ModelArch, lay: ParallelLayout) -> tuple[int | None, float, str]:
    """(slots per GPU or None, balancedness, what the assumption line says) from a replica plan."""
    if plan is None:
        return None, 1.0, "expert balancedness 1 (perfectly even routing; no replica plan given): optimistic"
    return replica_plan_effect(plan, arch, lay)


def _factors_for(spec: GpuSpec, calibrated: bool, given: EfficiencyFactors | None):
    """(factors, note): the given ones, else fitted to the shipped tables of ``spec`` when asked and available."""
    if given is not None:
        return given, "efficiency factors given by the caller"
    have = calibrated_gpus()
    if not calibrated:
        return DEFAULT_FACTORS, "uncalibrated efficiency factors by request (DEFAULT_FACTORS)"
    if spec.id not in have:
        return DEFAULT_FACTORS, (
            f"no measured op tables for {spec.id} (shipped for {', '.join(have)}): uncalibrated DEFAULT_FACTORS"
        )
    return calibrated_factors(spec), f"efficiency factors fitted to the measured {spec.id} tables"


def _raise_kv(mem: MemoryBreakdown, batch: int, isl: int, osl: int, needed_bytes: float) -> None:
    fit = mem.sequences_that_fit(isl + osl)
    raise Infeasible(
        f"{mem.gpu_id}: {mem.model_id} at {mem.layout}: the KV cache of {batch} requests per DP rank x "
        f"({isl} + {osl}) tokens = {batch * (isl + osl):,} tokens needs {needed_bytes / 1e9:.1f} GB per GPU, "
        f"but {max(mem.kv_cache_bytes, 0) / 1e9:.1f} GB ({mem.kv_tokens:,} tokens) is left after weights "
        f"{mem.total_weights_bytes / 1e9:.1f} + activations {mem.activation_bytes / 1e9:.1f} + overhead "
        f"{mem.runtime_overhead_bytes / 1e9:.1f} GB of {mem.usable_memory_bytes / 1e9:.1f} GB usable; "
        f"at most {fit} requests per DP rank fit"
    )


def _precision_note(arch: ModelArch, spec: GpuSpec, prec: Precision, modes: dict) -> str:
    native = "the model's native precision" if prec == arch.precision else "overriding the native precision"
    attention, experts = modes["attention"], modes["experts"]
    gemms = (
        f"GEMMs {attention.describe()} on {spec.id}"
        if attention == experts
        else f"attention GEMMs {attention.describe()}, expert GEMMs {experts.describe()} on {spec.id}"
    )
    return (
        f"weights: attention/dense {prec.attention} ({prec.attention.bytes_per_element:g} B/element), routed "
        f"experts {prec.experts} ({prec.experts.bytes_per_element:g} B/element), embeddings, norms and router "
        f"{prec.base} ({native}); {gemms}; activations {prec.activations} as GEMM inputs, stored in 16 bits"
    )


def _assumptions(arch, spec, lay, batch, isl, osl, decode_context, mem, plan_note, factors_note, prec, modes):
    requests = batch * lay.dp
    out = [
        (
            f"static batch: {requests} requests ({batch} per DP rank x dp={lay.dp}) arrive together; TTFT is one "
            "prefill of all prompts (no queueing, no chunked prefill, no prefix cache)"
        ),
        (
            f"TPOT: one decode step of all {requests} sequences at the mean context isl + osl/2 = {decode_context:,} "
            f"tokens (decode steps 1..{osl - 1} attend to isl + 1 .. isl + osl - 1 tokens)"
        ),
        (
            f"tokens/s/GPU: decode throughput {requests} x 1000 / TPOT_ms / {lay.num_gpus} GPUs (prefill time "
            "excluded); end-to-end latency = TTFT + (osl - 1) x TPOT"
        ),
        plan_note,
        _precision_note(arch, spec, prec, modes),
        (
            f"KV cache in {prec.kv_cache} ({prec.kv_cache.bytes_per_element:g} B/element); activations reserved for "
            f"{mem.max_batch_tokens:,} tokens per forward step; usable memory {mem.usable_note()}"
        ),
        factors_note + "; where each factor group comes from is listed with the factors",
        "nothing overlaps (no two-batch overlap of communication and compute); CPU launch and scheduling not counted",
    ]
    if lay.pp > 1:
        out.append(
            f"pp={lay.pp}: the one batch passes the stages in turn (no micro-batching), so TTFT and TPOT are "
            "latencies through every stage and stages idle while others work"
        )
    if mem.kv_windowed_layers:
        out.append(f"{mem.kv_windowed_layers} sliding-window layers keep at most {mem.kv_window_tokens} tokens of KV")
    return tuple(out)
