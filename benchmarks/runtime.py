"""Runtime benchmark: measured busiest-rank rows and step time on 4 CPU workers for three placements.

Run from the repository root (moeplan installed with the ``runtime`` extra)::

    python benchmarks/runtime.py                 # qwen3-moe-tiny (OLMoE-skewed routers), ~2-4 min on 2 cores
    python benchmarks/runtime.py --quick         # fewer tokens and repeats (the smoke test)
    python benchmarks/runtime.py --model synthetic --out r.json

What it does, all in one run:

1. *plan*: the model serves a seeded token stream once (per-layer inputs captured from its own
   forward); its routing, cut into ``--steps`` steps, is the load trace the planners see;
2. three placements of the same MoE layers over ``--workers`` ranks: ``none`` (what an engine loads
   without a plan: expert ``e`` on rank ``e * D // E``), ``eplb`` (DeepSeek's EPLB, run here) and
   ``moeplan`` (the step-aware planner), both with ``--redundant`` extra slots per layer;
3. *measure*: the workers serve a *different* token stream (held-out seed) with each placement
   (gloo all-to-all, even split over replicas, ``--repeats`` timed forwards after one warm-up). Per
   placement: rows the busiest rank computed per layer (summed over layers), the measured
   balancedness (mean rank rows / busiest rank rows), the step time (per layer the slowest rank's
   median, summed over layers), the largest output difference to the single-process reference,
   and whether the rows equal the prediction from the routing. ``none`` is the baseline the other
   rows are compared with.

4 processes share 2 cores here, so times carry scheduler noise; rows are exact. Markdown tables go
to stdout, progress to stderr. Exit code 0 unless a correctness check fails (outputs or rows).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from planner import __version__
from planner.inputs.loads import ExpertLoads
from planner.plans.io import atomic_write_text
from planner.replicas import plan_replicas
from planner.runtime.moe import reference_forward
from planner.runtime.sources import SYNTHETIC, load_source
from planner.runtime.workers import predicted_rank_tokens, routing_counts, serve_dispatches

PLACEMENTS = ("none", "eplb", "moeplan")
TOL = 1e-5


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _loads(routing: np.ndarray, steps: int, num_experts: int, layer_ids, model: str) -> ExpertLoads:
    """[steps, L, E] counts: the routing's tokens cut into ``steps`` equal consecutive chunks."""
    chunks = np.array_split(np.arange(routing.shape[1]), steps)
    counts = np.stack([routing_counts(routing[:, c], num_experts) for c in chunks])
    return ExpertLoads(counts, layer_ids=list(layer_ids), model=model, source="benchmarks/runtime.py")


def run(args) -> dict:
    profile = "olmoe-1b-7b" if args.model == SYNTHETIC else args.model  # synthetic: 64 experts, top-8 like OLMoE
    src = dict(num_experts=64, top_k=8, num_layers=4, hidden=128, intermediate=256)
    t0 = time.perf_counter()
    layers, x_plan, layer_ids, label = load_source(args.model, num_tokens=args.plan_tokens, token_seed=args.seed, **src)
    _, routing = reference_forward(layers, x_plan)
    E = layers[0].num_experts
    loads = _loads(routing, args.steps, E, layer_ids, profile)
    _log(f"source: {label}; planning trace {args.plan_tokens} tokens in {args.steps} steps ({time.perf_counter() - t0:.1f} s)")
    plans = {}
    for name in PLACEMENTS:
        kw = {"algorithm": name} if name != "moeplan" else {"algorithm": "stepaware"}
        if name != "none":
            kw["redundant_slots"] = args.redundant
        plans[name] = plan_replicas(loads, profile, num_gpus=args.workers, **kw)
    layers_eval, x_eval, _, _ = load_source(args.model, num_tokens=args.eval_tokens, token_seed=args.seed + 1000, **src)
    for a, b in zip(layers, layers_eval):  # the same model: only the tokens differ
        assert np.array_equal(a.router_weight.numpy(), b.router_weight.numpy())
    ref, eval_routing = reference_forward(layers_eval, x_eval)
    rows = []
    for name, plan in plans.items():
        _log(f"serving '{name}' on {args.workers} workers ...")
        res = serve_dispatches(plan, layers_eval, x_eval, dispatches=("even",), warmup=1, repeats=args.repeats,
                               timeout_s=600)["even"]
        predicted = predicted_rank_tokens(plan, eval_routing, dispatch="even")
        busiest = res.rank_tokens.max(axis=1)
        rows.append({
            "placement": name,
            "slots_per_layer": len(plan.replicas.physical_to_logical[0]),
            "busiest_rank_rows": int(busiest.sum()),
            "mean_rank_rows": float(res.rank_tokens.mean(axis=1).sum()),
            "balancedness": float(np.mean(res.rank_tokens.mean(axis=1) / busiest)),
            "planned_balancedness": float(plan.replicas.predicted.replay_balancedness_mean),
            "step_ms": float(res.step_ms.max(axis=1).sum()),
            "max_abs_diff": float(np.abs(res.outputs - ref).max()),
            "rows_match_prediction": bool(np.array_equal(res.rank_tokens, predicted)),
        })
    base = rows[0]
    for r in rows:
        r["busiest_rows_vs_none"] = r["busiest_rank_rows"] / base["busiest_rank_rows"] - 1
        r["step_ms_vs_none"] = r["step_ms"] / base["step_ms"] - 1
    return {"moeplan_version": __version__, "python": platform.python_version(), "model": label,
            "workers": args.workers, "redundant": args.redundant, "plan_tokens": args.plan_tokens,
            "eval_tokens": args.eval_tokens, "steps": args.steps, "repeats": args.repeats,
            "load_skew_max_over_mean": float((loads.counts.sum(axis=0).max(axis=1) / loads.counts.sum(axis=0).mean(axis=1)).mean()),
            "rows": rows, "wall_s": time.perf_counter() - t0}


def table(result: dict) -> str:
    head = ("| placement | slots/layer | busiest-rank rows | vs none | measured b | planned b (in-window) | "
            "step ms | vs none | max abs diff | rows = predicted |")
    lines = [head, "|" + "---|" * 10]
    for r in result["rows"]:
        lines.append(
            f"| {r['placement']} | {r['slots_per_layer']} | {r['busiest_rank_rows']} | {100 * r['busiest_rows_vs_none']:+.1f}% | "
            f"{r['balancedness']:.3f} | {r['planned_balancedness']:.3f} | {r['step_ms']:.1f} | {100 * r['step_ms_vs_none']:+.1f}% | "
            f"{r['max_abs_diff']:.1e} | {'yes' if r['rows_match_prediction'] else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="qwen3-moe-tiny", help="tiny HF MoE name, model directory or 'synthetic'")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--redundant", type=int, default=8, help="extra slots per layer for eplb and moeplan")
    p.add_argument("--plan-tokens", type=int, default=None, help="default 8192 (--quick 2048)")
    p.add_argument("--eval-tokens", type=int, default=None, help="default 4096 (--quick 1024)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=None, help="default 5 (--quick 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2048/1024 tokens, 2 repeats")
    p.add_argument("--out", default=None, help="also write every number as JSON")
    args = p.parse_args(argv)
    defaults = (2048, 1024, 2) if args.quick else (8192, 4096, 5)
    args.plan_tokens = args.plan_tokens or defaults[0]
    args.eval_tokens = args.eval_tokens or defaults[1]
    args.repeats = args.repeats or defaults[2]
    result = run(args)
    print(f"## Runtime: {result['model']}, {args.workers} gloo workers, R = {args.redundant}, "
          f"planned on {args.plan_tokens} tokens, measured on {args.eval_tokens} held-out tokens "
          f"(load max/mean {result['load_skew_max_over_mean']:.2f})\n")
    print(table(result))
    print(f"\nwall {result['wall_s']:.0f} s; rows are (token, top-k) pairs summed over layers; step ms = per layer the "
          f"slowest rank's median of {args.repeats}, summed over layers")
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    ok = all(r["rows_match_prediction"] and r["max_abs_diff"] <= TOL for r in result["rows"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
