"""moeplan's static-batch estimates against NVIDIA AIConfigurator's on AIConfigurator's chosen layouts.

Run from the repository root (moeplan installed)::

    python benchmarks/aic_compare.py                 # compare with the cached AIConfigurator results, ~3 s
    python benchmarks/aic_compare.py --out r.json    # also every number as JSON
    python benchmarks/aic_compare.py --refresh       # re-run AIConfigurator (pip install aiconfigurator;
                                                     # ~5 min on 2 cores) and rewrite the cache
    python benchmarks/aic_compare.py --refresh-memory  # re-run only its engine memory of the cached points

The cache ``benchmarks/aic_reference.json`` holds AIConfigurator's side with its provenance
(versions, date, the calls made): issue 11's four scenarios (Qwen3-30B-A3B on 8 x H200,
gpt-oss-120b on 8 x H100, DeepSeek-V3 FP8 on 64 x H200, Qwen3-235B-A22B-FP8 on 32 x B200; ISL
4000, OSL 500), the top-5 aggregated and disaggregated configurations of AIConfigurator's sweep,
and for every distinct worker of them (layout, batch per DP rank) AIConfigurator's static
estimate: TTFT, TPOT, tokens/s/GPU and memory per GPU, and the worker's memory as an engine with
``max_num_tokens`` 8,192 holds it (``benchmarks/aic_reference.py``).

moeplan prices the same points with :func:`planner.perf.estimate.estimate`:

- the same layout, batch per DP rank, ISL and OSL, and AIConfigurator's number formats (GEMM, MoE,
  KV cache) as moeplan formats;
- **before**: ``DEFAULT_FACTORS`` (uncalibrated); **after**: ``calibrated_factors(gpu)``;
- the expert balancedness AIConfigurator's MoE tables were measured with (:func:`power_law_balancedness`
  at the prefill and at the decode step's tokens, capped at the tables' 16,384; moeplan's own default
  without a replica plan is 1), and a second line with balancedness 1;
- ``memory_utilization`` 1 (the comparison is of memory used, not of what fits) and moeplan's
  default activation workspace (8,192 tokens per forward step). **memory** is compared with
  AIConfigurator's memory of the same worker in an engine with ``max_num_tokens`` 8,192 (its
  KV-capacity path: weights, overhead, activations of one 8,192-token step, plus the batch's KV
  cache): the same workspace on both sides. Reported beside it, not a target: **static memory**,
  AIConfigurator's static estimate, whose activation workspace is a per-family coefficient times
  the whole static batch (batch x ISL tokens in one forward, 14-120 GiB per GPU here; no engine
  runs a prefill that size with chunking on), and memory **without activations** on both sides;
- tokens/s/GPU in AIConfigurator's definition: ``requests x osl / (TTFT + (osl - 1) TPOT) / GPUs``
  (prefill included; moeplan's ``tokens_per_s_per_gpu`` counts decode only).

Error = ``|moeplan / AIConfigurator - 1|``; targets (issue 11): median <= 15 % on TTFT, TPOT and
tokens/s/GPU, <= 5 % on memory. The exit code is 0 even when a target is missed.
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
from planner.common.fileio import atomic_write_text
from planner.errors import PlannerError
from planner.perf.estimate import estimate
from planner.perf.layout import ParallelLayout
from planner.profiles import get_model

CACHE = Path(__file__).resolve().parent / "aic_reference.json"
TARGETS = {"ttft": 0.15, "tpot": 0.15, "tokens_per_s_per_gpu": 0.15, "memory": 0.05}
#: reported next to the targets: AIConfigurator's static-batch memory (activations for batch x ISL tokens in one
#: forward) and memory without the activation workspace on both sides
EXTRA = ("memory_static", "memory_without_activations")
METRICS = (*TARGETS, *EXTRA)
GIB = 2.0**30

# AIConfigurator names -> moeplan profiles and formats
MODELS = {
    "Qwen/Qwen3-30B-A3B": "qwen3-30b-a3b",
    "openai/gpt-oss-120b": "gpt-oss-120b",
    "deepseek-ai/DeepSeek-V3": "deepseek-v3",
    "Qwen/Qwen3-235B-A22B-FP8": "qwen3-235b-a22b-fp8",
}
SYSTEMS = {"h100_sxm": "h100", "h200_sxm": "h200", "b200_sxm": "b200", "a100_sxm": "a100-80g"}
_WEIGHTS = {"bfloat16": "bf16", "fp8": "fp8", "fp8_block": "fp8-block", "w4a16_mxfp4": "mxfp4", "nvfp4": "nvfp4"}
_KV = {"bfloat16": "bf16", "fp8": "fp8"}
# the power-law exponent AIConfigurator's MoE tables use per model family (docs/POWER_LAW_DISTRIBUTION.md of
# ai-dynamo/aiconfigurator: 1.01 for DeepSeek, 1.2 for the other MoE models here)
ALPHA = {"deepseek-v3": 1.01}
ALPHA_DEFAULT = 1.2


def power_law_balancedness(num_experts: int, ep: int, top_k: int, tokens: int, alpha: float, *,
                           draws: int = 64, seed: int = 0) -> float:  # fmt: skip
    """Mean over max EP-rank load of AIConfigurator's synthetic power-law routing (expected value).

    AIConfigurator measures its MoE kernels with expert loads drawn from a power law: each of the
    ``E`` experts gets a weight from the density ``x^-alpha`` truncated to ``[1, 0.8 T]`` (``[0.01, 2]``
    when ``T k <= E``), the ``T k`` token-expert pairs are split in proportion to the weights, experts
    go to EP ranks in contiguous blocks of ``E / ep``, and the busiest rank is the one timed. This
    draws that distribution (inverse-CDF sampling, ``draws`` times, fixed seed) and returns the mean
    of ``mean rank load / max rank load``: the balancedness ``b`` of moeplan's latency model.
    """
    if ep <= 1:
        return 1.0
    rng = np.random.default_rng(seed)
    lo, hi = (1.0, 0.8 * tokens) if tokens * top_k > num_experts else (0.01, 2.0)
    if hi <= lo:
        return 1.0
    u = rng.random((draws, num_experts))
    a = 1.0 - alpha
    weights = ((hi**a - lo**a) * u + lo**a) ** (1.0 / a)
    per_rank = weights.reshape(draws, ep, -1).sum(axis=2) if num_experts % ep == 0 else None
    if per_rank is None:
        return 1.0
    return float(np.mean(per_rank.mean(axis=1) / per_rank.max(axis=1)))


def _precision(quant: dict) -> dict:
    out = {"attention": _WEIGHTS[quant["gemm"]], "experts": _WEIGHTS[quant["moe"]], "kv_cache": _KV[quant["kvcache"]]}
    out["activations"] = "fp8" if quant["gemm"] in ("fp8", "fp8_block") else "bf16"
    return out


#: the largest token count of AIConfigurator's MoE tables: beyond it its estimator extends the largest rows,
#: so their routing imbalance is the one measured at (at most) this many tokens
AIC_MOE_MAX_TOKENS = 16384


def _balancedness(model: str, lay: ParallelLayout, tokens: int) -> float:
    arch = get_model(model)
    return power_law_balancedness(arch.num_routed_experts, lay.ep, arch.top_k, min(tokens, AIC_MOE_MAX_TOKENS),
                                  ALPHA.get(model, ALPHA_DEFAULT))  # fmt: skip


def _moeplan(scenario: dict, point: dict, *, calibrated: bool, balancedness: float | None, isl: int, osl: int):
    """moeplan's numbers for one point. ``balancedness`` None: AIConfigurator's routing assumption,
    drawn at the prefill step's tokens for TTFT and at the decode step's for TPOT."""
    model = MODELS[scenario["model"]]
    gpu = SYSTEMS[scenario["system"]]
    lay = ParallelLayout.parse(point["layout"])
    requests = point["batch"] * lay.dp
    b_prefill = _balancedness(model, lay, requests * isl) if balancedness is None else balancedness
    b_decode = _balancedness(model, lay, requests) if balancedness is None else balancedness
    common = dict(tp=lay.tp, pp=lay.pp, dp=lay.dp, ep=lay.ep, moe_tp=lay.moe_tp, batch=point["batch"], isl=isl,
                  osl=osl, calibrated=calibrated, precision=_precision(point["quant"]), memory_utilization=1.0)
    e = estimate(model, gpu, balancedness=b_prefill, **common)
    d = e if b_decode == b_prefill else estimate(model, gpu, balancedness=b_decode, **common)
    m = e.memory
    return {
        "ttft": e.ttft_ms,
        "tpot": d.tpot_ms,
        "tokens_per_s_per_gpu": requests * osl / (e.ttft_ms + (osl - 1) * d.tpot_ms) * 1e3 / e.num_gpus,
        "memory": e.memory_per_gpu_bytes,
        "memory_static": e.memory_per_gpu_bytes,
        "memory_without_activations": e.memory_per_gpu_bytes - m.activation_bytes,
        "balancedness": b_prefill,
        "balancedness_decode": b_decode,
        "factors_source": e.factors_source,
        "prefill_ms": {k[:-2]: v * 1e3 for k, v in e.prefill.components().items() if v},
        "decode_ms": {k[:-2]: v * 1e3 for k, v in d.decode.components().items() if v},
    }


def _aic_metrics(point: dict) -> dict:
    a = point["aic"]
    activations = a["memory_breakdown_gib"].get("activations", 0.0)
    engine = a.get("engine_memory_gib")
    if engine is None:
        raise KeyError("the cache has no engine_memory_gib; run python benchmarks/aic_compare.py --refresh-memory")
    return {"ttft": a["ttft_ms"], "tpot": a["tpot_ms"], "tokens_per_s_per_gpu": a["tokens_per_s_per_gpu"],
            "memory": engine["total"] * GIB,
            "memory_static": a["memory_per_gpu_gib"] * GIB,
            "memory_without_activations": (a["memory_per_gpu_gib"] - activations) * GIB}  # fmt: skip


def compare(reference: dict) -> dict:
    """Every point priced by moeplan in each variant, with relative errors and medians."""
    isl, osl = reference["isl_tokens"], reference["osl_tokens"]
    variants = {
        "before": {"calibrated": False, "balancedness": None},
        "after": {"calibrated": True, "balancedness": None},
        "after, b = 1": {"calibrated": True, "balancedness": 1.0},
    }
    rows, skipped = [], []
    for sc in reference["scenarios"]:
        for point in sc["points"]:
            if "aic" not in point:
                skipped.append({"scenario": sc["name"], "layout": point["layout"], "batch": point["batch"],
                                "why": "AIConfigurator: " + point.get("aic_error", "no estimate")})  # fmt: skip
                continue
            aic = _aic_metrics(point)
            row = {"scenario": sc["name"], "role": point["role"], "layout": point["layout"], "batch": point["batch"],
                   "aic": aic, "moeplan": {}, "error": {}}  # fmt: skip
            try:
                for name, kw in variants.items():
                    ours = _moeplan(sc, point, isl=isl, osl=osl, **kw)
                    row["moeplan"][name] = ours
                    row["error"][name] = {m: abs(ours[m] / aic[m] - 1.0) for m in METRICS}
            except PlannerError as exc:
                skipped.append({"scenario": sc["name"], "layout": point["layout"], "batch": point["batch"],
                                "why": f"moeplan: {type(exc).__name__}: {exc}"})  # fmt: skip
                continue
            rows.append(row)
    medians = {name: {m: float(np.median([r["error"][name][m] for r in rows])) for m in METRICS} for name in variants}
    signed = {name: {m: float(np.median([r["moeplan"][name][m] / r["aic"][m] - 1 for r in rows])) for m in METRICS}
              for name in variants}  # fmt: skip
    return {"rows": rows, "skipped": skipped, "medians": medians, "median_signed": signed, "variants": list(variants)}


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _points_table(result: dict, variant: str) -> str:
    head = ("| scenario | role | layout | bs | TTFT ms AIC / ours | TPOT ms AIC / ours | tok/s/GPU AIC / ours | "
            "mem GiB AIC engine / static / ours | b prefill / decode |")  # fmt: skip
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        a, o = r["aic"], r["moeplan"][variant]
        cells = [f"{a['ttft']:,.0f} / {o['ttft']:,.0f}", f"{a['tpot']:.1f} / {o['tpot']:.1f}",
                 f"{a['tokens_per_s_per_gpu']:,.0f} / {o['tokens_per_s_per_gpu']:,.0f}",
                 f"{a['memory'] / GIB:.1f} / {a['memory_static'] / GIB:.1f} / {o['memory'] / GIB:.1f}",
                 f"{o['balancedness']:.2f} / {o['balancedness_decode']:.2f}"]  # fmt: skip
        lines.append(f"| {r['scenario']} | {r['role']} | {r['layout']} | {r['batch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _median_table(result: dict) -> str:
    lines = ["| moeplan | TTFT | TPOT | tokens/s/GPU | memory (engine, 8,192-token step) | static memory | "
             "memory without activations |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name in result["variants"]:
        med, sgn = result["medians"][name], result["median_signed"][name]
        lines.append(f"| {name} | " + " | ".join(f"{_pct(med[m])} ({100 * sgn[m]:+.0f} %)" for m in METRICS) + " |")
    lines.append("| target | " + " | ".join(f"<= {_pct(t)}" for t in TARGETS.values()) + " | - | - |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refresh", action="store_true", help="Re-run AIConfigurator and rewrite the cache.")
    parser.add_argument("--refresh-memory", action="store_true",
                        help="Re-run only AIConfigurator's engine memory of the cached points (seconds).")
    parser.add_argument("--cache", default=str(CACHE), help="The AIConfigurator cache (JSON).")
    parser.add_argument("--out", help="Write every number to this JSON file.")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cache = Path(args.cache)
    if args.refresh or args.refresh_memory:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import aic_reference

        why = aic_reference.available()
        if why is not None:
            print(f"skipped: {why}", file=sys.stderr)
            return 0
        progress = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
        if args.refresh:
            data = aic_reference.refresh(progress=progress)
        else:
            data = aic_reference.refresh_engine_memory(json.loads(cache.read_text(encoding="utf-8")), progress)
        atomic_write_text(cache, json.dumps(data, indent=1) + "\n")
        print(f"wrote {cache}", file=sys.stderr)
    if not cache.exists():
        print(f"skipped: no cache {cache}; run with --refresh (needs aiconfigurator)", file=sys.stderr)
        return 0
    reference = json.loads(cache.read_text(encoding="utf-8"))
    result = compare(reference)
    prov = reference["provenance"]
    print("# moeplan against AIConfigurator, static batches on AIConfigurator's layouts\n")
    print(f"AIConfigurator {prov['versions']}, backend {prov['backend']}, {prov['database_mode']}, cached "
          f"{prov['date']}; ISL {reference['isl_tokens']}, OSL {reference['osl_tokens']}.\n")  # fmt: skip
    print("## Median relative error (median signed error in brackets)\n")
    print(_median_table(result) + "\n")
    for variant in ("before", "after"):
        print(f"## Points, moeplan {variant}\n")
        print(_points_table(result, variant) + "\n")
    if result["skipped"]:
        print("## Points not compared\n")
        for s in result["skipped"]:
            print(f"- {s['scenario']} {s['layout']} bs {s['batch']}: {s['why'][:200]}")
        print()
    elapsed = time.perf_counter() - start
    after = result["medians"]["after"]
    verdict = ", ".join(f"{m} {_pct(after[m])} {'PASS' if after[m] <= t else 'FAIL'}" for m, t in TARGETS.items())
    print(f"Targets (after): {verdict}; {len(result['rows'])} points; {elapsed:.1f} s")
    if args.out:
        meta = {"moeplan": __version__, "python": platform.python_version(), "elapsed_s": elapsed,
                "reference": prov}  # fmt: skip
        atomic_write_text(args.out, json.dumps({**result, "meta": meta}, indent=1, default=float) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
