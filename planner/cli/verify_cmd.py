"""`moeplan verify`: recompute every invariant and metric of a plan without a solver (either kind)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit
from planner.cli.options import JsonOpt, NumExpertsOpt, RankFiles, RankFilesOpt, read_loads_arg
from planner.common.tables import format_table
from planner.errors import InputError

__all__ = ["verify"]


def verify(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN", help="Plan JSON file.")],
    loads: Annotated[Optional[list[str]], typer.Option("--loads", "-l", help="Replica plans: the load file(s) the plan was made from.")] = None,
    trace: Annotated[Optional[str], typer.Option("--trace", help="Deployment plans simulated on a trace: that trace.")] = None,
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="Cluster plans: the cluster file (or helix:NAME) the plan was made for; checks its hash, nodes and links too.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Replica plans: the model profile (id or YAML / config.json) the plan was made with; needed when the plan's model is not a shipped profile, which otherwise fails the model check.")] = None,
    num_experts: NumExpertsOpt = None,
    rank_files: RankFilesOpt = RankFiles.auto,
    json_out: JsonOpt = False,
) -> None:
    """Recompute every invariant and metric of a plan without a solver (a deployment plan is re-simulated,
    a cluster plan's max-flow recomputed, a fleet plan re-derived from its capacities, a placement's slots checked); exit 2 if any check fails."""
    from planner.cli.plan_input import verify_any_plan
    from planner.plans.io import read_plan

    plan = read_plan(plan_path)
    extra = {}
    if plan.kind == "cluster" and cluster:
        from planner.inputs import read_cluster

        extra["cluster"] = read_cluster(cluster)
    elif plan.kind == "deployment" and trace:
        from planner.inputs import read_trace

        extra["trace"] = read_trace(trace)
    elif plan.kind == "replicas":
        if not loads:
            raise InputError("a replica plan is verified on the loads it was made from: give --loads")
        extra["loads"] = read_loads_arg(loads, num_experts, rank_files)
        if model is not None:
            from planner.profiles import get_model

            extra["model"] = get_model(model)
    report = verify_any_plan(plan, **extra)
    table = format_table(["check", "result", "detail"], [[c.name, "ok" if c.ok else "FAIL", c.detail] for c in report.checks])
    emit(report.to_dict(), table, json_out)
    if not report.ok:
        c = report.failures[0]
        raise InputError(f"{plan_path}: plan fails verification: {c.name}: {c.detail}")
