"""When to re-plan: simulate re-planning policies on a load trace with drift and recommend one.

A policy re-plans the replica layout either every ``every_steps`` steps, or when the balancedness
replayed over the last ``check_steps`` steps falls below ``threshold_b``. Each new plan is made from the
most recent ``window_steps`` steps (what an engine's load recorder holds), then used unchanged until
the next re-plan. Every step after the warm-up is scored with the plan in force (replayed
balancedness, mean over layers). A re-plan moves weights: on every GPU, each expert copy the new
layout holds and the old one did not must be copied in, so the cost is
``copies moved x bytes per expert`` (slot order within a GPU is free: the engine re-indexes). GPUs of
equal capacity are interchangeable, so each new plan is first relabelled to keep the most copies where
they are (a linear assignment per layer).

Recommendation rule (stated, not learned): among the simulated policies, take the ones whose mean
balancedness is within ``tolerance_b`` of the best, and recommend the one that moves the fewest
bytes. Re-planning more often than that buys less than ``tolerance_b`` of balance for more traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planner.errors import InputError
from planner.inputs.loads import ExpertLoads
from planner.profiles import ModelArch, get_model
from planner.replicas.request import align_loads, default_redundant_slots
from planner.common.tables import format_table
from solvers.eplb import eplb
from solvers.migration import copies_to_move, relabel_gpus
from solvers.replay import replay_balancedness
from solvers.stepaware import plan_stepaware

__all__ = ["ReplanPolicy", "ReplanResult", "simulate_replanning", "recommend_policy", "replan_table"]


@dataclass(frozen=True)
class ReplanPolicy:
    """Re-plan every ``every_steps`` steps, or when recent balancedness drops below ``threshold_b``."""

    every_steps: int | None = None
    threshold_b: float | None = None
    check_steps: int = 10
    window_steps: int = 100

    def __post_init__(self) -> None:
        if (self.every_steps is None) == (self.threshold_b is None):
            raise InputError("a re-planning policy takes exactly one of every_steps and threshold_b")
        if self.every_steps is not None and self.every_steps < 1:
            raise InputError(f"must be >= 1, got {self.every_steps}", param="every_steps")
        if self.threshold_b is not None and not 0 < self.threshold_b <= 1:
            raise InputError(f"must be in (0, 1], got {self.threshold_b}", param="threshold_b")
        for name in ("window_steps", "check_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"must be >= 1, got {getattr(self, name)}", param=name)

    @property
    def label(self) -> str:
        if self.every_steps is not None:
            return f"every {self.every_steps}"
        return f"b < {self.threshold_b:g}"


@dataclass(frozen=True)
class ReplanResult:
    policy: ReplanPolicy
    balancedness_per_step: np.ndarray  # [steps scored], mean over layers
    replan_steps: tuple[int, ...]  # steps at which a new plan took effect (the first is the warm-up plan)
    slots_moved: int  # over all re-plans after the first
    bytes_moved: int
    plan_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def mean_b(self) -> float:
        return float(self.balancedness_per_step.mean())

    @property
    def num_replans(self) -> int:
        return len(self.replan_steps) - 1


def _planner(algorithm: str, num_slots: int, num_gpus: int, num_nodes: int, groups: int, sample_steps: int | None):
    def plan(weight_tle: np.ndarray):
        if algorithm == "eplb":
            layout, _ = eplb(weight_tle.sum(axis=0), num_slots, num_gpus, num_groups=groups, num_nodes=num_nodes)
            p2l = layout.phy2log
            return p2l, np.broadcast_to(np.arange(num_slots) // (num_slots // num_gpus), p2l.shape).copy()
        p2l, sg, _ = plan_stepaware(weight_tle, num_slots, num_gpus, num_nodes=num_nodes, sample_steps=sample_steps)
        return p2l, sg

    return plan


def simulate_replanning(
    loads: ExpertLoads,
    model: ModelArch | str,
    policies: list[ReplanPolicy],
    *,
    num_gpus: int,
    num_nodes: int = 1,
    redundant_slots: int | None = None,
    algorithm: str = "stepaware",
    sample_steps: int | None = 50,
    relabel: bool = True,
    progress=None,
) -> list[ReplanResult]:
    """Replay ``loads`` step by step under each policy; see the module docstring.

    The first plan is made from the ``window_steps`` steps before the first scored step, so every
    policy is scored on the same steps: ``max(window_steps)`` .. end. With ``relabel`` (default) each
    new plan's GPUs are permuted to keep the most copies in place (:func:`solvers.migration.relabel_gpus`),
    which changes no load, only the traffic.
    """
    import time

    arch = model if isinstance(model, ModelArch) else get_model(model)
    aligned = align_loads(loads, arch)
    E = arch.num_routed_experts
    R = default_redundant_slots(E, num_gpus) if redundant_slots is None else redundant_slots
    P = E + R
    if P % num_gpus:
        raise InputError(f"{P} slots do not divide over {num_gpus} GPUs", param="redundant_slots")
    if not policies:
        raise InputError("give at least one re-planning policy", param="policies")
    start = max(p.window_steps for p in policies)
    T = aligned.num_steps
    if T - start < 2:
        raise InputError(f"{T} steps leave nothing to score after a {start}-step planning window", param="loads")
    counts = aligned.counts
    gpn = num_gpus // num_nodes if num_nodes > 1 else None
    plan = _planner(algorithm, P, num_gpus, num_nodes, arch.num_expert_groups or 1 if num_nodes > 1 else 1, sample_steps)
    results = []
    for i, pol in enumerate(policies):
        t0 = time.perf_counter()
        p2l, sg = plan(counts[start - pol.window_steps:start])
        replans, moved, b_steps = [start], 0, []
        last = start
        for t in range(start, T):
            due = (pol.every_steps is not None and t - last >= pol.every_steps) or (
                pol.threshold_b is not None
                and t - last >= pol.check_steps
                and np.mean(b_steps[-pol.check_steps:]) < pol.threshold_b
            )
            if due:
                new_p2l, new_sg = plan(counts[max(0, t - pol.window_steps):t])
                if relabel:
                    new_p2l, new_sg = relabel_gpus(p2l, sg, new_p2l, new_sg, num_gpus, E, gpus_per_node=gpn)
                moved += int(copies_to_move(p2l, sg, new_p2l, new_sg, num_gpus, E).sum())
                p2l, sg, last = new_p2l, new_sg, t
                replans.append(t)
            b_steps.append(float(replay_balancedness(counts[t:t + 1], p2l, sg, num_gpus)[0].mean()))
        results.append(
            ReplanResult(pol, np.asarray(b_steps), tuple(replans), moved, moved * arch.bytes_per_expert,
                         plan_seconds=time.perf_counter() - t0)
        )
        if progress is not None:
            progress(i + 1, len(policies), pol.label)
    return results


def recommend_policy(results: list[ReplanResult], *, tolerance_b: float = 0.005) -> ReplanResult:
    """The policy moving the fewest bytes among those within ``tolerance_b`` of the best mean b."""
    if not results:
        raise InputError("nothing to recommend from", param="results")
    best = max(r.mean_b for r in results)
    good = [r for r in results if r.mean_b >= best - tolerance_b]
    return min(good, key=lambda r: (r.bytes_moved, -r.mean_b))


def replan_table(results: list[ReplanResult], recommended: ReplanResult | None = None) -> str:
    """Policy, re-plans, mean / worst-step b, weights moved (GB)."""
    rows = []
    for r in results:
        rows.append([
            r.policy.label + (" *" if r is recommended else ""),
            r.policy.window_steps,
            r.num_replans,
            f"{r.mean_b:.4f}",
            f"{r.balancedness_per_step.min():.4f}",
            f"{r.bytes_moved / 1e9:.2f}",
            f"{r.plan_seconds:.1f}",
        ])
    return format_table(["policy", "window_steps", "replans", "mean_b", "worst_step_b", "moved_GB", "wall_s"], rows)
