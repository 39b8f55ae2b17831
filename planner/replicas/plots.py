"""Figures of the replica planner: the budget sweep and re-planning over time.

Each ``*_figure`` function draws on a new :class:`matplotlib.figure.Figure` (no pyplot, so a notebook's
backend and open figures are untouched) and returns it; ``plot_*`` writes it as a PNG atomically.
matplotlib is optional (``pip install 'moeplan[plot]'``).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from planner.common.fileio import atomic_write_bytes
from planner.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from planner.replicas.replan import ReplanResult
    from planner.replicas.sweep import BudgetPoint

__all__ = ["budget_sweep_figure", "plot_budget_sweep", "replanning_figure", "plot_replanning", "save_png"]


def _new_figure(width_in: float, height_in: float) -> "Figure":
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("needs matplotlib (pip install 'moeplan[plot]')", param="plot") from None
    return Figure(figsize=(width_in, height_in), dpi=110)


def save_png(fig: "Figure", path) -> None:
    """Write ``fig`` as a PNG, atomically and without a timestamp or software tag (stable bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())


def budget_sweep_figure(points: list["BudgetPoint"], *, title: str = "") -> "Figure":
    """Balancedness (left axis) and KV tokens per GPU (right axis) against the redundant slots per layer."""
    fig = _new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    r = [p.redundant_slots for p in points]
    ax.plot(r, [p.balancedness_in for p in points], "o-", label="b in-window")
    if points and points[0].balancedness_holdout is not None:
        ax.plot(r, [p.balancedness_holdout for p in points], "s--", label="b held-out")
    ax.set_xlabel("redundant slots per layer")
    ax.set_ylabel("replayed balancedness")
    ax2 = ax.twinx()
    ax2.plot(r, [p.kv_tokens / 1e3 for p in points], "^:", color="tab:red", label="KV tokens/GPU (k)")
    ax2.set_ylabel("KV-cache tokens per GPU (thousands)")
    lines, lines2 = ax.get_legend_handles_labels(), ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower center", fontsize=8)
    ax.set_title(title or "replica budget: balance vs KV cache", fontsize=10)
    fig.tight_layout()
    return fig


def plot_budget_sweep(points: list["BudgetPoint"], path, *, title: str = "") -> None:
    """:func:`budget_sweep_figure` written to ``path`` as a PNG."""
    save_png(budget_sweep_figure(points, title=title), path)


def replanning_figure(results: list["ReplanResult"], *, first_step: int = 0, title: str = "") -> "Figure":
    """Balancedness over time for each policy, re-plans marked with ``|``."""
    fig = _new_figure(7.2, 4.0)
    ax = fig.add_subplot()
    for r in results:
        steps = first_step + np.arange(r.balancedness_per_step.size)
        line, = ax.plot(steps, r.balancedness_per_step, lw=1.0,
                        label=f"{r.policy.label}: mean {r.mean_b:.3f}, {r.bytes_moved / 1e9:.0f} GB moved")
        marks = list(r.replan_steps[1:])
        if marks:
            ax.plot(marks, r.balancedness_per_step[np.asarray(marks) - first_step], "|", ms=8, color=line.get_color())
    ax.set_xlabel("step")
    ax.set_ylabel("replayed balancedness (mean over layers)")
    ax.set_title(title or "re-planning policies (| = re-plan)", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_replanning(results: list["ReplanResult"], path, *, first_step: int = 0, title: str = "") -> None:
    """:func:`replanning_figure` written to ``path`` as a PNG."""
    save_png(replanning_figure(results, first_step=first_step, title=title), path)
