"""Stop a simulation as soon as it certainly misses an SLO (``simulate(..., stop_on_miss=slo)``).

Package-internal: :mod:`planner.perf.simulator` feeds a :class:`MissWatch` the events it needs and
asks it, between instants, whether the run can still meet the SLO. A goodput search only needs to
know *that* a probe missed; simulating an overloaded probe to its end (every queued request served)
is the costliest part of it. The watch counts requests that **certainly** miss a limit, whatever
happens later:

- TTFT: a request whose first token came later than ``arrival + ttft_ms``, or has not come although
  that time has passed (it will come later still), or that was rejected;
- TPOT (runs that decode, outputs of more than one token): a finished request with
  ``(finish - first) / (output - 1)`` over the limit; an unfinished one for which even finishing now
  would be over it (finishing later only raises it); a rejected one.

Each count is a lower bound of the final one, and a request counts only when its value exceeds the
limit by a relative ``1e-9`` (below the rounding of the final metric). The run certainly misses

- ``percentile`` rule: when a metric's certain misses reach ``N - floor(h)`` of its ``N`` requests,
  ``h = q/100 (N - 1)`` (taken one lower when within ``1e-6`` of an integer): then the order statistic
  at ``floor(h)`` exceeds the limit and so does the interpolated percentile that
  :meth:`~planner.perf.sim_results.SimResult.percentile` computes (``numpy.percentile``, linear);
- ``per_request`` rule: when the requests that certainly miss either limit make
  ``(N - missed) / N < attainment_target``.

So a run that meets the SLO never stops early and gives the full result; a stopped run is a miss
(``tests/test_simulator.py`` compares goodput searches with and without stopping, probe by probe).
"""

from __future__ import annotations

import heapq
import math

import numpy as np

__all__ = ["MissWatch"]

_MARGIN = 1e-9


def _threshold(n: int, q: float) -> int:
    """Certain misses of ``n`` values that put the ``q``-th percentile above the limit."""
    h = q / 100.0 * (n - 1)
    f = math.floor(h)
    if h - f < 1e-6 and f > 0:
        f -= 1
    return n - f


def _fewest_misses(n: int, target: float) -> int:
    """The fewest misses ``m`` of ``n`` requests with ``(n - m) / n < target`` (``n + 1`` if none): the first
    such ``m`` in order, searched from a few below ``n (1 - target)`` (the share falls as ``m`` grows), so
    the same ``m`` as a scan from 0, in the same floating-point comparisons.

    >>> _fewest_misses(10, 0.9), _fewest_misses(1000, 0.99), _fewest_misses(3, 1e-9)
    (2, 11, 3)
    """
    m = max(0, int(n * (1.0 - target)) - 2)
    if m and (n - m) / n < target:  # the guess overshot (rounding): scan from the start
        m = 0
    while m <= n and not (n - m) / n < target:
        m += 1
    return m


class MissWatch:
    """Counts of requests that certainly miss ``slo`` in one simulation (module docstring)."""

    def __init__(self, slo, arrival: list, out: list, decodes: bool) -> None:
        self.ttft_limit = slo.ttft_ms * (1 + _MARGIN)
        self.tpot_limit = slo.tpot_ms * (1 + _MARGIN)
        self.percentile_rule = slo.rule == "percentile"
        self.arrival = arrival
        self.out = out
        n = len(arrival)
        self.decodes = decodes
        self.check_ttft = math.isfinite(slo.ttft_ms)
        self.check_tpot = decodes and math.isfinite(slo.tpot_ms)
        multi = int(np.count_nonzero(np.asarray(out) > 1))  # outputs of more than one token
        if self.percentile_rule:
            self.ttft_needed = _threshold(n, slo.percentile) if n else 1
            self.tpot_needed = _threshold(multi, slo.percentile) if multi else n + 1
        else:
            self.any_needed = _fewest_misses(n, slo.attainment_target)
        self.ttft_missed = self.tpot_missed = self.any_missed = 0
        self.flag = bytearray(n)  # bit 1: TTFT counted, bit 2: TPOT counted
        self.ttft_next = 0  # requests before it have had their TTFT deadline checked
        self.ttft_wait_s = slo.ttft_ms / 1e3 if self.check_ttft else math.inf
        self.tpot_due: list[tuple[float, int]] = []  # (time after which finishing is certainly too late, request)
        self.missed = False
        self.next_check = self.arrival[0] + self.ttft_wait_s if n and self.check_ttft else math.inf

    # -- counting ------------------------------------------------------------------------------------
    def _count(self, rid: int, bit: int) -> None:
        f = self.flag[rid]
        if f & bit:
            return
        self.flag[rid] = f | bit
        if bit == 1:
            self.ttft_missed += 1
        else:
            self.tpot_missed += 1
        if not f:
            self.any_missed += 1
        if self.percentile_rule:
            self.missed = self.ttft_missed >= self.ttft_needed or self.tpot_missed >= self.tpot_needed
        else:
            self.missed = self.any_missed >= self.any_needed

    def first_token(self, rid: int, t: float) -> None:
        """A decoding run's request got its first token: watch its TPOT deadline."""
        if self.check_tpot and self.out[rid] > 1:
            due = t + self.tpot_limit * (self.out[rid] - 1) / 1e3
            heapq.heappush(self.tpot_due, (due, rid))
            if due < self.next_check:
                self.next_check = due

    def finished(self, rid: int, first: float, t: float) -> None:
        """A request finished: its TPOT is known."""
        o = self.out[rid]
        if self.check_tpot and o > 1 and (t - first) * 1e3 / (o - 1) > self.tpot_limit:
            self._count(rid, 2)

    def rejected(self, rid: int) -> None:
        """A rejected request misses both limits (it counts as infinitely slow)."""
        if self.check_ttft:
            self._count(rid, 1)
        if self.check_tpot and self.out[rid] > 1:
            self._count(rid, 2)

    def advance(self, now: float, arrived: int, first: list, finish: list) -> None:
        """Count the deadlines that passed before ``now`` (``arrived`` requests have arrived)."""
        arrival = self.arrival
        if self.check_ttft:
            i = self.ttft_next
            while i < arrived and arrival[i] + self.ttft_wait_s < now:
                f = first[i]
                if f == f:  # the first token came: its TTFT is final
                    if (f - arrival[i]) * 1e3 > self.ttft_limit:
                        self._count(i, 1)
                elif (now - arrival[i]) * 1e3 > self.ttft_limit:
                    self._count(i, 1)
                else:  # rounding at the deadline: look again later
                    break
                i += 1
            self.ttft_next = i
        due = self.tpot_due
        while due and due[0][0] < now:
            rid = heapq.heappop(due)[1]
            f = first[rid]
            if finish[rid] == finish[rid] or f != f:
                continue  # finished (counted then) or rejected (counted then)
            if (now - f) * 1e3 / (self.out[rid] - 1) > self.tpot_limit:
                self._count(rid, 2)
            else:  # rounding at the deadline: look again a moment later
                heapq.heappush(due, (math.nextafter(now, math.inf), rid))
                break
        nxt = arrival[self.ttft_next] + self.ttft_wait_s if self.check_ttft and self.ttft_next < len(arrival) else math.inf
        if due and due[0][0] < nxt:
            nxt = due[0][0]
        self.next_check = nxt if nxt > now else math.nextafter(now, math.inf)
