"""The deployment search's figure: tokens/s/GPU against tokens/s/user, the Pareto front and the choice.

Drawn on a new :class:`matplotlib.figure.Figure` (no pyplot; a notebook's backend is untouched) and
written as a PNG atomically. matplotlib is optional (``pip install 'moeplan[plot]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from planner.errors import InputError
from planner.replicas.plots import save_png

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from planner.deploy.result import DeploymentResult

__all__ = ["pareto_figure", "plot_pareto"]


def pareto_figure(result: "DeploymentResult") -> "Figure":
    """Every simulated deployment (disaggregated o, aggregated s), the front as a line, the chosen one starred."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("needs matplotlib (pip install 'moeplan[plot]')", param="plot") from None
    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    ax = fig.add_subplot()
    for mode, marker in (("disaggregated", "o"), ("aggregated", "s")):
        pts = [d for d in result.deployments if d.mode == mode and d.rate_req_per_s > 0]
        ax.scatter([d.tokens_per_s_per_user for d in pts], [d.tokens_per_s_per_gpu for d in pts], marker=marker,
                   label=mode, alpha=0.7)
    front = [result.deployments[i] for i in result.pareto]
    ax.plot([d.tokens_per_s_per_user for d in front], [d.tokens_per_s_per_gpu for d in front], "k--", lw=1,
            label="Pareto front")
    c = result.chosen
    ax.scatter([c.tokens_per_s_per_user], [c.tokens_per_s_per_gpu], marker="*", s=220, color="tab:red",
               label=f"chosen: {c.xpyd}", zorder=5)
    r = result.request
    ax.set_xlabel("tokens/s/user (1000 / TPOT at the percentile)")
    ax.set_ylabel("output tokens/s/GPU")
    ax.set_title(f"{r['model']} on {r['gpu']}: {r['target']}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_pareto(result: "DeploymentResult", path) -> None:
    """Write :func:`pareto_figure` as a PNG at ``path``."""
    save_png(pareto_figure(result), path)
