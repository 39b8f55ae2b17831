"""What the memory model reports for one GPU: :class:`MemoryBreakdown`, bytes by component and the
KV-cache tokens and sequences that fit (the model itself: :mod:`planner.perf.memory`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from planner.common.numerics import round_float
from planner.errors import InputError
from planner.profiles import Precision
from planner.profiles.params import kv_per_sequence

__all__ = ["MemoryBreakdown"]


@dataclass(frozen=True)
class MemoryBreakdown:
    """Memory of the binding GPU of one instance, in bytes (decimal GB in :meth:`table`).

    Every GPU of a pipeline stage holds the same bytes (up to one expert slot when ``ep`` does not
    divide the experts, and one vocabulary row; the larger is reported). ``pp_stage`` says which
    stage; :func:`memory_per_gpu` returns the stage with the fewest KV tokens. ``precision`` holds the
    number format each component is priced in.
    """

    model_id: str
    gpu_id: str
    layout: str
    precision: Precision
    pp_stage: int
    stage_layers: int
    stage_moe_layers: int
    expert_slots_per_gpu: int
    max_batch_tokens: int
    memory_utilization: float
    attention_weights_bytes: float
    dense_ffn_weights_bytes: float
    shared_expert_weights_bytes: float
    routed_expert_weights_bytes: float
    router_and_norm_bytes: float
    embedding_bytes: float
    total_weights_bytes: float
    activation_bytes: float
    runtime_overhead_bytes: float
    kv_cache_bytes: float  # negative from memory_per_stage when the stage does not fit
    kv_bytes_per_token: float  # this GPU's KV bytes per token over its layers, windows counted full
    kv_tokens: int
    kv_tokens_per_instance: int  # kv_tokens x dp: each DP-attention group caches its own requests
    kv_window_tokens: int | None
    kv_windowed_layers: int
    gpu_memory_bytes: float
    usable_memory_bytes: float
    memory_fraction_of: str = "total"  # what memory_utilization is a share of: "total" or "free" (TensorRT-LLM)

    def usable_note(self) -> str:
        """How the usable memory was set: ``0.90 x 141.0 GB`` or ``weights etc. + 0.90 x the rest of 141.0 GB``."""
        if self.memory_fraction_of == "free":
            return f"weights, activations, overhead + {self.memory_utilization:.2f} x the rest of " \
                   f"{self.gpu_memory_bytes / 1e9:.1f} GB"
        return f"{self.memory_utilization:.2f} x {self.gpu_memory_bytes / 1e9:.1f} GB"

    def kv_bytes_per_sequence(self, context_tokens: int) -> float:
        """KV bytes one sequence of ``context_tokens`` tokens takes on this GPU, sliding-window layers capped."""
        return kv_per_sequence(
            self.kv_bytes_per_token / self.stage_layers,
            context_tokens,
            layers=self.stage_layers,
            windowed_layers=self.kv_windowed_layers,
            window_tokens=self.kv_window_tokens,
        )

    def sequences_that_fit(self, context_tokens: int) -> int:
        """Sequences of ``context_tokens`` whose KV fits on this GPU, sliding-window layers capped.

        Parameters
        ----------
        context_tokens : tokens of every sequence (prompt + generated).
        """
        if context_tokens < 1:
            raise InputError(f"context_tokens must be >= 1, got {context_tokens}")
        return max(0, math.floor(self.kv_cache_bytes / self.kv_bytes_per_sequence(context_tokens)))

    def to_dict(self) -> dict:
        """Plain dict with floats rounded to 12 significant digits (stable in JSON); ``precision`` as
        ``{component: format name}``."""
        out = {k: round_float(v) if isinstance(v, float) else v for k, v in asdict(self).items()}
        out["precision"] = self.precision.to_dict()
        return out

    def table(self) -> str:
        """Human-readable breakdown in decimal GB."""
        p = self.precision
        rows = [
            ("attention weights", self.attention_weights_bytes, p.attention.name),
            ("dense FFN weights", self.dense_ffn_weights_bytes,
             p.attention.name if self.dense_ffn_weights_bytes else ""),
            ("shared-expert weights", self.shared_expert_weights_bytes,
             p.attention.name if self.shared_expert_weights_bytes else ""),
            (
                "routed-expert weights",
                self.routed_expert_weights_bytes,
                f"{p.experts.name}; {self.expert_slots_per_gpu} slots x {self.stage_moe_layers} MoE layers",
            ),
            ("router + norms", self.router_and_norm_bytes, p.base.name),
            ("embedding + lm_head", self.embedding_bytes, f"{p.base.name}; vocab-parallel"),
            ("total weights", self.total_weights_bytes, ""),
            ("activations", self.activation_bytes, f"{self.max_batch_tokens:,} tokens per step"),
            ("runtime overhead", self.runtime_overhead_bytes, ""),
            ("KV cache", self.kv_cache_bytes, ""),
            (
                "usable memory",
                self.usable_memory_bytes,
                self.usable_note(),
            ),
        ]
        head = (
            f"{self.model_id} on {self.gpu_id}, {self.layout}: stage {self.pp_stage} "
            f"({self.stage_layers} layers, {self.stage_moe_layers} MoE)"
        )
        lines = [head] + [f"  {name:<22}{b / 1e9:>9.2f} GB  {note}".rstrip() for name, b, note in rows]
        lines.append(
            f"  {'KV tokens':<22}{self.kv_tokens:>12,}  {p.kv_cache.name}, {self.kv_bytes_per_token:,.0f} B/token; "
            f"{self.kv_tokens_per_instance:,} per instance"
        )
        return "\n".join(lines)
