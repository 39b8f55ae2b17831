"""Regenerate the runtime numbers quoted in README.md, docs/runtime.md, docs/collect.md and
docs/migration.md, from one run of the commands that produce them.

    python docs/regen_runtime_numbers.py            # run (~3 min on 2 cores), rewrite the docs and docs/runtime_numbers.json
    python docs/regen_runtime_numbers.py --check    # run, change nothing; exit 1 when a quoted number drifted

What runs (torch on one thread per process, ``OMP_NUM_THREADS=1``, as docs/collect.md recommends):

1. ``bash examples/closed_loop.sh OUT 8192``: collect (qwen3-moe-tiny, stream seed 0), replicas (4 GPUs,
   8 redundant slots), apply (4 gloo workers, stream seed 1, then the warm, interleaved timing), and
   ``moeplan verify`` of its plan;
2. the staging measurement of docs/migration.md: the same migration (engine default placement on
   stream seed 1 -> the closed loop's plan) scheduled with 0, 1 and 2 staging slots per GPU;
3. ``python benchmarks/runtime.py --rows-only``: busiest-rank rows of none / EPLB / moeplan over 5
   token-stream seeds, and whether moeplan's difference to EPLB is inside the seed spread.

The docs carry markers: ``<!-- n:KEY -->VALUE<!-- /n -->`` around an inline value, and a fenced
block between ``<!-- block:KEY -->`` and ``<!-- /block -->`` for a command's output. This script
rewrites what is between them; ``--check`` compares instead. Times are one run's measurement and
move between runs (they are quoted as such, with their range): keys ending in ``_t`` and, inside
blocks, every number followed by ``s`` or ``ms`` and the paired change of the timing are left out
of the comparison. Every other
number -- rows, copies, bytes, steps, max/mean, hottest experts, differences -- is deterministic on
one machine and software stack (another CPU or BLAS may round the router fit differently,
docs/collect.md) and must match exactly.
"""

from __future__ import annotations

import argparse
import json
import os
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
                   r"|(?<=paired change )[+-]?\d+(?:\.\d+)? % \([+-]?\d+(?:\.\d+)? to [+-]?\d+(?:\.\d+)? %\)")


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when a quoted number drifted")
    args = p.parse_args(argv)
    values, blocks, raw = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="moeplan-regen-") as tmp:
        work = Path(tmp)
        for part in (closed_loop, staging, seed_rows):
            got = part(work)
            values.update(got["values"])
            blocks.update(got["blocks"])
            raw.update(got["raw"])
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
    record = json.dumps({"values": values, "blocks": blocks, "raw": raw}, indent=1, sort_keys=True) + "\n"
    if args.check:
        try:
            old_values = json.loads(NUMBERS.read_text())["values"]
        except (OSError, ValueError, KeyError):
            old_values = {}
        problems += [f"docs/runtime_numbers.json: {k}: {old_values.get(k)!r} -> {v!r}" for k, v in values.items()
                     if not k.endswith("_t") and old_values.get(k) != v]
    else:
        from planner.common.fileio import atomic_write_text

        atomic_write_text(NUMBERS, record)
    for line in problems:
        print(line)
    if args.check:
        print("runtime numbers: " + ("DRIFTED (rerun python docs/regen_runtime_numbers.py)" if problems else "match the docs"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
