"""Engine exports: golden files (byte-exact) and format invariants for each target.

Regenerate the golden files after an intended format change with
``MOEPLAN_UPDATE_GOLDEN=1 python -m pytest tests/test_export.py``.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from planner.errors import InputError
from planner.inputs.loads import ExpertLoads
from planner.inputs.readers import builtin_loads
from planner.plans.export import export_plan
from planner.profiles import get_model
from planner.replicas import plan_replicas

GOLDEN = Path(__file__).parent / "golden"
FILES = {"sglang": "olmoe-arxiv-ep8.sglang.json", "vllm": "olmoe-arxiv-ep8.vllm.jsonl", "trtllm": "olmoe-arxiv-ep8.trtllm.yaml"}


@pytest.fixture(scope="module")
def plan():
    return plan_replicas(builtin_loads("olmoe-arxiv"), "olmoe-1b-7b", num_gpus=8, redundant_slots=8)


@pytest.mark.parametrize("target", sorted(FILES))
def test_golden(plan, target):
    text = export_plan(plan, target).text
    path = GOLDEN / FILES[target]
    if os.environ.get("MOEPLAN_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{target} export changed; see module docstring to regenerate"


def test_sglang_rows_cover_every_hidden_layer(plan):
    data = json.loads(export_plan(plan, "sglang").text)
    m = data["physical_to_logical_map"]
    assert len(m) == 16 and all(len(r) == 72 for r in m)
    assert m[7] == plan.replicas.physical_to_logical[1]
    assert all(set(r) == set(range(64)) for r in m)


def test_vllm_record(plan):
    rec = json.loads(export_plan(plan, "vllm").text)
    assert rec["record_type"] == "eplb_initial_mapping" and rec["num_slots"] == 72
    assert rec["num_redundant_experts"] == 8
    assert rec["initial_global_assignments"]["15"] == plan.replicas.physical_to_logical[2]


def test_trtllm_yaml_parses(plan):
    doc = yaml.safe_load(export_plan(plan, "trtllm").text)["moe_load_balancer"]
    assert doc["num_slots"] == 72 and doc["layer_updates_per_iter"] == 0
    assert doc["initial_global_assignments"][0] == plan.replicas.physical_to_logical[0]


def test_deepseek_dense_layers_in_sglang_and_absolute_ids_in_trtllm():
    model = get_model("deepseek-v3")
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 500, size=(1, 58, 256))
    plan = plan_replicas(ExpertLoads(counts, layer_ids=model.moe_layers), model, num_gpus=32, num_nodes=4)
    sg = json.loads(export_plan(plan, "sglang").text)["physical_to_logical_map"]
    assert len(sg) == 61 and sg[0] == [p % 256 for p in range(288)]
    trt = yaml.safe_load(export_plan(plan, "trtllm").text)["moe_load_balancer"]["initial_global_assignments"]
    assert sorted(trt) == list(range(3, 61))
    vl = json.loads(export_plan(plan, "vllm").text)["initial_global_assignments"]
    assert sorted(map(int, vl)) == list(range(58))
    assert export_plan(plan, "sglang").filled_layers == ()


def test_unknown_target(plan):
    with pytest.raises(InputError, match="known"):
        export_plan(plan, "lmdeploy")
