"""Regenerate the runtime numbers quoted in README.md, docs/runtime.md, docs/collect.md and
docs/migration.md, from one run of the commands that produce them.

    python docs/regen_runtime_numbers.py            # run (~3.5 min on 2 cores), rewrite the docs and docs/runtime_numbers.json
    python docs/regen_runtime_numbers.py --check    # run, change nothing; exit 1 when a quoted number drifted
                                                    # (exit 0 with a note on a CPU whose torch kernels' SIMD
                                                    # level differs from the recording's: not comparable)
    python docs/regen_runtime_numbers.py --part collect [--check]   # one part only (repeatable)
    python docs/regen_runtime_numbers.py --part loop --check --work DIR   # keep the commands' files in DIR

What runs (torch on one thread, ``OMP_NUM_THREADS=1``, in every process, as docs/collect.md
recommends); the ``--part`` names:

``loop``
    1. ``bash examples/closed_loop.sh OUT 8192``: collect (qwen3-moe-tiny, stream seed 0), replicas
       (4 GPUs, 8 redundant slots), apply (4 gloo workers, stream seed 1, then the warm, interleaved
       timing), and ``moeplan verify`` of its plan;
    2. the staging measurement of docs/migration.md: the same migration (engine default placement on
       stream seed 1 -> the closed loop's plan) scheduled with 0, 1 and 2 staging slots per GPU;
``rows``
    3. ``python benchmarks/runtime.py --rows-only``: busiest-rank rows of none / EPLB / moeplan over
       5 token-stream seeds, and whether moeplan's difference to EPLB is inside the seed spread;
``collect``
    4. docs/collect.md: the four tiny models built (parameters, bytes, forward and build times), the
       router fit against its targets (``planner.runtime.hf.skew.skew_fit_stats`` on the fit stream,
       held-out seeds 0 and 1, per-step max/mean, and the same models with unfitted routers), the
       ``MoELayer`` conversion difference, OLMoE's c4-vs-all KL, and the ``collect --json`` example
       (about 1 min);
``workers``
    5. docs/runtime.md's quick start on 4 gloo workers (``"even"`` and ``"deterministic"``): the
       ``counts_report`` sample and the rows quoted after it (about 15 s);
``migration``
    6. docs/migration.md's ``moeplan migrate`` example on a synthetic OLMoE-shaped trace and the
       rows of its "Measured savings" table (about 30 s).

A ``--part`` run keeps the other markers at the values docs/runtime_numbers.json recorded.

The docs carry markers: ``<!-- n:KEY -->VALUE<!-- /n -->`` around an inline value, and a fenced
block between ``<!-- block:KEY -->`` and ``<!-- /block -->`` for a command's output. This script
rewrites what is between them; ``--check`` compares instead. Times are one run's measurement and
move between runs (they are quoted as such, with their range): keys ending in ``_t`` and, inside
blocks, every number followed by ``s`` or ``ms``, the paired change of the timing and the
``step ms`` / ``expert kernels ms`` lists of ``counts_report`` are left out of the comparison. Every other
number -- rows, copies, bytes, steps, max/mean, hottest experts, differences -- is deterministic on
one machine and software stack (another CPU or BLAS may round the router fit differently,
docs/collect.md) and must match exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "runtime.md", ROOT / "docs" / "collect.md", ROOT / "docs" / "migration.md"]
NUMBERS = ROOT / "docs" / "runtime_numbers.json"
TOKENS = 8192

_INLINE = re.compile(r"<!-- n:([A-Za-z0-9_]+) -->(.*?)<!-- /n -->", re.S)
_BLOCK = re.compile(r"(<!-- block:([A-Za-z0-9_]+) -->\n```[a-z]*\n)(.*?)(```\n<!-- /block -->)", re.S)
_TIME = re.compile(r"\d+(?:\.\d+)?(?=(?: \(\d+(?:\.\d+)?-\d+(?:\.\d+)?\))? m?s\b)|\(\d+(?:\.\d+)?-\d+(?:\.\d+)?\)(?= m?s\b)"
                   r"|(?<=paired change )[+-]?\d+(?:\.\d+)? % \([+-]?\d+(?:\.\d+)? to [+-]?\d+(?:\.\d+)? %\)"
                   r"|(?<=step ms, median of )\d+ \[[^\]]*\]|(?<=expert kernels ms min )\[[^\]]*\]")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _env() -> dict:
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def _run(argv: list[str], cwd: Path) -> str:
    res = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res.stdout


def closed_loop(work: Path) -> dict:
    """Item 1: the closed loop's output and numbers."""
    _log("closed loop: collect -> replicas -> apply (4 workers) ...")
    started = time.perf_counter()
    out = _run(["bash", str(ROOT / "examples" / "closed_loop.sh"), "closed-loop", str(TOKENS)], work)
    loop_s = time.perf_counter() - started
    verify = _run([sys.executable, "-m", "planner.cli", "verify", "closed-loop/plan.json", "--loads",
                   "closed-loop/loads.npz"], work)
    d = json.loads((work / "closed-loop" / "apply.json").read_text())
    from planner.inputs.readers import read_loads

    loads = read_loads(str(work / "closed-loop" / "loads.npz"))
    stats = loads.layer_stats()
    plan = json.loads((work / "closed-loop" / "plan.json").read_text())
    before, after = d["busiest_rank_tokens_before"], d["busiest_rank_tokens_after"]
    drops = [1 - a / b for a, b in zip(after, before)]
    t = d["timing"]
    lines = out.strip().splitlines()
    cut1 = next(i for i, ln in enumerate(lines) if ln.startswith("loads written to")) + 1
    cut2 = next(i for i, ln in enumerate(lines) if ln.startswith("solved in")) + 1
    collect_part, replicas_part = "\n".join(lines[:cut1]), "\n".join(lines[cut1:cut2])
    mm = [s.max_over_mean for s in stats]
    return {
        "raw": {"apply": {k: v for k, v in d.items() if k != "rounds"}, "plan_predicted": plan["replicas"]["predicted"]},
        "blocks": {
            "closed_loop_output": out.strip(),
            "collect_example": (f"$ OMP_NUM_THREADS=1 moeplan collect --model qwen3-moe-tiny --tokens {TOKENS} --seed 0 "
                                f"-o closed-loop/loads.npz\n{collect_part}\n\n$ moeplan replicas closed-loop/loads.npz "
                                f"--model qwen3-moe-tiny --gpus 4 --redundant 8 -o closed-loop/plan.json\n{replicas_part}\n\n"
                                f"$ moeplan verify closed-loop/plan.json --loads closed-loop/loads.npz\n{verify.strip()}"),
        },
        "values": {
            "cl_steps": str(d["steps"]),
            "cl_transfers": str(d["transfers"]),
            "cl_local": str(d["local_copies"]),
            "cl_mb": f"{d['bytes_sent'] / 1e6:.1f}",
            "cl_max_abs_diff": f"{d['max_abs_diff']:.2g}",
            "cl_busiest_l0": f"{before[0]} → {after[0]}",
            "cl_drop_range": f"{100 * min(drops):.1f}–{100 * max(drops):.1f} %",
            "cl_skew_range": f"{min(mm):.2f}–{max(mm):.2f}",
            "cl_hottest": ", ".join(str(s.hottest_expert) for s in stats),
            "cl_gap": f"{100 * (sum(plan['replicas']['predicted']['replay_max_gpu_load_tokens']) / sum(plan['replicas']['predicted']['replay_lower_bound_tokens']) - 1):.2f} %",
            "cl_forward_t": (f"{t['before_ms_median']:.0f} ({min(t['before_ms']):.0f}–{max(t['before_ms']):.0f}) ms → "
                             f"{t['after_ms_median']:.0f} ({min(t['after_ms']):.0f}–{max(t['after_ms']):.0f}) ms"),
            "cl_forward_change_t": (f"{100 * t['change_median']:+.0f} % (per round {100 * t['change_min']:+.0f} to "
                                    f"{100 * t['change_max']:+.0f} %)"),
            "cl_apply_wall_t": f"{d['wall_s']:.0f} s",
            "cl_total_wall_t": f"{loop_s:.0f} s",
        },
    }


def staging(work: Path) -> dict:
    """Item 2: the closed loop's migration with 0, 1 and 2 staging slots per GPU and layer."""
    _log("staging: the closed loop's migration with 0, 1, 2 spare slots ...")
    from planner.migration import DEFAULT_SPARE_SLOTS, plan_migration
    from planner.plans.io import read_plan
    from planner.runtime.apply import engine_default_plan
    from planner.runtime.moe import reference_forward
    from planner.runtime.sources import load_source

    new = read_plan(work / "closed-loop" / "plan.json")
    layers, x, _, _ = load_source("qwen3-moe-tiny", num_tokens=TOKENS, token_seed=1)
    current = engine_default_plan(new, reference_forward(layers, x)[1])
    rows, values = [], {"default_spare": str(DEFAULT_SPARE_SLOTS)}
    # the workers' arguments are pickled into a file (planner/runtime/dist.py): weights and tokens dominate
    values["cl_payload_mb"] = f"{len(pickle.dumps((layers, x))) / 1e6:.0f} MB"
    for spare in (0, 1, 2):
        m = plan_migration(current, new, spare_slots_per_gpu=spare)
        rows.append({"spare": spare, "steps": m.steps, "copies": m.copies, "staged": m.staged})
        values[f"stage{spare}"] = f"{m.steps} steps, {m.copies} copies, {m.staged} staged"
    table = "\n".join(["spare_slots  steps  copies  staged"] +
                      [f"{r['spare']:<11}  {r['steps']:<5}  {r['copies']:<6}  {r['staged']}" for r in rows])
    return {"raw": {"staging": rows}, "blocks": {"staging_table": table}, "values": values}


def seed_rows(work: Path) -> dict:
    """Item 3: busiest-rank rows over seeds (benchmarks/runtime.py --rows-only)."""
    _log("rows over 5 seeds (benchmarks/runtime.py --rows-only) ...")
    out = _run([sys.executable, str(ROOT / "benchmarks" / "runtime.py"), "--rows-only", "--out", "rows.json"], work)
    spread = json.loads((work / "rows.json").read_text())["seed_spread"]
    s0 = spread["per_seed"][0]
    e, m, d = spread["eplb"], spread["moeplan"], spread["moeplan_vs_eplb"]
    tie = not (d["fewer_rows_on_every_seed"] or d["more_rows_on_every_seed"])
    table = out.strip().split("\n\n", 1)[1]
    return {
        "raw": {"seed_spread": spread},
        "blocks": {"seed_rows": table},
        "values": {
            "bench_none0": str(s0["rows"]["none"]),
            "bench_eplb0": f"{s0['rows']['eplb']} ({100 * s0['vs_none']['eplb']:+.1f} %)",
            "bench_moeplan0": f"{s0['rows']['moeplan']} ({100 * s0['vs_none']['moeplan']:+.1f} %)",
            "bench_eplb_seeds": f"{100 * e['vs_none_median']:+.1f} % ({100 * e['vs_none_min']:+.1f} to {100 * e['vs_none_max']:+.1f})",
            "bench_moeplan_seeds": f"{100 * m['vs_none_median']:+.1f} % ({100 * m['vs_none_min']:+.1f} to {100 * m['vs_none_max']:+.1f})",
            "bench_diff_seeds": f"{100 * d['median']:+.2f} % ({100 * d['min']:+.2f} to {100 * d['max']:+.2f})",
            "bench_verdict": ("a tie: the sign changes between seeds, the difference is inside the seed spread" if tie else
                              "outside the seed spread: the same sign on every seed"),
        },
    }


_SHORT = {"qwen3-moe-tiny": "qwen3", "mixtral-tiny": "mixtral", "olmoe-tiny": "olmoe", "deepseek-v3-tiny": "ds3"}


def _rng(xs, fmt: str, sep: str = "–") -> str:
    return f"{min(xs):{fmt}}{sep}{max(xs):{fmt}}"


def collect_numbers(work: Path) -> dict:
    """Item 4: docs/collect.md's tiny models (sizes, forward and build times), the router fit against
    its targets (fit stream, held-out streams, unfitted routers), the MoELayer conversion difference
    and the ``--json`` example. In this process, torch on one thread."""
    _log("collect.md: tiny models, router fit on 4 streams, unfitted routers, --json example ...")
    import numpy as np
    import torch

    from planner.inputs.readers import builtin_loads
    from planner.profiles import get_model
    from planner.runtime import hf
    from planner.runtime.hf.skew import skew_fit_stats

    import transformers  # noqa: F401  (imported before anything is timed)

    torch.set_num_threads(1)
    values, raw = {}, {"fit": {}}
    models = {}
    for name, short in _SHORT.items():
        started = time.perf_counter()
        model = models[name] = hf.load_model(name)
        build_s = time.perf_counter() - started
        profile = get_model(name)
        params = sum(t.numel() for t in model.state_dict().values())
        if params != profile.total_params():  # tests/test_runtime_hf.py checks the same
            raise SystemExit(f"{name}: built model has {params} parameters, its profile {profile.total_params()}")
        values[f"{short}_params"] = f"{params:,}"
        values[f"{short}_mb"] = f"{4 * params / 1e6:.1f} MB"
        values[f"{short}_expert_bytes"] = f"{profile.bytes_per_expert:,}"
        values[f"{short}_expert_mb"] = f"{profile.bytes_per_expert / 1e6:.2f}"
        ids = hf.token_stream(model, 2048, seed=0)
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            hf.collect_loads(model, ids)
            times.append(time.perf_counter() - t0)
        values[f"{short}_fwd_t"] = f"{float(np.median(times)):.2f} s"
        values[f"{short}_build_t"] = f"{build_s:.1f} s" if build_s >= 1 else f"{build_s:.2f} s"
        raw[f"{short}_build_s"], raw[f"{short}_forward_s"] = build_s, times
    bias = sum(b.numel() for n, b in models["deepseek-v3-tiny"].named_buffers() if n.endswith("e_score_correction_bias"))
    values["ds3_bias_entries"] = str(bias)
    started = time.perf_counter()
    unfitted = {"qwen3-moe-tiny": hf.load_model("qwen3-moe-tiny", fit_routers=False)}
    raw["qwen3_unfitted_build_s"] = time.perf_counter() - started
    unfitted["mixtral-tiny"] = hf.load_model("mixtral-tiny", fit_routers=False)
    values["qwen3_fit_per_layer_t"] = f"{(raw['qwen3_build_s'] - raw['qwen3_unfitted_build_s']) / 4:.1f} s"

    # the MoELayer conversion: max abs difference to the HF blocks (512 tokens, stream seed 3, as the test)
    diffs = {}
    for name, model in models.items():
        ids = hf.token_stream(model, 512, seed=3)[0]
        diffs[name] = max(float((layer.forward_with_routing(b.inputs)[0] - b.outputs).abs().max())
                          for b, layer in zip(hf.moe_block_io(model, ids), hf.moe_layers(model)))
    values["convert_diff_softmax"] = f"{max(diffs[n] for n in ('qwen3-moe-tiny', 'mixtral-tiny', 'olmoe-tiny')):.2g}"
    values["convert_diff_ds3"] = f"{diffs['deepseek-v3-tiny']:.2g}"
    raw["convert_max_abs_diff"] = diffs

    def loads_of(model, tokens, seed):
        return hf.collect_loads(model, hf.token_stream(model, tokens, seed=seed))

    streams = {"fit": (4096, hf.FIT_SEED), "s0": (8192, 0), "s1": (65536, 1)}
    for name, short in (("qwen3-moe-tiny", "q"), ("mixtral-tiny", "m")):
        target = hf.skew_target(name).summed()
        tmm = target.max(axis=1) / target.mean(axis=1)
        values[f"{short}_target_mm"] = ", ".join(f"{v:.2f}" for v in tmm)
        values[f"{short}_target_min"] = ", ".join(f"{v:.2f}" for v in target.min(axis=1) / target.mean(axis=1))
        got = {key: loads_of(models[name], *ts) for key, ts in streams.items()}
        got["un"] = loads_of(unfitted[name], 8192, 0)
        st = {key: [skew_fit_stats(target[r], ld.summed()[r]) for r in range(len(target))] for key, ld in got.items()}
        raw["fit"][name] = st
        for key, rows in st.items():
            kl_fmt = ".3f" if key == "un" else ".4f"
            for r, s in enumerate(rows):
                values[f"{short}_{key}_l{r}"] = f"{s['kl']:{kl_fmt}} / {s['spearman']:.2f} / {s['max_over_mean']:.2f}"
        per_step = got["s1"].counts.max(axis=2) / got["s1"].counts.mean(axis=2)  # [steps, layers]
        for r in range(per_step.shape[1]):
            values[f"{short}_step_l{r}"] = _rng(per_step[:, r], ".2f", "-")
        values[f"{short}_steps"] = str(per_step.shape[0])
        un = st["un"]
        values[f"{short}_un_kl"] = _rng([s["kl"] for s in un], ".3f", "-")
        values[f"{short}_un_mm"] = _rng([s["max_over_mean"] for s in un], ".2f", "-")
        values[f"{short}_un_rho"] = _rng([s["spearman"] for s in un], ".2f", " to ")
        for key in ("s0", "s1"):
            values[f"{short}_{key}_kl"] = _rng([s["kl"] for s in st[key]], ".4f", "-")
        values[f"{short}_held_rho"] = _rng([s["spearman"] for k in ("s0", "s1") for s in st[k]], ".2f", "-")
        values[f"{short}_s0_mm"] = " / ".join(f"{s['max_over_mean']:.2f}" for s in st["s0"])
    for name in ("olmoe-tiny", "deepseek-v3-tiny"):
        stats = loads_of(models[name], 8192, 0).layer_stats()
        values[f"{_SHORT[name]}_s0_mm"] = ", ".join(f"{s.max_over_mean:.2f}" for s in stats)

    # OLMoE's c4 counts against its five-domain sum, at the measured layers 0 / 7 / 15
    parts = {d: builtin_loads(f"olmoe-{d}") for d in ("arxiv", "book", "c4", "github", "wikipedia")}
    total = sum(p.summed() for p in parts.values())
    c4 = parts["c4"].summed()
    values["olmoe_c4_kl"] = " / ".join(f"{skew_fit_stats(total[r], c4[r])['kl']:.3f}" for r in range(len(total)))
    values["olmoe_c4_layers"] = " / ".join(str(i) for i in parts["c4"].layer_ids)

    # the --json example, run as written
    argv = ["collect", "-m", "deepseek-v3-tiny", "--tokens", "4096", "--batch-tokens", "1024", "--seed", "3",
            "-o", "ds.npz", "--json"]
    text = _run([sys.executable, "-m", "planner.cli", *argv], work)
    lines = text.rstrip().splitlines()
    cut = next(i for i, ln in enumerate(lines) if ln == "    },")  # the end of the first layer's record
    block = "$ moeplan " + " ".join(argv) + "\n" + "\n".join(lines[:cut + 1]) + "\n..."
    return {"raw": raw, "blocks": {"collect_json_example": block}, "values": values}


_QUICK_START = '''
import json, sys, time
import numpy as np
from planner.inputs.loads import ExpertLoads
from planner.replicas import plan_replicas
from planner.runtime.moe import make_layers, random_tokens, reference_forward
from planner.runtime.workers import counts_report, routing_counts, serve_dispatches

if __name__ == "__main__":
    layers = make_layers(2, 64, 128, 8, 2, seed=0)
    x = random_tokens(512, 64, seed=100)
    ref, routing = reference_forward(layers, x)
    loads = ExpertLoads(routing_counts(routing, 8)[None], layer_ids=[0, 1])
    plan = plan_replicas(loads, "mixtral-8x7b", num_gpus=4)
    started = time.perf_counter()
    res = serve_dispatches(plan, layers, x, dispatches=("even", "deterministic"))
    wall = time.perf_counter() - started
    ev, det = res["even"], res["deterministic"]
    json.dump({"report": counts_report(ev, plan, routing), "slots": len(plan.replicas.physical_to_logical[0]),
               "diff": {k: float(np.abs(r.outputs - ref).max()) for k, r in res.items()},
               "det_report": counts_report(det, plan, routing),
               "rows": {k: r.rank_tokens.tolist() for k, r in res.items()},
               "kept": {k: r.local_tokens.tolist() for k, r in res.items()},
               "step_ms": ev.step_ms.tolist(), "expert_ms": ev.expert_ms.tolist(), "wall_s": wall}, sys.stdout)
'''


def counts_sample(work: Path) -> dict:
    """Item 5: docs/runtime.md's quick start served by 4 gloo workers (``"even"`` and
    ``"deterministic"`` in one process group) and its ``counts_report``."""
    _log("runtime.md: the quick start's counts_report on 4 gloo workers ...")
    import numpy as np

    (work / "quick_start.py").write_text(_QUICK_START)
    d = json.loads(_run([sys.executable, "quick_start.py"], work))
    if d["slots"] != 12:  # the quick start's comment says so
        raise SystemExit(f"the quick start's plan has {d['slots']} slots per layer, docs/runtime.md says 12")
    if "DIFFERENT" in d["report"] + d["det_report"]:
        raise SystemExit("measured rows differ from the prediction:\n" + d["report"] + "\n" + d["det_report"])
    kept_e, kept_d = np.array(d["kept"]["even"]), np.array(d["kept"]["deterministic"])
    step, kern = np.array(d["step_ms"]), np.array(d["expert_ms"])
    return {
        "raw": {"counts_sample": {k: v for k, v in d.items() if not k.endswith("report")}},
        "blocks": {"counts_report": d["report"]},
        "values": {
            "ws_diff_even": f"{d['diff']['even']:.2g}",
            "ws_det_rows": str(d["rows"]["deterministic"][0]),
            "ws_det_kept": f"{kept_d[0].min()}–{kept_d[0].max()}",
            "ws_even_kept": f"{kept_e[0].min()}–{kept_e[0].max()}",
            "ws_diff_det": f"{d['diff']['deterministic']:.2g}",
            "ws_kernel_t": f"{float(np.median(kern)):.1f} ms",
            "ws_step_t": f"{float(np.median(step)):.0f} ms",
            "ws_step_range_t": f"{step.min():.0f}–{step.max():.0f} ms",
            "ws_wall_t": f"{d['wall_s']:.0f} s",
        },
    }


_MIGRATION_EXAMPLE = [
    ["synth", "-o", "trace.npz", "--steps", "200", "--layers", "6", "--num-experts", "64", "--first-layer", "0"],
    ["replicas", "trace.npz", "-m", "olmoe-1b-7b", "--gpus", "8", "--redundant", "8", "--window", "100",
     "--holdout", "100", "-o", "a.json"],
    ["replicas", "trace.npz", "-m", "olmoe-1b-7b", "--gpus", "8", "--redundant", "8", "--window", "100", "-o", "b.json"],
    ["migrate", "a.json", "b.json", "--loads", "trace.npz"],
]


def migration_example(work: Path) -> dict:
    """Item 6: docs/migration.md's example: two OLMoE-shaped re-plans of a synthetic trace (steps
    0-99 and 100-199) and ``moeplan migrate`` between them (a few seconds)."""
    _log("migration.md: the migrate example on a synthetic trace ...")
    out = ""
    for argv in _MIGRATION_EXAMPLE:
        out = _run([sys.executable, "-m", "planner.cli", *argv], work)
    shown = "\n".join("$ moeplan " + " ".join(a) + (" > /dev/null" if a[0] != "migrate" else "") for a in _MIGRATION_EXAMPLE)
    return {"raw": {}, "blocks": {"migration_example": shown + "\n" + out.strip()}, "values": {}}


def _savings_rows(work: Path, tag: str, synth: list[str], model: str, gpus: int, redundant: int,
                  rows: tuple[tuple[str, int], ...], changed: list[float]) -> dict:
    """Rows of docs/migration.md's "Measured savings": a synthetic trace, two windows of 100 steps
    planned per (algorithm, nodes), and the migration between them with and without GPU
    relabelling, with 0 and 1 staging slots per GPU. The first row quotes GB too; ``changed`` gets
    each row's copies after relabelling as a percentage of the new plan's slots."""
    import statistics

    from planner.errors import Infeasible
    from planner.migration import plan_migration
    from planner.plans.io import read_plan

    _run([sys.executable, "-m", "planner.cli", "synth", "-o", f"{tag}.npz", "--steps", "200", *synth], work)
    values = {}
    for i, (alg, nodes) in enumerate(rows):
        plans = []
        for name, extra in (("a", ["--holdout", "100"]), ("b", [])):
            out = f"{tag}-{alg}-{nodes}-{name}.json"
            _run([sys.executable, "-m", "planner.cli", "replicas", f"{tag}.npz", "-m", model, "--gpus", str(gpus),
                  "--nodes", str(nodes), "--redundant", str(redundant), "--algorithm", alg, "--window", "100",
                  *extra, "-o", out], work)
            plans.append(read_plan(work / out))
        spare = plan_migration(*plans, spare_slots_per_gpu=1)
        try:
            full = plan_migration(*plans, spare_slots_per_gpu=0)
            only = plan_migration(*plans, relabel=False, spare_slots_per_gpu=0)
        except Infeasible as exc:  # copies do not depend on staging: count them with one staging slot
            n = re.search(r"(\d+) of (\d+) layer\(s\) cannot migrate", str(exc))
            full, only = spare, plan_migration(*plans, relabel=False, spare_slots_per_gpu=1)
            steps0 = f"infeasible in {n.group(1)} of {n.group(2)} layers" if n else "infeasible"
        else:
            steps0 = None
        gb = full.bytes_per_expert / 1e9

        def size(copies):
            return f"{copies * gb:.1f} GB" if copies * gb < 100 else f"{copies * gb:.0f} GB"

        def saved(m):
            return f"{100 * (m.copies / m.naive_copies - 1):.1f}%".replace("-", "−")

        def steps(m):
            per = [lm.steps for lm in m.layers]
            return f"{max(per)} / {statistics.median(per):g}"

        key = f"sav_{tag}_{alg}_{nodes}"
        values[f"{key}_naive"] = f"{full.naive_copies} ({size(full.naive_copies)})" if i == 0 else str(full.naive_copies)
        values[f"{key}_only"] = f"{only.copies} ({saved(only)})"
        values[f"{key}_full"] = (f"{full.copies} ({saved(full)}, {size(full.copies)})" if i == 0 else
                                 f"{full.copies} ({saved(full)})")
        values[f"{key}_steps0"] = steps0 or steps(full)
        values[f"{key}_steps1"] = steps(spare)
        slots = sum(len(row) for row in plans[1].replicas.physical_to_logical)
        changed.append(100 * full.copies / slots)
    return values


def migration_savings(work: Path) -> dict:
    """Item 7: docs/migration.md's "Measured savings": OLMoE-shaped (16 layers x 64 experts, 8 GPUs,
    72 slots per layer) and DeepSeek-V3-shaped (58 x 256, 32 GPUs, 288 slots; 1 and 4 nodes) re-plans
    of synthetic traces (about 25 s)."""
    _log("migration.md: savings on OLMoE- and DeepSeek-V3-shaped synthetic traces ...")
    changed: list[float] = []
    values = _savings_rows(work, "olmoe", ["--layers", "16", "--num-experts", "64", "--first-layer", "0"],
                           "olmoe-1b-7b", 8, 8, (("stepaware", 1), ("eplb", 1)), changed)
    values.update(_savings_rows(work, "ds3", [], "deepseek-v3", 32, 32, (("stepaware", 1), ("eplb", 1), ("stepaware", 4)), changed))
    values["sav_changed"] = f"{min(changed):.0f}–{max(changed):.0f}%"
    for tag in ("olmoe", "ds3"):  # the longest layer's steps, 0 -> 1 staging slot
        k = f"sav_{tag}_stepaware_1"
        values[f"{k}_cut"] = f"{values[k + '_steps0'].split(' / ')[0]} to {values[k + '_steps1'].split(' / ')[0]}"
    return {"raw": {}, "blocks": {}, "values": values}


#: ``--part`` name -> the functions it runs, in order (staging reuses the closed loop's plan)
PARTS = {"loop": (closed_loop, staging), "rows": (seed_rows,), "collect": (collect_numbers,), "workers": (counts_sample,),
         "migration": (migration_example, migration_savings)}


def _mask(text: str) -> str:
    return _TIME.sub("<t>", text)


def rewrite(text: str, values: dict, blocks: dict) -> tuple[str, list[str]]:
    """``text`` with every marker filled from ``values`` / ``blocks``; the keys it names but the run
    did not produce."""
    unknown = []

    def inline(m):
        if m.group(1) not in values:
            unknown.append(m.group(1))
            return m.group(0)
        return f"<!-- n:{m.group(1)} -->{values[m.group(1)]}<!-- /n -->"

    def block(m):
        if m.group(2) not in blocks:
            unknown.append(m.group(2))
            return m.group(0)
        return f"{m.group(1)}{blocks[m.group(2)]}\n{m.group(4)}"

    return _BLOCK.sub(block, _INLINE.sub(inline, text)), unknown


def drift(old: str, new: str) -> list[str]:
    """Markers whose content differs between ``old`` and ``new`` beyond the times."""
    out = []
    a, b = dict(_INLINE.findall(old)), dict(_INLINE.findall(new))
    out += [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if not k.endswith("_t") and a[k] != b.get(k)]
    ab = {m.group(2): m.group(3) for m in _BLOCK.finditer(old)}
    bb = {m.group(2): m.group(3) for m in _BLOCK.finditer(new)}
    for k in ab:
        if _mask(ab[k]) != _mask(bb.get(k, "")):
            diff = [f"  {x!r} -> {y!r}" for x, y in zip(_mask(ab[k]).splitlines(), _mask(bb.get(k, "")).splitlines()) if x != y]
            out.append(f"block {k}:\n" + "\n".join(diff[:5]))
    return out


def cpu_kernels() -> str:
    """The SIMD level of torch's CPU kernels here (``AVX2``, ``AVX512``, ...): float sums, and with them the tiny
    models' routing and every count derived from it, follow it, so numbers recorded on one level are compared
    exactly only on the same level."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when a quoted number drifted")
    p.add_argument("--part", action="append", choices=list(PARTS),
                   help="run only this part (repeatable; default: all); the other markers keep the recorded values")
    p.add_argument("--work", type=Path, help="run the commands in this directory and keep their files there (default: a "
                   "temporary directory, removed at the end); e.g. the closed loop's files land in WORK/closed-loop/")
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"  # torch in this process too (collect, staging), before it is imported
    try:
        record = json.loads(NUMBERS.read_text())
    except (OSError, ValueError):
        record = {}
    values, blocks, raw = {}, {}, {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="moeplan-regen-") as tmp:
        work = Path(tmp) if args.work is None else args.work.resolve()
        work.mkdir(parents=True, exist_ok=True)
        for name in args.part or PARTS:
            for part in PARTS[name]:
                got = part(work)
                values.update(got["values"])
                blocks.update(got["blocks"])
                raw.update(got["raw"])
    _log(f"ran {', '.join(args.part or PARTS)} in {time.perf_counter() - started:.0f} s")
    produced = set(values)
    if args.part:  # the markers of the parts not run keep what the last full run recorded
        values = {**record.get("values", {}), **values}
        blocks = {**record.get("blocks", {}), **blocks}
        raw = {**record.get("raw", {}), **raw}
    problems = []
    for doc in DOCS:
        old = doc.read_text(encoding="utf-8")
        new, unknown = rewrite(old, values, blocks)
        problems += [f"{doc.relative_to(ROOT)}: unknown marker {k}" for k in unknown]
        if args.check:
            problems += [f"{doc.relative_to(ROOT)}: {d}" for d in drift(old, new)]
        elif new != old:
            doc.write_text(new, encoding="utf-8")
            _log(f"rewrote {doc.relative_to(ROOT)}")
    kernels = cpu_kernels()
    record = json.dumps({"values": values, "blocks": blocks, "raw": raw, "cpu_kernels": kernels}, indent=1,
                        sort_keys=True) + "\n"
    if args.check:
        try:
            old_values = json.loads(NUMBERS.read_text())["values"]
        except (OSError, ValueError, KeyError):
            old_values = {}
        problems += [f"docs/runtime_numbers.json: {k}: {old_values.get(k)!r} -> {v!r}" for k, v in values.items()
                     if k in produced and not k.endswith("_t") and old_values.get(k) != v]
    else:
        from planner.common.fileio import atomic_write_text

        atomic_write_text(NUMBERS, record)
    for line in problems:
        print(line)
    recorded = json.loads(NUMBERS.read_text()).get("cpu_kernels") if NUMBERS.exists() else None
    if args.check and problems and recorded and recorded != kernels and not any("unknown marker" in p for p in problems):
        print(f"runtime numbers: not comparable here: recorded with torch's {recorded} CPU kernels, this CPU runs "
              f"{kernels}, whose float sums differ (the tiny models' routing and the counts and fits from it); the "
              "pipeline ran to the end; compare on a CPU of the recorded level")
        return 0
    if args.check:
        print("runtime numbers: " + ("DRIFTED (rerun python docs/regen_runtime_numbers.py)" if problems else "match the docs"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
