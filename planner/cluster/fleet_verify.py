"""Solver-free verifier of a fleet plan (``kind: "fleet"``): every number re-derived from the plan itself.

Independent of ``solvers/``: plain Python loops over the recorded capacities, shares and counts.

Checks (each reported by name):

1. ``shapes``        one assignment entry per GPU type in every bucket, one capacity per bucket per type
2. ``buckets``       edges ordered, shares of requests sum to 1, each bucket's rate is its share of the rate
3. ``coverage``      each bucket's assignment is >= 0 and sums to 1; no share on a type with capacity 0;
                     with slices every share is a multiple of ``1 / slices``
4. ``loads``         each type's load ``sum_b rate_b x share_bt / capacity_tb`` equals the recorded one
                     and fits its instances
5. ``availability``  GPUs = instances x GPUs per instance, within the type's availability
6. ``cost``          instance prices, per-type and total $/hour, $ per million (output) tokens
7. ``baselines``     each single-type fleet serves the workload with its instances, costs what it says and
                     (plan proven optimal) no less than the plan; the greedy fleet is the greedy rule's;
                     the saving against the cheapest single type
8. ``report``        the report's objective is the cost and its bound does not exceed it
"""

from __future__ import annotations

import math

from planner.common.numerics import close
from planner.plans.schema import FleetPlan
from planner.plans.verify import Check, VerifyReport

__all__ = ["verify_fleet"]

_TOL = 1e-6


def verify_fleet(plan: FleetPlan) -> VerifyReport:
    """Recompute every constraint and metric of a fleet plan (module docstring); ``.ok`` when all hold."""
    checks = [_shapes(plan)]
    if not checks[0].ok:
        return VerifyReport(tuple(checks))
    checks += [_buckets(plan), _coverage(plan), _loads(plan), _availability(plan), _cost(plan), _baselines(plan),
               _report(plan)]
    return VerifyReport(tuple(checks))


def _check(name: str, problems: list[str], ok_text: str) -> Check:
    return Check(name, not problems, problems[0] if problems else ok_text)


def _shapes(plan: FleetPlan) -> Check:
    T, B = len(plan.gpu_types), len(plan.buckets)
    p = []
    if not T or not B:
        p.append(f"{T} GPU types, {B} buckets: need at least one of each")
    p += [f"bucket {j}: {len(b.assignment)} assignment entries for {T} GPU types"
          for j, b in enumerate(plan.buckets) if len(b.assignment) != T]
    p += [f"{g.gpu}: {len(g.capacity_req_per_s)} capacities for {B} buckets"
          for g in plan.gpu_types if len(g.capacity_req_per_s) != B]
    names = [g.gpu for g in plan.gpu_types]
    if len(set(names)) != len(names):
        p.append(f"a GPU type is listed twice: {names}")
    return _check("shapes", p, f"{T} GPU types x {B} buckets")


def _buckets(plan: FleetPlan) -> Check:
    p = []
    rate = plan.inputs.rate_req_per_s
    for j, b in enumerate(plan.buckets):
        for lo, hi, what in ((b.input_tokens_min, b.input_tokens_max, "input"),
                             (b.output_tokens_min, b.output_tokens_max, "output")):
            if hi is not None and hi <= lo:
                p.append(f"bucket {j}: {what} edges {lo}..{hi} are not increasing")
        if not close(b.rate_req_per_s, b.share * rate):
            p.append(f"bucket {j}: rate {b.rate_req_per_s} is not share {b.share} x {rate} req/s")
    total = sum(b.share for b in plan.buckets)
    if abs(total - 1.0) > _TOL:
        p.append(f"bucket shares sum to {total:.9g}, not 1")
    n = sum(b.num_requests for b in plan.buckets)
    if n != plan.inputs.workload.num_requests:
        p.append(f"buckets hold {n} requests, the workload {plan.inputs.workload.num_requests}")
    return _check("buckets", p, f"{len(plan.buckets)} buckets hold every request, {rate:g} req/s in all")


def _coverage(plan: FleetPlan) -> Check:
    p = []
    S = plan.slices
    for j, b in enumerate(plan.buckets):
        if any(x < -_TOL for x in b.assignment):
            p.append(f"bucket {j}: a negative share {min(b.assignment)}")
        if abs(sum(b.assignment) - 1.0) > _TOL:
            p.append(f"bucket {j}: shares sum to {sum(b.assignment):.9g}, not 1 (not fully served)")
        for t, x in enumerate(b.assignment):
            g = plan.gpu_types[t]
            if x > _TOL and g.capacity_req_per_s[j] <= 0:
                p.append(f"bucket {j}: {g.gpu} serves a share {x:.3g} but cannot serve the bucket (capacity 0)")
            if S is not None and abs(x * S - round(x * S)) > 1e-6:
                p.append(f"bucket {j}: share {x:.6g} on {g.gpu} is not a multiple of 1/{S}")
    return _check("coverage", p, "every bucket fully served by types that can serve it")


def _load_of(plan: FleetPlan, t: int, shares) -> float:
    g = plan.gpu_types[t]
    return sum(b.rate_req_per_s * shares[j] / g.capacity_req_per_s[j]
               for j, b in enumerate(plan.buckets) if shares[j] > _TOL and g.capacity_req_per_s[j] > 0)


def _loads(plan: FleetPlan) -> Check:
    p = []
    for t, g in enumerate(plan.gpu_types):
        load = _load_of(plan, t, [b.assignment[t] for b in plan.buckets])
        if not close(load, g.load_instances):
            p.append(f"{g.gpu}: load {load:.9g} instances recomputed, {g.load_instances} recorded")
        if load > g.instances * (1 + _TOL) + _TOL:
            p.append(f"{g.gpu}: load {load:.6g} instances exceeds its {g.instances} instances")
    return _check("loads", p, "every type's load fits its instances")


def _availability(plan: FleetPlan) -> Check:
    p = []
    for g in plan.gpu_types:
        if g.gpus != g.instances * g.gpus_per_instance:
            p.append(f"{g.gpu}: {g.gpus} GPUs recorded, {g.instances} x {g.gpus_per_instance} = "
                     f"{g.instances * g.gpus_per_instance}")
        if g.available_gpus is not None and g.gpus > g.available_gpus:
            p.append(f"{g.gpu}: {g.gpus} GPUs used, {g.available_gpus} available")
    return _check("availability", p, "GPUs within every availability limit")


def _cost(plan: FleetPlan) -> Check:
    p = []
    total = 0.0
    for g in plan.gpu_types:
        if not close(g.price_per_instance_hour_usd, g.gpus_per_instance * g.price_per_gpu_hour_usd):
            p.append(f"{g.gpu}: instance price {g.price_per_instance_hour_usd} is not {g.gpus_per_instance} x "
                     f"{g.price_per_gpu_hour_usd}")
        cost = g.instances * g.price_per_instance_hour_usd
        if not close(cost, g.cost_per_hour_usd):
            p.append(f"{g.gpu}: cost {g.cost_per_hour_usd} $/h recorded, {cost:.9g} recomputed")
        total += cost
    if not close(total, plan.cost_per_hour_usd):
        p.append(f"total cost {plan.cost_per_hour_usd} $/h recorded, {total:.9g} recomputed")
    per_hour = plan.inputs.rate_req_per_s * 3600.0
    tokens = sum(b.share * (b.input_tokens_mean + b.output_tokens_mean) for b in plan.buckets)
    out_tokens = sum(b.share * b.output_tokens_mean for b in plan.buckets)
    for name, value, tok in (("cost_per_million_tokens_usd", plan.cost_per_million_tokens_usd, tokens),
                             ("cost_per_million_output_tokens_usd", plan.cost_per_million_output_tokens_usd,
                              out_tokens)):
        if not close(value, total / (per_hour * tok) * 1e6):
            p.append(f"{name}: {value} recorded, {total / (per_hour * tok) * 1e6:.9g} recomputed")
    return _check("cost", p, f"{total:.4g} $/h")


def _baselines(plan: FleetPlan) -> Check:
    p = []
    T = len(plan.gpu_types)
    names = [g.gpu for g in plan.gpu_types]
    if [b.name for b in plan.baselines] != names + ["greedy"]:
        return Check("baselines", False, f"expected one baseline per GPU type then 'greedy', got "
                                         f"{[b.name for b in plan.baselines]}")
    singles = []
    for t, b in enumerate(plan.baselines[:T]):
        if not b.feasible:
            continue
        g = plan.gpu_types[t]
        if any(b.instances[u] for u in range(T) if u != t):
            p.append(f"baseline {b.name}: uses other GPU types")
        if any(g.capacity_req_per_s[j] <= 0 for j in range(len(plan.buckets))):
            p.append(f"baseline {b.name}: feasible although the type cannot serve every bucket")
            continue
        load = _load_of(plan, t, [1.0] * len(plan.buckets))
        if b.instances[t] + _TOL < load * (1 - _TOL):
            p.append(f"baseline {b.name}: {b.instances[t]} instances for a load of {load:.6g}")
        if g.available_gpus is not None and b.instances[t] * g.gpus_per_instance > g.available_gpus:
            p.append(f"baseline {b.name}: {b.instances[t] * g.gpus_per_instance} GPUs, {g.available_gpus} available")
        cost = b.instances[t] * g.price_per_instance_hour_usd
        if b.cost_per_hour_usd is None or not close(cost, b.cost_per_hour_usd):
            p.append(f"baseline {b.name}: cost {b.cost_per_hour_usd} recorded, {cost:.9g} recomputed")
        if plan.report.status == "optimal" and cost < plan.cost_per_hour_usd * (1 - _TOL):
            p.append(f"baseline {b.name} costs {cost:.6g} $/h, less than the 'optimal' fleet's "
                     f"{plan.cost_per_hour_usd:.6g}")
        singles.append(cost)
    greedy = plan.baselines[T]
    if greedy.feasible:
        shares = [[0.0] * T for _ in plan.buckets]
        for j, bk in enumerate(plan.buckets):
            ok = [t for t in range(T) if plan.gpu_types[t].capacity_req_per_s[j] > 0]
            best = min(ok, key=lambda t: (plan.gpu_types[t].price_per_instance_hour_usd
                                          / plan.gpu_types[t].capacity_req_per_s[j], t))
            shares[j][best] = 1.0
        for t, g in enumerate(plan.gpu_types):
            need = math.ceil(_load_of(plan, t, [row[t] for row in shares]) * (1 - _TOL))
            if greedy.instances[t] != need:
                p.append(f"greedy: {greedy.instances[t]} x {g.gpu} recorded, the rule gives {need}")
        cost = sum(greedy.instances[t] * plan.gpu_types[t].price_per_instance_hour_usd for t in range(T))
        if greedy.cost_per_hour_usd is None or not close(cost, greedy.cost_per_hour_usd):
            p.append(f"greedy: cost {greedy.cost_per_hour_usd} recorded, {cost:.9g} recomputed")
    saving = (1.0 - plan.cost_per_hour_usd / min(singles)) if singles and min(singles) > 0 else None
    if (saving is None) != (plan.saving_vs_best_single_type is None) or (
            saving is not None and not close(saving, plan.saving_vs_best_single_type)):
        p.append(f"saving {plan.saving_vs_best_single_type} recorded, {saving} recomputed")
    return _check("baselines", p, "single-type and greedy fleets recomputed" +
                  (f"; saving {saving:.1%} vs the cheapest single type" if saving is not None else ""))


def _report(plan: FleetPlan) -> Check:
    r = plan.report
    p = []
    if r.objective is None or not close(r.objective, plan.cost_per_hour_usd):
        p.append(f"report objective {r.objective} is not the cost {plan.cost_per_hour_usd}")
    if r.bound is not None and r.bound > plan.cost_per_hour_usd * (1 + _TOL) + _TOL:
        p.append(f"report bound {r.bound} exceeds the cost {plan.cost_per_hour_usd}")
    if r.status == "optimal" and (r.bound is None or not close(r.bound, plan.cost_per_hour_usd)):
        p.append(f"an 'optimal' report needs its bound equal to the cost, got {r.bound}")
    return _check("report", p, f"{r.status} ({r.stop_reason}), gap {r.gap}")
