"""Efficiency factors of the latency model: one frozen group per op family, and the defaults.

Every loss of the roofline in :mod:`planner.perf.op_times` is a named factor here (equation
numbers are that module's): the share of peak FLOP/s or of HBM / link bandwidth an op reaches, and
its fixed time. :mod:`planner.perf.calibration` fits them to measured op times; sources and
measured errors are in ``docs/performance.md``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

from planner.common.numerics import round_float
from planner.errors import InputError
from planner.profiles import GemmMode

__all__ = [
    "GemmFactors",
    "GemmModeFactors",
    "DEFAULT_GEMM_MODE_FACTORS",
    "MemoryOpFactors",
    "AttentionFactors",
    "LinkFactors",
    "EfficiencyFactors",
    "DEFAULT_FACTORS",
    "FACTOR_GROUPS",
    "MODE_KEYS",
    "mode_key",
    "resolve_factors",
]


@dataclass(frozen=True)
class GemmFactors:
    """GEMMs, eq. (1): ``peak_fraction`` = e_max, ``half_tokens`` = x_half (rows per weight group at which
    utilisation is half of e_max), ``hbm_fraction`` = eta_gemm, ``overhead_s`` = tau_gemm;
    ``half_width`` = w_half, the width of the weight's smaller side at which a second ramp halves the
    utilisation (narrow expert slices of MoE tensor parallelism; 0 = no ramp)."""

    peak_fraction: float
    half_tokens: float
    hbm_fraction: float
    overhead_s: float
    half_width: float = 0.0


@dataclass(frozen=True)
class GemmModeFactors:
    """Large-GEMM efficiency of each quantised GEMM mode relative to the 16-bit fit, eq. (1):
    a ``mode`` GEMM reaches ``e_max x <mode>`` of its own peak (the FP8, INT8 or FP4 tensor cores'; the
    BF16 peak after a fallback to 16-bit activations). ``w16a16`` is the fit itself (1 by definition);
    the ramp ``x_half``, the weight streaming ``eta_gemm`` and ``tau_gemm`` are shared by every mode.
    ``w8a8_block`` is a ``w8a8`` GEMM on block-scaled weights (``fp8-block``: the kernels rescale per
    128 x 128 block), None to take ``w8a8``'s factor (:func:`mode_key`). ``extra_overhead_s`` adds
    a fixed time per GEMM for some modes (``(mode key, seconds)`` pairs): kernels whose quantised
    path launches more work than the 16-bit one (scales, dequantisation setup).
    ``quant_hbm_fraction`` = eta_q, the HBM share of the pass that quantises the BF16 input of a
    GEMM with 8- or 4-bit activations (shared by those modes; None = no such pass)."""

    w8a16: float
    w8a8: float
    w4a16: float
    w4a8: float
    w4a4: float
    w8a8_block: float | None = None
    extra_overhead_s: tuple = ()
    quant_hbm_fraction: float | None = None

    def __post_init__(self) -> None:
        keys = set(MODE_KEYS)
        for key, seconds in self.extra_overhead_s:
            ok = isinstance(seconds, numbers.Real) and math.isfinite(seconds) and seconds >= 0
            if key not in keys or not ok:
                raise InputError(f"GemmModeFactors.extra_overhead_s: bad entry ({key!r}, {seconds!r})")

    def overhead(self, mode: GemmMode | str) -> float:
        """The extra fixed time of a mode's GEMM (0 unless listed in ``extra_overhead_s``)."""
        key = mode_key(mode) if isinstance(mode, GemmMode) else mode
        extra = dict(self.extra_overhead_s)
        if key == "w8a8_block" and key not in extra:
            key = "w8a8"
        return float(extra.get(key, 0.0))

    def scale(self, mode: GemmMode | str) -> float:
        """The factor of a GEMM mode (1 for ``w16a16``): a :class:`~planner.profiles.GemmMode`, whose
        weights decide ``w8a8`` vs ``w8a8_block``, or a key of :func:`mode_key`."""
        key = mode_key(mode) if isinstance(mode, GemmMode) else mode
        if key == "w16a16":
            return 1.0
        if key == "w8a8_block" and self.w8a8_block is None:
            key = "w8a8"
        if key not in MODE_KEYS:
            raise InputError(f"unknown GEMM mode {key!r}; known: w16a16, {', '.join(MODE_KEYS)}")
        return getattr(self, key)


#: the mode keys of :class:`GemmModeFactors` (its per-mode scales)
MODE_KEYS = ("w8a16", "w8a8", "w4a16", "w4a8", "w4a4", "w8a8_block")


def mode_key(mode: GemmMode) -> str:
    """The factor a GEMM mode takes: its name, or ``w8a8_block`` for ``w8a8`` on block-scaled weights.

    >>> from planner.profiles import gemm_mode
    >>> mode_key(gemm_mode("fp8-block", "fp8")), mode_key(gemm_mode("fp8", "fp8"))
    ('w8a8_block', 'w8a8')
    """
    blocked = mode.weights.scale_group_elements is not None and mode.weights.element_bits == 8
    return "w8a8_block" if mode.name == "w8a8" and blocked else mode.name


#: Per-mode defaults (docs/performance.md, docs/precision.md). Weight-only modes (w8a16, w4a16) run on
#: the BF16 tensor cores with the weights dequantised in the kernel: 1, Marlin keeps the 16-bit
#: GEMM's throughput at large batch and streams the narrow weights at small batch (Frantar et al.
#: 2024, arXiv:2408.11743). w8a8: 0.82 from DeepGEMM's published FP8 grouped GEMMs (deepseek-ai/
#: DeepGEMM README, H800, contiguous layout): 1,093-1,297 TFLOP/s at 4,096-8,192 rows per expert,
#: 60.4 % of the 1,979 TFLOP/s dense FP8 peak on average, against 73.3 % the default 16-bit ramp
#: gives at those rows (0.604 / 0.733 = 0.82). AIConfigurator's measured database puts DeepSeek-V3's FP8
#: expert GEMMs at dp8 and 32k tokens near 18 % of peak (issue 11): kernels differ that much, so
#: calibrate. w4a8 and w4a4: no published measurement cited here; assumed like w8a8.
DEFAULT_GEMM_MODE_FACTORS = GemmModeFactors(w8a16=1.0, w8a8=0.82, w4a16=1.0, w4a8=0.82, w4a4=0.82)


@dataclass(frozen=True)
class MemoryOpFactors:
    """Memory-bound ops, eq. (2): share of HBM bandwidth reached, fixed time per kernel, and (RMSNorm only) the
    latency of one row per element ``row_s_per_elem`` = rho."""

    hbm_fraction: float
    overhead_s: float
    row_s_per_elem: float = 0.0


@dataclass(frozen=True)
class AttentionFactors:
    """Attention core, eq. (3): share of the BF16 peak reached at long sequences (``flops_fraction``,
    e_attn), of HBM bandwidth (``hbm_fraction``, eta_attn), fixed time per kernel (``overhead_s``,
    tau_attn), and ``half_tokens`` L_half: the compute share ramps with the tokens L each query
    attends to, ``e_attn L / (L + L_half)`` (0 = no ramp). ``bulk_hbm_fraction`` and
    ``bulk_overhead_s`` describe a second way the kernel can run, taken when it is faster: with
    enough work decode kernels split the cache over more blocks (a larger fixed cost, a higher
    share of HBM bandwidth); None = one way only."""

    flops_fraction: float
    hbm_fraction: float
    overhead_s: float
    half_tokens: float = 0.0
    bulk_hbm_fraction: float | None = None
    bulk_overhead_s: float = 0.0


@dataclass(frozen=True)
class LinkFactors:
    """Collectives, eqs. (4)-(6): share of the link bandwidth reached (lambda), the fixed latency
    (alpha) and the latency of each ring step (``hop_latency_s``: 2 (n - 1) steps in an all-reduce,
    n - 1 in an all-gather, reduce-scatter or all-to-all; 0 = none)."""

    bandwidth_fraction: float
    latency_s: float
    hop_latency_s: float = 0.0


#: the groups of :class:`EfficiencyFactors` and the group an unset (None) one falls back to
FACTOR_GROUPS = {
    "gemm": None, "gemm_modes": None, "moe": "gemm", "moe_modes": "gemm_modes",
    "norm": None, "add": None, "act": None, "rope": None, "embedding": None,
    "attention": None, "attention_decode": "attention", "mla_prefill": "attention", "mla_decode": "attention_decode",
    "all_reduce_intra": None, "all_reduce_inter": None, "p2p_intra": None, "p2p_inter": None,
    "ep_dispatch_intra": "p2p_intra", "ep_dispatch_inter": "p2p_inter", "ep_dispatch_low_latency": "ep_dispatch_intra",
}  # fmt: skip


@dataclass(frozen=True)
class EfficiencyFactors:
    """Every efficiency factor of the model, with where the numbers come from.

    ``gemm`` serves dense GEMMs (linear layers) and ``moe`` the grouped GEMMs of the routed experts,
    whose utilisation ramps with the rows per expert; ``gemm_modes`` / ``moe_modes`` scale their
    ``peak_fraction`` per GEMM mode (:class:`GemmModeFactors`). ``attention`` is the GQA prefill
    kernel, ``attention_decode`` the GQA decode kernel, ``mla_prefill`` / ``mla_decode`` DeepSeek's
    MLA kernels. ``p2p_*`` serve send/recv (pipeline hand-offs) and NCCL's all-to-all, all-gather and
    reduce-scatter; ``all_reduce_*`` the tensor-parallel reductions; ``ep_dispatch_*`` the
    expert-parallel dispatch and combine (DeepEP): ``ep_dispatch_intra`` its throughput mode inside a
    node (prefill), ``ep_dispatch_low_latency`` its low-latency mode (decode steps),
    ``ep_dispatch_inter`` the network share of either. ``*_intra`` inside one node, ``*_inter``
    across nodes. A group left None takes the group :data:`FACTOR_GROUPS` names (read groups through
    :meth:`group`), so factors built before a group existed keep their meaning.

    ``source`` says where the numbers come from; ``sources`` may name it per group (``(group,
    source)`` pairs, :meth:`source_of`).
    """

    gemm: GemmFactors
    norm: MemoryOpFactors
    add: MemoryOpFactors
    act: MemoryOpFactors
    rope: MemoryOpFactors
    embedding: MemoryOpFactors
    attention: AttentionFactors
    all_reduce_intra: LinkFactors
    all_reduce_inter: LinkFactors
    p2p_intra: LinkFactors
    p2p_inter: LinkFactors
    source: str
    gemm_modes: GemmModeFactors = DEFAULT_GEMM_MODE_FACTORS
    moe: GemmFactors | None = None
    moe_modes: GemmModeFactors | None = None
    attention_decode: AttentionFactors | None = None
    mla_prefill: AttentionFactors | None = None
    mla_decode: AttentionFactors | None = None
    ep_dispatch_intra: LinkFactors | None = None
    ep_dispatch_inter: LinkFactors | None = None
    ep_dispatch_low_latency: LinkFactors | None = None
    sources: tuple = ()

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise InputError("EfficiencyFactors.source must say where the numbers come from")
        for name, text in self.sources:
            if name not in FACTOR_GROUPS or not isinstance(text, str) or not text.strip():
                raise InputError(f"EfficiencyFactors.sources: bad entry {name!r}: {text!r}")
        for name in FACTOR_GROUPS:
            value = getattr(self, name)
            if value is None and FACTOR_GROUPS[name] is not None:
                continue
            peak = self.group("moe" if name == "moe_modes" else "gemm").peak_fraction
            for f in fields(value):
                x = getattr(value, f.name)
                if (x is None and f.default is None) or f.name == "extra_overhead_s":  # optional, or checked above
                    continue
                ok = isinstance(x, numbers.Real) and math.isfinite(x) and x >= 0
                if f.name.endswith("fraction"):
                    ok = ok and 0 < x <= 1
                elif name in ("gemm_modes", "moe_modes"):  # a share of the mode's peak: e_max x factor in (0, 1]
                    ok = ok and 0 < x * peak <= 1
                if not ok:
                    raise InputError(f"EfficiencyFactors.{name}.{f.name} out of range: {x!r}")

    def group(self, name: str):
        """The factors of group ``name``, following :data:`FACTOR_GROUPS` where it is None."""
        if name not in FACTOR_GROUPS:
            raise InputError(f"unknown factor group {name!r}; known: {', '.join(FACTOR_GROUPS)}")
        value = getattr(self, name)
        return value if value is not None else self.group(FACTOR_GROUPS[name])

    def source_of(self, name: str) -> str:
        """Where the factors of group ``name`` come from (:attr:`source` when not named per group)."""
        self.group(name)  # checks the name
        named = dict(self.sources)
        while name is not None:
            if name in named:
                return named[name]
            if getattr(self, name) is not None:
                break
            name = FACTOR_GROUPS[name]
        return self.source

    def to_dict(self) -> dict:
        """Nested plain dict, floats rounded to 12 significant digits; every group resolved
        (:meth:`group`), and ``sources`` per group."""
        out = {}
        for name in FACTOR_GROUPS:
            group = asdict(self.group(name))
            out[name] = {k: (round_float(v) if isinstance(v, float) else v) for k, v in group.items()}
            if "extra_overhead_s" in out[name]:
                out[name]["extra_overhead_s"] = {k: round_float(v) for k, v in out[name]["extra_overhead_s"]}
        out["source"] = self.source
        out["sources"] = {name: self.source_of(name) for name in FACTOR_GROUPS}
        return out


#: Uncalibrated defaults, for GPUs without measured tables. GEMM, memory-op and link factors: the
#: mean of the H100 and A100 fits to Vidur's tables, rounded (planner.perf.calibration,
#: docs/performance.md; all_reduce_inter from A100 only, a poor fit). Attention has no table here,
#: so its factors are assumptions: 0.6 of BF16 peak for prefill -- FlashAttention-2 reaches 50-73 %
#: of A100 peak in the forward pass (Dao 2023, arXiv:2307.08691, s4.1), FlashAttention-3 75 % of
#: H100 BF16 peak (Shah et al. 2024, arXiv:2407.08608), less for the short causal sequences of
#: serving -- and 0.8 of HBM bandwidth for decode, like the GEMMs' weight streaming fitted here.
DEFAULT_FACTORS = EfficiencyFactors(
    gemm=GemmFactors(peak_fraction=0.75, half_tokens=130.0, hbm_fraction=0.88, overhead_s=6.4e-6),
    norm=MemoryOpFactors(hbm_fraction=0.37, overhead_s=0.9e-6, row_s_per_elem=0.75e-9),
    add=MemoryOpFactors(hbm_fraction=1.0, overhead_s=1.2e-6),  # both fits at the bound 1
    act=MemoryOpFactors(hbm_fraction=0.55, overhead_s=2.7e-6),
    rope=MemoryOpFactors(hbm_fraction=0.50, overhead_s=2.4e-6),
    embedding=MemoryOpFactors(hbm_fraction=0.175, overhead_s=3.3e-6),
    attention=AttentionFactors(flops_fraction=0.6, hbm_fraction=0.8, overhead_s=5e-6),  # assumed
    all_reduce_intra=LinkFactors(bandwidth_fraction=0.66, latency_s=35e-6),
    all_reduce_inter=LinkFactors(bandwidth_fraction=0.41, latency_s=140e-6),
    p2p_intra=LinkFactors(bandwidth_fraction=0.86, latency_s=10.5e-6),
    p2p_inter=LinkFactors(bandwidth_fraction=0.51, latency_s=25e-6),
    source="defaults: mean of moeplan's H100 and A100 fits to Vidur tables (2026-11-22); attention assumed",
)


def resolve_factors(factors: EfficiencyFactors | None) -> EfficiencyFactors:
    """``factors``, or :data:`DEFAULT_FACTORS` for None; anything else is an :class:`InputError`."""
    if factors is None:
        return DEFAULT_FACTORS
    if not isinstance(factors, EfficiencyFactors):
        raise InputError(f"factors must be EfficiencyFactors, got {type(factors).__name__}")
    return factors

