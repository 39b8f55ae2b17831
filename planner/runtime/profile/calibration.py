r"""Check the latency model against a local profile: :func:`held_out_calibration`.

A CPU has no GPU datasheet, so the device spec comes from the profile itself
(:func:`device_spec`): peak FLOP/s = the best achieved GEMM FLOP/s, memory bandwidth = the best
achieved bytes/s of the memory-bound ops (bytes as the latency model counts them), link
bandwidth = twice the best all-to-all ``(n - 1) / n * S / t`` (the model takes half of the
profile's figure per direction). The table rows then go through the one-table held-out protocol
:func:`planner.perf.calibration.held_out_alternate`: the sorted token counts are alternately put
in a training and a held-out set (default: fit on 1, 4, 16, 64, 256, 1024, predict 2, 8, 32, 128,
512), message sizes likewise; the factors are fitted on the training rows and
``|t_model / t_measured - 1|`` is evaluated on the held-out rows, all token counts included
(``min_tokens = 1``).

The target (:data:`TARGET_HELD_OUT_MEDIAN_REL_ERROR`, 20 %; ``docs/profiler.md``) is on the median over every
held-out table row. Each op family's median is reported too, and the families above 20 % are
named (on a busy host a small family -- 4 held-out points in the quick profile -- can cross
it; docs/profiler.md has the measured spread). Reported beside the table rows, from the
profile's sidecar points: attention (:mod:`planner.perf.latency` eq. (3) has one flops
fraction, fitted here on alternate sizes; CPU SDPA's efficiency grows with length) and the whole
expert FFN (a composition check: isolated op timings keep their weights cache-hot). The
all-to-all rows are in the median; their family is the weakest on gloo, flat up to ~512 KiB and
then linear, a knee that eq. (5)'s ``alpha + S / B`` misses by up to ~45 % even in-sample.

scipy (the fit) is imported inside the functions, so the spawned all-to-all workers, which
import this package, start fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from planner.errors import InputError
from planner.perf.measured import COLLECTIVE_OPS, GEMM_OPS, MEMORY_OPS
from planner.profiles import GpuSpec
from planner.runtime.profile.result import MeasuredProfile, moved_bytes

__all__ = ["HeldOutCalibration", "TARGET_HELD_OUT_MEDIAN_REL_ERROR", "device_spec", "held_out_calibration", "spec_dict"]

#: the target for the held-out median relative error (module docstring: what it covers)
TARGET_HELD_OUT_MEDIAN_REL_ERROR = 0.20


@dataclass(frozen=True)
class HeldOutCalibration:
    """Result of :func:`held_out_calibration`; errors are ``|t_model / t_measured - 1|``.

    ``report`` (a :class:`~planner.perf.calibration.FitReport`) has one row per op family of the
    held-out table rows. ``meets_target``: ``median_rel_error`` (every held-out table row) is
    within ``target``; :meth:`families_above_target` names the families whose own median is not.
    """

    spec: GpuSpec  # estimated from the profile (device_spec)
    factors: object  # EfficiencyFactors fitted on the training rows
    train_tokens: tuple[int, ...]
    held_out_tokens: tuple[int, ...]
    report: object  # FitReport on the held-out table rows
    median_rel_error: float
    worst_compute_family: object  # FamilyError: the GEMM / memory-op family with the largest median
    all_to_all_median_rel_error: float | None
    attention_median_rel_error: float | None
    expert_ffn_median_rel_error: float | None
    target: float = TARGET_HELD_OUT_MEDIAN_REL_ERROR

    @property
    def meets_target(self) -> bool:
        return self.median_rel_error <= self.target

    def families_above_target(self) -> tuple[str, ...]:
        """Op families of the held-out rows whose median error exceeds the target."""
        return tuple(e.family for e in self.report.errors if e.median_rel_error > self.target)

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return {
            "device_spec": spec_dict(self.spec),
            "factors": self.factors.to_dict(),
            "train_tokens": list(self.train_tokens),
            "held_out_tokens": list(self.held_out_tokens),
            "families": [asdict(e) for e in self.report.errors],
            "median_rel_error": self.median_rel_error,
            "worst_compute_family": asdict(self.worst_compute_family),
            "all_to_all_median_rel_error": self.all_to_all_median_rel_error,
            "attention_median_rel_error": self.attention_median_rel_error,
            "expert_ffn_median_rel_error": self.expert_ffn_median_rel_error,
            "target": self.target,
            "meets_target": self.meets_target,
            "families_above_target": list(self.families_above_target()),
        }


def spec_dict(spec: GpuSpec) -> dict:
    """A spec as a JSON-ready dict without its alias names (the sidecar's and the report's)."""
    return {k: v for k, v in asdict(spec).items() if k != "names"}


def device_spec(profile: MeasuredProfile) -> GpuSpec:
    """A GPU-style spec of the profiled device, estimated from the profile's own measurements.

    ``bf16_flops_per_s``: the best achieved ``2 m n k / t`` of the GEMM rows;
    ``hbm_bytes_per_s``: the best achieved bytes/s of the memory-op rows (latency-model byte
    counts); ``intra_node_bytes_per_s``: 2 x the best all-to-all ``(n - 1) / n * S / t`` (the
    model takes half per direction), the memory bandwidth without all-to-all rows;
    ``inter_node_bytes_per_s``: not measured, set to the intra-node figure. Factors fitted
    against this spec are shares of what the device was seen to reach, not of a datasheet.

    Raises
    ------
    InputError
        No GEMM or no memory-op rows.
    """
    t, seconds = profile.table, profile.table.time_ms / 1e3
    gemm, memory, a2a = np.isin(t.op, GEMM_OPS), np.isin(t.op, MEMORY_OPS), t.op == "all_to_all"
    if not gemm.any() or not memory.any():
        raise InputError("device_spec needs GEMM and memory-op rows in the profile")
    flops = float(np.max(2.0 * t.m[gemm] * t.n[gemm] * t.k[gemm] / seconds[gemm]))
    bandwidth = float(np.max(moved_bytes(t)[memory] / seconds[memory]))
    n = t.num_workers[a2a]
    link = float(2.0 * np.max((n - 1) / n * t.size_bytes[a2a] / seconds[a2a])) if a2a.any() else bandwidth
    device, prov = str(t.device[0]), profile.provenance
    return GpuSpec(
        id=device,
        names=(device,),
        vendor=str(prov.get("device_type", "local")),
        memory_bytes=float(prov.get("memory_bytes", 0.0)),
        hbm_bytes_per_s=bandwidth,
        bf16_flops_per_s=flops,
        fp8_flops_per_s=None,
        intra_node_bytes_per_s=link,
        inter_node_bytes_per_s=link,
        host_link_bytes_per_s=bandwidth,
        gpus_per_node=max(2, int(prov.get("num_workers") or 0)),
        price_per_hour_usd=0.0,
        provenance={
            "source": f"estimated by moeplan from {t.source}",
            "bf16_flops_per_s": "best achieved 2 m n k / t of the GEMM rows",
            "hbm_bytes_per_s": "best achieved bytes / t of the memory-op rows (latency-model byte counts)",
            "intra_node_bytes_per_s": "2 x best all-to-all (n - 1) / n S / t" if a2a.any() else "no all-to-all: = hbm",
            "inter_node_bytes_per_s": "not measured: = intra_node_bytes_per_s",
        },
    )


def _attention_error(points, spec: GpuSpec, factors):
    """(factors with the attention flops fraction fitted on alternate sizes, held-out median error)."""
    from planner.perf.calibration import alternate_split
    from planner.perf import AttentionFactors, attention_time_s

    if not points:
        return factors, None
    fit_on = alternate_split([p.tokens for p in points])
    achieved = [p.flops / (p.time_ms / 1e3) / spec.bf16_flops_per_s for p, f in zip(points, fit_on, strict=True) if f]
    fitted = AttentionFactors(flops_fraction=float(min(1.0, np.median(achieved))), hbm_fraction=1.0, overhead_s=0.0)
    factors = replace(factors, attention=fitted)
    errors = [abs(float(attention_time_s(p.flops, p.hbm_bytes, spec, factors=factors)) * 1e3 / p.time_ms - 1)
              for p, f in zip(points, fit_on, strict=True) if not f]  # fmt: skip
    return factors, (float(np.median(errors)) if errors else None)


def _expert_ffn_error(points, held_tokens, spec: GpuSpec, factors) -> float | None:
    """Median error of up GEMM + act + down GEMM (fitted op models) against whole-FFN times."""
    from planner.perf import gemm_time_s, memory_op_time_s

    errors = []
    for p in (p for p in points if p.tokens in held_tokens):
        m, H, I = p.tokens, p.hidden, p.intermediate
        model_s = (gemm_time_s(m, 2 * I, H, spec, factors=factors) + gemm_time_s(m, H, I, spec, factors=factors)
                   + memory_op_time_s("act", m, I, spec, factors=factors, n=2 * I))  # fmt: skip
        errors.append(abs(float(model_s) * 1e3 / p.time_ms - 1))
    return float(np.median(errors)) if errors else None


def held_out_calibration(profile: MeasuredProfile, *, spec: GpuSpec | None = None) -> HeldOutCalibration:
    """Fit the latency model's factors on alternate token counts / message sizes, predict the rest.

    The protocol is :func:`planner.perf.calibration.held_out_alternate` on the profile's table;
    this adds the device spec, the target and the sidecar's attention and expert-FFN checks (module
    docstring). ``spec`` defaults to :func:`device_spec`.

    Raises
    ------
    InputError
        Fewer than two token counts, or no GEMM / memory-op rows.
    """
    from planner.perf.calibration import alternate_split, held_out_alternate, predict_time_ms

    t = profile.table
    spec = device_spec(profile) if spec is None else spec
    factors, report, held = held_out_alternate(t, spec)
    tokens = np.unique(t.num_tokens[~np.isin(t.op, COLLECTIVE_OPS)])
    train_tokens, held_tokens = tokens[alternate_split(tokens)], tokens[~alternate_split(tokens)]
    rel = np.abs(predict_time_ms(held, spec, factors) / held.time_ms - 1.0)
    a2a = held.op == "all_to_all"
    compute = [e for e in report.errors if e.family in GEMM_OPS + MEMORY_OPS]
    factors, attention_error = _attention_error(profile.attention, spec, factors)
    return HeldOutCalibration(
        spec=spec,
        factors=replace(factors, source=f"fitted by moeplan to {t.source} (alternate token counts / sizes)"),
        train_tokens=tuple(int(v) for v in train_tokens),
        held_out_tokens=tuple(int(v) for v in held_tokens),
        report=report,
        median_rel_error=float(np.median(rel)),
        worst_compute_family=max(compute, key=lambda e: e.median_rel_error),
        all_to_all_median_rel_error=float(np.median(rel[a2a])) if a2a.any() else None,
        attention_median_rel_error=attention_error,
        expert_ffn_median_rel_error=_expert_ffn_error(profile.expert_ffn, set(held_tokens.tolist()), spec, factors),
    )
