"""What a replica plan changes in one instance's performance: routed-expert slots per GPU and balancedness.

A replica plan (``planner.replicas``) spreads a model's experts over ``num_gpus`` EP ranks. An instance
whose layout has that EP size takes the plan's largest slot count per GPU over its planned layers (the
memory model's routed-expert slots) and its replayed balancedness, held-out when the plan records it (the
latency model's busiest-GPU factor). Both :func:`planner.perf.estimate.estimate` and the deployment
search (``planner.deploy``) read a plan this way.
"""

from __future__ import annotations

from planner.errors import InputError
from planner.perf.layout import ParallelLayout
from planner.plans.schema import Plan
from planner.profiles import ModelArch

__all__ = ["replica_plan_effect"]


def replica_plan_effect(plan: Plan, arch: ModelArch, layout: ParallelLayout) -> tuple[int, float, str]:
    """``(slots per GPU, balancedness, note)`` of a replica plan on an instance of ``layout``.

    Raises
    ------
    InputError
        Not a Plan, a plan for another model, another number of EP ranks or another expert count
        (``param="replica_plan"``).
    """
    if not isinstance(plan, Plan):
        raise InputError(f"replica_plan must be a Plan (planner.plans.io.read_plan), got {type(plan).__name__}",
                         param="replica_plan")
    rep = plan.replicas
    if plan.inputs.model != arch.id:
        raise InputError(f"replica plan is for model {plan.inputs.model!r}, not {arch.id!r}", param="replica_plan")
    if rep.num_gpus != layout.ep:
        raise InputError(f"replica plan spreads experts over {rep.num_gpus} GPUs (EP ranks) but layout "
                         f"{layout.label} has ep={layout.ep}", param="replica_plan")
    if rep.num_experts != arch.num_routed_experts:
        raise InputError(f"replica plan has {rep.num_experts} experts per layer, {arch.id} has "
                         f"{arch.num_routed_experts}", param="replica_plan")
    slots = max(max(row) for row in rep.slots_per_gpu)
    held_out = rep.predicted.holdout_replay_balancedness_mean
    b = rep.predicted.replay_balancedness_mean if held_out is None else held_out
    which = "held-out replay" if held_out is not None else "replay over its planning steps"
    note = (f"expert balancedness {b:.4f} and {slots} slots per GPU from the replica plan ({which}; "
            f"{len(rep.layers)} of {len(arch.moe_layers)} MoE layers planned, applied to all)")
    return slots, float(b), note
