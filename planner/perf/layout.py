"""Parallel layout of one serving instance: attention TP / DP, pipeline stages, MoE EP / TP.

One instance spans ``tp x dp x pp`` GPUs. In every pipeline stage the same ``tp x dp`` GPUs run
attention (``dp`` groups of ``tp`` ranks, DP-attention) and the MoE layers (``ep`` groups of
``moe_tp`` ranks), so ``ep x moe_tp == tp x dp`` (AIConfigurator's enumeration rule, the shape
SGLang and vLLM wide-EP deployments use).

Labels follow the field's convention ``tp{tp}pp{pp}dp{dp}ep{ep}`` with ``moetp{moe_tp}`` appended
only when ``moe_tp > 1``; :meth:`ParallelLayout.parse` also reads AIConfigurator's
``tp1pp1dp8etp1ep8`` spelling.

Rules checked by :meth:`ParallelLayout.validate` (the ones vLLM / SGLang enforce at start-up):

- ``tp`` divides the attention heads. GQA key/value heads: with ``tp <= kv_heads`` ``tp`` divides
  them; with ``tp > kv_heads`` every rank holds one KV head and ``kv_heads`` divides ``tp`` (each
  head replicated ``tp / kv_heads`` times) -- ``QKVParallelLinear`` in vllm / sglang
  ``layers/linear.py``.
- ``tp`` divides the dense-FFN and the shared-expert widths (column-parallel linears).
- ``pp <= num_hidden_layers`` (no empty stage).
- ``moe_tp`` divides ``moe_intermediate_size``.
- Expert slots: ``ep`` need not divide the routed experts; without a replica plan the busiest GPU
  holds ``ceil(E / ep)`` experts (vLLM ``determine_expert_map`` gives the first ``E mod ep`` ranks
  one extra expert). With a replica plan's ``expert_slots_per_gpu``, ``ep x slots >= E``.

>>> ParallelLayout(dp=8, ep=8).label
'tp1pp1dp8ep8'
>>> ParallelLayout.parse("tp2pp1dp1ep1moetp2")
ParallelLayout(tp=2, pp=1, dp=1, ep=1, moe_tp=2)
>>> ParallelLayout.parse("tp1pp1dp8etp1ep8").num_gpus
8
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass

from planner.errors import InputError
from planner.profiles import GpuSpec, ModelArch, get_gpu, get_model

__all__ = ["ParallelLayout", "resolve_instance"]

_LABEL = re.compile(r"tp(\d+)pp(\d+)dp(\d+)(?:etp(\d+))?ep(\d+)(?:moetp(\d+))?")


@dataclass(frozen=True)
class ParallelLayout:
    """Parallel degrees of one instance (``tp x dp x pp`` GPUs).

    Attributes
    ----------
    tp : attention tensor-parallel ranks.
    pp : pipeline stages.
    dp : attention data-parallel groups (DP-attention): each holds a full copy of attention and
        serves its own requests; all ``tp x dp`` ranks of a stage share the MoE through EP.
    ep : expert-parallel groups the routed experts are spread over.
    moe_tp : tensor-parallel ranks inside each expert; ``ep x moe_tp == tp x dp``.

    Raises
    ------
    InputError
        A degree below 1 or ``ep x moe_tp != tp x dp`` (checked on construction).
    """

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    moe_tp: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "ep", "moe_tp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}", param="layout")
            object.__setattr__(self, name, int(value))  # numpy integers from a sweep become ints
        if self.ep * self.moe_tp != self.tp * self.dp:
            raise InputError(
                f"layout {self.label}: ep x moe_tp = {self.ep} x {self.moe_tp} must equal tp x dp = "
                f"{self.tp} x {self.dp} (the attention ranks of a stage are its MoE ranks)"
            )

    @property
    def num_gpus(self) -> int:
        """GPUs of one instance: ``tp x dp x pp``."""
        return self.tp * self.dp * self.pp

    @property
    def label(self) -> str:
        """The field's layout string, e.g. ``tp1pp1dp8ep8`` (``moetpN`` only when ``moe_tp > 1``)."""
        text = f"tp{self.tp}pp{self.pp}dp{self.dp}ep{self.ep}"
        return text + (f"moetp{self.moe_tp}" if self.moe_tp > 1 else "")

    def __str__(self) -> str:
        return self.label

    @staticmethod
    def parse(label: str) -> ParallelLayout:
        """Inverse of :attr:`label`; also accepts AIConfigurator's ``tp1pp1dp8etp1ep8``.

        Raises
        ------
        InputError
            A string that is not a layout label, or degrees that break the layout rules.
        """
        if not isinstance(label, str):
            raise InputError(f"expected a label such as 'tp1pp1dp8ep8', got {label!r}", param="layout")
        match = _LABEL.fullmatch(label.strip().lower())
        if match is None:
            raise InputError(
                f"malformed label {label!r}; expected tp<N>pp<N>dp<N>ep<N> with optional moetp<N>, "
                "e.g. 'tp1pp1dp8ep8' or 'tp2pp1dp1ep1moetp2'", param="layout"
            )
        tp, pp, dp, etp, ep, moetp = match.groups()
        if etp is not None and moetp is not None and int(etp) != int(moetp):
            raise InputError(f"{label!r} gives etp{etp} and moetp{moetp}; give one", param="layout")
        moe_tp = int(moetp or etp or 1)
        return ParallelLayout(tp=int(tp), pp=int(pp), dp=int(dp), ep=int(ep), moe_tp=moe_tp)

    def stage_layer_ranges(self, num_layers: int) -> tuple[range, ...]:
        """Hidden layers of each pipeline stage, as even as possible.

        vLLM's rule (``get_pp_indices`` in ``vllm/distributed/utils.py``): every stage gets
        ``num_layers // pp``; the remainder goes one layer each to the stages before the last,
        counting back from the second-to-last (the last stage also runs the final norm and lm_head).

        >>> [len(r) for r in ParallelLayout(pp=4, dp=4, ep=4).stage_layer_ranges(61)]
        [15, 15, 16, 15]
        """
        if num_layers < self.pp:
            raise InputError(f"layout {self.label}: pp={self.pp} exceeds the {num_layers} layers")
        counts = [num_layers // self.pp] * self.pp
        for i in range(2, num_layers % self.pp + 2):
            counts[-i] += 1
        starts = [sum(counts[:s]) for s in range(self.pp)]
        return tuple(range(a, a + n) for a, n in zip(starts, counts))

    def expert_slots_per_gpu(self, model: ModelArch, slots: int | None = None) -> int:
        """Routed-expert slots per GPU and MoE layer: ``slots`` (a replica plan's), else ``ceil(E / ep)``."""
        return math.ceil(model.num_routed_experts / self.ep) if slots is None else int(slots)

    def validate(self, model: ModelArch, *, expert_slots_per_gpu: int | None = None) -> None:
        """Check the layout against a model (rules in the module docstring).

        Parameters
        ----------
        model : the architecture to serve.
        expert_slots_per_gpu : slots per GPU and MoE layer from a replica plan; None means
            ``ceil(E / ep)`` (no redundancy).

        Raises
        ------
        InputError
            The first rule broken, naming the degree and the model dimension.
        """
        att = model.attention
        where = f"layout {self.label} for {model.id}"
        if att.num_heads % self.tp:
            raise InputError(f"{where}: tp={self.tp} does not divide the {att.num_heads} attention heads")
        if att.kind == "gqa":
            kv = att.num_kv_heads
            if self.tp <= kv and kv % self.tp:
                raise InputError(f"{where}: tp={self.tp} does not divide the {kv} KV heads")
            if self.tp > kv and self.tp % kv:
                raise InputError(
                    f"{where}: tp={self.tp} exceeds the {kv} KV heads and is not a multiple of them "
                    "(each KV head must be replicated on the same number of ranks)"
                )
        for what, width in (
            ("dense FFN width", model.dense_intermediate_size if model.dense_layers else None),
            ("shared-expert width", model.shared_expert_intermediate_size),
        ):
            if width and width % self.tp:
                raise InputError(f"{where}: tp={self.tp} does not divide the {what} {width}")
        if self.pp > model.num_hidden_layers:
            raise InputError(f"{where}: pp={self.pp} exceeds the {model.num_hidden_layers} layers")
        if model.moe_intermediate_size % self.moe_tp:
            raise InputError(
                f"{where}: moe_tp={self.moe_tp} does not divide the expert width {model.moe_intermediate_size}"
            )
        E = model.num_routed_experts
        if expert_slots_per_gpu is not None:
            slots = expert_slots_per_gpu
            if isinstance(slots, bool) or not isinstance(slots, numbers.Integral) or slots < 1:
                raise InputError(f"{where}: expert_slots_per_gpu must be an integer >= 1, got {slots!r}")
            if slots * self.ep < E:
                raise InputError(
                    f"{where}: {slots} expert slots per GPU x ep={self.ep} = {slots * self.ep} slots per layer "
                    f"cannot hold the {E} routed experts (need >= {self.expert_slots_per_gpu(model)} per GPU)"
                )


def resolve_instance(
    model: ModelArch | str, gpu: GpuSpec | str, layout: ParallelLayout | str, *, expert_slots_per_gpu: int | None = None
) -> tuple[ModelArch, GpuSpec, ParallelLayout, int]:
    """``(model, gpu, layout, slots per GPU)`` of one instance: profiles from their names, the layout
    from its label, checked against the model (:meth:`ParallelLayout.validate`), and the routed-expert
    slots per GPU (:meth:`ParallelLayout.expert_slots_per_gpu`).

    >>> model, gpu, layout, slots = resolve_instance("deepseek-v3", "h200", "tp1pp1dp8ep8")
    >>> gpu.id, layout.ep, slots
    ('h200', 8, 32)
    """
    arch = model if isinstance(model, ModelArch) else get_model(model)
    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    lay = layout if isinstance(layout, ParallelLayout) else ParallelLayout.parse(layout)
    lay.validate(arch, expert_slots_per_gpu=expert_slots_per_gpu)
    return arch, spec, lay, lay.expert_slots_per_gpu(arch, expert_slots_per_gpu)
