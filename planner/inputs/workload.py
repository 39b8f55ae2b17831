"""A serving workload: when each request arrives and how many tokens it reads and writes.

A :class:`Workload` is what the serving simulator (:mod:`planner.perf.simulator`) replays: request
``i`` arrives at ``arrival_s[i]`` with a prompt of ``input_tokens[i]`` tokens and generates
``output_tokens[i]`` tokens (the first one by the prefill). Real traces come from
:mod:`planner.inputs.traces`, synthetic ones from :mod:`planner.inputs.workload_gen`.

Rate and time compression. The rate of a workload is ``(n - 1) / (arrival_s[-1] - arrival_s[0])``,
one over the mean inter-arrival time. :meth:`Workload.with_rate` scales every inter-arrival time by
the same factor, so the trace keeps its burst pattern at another rate; this is how a goodput search
replays one trace at many rates (``planner.perf.goodput``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from planner.common.tables import format_table
from planner.errors import InputError

__all__ = ["Workload", "WorkloadStats", "PERCENTILES"]

#: percentiles reported by :meth:`Workload.stats`
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class WorkloadStats:
    """Summary of a workload (:meth:`Workload.stats`).

    ``rate_req_per_s`` is one over the mean inter-arrival time; ``interarrival_cv`` the coefficient
    of variation of inter-arrival times (1 for Poisson arrivals, above 1 for bursty traces).
    ``*_tokens_p`` map a percentile (50, 90, 99) to tokens.
    """

    num_requests: int
    duration_s: float
    rate_req_per_s: float
    interarrival_cv: float
    input_tokens_mean: float
    input_tokens_p: Mapping[int, float]
    input_tokens_max: int
    output_tokens_mean: float
    output_tokens_p: Mapping[int, float]
    output_tokens_max: int

    def table(self) -> str:
        """Human-readable summary (one row per length, the arrival figures in the title)."""
        title = (f"{self.num_requests} requests over {self.duration_s:.1f} s: {self.rate_req_per_s:.3f} req/s, "
                 f"inter-arrival CV {self.interarrival_cv:.2f}")
        heads = ["tokens", "mean", *(f"p{q}" for q in PERCENTILES), "max"]
        rows = [["input", f"{self.input_tokens_mean:.1f}", *(f"{self.input_tokens_p[q]:.0f}" for q in PERCENTILES),
                 self.input_tokens_max],
                ["output", f"{self.output_tokens_mean:.1f}", *(f"{self.output_tokens_p[q]:.0f}" for q in PERCENTILES),
                 self.output_tokens_max]]
        return format_table(heads, rows, title=title)


def _frozen_array(values, dtype, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputError(f"expected a 1-D sequence, got shape {list(arr.shape)}", param=name)
    if arr.size == 0:
        raise InputError("no requests", param=name)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)) or arr.dtype == bool:
        raise InputError(f"expected numbers, got dtype {arr.dtype}", param=name)
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"request {i}: non-finite value {arr[i]}", param=name)
    out = np.array(arr, dtype=dtype)
    if dtype is np.int64 and not np.array_equal(out, arr):
        i = int(np.argmax(out != arr))
        raise InputError(f"request {i}: expected a whole number of tokens, got {arr[i]}", param=name)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Workload:
    """Requests to serve: arrival times (s), prompt and output lengths (tokens).

    Parameters
    ----------
    arrival_s : arrival time of every request in seconds, finite, >= 0, never decreasing.
    input_tokens : prompt tokens of every request, integers >= 1.
    output_tokens : generated tokens of every request (the first one comes from the prefill),
        integers >= 1.
    source : where the requests came from (a file name, ``builtin:NAME``, ``poisson``, ...).
    provenance : free-form record (``source``, ``license``, ``date``, transformations).

    The arrays are stored as read-only copies (float64 and int64).

    Raises
    ------
    InputError
        Arrays of different lengths, empty, non-numeric, non-finite, negative or decreasing
        times, token counts below 1 or fractional; the message names the request index.

    Examples
    --------
    >>> w = Workload([0.0, 0.5, 1.0], [100, 200, 300], [10, 20, 30], source="example")
    >>> len(w), w.rate_req_per_s, w.total_output_tokens
    (3, 2.0, 60)
    >>> w.with_rate(4.0).arrival_s.tolist()
    [0.0, 0.25, 0.5]
    """

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    source: str = ""
    provenance: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arrival = _frozen_array(self.arrival_s, np.float64, "arrival_s")
        inp = _frozen_array(self.input_tokens, np.int64, "input_tokens")
        out = _frozen_array(self.output_tokens, np.int64, "output_tokens")
        if not (arrival.size == inp.size == out.size):
            raise InputError(
                f"arrival_s, input_tokens and output_tokens must have one entry per request; got "
                f"{arrival.size}, {inp.size} and {out.size}", param="input_tokens")
        if arrival[0] < 0:
            raise InputError(f"request 0: arrival time {arrival[0]} s is negative", param="arrival_s")
        step = np.diff(arrival)
        if (step < 0).any():
            i = int(np.argmax(step < 0)) + 1
            raise InputError(f"request {i}: arrival {arrival[i]} s is before the previous one "
                             f"({arrival[i - 1]} s); sort the requests by arrival time", param="arrival_s")
        for name, arr in (("input_tokens", inp), ("output_tokens", out)):
            if (arr < 1).any():
                i = int(np.argmax(arr < 1))
                raise InputError(f"request {i}: {arr[i]} tokens; every request needs at least 1", param=name)
        object.__setattr__(self, "arrival_s", arrival)
        object.__setattr__(self, "input_tokens", inp)
        object.__setattr__(self, "output_tokens", out)
        object.__setattr__(self, "provenance", MappingProxyType({str(k): str(v) for k, v in dict(self.provenance).items()}))

    # -- sizes -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.arrival_s.size)

    @property
    def num_requests(self) -> int:
        """Number of requests."""
        return len(self)

    @property
    def duration_s(self) -> float:
        """Time from the first to the last arrival."""
        return float(self.arrival_s[-1] - self.arrival_s[0])

    @property
    def rate_req_per_s(self) -> float:
        """One over the mean inter-arrival time, ``(n - 1) / duration_s``; ``inf`` when every request
        arrives at once, ``nan`` for a single request."""
        if len(self) < 2:
            return float("nan")
        return (len(self) - 1) / self.duration_s if self.duration_s > 0 else float("inf")

    def sha256(self) -> str:
        """Hash of the arrival times and token counts (not the source or provenance): equal requests,
        equal hash. Plans record it to check they are re-simulated on the same requests.

        >>> Workload([0.0], [5], [1]).sha256() == Workload([0.0], [5], [1], source="other").sha256()
        True
        """
        import hashlib

        h = hashlib.sha256()
        for arr in (self.arrival_s, self.input_tokens, self.output_tokens):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    @property
    def total_output_tokens(self) -> int:
        """Tokens the workload generates in all."""
        return int(self.output_tokens.sum())

    # -- derived workloads ------------------------------------------------------------------------
    def _derived(self, arrival_s, index=None, **note) -> Workload:
        sel = slice(None) if index is None else index
        prov = dict(self.provenance)
        prov.update({k: str(v) for k, v in note.items()})
        return Workload(arrival_s, self.input_tokens[sel], self.output_tokens[sel], self.source, prov)

    def with_rate(self, rate_req_per_s: float) -> Workload:
        """The same requests with every inter-arrival time scaled so that the rate is ``rate_req_per_s``.

        The first request keeps its arrival time; the burst pattern (the inter-arrival CV) is kept.
        Time compression of a trace (a rate above the trace's) is how a goodput search loads a
        deployment with real arrival patterns.

        Raises
        ------
        InputError
            A rate that is not a positive number, a single request, or requests that all arrive at
            once (no time to scale).

        Examples
        --------
        >>> w = Workload([0.0, 1.0, 4.0], [1, 1, 1], [1, 1, 1])
        >>> w.rate_req_per_s, w.with_rate(2.0).arrival_s.tolist()
        (0.5, [0.0, 0.25, 1.0])
        """
        if isinstance(rate_req_per_s, bool) or not isinstance(rate_req_per_s, (int, float, np.number)) \
                or not np.isfinite(rate_req_per_s) or rate_req_per_s <= 0:
            raise InputError(f"must be a positive number, got {rate_req_per_s!r}", param="rate_req_per_s")
        own = self.rate_req_per_s
        if not np.isfinite(own):
            raise InputError(f"cannot rescale {len(self)} request(s) that arrive at one instant", param="rate_req_per_s")
        t0 = self.arrival_s[0]
        arrival = t0 + (self.arrival_s - t0) * (own / float(rate_req_per_s))
        return self._derived(arrival, rescaled_to_rate_req_per_s=f"{float(rate_req_per_s):.6g}")

    def head(self, num_requests: int) -> Workload:
        """The first ``num_requests`` requests (all of them when there are fewer).

        >>> Workload([0.0, 1.0, 2.0], [5, 6, 7], [1, 1, 1]).head(2).input_tokens.tolist()
        [5, 6]
        """
        if isinstance(num_requests, bool) or not isinstance(num_requests, (int, np.integer)) or num_requests < 1:
            raise InputError(f"must be an integer >= 1, got {num_requests!r}", param="num_requests")
        n = min(int(num_requests), len(self))
        if n == len(self):
            return self
        return self._derived(self.arrival_s[:n], slice(0, n), first_requests=n)

    # -- summary ---------------------------------------------------------------------------------
    def stats(self) -> WorkloadStats:
        """Arrival rate, burstiness and length percentiles (:class:`WorkloadStats`).

        >>> s = Workload([0.0, 1.0, 2.0], [10, 20, 30], [1, 2, 3]).stats()
        >>> s.rate_req_per_s, s.interarrival_cv, s.input_tokens_p[50]
        (1.0, 0.0, 20.0)
        """
        gaps = np.diff(self.arrival_s)
        cv = float(gaps.std() / gaps.mean()) if gaps.size and gaps.mean() > 0 else float("nan")

        def pct(arr):
            return MappingProxyType({q: float(np.percentile(arr, q)) for q in PERCENTILES})

        return WorkloadStats(
            num_requests=len(self),
            duration_s=self.duration_s,
            rate_req_per_s=self.rate_req_per_s,
            interarrival_cv=cv,
            input_tokens_mean=float(self.input_tokens.mean()),
            input_tokens_p=pct(self.input_tokens),
            input_tokens_max=int(self.input_tokens.max()),
            output_tokens_mean=float(self.output_tokens.mean()),
            output_tokens_p=pct(self.output_tokens),
            output_tokens_max=int(self.output_tokens.max()),
        )

    def summary(self) -> str:
        """:meth:`stats` as a table headed by the source."""
        return f"{self.source or 'workload'}\n{self.stats().table()}"

    def __repr__(self) -> str:
        return (f"Workload({len(self)} requests, {self.rate_req_per_s:.4g} req/s, "
                f"source={self.source!r})")
