"""Engine exports of a replica plan: SGLang, vLLM and TensorRT-LLM expert-placement files.

Formats (see docs/exports.md for the flags that consume them):

* **SGLang** ``--init-expert-location FILE.json``: ``{"physical_to_logical_map": [[...], ...]}`` with one
  row per *hidden* layer (dense layers included), ``P = E + --ep-num-redundant-experts`` slots per row,
  slot ``p`` on EP rank ``p // (P / ep_size)``.
* **vLLM** (offline EPLB mapping JSONL, vLLM PR #41141): one record
  ``{"record_type": "eplb_initial_mapping", "version": 1, "num_redundant_experts": R,
  "num_slots": P, "initial_global_assignments": {"<moe layer index>": [...]}}``; the layer key is the
  index among MoE layers (DeepSeek-V3: 0..57).
* **TensorRT-LLM** ``moe_load_balancer`` YAML (``examples/ep_load_balancer``): ``num_slots``,
  ``layer_updates_per_iter: 0`` (static) and ``initial_global_assignments`` keyed by absolute layer index.

All three engines need the same number of slots in every MoE layer, slots numbered rank-major with
equal slots per rank, and an even split of an expert's tokens over its replicas. Plans that break one
of these are refused with the reason. MoE layers that the plan does not cover (e.g. loads measured on
3 of 16 layers) get the trivial placement ``slot p -> expert p mod E``, which engines also use at start-up;
the exporter reports them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from planner.errors import InputError
from planner.plans.schema import Plan
from planner.profiles import ModelArch, get_model

__all__ = ["TARGETS", "Export", "export_plan"]

TARGETS = ("sglang", "vllm", "trtllm")


class ExportRefused(InputError):
    """The target engine cannot express this plan."""


@dataclass(frozen=True)
class Export:
    target: str
    text: str
    num_slots: int
    num_redundant_experts: int
    ep_size: int
    filled_layers: tuple[int, ...]  # MoE layers not in the plan, given the trivial placement
    launch_hint: str


def _uniform_slots(plan: Plan, target: str) -> int:
    rp = plan.replicas
    sizes = {len(row) for row in rp.physical_to_logical}
    if len(sizes) != 1:
        raise ExportRefused(
            f"{target} cannot express this plan: slot counts differ between layers ({sorted(sizes)}); "
            "engines load the same number of slots in every MoE layer"
        )
    P = sizes.pop()
    D = rp.num_gpus
    if P % D:
        raise ExportRefused(f"{target} cannot express this plan: {P} slots per layer do not divide over {D} EP ranks")
    spg = P // D
    for r, layer in enumerate(rp.layers):
        if rp.slot_gpu[r] != [s // spg for s in range(P)]:
            raise ExportRefused(
                f"{target} cannot express this plan: layer {layer} does not place slot p on rank p // {spg}"
            )
    weights = getattr(rp, "dispatch_weights", None)
    if weights:
        raise ExportRefused(f"{target} cannot express this plan: it splits tokens unevenly over replicas")
    return P


def _rows_by_layer(plan: Plan, model: ModelArch, P: int) -> tuple[dict[int, list[int]], tuple[int, ...]]:
    rp = plan.replicas
    if rp.num_hidden_layers != model.num_hidden_layers or rp.num_experts != model.num_routed_experts:
        raise InputError(f"plan does not match model {model.id} (layers or experts differ)")
    planned = dict(zip(rp.layers, rp.physical_to_logical))
    trivial = [p % rp.num_experts for p in range(P)]
    filled = tuple(l for l in model.moe_layers if l not in planned)
    rows = {l: planned.get(l, trivial) for l in model.moe_layers}
    return rows, filled


def _sglang(plan: Plan, model: ModelArch, P: int, rows: dict[int, list[int]]) -> str:
    trivial = [p % plan.replicas.num_experts for p in range(P)]
    table = [rows.get(l, trivial) for l in range(model.num_hidden_layers)]
    body = ",\n".join("  " + json.dumps(r, separators=(",", ":")) for r in table)
    return '{"physical_to_logical_map": [\n' + body + "\n]}\n"


def _vllm(plan: Plan, model: ModelArch, P: int, rows: dict[int, list[int]]) -> str:
    record = {
        "record_type": "eplb_initial_mapping",
        "version": 1,
        "num_redundant_experts": P - plan.replicas.num_experts,
        "num_slots": P,
        "initial_global_assignments": {str(i): rows[l] for i, l in enumerate(model.moe_layers)},
    }
    return json.dumps(record, separators=(",", ":")) + "\n"


def _trtllm(plan: Plan, model: ModelArch, P: int, rows: dict[int, list[int]]) -> str:
    lines = [
        "# moeplan static expert placement for TensorRT-LLM (extra LLM API options)",
        f"# model {model.id}, EP {plan.replicas.num_gpus}, {P} slots per MoE layer",
        "moe_load_balancer:",
        f"  num_slots: {P}",
        "  layer_updates_per_iter: 0",
        "  initial_global_assignments:",
    ]
    lines += [f"    {l}: [{', '.join(map(str, rows[l]))}]" for l in model.moe_layers]
    return "\n".join(lines) + "\n"


def export_plan(plan: Plan, target: str, *, model: ModelArch | None = None) -> Export:
    """Render ``plan`` in the file format of ``target`` (one of :data:`TARGETS`).

    Raises
    ------
    InputError
        Unknown target, or the target cannot express the plan (the message says why).
    """
    if target not in TARGETS:
        raise InputError(f"unknown {target!r}; known: {', '.join(TARGETS)}", param="target")
    if getattr(plan, "kind", "replicas") == "cluster":
        raise ExportRefused(f"{target} export of a cluster plan: its engine settings are in the plan itself, one "
                            "pipeline per entry of pipelines[] (nodes and layer_partition, VLLM_PP_LAYER_PARTITION style)")
    if getattr(plan, "kind", "replicas") != "replicas":
        raise ExportRefused(f"{target} export of a {plan.kind} plan is not implemented yet (engine launch lines are "
                            "a later task); export its embedded replica plan, if any, after writing it on its own")
    arch = model or get_model(plan.inputs.model)
    P = _uniform_slots(plan, target)
    rows, filled = _rows_by_layer(plan, arch, P)
    R = P - plan.replicas.num_experts
    D = plan.replicas.num_gpus
    if target == "sglang":
        text = _sglang(plan, arch, P, rows)
        hint = f"--init-expert-location FILE --ep-num-redundant-experts {R} --ep-size {D}"
    elif target == "vllm":
        text = _vllm(plan, arch, P, rows)
        hint = f"--enable-expert-parallel --enable-eplb --eplb-config '{{\"num_redundant_experts\": {R}}}' (mapping file: vLLM PR #41141)"
    else:
        text = _trtllm(plan, arch, P, rows)
        hint = f"put the moe_load_balancer block in the LLM API extra options YAML; --ep_size {D}"
    return Export(target, text, P, R, D, filled, hint)
