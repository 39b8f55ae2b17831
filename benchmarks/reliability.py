"""Reliability report (issue 14): the bad-input corpus and the property, determinism and fuzz tests.

    python benchmarks/reliability.py            # every case, in-process and subprocess; every test module
    python benchmarks/reliability.py --quick    # in-process cases only; test modules without slow tests
    python benchmarks/reliability.py --out r.json
    python benchmarks/reliability.py --quick --modules test_properties   # part 2 on these test modules only

1. Collects ``CASES`` from every ``tests/test_bad_inputs_*.py`` (each area keeps its own module; a
   module that does not exist yet is simply not listed) and runs every case with
   ``tests/corpus_case.run_case`` in a fresh temporary directory: the documented exit code, one stderr
   line naming the item, no traceback, no new or changed file.
2. Runs every ``tests/test_properties*.py``, ``tests/test_determinism*.py`` and ``tests/test_fuzz*.py``
   through pytest and reports its passed / failed / skipped counts.

Prints one Markdown table per part (per module and category: cases tried, passed, the failures) and a
final verdict: PASS when every case and every test passed. The exit code is 0 either way (a report,
not a test); ``tests/test_benchmarks_smoke.py`` runs ``--quick``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
CORPUS_GLOB = "test_bad_inputs_*.py"
TEST_GLOBS = ("test_properties*.py", "test_determinism*.py", "test_fuzz*.py")
for _path in (TESTS, ROOT):  # corpus_case lives in tests/; planner from this checkout
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def load_cases(path: Path) -> list:
    """``CASES`` of one corpus module, imported by path (``tests/`` on ``sys.path`` for corpus_case)."""
    spec = importlib.util.spec_from_file_location(f"_corpus_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(getattr(module, "CASES", []))


def run_corpus(quick: bool) -> list[dict]:
    """One record per case: module, category, id, whether it ran, passed, and what broke."""
    from corpus_case import run_case  # tests/ is on sys.path (below)

    records = []
    for path in sorted(TESTS.glob(CORPUS_GLOB)):
        try:
            cases = load_cases(path)
        except Exception as exc:  # a module that does not import is a failure of the report, shown as such
            records.append({"module": path.stem, "category": "(import)", "id": path.name, "ran": True,
                            "passed": False, "problems": [f"cannot import: {type(exc).__name__}: {exc}"], "s": 0.0})
            continue
        for case in cases:
            if quick and not case.inprocess:
                records.append({"module": path.stem, "category": case.category, "id": case.id, "ran": False,
                                "passed": None, "problems": [], "s": 0.0})
                continue
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="moeplan-rel-") as tmp:
                try:
                    problems = run_case(case, Path(tmp) / "case").problems
                except Exception as exc:  # the runner itself broke on this case
                    problems = [f"runner error: {type(exc).__name__}: {exc}"]
            records.append({"module": path.stem, "category": case.category, "id": case.id, "ran": True,
                            "passed": not problems, "problems": problems, "s": time.perf_counter() - started})
    return records


def run_test_modules(quick: bool, only: list[str] | None = None) -> list[dict]:
    """pytest on every property / determinism / fuzz module (``only``: those whose name is in it): passed,
    failed, skipped, wall time."""
    out = []
    paths = sorted({p for g in TEST_GLOBS for p in TESTS.glob(g)})
    if only is not None:
        unknown = sorted(set(only) - {p.stem for p in paths})
        if unknown:
            raise SystemExit(f"--modules: no test module {', '.join(unknown)} (known: {', '.join(p.stem for p in paths)})")
        paths = [p for p in paths if p.stem in only]
    for path in paths:
        with tempfile.TemporaryDirectory(prefix="moeplan-rel-") as tmp:
            xml = Path(tmp) / "junit.xml"
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", str(path)]
            if quick:
                cmd[4:4] = ["-m", "not slow"]
            started = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ})
            wall = time.perf_counter() - started
            counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
            failing = []
            if xml.exists():
                root = ET.parse(xml).getroot()
                for suite in root.iter("testsuite"):
                    for k in counts:
                        counts[k] += int(suite.get(k, 0))
                failing = [c.get("name", "?") for c in root.iter("testcase")
                           if c.find("failure") is not None or c.find("error") is not None]
        failed = counts["failures"] + counts["errors"]
        out.append({"module": path.stem, "tests": counts["tests"], "passed": counts["tests"] - failed - counts["skipped"],
                    "failed": failed, "skipped": counts["skipped"], "exit_code": proc.returncode, "s": wall,
                    "failing": failing,
                    "tail": proc.stdout.strip().splitlines()[-1:] if failed or proc.returncode not in (0, 5) else []})
    return out


def corpus_table(records: list[dict]) -> str:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["module"], r["category"])].append(r)
    lines = ["| module | category | cases | tried | passed | skipped (--quick) | failures |", "|---|---|--:|--:|--:|--:|---|"]
    for (module, category), rs in sorted(groups.items()):
        tried = [r for r in rs if r["ran"]]
        failed = [r for r in tried if not r["passed"]]
        fails = "; ".join(f"{r['id']}: {', '.join(r['problems'])}" for r in failed) or "-"
        lines.append(f"| {module.removeprefix('test_bad_inputs_')} | {category} | {len(rs)} | {len(tried)} | "
                     f"{len(tried) - len(failed)} | {len(rs) - len(tried)} | {fails} |")
    tried = [r for r in records if r["ran"]]
    passed = [r for r in tried if r["passed"]]
    lines.append(f"| **all** | | {len(records)} | {len(tried)} | {len(passed)} | {len(records) - len(tried)} | |")
    return "\n".join(lines)


def tests_table(results: list[dict]) -> str:
    if not results:
        return "(no tests/test_properties*.py, tests/test_determinism*.py or tests/test_fuzz*.py yet)"
    lines = ["| module | tests | passed | failed | skipped | wall_s | failures |", "|---|--:|--:|--:|--:|--:|---|"]
    for r in results:
        fails = ", ".join(r["failing"]) or ("; ".join(r["tail"]) if r["tail"] else "-")
        lines.append(f"| {r['module']} | {r['tests']} | {r['passed']} | {r['failed']} | {r['skipped']} | {r['s']:.1f} | "
                     f"{fails} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip subprocess cases and slow tests")
    ap.add_argument("--out", type=Path, help="also write every record as JSON here")
    ap.add_argument("--modules", action="append", metavar="NAME",
                    help="part 2 runs only this test module (repeatable, e.g. test_properties; default: every one)")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    records = run_corpus(args.quick)
    modules = run_test_modules(args.quick, args.modules)
    wall = time.perf_counter() - started

    tried = [r for r in records if r["ran"]]
    failed_cases = [r for r in tried if not r["passed"]]
    failed_tests = [m for m in modules if m["failed"] or m["exit_code"] not in (0, 5)]
    ok = bool(tried) and not failed_cases and not failed_tests
    print(f"# Reliability report{' (--quick)' if args.quick else ''}\n")
    print(f"## Bad-input corpus ({len(sorted(TESTS.glob(CORPUS_GLOB)))} module(s) tests/{CORPUS_GLOB})\n")
    print(corpus_table(records) + "\n")
    print("## Property, determinism and fuzz tests\n")
    print(tests_table(modules) + "\n")
    verdict = "PASS" if ok else "FAIL"
    print(f"## Target\n\n| target | result |\n|---|---|\n| every corpus case behaves as documented and every "
          f"property/determinism/fuzz test passes | {len(tried) - len(failed_cases)}/{len(tried)} cases, "
          f"{sum(m['passed'] for m in modules)}/{sum(m['tests'] - m['skipped'] for m in modules)} tests: **{verdict}** |\n")
    print(f"wall {wall:.1f} s")
    if args.out is not None:
        from planner.common.fileio import atomic_write_text

        atomic_write_text(args.out, json.dumps({"quick": args.quick, "pass": ok, "cases": records, "tests": modules,
                                                "wall_s": wall}, indent=1) + "\n")
    if not ok:
        print(f"reliability: FAIL: {len(failed_cases)} case(s), {len(failed_tests)} test module(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
