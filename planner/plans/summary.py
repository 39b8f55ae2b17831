"""Readable summaries of plans."""

from __future__ import annotations

import numpy as np

from planner.plans.schema import Plan
from planner.common.tables import format_table

__all__ = ["replica_table", "replica_headline"]


def _gb(x: float) -> str:
    return f"{x / 1e9:.2f}"


def replica_table(plan: Plan) -> str:
    """Per-layer table: slots, replicated experts, busiest GPU vs lower bound, balancedness."""
    rp = plan.replicas
    m = rp.predicted
    rows = []
    for r, layer in enumerate(rp.layers):
        p2l = np.asarray(rp.physical_to_logical[r])
        counts = np.bincount(p2l, minlength=rp.num_experts)
        mx, lb = m.replay_max_gpu_load_tokens[r], m.replay_lower_bound_tokens[r]
        gap = 1 - lb / mx if mx > 0 else 0.0
        rows.append(
            [
                layer,
                p2l.size,
                int((counts > 1).sum()),
                int(counts.max()),
                f"{mx:.0f}",
                f"{lb:.0f}",
                f"{100 * gap:.2f}",
                f"{m.balancedness[r]:.4f}",
                f"{m.replay_balancedness[r]:.4f}",
            ]
            + ([f"{m.holdout_replay_balancedness[r]:.4f}"] if m.holdout_replay_balancedness else [])
        )
    headers = ["layer", "slots", "replicated", "max_copies", "busiest_gpu_tokens", "bound_tokens", "gap_%", "b_sum", "b_replay"]
    if m.holdout_replay_balancedness:
        headers.append("b_holdout")
    return format_table(headers, rows) + "\n" + replica_headline(plan)


def replica_headline(plan: Plan) -> str:
    """One paragraph: what was planned, overall balancedness, gap and memory."""
    rp = plan.replicas
    m = rp.predicted
    prm = plan.inputs.parameters
    per_gpu = max(m.expert_bytes_per_gpu)
    rep = plan.report
    slots = (
        f"{prm.get('slots_per_layer')} slots/layer" if rp.mode == "uniform"
        else f"{min(map(len, rp.physical_to_logical))}-{max(map(len, rp.physical_to_logical))} slots/layer (per-layer)"
    )
    a, b = m.plan_steps
    held = ""
    if m.holdout_steps is not None:
        held = f"; held-out steps {m.holdout_steps[0]}-{m.holdout_steps[1] - 1}: {m.holdout_replay_balancedness_mean:.4f}"
    return (
        f"{plan.inputs.model}: {len(rp.layers)} MoE layer(s), {rp.num_experts} experts, "
        f"{slots} on {rp.num_gpus} GPU(s) x {rp.num_nodes} node(s) "
        f"({prm.get('redundant_slots')} redundant), solver {rep.solver}\n"
        f"replayed balancedness {m.replay_balancedness_mean:.4f} over planning steps {a}-{b - 1}{held} "
        f"(on the summed loads {m.balancedness_mean:.4f})\n"
        f"busiest-GPU load per step, summed over layers: {rep.objective:.0f} vs lower bound {rep.bound:.0f} tokens, "
        f"gap {100 * (rep.gap or 0):.2f}%\n"
        f"routed-expert weights per GPU over the planned layers: {_gb(per_gpu)} GB "
        f"({rp.bytes_per_expert / 1e6:.1f} MB per expert copy)"
    )
