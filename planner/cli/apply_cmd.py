"""`moeplan apply`: move running torch workers to a new plan, verifying every step, and measure it.

Every argument, the plans and the output paths are checked before the model is built (which takes
seconds to tens of seconds): the ranges and paths by :mod:`planner.cli.checks`, what depends on the
plan here; progress lines go through :func:`planner.cli._output.progress`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit, progress
from planner.cli.options import Dispatch, NoRelabelOpt, SpareSlotsOpt
from planner.migration import DEFAULT_SPARE_SLOTS

__all__ = ["apply"]


def _check_values(workers: int, timeout_s: float, kill_rank, kill_at_step: int, spare_slots: int, batch_tokens: int,
                  hidden: int, intermediate: int, num_experts: int) -> None:
    """What the flags' values must be for this plan, before the model is loaded (the ranges of every
    flag alone, and the output paths, are checked by the CLI's input and output layers,
    :mod:`planner.cli.checks`, before the command runs)."""
    from planner.errors import InputError

    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise InputError(f"--timeout-s: must be a finite number of seconds > 0, got {timeout_s!r}")
    if kill_rank is not None and not 0 <= kill_rank < workers:
        raise InputError(f"--kill-rank: must be a rank 0..{workers - 1}, got {kill_rank}")
    if kill_at_step < 1:
        raise InputError(f"--kill-at-step: must be a step >= 1, got {kill_at_step}")
    if not 0 <= spare_slots <= num_experts:
        raise InputError(f"--spare-slots: must be 0..{num_experts} (the plan's experts per layer), got {spare_slots}")
    for flag, value in (("--batch-tokens", batch_tokens), ("--hidden", hidden), ("--intermediate", intermediate)):
        if value < 1:
            raise InputError(f"{flag}: must be >= 1, got {value}")


def _read_current(current: Path, new_plan):
    """``--from``: a replica plan, or the placement a previous apply left (``--state``), verified."""
    from planner.cli.plan_input import read_trusted_plan
    from planner.plans.placement import checked_placement, placement_as_plan

    plan, _ = read_trusted_plan(current, kinds=("replicas", "placement"), role="--from plan")
    if plan.kind == "placement":
        return placement_as_plan(checked_placement(plan, str(current)))
    return plan


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
    current: Annotated[Optional[Path], typer.Option("--from", help="Plan JSON the workers run now, or the placement file (--state) a previous apply left; default the engine's own placement (expert e on GPU e*D//E, no replicas).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Weights: a tiny built-in Hugging Face MoE (e.g. qwen3-moe-tiny), a local model directory, or 'synthetic' (random layers shaped like the plan's experts). Default: the plan's model.")] = None,
    batch_tokens: Annotated[int, typer.Option("--batch-tokens", help="Tokens in every verifying forward pass (split over the ranks).")] = 2048,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the token stream. `moeplan collect` defaults to 0, so by default apply measures on a different (held-out) stream.")] = 1,
    spare_slots: SpareSlotsOpt = DEFAULT_SPARE_SLOTS,
    no_relabel: NoRelabelOpt = False,
    dispatch: Annotated[Dispatch, typer.Option("--dispatch", help="even (round-robin over replicas), plan (the plan's dispatch weights) or deterministic (static, SGLang-like).")] = Dispatch.even,
    state: Annotated[Optional[Path], typer.Option("--state", help="Rewrite this file (atomically) with the last verified placement after every step: a plan of kind placement, which verify, export and apply --from accept.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="On success, write the plan now running (the new plan in the workers' GPU numbering) here, atomically.")] = None,
    kill_rank: Annotated[Optional[int], typer.Option("--kill-rank", help="Fault drill: this rank kills itself (SIGKILL) as step --kill-at-step starts.")] = None,
    kill_at_step: Annotated[int, typer.Option("--kill-at-step", help="Fault drill: the step (1-based) at which --kill-rank dies.")] = 1,
    no_recover: Annotated[bool, typer.Option("--no-recover", help="After a failure, do not serve the last consistent placement again.")] = False,
    timing_repeats: Annotated[int, typer.Option("--timing-repeats", help="After the move, time the placement before and after on fresh workers: one warm-up forward each, then this many interleaved rounds; medians with min-max. 0 skips it.")] = 5,
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

    new_plan, _ = read_trusted_plan(new, kinds=("replicas",), role="new plan")
    if workers != new_plan.replicas.num_gpus:
        raise InputError(f"--workers: the plan places experts on {new_plan.replicas.num_gpus} GPUs, got {workers}")
    _check_values(workers, timeout_s, kill_rank, kill_at_step, spare_slots, batch_tokens, hidden, intermediate,
                  new_plan.replicas.num_experts)
    current_plan = None
    if current is not None:  # the schedule needs no model: refuse a bad pair or a late kill step now
        from planner.migration import plan_migration

        current_plan = _read_current(current, new_plan)
        steps = plan_migration(current_plan, new_plan, relabel=not no_relabel, spare_slots_per_gpu=spare_slots).steps
        if kill_rank is not None and kill_at_step > max(steps, 1):
            raise InputError(f"--kill-at-step: the migration has {steps} step(s), got {kill_at_step}")
    say = progress("apply")
    say(f"loading {model or new_plan.inputs.model} ...")
    layers, x, label = _source(model, new_plan, batch_tokens, seed, hidden, intermediate)
    if current_plan is not None:
        start = str(current)
    else:
        current_plan = engine_default_plan(new_plan, reference_forward(layers, x)[1])
        start = "engine default placement (contiguous, no replicas)"
    say(f"{workers} gloo workers, {label}, {batch_tokens} tokens; from {start} to {new}")

    def on_round(record, steps: int) -> None:
        say(f"step {record.step}/{steps}: {record.transfers} transfer(s), {record.bytes_sent / 1e6:.2f} MB in "
            f"{record.move_ms:.1f} ms; outputs max_abs_diff {record.max_abs_diff:.2g}; rows "
            f"{'= predicted' if record.counts_match else 'DIFFER from predicted'}")

    kill = None if kill_rank is None else (kill_rank, kill_at_step)
    try:
        result = apply_plan(current_plan, new_plan, layers, x, spare_slots_per_gpu=spare_slots, relabel=not no_relabel,
                            dispatch=dispatch.value, state_path=state, recover=not no_recover, kill=kill,
                            timeout_s=timeout_s, on_round=on_round, source=f"{label}, token seed {seed}",
                            timing_repeats=timing_repeats)
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
        f"{last.rank_tokens.max(axis=1).tolist()} after"
    )
    t = data["timing"]
    if t is not None:
        human += (
            f"\nforward, warm and interleaved (median (min-max) of {t['repeats']} after {t['warmup']} warm-up): "
            f"{t['before_ms_median']:.1f} ({min(t['before_ms']):.1f}-{max(t['before_ms']):.1f}) ms before -> "
            f"{t['after_ms_median']:.1f} ({min(t['after_ms']):.1f}-{max(t['after_ms']):.1f}) ms after; paired change "
            f"{100 * t['change_median']:+.1f} % ({100 * t['change_min']:+.1f} to {100 * t['change_max']:+.1f} %)"
        )
    if output is not None:
        human += f"\nrunning plan written to {output}"
    emit(data, human, json_out)
    if not (result.counts_match and data["bytes_match"]):  # a bug in the runtime or the prediction
        from planner.errors import RuntimeAdapterError

        raise RuntimeAdapterError("measured rows per rank or bytes sent differ from the prediction (see the table)")

