"""Solver-free verifier of a deployment plan: rebuild every pool and re-simulate every recorded deployment.

The simulator is not a solver: the checks rebuild each pool's cost model from the arguments the plan
records (:func:`planner.perf.latency_model_cost` or :func:`planner.perf.distserve_cost`), rebuild the
requests and compare every recorded number. Checks (each reported by name):

1. ``workload``    the requests rebuilt (fixed lengths) or given (a trace) hash to the recorded sha256
2. ``layouts``     every pool's layout parses, has the recorded GPUs per instance and fits the model;
                   counts times GPUs add up to the deployment's GPUs, within the GPU budget if one was set
3. ``memory``      every pool's KV capacity equals its cost model's (the memory model's)
4. ``imbalance``   the pools' balancedness and slots are the embedded replica plan's, when there is one
5. ``simulation``  the chosen deployment re-simulated at its rate: attainment, TTFT and TPOT at the
                   percentile, whether the SLO is met, tokens/s/GPU and tokens/s/user; a closed-loop
                   deployment (``concurrency`` set) re-simulated with that many clients, judged on its
                   steady window, and its rate checked against the window's served rate. The client
                   count is not re-searched: that it is the most is the search's claim, not the plan's.
6. ``alternatives`` the same for every alternative (``alternatives=False``: not re-simulated, the check
                   says so; what the search runs on its own plan before returning it, whose alternatives
                   come from the same code path as the chosen one; ``moeplan verify`` re-simulates them all)
"""

from __future__ import annotations

import math

from planner.common.numerics import close
from planner.deploy.instances import cost_from_record
from planner.inputs import SLO, Workload, poisson_workload
from planner.perf import ParallelLayout, Pool, simulate
from planner.plans.schema import DeploymentPlan
from planner.plans.verify import Check, VerifyReport
from planner.profiles import get_model

__all__ = ["verify_deployment", "deployment_pools", "deployment_workload"]


def deployment_workload(plan: DeploymentPlan, workload: Workload | None = None) -> Workload | None:
    """The requests a deployment plan was simulated on: rebuilt from the recorded seed for fixed lengths,
    else ``workload`` (the trace, which the plan does not hold; None when not given). Not hash-checked."""
    ref = plan.inputs.workload
    if ref.spec.get("kind") == "fixed":
        return poisson_workload(1.0, ref.num_requests, input_tokens=int(ref.spec["isl_tokens"]),
                                output_tokens=int(ref.spec["osl_tokens"]), seed=int(ref.spec["seed"]))
    return workload


def _workload(plan: DeploymentPlan, workload: Workload | None) -> tuple[Workload | None, Check]:
    ref = plan.inputs.workload
    workload = deployment_workload(plan, workload)
    if workload is None:
        return None, Check("workload", False, f"the plan was simulated on {ref.source}: give that trace")
    ok = workload.sha256() == ref.sha256
    return workload, Check("workload", ok, "" if ok else f"requests hash {workload.sha256()[:12]} != plan's {ref.sha256[:12]}")


def _layouts(plan: DeploymentPlan) -> Check:
    problems = []
    model = None
    if all(p.cost.get("kind") == "latency_model" for p in plan.chosen.pools):
        model = get_model(plan.inputs.model)
    budget = plan.inputs.parameters.get("num_gpus")
    for d in [plan.chosen, *plan.alternatives]:
        for p in d.pools:
            try:
                lay = ParallelLayout.parse(p.layout) if "dp" in p.layout else None
                if lay is not None and model is not None:
                    lay.validate(model, expert_slots_per_gpu=p.expert_slots_per_gpu)
                if lay is not None and lay.num_gpus != p.gpus_per_instance:
                    problems.append(f"{d.xpyd} {p.role}: {p.layout} has {lay.num_gpus} GPUs, recorded {p.gpus_per_instance}")
            except Exception as exc:  # an InputError of the layout rules
                problems.append(f"{d.xpyd} {p.role}: {exc}")
        total = sum(p.instances * p.gpus_per_instance for p in d.pools)
        if total != d.num_gpus:
            problems.append(f"{d.xpyd}: pools hold {total} GPUs, recorded {d.num_gpus}")
        if budget is not None and d.num_gpus > int(budget):
            problems.append(f"{d.xpyd}: {d.num_gpus} GPUs exceed the budget of {budget}")
        roles = [p.role for p in d.pools]
        if roles not in (["prefill", "decode"], ["both"]):
            problems.append(f"{d.xpyd}: pools {roles} are no deployment")
    return Check("layouts", not problems, "; ".join(problems[:3]))


def deployment_pools(d) -> list[Pool]:
    """The simulator pools of a recorded deployment (:class:`~planner.plans.schema.DeploymentRecord`)."""
    return [Pool(cost_from_record(dict(p.cost)), p.instances, phase=p.role, token_budget=p.token_budget,
                 max_batch_size=p.max_batch_size) for p in d.pools]


def _memory(plan: DeploymentPlan) -> Check:
    problems = []
    for d in [plan.chosen, *plan.alternatives]:
        for p in d.pools:
            cap = cost_from_record(dict(p.cost)).kv_capacity_tokens
            if cap != p.kv_capacity_tokens:
                problems.append(f"{d.xpyd} {p.role}: KV capacity {cap} != recorded {p.kv_capacity_tokens}")
    return Check("memory", not problems, "; ".join(problems[:3]))


def _imbalance(plan: DeploymentPlan) -> Check:
    rp = plan.replica_plan
    if rp is None:
        return Check("imbalance", True, "no replica plan embedded")
    held = rp.replicas.predicted.holdout_replay_balancedness_mean
    b = rp.replicas.predicted.replay_balancedness_mean if held is None else held
    slots = max(max(row) for row in rp.replicas.slots_per_gpu)
    problems = [f"{d.xpyd} {p.role}: balancedness {p.balancedness} / slots {p.expert_slots_per_gpu} are not the "
                f"plan's {b} / {slots}" for d in [plan.chosen, *plan.alternatives] for p in d.pools
                if p.expert_slots_per_gpu is not None and (not close(p.balancedness, b) or p.expert_slots_per_gpu != slots)]
    return Check("imbalance", not problems, "; ".join(problems[:3]))


def _resimulate(plan: DeploymentPlan, d, workload: Workload) -> list[str]:
    s = plan.inputs.slo
    slo = SLO(s.ttft_ms, s.tpot_ms, s.attainment_target, s.rule)
    w = workload.head(d.num_requests)
    if d.concurrency is not None:
        return _resimulate_closed(plan, d, w, slo)
    if d.rate_req_per_s <= 0:
        return [] if not d.meets_slo else [f"{d.xpyd}: rate 0 recorded as meeting the SLO"]
    res = simulate(w.with_rate(d.rate_req_per_s), deployment_pools(d))
    mean_out = float(w.output_tokens.mean())
    got = {"attainment": res.attainment(slo), "ttft_ms": res.percentile("ttft_ms", s.percentile),
           "tpot_ms": res.percentile("tpot_ms", s.percentile),
           "tokens_per_s_per_gpu": d.rate_req_per_s * mean_out / d.num_gpus}
    return _compare(d, got, res.meets(slo))


def _resimulate_closed(plan: DeploymentPlan, d, w: Workload, slo: SLO) -> list[str]:
    """A closed-loop deployment: ``d.concurrency`` clients on its first ``d.num_requests`` requests, the steady
    window's numbers against the recorded ones."""
    q = plan.inputs.slo.percentile
    if not (isinstance(d.concurrency, int) and 1 <= d.concurrency and 3 * d.concurrency <= len(w)):
        return [f"{d.xpyd}: {d.concurrency} clients leave no steady window in {len(w)} requests"]
    res = simulate(w, deployment_pools(d), concurrency=d.concurrency)
    met = res.meets(slo, steady=True)
    if not met:
        if d.rate_req_per_s > 0 or d.meets_slo:
            return [f"{d.xpyd}: {d.concurrency} clients miss the SLO in steady state, recorded as meeting it"]
        return []  # recorded as a miss at the smallest count tried: its numbers are the closest miss's
    st = res.steady_state()
    got = {"rate_req_per_s": st["requests_per_s"], "attainment": res.attainment(slo, steady=True),
           "ttft_ms": res.percentile("ttft_ms", q, steady=True), "tpot_ms": res.percentile("tpot_ms", q, steady=True),
           "tokens_per_s_per_gpu": st["output_tokens_per_s"] / d.num_gpus}
    return _compare(d, got, met)


def _compare(d, got: dict, met: bool) -> list[str]:
    """The re-simulated numbers ``got`` (tokens/s/user derived here) and verdict ``met`` against the record ``d``."""
    got["tokens_per_s_per_user"] = 1000.0 / got["tpot_ms"] if got["tpot_ms"] > 0 and math.isfinite(got["tpot_ms"]) else None
    problems = []
    for name, value in got.items():
        recorded = getattr(d, name)
        if (value is None) != (recorded is None) or (value is not None and not close(value, recorded)):
            problems.append(f"{d.xpyd} {name}: re-simulated {value} != recorded {recorded}")
    if met != d.meets_slo:
        problems.append(f"{d.xpyd}: re-simulation {'meets' if met else 'misses'} the SLO, recorded "
                        f"{'met' if d.meets_slo else 'missed'}")
    return problems


def verify_deployment(plan: DeploymentPlan, workload: Workload | None = None, *,
                      alternatives: bool = True) -> VerifyReport:
    """Re-check every recorded number of a deployment plan by re-simulation (module docstring).

    ``workload`` is needed only for a plan simulated on a trace (its requests are not in the plan);
    fixed-length workloads are rebuilt from the recorded seed. ``alternatives=False`` re-simulates the
    chosen deployment only (the alternatives' layouts and memory are still checked).
    """
    w, check = _workload(plan, workload)
    checks = [check]
    if w is None or not check.ok:
        return VerifyReport(tuple(checks))
    checks.append(_layouts(plan))
    if not checks[-1].ok:
        return VerifyReport(tuple(checks))
    checks.append(_memory(plan))
    checks.append(_imbalance(plan))
    problems = _resimulate(plan, plan.chosen, w)
    checks.append(Check("simulation", not problems, "; ".join(problems[:3])))
    if not alternatives:
        checks.append(Check("alternatives", True, f"{len(plan.alternatives)} alternatives not re-simulated "
                                                  "(alternatives=False)"))
        return VerifyReport(tuple(checks))
    alt = [p for d in plan.alternatives for p in _resimulate(plan, d, w)]
    checks.append(Check("alternatives", not alt, "; ".join(alt[:3])))
    return VerifyReport(tuple(checks))
