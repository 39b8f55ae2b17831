"""Plan schema, deterministic bytes, atomic I/O and the verifier catching tampered plans."""

import json
from pathlib import Path

import pytest

from planner.errors import InputError
from planner.inputs.readers import builtin_loads
from planner.common.fileio import atomic_write_text
from planner.plans.io import read_plan, write_plan
from planner.plans.schema import Plan
from planner.plans.verify import verify_plan
from planner.replicas import plan_replicas

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "planner" / "plans" / "plan.schema.json"


@pytest.fixture(scope="module")
def loads():
    return builtin_loads("olmoe-github")


@pytest.fixture(scope="module")
def plan(loads):
    return plan_replicas(loads, "olmoe-1b-7b", num_gpus=8, redundant_slots=8)


def test_same_inputs_same_bytes(loads, plan, tmp_path):
    again = plan_replicas(loads, "olmoe-1b-7b", num_gpus=8, redundant_slots=8)
    a, b = write_plan(plan, tmp_path / "a.json"), write_plan(again, tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()


def test_round_trip(plan, tmp_path):
    path = write_plan(plan, tmp_path / "p.json")
    back = read_plan(path)
    assert back.model_dump() == plan.model_dump()
    assert back.to_json() == plan.to_json()


def test_shipped_schema_is_current():
    """plan.schema.json is generated from the pydantic models (both kinds); regenerate it when they change."""
    from planner.plans.schema import plan_json_schema

    assert json.loads(SCHEMA_FILE.read_text()) == plan_json_schema()


def test_plan_is_frozen(plan):
    with pytest.raises(Exception):
        plan.kind = "other"


def _tamper(plan: Plan, path, value) -> Plan:
    data = json.loads(plan.to_json())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value(node[path[-1]])
    return Plan.model_validate(data)


@pytest.mark.parametrize(
    "path, change, failed",
    [
        (("replicas", "slot_gpu", 0, 0), lambda v: 7, "gpus"),
        (("replicas", "slot_node", 1, 0), lambda v: 1, "gpus"),
        (("replicas", "slots_per_gpu", 2, 0), lambda v: v + 1, "gpus"),
        (("replicas", "predicted", "balancedness", 0), lambda v: v * 0.99, "metrics"),
        (("replicas", "predicted", "gpu_load_tokens", 1, 3), lambda v: v + 1, "metrics"),
        (("replicas", "predicted", "lower_bound_tokens", 0), lambda v: v * 2, "metrics"),
        (("replicas", "predicted", "replay_balancedness_mean"), lambda v: v - 0.01, "metrics"),
        (("replicas", "predicted", "expert_bytes_per_gpu", 0), lambda v: v + 1, "metrics"),
        (("report", "objective"), lambda v: v - 1, "metrics"),
        (("replicas", "bytes_per_expert"), lambda v: v * 2, "metrics"),
        (("inputs", "loads", "sha256"), lambda v: "0" * 64, "loads_hash"),
        (("replicas", "layers"), lambda v: [0, 7, 16], "layers"),
    ],
)
def test_verifier_catches_tampering(plan, loads, path, change, failed):
    assert verify_plan(plan, loads).ok
    bad = _tamper(plan, path, change)
    report = verify_plan(bad, loads)
    assert not report.ok
    assert failed in {c.name for c in report.failures}, report.failures


def test_verifier_catches_a_missing_expert(plan, loads):
    data = json.loads(plan.to_json())
    row = data["replicas"]["physical_to_logical"][0]
    lone = next(s for s, e in enumerate(row) if row.count(e) == 1)
    row[lone] = (row[lone] + 1) % 64
    report = verify_plan(Plan.model_validate(data), loads)
    assert "experts" in {c.name for c in report.failures}


def test_duplicates_flagged_unless_allowed(plan, loads):
    """Swap contents so one GPU holds two copies of a replicated expert (every expert still present)."""
    data = json.loads(plan.to_json())
    rp = data["replicas"]
    for r, row in enumerate(rp["physical_to_logical"]):
        gpu = rp["slot_gpu"][r]
        for a, e in enumerate(row):
            b = next((s for s, x in enumerate(row) if x == e and gpu[s] != gpu[a]), None)
            c = next((s for s, x in enumerate(row) if gpu[s] == gpu[a] and x != e), None)
            if b is not None and c is not None:
                row[b], row[c] = row[c], row[b]
                break
        else:
            continue
        break
    else:
        raise AssertionError("plan has no replicated expert")
    data["replicas"]["duplicates_allowed"] = True  # as EPLB plans record
    names = {c.name for c in verify_plan(Plan.model_validate(data), loads).failures}
    assert "duplicates" not in names
    data["replicas"]["duplicates_allowed"] = False
    names = {c.name for c in verify_plan(Plan.model_validate(data), loads).failures}
    assert "duplicates" in names


def test_read_plan_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_plan(tmp_path / "nope.json")
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(InputError, match="empty"):
        read_plan(tmp_path / "empty.json")
    (tmp_path / "bad.json").write_text('{"schema_version": "1.0"}')
    with pytest.raises(InputError, match="invalid plan at"):
        read_plan(tmp_path / "bad.json")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "keep.json"
    target.write_text("old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_atomic_write_needs_existing_dir(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        atomic_write_text(tmp_path / "no" / "x.json", "x")


def test_schema_reference_page_is_current():
    """docs/plan-schema.md is generated (moeplan schema --markdown); regenerate it when the models change."""
    from planner.plans.schema_doc import schema_markdown

    page = Path(__file__).resolve().parents[1] / "docs" / "plan-schema.md"
    assert page.read_text() == schema_markdown()
