"""Profiles: every shipped GPU and model loads, names resolve, parameter formulas match independent
counts, Hugging Face configs map onto the same profiles, and bad files fail with named fields."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from importlib.resources import files
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.profiles import registry
from planner.profiles.schema import load_yaml_text
from planner.errors import InputError, ProfileNotFound
from planner.profiles import (
    PROFILES_PACKAGE,
    AttentionSpec,
    GpuSpec,
    ModelArch,
    get_gpu,
    get_model,
    list_gpus,
    list_models,
    load_gpu_yaml,
    load_model_yaml,
    model_from_hf_config,
)

HF_DIR = Path(__file__).parent / "data" / "hf_configs"

GPU_IDS = ["a100-40g", "a100-80g", "a10g", "b200", "h100", "h200", "l4", "l40s", "mi300x", "t4"]
MODEL_IDS = [
    "deepseek-v2-lite",
    "deepseek-v3",
    "deepseek-v3-tiny",
    "gpt-oss-120b",
    "kimi-k2",
    "mixtral-8x7b",
    "mixtral-tiny",
    "olmoe-1b-7b",
    "olmoe-tiny",
    "qwen1.5-moe-a2.7b",
    "qwen3-235b-a22b",
    "qwen3-235b-a22b-fp8",
    "qwen3-30b-a3b",
    "qwen3-30b-a3b-fp8",
    "qwen3-moe-tiny",
]

# Meta-device parameter counts (transformers 5.23.0, embeddings + lm_head, MTP excluded).
REFERENCE_TOTAL = {
    "deepseek-v3": 671.03e9,
    "kimi-k2": 1026.41e9,
    "deepseek-v2-lite": 15.71e9,
    "qwen3-30b-a3b": 30.53e9,
    "qwen3-30b-a3b-fp8": 30.53e9,  # the FP8 releases extend the BF16 profiles: same architecture
    "qwen3-235b-a22b": 235.09e9,
    "qwen3-235b-a22b-fp8": 235.09e9,
    "qwen1.5-moe-a2.7b": 14.32e9,
    "mixtral-8x7b": 46.70e9,
    "olmoe-1b-7b": 6.92e9,
    "gpt-oss-120b": 116.83e9,
    # moeplan's built-in tiny models (planner/runtime/hf/): state_dict elements of the built model
    "qwen3-moe-tiny": 25.658752e6,
    "mixtral-tiny": 0.96928e6,
    "olmoe-tiny": 1.774656e6,
    "deepseek-v3-tiny": 1.501040e6,
}

PARAMS_PER_EXPERT = {
    "deepseek-v3": 44_040_192,
    "kimi-k2": 44_040_192,
    "qwen3-235b-a22b": 18_874_368,
    "mixtral-8x7b": 176_160_768,
    "olmoe-1b-7b": 6_291_456,
    "gpt-oss-120b": 3 * 2880 * 2880 + 2 * 2880 + 2880,  # 24.89 M incl. biases
}

REQUIRED_ALIASES = {
    "deepseek-v3": ["deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-R1", "deepseek-r1", "DeepSeek-V3"],
    "kimi-k2": ["moonshotai/Kimi-K2-Instruct", "moonshotai/Kimi-K2-Base", "Kimi-K2"],
    "deepseek-v2-lite": ["deepseek-ai/DeepSeek-V2-Lite"],
    "qwen3-30b-a3b": ["Qwen/Qwen3-30B-A3B"],
    "qwen3-235b-a22b": ["Qwen/Qwen3-235B-A22B"],
    "qwen1.5-moe-a2.7b": ["Qwen/Qwen1.5-MoE-A2.7B"],
    "mixtral-8x7b": ["mistralai/Mixtral-8x7B-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1"],
    "olmoe-1b-7b": ["allenai/OLMoE-1B-7B-0924", "allenai/OLMoE-1B-7B-0924-Instruct", "allenai/OLMoE-1B-7B-0924-SFT"],
    "gpt-oss-120b": ["openai/gpt-oss-120b"],
    "h100": ["H100-SXM", "H100", "NVIDIA H100 80GB HBM3", "h100-sxm"],
}


def _builtin_text(kind: str, profile_id: str) -> str:
    return files(PROFILES_PACKAGE).joinpath(kind, f"{profile_id}.yaml").read_text(encoding="utf-8")


def _write_yaml(tmp_path: Path, data: dict, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _builtin_data(kind: str, profile_id: str) -> dict:
    return load_yaml_text(_builtin_text(kind, profile_id), "x")  # the loader the built-ins use


# --- catalogue and name resolution -------------------------------------------------------------


def test_catalogue_is_complete_and_sorted():
    assert [g.id for g in list_gpus()] == GPU_IDS
    assert [m.id for m in list_models()] == MODEL_IDS
    assert all(isinstance(g, GpuSpec) for g in list_gpus())
    assert all(isinstance(m, ModelArch) for m in list_models())


@pytest.mark.parametrize("profile", list_gpus() + list_models(), ids=lambda p: p.id)
def test_every_id_and_alias_resolves_case_insensitively(profile):
    get = get_gpu if isinstance(profile, GpuSpec) else get_model
    for name in (profile.id, *profile.names):
        for variant in (name, name.upper(), name.lower(), f"  {name} "):
            assert get(variant) == profile


@pytest.mark.parametrize("profile_id, aliases", sorted(REQUIRED_ALIASES.items()))
def test_required_aliases(profile_id, aliases):
    get = get_gpu if profile_id in GPU_IDS else get_model
    assert all(get(a).id == profile_id for a in aliases)


def test_aliases_are_unique_across_profiles():
    for catalogue in (list_gpus(), list_models()):
        owners: dict[str, str] = {}
        for p in catalogue:
            for key in {p.id.lower(), *(n.lower() for n in p.names)}:
                assert owners.setdefault(key, p.id) == p.id, key


@pytest.mark.parametrize("get, kind, ids", [(get_model, "model", MODEL_IDS), (get_gpu, "GPU", GPU_IDS)])
def test_unknown_name_lists_known_ids(get, kind, ids):
    with pytest.raises(ProfileNotFound) as info:
        get("no-such-thing")
    message = str(info.value)
    assert message.startswith(f"unknown {kind} 'no-such-thing'; known: ")
    assert all(i in message for i in ids)
    assert isinstance(info.value, InputError) and isinstance(info.value, KeyError)
    with pytest.raises(ProfileNotFound):
        get("missing-file.yaml")  # not on disk: an unknown name, not a crash


def test_builtins_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registry._builtins.cache_clear()
    try:
        assert get_model("deepseek-v3").num_routed_experts == 256
        assert get_gpu("h100").gpus_per_node == 8
    finally:
        registry._builtins.cache_clear()


def test_profiles_are_frozen_and_hashable():
    model, gpu = get_model("mixtral-8x7b"), get_gpu("h100")
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.top_k = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        gpu.memory_bytes = 1.0
    assert len({model, get_model("mixtral-8x7b"), gpu}) == 2


# --- GPU facts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gpu", list_gpus(), ids=lambda g: g.id)
def test_gpu_fields_are_positive_and_sourced(gpu):
    for name in ("memory_bytes", "hbm_bytes_per_s", "bf16_flops_per_s", "intra_node_bytes_per_s"):
        assert isinstance(getattr(gpu, name), float) and getattr(gpu, name) > 0
    assert gpu.inter_node_bytes_per_s > 0 and gpu.host_link_bytes_per_s > 0 and gpu.gpus_per_node >= 1
    assert gpu.fp8_flops_per_s is None or gpu.fp8_flops_per_s > gpu.bf16_flops_per_s
    # every GPU here has INT8 tensor cores; FP4 needs FP8 first (Blackwell), and doubles it
    assert gpu.int8_ops_per_s >= gpu.bf16_flops_per_s * 2
    assert gpu.fp4_flops_per_s is None or gpu.fp4_flops_per_s == 2 * gpu.fp8_flops_per_s
    assert gpu.price_per_hour_usd > 0
    assert all(gpu.provenance.get(k) for k in ("source", "license", "date"))


def test_gpu_spot_values():
    h100 = get_gpu("h100")
    assert (h100.memory_bytes, h100.hbm_bytes_per_s, h100.bf16_flops_per_s) == (80e9, 3.35e12, 989.4e12)
    assert (h100.fp8_flops_per_s, h100.intra_node_bytes_per_s) == (1978.9e12, 900e9)
    assert (h100.int8_ops_per_s, h100.fp4_flops_per_s) == (1978.9e12, None)  # Hopper: no FP4 tensor cores
    assert (get_gpu("b200").fp4_flops_per_s, get_gpu("a100-80g").int8_ops_per_s) == (9000e12, 624e12)
    assert get_gpu("mi300x").memory_bytes == 192e9 and get_gpu("mi300x").vendor == "amd"
    assert get_gpu("t4").bf16_flops_per_s == 65e12 and get_gpu("t4").fp8_flops_per_s is None
    for pcie_only in ("l40s", "l4", "a10g", "t4"):  # no NVLink: peers talk over the host link
        g = get_gpu(pcie_only)
        assert g.intra_node_bytes_per_s == g.host_link_bytes_per_s


# --- model facts and parameter formulas --------------------------------------------------------


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_total_params_match_reference_counts(model_id):
    model = get_model(model_id)
    assert model.reference_total_params == REFERENCE_TOTAL[model_id]
    assert model.total_params() == pytest.approx(REFERENCE_TOTAL[model_id], rel=0.005)
    assert all(model.provenance.get(k) for k in ("source", "license", "date"))


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_parameter_decomposition_is_consistent(model_id):
    m = get_model(model_id)
    assert sorted(m.moe_layers + m.dense_layers) == list(range(m.num_hidden_layers))
    per_moe_layer = m.moe_layer_nonexpert_params + m.num_routed_experts * m.params_per_expert
    rebuilt = len(m.moe_layers) * per_moe_layer + len(m.dense_layers) * m.dense_layer_params + m.embedding_params
    assert m.total_params() == rebuilt
    p = m.precision
    matrices = m.params_per_expert - m.expert_bias_params
    biases = m.expert_bias_params * p.base.bytes_per_element
    assert m.bytes_per_expert == math.ceil(matrices * p.experts.bytes_per_element + biases)
    narrowest = min(p.attention.bytes_per_element, p.base.bytes_per_element)
    assert m.bytes_per_dense_layer >= m.dense_layer_params * narrowest
    if p.attention == p.experts == p.base:  # one format: the bytes are the parameters times its width
        assert m.weight_bytes() == m.total_params() * p.base.bytes_per_element
    assert m.attention_params_per_layer < m.moe_layer_nonexpert_params
    assert 0 < m.active_params() < m.total_params()


@pytest.mark.parametrize("model_id, expected", sorted(PARAMS_PER_EXPERT.items()))
def test_params_per_expert_exact(model_id, expected):
    assert get_model(model_id).params_per_expert == expected


def test_bytes_per_expert_follow_the_native_precision():
    # FP8 with one fp32 scale per 128 x 128 block: 3 matrices of 7168 x 2048 = 3 x 56 x 16 blocks
    assert get_model("deepseek-v3").bytes_per_expert == 44_040_192 + 3 * 56 * 16 * 4
    assert get_model("kimi-k2").bytes_per_expert == 44_040_192 + 3 * 56 * 16 * 4
    assert get_model("mixtral-8x7b").bytes_per_expert == 352_321_536  # BF16
    assert get_model("qwen3-235b-a22b").bytes_per_expert == 37_748_736
    assert get_model("qwen3-235b-a22b-fp8").bytes_per_expert == 18_874_368 + 3 * 32 * 12 * 4
    # MXFP4 matrices (4.25 bits) + BF16 biases: the checkpoint's _blocks, _scales and _bias tensors
    assert get_model("gpt-oss-120b").bytes_per_expert == 3 * 2880 * 2880 * 17 // 32 + 2 * (2 * 2880 + 2880)


def test_moe_layer_patterns():
    assert get_model("deepseek-v3").moe_layers == tuple(range(3, 61))
    assert get_model("deepseek-v3").dense_layers == (0, 1, 2)
    assert get_model("kimi-k2").moe_layers == tuple(range(1, 61))
    assert len(get_model("deepseek-v2-lite").moe_layers) == 26
    assert get_model("mixtral-8x7b").moe_layers == tuple(range(32))
    assert get_model("mixtral-8x7b").dense_layers == ()


def test_kv_cache_sizes():
    assert get_model("deepseek-v3").kv_bytes_per_token() == (512 + 64) * 2 * 61
    assert get_model("deepseek-v3").kv_bytes_per_token(dtype_bytes=1) == (512 + 64) * 61
    assert get_model("mixtral-8x7b").kv_bytes_per_token() == 2 * 8 * 128 * 2 * 32
    oss = get_model("gpt-oss-120b")
    per_token_layer = 2 * 8 * 64 * 2
    assert oss.kv_bytes_per_token() == per_token_layer * 36
    # 18 sliding layers keep at most 128 tokens, 18 full layers keep all of them
    assert oss.kv_bytes_per_sequence(10_000) == per_token_layer * (18 * 10_000 + 18 * 128)
    assert oss.kv_bytes_per_sequence(100) == per_token_layer * 36 * 100
    assert [oss.attention.window_tokens(i) for i in range(4)] == [128, None, 128, None]


def test_active_params_of_gpt_oss_match_model_card():
    assert get_model("gpt-oss-120b").active_params() == pytest.approx(5.1e9, rel=0.02)


@settings(max_examples=60, deadline=None)
@given(
    layers=st.integers(1, 40),
    first_dense=st.integers(0, 6),
    freq=st.integers(1, 4),
    mlp_only=st.sets(st.integers(0, 39), max_size=5),
)
def test_layer_pattern_follows_the_modelling_code_rule(layers, first_dense, freq, mlp_only):
    mlp_only = sorted(i for i in mlp_only if i < layers)
    expected = [i for i in range(first_dense, layers) if i % freq == 0 and i not in mlp_only]
    base = get_model("deepseek-v2-lite")
    kwargs = dict(num_hidden_layers=layers, first_dense_layers=min(first_dense, layers))
    kwargs.update(moe_layer_freq=freq, mlp_only_layers=tuple(mlp_only))
    if not expected:
        with pytest.raises(InputError, match="no MoE layer"):
            dataclasses.replace(base, **kwargs)
        return
    model = dataclasses.replace(base, **kwargs)
    assert list(model.moe_layers) == expected
    assert sorted(model.moe_layers + model.dense_layers) == list(range(layers))


# --- Hugging Face config.json ------------------------------------------------------------------


@pytest.mark.parametrize("fixture", sorted(p.name for p in HF_DIR.glob("*.json")))
def test_hf_config_reproduces_builtin_profile(fixture):
    builtin = get_model(fixture.removesuffix(".json"))
    parsed = model_from_hf_config(HF_DIR / fixture)
    assert parsed.reference_total_params is None
    assert parsed.total_params() == builtin.total_params()
    assert parsed.moe_layers == builtin.moe_layers
    assert parsed.bytes_per_expert == builtin.bytes_per_expert
    assert parsed.kv_bytes_per_token() == builtin.kv_bytes_per_token()
    same_identity = dataclasses.replace(
        parsed, id=builtin.id, names=builtin.names, reference_total_params=builtin.reference_total_params
    )
    assert same_identity == builtin  # every architecture field, not only the totals


def test_required_hf_fixtures_exist():
    names = {p.stem for p in HF_DIR.glob("*.json")}
    assert {"deepseek-v3", "mixtral-8x7b", "qwen3-30b-a3b"} <= names


def test_hf_config_directory_and_get_model_path(tmp_path):
    snapshot = tmp_path / "My-MoE"
    snapshot.mkdir()
    shutil.copy(HF_DIR / "qwen3-30b-a3b.json", snapshot / "config.json")
    from_dir = model_from_hf_config(snapshot)
    assert from_dir.id == "My-MoE"
    assert get_model(str(snapshot)) == from_dir
    assert get_model(snapshot / "config.json") == from_dir
    assert get_model(str(HF_DIR / "mixtral-8x7b.json")).total_params() == get_model("mixtral-8x7b").total_params()


def _hf_variant(tmp_path: Path, fixture: str, drop=(), **changes) -> Path:
    cfg = json.loads((HF_DIR / fixture).read_text(encoding="utf-8"))
    for key in drop:
        cfg.pop(key, None)
    cfg.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "fixture, key",
    [
        ("deepseek-v3.json", "hidden_size"),
        ("deepseek-v3.json", "kv_lora_rank"),
        ("deepseek-v3.json", "first_k_dense_replace"),
        ("deepseek-v3.json", "num_experts_per_tok"),
        ("mixtral-8x7b.json", "num_hidden_layers"),
        ("mixtral-8x7b.json", "vocab_size"),
        ("qwen3-30b-a3b.json", "num_attention_heads"),
        ("qwen1.5-moe-a2.7b.json", "shared_expert_intermediate_size"),
        ("qwen3-30b-a3b.json", "model_type"),
    ],
)
def test_hf_config_missing_key_is_named(tmp_path, fixture, key):
    path = _hf_variant(tmp_path, fixture, drop=(key,))
    with pytest.raises(InputError) as info:
        model_from_hf_config(path)
    assert f"'{key}'" in str(info.value) and str(path) in str(info.value)


def test_hf_config_missing_expert_count_names_all_spellings(tmp_path):
    path = _hf_variant(tmp_path, "mixtral-8x7b.json", drop=("num_local_experts",))
    with pytest.raises(InputError, match="'n_routed_experts' \\(or num_experts / num_local_experts\\)"):
        model_from_hf_config(path)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"hidden_size": -7168}, "key 'hidden_size' must be an integer >= 1"),
        ({"num_attention_heads": "128"}, "key 'num_attention_heads' must be an integer"),
        ({"model_type": "llama"}, "key 'model_type' 'llama' is not supported"),
        ({"torch_dtype": "int3"}, "key 'torch_dtype' must be one of"),
    ],
)
def test_hf_config_bad_value_is_named(tmp_path, changes, match):
    path = _hf_variant(tmp_path, "mixtral-8x7b.json", **changes)
    with pytest.raises(InputError, match=match) as info:
        model_from_hf_config(path)
    assert str(path) in str(info.value)


def test_hf_config_unreadable_inputs(tmp_path):
    with pytest.raises(InputError, match="profile file not found"):
        model_from_hf_config(tmp_path / "absent")
    bad = tmp_path / "config.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="invalid JSON"):
        model_from_hf_config(bad)


def test_hf_layer_rules_of_each_family(tmp_path):
    qwen = model_from_hf_config(
        _hf_variant(tmp_path, "qwen3-30b-a3b.json", decoder_sparse_step=2, mlp_only_layers=[1, 4])
    )  # Qwen: MoE iff (i + 1) % step == 0 and i not in mlp_only_layers
    assert qwen.moe_layers == tuple(i for i in range(48) if (i + 1) % 2 == 0 and i != 1)
    assert qwen.dense_intermediate_size == 6144
    deepseek = model_from_hf_config(_hf_variant(tmp_path, "deepseek-v3.json", moe_layer_freq=2))
    assert deepseek.moe_layers == tuple(i for i in range(3, 61) if i % 2 == 0)  # DeepSeek: i % freq == 0
    greedy = model_from_hf_config(_hf_variant(tmp_path, "deepseek-v3.json", topk_method="greedy"))
    assert greedy.num_expert_groups is None and greedy.topk_groups is None


# --- user YAML files ---------------------------------------------------------------------------


def test_builtin_yaml_round_trips_as_user_file(tmp_path):
    gpu_path = tmp_path / "my-h100.yaml"
    gpu_path.write_text(_builtin_text("gpus", "h100"), encoding="utf-8")
    assert load_gpu_yaml(gpu_path) == get_gpu("h100")
    assert get_gpu(str(gpu_path)) == get_gpu("h100")
    model_path = tmp_path / "my-model.yml"
    model_path.write_text(_builtin_text("models", "deepseek-v3"), encoding="utf-8")
    assert load_model_yaml(model_path) == get_model("deepseek-v3")
    assert get_model(model_path) == get_model("deepseek-v3")


def test_yaml_exponent_floats_without_sign_or_dot(tmp_path):
    data = _builtin_data("gpus", "h100")
    assert data["memory_bytes"] == 80e9  # "80.0e9" would be a string with plain PyYAML
    path = tmp_path / "g.yaml"
    path.write_text(_builtin_text("gpus", "h100").replace("80.0e9", "8e10"), encoding="utf-8")
    assert load_gpu_yaml(path).memory_bytes == 8e10


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("memory_bytes"), "missing field 'memory_bytes'"),
        (lambda d: d.update(memory_bytes=-80e9), "memory_bytes must be > 0"),
        (lambda d: d.update(memory_bytes="lots"), "memory_bytes must be a finite number"),
        (lambda d: d.update(gpus_per_node=True), "gpus_per_node must be an integer"),
        (lambda d: d.update(gpus_per_node=0), "gpus_per_node must be >= 1"),
        (lambda d: d.update(price_per_hour_usd=-1), "price_per_hour_usd must be >= 0"),
        (lambda d: d.update(memroy_bytes=1), "unknown field 'memroy_bytes'"),
    ],
)
def test_bad_gpu_yaml_names_file_and_field(tmp_path, edit, message):
    data = _builtin_data("gpus", "h100")
    edit(data)
    path = _write_yaml(tmp_path, data)
    with pytest.raises(InputError) as info:
        load_gpu_yaml(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("hidden_size"), "missing field 'hidden_size'"),
        (lambda d: d.update(num_routed_experts=-8), "num_routed_experts must be >= 1"),
        (lambda d: d["attention"].pop("kind"), "missing field 'attention.kind'"),
        (lambda d: d["attention"].update(kind="mha"), "attention.kind must be one of mla, gqa"),
        (lambda d: d["attention"].pop("num_kv_heads"), "attention.num_kv_heads is required"),
        (lambda d: d["attention"].update(num_kv_heads=5), "attention.num_kv_heads must divide num_heads"),
        (lambda d: d.update(top_k=9), "top_k must be <= num_routed_experts (8)"),
        (lambda d: d.update(first_dense_layers=2), "dense_intermediate_size is required"),
        (lambda d: d.update(num_shared_experts=1), "shared_expert_intermediate_size must be > 0"),
        (lambda d: d.update(num_expert_groups=3, topk_groups=1), "num_expert_groups must divide"),
        (lambda d: d.update(mlp_only_layers=[40]), "mlp_only_layers must hold layer indices in [0, 32)"),
        (lambda d: d.update(weight_bytes_per_param=0), "weight_bytes_per_param must be > 0"),
    ],
)
def test_bad_model_yaml_names_file_and_field(tmp_path, edit, message):
    data = _builtin_data("models", "mixtral-8x7b")
    edit(data)
    path = _write_yaml(tmp_path, data)
    with pytest.raises(InputError) as info:
        load_model_yaml(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_invalid_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(InputError, match="invalid YAML"):
        load_gpu_yaml(path)
    with pytest.raises(InputError, match="top level must be a mapping"):
        path.write_text("- just a list\n", encoding="utf-8")
        load_model_yaml(path)
    with pytest.raises(InputError, match="profile file not found"):
        load_gpu_yaml(tmp_path / "absent.yaml")


def test_direct_construction_is_checked():
    base = get_model("mixtral-8x7b")
    with pytest.raises(InputError, match="model 'mixtral-8x7b': top_k must be <="):
        dataclasses.replace(base, top_k=20)
    mla = AttentionSpec(kind="mla", num_heads=8)
    with pytest.raises(InputError, match="attention.kv_lora_rank is required"):
        dataclasses.replace(base, attention=mla)
