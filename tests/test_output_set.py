"""The output layer (planner.common.fileio.OutputSet) and the CLI's value checks (planner.cli.checks):
files of a command are written together or not at all, with the umask's mode; every numeric flag of
every command has a rule."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from planner.cli import app
from planner.cli.checks import VALUE_RULES, numeric_params, rule_for
from planner.common.fileio import (
    OutputSet,
    atomic_write_bytes,
    atomic_write_text,
    check_input_file,
    new_file_mode,
    read_input_text,
)
from planner.errors import InputError

runner = CliRunner()


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def test_files_are_held_back_and_written_together(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    outs = OutputSet()
    outs.declare(a, "--output")
    outs.declare(b, "--plot")
    with outs:
        atomic_write_text(a, "A")
        atomic_write_text(b, "B")
        assert not a.exists() and not b.exists()
    assert (a.read_text(), b.read_text()) == ("A", "B")
    assert _leftovers(tmp_path) == []


def test_a_failing_command_writes_nothing(tmp_path):
    a = tmp_path / "a.json"
    a.write_text("old")
    outs = OutputSet()
    outs.declare(a, "--output")
    with pytest.raises(RuntimeError):
        with outs:
            atomic_write_text(a, "new")
            raise RuntimeError("late failure")
    assert a.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_a_failing_commit_puts_every_file_back(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("old a")
    outs = OutputSet()
    outs.declare(a, "--output")
    outs.declare(b, "--plot")
    with pytest.raises(InputError, match="b.json"):
        with outs:
            atomic_write_text(a, "new a")
            atomic_write_text(b, "new b")
            b.mkdir()  # something gets in the way after the up-front check
    assert a.read_text() == "old a"
    assert b.is_dir()
    assert _leftovers(tmp_path) == []


def test_undeclared_paths_are_written_at_once(tmp_path):
    with OutputSet():
        atomic_write_text(tmp_path / "state.json", "live")
        assert (tmp_path / "state.json").read_text() == "live"


def test_new_files_take_the_umask_mode_and_replaced_files_keep_theirs(tmp_path, umask_027):
    new = atomic_write_bytes(tmp_path / "new.bin", b"x")
    assert new_file_mode() == 0o640
    assert new.stat().st_mode & 0o777 == 0o640
    old = tmp_path / "old.bin"
    old.write_bytes(b"y")
    old.chmod(0o604)
    atomic_write_bytes(old, b"z")
    assert old.stat().st_mode & 0o777 == 0o604


def test_a_directory_of_outputs_is_created_only_when_the_command_succeeds(tmp_path):
    d = tmp_path / "out" / "sub"
    outs = OutputSet()
    outs.declare_dir(d, "--out-dir", ("plan.json",))
    with pytest.raises(RuntimeError):
        with outs:
            atomic_write_text(d / "plan.json", "{}")
            raise RuntimeError("late")
    assert not (tmp_path / "out").exists()
    outs = OutputSet()
    outs.declare_dir(d, "--out-dir", ("plan.json",))
    with outs:
        atomic_write_text(d / "plan.json", "{}")
    assert (d / "plan.json").read_text() == "{}"


def test_input_files_say_why_they_cannot_be_read(tmp_path):
    loop = tmp_path / "loop.json"
    os.symlink(loop.name, loop)
    with pytest.raises(InputError, match="symlink loop"):
        check_input_file(loop, "plan file")
    dangling = tmp_path / "dangling.json"
    os.symlink("absent.json", dangling)
    with pytest.raises(InputError, match="dangling symlink"):
        check_input_file(dangling)
    with pytest.raises(InputError, match="is a directory"):
        check_input_file(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"a": "\xc3\x28"}')
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte 0xc3 at offset 7\)"):
        read_input_text(bad)
    bom = tmp_path / "bom.json"
    bom.write_bytes("\ufeff{}".encode())
    assert read_input_text(bom) == "{}"


def test_cli_output_is_written_at_the_end_with_the_umask_mode(tmp_path, umask_027):
    out = tmp_path / "s.npz"
    res = runner.invoke(app, ["synth", "-o", str(out), "--steps", "2", "--layers", "2", "--num-experts", "48"])
    assert res.exit_code == 0, res.stderr
    assert out.stat().st_mode & 0o777 == 0o640
    res = runner.invoke(app, ["synth", "-o", str(out), "--steps", "2", "--layers", "2", "--num-experts", "8"])
    assert res.exit_code == 0, res.stderr
    assert np.load(out)["counts"].shape == (2, 2, 8)


def test_cli_command_failing_after_its_write_leaves_the_old_file(tmp_path, monkeypatch):
    import planner.cli.synth_cmd as synth_cmd

    out = tmp_path / "old.npz"
    out.write_bytes(b"old")

    def fail(*args, **kwargs):
        raise InputError("failure after the write")

    monkeypatch.setattr(synth_cmd, "emit", fail)
    res = runner.invoke(app, ["synth", "-o", str(out), "--steps", "2", "--layers", "2", "--num-experts", "8"])
    assert res.exit_code == 2
    assert out.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_every_numeric_flag_of_every_command_has_a_rule():
    cmd = typer.main.get_command(app)
    missing, seen = [], 0
    for name, command in cmd.commands.items():
        for param, kind in numeric_params(command.callback).items():
            seen += 1
            rule = rule_for(name, param)
            if rule is None:
                missing.append(f"{name} {param}")
            elif kind is int and not rule.integer:
                missing.append(f"{name} {param}: an int flag with a non-integer rule")
    assert seen > 50 and not missing, missing
    assert all(r.low is not None for r in VALUE_RULES.values())


def test_docs_limits_lists_every_limit_with_its_value():
    from planner.common.limits import LIMITS

    text = (Path(__file__).resolve().parents[1] / "docs" / "limits.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(" `"): line.split("|")[2].strip() for line in text.splitlines()
            if line.startswith("| `MAX_")}
    assert set(rows) == set(LIMITS)
    for name, (value, _) in LIMITS.items():
        assert float(rows[name].replace(",", "")) == float(value), name


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_is_refused_before_any_work(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res = runner.invoke(app, ["synth", "-o", str(ro / "s.npz"), "--steps", "2"])
        assert res.exit_code == 2
        assert res.stderr.strip().startswith("moeplan: error: --output:") and "cannot write" in res.stderr
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_limits_also_bound_text_files_and_available_memory(tmp_path, monkeypatch):
    import planner.common.fileio as fileio
    import planner.common.limits as limits

    big = tmp_path / "big.json"
    big.write_text("{}" * 100)
    monkeypatch.setattr(fileio, "MAX_TEXT_BYTES", 100)
    with pytest.raises(InputError, match="above the limit of 100 bytes"):
        read_input_text(big, "plan file")
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 1000)
    with pytest.raises(InputError, match=r"needed \(48 bytes per value\), 0.0 GB available"):
        limits.check_load_shape((10, 10, 10), "x.npz")
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: None)
    limits.check_load_shape((10, 10, 10), "x.npz")


def test_every_file_of_an_output_directory_is_held_and_checked_before_any_rename(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    (d / "plan.json").write_text("old plan")
    outs = OutputSet()
    outs.declare_dir(d, "--out-dir", ("plan.json",))
    with pytest.raises(InputError, match="--out-dir: .*decode-sglang.json: is a directory"):
        with outs:
            atomic_write_text(d / "plan.json", "new plan")
            atomic_write_text(d / "decode-sglang.json", "not declared by name, held all the same")
            (d / "decode-sglang.json").mkdir()  # in the way, found at commit before anything is renamed
    assert (d / "plan.json").read_text() == "old plan"
    assert _leftovers(d) == []
