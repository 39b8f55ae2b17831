"""`moeplan loads`: per-layer skew of expert-load files, or the list of the ones shipped."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from planner.cli._output import emit
from planner.cli.options import JsonOpt, NumExpertsOpt, RankFiles, RankFilesOpt, read_loads_arg
from planner.common.tables import format_table

__all__ = ["loads"]


def loads(
    paths: Annotated[Optional[list[str]], typer.Argument(metavar="LOADS", help="Expert-load file(s), or builtin:NAME (see `moeplan loads --list`).")] = None,
    num_experts: NumExpertsOpt = None,
    rank_files: RankFilesOpt = RankFiles.auto,
    list_builtin: Annotated[bool, typer.Option("--list", help="List the load files shipped with moeplan.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Summarise expert loads per layer: total, hottest expert's load over the mean, CV, hottest share."""
    from planner.inputs.readers import list_builtin_loads

    if list_builtin or not paths:
        names = list_builtin_loads()
        emit({"builtin": names}, "\n".join(f"builtin:{n}" for n in names), json_out)
        return
    data = read_loads_arg(paths, num_experts, rank_files)
    stats = data.layer_stats()
    rows = [
        [s.layer, f"{s.total:.0f}", f"{s.max_over_mean:.2f}", f"{s.cv:.2f}", s.hottest_expert, f"{100 * s.hottest_share:.2f}"]
        for s in stats
    ]
    title = (
        f"{data.source}: {data.num_steps} step(s) x {data.num_layers} layer(s) x {data.num_experts} experts"
        + (f", model {data.model}" if data.model else "")
    )
    table = format_table(["layer", "total_tokens", "max/mean", "cv", "hottest_expert", "hottest_share_%"], rows, title=title)
    emit(
        {"source": data.source, "shape": list(data.shape), "model": data.model, "provenance": dict(data.provenance),
         "layers": [s.__dict__ for s in stats]},
        table,
        json_out,
    )
