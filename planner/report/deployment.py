"""Report sections of a deployment plan: the decision and its alternatives, SLO attainment, the Pareto
front, memory per GPU of every pool, and goodput vs rate with the SLO line (a closed-loop plan: served
rate and latency vs clients).

Goodput vs rate re-simulates the chosen deployment at ``rate_points`` rates around its own (the same
simulator and requests as :func:`planner.deploy.verify_deployment`); a closed-loop plan's chosen deployment
is re-simulated instead at ``rate_points`` client counts around its own, judged on each run's steady
window. A plan simulated on a trace needs that trace, which the plan does not hold.
"""

from __future__ import annotations

from planner.deploy.result import pareto_front
from planner.deploy.verify import deployment_pools, deployment_workload
from planner.errors import PlannerError
from planner.inputs import SLO, Workload
from planner.perf import concurrency_requests, memory_per_gpu, simulate
from planner.plans.schema import DeploymentPlan, DeploymentRecord
from planner.errors import ProfileNotFound
from planner.profiles import Precision, cost_per_million_tokens_usd, get_gpu
from planner.report.page import Section, figure_html, missing_html, note_html, table_html
from planner.report.svg import bar_chart, line_chart

__all__ = ["deployment_sections", "RATE_FACTORS"]

#: rates of the goodput curve, as multiples of the chosen deployment's rate (a closed-loop plan: client
#: counts, as multiples of its clients)
RATE_FACTORS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5)


def _pools_text(d: DeploymentRecord) -> str:
    return " + ".join(f"{p.instances}x {p.role} {p.layout}" for p in d.pools)


def _all(plan: DeploymentPlan) -> list[DeploymentRecord]:
    return [plan.chosen, *plan.alternatives]


def _price(plan: DeploymentPlan) -> tuple[float | None, str]:
    """The GPU profile's price per GPU-hour and its source (None: no profile or no price)."""
    try:
        spec = get_gpu(plan.inputs.gpu)
    except ProfileNotFound:
        return None, ""
    price = float(spec.price_per_hour_usd or 0.0)
    return (price, spec.provenance.get("source", "")) if price > 0 else (None, "")


def _decision(plan: DeploymentPlan) -> Section:
    inp, s = plan.inputs, plan.inputs.slo
    price, price_source = _price(plan)
    tokens = inp.workload.input_tokens_mean + inp.workload.output_tokens_mean
    head = table_html(["", "value"], [
        ("model / GPU", f"{inp.model} / {inp.gpu} ({inp.gpus_per_node} per node)"),
        ("SLO", f"TTFT {s.ttft_ms:g} ms, TPOT {s.tpot_ms:g} ms at p{s.percentile:g} ({s.rule})"),
        ("workload", f"{inp.workload.source}: {inp.workload.num_requests} requests, mean {inp.workload.input_tokens_mean:.0f} in / "
                     f"{inp.workload.output_tokens_mean:.0f} out tokens"),
        ("budget", f"{inp.parameters.get('num_gpus')} GPUs" if inp.parameters.get("num_gpus") else
         f"rate {inp.parameters.get('rate_req_per_s')} req/s"),
        ("objective", inp.parameters.get("objective")),
        ("load", "open loop: arrivals at the rate" if plan.chosen.concurrency is None else
         f"closed loop: {plan.chosen.concurrency} clients; rates and percentiles of the steady window"),
        ("chosen", f"{plan.chosen.xpyd}: {_pools_text(plan.chosen)} on {plan.chosen.num_gpus} GPUs"),
        ("integer program", f"{plan.report.status} ({plan.report.stop_reason}), {plan.report.solver}"),
        ("GPU price", f"${price:g} per GPU-hour (profile: {price_source}; indicative)" if price else "unknown: no cost columns"),
    ], left=2)
    def cost(d):
        if not price:
            return None, None
        return d.num_gpus * price, cost_per_million_tokens_usd(d.num_gpus * price, d.rate_req_per_s, tokens)

    rows = [(d.xpyd, d.mode, _pools_text(d), d.num_gpus, d.rate_req_per_s, d.attainment, d.ttft_ms, d.tpot_ms,
             d.tokens_per_s_per_gpu, d.tokens_per_s_per_user, d.meets_slo, *cost(d)) for d in _all(plan)]
    alts = table_html(["deployment", "mode", "pools", "GPUs", "rate req/s", "attainment", "TTFT ms", "TPOT ms",
                       "tok/s/GPU", "tok/s/user", "meets SLO", "$/hour", "$/M tokens"], rows, chosen=0, left=3)
    lead = ("The search enumerates memory-feasible layouts per role, scores them by simulated goodput, picks "
            "instance counts with an integer program and simulates the best deployments end to end; the first "
            "row is the choice, the others the alternatives it beat.")
    missing = missing_html("the per-role candidates the search scored", "the plan records the deployments simulated "
                           "end to end, not every layout screened; planner.plan_deployment(...).scores lists them")
    return Section("Deployment: the decision and the alternatives", head + alts + note_html(plan.comparison) + missing, lead)


def _attainment(plan: DeploymentPlan) -> Section:
    ds, s = _all(plan), plan.inputs.slo
    svg = bar_chart([d.xpyd for d in ds], {"attainment": [d.attainment for d in ds]},
                    title="SLO attainment of each deployment at its rate", ylabel="share of requests meeting both limits",
                    hline=(s.attainment_target, f"target {s.attainment_target:g}"))
    return Section("SLO attainment", figure_html(svg, "Each deployment simulated at the rate in the table above."),
                   figures=1)


def _pareto(plan: DeploymentPlan) -> Section:
    ds = [d for d in _all(plan) if d.tokens_per_s_per_user is not None]
    if len(ds) < 1:
        return Section("Pareto front", missing_html("the Pareto front", "no deployment has a finite TPOT"))
    pts = [(d.tokens_per_s_per_user, d.tokens_per_s_per_gpu) for d in ds]
    front = pareto_front(pts)
    series = {"disaggregated": ([p[0] for p, d in zip(pts, ds) if d.mode == "disaggregated"],
                                [p[1] for p, d in zip(pts, ds) if d.mode == "disaggregated"]),
              "aggregated": ([p[0] for p, d in zip(pts, ds) if d.mode == "aggregated"],
                             [p[1] for p, d in zip(pts, ds) if d.mode == "aggregated"]),
              "front": ([pts[i][0] for i in front], [pts[i][1] for i in front])}
    series = {k: v for k, v in series.items() if v[0]}
    chosen = plan.chosen
    hl = (chosen.tokens_per_s_per_user, chosen.tokens_per_s_per_gpu, f"chosen {chosen.xpyd}") \
        if chosen.tokens_per_s_per_user is not None else None
    svg = line_chart(series, title="tokens/s per GPU vs tokens/s per user", xlabel="tokens/s per user (1000 / TPOT)",
                     ylabel="tokens/s per GPU", points_only=("disaggregated", "aggregated"), highlight=hl)
    return Section("Pareto front", figure_html(svg, "Throughput per GPU against speed per user; the line joins the "
                                                    "deployments no other beats on both."),
                   f"{len(front)} of {len(ds)} deployments are on the front.", figures=1)


def _memory(plan: DeploymentPlan) -> Section:
    rows, cats, series = [], [], {k: [] for k in ("weights", "activations", "overhead", "KV cache")}
    for d in _all(plan):
        for p in d.pools:
            c = p.cost
            if c.get("kind") != "latency_model" or f"{p.role} {p.layout}" in cats:
                continue
            try:
                prec = Precision.from_mapping(c["precision"]) if c.get("precision") else None
                m = memory_per_gpu(str(c["model"]), str(c["gpu"]), p.layout, expert_slots_per_gpu=c.get("expert_slots_per_gpu"),
                                   precision=prec, max_batch_tokens=int(c["max_batch_tokens"]))
            except PlannerError:
                continue
            cats.append(f"{p.role} {p.layout}")
            for k, v in zip(series, (m.total_weights_bytes, m.activation_bytes, m.runtime_overhead_bytes, m.kv_cache_bytes)):
                series[k].append(v / 1e9)
            rows.append((p.role, p.layout, m.total_weights_bytes / 1e9, m.routed_expert_weights_bytes / 1e9,
                         m.activation_bytes / 1e9, m.runtime_overhead_bytes / 1e9, m.kv_cache_bytes / 1e9,
                         m.gpu_memory_bytes / 1e9, m.kv_tokens_per_instance))
    if not rows:
        return Section("Memory per GPU", missing_html("memory per GPU", "the pools use a fitted cost model "
                                                                         "(DistServe's) without moeplan's memory model"))
    svg = bar_chart(cats, series, title="memory of the binding GPU per pool layout", ylabel="GB")
    table = table_html(["role", "layout", "weights GB", "of which experts GB", "activations GB", "overhead GB", "KV cache GB",
                        "GPU GB", "KV tokens/instance"], rows, left=2)
    return Section("Memory per GPU", figure_html(svg, "moeplan's memory model per distinct pool layout.") + table,
                   "What each GPU holds; the KV cache is what is left of the usable memory.", figures=1)


def _rerun_inputs(plan: DeploymentPlan, workload: Workload | None, rate_points: int, title: str, what: str,
                  no_rate: str) -> tuple[Workload | None, Section | None]:
    """The requests to re-simulate the chosen deployment on, or the section saying why it is not shown."""
    if rate_points <= 0:
        return None, Section(title, missing_html(what, "disabled (rate points 0)"))
    w = deployment_workload(plan, workload)
    if w is None:
        return None, Section(title, missing_html(what, f"the plan was simulated on {plan.inputs.workload.source}, "
                                                       "which it does not hold: give it (--trace)"))
    if plan.chosen.rate_req_per_s <= 0:
        return None, Section(title, missing_html(what, no_rate))
    return w, None


def _goodput(plan: DeploymentPlan, workload: Workload | None, rate_points: int) -> Section:
    title = "Goodput vs request rate"
    d, s = plan.chosen, plan.inputs.slo
    w, why = _rerun_inputs(plan, workload, rate_points, title, "goodput vs rate", "the chosen deployment has rate 0")
    if why is not None:
        return why
    slo = SLO(s.ttft_ms, s.tpot_ms, s.attainment_target, s.rule)
    head, pools = w.head(d.num_requests), deployment_pools(d)
    rates, att, good = [], [], []
    for f in _factors(rate_points):
        r = d.rate_req_per_s * f
        res = simulate(head.with_rate(r), pools)
        a = res.attainment(slo)
        rates.append(r), att.append(a), good.append(r * a)
    fig1 = line_chart({"attainment": (rates, att)}, title=f"SLO attainment vs rate ({d.xpyd})", xlabel="request rate, req/s",
                      ylabel="attainment", hline=(s.attainment_target, f"SLO target {s.attainment_target:g}"),
                      vline=(d.rate_req_per_s, "planned rate"))
    fig2 = line_chart({"goodput": (rates, good), "offered": (rates, rates)}, title=f"goodput vs rate ({d.xpyd})",
                      xlabel="request rate, req/s", ylabel="req/s meeting the SLO", vline=(d.rate_req_per_s, "planned rate"))
    table = table_html(["rate req/s", "attainment", "goodput req/s", "meets SLO"],
                       [(r, a, g, a >= s.attainment_target) for r, a, g in zip(rates, att, good)], left=0)
    return Section(title, figure_html(fig1, "Above the planned rate attainment falls below the target.") +
                   figure_html(fig2, "Requests per second served within both limits.") + table,
                   f"The chosen deployment re-simulated on {d.num_requests} requests at {len(rates)} rates.", figures=2)


def _factors(rate_points: int) -> list[float]:
    pick = RATE_FACTORS if rate_points >= len(RATE_FACTORS) else RATE_FACTORS[:: max(1, len(RATE_FACTORS) // rate_points)]
    return sorted(set(pick) | {1.0})


def _clients(plan: DeploymentPlan, workload: Workload | None, rate_points: int) -> Section:
    """A closed-loop plan: the chosen deployment at client counts around its own, each judged on its steady window."""
    title = "Served rate and latency vs clients"
    d, s = plan.chosen, plan.inputs.slo
    w, why = _rerun_inputs(plan, workload, rate_points, title, "rate and latency vs clients",
                           "the chosen deployment serves no client count")
    if why is not None:
        return why
    slo = SLO(s.ttft_ms, s.tpot_ms, s.attainment_target, s.rule)
    counts = sorted({max(1, min(len(w) // 3, round(d.concurrency * f))) for f in _factors(rate_points)})
    pools, rows = deployment_pools(d), []
    for n in counts:
        res = simulate(w.head(concurrency_requests(n, len(w))), pools, concurrency=n)
        st = res.steady_state()
        ttft, tpot = res.percentile("ttft_ms", s.percentile, steady=True), res.percentile("tpot_ms", s.percentile, steady=True)
        rows.append((n, st["requests_per_s"], ttft, tpot, res.meets(slo, steady=True)))
    xs = [r[0] for r in rows]
    q = f"p{s.percentile:g}"
    fig1 = line_chart({f"TTFT {q} / limit": (xs, [r[2] / s.ttft_ms for r in rows]),
                       f"TPOT {q} / limit": (xs, [r[3] / s.tpot_ms for r in rows])},
                      title=f"latency vs clients ({d.xpyd})", xlabel="clients", ylabel="percentile / SLO limit",
                      hline=(1.0, "SLO limit"), vline=(d.concurrency, "planned clients"))
    fig2 = line_chart({"served": (xs, [r[1] for r in rows])}, title=f"served rate vs clients ({d.xpyd})",
                      xlabel="clients", ylabel="req/s in steady state", vline=(d.concurrency, "planned clients"))
    table = table_html(["clients", "req/s", f"TTFT {q} ms", f"TPOT {q} ms", "meets SLO"], rows, left=0)
    return Section(title, figure_html(fig1, "Above the planned clients a percentile passes its limit.") +
                   figure_html(fig2, "Requests per second finished in each run's steady window.") + table,
                   f"The chosen deployment re-simulated in closed loop at {len(rows)} client counts "
                   f"(each on its first max(1500, 6 N) requests, judged between warm-up and drain).", figures=2)


def deployment_sections(plan: DeploymentPlan, workload: Workload | None = None, *,
                        rate_points: int = len(RATE_FACTORS)) -> tuple[Section, ...]:
    """The deployment plan's sections (an embedded replica plan is rendered as its own part by the caller)."""
    last = _goodput(plan, workload, rate_points) if plan.chosen.concurrency is None else \
        _clients(plan, workload, rate_points)
    return (_decision(plan), _attainment(plan), _pareto(plan), _memory(plan), last)
