"""Performance model: parallel layouts and the per-GPU memory model (latency model to follow).

>>> from planner.perf import ParallelLayout, memory_per_gpu
>>> memory_per_gpu("qwen3-235b-a22b", "h100", ParallelLayout(tp=8, ep=8)).kv_bytes_per_token
48128.0
"""

from planner.perf.layout import ParallelLayout
from planner.perf.memory import (
    MemoryBreakdown,
    default_runtime_overhead_bytes,
    kv_tokens_for_budget,
    memory_per_gpu,
    memory_per_stage,
    total_params_check,
)

__all__ = [
    "ParallelLayout",
    "MemoryBreakdown",
    "memory_per_gpu",
    "memory_per_stage",
    "kv_tokens_for_budget",
    "total_params_check",
    "default_runtime_overhead_bytes",
]
