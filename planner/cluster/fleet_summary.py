"""How a fleet plan reads: text tables (the fleet, the buckets' split, the baselines) and a figure."""

from __future__ import annotations

from planner.common.tables import format_table
from planner.errors import InputError
from planner.plans.schema import FleetPlan
from planner.replicas.plots import save_png

__all__ = ["fleet_tables", "fleet_figure", "plot_fleet", "bucket_label"]


def bucket_label(b) -> str:
    """A request-size bucket as people read it: ``in 1-256 / out 65-256`` (bounds are (lo, hi], ``>lo`` open)."""
    def span(lo, hi):
        return f">{lo}" if hi is None else f"{lo + 1}-{hi}"
    return f"in {span(b.input_tokens_min, b.input_tokens_max)} / out {span(b.output_tokens_min, b.output_tokens_max)}"


def fleet_tables(plan: FleetPlan, notes=()) -> str:
    """The fleet per GPU type, each bucket's split over the types, the baselines and the cost lines."""
    rows = []
    for g in plan.gpu_types:
        util = f"{g.load_instances / g.instances:.0%}" if g.instances else "-"
        avail = "unlimited" if g.available_gpus is None else str(g.available_gpus)
        rows.append([g.gpu, g.layout, g.gpus_per_instance, f"{g.price_per_instance_hour_usd:.3f}", avail, g.instances,
                     g.gpus, f"{g.cost_per_hour_usd:.2f}", util])
    fleet = format_table(["GPU type", "instance", "GPUs/inst", "$/h/inst", "available GPUs", "instances", "GPUs", "$/h",
                          "utilisation"], rows, title=f"fleet for {plan.inputs.rate_req_per_s:.3g} req/s"
                                                       + (f" of {plan.inputs.model}" if plan.inputs.model else ""))
    names = [g.gpu for g in plan.gpu_types]
    brows = []
    for b in plan.buckets:
        split = ", ".join(f"{n} {x:.0%}" for n, x in zip(names, b.assignment) if x > 1e-9)
        brows.append([bucket_label(b), b.num_requests, f"{b.share:.1%}", f"{b.rate_req_per_s:.3g}", split])
    buckets = format_table(["bucket (tokens)", "requests", "share", "req/s", "served by"], brows,
                           title="request-size buckets")
    caps = format_table(["bucket (tokens)", *names],
                        [[bucket_label(b), *(f"{g.capacity_req_per_s[j]:.3g}" for g in plan.gpu_types)]
                         for j, b in enumerate(plan.buckets)],
                        title="capacity: req/s one instance sustains within the SLO (0: cannot serve)")
    base_rows = []
    for b in plan.baselines:
        if b.feasible:
            what = " + ".join(f"{n} x {name}" for n, name in zip(b.instances, names) if n)
            extra = f"{b.cost_per_hour_usd / plan.cost_per_hour_usd - 1:+.0%}" if plan.cost_per_hour_usd else "-"
            base_rows.append([b.name, what or "-", f"{b.cost_per_hour_usd:.2f}", extra, b.note])
        else:
            base_rows.append([b.name, "-", "infeasible", "-", b.note])
    base = format_table(["baseline", "fleet", "$/h", "vs mix", "note"], base_rows,
                        title="single-type fleets and the greedy rule")
    r = plan.report
    lines = [f"cost: ${plan.cost_per_hour_usd:.2f}/h; ${plan.cost_per_million_tokens_usd:.3f} per million tokens "
             f"(prompt + output), ${plan.cost_per_million_output_tokens_usd:.3f} per million output tokens",
             f"covering program: {r.status} ({r.stop_reason}), bound ${r.bound if r.bound is not None else float('nan'):.2f}"
             f"/h, {r.solver} {r.solver_version}"]
    if plan.saving_vs_best_single_type is not None:
        lines.append(f"saving vs the cheapest single-type fleet: {plan.saving_vs_best_single_type:.1%}")
    lines += [f"note: {n}" for n in notes]
    return "\n\n".join([fleet, caps, buckets, base, "\n".join(lines)])


def fleet_figure(plan: FleetPlan):
    """Left: each bucket's rate split over GPU types (stacked bars); right: $/hour of the mix and the baselines."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("needs matplotlib (pip install 'moeplan[plot]')", param="plot") from None
    fig = Figure(figsize=(10.0, 4.2), dpi=110)
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    labels = [bucket_label(b) for b in plan.buckets]
    bottom = [0.0] * len(plan.buckets)
    for t, g in enumerate(plan.gpu_types):
        part = [b.rate_req_per_s * b.assignment[t] for b in plan.buckets]
        if any(part):
            ax.bar(range(len(labels)), part, bottom=bottom, label=g.gpu)
            bottom = [x + y for x, y in zip(bottom, part)]
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("req/s")
    ax.set_title("bucket assignment", fontsize=10)
    ax.legend(fontsize=8)
    names = ["mix"] + [b.name for b in plan.baselines if b.feasible]
    costs = [plan.cost_per_hour_usd] + [b.cost_per_hour_usd for b in plan.baselines if b.feasible]
    bx.bar(range(len(names)), costs, color=["tab:red"] + ["tab:gray"] * (len(names) - 1))
    bx.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    bx.set_ylabel("$/hour")
    bx.set_title("cost of the mix and the baselines", fontsize=10)
    fig.tight_layout()
    return fig


def plot_fleet(plan: FleetPlan, path) -> None:
    """Write :func:`fleet_figure` as a PNG at ``path``."""
    save_png(fleet_figure(plan), path)
