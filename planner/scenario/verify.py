"""Solver-free verifier of a scenario plan (``kind: "scenario"``): every part by its own verifier, plus the
joints between them. Checks (each reported by name):

1. ``deployment:<gpu>``  each deployment re-simulated (:func:`planner.deploy.verify_deployment`; the trace
                         re-read from the scenario when the deployment ran on one)
2. ``gpu choice``        each type's tokens/s and cost per million tokens recomputed from its deployment
                         and price; the chosen type is the cheapest per token among those meeting the SLO
                         (the most tokens/s per GPU when a price is missing)
3. ``replicas:<role>``   each pool's replica plan verified on the scenario's loads (:func:`verify_plan`), its
                         EP equal to the pool's layout, its replayed balancedness equal to what the chosen
                         deployment priced the pool with; the engine default's balancedness re-derived
4. ``migration:<role>``  the schedule re-checked (every step keeps each expert served and ends in the
                         target placement), the target plan the pool's plan up to GPU numbering, the
                         copies and bytes recounted and the link time recomputed
5. ``fleet``, ``cluster`` their own verifiers (:func:`planner.cluster.verify_fleet`, ``verify_cluster``)
"""

from __future__ import annotations

from planner.common.numerics import close, usd_per_million_tokens
from planner.plans.schema import ScenarioPlan
from planner.plans.verify import Check, VerifyReport, verify_plan

__all__ = ["verify_scenario"]


def verify_scenario(plan: ScenarioPlan, *, alternatives: bool = True) -> VerifyReport:
    """Re-check a scenario plan (module docstring); ``alternatives=False`` re-simulates only each type's
    chosen deployment (what ``moeplan plan`` runs before writing; ``moeplan verify`` runs them all)."""
    checks: list[Check] = []
    loads = _loads(plan)
    checks += _deployments(plan, alternatives)
    checks.append(_gpu_choice(plan))
    checks += _replicas(plan, loads)
    checks += _migrations(plan)
    if plan.fleet is not None:
        from planner.cluster import verify_fleet

        rep = verify_fleet(plan.fleet)
        checks.append(Check("fleet", rep.ok, "; ".join(f"{c.name}: {c.detail}" for c in rep.failures)))
    if plan.cluster is not None:
        from planner.cluster import verify_cluster

        rep = verify_cluster(plan.cluster)
        checks.append(Check("cluster", rep.ok, "; ".join(f"{c.name}: {c.detail}" for c in rep.failures)))
    return VerifyReport(tuple(checks))


def _loads(plan: ScenarioPlan):
    spec = plan.scenario.get("loads")
    if not spec or not (plan.replicas or plan.replica_plan is not None):
        return None
    from planner.inputs.readers import read_loads

    return read_loads(spec)


def _deployments(plan: ScenarioPlan, alternatives: bool) -> list[Check]:
    from planner.deploy import verify_deployment
    from planner.inputs import read_trace

    out = []
    trace = (plan.scenario.get("workload") or {}).get("trace")
    workload = read_trace(trace) if trace else None
    for d in plan.deployments:
        rep = verify_deployment(d, workload, alternatives=alternatives)
        out.append(Check(f"deployment:{d.inputs.gpu}", rep.ok, "; ".join(f"{c.name}: {c.detail}" for c in rep.failures)))
    return out


def _gpu_choice(plan: ScenarioPlan) -> Check:
    p = []
    if len(plan.gpu_choices) != len(plan.deployments):
        p.append(f"{len(plan.gpu_choices)} GPU choices for {len(plan.deployments)} deployments")
    for c, d in zip(plan.gpu_choices, plan.deployments):
        ch = d.chosen
        if c.gpu != d.inputs.gpu or c.num_gpus != ch.num_gpus or c.meets_slo != ch.meets_slo:
            p.append(f"{c.gpu}: GPU, count or SLO verdict differs from its deployment")
        w = d.inputs.workload
        tokens = ch.rate_req_per_s * (w.input_tokens_mean + w.output_tokens_mean)  # prompt + output tokens
        if not close(c.tokens_per_s, tokens) or not close(c.rate_req_per_s, ch.rate_req_per_s):
            p.append(f"{c.gpu}: tokens/s {c.tokens_per_s} recorded, {tokens} from its deployment")
        usd_h = None if c.price_per_gpu_hour_usd is None else c.price_per_gpu_hour_usd * ch.num_gpus
        want = usd_per_million_tokens(usd_h, tokens)
        if (want is None) != (c.usd_per_million_tokens is None) or (want is not None and not close(want, c.usd_per_million_tokens)):
            p.append(f"{c.gpu}: ${c.usd_per_million_tokens}/M tokens recorded, {want} recomputed")
    if plan.gpu_choices:
        meeting = [c for c in plan.gpu_choices if c.meets_slo] or list(plan.gpu_choices)
        if all(c.usd_per_million_tokens is not None for c in meeting):
            best = min(c.usd_per_million_tokens for c in meeting)
            got = next((c for c in meeting if c.gpu == plan.chosen_gpu), None)
            if got is None or not close(got.usd_per_million_tokens, best):
                p.append(f"chosen {plan.chosen_gpu} is not the cheapest per token (${best:.4f}/M)")
        elif plan.chosen_gpu not in {c.gpu for c in meeting}:
            p.append(f"chosen {plan.chosen_gpu} is not among the candidates")
    elif plan.chosen_gpu is not None:
        p.append("a chosen GPU without a deployment search")
    return Check("gpu choice", not p, "; ".join(p[:3]))


def _replicas(plan: ScenarioPlan, loads) -> list[Check]:
    from planner.replicas import plan_replicas

    out = []
    dep = plan.chosen_deployment
    pools = {} if dep is None else {p.role: p for p in dep.chosen.pools}
    if plan.replica_plan is not None:
        rep = verify_plan(plan.replica_plan, loads)
        out.append(Check("replicas", rep.ok, "; ".join(f"{c.name}: {c.detail}" for c in rep.failures)))
    for r in plan.replicas:
        p = []
        if loads is None:
            p.append("the scenario records no loads to verify the replica plan on")
        else:
            rep = verify_plan(r.plan, loads)
            p += [f"{c.name}: {c.detail}" for c in rep.failures]
        pool = pools.get(r.role)
        if pool is None or pool.layout != r.layout:
            p.append(f"no {r.role} pool {r.layout} in the chosen deployment")
        else:
            from planner.perf import ParallelLayout

            ep = ParallelLayout.parse(pool.layout).ep
            if r.ep != ep or r.plan.replicas.num_gpus != ep:
                p.append(f"EP {r.ep} / plan over {r.plan.replicas.num_gpus} GPUs, pool layout has EP {ep}")
            b = r.plan.replicas.predicted.replay_balancedness_mean
            if not close(pool.balancedness, b) or not close(r.priced_balancedness, pool.balancedness):
                p.append(f"pool priced with balancedness {pool.balancedness}, the plan replays {b}")
        if loads is not None:
            default = plan_replicas(loads, r.plan.inputs.model, num_gpus=r.ep, redundant_slots=0, algorithm="none")
            bd = default.replicas.predicted.replay_balancedness_mean
            if not close(bd, r.engine_default_balancedness):
                p.append(f"engine default balancedness {r.engine_default_balancedness} recorded, {bd} recomputed")
        out.append(Check(f"replicas:{r.role}", not p, "; ".join(p[:3])))
    return out


def _migrations(plan: ScenarioPlan) -> list[Check]:
    import numpy as np

    from planner.profiles import get_gpu
    from solvers.migration import SlotWrite
    from solvers.migration_schedule import check_schedule

    out = []
    pools = {r.role: r for r in plan.replicas}
    for m in plan.migrations:
        p = []
        pool = pools.get(m.role)
        if pool is None:
            p.append(f"no {m.role} replica plan to migrate to")
            out.append(Check(f"migration:{m.role}", False, p[0]))
            continue
        s = m.schedule
        bpe = s["bytes_per_expert"]
        run, tgt = m.running_plan.replicas, m.target_plan.replicas
        copies = 0
        seconds = 0.0
        spec = get_gpu(plan.chosen_gpu)
        gpn = tgt.gpus_per_node
        nsteps = max((len(layer["steps"]) for layer in s["layers"]), default=0)
        for row, layer in enumerate(s["layers"]):
            width = max(max(run.slots_per_gpu[row]), max(tgt.slots_per_gpu[row]))
            cur, _ = _grid(run.physical_to_logical[row], run.slot_gpu[row], run.num_gpus, width)
            new, cap = _grid(tgt.physical_to_logical[row], tgt.slot_gpu[row], tgt.num_gpus, width)
            steps = [[SlotWrite(*w[:5], bool(w[5])) for w in step] for step in layer["steps"]]
            problems = check_schedule(cur, new, cap, steps, spare_slots_per_gpu=s["spare_slots_per_gpu"])
            p += [f"layer {layer['layer']}: {x}" for x in problems[:1]]
            copies += sum(not w[5] for step in layer["steps"] for w in step)
        for k in range(nsteps):
            t = np.zeros(tgt.num_gpus)
            for layer in s["layers"]:
                if k < len(layer["steps"]):
                    for gpu, _slot, _e, src, _ss, commit in layer["steps"][k]:
                        if not commit and src != gpu:
                            bw = spec.intra_node_bytes_per_s if src // gpn == gpu // gpn else spec.inter_node_bytes_per_s
                            t[gpu] += bpe / bw
            seconds += float(t.max(initial=0.0))
        if copies != m.copies or copies * bpe != m.bytes_moved or nsteps != m.steps:
            p.append(f"copies/bytes/steps {m.copies}/{m.bytes_moved}/{m.steps} recorded, {copies}/{copies * bpe}/{nsteps} recounted")
        if not close(seconds, m.link_seconds):
            p.append(f"link time {m.link_seconds} s recorded, {seconds} s recomputed")
        if _per_gpu(tgt) != _per_gpu(pool.plan.replicas):
            p.append("the target placement is not the pool's replica plan up to GPU numbering")
        out.append(Check(f"migration:{m.role}", not p, "; ".join(p[:3])))
    return out


def _grid(phy2log, slot_gpu, num_gpus: int, width: int):
    """``[gpu, k]`` expert of GPU ``g``'s ``k``-th slot (-1 beyond its slots) and the slots per GPU."""
    import numpy as np

    grid = np.full((num_gpus, width), -1, dtype=np.int64)
    cap = np.zeros(num_gpus, dtype=np.int64)
    for e, g in zip(phy2log, slot_gpu):
        grid[g, cap[g]] = e
        cap[g] += 1
    return grid, cap


def _per_gpu(rep) -> list[tuple]:
    """Per layer, the multiset of each GPU's experts (a placement up to GPU numbering and slot order)."""
    out = []
    for row, gpus in zip(rep.physical_to_logical, rep.slot_gpu):
        per: list[list[int]] = [[] for _ in range(rep.num_gpus)]
        for e, g in zip(row, gpus):
            per[g].append(e)
        out.append(tuple(sorted(tuple(sorted(x)) for x in per)))
    return out
