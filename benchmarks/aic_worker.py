"""Run one NVIDIA AIConfigurator job and print its outcome as JSON (run with an interpreter that has aiconfigurator).

Not part of moeplan: ``benchmarks/deploy.py`` starts it in a subprocess (``--aic-python PATH``) so that
moeplan never imports aiconfigurator. One JSON request on stdin, one JSON answer on stdout::

    {"mode": "default", "model": "Qwen/Qwen3-30B-A3B", "system": "h100_sxm", "total_gpus": 8,
     "isl": 4000, "osl": 1000, "ttft": 2000, "tpot": 50, "backend": "trtllm"}
    {"mode": "price", "model": ..., "system": ..., "isl": ..., "osl": ..., "ttft": ..., "tpot": ...,
     "backend": "trtllm", "kwargs": {keyword arguments of aiconfigurator.cli.api.cli_estimate},
     "knobs": {"decode_batch_size": 128, ...}}

``default`` runs AIConfigurator's own sweep (``cli_default``, agg against disagg) and returns its top rows
per mode. ``price`` runs its estimator (``cli_estimate``) on one deployment: first with ``kwargs`` as
given (the batch sizes of moeplan's operating point), then, for each batch-size knob in ``knobs``, on a
grid up to its cap (1, 2, 3, 4, 6, 8, ...; its estimated TPOT is not monotone in the batch size, so no
bisection over the whole range), keeping the batch size with the most throughput of its role among
those that meet its limit (prefill: TTFT, decode: TPOT, aggregated: both and the KV cache), refined by
bisection between it and the next grid point up, which missed; and the estimate there: the deployment
priced by AIConfigurator at the batch sizes its own model lets meet the SLO. The answer holds the tool's
version, the call, its wall time and the results, or the error it raised.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import time
import traceback

__all__ = ["main"]

_COLUMNS = ("tokens/s/gpu", "tokens/s/gpu_cluster", "tokens/s/user", "tokens/s", "seq/s", "request_rate", "ttft",
            "tpot", "request_latency", "concurrency", "num_total_gpus", "replicas", "parallel", "bs", "global_bs",
            "tp", "pp", "dp", "moe_tp", "moe_ep", "memory",
            "(p)workers", "(p)parallel", "(p)bs", "(p)tp", "(p)pp", "(p)dp", "(p)moe_tp", "(p)moe_ep", "(p)memory",
            "(d)workers", "(d)parallel", "(d)bs", "(d)tp", "(d)pp", "(d)dp", "(d)moe_tp", "(d)moe_ep", "(d)memory",
            "(p)seq/s/worker", "(d)seq/s/worker", "ctx_tokens", "gen_tokens")


def _plain(v):
    try:
        import numpy as np

        if isinstance(v, np.generic):
            v = v.item()
    except ImportError:
        pass
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _rows(df, top: int) -> list[dict]:
    if df is None or len(df) == 0:
        return []
    cols = [c for c in _COLUMNS if c in df.columns]
    return [{c: _plain(row[c]) for c in cols} for _, row in df.head(top).iterrows()]


def _default(req: dict) -> dict:
    from aiconfigurator.cli import cli_default

    res = cli_default(model_path=req["model"], total_gpus=int(req["total_gpus"]), system=req["system"],
                      backend=req.get("backend", "trtllm"), isl=int(req["isl"]), osl=int(req["osl"]),
                      ttft=float(req["ttft"]), tpot=float(req["tpot"]), top_n=int(req.get("top_n", 5)))
    out = {"chosen_exp": res.chosen_exp, "best_throughputs": {k: _plain(v) for k, v in res.best_throughputs.items()},
           "best": {k: _rows(v, int(req.get("top_n", 5))) for k, v in res.best_configs.items()},
           "outcomes": {k: str(v) for k, v in (res.outcomes or {}).items()}}
    return out


def _estimate(req: dict, kw: dict) -> dict:
    from aiconfigurator.cli.api import cli_estimate

    res = cli_estimate(model_path=req["model"], system_name=req["system"], backend_name=req.get("backend", "trtllm"),
                       isl=int(req["isl"]), osl=int(req["osl"]), **kw)
    raw = {k: _plain(v) for k, v in (getattr(res, "raw", None) or {}).items() if not isinstance(v, (dict, list))}
    out = {"kwargs": dict(kw), "ttft": _plain(res.ttft), "tpot": _plain(res.tpot)}
    for name in ("tokens/s/gpu", "tokens/s/user", "seq/s", "num_total_gpus", "(p)memory", "(d)memory", "memory",
                 "concurrency", "(p)seq/s/worker", "(d)seq/s/worker"):
        if name in raw:
            out[name] = raw[name]
    out["raw"] = raw
    out["kv_cache_warning"] = getattr(res, "kv_cache_warning", None)
    out["meets"] = bool(out["ttft"] is not None and out["tpot"] is not None and out["ttft"] <= req["ttft"]
                        and out["tpot"] <= req["tpot"])
    return out


def _grid(cap: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, ... up to ``cap``, and ``cap``."""
    out, x = [], 1
    while x < cap:
        out += [x] + ([x + x // 2] if x > 1 and x + x // 2 < cap else [])
        x *= 2
    return out + [cap]


def _price(req: dict) -> dict:
    """Estimate at the given batch sizes, then at the best batch sizes on a grid up to the caps that meet the
    limits (module docstring): per knob the one with the most throughput of its role among those that meet
    its limit, the knobs in order (prefill, then decode), the others at their values so far."""
    memo: dict[str, dict] = {}

    def est(kw: dict) -> dict:
        key = json.dumps(kw, sort_keys=True)
        if key not in memo:
            try:
                memo[key] = _estimate(req, kw)
            except Exception as exc:  # OOM, missing perf data: this point cannot be priced
                memo[key] = {"kwargs": dict(kw), "ttft": None, "tpot": None, "meets": False,
                             "error": f"{type(exc).__name__}: {exc}"[:500]}
        return memo[key]

    base = dict(req["kwargs"])
    op = est(base)
    kw = dict(base)
    for knob, cap in (req.get("knobs") or {}).items():
        best, best_value, failed = None, -1.0, []
        for value in sorted(set(_grid(int(cap))) | {int(base[knob])}):
            e = est({**kw, knob: value})
            if _meets_knob(req, knob, e):
                if _throughput(knob, e) > best_value:
                    best, best_value = value, _throughput(knob, e)
            else:
                failed.append(value)
        above = [v for v in failed if best is not None and v > best]
        if above:  # between the best and the next grid point, which missed: bisect for the largest that meets
            lo, hi = best, min(above)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                e = est({**kw, knob: mid})
                if _meets_knob(req, knob, e):
                    lo = mid
                    if _throughput(knob, e) > best_value:
                        best, best_value = mid, _throughput(knob, e)
                else:
                    hi = mid
        if best is None:
            errors = sorted({e["error"] for e in memo.values() if e.get("error")})
            return {"at_operating_point": op, "priced": None, "estimates": list(memo.values()),
                    "refused": f"no {knob} up to {cap} meets the limits in AIConfigurator's estimate"
                               + (f" ({errors[0]})" if errors else "")}
        kw[knob] = best
    final = est(kw)
    return {"at_operating_point": op, "priced": final if final["meets"] else None, "estimates": list(memo.values()),
            **({} if final["meets"] else {"refused": "the batch sizes found do not meet both limits together"})}


def _throughput(knob: str, e: dict) -> float:
    """What a batch size buys: requests per second of one prefill or decode worker, or tokens/s/GPU (agg)."""
    raw = e.get("raw", {})
    if knob.startswith("prefill"):
        return float(raw.get("(p)seq/s/worker") or 0.0)
    if knob.startswith("decode"):
        return float(raw.get("(d)seq/s/worker") or 0.0)
    return float(e.get("tokens/s/gpu") or 0.0)


def _meets_knob(req: dict, knob: str, e: dict) -> bool:
    """A prefill batch answers for TTFT, a decode batch for TPOT, an aggregated batch for both (and must fit
    the KV cache: AIConfigurator warns that the runtime would queue beyond it)."""
    if e["ttft"] is None or e["tpot"] is None:
        return False
    if knob.startswith("prefill"):
        return e["ttft"] <= req["ttft"]
    if knob.startswith("decode"):
        return e["tpot"] <= req["tpot"]
    return e["ttft"] <= req["ttft"] and e["tpot"] <= req["tpot"] and not e.get("kv_cache_warning")


def _brief(e: dict) -> dict:
    out = {k: v for k, v in e["kwargs"].items() if k.endswith("batch_size")}
    out.update({k: e[k] for k in ("ttft", "tpot", "tokens/s/gpu", "(p)seq/s/worker", "(d)seq/s/worker", "meets", "error")
                if e.get(k) is not None})
    return out


def main() -> int:
    req = json.load(sys.stdin)
    import aiconfigurator

    answer = {"request": req, "aic_version": getattr(aiconfigurator, "__version__", "unknown")}
    log = io.StringIO()
    t = time.perf_counter()
    try:
        with contextlib.redirect_stdout(log):
            answer["result"] = _default(req) if req["mode"] == "default" else _price(req)
        answer["ok"] = True
    except BaseException as exc:  # the tool's refusal is a result to report, not a crash of the benchmark
        answer["ok"] = False
        answer["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        answer["traceback"] = traceback.format_exc()[-3000:]
    answer["wall_s"] = time.perf_counter() - t
    answer["log_tail"] = log.getvalue()[-1500:]
    res = answer.get("result") or {}
    if "estimates" in res:  # the points tried: their batch sizes and figures, not every column
        res["estimates"] = [_brief(e) for e in res["estimates"]]
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
