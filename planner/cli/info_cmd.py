"""`moeplan loads`, `moeplan models`, `moeplan gpus`, `moeplan schema`: look at inputs and profiles."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from planner.cli._output import emit, handle_errors
from planner.common.tables import format_table

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


@handle_errors
def loads(
    paths: Annotated[list[str], typer.Argument(help="Expert-load file(s), or builtin:NAME (see `moeplan loads --list`).")] = None,
    num_experts: Annotated[Optional[int], typer.Option("--num-experts", help="Experts per layer for CSV dumps.")] = None,
    list_builtin: Annotated[bool, typer.Option("--list", help="List the load files shipped with moeplan.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Summarise expert loads per layer: total, hottest expert's load over the mean, CV, hottest share."""
    from planner.inputs.readers import list_builtin_loads, read_loads

    if list_builtin or not paths:
        names = list_builtin_loads()
        emit({"builtin": names}, "\n".join(f"builtin:{n}" for n in names), json_out)
        return
    data = read_loads(paths if len(paths) > 1 else paths[0], num_experts=num_experts)
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


@handle_errors
def models(json_out: JsonOpt = False) -> None:
    """List the built-in model architectures with their expert sizes."""
    from planner.profiles import list_models

    ms = list_models()
    rows = [
        [m.id, m.num_hidden_layers, len(m.moe_layers), m.num_routed_experts, m.top_k,
         f"{m.total_params() / 1e9:.3g}", f"{m.bytes_per_expert / 1e6:.1f}", m.names[0] if m.names else ""]
        for m in ms
    ]
    table = format_table(["id", "layers", "moe_layers", "experts", "top_k", "params_B", "expert_MB", "name"], rows)
    emit(
        {"models": [{"id": m.id, "names": list(m.names), "num_hidden_layers": m.num_hidden_layers,
                     "moe_layers": list(m.moe_layers), "num_routed_experts": m.num_routed_experts, "top_k": m.top_k,
                     "total_params": m.total_params(), "bytes_per_expert": m.bytes_per_expert} for m in ms]},
        table,
        json_out,
    )


@handle_errors
def gpus(json_out: JsonOpt = False) -> None:
    """List the built-in GPU profiles (SI units)."""
    from planner.profiles import list_gpus

    gs = list_gpus()
    rows = [
        [g.id, f"{g.memory_bytes / 1e9:.0f}", f"{g.hbm_bytes_per_s / 1e12:.2f}", f"{g.bf16_flops_per_s / 1e12:.0f}",
         f"{g.fp8_flops_per_s / 1e12:.0f}" if g.fp8_flops_per_s else "-", f"{g.intra_node_bytes_per_s / 1e9:.0f}",
         f"{g.price_per_hour_usd:.2f}" if g.price_per_hour_usd is not None else "-"]
        for g in gs
    ]
    table = format_table(["id", "memory_GB", "hbm_TB/s", "bf16_TFLOP/s", "fp8_TFLOP/s", "intra_node_GB/s", "usd/h"], rows)
    emit({"gpus": [{k: v for k, v in g.__dict__.items() if k != "provenance"} for g in gs]}, table, json_out)


@handle_errors
def schema(json_out: JsonOpt = False) -> None:
    """Print the JSON Schema of plan files."""
    from planner.plans.schema import Plan

    emit(Plan.model_json_schema(), json.dumps(Plan.model_json_schema(), indent=2), json_out)


def register(app: typer.Typer) -> None:
    app.command("loads")(loads)
    app.command("models")(models)
    app.command("gpus")(gpus)
    app.command("schema")(schema)
