"""`moeplan collect`: run a Hugging Face MoE model on CPU over a seeded token stream and write the
expert loads it measured (``.npz``, one step per batch) for `moeplan replicas` to plan from."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from planner.cli._output import emit, progress
from planner.cli.options import JsonOpt
from planner.common.tables import format_table
from planner.errors import InputError

__all__ = ["collect"]

_PROGRESS_EVERY_S = 2.0


def collect(
    model: Annotated[str, typer.Option("--model", "-m", help="Built-in tiny model (qwen3-moe-tiny, mixtral-tiny, olmoe-tiny, deepseek-v3-tiny) or a local model directory (config.json + weights).")],
    tokens: Annotated[int, typer.Option("--tokens", help="Tokens to run in total.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Write the loads (.npz) here (atomically).")],
    batch_tokens: Annotated[int, typer.Option("--batch-tokens", help="Tokens in one forward pass (one sequence); one step of the loads each.")] = 2048,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the Zipf token stream (the tiny models' routers were fitted on seed 12345).")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Measure expert loads: count every router's chosen experts per batch and write them as .npz."""
    for flag, value, low in (("--tokens", tokens, 1), ("--batch-tokens", batch_tokens, 1), ("--seed", seed, 0)):
        if value < low:
            raise InputError(f"{flag}: must be >= {low}, got {value}")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir() or output.is_dir():  # fail before the model is built, not after the run
        raise InputError(f"{output}: " + ("is a directory, expected a file path" if output.is_dir()
                                          else f"output directory {parent} does not exist"))
    from planner.inputs.readers import write_loads_npz
    from planner.runtime import hf

    started = time.perf_counter()
    net = hf.load_model(model)
    loaded_s = time.perf_counter() - started
    batches = hf.token_stream(net, tokens, batch_tokens=batch_tokens, seed=seed)
    last = [time.perf_counter()]
    say = progress("collect")

    def tick(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= _PROGRESS_EVERY_S and done < total:
            last[0] = now
            say(f"{done}/{total} tokens ({100 * done / total:.0f} %)")

    loads = hf.collect_loads(net, batches, name=hf.model_name(net), progress=tick,
                             provenance={"stream": "zipf-1 over the vocabulary", "seed": str(seed),
                                         "batch_tokens": str(batch_tokens)})
    write_loads_npz(loads, output)
    wall_s = time.perf_counter() - started
    top_k = int(loads.provenance["top_k"].split(",")[0])
    stats = loads.layer_stats()
    layers = [{"layer": s.layer, "tokens": int(round(s.total / top_k)), "assignments": int(round(s.total)),
               "max_over_mean": s.max_over_mean, "cv": s.cv, "hottest_expert": s.hottest_expert,
               "hottest_share": s.hottest_share} for s in stats]
    rows = [[d["layer"], d["tokens"], f"{d['max_over_mean']:.2f}", f"{d['cv']:.2f}", d["hottest_expert"],
             f"{100 * d['hottest_share']:.2f}"] for d in layers]
    title = (f"{loads.model}: {tokens} tokens in {loads.num_steps} step(s) of <= {batch_tokens} tokens, seed {seed}, "
             f"{loads.num_experts} experts, top-{loads.provenance['top_k']}")
    human = (format_table(["layer", "tokens", "max/mean", "cv", "hottest_expert", "hottest_share_%"], rows, title=title)
             + f"\nloads written to {output} ({loads.num_steps} steps x {loads.num_layers} layers x "
             f"{loads.num_experts} experts) in {wall_s:.1f} s (model ready in {loaded_s:.1f} s)")
    result = {"output": str(output), "model": loads.model, "tokens": tokens, "batch_tokens": batch_tokens, "seed": seed,
              "steps": loads.num_steps, "num_experts": loads.num_experts, "top_k": top_k,
              "layer_ids": list(loads.layer_ids), "shape": list(loads.shape), "layers": layers,
              "provenance": dict(loads.provenance), "wall_s": wall_s}
    emit(result, human, json_out)

