"""The replica benchmark runs end to end at reduced scale (``--quick``) and reports every section."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocess end-to-end

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "replicas.py"
SECTIONS = ("real_loads", "synthetic", "per_layer_budget", "replanning", "memory_kv", "targets", "meta")


def _markdown_tables(text: str) -> list[list[str]]:
    """Blocks of consecutive lines starting with '|' (header, rule, rows)."""
    tables, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            tables.append(block)
            block = []
    return tables


def test_quick_benchmark(tmp_path):
    out = tmp_path / "tmp.json"
    res = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], capture_output=True, text=True,
                         timeout=180, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    for key in SECTIONS:
        assert data.get(key), f"section {key} missing or empty"
    for key in SECTIONS[:5]:
        assert all(text.count("\n") >= 2 for text in data[key]["tables"].values()), key
    assert {t["pass"] for t in data["targets"]} <= {True, False}
    # the targets that hold at quick scale and do not depend on wall-clock time (the 2-point mean gain
    # needs the full traces; the planning-time target is a speed figure, reported, never asserted)
    passed = {t["target"]: t["pass"] for t in data["targets"]}
    must_hold = [k for k in passed if k.startswith(("OLMoE", "synthetic: never worse", "D=32: per-layer"))]
    assert len(must_hold) == 6, sorted(passed)
    assert all(passed[k] for k in must_hold), {k: passed[k] for k in must_hold}

    tables = _markdown_tables(res.stdout)
    assert len(tables) >= 8  # real loads x2, calibration, synthetic, budgets, re-planning, memory/KV, targets
    for table in tables:
        assert set(table[1]) <= set("|:- "), table[:2]  # a header rule
        assert len(table) >= 3, table[0]  # at least one row
    assert len(_markdown_tables(res.stdout.split("## Targets")[1])[0]) - 2 == len(data["targets"])
    assert "## 5. Memory" in res.stdout and "Recommended for moeplan" in res.stdout


def test_runtime_benchmark_smoke(tmp_path):
    """benchmarks/runtime.py end to end on synthetic layers at the smallest scale: three placements
    served on 4 gloo workers, outputs equal the reference and rows equal the prediction."""
    pytest.importorskip("torch")
    script = SCRIPT.parent / "runtime.py"
    out = tmp_path / "rt.json"
    res = subprocess.run([sys.executable, str(script), "--model", "synthetic", "--quick", "--plan-tokens", "1024",
                          "--eval-tokens", "512", "--repeats", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [r["placement"] for r in data["rows"]] == ["none", "eplb", "moeplan"]
    assert all(r["rows_match_prediction"] and r["max_abs_diff"] <= 1e-5 for r in data["rows"])
    assert data["rows"][0]["busiest_rows_vs_none"] == 0.0
    assert all(r["expert_ms"] > 0 and r["step_ms"] > 0 and len(r["expert_ms_rounds"]) == 1 for r in data["rows"])
    tables = _markdown_tables(res.stdout)
    assert len(tables) == 2 and len(tables[0]) == 5 and len(tables[1]) == 2 + 2  # placements; 2 seeds (--quick)
    spread = data["seed_spread"]
    assert spread["seeds"] == [0, 1] and set(spread["moeplan_vs_eplb"]) >= {"median", "min", "max"}
    assert "seed spread" in res.stdout


def test_simulator_benchmark_smoke(tmp_path):
    """benchmarks/simulator.py --quick: every section, the M/D/1 target holds, moeplan and the simpy
    baseline agree (speed is reported, never asserted)."""
    pytest.importorskip("simpy")
    out = tmp_path / "sim.json"
    res = subprocess.run([sys.executable, str(SCRIPT.parent / "simulator.py"), "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert len(data["speed"]) == 3 and len(data["accuracy"]) == 9 and data["goodput"]["probes"] >= 2
    passed = {t["target"]: t["pass"] for t in data["targets"]}
    assert all(v for k, v in passed.items() if k.startswith(("M/D/1", "same times"))), passed
    assert len(_markdown_tables(res.stdout)) == 3


def test_aic_compare_runs_on_its_cache(tmp_path):
    """benchmarks/aic_compare.py compares moeplan with the cached AIConfigurator estimates (no
    aiconfigurator needed) and reports every point and the medians of both variants."""
    script = SCRIPT.parent / "aic_compare.py"
    out = tmp_path / "aic.json"
    res = subprocess.run([sys.executable, str(script), "--out", str(out)], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert {"before", "after"} <= set(data["medians"]) and len(data["rows"]) >= 30
    for row in data["rows"]:
        for metric in ("ttft", "tpot", "tokens_per_s_per_gpu", "memory"):
            assert row["aic"][metric] > 0 and row["moeplan"]["after"][metric] > 0
    assert data["meta"]["reference"]["versions"]["aiconfigurator"] == "0.12.0"
    assert "## Median relative error" in res.stdout and "Targets (after)" in res.stdout
    missing = subprocess.run([sys.executable, str(script), "--cache", str(tmp_path / "none.json")],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 0 and "skipped: no cache" in missing.stderr


def test_deploy_load_benchmark_smoke(tmp_path):
    """benchmarks/deploy_load.py --quick --no-aic --routing aic: the open and the closed-loop searches run under
    AIConfigurator's routing (a balancedness per EP size, lower at larger EP); the closed search's pick is the best
    of the deployments it simulated and meets the limits at its client count, and the open pick's closed-loop
    numbers are among them."""
    out = tmp_path / "load.json"
    res = subprocess.run([sys.executable, str(SCRIPT.parent / "deploy_load.py"), "--quick", "--no-aic", "--routing",
                          "aic", "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = json.loads(out.read_text(encoding="utf-8"))
    b = [row["balancedness"][k] for k in sorted(row["balancedness"], key=int)]
    assert sorted(row["balancedness"], key=int) == ["2", "4", "8"] and 1 > b[0] > b[1] > b[2] > 0
    scores = [a["closed"] for a in row["all"]]
    assert len(scores) >= 2 and row["search_pick_closed"] in scores
    best = max(s["tokens_per_s_per_budget_gpu"] for s in scores if s["meets"])
    pick = row["closed_pick_closed"]
    assert pick == scores[0] and pick["tokens_per_s_per_budget_gpu"] == best > 0
    assert pick["clients"] >= 1 and pick["ttft_ms"] <= 2000 and pick["tpot_ms"] <= 50  # the scenario's limits
    tables = _markdown_tables(res.stdout)
    assert len(tables) == 1 and len(tables[0]) == 3 and row["closed_pick"] in tables[0][2]


def test_deploy_width_benchmark_smoke(tmp_path):
    """benchmarks/deploy_width.py --quick: the default and the wide search run on the same scenario; the wide one
    simulates at least as many candidates and deployments, and the table's ratio is the two goodputs'."""
    out = tmp_path / "width.json"
    res = subprocess.run([sys.executable, str(SCRIPT.parent / "deploy_width.py"), "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = json.loads(out.read_text(encoding="utf-8"))
    assert row["wide_candidates"] >= row["default_candidates"] and row["wide_deployments"] >= row["default_deployments"]
    assert row["ratio"] == pytest.approx(row["default_req_per_s"] / row["wide_req_per_s"])
    assert row["same_pick"] == (row["default_pick"] == row["wide_pick"])
    tables = _markdown_tables(res.stdout)
    assert len(tables) == 2 and len(tables[0]) == 3 and f"{row['ratio']:.3f}" in tables[0][2]


def test_deploy_benchmark_smoke_and_aic_cache(tmp_path):
    """benchmarks/deploy.py --quick --no-aic runs (speed is reported, never asserted); every cached
    AIConfigurator answer reads into the side-by-side table's cells without AIConfigurator installed."""
    out = tmp_path / "dep.json"
    res = subprocess.run([sys.executable, str(SCRIPT.parent / "deploy.py"), "--quick", "--no-aic", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert len(data) == 1 and data[0]["chosen"]["meets_slo"]
    assert len(_markdown_tables(res.stdout)) == 1
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import deploy as bench
    finally:
        sys.path.pop(0)
    cache = bench.AicCache(bench.AIC_CACHE)
    entries = list(cache.doc["runs"].values())
    assert entries and {e["aic_version"] for e in entries} == {"0.12.0"}
    for s in bench.scenarios():  # every scenario's sweep is cached and reads as a best deployment
        best = bench.aic_best(cache.get(bench.aic_default_request(s)))
        assert best["status"] == "ok" and best["tokens_per_s_per_gpu"] > 0 and best["wall_s"] > 0
    for e in entries:
        if e["request"]["mode"] == "price":
            priced = bench.aic_priced(e)
            assert priced["status"] == "ok" or priced["status"].startswith("refused"), priced
            assert e["command"].startswith("aiconfigurator cli estimate")


def test_aic_serving_runs_on_its_cache(tmp_path):
    """benchmarks/aic_serving.py --quick simulates AIConfigurator's top configurations from the cache (no
    aiconfigurator needed): every configuration gets a positive goodput within its steady-state bound, and a
    closed-loop throughput at AIConfigurator's concurrency that obeys Little's law."""
    out = tmp_path / "serving.json"
    res = subprocess.run([sys.executable, str(SCRIPT.parent / "aic_serving.py"), "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert len(data["rows"]) == 8 and {r["mode"] for r in data["rows"]} == {"agg", "disagg"}
    for row in data["rows"]:
        ours = row["moeplan"]
        assert ours["tokens_per_s_per_gpu"] > 0
        assert ours["tokens_per_s_per_gpu"] <= ours["steady_bound_req_per_s"] * 500 / ours["gpus"] * (1 + 1e-9)
        closed = ours["closed"]
        assert closed["tokens_per_s_per_gpu"] > 0 and closed["error"] == closed["tokens_per_s_per_gpu"] / row["aic"][
            "tokens_per_s_per_gpu"] - 1
        assert closed["req_per_s"] * closed["e2e_ms_mean"] / 1e3 == pytest.approx(closed["concurrency"], rel=0.05)
        if row["mode"] == "disagg":  # AIConfigurator's number rebuilt from its static points and rate-matching factors
            rebuilt = closed["rate_matching"]["aic_reproduced_tokens_per_s_per_gpu"]
            assert rebuilt == pytest.approx(row["aic"]["tokens_per_s_per_gpu"], rel=1e-3)
    assert "Target: median |error|" in res.stdout and len(_markdown_tables(res.stdout)) == 4


def test_fleet_benchmark_smoke(tmp_path):
    """benchmarks/fleet.py --quick runs and its wall-clock-free targets hold (the mix is never dearer than a
    single type or the greedy rule; every covering program proven optimal)."""
    out = tmp_path / "fleet.json"
    res = subprocess.run([sys.executable, str(SCRIPT.parent / "fleet.py"), "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["results"] and all(r["rows"] for r in data["results"])
    assert all(t["pass"] for t in data["targets"] if not t["target"].startswith("solve time"))
    assert len(_markdown_tables(res.stdout)) == 3


def test_quick_cluster_benchmark(tmp_path):
    """benchmarks/cluster.py --quick: every instance's table and targets, plans verified."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "cluster.py"
    out = tmp_path / "cluster.json"
    res = subprocess.run([sys.executable, str(script), "--quick", "--out", str(out)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert {r["instance"] for r in data["results"]} == {"single24-llama2-70b", "geo24-llama2-70b", "hetero42-llama2-70b"}
    assert all(t["pass"] for t in data["targets"] if "verify" in t["name"] or "never below" in t["name"])
    assert "| target | measured | result |" in res.stdout


def test_reliability_report_quick(tmp_path):
    """benchmarks/reliability.py --quick: every in-process corpus case runs and is tabled per category;
    the input/output layer's own cases all pass."""
    out = tmp_path / "rel.json"
    # part 2 on one test module: the others run in this suite anyway
    res = subprocess.run([sys.executable, str(SCRIPT.parent / "reliability.py"), "--quick", "--modules", "test_properties",
                          "--out", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    io_cases = [r for r in data["cases"] if r["module"] == "test_bad_inputs_io"]
    assert len(io_cases) >= 45
    assert all(r["passed"] for r in io_cases if r["ran"]), [r for r in io_cases if r["ran"] and not r["passed"]]
    assert not any(r["ran"] for r in data["cases"] if r["id"].startswith("subprocess-"))  # --quick skips them
    tables = _markdown_tables(res.stdout)
    assert len(tables) >= 2 and tables[0][0].startswith("| module | category | cases")
    assert "**PASS**" in res.stdout or "**FAIL**" in res.stdout
    assert [m["module"] for m in data["tests"]] == ["test_properties"] and data["tests"][0]["tests"] > 0
    assert tables[1][0].startswith("| module | tests | passed") and len(tables[1]) == 3
