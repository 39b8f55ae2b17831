"""Engine exports of a replica plan: files SGLang, vLLM and TensorRT-LLM load as written.

Formats (docs/engines.md has the launch lines and the support table):

* **SGLang** ``--init-expert-location FILE.json``: ``{"physical_to_logical_map": [[...], ...]}`` with one
  row per *hidden* layer (dense layers included), ``P = E + --ep-num-redundant-experts`` slots per row,
  slot ``p`` on EP rank ``p // (P / ep_size)``. SGLang reads a value that does not end in ``.json`` or
  ``.pt`` as inline JSON text, so the file name must end in ``.json`` (:func:`check_output_name`).
* **vLLM** (the offline-EPLB mapping of vLLM PR #41141, read through ``initial_mapping_path``; released
  vLLM has no mapping file): one JSONL record ``{"record_type": "eplb_initial_mapping", "version": 1,
  "num_redundant_experts": R, "num_slots": P, "initial_global_assignments": {"<moe layer index>": [...]}}``;
  the layer key is the index among MoE layers (DeepSeek-V3: 0..57).
* **TensorRT-LLM** the file named by ``moe_config: load_balancer: FILE``, read with ``yaml.safe_load`` into
  ``MoeLoadBalancerConfig(**d)`` (pydantic, unknown keys forbidden): exactly the flat keys ``num_slots``,
  ``initial_global_assignments`` (``{absolute layer index: [P expert ids]}``, one entry per MoE layer) and
  ``layer_updates_per_iter`` (0: static).

All three engines need the same number of slots in every MoE layer, slots numbered rank-major with
equal slots per rank, and an even split of an expert's tokens over its replicas. Plans that break one
of these are refused with the reason and the engine setting involved. A model family the engine cannot
balance (:mod:`planner.plans.engines`) is refused unless ``allow_unsupported``; one the table does not
vouch for is exported with a warning. MoE layers that the plan does not cover (e.g. loads measured on
3 of 16 layers) get the trivial placement ``slot p -> expert p mod E``, which engines also use at start-up;
the exporter reports them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from planner.errors import InputError
from planner.plans.engines import UNSUPPORTED, UNVERIFIED, engine_support
from planner.plans.schema import Plan
from planner.profiles import ModelArch, get_model

__all__ = ["TARGETS", "Export", "ExportRefused", "export_plan", "check_output_name"]

TARGETS = ("sglang", "vllm", "trtllm")


class ExportRefused(InputError):
    """The target engine cannot load this plan, or cannot balance its model (exit code 2, nothing written)."""


@dataclass(frozen=True)
class Export:
    """One engine file: its text, the slot counts it implies, how to launch with it, and warnings."""

    target: str
    text: str
    num_slots: int
    num_redundant_experts: int
    ep_size: int
    filled_layers: tuple[int, ...]  # MoE layers not in the plan, given the trivial placement
    launch_hint: str  # with FILE standing for the file's path
    warnings: tuple[str, ...] = ()

    def launch(self, path: str | Path) -> str:
        """The launch hint with the file's path filled in."""
        return self.launch_hint.replace("FILE", str(path))


_SLOT_SETTING = {"sglang": "SGLang's --ep-num-redundant-experts", "vllm": "vLLM's num_redundant_experts",
                 "trtllm": "TensorRT-LLM's num_slots"}
_SPLIT_SETTING = {
    "sglang": "SGLang's --ep-dispatch-algorithm (static, dynamic) picks one replica per token, with no weights",
    "vllm": "vLLM spreads an expert's tokens evenly over its replicas and takes no weights",
    "trtllm": "TensorRT-LLM's load balancer spreads an expert's tokens evenly over its replicas and takes no weights",
}


def _uniform_slots(plan: Plan, target: str) -> int:
    rp = plan.replicas
    sizes = {len(row) for row in rp.physical_to_logical}
    if len(sizes) != 1:
        raise ExportRefused(
            f"{target} cannot express this plan: slot counts differ between layers ({sorted(sizes)}); "
            f"{_SLOT_SETTING[target]} sets one slot count for every MoE layer: plan with mode='uniform'"
        )
    P = sizes.pop()
    D = rp.num_gpus
    if P % D:
        raise ExportRefused(f"{target} cannot express this plan: {P} slots per layer do not divide over {D} EP ranks "
                            f"({_SLOT_SETTING[target]} must make the slots a multiple of the EP size)")
    spg = P // D
    for r, layer in enumerate(rp.layers):
        if rp.slot_gpu[r] != [s // spg for s in range(P)]:
            raise ExportRefused(
                f"{target} cannot express this plan: layer {layer} does not place slot p on rank p // {spg}"
            )
    weights = getattr(rp, "dispatch_weights", None)
    if weights:
        raise ExportRefused(f"{target} cannot express this plan: it splits tokens unevenly over replicas; "
                            f"{_SPLIT_SETTING[target]}: plan with split='even'")
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
    # Flat keys: the file is MoeLoadBalancerConfig(**yaml.safe_load(f)), which forbids any other key.
    lines = [
        "# moeplan static expert placement for TensorRT-LLM: the file named by moe_config.load_balancer",
        f"# model {model.id}, EP {plan.replicas.num_gpus}, {P} slots per MoE layer",
        f"num_slots: {P}",
        "layer_updates_per_iter: 0",
        "initial_global_assignments:",
    ]
    lines += [f"  {l}: [{', '.join(map(str, rows[l]))}]" for l in model.moe_layers]
    return "\n".join(lines) + "\n"


def _launch_hint(target: str, arch: ModelArch, R: int, D: int, N: int) -> str:
    name = arch.names[0] if arch.names else arch.id
    if target == "sglang":
        nodes = f" --nnodes {N} --node-rank RANK --dist-init-addr HOST:PORT" if N > 1 else ""
        return (f"python -m sglang.launch_server --model-path {name} --tp {D} --ep-size {D}{nodes} "
                f"--ep-num-redundant-experts {R} --init-expert-location FILE")
    if target == "vllm":
        return ("needs vLLM with PR #41141 (offline EPLB; not merged upstream): vllm serve "
                f"{name} --data-parallel-size {D} --enable-expert-parallel --enable-eplb --eplb-config "
                f"'{{\"num_redundant_experts\": {R}, \"initial_mapping_path\": \"FILE\"}}'. Released vLLM "
                "cannot load this file: its EPLBConfig forbids unknown keys and its only start-up placement is "
                "--expert-placement-strategy linear|round_robin (online EPLB then learns its own)")
    return (f"trtllm-serve {name} --tp_size {D} --ep_size {D} --extra_llm_api_options extra.yaml, where "
            "extra.yaml holds 'enable_attention_dp: true' and 'moe_config: {load_balancer: FILE}' "
            "(TensorRT-LLM's EPLB needs EP > 1 with attention DP)")


def check_output_name(target: str, path: str | Path) -> None:
    """Refuse a file name the engine would misread (SGLang takes a name not ending in .json/.pt as JSON text).

    >>> check_output_name("sglang", "plan.out")
    Traceback (most recent call last):
    ...
    planner.plans.export.ExportRefused: output: SGLang reads an --init-expert-location value that does not end in .json or .pt as inline JSON text, so it cannot load 'plan.out'; name the file plan.out.json
    """
    name = Path(path).name
    if target == "sglang" and not name.lower().endswith((".json", ".pt")):
        raise ExportRefused(f"SGLang reads an --init-expert-location value that does not end in .json or .pt as "
                            f"inline JSON text, so it cannot load {name!r}; name the file {name}.json", param="output")


def export_plan(plan: Plan, target: str, *, model: ModelArch | None = None,
                allow_unsupported: bool = False) -> Export:
    """Render ``plan`` in the file format of ``target`` (one of :data:`TARGETS`).

    Parameters
    ----------
    plan : a replica plan with the same slot count in every MoE layer and an even token split.
    target : ``"sglang"``, ``"vllm"`` or ``"trtllm"``.
    model : the model profile (default: the plan's).
    allow_unsupported : export even when the support table (:mod:`planner.plans.engines`) says the
        engine cannot balance the model family; the export then carries that line as a warning.

    Returns
    -------
    Export
        ``warnings`` holds one line per reason the engine may not apply the file (an unverified model
        family, a refused one let through, the vLLM PR).

    Raises
    ------
    ExportRefused
        (an :class:`~planner.errors.InputError`, exit 2) the target cannot express the plan, or cannot
        balance the model; the one-line message says why and which engine setting is involved.
    InputError
        Unknown target, or the plan does not match the model.
    """
    if target not in TARGETS:
        raise InputError(f"unknown {target!r}; known: {', '.join(TARGETS)}", param="target")
    if getattr(plan, "kind", "replicas") == "cluster":
        raise ExportRefused(f"{target} export of a cluster plan: its engine settings are in the plan itself, one "
                            "pipeline per entry of pipelines[] (nodes and layer_partition, VLLM_PP_LAYER_PARTITION style)")
    if getattr(plan, "kind", "replicas") == "scenario":
        raise ExportRefused(f"{target} export of a scenario plan: `moeplan plan` writes every pool's engine files beside "
                            "it (<role>-<engine> files, launch-sglang.sh, manifest.yaml); each pool's replica plan is "
                            "replicas[].plan in the plan")
    if getattr(plan, "kind", "replicas") != "replicas":
        raise ExportRefused(f"{target} export of a {plan.kind} plan is not implemented yet (engine launch lines are "
                            "a later task); export its embedded replica plan, if any, after writing it on its own")
    arch = model or get_model(plan.inputs.model)
    P = _uniform_slots(plan, target)  # what the file cannot express first, then whether the engine uses it
    rows, filled = _rows_by_layer(plan, arch, P)
    R = P - plan.replicas.num_experts
    D = plan.replicas.num_gpus
    if target == "trtllm" and D < 2:
        raise ExportRefused("TensorRT-LLM's load balancer needs EP > 1 (with attention DP); this plan has 1 GPU")
    warnings = _engine_warnings(target, arch, allow_unsupported)
    text = {"sglang": _sglang, "vllm": _vllm, "trtllm": _trtllm}[target](plan, arch, P, rows)
    hint = _launch_hint(target, arch, R, D, plan.replicas.num_nodes)
    return Export(target, text, P, R, D, filled, hint, warnings)


def _engine_warnings(target: str, arch: ModelArch, allow_unsupported: bool) -> tuple[str, ...]:
    """Refuse a model the engine cannot balance (unless allowed); the lines to warn with otherwise."""
    support = engine_support(target, arch.hf_model_type)
    warnings = []
    if support.status == UNSUPPORTED:
        if not allow_unsupported:
            raise ExportRefused(support.line(arch.id), remedy={"allow_unsupported": True})
        warnings.append(support.line(arch.id) + "; written anyway")
    elif support.status == UNVERIFIED:
        warnings.append(support.line(arch.id))
    if target == "vllm":
        warnings.append("the vLLM mapping file needs vLLM PR #41141 (initial_mapping_path); released vLLM "
                        "cannot load it")
    return tuple(warnings)
