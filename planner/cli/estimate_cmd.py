"""`moeplan estimate`: one configuration -> TTFT, TPOT, throughput and memory, with the breakdown."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit
from planner.cli.options import (
    ActivationsOpt,
    ExpertsOpt,
    JsonOpt,
    KvOpt,
    MemoryFractionOf,
    MemoryFractionOfOpt,
    MemoryUtilizationOpt,
    ModelOpt,
    WeightsOpt,
    precision_overrides,
)

__all__ = ["estimate"]


def estimate(
    model: ModelOpt,
    gpu: Annotated[str, typer.Option("--gpu", "-g", help="GPU profile: an id or vendor name (h100, l4, ...) or a GPU profile YAML.")],
    batch: Annotated[int, typer.Option("--batch", help="Requests per DP-attention rank, prefilled and decoded as one static batch.")],
    isl: Annotated[int, typer.Option("--isl", help="Prompt (input) tokens per request.")],
    osl: Annotated[int, typer.Option("--osl", help="Output tokens per request (at least 2).")],
    tp: Annotated[int, typer.Option("--tp", help="Attention tensor-parallel ranks.")] = 1,
    pp: Annotated[int, typer.Option("--pp", help="Pipeline stages.")] = 1,
    dp: Annotated[int, typer.Option("--dp", help="Attention data-parallel ranks (DP-attention groups).")] = 1,
    ep: Annotated[Optional[int], typer.Option("--ep", help="Expert-parallel ranks; default tp x dp.")] = None,
    moe_tp: Annotated[int, typer.Option("--moe-tp", help="Tensor-parallel ranks inside each expert; ep x moe-tp must equal tp x dp.")] = 1,
    replicas: Annotated[Optional[Path], typer.Option("--replicas", help="Replica plan (from `moeplan replicas -o`): its slots per GPU and replayed balancedness.")] = None,
    uncalibrated: Annotated[bool, typer.Option("--uncalibrated", help="Use the default efficiency factors even where measured tables exist.")] = False,
    profile: Annotated[Optional[Path], typer.Option("--profile", help="Your own op-timing CSV (from `moeplan profile`): fit the GEMM, memory-op and link factors to it, on top of the shipped calibration (or the defaults with --uncalibrated).")] = None,
    balancedness: Annotated[Optional[float], typer.Option("--balancedness", help="Mean over max GPU load of the routed experts when no --replicas plan gives it; default 1 (even routing).")] = None,
    weights: WeightsOpt = None,
    experts: ExpertsOpt = None,
    kv: KvOpt = None,
    activations: ActivationsOpt = None,
    memory_utilization: MemoryUtilizationOpt = 0.9,
    memory_fraction_of: MemoryFractionOfOpt = MemoryFractionOf.total,
    max_batch_tokens: Annotated[int, typer.Option("--max-batch-tokens", help="Tokens per forward step the engine reserves activations for, over the instance.")] = 8192,
    json_out: JsonOpt = False,
) -> None:
    """Estimate TTFT, TPOT, tokens/s per GPU and per user, and memory per GPU of one static batch."""
    from planner.perf.calibration import profile_factors
    from planner.perf.estimate import estimate as run_estimate
    from planner.perf.factors import DEFAULT_FACTORS
    from planner.cli.plan_input import read_trusted_plan

    plan = None
    if replicas is not None:  # checked against the model estimated, which may be a profile file
        from planner.profiles import get_model

        plan = read_trusted_plan(replicas, kinds=("replicas",), role="--replicas plan", model=get_model(model))[0]
    factors = None
    if profile is not None:
        factors = profile_factors(profile, gpu, base=DEFAULT_FACTORS if uncalibrated else None)
    result = run_estimate(
        model, gpu, tp=tp, pp=pp, dp=dp, ep=ep, moe_tp=moe_tp, batch=batch, isl=isl, osl=osl, replica_plan=plan,
        balancedness=balancedness, calibrated=not uncalibrated, factors=factors,
        precision=precision_overrides(weights, experts, kv, activations),
        memory_utilization=memory_utilization, memory_fraction_of=memory_fraction_of.value,
        max_batch_tokens=max_batch_tokens,
    )  # fmt: skip
    emit(result.to_dict(), result.table(), json_out)

