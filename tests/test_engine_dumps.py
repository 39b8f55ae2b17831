"""Reading the engines' own load dumps back to the true per-step, per-layer counts (docs/engines.md).

Fixtures are written by tests/engine_dump_writers.py from the formats' documented fields, on a tiny
DeepSeek-V3-shaped model (deepseek-v3-tiny: 4 hidden layers, layer 0 dense, 16 experts).
"""

import io
import json
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from planner.errors import InputError
from planner.inputs import ExpertLoads, read_loads, rows_as_moe_layers
from planner.plans import verify_plan
from planner.replicas import plan_replicas

sys.path.insert(0, str(Path(__file__).parent))
import engine_dump_writers as w  # noqa: E402

LAYERS = (1, 2, 3)  # deepseek-v3-tiny's MoE layers
E = 16


@pytest.fixture(scope="module")
def truth():
    rng = np.random.default_rng(7)
    p = rng.lognormal(0, 1, size=(len(LAYERS), E))
    p /= p.sum(axis=1, keepdims=True)
    return rng.multinomial(512, p, size=(6, len(LAYERS))).astype(np.int64)  # [6 steps, 3 layers, 16 experts]


def _ranks(counts, n, seed=1):
    rng, left, parts = np.random.default_rng(seed), counts.copy(), []
    for r in range(n - 1):
        take = rng.binomial(left, 1.0 / (n - r))
        parts.append(take)
        left = left - take
    return parts + [left]


# -- SGLang .pt ---------------------------------------------------------------------------------
def test_sglang_pt_reads_back_and_drops_unfilled_buffer_rows(tmp_path, truth):
    pytest.importorskip("torch")
    path = w.write_sglang_pt(tmp_path / "expert_distribution_recorder_1.0.pt", truth, LAYERS, 4, buffer_steps=32)
    loads = read_loads(path)
    assert loads.shape == (6, 4, E) and loads.layer_ids == (0, 1, 2, 3)
    assert np.array_equal(loads.select_layers(LAYERS).counts, truth)
    assert loads.provenance["unfilled_steps_dropped"] == "26"
    assert "26 of 32 recorder buffer rows were empty" in loads.provenance["reader_notes"]
    assert loads.provenance["format"] == "sglang-recorder-pt"


def test_sglang_pt_wrapped_buffer_keeps_every_row(tmp_path, truth):
    pytest.importorskip("torch")
    loads = read_loads(w.write_sglang_pt(tmp_path / "d.pt", truth, LAYERS, 4, buffer_steps=4))
    assert loads.num_steps == 4 and loads.provenance["unfilled_steps_dropped"] == "0"
    # steps 4 and 5 overwrote rows 0 and 1: the buffer holds the last 4 steps in circular order
    assert np.array_equal(loads.select_layers(LAYERS).counts, truth[[4, 5, 2, 3]])
    assert "circular order" in loads.provenance["reader_notes"]


def test_sglang_pt_reader_matches_torch_load(tmp_path, truth):
    torch = pytest.importorskip("torch")
    path = w.write_sglang_pt(tmp_path / "d.pt", truth, LAYERS, 4, buffer_steps=8)
    ref = torch.load(path, weights_only=True)["logical_count"].numpy()
    filled = ref.reshape(8, -1).any(axis=1)
    assert np.array_equal(read_loads(path).counts, ref[filled])


def test_torch_file_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x/data.pkl", pickle.dumps({"logical_count": Evil()}, protocol=2))
    path = tmp_path / "evil.pt"
    path.write_bytes(buf.getvalue())
    with pytest.raises(InputError, match=r"evil\.pt: refusing to load (__builtin__|builtins)\.print"):
        read_loads(path)


def test_sglang_logical_count_json_is_trimmed_the_same(tmp_path, truth):
    buf = np.zeros((20, 4, E), dtype=int)
    buf[:6, list(LAYERS)] = truth
    path = tmp_path / "converted.json"
    path.write_text(json.dumps({"logical_count": buf.tolist()}))
    loads = read_loads(path)
    assert loads.num_steps == 6 and "14 of 20" in loads.provenance["reader_notes"]


def test_empty_buffer_rows_would_change_the_plan(tmp_path, truth):
    """Counted as steps, empty rows inflate replayed balancedness; trimmed, the plan equals the truth's."""
    pytest.importorskip("torch")
    path = w.write_sglang_pt(tmp_path / "d.pt", truth, LAYERS, 4, buffer_steps=64)
    kw = dict(num_gpus=4, redundant_slots=4, algorithm="eplb")
    from_dump = plan_replicas(read_loads(path), "deepseek-v3-tiny", **kw)
    exact = plan_replicas(ExpertLoads(truth, LAYERS), "deepseek-v3-tiny", **kw)
    padded = np.zeros((64, 3, E))
    padded[:6] = truth
    naive = plan_replicas(ExpertLoads(padded, LAYERS), "deepseek-v3-tiny", **kw)
    b = lambda p: p.replicas.predicted.replay_balancedness_mean  # noqa: E731
    assert b(from_dump) == b(exact) and b(naive) > b(exact)


# -- SGLang per-rank CSV ------------------------------------------------------------------------
def test_csv_identical_rank_files_are_tp_copies(tmp_path, truth):
    totals = truth.sum(axis=0)
    paths = w.write_sglang_csvs(tmp_path, [totals, totals], LAYERS)
    loads = read_loads(paths, num_experts=E)
    assert np.array_equal(loads.counts[0], totals)
    assert "tensor-parallel copies" in loads.provenance["reader_notes"]
    assert loads.provenance["rank_files"] == "copies"
    summed = read_loads(paths, num_experts=E, rank_files="sum")
    assert np.array_equal(summed.counts[0], 2 * totals) and "reader_notes" not in summed.provenance


def test_csv_dp_rank_files_are_summed(tmp_path, truth):
    totals = truth.sum(axis=0)
    paths = w.write_sglang_csvs(tmp_path, _ranks(totals, 3), LAYERS)
    loads = read_loads(paths, num_experts=E)
    assert np.array_equal(loads.counts[0], totals) and loads.provenance["rank_files"] == "sum"
    with pytest.raises(InputError, match="rank_files: .*differ, so they are not copies"):
        read_loads(paths, num_experts=E, rank_files="copies")
    with pytest.raises(InputError, match="rank_files: unknown 'tp'"):
        read_loads(paths, rank_files="tp")


# -- vLLM PR #41141 JSONL -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["eplb_load_stats.jsonl", "stats.json"])
def test_vllm_stats_fold_slots_into_experts(tmp_path, truth, name):
    p2l = np.array(list(range(E)) + [3, 7, 3, 0])  # 20 slots: expert 3 has three replicas
    path = w.write_vllm_stats(tmp_path / name, truth, p2l)
    loads = read_loads(path)
    assert np.array_equal(loads.counts, truth) and loads.layer_ids == (0, 1, 2)
    assert loads.model == "test/tiny" and loads.provenance["layer_axis"] == "moe-layer-index"
    assert loads.provenance["first_step"] == "2250" and loads.provenance["num_slots"] == "20"


def test_vllm_stats_without_meta_take_experts_from_the_map(tmp_path, truth):
    p2l = np.arange(E)
    loads = read_loads(w.write_vllm_stats(tmp_path / "s.jsonl", truth, p2l, meta=False))
    assert np.array_equal(loads.counts, truth)


def test_vllm_mapping_record_is_not_loads(tmp_path):
    path = tmp_path / "map.jsonl"
    path.write_text(json.dumps({"record_type": "eplb_initial_mapping", "version": 1}) + "\n")
    with pytest.raises(InputError, match="line 1: record_type 'eplb_initial_mapping'.*initial_mapping_path"):
        read_loads(path)


def test_vllm_bad_record_names_its_line(tmp_path, truth):
    path = w.write_vllm_stats(tmp_path / "s.jsonl", truth, np.arange(E))
    lines = path.read_text().splitlines()
    rec = json.loads(lines[2])
    rec["p2l_map"][0] = rec["p2l_map"][0][:-1]
    lines[2] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"s\.jsonl: line 3: p2l_map: rows differ"):
        read_loads(path)


# -- TensorRT-LLM ExpertStatistic ---------------------------------------------------------------
def test_trtllm_directory_sums_dp_ranks(tmp_path, truth):
    folder = w.write_trtllm(tmp_path / "stats", _ranks(truth, 2), LAYERS)
    loads = read_loads(folder)
    assert np.array_equal(loads.counts, truth) and loads.layer_ids == LAYERS
    assert loads.provenance["first_iteration"] == "100" and loads.provenance["top_k"] == "2"


def test_trtllm_safetensors_match_the_reference_library(tmp_path, truth):
    st = pytest.importorskip("safetensors.numpy")
    from planner.inputs._safetensors import read_safetensors

    tensors = {"100_1": truth[0, 0], "100_2": truth[0, 1]}
    st.save_file(tensors, str(tmp_path / "ref.safetensors"))
    got = read_safetensors(tmp_path / "ref.safetensors")
    assert set(got) == set(tensors) and all(np.array_equal(got[k], v) for k, v in tensors.items())


def test_trtllm_bad_key_and_not_a_statistic_folder(tmp_path, truth):
    folder = w.write_trtllm(tmp_path / "stats", [truth], LAYERS)
    w.write_safetensors(folder / "rank0.safetensors", {"layer1": truth[0, 0]})
    with pytest.raises(InputError, match=r"rank0\.safetensors: tensor 'layer1' is not named"):
        read_loads(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a TensorRT-LLM ExpertStatistic folder"):
        read_loads(tmp_path / "empty")


# -- MoE-layer rows -----------------------------------------------------------------------------
def test_eplb_array_rows_are_read_as_moe_layers(truth):
    loads = ExpertLoads(truth)  # [6, 3, 16], rows 0..2, no hidden-layer ids
    plan = plan_replicas(loads, "deepseek-v3-tiny", num_gpus=4, redundant_slots=4)
    assert plan.replicas.layers == [1, 2, 3]
    assert plan.inputs.parameters["loads_rows_as_moe_layers"] is True
    assert verify_plan(plan, loads).ok
    mapped = rows_as_moe_layers(loads, (1, 2, 3))
    assert "row i is read as MoE layer i" in mapped.provenance["reader_notes"]
    # rows 0..L-1 whose dense rows are zero keep the hidden-layer reading (a partial SGLang-style file)
    partial = truth.copy()
    partial[:, 0] = 0
    kept = plan_replicas(ExpertLoads(partial), "deepseek-v3-tiny", num_gpus=4, redundant_slots=4)
    assert kept.replicas.layers == [1, 2] and "loads_rows_as_moe_layers" not in kept.inputs.parameters
    # ids other than 0..L-1 are read as they say: a dense row with counts is still an error
    with pytest.raises(InputError, match="dense layer"):
        plan_replicas(ExpertLoads(truth, layer_ids=(0, 2, 3)), "deepseek-v3-tiny", num_gpus=4, redundant_slots=4)


def test_unmapped_plan_records_no_flag(truth):
    plan = plan_replicas(ExpertLoads(truth, LAYERS), "deepseek-v3-tiny", num_gpus=4, redundant_slots=4)
    assert "loads_rows_as_moe_layers" not in plan.inputs.parameters


def test_deepseek_v3_eplb_array_without_layer_ids():
    """The issue's case: [58, 256] for DeepSeek-V3 was read as hidden layers 0..57 and refused."""
    counts = np.random.default_rng(0).integers(1, 500, size=(58, 256))
    loads = ExpertLoads(counts)
    plan = plan_replicas(loads, "deepseek-v3", num_gpus=32, num_nodes=4, redundant_slots=32, algorithm="eplb")
    assert plan.replicas.layers == list(range(3, 61))
    assert verify_plan(plan, loads).ok
