"""The load model behind the deployment search's verdicts: goodput under arrivals against a fixed concurrency.

Run from the repository root (moeplan installed)::

    python benchmarks/deploy_load.py                 # the 14 scenarios of benchmarks/deploy.py
    python benchmarks/deploy_load.py --only 8xh100   # the scenarios whose name contains this text
    python benchmarks/deploy_load.py --no-aic        # moeplan only
    python benchmarks/deploy_load.py --quick --no-aic   # benchmarks/deploy.py's one small scenario (a smoke run)
    python benchmarks/deploy_load.py --out r.json    # also every number as JSON

Why. AIConfigurator prices a deployment at a fixed concurrency: ``bs`` requests per attention-DP rank always
in flight, the load of an ``aiperf`` / ``genai-perf --concurrency`` run. moeplan's search scores each
deployment by its goodput under Poisson arrivals: the highest rate whose p90 TTFT and TPOT meet the limits.
On four 8-GPU scenarios of ``benchmarks/deploy.py`` the two tools disagree on aggregated against
disaggregated serving, and this benchmark asks whether that is the load model or the cost model.

What. For each scenario: the search as ``benchmarks/deploy.py`` runs it (open loop, TensorRT-LLM's memory
rule); then every deployment it simulated end to end (the chosen one and its alternatives, aggregated ones
always among them) is scored again with moeplan's own simulator in closed loop
(``planner.perf.simulate(..., concurrency=N)``): the largest number of clients ``N`` whose steady-state p90
TTFT and TPOT meet the limits (``N`` doubled from 8, then bisected to 1/32 of it; ``6 N`` requests of the
scenario's lengths, at least 1,500), and the steady-state output tokens/s per GPU of the budget at that
``N`` (``SimResult.steady_state``: between warm-up and drain). The best of them is the *closed-loop pick*.
AIConfigurator then prices it as ``benchmarks/deploy.py`` prices the search's pick: its estimate at the
pick's operating point (the closed-loop run at ``N``: prompts per prefill step and time-weighted sequences per
decode step, per rank), and at the batch sizes up to our caps that meet the limits with the most throughput
(answers cached in ``benchmarks/aic_results.json``; the search's own pick re-uses ``deploy.py``'s request).

This is a measurement about the two load models, not a second search: the search itself scores open-loop
goodput (docs/deploy.md). Exit code 0 whatever the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import deploy as bench  # noqa: E402  (benchmarks/deploy.py: scenarios, the search call, AIConfigurator requests)

from planner.deploy.verify import deployment_pools  # noqa: E402
from planner.inputs import poisson_workload  # noqa: E402
from planner.perf import simulate  # noqa: E402

MIN_REQUESTS = 1500
REQUESTS_PER_CLIENT = 6
START_CLIENTS = 8
MAX_CLIENTS = 16384
BISECT_TO = 32  # bisection stops when the bracket is narrower than 1/32 of the lower end


def _run(d, s, clients: int, record: bool = False):
    w = poisson_workload(1.0, max(MIN_REQUESTS, REQUESTS_PER_CLIENT * clients), input_tokens=s.isl,
                         output_tokens=s.osl, seed=0)
    return simulate(w, deployment_pools(d), concurrency=clients, record_steps=record)


def closed_loop_score(d, s) -> dict:
    """The largest client count whose steady-state p90 TTFT and TPOT meet the scenario's limits, and the
    steady state there (module docstring); ``clients`` 0 when 8 clients already miss."""
    q = f"_p{int(s.percentile)}"  # steady_state has p50, p90, p99

    def meets(st):
        return st["ttft_ms" + q] <= s.ttft_ms and st["tpot_ms" + q] <= s.tpot_ms

    lo, hi, best, n = 0, None, None, START_CLIENTS
    while n <= MAX_CLIENTS:
        st = _run(d, s, n).steady_state()
        if not meets(st):
            hi = n
            break
        lo, best, n = n, st, 2 * n
    while hi is not None and lo and hi - lo > max(1, lo // BISECT_TO):
        m = (lo + hi) // 2
        st = _run(d, s, m).steady_state()
        if meets(st):
            lo, best = m, st
        else:
            hi = m
    if best is None:
        return {"clients": 0}
    return {"clients": lo, "capped": hi is None, "output_tokens_per_s": best["output_tokens_per_s"],
            "tokens_per_s_per_budget_gpu": best["output_tokens_per_s"] / s.num_gpus,
            "ttft_ms": best["ttft_ms" + q], "tpot_ms": best["tpot_ms" + q], "requests_per_s": best["requests_per_s"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="benchmarks/deploy.py's one small scenario")
    ap.add_argument("--only", help="run the scenarios whose name contains this text")
    ap.add_argument("--no-aic", action="store_true", help="moeplan only")
    ap.add_argument("--aic-python", help="interpreter with aiconfigurator (as benchmarks/deploy.py)")
    ap.add_argument("--out", help="write every number as JSON to this file")
    args = ap.parse_args(argv)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    python = None if args.no_aic else bench.aic_python(args.aic_python)
    cache = bench.AicCache(bench.AIC_CACHE)
    chosen = [s for s in bench.scenarios(args.quick) if args.only is None or args.only in s.name]
    if not chosen:
        say(f"no scenario name contains {args.only!r}")
        return 2
    rows = []
    for s in chosen:
        t = time.perf_counter()
        r = bench.our_pick(s)
        records = [r.plan.chosen, *r.plan.alternatives]
        scores = [closed_loop_score(d, s) for d in records]
        k = max(range(len(records)), key=lambda i: scores[i].get("tokens_per_s_per_budget_gpu", 0.0))
        row = {"scenario": s.name, "search_pick": records[0].xpyd + " " + _layouts(records[0]),
               "search_mode": records[0].mode, "search_open_loop_tokens_per_s_per_gpu": records[0].tokens_per_s_per_gpu,
               "search_pick_closed": scores[0],
               "closed_pick": records[k].xpyd + " " + _layouts(records[k]), "closed_mode": records[k].mode,
               "closed_pick_closed": scores[k],
               "all": [{"deployment": d.xpyd + " " + _layouts(d), "mode": d.mode,
                        "open_loop_tokens_per_s_per_gpu": d.tokens_per_s_per_gpu, "closed": sc}
                       for d, sc in zip(records, scores)],
               "wall_s": time.perf_counter() - t}
        if not args.no_aic:
            row["aic_best"] = bench.aic_best(bench.aic_answer(bench.aic_default_request(s), cache, python, False, say))
            if k == 0:  # the search's pick: deploy.py's request (its open-loop operating point), from the cache
                pools = bench.operating_point(r)
            else:
                pools = bench.pool_points(records[k], _run(records[k], s, scores[k]["clients"], record=True))
            row["aic_priced"] = bench.aic_priced(bench.aic_answer(bench.aic_price_request(s, pools), cache, python,
                                                                  False, say))
            row["aic_priced_gpus"] = records[k].num_gpus
        rows.append(row)
        say(f"{s.name}: {row['wall_s']:.1f} s; search {row['search_pick']}, closed loop {row['closed_pick']}")
    print(_table(rows, chosen, args.no_aic))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2, default=str)
    return 0


def _layouts(d) -> str:
    return " / ".join(p.layout for p in d.pools)


def _table(rows, scenarios, no_aic: bool) -> str:
    head = ["scenario", "search pick (open loop)", "its tok/s/GPU: open loop / closed loop (N)",
            "closed-loop pick", "its closed-loop tok/s/GPU (N)"]
    if not no_aic:
        head += ["AIC best: mode, tok/s/GPU", "closed-loop pick's mode = AIC's", "closed-loop pick priced by AIC",
                 "vs AIC best", f"within {1 - bench.TARGET_QUALITY:.0%}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ok = priced = 0
    for row, s in zip(rows, scenarios):
        a, c = row["search_pick_closed"], row["closed_pick_closed"]
        cells = [row["scenario"], row["search_pick"],
                 f"{row['search_open_loop_tokens_per_s_per_gpu']:.0f} / {a.get('tokens_per_s_per_budget_gpu', 0):.0f} "
                 f"({a['clients']})", row["closed_pick"], f"{c.get('tokens_per_s_per_budget_gpu', 0):.0f} ({c['clients']})"]
        if not no_aic:
            best, p = row["aic_best"], row["aic_priced"]
            b_tok = best.get("tokens_per_s_per_gpu")
            mode = "agg" if row["closed_mode"] == "aggregated" else "disagg"
            cells += [f"{best.get('mode', '-')}, {b_tok:.0f}" if b_tok else best["status"],
                      ("yes" if mode == best.get("mode") else "no") if b_tok else "-"]
            p_tok = p.get("tokens_per_s_per_gpu")
            if p_tok is not None and b_tok:
                p_tok *= row["aic_priced_gpus"] / s.num_gpus  # per GPU of the budget
                ratio = p_tok / b_tok
                priced += 1
                ok += ratio >= bench.TARGET_QUALITY
                cells += [f"{p_tok:.0f}", f"{ratio:.2f}", "PASS" if ratio >= bench.TARGET_QUALITY else "FAIL"]
            else:
                cells += [p["status"][:120], "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    if not no_aic:
        lines.append(f"\nclosed-loop picks priced by AIConfigurator within {1 - bench.TARGET_QUALITY:.0%} of its best: "
                     f"{ok} of {len(rows)} ({priced} priced by it)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
