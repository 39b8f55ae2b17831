"""`moeplan migrate`: from the running plan to a new one with the least weight traffic and a safe order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit
from planner.cli.options import NoRelabelOpt, SpareSlotsOpt, read_loads_arg
from planner.migration import DEFAULT_SPARE_SLOTS

__all__ = ["migrate"]


def migrate(
    current: Annotated[Path, typer.Argument(metavar="CURRENT_PLAN", help="Plan JSON the engine runs now (its GPU numbers are the physical GPUs).")],
    new: Annotated[Path, typer.Argument(metavar="NEW_PLAN", help="Plan JSON to move to (same model, GPUs, experts and layers).")],
    no_relabel: NoRelabelOpt = False,
    spare_slots: SpareSlotsOpt = DEFAULT_SPARE_SLOTS,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the schedule (copies and ordered steps per layer) as JSON here (atomically).")] = None,
    target_plan: Annotated[Optional[Path], typer.Option("--target-plan", help="Write the new plan in the running GPUs' numbering and slot order here (atomically).")] = None,
    loads: Annotated[Optional[list[str]], typer.Option("--loads", "-l", help="The load file(s) the new plan was made from: re-verify the target plan on them.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="The model profile (YAML or config.json) both plans were made with, when it is not a shipped profile (the plans' model check needs it).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print totals, steps and per-layer counts as JSON on stdout (the writes themselves go to --output).")] = False,
) -> None:
    """Plan the weight moves from CURRENT_PLAN to NEW_PLAN: per-layer copies, ordered steps, GB moved."""
    from planner.migration import plan_migration
    from planner.common.fileio import atomic_write_text
    from planner.cli.plan_input import read_trusted_plan
    from planner.plans.io import write_plan

    data = None
    if loads:
        data = read_loads_arg(loads)
    arch = None
    if model is not None:
        from planner.profiles import get_model

        arch = get_model(model)
    current_plan, _ = read_trusted_plan(current, kinds=("replicas",), role="current plan", model=arch)
    new_plan, _ = read_trusted_plan(new, kinds=("replicas",), role="new plan", loads=data, model=arch)
    migration = plan_migration(current_plan, new_plan, relabel=not no_relabel,
                               spare_slots_per_gpu=spare_slots, loads=data)
    schedule = migration.to_dict()
    if output is not None:
        atomic_write_text(output, json.dumps(schedule, indent=1) + "\n")
    if target_plan is not None:
        write_plan(migration.target_plan, target_plan)
    human = migration.table() + "\nevery step keeps each expert served; schedule checked"
    if data is not None:
        human += "; target plan verified on the loads"
    for label, path in (("schedule", output), ("target plan", target_plan)):
        if path is not None:
            human += f"\n{label} written to {path}"
    result = {"output": str(output) if output else None, "target_plan": str(target_plan) if target_plan else None,
              "target_verified": data is not None, **{k: v for k, v in schedule.items() if k != "layers"},
              "layers": [{k: v for k, v in layer.items() if k not in ("moves", "steps")} | {"steps": len(layer["steps"])}
                         for layer in schedule["layers"]]}
    emit(result, human, json_out)

