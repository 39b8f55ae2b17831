"""Certificates for replica plans on small layers: how far is the heuristic from the optimum?

For each planned layer with at most ``max_experts`` experts, the exact MILP of
:mod:`solvers.replica_milp` (replica counts and placement, no duplicates, same per-GPU capacities
as the plan) is solved on up to ``max_steps`` evenly spaced planning steps, warm-started with the
plan's own layout. The MILP's proven bound is a valid lower bound on ``sum_t max_g load`` over
those steps for *any* layout with these capacities, so

    gap = (plan objective on those steps - MILP bound) / plan objective

certifies how much the plan could still gain there (0 with status ``optimal`` means the plan is
optimal on those steps). Certificates are not stored in the plan file (the verifier could not
re-derive a MILP bound without a solver); they are printed and returned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from planner.inputs.loads import ExpertLoads
from planner.plans.schema import Plan
from planner.common.tables import format_table
from solvers.replica_milp import exact_replica_milp, placement_objective

__all__ = ["Certificate", "certify_plan", "certificate_table"]


@dataclass(frozen=True)
class Certificate:
    layer: int
    steps: int
    status: str  # MILP status: optimal / feasible / error
    plan_objective_tokens: float  # sum over the sampled steps of the plan's busiest-GPU load
    milp_objective_tokens: float | None  # best layout the MILP found (never worse than the plan: warm start)
    bound_tokens: float  # proven lower bound for any layout
    gap: float  # (plan objective - bound) / plan objective
    wall_time_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def certify_plan(plan: Plan, loads: ExpertLoads, *, time_limit_s: float = 10.0, max_experts: int = 32,
                 max_steps: int = 10, progress=None) -> list[Certificate]:
    """MILP certificates for the plan's layers with at most ``max_experts`` experts (see module doc)."""
    rp = plan.replicas
    if rp.num_experts > max_experts or rp.dispatch_weights is not None:
        return []
    a, b = rp.predicted.plan_steps
    sel = loads.select_layers(rp.layers).counts[a:b]
    idx = np.unique(np.linspace(0, sel.shape[0] - 1, min(max_steps, sel.shape[0])).round().astype(int))
    out = []
    for r, layer in enumerate(rp.layers):
        w = sel[idx, r, :]
        p2l = np.asarray(rp.physical_to_logical[r])
        sg = np.asarray(rp.slot_gpu[r])
        cap = np.asarray(rp.slots_per_gpu[r])
        dup = np.unique(sg * rp.num_experts + p2l).size != p2l.size
        plan_obj = placement_objective(w, p2l, sg, rp.num_gpus)
        best, _, rep = exact_replica_milp(w, p2l.size, rp.num_gpus, capacity=cap, time_limit_s=time_limit_s,
                                          warm_start=None if dup else (p2l, sg))
        bound = float(rep.bound) if rep.bound is not None else 0.0
        out.append(Certificate(
            layer=layer, steps=int(idx.size), status=rep.status, plan_objective_tokens=plan_obj,
            milp_objective_tokens=None if best is None else float(rep.objective),
            bound_tokens=bound, gap=max(0.0, (plan_obj - bound) / plan_obj) if plan_obj > 0 else 0.0,
            wall_time_s=rep.wall_time_s,
        ))
        if progress is not None:
            progress(r + 1, len(rp.layers), layer)
    return out


def certificate_table(certs: list[Certificate]) -> str:
    rows = [[c.layer, c.steps, c.status, f"{c.plan_objective_tokens:.0f}",
             "-" if c.milp_objective_tokens is None else f"{c.milp_objective_tokens:.0f}",
             f"{c.bound_tokens:.0f}", f"{100 * c.gap:.2f}", f"{c.wall_time_s:.1f}"] for c in certs]
    return format_table(["layer", "steps", "milp_status", "plan_tokens", "milp_best_tokens", "bound_tokens",
                         "plan_gap_%", "wall_s"], rows)
