"""Expert replica planning: measured loads + model + EP layout -> a verified replica Plan.

:func:`plan_replicas` is the entry point of the CLI and the notebook API. It resolves the request
(:mod:`planner.replicas.request`: checks, budget), chooses a uniform budget by sweep when asked
(:mod:`planner.replicas.sweep`), then places, splits, builds and verifies (:mod:`planner.replicas.place`).
See ``docs/replicas.md`` for the algorithms, budgets and what the plan's metrics mean.
"""

from __future__ import annotations

from dataclasses import replace

from planner.errors import InputError
from planner.inputs.loads import ExpertLoads
from planner.perf.layout import ParallelLayout
from planner.plans.schema import Plan
from planner.profiles import GpuSpec, ModelArch, get_gpu
from planner.replicas.place import plan_request
from planner.replicas.request import resolve_request
from planner.replicas.sweep import budget_points, choose_budget

__all__ = ["plan_replicas", "BUDGETS"]

BUDGETS = ("auto",)


def plan_replicas(
    loads: ExpertLoads,
    model: ModelArch | str,
    gpu: GpuSpec | str | None = None,
    *,
    num_gpus: int,
    num_nodes: int = 1,
    redundant_slots: int | None = None,
    budget_gb: float | None = None,
    budget: str | None = None,
    layout: ParallelLayout | str | None = None,
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
) -> Plan:
    """Plan which experts to replicate and which GPU holds every replica, per MoE layer.

    Parameters
    ----------
    loads : measured loads; rows on the model's dense layers must be zero and are dropped.
    model : a :class:`~planner.profiles.ModelArch` or a model name/id.
    gpu : optional GPU profile or name; the routed-expert weights one GPU would hold over all of the
        model's MoE layers must fit in its memory (else :class:`~planner.errors.Infeasible`).
        Required by ``budget="auto"``.
    num_gpus : EP ranks the experts are spread over.
    num_nodes : nodes the GPUs sit in (``num_gpus`` must divide evenly).
    redundant_slots : extra slots per layer beyond one per expert (per-layer mode: the average over
        layers, i.e. a total budget of ``redundant_slots x layers``); default one per GPU, rounded up
        to a multiple of ``num_gpus`` (:func:`~planner.replicas.request.default_redundant_slots`).
    budget_gb : instead of ``redundant_slots``: GB of expert replicas per GPU over all MoE layers.
    budget : ``"auto"``: instead of ``redundant_slots`` / ``budget_gb``, plan uniform budgets of one to
        four more slots per GPU and take the one maximising balancedness x the KV-cache tokens it leaves
        on ``gpu`` (:mod:`planner.replicas.sweep`); ``plan.budget_sweep`` then holds the sweep.
    layout : with ``budget="auto"``: the instance's parallel layout for the memory model (default
        ``tp1pp1dp{D}ep{D}``).
    mode : ``"uniform"`` or ``"per-layer"``.
    algorithm : ``"stepaware"`` (default), ``"eplb"`` (the baseline; uniform mode only) or ``"none"``
        (what an engine loads without a plan: expert ``e`` on GPU ``e * D // E``, no replicas; the
        reference to measure replication against).
    policy : ``"auto"`` (hierarchical when expert groups divide over nodes, ``num_nodes > 1``),
        ``"hierarchical"`` (an expert's replicas stay in its group's node) or ``"global"``.
    num_groups : expert groups for the hierarchical policy; default the model's routing groups.
    window_steps : plan on this many most recent steps (before the held-out ones); default all.
    holdout_steps : hold out the last steps and report the plan's replayed balancedness on them.
    split : ``"even"`` (engines' split of an expert's tokens over its replicas) or ``"optimal"``
        (an LP per layer; the plan carries dispatch weights, which no engine export can express).
    sample_steps : the step-aware packer plans on at most this many evenly spaced steps.
    swap_evaluations : work budget of the swap search after the step-aware packing, in candidate
        swaps x steps evaluated (0 = off). Default: 5 x 10^7 (about 1 s on one core) when the planning
        window has at most 8 steps (aggregated loads: swaps reach within 0.1 point of the bound on the
        shipped OLMoE counts), off otherwise (on per-step traces swaps fit the planning window and add
        nothing held-out; ``docs/replicas.md``, "Why these methods"). Work, not seconds: the same
        inputs give the same plan bytes on any machine load.
    swap_time_limit_s : opt-in wall-clock cap of the swap search (0 = search off); when it stops the
        search, the report's ``stop_reason`` is ``time_limit`` and the plan may differ between runs.
    time_limit_s : limit for the optimal-split LPs.

    Returns
    -------
    Plan
        Frozen, verified plan. ``plan.solve_report`` holds the solver's report with its wall time.

    Raises
    ------
    InputError
        Expert counts that do not match the model, slots that do not divide over GPUs, ... The
        error's ``param`` names the parameter at fault.
    Infeasible
        The routed-expert weights alone exceed the GPU's memory.

    Examples
    --------
    >>> from planner.inputs.readers import builtin_loads
    >>> plan = plan_replicas(builtin_loads("olmoe-arxiv"), "olmoe-1b-7b", num_gpus=8)
    >>> plan.replicas.layers, len(plan.replicas.physical_to_logical[0])
    ([0, 7, 15], 72)
    >>> auto = plan_replicas(builtin_loads("olmoe-arxiv"), "olmoe-1b-7b", "h100", num_gpus=8, budget="auto")
    >>> [p.redundant_slots for p in auto.budget_sweep], auto.inputs.parameters["redundant_slots"] in (0, 8, 16, 24, 32)
    ([0, 8, 16, 24, 32], True)
    """
    if budget is not None:
        _check_auto(budget, gpu, redundant_slots, budget_gb, mode)
    elif layout is not None:
        raise InputError("is the memory model's layout: it goes only with the auto-budget", param="layout")
    req = resolve_request(  # with the auto-budget the GPU's memory is checked at the budget chosen, not the default

        loads, model, None if budget is not None else gpu, num_gpus=num_gpus, num_nodes=num_nodes,
        redundant_slots=redundant_slots, budget_gb=budget_gb, mode=mode, algorithm=algorithm, policy=policy,
        num_groups=num_groups, window_steps=window_steps, holdout_steps=holdout_steps, split=split,
        sample_steps=sample_steps, swap_evaluations=swap_evaluations, swap_time_limit_s=swap_time_limit_s,
        time_limit_s=time_limit_s,
    )
    if budget is None:
        return plan_request(req)
    req = replace(req, gpu=gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu))
    points = budget_points(req, layout=layout)
    plan = plan_request(req.with_redundant(choose_budget(points).redundant_slots))
    return plan.attach(budget_sweep=points)


def _check_auto(budget: str, gpu, redundant_slots, budget_gb, mode: str) -> None:
    if budget not in BUDGETS:
        raise InputError(f"unknown {budget!r}; known: {', '.join(BUDGETS)} (or give redundant_slots / budget_gb)",
                         param="budget")
    if gpu is None:
        raise InputError("'auto' needs a GPU profile (the memory model decides what a replica costs in KV cache)",
                         param="gpu")
    if redundant_slots is not None or budget_gb is not None:
        raise InputError("'auto' chooses the redundant slots; give no redundant_slots / budget_gb", param="budget")
    if mode != "uniform":
        raise InputError("'auto' sweeps uniform budgets; use mode 'uniform'", param="mode")
