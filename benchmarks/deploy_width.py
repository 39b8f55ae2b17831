"""What searching fast costs: the deployment search against a wide search of the same scenario, in moeplan's model.

Run from the repository root (moeplan installed)::

    python benchmarks/deploy_width.py                 # the 14 scenarios of benchmarks/deploy.py (~5 min here)
    python benchmarks/deploy_width.py --only 8x       # the scenarios whose name contains this text
    python benchmarks/deploy_width.py --quick         # benchmarks/deploy.py's one small scenario (the smoke test)
    python benchmarks/deploy_width.py --out r.json    # also every number as JSON (atomic write)

Why. Issue 11 asks that the search "not lose throughput by searching fast". The search screens each role's
candidates by a throughput bound: a candidate dominated within its role is dropped, the 4 best bounds per GPU
go on (step 2), and 4 layout combinations per kind are simulated end to end (step 5). The wide search drops
nothing: every memory-feasible candidate that meets its limits unloaded is simulated alone
(``max_candidates_per_role=None``), and 32 combinations per kind are simulated end to end (``alternatives=32``).
Both run in the same process on the same inputs (``benchmarks/deploy.py``'s scenarios and TensorRT-LLM's
memory rule), so the baseline is measured in the same run.

What is compared: each search's pick and its goodput (the rate it serves at the SLO, in req/s), the ratio of
the default's goodput to the wide search's, and the wall time of each. The goodput searches stop within 4 %
(``REL_TOL``), so a ratio of 0.96 or more is a tie at the search's resolution. Target: the default within 4 %
of the wide search in every scenario. Exit code 0 whatever the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import deploy as bench  # noqa: E402  (benchmarks/deploy.py: scenarios and the memory rule)

from planner.common.fileio import atomic_write_text  # noqa: E402
from planner.deploy.end_to_end import REL_TOL  # noqa: E402

WIDE = {"max_candidates_per_role": None, "alternatives": 32}


def _search(s, **kw) -> tuple[object, float]:
    t = time.perf_counter()
    r = bench.our_pick(s, **kw)
    return r, time.perf_counter() - t


def _row(s) -> dict:
    fast, t_fast = _search(s)
    wide, t_wide = _search(s, **WIDE)
    a, b = fast.chosen, wide.chosen
    return {"scenario": s.name, "default_pick": a.label, "default_req_per_s": a.rate_req_per_s, "default_s": t_fast,
            "default_candidates": len(fast.scores), "default_deployments": len(fast.deployments),
            "wide_pick": b.label, "wide_req_per_s": b.rate_req_per_s, "wide_s": t_wide,
            "wide_candidates": len(wide.scores), "wide_deployments": len(wide.deployments),
            "same_pick": a.label == b.label, "ratio": a.rate_req_per_s / b.rate_req_per_s if b.rate_req_per_s else None}


def _table(rows: list[dict]) -> str:
    head = ["scenario", "default pick", "req/s", "s", "candidates / end to end", "wide pick", "req/s", "s",
            "candidates / end to end", "default / wide", f"within {REL_TOL:.0%}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ok = r["ratio"] is not None and r["ratio"] >= 1 - REL_TOL
        lines.append("| " + " | ".join([
            r["scenario"], r["default_pick"], f"{r['default_req_per_s']:.4g}", f"{r['default_s']:.1f}",
            f"{r['default_candidates']} / {r['default_deployments']}",
            "(same)" if r["same_pick"] else r["wide_pick"], f"{r['wide_req_per_s']:.4g}", f"{r['wide_s']:.1f}",
            f"{r['wide_candidates']} / {r['wide_deployments']}",
            "-" if r["ratio"] is None else f"{r['ratio']:.3f}", "PASS" if ok else "FAIL"]) + " |")
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    ok = sum(x >= 1 - REL_TOL for x in ratios)
    lines += ["", "| target | measured | |", "|---|---|---|",
              f"| default search within {REL_TOL:.0%} of the wide search's goodput | {ok} of {len(rows)}"
              + (f", {min(ratios):.3f}-{max(ratios):.3f}" if ratios else "") + f", same pick in "
              f"{sum(r['same_pick'] for r in rows)} | {'PASS' if ok == len(rows) else 'FAIL'} |",
              f"| (context) wall time, default / wide | {sum(r['default_s'] for r in rows):.1f} s / "
              f"{sum(r['wide_s'] for r in rows):.1f} s in all | - |"]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="benchmarks/deploy.py's one small scenario")
    ap.add_argument("--only", help="run the scenarios whose name contains this text")
    ap.add_argument("--out", help="write every number as JSON to this file")
    args = ap.parse_args(argv)
    chosen = [s for s in bench.scenarios(args.quick) if args.only is None or args.only in s.name]
    if not chosen:
        print(f"no scenario name contains {args.only!r}", file=sys.stderr)
        return 2
    rows = []
    for s in chosen:
        rows.append(_row(s))
        r = rows[-1]
        print(f"{s.name}: default {r['default_s']:.1f} s, wide {r['wide_s']:.1f} s, ratio {r['ratio']:.3f}",
              file=sys.stderr, flush=True)
    print(_table(rows))
    if args.out:
        atomic_write_text(args.out, json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
