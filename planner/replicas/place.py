"""From a checked :class:`~planner.replicas.request.ReplicaRequest` to a verified Plan.

:func:`place` runs the chosen algorithm on the planning window (pure-array solvers of ``solvers/``):
``none`` (the engine's contiguous placement, no replicas), ``eplb`` (DeepSeek's baseline on the summed
window) or ``stepaware`` (EPLB's replica counts + a packer that sees every step; per-layer mode first
spreads the total budget over layers, :mod:`planner.replicas.budget`). :func:`plan_request` adds the
optional optimal token split, builds the Plan and runs the solver-free verifier on it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from planner.errors import InputError, PlannerError
from planner.plans.schema import Plan
from planner.plans.verify import verify_plan
from planner.replicas.budget import allocate_per_layer
from planner.replicas.build import build_replica_plan
from planner.replicas.request import ReplicaRequest
from solvers.eplb import eplb
from solvers.replay import contiguous_slot_gpu
from solvers.report import SolveReport
from solvers.split import optimal_split_layers
from solvers.stepaware import assign_groups_to_nodes, plan_stepaware

__all__ = ["Placement", "place", "plan_request"]


class Placement(NamedTuple):
    """A solver's layout: ``[L, Pmax]`` arrays with -1 padding, slots GPU-major, and its report."""

    phy2log: np.ndarray
    slot_gpu: np.ndarray
    report: SolveReport
    redundant_per_layer: np.ndarray | None  # per-layer mode: the knapsack's choice


def place(req: ReplicaRequest) -> Placement:
    """Run ``req.algorithm`` on the planning window."""
    window, E, D = req.window, req.num_experts, req.num_gpus
    R, per_layer = req.redundant_slots, None
    try:
        if req.algorithm == "none":
            phy2log = np.tile(np.arange(E, dtype=np.int64), (window.shape[1], 1))
            slot_gpu = contiguous_slot_gpu(window.shape[1], E, D)
            report = SolveReport(status="feasible", stop_reason="completed", objective=None, bound=None, gap=None,
                                 wall_time_s=0.0, solver="none-contiguous", solver_version="",
                                 message="engine default placement: expert e on GPU e*D//E, no replicas")
        elif req.algorithm == "eplb":
            layout, report = eplb(window.sum(axis=0), E + R, D, num_groups=req.num_groups, num_nodes=req.num_nodes,
                                  policy="hierarchical" if req.hierarchical else "global")
            phy2log = layout.phy2log
            slot_gpu = contiguous_slot_gpu(phy2log.shape[0], E + R, D)
        else:
            expert_nodes = (assign_groups_to_nodes(window.sum(axis=0), req.num_groups, req.num_nodes)
                            if req.hierarchical else None)
            if req.mode == "uniform":
                num_slots = E + R
            else:
                per_layer = allocate_per_layer(window, R * req.loads.num_layers, D, num_nodes=req.num_nodes,
                                               expert_nodes=expert_nodes, sample_steps=req.sample_steps)
                num_slots = E + per_layer
            phy2log, slot_gpu, report = plan_stepaware(
                window, num_slots, D, num_nodes=req.num_nodes, expert_nodes=expert_nodes,
                sample_steps=req.sample_steps, swap_evaluations=req.swap_evaluations,
                swap_time_limit_s=req.swap_time_limit_s,
            )
    except ValueError as exc:  # the solvers' own argument checks; resolve_request should catch them first
        raise InputError(str(exc)) from None
    return Placement(phy2log, slot_gpu, report, per_layer)


def plan_request(req: ReplicaRequest) -> Plan:
    """Place, split (when asked), build and verify: the plan of one request."""
    p = place(req)
    params = req.parameters()
    if p.redundant_per_layer is not None:
        params["redundant_per_layer"] = ",".join(str(int(x)) for x in p.redundant_per_layer)
    report, fractions = p.report, None
    if req.split == "optimal":
        fractions, split_report = optimal_split_layers(req.window, p.phy2log, p.slot_gpu, req.num_gpus,
                                                       time_limit_s=req.time_limit_s)
        report = _combine(report, split_report)
    plan = build_replica_plan(
        req.loads, req.source_loads, req.arch, p.phy2log, p.slot_gpu, num_gpus=req.num_gpus,
        num_nodes=req.num_nodes, params=params, report=report, duplicates_allowed=req.algorithm == "eplb",
        mode=req.mode, split=fractions, plan_steps=req.plan_steps, holdout_steps=req.holdout_steps,
    )
    check = verify_plan(plan, req.source_loads, model=req.arch)
    if not check.ok:  # a bug, not a user error: every emitted plan must verify
        c = check.failures[0]
        raise PlannerError(f"internal error: planned replica layout fails verification: {c.name}: {c.detail}")
    return plan


def _combine(placement: SolveReport, split: SolveReport) -> SolveReport:
    """The placement's report with the split LP's outcome folded into solver name, time and message."""
    return placement.with_(
        solver=f"{placement.solver}+split-lp",
        solver_version=f"{placement.solver_version}; {split.solver_version}",
        wall_time_s=placement.wall_time_s + split.wall_time_s,
        stop_reason=placement.stop_reason if split.stop_reason == "completed" else split.stop_reason,
        message=(placement.message + f" split LP: {split.status}, {split.stop_reason}").strip(),
    )
