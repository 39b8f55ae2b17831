"""Bad-input corpus, runtime area (issue 14 items 2, 10 and 11): `apply`'s flags and outputs are
refused before any model is built, placements (what `apply --state` leaves) are verified wherever
they are read, and a worker fault or a deadline is one stderr line with exit 5, within the deadline.

In-process cases run in the fast lane (no worker, no model: the refusals come first). Subprocess
cases start 4 tiny synthetic workers (hidden 16, 64 tokens) and are marked slow. Signals (SIGINT,
SIGTERM, SIGKILL of the command) and a worker killed while the workers start are tested at the end
of this module, outside the corpus format (a Case cannot send a signal).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from corpus_case import Case, check_case

E, W = 8, 4
TINY = ["--model", "synthetic", "--hidden", "16", "--intermediate", "32", "--batch-tokens", "64"]


def _plan():
    from planner.inputs.loads import ExpertLoads
    from planner.replicas import plan_replicas

    counts = np.random.default_rng(5).integers(1, 400, size=(1, 2, E)).astype(np.float64)
    return plan_replicas(ExpertLoads(counts, layer_ids=[0, 1]), "mixtral-8x7b", num_gpus=W, swap_time_limit_s=0)


_PLAN_JSON: list[str] = []


def _plan_json() -> str:
    if not _PLAN_JSON:  # one plan for every case (planning takes ~0.1 s, but there are many cases)
        _PLAN_JSON.append(_plan().to_json())
    return _PLAN_JSON[0]


def _placement(step: int = 0, **change) -> dict:
    """A placement file (kind ``placement``) of the plan's slots."""
    plan = json.loads(_plan_json())
    rp = plan["replicas"]
    out = {"schema_version": "1.0", "kind": "placement", "tool": plan["tool"], "model": plan["inputs"]["model"],
           "layers": rp["layers"], "num_hidden_layers": rp["num_hidden_layers"], "num_experts": rp["num_experts"],
           "num_gpus": rp["num_gpus"], "num_nodes": rp["num_nodes"], "gpus_per_node": rp["gpus_per_node"],
           "bytes_per_expert": rp["bytes_per_expert"], "physical_to_logical": rp["physical_to_logical"],
           "slot_gpu": rp["slot_gpu"], "step": step, "steps": 2, "from_plan_sha256": "0" * 64,
           "to_plan_sha256": "1" * 64, "max_abs_diff": 0.0, "verified_on": "test"}
    out.update(change)
    return out


def _setup(*extra):
    """Write new.json (a 4-GPU replica plan) and the named extras into the case directory."""

    def setup(tmp: Path) -> None:
        (tmp / "new.json").write_text(_plan_json())
        for name in extra:
            if name == "placement":
                (tmp / "placement.json").write_text(json.dumps(_placement()))
            elif name == "bad_placement":  # layer 0 lost every replica of expert 7
                p = _placement()
                p["physical_to_logical"] = [[0 if e == 7 else e for e in p["physical_to_logical"][0]],
                                            p["physical_to_logical"][1]]
                (tmp / "placement.json").write_text(json.dumps(p))
            elif name == "staging_placement":  # GPU 0 holds an extra (staged) copy of expert 5 in layer 0
                p = _placement(step=1)
                row, gpus = list(p["physical_to_logical"][0]), list(p["slot_gpu"][0])
                at = gpus.index(1)
                p["physical_to_logical"] = [row[:at] + [5] + row[at:], p["physical_to_logical"][1]]
                p["slot_gpu"] = [gpus[:at] + [0] + gpus[at:], p["slot_gpu"][1]]
                (tmp / "placement.json").write_text(json.dumps(p))
            elif name == "old":
                (tmp / "old.json").write_text("keep me\n")

    return setup


def _apply(*args) -> list[str]:
    return ["apply", "{tmp}/new.json", "--workers", str(W), *TINY, *args]


CASES = [
    # item 10: every flag and output checked before the model is built
    Case("apply-timeout-zero", "runtime-flags", _apply("--timeout-s", "0"), 2, "--timeout-s", _setup()),
    Case("apply-timeout-nan", "runtime-flags", _apply("--timeout-s", "nan"), 2, "--timeout-s", _setup()),
    Case("apply-timeout-inf", "runtime-flags", _apply("--timeout-s", "inf"), 2, "--timeout-s", _setup()),
    Case("apply-kill-rank-out-of-range", "runtime-flags", _apply("--kill-rank", "4"), 2, "--kill-rank", _setup()),
    Case("apply-kill-rank-negative", "runtime-flags", _apply("--kill-rank", "-1"), 2, "--kill-rank", _setup()),
    Case("apply-kill-at-step-zero", "runtime-flags", _apply("--kill-rank", "0", "--kill-at-step", "0"), 2,
         "--kill-at-step", _setup()),
    Case("apply-kill-at-step-past-the-migration", "runtime-flags",
         _apply("--from", "{tmp}/new.json", "--kill-rank", "0", "--kill-at-step", "99"), 2, "--kill-at-step", _setup()),
    Case("apply-spare-slots-huge", "runtime-flags", _apply("--spare-slots", "1000000000000"), 2, "--spare-slots",
         _setup()),
    Case("apply-hidden-zero", "runtime-flags", _apply("--hidden", "0"), 2, "--hidden", _setup()),
    Case("apply-dispatch-unknown", "runtime-flags", _apply("--dispatch", "random"), 2, "--dispatch", _setup()),
    Case("apply-output-no-dir", "runtime-outputs", _apply("-o", "{tmp}/nodir/run.json"), 2, "--output", _setup()),
    Case("apply-output-is-a-dir", "runtime-outputs", _apply("-o", "{tmp}"), 2, "--output", _setup()),
    Case("apply-output-is-the-input", "runtime-outputs", _apply("-o", "{tmp}/new.json"), 2, "--output", _setup()),
    Case("apply-state-is-the-from-plan", "runtime-outputs", _apply("--from", "{tmp}/old.json", "--state", "{tmp}/old.json"),
         2, "--state", _setup("old")),
    Case("apply-state-equals-output", "runtime-outputs", _apply("-o", "{tmp}/x.json", "--state", "{tmp}/x.json"), 2,
         "--state", _setup()),
    # item 11: placements are verified wherever they are read
    Case("apply-from-broken-placement", "runtime-state", _apply("--from", "{tmp}/placement.json"), 2,
         "experts [7] have no replica", _setup("bad_placement")),
    Case("verify-broken-placement", "runtime-state", ["verify", "{tmp}/placement.json"], 2,
         "experts [7] have no replica", _setup("bad_placement")),
    Case("export-broken-placement", "runtime-state",
         ["export", "{tmp}/placement.json", "--target", "sglang", "-o", "{tmp}/out.json"], 2,
         "placement fails verification", _setup("bad_placement")),
    Case("export-placement-with-staged-copy", "runtime-state",
         ["export", "{tmp}/placement.json", "--target", "sglang", "-o", "{tmp}/out.json"], 2,
         "slot counts differ", _setup("staging_placement")),
    Case("apply-to-a-placement", "runtime-state", ["apply", "{tmp}/placement.json", "--workers", str(W), *TINY], 2,
         "this needs a replicas plan", _setup("placement")),
    # item 2 and 10: worker faults and deadlines, one line, exit 5, no C++ frames, nothing hung
    Case("apply-killed-worker", "runtime-faults", _apply("--kill-rank", "1", "--kill-at-step", "1", "--no-recover"), 5,
         "worker rank 1 of 4 (gloo) was killed by signal SIGKILL", _setup(), inprocess=False, timeout_s=120),
    Case("apply-killed-worker-recovers", "runtime-faults", _apply("--kill-rank", "2", "--kill-at-step", "1"), 5,
         "it still serves on 4 fresh workers", _setup(), inprocess=False, timeout_s=150),
    Case("apply-deadline", "runtime-faults", _apply("--timeout-s", "2"), 5, "did not finish within 2 s", _setup(),
         inprocess=False, timeout_s=60),
]


@pytest.mark.parametrize(
    "case", [c if c.inprocess else pytest.param(c, marks=pytest.mark.slow) for c in CASES], ids=lambda c: c.id
)
def test_runtime_bad_input(case, tmp_path):
    check_case(case, tmp_path)


# -- signals and faults outside the corpus format --------------------------------------------------


def _workers_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` or that a moeplan worker's name marks (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"multiprocessing" in cmd:
            out.append(int(entry.name))
    return out


def _start_apply(tmp_path: Path, *args) -> tuple[subprocess.Popen, list[int]]:
    """Start `moeplan apply` on 4 workers; return it once its workers exist (their pids)."""
    _setup()(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in _apply(*args)]
    proc = subprocess.Popen([sys.executable, "-m", "planner.cli", *argv], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        kids = _workers_of(proc.pid)
        if len(kids) >= W:
            time.sleep(1.0)  # the workers are importing torch / joining the group
            return proc, kids
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"apply started no workers: {proc.communicate()[1][-2000:]}")


def _gone(pids: list[int], within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig, code, words", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_signal_is_one_line_and_stops_the_workers(tmp_path, sig, code, words):
    proc, kids = _start_apply(tmp_path, "--timeout-s", "120")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert err.strip().splitlines() == [f"moeplan: error: {words}"], err
    assert _gone(kids), "workers outlived the command"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json"]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux")
def test_sigkill_of_the_command_takes_the_workers_quietly(tmp_path):
    proc, kids = _start_apply(tmp_path, "--timeout-s", "120")
    proc.kill()
    out, err = proc.communicate(timeout=30)
    assert err == "", err  # nothing from the workers: they log to files and die with their parent
    assert _gone(kids), "workers outlived a SIGKILLed command"


@pytest.mark.slow
def test_worker_killed_while_the_workers_start_fails_fast():
    """The hang of issue 14 item 2: a worker dies while the others start (here: as soon as it exists),
    with a payload far larger than a pipe; the launcher fails in seconds, not at the deadline."""
    import multiprocessing

    from planner.errors import RuntimeAdapterError
    from planner.runtime.dist import run_workers

    stop = threading.Event()

    def killer():
        while not stop.is_set():
            for p in multiprocessing.active_children():
                if p.name == "moeplan-worker-2" and p.pid:
                    os.kill(p.pid, signal.SIGKILL)
                    return
            time.sleep(0.001)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    payload = np.zeros(16 * 2**20 // 8)  # 16 MiB: would not fit a spawn pipe's buffer
    start = time.monotonic()
    try:
        with pytest.raises(RuntimeAdapterError, match=r"worker rank 2 of 4 \(gloo\) was killed by signal SIGKILL"):
            run_workers(_sleep_with_payload, 4, args=(payload,), timeout_s=120)
    finally:
        stop.set()
    assert time.monotonic() - start < 60
    assert not multiprocessing.active_children()


def _sleep_with_payload(rank: int, world_size: int, payload) -> int:
    time.sleep(2)
    return int(payload.size)


def test_progress_only_on_a_terminal_or_when_asked(tmp_path):
    """One mechanism for every command's progress lines (issue 14 item 10): off when stderr is not a
    terminal (CliRunner's is not), on with `moeplan --progress`."""
    from typer.testing import CliRunner

    from planner.cli import app

    trace = tmp_path / "t.npz"
    run = lambda *a: CliRunner().invoke(app, [str(x) for x in a])  # noqa: E731
    assert run("synth", "-o", trace, "--steps", 30, "--layers", 2, "--num-experts", 64, "--first-layer", 0).exit_code == 0
    argv = ["replan", trace, "-m", "olmoe-1b-7b", "--gpus", 8, "--every", "5", "--thresholds", "0.9", "--window", 10]
    quiet = run(*argv)
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
    loud = run("--progress", *argv)
    assert loud.exit_code == 0
    assert loud.stderr.splitlines() == ["moeplan replan: policy 1/2 (every 5) done", "moeplan replan: policy 2/2 (b < 0.9) done"]


def test_one_staging_default_everywhere():
    """Issue 16: `migrate`, `apply` and their library functions stage the same way unless told."""
    import inspect

    from planner.cli.apply_cmd import apply
    from planner.cli.migrate_cmd import migrate
    from planner.migration import DEFAULT_SPARE_SLOTS, plan_migration
    from planner.runtime.apply import apply_plan

    for fn, name in ((apply, "spare_slots"), (migrate, "spare_slots"), (apply_plan, "spare_slots_per_gpu"),
                     (plan_migration, "spare_slots_per_gpu")):
        assert inspect.signature(fn).parameters[name].default == DEFAULT_SPARE_SLOTS, fn.__name__
