"""The load model behind the deployment search's verdicts: the search under arrivals against the search at a fixed
concurrency, both priced by AIConfigurator.

Run from the repository root (moeplan installed)::

    python benchmarks/deploy_load.py                 # the 14 scenarios of benchmarks/deploy.py
    python benchmarks/deploy_load.py --only 8xh100   # the scenarios whose name contains this text
    python benchmarks/deploy_load.py --no-aic        # moeplan only
    python benchmarks/deploy_load.py --quick --no-aic   # benchmarks/deploy.py's one small scenario (a smoke run)
    python benchmarks/deploy_load.py --out r.json    # also every number as JSON
    python benchmarks/deploy_load.py --routing aic   # both searches under AIConfigurator's routing assumption

Why. AIConfigurator prices a deployment at a fixed concurrency: ``bs`` requests per attention-DP rank always
in flight, the load of an ``aiperf`` / ``genai-perf --concurrency`` run. moeplan's search by default scores each
deployment by its goodput under Poisson arrivals (``load="open"``): the highest rate whose p90 TTFT and TPOT meet
the limits. With ``load="closed"`` it ranks the same deployments (steps 1-4 are shared) by the rate served at the
most clients whose steady-state p90 TTFT and TPOT meet the limits (``planner.perf.max_concurrency``): the question
AIConfigurator answers. This benchmark runs both and has AIConfigurator price the closed-loop search's pick.

What. For each scenario: the search as ``benchmarks/deploy.py`` runs it (open loop, TensorRT-LLM's memory
rule), and the same search with ``load="closed"``. The open pick's closed-loop numbers are read from the closed
search, which simulated the same deployment. AIConfigurator prices the closed-loop pick as
``benchmarks/deploy.py`` prices the open one: its estimate at the pick's operating point (the closed loop at
its client count, steps recorded: prompts per prefill step and time-weighted sequences per decode step, per
rank), and at the batch sizes up to our caps that meet the limits with the most throughput (answers cached in
``benchmarks/aic_results.json``).

Routing. By default moeplan's searches price MoE imbalance with their own default (the engines' placement replayed
on moeplan's synthetic trace, calibrated to TensorRT-LLM's measured DeepSeek-R1 imbalance), while AIConfigurator
prices with its synthetic power-law routing (``benchmarks/aic_compare.py``: ``power_law_balancedness``), which is
much harsher at large EP sizes (gpt-oss-120b at EP 8: b = 0.58 for 128 tokens per rank, against moeplan's 0.80).
``--routing aic`` gives both searches AIConfigurator's assumption through the search's ``balancedness`` input
(``{ep: b}``, b drawn for ``--routing-tokens-per-rank`` tokens per rank and step, default 128: a decode step of
AIConfigurator's typical batch), so that the two tools price the same inputs. AIConfigurator then prices both
picks, the open-loop search's and the closed-loop search's.

Exit code 0 whatever the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import deploy as bench  # noqa: E402  (benchmarks/deploy.py: scenarios, the search call, AIConfigurator requests)
from aic_compare import AIC_MOE_MAX_TOKENS, ALPHA, ALPHA_DEFAULT, power_law_balancedness  # noqa: E402

from planner.common.fileio import atomic_write_text  # noqa: E402


def _per_budget_gpu(d, num_gpus: int) -> float:
    """Output tokens/s per GPU of the budget (a deployment may use fewer GPUs than the budget)."""
    return d.tokens_per_s_per_gpu * d.num_gpus / num_gpus


def _numbers(d, num_gpus: int) -> dict:
    return {"clients": d.concurrency, "meets": d.meets_slo, "requests_per_s": d.rate_req_per_s,
            "tokens_per_s_per_budget_gpu": _per_budget_gpu(d, num_gpus), "ttft_ms": d.ttft_ms, "tpot_ms": d.tpot_ms}


def aic_routing(s, tokens_per_rank: int) -> dict[int, float]:
    """AIConfigurator's power-law routing as the search's ``balancedness``: ``{ep: b}`` for the EP sizes up to the
    scenario's GPUs, drawn for ``tokens_per_rank`` tokens per rank (capped at its MoE tables' largest count)."""
    from planner.profiles import get_model

    arch = get_model(s.model)
    out, ep = {}, 2
    while ep <= s.num_gpus:
        if arch.num_routed_experts % ep == 0:
            out[ep] = power_law_balancedness(arch.num_routed_experts, ep, arch.top_k,
                                             min(tokens_per_rank * ep, AIC_MOE_MAX_TOKENS),
                                             ALPHA.get(s.model, ALPHA_DEFAULT))
        ep *= 2
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="benchmarks/deploy.py's one small scenario")
    ap.add_argument("--only", help="run the scenarios whose name contains this text")
    ap.add_argument("--no-aic", action="store_true", help="moeplan only")
    ap.add_argument("--aic-python", help="interpreter with aiconfigurator (as benchmarks/deploy.py)")
    ap.add_argument("--out", help="write every number as JSON to this file")
    ap.add_argument("--routing", choices=("moeplan", "aic"), default="moeplan",
                    help="MoE imbalance of both searches: moeplan's default, or AIConfigurator's power-law routing")
    ap.add_argument("--routing-tokens-per-rank", type=int, default=128,
                    help="with --routing aic: tokens per rank and step at which its balancedness is drawn")
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
        routing = {} if args.routing == "moeplan" else {"balancedness": aic_routing(s, args.routing_tokens_per_rank)}
        t = time.perf_counter()
        r_open = bench.our_pick(s, **routing)
        t_open = time.perf_counter() - t
        t = time.perf_counter()
        r_closed = bench.our_pick(s, load="closed", **routing)
        t_closed = time.perf_counter() - t
        by_label = {d.label: d for d in r_closed.deployments}  # steps 1-4 are shared: the same deployments
        o, c = r_open.chosen, r_closed.chosen
        row = {"scenario": s.name, "search_pick": o.label, "search_mode": o.mode,
               "search_open_loop_tokens_per_s_per_gpu": _per_budget_gpu(o, s.num_gpus),
               "search_pick_closed": _numbers(by_label[o.label], s.num_gpus),
               "closed_pick": c.label, "closed_mode": c.mode, "closed_pick_closed": _numbers(c, s.num_gpus),
               "all": [{"deployment": d.label, "mode": d.mode, "closed": _numbers(d, s.num_gpus)}
                       for d in r_closed.deployments],
               "open_search_s": t_open, "closed_search_s": t_closed, "balancedness": routing.get("balancedness")}
        if not args.no_aic:
            row["aic_best"] = bench.aic_best(bench.aic_answer(bench.aic_default_request(s), cache, python, False, say))
            row["aic_priced"] = bench.aic_priced(bench.aic_answer(
                bench.aic_price_request(s, bench.operating_point(r_closed)), cache, python, False, say))
            row["aic_priced_gpus"] = c.num_gpus
            row["aic_priced_open"] = bench.aic_priced(bench.aic_answer(
                bench.aic_price_request(s, bench.operating_point(r_open)), cache, python, False, say))
            row["aic_priced_open_gpus"] = o.num_gpus
        rows.append(row)
        say(f"{s.name}: searches {t_open:.1f} s open, {t_closed:.1f} s closed; open {o.xpyd}, closed {c.xpyd}")
    print(f"MoE routing of both searches: {args.routing}"
          + (f" (AIConfigurator's power law at {args.routing_tokens_per_rank} tokens per rank)" if args.routing == "aic"
             else " (the search's default)") + "\n")
    print(_table(rows, chosen, args.no_aic))
    if args.out:
        atomic_write_text(args.out, json.dumps(rows, indent=2, default=str) + "\n")
    return 0


def _table(rows, scenarios, no_aic: bool) -> str:
    head = ["scenario", "search s: open / closed", "open-loop search's pick",
            "its tok/s/GPU: open loop / closed loop (N)", "closed-loop search's pick", "its closed-loop tok/s/GPU (N)"]
    if not no_aic:
        head += ["AIC best: mode, tok/s/GPU", "open-loop pick priced by AIC: tok/s/GPU, vs AIC best",
                 "closed-loop pick's mode = AIC's", "closed-loop pick priced by AIC",
                 "vs AIC best", f"within {1 - bench.TARGET_QUALITY:.0%}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ok = priced = ok_open = priced_open = 0
    for row, s in zip(rows, scenarios):
        a, c = row["search_pick_closed"], row["closed_pick_closed"]
        cells = [row["scenario"], f"{row['open_search_s']:.1f} / {row['closed_search_s']:.1f}", row["search_pick"],
                 f"{row['search_open_loop_tokens_per_s_per_gpu']:.0f} / {a.get('tokens_per_s_per_budget_gpu', 0):.0f} "
                 f"({a['clients']})", row["closed_pick"], f"{c.get('tokens_per_s_per_budget_gpu', 0):.0f} ({c['clients']})"]
        if not no_aic:
            best, p = row["aic_best"], row["aic_priced"]
            b_tok = best.get("tokens_per_s_per_gpu")
            mode = "agg" if row["closed_mode"] == "aggregated" else "disagg"
            cells.append(f"{best.get('mode', '-')}, {b_tok:.0f}" if b_tok else best["status"])
            po = row.get("aic_priced_open", {})
            if po.get("tokens_per_s_per_gpu") is not None and b_tok:
                po_tok = po["tokens_per_s_per_gpu"] * row["aic_priced_open_gpus"] / s.num_gpus
                priced_open += 1
                ok_open += po_tok / b_tok >= bench.TARGET_QUALITY
                cells.append(f"{po_tok:.0f}, {po_tok / b_tok:.2f}")
            else:
                cells.append(po.get("status", "-")[:60])
            cells.append(("yes" if mode == best.get("mode") else "no") if b_tok else "-")
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
                     f"{ok} of {len(rows)} ({priced} priced by it); open-loop picks: {ok_open} of {len(rows)} "
                     f"({priced_open} priced by it)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
