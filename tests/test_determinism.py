"""Determinism (issue 14 item 3): the same inputs give the same plan bytes, whatever the process, the hash
seed or the machine's load (``docs/plans.md``, "Determinism").

Plan files carry no wall times, so "the same plan" is byte equality of the file. The fast tests run
in-process and make the clock lie (every reading 10 s after the last): a search bounded by work gives
the same plan however slow the machine. The slow tests run each planner's CLI (and ``moeplan
plan``, the main job, comparing every file it writes) twice in separate processes with different
``PYTHONHASHSEED`` values, the second time beside a process that burns a CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli import app

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = str(ROOT / "examples" / "cluster-mixed.yaml")


def _invoke(*argv) -> None:
    res = CliRunner().invoke(app, [str(a) for a in argv])
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    """An 8-step trace of 8 DeepSeek-V3 MoE layers: the swap search runs by default on windows of <= 8 steps."""
    path = tmp_path_factory.mktemp("det") / "t.npz"
    _invoke("synth", "-o", path, "--steps", 8, "--layers", 8, "--drift", 0.2, "--seed", 3)
    return path


@pytest.fixture(scope="module")
def full_trace(tmp_path_factory):
    """8 steps of all 58 DeepSeek-V3 MoE layers: on 64 GPUs the default swap budget binds (about 1 s of work)."""
    path = tmp_path_factory.mktemp("det") / "full.npz"
    _invoke("synth", "-o", path, "--steps", 8, "--drift", 0.2, "--seed", 3)
    return path


@pytest.fixture
def slow_clock(monkeypatch):
    """Every clock reading 10 s after the previous one: a search that watched the clock would stop at once."""
    real = time.perf_counter
    state = {"offset": 0.0}

    def lying() -> float:
        state["offset"] += 10.0
        return real() + state["offset"]

    monkeypatch.setattr(time, "perf_counter", lying)


def _replicas(trace, out, *extra):
    _invoke("replicas", trace, "-m", "deepseek-v3", "--gpus", 16, "--redundant", 16, "--swap-evaluations", 2_000_000,
            "-o", out, *extra)
    return out.read_bytes()


def test_replica_plan_bytes_do_not_depend_on_the_clock(trace, tmp_path, slow_clock):
    """A work budget that binds (stop reason iteration_limit) stops at the same swap however slow the clock."""
    import json

    normal = _replicas(trace, tmp_path / "a.json")
    assert json.loads(normal)["report"]["stop_reason"] == "iteration_limit"  # the budget binds
    again = _replicas(trace, tmp_path / "b.json")
    assert normal == again


def test_an_opt_in_time_limit_is_reported_when_it_binds(trace, tmp_path, slow_clock):
    import json

    plan = json.loads(_replicas(trace, tmp_path / "t.json", "--swap-time-limit-s", 1))
    assert plan["report"]["stop_reason"] == "time_limit"
    assert plan["inputs"]["parameters"]["swap_time_limit_s"] == 1


def test_migration_target_plan_bytes_repeat(trace, tmp_path, slow_clock):
    a, b = _replicas(trace, tmp_path / "a.json"), tmp_path / "b.json"
    _invoke("replicas", trace, "-m", "deepseek-v3", "--gpus", 16, "--redundant", 32, "--swap-evaluations", 0, "-o", b)
    outs = []
    for name in ("s1", "s2"):
        _invoke("migrate", tmp_path / "a.json", b, "--spare-slots", 1, "-o", tmp_path / f"{name}.json",
                "--target-plan", tmp_path / f"{name}.plan.json")
        outs.append(((tmp_path / f"{name}.json").read_bytes(), (tmp_path / f"{name}.plan.json").read_bytes()))
    assert outs[0] == outs[1] and a


# -- across processes, hash seeds and a loaded machine --------------------------------------------------------

#: planner -> (argv writing {out}, inputs made first). Each is run twice; the plan files must be equal.
PLANNERS = {
    "replicas": ["replicas", "{full_trace}", "-m", "deepseek-v3", "--gpus", "64", "--redundant", "64", "-o", "{out}"],
    "deploy": ["deploy", "-m", "qwen3-30b-a3b", "-g", "h100", "--gpus", "2", "--ttft-ms", "1000", "--tpot-ms", "50",
               "--isl", "1024", "--osl", "128", "--requests", "300", "-o", "{out}"],
    "cluster": ["cluster", CLUSTER, "--model", "mixtral-8x7b", "-o", "{out}"],
    "fleet": ["fleet", "-m", "qwen3-30b-a3b", "-g", "h100", "-g", "l4", "--ttft-ms", "2000", "--tpot-ms", "100",
              "--rate", "5", "--max-instance-gpus", "2", "--requests", "100", "-o", "{out}"],
    "migrate": ["migrate", "{cur}", "{new}", "--spare-slots", "1", "-o", "{out}"],
    # the main job: every file of its output directory (plan, summary, engine files, launch lines, manifest)
    "plan": ["plan", "-o", "{out}"],
}


def _outputs(path: Path) -> dict[str, bytes]:
    """A file's bytes, or every file of a directory by relative name."""
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return {"plan": path.read_bytes()}


def _cli(argv, env_extra, cwd) -> None:
    env = {**os.environ, **env_extra}
    proc = subprocess.run([sys.executable, "-m", "planner.cli", *argv], capture_output=True, text=True, timeout=600,
                          env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("planner", sorted(PLANNERS))
def test_same_bytes_across_processes_hash_seeds_and_load(planner, trace, full_trace, tmp_path):
    fills = {"trace": str(trace), "full_trace": str(full_trace), "cur": str(tmp_path / "cur.json"), "new": str(tmp_path / "new.json")}
    if planner == "migrate":
        for name, r in (("cur", 16), ("new", 32)):
            _cli(["replicas", str(trace), "-m", "deepseek-v3", "--gpus", "16", "--redundant", str(r),
                  "-o", fills[name]], {}, tmp_path)
    outs = []
    for run, seed in enumerate(("0", "12345")):
        out = tmp_path / (f"out{run}" if planner == "plan" else f"out{run}.json")
        argv = [a.format(**fills, out=out) for a in PLANNERS[planner]]
        burner = None
        if run == 1:  # the second run beside a process that keeps a CPU busy
            burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            _cli(argv, {"PYTHONHASHSEED": seed}, tmp_path)
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
        outs.append(_outputs(out))
    assert outs[0] and list(outs[0]) == list(outs[1])
    differ = [name for name in outs[0] if outs[0][name] != outs[1][name]]
    assert not differ, f"{planner}: bytes differ between runs in {differ}"
