"""`moeplan replan`: when to re-plan, simulated on a load trace with drift."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit
from planner.cli.options import (
    GpusOpt,
    JsonOpt,
    ModelOpt,
    NodesOpt,
    RedundantOpt,
    ReplanAlgorithm,
    SampleStepsOpt,
    read_loads_arg,
)
from planner.cli.checks import Rule, check_value
from planner.common.limits import MAX_STEPS
from planner.errors import InputError

__all__ = ["replan"]


def _numbers(text: str, kind, what: str, rule) -> list:
    """Comma-separated numbers of one flag, each checked like a flag's value (:mod:`planner.cli.checks`)."""
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise InputError(f"{what}: expected comma-separated numbers, got {text!r}")
    for v in values:
        check_value(what, v, rule)
    return values


def replan(
    loads: Annotated[list[str], typer.Argument(metavar="LOADS", help="Per-step load trace(s) ([steps, layers, experts]).")],
    model: ModelOpt,
    gpus: GpusOpt,
    nodes: NodesOpt = 1,
    redundant: RedundantOpt = None,
    every: Annotated[str, typer.Option("--every", help="Periodic policies: re-plan every N steps (comma-separated).")] = "10,25,50,100",
    thresholds: Annotated[str, typer.Option("--thresholds", help="Trigger policies: re-plan when recent b falls below (comma-separated).")] = "0.8,0.85",
    window: Annotated[int, typer.Option("--window", metavar="STEPS", help="Each plan is made from the last STEPS steps.")] = 100,
    check_steps: Annotated[int, typer.Option("--check-steps", help="Trigger policies average b over this many recent steps.")] = 10,
    algorithm: Annotated[ReplanAlgorithm, typer.Option("--algorithm", help="Planner of every re-plan: stepaware or eplb.")] = ReplanAlgorithm.stepaware,
    tolerance_b: Annotated[float, typer.Option("--tolerance-b", help="Recommend the cheapest policy within this much b of the best.")] = 0.005,
    sample_steps: SampleStepsOpt = 50,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write balancedness over time per policy as a PNG.")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", "-g", help="GPU profile whose link bandwidths price every re-plan's moves in seconds on the fabric.")] = None,
    step_rate: Annotated[Optional[float], typer.Option("--step-rate", help="Engine steps (forward passes) per second: weigh balance gained against moves in seconds and steps, and recommend by net seconds saved (needs --gpu).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Simulate re-planning policies on a trace with drift: b over time, weights moved, a recommendation."""
    from planner.replicas import (
        ReplanPolicy,
        recommend_policy,
        recommend_wall_time,
        replan_table,
        simulate_replanning,
        static_policy,
        wall_time_rows,
        wall_time_table,
    )

    if step_rate is not None and gpu is None:
        raise InputError("the wall-time recommendation prices moves on a GPU's links: give --gpu too", param="step_rate_per_s")
    if step_rate is not None and not step_rate > 0:
        raise InputError(f"must be > 0, got {step_rate}", param="step_rate_per_s")

    policies = [ReplanPolicy(every_steps=n, window_steps=window, check_steps=check_steps)
                for n in _numbers(every, int, "--every", Rule(1, MAX_STEPS, True, "MAX_STEPS"))]
    policies += [ReplanPolicy(threshold_b=t, window_steps=window, check_steps=check_steps)
                 for t in _numbers(thresholds, float, "--thresholds", Rule(0.0, 1.0))]
    data = read_loads_arg(loads)

    def progress(i, n, label):
        typer.echo(f"moeplan: replan: policy {i}/{n} ({label}) done", err=True)

    results = simulate_replanning(data, model, policies, num_gpus=gpus, num_nodes=nodes, redundant_slots=redundant,
                                  algorithm=algorithm.value, sample_steps=sample_steps, gpu=gpu, progress=progress)
    best = recommend_policy(results, tolerance_b=tolerance_b)
    wall, wall_best = None, None
    if step_rate is not None:
        static = simulate_replanning(data, model, [static_policy(window)], num_gpus=gpus, num_nodes=nodes,
                                     redundant_slots=redundant, algorithm=algorithm.value, sample_steps=sample_steps,
                                     gpu=gpu)[0]
        wall = wall_time_rows([*results, static], static, step_rate)
        wall_best = recommend_wall_time(wall)
    if plot is not None:
        from planner.replicas import plot_replanning

        plot_replanning(results, plot, first_step=results[0].replan_steps[0], title=f"{model} on {gpus} GPUs: re-planning")
    human = (
        replan_table(results, best)
        + f"\nrecommended (*): {best.policy.label}, window {best.policy.window_steps} steps: mean b {best.mean_b:.4f}, "
        f"{best.num_replans} re-plans, {best.bytes_moved / 1e9:.2f} GB moved "
        f"(cheapest policy within {tolerance_b} of the best mean b)"
    )
    if wall is not None:
        steps = results[0].balancedness_per_step.size
        human += (
            f"\n\nin wall time at {step_rate:g} steps/s on {gpu} links ({steps} steps = {steps / step_rate:.1f} s; "
            f"static plan: mean b {static.mean_b:.4f}):\n" + wall_time_table(wall, wall_best)
            + f"\nrecommended in wall time (*): {wall_best.policy}: saves at most {wall_best.saved_s:.3f} s of MoE time "
            f"for {wall_best.fabric_s:.3f} s on the fabric ({wall_best.moved_gb:.2f} GB), net {wall_best.net_s:+.3f} s"
        )
    if gpu is not None and wall is None:
        human += "\nfabric seconds per policy: " + ", ".join(
            f"{r.policy.label} {sum(r.fabric_seconds):.3f} s" for r in results)
    emit(
        {
            "recommended": best.policy.label,
            "policies": [
                {"policy": r.policy.label, "every_steps": r.policy.every_steps, "threshold_b": r.policy.threshold_b,
                 "window_steps": r.policy.window_steps, "mean_b": r.mean_b, "replans": r.num_replans,
                 "replan_steps": list(r.replan_steps), "bytes_moved": r.bytes_moved,
                 "balancedness_per_step": r.balancedness_per_step.round(6).tolist(),
                 "fabric_seconds": None if r.fabric_seconds is None else sum(r.fabric_seconds)}
                for r in results
            ],
            "step_rate_per_s": step_rate,
            "wall_time": None if wall is None else [w.to_dict() for w in wall],
            "recommended_wall_time": None if wall_best is None else wall_best.policy,
        },
        human,
        json_out,
    )
