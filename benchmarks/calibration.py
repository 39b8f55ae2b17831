"""Calibration benchmark: how well the roofline latency model predicts measured op timings.

Run from the repository root (moeplan installed)::

    python benchmarks/calibration.py                 # Markdown tables on stdout, ~20 s
    python benchmarks/calibration.py --out r.json    # also every number as JSON

Sections 1-4 are the Vidur protocol (H100 and A100, FP16 dense layers), unchanged:
  1. shape check: achieved TFLOP/s of the measured projections at 4096 tokens (TP1);
  2. compute, held-out model: for H100 and A100, fit on two of Vidur's three models, predict the
     third; median / p90 relative error per op family at >= 64 tokens (the target of
     docs/performance.md: median <= 15 %);
  3. the factors fitted to all three models per GPU (``vidur_factors``);
  4. collectives: leave one group shape out, and fit below 8 MiB / predict above.
Sections 5-8 are the kernel tables from AIConfigurator (H100, H200, B200, A100):
  5. held-out errors per kernel family and GPU (folds by shape, planner.perf.kernel_fit);
  6. the calibrated factors per GPU and where each group comes from (``calibrated_factors``);
  7. the grouped-GEMM finding: DeepSeek-V3's FP8-block experts, balanced against power-law routing;
  8. the expert-parallel dispatch: DeepEP measured, the old all-to-all model, eq. (9);
  9. targets, PASS / FAIL.

The exit code is 0 even when the target is missed: this is a measurement, the test suite holds
the target (tests/test_calibration.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time

import numpy as np

from planner import __version__
from planner.common.fileio import atomic_write_text
from planner.perf.calibration import (
    TARGET_MEDIAN_REL_ERROR,
    calibrated_factors,
    fit_collectives,
    held_out_collectives,
    held_out_compute,
    held_out_kernel_tables,
    vidur_factors,
)
from planner.perf.factors import DEFAULT_FACTORS, EfficiencyFactors
from planner.perf.kernel_fit import imbalance, predict_kernel_ms
from planner.perf.kernel_tables import load_kernel_table
from planner.perf.op_times import collective_time_s
from planner.perf.measured import (
    GEMM_OPS,
    list_compute_tables,
    list_network_tables,
    load_compute_table,
    load_network_table,
)
from planner.profiles import get_gpu

GPUS = ("h100", "a100-80g")
KERNEL_GPUS = ("h100", "h200", "b200", "a100-80g")
# the factor groups the Vidur fits report (the fields of EfficiencyFactors before the kernel tables)
VIDUR_GROUPS = [f for f in dataclasses.fields(EfficiencyFactors) if f.name in (
    "gemm", "norm", "add", "act", "rope", "embedding", "attention", "all_reduce_intra", "all_reduce_inter",
    "p2p_intra", "p2p_inter", "gemm_modes")]  # fmt: skip


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def shape_check() -> tuple[str, list[dict]]:
    """Achieved share of dense peak of every projection at 4096 tokens, TP1."""
    rows, lines = [], ["| GPU | model | " + " | ".join(GEMM_OPS[1:]) + " |", "|---|---|" + "---:|" * 4]
    for gpu, model in list_compute_tables():
        ops = load_compute_table(gpu, model).to_op_table()
        peak = get_gpu(gpu).bf16_flops_per_s
        cells = []
        for op in GEMM_OPS[1:]:
            r = ops.select((ops.op == op) & (ops.m == 4096) & (ops.tp == 1))
            tflops = 2.0 * r.m[0] * r.n[0] * r.k[0] / (r.time_ms[0] * 1e-3)
            shape = {"m": int(r.m[0]), "n": int(r.n[0]), "k": int(r.k[0])}
            rows.append({"gpu": gpu, "model": model, "op": op, **shape, "time_ms": float(r.time_ms[0]),
                         "tflops": tflops / 1e12, "peak_fraction": tflops / peak})  # fmt: skip
            cells.append(f"{tflops / 1e12:.0f} ({tflops / peak:.0%})")
        lines.append(f"| {gpu} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines), rows


def compute_held_out() -> tuple[dict[str, str], list[dict]]:
    """One table per GPU: op family x held-out model, median / p90 (points)."""
    tables, rows = {}, []
    for gpu in GPUS:
        reports = held_out_compute(gpu)
        families = [r.family for r in reports[0].errors]
        head = "| op family | " + " | ".join(f"held out: {r.evaluated_on}" for r in reports) + " |"
        lines = [head, "|---|" + "---:|" * len(reports)]
        for fam in families:
            cells = []
            for rep in reports:
                e = rep.error(fam)
                cells.append(f"{_pct(e.median_rel_error)} / {_pct(e.p90_rel_error)} ({e.n_points})")
                rows.append({"gpu": gpu, "held_out": rep.evaluated_on, "fitted_on": rep.fitted_on, "family": fam,
                             "n_points": e.n_points, "median_rel_error": e.median_rel_error,
                             "p90_rel_error": e.p90_rel_error})  # fmt: skip
            lines.append(f"| {fam} | " + " | ".join(cells) + " |")
        tables[gpu] = "\n".join(lines)
    return tables, rows


def fitted_factors() -> tuple[str, dict]:
    """Every number fitted to the Vidur tables, side by side for the two GPUs."""
    factors = {gpu: vidur_factors(gpu) for gpu in GPUS}
    lines = ["| factor | " + " | ".join(GPUS) + " |", "|---|" + "---:|" * len(GPUS)]
    first = factors[GPUS[0]]
    for group in VIDUR_GROUPS:
        for f in dataclasses.fields(getattr(first, group.name)):
            if f.default is not dataclasses.MISSING:
                continue  # fields added with the kernel tables; the Vidur fits leave them at their defaults
            values = [getattr(getattr(factors[g], group.name), f.name) for g in GPUS]
            if f.name == "row_s_per_elem" and not any(values):
                continue  # the row latency belongs to the norm only
            lines.append(f"| {group.name}.{f.name} | " + " | ".join(f"{v:.4g}" for v in values) + " |")
    lines += ["", *(f"- {g}: {factors[g].source}" for g in GPUS)]
    return "\n".join(lines), {g: {grp.name: dataclasses.asdict(getattr(f, grp.name)) for grp in VIDUR_GROUPS}
                              for g, f in factors.items()}  # fmt: skip


def kernel_held_out() -> tuple[str, list[dict]]:
    """Section 5: median / p90 (points) per kernel family label and GPU."""
    rows, cells = [], {}
    for gpu in KERNEL_GPUS:
        for rep in held_out_kernel_tables(gpu):
            for e in rep.errors:
                rows.append({"gpu": gpu, "family": rep.evaluated_on, "label": e.family, "folds": rep.fitted_on,
                             "n_points": e.n_points, "median_rel_error": e.median_rel_error,
                             "p90_rel_error": e.p90_rel_error})  # fmt: skip
                cells[e.family, gpu] = f"{_pct(e.median_rel_error)} / {_pct(e.p90_rel_error)} ({e.n_points})"
    labels = list(dict.fromkeys(r["label"] for r in rows))
    lines = ["| kernel family | " + " | ".join(KERNEL_GPUS) + " |", "|---|" + "---:|" * len(KERNEL_GPUS)]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(cells.get((label, g), "-") for g in KERNEL_GPUS) + " |")
    return "\n".join(lines), rows


def calibrated_table() -> tuple[str, str, dict]:
    """Section 6: the main fitted numbers per GPU, and the source of every group."""
    factors = {gpu: calibrated_factors(gpu) for gpu in KERNEL_GPUS}
    shown = [("gemm", "peak_fraction"), ("gemm", "half_tokens"), ("gemm", "hbm_fraction"),
             ("gemm_modes", "w8a8"), ("gemm_modes", "w8a8_block"), ("gemm_modes", "w4a4"),
             ("gemm_modes", "quant_hbm_fraction"), ("moe", "peak_fraction"), ("moe", "half_tokens"),
             ("moe", "half_width"), ("moe", "hbm_fraction"), ("moe_modes", "w8a8_block"), ("moe_modes", "w4a16"),
             ("moe_modes", "w4a4"), ("moe_modes", "quant_hbm_fraction"), ("attention", "flops_fraction"),
             ("attention", "half_tokens"), ("attention_decode", "hbm_fraction"),
             ("attention_decode", "bulk_hbm_fraction"), ("mla_prefill", "flops_fraction"),
             ("mla_decode", "flops_fraction"), ("mla_decode", "bulk_hbm_fraction"),
             ("all_reduce_intra", "bandwidth_fraction"), ("all_reduce_intra", "latency_s"),
             ("ep_dispatch_intra", "bandwidth_fraction"), ("ep_dispatch_intra", "latency_s"),
             ("ep_dispatch_low_latency", "latency_s"), ("ep_dispatch_inter", "bandwidth_fraction")]  # fmt: skip
    lines = ["| factor | " + " | ".join(KERNEL_GPUS) + " |", "|---|" + "---:|" * len(KERNEL_GPUS)]
    for group, name in shown:
        values = []
        for gpu in KERNEL_GPUS:
            v = getattr(factors[gpu].group(group), name)
            values.append("-" if v is None else f"{v:.3g}")
        lines.append(f"| {group}.{name} | " + " | ".join(values) + " |")
    src = []
    for gpu in KERNEL_GPUS:
        f = factors[gpu]
        merged: dict[str, list[str]] = {}
        for group, text in f.sources:
            merged.setdefault(text, []).append(group)
        src.append(f"**{gpu}**\n")
        src += [f"- {', '.join(groups)}: {text}" for text, groups in merged.items()]
        src.append("")
    return "\n".join(lines), "\n".join(src), {g: f.to_dict() for g, f in factors.items()}


def grouped_gemm_finding() -> tuple[str, list[dict]]:
    """Section 7: DeepSeek-V3's FP8-block experts on one H200 EP rank of 8: measured share of the FP8
    peak with balanced and power-law routing, and the calibrated model (balanced, and at the
    power-law rows' balancedness)."""
    spec_peak = 1978.9e12
    t = load_kernel_table("h200", "moe").where(weights="fp8-block", hidden_size=7168, inter_size=2048,
                                                num_experts=256, moe_tp=1, moe_ep=8)  # fmt: skip
    f = calibrated_factors("h200")
    bal, pl = t.where(distribution="balanced"), t.where(distribution="power_law_1.01")
    model = predict_kernel_ms(bal, "h200", f)
    old_model = predict_kernel_ms(bal, "h200", DEFAULT_FACTORS)  # the dense ramp x 0.82, as before the kernel tables
    head = ("| tokens (EP group) | rows per expert | balanced: ms, share of FP8 peak | power law 1.01: ms, share | "
            "measured b = balanced / power law | moeplan (balanced): ms, share | before (DEFAULT_FACTORS): ms, share |")
    rows, lines = [], [head, "|---:|---:|---:|---:|---:|---:|---:|"]
    for i, tokens in enumerate(bal["num_tokens"].tolist()):
        if tokens < 256:
            continue
        flops = 2 * 3 * 7168 * 2048 * tokens * 8 / 8
        j = int(np.flatnonzero(pl["num_tokens"] == tokens)[0])
        tb, tp_, tm = float(bal["time_ms"][i]), float(pl["time_ms"][j]), float(model[i])
        old = float(old_model[i])
        rows.append({"tokens": tokens, "balanced_ms": tb, "power_law_ms": tp_, "moeplan_ms": tm, "old_model_ms": old,
                     "balanced_share": flops / (tb * 1e-3) / spec_peak,
                     "power_law_share": flops / (tp_ * 1e-3) / spec_peak})  # fmt: skip
        lines.append(f"| {tokens:,} | {tokens * 8 / 256:,.0f} | {tb:.3f}, {flops / (tb * 1e-3) / spec_peak:.0%} | "
                     f"{tp_:.3f}, {flops / (tp_ * 1e-3) / spec_peak:.0%} | {tb / tp_:.2f} | "
                     f"{tm:.3f}, {flops / (tm * 1e-3) / spec_peak:.0%} | {old:.3f}, "
                     f"{flops / (old * 1e-3) / spec_peak:.0%} |")  # fmt: skip
    ratios = [r for r in imbalance(load_kernel_table("h200", "moe")) if r["weights"] == "fp8-block"]
    lines += ["", "Measured balancedness of the power-law rows (1 / median ratio to balanced, >= 1,024 tokens), "
              "H200 FP8-block:", "", "| experts | hidden | moe_ep | distribution | b |", "|---:|---:|---:|---|---:|"]
    for r in ratios:
        lines.append(f"| {r['num_experts']} | {r['hidden_size']} | {r['moe_ep']} | {r['distribution']} | "
                     f"{1 / r['median_ratio']:.2f} |")  # fmt: skip
    return "\n".join(lines), rows


def dispatch_check() -> tuple[str, list[dict]]:
    """Section 8: DeepEP dispatch (FP8) of DeepSeek-V3 (hidden 7168, top-8 of 256) on H200: measured,
    the old model (every routed row in BF16 through an all-to-all with the default p2p factors)
    and eq. (9) with the calibrated factors."""
    t = load_kernel_table("h200", "moe_dispatch").where(mode="normal", phase="dispatch", hidden_size=7168,
                                                         num_experts=256)  # fmt: skip
    f = calibrated_factors("h200")
    ours = predict_kernel_ms(t, "h200", f)
    rows, lines = [], ["| ranks (nodes) | tokens per rank | measured ms | old model ms | eq. (9) ms |",
                       "|---|---:|---:|---:|---:|"]  # fmt: skip
    for i in range(len(t)):
        tokens, ep, nodes = int(t["tokens_per_rank"][i]), int(t["ep"][i]), int(t["nodes"][i])
        if tokens not in (1024, 4096, 16384):
            continue
        received = tokens * ep * 8 / ep * 7168 * 2  # old: rows T k / ep into the busiest rank, BF16
        old = float(collective_time_s("all_to_all", received, ep, "h200", factors=DEFAULT_FACTORS,
                                      devices_per_node=min(ep, 8))) * 1e3  # fmt: skip
        meas = float(t["time_ms"][i])
        rows.append({"ep": ep, "nodes": nodes, "tokens_per_rank": tokens, "measured_ms": meas, "old_model_ms": old,
                     "model_ms": float(ours[i])})  # fmt: skip
        lines.append(f"| {ep} ({nodes}) | {tokens:,} | {meas:.3f} | {old:.3f} | {ours[i]:.3f} |")
    return "\n".join(lines), rows


def collectives() -> tuple[str, str, list[dict]]:
    """Held-out splits and the in-sample fit of every link class."""
    rows = []
    held = ["| GPU | predicted | fitted on | points | median | p90 |", "|---|---|---|---:|---:|---:|"]
    for gpu in GPUS:
        for rep in held_out_collectives(gpu):
            (e,) = rep.errors
            held.append(f"| {gpu} | {rep.evaluated_on} | {rep.fitted_on} | {e.n_points} | "
                        f"{_pct(e.median_rel_error)} | {_pct(e.p90_rel_error)} |")  # fmt: skip
            rows.append({"gpu": gpu, "split": rep.fitted_on.split(":")[0], "predicted": rep.evaluated_on,
                         "fitted_on": rep.fitted_on, "n_points": e.n_points,
                         "median_rel_error": e.median_rel_error, "p90_rel_error": e.p90_rel_error})  # fmt: skip
    inside = ["| GPU | link | points | median | p90 |", "|---|---|---:|---:|---:|"]
    for gpu in GPUS:
        names = [c for g, c in list_network_tables() if g == gpu]
        _, report = fit_collectives([load_network_table(gpu, c) for c in names])
        for e in report.errors:
            errors = f"{_pct(e.median_rel_error)} | {_pct(e.p90_rel_error)}"
            inside.append(f"| {gpu} | {e.family} | {e.n_points} | {errors} |")
    return "\n".join(held), "\n".join(inside), rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="Write every number to this JSON file.")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    print("# Latency-model calibration against Vidur's measured op timings\n")
    shape_table, shape_rows = shape_check()
    print("## 1. Shape check: achieved TFLOP/s (share of dense peak) at 4096 tokens, TP1\n")
    print(shape_table + "\n")

    print("## 2. Compute, held-out model (tokens >= 64): median / p90 relative error (points)\n")
    compute_tables, compute_rows = compute_held_out()
    for gpu, table in compute_tables.items():
        print(f"### {gpu}\n\n{table}\n")

    print("## 3. Factors fitted to all three models (calibrated_factors)\n")
    factor_table, factor_dict = fitted_factors()
    print(factor_table + "\n")

    print("## 4. Collectives\n")
    held_table, inside_table, coll_rows = collectives()
    print("Held out: one group shape (`workers` split) or messages >= 8 MiB after fitting below (`sizes`).\n")
    print(held_table + "\n")
    print("In-sample, every point of a link class:\n")
    print(inside_table + "\n")

    print("## 5. Kernel tables (AIConfigurator 0.12.0), held out by shape: median / p90 relative error (points)\n")
    kernel_table, kernel_rows = kernel_held_out()
    print(kernel_table + "\n")
    print("## 6. Calibrated factors per GPU (calibrated_factors)\n")
    cal_table, cal_sources, cal_dict = calibrated_table()
    print(cal_table + "\n")
    print("Where each group comes from:\n")
    print(cal_sources)
    print("## 7. Grouped GEMM: DeepSeek-V3 FP8-block experts, one H200 rank of EP 8\n")
    moe_table, moe_rows = grouped_gemm_finding()
    print(moe_table + "\n")
    print("## 8. Expert-parallel dispatch: DeepSeek-V3 on H200, DeepEP normal mode (FP8)\n")
    disp_table, disp_rows = dispatch_check()
    print(disp_table + "\n")

    worst = max(compute_rows, key=lambda r: r["median_rel_error"])
    ok = worst["median_rel_error"] <= TARGET_MEDIAN_REL_ERROR
    targets = [{
        "target": f"held-out compute median <= {TARGET_MEDIAN_REL_ERROR:.0%} "
                  "for every op family, GPU and held-out model",
        "value": worst["median_rel_error"],
        "where": f"{worst['gpu']} {worst['family']}, held out {worst['held_out']}",
        "pass": ok,
    }]  # fmt: skip
    fitted = [r for r in kernel_rows if "kept from the base" not in r["label"] and "in sample" not in r["label"]]
    within = [r for r in fitted if r["median_rel_error"] <= TARGET_MEDIAN_REL_ERROR]
    targets.append({
        "target": f"kernel tables: held-out median <= {TARGET_MEDIAN_REL_ERROR:.0%} per fitted family and GPU",
        "value": max(r["median_rel_error"] for r in fitted),
        "where": f"{len(within)} of {len(fitted)} within; over: " + ", ".join(
            f"{r['gpu']} {r['label']} {_pct(r['median_rel_error'])}" for r in fitted if r not in within),
        "pass": len(within) == len(fitted),
    })  # fmt: skip
    print("## 9. Targets\n")
    print("| target | worst | where | result |\n|---|---:|---|---|")
    for t in targets:
        print(f"| {t['target']} | {_pct(t['value'])} | {t['where']} | {'PASS' if t['pass'] else 'FAIL'} |")
    elapsed = time.perf_counter() - start
    print(f"\nTarget {'PASS' if ok else 'FAIL'}: worst held-out median {_pct(worst['median_rel_error'])} "
          f"({targets[0]['where']}); kernel tables: {targets[1]['where'].split(';')[0]}; {elapsed:.1f} s")  # fmt: skip

    if args.out:
        result = {
            "shape_check": shape_rows,
            "compute_held_out": {"rows": compute_rows, "tables": compute_tables},
            "fitted_factors": factor_dict,
            "collectives_held_out": {"rows": coll_rows, "tables": {"held_out": held_table, "in_sample": inside_table}},
            "kernel_held_out": {"rows": kernel_rows, "table": kernel_table},
            "calibrated_factors": cal_dict,
            "grouped_gemm": moe_rows,
            "dispatch": disp_rows,
            "targets": targets,
            "meta": {"moeplan": __version__, "python": platform.python_version(), "numpy": np.__version__,
                     "elapsed_s": elapsed, "data": "Vidur data/profiling (MIT), profiles/measured/PROVENANCE.md"},
        }  # fmt: skip
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
