"""`moeplan plan`: the main job, run on the scenario shipped with moeplan unless told otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit, warn
from planner.cli.options import JsonOpt

__all__ = ["plan"]


def plan(
    scenario: Annotated[Optional[Path], typer.Option("--scenario", "-s", help="Scenario JSON (default: the shipped one).")] = None,
    out_dir: Annotated[Path, typer.Option("--out-dir", "-o", help="Directory for the plan, summary and engine files.")] = Path("moeplan-out"),
    json_out: JsonOpt = False,
) -> None:
    """Run a whole scenario: plan, verify, write plan.json + summary.txt + engine placement files."""
    from planner.scenario import load_scenario, run_scenario

    sc = load_scenario(scenario)
    res = run_scenario(sc, out_dir)
    for line in (*res.warnings, *(f"no {t} file: {why}" for t, why in res.refused.items())):
        warn(line)
    rep = res.plan.solve_report
    files = "\n".join(f"  {k:8s} {v}" for k, v in res.files.items())
    human = f"{res.summary}\nsolved in {rep.wall_time_s:.3f} s; plan verified\nwrote:\n{files}"
    emit({"scenario": sc.name, "files": res.files, "refused": res.refused, "warnings": list(res.warnings),
          "solve": rep.to_dict(),
          "balancedness_mean": res.plan.replicas.predicted.balancedness_mean}, human, json_out)
