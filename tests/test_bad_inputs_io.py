"""Bad-input corpus of the input and output layers (issue 14, items 4-10 and 12).

Every case is a command line that must fail cleanly (see ``tests/corpus_case.py``: the exit code, one
stderr line naming the item, no traceback, no new file, no pre-existing file changed). Categories:

- ``sizes``: counts beyond the limits of ``planner/common/limits.py`` (``docs/limits.md``), refused
  before anything is allocated (an ``.npz`` header is read before its array);
- ``values``: non-finite, negative, fractional or out-of-range numbers of every command's flags;
- ``scenario``: scenario files with values of the wrong type;
- ``input-files``: unreadable inputs of every kind (not UTF-8, symlink loops);
- ``outputs``: unwritable outputs, a directory in the way, output = input, outputs checked before any
  work and committed together (a pre-existing output survives a failing run).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from corpus_case import Case, check_case

BAD_UTF8 = b"\xff\xfe\x00not utf-8 \xc3\x28\n"


# -- setups ---------------------------------------------------------------------------------------
def _write(name: str, data: bytes | str):
    def setup(tmp: Path) -> None:
        (tmp / name).write_bytes(data.encode() if isinstance(data, str) else data)

    return setup


def _model_yaml(name: str, **change):
    """The shipped Mixtral profile with some fields replaced (a hand-edited or fuzzed model file)."""
    def setup(tmp: Path) -> None:
        import yaml

        doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "profiles" / "models" / "mixtral-8x7b.yaml").read_text())
        doc.update(change)
        (tmp / name).write_text(yaml.safe_dump(doc))

    return setup


def _all(*setups):
    def setup(tmp: Path) -> None:
        for s in setups:
            s(tmp)

    return setup


def _npz(name: str, counts) -> callable:
    def setup(tmp: Path) -> None:
        np.savez(tmp / name, counts=np.asarray(counts, dtype=float))

    return setup


def _npz_header(name: str, shape) -> callable:
    """An .npz whose counts header declares ``shape`` but holds no data (a 10^9-step file in 200 bytes)."""

    def setup(tmp: Path) -> None:
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, {"descr": "<f8", "fortran_order": False, "shape": tuple(shape)})
        with zipfile.ZipFile(tmp / name, "w") as z:
            z.writestr("counts.npy", buf.getvalue())

    return setup


def _loop(name: str):
    def setup(tmp: Path) -> None:
        os.symlink(name, tmp / name)

    return setup


def _symlink(name: str, target: str):
    def setup(tmp: Path) -> None:
        os.symlink(target, tmp / name)

    return setup


def _dir(name: str):
    def setup(tmp: Path) -> None:
        (tmp / name).mkdir(parents=True)

    return setup


def _scenario(name: str, **values):
    doc = {"name": "s", "loads": "builtin:mistral-c4", "model": "mixtral-8x7b", "num_gpus": 8, **values}
    return _write(name, json.dumps(doc))


_LOADS = _npz("x.npz", np.arange(1, 1 + 32 * 8).reshape(32, 8))
_PLAN = _write("p.json", "{}")  # outputs are checked before any input is read
_OLD = _write("old.json", '{"old": true}\n')

R = ["replicas", "{tmp}/x.npz", "-m", "mixtral-8x7b", "--gpus", "8"]
RP = ["replan", "builtin:mistral-c4", "-m", "mixtral-8x7b", "--gpus", "8"]
EST = ["estimate", "-m", "mixtral-8x7b", "-g", "h100", "--batch", "1", "--isl", "16", "--osl", "16"]
DEP = ["deploy", "-m", "mixtral-8x7b", "-g", "h100", "--ttft-ms", "1000", "--tpot-ms", "50", "--gpus", "8"]
CL = ["cluster", "helix:single24-llama2-70b"]
FL = ["fleet"]
AP = ["apply", "{tmp}/p.json", "--workers", "8"]


def C(id, category, argv, names, setup=None, code=2, **kw):
    return Case(id=id, category=category, argv=argv, code=code, names=names, setup=setup, **kw)


CASES = [
    # ---- sizes (items 5, 6) -------------------------------------------------------------------
    C("npz-header-1e9-steps", "sizes", ["loads", "{tmp}/big.npz"], "MAX_STEPS", _npz_header("big.npz", (10**9, 61, 384))),
    C("npz-header-too-many-values", "sizes", [*R[:1], "{tmp}/big.npz", *R[2:]], "MAX_LOAD_VALUES",
      _npz_header("big.npz", (100_000, 61, 384))),
    C("replicas-num-experts-1e9", "sizes", [*R, "--num-experts", "1000000000"], "--num-experts", _LOADS),
    C("replicas-gpus-1e9", "sizes", [*R[:5], "1000000000"], "--gpus", _LOADS),
    C("replicas-redundant-1e12", "sizes", [*R, "--redundant", "1000000000000"], "--redundant", _LOADS),
    C("migrate-spare-slots-1e12", "sizes", ["migrate", "{tmp}/p.json", "{tmp}/p.json", "--spare-slots", "1000000000000"],
      "--spare-slots", _PLAN),
    C("apply-spare-slots-1e12", "sizes", [*AP, "--spare-slots", "1000000000000"], "--spare-slots", _PLAN),
    C("synth-steps-1e9", "sizes", ["synth", "-o", "{tmp}/s.npz", "--steps", "1000000000"], "--steps"),
    C("synth-num-experts-1e9", "sizes", ["synth", "-o", "{tmp}/s.npz", "--num-experts", "1000000000"], "--num-experts"),
    C("synth-experts-old-spelling", "sizes", ["synth", "-o", "{tmp}/s.npz", "--experts", "1e9"], "--num-experts"),
    C("synth-values-over-limit", "sizes", ["synth", "-o", "{tmp}/s.npz", "--steps", "100000", "--layers", "1000"],
      "MAX_LOAD_VALUES"),
    C("apply-hidden-1e6", "sizes", [*AP, "--hidden", "1000000", "--intermediate", "1000000"], "--hidden", _PLAN),
    C("apply-intermediate-1e6", "sizes", [*AP, "--intermediate", "1000000"], "--intermediate", _PLAN),
    C("counts-1e307-npz", "sizes", R, "MAX_LOAD_COUNT", _npz("x.npz", np.full((32, 8), 1e307))),
    C("counts-1e307-json", "sizes", ["loads", "{tmp}/l.json"], "MAX_LOAD_COUNT",
      _write("l.json", json.dumps({"counts": [[1e307] * 8] * 2}))),
    C("counts-1e307-csv", "sizes", ["loads", "{tmp}/r0.csv"], "MAX_LOAD_COUNT",
      _write("r0.csv", "layer_id,expert_id,count\n0,0,1e307\n0,1,3\n")),
    C("loads-json-experts-over-limit", "sizes", ["loads", "{tmp}/l.json"], "MAX_EXPERTS",
      _write("l.json", json.dumps({"counts": [[1] * 5000]}))),
    C("scenario-loads-over-limit", "sizes", ["plan", "{tmp}/s.json", "-o", "{tmp}/out"], "MAX_STEPS",
      _all(_npz_header("big.npz", (10**9, 61, 384)), lambda t: _scenario("s.json", loads=str(t / "big.npz"))(t))),
    C("deploy-gpus-1e9", "sizes", [*DEP[:-1], "1000000000"], "--gpus"),
    C("estimate-tp-1e5", "sizes", [*EST, "--tp", "100000"], "--tp"),
    C("cluster-iterations-1e9", "sizes", [*CL, "--iterations", "1000000000"], "--iterations"),
    C("fleet-max-instance-gpus", "sizes", [*FL, "--max-instance-gpus", "100000"], "--max-instance-gpus"),
    C("fleet-available-1e12", "sizes", [*FL, "--available", "h100=1e12"], "MAX_GPUS"),
    C("collect-tokens-1e12", "sizes", ["collect", "-m", "qwen3-moe-tiny", "--tokens", "1000000000000", "-o", "{tmp}/c.npz"],
      "--tokens"),
    # ---- bad values (items 7, 8) --------------------------------------------------------------
    C("budget-gb-nan", "values", [*R, "--budget-gb", "nan"], "--budget-gb", _LOADS),
    C("budget-gb-inf", "values", [*R, "--budget-gb", "inf"], "--budget-gb", _LOADS),
    C("synth-seed-negative", "values", ["synth", "-o", "{tmp}/s.npz", "--seed", "-1"], "--seed"),
    C("time-limit-negative", "values", [*R, "--time-limit-s", "-1"], "--time-limit-s", _LOADS),
    C("time-limit-nan", "values", [*R, "--time-limit-s", "nan"], "--time-limit-s", _LOADS),
    C("swap-time-limit-nan", "values", [*R, "--swap-time-limit-s", "nan"], "--swap-time-limit-s", _LOADS),
    C("swap-time-limit-negative", "values", [*R, "--swap-time-limit-s", "-1"], "--swap-time-limit-s", _LOADS),
    C("swap-time-s-old-spelling", "values", [*R, "--swap-time-s", "nan"], "--swap-time-limit-s", _LOADS),
    C("certify-time-s-old-spelling", "values", [*R, "--certify-time-s", "nan"], "--time-limit-s", _LOADS),
    C("estimate-max-batch-tokens-0", "values", [*EST, "--max-batch-tokens", "0"], "--max-batch-tokens"),
    C("estimate-memory-utilization-nan", "values", [*EST, "--memory-utilization", "nan"], "--memory-utilization"),
    C("replan-algorithm-none", "values", [*RP, "--algorithm", "none"], "--algorithm"),
    C("replan-tolerance-nan", "values", [*RP, "--tolerance-b", "nan"], "--tolerance-b"),
    C("replan-tolerance-negative", "values", [*RP, "--tolerance-b", "-1"], "--tolerance-b"),
    C("replan-every-zero", "values", [*RP, "--every", "10,0"], "--every"),
    C("replan-thresholds-nan", "values", [*RP, "--thresholds", "0.8,nan"], "--thresholds"),
    C("synth-top-k-above-experts", "values", ["synth", "-o", "{tmp}/s.npz", "--num-experts", "8", "--top-k", "9"], "--top-k"),
    C("deploy-rate-nan", "values", [*DEP[:-2], "--rate", "nan"], "--rate"),
    C("deploy-ttft-inf", "values", ["deploy", "-m", "mixtral-8x7b", "-g", "h100", "--ttft-ms", "inf", "--tpot-ms", "50",
                                    "--gpus", "8"], "--ttft-ms"),
    C("deploy-time-limit-negative", "values", [*DEP, "--time-limit-s", "-1"], "--time-limit-s"),
    C("cluster-weight-share-above-1", "values", [*CL, "--max-weight-share", "2"], "--max-weight-share"),
    C("cluster-seed-negative", "values", [*CL, "--seed", "-5"], "--seed"),
    C("fleet-balancedness-nan", "values", [*FL, "--balancedness", "nan"], "--balancedness"),
    C("fleet-price-nan", "values", [*FL, "--price", "h100=nan"], "--price"),
    C("apply-timeout-negative", "values", [*AP, "--timeout-s", "-1"], "--timeout-s", _PLAN),
    C("apply-kill-rank-negative", "values", [*AP, "--kill-rank", "-1"], "--kill-rank", _PLAN),
    C("profile-threads-zero", "values", ["profile", "-o", "{tmp}/p.csv", "--threads", "0"], "--threads"),
    C("collect-seed-negative", "values", ["collect", "-m", "qwen3-moe-tiny", "--tokens", "10", "--seed", "-1",
                                          "-o", "{tmp}/c.npz"], "--seed"),
    # ---- scenario files (items 7, 8) ----------------------------------------------------------
    C("scenario-string-gpus", "scenario", ["plan", "{tmp}/s.json", "-o", "{tmp}/out"], "num_gpus",
      _scenario("s.json", num_gpus="8")),
    C("scenario-fractional-redundant", "scenario", ["plan", "{tmp}/s.json", "-o", "{tmp}/out"], "redundant_slots",
      _scenario("s.json", redundant_slots=8.5)),
    C("scenario-all-zero-loads", "scenario", ["plan", "{tmp}/s.json", "-o", "{tmp}/out"], "every count",
      _all(_npz("z.npz", np.zeros((32, 8))), lambda t: _scenario("s.json", loads=str(t / "z.npz"))(t))),
    C("scenario-not-utf8", "scenario", ["plan", "{tmp}/s.json", "-o", "{tmp}/out"], "UTF-8", _write("s.json", BAD_UTF8)),
    C("scenario-gpus-1e9", "scenario", ["plan", "{tmp}/s.json", "-o", "{tmp}/out"], "num_gpus",
      _scenario("s.json", num_gpus=10**9)),
    # ---- unreadable inputs of every kind (items 7, 12) ----------------------------------------
    C("plan-not-utf8", "input-files", ["verify", "{tmp}/p.json", "--loads", "builtin:mistral-c4"], "UTF-8",
      _write("p.json", BAD_UTF8)),
    C("plan-symlink-loop", "input-files", ["export", "{tmp}/p.json", "--target", "vllm", "-o", "{tmp}/v.jsonl"],
      "symlink loop", _loop("p.json")),
    C("loads-json-not-utf8", "input-files", ["loads", "{tmp}/l.json"], "UTF-8", _write("l.json", BAD_UTF8)),
    C("loads-csv-not-utf8", "input-files", ["loads", "{tmp}/r0.csv"], "UTF-8", _write("r0.csv", BAD_UTF8)),
    C("loads-jsonl-not-utf8", "input-files", ["loads", "{tmp}/v.jsonl"], "UTF-8", _write("v.jsonl", BAD_UTF8)),
    C("loads-npz-symlink-loop", "input-files", ["loads", "{tmp}/x.npz"], "symlink loop", _loop("x.npz")),
    C("loads-pt-symlink-loop", "input-files", [*R[:1], "{tmp}/d.pt", *R[2:]], "symlink loop", _loop("d.pt")),
    C("cluster-yaml-not-utf8", "input-files", ["cluster", "{tmp}/c.yaml", "-m", "mixtral-8x7b"], "UTF-8",
      _write("c.yaml", BAD_UTF8)),
    C("fleet-file-symlink-loop", "input-files", [*FL, "--fleet-file", "{tmp}/f.yaml"], "symlink loop", _loop("f.yaml")),
    C("fleet-profile-table-not-utf8", "input-files", [*FL, "--profile-table", "{tmp}/t.csv"], "UTF-8",
      _write("t.csv", BAD_UTF8)),
    C("cluster-yaml-symlink-loop", "input-files", ["cluster", "{tmp}/c.yaml", "-m", "mixtral-8x7b"], "symlink loop",
      _loop("c.yaml")),
    C("fleet-trace-not-utf8", "input-files", [*FL, "--trace", "{tmp}/t.csv"], "UTF-8", _write("t.csv", BAD_UTF8)),
    C("deploy-loads-symlink-loop", "input-files", [*DEP, "--loads", "{tmp}/x.npz"], "symlink loop", _loop("x.npz")),
    C("trace-symlink-loop", "input-files", [*DEP, "--trace", "{tmp}/t.csv"], "symlink loop", _loop("t.csv")),
    C("estimate-profile-csv-not-utf8", "input-files", [*EST, "--profile", "{tmp}/prof.csv"], "UTF-8",
      _write("prof.csv", BAD_UTF8)),
    C("gpu-yaml-not-utf8", "input-files", ["estimate", "-m", "mixtral-8x7b", "-g", "{tmp}/g.yaml", "--batch", "1",
                                           "--isl", "16", "--osl", "16"], "UTF-8", _write("g.yaml", BAD_UTF8)),
    C("model-yaml-1e20-layers", "sizes", ["estimate", "-m", "{tmp}/m.yaml", "-g", "h100", "--batch", "1", "--isl", "16",
                                          "--osl", "16"], "MAX_LAYERS", _model_yaml("m.yaml", num_hidden_layers=10**20)),
    C("model-yaml-1e20-experts", "sizes", ["estimate", "-m", "{tmp}/m.yaml", "-g", "h100", "--batch", "1", "--isl", "16",
                                           "--osl", "16"], "MAX_EXPERTS", _model_yaml("m.yaml", num_routed_experts=10**20)),
    # ---- outputs (items 4, 7, 9, 10) ----------------------------------------------------------
    C("output-in-proc", "outputs", ["synth", "-o", "/proc/moeplan-x.npz", "--steps", "2"], "--output"),
    C("output-dir-missing", "outputs", ["synth", "-o", "{tmp}/nodir/x.npz", "--steps", "2"], "does not exist"),
    C("output-is-a-directory", "outputs", ["synth", "-o", "{tmp}/adir", "--steps", "2"], "is a directory", _dir("adir")),
    C("output-parent-is-a-file", "outputs", ["synth", "-o", "{tmp}/f/x.npz", "--steps", "2"], "--output",
      _write("f", "a file")),
    C("replicas-output-is-input", "outputs", [*R, "-o", "{tmp}/x.npz"], "also an input", _LOADS),
    C("replicas-output-is-input-via-symlink", "outputs", [*R, "-o", "{tmp}/link.npz"], "also an input",
      _all(_LOADS, _symlink("link.npz", "x.npz"))),
    C("export-output-is-plan", "outputs", ["export", "{tmp}/p.json", "--target", "vllm", "-o", "{tmp}/p.json"],
      "also an input", _PLAN),
    C("migrate-output-is-current", "outputs", ["migrate", "{tmp}/cur.json", "{tmp}/new.json", "-o", "{tmp}/cur.json"],
      "also an input", _all(_write("cur.json", "{}"), _write("new.json", "{}"))),
    C("migrate-target-plan-is-new", "outputs", ["migrate", "{tmp}/cur.json", "{tmp}/new.json", "--target-plan",
                                                "{tmp}/new.json"], "also an input",
      _all(_write("cur.json", "{}"), _write("new.json", "{}"))),
    C("migrate-both-outputs-one-file", "outputs", ["migrate", "{tmp}/p.json", "{tmp}/p.json", "-o", "{tmp}/o.json",
                                                   "--target-plan", "{tmp}/o.json"], "--target-plan", _PLAN),
    C("migrate-old-output-kept-when-target-dir-missing", "outputs",
      ["migrate", "{tmp}/p.json", "{tmp}/p.json", "-o", "{tmp}/old.json", "--target-plan", "{tmp}/nodir/t.json"],
      "--target-plan", _all(_PLAN, _OLD)),
    C("synth-old-output-kept-on-bad-top-k", "outputs",
      ["synth", "-o", "{tmp}/old.json", "--num-experts", "48", "--top-k", "64"], "--top-k", _OLD),
    C("plan-directory-in-the-way", "outputs", ["plan", "-o", "{tmp}/d"], "summary.txt",
      _all(_dir("d/summary.txt"), _write("d/plan.json", "old plan"))),
    C("plan-out-dir-is-a-file", "outputs", ["plan", "-o", "{tmp}/d"], "--out-dir", _write("d", "a file")),
    C("profile-output-dir-missing", "outputs", ["profile", "-o", "{tmp}/nodir/p.csv", "--quick"], "--output"),
    C("profile-sidecar-in-the-way", "outputs", ["profile", "-o", "{tmp}/p.csv", "--quick"], "p.provenance.json",
      _all(_write("p.csv", "old csv"), _dir("p.provenance.json"))),
    C("replan-plot-dir-missing", "outputs", [*RP, "--plot", "{tmp}/nodir/p.png"], "--plot"),
    C("replicas-plot-in-proc", "outputs", [*R, "--plot", "/proc/moeplan-p.png"], "--plot", _LOADS),
    C("apply-state-dir-missing", "outputs", [*AP, "--state", "{tmp}/nodir/s.json"], "--state", _PLAN),
    C("apply-state-is-output", "outputs", [*AP, "-o", "{tmp}/s.json", "--state", "{tmp}/s.json"], "--state", _PLAN),
    C("apply-output-is-plan", "outputs", [*AP, "-o", "{tmp}/p.json"], "also an input", _PLAN),
    C("deploy-output-dir-missing", "outputs", [*DEP, "-o", "{tmp}/nodir/d.json"], "--output"),
    C("cluster-output-is-a-directory", "outputs", [*CL, "-o", "{tmp}/adir"], "is a directory", _dir("adir")),
    C("fleet-plot-in-proc", "outputs", [*FL, "--plot", "/proc/moeplan-f.png"], "--plot"),
    C("collect-output-dir-missing", "outputs", ["collect", "-m", "qwen3-moe-tiny", "--tokens", "10", "-o",
                                                "{tmp}/nodir/c.npz"], "--output"),
    # the same checks through the installed entry point (a real process, its own stderr)
    C("subprocess-output-in-proc", "outputs", ["synth", "-o", "/proc/moeplan-x.npz", "--steps", "2"], "--output",
      inprocess=False, timeout_s=60),
    C("subprocess-npz-header-1e9", "sizes", ["replicas", "{tmp}/big.npz", "-m", "deepseek-v3", "--gpus", "64"],
      "MAX_STEPS", _npz_header("big.npz", (10**9, 61, 384)), inprocess=False, timeout_s=60),
]


@pytest.mark.parametrize(
    "case", [c if c.inprocess else pytest.param(c, marks=pytest.mark.slow) for c in CASES], ids=lambda c: c.id
)
def test_bad_input(case, tmp_path):
    check_case(case, tmp_path)


def test_corpus_size_and_ids():
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)
