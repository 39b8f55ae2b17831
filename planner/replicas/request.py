"""A replica-planning request: the caller's arguments checked and resolved into one frozen object.

Validation comes before any model is built (STYLE.md habit 5): names and choices first, then the
layout (GPUs over nodes, slots over GPUs), then cheap infeasibility (expert weights exceed the GPU's
memory). Errors name the library parameter (``InputError(..., param="redundant_slots")``); the CLI
shows them under its flags.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, replace

import numpy as np

from planner.errors import Infeasible, InputError
from planner.inputs.loads import ExpertLoads, rows_as_moe_layers
from planner.profiles import GpuSpec, ModelArch, get_gpu, get_model

__all__ = [
    "ReplicaRequest",
    "resolve_request",
    "align_loads",
    "default_redundant_slots",
    "redundant_for_budget",
    "steps_for",
    "check_choice",
    "ALGORITHMS",
    "POLICIES",
    "MODES",
    "SPLITS",
]

ALGORITHMS = ("stepaware", "eplb", "none")
POLICIES = ("auto", "hierarchical", "global")
MODES = ("uniform", "per-layer")
SPLITS = ("even", "optimal")
# Swap search by default only on (nearly) aggregated loads: on per-step traces swaps fit the planning
# window and add nothing held-out (docs/replicas.md, "Why these methods").
# Its default budget is work, not seconds (the same inputs give the same plan on any machine load):
# 5e7 candidate swaps x steps, about 1 s on one core (DeepSeek-V3, 64 GPUs, 64 redundant slots, 8 steps:
# 5.1e7 evaluations per second; the search completes at 1.4e8; docs/replicas.md).
AUTO_SWAP_MAX_STEPS = 8
AUTO_SWAP_EVALUATIONS = 50_000_000


@dataclass(frozen=True)
class ReplicaRequest:
    """Everything one placement needs, checked: the model, the aligned loads, the layout and budget."""

    arch: ModelArch
    source_loads: ExpertLoads  # as given (the plan records its hash)
    loads: ExpertLoads  # the model's MoE layer rows only
    num_gpus: int
    num_nodes: int
    redundant_slots: int  # per layer; per-layer mode: the average over layers
    mode: str
    algorithm: str
    hierarchical: bool
    num_groups: int
    gpu: GpuSpec | None
    budget_gb: float | None
    plan_steps: tuple[int, int]
    holdout_steps: tuple[int, int] | None
    holdout: int  # the number of held-out steps asked for
    split: str
    sample_steps: int | None
    swap_evaluations: int
    swap_time_limit_s: float | None
    time_limit_s: float

    @property
    def num_experts(self) -> int:
        return self.arch.num_routed_experts

    @property
    def window(self) -> np.ndarray:
        """Counts of the planning steps, ``[T, L, E]``."""
        return self.loads.counts[self.plan_steps[0]:self.plan_steps[1]]

    def with_redundant(self, redundant_slots: int) -> "ReplicaRequest":
        """The same request at another uniform budget (checked like the original)."""
        _check_uniform_slots(self.num_experts, self.num_gpus, redundant_slots)
        if self.gpu is not None:
            _check_expert_memory(self.arch, self.gpu, (self.num_experts + redundant_slots) / self.num_gpus)
        return replace(self, redundant_slots=redundant_slots, budget_gb=None)

    def parameters(self) -> dict:
        """The plan's record of its parameters (``plan.inputs.parameters``); key order is part of the bytes."""
        E, R, stepaware = self.num_experts, self.redundant_slots, self.algorithm == "stepaware"
        return {
            "algorithm": self.algorithm,
            "mode": self.mode,
            "policy": "hierarchical" if self.hierarchical else "global",
            "num_gpus": self.num_gpus,
            "num_nodes": self.num_nodes,
            "num_groups": self.num_groups,
            "redundant_slots": R,
            "slots_per_layer": E + R if self.mode == "uniform" else None,
            "budget_gb": self.budget_gb,
            "gpu": self.gpu.id if self.gpu is not None else None,
            "window_steps": self.plan_steps[1] - self.plan_steps[0],
            "holdout_steps": self.holdout,
            "split": self.split,
            "sample_steps": self.sample_steps if stepaware else None,
            "swap_evaluations": self.swap_evaluations if stepaware else None,
            "swap_time_limit_s": self.swap_time_limit_s if stepaware else None,
        } | ({"loads_rows_as_moe_layers": True} if self.rows_mapped else {})

    @property
    def rows_mapped(self) -> bool:
        """The loads' rows were read as the model's MoE layers (see :func:`align_loads`)."""
        return rows_as_moe_layers(self.source_loads, self.arch.moe_layers) is not None


def check_choice(name: str, value: str, known: tuple[str, ...]) -> None:
    """``InputError`` naming ``name`` unless ``value`` is one of ``known``."""
    if value not in known:
        raise InputError(f"unknown {value!r}; known: {', '.join(known)}", param=name)


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
        raise InputError(f"must be >= 0, got {budget_gb}", param="budget_gb")
    per_gpu = int(budget_gb * 1e9 // arch.bytes_per_expert)  # extra expert copies one GPU can hold
    total = per_gpu * num_gpus  # over all MoE layers
    per_layer = total // len(arch.moe_layers)
    return per_layer - per_layer % num_gpus if mode == "uniform" else per_layer


def align_loads(loads: ExpertLoads, model: ModelArch) -> ExpertLoads:
    """Keep the rows of ``loads`` that are MoE layers of ``model``; check expert counts.

    All-zero rows on dense layers (SGLang dumps every hidden layer) are dropped silently; a dense
    layer with non-zero counts means the loads belong to another model and is an error. Loads with
    one row per MoE layer and no hidden-layer ids are read as the MoE layers
    (:func:`~planner.inputs.loads.rows_as_moe_layers`). Loads without a single token on the MoE layers
    are refused: there is nothing to balance.
    """
    loads = rows_as_moe_layers(loads, model.moe_layers) or loads
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
    if not any(loads.counts[:, loads.layer_ids.index(layer), :].any() for layer in keep):
        raise InputError(f"every count on {model.id}'s MoE layers is 0: nothing to "
                         "balance", param="loads")
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
        raise InputError(f"must be >= 0, got {holdout_steps}", param="holdout_steps")
    stop = num_steps - holdout_steps
    if stop < 1:
        raise InputError(f"{holdout_steps} held-out steps leave none of the {num_steps} steps to plan on",
                         param="holdout_steps")
    if window_steps is not None and window_steps < 1:
        raise InputError(f"must be >= 1, got {window_steps}", param="window_steps")
    start = 0 if window_steps is None else max(0, stop - window_steps)
    return (start, stop), ((stop, num_steps) if holdout_steps else None)


def _check_layout(num_gpus: int, num_nodes: int) -> None:
    if num_gpus < 1:
        raise InputError(f"must be >= 1, got {num_gpus}", param="num_gpus")
    if num_nodes < 1:
        raise InputError(f"must be >= 1, got {num_nodes}", param="num_nodes")
    if num_gpus % num_nodes:
        raise InputError(f"{num_gpus} GPUs do not split evenly over {num_nodes} nodes", param="num_gpus")


def _check_uniform_slots(num_experts: int, num_gpus: int, redundant: int) -> int:
    if redundant < 0:
        raise InputError(f"must be >= 0, got {redundant}", param="redundant_slots")
    slots = num_experts + redundant
    if num_gpus > slots:
        raise InputError(f"{num_gpus} GPUs but only {slots} slots per layer ({num_experts} experts + {redundant} redundant)",
                         param="num_gpus")
    if slots % num_gpus:
        lo = slots - slots % num_gpus - num_experts
        hint = [r for r in (lo, lo + num_gpus) if r >= 0]
        raise InputError(
            f"{slots} slots per layer ({num_experts} experts + {redundant} redundant) do not divide over "
            f"{num_gpus} GPUs; nearest redundant counts that do: {' or '.join(map(str, hint))}",
            param="redundant_slots",
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


def _check_algorithm(algorithm: str, mode: str, redundant_slots, budget_gb, split: str) -> None:
    if algorithm == "none" and (mode != "uniform" or budget_gb is not None or redundant_slots not in (None, 0)
                                or split != "even"):
        raise InputError("none is the engine's default placement (expert e on GPU e*D//E, no replicas, even "
                         "split); it takes no redundant slots, GB budget, per-layer mode or optimal split",
                         param="algorithm")
    if mode == "per-layer" and algorithm == "eplb":
        raise InputError("per-layer budgets need the stepaware algorithm (EPLB needs equal slots per layer)",
                         param="mode")
    if budget_gb is not None and redundant_slots is not None:
        raise InputError("give either redundant_slots or budget_gb, not both", param="redundant_slots")


def resolve_request(
    loads: ExpertLoads,
    model: ModelArch | str,
    gpu: GpuSpec | str | None = None,
    *,
    num_gpus: int,
    num_nodes: int = 1,
    redundant_slots: int | None = None,
    budget_gb: float | None = None,
    mode: str = "uniform",
    algorithm: str = "stepaware",
    policy: str = "auto",
    num_groups: int | None = None,
    window_steps: int | None = None,
    holdout_steps: int = 0,
    split: str = "even",
    sample_steps: int | None = 200,
    swap_evaluations: int | None = None,
    swap_time_limit_s: float | None = None,
    time_limit_s: float = 60.0,
) -> ReplicaRequest:
    """Check the arguments of :func:`~planner.replicas.plan_replicas` and resolve defaults (see there)."""
    arch = model if isinstance(model, ModelArch) else get_model(model)
    for name, value, known in (("algorithm", algorithm, ALGORITHMS), ("policy", policy, POLICIES),
                               ("mode", mode, MODES), ("split", split, SPLITS)):
        check_choice(name, value, known)
    _check_algorithm(algorithm, mode, redundant_slots, budget_gb, split)
    if algorithm == "none":
        redundant_slots = 0
    aligned = align_loads(loads, arch)
    E = arch.num_routed_experts
    _check_layout(num_gpus, num_nodes)
    if budget_gb is not None:
        R = redundant_for_budget(arch, num_gpus, budget_gb, mode=mode)
    else:
        R = default_redundant_slots(E, num_gpus) if redundant_slots is None else int(redundant_slots)
    if mode == "uniform":
        _check_uniform_slots(E, num_gpus, R)
    elif R < 0:
        raise InputError(f"must be >= 0, got {R}", param="redundant_slots")
    spec = None if gpu is None else (gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu))
    if spec is not None:
        _check_expert_memory(arch, spec, (E + R) / num_gpus)
    G = num_groups if num_groups is not None else (arch.num_expert_groups or 1)
    if G < 1 or E % G:
        raise InputError(f"{E} experts do not split into {G} groups", param="num_groups")
    if policy == "hierarchical" and G % num_nodes:
        raise InputError(f"hierarchical needs expert groups ({G}) divisible by nodes ({num_nodes})", param="policy")
    hierarchical = policy == "hierarchical" or (policy == "auto" and num_nodes > 1 and G % num_nodes == 0)
    plan_steps, hold = steps_for(aligned.num_steps, window_steps, holdout_steps)
    swap_evaluations, swap_time_limit_s = _swap_budget(swap_evaluations, swap_time_limit_s,
                                                      plan_steps[1] - plan_steps[0])
    return ReplicaRequest(
        arch=arch, source_loads=loads, loads=aligned, num_gpus=num_gpus, num_nodes=num_nodes, redundant_slots=R,
        mode=mode, algorithm=algorithm, hierarchical=hierarchical, num_groups=G, gpu=spec, budget_gb=budget_gb,
        plan_steps=plan_steps, holdout_steps=hold, holdout=holdout_steps, split=split, sample_steps=sample_steps,
        swap_evaluations=swap_evaluations, swap_time_limit_s=swap_time_limit_s, time_limit_s=time_limit_s,
    )


def _swap_budget(evaluations, time_limit_s, window_steps: int) -> tuple[int, float | None]:
    """The swap search's work budget and opt-in time cap. Default: :data:`AUTO_SWAP_EVALUATIONS` for
    windows of at most :data:`AUTO_SWAP_MAX_STEPS` steps, else off; no time cap. A time limit of 0
    turns the search off (as before budgets were work); a positive one alone keeps the default work
    budget as well, so the plan is reproducible unless the time cap binds (the report says so)."""
    if evaluations is not None and (isinstance(evaluations, bool) or int(evaluations) != evaluations or evaluations < 0):
        raise InputError(f"must be a whole number >= 0, got {evaluations}", param="swap_evaluations")
    if time_limit_s is not None and not (time_limit_s >= 0 and math.isfinite(time_limit_s)):
        raise InputError(f"must be a finite number >= 0, got {time_limit_s}", param="swap_time_limit_s")
    if time_limit_s == 0:
        return 0, None
    if evaluations is None:
        short = window_steps <= AUTO_SWAP_MAX_STEPS
        evaluations = AUTO_SWAP_EVALUATIONS if short or time_limit_s else 0
    return int(evaluations), time_limit_s
