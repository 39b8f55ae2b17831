"""planner.cluster.fleet (GPU mix): buckets, prices and profile tables, the plan and its verifier, the CLI."""

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from planner.cli import app
from planner.cluster import plan_fleet, verify_fleet
from planner.cluster.fleet_buckets import bucket_workload, parse_edges
from planner.cluster.fleet_inputs import read_fleet_file, read_profile_table, resolve_offers
from planner.errors import Infeasible, InputError, ProfileNotFound
from planner.inputs import SLO, Workload
from planner.plans.io import read_plan, write_plan
from planner.plans.schema import FleetPlan, parse_plan_json

runner = CliRunner()

# two request sizes; l4 is cheap per req/s on short requests, h100 on long ones (Mélange's observation)
TABLE = """gpu,gpus_per_instance,input_tokens,output_tokens,max_rate_req_per_s
l4,1,512,128,2.0
l4,1,4096,512,0.2
h100,1,512,128,8.0
h100,1,4096,512,2.0
"""


def _workload(n_short=30, n_long=10):
    n = n_short + n_long
    return Workload(np.arange(n) * 0.1, [200] * n_short + [3000] * n_long, [50] * n_short + [400] * n_long,
                    "test mix")


@pytest.fixture
def table(tmp_path):
    p = tmp_path / "profile.csv"
    p.write_text(TABLE)
    return p


def _table_fleet(table, **kw):
    kw.setdefault("rate_req_per_s", 10.0)
    kw.setdefault("prices", {"l4": 0.8, "h100": 3.78})
    return plan_fleet(None, None, None, _workload(), profile_table=table, **kw)


# -- buckets and inputs --------------------------------------------------------------------------------------
def test_buckets_split_the_rate_by_request_share():
    bs = bucket_workload(_workload(), 8.0, input_edges=(512, 4096), output_edges=(128, 512))
    assert [(b.input_tokens_max, b.output_tokens_max, b.num_requests) for b in bs] == [(512, 128, 30), (4096, 512, 10)]
    assert sum(b.share for b in bs) == pytest.approx(1.0)
    assert [b.rate_req_per_s for b in bs] == pytest.approx([6.0, 2.0])
    assert bs[1].max_context_tokens == 3400 and bs[1].label == "in 513-4096 / out 129-512"
    with pytest.raises(InputError, match="10 of 40 requests are longer"):
        bucket_workload(_workload(), 8.0, input_edges=(512,), output_edges=(128,), open_ended=False)
    with pytest.raises(InputError, match="strictly increasing"):
        parse_edges("64,32", "input_edges")


def test_offers_default_to_profile_prices_and_check_names():
    (o,) = resolve_offers(["h100"])
    assert o.price_per_gpu_hour_usd > 0 and o.price_source.startswith("profile") and o.available_gpus is None
    with pytest.raises(ProfileNotFound):
        resolve_offers(["h1000"])
    with pytest.raises(InputError, match="prices") as e:
        resolve_offers(["l4"], {"l4": -1.0})
    assert e.value.param == "prices"
    with pytest.raises(InputError, match="not among the GPU types"):
        resolve_offers(["l4"], {"h100": 3.0})
    with pytest.raises(InputError, match="an integer"):
        resolve_offers(["l4"], available_gpus={"l4": 2.5})


def test_fleet_file_and_profile_table_readers(tmp_path, table):
    f = tmp_path / "fleet.yaml"
    f.write_text("gpus:\n  h100: {price_per_gpu_hour_usd: 3.5, available_gpus: 4}\n  l4: {}\n")
    assert read_fleet_file(f) == (["h100", "l4"], {"h100": 3.5}, {"h100": 4})
    f.write_text("gpus:\n  h100: {price: 3.5}\n")
    with pytest.raises(InputError, match="unknown field"):
        read_fleet_file(f)
    t = read_profile_table(table)
    assert t.input_edges == (512, 4096) and t.output_edges == (128, 512) and t.gpus == ["l4", "h100"]
    bad = tmp_path / "bad.csv"
    bad.write_text(TABLE.replace("0.2", "-0.2"))
    with pytest.raises(InputError, match="line 3: max_rate_req_per_s"):
        read_profile_table(bad)


# -- the plan -------------------------------------------------------------------------------------------------
def test_table_fleet_mixes_types_and_beats_single_types(table, tmp_path):
    r = _table_fleet(table)
    plan = r.plan
    # short: 7.5 req/s; long: 2.5 req/s. l4 for short (3.75 -> with long on h100 1.25 -> 2): 4 x l4 + 2 x h100
    # is dearer than splitting the long bucket; the optimum is checked against brute force below
    costs = {b.name: b.cost_per_hour_usd for b in plan.baselines}
    assert plan.cost_per_hour_usd < min(costs["l4"], costs["h100"])
    assert plan.saving_vs_best_single_type == pytest.approx(1 - plan.cost_per_hour_usd / min(costs["l4"], costs["h100"]))
    best = min(nl * 0.8 + nh * 3.78 for nl in range(20) for nh in range(8)
               if _servable(nl, nh))
    assert plan.cost_per_hour_usd == pytest.approx(best)
    assert verify_fleet(plan).ok
    path = write_plan(plan, tmp_path / "fleet.json")
    back = read_plan(path)
    assert isinstance(back, FleetPlan) and back.to_json() == plan.to_json()
    assert parse_plan_json(plan.to_json()).kind == "fleet"
    assert "saving vs the cheapest single-type fleet" in r.table()


def _servable(nl, nh):
    """Can nl x l4 and nh x h100 serve 7.5 req/s short + 2.5 req/s long? (fractional split, by hand)"""
    # put as much short load on l4 as fits, the rest on h100, then long on whichever has room (an LP on
    # two buckets and two types: checking both orders of filling is exact here)
    for order in ((0, 1), (1, 0)):
        cap = {"l4": float(nl), "h100": float(nh)}
        need = [(7.5, {"l4": 2.0, "h100": 8.0}), (2.5, {"l4": 0.2, "h100": 2.0})]
        ok = True
        for rate, rates in need:
            left = rate
            for g in (("l4", "h100") if order == (0, 1) else ("h100", "l4")):
                use = min(left, cap[g] * rates[g])
                cap[g] -= use / rates[g]
                left -= use
            ok &= left <= 1e-9
        if ok:
            return True
    return False


def test_slices_and_availability(table):
    r = _table_fleet(table, slices=2)
    assert all(x in (0.0, 0.5, 1.0) for b in r.plan.buckets for x in b.assignment) and verify_fleet(r.plan).ok
    r2 = _table_fleet(table, available_gpus={"h100": 1})
    assert r2.plan.gpu_types[1].gpus <= 1 and verify_fleet(r2.plan).ok
    with pytest.raises(Infeasible, match=r"serve at most 5.71 of the 10 req/s") as e:
        _table_fleet(table, available_gpus={"h100": 1, "l4": 1})
    assert e.value.remedy == {"rate_req_per_s": 5.714}  # 1.25 / 2.1875 of the rate, by hand


def test_a_bucket_no_type_serves_is_infeasible(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(TABLE.replace("l4,1,4096,512,0.2", "l4,1,4096,512,0").replace("h100,1,4096,512,2.0",
                                                                                "h100,1,4096,512,0"))
    with pytest.raises(Infeasible, match="no GPU type"):
        _table_fleet(p)


def test_performance_model_capacities_and_determinism():
    w = _workload(20, 20)
    kw = dict(rate_req_per_s=20.0, num_requests=60, prices={"l4": 0.8, "h100": 3.78})
    a = plan_fleet("qwen3-moe-tiny", ["l4", "h100"], SLO(1000, 50), w, **kw)
    b = plan_fleet("qwen3-moe-tiny", ["l4", "h100"], SLO(1000, 50), w, **kw)
    assert a.plan.to_json() == b.plan.to_json()
    assert a.plan.inputs.capacity_source == "performance_model"
    caps = np.array([g.capacity_req_per_s for g in a.plan.gpu_types])
    assert (caps > 0).all() and (caps[:, 0] > caps[:, 1]).all()  # short requests: more of them per second
    assert verify_fleet(a.plan).ok


def test_model_that_fits_nowhere_is_infeasible():
    with pytest.raises(Infeasible, match="fits none of the GPU types"):
        plan_fleet("deepseek-v3", ["l4"], SLO(1000, 50), _workload(), max_instance_gpus=2)


@pytest.mark.parametrize("path, value, check", [
    (("gpu_types", 0, "instances"), lambda v: v - 1 if v else v + 1, "loads"),
    (("buckets", 0, "assignment"), lambda v: [1.0] + [0.0] * (len(v) - 1), None),
    (("cost_per_hour_usd",), lambda v: v * 0.9, "cost"),
    (("gpu_types", 1, "available_gpus"), lambda v: 0, "availability"),
    (("baselines", 0, "cost_per_hour_usd"), lambda v: (v or 0) + 1, "baselines"),
])
def test_verifier_catches_tampering(table, path, value, check):
    plan = _table_fleet(table).plan
    data = json.loads(plan.to_json())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value(node[path[-1]])
    rep = verify_fleet(FleetPlan.model_validate(data))
    assert not rep.ok
    if check:
        assert check in [c.name for c in rep.failures]


# -- CLI ------------------------------------------------------------------------------------------------------
def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _trace(tmp_path):
    p = tmp_path / "trace.csv"
    w = _workload()
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"] + [
        f"2023-11-16 18:15:{t:09.6f}0,{i},{o}" for t, i, o in zip(w.arrival_s, w.input_tokens, w.output_tokens)]
    p.write_text("\n".join(rows) + "\n")
    return p


def test_cli_fleet_writes_a_plan_that_verifies(tmp_path, table):
    out = tmp_path / "fleet.json"
    res = run("fleet", "--profile-table", table, "--trace", _trace(tmp_path), "--rate", 10, "--price", "l4=0.8",
              "--price", "h100=3.78", "-o", out, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["kind"] == "fleet" and data["cost_per_hour_usd"] > 0
    ok = run("verify", out, "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True


@pytest.mark.parametrize("extra, code, text", [
    (["--gpu", "h1000"], 2, "h1000"),
    (["--price", "l4=-1"], 2, "--price: l4"),
    (["--available", "l4=1", "--available", "h100=1"], 3, "serve at most"),
    (["--price", "l4"], 2, "GPU=VALUE"),
])
def test_cli_bad_inputs_are_one_line(tmp_path, table, extra, code, text):
    res = run("fleet", "--profile-table", table, "--trace", _trace(tmp_path), "--rate", 10, *extra)
    assert res.exit_code == code, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and text in res.stderr


def test_cli_model_that_fits_nowhere_is_exit_3(tmp_path):
    res = run("fleet", "-m", "deepseek-v3", "--gpu", "l4", "--max-instance-gpus", 2, "--ttft-ms", 1000,
              "--tpot-ms", 50, "--trace", _trace(tmp_path))
    assert res.exit_code == 3, res.output
    last = res.stderr.strip().splitlines()[-1]  # progress lines come first; the error is one line, the last
    assert last.startswith("moeplan: error: ") and "fits none of the GPU types" in last
    assert re.search(r"need [0-9.]+ GB", last)  # the memory it needs
