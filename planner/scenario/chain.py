"""The main job's chain: deployment search per GPU type -> cheapest per token -> replica plan per MoE pool ->
migration from the running placement -> cheapest GPU mix -> layer placement on a mixed fleet.

Each stage is the library's own planner (``planner.deploy``, ``planner.replicas``, ``planner.migration``,
``planner.cluster``); this module only joins them and records why each decision was taken:

1. **Deployment** (``gpus``): :func:`planner.deploy.plan_deployment` on every GPU type, with the measured
   ``loads`` pricing each EP size by its replica plan (``planner.deploy.instances.replica_plan_for_ep``).
   The chosen type is the cheapest per million tokens among those whose deployment meets the SLO
   (price from ``prices`` or the GPU profile); without prices, the most tokens/s per GPU.
2. **Replicas**: for every pool of the chosen deployment with EP > 1, the same replica plan the search
   priced it with, so the plan's replayed balancedness *is* the balancedness in the deployment's numbers;
   beside it the engine's default placement (contiguous experts, no replicas) on the same loads.
3. **Migration** (``running_plan``): the pool whose EP size the running plan has is moved to its new
   replica plan (``planner.migration.plan_migration``): copies, steps, bytes, seconds on the links.
4. **Fleet** (``fleet``): the cheapest mix of GPU types for the traffic (``planner.cluster.plan_fleet``),
   at ``fleet.rate_req_per_s`` or the chosen deployment's rate.
5. **Cluster** (``cluster``): layer ranges on a mixed fleet you own (``planner.cluster.plan_cluster``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from planner.common.numerics import usd_per_million_tokens
from planner.errors import Infeasible, InputError
from planner.plans.schema import (
    ClusterPlan,
    DeploymentPlan,
    FleetPlan,
    GpuChoiceRecord,
    MigrationRecord,
    PoolReplicasRecord,
    ScenarioPlan,
    ToolInfo,
)
from planner.scenario.spec import Scenario

__all__ = ["ChainResult", "run_chain", "layout_of", "served_tokens_per_s"]


def served_tokens_per_s(plan: DeploymentPlan) -> float:
    """Prompt + output tokens per second the chosen deployment serves: its rate x the workload's mean
    input + output tokens (the fleet's definition of a token, ``docs/fleet.md``)."""
    w = plan.inputs.workload
    return plan.chosen.rate_req_per_s * (w.input_tokens_mean + w.output_tokens_mean)


@dataclass
class ChainResult:
    plan: ScenarioPlan
    tables: dict[str, str] = field(default_factory=dict)  # section -> human table
    loads: object = None
    workload: object = None


def layout_of(label: str):
    """The :class:`~planner.perf.ParallelLayout` of a pool's layout label (``tp1pp1dp8ep8``)."""
    from planner.perf import ParallelLayout

    return ParallelLayout.parse(label)


def _slo(sc: Scenario):
    from planner.inputs import SLO

    return SLO(sc.slo["ttft_ms"], sc.slo["tpot_ms"], attainment_target=sc.slo["percentile"] / 100.0, rule="percentile")


def _workload(sc: Scenario):
    from planner.inputs import read_trace

    if "trace" in sc.workload:
        return read_trace(sc.path(sc.workload["trace"])), {}
    return None, {"isl": sc.workload["isl"], "osl": sc.workload["osl"]}


def _price(sc: Scenario, gpu: str) -> float | None:
    from planner.profiles import get_gpu

    if gpu in sc.prices:
        return sc.prices[gpu]
    p = get_gpu(gpu).price_per_hour_usd
    return float(p) if p else None


def run_chain(sc: Scenario, *, progress: Callable[[str], None] | None = None) -> ChainResult:
    """Run every stage the scenario asks for (module docstring) and return the verified-ready plan."""
    from planner import __version__
    from planner.inputs.readers import read_loads
    from planner.profiles import get_model

    say = progress or (lambda msg: None)
    arch = get_model(sc.model)
    loads = read_loads(sc.path(sc.loads)) if sc.loads else None
    decisions: list[str] = []
    tables: dict[str, str] = {}
    deployments: list[DeploymentPlan] = []
    choices: list[GpuChoiceRecord] = []
    results = {}
    workload = None
    if sc.gpus:
        workload, fixed = _workload(sc)
        slo = _slo(sc)
        misses = []
        for gpu in sc.gpus:
            say(f"deployment search: {sc.model} on {gpu}")
            try:
                r = _deploy(sc, arch, gpu, slo, workload, fixed, loads, say)
            except Infeasible as exc:
                misses.append(f"{gpu}: {exc}")
                decisions.append(f"{gpu}: no deployment meets the SLO ({exc})")
                continue
            results[gpu] = r
            deployments.append(r.plan)
            ch = r.plan.chosen
            tokens = served_tokens_per_s(r.plan)
            price = _price(sc, gpu)
            usd_h = None if price is None else price * ch.num_gpus
            choices.append(GpuChoiceRecord(
                gpu=gpu, price_per_gpu_hour_usd=price, num_gpus=ch.num_gpus, deployment=r.chosen.label,
                meets_slo=ch.meets_slo, rate_req_per_s=ch.rate_req_per_s, tokens_per_s=tokens, usd_per_hour=usd_h,
                usd_per_million_tokens=usd_per_million_tokens(usd_h, tokens)))
        if not choices:
            raise Infeasible("no GPU type can serve the scenario: " + "; ".join(misses))
        chosen = _choose(choices)
        decisions.insert(0, _why_gpu(chosen, choices))
        result = results[chosen.gpu]
        decisions.append(f"{chosen.gpu}: {result.comparison}")
        tables["deployment"] = result.table()
        tables["gpus"] = _gpu_table(choices, chosen.gpu)
    else:
        chosen = None
        result = None
    pools: list[PoolReplicasRecord] = []
    migrations: list[MigrationRecord] = []
    if result is not None and loads is not None and arch.num_routed_experts > 1:
        pools = _pool_replicas(arch, result.plan, loads, chosen.gpu, decisions, say)
        if pools:
            tables["replicas"] = _replica_table(pools)
        if sc.running_plan is not None:
            migrations = _migrations(sc, arch, pools, chosen.gpu, decisions, say)
            if migrations:
                tables["migration"] = _migration_table(migrations)
    fleet: FleetPlan | None = None
    if sc.fleet is not None:
        fleet, ftable = _fleet(sc, arch, result, workload, decisions, say)
        tables["fleet"] = ftable
    cluster: ClusterPlan | None = None
    if sc.cluster is not None:
        cluster, ctable = _cluster(sc, decisions, say)
        tables["cluster"] = ctable
    plan = ScenarioPlan(
        tool=ToolInfo(version=__version__), name=sc.name, description=sc.description, scenario=sc.to_dict(),
        scenario_sha256=sc.sha256(), model=arch.id, chosen_gpu=None if chosen is None else chosen.gpu,
        gpu_choices=choices, deployments=deployments, replicas=pools, migrations=migrations, fleet=fleet,
        cluster=cluster, decisions=decisions)
    return ChainResult(plan, tables, loads, workload)


def _deploy(sc, arch, gpu, slo, workload, fixed, loads, say):
    from planner.deploy import plan_deployment

    kw = {"num_requests": sc.workload["num_requests"]} if "num_requests" in sc.workload else {}
    return plan_deployment(arch, gpu, slo, workload, num_gpus=sc.num_gpus, rate_req_per_s=sc.rate_req_per_s,
                           loads=loads if arch.num_routed_experts > 1 else None, objective=sc.objective, load=sc.load,
                           precision=sc.precision or None, progress=lambda m: say(f"  {gpu}: {m}"), **fixed, **kw)


def _choose(choices: list[GpuChoiceRecord]) -> GpuChoiceRecord:
    meeting = [c for c in choices if c.meets_slo] or choices
    if all(c.usd_per_million_tokens is not None for c in meeting):
        return min(meeting, key=lambda c: (c.usd_per_million_tokens, -c.rate_req_per_s))
    return max(meeting, key=lambda c: (c.tokens_per_s / c.num_gpus, c.rate_req_per_s))  # no price: tokens per GPU


def _why_gpu(chosen: GpuChoiceRecord, choices: list[GpuChoiceRecord]) -> str:
    def cost(c):
        return "no price" if c.usd_per_million_tokens is None else f"${c.usd_per_million_tokens:.3f}/M tokens"

    others = [f"{c.gpu} {cost(c)} ({c.rate_req_per_s:.3g} req/s on {c.num_gpus} GPUs)"
              for c in choices if c is not chosen]
    base = (f"GPU type {chosen.gpu}: {cost(chosen)}, {chosen.rate_req_per_s:.3g} req/s on {chosen.num_gpus} GPUs "
            f"({chosen.deployment})")
    if not chosen.meets_slo:
        base += " - no type met the SLO; this is the closest"
    return base + (f"; against {', '.join(others)}" if others else "")


def _gpu_table(choices, chosen_gpu) -> str:
    from planner.common.tables import format_table

    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    rows = [[("*" if c.gpu == chosen_gpu else "") + c.gpu, c.num_gpus, c.deployment, f"{c.rate_req_per_s:.3g}",
             f"{c.tokens_per_s:,.0f}", f(c.price_per_gpu_hour_usd, ".2f"), f(c.usd_per_hour, ".2f"),
             f(c.usd_per_million_tokens, ".3f"), "met" if c.meets_slo else "MISSED"] for c in choices]
    return format_table(["gpu", "GPUs", "deployment", "req/s", "tokens/s", "$/GPU-h", "$/h", "$/M tokens", "SLO"], rows)


def _pool_replicas(arch, dep: DeploymentPlan, loads, gpu, decisions, say) -> list[PoolReplicasRecord]:
    from planner.deploy.instances import replica_plan_for_ep
    from planner.replicas import plan_replicas

    out = []
    for pool in dep.chosen.pools:
        lay = layout_of(pool.layout)
        if lay.ep <= 1:
            decisions.append(f"{pool.role} pool {pool.layout}: EP 1, every GPU holds every expert: no replica plan")
            continue
        say(f"replica plan for the {pool.role} pool (EP {lay.ep})")
        plan = replica_plan_for_ep(arch, lay.ep, loads, gpu)
        default = plan_replicas(loads, arch, num_gpus=lay.ep, redundant_slots=0, algorithm="none")
        b_default = float(default.replicas.predicted.replay_balancedness_mean)
        b = float(plan.replicas.predicted.replay_balancedness_mean)
        out.append(PoolReplicasRecord(role=pool.role, layout=pool.layout, ep=lay.ep, priced_balancedness=pool.balancedness,
                                      engine_default_balancedness=b_default, plan=plan))
        decisions.append(f"{pool.role} pool {pool.layout}: replicas raise replayed balancedness from {b_default:.4f} "
                         f"(engine default, no replicas) to {b:.4f} with {max(map(max, plan.replicas.slots_per_gpu))} "
                         f"slots per GPU; the deployment's numbers are priced with it")
    return out


def _replica_table(pools) -> str:
    from planner.common.tables import format_table

    rows = []
    for p in pools:
        r = p.plan.replicas
        rows.append([p.role, p.layout, p.ep, max(map(max, r.slots_per_gpu)), sum(len(row) for row in r.physical_to_logical)
                     - r.num_experts * len(r.layers), f"{p.engine_default_balancedness:.4f}",
                     f"{r.predicted.replay_balancedness_mean:.4f}", f"{p.priced_balancedness:.4f}"])
    return format_table(["pool", "layout", "EP", "slots/GPU", "extra copies", "b engine default", "b planned", "b priced"], rows)


def _migrations(sc, arch, pools, gpu, decisions, say) -> list[MigrationRecord]:
    from planner.deploy.instances import replica_plan_for_ep
    from planner.inputs.readers import read_loads
    from planner.migration import link_seconds, plan_migration
    from planner.plans.io import read_plan
    from planner.plans.verify import verify_plan
    from planner.profiles import get_gpu

    rp = sc.running_plan
    out = []
    for pool in pools:
        if isinstance(rp, dict):
            old_loads = read_loads(sc.path(rp["loads"]))
            running = replica_plan_for_ep(arch, pool.ep, old_loads, gpu)
            source = f"planned from {rp['loads']}"
            check = verify_plan(running, old_loads)
            if not check.ok:
                raise InputError(f"running plan for the {pool.role} pool fails verification: {check.failures[0].detail}",
                                 param="running_plan")
        else:
            running = read_plan(sc.path(rp))
            source = rp
            if getattr(running, "kind", "") != "replicas":
                raise InputError(f"{rp} is a {running.kind} plan, not a replica plan", param="running_plan")
            check = verify_plan(running)  # what the file alone shows (its loads are not the scenario's)
            if not check.ok:
                c = check.failures[0]
                raise InputError(f"{rp} fails verification: {c.name}: {c.detail}", param="running_plan")
            if running.replicas.num_gpus != pool.ep:
                decisions.append(f"{pool.role} pool: the running plan spans {running.replicas.num_gpus} GPUs, the pool "
                                 f"EP {pool.ep}: no migration schedule for it")
                continue
        say(f"migration schedule for the {pool.role} pool")
        mig = plan_migration(running, pool.plan, spare_slots_per_gpu=sc.spare_slots)
        spec = get_gpu(gpu)
        secs = link_seconds(mig, spec.intra_node_bytes_per_s, spec.inter_node_bytes_per_s)
        out.append(MigrationRecord(role=pool.role, running_source=source, running_plan=running, target_plan=mig.target_plan,
                                   copies=mig.copies, naive_copies=mig.naive_copies, bytes_moved=mig.bytes_moved,
                                   steps=mig.steps, link_seconds=secs, schedule=mig.to_dict()))
        decisions.append(f"{pool.role} pool: moving from the running plan ({source}) takes {mig.copies} expert copies "
                         f"({mig.bytes_moved / 1e9:.2f} GB, {mig.naive_copies} if every slot were overwritten) in "
                         f"{mig.steps} steps, {secs:.3f} s on the links")
    return out


def _migration_table(migs) -> str:
    from planner.common.tables import format_table

    rows = [[m.role, m.running_source, m.copies, m.naive_copies, f"{m.bytes_moved / 1e9:.2f}", m.steps, f"{m.link_seconds:.3f}"]
            for m in migs]
    return format_table(["pool", "running plan", "copies", "naive copies", "moved GB", "steps", "link s"], rows)


def _fleet(sc, arch, result, workload, decisions, say):
    from planner.cluster import plan_fleet
    from planner.inputs import read_trace

    rate = sc.fleet.get("rate_req_per_s") or sc.rate_req_per_s
    if rate is None:
        rate = result.plan.chosen.rate_req_per_s
    wl = workload
    if wl is None:
        if "trace" not in sc.workload:
            raise InputError("fleet: a GPU-mix search buckets a trace's request sizes: give workload.trace",
                             param="workload")
        wl = read_trace(sc.path(sc.workload["trace"]))
    say(f"cheapest GPU mix for {rate:.3g} req/s over {', '.join(sc.fleet['gpus'])}")
    prices = {g: p for g in sc.fleet["gpus"] if (p := _price(sc, g)) is not None}
    kw = {"num_requests": sc.workload["num_requests"]} if "num_requests" in sc.workload else {}
    r = plan_fleet(arch, sc.fleet["gpus"], _slo(sc), wl, rate_req_per_s=float(rate), prices=prices or None,
                   available_gpus=sc.fleet.get("available_gpus"), precision=sc.precision or None, **kw)
    decisions.append(f"GPU mix for {rate:.3g} req/s: {_fleet_line(r.plan)}")
    return r.plan, r.table()


def _fleet_line(plan: FleetPlan) -> str:
    used = [f"{g.instances} x {g.gpu} ({g.instances * g.gpus_per_instance} GPUs)" for g in plan.gpu_types if g.instances]
    return f"{', '.join(used) or 'nothing'} at ${plan.report.objective:.2f}/h"


def _cluster(sc, decisions, say):
    from planner.cluster import plan_cluster
    from planner.inputs.cluster import parse_cluster

    c = sc.cluster
    if isinstance(c, dict):
        cluster = parse_cluster(c, "scenario cluster")
    else:
        cluster = sc.path(c)
    say("layer placement on the mixed cluster")
    iso = sc.workload.get("isl", 1024), sc.workload.get("osl", 256)
    r = plan_cluster(cluster, sc.model if not (isinstance(c, str) and c.startswith("helix:")) else None,
                     precision=sc.precision or None, isl=iso[0], osl=iso[1])
    p = r.plan
    decisions.append(f"mixed cluster: {p.throughput_tokens_per_s:,.1f} tokens/s through all layers ({p.method}); bound "
                     f"{min(p.crossing_bound_tokens_per_s, p.helix_upper_bound_tokens_per_s):,.1f}, "
                     f"{len(p.pipelines)} pipelines")
    return p, r.table(wall_time=False)
