r"""Latency of one prefill batch or one decode step: a roofline with named efficiency factors.

(Just past ~450 lines: the step's op list per layer kind and the formulas it prices are one job.)

A step is a sum of op times -- GEMM (1), memory-bound op (2), attention core (3), all-reduce (4),
all-to-all (5), send/recv (6) of :mod:`planner.perf.op_times` -- each with the efficiency factors
of :mod:`planner.perf.factors`. Each GEMM runs in the mode of its weights' format and the activation
format on this GPU (:mod:`planner.profiles.precision`): attention, dense-FFN and shared-expert GEMMs
in the ``attention`` weights' mode, routed experts in the ``experts`` weights' mode, router and
lm_head in the ``base`` format at 16 bits; the KV cache is read and written in its own format.
What one GPU runs (``b_a = 2`` activation bytes, ``b_kv`` bytes per KV element)::

    (3) attention core of h_r heads per rank, window w, L new tokens or c context tokens per request:
            prefill  F_a = 2 h_r (d_qk + d_v) sum_req sum_{i=1..L} min(i, w)   (causal; ~L^2 / 2)
            decode   F_a = 2 h_r (d_qk + d_v) sum_req min(c, w),   B_a = sum_req min(c, w) kv_r b_kv
            (B_a also counts q and o, the new tokens' KV written and, in prefill, the fresh k and v)
    (7) MoE layer; T tokens in the tp x dp MoE group, top-k, balancedness b, s slots per GPU:
            R = T k / (ep b) rows on the busiest GPU,  A = s (1 - exp(-R / s)) slots it activates
            t = dispatch + GEMM(R, 2I/moe_tp, H; g=A) + act + GEMM(R, H, I/moe_tp; g=A) + combine
            grouped GEMMs (factors ``moe``); dispatch and combine are eq. (9) of op_times with
            T / ep tokens per rank (DeepEP's low-latency mode in decode steps): dispatch in FP8
            (1 + 4/128 bytes per element, DeepEP's FP8 dispatch) when the expert GEMMs take 8-bit
            or narrower activations, else BF16; combine in BF16
    (8) step = sum over stages and their layers (attention block + dense FFN or MoE block)
               + embedding (first stage) + final norm and lm_head (last stage)
               + (pp - 1) hand-offs of hidden state and residual (send/recv)

The layer's ops are the ones vLLM / SGLang run (ParallelLayout rules in :mod:`planner.perf.layout`):
attention ``x tp`` (GQA: q and o split, KV heads split up to ``kv_heads``; MLA: latent
down-projections replicated, ``q_b``/``kv_b``/``o`` split by heads), each dense FFN / shared expert
split over ``tp`` with an all-reduce, routed experts over ``ep`` groups of ``moe_tp`` ranks.
Nothing overlaps: communication is added to compute (no two-batch overlap), CPU launch and
scheduling overheads are not included (the calibration tables are kernel times). Factors, their
sources and the measured errors are in ``docs/performance.md``.

>>> t = decode_step_time_s("mixtral-8x7b", "h100", "tp2pp1dp1ep1moetp2", 64, 2048)
>>> t.total_s > t.moe_expert_s > 0, t.moe_dispatch_s
(True, 0.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from planner.common.checks import POSITIVE, check_number
from planner.common.numerics import round_float
from planner.perf.factors import EfficiencyFactors, resolve_factors
from planner.perf.layout import ParallelLayout, resolve_instance
from planner.perf.op_times import (
    ACTIVATION_BYTES,
    FP8_DISPATCH_BYTES,
    attention_time_s,
    collective_time_s,
    ep_dispatch_time_s,
    gemm_time_s,
    memory_op_time_s,
    moe_experts_time_s,
)
from planner.profiles import GemmMode, GpuSpec, ModelArch, Precision, resolve_precision
from planner.profiles.params import kv_elements_per_token_per_layer, kv_heads_per_rank

__all__ = ["StepTime", "prefill_time_s", "decode_step_time_s", "attention_core_time_s", "step_time_grid"]


_COMPONENTS = (
    "embedding_s", "norm_s", "elementwise_s", "attention_proj_s", "attention_core_s", "dense_ffn_s",
    "router_s", "moe_expert_s", "moe_dispatch_s", "moe_combine_s", "tp_all_reduce_s", "pp_send_s",
    "lm_head_s",
)  # fmt: skip


@dataclass(frozen=True)
class StepTime:
    """Time of one prefill batch or decode step on one instance, by component (seconds).

    Components are summed over every layer of every pipeline stage: ``total_s`` is the latency
    of the step (a token passes every stage); ``stage_s`` gives each stage's own time (hand-offs
    excluded), whose maximum bounds a pipelined instance's step rate. ``moe_rows_busiest_gpu`` is
    R of eq. (7) for one MoE layer.
    """

    phase: str
    model_id: str
    gpu_id: str
    layout: str
    batch: int
    tokens_per_request: int
    context_tokens: int
    balancedness: float
    moe_rows_busiest_gpu: float
    embedding_s: float
    norm_s: float  # RMSNorms (input, post-attention, q/k and MLA latent norms, final)
    elementwise_s: float  # rope, residual adds, activations of dense FFN and shared experts
    attention_proj_s: float  # QKV / MLA projections and the output projection
    attention_core_s: float
    dense_ffn_s: float  # dense FFN layers and shared experts (GEMMs)
    router_s: float
    moe_expert_s: float  # routed-expert GEMMs and activation on the busiest GPU
    moe_dispatch_s: float
    moe_combine_s: float
    tp_all_reduce_s: float
    pp_send_s: float
    lm_head_s: float
    stage_s: tuple[float, ...]
    total_s: float
    factors_source: str
    gemm_modes: dict = field(default_factory=dict)  # "attention" / "experts" / "base" -> mode run, e.g. "w8a8"

    def components(self) -> dict[str, float]:
        """``{component_s: seconds}`` of the breakdown (they sum to ``total_s``)."""
        return {name: getattr(self, name) for name in _COMPONENTS}

    def table(self) -> str:
        """Human-readable breakdown in milliseconds."""
        head = (
            f"{self.phase} {self.model_id} on {self.gpu_id} {self.layout}: batch {self.batch}, "
            f"{self.tokens_per_request} new / {self.context_tokens} context tokens, b = {self.balancedness:g}"
        )
        rows = [f"  {name[:-2]:<18}{value * 1e3:>10.3f} ms" for name, value in self.components().items() if value]
        return "\n".join([head, *rows, f"  {'total':<18}{self.total_s * 1e3:>10.3f} ms"])

    def to_dict(self) -> dict:
        """Plain dict, floats rounded to 12 significant digits."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round_float(value)
        out["stage_s"] = [round_float(v) for v in self.stage_s]
        return out


@dataclass(frozen=True)
class _Step:
    """Checked inputs of one step and the derived token counts."""

    arch: ModelArch
    spec: GpuSpec
    lay: ParallelLayout
    f: EfficiencyFactors
    prefill: bool
    requests_total: int
    requests_rank: int  # requests of the busiest DP-attention group
    new_tokens: int  # per request: isl (prefill) or 1 (decode)
    context: int  # per request: tokens attended to at the last position
    tokens_rank: int  # new tokens of the busiest DP-attention group
    tokens_total: int  # new tokens of the instance (the MoE group sees all of them)
    balancedness: float
    slots: int
    precision: Precision
    modes: dict  # "attention" / "experts" / "base" -> GemmMode on this GPU

    @property
    def kv_bytes_per_element(self) -> float:
        return self.precision.kv_cache.bytes_per_element


def _value(x):
    """A float for a scalar result; an array as it is (a step priced on a grid of batches and lengths at once,
    :func:`step_time_grid`: the same operations element by element)."""
    return float(x) if np.ndim(x) == 0 else x


def _gemm(s: _Step, m, n, k, *, groups=1, weights: str = "attention") -> float:
    """GEMM time in the mode of the ``weights`` component (``attention``, ``experts`` or ``base``);
    the routed experts' GEMMs are grouped GEMMs."""
    mode: GemmMode = s.modes[weights]
    return _value(gemm_time_s(m, n, k, s.spec, factors=s.f, groups=groups, mode=mode, grouped=weights == "experts"))


def _mem(s: _Step, op: str, m, k, n=None) -> float:
    return _value(memory_op_time_s(op, m, k, s.spec, factors=s.f, n=n))


def _coll(s: _Step, op: str, size_bytes, n) -> float:
    return _value(collective_time_s(op, size_bytes, n, s.spec, factors=s.f))


def attention_core_time_s(kind: str, phase: str, heads, kv_heads, d_qk, d_v, requests, tokens, kv_bytes_per_token,
                          gpu: GpuSpec | str, *, window=None, factors=None):  # fmt: skip
    """Eq. (3) on one rank (vectorised): the FLOPs and HBM bytes of one attention kernel, priced by
    :func:`~planner.perf.op_times.attention_time_s` with the ``kind``/``phase`` factor group.

    ``requests`` sequences of ``heads`` query heads (``kv_heads`` key/value heads, or the heads MLA
    decompresses k/v for in prefill), head dims ``d_qk`` and ``d_v``; in prefill each brings
    ``tokens`` new tokens (causal), in decode one new token attending to ``tokens`` cached ones;
    ``kv_bytes_per_token`` is one token's KV on this rank in the cache format; ``window`` the
    sliding window (None or 0: full attention)::

        w = min(window, L),   pairs = sum_req sum_{i=1..L} min(i, w)   (prefill; decode: w per request)
        F = 2 heads (d_qk + d_v) pairs
        B = T heads (d_qk + d_v) b_a + T kv_bytes          q in, o out, the new tokens' KV written
            + prefill: T kv_heads (d_qk + d_v) b_a           the fresh k and v, read once per query
            + decode:  pairs kv_bytes                        the cache
    """
    L = np.asarray(tokens, dtype=np.float64)
    req = np.asarray(requests, dtype=np.float64)
    win = np.zeros_like(L) if window is None else np.asarray(window, dtype=np.float64)
    w = np.where(win > 0, np.minimum(win, L), L)
    width = np.asarray(d_qk, dtype=np.float64) + np.asarray(d_v, dtype=np.float64)
    heads, kv_heads = np.asarray(heads, dtype=np.float64), np.asarray(kv_heads, dtype=np.float64)
    kvb = np.asarray(kv_bytes_per_token, dtype=np.float64)
    if phase == "prefill":
        pairs = req * (w * (w + 1) / 2 + (L - w) * w)  # positions 1..w see every earlier token, later ones w
        new = req * L
        hbm = new * heads * width * ACTIVATION_BYTES + new * kvb + new * kv_heads * width * ACTIVATION_BYTES
    else:
        pairs = req * w
        new = req
        hbm = new * heads * width * ACTIVATION_BYTES + new * kvb + pairs * kvb
    flops = 2.0 * heads * width * pairs
    return attention_time_s(flops, hbm, gpu, factors=factors, kind=kind, phase=phase, tokens=w)


def _attention_block(s: _Step, window: int | None) -> dict[str, float]:
    att, H, tp, T = s.arch.attention, s.arch.hidden_size, s.lay.tp, s.tokens_rank
    heads = att.num_heads // tp
    out = dict.fromkeys(_COMPONENTS, 0.0)
    norm = 2 * _mem(s, "norm", T, H)  # input and post-attention RMSNorm
    if att.kind == "mla":
        nope, rope, v, lora = att.qk_nope_head_dim, att.qk_rope_head_dim, att.v_head_dim, att.kv_lora_rank
        proj = _gemm(s, T, lora + rope, H) + _gemm(s, T, heads * (nope + v), lora)  # kv_a, kv_b (or absorbed)
        norm += _mem(s, "norm", T, lora)
        if att.q_lora_rank:
            proj += _gemm(s, T, att.q_lora_rank, H) + _gemm(s, T, heads * (nope + rope), att.q_lora_rank)
            norm += _mem(s, "norm", T, att.q_lora_rank)
        else:
            proj += _gemm(s, T, heads * (nope + rope), H)
        proj += _gemm(s, T, H, heads * v)
        rotated = (heads + 1) * rope
        # prefill runs multi-head attention on decompressed k/v; decode attends over the latent (MQA)
        d_qk, d_v = (nope + rope, v) if s.prefill else (lora + rope, lora)
        kv_heads = heads
    else:
        d, kv_heads = att.head_dim, kv_heads_per_rank(att, tp)
        proj = _gemm(s, T, (heads + 2 * kv_heads) * d, H) + _gemm(s, T, H, heads * d)
        rotated = (heads + kv_heads) * d
        if att.qk_norm == "per_head":
            norm += _mem(s, "norm", T * (heads + kv_heads), d)
        elif att.qk_norm == "full":
            norm += _mem(s, "norm", T, rotated)
        d_qk = d_v = d
    kv_bytes = kv_elements_per_token_per_layer(att, tp) * s.kv_bytes_per_element  # per cached token on this rank
    out["attention_proj_s"] = proj
    out["attention_core_s"] = _value(attention_core_time_s(
        att.kind, "prefill" if s.prefill else "decode", heads, kv_heads, d_qk, d_v, s.requests_rank,
        s.new_tokens if s.prefill else s.context, kv_bytes, s.spec, window=window, factors=s.f))
    out["norm_s"] = norm
    out["elementwise_s"] = _mem(s, "rope", T, rotated) + 2 * _mem(s, "add", T, H)  # two residual adds
    out["tp_all_reduce_s"] = _coll(s, "all_reduce", T * H * ACTIVATION_BYTES, tp)
    return out


def _dense_ffn(s: _Step, width: int) -> tuple[float, float]:
    """(GEMMs, activation) of a gated FFN of ``width`` split over tp: a dense layer or shared experts."""
    T, H, inner = s.tokens_rank, s.arch.hidden_size, width // s.lay.tp
    return _gemm(s, T, 2 * inner, H) + _gemm(s, T, H, inner), _mem(s, "act", T, inner)


def _ffn_block(s: _Step, moe: bool) -> dict[str, float]:
    arch, lay, T, H = s.arch, s.lay, s.tokens_rank, s.arch.hidden_size
    out = dict.fromkeys(_COMPONENTS, 0.0)
    if not moe:
        out["dense_ffn_s"], out["elementwise_s"] = _dense_ffn(s, arch.dense_intermediate_size)
        out["tp_all_reduce_s"] = _coll(s, "all_reduce", T * H * ACTIVATION_BYTES, lay.tp)
        return out
    shared = arch.shared_expert_intermediate_size
    out["router_s"] = _gemm(s, T, arch.num_routed_experts, H, weights="base")  # routers are never quantised
    if shared:
        out["dense_ffn_s"], out["elementwise_s"] = _dense_ffn(s, shared)
    # (7): rows on the busiest GPU and the slots they touch (uniform routing within the GPU)
    rows = _moe_rows_busiest_gpu(s)
    inner = arch.moe_intermediate_size // lay.moe_tp
    out["moe_expert_s"] = _value(moe_experts_time_s(rows, H, inner, s.slots, s.spec, factors=s.f,
                                                   mode=s.modes["experts"]))  # fmt: skip
    if lay.ep > 1:
        out["moe_dispatch_s"] = _ep_a2a(s, _dispatch_element_bytes(s))
        out["moe_combine_s"] = _ep_a2a(s, ACTIVATION_BYTES)
        if shared:  # the shared expert's row-parallel output
            out["tp_all_reduce_s"] += _coll(s, "all_reduce", T * H * ACTIVATION_BYTES, lay.tp)
        # experts split over moe_tp ranks: sum the partial outputs (top-k summed locally first)
        out["tp_all_reduce_s"] += _coll(s, "all_reduce", rows / arch.top_k * H * ACTIVATION_BYTES, lay.moe_tp)
    else:  # every rank holds a 1/moe_tp slice of every expert: one reduction of routed + shared output
        out["tp_all_reduce_s"] += _coll(s, "all_reduce", s.tokens_total * H * ACTIVATION_BYTES, lay.moe_tp)
    return out


def _dispatch_element_bytes(s: _Step) -> float:
    """FP8 dispatch when the expert GEMMs read 8-bit or narrower activations, else BF16."""
    mode = s.modes["experts"].name
    return FP8_DISPATCH_BYTES if not mode.endswith("a16") else float(ACTIVATION_BYTES)


def _ep_a2a(s: _Step, element_bytes: float) -> float:
    """One dispatch or combine, eq. (9): T / ep tokens per EP group, ``ep`` groups of ``moe_tp`` ranks."""
    lay, arch = s.lay, s.arch
    b = s.balancedness
    per_node = max(1, min(lay.ep, s.spec.gpus_per_node // lay.moe_tp))
    return _value(ep_dispatch_time_s(s.tokens_total / lay.ep, arch.hidden_size, arch.top_k, arch.num_routed_experts,
                                    lay.ep, s.spec, element_bytes=element_bytes, factors=s.f, balancedness=b,
                                    devices_per_node=per_node, low_latency=not s.prefill))  # fmt: skip


def _moe_rows_busiest_gpu(s: _Step) -> float:
    """R of eq. (7); without EP every GPU sees every token, so balancedness does not apply."""
    b = s.balancedness if s.lay.ep > 1 else 1.0
    return s.tokens_total * s.arch.top_k / (s.lay.ep * b)


def _step_parts(s: _Step) -> tuple[dict, list[dict]]:
    """Eq. (8): the step's totals by component and each stage's components (floats, or arrays of a grid)."""
    arch, lay, H = s.arch, s.lay, s.arch.hidden_size
    moe_layers = set(arch.moe_layers)
    per_kind: dict[tuple, dict[str, float]] = {}  # (is MoE, window) -> one layer's components
    ranges = lay.stage_layer_ranges(arch.num_hidden_layers)
    stages = []
    for index, layers in enumerate(ranges):
        part = dict.fromkeys(_COMPONENTS, 0.0)
        for layer in layers:
            kind = (layer in moe_layers, arch.attention.window_tokens(layer))
            if kind not in per_kind:
                a, b = _attention_block(s, kind[1]), _ffn_block(s, kind[0])
                per_kind[kind] = {c: a[c] + b[c] for c in _COMPONENTS}
            for c, value in per_kind[kind].items():
                part[c] += value
        if index == 0:  # vocab-parallel embedding: a lookup, then an all-reduce over tp
            part["embedding_s"] += _mem(s, "embedding", s.tokens_rank, H)
            part["tp_all_reduce_s"] += _coll(s, "all_reduce", s.tokens_rank * H * ACTIVATION_BYTES, lay.tp)
        if index == len(ranges) - 1:  # final norm; logits of one position per request, lm_head in the base format
            part["norm_s"] += _mem(s, "norm", s.tokens_rank, H)
            vocab_rows = -(-arch.vocab_size // lay.tp)
            part["lm_head_s"] += _gemm(s, s.requests_rank, vocab_rows, H, weights="base")
        stages.append(part)
    # vLLM hands the next stage its hidden states and residual (IntermediateTensors)
    handoff_bytes = 2 * s.tokens_rank * H * ACTIVATION_BYTES
    per_node = 2 if lay.num_gpus <= s.spec.gpus_per_node else 1
    send = _value(collective_time_s("send_recv", handoff_bytes, 2, s.spec, factors=s.f, devices_per_node=per_node))
    totals = {c: sum(p[c] for p in stages) for c in _COMPONENTS}
    totals["pp_send_s"] = (lay.pp - 1) * send
    return totals, stages


def _step_time(s: _Step) -> StepTime:
    totals, stages = _step_parts(s)
    arch, lay = s.arch, s.lay
    moe_layers = set(arch.moe_layers)
    return StepTime(
        phase="prefill" if s.prefill else "decode",
        model_id=arch.id,
        gpu_id=s.spec.id,
        layout=lay.label,
        batch=s.requests_total,
        tokens_per_request=s.new_tokens,
        context_tokens=s.context,
        balancedness=s.balancedness,
        moe_rows_busiest_gpu=_moe_rows_busiest_gpu(s) if moe_layers else 0.0,
        **totals,
        stage_s=tuple(sum(p.values()) for p in stages),
        total_s=sum(totals.values()),
        factors_source=s.f.source,
        gemm_modes={name: mode.name for name, mode in s.modes.items()},
    )


def _prepare(model, gpu, layout, batch, new_tokens, context, prefill, *, balancedness, expert_slots_per_gpu,
             factors, precision) -> _Step:  # fmt: skip
    arch, spec, lay, slots = resolve_instance(model, gpu, layout, expert_slots_per_gpu=expert_slots_per_gpu)
    check_number("batch", batch, low=1, integer=True)
    check_number("isl" if prefill else "context_len", context, low=1, integer=True)
    check_number("balancedness", balancedness, low=POSITIVE, high=1.0)
    prec = resolve_precision(arch.precision, precision)
    f = resolve_factors(factors)
    requests_rank = -(-int(batch) // lay.dp)
    return _Step(
        arch=arch,
        spec=spec,
        lay=lay,
        f=f,
        prefill=prefill,
        requests_total=int(batch),
        requests_rank=requests_rank,
        new_tokens=int(new_tokens),
        context=int(context),
        tokens_rank=requests_rank * int(new_tokens),
        tokens_total=int(batch) * int(new_tokens),
        balancedness=float(balancedness),
        slots=slots,
        precision=prec,
        modes=prec.gemm_modes(spec),
    )


def prefill_time_s(
    model: ModelArch | str,
    gpu: GpuSpec | str,
    layout: ParallelLayout | str,
    batch: int,
    isl: int,
    *,
    balancedness: float = 1.0,
    expert_slots_per_gpu: int | None = None,
    factors: EfficiencyFactors | None = None,
    precision: Precision | Mapping[str, Any] | None = None,
) -> StepTime:
    """Time to prefill ``batch`` prompts of ``isl`` tokens on one instance (eqs. 1-8).

    Parameters
    ----------
    model, gpu : profiles or their names.
    layout : a :class:`ParallelLayout` or its label; requests are spread over the ``dp``
        DP-attention groups (the busiest holds ``ceil(batch / dp)``), the MoE sees all tokens.
    batch : requests in the batch.
    isl : prompt tokens per request (no prefix cache, no chunking).
    balancedness : b = mean / max GPU load of the MoE layers, from a replica plan (1 = perfect);
        the busiest GPU gets ``batch x isl x top_k / (ep x b)`` rows.
    expert_slots_per_gpu : routed-expert slots per GPU (a replica plan's); default ``ceil(E / ep)``.
    factors : efficiency factors; default :data:`DEFAULT_FACTORS` (uncalibrated). Pass
        ``planner.perf.calibration.calibrated_factors(gpu)`` for a GPU with measured tables.
    precision : number formats of weights, KV cache and activations (a
        :class:`~planner.profiles.precision.Precision`, or a mapping of overrides of the model's
        native precision such as ``{"kv_cache": "fp8"}``); default the model's native precision.
        Sets the bytes each GEMM reads, the peak it runs at and the KV bytes the prefill writes.

    Returns
    -------
    StepTime
        Breakdown by component; ``total_s`` is the time to first token without queueing.

    Raises
    ------
    InputError
        Bad layout for the model, or an out-of-range argument.

    Examples
    --------
    >>> t = prefill_time_s("deepseek-v3", "h200", "tp1pp1dp8ep8", 8, 4096, balancedness=0.8)
    >>> round(t.moe_rows_busiest_gpu), t.attention_core_s > 0
    (40960, True)
    """
    s = _prepare(model, gpu, layout, batch, isl, isl, True, balancedness=balancedness,
                 expert_slots_per_gpu=expert_slots_per_gpu, factors=factors, precision=precision)  # fmt: skip
    return _step_time(s)


def decode_step_time_s(
    model: ModelArch | str,
    gpu: GpuSpec | str,
    layout: ParallelLayout | str,
    batch: int,
    context_len: int,
    *,
    balancedness: float = 1.0,
    expert_slots_per_gpu: int | None = None,
    factors: EfficiencyFactors | None = None,
    precision: Precision | Mapping[str, Any] | None = None,
) -> StepTime:
    """Time of one decode step: ``batch`` sequences each add one token after ``context_len``.

    Parameters are those of :func:`prefill_time_s`; ``context_len`` is the KV-cache tokens every
    sequence attends to (prompt + generated so far), read in the ``precision``'s KV format; the
    weights are read in their formats. ``total_s`` is one token's latency through every stage (TPOT
    without queueing); a pipelined instance steps every ``max(stage_s)``.

    Examples
    --------
    >>> short = decode_step_time_s("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1", 32, 1024)
    >>> long = decode_step_time_s("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1", 32, 8192)
    >>> long.attention_core_s > short.attention_core_s, long.moe_expert_s == short.moe_expert_s
    (True, True)
    """
    s = _prepare(model, gpu, layout, batch, 1, context_len, False, balancedness=balancedness,
                 expert_slots_per_gpu=expert_slots_per_gpu, factors=factors, precision=precision)  # fmt: skip
    return _step_time(s)


def step_time_grid(model, gpu, layout, batches, tokens, *, prefill: bool, balancedness: float = 1.0,
                   expert_slots_per_gpu: int | None = None, factors: EfficiencyFactors | None = None,
                   precision: Precision | Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(total_s, attention_core_s)`` of :func:`prefill_time_s` (``prefill``: ``batches[i]`` prompts of
    ``tokens[j]`` tokens) or :func:`decode_step_time_s` (``batches[i]`` sequences attending to ``tokens[j]``)
    at every point of the grid, as ``len(batches) x len(tokens)`` arrays.

    The same operations as the per-point calls, element by element on numpy arrays (the op times are
    vectorised), so the same numbers bit for bit (``tests/test_latency_grid.py``) at a fraction of the
    cost: what :func:`planner.perf.latency_model_cost` tabulates.
    """
    for name, values in (("batch", batches), ("isl" if prefill else "context_len", tokens)):
        for v in values:
            check_number(name, v, low=1, integer=True)
    s = _prepare(model, gpu, layout, batches[0], tokens[0] if prefill else 1, tokens[0], prefill,
                 balancedness=balancedness, expert_slots_per_gpu=expert_slots_per_gpu, factors=factors,
                 precision=precision)  # fmt: skip
    batch, length = np.meshgrid(np.asarray(batches, dtype=np.int64), np.asarray(tokens, dtype=np.int64),
                                indexing="ij")
    requests_rank = -(-batch // s.lay.dp)
    new = length if prefill else 1
    s = replace(s, requests_total=batch, requests_rank=requests_rank, new_tokens=new, context=length,
                tokens_rank=requests_rank * new, tokens_total=batch * new)
    totals, _ = _step_parts(s)
    shape = batch.shape
    return (np.broadcast_to(sum(totals.values()), shape).astype(np.float64),
            np.broadcast_to(totals["attention_core_s"], shape).astype(np.float64))
