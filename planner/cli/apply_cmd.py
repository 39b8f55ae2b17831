"""`moeplan apply`: move running torch workers to a new plan, verifying every step, and measure it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit
from planner.cli.options import Dispatch, NoRelabelOpt, SpareSlotsOpt

__all__ = ["apply"]


def _source(model: Optional[str], new, num_tokens: int, seed: int, hidden: int, intermediate: int):
    """(model layers, tokens, label) for the plan: the ``--model`` source, default the plan's model
    when it is one this machine can run (:mod:`planner.runtime.sources`)."""
    from planner.errors import InputError
    from planner.profiles import get_model
    from planner.runtime.sources import SYNTHETIC, is_runnable, load_source

    name = model or new.inputs.model
    if model is None and not is_runnable(name):
        from planner.runtime.hf import TINY_MODELS

        raise InputError(f"--model: the plan's model {name!r} has no weights to run here; pass --model with a tiny "
                         f"Hugging Face MoE ({', '.join(TINY_MODELS)}), a local model directory, or {SYNTHETIC!r}")
    rp = new.replicas
    top_k = get_model(new.inputs.model).top_k if name == SYNTHETIC else None
    layers, x, layer_ids, label = load_source(name, num_experts=rp.num_experts, top_k=top_k, num_layers=len(rp.layers),
                                              num_tokens=num_tokens, token_seed=seed, hidden=hidden, intermediate=intermediate)
    if name != SYNTHETIC and list(layer_ids) != list(rp.layers):
        raise InputError(f"--model: {name!r} has MoE layers {list(layer_ids)}, but the plan's rows are layers {list(rp.layers)}")
    return layers, x, label


def _round_table(rounds) -> str:
    from planner.common.tables import format_table

    rows = [[r["step"], r["transfers"], r["local_copies"], f"{r['bytes_sent'] / 1e6:.2f}", f"{r['move_ms']:.1f}",
             f"{r['forward_ms']:.1f}", sum(r["busiest_rank_tokens"]), f"{r['max_abs_diff']:.2g}",
             "equal" if r["counts_match"] else "DIFFERENT"] for r in rounds]
    return format_table(["step", "transfers", "local", "sent_MB", "move_ms", "forward_ms", "busiest_rows", "max_abs_diff", "rows_vs_predicted"], rows)


def apply(
    new: Annotated[Path, typer.Argument(metavar="NEW_PLAN", help="Plan JSON to move the running workers to.")],
    workers: Annotated[int, typer.Option("--workers", "-w", help="Worker processes (ranks); must equal the plan's GPUs.")],
    current: Annotated[Optional[Path], typer.Option("--from", help="Plan JSON the workers run now; default the engine's own placement (expert e on GPU e*D//E, no replicas).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Weights: a tiny built-in Hugging Face MoE (e.g. qwen3-moe-tiny), a local model directory, or 'synthetic' (random layers shaped like the plan's experts). Default: the plan's model.")] = None,
    batch_tokens: Annotated[int, typer.Option("--batch-tokens", help="Tokens in every verifying forward pass (split over the ranks).")] = 2048,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the token stream. `moeplan collect` defaults to 0, so by default apply measures on a different (held-out) stream.")] = 1,
    spare_slots: SpareSlotsOpt = 1,
    no_relabel: NoRelabelOpt = False,
    dispatch: Annotated[Dispatch, typer.Option("--dispatch", help="even (round-robin over replicas), plan (the plan's dispatch weights) or deterministic (static, SGLang-like).")] = Dispatch.even,
    state: Annotated[Optional[Path], typer.Option("--state", help="Rewrite this JSON (atomically) with the last verified placement after every step.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="On success, write the plan now running (the new plan in the workers' GPU numbering) here, atomically.")] = None,
    kill_rank: Annotated[Optional[int], typer.Option("--kill-rank", help="Fault drill: this rank kills itself (SIGKILL) as step --kill-at-step starts.")] = None,
    kill_at_step: Annotated[int, typer.Option("--kill-at-step", help="Fault drill: the step (1-based) at which --kill-rank dies.")] = 1,
    no_recover: Annotated[bool, typer.Option("--no-recover", help="After a failure, do not serve the last consistent placement again.")] = False,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="Deadline in seconds of the whole run and of every collective; past it the run fails (exit 5).")] = 600.0,
    hidden: Annotated[int, typer.Option("--hidden", help="Hidden size of synthetic layers.")] = 64,
    intermediate: Annotated[int, typer.Option("--intermediate", help="Expert intermediate size of synthetic layers.")] = 128,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result (max_abs_diff, counts_match, bytes, per-step records) as JSON on stdout.")] = False,
) -> None:
    """Move running workers to NEW_PLAN: send weights between ranks step by step, verify the outputs
    after every step, and report bytes moved, time and measured vs predicted rows."""
    from planner.errors import InputError
    from planner.cli.plan_input import read_trusted_plan
    from planner.plans.io import write_plan
    from planner.runtime.apply import ApplyFailed, apply_plan, engine_default_plan
    from planner.runtime.moe import reference_forward

    if batch_tokens < 1:
        raise InputError(f"--batch-tokens: must be >= 1, got {batch_tokens}")
    new_plan, _ = read_trusted_plan(new, kinds=("replicas",), role="new plan")
    if workers != new_plan.replicas.num_gpus:
        raise InputError(f"--workers: the plan places experts on {new_plan.replicas.num_gpus} GPUs, got {workers}")
    layers, x, label = _source(model, new_plan, batch_tokens, seed, hidden, intermediate)
    if current is not None:
        current_plan, _ = read_trusted_plan(current, kinds=("replicas",), role="--from plan")
        start = str(current)
    else:
        current_plan = engine_default_plan(new_plan, reference_forward(layers, x)[1])
        start = "engine default placement (contiguous, no replicas)"
    typer.echo(f"moeplan apply: {workers} gloo workers, {label}, {batch_tokens} tokens; from {start} to {new}", err=True)

    def progress(record, steps: int) -> None:
        typer.echo(f"  step {record.step}/{steps}: {record.transfers} transfer(s), {record.bytes_sent / 1e6:.2f} MB in "
                   f"{record.move_ms:.1f} ms; outputs max_abs_diff {record.max_abs_diff:.2g}; rows "
                   f"{'= predicted' if record.counts_match else 'DIFFER from predicted'}", err=True)

    kill = None if kill_rank is None else (kill_rank, kill_at_step)
    try:
        result = apply_plan(current_plan, new_plan, layers, x, spare_slots_per_gpu=spare_slots, relabel=not no_relabel,
                            dispatch=dispatch.value, state_path=state, recover=not no_recover, kill=kill,
                            timeout_s=timeout_s, on_round=progress)
    except ApplyFailed as exc:
        if json_out:
            emit({"ok": False, "error": str(exc), "last_step": exc.last_step, "steps": exc.steps,
                  "state": exc.state_path, "recovery": exc.recovery, "rounds": [r.to_dict() for r in exc.rounds]}, "", True)
        raise
    if output is not None:
        write_plan(result.migration.target_plan, output)
    data = result.to_dict() | {"output": str(output) if output else None, "state": str(state) if state else None,
                               "model": label, "tokens": batch_tokens, "workers": workers}
    first, last = result.rounds[0], result.rounds[-1]
    human = (
        f"{_round_table(data['rounds'])}\n\n"
        f"{data['steps']} step(s): {data['transfers']} expert copies sent between ranks, {data['bytes_sent'] / 1e6:.2f} MB "
        f"({'= planned' if data['bytes_match'] else 'planned ' + format(data['bytes_planned'] / 1e6, '.2f') + ' MB'}), "
        f"{data['local_copies']} local copies, {1e3 * data['move_s']:.1f} ms moving; wall {data['wall_s']:.1f} s\n"
        f"outputs vs the single-process reference after every step: max_abs_diff {data['max_abs_diff']:.3g}; "
        f"rows per rank {'equal' if data['counts_match'] else 'DIFFER from'} the prediction at every step\n"
        f"busiest rank per layer: {first.rank_tokens.max(axis=1).tolist()} rows before -> "
        f"{last.rank_tokens.max(axis=1).tolist()} after; forward {data['forward_ms_before']:.1f} -> {data['forward_ms_after']:.1f} ms"
    )
    if output is not None:
        human += f"\nrunning plan written to {output}"
    emit(data, human, json_out)
    if not (result.counts_match and data["bytes_match"]):  # a bug in the runtime or the prediction
        from planner.errors import RuntimeAdapterError

        raise RuntimeAdapterError("measured rows per rank or bytes sent differ from the prediction (see the table)")

