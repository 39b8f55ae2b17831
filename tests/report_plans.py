"""Small plans of every kind for the report tests (tests/test_report.py, tests/test_report_browser.py).

Each returns ``(document, ReportInputs)``: the plan (or migration schedule) and the inputs that verify it.
"""

from __future__ import annotations

import numpy as np

from planner.report import ReportInputs

FLEET_TABLE = """gpu,gpus_per_instance,input_tokens,output_tokens,max_rate_req_per_s
l4,1,512,128,2.0
l4,1,4096,512,0.2
h100,1,512,128,8.0
h100,1,4096,512,2.0
"""

KINDS = ("replicas", "deployment", "fleet", "cluster", "migration")


def replicas():
    from planner import builtin_loads, plan_replicas

    loads = builtin_loads("olmoe-arxiv")
    return plan_replicas(loads, "olmoe-1b-7b", num_gpus=8), ReportInputs(loads=loads, gpu="h100")


def deployment(rate_points: int = 3):
    from planner import plan_deployment
    from planner.inputs import SLO

    r = plan_deployment("qwen3-30b-a3b", "h100", SLO(1000, 50, rule="percentile"), isl=1024, osl=128, num_gpus=2,
                        num_requests=200, max_candidates_per_role=1, alternatives=1)
    return r.plan, ReportInputs(rate_points=rate_points)


def fleet(tmp_path):
    from planner import plan_fleet
    from planner.inputs import Workload

    table = tmp_path / "profile.csv"
    table.write_text(FLEET_TABLE)
    n_short, n_long = 30, 10
    n = n_short + n_long
    w = Workload(np.arange(n) * 0.1, [200] * n_short + [3000] * n_long, [50] * n_short + [400] * n_long, "test mix")
    res = plan_fleet(None, None, None, w, profile_table=table, rate_req_per_s=10.0, prices={"l4": 0.8, "h100": 3.78})
    return res.plan, ReportInputs()


def cluster():
    from planner import plan_cluster
    from planner.inputs import read_cluster

    name = "helix:single24-llama2-70b"
    return plan_cluster(name, iterations=0).plan, ReportInputs(cluster=read_cluster(name))


def migration():
    from planner import builtin_loads, plan_replicas
    from planner.migration import plan_migration

    old = plan_replicas(builtin_loads("olmoe-arxiv"), "olmoe-1b-7b", num_gpus=8)
    new = plan_replicas(builtin_loads("olmoe-github"), "olmoe-1b-7b", num_gpus=8)
    return plan_migration(old, new).to_dict(), ReportInputs()


def make(kind: str, tmp_path):
    return {"replicas": replicas, "deployment": deployment, "cluster": cluster, "migration": migration,
            "fleet": lambda: fleet(tmp_path)}[kind]()
