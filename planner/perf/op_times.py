r"""Time of one operator on one GPU: GEMM, memory-bound op, attention core, collectives.

The primitives of the latency model: :mod:`planner.perf.latency` sums them into a step,
:mod:`planner.perf.calibration` fits their factors to measured op times. For one GPU (``P`` dense
tensor peak of the GEMM mode's tensor cores -- BF16, FP8, INT8 or FP4, see
:mod:`planner.profiles.precision`; ``W`` HBM bytes/s; ``b_a = 2`` activation bytes, ``b_w`` bytes
per weight element of the mode's weight format, scales included; every Greek letter is a field of
:class:`~planner.perf.factors.EfficiencyFactors`)::

    (1) GEMM (m x k) @ (k x n) over g weight groups (g experts of a grouped GEMM, else 1):
            F = 2 m n k,   B = g k n b_w + m (k + n) b_a
            t = max(F / (P e(m / g, w)),  B / (W eta_gemm)) + tau_gemm + tau_mode + t_q
            e(x, w) = e_max s_mode x / (x + x_half') w / (w + w_half)
                                                      utilisation ramps with the rows per group and
                                                      with w = min(n, k); s_mode = gemm_modes.<mode>,
                                                      1 for w16a16; w_half = 0: no width ramp;
                                                      tau_mode: the mode's extra fixed time (0)
            x_half' = x_half (P / P_bf16) (b_w / 2)   the ramp's half point moves with the ridge
                                                      point P b_w / W (1 for BF16 weights)
            t_q = m k (b_a + b_q) / (W eta_q)         8- or 4-bit activations (b_q bytes each):
                                                      the pass quantising the BF16 input (none
                                                      when eta_q is unset)
    (2) memory-bound op moving B bytes (norm, residual add, activation, rope, embedding):
            t = B / (W eta_op) + tau_op
        RMSNorm runs one thread block per row, so a few rows still wait for one row's reduction:
            t = max(B / (W eta_norm), k rho_norm) + tau_norm
        A grouped GEMM (the routed experts: g > 1 weight groups, or one expert's rows) takes the
        factors ``moe`` / ``moe_modes`` instead of ``gemm`` / ``gemm_modes``: its ramp is in rows
        per expert.
    (3) attention core (FlashAttention-style, BF16) of F_a FLOPs moving B_a HBM bytes, L the tokens
        each query attends to; one factor group per kernel (GQA or MLA, prefill or decode):
            t = max(F_a / (P_bf16 e_attn(L)), B_a / (W eta_attn)) + tau_attn,
            e_attn(L) = e_attn L / (L + L_half)
        and, where the group has a bulk mode (decode kernels splitting the cache over more blocks),
        the smaller of that and max(F_a / (P_bf16 e_attn(L)), B_a / (W eta_bulk)) + tau_bulk
    (4) ring all-reduce of S bytes over n GPUs:   t = alpha + 2 (n - 1) (h + S / (n beta lambda))
    (5) all-to-all, S bytes into the busiest GPU:  t = alpha + (n - 1) (h + S / (n beta lambda))
        (spanning nodes: the larger of the NVLink share and the NIC share); all-gather (S the
        gathered output) and reduce-scatter (S the input) move the same (n - 1) / n * S
    (6) send/recv of S bytes:                      t = alpha + S / (beta lambda)
        beta = intra_node_bytes_per_s / 2 inside a node (the profile holds both directions),
               inter_node_bytes_per_s across nodes (one direction per GPU); h the latency of one
               ring step (0 unless fitted)
    (9) expert-parallel dispatch / combine (DeepEP), t tokens on each of ep ranks, g ranks per node,
        nodes = ep / g, each token routed to k of E experts (E / ep per rank), b_e bytes per element:
            p_gpu  = 1 - C(E - E/ep, k) / C(E, k)     a token reaches a given rank (uniform routing)
            p_node = 1 - C(E - E g/ep, k) / C(E, k)   a token reaches a given node
            NVLink bytes into the busiest rank  = t p_gpu (g - 1) (1 + (ep - g) / g) H b_e / b
            NIC bytes into it (nodes > 1)       = t (nodes - 1) p_node H b_e / b
            t_a2a = alpha + max(NVLink / (beta_nvl lambda_nvl), NIC / (beta_nic lambda_nic))
        A token goes once to each rank it reaches (not once per expert: DeepEP de-duplicates) and
        crosses the network once per node it reaches, then NVLink forwards it; b is the
        balancedness (busiest rank over the mean).

Every function is vectorised over numpy arrays and returns seconds (a float for scalar inputs).
Nothing overlaps and CPU launch overheads are not included: the calibration tables are kernel times.

>>> float(gemm_time_s(0, 4096, 4096, "h100")), float(collective_time_s("all_reduce", 2**20, 1, "h100"))
(0.0, 0.0)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from planner.errors import InputError
from planner.perf.factors import resolve_factors
from planner.profiles import GemmMode, GpuSpec, gemm_mode, get_gpu

__all__ = [
    "ACTIVATION_BYTES",
    "FP8_DISPATCH_BYTES",
    "BF16_GEMM",
    "MEMORY_OPS",
    "COLLECTIVES",
    "ATTENTION_KERNELS",
    "gemm_time_s",
    "memory_op_time_s",
    "attention_time_s",
    "collective_time_s",
    "moe_experts_time_s",
    "token_reach",
    "ep_dispatch_time_s",
]

#: bytes of one activation element: BF16, also with FP8 weights
ACTIVATION_BYTES = 2
#: bytes per element of an FP8 expert-parallel dispatch: E4M3 values and one fp32 scale per 128 elements
#: (DeepSeek-V3 technical report, arXiv:2412.19437, s3.3.2: activations are quantised to FP8 before the
#: MoE up-projection and dispatched in FP8; the combine stays BF16)
FP8_DISPATCH_BYTES = 1.0 + 4.0 / 128
#: a 16-bit GEMM on BF16 weights: what the calibration tables measure, and gemm_time_s's default
BF16_GEMM = gemm_mode("bf16", "bf16")
#: memory-bound ops of eq. (2)
MEMORY_OPS = ("norm", "add", "act", "rope", "embedding")
#: collectives of eqs. (4)-(6)
COLLECTIVES = ("all_reduce", "all_to_all", "send_recv", "all_gather", "reduce_scatter")
#: (kind, phase) of an attention kernel -> its factor group
ATTENTION_KERNELS = {
    ("gqa", "prefill"): "attention",
    ("gqa", "decode"): "attention_decode",
    ("mla", "prefill"): "mla_prefill",
    ("mla", "decode"): "mla_decode",
}


def _gpu(gpu: GpuSpec | str) -> GpuSpec:
    return gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)


def gemm_time_s(m, n, k, gpu: GpuSpec | str, *, factors=None, groups=1, mode: GemmMode = BF16_GEMM,
                grouped: bool = False):  # fmt: skip
    """Eq. (1): time of ``(m x k) @ (k x n)`` summed over ``groups`` weight matrices (vectorised).

    ``m`` rows in total (split evenly over the groups). ``mode`` (a
    :class:`~planner.profiles.precision.GemmMode`, from :func:`~planner.profiles.precision.gemm_mode`
    with this GPU) gives the bytes per weight element read, the tensor cores whose peak the GEMM
    runs at and its efficiency factor; default a 16-bit GEMM on BF16 weights. ``grouped`` prices
    a grouped (MoE expert) GEMM with the ``moe`` and ``moe_modes`` factors. Returns seconds
    (float or array).
    """
    factors, gpu = resolve_factors(factors), _gpu(gpu)
    f = factors.group("moe" if grouped else "gemm")
    modes = factors.group("moe_modes" if grouped else "gemm_modes")
    peak = gpu.tensor_peak_per_s(mode.tensor_type)
    if peak is None:
        raise InputError(f"{gpu.id} has no {mode.tensor_type} tensor cores for a {mode.name} GEMM; take the mode "
                         "from gemm_mode(weights, activations, gpu), which falls back", param="mode")
    m, n, k, groups = (np.asarray(x, dtype=np.float64) for x in (m, n, k, groups))
    rows = m / np.maximum(groups, 1.0)
    # the fitted x_half is a 16-bit GEMM's on BF16 weights; the ridge point scales with P and b_w
    half = f.half_tokens * (peak / gpu.bf16_flops_per_s) * (mode.weights.bytes_per_element / 2)
    utilisation = f.peak_fraction * modes.scale(mode) * rows / (rows + half)
    if f.half_width > 0:
        width = np.minimum(n, k)
        utilisation = utilisation * width / (width + f.half_width)
    flops = 2.0 * m * n * k
    hbm = groups * k * n * mode.weights.bytes_per_element + m * (k + n) * ACTIVATION_BYTES
    with np.errstate(divide="ignore", invalid="ignore"):
        compute = np.where(m > 0, flops / (peak * utilisation), 0.0)
    t = np.maximum(compute, hbm / (gpu.hbm_bytes_per_s * f.hbm_fraction)) + f.overhead_s + modes.overhead(mode)
    act_bits = int(mode.name.split("a")[-1])
    if modes.quant_hbm_fraction is not None and act_bits < 16:
        t = t + m * k * (ACTIVATION_BYTES + act_bits / 8) / (gpu.hbm_bytes_per_s * modes.quant_hbm_fraction)
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


def attention_time_s(flops, hbm_bytes, gpu: GpuSpec | str, *, factors=None, kind: str = "gqa",
                     phase: str = "prefill", tokens=None):  # fmt: skip
    """Eq. (3): attention-core time from its FLOPs and HBM bytes (vectorised).

    ``kind`` (``gqa``, ``mla``) and ``phase`` (``prefill``, ``decode``) pick the factor group
    (:data:`ATTENTION_KERNELS`); ``tokens`` is L, the tokens a query attends to (the prompt in
    prefill, the context in decode), for the group's ramp (none when omitted).
    """
    if (kind, phase) not in ATTENTION_KERNELS:
        raise InputError(f"unknown attention kernel {kind!r}/{phase!r}; known: "
                         f"{', '.join('/'.join(k) for k in ATTENTION_KERNELS)}", param="kind")  # fmt: skip
    f, gpu = resolve_factors(factors).group(ATTENTION_KERNELS[kind, phase]), _gpu(gpu)
    flops, hbm_bytes = np.asarray(flops, dtype=np.float64), np.asarray(hbm_bytes, dtype=np.float64)
    share = f.flops_fraction
    if tokens is not None and f.half_tokens > 0:
        L = np.maximum(np.asarray(tokens, dtype=np.float64), 1.0)
        share = f.flops_fraction * L / (L + f.half_tokens)
    compute = flops / (gpu.bf16_flops_per_s * share)
    t = np.maximum(compute, hbm_bytes / (gpu.hbm_bytes_per_s * f.hbm_fraction))
    if f.bulk_hbm_fraction is not None:  # the kernel's other way, when it is faster (split over more blocks)
        bulk = np.maximum(compute, hbm_bytes / (gpu.hbm_bytes_per_s * f.bulk_hbm_fraction)) + f.bulk_overhead_s
        t = np.minimum(t + f.overhead_s, bulk) - f.overhead_s
    return np.where(flops + hbm_bytes > 0, t + f.overhead_s, 0.0)[()]


def collective_time_s(op: str, size_bytes, num_workers, gpu: GpuSpec | str, *, factors=None,
                      devices_per_node=None):  # fmt: skip
    """Eqs. (4)-(6): time of ``all_reduce``, ``all_to_all``, ``send_recv``, ``all_gather`` or
    ``reduce_scatter`` (vectorised).

    ``size_bytes``: the buffer per GPU (all-reduce), the bytes the busiest GPU receives
    (all-to-all), the message (send/recv), the gathered output (all-gather) or the input
    (reduce-scatter). ``devices_per_node``: GPUs of the group on each node, default
    ``min(num_workers, gpu.gpus_per_node)``; fewer than ``num_workers`` spans nodes. Groups of one
    GPU take no time.
    """
    if op not in COLLECTIVES:
        raise InputError(f"unknown collective {op!r}; known: {', '.join(COLLECTIVES)}")
    f, gpu = resolve_factors(factors), _gpu(gpu)
    size, n = np.asarray(size_bytes, dtype=np.float64), np.asarray(num_workers, dtype=np.float64)
    g = np.minimum(n, gpu.gpus_per_node) if devices_per_node is None else np.asarray(devices_per_node, np.float64)
    near, far = (f.all_reduce_intra, f.all_reduce_inter) if op == "all_reduce" else (f.p2p_intra, f.p2p_inter)
    near_bps = gpu.intra_node_bytes_per_s / 2 * near.bandwidth_fraction
    far_bps = gpu.inter_node_bytes_per_s * far.bandwidth_fraction
    with np.errstate(divide="ignore", invalid="ignore"):
        if op == "all_reduce":  # ring: the slowest link carries 2 (n - 1) / n of the buffer in 2 (n - 1) steps
            volume, steps = 2.0 * (n - 1) / n * size, 2.0 * (n - 1)
            t = np.where(g < n, far.latency_s + steps * far.hop_latency_s + volume / far_bps,
                         near.latency_s + steps * near.hop_latency_s + volume / near_bps)  # fmt: skip
        elif op == "send_recv":
            t = np.where(g < n, far.latency_s + size / far_bps, near.latency_s + size / near_bps)
        else:  # all-to-all, all-gather, reduce-scatter: (g - 1) / n of the bytes over NVLink, (n - g) / n over the NIC
            t_near, t_far = (g - 1) / n * size / near_bps, (n - g) / n * size / far_bps
            t = np.where(g < n, far.latency_s + (n - 1) * far.hop_latency_s + np.maximum(t_near, t_far),
                         near.latency_s + (n - 1) * near.hop_latency_s + t_near)  # fmt: skip
    return np.where((n > 1) & (size > 0), t, 0.0)[()]


def moe_experts_time_s(rows, hidden, inter, slots, gpu: GpuSpec | str, *, factors=None, mode: GemmMode = BF16_GEMM):
    """Eq. (7)'s expert block on one GPU (vectorised): ``rows`` token-expert rows over ``slots``
    expert slots, each expert a gated FFN of width ``inter`` (its share on this rank) on ``hidden``:

        A = s (1 - exp(-R / s))   slots the rows touch (uniform routing inside the GPU)
        t = GEMM(R, 2 I, H; g = A) + SiLU-and-mul(R, I) + GEMM(R, H, I; g = A)

    with grouped GEMMs (factors ``moe``, ``moe_modes``) in ``mode``.
    """
    rows, slots = np.asarray(rows, dtype=np.float64), np.asarray(slots, dtype=np.float64)
    hidden, inter = np.asarray(hidden, dtype=np.float64), np.asarray(inter, dtype=np.float64)
    active = slots * -np.expm1(-rows / np.maximum(slots, 1e-12))
    up = gemm_time_s(rows, 2 * inter, hidden, gpu, factors=factors, groups=active, mode=mode, grouped=True)
    down = gemm_time_s(rows, hidden, inter, gpu, factors=factors, groups=active, mode=mode, grouped=True)
    act = memory_op_time_s("act", rows, inter, gpu, factors=factors)
    return (np.asarray(up) + np.asarray(act) + np.asarray(down))[()]


def token_reach(num_experts, top_k, share):
    """Probability that a token's ``top_k`` distinct experts include at least one of a set holding
    ``share`` of the ``num_experts`` experts (uniform routing): ``1 - C(E - s E, k) / C(E, k)``,
    with the binomials continued to non-integer ``s E`` (vectorised).

    >>> round(float(token_reach(256, 8, 1 / 8)), 3), float(token_reach(256, 8, 1.0))
    (0.662, 1.0)
    """
    if all(isinstance(x, (int, float, np.integer, np.floating)) for x in (num_experts, top_k, share)):
        return _token_reach_scalar(float(num_experts), float(top_k), float(share))  # the same numbers, memoised
    return _token_reach_array(num_experts, top_k, share)


@lru_cache(maxsize=4096)
def _token_reach_scalar(num_experts: float, top_k: float, share: float) -> float:
    return float(_token_reach_array(num_experts, top_k, share))


def _token_reach_array(num_experts, top_k, share):
    E, k = np.asarray(num_experts, dtype=np.float64), np.asarray(top_k, dtype=np.float64)
    outside = E * (1.0 - np.asarray(share, dtype=np.float64))
    miss = np.ones(np.broadcast(E, k, outside).shape)
    for i in range(int(np.max(k))):
        miss = miss * np.where(i < k, np.clip((outside - i) / (E - i), 0.0, 1.0), 1.0)
    return (1.0 - miss)[()]


def ep_dispatch_time_s(tokens_per_rank, hidden, top_k, num_experts, ep, gpu: GpuSpec | str, *, element_bytes,
                       factors=None, balancedness=1.0, devices_per_node=None, low_latency=False):  # fmt: skip
    """Eq. (9): one expert-parallel dispatch (or combine) of ``tokens_per_rank`` tokens on every one
    of ``ep`` ranks, DeepEP-style (vectorised).

    ``element_bytes`` per hidden element sent (dispatch in FP8 with one fp32 scale per 128 elements:
    ``1 + 4/128``; combine in BF16: 2). ``balancedness`` b scales the busiest rank's share.
    ``devices_per_node``: ranks per node, default ``min(ep, gpu.gpus_per_node)``. Factors
    ``ep_dispatch_intra`` (alpha, lambda of NVLink; ``ep_dispatch_low_latency`` with
    ``low_latency``, DeepEP's decode mode) and, across nodes, ``ep_dispatch_inter`` (alpha,
    lambda of the NIC). One rank takes no time.
    """
    f, gpu = resolve_factors(factors), _gpu(gpu)
    near = f.group("ep_dispatch_low_latency" if low_latency else "ep_dispatch_intra")
    far = f.group("ep_dispatch_inter")
    t, n = np.asarray(tokens_per_rank, dtype=np.float64), np.asarray(ep, dtype=np.float64)
    g = np.minimum(n, gpu.gpus_per_node) if devices_per_node is None else np.asarray(devices_per_node, np.float64)
    nodes = n / g
    per_token = np.asarray(hidden, dtype=np.float64) * element_bytes / np.asarray(balancedness, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_gpu = token_reach(num_experts, top_k, 1.0 / n)
        p_node = token_reach(num_experts, top_k, g / n)
        nvlink = t * p_gpu * (g - 1.0) * (1.0 + (n - g) / g) * per_token
        nic = t * (nodes - 1.0) * p_node * per_token
        t_near = nvlink / (gpu.intra_node_bytes_per_s / 2 * near.bandwidth_fraction)
        t_far = nic / (gpu.inter_node_bytes_per_s * far.bandwidth_fraction)
        out = np.where(g < n, far.latency_s + np.maximum(t_near, t_far), near.latency_s + t_near)
    return np.where((n > 1) & (t > 0), out, 0.0)[()]
