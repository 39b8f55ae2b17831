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

__all__ = [
    "GemmFactors",
    "GemmModeFactors",
    "DEFAULT_GEMM_MODE_FACTORS",
    "MemoryOpFactors",
    "AttentionFactors",
    "LinkFactors",
    "EfficiencyFactors",
    "DEFAULT_FACTORS",
    "resolve_factors",
]


@dataclass(frozen=True)
class GemmFactors:
    """GEMMs, eq. (1): ``peak_fraction`` = e_max, ``half_tokens`` = x_half (rows per weight group at which
    utilisation is half of e_max), ``hbm_fraction`` = eta_gemm, ``overhead_s`` = tau_gemm."""

    peak_fraction: float
    half_tokens: float
    hbm_fraction: float
    overhead_s: float


@dataclass(frozen=True)
class GemmModeFactors:
    """Large-GEMM efficiency of each quantised GEMM mode relative to the 16-bit fit, eq. (1):
    a ``mode`` GEMM reaches ``e_max x <mode>`` of its own peak (the FP8, INT8 or FP4 tensor cores'; the
    BF16 peak after a fallback to 16-bit activations). ``w16a16`` is the fit itself (1 by definition);
    the ramp ``x_half``, the weight streaming ``eta_gemm`` and ``tau_gemm`` are shared by every mode."""

    w8a16: float
    w8a8: float
    w4a16: float
    w4a8: float
    w4a4: float

    def scale(self, mode: str) -> float:
        """The factor of GEMM mode ``mode`` (1 for ``w16a16``)."""
        if mode == "w16a16":
            return 1.0
        if mode not in {f.name for f in fields(self)}:
            raise InputError(f"unknown GEMM mode {mode!r}; known: w16a16, {', '.join(f.name for f in fields(self))}")
        return getattr(self, mode)


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
    """Attention core, eq. (3): share of BF16 peak (prefill) and of HBM bandwidth (decode), fixed time per kernel."""

    flops_fraction: float
    hbm_fraction: float
    overhead_s: float


@dataclass(frozen=True)
class LinkFactors:
    """Collectives, eqs. (4)-(6): share of the link bandwidth reached (lambda) and the fixed latency (alpha)."""

    bandwidth_fraction: float
    latency_s: float


@dataclass(frozen=True)
class EfficiencyFactors:
    """Every efficiency factor of the model, with where the numbers come from.

    ``p2p_*`` serve send/recv (pipeline hand-offs) and all-to-all (NCCL builds it from grouped
    send/recv); ``all_reduce_*`` serve the tensor-parallel reductions. ``*_intra`` inside one node,
    ``*_inter`` for groups that span nodes. ``gemm_modes`` scales ``gemm.peak_fraction`` per GEMM mode
    (:class:`GemmModeFactors`); fits to 16-bit tables leave it at its defaults.
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

    def __post_init__(self) -> None:
        for group in fields(self):
            value = getattr(self, group.name)
            if group.name == "source":
                if not isinstance(value, str) or not value.strip():
                    raise InputError("EfficiencyFactors.source must say where the numbers come from")
                continue
            for f in fields(value):
                x = getattr(value, f.name)
                ok = isinstance(x, numbers.Real) and math.isfinite(x) and x >= 0
                if f.name.endswith("fraction"):
                    ok = ok and 0 < x <= 1
                if group.name == "gemm_modes":  # a share of the mode's peak: e_max x factor in (0, 1]
                    ok = ok and 0 < x * self.gemm.peak_fraction <= 1
                if not ok:
                    raise InputError(f"EfficiencyFactors.{group.name}.{f.name} out of range: {x!r}")

    def to_dict(self) -> dict:
        """Nested plain dict, floats rounded to 12 significant digits."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, dict):
                out[key] = {k: round_float(v) for k, v in value.items()}
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

