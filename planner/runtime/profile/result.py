"""What the op profiler gives: the op-timing table and the points the table cannot hold.

:class:`MeasuredProfile` is what :func:`~planner.runtime.profile.timing.run_profile` returns and
:func:`~planner.runtime.profile.io.load_profile` reads back; :data:`PROFILE_FORMAT` tags its
sidecar. :func:`moved_bytes` counts a memory-op row's bytes as the latency model does (the
achieved bandwidth of :meth:`MeasuredProfile.records` and of
:func:`~planner.runtime.profile.calibration.device_spec`).

Plain dataclasses and numpy, no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from planner.perf.measured import COLLECTIVE_OPS, GEMM_OPS, MEMORY_OPS, OpTable
from planner.profiles import GpuSpec

__all__ = ["AttentionPoint", "ExpertFfnPoint", "MeasuredProfile", "PROFILE_FORMAT", "moved_bytes"]

#: ``format`` of a profile's sidecar JSON
PROFILE_FORMAT = "moeplan-op-profile/1"


@dataclass(frozen=True)
class AttentionPoint:
    """One causal SDPA prefill with q, k and v of ``[batch, heads, tokens, head_dim]``."""

    batch: int
    heads: int
    tokens: int
    head_dim: int
    time_ms: float

    @property
    def flops(self) -> float:
        """2 x multiply-adds of QK^T and PV over the causal pairs: the latency model's F_a."""
        return 2.0 * self.heads * 2 * self.head_dim * self.batch * self.tokens * (self.tokens + 1) / 2

    @property
    def hbm_bytes(self) -> float:
        """q, k, v read and o written once, 2-byte elements."""
        return 4.0 * self.batch * self.heads * self.tokens * self.head_dim * 2


@dataclass(frozen=True)
class ExpertFfnPoint:
    """One expert FFN (gate+up GEMM, SiLU-and-mul, down GEMM) timed as one call."""

    tokens: int
    hidden: int
    intermediate: int
    time_ms: float


@dataclass(frozen=True, eq=False)
class MeasuredProfile:
    """A profile: the op-timing table and what the table cannot hold.

    ``row_spread``: per table row, the interquartile range of its timed calls over their median
    (a noise indicator). ``all_to_all_check[r][s]``: the first 3 values rank ``r`` received from
    rank ``s`` in the largest all-to-all, ``(s * n + r) * 1024 + (0, 1, 2)`` when the data was
    routed right (every worker also compares its whole buffer; a wrong payload fails the run).
    """

    table: OpTable
    attention: tuple[AttentionPoint, ...]
    expert_ffn: tuple[ExpertFfnPoint, ...]
    provenance: dict
    row_spread: tuple[float, ...] = ()
    all_to_all_check: tuple[tuple[tuple[float, ...], ...], ...] = ()

    def records(self) -> list[dict]:
        """One dict per table row with its achieved rate: ``achieved_flops_per_s`` (GEMMs) or
        ``achieved_bytes_per_s`` (memory ops: bytes as the latency model counts them;
        all-to-all: ``(n - 1) / n * S / t``, the bytes each rank exchanges per second)."""
        t, seconds = self.table, self.table.time_ms / 1e3
        moved = moved_bytes(t)
        out = []
        for i in range(len(t)):
            row = {"op": str(t.op[i]), "model": str(t.model[i]), "num_tokens": int(t.num_tokens[i]), "m": int(t.m[i]),
                   "n": int(t.n[i]), "k": int(t.k[i]), "size_bytes": float(t.size_bytes[i]),
                   "num_workers": int(t.num_workers[i]), "time_ms": float(t.time_ms[i])}  # fmt: skip
            if t.op[i] in GEMM_OPS:
                row["achieved_flops_per_s"] = 2.0 * t.m[i] * t.n[i] * t.k[i] / seconds[i]
            elif t.op[i] in MEMORY_OPS:
                row["achieved_bytes_per_s"] = moved[i] / seconds[i]
            elif t.op[i] in COLLECTIVE_OPS:
                n = t.num_workers[i]
                row["achieved_bytes_per_s"] = (n - 1) / n * t.size_bytes[i] / seconds[i]
            if self.row_spread:
                row["spread"] = self.row_spread[i]
            out.append(row)
        return out

    def to_dict(self) -> dict:
        """The sidecar's content (JSON-ready): everything but the table's rows."""
        return {
            "format": PROFILE_FORMAT,
            "provenance": self.provenance,
            "attention": [asdict(p) for p in self.attention],
            "expert_ffn": [asdict(p) for p in self.expert_ffn],
            "row_spread": [round(float(s), 6) for s in self.row_spread],
            "all_to_all_check": [[list(c) for c in r] for r in self.all_to_all_check],
        }


def moved_bytes(table: OpTable) -> np.ndarray:
    """Bytes each memory-op row moves as the latency model counts them (0 for other rows): its
    model time on a 1 byte/s device at full efficiency without overhead, so that the spec and
    the model agree by construction."""
    from planner.perf import DEFAULT_FACTORS, MemoryOpFactors, memory_op_time_s

    unit = GpuSpec(id="unit", names=(), vendor="", memory_bytes=1.0, hbm_bytes_per_s=1.0, bf16_flops_per_s=1.0,
                   fp8_flops_per_s=None, intra_node_bytes_per_s=1.0, inter_node_bytes_per_s=1.0,
                   host_link_bytes_per_s=1.0, gpus_per_node=1, price_per_hour_usd=0.0)  # fmt: skip
    ideal = replace(DEFAULT_FACTORS, **{op: MemoryOpFactors(1.0, 0.0, 0.0) for op in MEMORY_OPS})
    out = np.zeros(len(table))
    for op in MEMORY_OPS:
        rows = table.op == op
        if rows.any():
            n = table.n[rows] if op == "act" else None
            out[rows] = memory_op_time_s(op, table.m[rows], table.k[rows], unit, factors=ideal, n=n)
    return out
