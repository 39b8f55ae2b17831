"""planner.sweep: a grid of deployment searches in grid order, the same rows wherever it runs, cost per
million tokens where a price is known; local processes and a local Dask cluster (slow)."""

import math

import pytest

import planner
from planner.errors import InputError
from planner.profiles import cost_per_million_tokens_usd
from planner.whatif import COLUMNS, SweepTable

SMALL = dict(isl=1024, osl=128, num_requests=300, max_candidates_per_role=2, alternatives=1)
GRID = dict(slos=[(1000, 50), (1, 1)], num_gpus=[2], **SMALL)


@pytest.fixture(scope="module")
def serial():
    return planner.sweep("qwen3-30b-a3b", ["h100", "a100-80g"], executor="serial", prices={"a100-80g": 2.0}, **GRID)


def test_rows_in_grid_order_with_prices_and_cost(serial):
    assert isinstance(serial, SweepTable) and len(serial) == 4
    assert [(r["gpu"], r["ttft_ms"]) for r in serial] == [("h100", 1000), ("h100", 1), ("a100-80g", 1000), ("a100-80g", 1)]
    assert all(list(r) == list(COLUMNS) for r in serial)
    ok, infeasible = serial[0], serial[1]
    assert ok["feasible"] and ok["num_gpus"] <= 2 and ok["price_per_gpu_hour_usd"] == 3.78  # the profile's price
    assert serial[2]["price_per_gpu_hour_usd"] == 2.0  # given
    assert math.isclose(ok["cost_per_hour_usd"], ok["num_gpus"] * 3.78)
    assert math.isclose(ok["cost_per_million_tokens_usd"],
                        ok["cost_per_hour_usd"] / (ok["rate_req_per_s"] * (1024 + 128) * 3600) * 1e6)
    assert not infeasible["feasible"] and infeasible["note"] and infeasible["cost_per_million_tokens_usd"] is None


def test_columnar_and_dataframe(serial):
    cols = serial.columns()
    assert list(cols) == list(COLUMNS) and all(len(v) == len(serial) for v in cols.values())
    pd = pytest.importorskip("pandas")
    df = serial.to_dataframe()
    assert isinstance(df, pd.DataFrame) and df.shape == (4, len(COLUMNS)) and "cost_per_million_tokens_usd" in serial.table()


@pytest.mark.parametrize("kw, param", [
    (dict(num_gpus=[2], rates=[1.0]), "rates"),
    (dict(num_gpus=None), "rates"),
    (dict(num_gpus=[2], slos=[(1,)]), "slos"),
    (dict(num_gpus=[2], executor="gpu-cloud"), "executor"),
    (dict(num_gpus=[2], prices={"t4": 1.0}), "prices"),
    (dict(num_gpus=[2], prices=[]), "prices"),
])
def test_bad_arguments_name_the_parameter(kw, param):
    args = {**GRID, **kw}
    with pytest.raises(InputError) as exc:
        planner.sweep("qwen3-30b-a3b", ["h100"], **args)
    assert exc.value.param == param


def test_price_scenarios_repeat_each_point_without_searching_again(serial):
    t = planner.sweep("qwen3-30b-a3b", ["h100"], executor="serial", prices=[{}, {"h100": 1.89}],
                      **{**GRID, "slos": [(1000, 50)]})
    assert [r["price_scenario"] for r in t] == [0, 1] and t[0]["price_per_gpu_hour_usd"] == 3.78
    assert {k: v for k, v in t[0].items() if "cost" not in k and "price" not in k} == \
        {k: v for k, v in serial[0].items() if "cost" not in k and "price" not in k}
    assert math.isclose(t[1]["cost_per_million_tokens_usd"], t[0]["cost_per_million_tokens_usd"] / 2)


def test_cost_formula():
    assert cost_per_million_tokens_usd(3.6, 1.0, 1000.0) == 1.0 and cost_per_million_tokens_usd(1.0, 0.0, 10.0) is None


@pytest.mark.slow
def test_local_processes_give_the_serial_rows(serial):
    par = planner.sweep("qwen3-30b-a3b", ["h100", "a100-80g"], prices={"a100-80g": 2.0}, max_workers=2, **GRID)
    assert par.records == serial.records


@pytest.mark.slow
def test_a_local_dask_cluster_gives_the_serial_rows(serial):
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed (pip install 'moeplan[dask]')")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        rows = planner.sweep("qwen3-30b-a3b", ["h100", "a100-80g"], prices={"a100-80g": 2.0}, executor=client, **GRID)
        assert len(client.scheduler_info()["workers"]) == 2
    assert rows.records == serial.records
