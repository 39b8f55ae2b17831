r"""moeplan's latency model as a simulator cost model: tabulated once on a grid, interpolated per step.

:func:`planner.perf.latency.prefill_time_s` and :func:`~planner.perf.latency.decode_step_time_s`
take ~1-10 ms per call for a large MoE model, far too slow for the ~10^5 steps of a simulation, so
:class:`LatencyModelCost` evaluates them once on a grid (all points at once,
:func:`~planner.perf.latency.step_time_grid`: the same numbers, ~100x faster than point by point) and
interpolates:

- prefill: for ``n`` prompts of ``L`` tokens, the time outside the attention core ``P_o(n, L)`` and
  the attention core's time per (query, key) pair ``a_p(n, L)`` (the pairs are ``n L (L + 1) / 2``);
- decode: for ``B`` sequences of ``C`` context tokens, the time outside attention ``D_o(B, C)`` and the
  attention core's time per context token ``a_d(B, C)``;

with ``n, B`` in ``1, 2, 3, 4, 6, 8, ...`` (powers of two and their midpoints) up to
``max_prefill_batch`` / ``max_batch_size`` and ``L, C`` in ``16, 24, 32, 48, ...`` up to
``max_context_tokens``. A step with ``n`` prefill chunks of ``N`` tokens and ``S`` token squares (see
:mod:`planner.perf.cost`) and ``B`` decodes attending to ``X`` tokens is read at the uniform batch with
the same totals, ``L = N / n`` and ``C = X / B``, bilinearly (linear beyond the grid's last points):

- prefill: ``P_o(n, L) + a_p(n, L) (S + N) / 2``; ``(S + N) / 2`` are the pairs the actual chunks attend
  to, so unequal prompts pay their own quadratic attention, not the mean's;
- decode: ``D_o(B, C) + a_d(B, C) X``;
- both in one step (aggregated serving with chunked prefill): the prefill time plus the decodes'
  attention and their outside-attention time beyond one sequence, ``a_d X + D_o(B, C) - D_o(1, C)``:
  the weights the decode part reads are already streamed by the prefill's GEMMs.

Interpolating the per-pair and per-token rates instead of the times keeps the quadratic prefill
attention exact between grid points. The interpolation is checked against direct calls in ``tests/test_simulator_cost.py`` (within 3 %
on and off the grid for uniform batches). Pipeline stages: the step's latency is the model's
``total_s`` and every stage takes ``total_s / pp``.

KV capacity is the memory model's ``kv_tokens_per_instance`` (:func:`planner.perf.memory.memory_per_gpu`);
a KV transfer sends each GPU's share of the prompt's cache (``kv_bytes_per_token`` of the binding
GPU) over its own link, ``kv_link_bytes_per_s`` (default: the GPU's ``inter_node_bytes_per_s``,
prefill and decode pools on different nodes).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from planner.errors import InputError
from planner.perf.cost import CostModel
from planner.perf.latency import step_time_grid
from planner.perf.layout import ParallelLayout, resolve_instance
from planner.perf.memory import memory_per_gpu

__all__ = ["LatencyModelCost", "latency_model_cost"]


def _grid(low: int, high: int) -> tuple[int, ...]:
    """``low, 1.5 low, 2 low, 3 low, 4 low, ...`` (powers of two and the midpoints between them) up to ``high``;
    at least two points (a segment to interpolate on), so ``high = low`` gives ``low, low + 1``.

    >>> _grid(1, 8), _grid(1, 1)
    ((1, 2, 3, 4, 6, 8), (1, 2))
    """
    if high <= low:
        return (low, low + 1)
    out, x = [], low
    while x < high:
        out += [x, x + x // 2] if x + x // 2 < high and x > 1 else [x]
        x *= 2
    out.append(high)
    return tuple(out)


def _segment(grid: tuple[int, ...], x: float) -> tuple[int, float]:
    """Index ``i`` of the segment ``grid[i]..grid[i+1]`` for ``x`` and the weight of ``grid[i+1]``;
    outside the grid the first or last segment, extrapolated linearly."""
    i = bisect_right(grid, x) - 1
    i = 0 if i < 0 else (len(grid) - 2 if i > len(grid) - 2 else i)
    lo, hi = grid[i], grid[i + 1]
    return i, (x - lo) / (hi - lo)


class _Table:
    """Values on a grid ``xs x ys``, bilinear between points."""

    __slots__ = ("xs", "ys", "v")

    def __init__(self, xs, ys, values):
        self.xs, self.ys, self.v = xs, ys, values

    def __call__(self, x: float, y: float) -> float:
        i, wx = _segment(self.xs, x)
        j, wy = _segment(self.ys, y)
        v = self.v
        a = v[i][j] + (v[i][j + 1] - v[i][j]) * wy
        b = v[i + 1][j] + (v[i + 1][j + 1] - v[i + 1][j]) * wy
        return a + (b - a) * wx


def _integer_segments(grid: tuple[int, ...]) -> tuple[tuple[int, float], ...]:
    """``_segment(grid, k)`` for every integer ``k`` from 0 to the grid's last point, looked up by index in a
    step instead of bisected (batch sizes and prompt counts are integers)."""
    return tuple(_segment(grid, k) for k in range(grid[-1] + 1)) if len(grid) > 1 else ()


@dataclass(frozen=True, eq=False)
class LatencyModelCost(CostModel):
    """moeplan's latency model of one instance, tabulated (module docstring). Build with :func:`latency_model_cost`."""

    model_id: str
    gpu_id: str
    layout: ParallelLayout
    balancedness: float
    kv_capacity_tokens: int
    kv_bytes_per_token: float
    kv_link_bytes_per_s: float
    max_batch_size: int
    prefill_other: _Table = field(repr=False)
    prefill_attention_per_pair: _Table = field(repr=False)
    decode_other: _Table = field(repr=False)
    decode_attention_per_token: _Table = field(repr=False)
    kv_transfer_latency_s: float = 0.0
    name: str = ""

    @property
    def num_gpus(self) -> int:
        """GPUs of the instance (``tp x dp x pp``)."""
        return self.layout.num_gpus

    @property
    def pipeline_stages(self) -> int:
        """Pipeline stages (``pp``)."""
        return self.layout.pp

    def __post_init__(self) -> None:
        # the fast path of step_time_s (below): segments of integer batch sizes looked up, the rows of the
        # tables that share a grid read together
        assert self.decode_other.xs == self.decode_attention_per_token.xs
        assert self.decode_other.ys == self.decode_attention_per_token.ys == self.prefill_other.ys
        assert self.prefill_other.xs == self.prefill_attention_per_pair.xs
        object.__setattr__(self, "_fast", (
            _integer_segments(self.prefill_other.xs), _integer_segments(self.decode_other.xs), self.decode_other.ys,
            self.prefill_other.v, self.prefill_attention_per_pair.v, self.decode_other.v,
            self.decode_attention_per_token.v))

    def step_time_reference_s(self, num_prefills, prefill_tokens, prefill_token_squares, decode_batch,
                              decode_context_tokens):
        """The step time composed from the tables' plain bilinear reads (module docstring): the definition
        :meth:`step_time_s` computes faster and must equal bit for bit (``tests/test_simulator_cost.py``)."""
        if not decode_batch:
            if not num_prefills:
                return 0.0
            length = prefill_tokens / num_prefills
            return (self.prefill_other(num_prefills, length) + self.prefill_attention_per_pair(num_prefills, length)
                    * (prefill_token_squares + prefill_tokens) / 2)
        ctx = decode_context_tokens / decode_batch
        attention = self.decode_attention_per_token(decode_batch, ctx) * decode_context_tokens
        other = self.decode_other(decode_batch, ctx)
        if not num_prefills:
            return other + attention
        extra = other - self.decode_other(1, ctx)
        length = prefill_tokens / num_prefills
        prefill = (self.prefill_other(num_prefills, length) + self.prefill_attention_per_pair(num_prefills, length)
                   * (prefill_token_squares + prefill_tokens) / 2)
        return prefill + attention + (extra if extra > 0 else 0.0)

    def step_time_s(self, num_prefills, prefill_tokens, prefill_token_squares, decode_batch, decode_context_tokens):
        """Latency of one step (module docstring), in seconds.

        The same floating-point operations in the same order as :meth:`step_time_reference_s`, inlined
        (the simulator calls this once per engine step): an integer batch size's grid segment is looked up
        instead of bisected, and the two decode tables, which share their grid, share one bisection.
        """
        n_segments, b_segments, lengths, p_other, p_rate, d_other, d_rate = self._fast
        last = len(lengths) - 2
        attention = other = 0.0
        if decode_batch:
            ctx = decode_context_tokens / decode_batch
            i, wx = (b_segments[decode_batch] if decode_batch < len(b_segments)
                     else _segment(self.decode_other.xs, decode_batch))
            j = bisect_right(lengths, ctx) - 1
            j = 0 if j < 0 else (last if j > last else j)
            lo = lengths[j]
            wy = (ctx - lo) / (lengths[j + 1] - lo)
            r0, r1 = d_rate[i], d_rate[i + 1]
            a = r0[j] + (r0[j + 1] - r0[j]) * wy
            b = r1[j] + (r1[j + 1] - r1[j]) * wy
            attention = (a + (b - a) * wx) * decode_context_tokens
            r0, r1 = d_other[i], d_other[i + 1]
            a = r0[j] + (r0[j + 1] - r0[j]) * wy
            b = r1[j] + (r1[j + 1] - r1[j]) * wy
            other = a + (b - a) * wx
            if not num_prefills:
                return other + attention
            r0, r1 = d_other[0], d_other[1]  # decode_other(1, ctx): segment 0, weight (1 - 1) / (x1 - 1)
            a = r0[j] + (r0[j + 1] - r0[j]) * wy
            b = r1[j] + (r1[j + 1] - r1[j]) * wy
            other = other - (a + (b - a) * b_segments[1][1])
        elif not num_prefills:
            return 0.0
        length = prefill_tokens / num_prefills
        i, wx = (n_segments[num_prefills] if num_prefills < len(n_segments)
                 else _segment(self.prefill_other.xs, num_prefills))
        j = bisect_right(lengths, length) - 1
        j = 0 if j < 0 else (last if j > last else j)
        lo = lengths[j]
        wy = (length - lo) / (lengths[j + 1] - lo)
        r0, r1 = p_other[i], p_other[i + 1]
        a = r0[j] + (r0[j + 1] - r0[j]) * wy
        b = r1[j] + (r1[j + 1] - r1[j]) * wy
        prefill = a + (b - a) * wx
        r0, r1 = p_rate[i], p_rate[i + 1]
        a = r0[j] + (r0[j + 1] - r0[j]) * wy
        b = r1[j] + (r1[j + 1] - r1[j]) * wy
        prefill = prefill + (a + (b - a) * wx) * (prefill_token_squares + prefill_tokens) / 2
        if not decode_batch:
            return prefill
        return prefill + attention + (other if other > 0 else 0.0)

    def decode_step_reader(self, decode_batch: int):
        """``f(decode_context_tokens)``: :meth:`step_time_s` of a pure decode step of ``decode_batch``
        sequences, the same operations with the batch's grid segment and table rows read once (the
        simulator's runs of decode steps, :meth:`planner.perf._engine.Engine.coast`)."""
        _, b_segments, lengths, _, _, d_other, d_rate = self._fast
        i, wx = (b_segments[decode_batch] if decode_batch < len(b_segments)
                 else _segment(self.decode_other.xs, decode_batch))
        last = len(lengths) - 2
        ra0, ra1, ro0, ro1 = d_rate[i], d_rate[i + 1], d_other[i], d_other[i + 1]
        batch = decode_batch

        def step_time(decode_context_tokens):
            ctx = decode_context_tokens / batch
            j = bisect_right(lengths, ctx) - 1
            j = 0 if j < 0 else (last if j > last else j)
            lo = lengths[j]
            wy = (ctx - lo) / (lengths[j + 1] - lo)
            a = ra0[j] + (ra0[j + 1] - ra0[j]) * wy
            b = ra1[j] + (ra1[j + 1] - ra1[j]) * wy
            attention = (a + (b - a) * wx) * decode_context_tokens
            a = ro0[j] + (ro0[j + 1] - ro0[j]) * wy
            b = ro1[j] + (ro1[j + 1] - ro1[j]) * wy
            return a + (b - a) * wx + attention

        return step_time

    def decode_step_times(self, decode_batch: int, decode_context_tokens):
        """:meth:`decode_step_reader` on an integer array of contexts at once: the same floating-point
        operations element by element (numpy, no fused operations), so the same numbers bit for bit."""
        _, b_segments, lengths, _, _, d_other, d_rate = self._fast
        i, wx = (b_segments[decode_batch] if decode_batch < len(b_segments)
                 else _segment(self.decode_other.xs, decode_batch))
        grid = np.asarray(lengths, dtype=np.float64)
        x = np.asarray(decode_context_tokens, dtype=np.int64)
        ctx = x / decode_batch
        j = np.clip(np.searchsorted(grid, ctx, side="right") - 1, 0, len(lengths) - 2)
        lo = grid[j]
        wy = (ctx - lo) / (grid[j + 1] - lo)
        ra0, ra1, ro0, ro1 = (np.asarray(r, dtype=np.float64) for r in (d_rate[i], d_rate[i + 1], d_other[i],
                                                                        d_other[i + 1]))
        a = ra0[j] + (ra0[j + 1] - ra0[j]) * wy
        b = ra1[j] + (ra1[j + 1] - ra1[j]) * wy
        attention = (a + (b - a) * wx) * x
        a = ro0[j] + (ro0[j + 1] - ro0[j]) * wy
        b = ro1[j] + (ro1[j + 1] - ro1[j]) * wy
        return a + (b - a) * wx + attention

    def kv_transfer_time_s(self, prompt_tokens: int) -> float:
        """``latency + prompt_tokens x kv_bytes_per_token / kv_link_bytes_per_s`` (per GPU, in parallel)."""
        return self.kv_transfer_latency_s + prompt_tokens * self.kv_bytes_per_token / self.kv_link_bytes_per_s


def latency_model_cost(model, gpu, layout, *, balancedness: float = 1.0, expert_slots_per_gpu: int | None = None,
                       factors=None, precision=None, max_batch_size: int = 256,
                       max_prefill_batch: int = 64, max_context_tokens: int = 32768,
                       kv_link_bytes_per_s: float | None = None, kv_transfer_latency_s: float = 0.0,
                       memory_options: dict | None = None) -> LatencyModelCost:
    """Tabulate moeplan's latency model for one instance (module docstring).

    Parameters
    ----------
    model, gpu, layout : as in :func:`planner.perf.latency.prefill_time_s`.
    balancedness, expert_slots_per_gpu, factors, precision : passed to the latency model (slots and
        precision to the memory model too): a replica plan's balancedness and slots; the number format
        of each component (:mod:`planner.profiles.precision`; default the model's native one).
    max_batch_size : sequences per step; the decode grid's last batch.
    max_prefill_batch : last prompt count of the prefill grid (linear beyond).
    max_context_tokens : last prompt / context length of the grids (linear beyond).
    kv_link_bytes_per_s : per-GPU bandwidth of the KV transfer; default the GPU's ``inter_node_bytes_per_s``.
    memory_options : other keyword options of :func:`planner.perf.memory.memory_per_gpu`
        (``memory_utilization``, ``max_batch_tokens``, ...).

    Raises
    ------
    InputError
        An out-of-range grid or argument, a layout the model cannot use.
    Infeasible
        The weights do not fit (from the memory model).

    Examples
    --------
    >>> c = latency_model_cost("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1", max_context_tokens=4096)
    >>> from planner.perf.latency import decode_step_time_s
    >>> direct = decode_step_time_s("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1", 32, 1024).total_s
    >>> abs(c.decode_time_s([1024] * 32) / direct - 1) < 1e-9
    True
    """
    for name, value, low in (("max_batch_size", max_batch_size, 1), ("max_prefill_batch", max_prefill_batch, 1),
                             ("max_context_tokens", max_context_tokens, 32)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"must be an integer >= {low}, got {value!r}", param=name)
    arch, spec, lay, _ = resolve_instance(model, gpu, layout, expert_slots_per_gpu=expert_slots_per_gpu)
    opts = dict(balancedness=balancedness, expert_slots_per_gpu=expert_slots_per_gpu, factors=factors,
                precision=precision)
    mem = memory_per_gpu(arch, spec, lay, expert_slots_per_gpu=expert_slots_per_gpu, precision=precision,
                         **(memory_options or {}))
    link = spec.inter_node_bytes_per_s if kv_link_bytes_per_s is None else kv_link_bytes_per_s
    if not (isinstance(link, (int, float)) and math.isfinite(link) and link > 0):
        raise InputError(f"must be a positive number, got {link!r}", param="kv_link_bytes_per_s")

    batches = _grid(1, max_prefill_batch)
    lengths = _grid(16, max_context_tokens)
    # every grid point at once: the numbers of prefill_time_s / decode_step_time_s per point, bit for bit
    totals, cores = (a.tolist() for a in step_time_grid(arch, spec, lay, batches, lengths, prefill=True, **opts))
    prefill_other = _Table(batches, lengths, [[t - a for t, a in zip(*rows)] for rows in zip(totals, cores)])
    prefill_rate = _Table(batches, lengths, [[a / (n * L * (L + 1) / 2) for a, L in zip(row, lengths)]
                                             for row, n in zip(cores, batches)])
    decodes = _grid(1, max_batch_size)
    totals, cores = (a.tolist() for a in step_time_grid(arch, spec, lay, decodes, lengths, prefill=False, **opts))
    decode_other = _Table(decodes, lengths, [[t - a for t, a in zip(*rows)] for rows in zip(totals, cores)])
    decode_rate = _Table(decodes, lengths, [[a / (b * c) for a, c in zip(row, lengths)]
                                            for row, b in zip(cores, decodes)])
    return LatencyModelCost(
        model_id=arch.id, gpu_id=spec.id, layout=lay, balancedness=float(balancedness),
        kv_capacity_tokens=int(mem.kv_tokens_per_instance), kv_bytes_per_token=float(mem.kv_bytes_per_token),
        kv_link_bytes_per_s=float(link), max_batch_size=max_batch_size,
        prefill_other=prefill_other, prefill_attention_per_pair=prefill_rate,
        decode_other=decode_other, decode_attention_per_token=decode_rate,
        kv_transfer_latency_s=float(kv_transfer_latency_s),
        name=f"{arch.id} on {spec.id} {lay.label}",
    )
