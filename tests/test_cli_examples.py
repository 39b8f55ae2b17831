"""Every command's --help examples work as written (planner/cli/examples.py), in order, in one directory.

The fast lane runs the quick ones in-process; the slow lane runs all of them (worker processes,
searches of several seconds). Each example must appear verbatim in its command's --help and exit 0.
"""

import shlex

import pytest
from typer.testing import CliRunner

from planner.cli import app
from planner.cli.examples import EXAMPLES

runner = CliRunner()


def _help(command: str) -> str:
    res = runner.invoke(app, [command, "--help"], terminal_width=400)
    assert res.exit_code == 0, res.output
    return " ".join(res.stdout.split())


def test_every_command_has_examples_and_its_help_shows_them():
    import typer

    commands = set(typer.main.get_command(app).commands)
    assert commands == {e.command for e in EXAMPLES}, commands ^ {e.command for e in EXAMPLES}
    for e in EXAMPLES:
        assert e.line.startswith(f"moeplan {e.command}")
        assert " ".join(e.line.split()) in _help(e.command), e.line


def _run_all(tmp_path, monkeypatch, include_slow: bool):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ran = 0
    for e in EXAMPLES:
        if e.slow and not include_slow:
            continue
        res = runner.invoke(app, shlex.split(e.line)[1:])
        assert res.exit_code == 0, f"{e.line}\n{res.output[-2000:]}"
        ran += 1
    return ran


def test_quick_examples_run_as_written(tmp_path, monkeypatch):
    assert _run_all(tmp_path, monkeypatch, include_slow=False) == sum(not e.slow for e in EXAMPLES)
    assert (tmp_path / "plan.json").is_file() and (tmp_path / "schedule.json").is_file()
    assert (tmp_path / "olmoe-out" / "plan.json").is_file()


@pytest.mark.slow
def test_every_example_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    assert _run_all(tmp_path, monkeypatch, include_slow=True) == len(EXAMPLES)
    assert (tmp_path / "moeplan-out" / "plan.json").is_file() and (tmp_path / "running.json").is_file()
