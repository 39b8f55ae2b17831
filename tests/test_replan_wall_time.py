"""Re-planning in wall time: copies received per GPU (intra / inter node), fabric seconds from the GPU
profile's links, MoE time saved against the static plan, and `moeplan replan --gpu --step-rate`."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from planner.cli import app
from planner.errors import InputError
from planner.profiles import get_gpu
from planner.replicas import (ReplanPolicy, recommend_wall_time, simulate_replanning, static_policy, wall_time_rows,
                              wall_time_table)
from planner.replicas.replan import received_copies
from planner.inputs.synthetic import synthetic_trace

runner = CliRunner()


def _brute(op, og, np_, ng, D, E, gpn):
    intra, inter = np.zeros(D, int), np.zeros(D, int)
    for r in range(len(op)):
        for g in range(D):
            for e in range(E):
                need = sum(1 for s in range(len(np_[r])) if ng[r][s] == g and np_[r][s] == e) - \
                    sum(1 for s in range(len(op[r])) if og[r][s] == g and op[r][s] == e)
                if need > 0:
                    local = any(og[r][s] // gpn == g // gpn and op[r][s] == e for s in range(len(op[r])))
                    (intra if local else inter)[g] += need
    return intra, inter


@pytest.mark.parametrize("seed", range(5))
def test_received_copies_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    L, D, E, per = 3, 4, 6, 2
    sg = np.repeat(np.arange(D), per)[None].repeat(L, 0)
    op, np_ = rng.integers(0, E, (L, D * per)), rng.integers(0, E, (L, D * per))
    got = received_copies(op, sg, np_, sg, D, E, 2)
    want = _brute(op, sg, np_, sg, D, E, 2)
    assert [g.tolist() for g in got] == [w.tolist() for w in want]


@pytest.fixture(scope="module")
def simulated():
    loads = synthetic_trace(num_steps=60, num_layers=3, num_experts=64, first_layer=0, seed=1)
    kw = dict(num_gpus=8, num_nodes=2, gpu="h100")
    res = simulate_replanning(loads, "olmoe-1b-7b", [ReplanPolicy(every_steps=5, window_steps=20),
                                                      ReplanPolicy(every_steps=20, window_steps=20)], **kw)
    static = simulate_replanning(loads, "olmoe-1b-7b", [static_policy(20)], **kw)[0]
    return res, static


def test_fabric_seconds_from_the_links(simulated):
    res, static = simulated
    spec = get_gpu("h100")
    for r in res:
        assert len(r.fabric_seconds) == r.num_replans
        # at least every copy over the fastest link spread over all GPUs, at most every copy over the slowest one
        per_copy = r.bytes_moved / max(1, r.slots_moved)
        assert sum(r.fabric_seconds) >= r.bytes_moved / 8 / spec.intra_node_bytes_per_s * (1 - 1e-9)
        assert sum(r.fabric_seconds) <= r.slots_moved * per_copy / spec.inter_node_bytes_per_s * (1 + 1e-9)
    assert static.num_replans == 0 and static.fabric_seconds == () and static.policy.label == "static"


def test_wall_time_rows_weigh_saved_against_moved(simulated):
    res, static = simulated
    rows = wall_time_rows([*res, static], static, 2.0)
    for w, r in zip(rows, [*res, static]):
        steps = r.balancedness_per_step.size
        assert np.isclose(w.saved_steps, steps * max(0.0, 1 - static.mean_b / r.mean_b))
        assert np.isclose(w.saved_s, w.saved_steps / 2.0) and np.isclose(w.fabric_steps, w.fabric_s * 2.0)
        assert np.isclose(w.net_s, w.saved_s - w.fabric_s)
    assert rows[-1].net_s == 0 and recommend_wall_time(rows).net_s == max(w.net_s for w in rows)
    assert "net_s" in wall_time_table(rows)
    with pytest.raises(InputError):
        wall_time_rows(res, static, 0.0)


def test_cli_replan_in_wall_time(tmp_path):
    trace = tmp_path / "t.npz"
    runner.invoke(app, ["synth", "-o", str(trace), "--steps", "60", "--layers", "3", "--num-experts", "64", "--first-layer", "0"])
    res = runner.invoke(app, ["replan", str(trace), "-m", "olmoe-1b-7b", "--gpus", "8", "--nodes", "2", "--every", "5,20",
                              "--thresholds", "0.9", "--window", "20", "--gpu", "h100", "--step-rate", "5", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["step_rate_per_s"] == 5 and {w["policy"] for w in data["wall_time"]} == {"every 5", "every 20", "b < 0.9", "static"}
    assert data["recommended_wall_time"] in {w["policy"] for w in data["wall_time"]}
    assert all(p["fabric_seconds"] is not None for p in data["policies"])
