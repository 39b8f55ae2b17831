"""The deployment plan (``kind: "deployment"``, :class:`planner.plans.DeploymentPlan`) of a search's result.

The plan records what the verifier needs to re-simulate every deployment it lists: the workload's
hash and how to rebuild it, each pool's cost-model arguments, budgets and counts, and the simulated
rate, attainment and percentiles. No wall times: the same inputs give the same bytes.
"""

from __future__ import annotations

import math

from planner import __version__
from planner.common.numerics import round_float
from planner.plans.schema import (
    DeploymentInputs,
    DeploymentPlan,
    DeploymentRecord,
    PoolRecord,
    SearchReport,
    SloRecord,
    ToolInfo,
    WorkloadRef,
)

__all__ = ["build_deployment_plan", "deployment_record"]


def _f(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round_float(float(x))


def deployment_record(setup, d) -> DeploymentRecord:
    """One simulated deployment as the plan records it."""
    from planner.deploy.search import cost_args

    pools = []
    for s, n in zip(d.scores, d.counts):
        c = s.candidate
        inst = c.instance
        pools.append(PoolRecord(
            role=c.role, layout=inst.label, gpus_per_instance=inst.num_gpus, instances=int(n),
            token_budget=c.token_budget, max_batch_size=c.max_batch_size, kv_capacity_tokens=int(inst.kv_tokens),
            balancedness=_f(inst.imbalance.balancedness), expert_slots_per_gpu=inst.imbalance.expert_slots_per_gpu,
            cost=cost_args(setup, c), alone_goodput_req_per_s=_f(s.goodput_req_per_s)))
    return DeploymentRecord(
        mode=d.mode, xpyd=d.xpyd, pools=pools, num_gpus=d.num_gpus, nodes=[list(r) for r in d.nodes],
        rate_req_per_s=_f(d.rate_req_per_s), num_requests=d.num_requests, arrivals=setup.arrivals, seed=setup.seed,
        attainment=_f(d.attainment), ttft_ms=_f(d.ttft_ms), tpot_ms=_f(d.tpot_ms), meets_slo=bool(d.meets_slo),
        tokens_per_s_per_gpu=_f(d.tokens_per_s_per_gpu), tokens_per_s_per_user=_f(d.tokens_per_s_per_user),
        concurrency=d.concurrency)


def build_deployment_plan(setup, request: dict, deployments, notes, report, replica_plan) -> DeploymentPlan:
    """The plan of the first (chosen) deployment, the others as alternatives."""
    from planner.deploy.result import DeploymentResult

    w = setup.workload
    st = w.stats()
    wref = WorkloadRef(sha256=w.sha256(), source=w.source or "workload", spec=dict(setup.workload_spec),
                       num_requests=len(w), input_tokens_mean=_f(st.input_tokens_mean),
                       output_tokens_mean=_f(st.output_tokens_mean), input_tokens_p90=_f(st.input_tokens_p[90]),
                       output_tokens_p90=_f(st.output_tokens_p[90]))
    slo = setup.slo
    params = {k: request[k] for k in ("num_gpus", "rate_req_per_s", "objective", "node_local", "max_instances_per_node",
                                         "cost_model", "load")}
    params.update({"num_requests": setup.num_requests, "seed": setup.seed})
    imbalance = sorted({p.candidate.instance.imbalance.source for d in deployments for p in d.scores})
    comparison = DeploymentResult(request, tuple(deployments), (), (), None, ()).comparison
    rep = SearchReport(status=report.status if report else "error", stop_reason=report.stop_reason if report else "",
                       figure_of_merit=request["figure_of_merit"],
                       objective=_f(report.objective) if report and report.objective is not None else None,
                       solver=report.solver if report else "", solver_version=report.solver_version if report else "")
    return DeploymentPlan(
        tool=ToolInfo(version=__version__),
        inputs=DeploymentInputs(model=str(setup.model), gpu=setup.spec.id, gpus_per_node=setup.gpus_per_node,
                                slo=SloRecord(ttft_ms=slo.ttft_ms, tpot_ms=slo.tpot_ms, percentile=slo.percentile,
                                              attainment_target=slo.attainment_target, rule=slo.rule),
                                workload=wref, parameters=params, precision=setup.precision, imbalance_source=imbalance),
        chosen=deployment_record(setup, deployments[0]),
        alternatives=[deployment_record(setup, d) for d in deployments[1:]],
        comparison=comparison, report=rep, replica_plan=replica_plan)
