"""The runtime numbers quoted in README.md, docs/runtime.md, docs/collect.md and docs/migration.md come
from one command, ``python docs/regen_runtime_numbers.py`` (issue 16): the closed loop, the staging
table, the rows over seeds, docs/collect.md's tiny models and router fit, docs/runtime.md's
``counts_report`` sample and docs/migration.md's example.

Fast: the docs' markers hold exactly what docs/runtime_numbers.json (the last regeneration) recorded,
so no quoted number was edited by hand, and the comparison leaves out times only. Slow: the command
runs again (~3.5 min on 2 cores) in ``--check`` mode and fails when a number drifted.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "regen_runtime_numbers.py"


def _regen():
    spec = importlib.util.spec_from_file_location("regen_runtime_numbers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_docs_quote_the_last_regeneration():
    regen = _regen()
    record = json.loads(regen.NUMBERS.read_text())
    seen = set()
    for doc in regen.DOCS:
        text = doc.read_text(encoding="utf-8")
        new, unknown = regen.rewrite(text, record["values"], record["blocks"])
        assert not unknown, f"{doc.name}: markers the command does not produce: {unknown}"
        assert new == text, f"{doc.name}: a quoted runtime number differs from docs/runtime_numbers.json"
        seen |= {k for k, _ in regen._INLINE.findall(text)} | {m.group(2) for m in regen._BLOCK.finditer(text)}
    assert {"closed_loop_output", "collect_example", "staging_table", "cl_transfers", "bench_verdict",  # loop, rows
            "collect_json_example", "qwen3_params", "q_s0_l2", "q_un_l0", "m_s1_kl", "convert_diff_ds3",  # collect
            "counts_report", "ws_det_rows",  # workers
            "migration_example", "sav_ds3_stepaware_4_steps0", "sav_changed"} <= seen


def test_check_leaves_out_times_only():
    regen = _regen()
    old = ("a <!-- n:rows -->100<!-- /n --> b <!-- n:fwd_t -->812 (790–850) ms<!-- /n -->\n"
           "<!-- block:out -->\n```\nloads written in 9.5 s (model ready in 8.6 s)\nforward 812 (790-850) ms; 219 copies; "
           "paired change -1 % (-15 to +9 %)\n  measured rows         [256, 258]\n  step ms, median of 3 [9.47, 10.89]\n"
           "  expert kernels ms min [0.53, 0.64]\n```\n"
           "<!-- /block -->\n")
    same, unknown = regen.rewrite(old, {"rows": "100", "fwd_t": "700 (650–720) ms"}, {
        "out": "loads written in 12.1 s (model ready in 10.0 s)\nforward 700 (650-720) ms; 219 copies; "
               "paired change -5 % (-9 to +16 %)\n  measured rows         [256, 258]\n  step ms, median of 3 [25.1, 22.85]\n"
               "  expert kernels ms min [0.7, 0.8]"})
    assert not unknown and regen.drift(old, same) == []
    moved, _ = regen.rewrite(old, {"rows": "101", "fwd_t": "1 ms"}, {"out": "loads written in 9.5 s\nforward 1 ms; 212 copies"})
    problems = regen.drift(old, moved)
    assert any(p.startswith("rows:") for p in problems) and any("block out" in p for p in problems)
    rows_moved = old.replace("[256, 258]", "[257, 257]")  # measured rows are compared, the ms lists not
    assert any("block out" in p for p in regen.drift(old, rows_moved))
    assert not any(p.startswith("fwd_t") for p in problems)
    _, unknown = regen.rewrite("<!-- n:nope -->1<!-- /n -->", {}, {})
    assert unknown == ["nope"]


@pytest.mark.slow  # runs collect, replicas, apply on 4 workers, the rows over 5 seeds, the fit and migration tables (~3.5 min)
@pytest.mark.skipif(shutil.which("bash") is None, reason="the closed loop is a bash script")
def test_regenerated_numbers_match_the_docs():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    res = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "match the docs" in res.stdout


def test_unfitted_routers_differ_from_the_fitted_only_in_the_routers():
    """``load_model(name, fit_routers=False)``: the "routers not fitted" rows of docs/collect.md."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from planner.runtime import hf

    fitted, raw = hf.load_model("mixtral-tiny").state_dict(), hf.load_model("mixtral-tiny", fit_routers=False).state_dict()
    changed = {k for k in fitted if not torch.equal(fitted[k], raw[k])}
    assert changed and all(k.endswith("mlp.gate.weight") for k in changed), changed
