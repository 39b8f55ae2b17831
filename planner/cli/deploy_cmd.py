"""`moeplan deploy`: parallel layouts and the prefill/decode split for a GPU budget or a rate, under an SLO."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit, progress
from planner.cli.options import (
    ActivationsOpt,
    ExpertsOpt,
    JsonOpt,
    KvOpt,
    Load,
    MemoryFractionOf,
    MemoryFractionOfOpt,
    MemoryUtilizationOpt,
    ModelOpt,
    Objective,
    WeightsOpt,
    precision_overrides,
    read_loads_arg,
)
from planner.errors import InputError

__all__ = ["deploy"]


def deploy(
    model: ModelOpt,
    gpu: Annotated[str, typer.Option("--gpu", "-g", help="GPU profile: an id or vendor name (h100, h200, ...) or a GPU profile YAML.")],
    ttft_ms: Annotated[float, typer.Option("--ttft-ms", help="TTFT limit in ms at the percentile.")],
    tpot_ms: Annotated[float, typer.Option("--tpot-ms", help="TPOT limit in ms at the percentile.")],
    gpus: Annotated[Optional[int], typer.Option("--gpus", help="GPU budget: serve the most within this many GPUs.")] = None,
    rate: Annotated[Optional[float], typer.Option("--rate", help="Target rate in requests/s: serve it with the fewest GPUs.")] = None,
    percentile: Annotated[float, typer.Option("--percentile", help="Percentile the TTFT and TPOT limits apply to.")] = 90.0,
    trace: Annotated[Optional[str], typer.Option("--trace", help="Request trace (Azure, Mooncake, BurstGPT format) or builtin:NAME.")] = None,
    isl: Annotated[Optional[int], typer.Option("--isl", help="Prompt tokens of every request (with --osl; Poisson arrivals).")] = None,
    osl: Annotated[Optional[int], typer.Option("--osl", help="Output tokens of every request (with --isl).")] = None,
    loads: Annotated[Optional[list[str]], typer.Option("--loads", "-l", help="Measured expert loads: a replica plan per EP size sets each MoE layout's balancedness.")] = None,
    replicas: Annotated[Optional[Path], typer.Option("--replicas", help="Replica plan (from `moeplan replicas -o`): MoE layouts take its EP size, slots and balancedness.")] = None,
    balancedness: Annotated[Optional[str], typer.Option("--balancedness", help="Mean / max GPU load of a MoE layer (e.g. measured on your engine): B for every EP size, or EP=B[,EP=B...] (4=0.85,8=0.7) for those EP sizes; instead of the default; not with --loads or --replicas.")] = None,
    objective: Annotated[Objective, typer.Option("--objective", help="With --gpus: max_rate (serve the most) or max_rate_per_gpu (DistServe's objective).")] = Objective.max_rate,
    node_local: Annotated[bool, typer.Option("--node-local", help="Prefill and decode of a request share a node (DistServe's low node-affinity).")] = False,
    load: Annotated[Load, typer.Option("--load", help="open (default): requests arrive at a rate, deployments ranked by goodput; closed: a fixed number of clients, ranked by the rate served at the most clients meeting the SLO in steady state (needs --gpus).")] = Load.open,
    steady_cap: Annotated[bool, typer.Option("--steady-cap/--no-steady-cap", help="Cap each deployment's goodput at the rate its pools sustain (default); --no-steady-cap: the finite probes' answer alone (DistServe's protocol).")] = True,
    num_requests: Annotated[Optional[int], typer.Option("--requests", help="Requests per simulation (default: three times the largest decode batch, 300-3000); with --isl/--osl also the workload's length (default 3000; 98,304 with --load closed).")] = None,
    weights: WeightsOpt = None,
    experts: ExpertsOpt = None,
    kv: KvOpt = None,
    activations: ActivationsOpt = None,
    memory_utilization: MemoryUtilizationOpt = 0.9,
    memory_fraction_of: MemoryFractionOfOpt = MemoryFractionOf.total,
    time_limit_s: Annotated[float, typer.Option("--time-limit-s", help="Seconds each integer program may take.")] = 30.0,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the Pareto front (tokens/s/GPU vs tokens/s/user) as a PNG.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the deployment plan JSON here (atomically).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Search layouts and xPyD counts under an SLO; compare with aggregated serving; print a ranked table."""
    from planner.deploy import plan_deployment
    from planner.inputs import SLO, read_trace
    from planner.plans.io import write_plan

    if trace is not None and (isl is not None or osl is not None):
        raise InputError("give --trace or --isl/--osl, not both", param="isl")
    workload = read_trace(trace) if trace is not None else None
    slo = SLO(ttft_ms, tpot_ms, attainment_target=_share(percentile), rule="percentile")
    result = plan_deployment(
        model, gpu, slo, workload, num_gpus=gpus, rate_req_per_s=rate, isl=isl, osl=osl,
        loads=read_loads_arg(loads) if loads else None, replica_plan=_replica_plan(replicas, model),
        balancedness=_per_ep(balancedness), objective=objective.value, node_local=node_local, steady_state_cap=steady_cap, load=load.value, num_requests=num_requests, time_limit_s=time_limit_s,
        precision=precision_overrides(weights, experts, kv, activations),
        memory_utilization=memory_utilization, memory_fraction_of=memory_fraction_of.value,
        progress=progress("deploy"),
    )
    if output is not None:
        write_plan(result.plan, output)
    if plot is not None:
        result.plot(plot)
    human = result.table() + "\nplan verified (re-simulated)" + (f"; written to {output}" if output else "")
    emit(result.to_dict(), human, json_out)


def _share(percentile: float) -> float:
    if not 0 < percentile <= 100:
        raise InputError(f"must be in (0, 100], got {percentile!r}", param="percentile")
    return percentile / 100.0


def _per_ep(text: str | None) -> float | dict[int, float] | None:
    """``--balancedness 0.8`` as 0.8, ``4=0.85,8=0.7`` as ``{4: 0.85, 8: 0.7}`` (the search checks the values)."""
    if text is None:
        return None
    if "=" not in text:
        try:
            return float(text)
        except ValueError:
            raise InputError(f"expected a fraction such as 0.8 or EP=B pairs such as 8=0.7, got {text!r}",
                             param="balancedness") from None
    out: dict[int, float] = {}
    for part in text.split(","):
        ep, sep, b = part.strip().partition("=")
        try:
            if not sep:
                raise ValueError
            key, value = int(ep), float(b)
        except ValueError:
            raise InputError(f"expected EP=B pairs such as 8=0.7, got {part.strip()!r}", param="balancedness") from None
        if key in out:
            raise InputError(f"EP {key} given twice", param="balancedness")
        out[key] = value
    return out


def _replica_plan(path, model):
    """The --replicas plan, verified (against the model deployed, which may be a profile file), or None."""
    if path is None:
        return None
    from planner.cli.plan_input import read_trusted_plan
    from planner.profiles import get_model

    return read_trusted_plan(path, kinds=("replicas",), role="--replicas plan", model=get_model(model))[0]
