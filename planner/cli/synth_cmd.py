"""`moeplan synth`: a seeded, SYNTHETIC DeepSeek-scale load trace with drift."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner.cli._output import emit
from planner.cli.options import JsonOpt

__all__ = ["synth"]


def synth(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the trace (.npz).")],
    steps: Annotated[int, typer.Option("--steps", help="Steps (forward passes).")] = 400,
    layers: Annotated[int, typer.Option("--layers", help="MoE layers.")] = 58,
    num_experts: Annotated[int, typer.Option("--num-experts", help="Routed experts per layer.")] = 256,
    top_k: Annotated[int, typer.Option("--top-k", help="Experts per token.")] = 8,
    batch_tokens: Annotated[int, typer.Option("--batch-tokens", help="Tokens in one step (one forward pass).")] = 8192,
    drift: Annotated[float, typer.Option("--drift", help="Log-space random-walk std of expert popularity per step.")] = 0.02,
    first_layer: Annotated[int, typer.Option("--first-layer", help="Hidden-layer id of the first MoE layer (DeepSeek-V3: 3).")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Write a SYNTHETIC, seeded DeepSeek-scale load trace with drift (for benchmarks and what-ifs).

    The calibration figures place the experts on 32 EP ranks, or on the largest rank count up to 32
    that divides the experts (8 for 8 or 48 experts)."""
    from planner.inputs.readers import write_loads_npz
    from planner.inputs.synthetic import calibration_stats, synthetic_trace

    loads = synthetic_trace(num_steps=steps, num_layers=layers, num_experts=num_experts, top_k=top_k,
                            tokens_per_step=batch_tokens, drift=drift, first_layer=first_layer, seed=seed)
    write_loads_npz(loads, output)
    stats = calibration_stats(loads, ep_ranks=max(d for d in range(1, 33) if num_experts % d == 0))
    emit({"output": str(output), "shape": list(loads.shape), "calibration": stats},
         f"wrote synthetic trace {list(loads.shape)} to {output}\ncalibration: {stats}", json_out)
