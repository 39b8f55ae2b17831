"""Deployment-search benchmark: wall time per scenario against the 5 s target, and NVIDIA AIConfigurator side by side.

Run from the repository root (moeplan installed)::

    python benchmarks/deploy.py                      # tables on stdout; AIConfigurator numbers from the cache
    python benchmarks/deploy.py --quick              # one small scenario
    python benchmarks/deploy.py --out r.json         # also every number as JSON
    python benchmarks/deploy.py --refresh-aic        # re-run AIConfigurator for every scenario (~20 min)
    python benchmarks/deploy.py --retime-aic         # re-run only its sweeps: both tools timed in this run
    python benchmarks/deploy.py --aic-python PATH    # the interpreter that has aiconfigurator
    python benchmarks/deploy.py --no-aic             # moeplan only
    python benchmarks/deploy.py --only gpt-oss       # the scenarios whose name contains this text

Scenarios (issue 11): DeepSeek-V3 (FP8 checkpoint) on 32 and 64 x H200, Qwen3-235B-A22B-FP8 on 16 x H200
and 32 x B200, Qwen3-30B-A3B (BF16) on 8 x H100 and 8 x H200, gpt-oss-120b (MXFP4 experts) on 8 x H100;
TTFT 2000 ms / TPOT 50 ms at p90; ISL/OSL 4000/1000 and 2000/500. Each model is priced at its checkpoint's
number formats (docs/precision.md). The baseline measured in the same run is the search's own first
stage alone (layouts and memory, no simulation): what a memory-only sizing costs.

AIConfigurator (``aiconfigurator`` on PyPI, Apache-2.0; never a moeplan requirement): for each scenario
its ``default`` sweep (agg against disagg, backend trtllm, same model, system, GPUs, ISL/OSL and limits)
gives its best deployment and its search time; its estimator (``estimate``) then prices moeplan's chosen
deployment: our layouts and instance counts at our operating point's batch sizes (the chosen deployment
re-simulated at its goodput: mean prompts per prefill step and time-weighted sequences per decode step,
per attention-DP rank), and at the largest batch sizes up to our caps whose estimate meets the limits
(``benchmarks/aic_worker.py``, run in a subprocess by ``--aic-python``, default ``$MOEPLAN_AIC_PYTHON``
or ``/tmp/aicvenv/bin/python``). AIConfigurator takes 20-70 s per sweep on two cores, so its answers are
cached in ``benchmarks/aic_results.json`` (version, call, equivalent CLI command, date, load average,
wall time); a run re-uses them and calls AIConfigurator only for requests not in the cache (an
estimate request changes when our chosen deployment does); ``--refresh-aic`` re-runs them all. What
AIConfigurator refuses is reported in the table, not dropped.

Exit code 0 even when a target is missed (a measurement; no test depends on wall-clock speed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from planner.deploy import plan_deployment
from planner.inputs import SLO
from planner.perf import simulator_core

TARGET_S = 5.0
TARGET_SPEEDUP = 40.0
TARGET_QUALITY = 0.90
AIC_CACHE = Path(__file__).with_name("aic_results.json")
AIC_WORKER = Path(__file__).with_name("aic_worker.py")
AIC_MODELS = {"deepseek-v3": "deepseek-ai/DeepSeek-V3", "qwen3-235b-a22b-fp8": "Qwen/Qwen3-235B-A22B-FP8",
              "qwen3-30b-a3b": "Qwen/Qwen3-30B-A3B", "gpt-oss-120b": "openai/gpt-oss-120b"}
AIC_SYSTEMS = {"h100": "h100_sxm", "h200": "h200_sxm", "b200": "b200_sxm"}
AIC_BACKEND = "trtllm"


@dataclass(frozen=True)
class Scenario:
    model: str
    gpu: str
    num_gpus: int
    isl: int
    osl: int
    ttft_ms: float = 2000.0
    tpot_ms: float = 50.0
    percentile: float = 90.0

    @property
    def name(self) -> str:
        return f"{self.model} {self.num_gpus}x{self.gpu} {self.isl}/{self.osl}"


def scenarios(quick: bool = False) -> list[Scenario]:
    """The issue's scenarios, both lengths each (``quick``: the smallest)."""
    base = [("qwen3-30b-a3b", "h100", 8), ("qwen3-30b-a3b", "h200", 8), ("gpt-oss-120b", "h100", 8),
            ("qwen3-235b-a22b-fp8", "h200", 16), ("qwen3-235b-a22b-fp8", "b200", 32), ("deepseek-v3", "h200", 32),
            ("deepseek-v3", "h200", 64)]
    if quick:
        return [Scenario("qwen3-30b-a3b", "h100", 8, 2000, 500)]
    return [Scenario(m, g, n, isl, osl) for m, g, n in base for isl, osl in ((4000, 1000), (2000, 500))]


#: the memory rule of the engine both tools plan for: AIConfigurator's requests here use its TensorRT-LLM backend,
#: whose KV cache gets free_gpu_memory_fraction = 0.9 of the memory left after the weights (AIConfigurator
#: 0.12.0 trtllm_backend.TRTLLM_DEFAULT_FREE_GPU_MEMORY_FRACTION, memory.kv_cache_budget_bytes "of_free")
MEMORY_RULE = {"memory_utilization": 0.9, "memory_fraction_of": "free"}


def our_pick(scenario: Scenario, **search):
    """moeplan's :class:`~planner.deploy.DeploymentResult` for a scenario (TensorRT-LLM's memory rule; ``search``:
    more :func:`planner.deploy.plan_deployment` arguments, e.g. ``load="closed"``)."""
    slo = SLO(scenario.ttft_ms, scenario.tpot_ms, attainment_target=scenario.percentile / 100, rule="percentile")
    return plan_deployment(scenario.model, scenario.gpu, slo, isl=scenario.isl, osl=scenario.osl,
                           num_gpus=scenario.num_gpus, **MEMORY_RULE, **search)


def _baseline_s(s: Scenario) -> float:
    """Layouts and memory only (the search's first stage), measured in the same run."""
    from planner.deploy.instances import latency_model_layouts
    from planner.profiles import get_gpu, get_model

    t = time.perf_counter()
    spec = get_gpu(s.gpu)
    latency_model_layouts(get_model(s.model), spec, max_gpus=s.num_gpus, gpus_per_node=spec.gpus_per_node,
                          longest_context_tokens=s.isl + s.osl, batch_tokens_per_rank=8192, precision=None,
                          memory_options=MEMORY_RULE)
    return time.perf_counter() - t


# -- our chosen deployment as AIConfigurator's estimator takes it -------------------------------------------
def operating_point(result) -> list[dict]:
    """Per pool of the chosen deployment, re-simulated at its goodput (a closed-loop search's: at its client
    count) with its steps recorded: layout, instances, caps and the mean batch per attention-DP rank (prompts
    per prefill step; sequences per decode step, time-weighted)."""
    from planner.deploy.verify import deployment_pools
    from planner.inputs import poisson_workload
    from planner.perf import simulate

    plan = result.plan
    d, ref = plan.chosen, plan.inputs.workload
    w = poisson_workload(1.0, ref.num_requests, input_tokens=int(ref.spec["isl_tokens"]),
                         output_tokens=int(ref.spec["osl_tokens"]), seed=int(ref.spec["seed"]))
    head = w.head(d.num_requests)  # a closed loop sends them as its clients free up, an open one at the rate
    res = simulate(head if d.concurrency is not None else head.with_rate(d.rate_req_per_s), deployment_pools(d),
                   concurrency=d.concurrency, record_steps=True)
    return pool_points(d, res)


def pool_points(d, res) -> list[dict]:
    """Per pool of the recorded deployment ``d``, from a run ``res`` of it with its steps recorded (module
    docstring of :func:`operating_point`)."""
    import numpy as np

    from planner.perf import ParallelLayout

    log = res.steps_log
    out = []
    for i, p in enumerate(d.pools):
        lay = ParallelLayout.parse(p.layout)
        sel = log.pool == i
        dur = (log.end_s - log.start_s)[sel]
        dec = log.decode_batch[sel]
        pre = log.num_prefills[sel]
        decode_mean = float((dec * dur).sum() / dur[dec > 0].sum()) if (dec > 0).any() else 0.0
        prefill_mean = float(pre[pre > 0].mean()) if (pre > 0).any() else 0.0
        out.append({"role": p.role, "layout": p.layout, "tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "ep": lay.ep,
                    "moe_tp": lay.moe_tp, "instances": p.instances, "token_budget": p.token_budget,
                    "max_batch_size": p.max_batch_size, "decode_batch_per_rank": decode_mean / lay.dp,
                    "prompts_per_step_per_rank": prefill_mean / lay.dp,
                    "busy_share": float(np.mean([b / res.sim_end_s for b in res.busy_s[i]]))})
    return out


def _per_rank(value: float, cap: int) -> int:
    return max(1, min(cap, int(round(value))))


def aic_price_request(s: Scenario, pools: list[dict]) -> dict:
    """The estimate request pricing our chosen deployment (module docstring)."""
    req = {"mode": "price", "model": AIC_MODELS[s.model], "system": AIC_SYSTEMS[s.gpu], "isl": s.isl, "osl": s.osl,
           "ttft": s.ttft_ms, "tpot": s.tpot_ms, "backend": AIC_BACKEND, "batch_search": "grid, refined"}
    if len(pools) == 1:  # aggregated: one worker per instance, the same on every instance
        p = pools[0]
        cap = p["max_batch_size"] // p["dp"]
        req["kwargs"] = {"mode": "agg", "tp_size": p["tp"], "pp_size": p["pp"], "attention_dp_size": p["dp"],
                         "moe_tp_size": p["moe_tp"], "moe_ep_size": p["ep"],
                         "batch_size": _per_rank(p["decode_batch_per_rank"], cap),
                         "ctx_tokens": p["token_budget"] // p["dp"]}
        req["knobs"] = {"batch_size": cap}
        return req
    pre, dec = pools
    p_cap = max(1, min(pre["max_batch_size"] // pre["dp"], pre["token_budget"] // pre["dp"] // s.isl))
    d_cap = dec["max_batch_size"] // dec["dp"]
    kw = {"mode": "disagg"}
    for role, p, batch in (("prefill", pre, _per_rank(pre["prompts_per_step_per_rank"], p_cap)),
                           ("decode", dec, _per_rank(dec["decode_batch_per_rank"], d_cap))):
        kw.update({f"{role}_tp_size": p["tp"], f"{role}_pp_size": p["pp"], f"{role}_attention_dp_size": p["dp"],
                   f"{role}_moe_tp_size": p["moe_tp"], f"{role}_moe_ep_size": p["ep"],
                   f"{role}_batch_size": batch, f"{role}_num_workers": p["instances"]})
    req["kwargs"] = kw
    req["knobs"] = {"prefill_batch_size": p_cap, "decode_batch_size": d_cap}
    return req


def aic_default_request(s: Scenario) -> dict:
    return {"mode": "default", "model": AIC_MODELS[s.model], "system": AIC_SYSTEMS[s.gpu], "total_gpus": s.num_gpus,
            "isl": s.isl, "osl": s.osl, "ttft": s.ttft_ms, "tpot": s.tpot_ms, "backend": AIC_BACKEND}


def _command(req: dict) -> str:
    """The AIConfigurator call a request makes, as its CLI would take it."""
    common = (f"--model-path {req['model']} --system {req['system']} --backend {req['backend']} --isl {req['isl']} "
              f"--osl {req['osl']} --ttft {req['ttft']:g} --tpot {req['tpot']:g}")
    if req["mode"] == "default":
        return f"aiconfigurator cli default {common} --total-gpus {req['total_gpus']}"
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in req["kwargs"].items() if k != "mode")
    return (f"aiconfigurator cli estimate {common} --estimate-mode {req['kwargs']['mode']} {flags}  "
            f"(then the same with the largest batch sizes up to {req['knobs']} that meet the limits; python API "
            "aiconfigurator.cli.api.cli_estimate)")


def _key(req: dict) -> str:
    return json.dumps(req, sort_keys=True)


class AicCache:
    """``benchmarks/aic_results.json``: AIConfigurator's answers keyed by request (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.doc = json.loads(path.read_text()) if path.exists() else {"runs": {}}
        self.doc.setdefault("about", "AIConfigurator answers for benchmarks/deploy.py; refresh with "
                                     "`python benchmarks/deploy.py --refresh-aic` (see its docstring)")

    def get(self, req: dict) -> dict | None:
        return self.doc["runs"].get(_key(req))

    def put(self, req: dict, entry: dict) -> None:
        self.doc["runs"][_key(req)] = entry
        versions = {e.get("aic_version") for e in self.doc["runs"].values() if e.get("aic_version")}
        self.doc["aic_version"] = ", ".join(sorted(versions))
        self.path.write_text(json.dumps(self.doc, indent=1, sort_keys=True) + "\n")


def run_aic(req: dict, python: str) -> dict:
    """One AIConfigurator request in a subprocess of ``python`` (the worker's answer plus how it ran)."""
    load = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run([python, str(AIC_WORKER)], input=json.dumps(req), capture_output=True, text=True,
                          timeout=3600)
    wall = time.perf_counter() - t
    try:
        answer = json.loads(proc.stdout)
    except json.JSONDecodeError:
        answer = {"ok": False, "error": f"worker exit {proc.returncode}: {proc.stderr[-1500:]}"}
    return {"request": req, "command": _command(req), "aic_version": answer.get("aic_version"),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "process_wall_s": wall,
            "load_average_before": load, "answer": answer}


def aic_answer(req: dict, cache: AicCache, python: str | None, refresh: bool, say) -> dict | None:
    entry = None if refresh else cache.get(req)
    if entry is None and python:
        say(f"AIConfigurator {req['mode']} {req['model']} {req['system']} {req['isl']}/{req['osl']} ...")
        entry = run_aic(req, python)
        cache.put(req, entry)
    return entry


def aic_python(arg: str | None) -> str | None:
    for cand in (arg, os.environ.get("MOEPLAN_AIC_PYTHON"), "/tmp/aicvenv/bin/python"):
        if cand and Path(cand).exists():
            return cand
    try:  # the running interpreter, if it has both
        import importlib.util

        if importlib.util.find_spec("aiconfigurator") is not None:
            return sys.executable
    except ImportError:
        pass
    return None


# -- reading AIConfigurator's answers -----------------------------------------------------------------------
def aic_best(entry: dict | None) -> dict:
    """AIConfigurator's chosen deployment of its default sweep: mode, layout, tokens/s/GPU, its search time."""
    if entry is None:
        return {"status": "not run (no cache entry, no AIConfigurator interpreter)"}
    a = entry["answer"]
    if not a.get("ok"):
        return {"status": f"refused: {a.get('error', '?')[:160]}", "wall_s": a.get("wall_s")}
    r = a["result"]
    mode = r["chosen_exp"]
    row = (r["best"].get(mode) or [None])[0]
    if row is None:
        return {"status": "no feasible configuration", "wall_s": a["wall_s"]}
    if mode == "disagg":
        label = (f"{row['(p)workers']}P{row['(d)workers']}D (p) {row['(p)parallel']} bs{row['(p)bs']} "
                 f"(d) {row['(d)parallel']} bs{row['(d)bs']}")
    else:
        label = f"agg {row['parallel']} bs{row['bs']}"
    other = {k: v for k, v in r["best_throughputs"].items() if k != mode}
    return {"status": "ok", "mode": mode, "label": label, "tokens_per_s_per_gpu": row["tokens/s/gpu_cluster"],
            "per_mode": dict(r["best_throughputs"]),
            "gpus_per_replica": row.get("num_total_gpus"), "ttft_ms": row["ttft"], "tpot_ms": row["tpot"],
            "other_modes": other, "wall_s": a["wall_s"], "process_wall_s": entry.get("process_wall_s"),
            "load_average_before": entry.get("load_average_before")}


def aic_priced(entry: dict | None) -> dict:
    """Our chosen deployment priced by AIConfigurator: at our operating point and at its SLO-meeting batch sizes."""
    if entry is None:
        return {"status": "not run (no cache entry, no AIConfigurator interpreter)"}
    a = entry["answer"]
    if not a.get("ok"):
        return {"status": f"refused: {a.get('error', '?')[:160]}"}
    r = a["result"]
    op, priced = r["at_operating_point"], r.get("priced")
    out = {"status": "ok" if priced else f"refused: {r.get('refused', '?')[:200]}",
           "operating_point": {"tokens_per_s_per_gpu": op.get("tokens/s/gpu"), "ttft_ms": op["ttft"],
                               "tpot_ms": op["tpot"], "meets": op["meets"], "kwargs": op["kwargs"],
                               "error": op.get("error")},
           "estimates": len(r["estimates"]), "wall_s": a["wall_s"]}
    if priced:
        out.update(tokens_per_s_per_gpu=priced.get("tokens/s/gpu"), ttft_ms=priced["ttft"], tpot_ms=priced["tpot"],
                   kwargs=priced["kwargs"])
    return out


def _batches(kw: dict) -> str:
    if kw.get("mode") == "agg":
        return f"bs{kw['batch_size']}"
    return f"p bs{kw['prefill_batch_size']} d bs{kw['decode_batch_size']}"


# -- main ---------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small scenario")
    ap.add_argument("--out", help="write every number as JSON to this file")
    ap.add_argument("--no-aic", action="store_true", help="moeplan only")
    ap.add_argument("--only", help="run the scenarios whose name (e.g. 'gpt-oss-120b 8xh100 4000/1000') contains this")
    ap.add_argument("--refresh-aic", action="store_true", help="re-run AIConfigurator for every request")
    ap.add_argument("--retime-aic", action="store_true",
                    help="re-run AIConfigurator's default sweeps (not the pricing) so that both tools are timed in "
                         "this run, on this machine, under the same load")
    ap.add_argument("--aic-python", help="interpreter with aiconfigurator (default $MOEPLAN_AIC_PYTHON, "
                                         "/tmp/aicvenv/bin/python, or this one if it has it)")
    args = ap.parse_args(argv)
    say = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    python = None if args.no_aic else aic_python(args.aic_python)
    cache = AicCache(AIC_CACHE)
    rows, out = [], []
    chosen = [s for s in scenarios(args.quick) if args.only is None or args.only in s.name]
    if not chosen:
        print(f"no scenario name contains {args.only!r}", file=sys.stderr)
        return 2
    for s in chosen:
        base = _baseline_s(s)
        t, cpu, load = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        try:
            r = our_pick(s)
        except Exception as exc:  # a measurement: report and go on
            wall = time.perf_counter() - t
            out.append({"scenario": s.__dict__, "wall_s": wall, "baseline_s": base, "error": str(exc)})
            say(f"{s.name}: {type(exc).__name__}: {exc}")
            continue
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        c = r.chosen
        rec = {"scenario": s.__dict__, "wall_s": wall, "cpu_s": cpu, "load_average_1min": load, "baseline_s": base,
               "chosen": c.to_dict(),
               "comparison": r.comparison, "timings_s": r.timings_s}
        if not args.no_aic:
            pools = operating_point(r)
            rec["operating_point"] = pools
            rec["aic_best"] = aic_best(aic_answer(aic_default_request(s), cache, python,
                                                  args.refresh_aic or args.retime_aic, say))
            rec["aic_priced"] = aic_priced(aic_answer(aic_price_request(s, pools), cache, python, args.refresh_aic,
                                                      say))
        out.append(rec)
        rows.append((s, r, rec))
        say(f"{s.name}: {wall:.1f} s, {c.label}")
    print(f"Machine: {os.cpu_count()} CPUs; a pure-Python loop of 10^7 additions takes {_loop_s():.2f} s here "
          "(a reference for comparing runs across machines: the absolute times scale with it, the ratio to "
          "AIConfigurator's sweep timed in the same run does not); simulator core: "
          f"{simulator_core()} (MOEPLAN_SIM_CORE)\n")
    print(_speed_table(rows, args.no_aic))
    if not args.no_aic:
        print()
        print(_quality_table(rows))
        print()
        print(_targets(rows))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2, default=str)
    return 0


def _loop_s() -> float:
    """Seconds for 10^7 additions in a pure-Python loop: the machine's speed at the search's kind of work."""
    t, total = time.perf_counter(), 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - t


def _speed_table(rows, no_aic: bool) -> str:
    head = ["model", "GPUs", "ISL/OSL", "moeplan search s", "its CPU s (load)", "baseline s (layouts + memory only)",
            "<= 5 s"]
    if not no_aic:
        head += ["AIC default sweep s", "speed-up", ">= 40x"]
    head += ["chosen", "req/s", "tokens/s/GPU", "tokens/s/user"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if "s" in h.split()[-1:] else "---"
                                                           for h in head) + "|"]
    for s, r, rec in rows:
        c = r.chosen
        cells = [s.model, f"{s.num_gpus} x {s.gpu}", f"{s.isl}/{s.osl}", f"{rec['wall_s']:.1f}",
                 f"{rec['cpu_s']:.1f} ({rec['load_average_1min']:.1f})", f"{rec['baseline_s']:.2f}", "PASS" if rec["wall_s"] <= TARGET_S else "FAIL"]
        if not no_aic:
            aic_s = rec["aic_best"].get("wall_s")
            if aic_s:
                ratio = aic_s / rec["wall_s"]
                cells += [f"{aic_s:.1f}", f"{ratio:.0f}x", "PASS" if ratio >= TARGET_SPEEDUP else "FAIL"]
            else:
                cells += ["-", "-", rec["aic_best"]["status"]]
        cells += [c.label, f"{c.rate_req_per_s:.3g}", f"{c.tokens_per_s_per_gpu:.0f}", f"{c.tokens_per_s_per_user:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines[1] = "|" + "|".join("---" if i in (0, 1, 2) or head[i] in ("<= 5 s", ">= 40x", "chosen") else "---:"
                              for i in range(len(head))) + "|"
    return "\n".join(lines)


def _quality_table(rows) -> str:
    head = ["scenario", "AIC best (its default sweep)", "AIC best tok/s/GPU", "moeplan pick", "moeplan's own tok/s/GPU",
            "AIC estimate at our operating point: batches per rank, tok/s/GPU, TTFT / TPOT ms",
            "our pick priced by AIC, tok/s/GPU (its best batches meeting the SLO)", "vs AIC best", "within 10 %",
            "AIC best of our pick's mode, tok/s/GPU", "vs it"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---:|---|---:|---|---:|---:|---|---:|---:|"]
    for s, r, rec in rows:
        best, priced = rec["aic_best"], rec["aic_priced"]
        b_tok = best.get("tokens_per_s_per_gpu")
        b_cell = f"{best['mode']}: {best['label']}" if best["status"] == "ok" else best["status"]
        op = priced.get("operating_point")
        if op and op.get("error"):
            op_cell = f"{_batches(op['kwargs'])}: refused ({op['error'][:110]})"
        elif op:
            op_cell = (f"{_batches(op['kwargs'])}: {op['tokens_per_s_per_gpu']:.0f}, {op['ttft_ms']:.0f} / "
                       f"{op['tpot_ms']:.1f} ({'meets' if op['meets'] else 'misses'} the SLO)")
        else:
            op_cell = priced["status"]
        p_tok = priced.get("tokens_per_s_per_gpu")
        if p_tok is not None:  # per GPU of the budget, as AIConfigurator's tokens/s/gpu_cluster
            p_tok *= r.chosen.num_gpus / s.num_gpus
        if p_tok is not None and b_tok:
            ratio = p_tok / b_tok
            p_cell, r_cell, ok = f"{p_tok:.0f} ({_batches(priced['kwargs'])})", f"{ratio:.2f}", \
                "PASS" if ratio >= TARGET_QUALITY else "FAIL"
        else:
            p_cell, r_cell, ok = priced["status"], "-", "-"
        same = _same_mode_best(r, best)
        s_cell = f"{p_tok / same:.2f}" if p_tok is not None and same else "-"
        lines.append("| " + " | ".join([s.name, b_cell, f"{b_tok:.0f}" if b_tok else "-", r.chosen.label,
                                         f"{r.chosen.tokens_per_s_per_gpu:.0f}", op_cell, p_cell, r_cell, ok,
                                         f"{same:.0f}" if same else "-", s_cell]) + " |")
    return "\n".join(lines)


def _same_mode_best(r, best: dict) -> float | None:
    """AIConfigurator's best tokens/s/GPU among deployments of our pick's mode (aggregated or disaggregated):
    what our pick is worth when the two tools' verdict on the mode is set aside."""
    mode = "agg" if r.chosen.mode == "aggregated" else "disagg"
    return (best.get("per_mode") or {}).get(mode)


def _priced_ratios(rows, same_mode: bool) -> list[float]:
    """Our pick priced by AIConfigurator (per GPU of the budget) over its best (of our pick's mode)."""
    out = []
    for s, r, rec in rows:
        p_tok = rec["aic_priced"].get("tokens_per_s_per_gpu")
        ref = _same_mode_best(r, rec["aic_best"]) if same_mode else rec["aic_best"].get("tokens_per_s_per_gpu")
        if p_tok is not None and ref:
            out.append(p_tok * r.chosen.num_gpus / s.num_gpus / ref)
    return out


def _targets(rows) -> str:
    walls = [rec["wall_s"] for _, _, rec in rows]
    cpus, loads = [rec["cpu_s"] for _, _, rec in rows], [rec["load_average_1min"] for _, _, rec in rows]
    speed = [rec["aic_best"]["wall_s"] / rec["wall_s"] for _, _, rec in rows if rec["aic_best"].get("wall_s")]
    quality, same = _priced_ratios(rows, False), _priced_ratios(rows, True)
    n = len(rows)

    def row(target, measured, ok):
        return f"| {target} | {measured} | {'PASS' if ok else 'FAIL'} |"

    lines = ["| target | measured | |", "|---|---|---|",
             row(f"search <= {TARGET_S:g} s per scenario", f"{sum(w <= TARGET_S for w in walls)} of {n}, "
                 f"{min(walls):.1f}-{max(walls):.1f} s (CPU {min(cpus):.1f}-{max(cpus):.1f} s at load average "
                 f"{min(loads):.1f}-{max(loads):.1f})", all(w <= TARGET_S for w in walls))]
    if speed:
        lines.append(row(f">= {TARGET_SPEEDUP:g}x faster than AIConfigurator's default sweep",
                         f"{sum(x >= TARGET_SPEEDUP for x in speed)} of {len(speed)}, {min(speed):.0f}-{max(speed):.0f}x",
                         all(x >= TARGET_SPEEDUP for x in speed) and len(speed) == n))
    if quality or n:
        lines.append(row(f"our pick priced by AIConfigurator within {1 - TARGET_QUALITY:.0%} of its best",
                         f"{sum(q >= TARGET_QUALITY for q in quality)} of {n} ({len(quality)} priced by it)"
                         + (f", {min(quality):.2f}-{max(quality):.2f} of its best" if quality else ""),
                         len(quality) == n and all(q >= TARGET_QUALITY for q in quality)))
    if same:  # context, not the target: the same comparison within the mode moeplan chose
        lines.append(f"| (context) our pick priced by AIConfigurator within {1 - TARGET_QUALITY:.0%} of its best of "
                     f"the same mode | {sum(q >= TARGET_QUALITY for q in same)} of {len(same)}, "
                     f"{min(same):.2f}-{max(same):.2f} | - |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
