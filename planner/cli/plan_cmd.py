"""`moeplan plan`: the main job, run on the scenario shipped with moeplan unless given one."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit, warn
from planner.cli.options import JsonOpt

__all__ = ["plan"]


def plan(
    scenario: Annotated[Optional[Path], typer.Argument(metavar="[SCENARIO]", help="Scenario YAML/JSON (docs/scenarios.md); default: the shipped one.")] = None,
    out_dir: Annotated[Path, typer.Option("--out-dir", "-o", help="Directory for the plan, summary and engine files.")] = Path("moeplan-out"),
    json_out: JsonOpt = False,
) -> None:
    """Run a whole scenario: deployment search per GPU type, replica plans per MoE pool, migration, GPU mix,
    cluster placement; verify; write plan.json, summary.txt, engine files, launch lines and a manifest.

    Examples: `moeplan plan` (the default scenario on shipped real data), `moeplan plan my-scenario.yaml -o out`.
    """
    from planner.scenario import load_scenario, run_scenario

    sc = load_scenario(scenario)
    tty = sys.stderr.isatty() and not json_out
    status = _status(tty)
    with status as st:
        def progress(msg: str) -> None:
            if st is not None and not msg.startswith("  "):
                st.update(msg)

        res = run_scenario(sc, out_dir, progress=progress if tty else None)
    for line in (*res.warnings, *(f"no {t} file: {why}" for t, why in res.refused.items())):
        warn(line)
    files = "\n".join(f"  {k:15s} {v}" for k, v in res.files.items())
    if res.plan.kind == "scenario":
        human = f"{res.summary}\nplan verified (moeplan verify {res.files['plan']} re-simulates every alternative)\nwrote:\n{files}"
        result = {"scenario": sc.name, "kind": "scenario", "files": res.files, "refused": res.refused,
                  "warnings": list(res.warnings), "chosen_gpu": res.plan.chosen_gpu,
                  "decisions": list(res.plan.decisions),
                  "gpu_choices": [c.model_dump() for c in res.plan.gpu_choices]}
    else:
        rep = res.plan.solve_report
        human = f"{res.summary}\nsolved in {rep.wall_time_s:.3f} s; plan verified\nwrote:\n{files}"
        result = {"scenario": sc.name, "kind": "replicas", "files": res.files, "refused": res.refused,
                  "warnings": list(res.warnings), "solve": rep.to_dict(),
                  "balancedness_mean": res.plan.replicas.predicted.balancedness_mean}
    emit(result, human, json_out)


def _status(tty: bool):
    """A rich spinner with the current stage on a terminal; nothing in a pipeline (stderr stays one line on error)."""
    if not tty:
        return nullcontext(None)
    from rich.console import Console

    return Console(stderr=True).status("planning")
