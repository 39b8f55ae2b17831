"""A placement (``kind: "placement"``, :class:`~planner.plans.schema.PlacementPlan`) as the replica
plan the migration planner and the engine exports read.

A placement has slots and GPUs but no loads, so the replica plan :func:`placement_as_plan` returns
carries no load metrics: its ``predicted`` loads are zero, ``report.stop_reason`` says why, and it
is never written to a file (``moeplan apply --from`` and ``moeplan export`` build it in memory after
:func:`~planner.plans.verify.verify_placement` passed).
"""

from __future__ import annotations

import numpy as np

from planner.errors import InputError
from planner.plans.schema import (
    LoadsRef,
    PlacementPlan,
    Plan,
    PlanInputs,
    ReplicaMetrics,
    ReplicaPlan,
    ReportRecord,
)

__all__ = ["placement_as_plan", "checked_placement"]


def checked_placement(placement: PlacementPlan, where: str) -> PlacementPlan:
    """``placement`` after :func:`~planner.plans.verify.verify_placement`; InputError naming ``where``
    (the file) and the first failed check otherwise."""
    from planner.plans.verify import verify_placement

    report = verify_placement(placement)
    if not report.ok:
        c = report.failures[0]
        raise InputError(f"{where}: placement fails verification: {c.name}: {c.detail}")
    return placement


def placement_as_plan(placement: PlacementPlan) -> Plan:
    """The replica plan of ``placement``'s slots (module docstring): uniform mode when every GPU holds
    the same number of slots in every layer, per-layer mode otherwise; even dispatch."""
    p = placement
    rows, D = len(p.layers), p.num_gpus
    spg = [np.bincount(np.asarray(sg, dtype=np.int64), minlength=D).tolist() for sg in p.slot_gpu]
    uniform = len({v for row in spg for v in row}) == 1
    zeros = [[0.0] * D for _ in range(rows)]
    metrics = ReplicaMetrics(
        load_basis="none: a placement carries no loads", plan_steps=(0, 0), gpu_load_tokens=zeros,
        max_gpu_load_tokens=[0.0] * rows, lower_bound_tokens=[0.0] * rows, balancedness=[1.0] * rows,
        balancedness_mean=1.0, replay_balancedness=[1.0] * rows, replay_balancedness_mean=1.0,
        replay_max_gpu_load_tokens=[0.0] * rows, replay_lower_bound_tokens=[0.0] * rows, holdout_steps=None,
        holdout_replay_balancedness=None, holdout_replay_balancedness_mean=None,
        expert_bytes_per_gpu=(np.asarray(spg).sum(axis=0) * p.bytes_per_expert).tolist(),
    )
    replicas = ReplicaPlan(
        layers=list(p.layers), num_hidden_layers=p.num_hidden_layers, num_experts=p.num_experts, num_gpus=D,
        num_nodes=p.num_nodes, gpus_per_node=p.gpus_per_node, bytes_per_expert=p.bytes_per_expert,
        duplicates_allowed=True, mode="uniform" if uniform else "per-layer",
        physical_to_logical=[list(r) for r in p.physical_to_logical], slot_gpu=[list(r) for r in p.slot_gpu],
        slot_node=[[g // p.gpus_per_node for g in r] for r in p.slot_gpu], slots_per_gpu=spg,
        dispatch_weights=None, predicted=metrics,
    )
    inputs = PlanInputs(
        loads=LoadsRef(sha256="", source=f"placement after step {p.step} of {p.steps}", shape=(0, rows, p.num_experts),
                       layer_ids=list(p.layers), model=p.model),
        model=p.model, parameters={"placement_from": p.from_plan_sha256[:16], "placement_to": p.to_plan_sha256[:16],
                                   "placement_step": p.step},
    )
    report = ReportRecord(status="feasible", stop_reason="placement of a live apply: not planned, no load metrics",
                          objective=None, bound=None, gap=None, solver="none")
    return Plan(tool=p.tool, inputs=inputs, replicas=replicas, report=report)
