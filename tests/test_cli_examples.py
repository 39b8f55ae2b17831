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


#: the slow examples in groups that run as separate tests (pytest-xdist spreads them over the workers); a
#: group holds the examples that read each other's files, every group first runs the quick ones
_GROUPS = {"workers": ("collect", "replicas", "apply"), "profile": ("profile",)}


def _group(e) -> str:
    return next((name for name, commands in _GROUPS.items() if e.command in commands), "others")


def _run_all(tmp_path, monkeypatch, include_slow: bool, group: str | None = None):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ran = 0
    for e in EXAMPLES:
        if e.slow and (not include_slow or (group is not None and _group(e) != group)):
            continue
        res = runner.invoke(app, shlex.split(e.line)[1:])
        assert res.exit_code == 0, f"{e.line}\n{res.output[-2000:]}"
        ran += 1
    return ran


def test_quick_examples_run_as_written(tmp_path, monkeypatch):
    assert _run_all(tmp_path, monkeypatch, include_slow=False) == sum(not e.slow for e in EXAMPLES)
    assert (tmp_path / "plan.json").is_file() and (tmp_path / "schedule.json").is_file()
    assert (tmp_path / "olmoe-out" / "plan.json").is_file()


def test_every_slow_example_is_in_one_group():
    groups = {_group(e) for e in EXAMPLES if e.slow}
    assert groups == {*_GROUPS, "others"}
    assert sum(sum(e.slow and _group(e) == g for e in EXAMPLES) for g in groups) == sum(e.slow for e in EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("group", [*_GROUPS, "others"])
def test_every_example_runs_as_written(tmp_path, monkeypatch, group):
    pytest.importorskip("torch")
    ran = _run_all(tmp_path, monkeypatch, include_slow=True, group=group)
    assert ran == sum(not e.slow or _group(e) == group for e in EXAMPLES)
    made = {"workers": "running.json", "profile": "profile.csv", "others": "moeplan-out/plan.json"}[group]
    assert (tmp_path / made).is_file()
