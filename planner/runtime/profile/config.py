"""What the op profiler times and how often: :class:`ProfileConfig` and its two presets.

Plain dataclasses, no torch (the spawned all-to-all workers import this package).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.errors import InputError

__all__ = ["ProfileConfig", "DEFAULT_CONFIG", "QUICK_CONFIG"]

_DTYPES = ("bfloat16", "float16")  # the latency model counts 2-byte elements
_KIB = 1024


@dataclass(frozen=True)
class ProfileConfig:
    """What to time and how often. Widths in elements, sizes in bytes.

    The expert is OLMoE-1B-7B's (hidden 2048, expert intermediate 1024, heads of 128;
    ``profiles/models/olmoe-1b-7b.yaml``); attention uses 8 heads to keep CPU runs short.
    """

    token_counts: tuple[int, ...] = tuple(2**i for i in range(11))  # 1 .. 1024
    gemm_shapes: tuple[tuple[int, int], ...] = ((1024, 1024), (1024, 4096), (4096, 1024))  # (k, n)
    expert_hidden: int = 2048
    expert_intermediate: int = 1024
    norm_widths: tuple[int, ...] = (2048, 4096)
    attention_batch: int = 1
    attention_heads: int = 8
    attention_head_dim: int = 128
    attention_tokens: tuple[int, ...] = (128, 256, 512, 1024)
    a2a_sizes_bytes: tuple[int, ...] = tuple(64 * _KIB * 2**i for i in range(9))  # 64 KiB .. 16 MiB
    num_workers: int = 2
    dtype: str = "bfloat16"
    threads: int | None = 1  # torch threads of the compute ops; None: torch's default (docstring)
    rounds: int = 3
    warmup: int = 2
    min_repeats: int = 3
    max_repeats: int = 200
    target_s_per_round: float = 0.05
    a2a_warmup: int = 3
    a2a_repeats: int = 20
    timeout_s: float = 120.0  # deadline of the all-to-all workers

    def validate(self) -> ProfileConfig:
        """Check every field and return ``self``; InputError names the field."""
        for name in ("token_counts", "norm_widths", "attention_tokens", "a2a_sizes_bytes"):
            values = getattr(self, name)
            if not values or any(not isinstance(v, int) or v < 1 for v in values):
                raise InputError(f"ProfileConfig.{name} must be a non-empty tuple of integers >= 1, got {values!r}")
        if not self.gemm_shapes or any(len(s) != 2 or min(s) < 1 for s in self.gemm_shapes):
            raise InputError(f"ProfileConfig.gemm_shapes must be (k, n) pairs of integers >= 1, got {self.gemm_shapes!r}")
        for name in ("expert_hidden", "expert_intermediate", "attention_batch", "attention_heads",
                     "attention_head_dim", "rounds", "min_repeats", "max_repeats", "a2a_repeats"):  # fmt: skip
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InputError(f"ProfileConfig.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.warmup < 0 or self.a2a_warmup < 0 or self.max_repeats < self.min_repeats:
            raise InputError("ProfileConfig: warmup counts must be >= 0 and max_repeats >= min_repeats")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise InputError(f"ProfileConfig.num_workers must be an integer >= 0 (< 2: no all-to-all), got {self.num_workers!r}")
        if self.dtype not in _DTYPES:
            raise InputError(f"ProfileConfig.dtype must be one of {', '.join(_DTYPES)} (the latency model counts 2-byte elements), got {self.dtype!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise InputError(f"ProfileConfig.threads must be None or an integer >= 1, got {self.threads!r}")
        if not (self.target_s_per_round > 0 and self.timeout_s > 0):
            raise InputError("ProfileConfig: target_s_per_round and timeout_s must be > 0")
        return self


#: the full profile: ~22-31 s on this 2-core CPU (docs/profiler.md)
DEFAULT_CONFIG = ProfileConfig()
#: a short profile for tests and smoke runs: the default's shapes up to 64 tokens, attention up to
#: 512 tokens, 4 MiB messages, shorter rounds; ~18 s on a 2-core CPU without AVX-512, where BF16
#: GEMMs run at ~20 GFLOP/s and the earlier cap of 256 tokens took ~50 s (8-12 s on one with AVX-512 BF16)
QUICK_CONFIG = ProfileConfig(
    token_counts=tuple(2**i for i in range(7)),  # 1 .. 64
    attention_tokens=(128, 256, 512),
    a2a_sizes_bytes=tuple(64 * _KIB * 2**i for i in range(7)),  # 64 KiB .. 4 MiB
    target_s_per_round=0.02,
    a2a_repeats=10,
)
