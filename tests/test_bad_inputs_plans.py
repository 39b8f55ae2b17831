"""Bad-input corpus, plans area (issue 14 item 1): a tampered plan file is refused by every command that
reads one — ``export``, ``estimate --replicas``, ``deploy --replicas``, ``migrate`` (either plan),
``verify`` and ``apply`` (the new plan and ``--from``) — with exit 2, one line naming what is wrong, and
nothing written (the format and runner: ``tests/corpus_case.py``).

All cases run in-process: every refusal happens when the plan is read, before any solver, simulation
or worker starts (``apply --from`` after the weights are built, so that case is in the slow lane).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import pytest

from corpus_case import Case, check_case

LOADS = "builtin:olmoe-arxiv"
MODEL = "olmoe-1b-7b"


@functools.lru_cache(maxsize=1)
def _plan_text() -> str:
    """A valid replica plan (OLMoE on 8 GPUs), made once."""
    from planner.inputs.readers import builtin_loads
    from planner.replicas import plan_replicas

    return plan_replicas(builtin_loads("olmoe-arxiv"), MODEL, num_gpus=8).to_json()


def _lone_expert_moved(d: dict) -> None:
    row = d["replicas"]["physical_to_logical"][0]
    lone = next(s for s, e in enumerate(row) if row.count(e) == 1)
    row[lone] = (row[lone] + 1) % d["replicas"]["num_experts"]


def _rows_removed(d: dict) -> None:
    rp = d["replicas"]
    for k in ("physical_to_logical", "slot_gpu", "slot_node", "slots_per_gpu"):
        rp[k] = rp[k][:-1]


def _layer_dropped(d: dict) -> None:
    """A whole layer removed consistently from every per-row array: only the recorded means give it away."""
    rp = d["replicas"]
    rp["layers"] = rp["layers"][:-1]
    _rows_removed(d)
    for k in ("gpu_load_tokens", "max_gpu_load_tokens", "lower_bound_tokens", "balancedness", "replay_balancedness",
              "replay_max_gpu_load_tokens", "replay_lower_bound_tokens"):
        rp["predicted"][k] = rp["predicted"][k][:-1]


def _set(*path, value=None, fn=None):
    def edit(d: dict) -> None:
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = fn(node[path[-1]]) if fn is not None else value
    return edit


#: name -> (edit of the plan JSON, what the one error line must name)
TAMPERS = {
    "expert_999": (_set("replicas", "physical_to_logical", 0, 0, value=999), "experts"),
    "expert_-1": (_set("replicas", "physical_to_logical", 0, 0, value=-1), "experts"),
    "expert_string": (_set("replicas", "physical_to_logical", 0, 0, value="3"), "physical_to_logical"),
    "expert_missing": (_lone_expert_moved, "have no replica"),
    "layer_rows_removed": (_rows_removed, "shapes"),
    "layer_dropped": (_layer_dropped, "metrics"),
    "balancedness": (_set("replicas", "predicted", "balancedness_mean", fn=lambda v: v - 0.01), "balancedness_mean"),
    "gpu_load": (_set("replicas", "predicted", "gpu_load_tokens", 0, 0, fn=lambda v: v * 1.5), "metrics"),
    "objective": (_set("report", "objective", fn=lambda v: v * 0.9), "report.objective"),
    "sha_garbled": (_set("inputs", "loads", "sha256", value="deadbeef"), "loads_hash"),
    "unknown_model": (_set("inputs", "model", value="nosuch-moe"), "nosuch-moe"),
    "expert_bytes": (_set("replicas", "predicted", "expert_bytes_per_gpu", 0, fn=lambda v: v + 1), "expert_bytes_per_gpu"),
}


def _writer(name: str, tamper: str | None = None, also_good: str | None = None):
    """setup: write the plan (tampered by ``tamper``) as ``name`` and, if asked, the valid plan too."""
    def setup(tmp: Path) -> None:
        data = json.loads(_plan_text())
        if tamper is not None:
            data = copy.deepcopy(data)
            TAMPERS[tamper][0](data)
        (tmp / name).write_text(json.dumps(data, indent=1))
        if also_good is not None:
            (tmp / also_good).write_text(_plan_text())
    return setup


def _export(t: str) -> Case:
    return Case(f"export-{t}", "plans", ["export", "{tmp}/bad.json", "--target", "sglang", "--allow-unsupported",
                 "-o", "{tmp}/out.json"], 2,
                TAMPERS[t][1], setup=_writer("bad.json", t))


def _verify(t: str) -> Case:
    return Case(f"verify-{t}", "plans", ["verify", "{tmp}/bad.json", "--loads", LOADS], 2, TAMPERS[t][1],
                setup=_writer("bad.json", t))


ESTIMATE = ["estimate", "-m", MODEL, "-g", "h100", "--batch", "8", "--isl", "128", "--osl", "16", "--dp", "8"]

CASES = [
    *(_export(t) for t in TAMPERS),
    *(_verify(t) for t in ("expert_999", "unknown_model", "layer_dropped")),
    Case("export-loads-sha-of-other-loads", "plans",
         ["export", "{tmp}/bad.json", "--target", "vllm", "--allow-unsupported", "--loads", LOADS,
          "-o", "{tmp}/out.jsonl"], 2, "loads_hash",
         setup=lambda tmp: _writer("bad.json")(tmp) or _replace_sha(tmp / "bad.json")),
    Case("export-loads-consistent-metrics-edit", "plans",
         ["export", "{tmp}/bad.json", "--target", "vllm", "--allow-unsupported", "--loads", LOADS,
          "-o", "{tmp}/out.jsonl"], 2, "metrics", setup=lambda tmp: _writer("bad.json")(tmp) or _scale_loads(tmp / "bad.json")),
    Case("verify-sha-of-other-loads", "plans", ["verify", "{tmp}/bad.json", "--loads", LOADS], 2, "loads_hash",
         setup=lambda tmp: _writer("bad.json")(tmp) or _replace_sha(tmp / "bad.json")),
    *(Case(f"estimate-{t}", "plans", [*ESTIMATE, "--replicas", "{tmp}/bad.json"], 2, TAMPERS[t][1],
           setup=_writer("bad.json", t)) for t in ("expert_999", "gpu_load", "layer_rows_removed")),
    Case("deploy-replicas-expert_-1", "plans",
         ["deploy", "-m", MODEL, "-g", "h100", "--gpus", "8", "--ttft-ms", "1000", "--tpot-ms", "50", "--isl", "128",
          "--osl", "16", "--replicas", "{tmp}/bad.json", "-o", "{tmp}/out.json"], 2, "experts",
         setup=_writer("bad.json", "expert_-1")),
    *(Case(f"migrate-new-{t}", "plans", ["migrate", "{tmp}/cur.json", "{tmp}/bad.json", "-o", "{tmp}/s.json",
                                         "--target-plan", "{tmp}/t.json"], 2, TAMPERS[t][1],
           setup=_writer("bad.json", t, also_good="cur.json")) for t in ("expert_999", "objective")),
    *(Case(f"migrate-current-{t}", "plans", ["migrate", "{tmp}/bad.json", "{tmp}/new.json", "-o", "{tmp}/s.json"], 2,
           TAMPERS[t][1], setup=_writer("bad.json", t, also_good="new.json")) for t in ("expert_missing", "sha_garbled")),
    Case("apply-new-expert_999", "plans", ["apply", "{tmp}/bad.json", "--workers", "8", "--model", "synthetic",
                                           "-o", "{tmp}/out.json"], 2, "experts",
         setup=_writer("bad.json", "expert_999")),
    Case("apply-from-layer_rows_removed", "plans",
         ["apply", "{tmp}/new.json", "--workers", "8", "--model", "synthetic", "--from", "{tmp}/bad.json",
          "-o", "{tmp}/out.json"], 2, "shapes", setup=_writer("bad.json", "layer_rows_removed", also_good="new.json")),
]


def _scale_loads(path: Path) -> None:
    """Every load-like number of the plan doubled: the recorded numbers still agree with each other (the plan
    file alone cannot tell), only the loads can."""
    data = json.loads(path.read_text())
    met = data["replicas"]["predicted"]
    for key in ("gpu_load_tokens",):
        met[key] = [[2 * x for x in row] for row in met[key]]
    for key in ("max_gpu_load_tokens", "lower_bound_tokens", "replay_max_gpu_load_tokens", "replay_lower_bound_tokens"):
        met[key] = [2 * x for x in met[key]]
    for key in ("objective", "bound"):
        data["report"][key] *= 2
    path.write_text(json.dumps(data))


def _replace_sha(path: Path) -> None:
    """A well-formed hash of some other loads: only the loads themselves can tell."""
    data = json.loads(path.read_text())
    data["inputs"]["loads"]["sha256"] = "0" * 64
    path.write_text(json.dumps(data))


#: cases that load torch before the refusal (apply builds its weights before reading --from): kept out of
#: the fast lane for time, not because they start a subprocess
_HEAVY = {"apply-from-layer_rows_removed"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.id in _HEAVY else c for c in CASES],
                         ids=lambda c: c.id)
def test_bad_plan(case, tmp_path):
    check_case(case, tmp_path)


def test_the_untampered_plan_is_accepted(tmp_path):
    """The corpus's base plan passes every reader, so each case fails for its tampering alone."""
    from typer.testing import CliRunner

    from planner.cli import app

    _writer("p.json")(tmp_path)
    p = str(tmp_path / "p.json")
    for argv in (["export", p, "--target", "sglang", "--allow-unsupported", "-o", str(tmp_path / "out.json")], ["verify", p, "--loads", LOADS],
                 [*ESTIMATE, "--replicas", p], ["migrate", p, p]):
        res = CliRunner().invoke(app, argv)
        assert res.exit_code == 0, (argv[0], res.stderr)


def test_a_consistent_edit_passes_the_file_alone_checks(tmp_path):
    """What the plan file alone cannot show (docs/plans.md): doubled loads pass without the loads."""
    from planner.cli.plan_input import read_trusted_plan

    _writer("p.json")(tmp_path)
    _scale_loads(tmp_path / "p.json")
    read_trusted_plan(tmp_path / "p.json")


def test_a_plan_for_a_profile_file_is_checked_against_that_file(tmp_path):
    """A model that is no shipped profile fails the model check unless --model names its profile."""
    import yaml
    from typer.testing import CliRunner

    from planner.cli import app

    prof = yaml.safe_load((Path(__file__).resolve().parents[1] / "profiles/models/olmoe-1b-7b.yaml").read_text())
    prof.update(id="my-olmoe", names=["my-olmoe"])
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(prof))
    a, b, my = str(tmp_path / "a.json"), str(tmp_path / "b.json"), str(tmp_path / "my.yaml")
    for out, r in ((a, "8"), (b, "16")):
        assert CliRunner().invoke(app, ["replicas", LOADS, "-m", my, "--gpus", "8", "--redundant", r, "-o", out]).exit_code == 0
    res = CliRunner().invoke(app, ["verify", a, "--loads", LOADS])
    assert res.exit_code == 2 and "'my-olmoe' is not a shipped profile" in res.stderr
    assert CliRunner().invoke(app, ["verify", a, "--loads", LOADS, "--model", my]).exit_code == 0
    assert CliRunner().invoke(app, ["migrate", a, b]).exit_code == 2
    assert CliRunner().invoke(app, ["migrate", a, b, "--model", my, "--spare-slots", "1"]).exit_code == 0
