"""Report sections of a scenario plan's own part (``kind: "scenario"``): the decisions and the GPU types.

The parts the scenario holds (deployments, replica plans per pool, migrations, fleet, cluster) are
rendered by their own kinds' sections (:func:`planner.report.build.plan_parts`).
"""

from __future__ import annotations

from planner.plans.schema import ScenarioPlan
from planner.report.page import Section, figure_html, table_html
from planner.report.svg import bar_chart

__all__ = ["scenario_sections"]


def scenario_sections(plan: ScenarioPlan) -> tuple[Section, ...]:
    items = "".join(f"<li>{_esc(d)}</li>" for d in plan.decisions)
    sc = plan.scenario
    head = table_html(["", "value"], [
        ("scenario", f"{plan.name} (sha256 {plan.scenario_sha256[:12]})"), ("model", plan.model),
        ("GPU types searched", ", ".join(c.gpu for c in plan.gpu_choices) or "none"),
        ("chosen", plan.chosen_gpu or "-"),
        ("SLO", f"TTFT {sc['slo']['ttft_ms']:g} ms, TPOT {sc['slo']['tpot_ms']:g} ms at p{sc['slo']['percentile']:g}"
         if sc.get("slo") else "-"),
        ("workload", ", ".join(f"{k} {v}" for k, v in (sc.get("workload") or {}).items()) or "-"),
        ("loads", sc.get("loads") or "-")], left=2)
    out = [Section("Decisions and why", head + f"<ul>{items}</ul>",
                   "What the main job decided, stage by stage, with the alternatives' numbers.")]
    if plan.gpu_choices:
        rows = [(c.gpu + (" (chosen)" if c.gpu == plan.chosen_gpu else ""), c.num_gpus, c.deployment,
                 c.rate_req_per_s, c.tokens_per_s, c.price_per_gpu_hour_usd, c.usd_per_hour, c.usd_per_million_tokens,
                 "met" if c.meets_slo else "missed") for c in plan.gpu_choices]
        chosen = next((i for i, c in enumerate(plan.gpu_choices) if c.gpu == plan.chosen_gpu), None)
        table = table_html(["GPU", "GPUs", "deployment", "req/s", "tokens/s", "$/GPU-hour", "$/hour", "$/M tokens", "SLO"],
                           rows, chosen=chosen, left=3)
        priced = [c for c in plan.gpu_choices if c.usd_per_million_tokens is not None]
        fig = ""
        figures = 0
        if priced:
            fig = figure_html(bar_chart([c.gpu for c in priced], {"$/M tokens": [c.usd_per_million_tokens for c in priced]},
                                        title="cost per million tokens by GPU type", ylabel="$ per million tokens"),
                              "Each type's best deployment under the SLO; the cheapest per token among those meeting it is chosen.")
            figures = 1
        out.append(Section("GPU types: cost per million tokens", fig + table, figures=figures))
    return tuple(out)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
