"""`moeplan replan`: when to re-plan, simulated on a load trace with drift."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit, progress
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
from planner.errors import InputError

__all__ = ["replan"]


def _numbers(text: str, kind, what: str) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what}: expected comma-separated numbers, got {text!r}") from None


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
    json_out: JsonOpt = False,
) -> None:
    """Simulate re-planning policies on a trace with drift: b over time, weights moved, a recommendation."""
    from planner.replicas import (
        ReplanPolicy,
        recommend_policy,
        replan_table,
        simulate_replanning,
    )

    data = read_loads_arg(loads)
    policies = [ReplanPolicy(every_steps=n, window_steps=window, check_steps=check_steps) for n in _numbers(every, int, "--every")]
    policies += [ReplanPolicy(threshold_b=t, window_steps=window, check_steps=check_steps) for t in _numbers(thresholds, float, "--thresholds")]

    say = progress("replan")

    def done(i, n, label):
        say(f"policy {i}/{n} ({label}) done")

    results = simulate_replanning(data, model, policies, num_gpus=gpus, num_nodes=nodes, redundant_slots=redundant,
                                  algorithm=algorithm.value, sample_steps=sample_steps, progress=done)
    best = recommend_policy(results, tolerance_b=tolerance_b)
    if plot is not None:
        from planner.replicas import plot_replanning

        plot_replanning(results, plot, first_step=results[0].replan_steps[0], title=f"{model} on {gpus} GPUs: re-planning")
    human = (
        replan_table(results, best)
        + f"\nrecommended (*): {best.policy.label}, window {best.policy.window_steps} steps: mean b {best.mean_b:.4f}, "
        f"{best.num_replans} re-plans, {best.bytes_moved / 1e9:.2f} GB moved "
        f"(cheapest policy within {tolerance_b} of the best mean b)"
    )
    emit(
        {
            "recommended": best.policy.label,
            "policies": [
                {"policy": r.policy.label, "every_steps": r.policy.every_steps, "threshold_b": r.policy.threshold_b,
                 "window_steps": r.policy.window_steps, "mean_b": r.mean_b, "replans": r.num_replans,
                 "replan_steps": list(r.replan_steps), "bytes_moved": r.bytes_moved,
                 "balancedness_per_step": r.balancedness_per_step.round(6).tolist()}
                for r in results
            ],
        },
        human,
        json_out,
    )
