"""DistServe's published placement, reproduced with its own coefficients (docs/deploy.md, "DistServe").

DistServe (OSDI'24) README: OPT-13B on one node of 4 x A100-80GB, ShareGPT, TTFT 200 ms / TPOT 100 ms at
p90 (the placement-search script's percentile rule), 300 requests per probe, low node-affinity search
(algorithm 2: one prefill and one decode segment per node) -> prefill TP2 PP1 + decode TP1 PP1. Lengths
here are synthetic ShareGPT-like: log-normal, mean prompt 487 / output 210 tokens, CV 1.5 (heavy tails),
capped at 1536 / 512 (OPT's 2048-token context).
"""

from __future__ import annotations

import pytest

from planner.deploy import plan_deployment
from planner.inputs import SLO, LengthDist, poisson_workload


def _sharegpt_like(seed: int):
    return poisson_workload(1.0, 300, input_tokens=LengthDist.lognormal(487, 1.5, max_tokens=1536),
                            output_tokens=LengthDist.lognormal(210, 1.5, max_tokens=512), seed=seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_search_picks_prefill_tp2_decode_tp1(seed):
    """DistServe's protocol: goodput is what 300-request probes meet (no steady-state cap)."""
    r = plan_deployment("opt-13b", "a100-80g", SLO(200, 100, rule="percentile"), _sharegpt_like(seed), num_gpus=4,
                        gpus_per_node=4, node_local=True, max_instances_per_node=1, cost_model="distserve",
                        objective="max_rate_per_gpu", num_requests=300, alternatives=6, steady_state_cap=False)
    best = r.best_disaggregated
    assert (best.xpyd, best.scores[0].candidate.instance.label, best.scores[1].candidate.instance.label) == \
        ("1P1D", "tp2pp1", "tp1pp1")
    # the node budget binds: every disaggregated unit fits one node of 4 GPUs
    assert all(d.num_gpus <= 4 for d in r.deployments)
    # why the node budget must bind: decode TP2 holds 2.5x the KV of TP1 (1.23x per GPU), so per-GPU decode
    # goodput alone leans to the larger TP
    kv = {s.candidate.instance.label: s.candidate.instance.kv_tokens / s.candidate.num_gpus
          for s in r.scores if s.candidate.role == "decode"}
    assert kv["tp2pp1"] > kv["tp1pp1"]
    assert r.plan.chosen.meets_slo


def test_steady_state_cap_holds_goodput_to_what_the_pools_sustain():
    """A 300-request probe lets decode TP1 absorb a burst it cannot sustain: the same deployment (prefill TP2 +
    decode TP1) serves far less over 3,000 requests. With the cap (the default), no deployment's goodput
    exceeds its pools' steady-state bound, and the pick's goodput is nearer the long run's than the probe's."""
    from planner.deploy.end_to_end import steady_bound
    from planner.perf import Pool, distserve_cost, goodput

    slo = SLO(200, 100, rule="percentile")
    kw = dict(num_gpus=4, gpus_per_node=4, node_local=True, max_instances_per_node=1, cost_model="distserve",
              objective="max_rate_per_gpu", num_requests=300, alternatives=6)
    capped = plan_deployment("opt-13b", "a100-80g", slo, _sharegpt_like(0), **kw)
    free = plan_deployment("opt-13b", "a100-80g", slo, _sharegpt_like(0), steady_state_cap=False, **kw)
    assert capped.request["steady_state_cap"] is True and free.request["steady_state_cap"] is False
    for d in capped.deployments:
        assert d.rate_req_per_s <= steady_bound(d.scores, d.counts) * (1 + 1e-9)
    label = "1P1D (p) tp2pp1 (d) tp1pp1"
    rate = {name: [d.rate_req_per_s for d in r.deployments if d.label == label][0]
            for name, r in (("capped", capped), ("free", free))}
    long_run = poisson_workload(1.0, 3000, input_tokens=LengthDist.lognormal(487, 1.5, max_tokens=1536),
                                output_tokens=LengthDist.lognormal(210, 1.5, max_tokens=512), seed=0)
    pools = [Pool(distserve_cost("opt-13b", tp=2), phase="prefill"), Pool(distserve_cost("opt-13b", tp=1), phase="decode")]
    sustained = goodput(long_run, pools, slo, rel_tol=0.04).rate_req_per_s
    assert sustained < rate["capped"] < rate["free"]
    assert abs(rate["capped"] - sustained) < abs(rate["free"] - sustained)
