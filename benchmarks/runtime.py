"""Runtime benchmark: measured busiest-rank rows and step time on 4 CPU workers for three placements.

Run from the repository root (moeplan installed with the ``runtime`` extra)::

    python benchmarks/runtime.py                 # qwen3-moe-tiny (OLMoE-skewed routers), 3 rounds, ~2 min on 2 cores
    python benchmarks/runtime.py --quick         # fewer tokens and repeats, 1 round
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
   balancedness (mean rank rows / busiest rank rows), the busiest rank's expert-kernel CPU time
   (per layer the largest rank's CPU time in its SwiGLUs, minimum over the repeats: the work the
   placement balances, less inflated than wall time by 4 processes sharing 2 cores), the step
   time (per layer the slowest rank's wall clock of the whole layer, communication and waits
   included; median over the repeats), both summed over layers and taken as the median over
   ``--rounds`` interleaved launches, the largest output difference to the single-process reference,
   and whether the rows equal the prediction from the routing. ``none`` is the baseline the other
   rows are compared with.

4. *seeds*: rows are exact for one token stream but move with the stream. The whole plan-and-measure
   pipeline is repeated without workers for ``--seeds`` seeds ``S`` (plan on stream ``S``, measure on
   held-out stream ``S + 1000``; the rows are the dispatch rule's prediction from the routing, which
   step 3 shows equal to what the workers measure): busiest-rank rows vs none per seed, with the
   median and range, and whether moeplan's difference to EPLB is larger than that spread (it is
   *outside* only when moeplan has fewer rows than EPLB on every seed; otherwise the two are a tie
   within the spread). ``--rows-only`` runs this step alone (no workers, ~1 min).

4 processes share 2 cores here, so wall times carry scheduler noise (±15 % between launches of the
same placement), CPU times ±10 %; rows are exact. Markdown tables go
to stdout, progress to stderr. Exit code 0 unless a correctness check fails (outputs or rows).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np

from planner import __version__
from planner.inputs.loads import ExpertLoads
from planner.common.fileio import atomic_write_text
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


def _widen(layers: list, intermediate: int, seed: int) -> list:
    """The same routers, biases and shared experts with routed experts of width ``intermediate``
    (seeded random weights): routing, hence every row count, is unchanged; only the work per row
    grows. A what-if for experts as heavy as a real model's relative to the fixed per-layer costs."""
    from planner.runtime.moe import MoELayer

    out = []
    for i, layer in enumerate(layers):
        w = MoELayer.random(layer.hidden_size, intermediate, layer.num_experts, layer.top_k, seed=seed + i)
        out.append(MoELayer(layer.router_weight, w.gate_proj, w.up_proj, w.down_proj, layer.top_k,
                            routing=layer.routing, score_bias=layer.score_bias, shared=layer.shared))
    return out


def _plans(loads: ExpertLoads, profile: str, args) -> dict:
    plans = {}
    for name in PLACEMENTS:
        kw = {"algorithm": name} if name != "moeplan" else {"algorithm": "stepaware"}
        if name != "none":
            kw["redundant_slots"] = args.redundant
        plans[name] = plan_replicas(loads, profile, num_gpus=args.workers, **kw)
    return plans


def seed_rows(args) -> dict:
    """Step 4 of the module docstring: busiest-rank rows per placement and seed, without workers."""
    profile = "olmoe-1b-7b" if args.model == SYNTHETIC else args.model
    src = dict(num_experts=64, top_k=8, num_layers=4, hidden=128, intermediate=256)
    built = None
    if args.model != SYNTHETIC:
        from planner.runtime import hf
        from planner.runtime.sources import single_thread

        with single_thread():
            built = hf.load_model(args.model)
    per_seed = []
    for seed in range(args.seed, args.seed + args.seeds):
        _log(f"seed {seed}: planning on stream {seed}, measuring on stream {seed + 1000} (rows from the routing)")
        layers, x_plan, layer_ids, _ = load_source(args.model, num_tokens=args.plan_tokens, token_seed=seed, built=built, **src)
        _, routing = reference_forward(layers, x_plan)
        plans = _plans(_loads(routing, args.steps, layers[0].num_experts, layer_ids, profile), profile, args)
        layers_eval, x_eval, _, _ = load_source(args.model, num_tokens=args.eval_tokens, token_seed=seed + 1000,
                                                built=built, **src)
        _, eval_routing = reference_forward(layers_eval, x_eval)
        rows = {name: int(predicted_rank_tokens(plan, eval_routing, dispatch="even").max(axis=1).sum())
                for name, plan in plans.items()}
        per_seed.append({"seed": seed, "rows": rows,
                         "vs_none": {n: rows[n] / rows["none"] - 1 for n in rows}})
    out = {"seeds": [p["seed"] for p in per_seed], "per_seed": per_seed}
    for name in PLACEMENTS:
        v = np.array([p["vs_none"][name] for p in per_seed])
        out[name] = {"vs_none_median": float(np.median(v)), "vs_none_min": float(v.min()), "vs_none_max": float(v.max())}
    diff = np.array([p["rows"]["moeplan"] / p["rows"]["eplb"] - 1 for p in per_seed])
    out["moeplan_vs_eplb"] = {"median": float(np.median(diff)), "min": float(diff.min()), "max": float(diff.max()),
                              "fewer_rows_on_every_seed": bool((diff < 0).all()),
                              "more_rows_on_every_seed": bool((diff > 0).all())}
    return out


def seed_table(spread: dict) -> str:
    lines = ["| seed (plan / measure stream) | none rows | eplb rows | vs none | moeplan rows | vs none | moeplan vs eplb |",
             "|" + "---|" * 7]
    for p in spread["per_seed"]:
        r, v = p["rows"], p["vs_none"]
        lines.append(f"| {p['seed']} / {p['seed'] + 1000} | {r['none']} | {r['eplb']} | {100 * v['eplb']:+.1f}% | "
                     f"{r['moeplan']} | {100 * v['moeplan']:+.1f}% | {100 * (r['moeplan'] / r['eplb'] - 1):+.2f}% |")
    d = spread["moeplan_vs_eplb"]
    e, m = spread["eplb"], spread["moeplan"]
    verdict = ("moeplan has fewer busiest-rank rows than EPLB on every seed: the difference is outside the seed spread"
               if d["fewer_rows_on_every_seed"] else
               "EPLB has fewer busiest-rank rows than moeplan on every seed: the difference is outside the seed spread"
               if d["more_rows_on_every_seed"] else
               "the sign of moeplan vs EPLB changes between seeds: the difference is inside the seed spread (a tie)")
    lines.append("")
    lines.append(f"over {len(spread['seeds'])} seeds: eplb {100 * e['vs_none_median']:+.1f}% "
                 f"({100 * e['vs_none_min']:+.1f} to {100 * e['vs_none_max']:+.1f}), moeplan {100 * m['vs_none_median']:+.1f}% "
                 f"({100 * m['vs_none_min']:+.1f} to {100 * m['vs_none_max']:+.1f}) vs none; moeplan vs eplb "
                 f"{100 * d['median']:+.2f}% ({100 * d['min']:+.2f} to {100 * d['max']:+.2f}); {verdict}")
    return "\n".join(lines)


def run(args) -> dict:
    profile = "olmoe-1b-7b" if args.model == SYNTHETIC else args.model  # synthetic: 64 experts, top-8 like OLMoE
    src = dict(num_experts=64, top_k=8, num_layers=4, hidden=128, intermediate=256)
    t0 = time.perf_counter()
    layers, x_plan, layer_ids, label = load_source(args.model, num_tokens=args.plan_tokens, token_seed=args.seed, **src)
    _, routing = reference_forward(layers, x_plan)
    E = layers[0].num_experts
    loads = _loads(routing, args.steps, E, layer_ids, profile)
    _log(f"source: {label}; planning trace {args.plan_tokens} tokens in {args.steps} steps ({time.perf_counter() - t0:.1f} s)")
    plans = _plans(loads, profile, args)
    layers_eval, x_eval, _, _ = load_source(args.model, num_tokens=args.eval_tokens, token_seed=args.seed + 1000, **src)
    for a, b in zip(layers, layers_eval):  # the same model: only the tokens differ
        assert np.array_equal(a.router_weight.numpy(), b.router_weight.numpy())
    if args.expert_intermediate:
        layers_eval = _widen(layers_eval, args.expert_intermediate, seed=args.seed)
        label += f", routed experts widened to intermediate {args.expert_intermediate}"
    ref, eval_routing = reference_forward(layers_eval, x_eval)
    runs: dict[str, list] = {name: [] for name in plans}
    for rnd in range(args.rounds):  # placements interleaved, so slow drift of the host hits all alike
        for name, plan in plans.items():
            _log(f"round {rnd + 1}/{args.rounds}: serving '{name}' on {args.workers} workers ...")
            runs[name].append(serve_dispatches(plan, layers_eval, x_eval, dispatches=("even",), warmup=1,
                                               repeats=args.repeats, timeout_s=600)["even"])
    rows = []
    for name, plan in plans.items():
        res = runs[name]
        predicted = predicted_rank_tokens(plan, eval_routing, dispatch="even")
        busiest = res[0].rank_tokens.max(axis=1)
        expert = [float(r.expert_ms.max(axis=1).sum()) for r in res]
        step = [float(r.step_ms.max(axis=1).sum()) for r in res]
        rows.append({
            "placement": name,
            "slots_per_layer": len(plan.replicas.physical_to_logical[0]),
            "busiest_rank_rows": int(busiest.sum()),
            "mean_rank_rows": float(res[0].rank_tokens.mean(axis=1).sum()),
            "balancedness": float(np.mean(res[0].rank_tokens.mean(axis=1) / busiest)),
            "planned_balancedness": float(plan.replicas.predicted.replay_balancedness_mean),
            "expert_ms_rounds": expert,
            "step_ms_rounds": step,
            "expert_ms": float(np.median(expert)),
            "step_ms": float(np.median(step)),
            "max_abs_diff": max(float(np.abs(r.outputs - ref).max()) for r in res),
            "rows_match_prediction": all(np.array_equal(r.rank_tokens, predicted) for r in res),
        })
    base = rows[0]
    for r in rows:
        r["busiest_rows_vs_none"] = r["busiest_rank_rows"] / base["busiest_rank_rows"] - 1
        for key in ("expert_ms", "step_ms"):  # paired: each round against 'none' of the same round
            r[f"{key}_vs_none"] = float(np.median(np.array(r[f"{key}_rounds"]) / np.array(base[f"{key}_rounds"]) - 1))
    return {"moeplan_version": __version__, "python": platform.python_version(), "model": label,
            "workers": args.workers, "redundant": args.redundant, "plan_tokens": args.plan_tokens,
            "eval_tokens": args.eval_tokens, "steps": args.steps, "repeats": args.repeats, "rounds": args.rounds,
            "load_skew_max_over_mean": float((loads.counts.sum(axis=0).max(axis=1) / loads.counts.sum(axis=0).mean(axis=1)).mean()),
            "rows": rows, "wall_s": time.perf_counter() - t0}


def _spread(values: list[float]) -> str:
    """``median`` or ``median (min-max)`` over rounds."""
    med = f"{np.median(values):.0f}"
    return med if len(values) == 1 else f"{med} ({min(values):.0f}-{max(values):.0f})"


def table(result: dict) -> str:
    head = ("| placement | slots/layer | busiest-rank rows | vs none | measured b | planned b (in-window) | "
            "busiest-rank expert CPU ms | vs none | step ms | vs none | max abs diff | rows = predicted |")
    lines = [head, "|" + "---|" * 12]
    for r in result["rows"]:
        lines.append(
            f"| {r['placement']} | {r['slots_per_layer']} | {r['busiest_rank_rows']} | {100 * r['busiest_rows_vs_none']:+.1f}% | "
            f"{r['balancedness']:.3f} | {r['planned_balancedness']:.3f} | {_spread(r['expert_ms_rounds'])} | "
            f"{100 * r['expert_ms_vs_none']:+.1f}% | {_spread(r['step_ms_rounds'])} | {100 * r['step_ms_vs_none']:+.1f}% | "
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
    p.add_argument("--repeats", type=int, default=None, help="timed forwards per launch; default 5 (--quick 2)")
    p.add_argument("--rounds", type=int, default=None,
                   help="launches per placement, interleaved; times are the median over rounds (default 3, --quick 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--expert-intermediate", type=int, default=None,
                   help="serve experts of this width (same routers, so the same rows): more work per row")
    p.add_argument("--seeds", type=int, default=None,
                   help="token-stream seeds of the rows' spread (step 4, no workers); default 5 (--quick 2)")
    p.add_argument("--rows-only", action="store_true", help="only step 4: busiest-rank rows over --seeds seeds, no workers")
    p.add_argument("--quick", action="store_true", help="2048/1024 tokens, 2 repeats, 1 round, 2 seeds")
    p.add_argument("--out", default=None, help="also write every number as JSON")
    args = p.parse_args(argv)
    defaults = (2048, 1024, 2, 1) if args.quick else (8192, 4096, 5, 3)
    args.plan_tokens = args.plan_tokens or defaults[0]
    args.eval_tokens = args.eval_tokens or defaults[1]
    args.repeats = args.repeats or defaults[2]
    args.rounds = args.rounds or defaults[3]
    args.seeds = args.seeds or (2 if args.quick else 5)
    if args.rows_only:
        spread = seed_rows(args)
        print(f"## Busiest-rank rows over seeds: {args.model}, {args.workers} ranks, R = {args.redundant}, planned on "
              f"{args.plan_tokens} tokens, measured on {args.eval_tokens} held-out tokens\n")
        print(seed_table(spread))
        if args.out:
            atomic_write_text(args.out, json.dumps({"seed_spread": spread}, indent=1) + "\n")
        return 0
    result = run(args)
    result["seed_spread"] = seed_rows(args)
    print(f"## Runtime: {result['model']}, {args.workers} gloo workers, R = {args.redundant}, "
          f"planned on {args.plan_tokens} tokens, measured on {args.eval_tokens} held-out tokens "
          f"(load max/mean {result['load_skew_max_over_mean']:.2f})\n")
    print(table(result))
    print(f"\nwall {result['wall_s']:.0f} s; rows are (token, top-k) pairs summed over layers; expert CPU ms = per layer "
          f"the largest rank's CPU time in its expert kernels (minimum of {args.repeats} forwards), step ms = the slowest "
          f"rank's wall time of the whole layer (median of {args.repeats}); both summed over layers, then the median "
          f"(min-max) over {args.rounds} interleaved round(s); 'vs none' = median of the paired per-round ratios")
    print(f"\n## Busiest-rank rows over {args.seeds} seeds (the rows above are seed {args.seed}'s)\n")
    print(seed_table(result["seed_spread"]))
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    ok = all(r["rows_match_prediction"] and r["max_abs_diff"] <= TOL for r in result["rows"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
