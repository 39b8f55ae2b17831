"""Candidate serving instances of a deployment search: layouts that fit, their cost models, their MoE imbalance.

This module is the **one place** where the deployment search calls moeplan's memory and latency
model (:func:`planner.perf.memory_per_gpu`, :func:`planner.perf.prefill_time_s`,
:func:`planner.perf.decode_step_time_s`, :func:`planner.perf.latency_model_cost`): a model option
such as a precision format is added here once and reaches every candidate.

Candidates (``docs/deploy.md``, "Candidates"):

- instance sizes ``n`` = 1, 2, 4, ... GPUs up to the budget; ``pp`` in 1, 2, 4 (a pipeline stage
  spans at most one node); attention ``tp`` in 1, 2, 4, 8 within a node; ``dp = n / (tp pp)``
  DP-attention groups; MoE models spread their experts over every GPU of a stage (``ep = tp dp``,
  ``moe_tp = 1``), dense models use ``dp = 1``;
- kept when :meth:`~planner.perf.ParallelLayout.validate` accepts the layout and the weights,
  activations and overhead leave KV room for at least one request of the workload's longest context.

MoE imbalance (``balancedness`` b = mean / max GPU load of a MoE layer) enters the MoE time through
the busiest GPU:

- with a replica plan: its replayed balancedness (held-out when recorded) and its slots per GPU, for
  layouts whose EP size equals the plan's GPUs (``planner.perf.replica_plan_effect``);
- with measured loads: :func:`planner.replicas.plan_replicas` for each EP size, its replayed
  balancedness and slots;
- with the caller's figures (``balancedness=b`` or ``{ep: b}``, e.g. measured on their engine, or another tool's routing
  assumption): those, for the EP sizes given;
- otherwise the engines' default placement (expert ``e`` on GPU ``e * ep // E``, no replicas) replayed
  on moeplan's synthetic trace, whose skew is calibrated to TensorRT-LLM's DeepSeek-R1 figure
  (imbalance (max - mean) / mean = 1.56 at EP32, i.e. b = 1 / 2.56 there; ``planner/inputs/synthetic.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from planner.errors import Infeasible, InputError
from planner.inputs import ExpertLoads
from planner.perf import (
    CostModel,
    ParallelLayout,
    distserve_cost,
    latency_model_cost,
    list_distserve_configs,
    memory_per_gpu,
    replica_plan_effect,
    step_time_grid,
)
from planner.plans import Plan
from planner.profiles import GpuSpec, ModelArch, Precision

__all__ = ["Imbalance", "Instance", "imbalance_for", "balancedness_arg", "replica_plan_for_ep", "latency_model_layouts", "distserve_layouts",
           "cost_record", "cost_from_record", "quick_times", "COST_MODELS"]

#: cost models the search can price instances with
COST_MODELS = ("latency_model", "distserve")
_PP = (1, 2, 4)
_TP = (1, 2, 4, 8)
_SYNTHETIC_STEPS = 32
_SYNTHETIC_LAYERS = 4


@dataclass(frozen=True)
class Imbalance:
    """Balancedness and expert slots per GPU of one EP size, and where they come from."""

    ep: int
    balancedness: float
    expert_slots_per_gpu: int | None
    source: str


@dataclass(frozen=True)
class Instance:
    """One candidate instance layout: its label (``tp1pp1dp8ep8``), GPUs, KV capacity and imbalance."""

    label: str
    num_gpus: int
    layout: ParallelLayout
    kv_tokens: int
    imbalance: Imbalance


# -- imbalance ------------------------------------------------------------------------------------------
def imbalance_for(arch: ModelArch, ep: int, *, replica_plan: Plan | None = None, loads: ExpertLoads | None = None,
                  gpu: GpuSpec | None = None, given: float | Mapping[int, float] | None = None) -> Imbalance | None:
    """Balancedness of ``arch``'s MoE layers at EP size ``ep`` (module docstring); None when a replica plan
    is given for another EP size (the layout is then not a candidate). ``given``: the caller's balancedness,
    one for every EP size or per EP size (used where it has ``ep``)."""
    if arch.num_routed_experts <= 1 or ep == 1:
        return Imbalance(ep, 1.0, None, "one EP rank holds every expert: balancedness 1")
    b_given = given.get(ep) if isinstance(given, Mapping) else given
    if b_given is not None:
        return Imbalance(ep, float(b_given), None, f"EP {ep}: the caller's balancedness b = {float(b_given):.4f}")
    if replica_plan is not None:
        if replica_plan.replicas.num_gpus != ep:
            return None
        slots, b, note = replica_plan_effect(replica_plan, arch, ParallelLayout(dp=ep, ep=ep))
        return Imbalance(ep, b, slots, note)
    if loads is not None:
        return _from_loads(arch, ep, loads, gpu)
    b = _default_balancedness(arch.id, arch.num_routed_experts, arch.top_k, arch.moe_layers[0], ep)
    return Imbalance(ep, b, None, f"EP {ep} default: engine placement (no replicas) replayed on moeplan's synthetic trace "
                                  f"calibrated to TensorRT-LLM's EP32 imbalance 1.56 (b = 1/2.56 at EP32): b = {b:.4f}")


def balancedness_arg(given) -> float | dict[int, float] | None:
    """The caller's balancedness checked (:func:`imbalance_for`'s ``given``): None, a fraction in (0, 1] for every
    EP size, or ``{ep: b}`` with EP sizes >= 2 (returned sorted by EP size)."""
    if given is None:
        return None
    if not isinstance(given, Mapping):
        return _fraction(given, "")
    if not given:
        raise InputError("give a balancedness, or EP sizes mapped to one, e.g. {8: 0.6}", param="balancedness")
    out = {}
    for ep, b in given.items():
        if isinstance(ep, bool) or not isinstance(ep, int) or ep < 2:
            raise InputError(f"EP size {ep!r} must be an integer >= 2", param="balancedness")
        out[ep] = _fraction(b, f"EP {ep}: ")
    return dict(sorted(out.items()))


def _fraction(b, where: str) -> float:
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not (math.isfinite(b) and 0 < b <= 1):
        raise InputError(f"{where}balancedness {b!r} must be in (0, 1] (mean / max GPU load)", param="balancedness")
    return float(b)


def replica_plan_for_ep(arch: ModelArch, ep: int, loads: ExpertLoads, gpu=None) -> Plan:
    """The replica plan the search prices an EP size with when loads are given: moeplan's default planner
    (stepaware, default redundancy) over ``ep`` GPUs. The main job (``planner.scenario``) emits this plan
    for each MoE pool of the chosen deployment, so the balancedness priced is the plan's."""
    from planner.replicas import plan_replicas  # scipy: only when loads are given

    if ep > arch.num_routed_experts * 4:
        raise InputError(f"EP {ep} exceeds what {arch.num_routed_experts} experts can fill", param="loads")
    return plan_replicas(loads, arch, gpu, num_gpus=ep)


def _from_loads(arch: ModelArch, ep: int, loads: ExpertLoads, gpu) -> Imbalance:
    plan = replica_plan_for_ep(arch, ep, loads, gpu)
    rep = plan.replicas
    slots = max(max(row) for row in rep.slots_per_gpu)
    b = float(rep.predicted.replay_balancedness_mean)
    return Imbalance(ep, b, slots, f"replica plan for EP {ep} from the given loads (stepaware, default "
                                   f"redundancy): replayed balancedness {b:.4f}, {slots} slots per GPU")


@lru_cache(maxsize=64)
def _default_balancedness(model_id: str, num_experts: int, top_k: int, first_layer: int, ep: int) -> float:
    import numpy as np

    from planner.inputs.synthetic import synthetic_trace

    trace = synthetic_trace(num_steps=_SYNTHETIC_STEPS, num_layers=_SYNTHETIC_LAYERS, num_experts=num_experts,
                            top_k=top_k, first_layer=first_layer, seed=0)
    gpu_of = np.arange(num_experts) * ep // num_experts  # vLLM / SGLang default: contiguous blocks
    loads = np.zeros(trace.counts.shape[:2] + (ep,))
    np.add.at(loads, (slice(None), slice(None), gpu_of), trace.counts)
    return float((loads.mean(axis=-1) / loads.max(axis=-1)).mean())


# -- layouts -------------------------------------------------------------------------------------------
def _powers_of_two(limit: int) -> list[int]:
    out, n = [], 1
    while n <= limit:
        out.append(n)
        n *= 2
    return out


def latency_model_layouts(arch: ModelArch, spec: GpuSpec, *, max_gpus: int, gpus_per_node: int,
                          longest_context_tokens: int, batch_tokens_per_rank: int, precision: dict | None,
                          replica_plan: Plan | None = None, loads: ExpertLoads | None = None,
                          memory_options: dict | None = None,
                          balancedness: float | Mapping[int, float] | None = None) -> list[Instance]:
    """Layouts of one instance that the model accepts and that fit in memory (module docstring);
    ``memory_options``: the memory model's engine rule (``memory_utilization``, ``memory_fraction_of``);
    ``balancedness``: the caller's balancedness, one for every EP size or per EP size (:func:`imbalance_for`)."""
    moe = arch.num_routed_experts > 1
    out: list[Instance] = []
    imbalances: dict[int, Imbalance | None] = {}
    for n in _powers_of_two(max_gpus):
        for pp in _PP:
            if n % pp:
                continue
            stage = n // pp
            if pp > 1 and stage > gpus_per_node:
                continue
            for tp in _TP:
                if tp > min(stage, gpus_per_node) or stage % tp:
                    continue
                dp = stage // tp
                if not moe and dp > 1:
                    continue
                try:
                    layout = ParallelLayout(tp=tp, pp=pp, dp=dp, ep=tp * dp)
                    layout.validate(arch)
                except InputError:
                    continue
                if layout.ep not in imbalances:
                    imbalances[layout.ep] = imbalance_for(arch, layout.ep, replica_plan=replica_plan, loads=loads,
                                                          gpu=spec, given=balancedness)
                imb = imbalances[layout.ep]
                if imb is None:
                    continue
                try:
                    mem = _memory(arch, spec, layout, imb.expert_slots_per_gpu, batch_tokens_per_rank * dp, precision,
                                  memory_options)
                except (Infeasible, InputError):
                    continue
                if mem.kv_tokens < longest_context_tokens:
                    continue
                out.append(Instance(layout.label, n, layout, int(mem.kv_tokens_per_instance), imb))
    return out


def distserve_layouts(model: str, *, max_gpus: int) -> list[Instance]:
    """DistServe's shipped (tp, pp) configurations of ``model`` with at most ``max_gpus`` GPUs."""
    key = model.strip().lower()
    key = key if key.startswith("facebook/") else f"facebook/{key}"
    out = []
    for m, tp, pp in list_distserve_configs():
        if m != key or tp * pp > max_gpus:
            continue
        cost = distserve_cost(m, tp, pp)
        out.append(Instance(f"tp{tp}pp{pp}", tp * pp, ParallelLayout(tp=tp, pp=pp, ep=tp), cost.kv_capacity_tokens,
                            Imbalance(tp, 1.0, None, "dense model")))
    if not out:
        raise InputError(f"DistServe ships no configuration of {model!r} on <= {max_gpus} GPUs", param="model")
    return out


# -- the model calls -----------------------------------------------------------------------------------
def _precision(formats: dict | None) -> Precision | None:
    """The :class:`~planner.profiles.Precision` of a recorded ``{component: format}`` (None: the native one)."""
    return Precision.from_mapping(formats) if formats else None


def _memory(arch, spec, layout, slots, batch_tokens, precision, memory_options=None):
    return memory_per_gpu(arch, spec, layout, expert_slots_per_gpu=slots, precision=_precision(precision),
                          max_batch_tokens=batch_tokens, **(memory_options or {}))


def quick_times(arch: ModelArch, spec: GpuSpec, inst: Instance, *, prompts, prompt_tokens: int, decode_batches,
                context_tokens: int, precision: dict | None) -> tuple[dict[int, float], dict[int, float]]:
    """``({n: prefill_s}, {b: decode_step_s})``: one prefill of ``n`` prompts of ``prompt_tokens`` tokens for
    each ``n`` of ``prompts``, one decode step of ``b`` sequences of ``context_tokens`` for each ``b`` of
    ``decode_batches``, straight from the latency model (the screening before simulation), every point in
    one vectorised call per phase (:func:`planner.perf.step_time_grid`: the per-point numbers)."""
    opts = dict(balancedness=inst.imbalance.balancedness, expert_slots_per_gpu=inst.imbalance.expert_slots_per_gpu,
                precision=_precision(precision))
    prompts, batches = sorted(set(prompts)), sorted(set(decode_batches))
    p = step_time_grid(arch, spec, inst.layout, prompts, [prompt_tokens], prefill=True, **opts)[0][:, 0].tolist()
    d = step_time_grid(arch, spec, inst.layout, batches, [context_tokens], prefill=False, **opts)[0][:, 0].tolist()
    return dict(zip(prompts, p)), dict(zip(batches, d))


def cost_record(kind: str, model, spec: GpuSpec | None, inst: Instance, *, max_batch_size: int,
                max_prefill_batch: int, max_context_tokens: int, batch_tokens: int, precision: dict | None,
                memory_options: dict | None = None) -> dict:
    """The exact arguments of the cost model of one instance, as a plan records them: ``kind`` and the
    keyword arguments of :func:`planner.perf.latency_model_cost` or :func:`planner.perf.distserve_cost`
    (``memory_options``: the memory rule, recorded as ``memory_utilization`` and ``memory_fraction_of``)."""
    if kind == "distserve":
        return {"kind": "distserve", "model": str(model), "tp": inst.layout.tp, "pp": inst.layout.pp}
    return {"kind": "latency_model", "model": model if isinstance(model, str) else model.id, "gpu": spec.id,
            "layout": inst.label, "balancedness": float(inst.imbalance.balancedness),
            "expert_slots_per_gpu": inst.imbalance.expert_slots_per_gpu, "precision": dict(precision or {}),
            "max_batch_size": int(max_batch_size), "max_prefill_batch": int(max_prefill_batch),
            "max_context_tokens": 1 << max(5, math.ceil(math.log2(max_context_tokens))),
            "max_batch_tokens": int(batch_tokens), **_memory_rule(memory_options)}


def _memory_rule(options: dict | None) -> dict:
    """The memory model's engine rule, defaults filled in (older plans recorded none: the defaults)."""
    o = options or {}
    return {"memory_utilization": float(o.get("memory_utilization", 0.9)),
            "memory_fraction_of": str(o.get("memory_fraction_of", "total"))}


def cost_from_record(record: dict) -> CostModel:
    """The cost model a :func:`cost_record` describes (cached: one table per distinct record)."""
    return _cost_cached(tuple(sorted((k, tuple(sorted(v.items())) if isinstance(v, dict) else v)
                                     for k, v in record.items())))


@lru_cache(maxsize=256)
def _cost_cached(items: tuple) -> CostModel:
    r = dict(items)
    if r["kind"] == "distserve":
        return distserve_cost(r["model"], int(r["tp"]), int(r["pp"]))
    return latency_model_cost(r["model"], r["gpu"], r["layout"], balancedness=r["balancedness"],
                              expert_slots_per_gpu=r["expert_slots_per_gpu"], precision=_precision(dict(r["precision"])),
                              max_batch_size=r["max_batch_size"], max_prefill_batch=r["max_prefill_batch"],
                              max_context_tokens=r["max_context_tokens"],
                              memory_options={"max_batch_tokens": r["max_batch_tokens"], **_memory_rule(r)})
