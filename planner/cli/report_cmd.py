"""`moeplan report`: one self-contained HTML page of a plan (any kind) or a migration schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit
from planner.cli.options import JsonOpt, NumExpertsOpt, RankFiles, RankFilesOpt, read_loads_arg
from planner.errors import InputError

__all__ = ["report"]


def report(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN", help="Plan JSON (any kind) or a migration schedule from `moeplan migrate -o`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Write the HTML page here (atomically).")] = Path("report.html"),
    loads: Annotated[Optional[list[str]], typer.Option("--loads", "-l", help="Replica plans: the load file(s) the plan was made from (verifies it; adds the before/after heatmaps and the budget sweep).")] = None,
    trace: Annotated[Optional[str], typer.Option("--trace", help="Deployment plans simulated on a trace: that trace (verifies it; adds goodput vs rate).")] = None,
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="Cluster plans: the cluster file (or helix:NAME) the plan was made for; checks its hash, nodes and links too.")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", "-g", help="Replica plans made without a GPU: the GPU profile the budget sweep prices replicas in.")] = None,
    rate_points: Annotated[int, typer.Option("--rate-points", help="Deployment plans: rates at which the chosen deployment is re-simulated for goodput vs rate (a closed-loop plan: client counts; 0: none).")] = 8,
    num_experts: NumExpertsOpt = None,
    rank_files: RankFilesOpt = RankFiles.auto,
    json_out: JsonOpt = False,
) -> None:
    """Write one self-contained HTML page (inline SVG figures, no script, no network) of PLAN: each part
    verified first, then its decisions, alternatives and figures; exit 2 (and no page) if a part fails
    verification."""
    from planner.common.fileio import atomic_write_text
    from planner.report import ReportInputs, build_report, read_report_source

    if rate_points < 0:
        raise InputError(f"must be >= 0, got {rate_points}", param="rate_points")
    doc = read_report_source(plan_path)
    inputs = ReportInputs(
        loads=read_loads_arg(loads, num_experts, rank_files) if loads else None,
        workload=_trace(trace) if trace else None,
        cluster=_cluster(cluster) if cluster else None,
        gpu=gpu, rate_points=rate_points)
    result = build_report(doc, inputs)
    if not result.verified:
        bad = next(v for _, v in result.parts if v.ok is False)
        raise InputError(f"{plan_path}: plan fails verification: {bad.detail}")
    atomic_write_text(output, result.html)
    parts = [{"title": p.title, "kind": p.kind, "verified": v.ok, "verdict": v.detail,
              "sections": [s.title for s in p.sections]} for p, v in result.parts]
    human = "\n".join(f"{p.title}: {'verified' if v.ok else ('FAILS verification' if v.ok is False else 'not verified')}"
                      f" - {v.detail}" for p, v in result.parts)
    human += f"\n{sum(len(p.sections) for p, _ in result.parts)} sections, {result.figures} figures; written to {output}"
    emit({"output": str(output), "figures": result.figures, "parts": parts}, human, json_out)


def _trace(path: str):
    from planner.inputs import read_trace

    return read_trace(path)


def _cluster(path: str):
    from planner.inputs import read_cluster

    return read_cluster(path)
