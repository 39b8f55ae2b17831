"""The serving workers under torchrun (not the local launcher): 2 ranks, gloo, rank 0 checks."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from planner.replicas import plan_replicas  # noqa: E402
from planner.inputs.readers import builtin_loads  # noqa: E402
from planner.plans.io import write_plan  # noqa: E402

pytestmark = pytest.mark.slow  # subprocess end-to-end


def test_torchrun_serves_a_plan(tmp_path):
    plan = tmp_path / "plan.json"
    write_plan(plan_replicas(builtin_loads("mistral-github"), "mixtral-8x7b", num_gpus=2), plan)
    out = tmp_path / "result.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "planner.runtime.torchrun", str(plan), "--model", "synthetic", "--tokens", "256",
           "--repeats", "1", "--json-out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["launcher"] == "torchrun" and data["world_size"] == 2 and data["backend"] == "gloo"
    assert data["max_abs_diff"] <= 1e-5 and data["counts_match"] is True
    assert data["rank_tokens"] == data["predicted_tokens"]


def test_torchrun_wrong_world_size_is_a_clear_error(tmp_path):
    plan = tmp_path / "plan.json"
    write_plan(plan_replicas(builtin_loads("mistral-github"), "mixtral-8x7b", num_gpus=4), plan)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "planner.runtime.torchrun", str(plan), "--model", "synthetic"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert res.returncode != 0
    assert "WORLD_SIZE: the plan places experts on 4 GPUs, torchrun started 2 ranks" in res.stderr
