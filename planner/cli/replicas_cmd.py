"""`moeplan replicas`, `moeplan verify`, `moeplan export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit, handle_errors, warn
from planner.errors import InputError
from planner.plans.export import TARGETS, export_plan
from planner.common.fileio import atomic_write_text
from planner.plans.io import read_plan, write_plan
from planner.plans.verify import VerifyReport, verify_plan
from planner.common.tables import format_table

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def _read(paths: list[str], num_experts: Optional[int] = None):
    from planner.inputs.readers import read_loads

    return read_loads(paths if len(paths) > 1 else paths[0], num_experts=num_experts)


@handle_errors
def replicas(
    loads: Annotated[list[str], typer.Argument(help="Expert-load file(s): .npz, .json, per-rank .csv (summed), or builtin:NAME.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model id, Hugging Face name, profile YAML or config.json.")],
    gpus: Annotated[int, typer.Option("--gpus", "-d", help="Number of GPUs (EP ranks) holding experts.")],
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="Number of nodes the GPUs sit in.")] = 1,
    redundant: Annotated[
        Optional[int],
        typer.Option("--redundant", "-r", help="Redundant slots per layer (per-layer mode: the average); default one per GPU, rounded so slots divide over GPUs."),
    ] = None,
    budget_gb: Annotated[Optional[float], typer.Option("--budget-gb", help="GB of expert replicas per GPU over all MoE layers (instead of --redundant).")] = None,
    auto_budget: Annotated[bool, typer.Option("--auto-budget", help="Sweep budgets and take the one maximising balancedness x KV tokens (needs --gpu).")] = False,
    mode: Annotated[str, typer.Option("--mode", help="uniform (same slots every layer; what engines load) or per-layer (knapsack over layers).")] = "uniform",
    algorithm: Annotated[str, typer.Option("--algorithm", help="stepaware (default; sees every step), eplb (DeepSeek's baseline) or none (engine default: contiguous, no replicas).")] = "stepaware",
    policy: Annotated[str, typer.Option("--policy", help="auto, hierarchical (replicas stay in their group's node) or global.")] = "auto",
    groups: Annotated[Optional[int], typer.Option("--groups", help="Expert groups for the hierarchical policy (default: the model's).")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", "-g", help="GPU profile: check that expert weights fit; needed for --auto-budget.")] = None,
    layout: Annotated[Optional[str], typer.Option("--layout", help="Parallel layout for the memory model with --auto-budget, e.g. tp1pp1dp8ep8 (default dpD epD).")] = None,
    window: Annotated[Optional[int], typer.Option("--window", help="Plan on the most recent STEPS steps (before the held-out ones).")] = None,
    holdout: Annotated[int, typer.Option("--holdout", help="Hold out the last STEPS steps and report replayed balancedness on them.")] = 0,
    split: Annotated[str, typer.Option("--split", help="even (engines) or optimal (LP dispatch weights; no engine export).")] = "even",
    sample_steps: Annotated[Optional[int], typer.Option("--sample-steps", help="The step-aware packer plans on at most this many steps.")] = 200,
    swap_time_s: Annotated[Optional[float], typer.Option("--swap-time-s", help="Seconds of swap search after packing (0 = off; default 1 s for windows of <= 8 steps, else off).")] = None,
    time_limit_s: Annotated[float, typer.Option("--time-limit-s", help="Time limit for LP/MILP solves.")] = 60.0,
    num_experts: Annotated[Optional[int], typer.Option("--num-experts", help="Experts per layer for CSV dumps that miss some experts.")] = None,
    certify_time_s: Annotated[float, typer.Option("--certify-time-s", help="Per layer: prove the gap with the exact MILP on layers of <= 32 experts (0 = off).")] = 0.0,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="With --auto-budget: write the budget sweep as a PNG.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the plan JSON here (atomically).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Plan expert replicas and their GPUs per MoE layer from measured loads; print a per-layer table."""
    from planner.replicas import plan_replicas

    data = _read(loads, num_experts)
    kwargs = dict(
        num_gpus=gpus, num_nodes=nodes, mode=mode, algorithm=algorithm, policy=policy, num_groups=groups, gpu=gpu,
        window_steps=window, holdout_steps=holdout, split=split, sample_steps=sample_steps,
        swap_time_limit_s=swap_time_s, time_limit_s=time_limit_s,
    )
    sweep_text, sweep = "", None
    if auto_budget:
        from planner.replicas import (
            budget_sweep,
            choose_budget,
            plot_budget_sweep,
            sweep_table,
        )

        if gpu is None:
            raise InputError("auto-budget: needs --gpu (the memory model decides what a replica costs in KV cache)")
        if redundant is not None or budget_gb is not None:
            raise InputError("auto-budget: give no --redundant / --budget-gb, the sweep chooses them")
        if mode != "uniform":
            raise InputError("auto-budget: sweeps uniform budgets; use --mode uniform")
        sweep = budget_sweep(data, model, gpu, num_gpus=gpus, num_nodes=nodes, layout=layout, window_steps=window,
                             holdout_steps=holdout, algorithm=algorithm, sample_steps=sample_steps)
        chosen = choose_budget(sweep)
        redundant = chosen.redundant_slots
        sweep_text = "budget sweep (throughput proxy = b x KV tokens; * = chosen):\n" + sweep_table(sweep, chosen) + "\n\n"
        if plot is not None:
            plot_budget_sweep(sweep, plot, title=f"{model} on {gpus} x {gpu}")
    elif plot is not None:
        raise InputError("plot: only with --auto-budget")
    plan = plan_replicas(data, model, redundant_slots=redundant, budget_gb=budget_gb, **kwargs)
    if output is not None:
        write_plan(plan, output)
    certs_text, certs = "", []
    if certify_time_s > 0:
        from planner.replicas import certificate_table, certify_plan

        certs = certify_plan(plan, data, time_limit_s=certify_time_s)
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


def _verify_table(report: VerifyReport) -> str:
    rows = [[c.name, "ok" if c.ok else "FAIL", c.detail] for c in report.checks]
    return format_table(["check", "result", "detail"], rows)


@handle_errors
def verify(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN", help="Plan JSON file.")],
    loads: Annotated[list[str], typer.Option("--loads", "-l", help="The load file(s) the plan was made from.")],
    num_experts: Annotated[Optional[int], typer.Option("--num-experts", help="Experts per layer for CSV dumps.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Recompute every invariant and metric of a plan without a solver; exit 2 if any check fails."""
    plan = read_plan(plan_path)
    report = verify_plan(plan, _read(loads, num_experts))
    emit(report.to_dict(), _verify_table(report), json_out)
    if not report.ok:
        c = report.failures[0]
        raise InputError(f"{plan_path}: plan fails verification: {c.name}: {c.detail}")


@handle_errors
def export(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN", help="Plan JSON file.")],
    target: Annotated[str, typer.Option("--target", "-t", help=f"Engine format: {', '.join(TARGETS)}.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (atomically).")],
    json_out: JsonOpt = False,
) -> None:
    """Write a replica plan in an engine's expert-placement format; refuse what the engine cannot express."""
    plan = read_plan(plan_path)
    exp = export_plan(plan, target)
    atomic_write_text(output, exp.text)
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
        "launch_hint": exp.launch_hint,
    }
    emit(result, f"wrote {target} placement to {output}\nlaunch with: {exp.launch_hint}", json_out)


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


def register(app: typer.Typer) -> None:
    app.command("replicas")(replicas)
    app.command("verify")(verify)
    app.command("export")(export)
