"""The cluster plan's figure: each node's layer range as a bar (shaded by its flow share) and its flow.

Drawn on a new :class:`matplotlib.figure.Figure` (no pyplot) and written as a PNG atomically;
matplotlib is optional (``pip install 'moeplan[plot]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from planner.errors import InputError
from planner.plans.schema import ClusterPlan
from planner.replicas.plots import save_png

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["layout_figure", "plot_layout"]


def layout_figure(plan: ClusterPlan) -> "Figure":
    """Left: layer ranges per node (bar colour = flow / capacity); right: flow and capacity per node."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("needs matplotlib (pip install 'moeplan[plot]')", param="plot") from None
    nodes = sorted(plan.nodes, key=lambda n: (n.first_layer, n.last_layer, n.name))
    fig = Figure(figsize=(10, max(3.0, 0.22 * len(nodes) + 1.2)), dpi=100)
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]}, sharey=True)
    ys = range(len(nodes))
    use = [n.flow_tokens_per_s / n.capacity_tokens_per_s if n.capacity_tokens_per_s > 0 else 0.0 for n in nodes]
    ax.barh(ys, [n.last_layer - n.first_layer for n in nodes], left=[n.first_layer for n in nodes],
            color=[(0.1, 0.3 + 0.5 * (1 - u), 0.8) for u in use], edgecolor="black", linewidth=0.4)
    ax.set_yticks(list(ys), [f"{n.name} ({n.gpu})" for n in nodes], fontsize=7)
    ax.set_xlim(0, plan.inputs.num_layers)
    ax.set_xlabel("layers held (dark: flow at capacity)")
    ax.invert_yaxis()
    bx.barh(ys, [n.capacity_tokens_per_s for n in nodes], color="0.85", label="capacity T(k)")
    bx.barh(ys, [n.flow_tokens_per_s for n in nodes], color="tab:blue", label="flow")
    bx.set_xlabel("tokens/s")
    bx.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{plan.inputs.cluster}: {plan.throughput_tokens_per_s:,.1f} tokens/s "
                 f"(bound {plan.report.bound:,.1f})", fontsize=9)
    fig.tight_layout()
    return fig


def plot_layout(plan: ClusterPlan, path) -> None:
    """Write :func:`layout_figure` as a PNG (atomically)."""
    save_png(layout_figure(plan), path)
