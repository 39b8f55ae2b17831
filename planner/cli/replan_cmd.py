"""`moeplan replan` (when to re-plan) and `moeplan synth` (seeded synthetic DeepSeek-scale traces)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit, handle_errors
from planner.errors import InputError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def _numbers(text: str, kind, what: str) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what}: expected comma-separated numbers, got {text!r}") from None


@handle_errors
def replan(
    loads: Annotated[list[str], typer.Argument(help="Per-step load trace(s) ([steps, layers, experts]).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model id or name.")],
    gpus: Annotated[int, typer.Option("--gpus", "-d", help="Number of GPUs (EP ranks).")],
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="Number of nodes.")] = 1,
    redundant: Annotated[Optional[int], typer.Option("--redundant", "-r", help="Redundant slots per layer.")] = None,
    every: Annotated[str, typer.Option("--every", help="Periodic policies: re-plan every N steps (comma-separated).")] = "10,25,50,100",
    thresholds: Annotated[str, typer.Option("--thresholds", help="Trigger policies: re-plan when recent b falls below (comma-separated).")] = "0.8,0.85",
    window: Annotated[int, typer.Option("--window", help="Each plan is made from the last STEPS steps.")] = 100,
    check_steps: Annotated[int, typer.Option("--check-steps", help="Trigger policies average b over this many recent steps.")] = 10,
    algorithm: Annotated[str, typer.Option("--algorithm", help="stepaware or eplb.")] = "stepaware",
    tolerance_b: Annotated[float, typer.Option("--tolerance-b", help="Recommend the cheapest policy within this much b of the best.")] = 0.005,
    sample_steps: Annotated[Optional[int], typer.Option("--sample-steps", help="Steps each re-plan samples from its window.")] = 50,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write balancedness over time per policy as a PNG.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Simulate re-planning policies on a trace with drift: b over time, weights moved, a recommendation."""
    from planner.inputs.readers import read_loads
    from planner.replicas import (
        ReplanPolicy,
        recommend_policy,
        replan_table,
        simulate_replanning,
    )

    data = read_loads(loads if len(loads) > 1 else loads[0])
    policies = [ReplanPolicy(every_steps=n, window_steps=window, check_steps=check_steps) for n in _numbers(every, int, "every")]
    policies += [ReplanPolicy(threshold_b=t, window_steps=window, check_steps=check_steps) for t in _numbers(thresholds, float, "thresholds")]

    def progress(i, n, label):
        typer.echo(f"moeplan: replan: policy {i}/{n} ({label}) done", err=True)

    results = simulate_replanning(data, model, policies, num_gpus=gpus, num_nodes=nodes, redundant_slots=redundant,
                                  algorithm=algorithm, sample_steps=sample_steps, progress=progress)
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


@handle_errors
def synth(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the trace (.npz).")],
    steps: Annotated[int, typer.Option("--steps", help="Steps (forward passes).")] = 400,
    layers: Annotated[int, typer.Option("--layers", help="MoE layers.")] = 58,
    experts: Annotated[int, typer.Option("--experts", help="Routed experts per layer.")] = 256,
    top_k: Annotated[int, typer.Option("--top-k", help="Experts per token.")] = 8,
    tokens: Annotated[int, typer.Option("--tokens", help="Tokens per step.")] = 8192,
    drift: Annotated[float, typer.Option("--drift", help="Log-space random-walk std of expert popularity per step.")] = 0.02,
    first_layer: Annotated[int, typer.Option("--first-layer", help="Hidden-layer id of the first MoE layer (DeepSeek-V3: 3).")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Write a SYNTHETIC, seeded DeepSeek-scale load trace with drift (for benchmarks and what-ifs)."""
    from planner.inputs.readers import write_loads_npz
    from planner.inputs.synthetic import calibration_stats, synthetic_trace

    loads = synthetic_trace(num_steps=steps, num_layers=layers, num_experts=experts, top_k=top_k,
                            tokens_per_step=tokens, drift=drift, first_layer=first_layer, seed=seed)
    write_loads_npz(loads, output)
    stats = calibration_stats(loads)
    emit({"output": str(output), "shape": list(loads.shape), "calibration": stats},
         f"wrote synthetic trace {list(loads.shape)} to {output}\ncalibration: {stats}", json_out)


def register(app: typer.Typer) -> None:
    app.command("replan")(replan)
    app.command("synth")(synth)
