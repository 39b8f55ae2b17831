"""`moeplan export`: a replica plan in an engine's expert-placement format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit, warn
from planner.cli.options import JsonOpt, Target, read_loads_arg

__all__ = ["export"]


def export(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN", help="Plan JSON file.")],
    target: Annotated[Target, typer.Option("--target", help="Engine whose expert-placement format to write.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (atomically); SGLang needs a name ending in .json.")],
    allow_unsupported: Annotated[bool, typer.Option("--allow-unsupported", help="Write the file even when the engine cannot balance the model family (docs/engines.md); a warning says so.")] = False,
    loads: Annotated[Optional[list[str]], typer.Option("--loads", "-l", help="The load file(s) the plan was made from: verify it on them in full (without them, the checks the plan file alone supports).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a replica plan in an engine's expert-placement format; refuse what the engine cannot load or balance."""
    from planner.plans.export import check_output_name, export_plan
    from planner.common.fileio import atomic_write_text
    from planner.cli.plan_input import read_trusted_plan

    plan, _ = read_trusted_plan(plan_path, loads=read_loads_arg(loads) if loads else None)
    if plan.kind == "placement":  # what a live apply left (--state): verified, then written like a replica plan
        from planner.plans.placement import checked_placement, placement_as_plan

        plan = placement_as_plan(checked_placement(plan, str(plan_path)))
    check_output_name(target.value, output)
    exp = export_plan(plan, target.value, allow_unsupported=allow_unsupported)
    atomic_write_text(output, exp.text)
    for line in exp.warnings:
        warn(line)
    if exp.filled_layers:
        warn(
            f"{len(exp.filled_layers)} MoE layer(s) not in the plan got the trivial placement: "
            f"{_ranges(exp.filled_layers)}"
        )
    result = {
        "target": exp.target,
        "output": str(output),
        "num_slots": exp.num_slots,
        "num_redundant_experts": exp.num_redundant_experts,
        "ep_size": exp.ep_size,
        "filled_layers": list(exp.filled_layers),
        "launch_hint": exp.launch(output),
        "warnings": list(exp.warnings),
        "verified_on_loads": bool(loads),
    }
    emit(result, f"wrote {target.value} placement to {output}\nlaunch with: {exp.launch(output)}", json_out)


def _ranges(ids) -> str:
    """Compact '0-2, 5, 8-9' form of sorted ints.

    >>> _ranges([0, 1, 2, 5, 8, 9])
    '0-2, 5, 8-9'
    """
    ids = sorted(ids)
    out, start = [], None
    for i, x in enumerate(ids):
        if start is None:
            start = x
        if i + 1 == len(ids) or ids[i + 1] != x + 1:
            out.append(f"{start}" if start == x else f"{start}-{x}")
            start = None
    return ", ".join(out)
