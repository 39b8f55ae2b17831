"""Engine exports: golden files (byte-exact) and, field by field, the constraints each engine's parser puts
on the file (docs/engines.md): TensorRT-LLM's ``MoeLoadBalancerConfig`` (flat keys, unknown keys
forbidden), SGLang's ``--init-expert-location`` map, vLLM PR #41141's mapping record; and the support
table's refusals.

Regenerate the golden files after an intended format change with
``MOEPLAN_UPDATE_GOLDEN=1 python -m pytest tests/test_export.py``.
"""

import json
import os
import re
from pathlib import Path

import numpy as np
import pydantic
import pytest
import yaml

from planner.errors import InputError
from planner.inputs.loads import ExpertLoads
from planner.inputs.readers import builtin_loads
from planner.plans.engines import ENGINE_NAMES, SUPPORT, UNSUPPORTED, engine_support
from planner.plans.export import ExportRefused, check_output_name, export_plan
from planner.profiles import get_model
from planner.replicas import plan_replicas

GOLDEN = Path(__file__).parent / "golden"
DOCS = Path(__file__).parents[1] / "docs"
FILES = {"sglang": "olmoe-arxiv-ep8.sglang.json", "vllm": "olmoe-arxiv-ep8.vllm.jsonl", "trtllm": "olmoe-arxiv-ep8.trtllm.yaml"}


def _safe_load(text: str):
    """``yaml.safe_load`` (what TensorRT-LLM calls), with the C loader when present: same result, faster."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


class TrtLoadBalancerFile(pydantic.BaseModel):
    """The documented fields of TensorRT-LLM's ``MoeLoadBalancerConfig`` (llmapi/llm_args.py), written
    here from its documentation: ``extra="forbid"``, so any other key (e.g. a ``moe_load_balancer:``
    wrapper) fails validation as it does in the engine."""

    model_config = pydantic.ConfigDict(extra="forbid")
    num_slots: int
    initial_global_assignments: dict[int, list[int]] | None = None
    layer_updates_per_iter: int = 0


def sglang_accepts(file_name: str, text: str, *, num_hidden_layers: int, num_experts: int, redundant: int, ep_size: int):
    """SGLang's documented checks on ``--init-expert-location`` (srt/eplb/expert_location.py, as described in
    docs/engines.md): a name ending in .json is read as a file, anything else as JSON text; the dict holds
    ``physical_to_logical_map`` of shape [num_hidden_layers, E + ep_num_redundant_experts], slots divisible
    by the EP size, every entry a logical expert id."""
    if not file_name.endswith((".json", ".pt")):
        json.loads(file_name)  # SGLang parses the value itself as JSON: raises for a file name
    doc = json.loads(text)
    m = np.asarray(doc["physical_to_logical_map"])
    P = num_experts + redundant
    assert m.shape == (num_hidden_layers, P) and P % ep_size == 0
    assert m.min() >= 0 and m.max() < num_experts
    return m


def vllm_pr41141_accepts(text: str, *, num_moe_layers: int, num_experts: int):
    """vLLM PR #41141's initial mapping, as documented: one ``eplb_initial_mapping`` record, version 1,
    ``num_slots = E + num_redundant_experts``, one list of ``num_slots`` logical ids per MoE-layer index."""
    (line,) = text.splitlines()
    rec = json.loads(line)
    assert rec["record_type"] == "eplb_initial_mapping" and rec["version"] == 1
    assert rec["num_slots"] == num_experts + rec["num_redundant_experts"]
    assigned = rec["initial_global_assignments"]
    assert sorted(assigned, key=int) == [str(i) for i in range(num_moe_layers)]
    assert all(len(v) == rec["num_slots"] and 0 <= min(v) and max(v) < num_experts for v in assigned.values())
    return rec


@pytest.fixture(scope="module")
def plan():
    return plan_replicas(builtin_loads("olmoe-arxiv"), "olmoe-1b-7b", num_gpus=8, redundant_slots=8)


@pytest.fixture(scope="module")
def ds_plan():
    """DeepSeek-V3 on 32 GPUs, 4 nodes, 32 redundant slots: 288 slots, 9 per rank (the issue's case)."""
    model = get_model("deepseek-v3")
    counts = np.random.default_rng(3).integers(1, 500, size=(1, 58, 256))
    return plan_replicas(ExpertLoads(counts, layer_ids=model.moe_layers), model, num_gpus=32, num_nodes=4,
                         redundant_slots=32)


@pytest.mark.parametrize("target", sorted(FILES))
def test_golden(plan, target):
    text = export_plan(plan, target, allow_unsupported=True).text
    path = GOLDEN / FILES[target]
    if os.environ.get("MOEPLAN_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{target} export changed; see module docstring to regenerate"


# -- TensorRT-LLM -------------------------------------------------------------------------------
def test_trtllm_file_validates_as_moe_load_balancer_config(ds_plan):
    exp = export_plan(ds_plan, "trtllm")
    doc = _safe_load(exp.text)
    assert set(doc) == {"num_slots", "initial_global_assignments", "layer_updates_per_iter"}
    cfg = TrtLoadBalancerFile(**doc)
    assert cfg.num_slots == 288 and cfg.layer_updates_per_iter == 0
    assigned = cfg.initial_global_assignments
    assert sorted(assigned) == list(range(3, 61))  # one entry per MoE layer, absolute layer index
    for layer, row in assigned.items():
        assert len(row) == cfg.num_slots and set(row) == set(range(256))
        assert row == ds_plan.replicas.physical_to_logical[ds_plan.replicas.layers.index(layer)]
    assert "moe_config" in exp.launch_hint and "load_balancer" in exp.launch_hint
    assert "enable_attention_dp" in exp.launch_hint and "EP > 1" in exp.launch_hint
    assert exp.warnings == ()


def test_trtllm_wrapped_block_is_what_the_engine_rejects(ds_plan):
    """The old export (block under ``moe_load_balancer:``) fails the same validation."""
    doc = {"moe_load_balancer": _safe_load(export_plan(ds_plan, "trtllm").text)}
    with pytest.raises(pydantic.ValidationError):
        TrtLoadBalancerFile(**doc)


def test_trtllm_needs_ep_above_one():
    plan = plan_replicas(builtin_loads("mistral-c4"), "mixtral-8x7b", num_gpus=1, redundant_slots=0)
    with pytest.raises(ExportRefused, match="EP > 1"):
        export_plan(plan, "trtllm")


# -- SGLang -------------------------------------------------------------------------------------
def test_sglang_map_for_deepseek_v3(ds_plan):
    exp = export_plan(ds_plan, "sglang")
    doc = json.loads(exp.text)
    assert list(doc) == ["physical_to_logical_map"]
    m = doc["physical_to_logical_map"]
    assert len(m) == 61 and all(len(r) == 288 for r in m)  # every hidden layer, P = 256 + 32
    assert exp.num_slots == 288 and exp.num_redundant_experts == 32 and exp.ep_size == 32
    rp = ds_plan.replicas
    spr = 288 // 32
    for r, layer in enumerate(rp.layers):  # slot p lives on rank p // 9, as SGLang assumes
        assert m[layer] == rp.physical_to_logical[r]
        assert rp.slot_gpu[r] == [p // spr for p in range(288)]
    assert all(set(row) == set(range(256)) for row in m)  # dense rows too: a valid map
    sglang_accepts("plan.json", exp.text, num_hidden_layers=61, num_experts=256, redundant=32, ep_size=32)
    with pytest.raises(json.JSONDecodeError):  # the issue's `-o plan.out`: SGLang would parse the name
        sglang_accepts("plan.out", exp.text, num_hidden_layers=61, num_experts=256, redundant=32, ep_size=32)
    hint = exp.launch("plan.json")
    assert "--init-expert-location plan.json" in hint and "--ep-num-redundant-experts 32" in hint
    assert "--ep-size 32" in hint


def test_sglang_file_name_must_end_in_json():
    check_output_name("sglang", "plan.json")
    check_output_name("vllm", "plan.out")  # only SGLang reads other names as inline JSON text
    with pytest.raises(ExportRefused) as info:
        check_output_name("sglang", "out/plan.out")
    assert info.value.param == "output" and "plan.out.json" in str(info.value)


def test_cli_export_sglang_refuses_a_name_it_cannot_load(tmp_path, ds_plan):
    from typer.testing import CliRunner

    from planner.cli import app
    from planner.plans.io import write_plan

    path = write_plan(ds_plan, tmp_path / "plan.json")
    res = CliRunner().invoke(app, ["export", str(path), "--target", "sglang", "-o", str(tmp_path / "plan.out")])
    assert res.exit_code == 2 and "--output: SGLang reads" in res.stderr
    assert not (tmp_path / "plan.out").exists()


# -- vLLM ---------------------------------------------------------------------------------------
def test_vllm_record_names_the_pr_and_initial_mapping_path(ds_plan):
    exp = export_plan(ds_plan, "vllm")
    vllm_pr41141_accepts(exp.text, num_moe_layers=58, num_experts=256)
    lines = exp.text.splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["record_type"] == "eplb_initial_mapping" and rec["version"] == 1
    assert rec["num_slots"] == 288 and rec["num_redundant_experts"] == 32
    assigned = rec["initial_global_assignments"]
    assert sorted(assigned, key=int) == [str(i) for i in range(58)]  # MoE-layer index
    assert assigned["0"] == ds_plan.replicas.physical_to_logical[0]
    hint = exp.launch("map.jsonl")
    assert "#41141" in hint and '"initial_mapping_path": "map.jsonl"' in hint
    assert "Released vLLM cannot load" in hint and "expert-placement-strategy" in hint
    assert any("#41141" in w and "initial_mapping_path" in w for w in exp.warnings)


# -- refusals -----------------------------------------------------------------------------------
def test_olmoe_refused_by_every_engine_unless_allowed(plan):
    for target in ("sglang", "vllm", "trtllm"):
        with pytest.raises(ExportRefused) as info:
            export_plan(plan, target)
        msg = str(info.value)
        assert "cannot balance olmoe-1b-7b" in msg and "\n" not in msg
        assert info.value.remedy == {"allow_unsupported": True}
        exp = export_plan(plan, target, allow_unsupported=True)
        assert any("written anyway" in w for w in exp.warnings)


def test_unverified_family_is_written_with_a_warning():
    plan = plan_replicas(builtin_loads("mistral-c4"), "mixtral-8x7b", num_gpus=4, redundant_slots=4)
    exp = export_plan(plan, "sglang")
    assert any("may not balance mixtral-8x7b" in w for w in exp.warnings)
    assert export_plan(plan, "trtllm").warnings == ()


def test_per_layer_refusal_names_the_engine_setting(plan):
    data = json.loads(plan.to_json())
    data["replicas"]["physical_to_logical"][1] = data["replicas"]["physical_to_logical"][1][:64]
    from planner.plans.schema import Plan

    bad = Plan.model_validate(data)
    for target, setting in (("sglang", "--ep-num-redundant-experts"), ("vllm", "num_redundant_experts"),
                            ("trtllm", "num_slots")):
        with pytest.raises(ExportRefused, match=f"slot counts differ.*{setting}.*mode='uniform'"):
            export_plan(bad, target)


def test_support_table_in_docs_equals_the_code():
    """docs/engines.md's support table is the code's table, row for row."""
    text = (DOCS / "engines.md").read_text()
    block = text.split("<!-- support-table -->")[1]
    rows = {}
    for line in block.strip().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            family = re.match(r"`([^`]+)`", cells[0]).group(1)
            for engine, cell in zip(("sglang", "vllm", "trtllm"), cells[1:]):
                rows[(engine, family)] = cell.split()[0].strip("*")
    families = {f for _, f in SUPPORT}
    expect = {(e, f): engine_support(e, f).status for e in ENGINE_NAMES for f in families}
    assert rows == expect


def test_unknown_target(plan):
    with pytest.raises(InputError, match="known"):
        export_plan(plan, "lmdeploy")


def test_every_profile_family_has_an_entry():
    """Every model family moeplan ships a profile for is decided per engine (no silent 'unknown')."""
    from planner.profiles.registry import list_models

    families = {m.hf_model_type for m in list_models()}
    for engine in ENGINE_NAMES:
        missing = [f for f in families if (engine, f) not in SUPPORT]
        assert not missing, (engine, missing)
    assert engine_support("trtllm", "olmoe").status == UNSUPPORTED
    assert re.search(r"silently ignored", engine_support("trtllm", "gpt_oss").reason)
