r"""Per-GPU memory model: weights, activations, runtime overhead and the KV cache that is left.

Model (bytes per GPU of one pipeline stage; H hidden, V vocabulary, E routed experts, I expert
width, I_d dense FFN width, I_s shared-expert width, k top-k, T = ``max_batch_tokens``; b_att,
b_exp, b_base, b_kv the bytes per element of the precision's ``attention``, ``experts``, ``base`` and
``kv_cache`` formats, block scales included -- :mod:`planner.profiles.precision`)::

    (1) attention   = b_att * L_s * attn_rank(tp)        per-rank share of every attention tensor
    (2) dense FFN   = b_att * L_dense,s * 3 H I_d / tp
    (3) shared exp. = b_att * L_moe,s * 3 H I_s / tp
    (4) routed exp. = L_moe,s * slots * (b_exp * 3 H I / moe_tp + b_base * [2 I / moe_tp + H])
                      (expert biases, gpt-oss: gate/up split, down replicated)
    (5) router+norm = b_base * (L_s * 2 H + L_moe,s * (E H + [E] + [H]))   replicated on every rank
    (6) embedding   = b_base * (first: ceil(V/tp) H + last: ceil(V/tp) H [untied or pp > 1] + H)
    (7) activations = 2 B * (4 H T_r + max(T_r w_attn, T_r 3 I_d/tp, T_r 3 I_s/tp + R (2 H + 3 I/moe_tp)))
                      + 4 B * min(T_r, 256) * ceil(V/tp)   (fp32 logits, last stage only)
                      with T_r = ceil(T / dp) tokens per attention rank, R = ceil(T k / ep) routed rows
    (8) overhead    = 3.5 GiB + NCCL buffers of a tp*dp group   (AIConfigurator's system files)
    (9) usable      = memory_utilization * gpu.memory_bytes                    (memory_fraction_of "total")
   (10) KV cache    = usable - (1..6) - (7) - (8);   < 0  ->  Infeasible
        or, memory_fraction_of "free" (TensorRT-LLM's ``free_gpu_memory_fraction``):
   (10') KV cache   = memory_utilization * (gpu.memory_bytes - (1..6) - (7) - (8));   < 0  ->  Infeasible
        and usable  = gpu.memory_bytes - (1 - memory_utilization) * (gpu.memory_bytes - (1..8))
   (11) kv_tokens   = floor(KV cache / (kv_elems_per_layer(tp) * L_s * b_kv)), floored to blocks

``attn_rank(tp)`` and ``kv_elems_per_layer(tp)`` are :func:`~planner.profiles.params.attention_params`
and :func:`~planner.profiles.params.kv_elements_per_token_per_layer` at ``tp``, the FFN terms
:func:`~planner.profiles.params.gated_ffn_params`; :mod:`planner.profiles.params` states how each
tensor splits over the ranks (vLLM's and SGLang's rules). With DP-attention each of the ``dp``
groups caches only its own requests, so one instance holds ``dp * kv_tokens``.

Assumptions, all stated again in ``docs/memory.md``:

- Each component in its format, default the model's native precision (FP8 releases: FP8 weights
  with their 128 x 128 block scales, BF16 embeddings, lm_head, norms and router). Norms and biases
  inside an attention block take the attention format (a few kB per layer).
- Activations are stored in 16 bits (``ACTIVATION_BYTES``) whatever the precision's ``activations``
  format, which only sets the GEMM inputs: engines keep the residual stream and the layer
  buffers in BF16 and quantise a GEMM's input on the fly (the quantised copies are not counted).
- Shared experts and dense FFNs are split over ``tp`` and replicated over ``dp`` (SGLang can
  instead fold shared experts into EP or split dense MLPs over the whole ``tp x dp`` group, which
  needs less memory than counted here). Embedding and lm_head are vocab-parallel over ``tp``.
- Pipeline stages follow vLLM's layer split (:meth:`ParallelLayout.stage_layer_ranges`); the
  reported GPU is the stage with the fewest KV tokens, since every token of a sequence needs KV
  space on every stage.
- Activations: the peak of one layer at a time for ``T`` tokens per forward step summed over the
  instance (SGLang divides ``--chunked-prefill-size`` over the DP ranks under DP-attention),
  BF16 activations, four hidden-sized buffers (residual, input, output, communication), balanced
  routing; DeepEP's fixed communication buffers and CUDA-graph pools are in the overhead.
- Runtime overhead: AIConfigurator's ``misc.other_mem`` = 3.5 GiB (3,758,096,384 B, "increase from
  551MB to 3.5GB for safer deployment") plus its ``nccl_mem`` for the group size (2: 342 MiB,
  4 and 8: 392 MiB; larger groups taken as 8), from ``systems/h800_sxm.yaml`` (h200_sxm holds the
  same other_mem). A pipeline's p2p buffers are not added.
- The memory fraction follows the engine (``memory_fraction_of``): vLLM's ``gpu_memory_utilization``
  and SGLang's ``--mem-fraction-static`` cap the *total* the engine may use ("total", the default);
  TensorRT-LLM's ``free_gpu_memory_fraction`` (default 0.9) gives the KV cache that share of what is
  *free* once weights, activations and overhead are loaded ("free"), so weights may fill the GPU
  beyond 90 % and a layout that vLLM cannot load may still run there. AIConfigurator prices each
  backend by its own rule (``memory.kv_cache_budget_bytes``, ``of_free`` for TensorRT-LLM).
- Sliding-window layers (gpt-oss) are counted as full attention in ``kv_tokens`` (a lower bound);
  :meth:`MemoryBreakdown.sequences_that_fit` caps them at the window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.common.checks import POSITIVE, check_number
from planner.errors import Infeasible, InputError
from planner.perf.layout import ParallelLayout, resolve_instance
from planner.perf.memory_breakdown import MemoryBreakdown
from planner.perf.op_times import ACTIVATION_BYTES
from planner.profiles import AttentionSpec, GpuSpec, ModelArch, Precision, get_model, resolve_precision
from planner.profiles.params import attention_params, gated_ffn_params, kv_elements_per_token_per_layer

__all__ = [
    "memory_per_gpu",
    "memory_per_stage",
    "kv_tokens_for_budget",
    "total_params_check",
    "default_runtime_overhead_bytes",
    "MEMORY_FRACTION_OF",
    "check_memory_rule",
]

_HIDDEN_BUFFERS = 4  # residual, layer input, layer output, all-reduce / all-to-all scratch
_LOGIT_BYTES = 4  # logits are computed in fp32
_LOGIT_SEQS = 256  # sequences sampled per step (vLLM's long-standing max_num_seqs default)
_OTHER_MEM_BYTES = 3_758_096_384  # AIConfigurator systems/*.yaml misc.other_mem (3.5 GiB)
_NCCL_MEM_BYTES = {1: 0, 2: 358_612_992, 4: 411_041_792}  # AIConfigurator misc.nccl_mem (4 == 8)
#: what ``memory_utilization`` is a share of: the whole GPU (vLLM, SGLang) or the memory left free after the
#: weights, activations and overhead (TensorRT-LLM's ``free_gpu_memory_fraction``)
MEMORY_FRACTION_OF = ("total", "free")


def check_memory_rule(memory_utilization, memory_fraction_of) -> None:
    """Refuse a memory rule the model cannot price: a share outside (0, 1], an unknown ``memory_fraction_of``.

    >>> check_memory_rule(0.9, "free")
    """
    check_number("memory_utilization", memory_utilization, low=POSITIVE, high=1.0)
    if memory_fraction_of not in MEMORY_FRACTION_OF:
        raise InputError(f"unknown memory_fraction_of {memory_fraction_of!r}; known: {', '.join(MEMORY_FRACTION_OF)}",
                         param="memory_fraction_of")


@dataclass(frozen=True)
class _Stage:
    """Slot-independent costs of one stage's GPU (parameters, bytes) -- shared by the public functions."""

    index: int
    layers: int
    moe_layers: int
    params: dict  # component -> parameters per GPU, routed experts excluded
    expert_params_per_slot: int  # one slot's parameters per GPU in one MoE layer (matrices and biases)
    expert_bias_params_per_slot: int  # of which biases (gpt-oss), stored in the base format
    activation_bytes: int
    kv_bytes_per_token: float
    kv_windowed_layers: int


def default_runtime_overhead_bytes(layout: ParallelLayout) -> int:
    """AIConfigurator's ``other_mem`` (3.5 GiB) + ``nccl_mem`` for the ``tp x dp`` group.

    >>> default_runtime_overhead_bytes(ParallelLayout(dp=8, ep=8))
    4169138176
    """
    group = layout.tp * layout.dp
    nccl = _NCCL_MEM_BYTES[1] if group == 1 else _NCCL_MEM_BYTES[2] if group == 2 else _NCCL_MEM_BYTES[4]
    return _OTHER_MEM_BYTES + nccl


def _attention_width(att: AttentionSpec, tp: int) -> int:
    """Activation elements per token one attention block holds on one rank (projections + output)."""
    nh = att.num_heads // tp
    if att.kind == "mla":
        qk = att.qk_nope_head_dim + att.qk_rope_head_dim
        q = (att.q_lora_rank or 0) + nh * qk
        kv = att.kv_lora_rank + att.qk_rope_head_dim + nh * (att.qk_nope_head_dim + att.v_head_dim)
        return q + kv + nh * att.v_head_dim
    return 2 * nh * att.head_dim + kv_elements_per_token_per_layer(att, tp)


def _stages(model: ModelArch, layout: ParallelLayout, max_batch_tokens: int,
            kv_bytes_per_element: float) -> list[_Stage]:  # fmt: skip
    H, E, V, tp = model.hidden_size, model.num_routed_experts, model.vocab_size, layout.tp
    moe_set = set(model.moe_layers)
    vocab_rows = -(-V // tp)
    attn = attention_params(model.attention, H, tp)
    expert = gated_ffn_params(H, model.moe_intermediate_size, with_bias=model.expert_bias, tp=layout.moe_tp)
    expert_bias = expert - gated_ffn_params(H, model.moe_intermediate_size, tp=layout.moe_tp)
    moe_extra = E * H + (E if model.router_bias else 0) + (H if model.shared_expert_gate else 0)
    tokens_rank = -(-max_batch_tokens // layout.dp)
    routed_rows = -(-max_batch_tokens * model.top_k // layout.ep)
    kv_per_layer = kv_elements_per_token_per_layer(model.attention, tp) * kv_bytes_per_element
    ranges = layout.stage_layer_ranges(model.num_hidden_layers)
    out = []
    for s, layers in enumerate(ranges):
        first, last = s == 0, s == len(ranges) - 1
        n_moe = sum(1 for i in layers if i in moe_set)
        n_dense = len(layers) - n_moe
        embedding = (vocab_rows * H if first else 0) + (H if last else 0)
        if last and (not model.tie_word_embeddings or not first):
            embedding += vocab_rows * H  # a tied table is copied to the last stage under PP
        params = {
            "attention": len(layers) * attn,
            "dense_ffn": n_dense * gated_ffn_params(H, model.dense_intermediate_size or 0, tp=tp),
            "shared_expert": n_moe * gated_ffn_params(H, model.shared_expert_intermediate_size, tp=tp),
            "router_and_norm": len(layers) * 2 * H + n_moe * moe_extra,
            "embedding": embedding,
        }
        # (7): one layer's working set at a time on top of the persistent hidden-sized buffers
        peak = tokens_rank * _attention_width(model.attention, tp)
        if n_dense and model.dense_intermediate_size:
            peak = max(peak, tokens_rank * 3 * model.dense_intermediate_size // tp)
        if n_moe:
            moe = tokens_rank * 3 * model.shared_expert_intermediate_size // tp
            moe += routed_rows * (2 * H + 3 * model.moe_intermediate_size // layout.moe_tp)
            peak = max(peak, moe)
        activation = ACTIVATION_BYTES * (_HIDDEN_BUFFERS * H * tokens_rank + peak)
        if last:
            activation += _LOGIT_BYTES * min(tokens_rank, _LOGIT_SEQS) * vocab_rows
        windowed = model.attention.windowed_layers(layers)
        out.append(_Stage(s, len(layers), n_moe, params, expert, expert_bias, activation, kv_per_layer * len(layers),
                          windowed))
    return out


@dataclass(frozen=True)
class _Prepared:
    """Checked inputs and the slot-independent bytes of every stage."""

    arch: ModelArch
    spec: GpuSpec
    lay: ParallelLayout
    precision: Precision
    slots: int
    max_batch_tokens: int
    memory_utilization: float
    fraction_of: str
    overhead: float
    usable: float  # "total": the usable memory (9); "free": the whole GPU
    kv_share: float  # of the memory left after the routed experts, the share the KV cache gets (10, 10')
    block: int
    stages: list  # of _Stage
    weights: list  # per stage: component -> bytes, routed experts excluded
    free_before_experts: list  # per stage: usable - overhead - activations - weights above
    slot_bytes: list  # per stage: bytes of one slot over the stage's MoE layers


def _prepare(
    model,
    gpu,
    layout,
    *,
    expert_slots_per_gpu=None,
    precision=None,
    max_batch_tokens=8192,
    memory_utilization=0.90,
    memory_fraction_of="total",
    runtime_overhead_bytes=None,
    kv_block_tokens=1,
) -> _Prepared:
    arch, spec, lay, slots = resolve_instance(model, gpu, layout, expert_slots_per_gpu=expert_slots_per_gpu)
    prec = resolve_precision(arch.precision, precision)
    check_number("max_batch_tokens", max_batch_tokens, low=0, integer=True)
    check_memory_rule(memory_utilization, memory_fraction_of)
    check_number("kv_block_tokens", kv_block_tokens, low=1, integer=True)
    max_batch_tokens, kv_block_tokens = int(max_batch_tokens), int(kv_block_tokens)
    overhead = default_runtime_overhead_bytes(lay) if runtime_overhead_bytes is None else runtime_overhead_bytes
    check_number("runtime_overhead_bytes", overhead, low=0)
    of_free = memory_fraction_of == "free"
    usable = float(spec.memory_bytes) if of_free else memory_utilization * spec.memory_bytes
    stages = _stages(arch, lay, max_batch_tokens, prec.kv_cache.bytes_per_element)
    fmt = {"attention": prec.attention, "dense_ffn": prec.attention, "shared_expert": prec.attention,
           "router_and_norm": prec.base, "embedding": prec.base}  # fmt: skip
    weights = [{k: fmt[k].bytes_for(v) for k, v in st.params.items()} for st in stages]
    free = [usable - overhead - st.activation_bytes - sum(w.values()) for st, w in zip(stages, weights)]
    slot_bytes = [
        st.moe_layers * (prec.experts.bytes_for(st.expert_params_per_slot - st.expert_bias_params_per_slot)
                         + prec.base.bytes_for(st.expert_bias_params_per_slot))
        for st in stages
    ]  # fmt: skip
    return _Prepared(
        arch,
        spec,
        lay,
        prec,
        slots,
        max_batch_tokens,
        float(memory_utilization),
        memory_fraction_of,
        float(overhead),
        float(usable),
        float(memory_utilization) if of_free else 1.0,
        kv_block_tokens,
        stages,
        weights,
        free,
        slot_bytes,
    )


def memory_per_stage(
    model: ModelArch | str, gpu: GpuSpec | str, layout: ParallelLayout | str, **options
) -> tuple[MemoryBreakdown, ...]:
    """Memory of one GPU of every pipeline stage; never raises :class:`Infeasible`.

    ``**options`` are the keyword options of :func:`memory_per_gpu`. A stage that does not fit
    has a negative ``kv_cache_bytes`` and ``kv_tokens == 0``.

    >>> [m.stage_layers for m in memory_per_stage("deepseek-v3", "h200", "tp8pp2dp1ep8")]
    [31, 30]
    """
    p = _prepare(model, gpu, layout, **options)
    window = p.arch.attention.sliding_window
    out = []
    for st, w, free, slot_bytes in zip(p.stages, p.weights, p.free_before_experts, p.slot_bytes):
        routed = p.slots * slot_bytes
        kv_bytes = free - routed
        usable = p.usable
        if p.fraction_of == "free":  # (10'): the engine gives the KV cache its share of what is left
            usable = p.usable - (1.0 - p.kv_share) * kv_bytes if kv_bytes > 0 else p.usable
            kv_bytes = p.kv_share * kv_bytes
        tokens = max(0, math.floor(kv_bytes / st.kv_bytes_per_token)) // p.block * p.block
        out.append(
            MemoryBreakdown(
                model_id=p.arch.id,
                gpu_id=p.spec.id,
                layout=p.lay.label,
                precision=p.precision,
                pp_stage=st.index,
                stage_layers=st.layers,
                stage_moe_layers=st.moe_layers,
                expert_slots_per_gpu=p.slots,
                max_batch_tokens=p.max_batch_tokens,
                memory_utilization=p.memory_utilization,
                memory_fraction_of=p.fraction_of,
                attention_weights_bytes=float(w["attention"]),
                dense_ffn_weights_bytes=float(w["dense_ffn"]),
                shared_expert_weights_bytes=float(w["shared_expert"]),
                routed_expert_weights_bytes=float(routed),
                router_and_norm_bytes=float(w["router_and_norm"]),
                embedding_bytes=float(w["embedding"]),
                total_weights_bytes=float(sum(w.values()) + routed),
                activation_bytes=float(st.activation_bytes),
                runtime_overhead_bytes=p.overhead,
                kv_cache_bytes=float(kv_bytes),
                kv_bytes_per_token=float(st.kv_bytes_per_token),
                kv_tokens=tokens,
                kv_tokens_per_instance=tokens * p.lay.dp,
                kv_window_tokens=window if st.kv_windowed_layers else None,
                kv_windowed_layers=st.kv_windowed_layers,
                gpu_memory_bytes=float(p.spec.memory_bytes),
                usable_memory_bytes=usable,
            )
        )
    return tuple(out)


def memory_per_gpu(
    model: ModelArch | str,
    gpu: GpuSpec | str,
    layout: ParallelLayout | str,
    *,
    expert_slots_per_gpu: int | None = None,
    precision: Precision | Mapping[str, Any] | None = None,
    max_batch_tokens: int = 8192,
    memory_utilization: float = 0.90,
    memory_fraction_of: str = "total",
    runtime_overhead_bytes: float | None = None,
    kv_block_tokens: int = 1,
) -> MemoryBreakdown:
    """Memory of the binding GPU of one instance and the KV-cache tokens it has room for.

    Parameters
    ----------
    model, gpu : profiles or their names.
    layout : a :class:`ParallelLayout` or its label (``"tp1pp1dp8ep8"``).
    expert_slots_per_gpu : routed-expert slots per GPU in every MoE layer (a replica plan's);
        default ``ceil(E / ep)``, no redundancy.
    precision : number formats of the weights, KV cache and activations: a
        :class:`~planner.profiles.precision.Precision`, or a mapping of overrides of the model's
        native precision (``{"weights": "fp8", "kv_cache": "fp8"}``); default the native precision.
    max_batch_tokens : tokens of one forward step over the whole instance (split over DP ranks).
    memory_utilization : share of device memory the engine may use (vLLM ``gpu_memory_utilization``,
        default 0.9; SGLang ``--mem-fraction-static``), or with ``memory_fraction_of="free"`` the share
        of the memory left free after weights, activations and overhead that the KV cache gets
        (TensorRT-LLM ``free_gpu_memory_fraction``, default 0.9).
    memory_fraction_of : ``"total"`` (vLLM, SGLang; the default) or ``"free"`` (TensorRT-LLM): what
        ``memory_utilization`` is a share of (module docstring, (9)-(10')).
    runtime_overhead_bytes : CUDA context, NCCL, cuBLAS workspaces, CUDA graphs; default
        :func:`default_runtime_overhead_bytes`.
    kv_block_tokens : KV block (page) size; ``kv_tokens`` is floored to a multiple (vLLM 16, SGLang 1).

    Returns
    -------
    MemoryBreakdown
        The pipeline stage with the fewest KV tokens (the first one on a tie).

    Raises
    ------
    InputError
        A layout the model cannot use, or an out-of-range argument.
    Infeasible
        Weights, activations and overhead exceed the usable memory; the message names the GPU,
        the layout, need and have in GB and the largest component.

    Examples
    --------
    >>> m = memory_per_gpu("deepseek-v3", "h200", "tp1pp1dp8ep8")
    >>> round(m.routed_expert_weights_bytes / 1e9, 2), m.kv_bytes_per_token
    (81.76, 70272.0)
    >>> memory_per_gpu("deepseek-v3", "h200", "tp1pp1dp8ep8", precision={"kv_cache": "fp8"}).kv_bytes_per_token
    35136.0
    """
    stages = memory_per_stage(
        model,
        gpu,
        layout,
        expert_slots_per_gpu=expert_slots_per_gpu,
        precision=precision,
        max_batch_tokens=max_batch_tokens,
        memory_utilization=memory_utilization,
        memory_fraction_of=memory_fraction_of,
        runtime_overhead_bytes=runtime_overhead_bytes,
        kv_block_tokens=kv_block_tokens,
    )
    worst = min(stages, key=lambda m: (m.kv_cache_bytes / m.kv_bytes_per_token, m.pp_stage))
    if worst.kv_cache_bytes < 0:
        parts = {
            "routed experts": worst.routed_expert_weights_bytes,
            "attention": worst.attention_weights_bytes,
            "dense FFN": worst.dense_ffn_weights_bytes,
            "shared experts": worst.shared_expert_weights_bytes,
            "embedding": worst.embedding_bytes,
            "activations": worst.activation_bytes,
            "runtime overhead": worst.runtime_overhead_bytes,
        }
        name = max(parts, key=parts.get)
        need = worst.total_weights_bytes + worst.activation_bytes + worst.runtime_overhead_bytes
        raise Infeasible(
            f"{worst.gpu_id}: {worst.model_id} at {worst.layout} does not fit (stage {worst.pp_stage}): "
            f"need {need / 1e9:.1f} GB (weights {worst.total_weights_bytes / 1e9:.1f} + activations "
            f"{worst.activation_bytes / 1e9:.1f} + overhead {worst.runtime_overhead_bytes / 1e9:.1f}), have "
            f"{worst.usable_memory_bytes / 1e9:.1f} GB ({worst.usable_note()}); largest: {name} "
            f"{parts[name] / 1e9:.1f} GB"
        )
    return worst


def kv_tokens_for_budget(
    model: ModelArch | str,
    gpu: GpuSpec | str,
    layout: ParallelLayout | str,
    expert_slots_per_gpu_list: Sequence[int],
    **options,
) -> np.ndarray:
    """KV tokens the binding GPU keeps for each expert-slot count (a replica-budget sweep).

    Replicas as bytes per GPU: each extra slot costs ``bytes_per_expert x MoE layers`` of KV
    space, so tokens fall linearly in the slot count. One pass over the layers, then
    O(slot counts x stages) numpy work.

    Parameters
    ----------
    model, gpu, layout : as in :func:`memory_per_gpu`.
    expert_slots_per_gpu_list : slot counts per GPU and MoE layer, each ``>= ceil(E / ep)``.
    **options : the keyword options of :func:`memory_per_gpu` except ``expert_slots_per_gpu``.

    Returns
    -------
    numpy.ndarray
        int64 tokens, one per slot count; 0 where the budget does not fit (where
        :func:`memory_per_gpu` raises :class:`Infeasible`). Equal to ``memory_per_gpu(...).kv_tokens``.

    Examples
    --------
    >>> kv_tokens_for_budget("deepseek-v3", "h200", "tp1pp1dp8ep8", [32, 33, 36]).tolist()
    [303834, 267476, 158402]
    """
    if "expert_slots_per_gpu" in options:
        raise InputError("give the slot counts in expert_slots_per_gpu_list", param="kv_tokens_for_budget")
    p = _prepare(model, gpu, layout, **options)
    slots = np.asarray(expert_slots_per_gpu_list)
    if slots.ndim != 1 or slots.size == 0 or not np.issubdtype(slots.dtype, np.integer):
        raise InputError("expert_slots_per_gpu_list must be a non-empty list of integers")
    if slots.min() < p.slots:
        raise InputError(
            f"{int(slots.min())} slots per GPU x ep={p.lay.ep} cannot hold "
            f"{p.arch.num_routed_experts} experts (need >= {p.slots})", param="expert_slots_per_gpu_list"
        )
    per_stage = []
    for st, free, slot_bytes in zip(p.stages, p.free_before_experts, p.slot_bytes):
        kv_bytes = free - slots.astype(np.float64) * slot_bytes  # the float operations of memory_per_stage
        if p.fraction_of == "free":
            kv_bytes = p.kv_share * kv_bytes
        tokens = np.maximum(0.0, np.floor(kv_bytes / st.kv_bytes_per_token)).astype(np.int64)
        per_stage.append(tokens // p.block * p.block)
    return np.min(np.stack(per_stage), axis=0)


def total_params_check(model: ModelArch | str) -> float:
    """Relative difference between the parameters the memory model places (one GPU holding the
    whole model) and ``model.total_params()``; 0 means every parameter is accounted for.

    >>> total_params_check("deepseek-v3")
    0.0
    """
    arch = model if isinstance(model, ModelArch) else get_model(model)
    (stage,) = _stages(arch, ParallelLayout(), 0, 1.0)
    placed = sum(stage.params.values()) + arch.num_routed_experts * stage.moe_layers * stage.expert_params_per_slot
    total = arch.total_params()
    return abs(placed - total) / total
