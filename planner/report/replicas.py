"""Report sections of a replica plan: the decision, expert-load heatmaps before/after, memory, budget sweep.

"Before replication" is the engines' default placement with no redundant copies: the ``E`` experts of a
layer split into ``D`` contiguous blocks, one per GPU (what SGLang and vLLM load without an expert
location file). It needs the expert loads the plan was made from (``loads``); the plan itself only
records the per-GPU loads after replication. The balancedness-vs-budget figure re-plans the loads at the
budgets of :func:`planner.replicas.budget_sweep` and needs a GPU profile to price replicas in KV tokens.
"""

from __future__ import annotations

import numpy as np

from planner.errors import PlannerError
from planner.inputs.loads import ExpertLoads, rows_as_moe_layers
from planner.plans.schema import Plan
from planner.replicas import budget_sweep, plan_replicas
from planner.report.page import Section, figure_html, missing_html, note_html, table_html
from planner.report.svg import bar_chart, heatmap, line_chart

__all__ = ["replica_sections", "contiguous_gpu_loads"]


def contiguous_gpu_loads(weight: np.ndarray, num_gpus: int) -> np.ndarray:
    """Per-GPU loads ``[rows, D]`` of per-expert loads ``[rows, E]`` placed contiguously without copies
    (expert ``e`` on GPU ``e * D // E``).

    >>> contiguous_gpu_loads(np.array([[4.0, 1.0, 1.0, 2.0]]), 2).tolist()
    [[5.0, 3.0]]
    """
    w = np.asarray(weight, dtype=np.float64)
    gpu = np.arange(w.shape[1]) * num_gpus // w.shape[1]
    out = np.zeros((w.shape[0], num_gpus))
    for g in range(num_gpus):
        out[:, g] = w[:, gpu == g].sum(axis=1)
    return out


def _relative(loads: np.ndarray) -> np.ndarray:
    mean = loads.mean(axis=1, keepdims=True)
    return np.divide(loads, mean, out=np.ones_like(loads), where=mean > 0)


def _decision(plan: Plan) -> Section:
    rp, rep, pr = plan.replicas, plan.report, plan.replicas.predicted
    params = plan.inputs.parameters
    slots = sorted({sum(row) for row in rp.slots_per_gpu})
    rows = [("model", plan.inputs.model), ("loads", f"{plan.inputs.loads.source} {list(plan.inputs.loads.shape)}"),
            ("GPUs x nodes", f"{rp.num_gpus} x {rp.num_nodes}"), ("MoE layers planned", len(rp.layers)),
            ("slots per layer", ", ".join(map(str, slots))), ("algorithm", params.get("algorithm")),
            ("mode", rp.mode), ("token split", params.get("split")), ("solver status", f"{rep.status} ({rep.stop_reason})"),
            ("objective / bound, tokens", f"{rep.objective} / {rep.bound}"),
            ("gap", None if rep.gap is None else f"{100 * rep.gap:.2f}%"),
            ("balancedness (summed, mean over layers)", f"{pr.balancedness_mean:.4f}"),
            ("balancedness (replayed per step)", f"{pr.replay_balancedness_mean:.4f}"),
            ("balancedness (held-out steps)", pr.holdout_replay_balancedness_mean)]
    lead = ("Where every expert copy goes: the planner adds redundant copies of hot experts and packs them so "
            "the busiest GPU carries as little as possible. The gap is to a proven lower bound on the busiest load.")
    return Section("Replica plan: the decision", table_html(["", "value"], rows, left=2), lead)


def _heatmaps(plan: Plan, loads: ExpertLoads | None) -> Section:
    rp = plan.replicas
    after = _relative(np.asarray(rp.predicted.gpu_load_tokens))
    labels = [f"L{layer}" for layer in rp.layers]
    body = []
    if loads is not None:
        start, stop = rp.predicted.plan_steps
        weight = loads.select_layers(rp.layers).counts[start:stop].sum(axis=0)
        before = _relative(contiguous_gpu_loads(weight, rp.num_gpus))
        top = float(max(before.max(), after.max()))
        body.append(figure_html(heatmap(before, title="GPU load / mean, before replication", xlabel="GPU",
                                        ylabel="MoE layer", row_labels=labels, vmax=top),
                                "Experts in contiguous blocks per GPU, no copies (the engines' default)."))
        body.append(figure_html(heatmap(after, title="GPU load / mean, after replication", xlabel="GPU",
                                        ylabel="MoE layer", row_labels=labels, vmax=top),
                                "The plan's placement on the same steps; same colour scale."))
        b_before = 1.0 / before.max(axis=1)
        body.append(figure_html(bar_chart(labels, {"before": b_before.tolist(), "after": list(rp.predicted.balancedness)},
                                          title="balancedness per layer (mean / max GPU load)", ylabel="balancedness",
                                          xlabel="MoE layer"),
                                f"Mean over layers: {b_before.mean():.3f} before, {rp.predicted.balancedness_mean:.3f} after."))
        n = 2
    else:
        body.append(figure_html(heatmap(after, title="GPU load / mean, after replication", xlabel="GPU",
                                        ylabel="MoE layer", row_labels=labels),
                                "The plan's per-GPU loads on the summed planning steps, over each layer's mean."))
        body.append(missing_html("the heatmap before replication and balancedness before/after",
                                 "The plan records loads after replication only; give the load files the plan was "
                                 "made from (moeplan report PLAN --loads FILES)."))
        n = 1
    return Section("Expert load per GPU, before and after replication", "\n".join(body),
                   "1.0 is a GPU carrying exactly the layer's mean; the busiest GPU sets the MoE layer's time.", figures=n + 1)


ALGORITHMS = ("stepaware", "eplb", "none")


def _alternatives(plan: Plan, loads: ExpertLoads | None) -> Section:
    """The same loads planned by the other algorithms with the plan's other parameters: what the choice beat."""
    title = "Alternatives: the other algorithms"
    if loads is None:
        return Section(title, missing_html("the other algorithms' plans", "they are planned on the same loads: "
                                                                            "give the load files (--loads)"))
    p, rp = plan.inputs.parameters, plan.replicas
    rows, own = [], str(p.get("algorithm"))
    for alg in dict.fromkeys([own, *ALGORITHMS]):
        if alg == own:
            m = rp.predicted
        else:
            none = alg == "none"  # the engines' default placement: no redundant slots, uniform, even split
            try:
                m = plan_replicas(loads, plan.inputs.model, num_gpus=rp.num_gpus, num_nodes=rp.num_nodes,
                                  redundant_slots=0 if none else p.get("redundant_slots"),
                                  mode="uniform" if none else rp.mode, algorithm=alg,
                                  policy=str(p.get("policy") or "auto"), window_steps=p.get("window_steps"),
                                  holdout_steps=int(p.get("holdout_steps") or 0),
                                  split="even" if none else str(p.get("split") or "even"),
                                  sample_steps=p.get("sample_steps")).replicas.predicted
            except PlannerError as exc:
                rows.append((alg, None, None, None, f"not planned: {exc}"))
                continue
        rows.append((alg, m.balancedness_mean, m.replay_balancedness_mean, m.holdout_replay_balancedness_mean,
                     f"{sum(m.replay_max_gpu_load_tokens):,.0f}"))
    table = table_html(["algorithm", "balancedness (summed)", "balancedness (replayed)", "held-out", "busiest-GPU tokens/step"],
                       rows, chosen=0)
    return Section(title, table, "The same loads, GPUs and slots planned by every algorithm; the first row is the plan's. "
                                 "'none' is the engines' default: one copy per expert, no redundant slots.")


def _memory(plan: Plan) -> Section:
    rp = plan.replicas
    gb = [b / 1e9 for b in rp.predicted.expert_bytes_per_gpu]
    svg = bar_chart([str(g) for g in range(rp.num_gpus)], {"routed-expert weights": gb},
                    title="routed-expert weights per GPU over the planned layers", ylabel="GB", xlabel="GPU")
    text = note_html(f"{rp.bytes_per_expert / 1e6:.1f} MB per expert copy; the rest of a GPU's memory (attention, "
                     "KV cache) depends on the serving layout: see the deployment report or `moeplan estimate`.")
    return Section("Memory per GPU", figure_html(svg, "Bytes of expert copies each GPU holds.") + text, figures=1)


def _budget(plan: Plan, loads: ExpertLoads | None, gpu: str | None) -> Section:
    params = plan.inputs.parameters
    gpu = gpu or params.get("gpu")
    title = "Balancedness vs replica budget"
    if loads is None or not gpu:
        need = [x for x, ok in (("the load files (--loads)", loads is not None), ("a GPU profile (--gpu)", bool(gpu))) if not ok]
        return Section(title, missing_html("the budget sweep", "It re-plans the loads at several redundant-slot "
                                                               f"budgets and prices them in KV tokens: give {' and '.join(need)}."))
    try:
        points = budget_sweep(loads, plan.inputs.model, str(gpu), num_gpus=plan.replicas.num_gpus,
                              num_nodes=plan.replicas.num_nodes, algorithm=str(params.get("algorithm") or "stepaware"))
    except PlannerError as exc:
        return Section(title, missing_html("the budget sweep", f"it could not run: {exc}"))
    if not points:
        return Section(title, missing_html("the budget sweep", "no budget fits in memory"))
    xs = [p.redundant_slots for p in points]
    chosen = int(params.get("redundant_slots") or 0)
    svg = line_chart({"balancedness (replayed)": (xs, [p.balancedness_in for p in points])},
                     title=f"balancedness vs redundant slots per layer ({gpu})", xlabel="redundant slots per layer",
                     ylabel="balancedness", y_from_zero=False, vline=(chosen, f"plan: {chosen}"))
    rows = [(p.redundant_slots, p.slots_per_gpu, p.replica_bytes_per_gpu / 1e9, p.kv_tokens, p.balancedness_in, p.proxy)
            for p in points]
    table = table_html(["redundant slots", "slots/GPU", "replica GB/GPU", "KV tokens/GPU", "balancedness", "b x KV tokens"], rows,
                       chosen=next((i for i, p in enumerate(points) if p.redundant_slots == chosen), None))
    return Section(title, figure_html(svg, "Each budget re-planned on the same loads.") + table,
                   "More copies balance better but take memory the KV cache would use.", figures=1)


def replica_sections(plan: Plan, loads: ExpertLoads | None = None, *, gpu: str | None = None) -> tuple[Section, ...]:
    """The replica plan's sections; ``loads`` (already verified against the plan) enables the before/after
    comparison and, with a GPU profile (``gpu`` or the plan's), the budget sweep."""
    if loads is not None and plan.inputs.parameters.get("loads_rows_as_moe_layers"):
        loads = rows_as_moe_layers(loads, plan.replicas.layers) or loads
    return (_decision(plan), _alternatives(plan, loads), _heatmaps(plan, loads), _memory(plan), _budget(plan, loads, gpu))
