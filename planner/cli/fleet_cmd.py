"""`moeplan fleet`: the cheapest mix of GPU types that serves a trace's request mix within an SLO (Mélange)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit, progress
from planner.cli.options import ActivationsOpt, ExpertsOpt, JsonOpt, KvOpt, WeightsOpt, precision_overrides
from planner.errors import InputError

__all__ = ["fleet"]


def fleet(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model id, Hugging Face name, profile YAML or config.json (capacities from the performance model; not needed with --profile-table).")] = None,
    gpu: Annotated[Optional[list[str]], typer.Option("--gpu", "-g", help="A GPU type to mix (repeat for each); default l4, a10g, l40s, a100-80g, h100, or the profile table's.")] = None,
    ttft_ms: Annotated[Optional[float], typer.Option("--ttft-ms", help="TTFT limit in ms at the percentile.")] = None,
    tpot_ms: Annotated[Optional[float], typer.Option("--tpot-ms", help="TPOT limit in ms at the percentile.")] = None,
    percentile: Annotated[float, typer.Option("--percentile", help="Percentile the TTFT and TPOT limits apply to.")] = 90.0,
    trace: Annotated[str, typer.Option("--trace", help="Request trace (Azure, Mooncake, BurstGPT format) or builtin:NAME whose sizes are bucketed.")] = "builtin:azure-2023-conv",
    rate: Annotated[Optional[float], typer.Option("--rate", help="Request rate to serve in req/s; default the trace's own.")] = None,
    price: Annotated[Optional[list[str]], typer.Option("--price", help="GPU=USD: price per GPU-hour of a type (repeat); default the GPU profile's indicative price.")] = None,
    available: Annotated[Optional[list[str]], typer.Option("--available", help="GPU=N: at most N GPUs of a type (repeat); default unlimited.")] = None,
    fleet_file: Annotated[Optional[Path], typer.Option("--fleet-file", help="YAML/JSON with the GPU types, their price_per_gpu_hour_usd and available_gpus (docs/fleet.md).")] = None,
    profile_table: Annotated[Optional[Path], typer.Option("--profile-table", help="CSV/YAML/JSON of max_rate_req_per_s per GPU type and request size (Mélange's profile) instead of the performance model.")] = None,
    input_edges: Annotated[Optional[str], typer.Option("--input-edges", help="Comma-separated upper edges of the prompt-length buckets in tokens (default 256,1024,4096,16384,65536).")] = None,
    output_edges: Annotated[Optional[str], typer.Option("--output-edges", help="Comma-separated upper edges of the output-length buckets in tokens (default 64,256,1024).")] = None,
    slices: Annotated[Optional[int], typer.Option("--slices", help="Mélange's slice factor: each bucket served in this many equal slices (default: any split).")] = None,
    max_instance_gpus: Annotated[int, typer.Option("--max-instance-gpus", help="Largest serving instance tried per GPU type, in GPUs (beyond a node: one pipeline stage per node).")] = 16,
    balancedness: Annotated[float, typer.Option("--balancedness", help="MoE balancedness (mean over max GPU load) of the latency model (default 1: even routing).")] = 1.0,
    num_requests: Annotated[int, typer.Option("--requests", help="Requests per simulated rate probe.")] = 300,
    weights: WeightsOpt = None,
    experts: ExpertsOpt = None,
    kv: KvOpt = None,
    activations: ActivationsOpt = None,
    time_limit_s: Annotated[float, typer.Option("--time-limit-s", help="Seconds the covering program (and each baseline) may take.")] = 10.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the rate probes' Poisson arrivals.")] = 0,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the bucket assignment and the baselines' costs as a PNG.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the fleet plan JSON here (atomically).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Cheapest GPU mix for a trace's request sizes under an SLO; compare with single-type fleets."""
    from planner.cluster import plan_fleet
    from planner.cluster.fleet_buckets import DEFAULT_INPUT_EDGES, DEFAULT_OUTPUT_EDGES, parse_edges
    from planner.cluster.fleet_inputs import parse_assignments, read_fleet_file
    from planner.inputs import SLO, read_trace
    from planner.plans.io import write_plan

    prices = parse_assignments(price, "prices")
    avail = parse_assignments(available, "available_gpus", integer=True)
    gpus = list(gpu) if gpu else None
    if fleet_file is not None:
        f_gpus, f_prices, f_avail = read_fleet_file(fleet_file)
        gpus = gpus or f_gpus
        prices = {**f_prices, **prices}  # flags override the file
        avail = {**f_avail, **avail}
    slo = None
    if ttft_ms is not None or tpot_ms is not None:
        if ttft_ms is None or tpot_ms is None:
            raise InputError("give both TTFT and TPOT limits", param="ttft_ms" if ttft_ms is None else "tpot_ms")
        if not 0 < percentile <= 100:
            raise InputError(f"must be in (0, 100], got {percentile!r}", param="percentile")
        slo = SLO(ttft_ms, tpot_ms, attainment_target=percentile / 100.0, rule="percentile")
    result = plan_fleet(
        model, gpus, slo, read_trace(trace), rate_req_per_s=rate, prices=prices, available_gpus=avail,
        profile_table=profile_table,
        input_edges=parse_edges(input_edges, "input_edges") if input_edges else DEFAULT_INPUT_EDGES,
        output_edges=parse_edges(output_edges, "output_edges") if output_edges else DEFAULT_OUTPUT_EDGES,
        slices=slices, precision=precision_overrides(weights, experts, kv, activations), balancedness=balancedness,
        max_instance_gpus=max_instance_gpus, num_requests=num_requests, time_limit_s=time_limit_s, seed=seed,
        progress=progress("fleet"),
    )
    if output is not None:
        write_plan(result.plan, output)
    if plot is not None:
        result.plot(plot)
    human = result.table() + "\nplan verified" + (f"; written to {output}" if output else "")
    emit(result.to_dict(), human, json_out)
