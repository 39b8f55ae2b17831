r"""Time of one operator on one GPU: GEMM, memory-bound op, attention core, collectives.

The primitives of the latency model: :mod:`planner.perf.latency` sums them into a step,
:mod:`planner.perf.calibration` fits their factors to measured op times. For one GPU (``P`` dense
tensor peak of the GEMM mode's tensor cores -- BF16, FP8, INT8 or FP4, see
:mod:`planner.profiles.precision`; ``W`` HBM bytes/s; ``b_a = 2`` activation bytes, ``b_w`` bytes
per weight element of the mode's weight format, scales included; every Greek letter is a field of
:class:`~planner.perf.factors.EfficiencyFactors`)::

    (1) GEMM (m x k) @ (k x n) over g weight groups (g experts of a grouped GEMM, else 1):
            F = 2 m n k,   B = g k n b_w + m (k + n) b_a
            t = max(F / (P e(m / g)),  B / (W eta_gemm)) + tau_gemm
            e(x) = e_max s_mode x / (x + x_half')     utilisation ramps with the rows per group;
                                                      s_mode = gemm_modes.<mode>, 1 for w16a16
            x_half' = x_half (P / P_bf16) (b_w / 2)   the ramp's half point moves with the ridge
                                                      point P b_w / W (1 for BF16 weights)
    (2) memory-bound op moving B bytes (norm, residual add, activation, rope, embedding):
            t = B / (W eta_op) + tau_op
        RMSNorm runs one thread block per row, so a few rows still wait for one row's reduction:
            t = max(B / (W eta_norm), k rho_norm) + tau_norm
    (3) attention core (FlashAttention-style, BF16) of F_a FLOPs moving B_a HBM bytes:
            t = max(F_a / (P_bf16 e_attn), B_a / (W eta_attn)) + tau_attn
    (4) ring all-reduce of S bytes over n GPUs:   t = alpha + 2 (n - 1) / n * S / (beta lambda)
    (5) all-to-all, S bytes into the busiest GPU:  t = alpha + (n - 1) / n * S / (beta lambda)
        (spanning nodes: the larger of the NVLink share and the NIC share)
    (6) send/recv of S bytes:                      t = alpha + S / (beta lambda)
        beta = intra_node_bytes_per_s / 2 inside a node (the profile holds both directions),
               inter_node_bytes_per_s across nodes (one direction per GPU)

Every function is vectorised over numpy arrays and returns seconds (a float for scalar inputs).
Nothing overlaps and CPU launch overheads are not included: the calibration tables are kernel times.

>>> float(gemm_time_s(0, 4096, 4096, "h100")), float(collective_time_s("all_reduce", 2**20, 1, "h100"))
(0.0, 0.0)
"""

from __future__ import annotations

import numpy as np

from planner.errors import InputError
from planner.perf.factors import resolve_factors
from planner.profiles import GemmMode, GpuSpec, gemm_mode, get_gpu

__all__ = [
    "ACTIVATION_BYTES",
    "BF16_GEMM",
    "MEMORY_OPS",
    "gemm_time_s",
    "memory_op_time_s",
    "attention_time_s",
    "collective_time_s",
]

#: bytes of one activation element: BF16, also with FP8 weights
ACTIVATION_BYTES = 2
#: a 16-bit GEMM on BF16 weights: what the calibration tables measure, and gemm_time_s's default
BF16_GEMM = gemm_mode("bf16", "bf16")
#: memory-bound ops of eq. (2)
MEMORY_OPS = ("norm", "add", "act", "rope", "embedding")


def _gpu(gpu: GpuSpec | str) -> GpuSpec:
    return gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)


def gemm_time_s(m, n, k, gpu: GpuSpec | str, *, factors=None, groups=1, mode: GemmMode = BF16_GEMM):
    """Eq. (1): time of ``(m x k) @ (k x n)`` summed over ``groups`` weight matrices (vectorised).

    ``m`` rows in total (split evenly over the groups). ``mode`` (a
    :class:`~planner.profiles.precision.GemmMode`, from :func:`~planner.profiles.precision.gemm_mode`
    with this GPU) gives the bytes per weight element read, the tensor cores whose peak the GEMM
    runs at and its efficiency factor; default a 16-bit GEMM on BF16 weights. Returns seconds
    (float or array).
    """
    factors, gpu = resolve_factors(factors), _gpu(gpu)
    f = factors.gemm
    peak = gpu.tensor_peak_per_s(mode.tensor_type)
    if peak is None:
        raise InputError(f"{gpu.id} has no {mode.tensor_type} tensor cores for a {mode.name} GEMM; take the mode "
                         "from gemm_mode(weights, activations, gpu), which falls back", param="mode")
    m, n, k, groups = (np.asarray(x, dtype=np.float64) for x in (m, n, k, groups))
    rows = m / np.maximum(groups, 1.0)
    # the fitted x_half is a 16-bit GEMM's on BF16 weights; the ridge point scales with P and b_w
    half = f.half_tokens * (peak / gpu.bf16_flops_per_s) * (mode.weights.bytes_per_element / 2)
    utilisation = f.peak_fraction * factors.gemm_modes.scale(mode.name) * rows / (rows + half)
    flops = 2.0 * m * n * k
    hbm = groups * k * n * mode.weights.bytes_per_element + m * (k + n) * ACTIVATION_BYTES
    with np.errstate(divide="ignore", invalid="ignore"):
        compute = np.where(m > 0, flops / (peak * utilisation), 0.0)
    t = np.maximum(compute, hbm / (gpu.hbm_bytes_per_s * f.hbm_fraction)) + f.overhead_s
    return np.where(m > 0, t, 0.0)[()]


def memory_op_time_s(op: str, m, k, gpu: GpuSpec | str, *, factors=None, n=None):
    """Eq. (2): time of a memory-bound op on ``m`` rows of ``k`` elements (vectorised).

    ``op`` is ``norm``, ``add``, ``act``, ``rope`` or ``embedding``; for ``act`` ``n`` is the input
    width (default ``2k``, SiLU-and-mul) and ``k`` the output width.
    """
    if op not in MEMORY_OPS:
        raise InputError(f"unknown memory op {op!r}; known: {', '.join(MEMORY_OPS)}")
    f, gpu = getattr(resolve_factors(factors), op), _gpu(gpu)
    m, k = np.asarray(m, dtype=np.float64), np.asarray(k, dtype=np.float64)
    n = 2.0 * k if n is None else np.asarray(n, dtype=np.float64)
    # elements read + written per row: rope rotates q and k in place, add reads two inputs
    moved = {"norm": 2 * k, "rope": 2 * k, "embedding": 2 * k, "add": 3 * k, "act": n + k}[op]
    t = m * moved * ACTIVATION_BYTES / (gpu.hbm_bytes_per_s * f.hbm_fraction)
    if f.row_s_per_elem:
        t = np.maximum(t, k * f.row_s_per_elem)
    return np.where(m > 0, t + f.overhead_s, 0.0)[()]


def attention_time_s(flops, hbm_bytes, gpu: GpuSpec | str, *, factors=None):
    """Eq. (3): attention-core time from its FLOPs and HBM bytes (vectorised)."""
    f, gpu = resolve_factors(factors).attention, _gpu(gpu)
    flops, hbm_bytes = np.asarray(flops, dtype=np.float64), np.asarray(hbm_bytes, dtype=np.float64)
    compute = flops / (gpu.bf16_flops_per_s * f.flops_fraction)
    t = np.maximum(compute, hbm_bytes / (gpu.hbm_bytes_per_s * f.hbm_fraction))
    return np.where(flops + hbm_bytes > 0, t + f.overhead_s, 0.0)[()]


def collective_time_s(op: str, size_bytes, num_workers, gpu: GpuSpec | str, *, factors=None,
                      devices_per_node=None):  # fmt: skip
    """Eqs. (4)-(6): time of ``all_reduce``, ``all_to_all`` or ``send_recv`` (vectorised).

    ``size_bytes``: the buffer per GPU (all-reduce), the bytes the busiest GPU receives
    (all-to-all) or the message (send/recv). ``devices_per_node``: GPUs of the group on each node,
    default ``min(num_workers, gpu.gpus_per_node)``; fewer than ``num_workers`` spans nodes.
    Groups of one GPU take no time.
    """
    if op not in ("all_reduce", "all_to_all", "send_recv"):
        raise InputError(f"unknown collective {op!r}; known: all_reduce, all_to_all, send_recv")
    f, gpu = resolve_factors(factors), _gpu(gpu)
    size, n = np.asarray(size_bytes, dtype=np.float64), np.asarray(num_workers, dtype=np.float64)
    g = np.minimum(n, gpu.gpus_per_node) if devices_per_node is None else np.asarray(devices_per_node, np.float64)
    near, far = (f.all_reduce_intra, f.all_reduce_inter) if op == "all_reduce" else (f.p2p_intra, f.p2p_inter)
    near_bps = gpu.intra_node_bytes_per_s / 2 * near.bandwidth_fraction
    far_bps = gpu.inter_node_bytes_per_s * far.bandwidth_fraction
    with np.errstate(divide="ignore", invalid="ignore"):
        if op == "all_reduce":  # ring: the slowest link carries 2 (n - 1) / n of the buffer
            volume = 2.0 * (n - 1) / n * size
            t = np.where(g < n, far.latency_s + volume / far_bps, near.latency_s + volume / near_bps)
        elif op == "send_recv":
            t = np.where(g < n, far.latency_s + size / far_bps, near.latency_s + size / near_bps)
        else:  # all-to-all: (g - 1) / n of the bytes come over NVLink, (n - g) / n over the NIC
            t_near, t_far = (g - 1) / n * size / near_bps, (n - g) / n * size / far_bps
            t = np.where(g < n, far.latency_s + np.maximum(t_near, t_far), near.latency_s + t_near)
    return np.where((n > 1) & (size > 0), t, 0.0)[()]
