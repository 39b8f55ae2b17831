"""Cluster-placement benchmark: Helix's published instances, every heuristic and moeplan's optimiser.

Run from the repository root (moeplan installed)::

    python benchmarks/cluster.py             # full run: single24, geo24, hetero42 (3 seeds), cluster10; ~6-10 min
    python benchmarks/cluster.py --quick     # short budgets, under a minute (the smoke test)
    python benchmarks/cluster.py --out c.json

For each instance: objective (max-flow, tokens/s), Helix's upper bound, the layer-crossing bound, the
gap to the tighter bound and the wall time, for each heuristic family (best member), the stage-chain
MILP and the optimiser (seeds + chain MILP + annealing). The optimiser's layout is re-scored in
networkx (``planner.cluster.graph``). Published values (Helix's Gurobi runs, the instances' README) and
the targets of issue 12 are printed beside them; missed targets print FAIL (exit code 0: a measurement).
Markdown tables go to stdout, progress to stderr; the load average is reported (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from planner.cluster.capacity import node_tables
from planner.cluster.place import cluster_instance, plan_cluster
from planner.cluster.verify import verify_cluster
from planner.inputs import read_helix_instance

from solvers.layer_milp import chain_layout
from solvers.layer_placement import flow_bounds, seed_layouts

#: issue 12's targets on the 2-core machine: (minimum tokens/s, within seconds), and Helix's published value
TARGETS = {
    "single24-llama2-70b": (1495.0, 120.0, 1289.5557702751735),
    "geo24-llama2-70b": (1392.0, 60.0, 1212.1768454598214),
    "hetero42-llama2-70b": (5430.0, 300.0, 4892.242432209015),
    "cluster10-llama1-30b": (None, 60.0, 286.5874097546421),
}
FULL = {  # instance -> (annealing moves per chain, chains, seeds to repeat, chain-MILP cap s, search cap s)
    "single24-llama2-70b": (20000, 2, [0], 40.0, 110.0),
    "geo24-llama2-70b": (20000, 2, [0], 15.0, 55.0),
    "hetero42-llama2-70b": (100000, 2, [0, 1, 2], 120.0, 290.0),
    "cluster10-llama1-30b": (20000, 2, [0], 20.0, 55.0),
}
QUICK = {
    "single24-llama2-70b": (2000, 1, [0], 10.0, 30.0),
    "geo24-llama2-70b": (2000, 1, [0], 5.0, 20.0),
    "hetero42-llama2-70b": (0, 1, [0], 0.0, 20.0),
}


def log(msg: str) -> None:
    print(f"[cluster bench] {msg}", file=sys.stderr, flush=True)


def _families(name: str, chain_cap: float) -> list[dict]:
    cluster = read_helix_instance(name)
    inst = cluster_instance(cluster, node_tables(cluster))
    lf = inst.flow()
    t = time.perf_counter()
    seeds = seed_layouts(lf, inst.types)
    seed_time = time.perf_counter() - t
    rows = []
    for family in ("petals", "swarm", "type-pipelines", "tail-chain"):
        best = max((s for s in seeds if s.name.split()[0] == family), key=lambda s: s.value)
        rows.append({"method": f"{family} ({best.name})", "value": best.value, "time_s": seed_time})
    if chain_cap > 0:
        t = time.perf_counter()
        _, cross, _ = flow_bounds(lf)
        ch = chain_layout(lf.capacity, lf.num_layers, upper=cross, time_limit_s=chain_cap, solve_time_limit_s=chain_cap)
        value = lf.value(ch.starts, ch.sizes) if ch.starts else 0.0
        rows.append({"method": f"stage-chain MILP ({ch.solves} programs, {ch.report.stop_reason})", "value": value,
                     "time_s": time.perf_counter() - t})
    return rows


def run_instance(name: str, budget) -> dict:
    iterations, chains, seeds, chain_cap, cap = budget
    target, limit, helix = TARGETS[name]
    log(f"{name}: heuristics")
    rows = _families(name, chain_cap)
    runs = []
    for seed in seeds:
        log(f"{name}: optimiser, seed {seed}, {chains} chains x {iterations} moves")
        r = plan_cluster(f"helix:{name}", iterations=iterations, chains=chains, seed=seed, workers=min(2, chains),
                         chain_milp=chain_cap > 0, time_limit_s=cap)
        ok = verify_cluster(r.plan).ok
        runs.append({"seed": seed, "value": r.plan.throughput_tokens_per_s, "time_s": r.wall_time_s, "verified": ok,
                     "method": r.plan.method, "status": r.plan.report.status, "stop": r.plan.report.stop_reason})
        rows.append({"method": f"moeplan optimiser, seed {seed} ({r.plan.method})", "value": r.plan.throughput_tokens_per_s,
                     "time_s": r.wall_time_s})
    plan = r.plan
    bound = plan.report.bound
    for row in rows:
        row["gap"] = (bound - row["value"]) / row["value"] if row["value"] > 0 else None
    best_heuristic = max(row["value"] for row in rows if not row["method"].startswith("moeplan"))
    worst_run = min(runs, key=lambda x: x["value"])
    slowest = max(x["time_s"] for x in runs)
    targets = []
    if target is not None:
        targets.append({"name": f"{name} >= {target:,.0f} tok/s within {limit:.0f} s (every seed)",
                        "pass": worst_run["value"] >= target and slowest <= limit,
                        "measured": f"{worst_run['value']:,.1f} tok/s, slowest run {slowest:.1f} s"})
    targets.append({"name": f"{name}: never below the best heuristic", "pass": worst_run["value"] >= best_heuristic * (1 - 1e-9),
                    "measured": f"{worst_run['value']:,.1f} vs {best_heuristic:,.1f}"})
    targets.append({"name": f"{name}: bound at least as tight as the layer-crossing bound, gap reported",
                    "pass": bound <= plan.crossing_bound_tokens_per_s * (1 + 1e-9) and plan.report.gap is not None,
                    "measured": f"bound {bound:,.1f}, gap {plan.report.gap:.1%}"})
    targets.append({"name": f"{name}: plans verify (networkx max-flow)", "pass": all(x["verified"] for x in runs),
                    "measured": f"{sum(x['verified'] for x in runs)}/{len(runs)}"})
    return {"instance": name, "helix_published": helix, "helix_bound": plan.helix_upper_bound_tokens_per_s,
            "crossing_bound": plan.crossing_bound_tokens_per_s, "bound": bound, "rows": rows, "runs": runs,
            "targets": targets}


def table(res: dict) -> str:
    lines = [f"### {res['instance']} (Helix published {res['helix_published']:,.1f}; Helix bound "
             f"{res['helix_bound']:,.1f}; layer-crossing bound {res['crossing_bound']:,.1f})", "",
             "| method | tokens/s | vs Helix | gap to bound | time (s) |", "|---|---:|---:|---:|---:|"]
    for row in res["rows"]:
        gap = f"{row['gap']:.1%}" if row["gap"] is not None else "-"
        lines.append(f"| {row['method']} | {row['value']:,.1f} | {row['value'] / res['helix_published']:.2f}x | {gap} | {row['time_s']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short budgets (smoke test)")
    ap.add_argument("--out", help="write every number as JSON here")
    args = ap.parse_args(argv)
    budgets = QUICK if args.quick else FULL
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    results = [run_instance(name, budget) for name, budget in budgets.items()]
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    print(f"## moeplan cluster benchmark ({'quick' if args.quick else 'full'} run, {wall:.0f} s; {os.cpu_count()} cores, "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; {platform.python_version()})\n")
    for res in results:
        print(table(res) + "\n")
    print("### Targets\n\n| target | measured | result |\n|---|---|---|")
    targets = [t for res in results for t in res["targets"]]
    for t in targets:
        print(f"| {t['name']} | {t['measured']} | {'PASS' if t['pass'] else 'FAIL'} |")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"results": results, "targets": targets,
                       "meta": {"quick": args.quick, "wall_s": wall, "load_before": load_before, "load_after": load_after}},
                      fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
