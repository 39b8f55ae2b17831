r"""What the serving simulator asks of one instance (:class:`CostModel`), and DistServe's fitted model.

An *instance* is one copy of the model on ``num_gpus`` GPUs (a parallel layout) that runs engine
steps. The simulator (:mod:`planner.perf.simulator`) needs four things of it:

1. ``step_time_s(num_prefills, prefill_tokens, prefill_token_squares, decode_batch, decode_context_tokens)``:
   latency of one engine step through all pipeline stages, given aggregates of what the step holds:

   - prefill chunks ``c_i`` of prompts that already have ``p_i`` tokens in the KV cache
     (``p_i = 0`` for a whole prompt): ``num_prefills`` chunks, ``prefill_tokens = sum c_i`` and
     ``prefill_token_squares = sum ((p_i + c_i)^2 - p_i^2)``. The squares telescope over the chunks of
     one prompt to ``l^2``, so a prompt prefilled in chunks pays the same quadratic (attention) work as in
     one piece; a whole prompt contributes ``l^2``, DistServe's ``sum l^2``;
   - ``decode_batch`` sequences that each add one token, attending in all to
     ``decode_context_tokens = sum (prompt + tokens generated so far)`` tokens (DistServe's
     ``sum (context + 1)``).

   The aggregates are what the fitted forms need and let the simulator keep running sums instead of
   per-request lists.
2. ``kv_transfer_time_s(prompt_tokens)``: time to move one prompt's KV cache from a prefill
   instance to a decode instance.
3. ``kv_capacity_tokens``: KV-cache tokens the instance holds (all its GPUs).
4. ``max_batch_size``: sequences the engine runs at once.

plus ``num_gpus`` (for per-GPU goodput) and ``pipeline_stages`` (a pipeline runs a new step every
``step_time_s / pipeline_stages``).

:class:`DistServeCost` is DistServe's own latency model with its A100 coefficients
(``planner/data/distserve/``), in milliseconds:

.. math::

    T_p = a_p + b_p \sum c_i + c_p \sum ((p_i + c_i)^2 - p_i^2)
    \qquad
    T_d = a_d + b_d \cdot \text{decode\_context\_tokens} + c_d \cdot \text{decode\_batch}

with the decode set ``decoding_smallbs`` below 95 sequences and ``decoding_largebs`` from 95 on
(LLMServe/DistServe ``simdistserve/estimators/time_estimator.py``). A step holding both prefill
chunks and decodes (aggregated serving with chunked prefill; DistServe fits no such form) costs
``max(a_p, a_d) + (T_p - a_p) + (T_d - a_d)``: the fixed per-step cost once, every token's work
added. With ``pp`` pipeline stages each stage takes ``T / pp``, plus ``pp_prefill_overhead_ms x pp``
when the step holds a prefill, as DistServe's simulator does; the step's latency is ``pp`` stages.

The adapter over moeplan's own roofline latency model is
:class:`planner.perf.cost_table.LatencyModelCost`.
"""

from __future__ import annotations

import abc
import csv
import io
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Sequence

import numpy as np

from planner.errors import InputError
from planner.profiles import AttentionSpec
from planner.profiles.params import kv_elements_per_token_per_layer

__all__ = ["CostModel", "DistServeCost", "distserve_cost", "list_distserve_configs"]


class CostModel(abc.ABC):
    """Interface of a serving instance for the simulator (module docstring).

    Subclasses define the attributes ``name``, ``num_gpus``, ``pipeline_stages``,
    ``kv_capacity_tokens``, ``max_batch_size`` and :meth:`step_time_s`; :meth:`kv_transfer_time_s`
    defaults to 0 (KV moves for free).
    """

    name: str
    num_gpus: int
    pipeline_stages: int
    kv_capacity_tokens: int
    max_batch_size: int

    @abc.abstractmethod
    def step_time_s(self, num_prefills: int, prefill_tokens: int, prefill_token_squares: float,
                    decode_batch: int, decode_context_tokens: int) -> float:
        """Latency of one engine step through every pipeline stage, in seconds (module docstring)."""

    def kv_transfer_time_s(self, prompt_tokens: int) -> float:
        """Time to send one prompt's KV cache to a decode instance (default: free)."""
        return 0.0

    def decode_step_reader(self, decode_batch: int):
        """``f(decode_context_tokens)``: :meth:`step_time_s` of a pure decode step of ``decode_batch``
        sequences, the same number; what the simulator calls for runs of decode steps of one batch size
        (a cost model may specialise it: :class:`~planner.perf.cost_table.LatencyModelCost`)."""
        step_time = self.step_time_s
        return lambda decode_context_tokens: step_time(0, 0, 0, decode_batch, decode_context_tokens)

    def decode_step_times(self, decode_batch: int, decode_context_tokens):
        """:meth:`step_time_s` of pure decode steps of ``decode_batch`` sequences, one per entry of the
        integer array ``decode_context_tokens``, as a float array of the same numbers (a cost model may
        vectorise it: :class:`~planner.perf.cost_table.LatencyModelCost`)."""
        read = self.decode_step_reader(decode_batch)
        return np.array([read(int(c)) for c in decode_context_tokens], dtype=np.float64)

    # -- conveniences over step_time_s ------------------------------------------------------------
    def prefill_time_s(self, prompt_tokens: Sequence[int]) -> float:
        """Latency of one step prefilling whole prompts of the given lengths (no decodes)."""
        lengths = [int(x) for x in prompt_tokens]
        return self.step_time_s(len(lengths), sum(lengths), float(sum(x * x for x in lengths)), 0, 0)

    def decode_time_s(self, context_tokens: Sequence[int]) -> float:
        """Latency of one decode step of sequences holding the given context tokens (prompt + generated)."""
        ctx = [int(x) for x in context_tokens]
        return self.step_time_s(0, 0, 0.0, len(ctx), sum(ctx))


# -- DistServe's model ---------------------------------------------------------------------------------
_DATA = ("planner", "data", "distserve")
# OPT architectures (Zhang et al. 2022, arXiv:2205.01068, Table 1; HF config.json): layers, heads x head_dim
_OPT = {"facebook/opt-13b": (40, 40, 128), "facebook/opt-66b": (64, 72, 128)}
_FP16_BYTES = 2


def _model_key(model: str) -> str:
    if not isinstance(model, str):
        raise InputError(f"expected a model name such as 'opt-13b', got {model!r}", param="model")
    key = model.strip().lower()
    return key if key.startswith("facebook/") else f"facebook/{key}"


def _coefficients() -> dict:
    text = (resources.files(_DATA[0]).joinpath(*_DATA[1:], "opt-a100-latency-coefficients.json")).read_text("utf-8")
    return json.loads(text)


def _kv_capacities() -> dict[tuple[str, int, int], int]:
    text = (resources.files(_DATA[0]).joinpath(*_DATA[1:], "kv-capacity-tokens.csv")).read_text("utf-8")
    return {(r["model"], int(r["tp"]), int(r["pp"])): int(r["kv_capacity_tokens"])
            for r in csv.DictReader(io.StringIO(text))}


def list_distserve_configs() -> list[tuple[str, int, int]]:
    """``(model, tp, pp)`` for which DistServe ships both latency coefficients and a KV capacity.

    >>> ("facebook/opt-13b", 2, 1) in list_distserve_configs()
    True
    """
    coef = _coefficients()["coefficients"]
    return sorted((m, tp, pp) for (m, tp, pp) in _kv_capacities() if str(tp) in coef.get(m, {}))


@dataclass(frozen=True)
class DistServeCost(CostModel):
    """DistServe's fitted latency model of one instance (module docstring); times in ms, as fitted.

    Build it with :func:`distserve_cost`. ``prefill_ms``, ``decode_small_batch_ms`` and
    ``decode_large_batch_ms`` are ``(a, b, c)`` triples; ``kv_link_bytes_per_s`` None makes the KV
    transfer free (DistServe places prefill and decode of one model on one node and moves KV over
    NVLink; its simulator charges no transfer).
    """

    model: str
    tp: int
    pp: int
    prefill_ms: tuple[float, float, float]
    decode_small_batch_ms: tuple[float, float, float]
    decode_large_batch_ms: tuple[float, float, float]
    large_batch_threshold: int
    kv_capacity_tokens: int
    kv_bytes_per_token: float
    max_batch_size: int = 1_000_000
    pp_prefill_overhead_ms: float = 1.0
    kv_link_bytes_per_s: float | None = None
    kv_transfer_latency_s: float = 0.0
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"distserve {self.model.split('/')[-1]} tp{self.tp}pp{self.pp}")

    @property
    def num_gpus(self) -> int:
        """GPUs of the instance, ``tp x pp``."""
        return self.tp * self.pp

    @property
    def pipeline_stages(self) -> int:
        """Pipeline stages, ``pp``."""
        return self.pp

    def step_time_s(self, num_prefills, prefill_tokens, prefill_token_squares, decode_batch, decode_context_tokens):
        """Latency of one step (module docstring), in seconds.

        >>> c = distserve_cost("opt-13b", tp=1)
        >>> a, b, q = c.prefill_ms
        >>> abs(c.prefill_time_s([512]) - (a + b * 512 + q * 512**2) / 1e3) < 1e-12
        True
        """
        fixed = var = 0.0
        if num_prefills:
            a, b, c = self.prefill_ms
            fixed = a
            var = b * prefill_tokens + c * prefill_token_squares
        if decode_batch:
            a, b, c = self.decode_large_batch_ms if decode_batch >= self.large_batch_threshold else self.decode_small_batch_ms
            fixed = a if a > fixed else fixed
            var += b * decode_context_tokens + c * decode_batch
        pp = self.pp
        if pp == 1:
            return (fixed + var) * 1e-3
        stage_ms = (fixed + var) / pp + (self.pp_prefill_overhead_ms * pp if num_prefills else 0.0)
        return stage_ms * pp * 1e-3

    def kv_transfer_time_s(self, prompt_tokens: int) -> float:
        """``latency + prompt_tokens x kv_bytes_per_token / kv_link_bytes_per_s`` (0 without a link)."""
        if self.kv_link_bytes_per_s is None:
            return 0.0
        return self.kv_transfer_latency_s + prompt_tokens * self.kv_bytes_per_token / self.kv_link_bytes_per_s


def distserve_cost(model: str, tp: int, pp: int = 1, *, max_batch_size: int = 1_000_000,
                   pp_prefill_overhead_ms: float = 1.0, kv_link_bytes_per_s: float | None = None,
                   kv_transfer_latency_s: float = 0.0) -> DistServeCost:
    """DistServe's A100-80GB latency model of ``model`` at tensor parallel ``tp`` and ``pp`` stages.

    Parameters
    ----------
    model : ``"opt-13b"`` or ``"opt-66b"`` (``facebook/`` optional).
    tp, pp : parallel degrees with shipped coefficients and KV capacity (:func:`list_distserve_configs`).
    max_batch_size : sequences per step (DistServe's default is unbounded; the KV capacity binds).
    pp_prefill_overhead_ms : per-stage constant of a prefill step, times ``pp`` (DistServe: 1 ms).
    kv_link_bytes_per_s, kv_transfer_latency_s : the prefill-to-decode KV link; None: free transfer.

    Raises
    ------
    InputError
        An unknown model or a (tp, pp) without shipped coefficients or KV capacity; the message
        lists what is shipped.

    Examples
    --------
    >>> c = distserve_cost("opt-13b", tp=2)
    >>> c.num_gpus, c.kv_capacity_tokens, c.kv_bytes_per_token
    (2, 163008, 819200)
    >>> round(c.decode_time_s([600] * 10) * 1e3, 3)  # 13.2948 + 3.41e-4 * 6000 + 0.06296 * 10
    15.971
    """
    key = _model_key(model)
    data = _coefficients()["coefficients"]
    if key not in data:
        raise InputError(f"no DistServe coefficients for {model!r}; shipped: {', '.join(sorted(data))}", param="model")
    for name, value in (("tp", tp), ("pp", pp), ("max_batch_size", max_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"must be an integer >= 1, got {value!r}", param=name)
    if str(tp) not in data[key]:
        raise InputError(f"DistServe ships {key} coefficients for tp {', '.join(sorted(data[key]))}, not {tp}",
                         param="tp")
    caps = _kv_capacities()
    if (key, tp, pp) not in caps:
        have = ", ".join(f"tp{t}pp{p}" for (m, t, p) in sorted(caps) if m == key)
        raise InputError(f"no KV capacity for {key} tp{tp}pp{pp} (the model may not fit); shipped: {have}", param="pp")
    if kv_link_bytes_per_s is not None and not (isinstance(kv_link_bytes_per_s, (int, float))
                                                 and math.isfinite(kv_link_bytes_per_s) and kv_link_bytes_per_s > 0):
        raise InputError(f"must be a positive number or None, got {kv_link_bytes_per_s!r}", param="kv_link_bytes_per_s")
    c = data[key][str(tp)]
    layers, heads, head_dim = _OPT[key]
    att = AttentionSpec(kind="gqa", num_heads=heads, num_kv_heads=heads, head_dim=head_dim)
    return DistServeCost(
        model=key, tp=tp, pp=pp,
        prefill_ms=tuple(c["prefill"]),
        decode_small_batch_ms=tuple(c["decoding_smallbs"]),
        decode_large_batch_ms=tuple(c["decoding_largebs"]),
        large_batch_threshold=int(c["decoding_large_small_bs_threshold"]),
        kv_capacity_tokens=caps[(key, tp, pp)],
        kv_bytes_per_token=kv_elements_per_token_per_layer(att) * layers * _FP16_BYTES,
        max_batch_size=max_batch_size,
        pp_prefill_overhead_ms=float(pp_prefill_overhead_ms),
        kv_link_bytes_per_s=kv_link_bytes_per_s,
        kv_transfer_latency_s=float(kv_transfer_latency_s),
    )
