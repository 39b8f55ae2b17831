"""Report sections of a fleet plan (the GPU mix against single-type fleets), a cluster plan (layer ranges
with flows) and a migration schedule (``moeplan migrate -o``: copies and steps per layer)."""

from __future__ import annotations

from planner.cluster.fleet_summary import bucket_label
from planner.plans.schema import ClusterPlan, FleetPlan
from planner.report.page import Section, figure_html, missing_html, note_html, table_html
from planner.report.svg import bar_chart, heatmap, range_bars

__all__ = ["fleet_sections", "cluster_sections", "migration_sections", "is_migration_schedule"]


def fleet_sections(plan: FleetPlan) -> tuple[Section, ...]:
    inp = plan.inputs
    rows = [(g.gpu, g.layout, g.price_per_gpu_hour_usd, g.instances, g.gpus, g.load_instances, g.cost_per_hour_usd,
             g.price_source) for g in plan.gpu_types]
    buy = table_html(["GPU", "instance layout", "$/GPU-hour", "instances", "GPUs", "load (instances)", "$/hour", "price source"],
                     rows, left=2)
    slo = f"TTFT {inp.slo.ttft_ms:g} ms, TPOT {inp.slo.tpot_ms:g} ms at p{inp.slo.percentile:g}" if inp.slo else "the profile table's"
    head = table_html(["", "value"], [
        ("model", inp.model), ("SLO", slo), ("rate", f"{inp.rate_req_per_s:g} req/s ({inp.workload.source})"),
        ("capacities from", inp.capacity_source),
        ("fleet cost", f"${plan.cost_per_hour_usd:.2f}/hour"),
        ("cost per million tokens", f"${plan.cost_per_million_tokens_usd:.3f} (output only ${plan.cost_per_million_output_tokens_usd:.3f})"),
        ("saving vs cheapest single type", None if plan.saving_vs_best_single_type is None else f"{100 * plan.saving_vs_best_single_type:.1f}%"),
        ("covering program", f"{plan.report.status} ({plan.report.stop_reason}), {plan.report.solver}")], left=2)
    decision = Section("Fleet: the GPU mix", head + buy, "The cheapest mix of GPU types whose instances serve every "
                                                          "request-size bucket within the SLO (Mélange's covering program).")
    names = [b.name for b in plan.baselines]
    costs = [b.cost_per_hour_usd if b.feasible else None for b in plan.baselines]
    svg = bar_chart(["mix", *names], {"$/hour": [plan.cost_per_hour_usd, *costs]}, title="fleet cost: the mix vs single types",
                    ylabel="$/hour")
    base_rows = [(b.name, b.feasible, ", ".join(f"{n}x{g.gpu}" for n, g in zip(b.instances, plan.gpu_types) if n),
                  b.cost_per_hour_usd, b.note) for b in plan.baselines]
    alts = Section("Alternatives: single-type fleets", figure_html(svg, "Each GPU type alone, and the greedy rule; "
                                                                        "infeasible ones have no bar.")
                   + table_html(["fleet", "feasible", "instances", "$/hour", "note"], base_rows, left=3), figures=1)
    labels = [bucket_label(b) for b in plan.buckets]
    hm = heatmap([b.assignment for b in plan.buckets], title="share of each bucket's rate per GPU type",
                 xlabel="GPU type: " + ", ".join(f"{i}={g.gpu}" for i, g in enumerate(plan.gpu_types)),
                 ylabel="request bucket", row_labels=[f"b{i}" for i in range(len(labels))], vmax=1.0)
    brows = [(f"b{i}", lab, b.num_requests, b.share, b.rate_req_per_s,
              ", ".join(f"{g.gpu} {a:.2f}" for g, a in zip(plan.gpu_types, b.assignment) if a > 0))
             for i, (lab, b) in enumerate(zip(labels, plan.buckets))]
    assign = Section("Request buckets and where they go", figure_html(hm, "Rows: buckets of prompt/output length.")
                     + table_html(["bucket", "tokens", "requests", "share", "req/s", "served by"], brows, left=2), figures=1)
    return decision, alts, assign


def cluster_sections(plan: ClusterPlan) -> tuple[Section, ...]:
    inp = plan.inputs
    head = table_html(["", "value"], [
        ("cluster", f"{inp.cluster} ({len(plan.nodes)} nodes)"), ("model", f"{inp.model}, {inp.num_layers} layers"),
        ("throughput (max-flow)", f"{plan.throughput_tokens_per_s:,.1f} tokens/s"),
        ("upper bounds", f"layer-crossing {plan.crossing_bound_tokens_per_s:,.1f}, Helix {plan.helix_upper_bound_tokens_per_s:,.1f}"),
        ("gap", None if plan.report.gap is None else f"{100 * plan.report.gap:.2f}%"),
        ("found by", plan.method), ("status", f"{plan.report.status} ({plan.report.stop_reason})")], left=2)
    notes = "".join(note_html(n) for n in plan.notes)
    decision = Section("Cluster: the placement", head + notes, "Each node holds a contiguous range of layers; tokens flow "
                                                                "from the coordinator through the ranges; the max-flow is the throughput.")
    nodes = sorted(plan.nodes, key=lambda n: (n.first_layer, n.last_layer, n.name))
    bars = [(f"{n.name} ({n.gpus}x{n.gpu})", n.first_layer, n.last_layer,
             n.flow_tokens_per_s / n.capacity_tokens_per_s if n.capacity_tokens_per_s > 0 else 0.0,
             f"{n.flow_tokens_per_s:,.0f} tok/s") for n in nodes]
    svg = range_bars(bars, title="layer range per node (shade: flow / capacity)", xlabel="layer", x_max=inp.num_layers)
    flow = bar_chart([n.name for n in nodes], {"flow": [n.flow_tokens_per_s for n in nodes],
                                               "capacity": [n.capacity_tokens_per_s for n in nodes]},
                     title="flow and capacity per node", ylabel="tokens/s")
    ranges = Section("Layer ranges with flows", figure_html(svg, "Darker: the node runs nearer its capacity.")
                     + figure_html(flow, "Tokens/s through each node against what its layers allow."), figures=2)
    edges = sorted(plan.edges, key=lambda e: -e.flow_tokens_per_s)
    erows = [(e.src, e.dst, e.flow_tokens_per_s, e.capacity_tokens_per_s, e.routing_weight) for e in edges if e.flow_tokens_per_s > 0]
    prows = [(" > ".join(p.nodes), p.layer_partition, p.rate_tokens_per_s) for p in plan.pipelines]
    routes = Section("Flows and pipelines", table_html(["from", "to", "flow tok/s", "capacity tok/s", "routing weight"], erows, left=2)
                     + table_html(["pipeline", "layers per stage", "tokens/s"], prows, left=2),
                     f"{len(erows)} links carry flow; {len(prows)} pipelines.")
    return decision, ranges, routes


def is_migration_schedule(doc: object) -> bool:
    """Whether a JSON document is a migration schedule written by ``moeplan migrate -o``."""
    return isinstance(doc, dict) and {"totals", "layers", "bytes_per_expert", "move_columns"} <= set(doc)


def migration_sections(doc: dict) -> tuple[Section, ...]:
    t = doc["totals"]
    head = table_html(["", "value"], [
        ("copies moved", f"{t['copies']} (naive slot-by-slot: {t['naive_copies']})"),
        ("weights moved", f"{t['bytes_moved'] / 1e9:.3f} GB"), ("cross-node copies", t["cross_node_copies"]),
        ("steps (layers run together)", t["steps"]), ("staged copies", t["staged"]),
        ("peak staging per GPU", f"{t['peak_staging_bytes_per_gpu'] / 1e9:.3f} GB"),
        ("GPUs relabelled", doc["relabel"]), ("spare slots per GPU", doc["spare_slots_per_gpu"])], left=2)
    layers = doc["layers"]
    if not layers:
        return (Section("Migration: the schedule", head + missing_html("per-layer moves", "the schedule has no layers")),)
    svg = bar_chart([str(lay["layer"]) for lay in layers], {"copies": [lay["copies"] for lay in layers],
                                                           "naive copies": [lay["naive_copies"] for lay in layers]},
                    title="expert copies moved per layer", ylabel="copies", xlabel="MoE layer")
    rows = [(lay["layer"], lay["kept"], lay["copies"], lay["naive_copies"], lay["cross_node_copies"],
             lay["bytes_moved"] / 1e9, len(lay["steps"])) for lay in layers]
    return (Section("Migration: the schedule", head, "The least-traffic, always-serving move schedule from the running "
                                                     "plan to the new one."),
            Section("Moves per layer", figure_html(svg, "Copies the schedule moves against overwriting slot by slot.")
                    + table_html(["layer", "kept", "copies", "naive", "cross-node", "GB", "steps"], rows, left=1), figures=1))
