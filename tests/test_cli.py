"""CLI through typer's CliRunner: exit codes, --json, the bad-input corpus, no partial outputs."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from planner.cli import app, main

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_replicas_writes_a_plan_that_verifies(tmp_path):
    out = tmp_path / "plan.json"
    res = run("replicas", "builtin:olmoe-arxiv", "--model", "olmoe-1b-7b", "--gpus", 8, "-o", out)
    assert res.exit_code == 0, res.output
    assert "busiest_gpu_tokens" in res.stdout and "plan verified" in res.stdout
    res = run("verify", out, "--loads", "builtin:olmoe-arxiv")
    assert res.exit_code == 0, res.output
    assert "FAIL" not in res.stdout


def test_replicas_json_output(tmp_path):
    res = run("replicas", "builtin:mistral-github", "--model", "mixtral-8x7b", "--gpus", 4, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["plan"]["replicas"]["num_gpus"] == 4
    assert data["solve"]["wall_time_s"] >= 0
    assert data["verified"] is True


def test_verify_json_and_failure_exit_code(tmp_path):
    out = tmp_path / "plan.json"
    assert run("replicas", "builtin:olmoe-c4", "-m", "olmoe-1b-7b", "-d", 8, "-o", out).exit_code == 0
    ok = run("verify", out, "--loads", "builtin:olmoe-c4", "--json")
    assert json.loads(ok.stdout)["ok"] is True
    # verifying against other loads: hash and metrics no longer hold -> exit 2, one stderr line
    bad = run("verify", out, "--loads", "builtin:olmoe-book")
    assert bad.exit_code == 2
    assert "loads_hash" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_plan_main_job_writes_everything_and_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("plan", "--out-dir", a).exit_code == 0
    res = run("plan", "--out-dir", b, "--json")
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(["plan.json", "summary.txt", "sglang-expert-location.json",
                            "vllm-eplb-mapping.jsonl", "trtllm-moe-load-balancer.yaml"])
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert json.loads(res.stdout)["balancedness_mean"] > 0.98


def test_info_commands():
    for cmd in (["models"], ["gpus"], ["loads", "--list"], ["loads", "builtin:olmoe-arxiv"], ["schema"]):
        res = run(*cmd)
        assert res.exit_code == 0, (cmd, res.output)
        res = run(*cmd, "--json")
        assert res.exit_code == 0, (cmd, res.output)
        json.loads(res.stdout)
    assert "7.81" in run("loads", "builtin:olmoe-arxiv").stdout  # layer-0 hottest expert over mean


def test_export_all_targets(tmp_path):
    plan = tmp_path / "plan.json"
    run("replicas", "builtin:olmoe-arxiv", "-m", "olmoe-1b-7b", "-d", 8, "-o", plan)
    for target, name in (("sglang", "s.json"), ("vllm", "v.jsonl"), ("trtllm", "t.yaml")):
        res = run("export", plan, "--target", target, "-o", tmp_path / name)
        assert res.exit_code == 0, res.output
        assert "trivial placement" in res.stderr  # 13 of 16 OLMoE layers have no measured loads


# ---- the bad-input corpus --------------------------------------------------------------------------

def _write(tmp_path: Path, name: str, content) -> str:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return str(p)


def _npz(tmp_path, name, counts):
    p = tmp_path / name
    np.savez(p, counts=np.asarray(counts))
    return str(p)


E64 = [[1] * 64]
CORPUS = [
    # (id, files to create -> loads arg, extra args, exit code, message keyword)
    ("malformed-json", lambda t: _write(t, "bad.json", '{"counts": [[1, 2,'), [], 2, "bad.json"),
    ("empty-file", lambda t: _write(t, "empty.json", ""), [], 2, "empty"),
    ("wrong-shape-1d", lambda t: _write(t, "flat.json", json.dumps({"counts": [1, 2, 3]})), [], 2, "counts"),
    ("wrong-shape-4d", lambda t: _npz(t, "4d.npz", np.ones((1, 1, 1, 64))), [], 2, "4"),
    ("ragged", lambda t: _write(t, "ragged.json", json.dumps({"counts": [[1, 2], [3]]})), [], 2, "ragged.json"),
    ("negative", lambda t: _write(t, "neg.json", json.dumps({"counts": [[-1] + [1] * 63]})), [], 2, "negative"),
    ("nan", lambda t: _npz(t, "nan.npz", np.array([[np.nan] + [1.0] * 63])), [], 2, "nan"),
    ("strings", lambda t: _write(t, "str.json", json.dumps({"counts": [["a"] * 64]})), [], 2, "str.json"),
    ("missing-file", lambda t: str(t / "nowhere.json"), [], 2, "nowhere.json"),
    ("unknown-model", lambda t: "builtin:olmoe-c4", ["--model", "gpt-17"], 2, "known"),
    ("unknown-gpu", lambda t: "builtin:olmoe-c4", ["--gpu", "h900"], 2, "known"),
    ("slots-not-divisible", lambda t: "builtin:olmoe-c4", ["--redundant", "3"], 2, "divide"),
    ("more-gpus-than-slots", lambda t: "builtin:olmoe-c4", ["--gpus", "128", "--redundant", "0"], 2, "slots"),
    ("gpus-not-over-nodes", lambda t: "builtin:olmoe-c4", ["--nodes", "3"], 2, "nodes"),
    ("wrong-expert-count", lambda t: _write(t, "e8.json", json.dumps({"counts": [[1] * 8]})), [], 2, "experts"),
    ("bad-csv-header", lambda t: _write(t, "r0.csv", "layer,expert,n\n0,0,1\n"), [], 2, "header"),
    ("unknown-builtin", lambda t: "builtin:nope", [], 2, "known"),
]


@pytest.mark.parametrize("case", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_corpus(tmp_path, case):
    _, make, extra, code, keyword = case
    loads = make(tmp_path)
    out = tmp_path / "out" 
    out.mkdir()
    args = ["replicas", loads, "--model", "olmoe-1b-7b", "--gpus", "8", "-o", out / "plan.json"]
    # later options win in click, so extra options override the defaults above
    res = run(*args, *extra)
    assert res.exit_code == code, (res.exit_code, res.output)
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("moeplan: error:")
    assert keyword.lower() in err.lower(), err
    assert list(out.iterdir()) == [], "no partial output may be left"


def test_infeasible_memory_exit_3(tmp_path):
    """DeepSeek-V3's 256 routed experts (+32) on 8 L4s: expert weights alone exceed 24 GB per GPU."""
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 100, size=(1, 58, 256))
    path = tmp_path / "ds.npz"
    np.savez(path, counts=counts, layer_ids=np.arange(3, 61))
    res = run("replicas", path, "--model", "deepseek-v3", "--gpus", 8, "--gpu", "l4", "-o", tmp_path / "p.json")
    assert res.exit_code == 3, res.output
    assert "GPU l4" in res.stderr and "GB" in res.stderr
    assert not (tmp_path / "p.json").exists()


def test_export_refuses_with_reason(tmp_path):
    plan = tmp_path / "plan.json"
    run("replicas", "builtin:olmoe-arxiv", "-m", "olmoe-1b-7b", "-d", 8, "-o", plan)
    data = json.loads(plan.read_text())
    data["replicas"]["physical_to_logical"][1] = data["replicas"]["physical_to_logical"][1][:64]
    data["replicas"]["slot_gpu"][1] = [s // 8 for s in range(64)]
    bad = tmp_path / "perlayer.json"
    bad.write_text(json.dumps(data))
    res = run("export", bad, "--target", "sglang", "-o", tmp_path / "x.json")
    assert res.exit_code == 2
    assert "slot counts differ" in res.stderr
    assert not (tmp_path / "x.json").exists()


def test_unknown_export_target(tmp_path):
    plan = tmp_path / "plan.json"
    run("replicas", "builtin:olmoe-arxiv", "-m", "olmoe-1b-7b", "-d", 8, "-o", plan)
    res = run("export", plan, "--target", "lmdeploy", "-o", tmp_path / "x")
    assert res.exit_code == 2 and "known: sglang, vllm, trtllm" in res.stderr


def test_main_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["replicas", "builtin:olmoe-c4", "--gpus", "eight"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--gpus" in err


def test_main_success_exit_zero(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["models"])
    assert exc.value.code == 0
    assert "deepseek-v3" in capsys.readouterr().out


def test_auto_budget_with_plot(tmp_path):
    trace = tmp_path / "t.npz"
    assert run("synth", "-o", trace, "--steps", 80, "--layers", 4, "--experts", 64, "--first-layer", 0).exit_code == 0
    png = tmp_path / "sweep.png"
    res = run("replicas", trace, "-m", "olmoe-1b-7b", "-d", 8, "--gpu", "l4", "--auto-budget", "--holdout", 40,
              "--plot", png, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    chosen = max(data["budget_sweep"], key=lambda p: p["proxy"])
    assert data["plan"]["inputs"]["parameters"]["redundant_slots"] == chosen["redundant_slots"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = run("replicas", trace, "-m", "olmoe-1b-7b", "-d", 8, "--auto-budget")
    assert res.exit_code == 2 and "--gpu" in res.stderr


def test_replan_command(tmp_path):
    trace = tmp_path / "t.npz"
    run("synth", "-o", trace, "--steps", 60, "--layers", 3, "--experts", 64, "--first-layer", 0)
    png = tmp_path / "replan.png"
    res = run("replan", trace, "-m", "olmoe-1b-7b", "-d", 8, "--every", "5,50", "--thresholds", "0.9", "--window", 20,
              "--plot", png, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {p["policy"] for p in data["policies"]} == {"every 5", "every 50", "b < 0.9"}
    assert data["recommended"] in {p["policy"] for p in data["policies"]}
    assert all(len(p["balancedness_per_step"]) == 40 for p in data["policies"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    res = run("replan", trace, "-m", "olmoe-1b-7b", "-d", 8, "--every", "x")
    assert res.exit_code == 2 and "every" in res.stderr
