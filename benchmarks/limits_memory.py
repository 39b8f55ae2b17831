"""Peak memory per input size of the commands bounded by ``planner/common/limits.py`` (``docs/limits.md``).

    python benchmarks/limits_memory.py            # sizes up to MAX_LOAD_VALUES (a few minutes)
    python benchmarks/limits_memory.py --quick    # the two smallest sizes

Each row runs one ``moeplan`` command in a fresh process and reads its peak resident set size
(``ru_maxrss`` of the child, Linux). The synthetic traces are DeepSeek-V3-shaped (58 MoE layers x 256
experts); ``replicas`` plans them on 64 GPUs with the defaults (step-aware, 200 sampled steps). Prints
a Markdown table and checks the target: peak RSS at the largest accepted size below 4 GB (PASS/FAIL).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.common.limits import MAX_LOAD_VALUES  # noqa: E402

LAYERS, EXPERTS = 58, 256
STEPS = (100, 400, 1600, MAX_LOAD_VALUES // (LAYERS * EXPERTS))
TARGET_GB = 4.0


def _run(argv: list[str], cwd: Path) -> tuple[float, float, int]:
    """(peak RSS in GB, wall s, exit code) of ``python -m planner.cli argv`` in a child process."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "planner.cli", *argv], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # this runner's only child
    if proc.returncode != 0:
        print(f"limits_memory: {' '.join(argv[:2])}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}", file=sys.stderr)
    return peak_kib * 1024 / 1e9, wall, proc.returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    steps_list = STEPS[:2] if args.quick else STEPS
    rows = []
    # ru_maxrss of RUSAGE_CHILDREN is a running maximum, so sizes run from small to large and every
    # command gets its own runner process to read a clean figure
    for steps in steps_list:
        values = steps * LAYERS * EXPERTS
        with tempfile.TemporaryDirectory(prefix="moeplan-mem-") as tmp:
            d = Path(tmp)
            cmds = {
                "synth": ["synth", "-o", "t.npz", "--steps", str(steps)],
                "loads": ["loads", "t.npz", "--json"],
                "replicas": ["replicas", "t.npz", "-m", "deepseek-v3", "--gpus", "64", "-o", "p.json"],
            }
            for name, cmd in cmds.items():
                res = subprocess.run([sys.executable, __file__, "--one", *cmd], cwd=d, capture_output=True, text=True)
                gb, wall, code = (float(x) for x in res.stdout.split()) if res.returncode == 0 else (float("nan"),) * 3
                size_mb = (d / "t.npz").stat().st_size / 1e6 if (d / "t.npz").exists() else float("nan")
                rows.append((name, steps, values, size_mb, gb, wall, int(code) if code == code else -1))
                print(f"  {name} {steps} steps: {gb:.2f} GB, {wall:.1f} s", file=sys.stderr)
    print("| command | steps x 58 x 256 | values | npz_MB | peak_RSS_GB | wall_s | exit |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for name, steps, values, size_mb, gb, wall, code in rows:
        print(f"| {name} | {steps} | {values:,} | {size_mb:.0f} | {gb:.2f} | {wall:.1f} | {code} |")
    largest = [r for r in rows if r[1] == steps_list[-1]]
    worst = max(r[4] for r in largest)
    verdict = "PASS" if worst < TARGET_GB and all(r[6] == 0 for r in rows) else "FAIL"
    print(f"\ntarget: peak RSS at {steps_list[-1]} steps ({largest[0][2]:,} values) < {TARGET_GB} GB: "
          f"{worst:.2f} GB, {verdict}")
    return 0


def _one(argv: list[str]) -> int:
    gb, wall, code = _run(argv, Path.cwd())
    print(gb, wall, code)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        raise SystemExit(_one(sys.argv[2:]))
    raise SystemExit(main())
