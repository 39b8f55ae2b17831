"""moeplan's simulator against an independent DistServe-style simpy implementation of the same rules
(benchmarks/simpy_reference.py): every request's first-token and finish times agree."""

import sys
from pathlib import Path

import numpy as np
import pytest

from planner.inputs import builtin_trace
from planner.perf import Pool, distserve_cost, simulate

pytest.importorskip("simpy")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from simpy_reference import reference_simulate  # noqa: E402


def _deployments():
    tp1, tp2 = distserve_cost("opt-13b", tp=1), distserve_cost("opt-13b", tp=2, kv_link_bytes_per_s=20e9)
    return {
        "aggregated-chunked": [Pool(tp1, 2, token_budget=1024, routing="round_robin")],
        "aggregated-whole-prompts": [Pool(tp1, 3, token_budget=4096, chunked_prefill=False, max_batch_size=32,
                                          routing="round_robin")],
        "disaggregated": [Pool(tp2, phase="prefill", token_budget=8192), Pool(tp1, phase="decode", max_batch_size=64)],
        "prefill-only": [Pool(tp2, phase="prefill", max_batch_size=4)],
    }


@pytest.mark.parametrize("name", list(_deployments()))
def test_same_times_as_the_simpy_reference(name):
    pools = _deployments()[name]
    w = builtin_trace("azure-2023-conv").head(2000).with_rate(3.0)
    res = simulate(w, pools)
    first, finish = reference_simulate(w, pools)
    assert np.allclose(res.first_token_s, first, rtol=0, atol=1e-9, equal_nan=True)
    assert np.allclose(res.finish_s, finish, rtol=0, atol=1e-9, equal_nan=True)
