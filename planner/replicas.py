"""Expert replica planning: measured loads + model + EP layout -> a verified replica Plan.

This module is the domain side: it validates inputs in domain words, aligns the loads with the
model's MoE layers, calls a pure-array solver from ``solvers/`` and turns its layout into a Plan.
"""

from __future__ import annotations

import numpy as np

from planner.errors import Infeasible, InputError, PlannerError
from planner.inputs.loads import ExpertLoads
from planner._replica_build import build_replica_plan
from planner.plans.schema import Plan
from planner.plans.verify import verify_plan
from planner.profiles import GpuSpec, ModelArch, get_gpu, get_model
from solvers.eplb import eplb

__all__ = ["plan_replicas", "align_loads", "default_redundant_slots", "ALGORITHMS"]

ALGORITHMS = ("eplb",)
POLICIES = ("auto", "hierarchical", "global")


def default_redundant_slots(num_experts: int, num_gpus: int) -> int:
    """One redundant slot per GPU, rounded up so that slots divide evenly over GPUs.

    >>> default_redundant_slots(256, 32)
    32
    >>> default_redundant_slots(60, 8)
    12
    """
    slots = -(-(num_experts + num_gpus) // num_gpus) * num_gpus
    return slots - num_experts


def align_loads(loads: ExpertLoads, model: ModelArch) -> ExpertLoads:
    """Keep the rows of ``loads`` that are MoE layers of ``model``; check expert counts.

    All-zero rows on dense layers (SGLang dumps every hidden layer) are dropped silently; a dense
    layer with non-zero counts means the loads belong to another model and is an error.
    """
    if loads.num_experts != model.num_routed_experts:
        raise InputError(
            f"loads have {loads.num_experts} experts per layer but {model.id} has {model.num_routed_experts} routed experts"
        )
    moe = set(model.moe_layers)
    keep = []
    for row, layer in enumerate(loads.layer_ids):
        if layer >= model.num_hidden_layers:
            raise InputError(f"loads layer {layer} is beyond {model.id}'s {model.num_hidden_layers} hidden layers")
        if layer in moe:
            keep.append(layer)
        elif loads.counts[:, row, :].any():
            raise InputError(f"loads have non-zero counts on layer {layer}, which is a dense layer of {model.id}")
    if not keep:
        raise InputError(f"loads hold none of {model.id}'s MoE layers (loads layers {list(loads.layer_ids)})")
    return loads if keep == list(loads.layer_ids) else loads.select_layers(keep)


def _check_layout(num_experts: int, num_gpus: int, num_nodes: int, redundant: int, *, gpus_only: bool = False) -> int:
    if num_gpus < 1:
        raise InputError(f"gpus: must be >= 1, got {num_gpus}")
    if num_nodes < 1:
        raise InputError(f"nodes: must be >= 1, got {num_nodes}")
    if num_gpus % num_nodes:
        raise InputError(f"gpus: {num_gpus} GPUs do not split evenly over {num_nodes} nodes")
    if gpus_only:
        return 0
    if redundant < 0:
        raise InputError(f"redundant: must be >= 0, got {redundant}")
    slots = num_experts + redundant
    if num_gpus > slots:
        raise InputError(f"gpus: {num_gpus} GPUs but only {slots} slots per layer ({num_experts} experts + {redundant} redundant)")
    if slots % num_gpus:
        lo = slots - slots % num_gpus - num_experts
        hint = [r for r in (lo, lo + num_gpus) if r >= 0]
        raise InputError(
            f"redundant: {slots} slots per layer ({num_experts} experts + {redundant} redundant) do not divide over "
            f"{num_gpus} GPUs; try --redundant {' or '.join(map(str, hint))}"
        )
    return slots


def _check_expert_memory(arch: ModelArch, gpu: GpuSpec, slots_per_gpu: int) -> None:
    """Cheap infeasibility check before any solve: expert weights alone must fit on each GPU."""
    need = slots_per_gpu * len(arch.moe_layers) * arch.bytes_per_expert
    if need > gpu.memory_bytes:
        raise Infeasible(
            f"GPU {gpu.id}: routed-expert weights alone need {need / 1e9:.1f} GB per GPU "
            f"({slots_per_gpu} slots x {len(arch.moe_layers)} MoE layers x {arch.bytes_per_expert / 1e6:.1f} MB) "
            f"but it has {gpu.memory_bytes / 1e9:.1f} GB; use more GPUs or fewer redundant slots"
        )


def plan_replicas(
    loads: ExpertLoads,
    model: ModelArch | str,
    *,
    num_gpus: int,
    num_nodes: int = 1,
    redundant_slots: int | None = None,
    algorithm: str = "eplb",
    policy: str = "auto",
    num_groups: int | None = None,
    gpu: str | None = None,
) -> Plan:
    """Plan which experts to replicate and which GPU holds every replica, per MoE layer.

    Parameters
    ----------
    loads : measured loads; rows on the model's dense layers must be zero and are dropped.
    model : a :class:`~planner.profiles.ModelArch` or a model name/id.
    num_gpus : EP ranks the experts are spread over.
    num_nodes : nodes the GPUs sit in (``num_gpus`` must divide evenly).
    redundant_slots : extra slots per layer beyond one per expert; default one per GPU, rounded
        up to a multiple of ``num_gpus`` (:func:`default_redundant_slots`).
    algorithm : ``"eplb"`` (DeepSeek's greedy replication + balanced packing, the baseline).
    policy : EPLB policy: ``"auto"`` (hierarchical when expert groups divide over nodes),
        ``"hierarchical"`` or ``"global"``.
    num_groups : expert groups for the hierarchical policy; default the model's routing groups.
    gpu : optional GPU profile; when given, the routed-expert weights every GPU would hold over all of
        the model's MoE layers at this slot count must fit in its memory.

    Returns
    -------
    Plan
        Frozen, verified plan. ``plan.solve_report`` holds the solver's report with its wall time.

    Raises
    ------
    InputError
        Expert counts that do not match the model, slots that do not divide over GPUs, ...
    Infeasible
        The routed-expert weights alone exceed the GPU's memory.

    Examples
    --------
    >>> from planner.inputs.readers import builtin_loads
    >>> plan = plan_replicas(builtin_loads("olmoe-arxiv"), "olmoe-1b-7b", num_gpus=8)
    >>> plan.replicas.layers, len(plan.replicas.physical_to_logical[0])
    ([0, 7, 15], 72)
    """
    arch = model if isinstance(model, ModelArch) else get_model(model)
    if algorithm not in ALGORITHMS:
        raise InputError(f"algorithm: unknown {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    if policy not in POLICIES:
        raise InputError(f"policy: unknown {policy!r}; known: {', '.join(POLICIES)}")
    aligned = align_loads(loads, arch)
    E = arch.num_routed_experts
    _check_layout(E, num_gpus, num_nodes, 0 if redundant_slots is None else int(redundant_slots), gpus_only=True)
    R = default_redundant_slots(E, num_gpus) if redundant_slots is None else int(redundant_slots)
    P = _check_layout(E, num_gpus, num_nodes, R)
    G = num_groups if num_groups is not None else (arch.num_expert_groups or 1)
    if G < 1 or E % G:
        raise InputError(f"groups: {E} experts do not split into {G} groups")
    if policy == "hierarchical" and G % num_nodes:
        raise InputError(f"policy: hierarchical needs expert groups ({G}) divisible by nodes ({num_nodes})")

    if gpu is not None:
        _check_expert_memory(arch, get_gpu(gpu), P // num_gpus)

    summed = aligned.summed()
    try:
        layout, report = eplb(summed, P, num_gpus, num_groups=G, num_nodes=num_nodes, policy=policy)
    except ValueError as exc:  # the solver's own argument checks; ours above should catch them first
        raise InputError(str(exc)) from None
    params = {
        "algorithm": algorithm,
        "policy": policy,
        "solver": report.solver,
        "num_gpus": num_gpus,
        "num_nodes": num_nodes,
        "num_groups": G,
        "redundant_slots": R,
        "slots_per_layer": P,
        "gpu": get_gpu(gpu).id if gpu is not None else None,
    }
    slot_gpu = np.broadcast_to(np.arange(P) // (P // num_gpus), layout.phy2log.shape)
    plan = build_replica_plan(
        aligned, loads, arch, layout.phy2log, slot_gpu, num_gpus=num_gpus, num_nodes=num_nodes,
        params=params, report=report, duplicates_allowed=True,
    )
    check = verify_plan(plan, loads)
    if not check.ok:  # a bug, not a user error: every emitted plan must verify
        c = check.failures[0]
        raise PlannerError(f"internal error: planned replica layout fails verification: {c.name}: {c.detail}")
    return plan
