"""The bad-input corpus's one format and one runner (issue 14).

A case is a command line that must fail cleanly. Each area keeps its cases in its own test module
(``tests/test_bad_inputs_<area>.py`` holds ``CASES = [Case(...), ...]`` and parametrises
:func:`check_case` over them); ``benchmarks/reliability.py`` collects every such module and reports
the cases tried and passed per category.

What every case asserts, whatever the command:

- the documented exit code (``code``);
- exactly one stderr line, ``moeplan: error: ...``, containing ``names`` (the offending field, flag,
  layer, GPU or file), and no traceback;
- no output file: nothing new appears in the case's directory except what ``setup`` made, and every
  file ``setup`` made is byte-for-byte unchanged (pre-existing outputs are not lost).

``argv`` may contain ``{tmp}``, replaced by the case's directory. ``setup(tmp)`` writes the input
files. ``inprocess=True`` runs the real app under typer's CliRunner (fast lane); ``False`` runs
``python -m planner.cli`` in a subprocess with ``timeout_s`` (signals, hangs, worker faults; the test
module marks those slow).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["Case", "check_case", "run_case", "CaseResult"]


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    argv: Sequence[str]
    code: int
    names: str
    setup: Callable[[Path], None] | None = None
    inprocess: bool = True
    timeout_s: float = 120.0
    env: dict = field(default_factory=dict)


@dataclass
class CaseResult:
    exit_code: int
    stdout: str
    stderr: str
    problems: list[str]


def _snapshot(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink() or not p.is_file():
            out[str(p.relative_to(root))] = None
        else:
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def run_case(case: Case, tmp: Path) -> CaseResult:
    """Run one case in directory ``tmp`` and list every way it broke the contract (empty = passed)."""
    tmp.mkdir(parents=True, exist_ok=True)
    if case.setup is not None:
        case.setup(tmp)
    before = _snapshot(tmp)
    argv = [str(a).replace("{tmp}", str(tmp)) for a in case.argv]
    if case.inprocess:
        from typer.testing import CliRunner

        from planner.cli import app

        res = CliRunner().invoke(app, argv, env={k: str(v) for k, v in case.env.items()} or None)
        code, stdout, stderr = res.exit_code, res.stdout, res.stderr
    else:
        env = {**os.environ, **{k: str(v) for k, v in case.env.items()}}
        try:
            proc = subprocess.run([sys.executable, "-m", "planner.cli", *argv], capture_output=True,
                                  text=True, timeout=case.timeout_s, cwd=tmp, env=env)
            code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            return CaseResult(-1, str(exc.stdout or ""), str(exc.stderr or ""),
                              [f"hung: no exit within {case.timeout_s} s"])
    problems = []
    if code != case.code:
        problems.append(f"exit {code}, expected {case.code}")
    lines = stderr.strip().splitlines()
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines, expected 1")
    if "Traceback" in stderr:
        problems.append("traceback on stderr")
    if not stderr.strip().startswith("moeplan: error:"):
        problems.append("stderr does not start with 'moeplan: error:'")
    if case.names.lower() not in stderr.lower():
        problems.append(f"stderr does not name {case.names!r}")
    after = _snapshot(tmp)
    new = sorted(set(after) - set(before))
    if new:
        problems.append(f"new files left: {new}")
    changed = sorted(k for k in before if k in after and before[k] != after[k])
    gone = sorted(set(before) - set(after))
    if changed or gone:
        problems.append(f"pre-existing files changed {changed} or lost {gone}")
    return CaseResult(code, stdout, stderr, problems)


def check_case(case: Case, tmp: Path) -> None:
    """pytest body: fail with every contract breach of ``case`` and its stderr."""
    res = run_case(case, tmp)
    assert not res.problems, f"{case.id}: {'; '.join(res.problems)}\nstderr: {res.stderr[-2000:]}"
