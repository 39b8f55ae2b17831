"""`moeplan replicas`: expert replicas and their GPUs per MoE layer, from measured loads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit, warn
from planner.cli.options import (
    Algorithm,
    GpusOpt,
    JsonOpt,
    LoadsArg,
    Mode,
    ModelOpt,
    NodesOpt,
    NumExpertsOpt,
    RankFiles,
    RankFilesOpt,
    Policy,
    RedundantOpt,
    SampleStepsOpt,
    Split,
    read_loads_arg,
)
from planner.errors import InputError
from planner.plans.io import write_plan

__all__ = ["replicas"]


def replicas(
    loads: LoadsArg,
    model: ModelOpt,
    gpus: GpusOpt,
    nodes: NodesOpt = 1,
    redundant: RedundantOpt = None,
    budget_gb: Annotated[Optional[float], typer.Option("--budget-gb", help="GB of expert replicas per GPU over all MoE layers (instead of --redundant).")] = None,
    auto_budget: Annotated[bool, typer.Option("--auto-budget", help="Sweep budgets and take the one maximising balancedness x KV tokens (needs --gpu).")] = False,
    mode: Annotated[Mode, typer.Option("--mode", help="uniform (same slots every layer; what engines load) or per-layer (knapsack over layers; --redundant is the average).")] = Mode.uniform,
    algorithm: Annotated[Algorithm, typer.Option("--algorithm", help="stepaware (sees every step), eplb (DeepSeek's baseline) or none (engine default: contiguous, no replicas).")] = Algorithm.stepaware,
    policy: Annotated[Policy, typer.Option("--policy", help="auto, hierarchical (replicas stay in their group's node) or global.")] = Policy.auto,
    groups: Annotated[Optional[int], typer.Option("--groups", help="Expert groups for the hierarchical policy (default: the model's).")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", "-g", help="GPU profile (id, vendor name or YAML): check that expert weights fit; needed for --auto-budget.")] = None,
    layout: Annotated[Optional[str], typer.Option("--layout", help="Parallel layout for the memory model with --auto-budget, e.g. tp1pp1dp8ep8 (default dpD epD).")] = None,
    window: Annotated[Optional[int], typer.Option("--window", metavar="STEPS", help="Plan on the most recent STEPS steps (before the held-out ones).")] = None,
    holdout: Annotated[int, typer.Option("--holdout", metavar="STEPS", help="Hold out the last STEPS steps and report replayed balancedness on them.")] = 0,
    split: Annotated[Split, typer.Option("--split", help="even (engines) or optimal (LP dispatch weights; no engine export).")] = Split.even,
    sample_steps: SampleStepsOpt = 200,
    swap_evaluations: Annotated[Optional[int], typer.Option("--swap-evaluations", help="Work budget of the swap search after packing: candidate swaps x steps evaluated, about 5e7 per second on one core (0 = off; default 5e7 for windows of <= 8 steps, else off). Work, not seconds: the same inputs give the same plan on any machine.")] = None,
    swap_time_limit_s: Annotated[Optional[float], typer.Option("--swap-time-limit-s", help="Opt-in wall-clock cap of the swap search (0 = off; default none). When it stops the search the plan may differ between runs; the solve report says time_limit.")] = None,
    time_limit_s: Annotated[float, typer.Option("--time-limit-s", help="Seconds each LP/MILP solve may take: the optimal-split LPs and, with --certify, each layer's certificate.")] = 60.0,
    num_experts: NumExpertsOpt = None,
    rank_files: RankFilesOpt = RankFiles.auto,
    certify: Annotated[bool, typer.Option("--certify", help="Prove the gap of every layer of <= 32 experts with the exact MILP, each bounded by --time-limit-s.")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="With --auto-budget: write the budget sweep as a PNG.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the plan JSON here (atomically).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Plan expert replicas and their GPUs per MoE layer from measured loads; print a per-layer table."""
    from planner.replicas import plan_replicas

    data = read_loads_arg(loads, num_experts, rank_files)
    if plot is not None and not auto_budget:
        raise InputError("only with --auto-budget", param="plot")
    plan = plan_replicas(
        data, model, gpu, num_gpus=gpus, num_nodes=nodes, redundant_slots=redundant, budget_gb=budget_gb,
        budget="auto" if auto_budget else None, layout=layout, mode=mode.value, algorithm=algorithm.value,
        policy=policy.value, num_groups=groups, window_steps=window, holdout_steps=holdout, split=split.value,
        sample_steps=sample_steps, swap_evaluations=swap_evaluations, swap_time_limit_s=swap_time_limit_s,
        time_limit_s=time_limit_s,
    )
    if plan.inputs.parameters.get("loads_rows_as_moe_layers"):
        warn(f"{data.source}: {data.num_layers} rows without hidden-layer ids read as {model}'s MoE layers "
             f"{plan.replicas.layers[0]}..{plan.replicas.layers[-1]} (row i = MoE layer i)")
    sweep, sweep_text = plan.budget_sweep, ""
    if sweep is not None:
        from planner.replicas import plot_budget_sweep, sweep_table

        chosen = next(p for p in sweep if p.redundant_slots == plan.inputs.parameters["redundant_slots"])
        sweep_text = "budget sweep (throughput proxy = b x KV tokens; * = chosen):\n" + sweep_table(sweep, chosen) + "\n\n"
        if plot is not None:
            plot_budget_sweep(sweep, plot, title=f"{model} on {gpus} x {gpu}")
    if output is not None:
        write_plan(plan, output)
    certs_text, certs = "", []
    if certify:
        from planner.replicas.certify import certificate_table, certify_plan

        certs = certify_plan(plan, data, time_limit_s=time_limit_s)
        certs_text = ("\n\nMILP certificates (sampled planning steps):\n" + certificate_table(certs)) if certs else (
            "\n\nno MILP certificate: layers with more than 32 experts or dispatch weights are not certified")
    rep = plan.solve_report
    result = {
        "output": str(output) if output else None,
        "verified": True,
        "solve": rep.to_dict(),
        "certificates": [c.to_dict() for c in certs],
        "budget_sweep": [p.to_dict() for p in sweep] if sweep else None,
        "plan": plan.model_dump(mode="json"),
    }
    human = sweep_text + plan.summary() + certs_text + f"\nsolved in {rep.wall_time_s:.3f} s; plan verified"
    if output is not None:
        human += f"; written to {output}"
    emit(result, human, json_out)
