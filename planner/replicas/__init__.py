"""Expert replica planning: which experts to replicate and which GPU holds every copy, per MoE layer.

Modules
    plan      :func:`plan_replicas`, the entry point: measured loads + model + EP layout -> a verified Plan
    build     turns a solver's layout into a Plan with replayed metrics and lower bounds
    budget    per-layer allocation of a total replica budget (multiple-choice knapsack)
    sweep     uniform budgets against the KV-cache tokens they cost (the auto-budget)
    certify   exact-MILP certificates of small layers
    replan    when to re-plan on a drifting trace
"""

from planner.replicas.budget import allocate_per_layer, candidate_redundancies, gain_table
from planner.replicas.build import build_replica_plan, slot_fractions
from planner.replicas.certify import Certificate, certificate_table, certify_plan
from planner.replicas.plan import (
    ALGORITHMS,
    MODES,
    align_loads,
    default_redundant_slots,
    plan_replicas,
    redundant_for_budget,
    steps_for,
)
from planner.replicas.budget import BudgetPoint, budget_sweep, choose_budget, plot_budget_sweep, sweep_table
from planner.replicas.replan import (
    ReplanPolicy,
    ReplanResult,
    plot_replanning,
    recommend_policy,
    replan_table,
    simulate_replanning,
)

__all__ = [
    "plan_replicas",
    "align_loads",
    "default_redundant_slots",
    "steps_for",
    "redundant_for_budget",
    "ALGORITHMS",
    "MODES",
    "build_replica_plan",
    "slot_fractions",
    "candidate_redundancies",
    "gain_table",
    "allocate_per_layer",
    "BudgetPoint",
    "budget_sweep",
    "choose_budget",
    "sweep_table",
    "plot_budget_sweep",
    "Certificate",
    "certify_plan",
    "certificate_table",
    "ReplanPolicy",
    "ReplanResult",
    "simulate_replanning",
    "recommend_policy",
    "replan_table",
    "plot_replanning",
]
