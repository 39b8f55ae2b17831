"""`moeplan profile`: time the latency model's ops on this machine with torch, write them as an
op-timing CSV with a provenance sidecar, and report the model's error on held-out points."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from planner.cli._output import emit, progress, warn
from planner.cli.options import JsonOpt
from planner.common.tables import format_table

__all__ = ["profile"]


def _shape(r: dict) -> str:
    if r["op"] == "all_to_all":
        return f"{r['num_workers']} ranks"
    if r["op"] in ("add", "norm"):
        return f"rows x {r['k']}"
    return f"T x {r['k']} -> {r['n']}" if r["op"] != "act" else f"T x {r['n']} -> {r['k']}"


def _rate(r: dict) -> str:
    if "achieved_flops_per_s" in r:
        return f"{r['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s"
    if "achieved_bytes_per_s" in r:
        return f"{r['achieved_bytes_per_s'] / 1e9:.2f} GB/s"
    return "-"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _human(profile, cal, paths) -> str:
    prov = profile.provenance
    records = profile.records()
    rows = [[r["op"], r["model"] or "-", _shape(r), r["num_tokens"] or "-",
             f"{r['size_bytes'] / 1024:.0f}" if r["size_bytes"] else "-", f"{r['time_ms']:.4f}", _rate(r),
             f"{100 * r['spread']:.0f}" if "spread" in r else "-"] for r in records]  # fmt: skip
    title = (
        f"measured on {prov['device_name']} ({prov['device']}), torch {prov['torch_version']}, {prov['dtype']}, "
        f"{prov['torch_threads']} thread(s), {prov['date_utc']}, {prov['wall_s']:.1f} s"
    )
    parts = [format_table(["op", "model", "shape", "tokens", "size_KiB", "time_ms", "achieved", "iqr_%"], rows, title=title)]
    if profile.attention:
        att = [[f"{p.batch}x{p.heads}x{p.tokens}x{p.head_dim}", f"{p.time_ms:.4f}", f"{p.flops / p.time_ms / 1e6:.1f}"]
               for p in profile.attention]  # fmt: skip
        parts.append(format_table(["attention [b,h,T,d] causal", "time_ms", "GFLOP/s"], att))
    if profile.expert_ffn:
        ffn = [[p.tokens, f"{p.time_ms:.4f}"] for p in profile.expert_ffn]
        h, i = profile.expert_ffn[0].hidden, profile.expert_ffn[0].intermediate
        parts.append(format_table([f"expert FFN H={h} I={i}: tokens", "time_ms"], ffn))
    spec = cal.spec
    parts.append(
        f"device spec estimated from this profile: peak {spec.bf16_flops_per_s / 1e9:.1f} GFLOP/s (best GEMM), "
        f"memory {spec.hbm_bytes_per_s / 1e9:.2f} GB/s (best memory op), "
        f"link {spec.intra_node_bytes_per_s / 1e9:.2f} GB/s (2 x best all-to-all per-rank rate)"
    )
    fam = [[e.family, e.n_points, _pct(e.median_rel_error), _pct(e.p90_rel_error)] for e in cal.report.errors]
    fam.append(["attention (not in target)", "-", _pct(cal.attention_median_rel_error), "-"])
    fam.append(["expert FFN as sum of ops (not in target)", "-", _pct(cal.expert_ffn_median_rel_error), "-"])
    title = (
        f"held-out calibration: fitted on tokens {', '.join(map(str, cal.train_tokens))} and alternate message sizes, "
        f"predicting tokens {', '.join(map(str, cal.held_out_tokens))} and the other sizes"
    )
    parts.append(format_table(["op family", "points", "median_error", "p90_error"], fam, title=title))
    worst = cal.worst_compute_family
    above = ", ".join(cal.families_above_target()) or "none"
    parts.append(
        f"held-out median error {_pct(cal.median_rel_error)} over {sum(e.n_points for e in cal.report.errors)} rows "
        f"(target <= {100 * cal.target:.0f} %: {'met' if cal.meets_target else 'MISSED'}); "
        f"worst compute family {worst.family} {_pct(worst.median_rel_error)}, all-to-all "
        f"{_pct(cal.all_to_all_median_rel_error)}; families above {100 * cal.target:.0f} %: {above}"
    )
    parts.append(f"wrote {paths[0]} and {paths[1]}")
    return "\n\n".join(parts)


def profile(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the op-timing CSV; the provenance goes next to it as NAME.provenance.json.")] = Path("profile.csv"),
    workers: Annotated[int, typer.Option("--workers", "-w", help="Local processes for the all-to-all (gloo on CPU, NCCL on GPU); 0 or 1 skips it.")] = 2,
    quick: Annotated[bool, typer.Option("--quick", help="A short profile (shapes up to 64 tokens; 10-20 s on 2 CPU cores) for smoke tests.")] = False,
    threads: Annotated[int | None, typer.Option("--threads", help="Torch threads for the compute ops (default 1: steady timings on a shared host).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Time GEMMs, an MoE expert FFN, norms, attention and an all-to-all with torch on this machine; write the profile; report held-out calibration errors."""
    from planner.runtime.profile import (
        DEFAULT_CONFIG,
        QUICK_CONFIG,
        held_out_calibration,
        run_profile,
        write_profile,
    )

    config = QUICK_CONFIG if quick else DEFAULT_CONFIG
    if threads is not None:
        config = replace(config, threads=threads)
    measured = run_profile(config, num_workers=workers, progress=progress("profile"))
    paths = write_profile(measured, output)
    cal = held_out_calibration(measured)
    if not cal.meets_target or cal.families_above_target():
        warn(f"held-out median error {_pct(cal.median_rel_error)} (target {100 * cal.target:.0f} %); families above it: "
             f"{', '.join(cal.families_above_target()) or 'none'}. Timings on a busy host are noisy: rerun on an idle one")  # fmt: skip
    emit(
        {"output": str(paths[0]), "sidecar": str(paths[1]), "provenance": measured.provenance,
         "rows": measured.records(), "attention": [a.__dict__ for a in measured.attention],
         "expert_ffn": [p.__dict__ for p in measured.expert_ffn],
         "all_to_all_check": [[list(c) for c in r] for r in measured.all_to_all_check],
         "calibration": cal.to_dict()},
        _human(measured, cal, paths),
        json_out,
    )

