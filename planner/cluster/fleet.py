"""The cheapest GPU mix for a request mix under an SLO (DESIGN §5.4, Mélange): ``planner.plan_fleet``.

1. **Buckets** (:mod:`planner.cluster.fleet_buckets`): the workload's requests cut by prompt and output
   length; each bucket's rate is its share of the fleet's rate (default: the trace's own rate).
2. **Capacities**: per GPU type, the serving unit (the smallest instance that holds the model) and the
   rate one unit sustains on each bucket within the SLO, from moeplan's latency model and serving
   simulator (:mod:`planner.cluster.fleet_rates`), or from a given profile table
   (:mod:`planner.cluster.fleet_inputs`).
3. **Covering program** (:mod:`solvers.fleet`): instances per GPU type and each bucket's split over the
   types, minimising $/hour within the availability limits; the same program restricted to one type
   gives the single-type baselines, and the greedy rule (each bucket on its cheapest type per req/s)
   the naive one.
4. **Plan** (``kind: "fleet"``): verified without a solver by :mod:`planner.cluster.fleet_verify`.

``docs/fleet.md`` describes the method and its limits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from planner import __version__
from planner.cluster.fleet_buckets import DEFAULT_INPUT_EDGES, DEFAULT_OUTPUT_EDGES, Bucket, bucket_workload
from planner.cluster.fleet_inputs import GpuOffer, ProfileTable, read_profile_table, resolve_offers
from planner.cluster.fleet_rates import BATCH_PER_RANK, TOKENS_PER_RANK, UnitRates, unit_rates
from planner.common.numerics import round_float, usd_per_million_tokens
from planner.errors import Infeasible, InputError, SolverLimit
from planner.inputs import SLO, Workload
from planner.plans.schema import (
    FleetBaseline,
    FleetBucketRecord,
    FleetGpuRecord,
    FleetInputs,
    FleetPlan,
    FleetReport,
    FleetWorkloadRef,
    SloRecord,
    ToolInfo,
)
from planner.profiles import get_model, resolve_precision
from solvers.fleet import FleetSolution, cheapest_fleet, greedy_fleet, max_servable_scale
from solvers.report import SolveReport

__all__ = ["plan_fleet", "FleetResult"]


@dataclass(frozen=True)
class FleetResult:
    """What :func:`plan_fleet` returns: the verified plan, the buckets, the units and the solver's report."""

    plan: FleetPlan
    buckets: tuple[Bucket, ...]
    units: tuple[UnitRates, ...]
    report: SolveReport
    notes: tuple[str, ...]
    wall_s: float

    def to_dict(self) -> dict:
        """The plan as a dict, with the solver's wall time and the notes."""
        out = self.plan.model_dump(mode="json")
        out["solve_wall_s"] = self.report.wall_time_s
        out["notes"] = list(self.notes)
        return out

    def table(self) -> str:
        """The fleet, the buckets' split over GPU types and the single-type baselines, as text tables."""
        from planner.cluster.fleet_summary import fleet_tables

        return fleet_tables(self.plan, self.notes)

    def plot(self, path) -> None:
        """Write the bucket assignment (stacked shares per bucket) and the costs of the baselines as a PNG."""
        from planner.cluster.fleet_summary import plot_fleet

        plot_fleet(self.plan, path)


def plan_fleet(
    model=None,
    gpus: Sequence[str] | None = None,
    slo: SLO | None = None,
    workload: Workload | None = None,
    *,
    rate_req_per_s: float | None = None,
    prices: dict | None = None,
    available_gpus: dict | None = None,
    profile_table: ProfileTable | str | Path | None = None,
    input_edges: Sequence[int] = DEFAULT_INPUT_EDGES,
    output_edges: Sequence[int] = DEFAULT_OUTPUT_EDGES,
    slices: int | None = None,
    precision=None,
    balancedness: float = 1.0,
    max_instance_gpus: int = 16,
    num_requests: int = 300,
    time_limit_s: float = 10.0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> FleetResult:
    """The cheapest mix of GPU types that serves ``workload`` at ``rate_req_per_s`` within ``slo``.

    Parameters
    ----------
    model : model profile or name (capacities from the performance model); may be None with a profile table.
    gpus : GPU types to mix (names or profiles); default the profile table's types, else ``l4, a10g, l40s,
        a100-80g, h100`` and any other type named in ``prices`` / ``available_gpus``.
    slo : TTFT / TPOT limits at the attainment target (needed without a profile table).
    workload : the requests whose sizes are bucketed (a trace).
    rate_req_per_s : the rate to serve; default the workload's own mean rate.
    prices : $ per GPU-hour by GPU type (default: the GPU profile's indicative price).
    available_gpus : most GPUs of each type the fleet may use (default: unlimited).
    profile_table : Mélange-style table of max rate per GPU type and request size (a path or a
        :class:`~planner.cluster.fleet_inputs.ProfileTable`); its sizes are the bucket edges.
    input_edges, output_edges : upper bucket edges in tokens (ignored with a profile table).
    slices : Mélange's slice factor (None: any split of a bucket over types).
    precision : number formats per model component (as in ``plan_deployment``).
    balancedness : MoE balancedness of the latency model (1: even routing).
    max_instance_gpus : largest serving unit tried per GPU type (beyond a node: one pipeline stage per node).
    num_requests : requests per simulated rate probe.
    time_limit_s : HiGHS' time limit for the covering program (each baseline gets the same).
    seed : seed of the synthetic arrivals of the rate probes.
    progress : called with one line per stage.

    Returns
    -------
    FleetResult
        ``.plan`` (verified), ``.table()``, ``.to_dict()``, ``.plot(path)``.

    Raises
    ------
    InputError
        Bad arguments or files; an unknown GPU type (``ProfileNotFound``); a negative price.
    Infeasible
        The model fits no GPU type; a bucket no type serves within the SLO; the available GPUs cannot
        serve the rate (the message gives the most they can serve).
    SolverLimit
        The covering program found nothing within ``time_limit_s``.

    Examples
    --------
    >>> from planner.inputs import poisson_workload
    >>> from planner.cluster.fleet_inputs import ProfileTable
    >>> table = ProfileTable("example", (512,), (128,), {"l4": 1, "h100": 1},
    ...                      {("l4", 512, 128): 1.0, ("h100", 512, 128): 6.0})
    >>> w = poisson_workload(3.0, 100, input_tokens=400, output_tokens=100, seed=0)
    >>> r = plan_fleet(None, None, None, w, rate_req_per_s=3.0, profile_table=table, prices={"l4": 0.8, "h100": 3.78})
    >>> [(g.gpu, g.instances) for g in r.plan.gpu_types], r.plan.cost_per_hour_usd
    ([('l4', 3), ('h100', 0)], 2.4)
    """
    start = time.perf_counter()
    say = progress or (lambda line: None)
    rate = _check_args(workload, rate_req_per_s, slices, num_requests, max_instance_gpus, seed, balancedness,
                       time_limit_s)
    table = read_profile_table(profile_table) if isinstance(profile_table, (str, Path)) else profile_table
    if table is not None and gpus is None:
        gpus = table.gpus
    offers = resolve_offers(gpus, prices, available_gpus)
    arch = None if model is None else (get_model(model) if isinstance(model, str) else model)
    formats = None
    notes: list[str] = []
    if table is not None:
        buckets = bucket_workload(workload, rate, input_edges=table.input_edges, output_edges=table.output_edges,
                                  open_ended=False)
        units = _table_units(table, offers, buckets)
        notes.append(f"capacities from the profile table {table.source}")
    else:
        if arch is None or not isinstance(slo, SLO):
            raise InputError("without a profile table give a model and an SLO (capacities come from the "
                             "performance model)", param="model" if arch is None else "ttft_ms")
        formats = resolve_precision(arch.precision, precision)
        buckets = bucket_workload(workload, rate, input_edges=input_edges, output_edges=output_edges)
        say(f"{len(buckets)} request-size buckets; rating {len(offers)} GPU types by simulation")
        offers, units = _model_units(arch, offers, buckets, slo, formats, balancedness, max_instance_gpus,
                                     num_requests, seed, notes, say)
        notes.append(f"capacities: moeplan's latency model and simulator, one aggregated instance per type "
                     f"(token budget {TOKENS_PER_RANK} and {BATCH_PER_RANK} sequences per DP rank), Poisson "
                     f"arrivals of each bucket's mean sizes, {num_requests} requests per probe; MoE "
                     f"balancedness {balancedness:g}")
    _check_coverage(buckets, offers, units)
    sol, rep, baselines = _solve(buckets, offers, units, rate, slices, time_limit_s)
    say(f"covering program: ${sol.cost_per_hour:.2f}/h, {rep.status} in {rep.wall_time_s:.2f} s")
    params = dict(input_edges=",".join(map(str, table.input_edges if table else input_edges)),
                  output_edges=",".join(map(str, table.output_edges if table else output_edges)),
                  balancedness=balancedness, max_instance_gpus=max_instance_gpus, num_requests=num_requests,
                  seed=seed, time_limit_s=time_limit_s)
    plan = _build(arch, slo, workload, rate, table, formats, offers, units, buckets, sol, rep, baselines, slices,
                  params)
    from planner.cluster.fleet_verify import verify_fleet

    check = verify_fleet(plan)
    if not check.ok:
        c = check.failures[0]
        raise AssertionError(f"the fleet plan fails its own verification: {c.name}: {c.detail}")
    return FleetResult(plan, tuple(buckets), tuple(units), rep, tuple(notes), time.perf_counter() - start)


def _check_args(workload, rate_req_per_s, slices, num_requests, max_instance_gpus, seed, balancedness,
                time_limit_s) -> float:
    """The fleet's rate (the workload's own when None); every number checked, the parameter named."""
    if not isinstance(workload, Workload):
        raise InputError(f"give the requests as a Workload (a trace), got {type(workload).__name__}", param="workload")
    rate = workload.rate_req_per_s if rate_req_per_s is None else rate_req_per_s
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise InputError(f"must be a positive number, got {rate!r}", param="rate_req_per_s")
    if slices is not None and (isinstance(slices, bool) or not isinstance(slices, int) or slices < 1):
        raise InputError(f"must be an integer >= 1, got {slices!r}", param="slices")
    for name, v, low in (("num_requests", num_requests, 2), ("max_instance_gpus", max_instance_gpus, 1),
                         ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise InputError(f"must be an integer >= {low}, got {v!r}", param=name)
    if isinstance(balancedness, bool) or not isinstance(balancedness, (int, float)) or not 0 < balancedness <= 1:
        raise InputError(f"must be a share in (0, 1], got {balancedness!r}", param="balancedness")
    if isinstance(time_limit_s, bool) or not isinstance(time_limit_s, (int, float)) or not time_limit_s > 0:
        raise InputError(f"must be a positive number of seconds, got {time_limit_s!r}", param="time_limit_s")
    return float(rate)


def _solve(buckets, offers, units, rate, slices, time_limit_s):
    """The covering program on the capacities, then the baselines; an infeasible fleet explained in numbers."""
    R = np.array([u.capacity_req_per_s for u in units], dtype=np.float64)
    lam = np.array([b.rate_req_per_s for b in buckets])
    s = np.array([u.gpus_per_instance for u in units], dtype=np.int64)
    price = np.array([o.price_per_gpu_hour_usd for o in offers]) * s
    avail = np.array([math.inf if o.available_gpus is None else o.available_gpus for o in offers])
    sol, rep = cheapest_fleet(lam, R, price, gpus_per_instance=s, group=np.arange(len(units)), available_gpus=avail,
                              slices=slices, time_limit_s=time_limit_s)
    if sol is None:
        raise _no_fleet(rep, lam, R, offers, s, avail, rate, time_limit_s)
    return sol, rep, _baselines(lam, R, price, s, avail, offers, slices, time_limit_s)


# -- capacities ---------------------------------------------------------------------------------------------
def _table_units(table: ProfileTable, offers: list[GpuOffer], buckets: list[Bucket]) -> list[UnitRates]:
    out = []
    for o in offers:
        if o.spec.id not in table.gpus_per_instance:
            raise InputError(f"{o.spec.id}: not in the profile table {table.source} (it has "
                             f"{', '.join(table.gpus)})", param="gpus")
        caps = tuple(table.capacity(o.spec.id, b.input_tokens_max, b.output_tokens_max) for b in buckets)
        out.append(UnitRates(o.spec.id, "table", table.gpus_per_instance[o.spec.id], 0, caps))
    return out


def _model_units(arch, offers, buckets, slo, formats, balancedness, max_gpus, num_requests, seed, notes, say):
    kept, units, dropped = [], [], []
    for o in offers:
        try:
            u = unit_rates(arch, o.spec, buckets, slo, precision=formats, balancedness=balancedness,
                           max_instance_gpus=max_gpus, num_requests=num_requests, seed=seed, progress=say)
        except Infeasible as exc:
            dropped.append(str(exc))
            continue
        kept.append(o)
        units.append(u)
        if u.note:
            notes.append(f"{o.spec.id}: {u.note}")
    notes += [f"not mixed: {d}" for d in dropped]
    if not units:
        raise Infeasible(f"{arch.id} fits none of the GPU types ({'; '.join(dropped)})",
                         remedy={"max_instance_gpus": 2 * max_gpus} if max_gpus < 64 else {})
    return kept, units


def _check_coverage(buckets, offers, units) -> None:
    for j, b in enumerate(buckets):
        if not any(u.capacity_req_per_s[j] > 0 for u in units):
            raise Infeasible(f"bucket {b.label} ({b.num_requests} requests, {b.rate_req_per_s:.3g} req/s): no GPU type "
                             f"({', '.join(o.spec.id for o in offers)}) serves it within the SLO (its requests miss a limit "
                             "even unloaded, or its longest request does not fit the KV cache)")


def _no_fleet(rep, lam, R, offers, s, avail, rate, time_limit_s):
    if rep.status == "infeasible":
        scale = max_servable_scale(lam, R, gpus_per_instance=s, group=np.arange(len(s)), available_gpus=avail)
        limits = ", ".join(f"{o.available_gpus} x {o.spec.id}" for o in offers if o.available_gpus is not None)
        return Infeasible(f"the available GPUs ({limits}) serve at most {scale * rate:.3g} of the {rate:.3g} req/s "
                          f"({scale:.1%}) even with fractional instances",
                          remedy={"rate_req_per_s": round_float(math.floor(scale * rate * 1000) / 1000)}
                          if scale * rate >= 0.001 else {})
    return SolverLimit(f"the covering program found no fleet within {time_limit_s:g} s ({rep.message})",
                       remedy={"time_limit_s": 4 * time_limit_s})


def _baselines(lam, R, price, s, avail, offers, slices, time_limit_s) -> list[FleetBaseline]:
    T = len(offers)
    out = []
    for t, o in enumerate(offers):
        sol, rep = cheapest_fleet(lam, R[[t]], price[[t]], gpus_per_instance=s[[t]], available_gpus=avail[[t]],
                                  slices=slices, time_limit_s=time_limit_s)
        counts = [0] * T
        if sol is None:
            why = ("cannot serve every bucket within the SLO" if (R[t][lam > 0] <= 0).any()
                   else f"{o.available_gpus} GPUs are not enough" if rep.status == "infeasible" else rep.message)
            out.append(FleetBaseline(name=o.spec.id, feasible=False, instances=counts, cost_per_hour_usd=None, note=why))
            continue
        counts[t] = sol.counts[0]
        note = "" if rep.status == "optimal" else f"{rep.status} at the time limit"
        out.append(FleetBaseline(name=o.spec.id, feasible=True, instances=counts,
                                 cost_per_hour_usd=round_float(sol.cost_per_hour), note=note))
    g = greedy_fleet(lam, R, price, gpus_per_instance=s, group=np.arange(T), available_gpus=avail)
    if g is None:
        out.append(FleetBaseline(name="greedy", feasible=False, instances=[0] * T, cost_per_hour_usd=None,
                                 note="each bucket on its cheapest type per req/s breaks an availability limit"))
    else:
        out.append(FleetBaseline(name="greedy", feasible=True, instances=list(g.counts),
                                 cost_per_hour_usd=round_float(g.cost_per_hour),
                                 note="each bucket whole on its cheapest type per req/s"))
    return out


# -- the plan -----------------------------------------------------------------------------------------------
def _build(arch, slo, workload, rate, table, formats, offers, units, buckets, sol: FleetSolution, rep, baselines,
           slices, params) -> FleetPlan:
    r = round_float
    tokens = sum(b.share * (b.input_tokens_mean + b.output_tokens_mean) for b in buckets)
    out_tokens = sum(b.share * b.output_tokens_mean for b in buckets)
    cost = sum(sol.counts[t] * r(units[t].gpus_per_instance * offers[t].price_per_gpu_hour_usd) for t in range(len(units)))
    singles = [b.cost_per_hour_usd for b in baselines if b.name != "greedy" and b.feasible]
    wl = FleetWorkloadRef(source=workload.source, sha256=workload.sha256(), num_requests=len(workload),
                          trace_rate_req_per_s=r(workload.rate_req_per_s))
    inputs = FleetInputs(
        model=None if arch is None else arch.id,
        slo=None if slo is None else SloRecord(ttft_ms=slo.ttft_ms, tpot_ms=slo.tpot_ms, percentile=slo.percentile,
                                               attainment_target=slo.attainment_target, rule=slo.rule),
        workload=wl, rate_req_per_s=r(rate), capacity_source="profile_table" if table is not None else "performance_model",
        parameters={**params, "profile_table": None if table is None else table.source},
        precision=None if formats is None else formats.to_dict())
    bucket_records = [FleetBucketRecord(
        input_tokens_min=b.input_tokens_min, input_tokens_max=b.input_tokens_max, output_tokens_min=b.output_tokens_min,
        output_tokens_max=b.output_tokens_max, input_tokens_mean=r(b.input_tokens_mean),
        output_tokens_mean=r(b.output_tokens_mean), num_requests=b.num_requests, share=r(b.share),
        rate_req_per_s=r(b.rate_req_per_s), assignment=[r(x) for x in sol.shares[j]]) for j, b in enumerate(buckets)]
    gpu_records = []
    for t, (o, u) in enumerate(zip(offers, units)):
        inst_price = r(u.gpus_per_instance * o.price_per_gpu_hour_usd)
        gpu_records.append(FleetGpuRecord(
            gpu=o.spec.id, layout=u.layout, gpus_per_instance=u.gpus_per_instance,
            price_per_gpu_hour_usd=r(o.price_per_gpu_hour_usd), price_per_instance_hour_usd=inst_price,
            price_source=o.price_source, available_gpus=o.available_gpus,
            capacity_req_per_s=[r(c) for c in u.capacity_req_per_s], instances=sol.counts[t],
            gpus=sol.counts[t] * u.gpus_per_instance, load_instances=r(sol.loads[t]),
            cost_per_hour_usd=r(sol.counts[t] * inst_price)))
    report = FleetReport(status=rep.status, stop_reason=rep.stop_reason, objective=r(cost),
                         bound=None if rep.bound is None else r(min(rep.bound, cost)),
                         gap=None if rep.gap is None else r(rep.gap), solver=rep.solver,
                         solver_version=rep.solver_version, message=rep.message)
    return FleetPlan(
        tool=ToolInfo(version=__version__), inputs=inputs, slices=slices, buckets=bucket_records,
        gpu_types=gpu_records, cost_per_hour_usd=r(cost),
        cost_per_million_tokens_usd=r(usd_per_million_tokens(cost, rate * tokens)),
        cost_per_million_output_tokens_usd=r(usd_per_million_tokens(cost, rate * out_tokens)),
        baselines=baselines,
        saving_vs_best_single_type=r(1.0 - cost / min(singles)) if singles and min(singles) > 0 else None,
        report=report)
