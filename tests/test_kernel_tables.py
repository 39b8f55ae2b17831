"""Kernel tables from AIConfigurator and the per-GPU calibration on them: the shipped tables load with
their columns, units, licence and provenance; the CSV round-trips and refuses bad rows; the fits
recover known factors from synthetic tables; the held-out protocol meets the target where
docs/performance.md claims it; every calibrated factor group names its source."""

from __future__ import annotations

import dataclasses
import json
from importlib.resources import files

import numpy as np
import pytest

from planner.errors import InputError, ProfileNotFound
from planner.perf.calibration import (
    KERNEL_GROUPS_NOT_FITTED,
    TARGET_MEDIAN_REL_ERROR,
    calibrated_factors,
    calibrated_gpus,
    held_out_kernel_tables,
)
from planner.perf.factors import (
    DEFAULT_FACTORS,
    FACTOR_GROUPS,
    AttentionFactors,
    GemmFactors,
    GemmModeFactors,
    LinkFactors,
)
from planner.perf.kernel_fit import fit_kernel_tables, imbalance, predict_kernel_ms
from planner.perf.kernel_tables import (
    FAMILIES,
    TEXT_COLUMNS,
    KernelTable,
    kernel_table_provenance,
    list_kernel_tables,
    load_kernel_csv,
    load_kernel_table,
    write_kernel_table,
)
from planner.profiles import PROFILES_PACKAGE

GPUS = ("a100-80g", "b200", "h100", "h200")

# ---------------------------------------------------------------------------------------------
# the shipped tables


def test_every_gpu_has_every_family_but_a100_dispatch():
    have = set(list_kernel_tables())
    for gpu in GPUS:
        for family in FAMILIES:
            assert ((gpu, family) in have) == (not (gpu == "a100-80g" and family == "moe_dispatch")), (gpu, family)


@pytest.mark.parametrize("gpu, family", list_kernel_tables())
def test_shipped_table_columns_units_and_provenance(gpu, family):
    t = load_kernel_table(gpu, family)
    assert t.gpu == gpu and t.family == family and len(t) >= 60
    assert set(t.columns) == set(FAMILIES[family])
    assert np.all(t["time_ms"] > 0) and np.all(np.isfinite(t["time_ms"]))
    for name in FAMILIES[family]:
        if name not in TEXT_COLUMNS and name != "time_ms":
            assert t[name].dtype == np.int64 and np.all(t[name] >= 0), name
    with pytest.raises(ValueError):  # shared and cached: read-only
        t["time_ms"][0] = 1.0
    p = kernel_table_provenance(gpu, family)
    assert p["license"] == "Apache-2.0" and p["rows"] == len(t) and p["rows_read"] >= p["rows"]
    assert p["framework"] and p["version"] and p["selection"]
    assert all(s.startswith("aiconfigurator_core/systems/data/") and s.endswith(".parquet") for s in p["source"])
    assert all(len(h) == 64 for h in p["source_sha256"])


def test_licence_provenance_and_size():
    root = files(PROFILES_PACKAGE).joinpath("measured", "aic")
    assert "Apache License" in root.joinpath("LICENSE").read_text(encoding="utf-8")
    text = root.joinpath("PROVENANCE.md").read_text(encoding="utf-8")
    assert "Apache-2.0" in text and "aiconfigurator-core` 0.12.0" in text and "Changes made" in text
    manifest = json.loads(root.joinpath("manifest.json").read_text(encoding="utf-8"))
    assert manifest["versions"] == {"aiconfigurator": "0.12.0", "aiconfigurator-core": "0.12.0"}
    assert set(manifest["files"]) == {f"{g}/{f}.csv" for g, f in list_kernel_tables()}
    size = sum(root.joinpath(name).stat().st_size if hasattr(root.joinpath(name), "stat") else 0
               for name in manifest["files"])  # fmt: skip
    assert sum(f["bytes"] for f in manifest["files"].values()) <= 2_000_000 and size >= 0


def test_unknown_table_names_the_shipped_ones():
    with pytest.raises(ProfileNotFound, match="h200/gemm"):
        load_kernel_table("l4", "gemm")
    with pytest.raises(InputError, match="unknown kernel family"):
        KernelTable("h100", "conv", {"time_ms": np.ones(1)})


def test_csv_round_trip_and_bad_rows(tmp_path):
    t = load_kernel_table("h100", "moe_dispatch")
    path = write_kernel_table(t.select(np.arange(len(t)) < 5), tmp_path / "d.csv")
    back = load_kernel_csv(path, "h100", "moe_dispatch")
    for name in FAMILIES["moe_dispatch"]:
        assert back[name].tolist() == pytest.approx(t[name][:5].tolist()) if name == "time_ms" else \
            back[name].tolist() == t[name][:5].tolist()
    header = ",".join(FAMILIES["gemm"])
    bad = {"fp9,fp8,1,2,3,0.1": "unknown number format", "bf16,bf16,1,2,3,0": "time_ms must be > 0",
           "bf16,bf16,-1,2,3,0.1": "m must be a non-negative integer"}  # fmt: skip
    for row, message in bad.items():
        (tmp_path / "g.csv").write_text(f"{header}\n{row}\n", encoding="utf-8")
        with pytest.raises(InputError, match=message) as err:
            load_kernel_csv(tmp_path / "g.csv", "h100", "gemm")
        assert "line 2" in str(err.value) or "fp9" in str(err.value)
    (tmp_path / "n.csv").write_text("m,n,k,time_ms\n1,2,3,0.1\n", encoding="utf-8")
    with pytest.raises(InputError, match="missing column"):
        load_kernel_csv(tmp_path / "n.csv", "h100", "gemm")


def test_shipped_rows_are_aiconfigurators_rows():
    """Where aiconfigurator is installed, every shipped row is a row of its database (same times)."""
    pytest.importorskip("aiconfigurator_core")
    pytest.importorskip("pandas")
    from planner.perf.aic_database import read_installed

    for gpu, family in (("h200", "gemm"), ("b200", "moe"), ("h100", "mla_decode")):
        shipped, installed = load_kernel_table(gpu, family), read_installed(gpu, family)
        keys = [c for c in FAMILIES[family] if c != "time_ms"]
        index = {tuple(installed[c][i] for c in keys): installed["time_ms"][i] for i in range(len(installed))}
        for i in range(0, len(shipped), 7):
            key = tuple(shipped[c][i] for c in keys)
            assert shipped["time_ms"][i] == pytest.approx(index[key], rel=1e-5), (gpu, family, key)


# ---------------------------------------------------------------------------------------------
# the fits recover known factors

TRUE = dataclasses.replace(
    DEFAULT_FACTORS,
    gemm=GemmFactors(peak_fraction=0.72, half_tokens=60.0, hbm_fraction=0.85, overhead_s=5e-6, half_width=40.0),
    gemm_modes=GemmModeFactors(1.0, 0.8, 1.0, 0.82, 0.6, w8a8_block=0.7, extra_overhead_s=(("w8a8", 6e-6),),
                               quant_hbm_fraction=0.4),
    moe=GemmFactors(peak_fraction=0.9, half_tokens=80.0, hbm_fraction=0.8, overhead_s=1.2e-5, half_width=700.0),
    moe_modes=GemmModeFactors(1.0, 0.9, 0.4, 0.82, 0.5, w8a8_block=0.6, quant_hbm_fraction=0.2),
    attention=AttentionFactors(flops_fraction=0.55, hbm_fraction=0.9, overhead_s=1.5e-5, half_tokens=1200.0),
    attention_decode=AttentionFactors(flops_fraction=0.6, hbm_fraction=0.85, overhead_s=1e-5),
    mla_decode=AttentionFactors(flops_fraction=0.65, hbm_fraction=0.5, overhead_s=1.5e-5, bulk_hbm_fraction=0.9,
                                bulk_overhead_s=3e-5),
    mla_prefill=AttentionFactors(flops_fraction=0.65, hbm_fraction=0.85, overhead_s=2e-5, half_tokens=1000.0),
    all_reduce_intra=LinkFactors(bandwidth_fraction=0.6, latency_s=3e-6, hop_latency_s=1e-7),
    ep_dispatch_intra=LinkFactors(bandwidth_fraction=0.6, latency_s=3e-5),
    ep_dispatch_inter=LinkFactors(bandwidth_fraction=0.7, latency_s=4e-5),
    source="test: ground truth",
)
FITTED = ("gemm", "gemm_modes", "moe", "moe_modes", "attention", "mla_prefill", "all_reduce_intra",
          "ep_dispatch_intra", "ep_dispatch_inter")  # fmt: skip


def _synthetic(gpu: str, noise: float, seed: int) -> dict:
    """The shipped shapes of ``gpu`` with times from TRUE, times lognormal noise."""
    rng = np.random.default_rng(seed)
    out = {}
    for g, family in list_kernel_tables():
        if g != gpu:
            continue
        t = load_kernel_table(gpu, family)
        times = predict_kernel_ms(t, gpu, TRUE) * np.exp(rng.normal(0.0, noise, len(t)))
        out[family] = KernelTable(gpu, family, {**t.columns, "time_ms": times}, "synthetic")
    return out


@pytest.mark.parametrize("gpu", ["h200", "b200"])
def test_fits_recover_known_factors(gpu):
    fit = fit_kernel_tables(gpu, base=DEFAULT_FACTORS, tables=_synthetic(gpu, noise=0.02, seed=3))
    f = fit.factors
    multi_node = gpu != "b200"  # B200's DeepEP table has one node only
    assert set(FITTED) - ({"ep_dispatch_inter"} if not multi_node else set()) <= set(fit.fitted)
    for group in ("gemm", "moe", "attention", "mla_prefill", "all_reduce_intra", "ep_dispatch_intra",
                  *(("ep_dispatch_inter",) if multi_node else ())):  # fmt: skip
        want, got = TRUE.group(group), f.group(group)
        for field in dataclasses.fields(want):
            w = getattr(want, field.name)
            if isinstance(w, float) and field.name in {x.name for x in dataclasses.fields(got)}:
                if group in ("attention", "mla_prefill") and field.name == "hbm_fraction":
                    continue  # prefill takes the decode kernel's HBM share; never binding here
                if group == "gemm" and field.name in ("half_width", "half_tokens"):
                    tol = 0.35  # weakly identified on these shapes (the ramps trade off)
                elif field.name in ("hop_latency_s", "overhead_s"):
                    tol = 0.5  # small against the long kernels of these tables
                else:
                    tol = 0.08
                assert getattr(got, field.name) == pytest.approx(w, rel=tol, abs=1e-9), (group, field.name)
    for group, keys in (("gemm_modes", ("w8a8_block", "w8a8")), ("moe_modes", ("w8a8_block",))):
        for key in keys:
            assert f.group(group).scale(key) == pytest.approx(TRUE.group(group).scale(key), rel=0.08), (group, key)
    assert f.gemm_modes.quant_hbm_fraction == pytest.approx(0.4, rel=0.15)
    # and the fitted model reproduces the synthetic times of every family to within the noise
    for family, table in _synthetic(gpu, noise=0.0, seed=0).items():
        rel = np.abs(predict_kernel_ms(table, gpu, f) / table["time_ms"] - 1)
        assert np.median(rel) < 0.05, family


# ---------------------------------------------------------------------------------------------
# the held-out protocol on the shipped tables (docs/performance.md, "Calibration per GPU")

# (gpu, family label) whose held-out median error docs/performance.md reports within the 15 % target
CLAIMED = {
    "h100": ("gemm w8a8", "gemm w8a8_block", "moe w16a16", "moe w8a8_block", "attention_prefill", "attention_decode",
             "mla_prefill", "mla_decode", "all_reduce custom", "dispatch low_latency intra", "dispatch normal intra",
             "gemm w16a16 (factors kept from the base)"),
    "h200": ("gemm w16a16", "gemm w8a8", "gemm w8a8_block", "moe w16a16", "moe w8a8_block", "attention_prefill",
             "attention_decode", "mla_prefill", "mla_decode", "all_reduce custom", "reduce_scatter nccl",
             "dispatch low_latency intra", "dispatch normal intra"),
    "b200": ("gemm w16a16", "gemm w8a8", "gemm w8a8_block", "moe w16a16", "moe w8a8", "moe w8a8_block",
             "attention_decode", "mla_prefill", "mla_decode", "all_reduce custom", "all_gather nccl",
             "reduce_scatter nccl", "dispatch low_latency intra", "dispatch normal intra"),
    "a100-80g": ("gemm w16a16 (factors kept from the base)", "gemm w8a16", "gemm w4a16", "gemm w8a8",
                 "attention_prefill", "attention_decode", "mla_prefill"),
}  # fmt: skip


@pytest.fixture(scope="module")
def held_out():
    return {gpu: {e.family: e for r in held_out_kernel_tables(gpu) for e in r.errors} for gpu in GPUS}


@pytest.mark.slow  # fits every kernel family of four GPUs, held out by shape (~10 s): benchmark scale
@pytest.mark.parametrize("gpu", GPUS)
def test_held_out_errors_meet_the_target_where_claimed(gpu, held_out):
    errors = held_out[gpu]
    for label in CLAIMED[gpu]:
        assert errors[label].median_rel_error <= TARGET_MEDIAN_REL_ERROR, (gpu, label, errors[label])
    for label, e in errors.items():  # every other family is reported, with finite numbers
        assert e.n_points > 0 and np.isfinite(e.median_rel_error) and np.isfinite(e.p90_rel_error), label


def test_power_law_rows_are_slower_than_balanced_ones():
    """AIConfigurator's MoE times carry its power-law routing: the busiest rank of EP 8 holds
    1.3-3.6 x the mean load (measured, >= 1,024 tokens), i.e. b = 0.28-0.77 (docs/performance.md)."""
    rows = imbalance(load_kernel_table("h200", "moe"))
    ep8 = [r for r in rows if r["moe_ep"] == 8]
    assert ep8 and all(1.2 < r["median_ratio"] < 4.0 for r in ep8)
    assert all(r["median_ratio"] < next(s for s in ep8 if s["weights"] == r["weights"] and s["hidden_size"] ==
               r["hidden_size"] and s["num_experts"] == r["num_experts"])["median_ratio"] * 1.05
               for r in rows if r["moe_ep"] == 4)  # fmt: skip  (less skew on fewer ranks)


# ---------------------------------------------------------------------------------------------
# every factor group names its source


@pytest.mark.parametrize("gpu", GPUS)
def test_calibrated_factors_name_the_source_of_every_group(gpu):
    f = calibrated_factors(gpu)
    assert gpu in calibrated_gpus()
    named = dict(f.sources)
    assert set(named) == set(FACTOR_GROUPS)
    for group, text in named.items():
        assert text == f.source_of(group)
        assert text.startswith(("AIConfigurator ", "Vidur ", "uncalibrated default", "as ")), (group, text)
        if text.startswith("AIConfigurator"):  # framework and version of the table
            assert any(fw in text for fw in ("trtllm 1.", "nccl 2.", "sglang 0.5")), (group, text)
            assert f"profiles/measured/aic/{gpu}" in text
    for group in ("moe", "attention", "attention_decode", "mla_prefill"):
        assert named[group].startswith("AIConfigurator") or (gpu == "a100-80g" and group == "moe"), group
    for group in KERNEL_GROUPS_NOT_FITTED.get(gpu, {}):
        assert f"not fitted: {group}" in f.source and named[group].startswith("as ")


def test_defaults_name_one_source_and_keep_their_meaning():
    assert all(DEFAULT_FACTORS.source_of(g) == DEFAULT_FACTORS.source for g in FACTOR_GROUPS)
    assert DEFAULT_FACTORS.group("moe") is DEFAULT_FACTORS.gemm
    assert DEFAULT_FACTORS.group("mla_decode") is DEFAULT_FACTORS.attention
    assert DEFAULT_FACTORS.group("ep_dispatch_low_latency") is DEFAULT_FACTORS.p2p_intra
    d = DEFAULT_FACTORS.to_dict()
    assert set(d["sources"]) == set(FACTOR_GROUPS) and d["moe"] == d["gemm"]
