"""AIConfigurator's side of ``benchmarks/aic_compare.py``: its chosen layouts and its static estimates.

Needs ``aiconfigurator`` (``pip install aiconfigurator``, Apache-2.0; never a requirement of moeplan).
Run through ``python benchmarks/aic_compare.py --refresh``, which writes the cache
``benchmarks/aic_reference.json``; the comparison itself reads only that file.

For each scenario of issue 11 (ISL 4000, OSL 500, AIConfigurator's default SLA of TTFT 2000 ms and
TPOT 30 ms, backend ``trtllm``, database mode ``SILICON``):

1. ``aiconfigurator.cli.cli_default`` sweeps aggregated and disaggregated serving on the scenario's
   GPUs and keeps its top 5 configurations of each mode;
2. every distinct (parallel layout, batch per DP rank) of those rows -- aggregated workers, prefill
   workers and decode workers -- is one **point**;
3. ``aiconfigurator.cli.api.cli_estimate(mode="static")`` prices each point as one static batch
   with the number formats the sweep resolved (GEMM, MoE, KV cache, FMHA, communication), and
   the cache keeps its TTFT, TPOT, tokens/s/GPU, memory per GPU and the per-op breakdown;
4. ``aiconfigurator.sdk.memory.estimate_kv_cache`` gives the same worker's memory as an engine
   holds it (AIConfigurator's KV-capacity path): weights, runtime and communication overhead, and
   the activation workspace of one forward step of ``max_num_tokens`` = 8,192 tokens (TensorRT-LLM's
   default) -- where the static estimate of step 3 sizes activations for the whole static batch
   (batch x ISL tokens in one forward). The cache keeps it as ``engine_memory_gib``: that breakdown
   plus step 3's KV cache of the batch. ``python benchmarks/aic_compare.py --refresh-memory`` re-runs
   only this step on the cached points (seconds).

Only AIConfigurator's public Python API is called; nothing of its code is copied.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import platform
import time

__all__ = ["SCENARIOS", "available", "refresh", "refresh_engine_memory"]

#: issue 11's scenarios: (name, Hugging Face id, AIConfigurator system, GPUs of the sweep)
SCENARIOS = (
    ("qwen3-30b-a3b/8xh200", "Qwen/Qwen3-30B-A3B", "h200_sxm", 8),
    ("gpt-oss-120b/8xh100", "openai/gpt-oss-120b", "h100_sxm", 8),
    ("deepseek-v3-fp8/64xh200", "deepseek-ai/DeepSeek-V3", "h200_sxm", 64),
    ("qwen3-235b-a22b-fp8/32xb200", "Qwen/Qwen3-235B-A22B-FP8", "b200_sxm", 32),
)
ISL, OSL, TTFT_MS, TPOT_MS, BACKEND, TOP_N = 4000, 500, 2000.0, 30.0, "trtllm", 5
#: tokens of one forward step the engine reserves activations for: TensorRT-LLM's default ``max_num_tokens``
#: (and moeplan's default ``max_batch_tokens``)
ENGINE_MAX_NUM_TOKENS = 8192
_QUANT = ("gemm", "moe", "kvcache", "fmha", "comm")


def available() -> str | None:
    """None when aiconfigurator can be imported, else the reason (one line)."""
    try:
        import aiconfigurator.cli  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        return f"aiconfigurator is not importable ({type(exc).__name__}: {exc}); pip install aiconfigurator"
    return None


def _points(rows: dict) -> list[dict]:
    """Distinct (role, layout, batch, number formats) of the top rows of both modes."""
    seen, out = set(), []
    for mode, table in rows.items():
        for rank, row in enumerate(table or [], start=1):
            roles = [("agg", "")] if mode == "agg" else [("prefill", "(p)"), ("decode", "(d)")]
            for role, pre in roles:
                point = {
                    "layout": row[f"{pre}parallel"],
                    "batch": int(row[f"{pre}bs"]),
                    "quant": {q: row[f"{pre}{q}"] for q in _QUANT},
                }
                key = (point["layout"], point["batch"], tuple(point["quant"].values()))
                if key in seen:
                    continue
                seen.add(key)
                out.append({**point, "role": role, "from": f"{mode} top-{rank}"})
    return out


def _degrees(row: dict) -> dict:
    return {k: int(row[k]) for k in ("tp", "pp", "dp", "moe_tp", "moe_ep")}


def _finite(value):
    """JSON-safe number (NaN/inf become None)."""
    if isinstance(value, (int, float)) and not (isinstance(value, float) and not math.isfinite(value)):
        return value
    return None


def _plain(obj) -> dict:
    """A record AIConfigurator returns (dataclass or plain object) as a JSON-ready dict."""
    import dataclasses

    fields = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(getattr(obj, "__dict__", {}))
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for k, v in fields.items()}


def _static(model: str, system: str, point: dict, deg: dict) -> dict:
    from aiconfigurator.cli.api import cli_estimate

    q = point["quant"]
    start = time.perf_counter()
    r = cli_estimate(model, system, mode="static", backend_name=BACKEND, isl=ISL, osl=OSL,
                     batch_size=point["batch"], tp_size=deg["tp"], pp_size=deg["pp"],
                     attention_dp_size=deg["dp"], moe_tp_size=deg["moe_tp"], moe_ep_size=deg["moe_ep"],
                     gemm_quant_mode=q["gemm"], moe_quant_mode=q["moe"], kvcache_quant_mode=q["kvcache"],
                     fmha_quant_mode=q["fmha"], comm_quant_mode=q["comm"])  # fmt: skip
    raw, s = r.raw, r.summary
    memory = s.get_memory() or {}
    return {
        "ttft_ms": float(r.ttft),
        "tpot_ms": float(r.tpot),
        "tokens_per_s_per_gpu": float(raw["tokens/s/gpu"]),
        "request_latency_ms": float(raw["request_latency"]),
        "memory_per_gpu_gib": float(raw["memory"]),
        "memory_breakdown_gib": {k: _finite(v) for k, v in memory.items() if _finite(v) is not None},
        "num_gpus": int(raw["num_total_gpus"]),
        "oom": bool(s.check_oom()),
        "context_ops_ms": {k: _finite(v) for k, v in (s.get_context_latency_dict() or {}).items()},
        "generation_ops_ms": {k: _finite(v) for k, v in (s.get_generation_latency_dict() or {}).items()},
        "moe_comm_fallbacks": [_plain(f) for f in (r.moe_comm_fallbacks or [])],
        "backend_version": str(raw.get("version")),
        "wall_s": time.perf_counter() - start,
    }


def _engine_memory(model: str, system: str, point: dict, deg: dict, backend_version: str) -> dict:
    """The worker's memory as an engine with ``max_num_tokens`` = 8,192 holds it (GiB): AIConfigurator's
    non-KV breakdown of its KV-capacity path plus the static estimate's KV cache of the batch."""
    from aiconfigurator.sdk.memory import estimate_kv_cache

    q = point["quant"]
    r = estimate_kv_cache(model, system, BACKEND, backend_version, max_num_tokens=ENGINE_MAX_NUM_TOKENS,
                          max_batch_size=point["batch"], memory_fraction_kind="of_free", memory_fraction_value=1.0,
                          tp_size=deg["tp"], pp_size=deg["pp"], attention_dp_size=deg["dp"], moe_tp_size=deg["moe_tp"],
                          moe_ep_size=deg["moe_ep"], gemm_quant_mode=q["gemm"], moe_quant_mode=q["moe"],
                          kvcache_quant_mode=q["kvcache"], fmha_quant_mode=q["fmha"], comm_quant_mode=q["comm"])  # fmt: skip
    gib = 2.0**30
    b = {k.removesuffix("_bytes"): v / gib for k, v in r["memory_breakdown"].items()}
    b["kvcache"] = point["aic"]["memory_breakdown_gib"].get("kvcache", 0.0)
    return {"max_num_tokens": ENGINE_MAX_NUM_TOKENS, "total": sum(b.values()), "breakdown": b}


def refresh_engine_memory(data: dict, progress=print) -> dict:
    """Add (or replace) ``engine_memory_gib`` on every cached point that has a static estimate."""
    from planner.perf.layout import ParallelLayout

    models = {name: model for name, model, _system, _gpus in SCENARIOS}
    for sc in data["scenarios"]:
        for point in sc["points"]:
            if "aic" not in point:
                continue
            lay = ParallelLayout.parse(point["layout"])
            deg = {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "moe_tp": lay.moe_tp, "moe_ep": lay.ep}
            point["aic"]["engine_memory_gib"] = _engine_memory(models[sc["name"]], sc["system"], point, deg,
                                                               point["aic"]["backend_version"])  # fmt: skip
        progress(f"{sc['name']}: engine memory of {len(sc['points'])} points")
    data["provenance"]["engine_memory"] = (
        f"aiconfigurator.sdk.memory.estimate_kv_cache(max_num_tokens={ENGINE_MAX_NUM_TOKENS}, max_batch_size=bs, "
        "memory_fraction_kind='of_free', memory_fraction_value=1.0, same degrees and quant modes): its "
        "memory_breakdown, plus the static estimate's kvcache; GiB"
    )
    data["provenance"]["engine_memory_date"] = datetime.date.today().isoformat()
    return data


def refresh(progress=print) -> dict:
    """Run AIConfigurator for every scenario; the cache's content (a JSON-ready dict)."""
    import json

    from aiconfigurator.cli import cli_default
    from planner.perf.layout import ParallelLayout

    scenarios = []
    for name, model, system, gpus in SCENARIOS:
        start = time.perf_counter()
        result = cli_default(model_path=model, total_gpus=gpus, system=system, backend=BACKEND, isl=ISL, osl=OSL,
                             ttft=TTFT_MS, tpot=TPOT_MS, top_n=TOP_N)  # fmt: skip
        rows = {mode: json.loads(df.to_json(orient="records")) for mode, df in (result.best_configs or {}).items()
                if df is not None}  # fmt: skip
        sweep_s = time.perf_counter() - start
        progress(f"{name}: sweep {sweep_s:.0f} s, chosen {result.chosen_exp}")
        points = []
        for point in _points(rows):
            lay = ParallelLayout.parse(point["layout"])
            deg = {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "moe_tp": lay.moe_tp, "moe_ep": lay.ep}
            try:
                point["aic"] = _static(model, system, point, deg)
            except Exception as exc:  # AIConfigurator refuses some points; record why
                point["aic_error"] = f"{type(exc).__name__}: {exc}"[:300]
                if point["quant"]["fmha"] != "bfloat16" and "context" in str(exc).lower():
                    # a decode worker's FP8 attention has no context (prefill) table, which a static
                    # batch also runs: price it with BF16 attention, as AIConfigurator's prefill workers do
                    point["quant"] = {**point["quant"], "fmha": "bfloat16"}
                    point["fmha_note"] = "fmha fp8 -> bfloat16: no FP8 context-attention table for a static batch"
                    try:
                        point["aic"] = _static(model, system, point, deg)
                        del point["aic_error"]
                    except Exception as exc2:
                        point["aic_error"] = f"{type(exc2).__name__}: {exc2}"[:300]
            progress(f"  {point['role']:<8} {point['layout']:<22} bs {point['batch']:>4}: "
                     + (f"TTFT {point['aic']['ttft_ms']:.1f} ms, TPOT {point['aic']['tpot_ms']:.2f} ms"
                        if "aic" in point else point["aic_error"][:80]))  # fmt: skip
            points.append(point)
        keep = ("parallel", "(p)parallel", "(d)parallel", "bs", "(p)bs", "(d)bs", "(p)workers", "(d)workers",
                "ttft", "tpot", "tokens/s/gpu", "tokens/s/user", "num_total_gpus")  # fmt: skip
        top = {mode: [{k: r[k] for k in keep if k in r} for r in table] for mode, table in rows.items()}
        scenarios.append({"name": name, "model": model, "system": system, "total_gpus": gpus,
                          "chosen_mode": str(result.chosen_exp), "sweep_wall_s": sweep_s, "top": top,
                          "points": points})  # fmt: skip
    versions = {d: importlib.metadata.version(d) for d in ("aiconfigurator", "aiconfigurator-core")}
    data = {
        "format": "moeplan-aic-reference/1",
        "provenance": {
            "tool": "NVIDIA AIConfigurator (PyPI aiconfigurator, github.com/ai-dynamo/aiconfigurator), Apache-2.0",
            "versions": versions,
            "backend": BACKEND,
            "database_mode": "SILICON",
            "sweep": f"cli_default(total_gpus, system, backend={BACKEND}, isl={ISL}, osl={OSL}, ttft={TTFT_MS:g}, "
                     f"tpot={TPOT_MS:g}, top_n={TOP_N})",
            "points": "every distinct (role, parallel, bs, quant modes) of the top rows: agg, (p) and (d) workers",
            "estimate": "cli_estimate(mode='static', same parallel degrees, batch_size=bs, the row's quant modes)",
            "units": "times ms; memory GiB (AIConfigurator's 'memory' column, 2**30 bytes); tokens/s/gpu = "
                     "concurrency x osl / request latency / GPUs (prefill included)",
            "date": datetime.date.today().isoformat(),
            "python": platform.python_version(),
            "refresh": "python benchmarks/aic_compare.py --refresh",
        },
        "isl_tokens": ISL,
        "osl_tokens": OSL,
        "scenarios": scenarios,
    }
    return refresh_engine_memory(data, progress)
