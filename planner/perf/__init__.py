"""Performance model: parallel layouts, the per-GPU memory model and the latency model.

Modules
    layout            :class:`ParallelLayout` (tp, pp, dp, ep, moe_tp) and its rules for a model
    memory            weights, activations, overhead and the KV cache left per GPU
    memory_breakdown  what the memory model reports for one GPU (:class:`MemoryBreakdown`)
    factors           the latency model's named efficiency factors and their defaults
    op_times          time of one GEMM, memory-bound op, attention core or collective on one GPU
    latency           time of one prefill batch or decode step, by component (:class:`StepTime`)
    measured          shipped Vidur op tables and moeplan's op-timing CSV (import from the module)
    calibration       fits the factors to measured op times (scipy; import from the module)
    estimate          TTFT, TPOT, throughput and memory of one static batch (``planner.estimate``)

>>> from planner.perf import ParallelLayout, memory_per_gpu
>>> memory_per_gpu("qwen3-235b-a22b", "h100", ParallelLayout(tp=8, ep=8)).kv_bytes_per_token
48128.0
"""

from planner.perf.factors import (
    DEFAULT_FACTORS,
    AttentionFactors,
    EfficiencyFactors,
    GemmFactors,
    LinkFactors,
    MemoryOpFactors,
    resolve_factors,
)
from planner.perf.latency import StepTime, decode_step_time_s, prefill_time_s
from planner.perf.layout import ParallelLayout, resolve_instance
from planner.perf.memory import (
    default_runtime_overhead_bytes,
    kv_tokens_for_budget,
    memory_per_gpu,
    memory_per_stage,
    total_params_check,
)
from planner.perf.memory_breakdown import MemoryBreakdown
from planner.perf.op_times import (
    ACTIVATION_BYTES,
    MEMORY_OPS,
    attention_time_s,
    collective_time_s,
    gemm_time_s,
    memory_op_time_s,
)

__all__ = [
    "ParallelLayout",
    "resolve_instance",
    "MemoryBreakdown",
    "memory_per_gpu",
    "memory_per_stage",
    "kv_tokens_for_budget",
    "total_params_check",
    "default_runtime_overhead_bytes",
    "GemmFactors",
    "MemoryOpFactors",
    "AttentionFactors",
    "LinkFactors",
    "EfficiencyFactors",
    "DEFAULT_FACTORS",
    "resolve_factors",
    "ACTIVATION_BYTES",
    "MEMORY_OPS",
    "gemm_time_s",
    "memory_op_time_s",
    "attention_time_s",
    "collective_time_s",
    "StepTime",
    "prefill_time_s",
    "decode_step_time_s",
]
