"""CLI through typer's CliRunner on the real app: exit codes, --json, the bad-input corpus, no partial
outputs, and one vocabulary (docs/cli.md): flags, choices, previous spellings, errors under flags."""

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from planner.cli import app, main, options
from planner.errors import InputError

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
    assert run("replicas", "builtin:olmoe-c4", "-m", "olmoe-1b-7b", "--gpus", 8, "-o", out).exit_code == 0
    ok = run("verify", out, "--loads", "builtin:olmoe-c4", "--json")
    assert json.loads(ok.stdout)["ok"] is True
    # verifying against other loads: hash and metrics no longer hold -> exit 2, one stderr line
    bad = run("verify", out, "--loads", "builtin:olmoe-book")
    assert bad.exit_code == 2
    assert "loads_hash" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_plan_main_job_writes_everything_and_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("plan", "builtin:olmoe-arxiv-ep8", "--out-dir", a).exit_code == 0
    res = run("plan", "builtin:olmoe-arxiv-ep8", "--out-dir", b, "--json")
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in a.iterdir())
    # no engine balances OLMoE (docs/engines.md): the scenario writes no engine file and says why
    assert files == ["plan.json", "summary.txt"]
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    out = json.loads(res.stdout)
    assert out["balancedness_mean"] > 0.98
    assert sorted(out["refused"]) == ["sglang", "trtllm", "vllm"]
    assert "cannot balance olmoe-1b-7b" in out["refused"]["trtllm"]
    assert "no vllm file: vLLM cannot balance" in (a / "summary.txt").read_text()


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
    run("replicas", "builtin:olmoe-arxiv", "-m", "olmoe-1b-7b", "--gpus", 8, "-o", plan)
    for target, name in (("sglang", "s.json"), ("vllm", "v.jsonl"), ("trtllm", "t.yaml")):
        res = run("export", plan, "--target", target, "-o", tmp_path / name)
        assert res.exit_code == 2 and "cannot balance olmoe-1b-7b" in res.stderr, res.output
        assert "--allow-unsupported" in res.stderr and not (tmp_path / name).exists()
        res = run("export", plan, "--target", target, "-o", tmp_path / name, "--allow-unsupported")
        assert res.exit_code == 0, res.output
        assert "written anyway" in res.stderr and (tmp_path / name).exists()
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
    bad = tmp_path / "perlayer.json"  # a valid plan (it verifies) that SGLang cannot express
    run("replicas", "builtin:olmoe-arxiv", "-m", "olmoe-1b-7b", "--gpus", 8, "--mode", "per-layer", "-o", bad)
    res = run("export", bad, "--target", "sglang", "-o", tmp_path / "x.json")
    assert res.exit_code == 2
    assert "slot counts differ" in res.stderr
    assert not (tmp_path / "x.json").exists()


def test_unknown_export_target(tmp_path):
    plan = tmp_path / "plan.json"
    run("replicas", "builtin:olmoe-arxiv", "-m", "olmoe-1b-7b", "--gpus", 8, "-o", plan)
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
    assert run("synth", "-o", trace, "--steps", 80, "--layers", 4, "--num-experts", 64, "--first-layer", 0).exit_code == 0
    png = tmp_path / "sweep.png"
    res = run("replicas", trace, "-m", "olmoe-1b-7b", "--gpus", 8, "--gpu", "l4", "--auto-budget", "--holdout", 40,
              "--plot", png, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    chosen = max(data["budget_sweep"], key=lambda p: p["proxy"])
    assert data["plan"]["inputs"]["parameters"]["redundant_slots"] == chosen["redundant_slots"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = run("replicas", trace, "-m", "olmoe-1b-7b", "--gpus", 8, "--auto-budget")
    assert res.exit_code == 2 and "--gpu" in res.stderr


def test_replan_command(tmp_path):
    trace = tmp_path / "t.npz"
    run("synth", "-o", trace, "--steps", 60, "--layers", 3, "--num-experts", 64, "--first-layer", 0)
    png = tmp_path / "replan.png"
    res = run("replan", trace, "-m", "olmoe-1b-7b", "--gpus", 8, "--every", "5,50", "--thresholds", "0.9", "--window", 20,
              "--plot", png, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {p["policy"] for p in data["policies"]} == {"every 5", "every 50", "b < 0.9"}
    assert data["recommended"] in {p["policy"] for p in data["policies"]}
    assert all(len(p["balancedness_per_step"]) == 40 for p in data["policies"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    res = run("replan", trace, "-m", "olmoe-1b-7b", "--gpus", 8, "--every", "x")
    assert res.exit_code == 2 and "every" in res.stderr


# ---- one vocabulary (docs/cli.md) --------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _commands():
    return typer.main.get_command(app).commands


def _options(command):
    return [p for p in command.params if p.param_type_name == "option"]


def test_moeplan_alone_prints_help_and_exits_0():
    res = run()
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.stdout and "replicas" in res.stdout and not res.stderr


def test_every_command_takes_json():
    for name, command in _commands().items():
        assert any("--json" in p.opts for p in _options(command)), name


def test_one_short_flag_per_long_flag_across_the_app():
    """A short flag means the same long flag in every command, and a long flag has one short one."""
    long_of, short_of = {}, {}
    for name, command in _commands().items():
        for p in _options(command):
            longs = [o for o in p.opts if o.startswith("--")]
            shorts = [o for o in p.opts if not o.startswith("--")]
            assert len(longs) == 1 and len(shorts) <= 1, (name, p.opts)
            for s in shorts:
                long_of.setdefault(s, set()).add(longs[0])
            short_of.setdefault(longs[0], set()).update(shorts or [None])
    assert {s: ls for s, ls in long_of.items() if len(ls) > 1} == {"-o": {"--output", "--out-dir"}}  # both: where results go
    assert {l: ss for l, ss in short_of.items() if len(ss) > 1} == {}


def _quoted(flag: str, text: str) -> bool:
    """``flag`` appears in ``text`` as inline code, alone or followed by its value."""
    return f"`{flag}`" in text or f"`{flag} " in text


def test_docs_list_every_flag_and_every_previous_spelling():
    text = DOCS.read_text(encoding="utf-8")
    for name, command in _commands().items():
        assert f"`{name}`" in text, name
        for p in _options(command):
            for opt in p.opts:
                assert _quoted(opt, text), (name, opt)
    for (command, old), new in options.RENAMED_FLAGS.items():
        assert _quoted(old, text) and _quoted(new, text), (command, old)
    for param, flag in options.PARAM_FLAGS.items():
        assert f"`{param}`" in text, param


def test_choices_are_the_librarys():
    from planner.plans.export import TARGETS
    from planner.replicas import ALGORITHMS, MODES, POLICIES, SPLITS
    from planner.runtime.dispatch import DISPATCHES

    for enum, values in ((options.Algorithm, ALGORITHMS), (options.Mode, MODES), (options.Policy, POLICIES),
                         (options.Split, SPLITS), (options.Target, TARGETS), (options.Dispatch, DISPATCHES)):
        assert tuple(e.value for e in enum) == tuple(values), enum
    assert {e.value for e in options.ReplanAlgorithm} < set(ALGORITHMS)
    from planner.profiles import FORMATS

    assert tuple(e.value for e in options.Format) == tuple(FORMATS)


def test_help_lists_the_choices():
    res = run("replicas", "--help")
    assert res.exit_code == 0
    for value in ("uniform", "per-layer", "stepaware", "eplb", "hierarchical", "optimal"):
        assert value in res.stdout, value


@pytest.mark.parametrize("args, flag, known", [
    (["replicas", "builtin:olmoe-c4", "-m", "olmoe-1b-7b", "--gpus", 8, "--mode", "diagonal"], "--mode", "uniform, per-layer"),
    (["replicas", "builtin:olmoe-c4", "-m", "olmoe-1b-7b", "--gpus", 8, "--algorithm=greedy"], "--algorithm", "stepaware, eplb, none"),
    (["replan", "builtin:olmoe-c4", "-m", "olmoe-1b-7b", "--gpus", 8, "--algorithm", "none"], "--algorithm", "stepaware, eplb"),
    (["apply", "plan.json", "--workers", 2, "--dispatch", "random"], "--dispatch", "even, plan, deterministic"),
])
def test_a_bad_choice_is_one_line_naming_flag_and_choices(args, flag, known):
    res = run(*args)
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert res.stderr.startswith(f"moeplan: error: {flag}: unknown value ") and f"(known: {known})" in res.stderr


@pytest.mark.parametrize("args, new", [
    (["replicas", "builtin:olmoe-c4", "-m", "olmoe-1b-7b", "-d", 8], "--gpus"),
    (["replicas", "builtin:olmoe-c4", "-m", "olmoe-1b-7b", "--gpus", 8, "--certify-time-s", 5], "--certify --time-limit-s"),
    (["replicas", "builtin:olmoe-c4", "-m", "olmoe-1b-7b", "--gpus", 8, "--swap-time-s", 1], "--swap-time-limit-s"),
    (["synth", "-o", "t.npz", "--tokens", 10], "--batch-tokens"),
    (["export", "plan.json", "-t", "sglang", "-o", "x.json"], "--target"),
])
def test_a_previous_spelling_says_the_new_one(args, new):
    res = run(*args)
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and f"it is now {new}" in res.stderr


def test_certify_is_bounded_by_the_time_limit(monkeypatch):
    import planner.replicas.certify as certify

    seen = []
    monkeypatch.setattr(certify, "certify_plan", lambda plan, loads, *, time_limit_s: seen.append(time_limit_s) or [])
    res = run("replicas", "builtin:mistral-c4", "-m", "mixtral-8x7b", "--gpus", 4, "-r", 4, "--certify",
              "--time-limit-s", 7, "--json")
    assert res.exit_code == 0, res.output
    assert seen == [7.0] and json.loads(res.stdout)["certificates"] == []
    seen.clear()
    assert run("replicas", "builtin:mistral-c4", "-m", "mixtral-8x7b", "--gpus", 4, "-r", 4).exit_code == 0
    assert seen == []  # no --certify, no certificate


def test_an_error_naming_a_parameter_is_shown_under_its_flag(monkeypatch, tmp_path):
    import planner.replicas
    import planner.scenario

    def refuse(*args, **kwargs):
        raise InputError("must be >= 0, got -1", param="redundant_slots")

    monkeypatch.setattr(planner.replicas, "plan_replicas", refuse)
    res = run("replicas", "builtin:olmoe-c4", "-m", "olmoe-1b-7b", "--gpus", 8)
    assert res.exit_code == 2 and res.stderr == "moeplan: error: --redundant: must be >= 0, got -1\n"
    # `plan` takes no --redundant (the scenario file sets it): the library's own words
    monkeypatch.setattr(planner.scenario, "run_scenario", refuse)
    res = run("plan", "--out-dir", tmp_path / "out")
    assert res.exit_code == 2 and res.stderr == "moeplan: error: redundant_slots: must be >= 0, got -1\n"


def test_debug_comes_from_the_context_of_each_run(monkeypatch):
    import planner.replicas

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(planner.replicas, "plan_replicas", bug)
    args = ["replicas", "builtin:olmoe-c4", "-m", "olmoe-1b-7b", "--gpus", 8]
    res = run("--debug", *args)
    assert res.exit_code == 1 and "Traceback" in res.stderr and "ZeroDivisionError: a bug" in res.stderr
    res = run(*args)  # nothing left over from the previous run
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert res.stderr == "moeplan: internal error: ZeroDivisionError: a bug (rerun with --debug for the traceback)\n"
