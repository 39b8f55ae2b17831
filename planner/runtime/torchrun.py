"""Serve a plan's replicas under ``torchrun`` (one process per rank, on one host or several).

::

    torchrun --nproc_per_node 4 -m planner.runtime.torchrun PLAN.json --model synthetic [--json-out r.json]

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous; every rank joins the
group (``env://``; NCCL on ``cuda:LOCAL_RANK`` when CUDA is available, else gloo), builds the same
source (:func:`planner.runtime.sources.load_source`: seeded, so every rank gets the same weights and
tokens), loads only its own slots and serves with the same code as the local launcher
(:func:`planner.runtime.workers.serve_layers`). Rank 0 gathers every rank's record and prints the
measured rows next to the prediction and the outputs' max abs difference to the single-process
reference, as JSON (``--json-out`` writes it atomically too). Exit code 0 when both checks hold,
5 when they do not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from planner.errors import InputError, PlannerError, exit_code_for

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchrun ... -m planner.runtime.torchrun", description=__doc__.split("\n\n")[0])
    p.add_argument("plan", help="plan JSON; its GPUs must equal torchrun's world size")
    p.add_argument("--model", default=None, help="tiny HF MoE name, model directory or 'synthetic' (default: the plan's model)")
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the token stream, as `moeplan apply --seed` (the same S serves the same tokens)")
    p.add_argument("--dispatch", default="even", choices=("even", "plan", "deterministic"))
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backend", default=None, choices=("gloo", "nccl"), help="default: nccl with CUDA, else gloo")
    p.add_argument("--json-out", default=None, help="rank 0 also writes the result JSON here")
    return p


def _run(args) -> int:
    import torch
    import torch.distributed as dist

    from planner.common.fileio import atomic_write_text
    from planner.plans.io import read_plan
    from planner.plans.verify import verify_plan
    from planner.profiles import get_model
    from planner.runtime.moe import reference_forward
    from planner.runtime.sources import SYNTHETIC, load_source
    from planner.runtime._rank import serve_worker
    from planner.runtime.dispatch import layout_of, predicted_rank_tokens
    from planner.runtime.workers import gather_result

    for key in ("RANK", "WORLD_SIZE"):
        if key not in os.environ:
            raise InputError(f"{key}: not set; start this module with torchrun (or use `moeplan apply` / serve_layers locally)")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = args.backend or ("nccl" if torch.cuda.is_available() else "gloo")
    torch.set_num_threads(1)
    plan = read_plan(args.plan)
    if plan.kind != "replicas":
        raise InputError(f"{args.plan}: a {plan.kind} plan; torchrun serves replica plans")
    check = verify_plan(plan)  # the same solver-free checks as every command that reads a plan
    if not check.ok:
        raise InputError(f"{args.plan}: plan fails verification: {check.failures[0].name}: {check.failures[0].detail}")
    rp = plan.replicas
    if world != rp.num_gpus:
        raise InputError(f"WORLD_SIZE: the plan places experts on {rp.num_gpus} GPUs, torchrun started {world} ranks")
    name = args.model or plan.inputs.model
    top_k = get_model(plan.inputs.model).top_k if name == SYNTHETIC else None
    layers, x, _, label = load_source(name, num_experts=rp.num_experts, top_k=top_k, num_layers=len(rp.layers),
                                      num_tokens=args.tokens, token_seed=args.seed)
    layout = layout_of(plan, len(layers))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend)
    try:
        record = serve_worker(rank, world, layout, layers, x, (args.dispatch,), args.warmup, args.repeats,
                               backend == "nccl", local_rank)
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(record, gathered, dst=0)
    finally:
        dist.destroy_process_group()
    if rank != 0:
        return 0
    if any("runs" not in g for g in gathered):
        raise InputError("a rank could not load its slots (see its error above)")
    res = gather_result(layout, [g["runs"][0] for g in gathered], x.shape[-2], args.dispatch, backend, args.repeats)
    ref, routing = reference_forward(layers, x)
    predicted = predicted_rank_tokens(plan, routing, dispatch=args.dispatch)
    out = {"launcher": "torchrun", "world_size": world, "backend": backend, "model": label, "dispatch": args.dispatch,
           "max_abs_diff": float(np.abs(res.outputs - ref).max()),
           "counts_match": bool(np.array_equal(res.rank_tokens, predicted)),
           "rank_tokens": res.rank_tokens.tolist(), "predicted_tokens": predicted.tolist(),
           "step_ms": np.round(res.step_ms, 3).tolist()}
    text = json.dumps(out, indent=1)
    if args.json_out:
        atomic_write_text(args.json_out, text + "\n")
    print(text)
    return 0 if out["counts_match"] and out["max_abs_diff"] <= 1e-5 else 5


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except PlannerError as exc:
        print(f"moeplan torchrun: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exit_code_for(exc)


if __name__ == "__main__":
    sys.exit(main())
