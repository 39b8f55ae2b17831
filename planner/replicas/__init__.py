"""Expert replica planning: which experts to replicate and which GPU holds every copy, per MoE layer.

Modules, in the order they build on each other (no cycles):
    request   checks and resolves the caller's arguments into a :class:`ReplicaRequest`
    budget    per-layer allocation of a total replica budget (multiple-choice knapsack)
    build     a solver's layout -> a Plan with replayed metrics and lower bounds
    place     algorithm dispatch (none / eplb / stepaware), optimal split, build, verify
    sweep     uniform budgets against the KV-cache tokens they cost (the auto-budget)
    plan      :func:`plan_replicas`, the entry point
    certify   exact-MILP certificates of small layers
    replan    when to re-plan on a drifting trace
    plots     figures of the sweep and of re-planning (matplotlib, optional)
"""

from planner.replicas.budget import allocate_per_layer, candidate_redundancies, gain_table
from planner.replicas.certify import Certificate, certificate_table, certify_plan
from planner.replicas.plan import BUDGETS, plan_replicas
from planner.replicas.plots import budget_sweep_figure, plot_budget_sweep, plot_replanning, replanning_figure
from planner.replicas.replan import (ReplanPolicy, ReplanResult, WallTimeRow, recommend_policy, recommend_wall_time,
                                     replan_table, simulate_replanning, static_policy, wall_time_rows, wall_time_table)
from planner.replicas.request import (
    ALGORITHMS,
    MODES,
    POLICIES,
    SPLITS,
    ReplicaRequest,
    align_loads,
    default_redundant_slots,
    redundant_for_budget,
    resolve_request,
    steps_for,
)
from planner.replicas.sweep import BudgetPoint, budget_sweep, choose_budget, sweep_table

__all__ = [
    "plan_replicas",
    "BUDGETS",
    "ReplicaRequest",
    "resolve_request",
    "align_loads",
    "default_redundant_slots",
    "steps_for",
    "redundant_for_budget",
    "ALGORITHMS",
    "POLICIES",
    "MODES",
    "SPLITS",
    "candidate_redundancies",
    "gain_table",
    "allocate_per_layer",
    "BudgetPoint",
    "budget_sweep",
    "choose_budget",
    "sweep_table",
    "budget_sweep_figure",
    "plot_budget_sweep",
    "Certificate",
    "certify_plan",
    "certificate_table",
    "ReplanPolicy",
    "ReplanResult",
    "simulate_replanning",
    "recommend_policy",
    "replan_table",
    "static_policy",
    "WallTimeRow",
    "wall_time_rows",
    "recommend_wall_time",
    "wall_time_table",
    "replanning_figure",
    "plot_replanning",
]
