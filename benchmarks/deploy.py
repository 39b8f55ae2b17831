"""Deployment-search benchmark: wall time per scenario against the 5 s target, and the deployment chosen.

Run from the repository root (moeplan installed)::

    python benchmarks/deploy.py                  # Markdown table on stdout, a few minutes
    python benchmarks/deploy.py --quick          # the two smallest scenarios only
    python benchmarks/deploy.py --out r.json     # also every number as JSON

Scenarios (issue 11): DeepSeek-V3 on 32 and 64 x H200, Qwen3-235B-A22B on 16 x H200 and 32 x B200,
Qwen3-30B-A3B on 8 x H100 and 8 x H200, gpt-oss-120b on 8 x H100; TTFT 2000 ms / TPOT 50 ms at p90;
ISL/OSL 4000/1000 and 2000/500. The baseline measured in the same run is the search's own first stage
alone (layouts and memory, no simulation): what a memory-only sizing costs. The AIConfigurator
side-by-side is a later task: ``our_pick(scenario)`` is its hook (a scenario in, our deployment out).
Exit code 0 even when the target is missed (a measurement; no test depends on wall-clock speed).
FP8 / MXFP4 checkpoints are priced at the model profiles' release dtype until the precision work lands.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

from planner.deploy import plan_deployment
from planner.inputs import SLO

TARGET_S = 5.0


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


def scenarios(quick: bool = False) -> list[Scenario]:
    """The issue's scenarios, both lengths each (``quick``: the two smallest)."""
    base = [("qwen3-30b-a3b", "h100", 8), ("qwen3-30b-a3b", "h200", 8), ("gpt-oss-120b", "h100", 8),
            ("qwen3-235b-a22b-fp8", "h200", 16), ("qwen3-235b-a22b-fp8", "b200", 32), ("deepseek-v3", "h200", 32),
            ("deepseek-v3", "h200", 64)]
    if quick:
        return [Scenario("qwen3-30b-a3b", "h100", 8, 2000, 500)]
    return [Scenario(m, g, n, isl, osl) for m, g, n in base for isl, osl in ((4000, 1000), (2000, 500))]


def our_pick(scenario: Scenario):
    """The hook for side-by-side comparisons: moeplan's :class:`~planner.deploy.DeploymentResult` for a scenario."""
    slo = SLO(scenario.ttft_ms, scenario.tpot_ms, attainment_target=scenario.percentile / 100, rule="percentile")
    return plan_deployment(scenario.model, scenario.gpu, slo, isl=scenario.isl, osl=scenario.osl,
                           num_gpus=scenario.num_gpus)


def _baseline_s(s: Scenario) -> float:
    """Layouts and memory only (the search's first stage), measured in the same run."""
    from planner.deploy.instances import latency_model_layouts
    from planner.profiles import get_gpu, get_model

    t = time.perf_counter()
    spec = get_gpu(s.gpu)
    latency_model_layouts(get_model(s.model), spec, max_gpus=s.num_gpus, gpus_per_node=spec.gpus_per_node,
                          longest_context_tokens=s.isl + s.osl, batch_tokens_per_rank=8192, precision=None)
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    rows, out = [], []
    for s in scenarios(args.quick):
        base = _baseline_s(s)
        t = time.perf_counter()
        try:
            r = our_pick(s)
            wall = time.perf_counter() - t
            c = r.chosen
            pick, kind = c.label, r.comparison
            rec = {"wall_s": wall, "chosen": c.to_dict(), "comparison": r.comparison, "timings_s": r.timings_s}
            figures = f"{c.rate_req_per_s:.3g} | {c.tokens_per_s_per_gpu:.0f} | {c.tokens_per_s_per_user:.1f}"
        except Exception as exc:  # a measurement: report and go on
            wall = time.perf_counter() - t
            pick, kind, figures = f"{type(exc).__name__}: {str(exc)[:90]}", "-", "- | - | -"
            rec = {"wall_s": wall, "error": str(exc)}
        rec.update(scenario=s.__dict__, baseline_s=base)
        out.append(rec)
        ok = "PASS" if wall <= TARGET_S else "FAIL"
        rows.append(f"| {s.model} | {s.num_gpus} x {s.gpu} | {s.isl}/{s.osl} | {wall:.1f} | {base:.2f} | {ok} | "
                    f"{pick} | {figures} |")
        print(rows[-1], file=sys.stderr)
    print("| model | GPUs | ISL/OSL | search s | baseline s (layouts + memory only) | <= 5 s | chosen | req/s | "
          "tokens/s/GPU | tokens/s/user |")
    print("|---|---|---|---:|---:|---|---|---:|---:|---:|")
    print("\n".join(rows))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
