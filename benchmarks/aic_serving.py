"""moeplan's serving simulator against AIConfigurator's serving estimates, on AIConfigurator's own top configurations.

Run from the repository root (moeplan installed)::

    python benchmarks/aic_serving.py                 # ~1-3 min on 2 cores; Markdown tables on stdout
    python benchmarks/aic_serving.py --out r.json    # also every number as JSON
    python benchmarks/aic_serving.py --quick         # the first configuration of each mode and scenario

Issue 11's target: serving-level predictions (continuous batching, disaggregation) for AIConfigurator's
chosen layouts within 20 % of the tokens/s/GPU AIConfigurator reports for them, every remaining
difference explained. The configurations are the top-5 aggregated and disaggregated rows of
AIConfigurator's sweep for issue 11's four scenarios (ISL 4000, OSL 500, its default SLA TTFT 2000 ms /
TPOT 30 ms), read from the cache ``benchmarks/aic_reference.json`` (``benchmarks/aic_reference.py``;
no aiconfigurator needed here).

moeplan's side, per row: the same worker layouts, counts and batch caps as pools of moeplan's serving
simulator (:mod:`planner.perf.simulator`) on its latency model (:func:`planner.perf.latency_model_cost`,
``calibrated_factors`` of the GPU, the number formats the sweep resolved, AIConfigurator's power-law
routing skew as in ``benchmarks/aic_compare.py``):

- aggregated: one instance of the row's layout, at most ``bs x dp`` sequences per step, chunked
  prefill within TensorRT-LLM's default ``max_num_tokens`` of 8,192 per attention-DP rank;
- disaggregated: ``(p)workers`` prefill instances (whole prompts, at most ``(p)bs x dp`` per step)
  and ``(d)workers`` decode instances (at most ``(d)bs x dp`` sequences), the KV cache moved at the
  GPU's inter-node bandwidth;
- fixed lengths 4000 / 500;
- **closed loop** (the target's quantity): AIConfigurator's tokens/s/GPU for a row is a prediction of a
  benchmark with a fixed number of requests in flight -- its ``concurrency`` column, ``bs x`` attention
  DP ``x`` workers of the aggregated or decode role (``global_bs x (d)workers`` in
  ``aiconfigurator.sdk.picking._build_disagg_summary_dict``; the ``bench_run.sh`` it writes runs aiperf
  at fixed concurrencies). moeplan simulates that load (``simulate(..., concurrency=N)``: N clients, each
  sending its next request when the previous one ends) on ``max(1000, 10 N)`` requests and reports the
  steady state (:meth:`~planner.perf.sim_results.SimResult.steady_state`: the completions between the
  first and the last N); tokens/s/GPU = requests/s x OSL / GPUs, AIConfigurator's definition;
- **open loop** (context, the previous comparison): Poisson arrivals; goodput
  (:func:`planner.perf.goodput`) at the SLA applied to the **median** TTFT and TPOT (AIConfigurator
  checks its single estimate of each, not a tail), capped at the rate the pools sustain, as the
  deployment search does (``steady_state_cap``: per pool, instances x one instance's full-batch
  throughput at the TPOT limit, the least pool; a finite probe lets a decode pool absorb a burst
  within the TPOT budget of 30 ms x 499 tokens); tokens/s/GPU = goodput x OSL / GPUs.

Error = ``moeplan / AIConfigurator - 1`` per row; the target is on the median absolute closed-loop error.
Columns that explain it: AIConfigurator's latency implied by its throughput at its concurrency
(Little's law, ``N x OSL / (tokens/s/GPU x GPUs)``) beside moeplan's mean end-to-end latency, and the
static decode TPOT of both at the row's batch (AIConfigurator's from the cached point, before the 1.08
correction its sweep applies; moeplan's the mean decode step of its cost model over the 499 steps).
The exit code is 0 even when the target is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aic_compare import CACHE, MODELS, SYSTEMS, _balancedness, _precision  # noqa: E402

from planner.deploy.end_to_end import steady_bound  # noqa: E402
from planner.deploy.instances import Imbalance, Instance  # noqa: E402
from planner.deploy.scoring import Candidate, PhaseScore, bound_candidate  # noqa: E402
from planner.inputs import SLO, poisson_workload  # noqa: E402
from planner.perf import ParallelLayout, Pool, goodput, latency_model_cost, simulate  # noqa: E402
from planner.perf.calibration import calibrated_factors  # noqa: E402

TARGET = 0.20
MAX_NUM_TOKENS = 8192  # TensorRT-LLM's default tokens per forward step (per attention-DP rank)


TPOT_CORRECTION = 1.08  # AIConfigurator's decode_latency_correction (disaggregated sweep; reference notes disagg.md
TTFT_CORRECTION = 1.1  # section 2.7), prefill_latency_correction: the cached rows are the static points x these
PREFILL_RATE_FACTOR = 0.9  # aiconfigurator/sdk/picking.py _RATE_MATCHING_PREFILL_DEGRADATION_FACTOR ("pipeline bubble")
DECODE_RATE_FACTOR = 0.92  # _RATE_MATCHING_DECODE_DEGRADATION_FACTOR ("not saturating the batchsize slot")


def _point(scenario: dict, role: str, layout: str, batch: int) -> dict:
    """AIConfigurator's cached point of this worker: number formats and static estimate."""
    for p in scenario["points"]:
        if p["role"] == role and p["layout"] == layout and p["batch"] == batch:
            return p
    raise KeyError(f"{scenario['name']}: no cached point for {role} {layout} bs {batch}")


def _quant(scenario: dict, role: str, layout: str, batch: int) -> dict:
    """The number formats AIConfigurator's sweep resolved for this worker (from the cached points)."""
    return _point(scenario, role, layout, batch)["quant"]


def _pool(scenario: dict, role: str, layout: str, batch: int, count: int, isl: int, osl: int) -> Pool:
    model, gpu = MODELS[scenario["model"]], SYSTEMS[scenario["system"]]
    lay = ParallelLayout.parse(layout)
    sequences = batch * lay.dp
    # the routing skew of AIConfigurator's MoE tables at the step's tokens: prompts for prefill, one per sequence
    tokens = sequences * isl if role == "prefill" else sequences
    cost = latency_model_cost(model, gpu, lay, balancedness=_balancedness(model, lay, tokens),
                              factors=calibrated_factors(gpu), precision=_precision(_quant(scenario, role, layout, batch)),
                              max_batch_size=max(sequences, 1), max_prefill_batch=max(sequences, 1),
                              max_context_tokens=isl + osl, memory_options={"memory_utilization": 1.0})  # fmt: skip
    if role == "prefill":
        return Pool(cost, count, phase="prefill", token_budget=sequences * isl, max_batch_size=sequences)
    if role == "decode":
        return Pool(cost, count, phase="decode", max_batch_size=sequences)
    return Pool(cost, count, phase="both", token_budget=MAX_NUM_TOKENS * lay.dp, max_batch_size=sequences)


def _score(pool: Pool, role: str, layout: str, slo: SLO, isl: int, osl: int) -> PhaseScore:
    """The pool's instance as a scored candidate carrying its throughput bound (planner.deploy.scoring)."""
    lay = ParallelLayout.parse(layout)
    cost, ctx = pool.cost, isl + osl // 2
    inst = Instance(lay.label, lay.num_gpus, lay, cost.kv_capacity_tokens,
                    Imbalance(lay.ep, cost.balancedness, None, "AIConfigurator's power-law routing"))

    def times(prompts: int, batch: int) -> tuple[float, float]:
        return (cost.step_time_s(prompts, prompts * isl, prompts * isl * isl, 0, 0),
                cost.step_time_s(0, 0, 0, batch, batch * ctx))

    cand = Candidate({"agg": "both"}.get(role, role), inst, pool.token_budget, pool.max_batch_size)
    bounded = bound_candidate(cand, times, slo, isl, osl)
    return PhaseScore(bounded or cand, 0.0, math.nan, math.nan, False)


def configurations(reference: dict, quick: bool) -> list[dict]:
    """Every top row of both modes as ``{scenario, mode, label, gpus, aic, pools: [(role, layout, bs, n)]}``."""
    out = []
    for sc in reference["scenarios"]:
        for mode, rows in sc["top"].items():
            for rank, row in enumerate(rows[:1] if quick else rows, start=1):
                if mode == "agg":
                    pools = [("agg", row["parallel"], int(row["bs"]), 1)]
                    label = f"agg {row['parallel']} bs{row['bs']}"
                else:
                    pools = [("prefill", row["(p)parallel"], int(row["(p)bs"]), int(row["(p)workers"])),
                             ("decode", row["(d)parallel"], int(row["(d)bs"]), int(row["(d)workers"]))]
                    label = (f"{row['(p)workers']}P{row['(d)workers']}D (p) {row['(p)parallel']} bs{row['(p)bs']} "
                             f"(d) {row['(d)parallel']} bs{row['(d)bs']}")
                out.append({"scenario": sc["name"], "mode": mode, "rank": rank, "label": label,
                            "gpus": int(row["num_total_gpus"]), "pools": pools,
                            "aic": {"tokens_per_s_per_gpu": float(row["tokens/s/gpu"]), "ttft_ms": float(row["ttft"]),
                                    "tpot_ms": float(row["tpot"])}})  # fmt: skip
    return out


def _static_tpot_ms(pool: Pool, isl: int, osl: int) -> float:
    """Mean decode step of ``pool``'s instance at its full batch over one request's decode, ms: the quantity
    of AIConfigurator's static decode estimate (every step of the batch at the same context)."""
    b = pool.max_batch_size
    steps = [pool.cost.step_time_s(0, 0, 0, b, b * (isl + i + 1)) for i in range(osl - 1)]
    return 1e3 * float(np.mean(steps))


def _static_prefill_ms(pool: Pool, isl: int) -> float:
    """One full batch of whole prompts on ``pool``'s instance, ms (AIConfigurator's static prefill of the batch)."""
    b = pool.max_batch_size
    return 1e3 * pool.cost.step_time_s(b, b * isl, float(b * isl * isl), 0, 0)


def rate_matching(sc: dict, conf: dict, pools: list[Pool], isl: int, osl: int) -> dict:
    """A disaggregated row's pool capacities (req/s) by AIConfigurator's rule and by moeplan's static times.

    AIConfigurator (``_build_disagg_summary_dict``): ``min(P x 0.9, D x 0.92)`` with ``P`` = prefill workers x
    their batch / (static TTFT x 1.1) and ``D`` = decode workers x their batch / (static TPOT x 1.08 x
    (OSL - 1)). moeplan's capacities use its cost model the same way without factors (full batches)."""
    (_, p_layout, p_bs, p_n), (_, d_layout, d_bs, d_n) = conf["pools"]
    pre, dec = pools
    p_aic = float(_point(sc, "prefill", p_layout, p_bs)["aic"]["ttft_ms"])
    d_aic = float(_point(sc, "decode", d_layout, d_bs)["aic"]["tpot_ms"])
    aic_p = p_n * pre.max_batch_size / (p_aic * TTFT_CORRECTION / 1e3)
    aic_d = d_n * dec.max_batch_size / (d_aic * TPOT_CORRECTION * (osl - 1) / 1e3)
    ours_p = p_n * pre.max_batch_size / (_static_prefill_ms(pre, isl) / 1e3)
    ours_d = d_n * dec.max_batch_size / (_static_tpot_ms(dec, isl, osl) * (osl - 1) / 1e3)
    rate = min(aic_p * PREFILL_RATE_FACTOR, aic_d * DECODE_RATE_FACTOR)
    return {"aic_prefill_req_per_s": aic_p, "aic_decode_req_per_s": aic_d, "moeplan_prefill_req_per_s": ours_p,
            "moeplan_decode_req_per_s": ours_d, "aic_binds": "prefill" if aic_p * PREFILL_RATE_FACTOR < aic_d * DECODE_RATE_FACTOR else "decode",
            "aic_reproduced_tokens_per_s_per_gpu": rate * osl / conf["gpus"]}  # fmt: skip


def closed_loop(pools: list[Pool], concurrency: int, isl: int, osl: int) -> dict:
    """The pools under ``concurrency`` requests always in flight: steady-state throughput and latencies."""
    n = max(1000, 10 * concurrency)
    work = poisson_workload(1.0, n, input_tokens=isl, output_tokens=osl, seed=0)  # the arrival times are not used
    res = simulate(work, pools, concurrency=concurrency)
    s = res.steady_state()
    return {"concurrency": concurrency, "requests": n, "window_requests": int(s["requests"]),
            "req_per_s": s["requests_per_s"], "tokens_per_s_per_gpu": s["output_tokens_per_s_per_gpu"],
            "ttft_ms_p50": s["ttft_ms_p50"], "tpot_ms_p50": s["tpot_ms_p50"], "ttft_ms_mean": s["ttft_ms_mean"],
            "tpot_ms_mean": s["tpot_ms_mean"], "e2e_ms_mean": s["e2e_ms_mean"],
            "whole_run_tokens_per_s_per_gpu": res.stats()["output_tokens_per_s_per_gpu"], "wall_s": res.wall_s}


def simulate_configuration(reference: dict, conf: dict) -> dict:
    """moeplan's serving-level tokens/s/GPU for one AIConfigurator configuration (module docstring)."""
    sc = next(s for s in reference["scenarios"] if s["name"] == conf["scenario"])
    isl, osl = reference["isl_tokens"], reference["osl_tokens"]
    pools = [_pool(sc, role, layout, bs, n, isl, osl) for role, layout, bs, n in conf["pools"]]
    # AIConfigurator's concurrency: bs x attention DP x workers of the role that decodes
    concurrency = sum(p.instances * (p.max_batch_size or 1) for p in pools if p.phase != "prefill")
    n = int(min(3000, max(500, 5 * concurrency)))
    # the SLA on the medians (AIConfigurator's single estimates); the default SLA of its sweep
    slo = SLO(2000.0, 30.0, attainment_target=0.5, rule="percentile")
    guess = conf["aic"]["tokens_per_s_per_gpu"] * conf["gpus"] / osl
    work = poisson_workload(1.0, n, input_tokens=isl, output_tokens=osl, seed=0)
    g = goodput(work, pools, slo, arrivals="trace", rate_req_per_s=guess, rel_tol=0.02, growth=1.25, stop_early=True)
    gpus = sum(p.num_gpus for p in pools)
    scores = [_score(p, role, layout, slo, isl, osl) for p, (role, layout, _bs, _n) in zip(pools, conf["pools"])]
    cap = steady_bound(scores, [p.instances for p in pools])
    ours = min(g.rate_req_per_s, cap) * osl / gpus
    at = simulate(work.with_rate(guess), pools)  # at AIConfigurator's own rate: the latencies moeplan predicts there
    probe = [p for p in g.probes if p.rate_req_per_s == g.rate_req_per_s]
    closed = closed_loop(pools, concurrency, isl, osl)
    aic = conf["aic"]["tokens_per_s_per_gpu"]
    closed["error"] = closed["tokens_per_s_per_gpu"] / aic - 1.0
    closed["aic_implied_e2e_ms"] = 1e3 * concurrency * osl / (aic * gpus)  # Little's law on AIConfigurator's row
    role, layout, bs, _n = conf["pools"][-1]
    closed["moeplan_static_tpot_ms"] = _static_tpot_ms(pools[-1], isl, osl)
    closed["aic_static_tpot_ms"] = float(_point(sc, role, layout, bs)["aic"]["tpot_ms"])
    # latency over the static decode time of one request (OSL - 1 steps at the full batch): AIConfigurator's
    # implied by its throughput, moeplan's simulated; moeplan / AIC = (AIC's / moeplan's) x static TPOT ratio
    closed["aic_latency_over_static"] = closed["aic_implied_e2e_ms"] / (closed["aic_static_tpot_ms"] * (osl - 1))
    closed["moeplan_latency_over_static"] = closed["e2e_ms_mean"] / (closed["moeplan_static_tpot_ms"] * (osl - 1))
    if conf["mode"] == "disagg":
        closed["rate_matching"] = rate_matching(sc, conf, pools, isl, osl)
    return {"requests": n, "gpus": gpus, "closed": closed, "goodput_req_per_s": g.rate_req_per_s, "steady_bound_req_per_s": cap,
            "capped": g.rate_req_per_s > cap, "tokens_per_s_per_gpu": ours,
            "ttft_ms_p50": probe[-1].ttft_ms_percentile if probe else math.nan,
            "tpot_ms_p50": probe[-1].tpot_ms_percentile if probe else math.nan,
            "aic_rate_req_per_s": guess, "ttft_ms_p50_at_aic_rate": at.percentile("ttft_ms", 50),
            "tpot_ms_p50_at_aic_rate": at.percentile("tpot_ms", 50),
            "error": ours / conf["aic"]["tokens_per_s_per_gpu"] - 1.0}


def _table(rows: list[dict]) -> str:
    lines = ["| scenario | mode | AIConfigurator configuration | GPUs | AIC tok/s/GPU | moeplan tok/s/GPU | error | "
             "AIC TTFT / TPOT ms | moeplan p50 TTFT / TPOT ms at AIC's rate | moeplan p50 TTFT / TPOT ms at its goodput |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        o, a = r["moeplan"], r["aic"]
        lines.append(f"| {r['scenario']} | {r['mode']} | {r['label']} | {r['gpus']} | {a['tokens_per_s_per_gpu']:,.0f} | "
                     f"{o['tokens_per_s_per_gpu']:,.0f} | {100 * o['error']:+.0f} % | {a['ttft_ms']:,.0f} / "
                     f"{a['tpot_ms']:.1f} | {o['ttft_ms_p50_at_aic_rate']:,.0f} / {o['tpot_ms_p50_at_aic_rate']:.1f} | "
                     f"{o['ttft_ms_p50']:,.0f} / {o['tpot_ms_p50']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def _closed_table(rows: list[dict]) -> str:
    lines = ["| scenario | mode | AIConfigurator configuration | GPUs | concurrency | AIC tok/s/GPU | moeplan tok/s/GPU | "
             "error | AIC TTFT / TPOT ms | moeplan p50 TTFT / TPOT ms | AIC implied / moeplan mean latency s | "
             "static TPOT ms AIC / moeplan | latency / static decode AIC / moeplan |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        c, a = r["moeplan"]["closed"], r["aic"]
        lines.append(f"| {r['scenario']} | {r['mode']} | {r['label']} | {r['gpus']} | {c['concurrency']} | "
                     f"{a['tokens_per_s_per_gpu']:,.0f} | {c['tokens_per_s_per_gpu']:,.0f} | {100 * c['error']:+.0f} % | "
                     f"{a['ttft_ms']:,.0f} / {a['tpot_ms']:.1f} | {c['ttft_ms_p50']:,.0f} / {c['tpot_ms_p50']:.1f} | "
                     f"{c['aic_implied_e2e_ms'] / 1e3:.1f} / {c['e2e_ms_mean'] / 1e3:.1f} | "
                     f"{c['aic_static_tpot_ms']:.1f} / {c['moeplan_static_tpot_ms']:.1f} | "
                     f"{c['aic_latency_over_static']:.2f} / {c['moeplan_latency_over_static']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def _rate_table(rows: list[dict]) -> str:
    lines = ["| scenario | AIConfigurator configuration | AIC prefill / decode req/s | AIC binds | AIC rebuilt / reported "
             "tok/s/GPU | moeplan prefill / decode req/s | moeplan closed loop req/s |",
             "|---|---|---:|---|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if r["mode"] != "disagg":
            continue
        c = r["moeplan"]["closed"]
        m = c["rate_matching"]
        lines.append(f"| {r['scenario']} | {r['label']} | {m['aic_prefill_req_per_s']:.2f} / {m['aic_decode_req_per_s']:.2f} | "
                     f"{m['aic_binds']} | {m['aic_reproduced_tokens_per_s_per_gpu']:,.0f} / {r['aic']['tokens_per_s_per_gpu']:,.0f} | "
                     f"{m['moeplan_prefill_req_per_s']:.2f} / {m['moeplan_decode_req_per_s']:.2f} | {c['req_per_s']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def _errors(rows: list[dict], key: str) -> np.ndarray:
    return np.array([r["moeplan"]["closed"]["error"] if key == "closed" else r["moeplan"]["error"] for r in rows])


def _summary(rows: list[dict]) -> str:
    lines = ["| set | configurations | closed loop: median abs error | median signed | within 20 % | "
             "open loop: median abs error | median signed | within 20 % |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    groups = {"all": rows}
    for mode in ("agg", "disagg"):
        groups[mode] = [r for r in rows if r["mode"] == mode]
    for name in sorted({r["scenario"] for r in rows}):
        groups[name] = [r for r in rows if r["scenario"] == name]
    for name in sorted({r["scenario"] for r in rows}):
        for mode in ("agg", "disagg"):
            groups[f"{name} {mode}"] = [r for r in rows if r["scenario"] == name and r["mode"] == mode]
    for name, rs in groups.items():
        if not rs:
            continue
        cells = []
        for key in ("closed", "open"):
            err = _errors(rs, key)
            cells.append(f"{100 * np.median(np.abs(err)):.1f} % | {100 * np.median(err):+.1f} % | "
                         f"{int((np.abs(err) <= TARGET).sum())}")
        lines.append(f"| {name} | {len(rs)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the first configuration of each mode and scenario")
    ap.add_argument("--cache", default=str(CACHE), help="AIConfigurator's cached answers (benchmarks/aic_reference.json)")
    ap.add_argument("--out", help="write every number as JSON to this file")
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    if not cache.exists():
        print(f"skipped: no cache {cache}; run python benchmarks/aic_compare.py --refresh", file=sys.stderr)
        return 0
    reference = json.loads(cache.read_text(encoding="utf-8"))
    start = time.perf_counter()
    rows = []
    for conf in configurations(reference, args.quick):
        t = time.perf_counter()
        conf["moeplan"] = simulate_configuration(reference, conf)
        conf["wall_s"] = time.perf_counter() - t
        rows.append(conf)
        print(f"{conf['scenario']} {conf['label']}: closed loop {conf['moeplan']['closed']['tokens_per_s_per_gpu']:,.0f}, "
              f"open loop {conf['moeplan']['tokens_per_s_per_gpu']:,.0f} vs {conf['aic']['tokens_per_s_per_gpu']:,.0f} "
              f"tok/s/GPU ({conf['wall_s']:.1f} s)", file=sys.stderr)  # fmt: skip
    median = float(np.median(np.abs(_errors(rows, "closed"))))
    median_open = float(np.median(np.abs(_errors(rows, "open"))))
    prov = reference["provenance"]
    print("# moeplan's serving simulator on AIConfigurator's top configurations\n")
    print(f"AIConfigurator {prov['versions']['aiconfigurator']} (cached {prov['date']}); ISL {reference['isl_tokens']}, "
          f"OSL {reference['osl_tokens']}. Closed loop: AIConfigurator's concurrency always in flight, steady state. "
          f"Open loop: Poisson goodput at the SLA TTFT 2000 ms / TPOT 30 ms on the medians.\n")
    print(_summary(rows) + "\n")
    print("## Closed loop at AIConfigurator's concurrency\n")
    print(_closed_table(rows) + "\n")
    print("### Disaggregated rows: AIConfigurator's rate matching (x 0.9 prefill, x 0.92 decode) and the pools' capacities\n")
    print(_rate_table(rows) + "\n")
    print("## Open loop (Poisson goodput at the SLA)\n")
    print(_table(rows) + "\n")
    print(f"Target: median |error| <= {TARGET:.0%} (closed loop): {100 * median:.1f} % "
          f"{'PASS' if median <= TARGET else 'FAIL'} (open loop {100 * median_open:.1f} %); "
          f"{len(rows)} configurations; {time.perf_counter() - start:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "median_abs_error": median,
                                              "median_abs_error_open_loop": median_open}, indent=1, default=str),
                                  encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
