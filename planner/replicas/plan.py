"""Expert replica planning: measured loads + model + EP layout -> a verified replica Plan.

This module is the domain side: it validates inputs in domain words, aligns the loads with the
model's MoE layers, chooses the planning window, calls pure-array solvers from ``solvers/`` and turns
their layout into a Plan (see ``docs/replicas.md``).

Algorithms: ``stepaware`` (default; EPLB's replica counts + a packer that sees every step's load
vector, :mod:`solvers.stepaware`) and ``eplb`` (DeepSeek's baseline, :mod:`solvers.eplb`).
Modes: ``uniform`` (the same slots in every layer; what SGLang / vLLM / TensorRT-LLM load) and
``per-layer`` (a total budget spread over layers by a multiple-choice knapsack over replayed gains,
:mod:`planner.replicas.budget`).
"""

from __future__ import annotations

import numpy as np

from planner.replicas.build import build_replica_plan
from planner.errors import Infeasible, InputError, PlannerError
from planner.inputs.loads import ExpertLoads
from planner.plans.schema import Plan
from planner.plans.verify import verify_plan
from planner.profiles import GpuSpec, ModelArch, get_gpu, get_model
from solvers.eplb import eplb
from solvers.replay import contiguous_slot_gpu
from solvers.report import SolveReport
from solvers.split import optimal_split_layers
from solvers.stepaware import assign_groups_to_nodes, plan_stepaware

__all__ = [
    "plan_replicas",
    "align_loads",
    "default_redundant_slots",
    "steps_for",
    "redundant_for_budget",
    "ALGORITHMS",
    "MODES",
]

ALGORITHMS = ("stepaware", "eplb", "none")
POLICIES = ("auto", "hierarchical", "global")
MODES = ("uniform", "per-layer")
SPLITS = ("even", "optimal")
_AUTO_SWAP_MAX_STEPS = 8  # swap search by default only on (nearly) aggregated loads
_AUTO_SWAP_S = 1.0


def default_redundant_slots(num_experts: int, num_gpus: int) -> int:
    """One redundant slot per GPU, rounded up so that slots divide evenly over GPUs.

    >>> default_redundant_slots(256, 32)
    32
    >>> default_redundant_slots(60, 8)
    12
    """
    slots = -(-(num_experts + num_gpus) // num_gpus) * num_gpus
    return slots - num_experts


def redundant_for_budget(arch: ModelArch, num_gpus: int, budget_gb: float, *, mode: str = "uniform") -> int:
    """Redundant slots per layer that ``budget_gb`` GB of expert replicas per GPU pay for.

    The budget covers all of the model's MoE layers. Uniform mode rounds down to a multiple of
    ``num_gpus`` (engines need slots divisible by GPUs); per-layer mode returns the exact average.

    >>> redundant_for_budget(get_model("deepseek-v3"), 32, 2.56)
    32
    """
    if budget_gb < 0:
        raise InputError(f"budget-gb: must be >= 0, got {budget_gb}")
    per_gpu = int(budget_gb * 1e9 // arch.bytes_per_expert)  # extra expert copies one GPU can hold
    total = per_gpu * num_gpus  # over all MoE layers
    per_layer = total // len(arch.moe_layers)
    return per_layer - per_layer % num_gpus if mode == "uniform" else per_layer


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


def steps_for(num_steps: int, window_steps: int | None, holdout_steps: int) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """Planning window and held-out range: the last ``holdout_steps`` steps are held out, the
    ``window_steps`` steps before them are planned on (all of them when None).

    >>> steps_for(400, 200, 200)
    ((0, 200), (200, 400))
    >>> steps_for(1, None, 0)
    ((0, 1), None)
    """
    if holdout_steps < 0:
        raise InputError(f"holdout: must be >= 0, got {holdout_steps}")
    stop = num_steps - holdout_steps
    if stop < 1:
        raise InputError(f"holdout: {holdout_steps} held-out steps leave none of the {num_steps} steps to plan on")
    if window_steps is not None and window_steps < 1:
        raise InputError(f"window: must be >= 1, got {window_steps}")
    start = 0 if window_steps is None else max(0, stop - window_steps)
    return (start, stop), ((stop, num_steps) if holdout_steps else None)


def _check_layout(num_experts: int, num_gpus: int, num_nodes: int) -> None:
    if num_gpus < 1:
        raise InputError(f"gpus: must be >= 1, got {num_gpus}")
    if num_nodes < 1:
        raise InputError(f"nodes: must be >= 1, got {num_nodes}")
    if num_gpus % num_nodes:
        raise InputError(f"gpus: {num_gpus} GPUs do not split evenly over {num_nodes} nodes")


def _check_uniform_slots(num_experts: int, num_gpus: int, redundant: int) -> int:
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


def _check_expert_memory(arch: ModelArch, gpu: GpuSpec, slots_per_gpu: float) -> None:
    """Cheap infeasibility check before any solve: expert weights alone must fit on each GPU."""
    need = slots_per_gpu * len(arch.moe_layers) * arch.bytes_per_expert
    if need > gpu.memory_bytes:
        raise Infeasible(
            f"GPU {gpu.id}: routed-expert weights alone need {need / 1e9:.1f} GB per GPU "
            f"({slots_per_gpu:g} slots x {len(arch.moe_layers)} MoE layers x {arch.bytes_per_expert / 1e6:.1f} MB) "
            f"but it has {gpu.memory_bytes / 1e9:.1f} GB; use more GPUs or fewer redundant slots"
        )


def plan_replicas(
    loads: ExpertLoads,
    model: ModelArch | str,
    *,
    num_gpus: int,
    num_nodes: int = 1,
    redundant_slots: int | None = None,
    budget_gb: float | None = None,
    mode: str = "uniform",
    algorithm: str = "stepaware",
    policy: str = "auto",
    num_groups: int | None = None,
    gpu: str | None = None,
    window_steps: int | None = None,
    holdout_steps: int = 0,
    split: str = "even",
    sample_steps: int | None = 200,
    swap_time_limit_s: float | None = None,
    time_limit_s: float = 60.0,
) -> Plan:
    """Plan which experts to replicate and which GPU holds every replica, per MoE layer.

    Parameters
    ----------
    loads : measured loads; rows on the model's dense layers must be zero and are dropped.
    model : a :class:`~planner.profiles.ModelArch` or a model name/id.
    num_gpus : EP ranks the experts are spread over.
    num_nodes : nodes the GPUs sit in (``num_gpus`` must divide evenly).
    redundant_slots : extra slots per layer beyond one per expert (per-layer mode: the average over
        layers, i.e. a total budget of ``redundant_slots x layers``); default one per GPU, rounded up
        to a multiple of ``num_gpus`` (:func:`default_redundant_slots`).
    budget_gb : instead of ``redundant_slots``: GB of expert replicas per GPU over all MoE layers.
    mode : ``"uniform"`` or ``"per-layer"``.
    algorithm : ``"stepaware"`` (default), ``"eplb"`` (the baseline; uniform mode only) or ``"none"``
        (what an engine loads without a plan: expert ``e`` on GPU ``e * D // E``, no replicas; the
        reference to measure replication against).
    policy : ``"auto"`` (hierarchical when expert groups divide over nodes, ``num_nodes > 1``),
        ``"hierarchical"`` (an expert's replicas stay in its group's node) or ``"global"``.
    num_groups : expert groups for the hierarchical policy; default the model's routing groups.
    gpu : optional GPU profile; the routed-expert weights one GPU would hold over all of the model's
        MoE layers must fit in its memory (else :class:`~planner.errors.Infeasible`).
    window_steps : plan on this many most recent steps (before the held-out ones); default all.
    holdout_steps : hold out the last steps and report the plan's replayed balancedness on them.
    split : ``"even"`` (engines' split of an expert's tokens over its replicas) or ``"optimal"``
        (an LP per layer; the plan carries dispatch weights, which no engine export can express).
    sample_steps : the step-aware packer plans on at most this many evenly spaced steps.
    swap_time_limit_s : seconds of swap search after the step-aware packing (0 = off). Default: 1 s
        when the planning window has at most 8 steps (aggregated loads: swaps reach within 0.1 point of
        the bound on the shipped OLMoE counts), off otherwise (on per-step traces swaps overfit the
        planning window and add nothing held-out, per the feasibility study).
    time_limit_s : limit for the optimal-split LPs.

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
    for name, value, known in (("algorithm", algorithm, ALGORITHMS), ("policy", policy, POLICIES),
                               ("mode", mode, MODES), ("split", split, SPLITS)):
        if value not in known:
            raise InputError(f"{name}: unknown {value!r}; known: {', '.join(known)}")
    if algorithm == "none" and (mode != "uniform" or budget_gb is not None or redundant_slots not in (None, 0) or split != "even"):
        raise InputError("algorithm: none is the engine's default placement (expert e on GPU e*D//E, no replicas, "
                         "even split); it takes no --redundant/--budget-gb/--mode per-layer/--split optimal")
    if algorithm == "none":
        redundant_slots = 0
    if mode == "per-layer" and algorithm == "eplb":
        raise InputError("mode: per-layer budgets need --algorithm stepaware (EPLB needs equal slots per layer)")
    if budget_gb is not None and redundant_slots is not None:
        raise InputError("redundant: give either --redundant or --budget-gb, not both")
    aligned = align_loads(loads, arch)
    E = arch.num_routed_experts
    _check_layout(E, num_gpus, num_nodes)
    if budget_gb is not None:
        R = redundant_for_budget(arch, num_gpus, budget_gb, mode=mode)
    else:
        R = default_redundant_slots(E, num_gpus) if redundant_slots is None else int(redundant_slots)
    if mode == "uniform":
        _check_uniform_slots(E, num_gpus, R)
    elif R < 0:
        raise InputError(f"redundant: must be >= 0, got {R}")
    if gpu is not None:
        _check_expert_memory(arch, get_gpu(gpu), (E + R) / num_gpus)
    G = num_groups if num_groups is not None else (arch.num_expert_groups or 1)
    if G < 1 or E % G:
        raise InputError(f"groups: {E} experts do not split into {G} groups")
    if policy == "hierarchical" and G % num_nodes:
        raise InputError(f"policy: hierarchical needs expert groups ({G}) divisible by nodes ({num_nodes})")
    hierarchical = policy == "hierarchical" or (policy == "auto" and num_nodes > 1 and G % num_nodes == 0)

    plan_steps, hold = steps_for(aligned.num_steps, window_steps, holdout_steps)
    window = aligned.counts[plan_steps[0]:plan_steps[1]]
    if swap_time_limit_s is None:
        swap_time_limit_s = _AUTO_SWAP_S if window.shape[0] <= _AUTO_SWAP_MAX_STEPS else 0.0
    params = {
        "algorithm": algorithm,
        "mode": mode,
        "policy": "hierarchical" if hierarchical else "global",
        "num_gpus": num_gpus,
        "num_nodes": num_nodes,
        "num_groups": G,
        "redundant_slots": R,
        "slots_per_layer": E + R if mode == "uniform" else None,
        "budget_gb": budget_gb,
        "gpu": get_gpu(gpu).id if gpu is not None else None,
        "window_steps": plan_steps[1] - plan_steps[0],
        "holdout_steps": holdout_steps,
        "split": split,
        "sample_steps": sample_steps if algorithm == "stepaware" else None,
        "swap_time_limit_s": swap_time_limit_s if algorithm == "stepaware" else None,
    }
    try:
        if algorithm == "none":
            phy2log = np.tile(np.arange(E, dtype=np.int64), (window.shape[1], 1))
            slot_gpu = contiguous_slot_gpu(window.shape[1], E, num_gpus)
            report = _unplanned_report(window, phy2log, slot_gpu, num_gpus)
        elif algorithm == "eplb":
            layout, report = eplb(window.sum(axis=0), E + R, num_gpus, num_groups=G, num_nodes=num_nodes,
                                  policy="hierarchical" if hierarchical else "global")
            phy2log = layout.phy2log
            slot_gpu = contiguous_slot_gpu(phy2log.shape[0], E + R, num_gpus)
        else:
            expert_nodes = assign_groups_to_nodes(window.sum(axis=0), G, num_nodes) if hierarchical else None
            if mode == "uniform":
                num_slots = E + R
            else:
                from planner.replicas.budget import allocate_per_layer

                num_slots = E + allocate_per_layer(
                    window, R * aligned.num_layers, num_gpus, num_nodes=num_nodes, expert_nodes=expert_nodes,
                    sample_steps=sample_steps,
                )
                params["redundant_per_layer"] = ",".join(str(int(x) - E) for x in num_slots)
            phy2log, slot_gpu, report = plan_stepaware(
                window, num_slots, num_gpus, num_nodes=num_nodes, expert_nodes=expert_nodes,
                sample_steps=sample_steps, swap_time_limit_s=swap_time_limit_s,
            )
    except ValueError as exc:  # the solvers' own argument checks; ours above should catch them first
        raise InputError(str(exc)) from None
    fractions = None
    if split == "optimal":
        fractions, split_report = optimal_split_layers(window, phy2log, slot_gpu, num_gpus, time_limit_s=time_limit_s)
        report = _combine(report, split_report)
    plan = build_replica_plan(
        aligned, loads, arch, phy2log, slot_gpu, num_gpus=num_gpus, num_nodes=num_nodes, params=params,
        report=report, duplicates_allowed=algorithm == "eplb", mode=mode, split=fractions,
        plan_steps=plan_steps, holdout_steps=hold,
    )
    check = verify_plan(plan, loads)
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


def _unplanned_report(window, phy2log, slot_gpu, num_gpus: int) -> SolveReport:
    """The report of ``algorithm="none"``: nothing was solved; the plan builder fills in the replayed
    objective and bound."""
    return SolveReport(status="feasible", stop_reason="completed", objective=None, bound=None, gap=None,
                       wall_time_s=0.0, solver="none-contiguous", solver_version="",
                       message="engine default placement: expert e on GPU e*D//E, no replicas")
