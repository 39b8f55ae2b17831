"""Goodput: the highest request rate a deployment serves while meeting an SLO (DistServe §1.1).

``goodput(workload, pools, slo)`` probes rates by simulation. Each probe replays the workload's
requests at rate ``r`` by time compression (:meth:`~planner.inputs.Workload.with_rate`): the
trace's own burst pattern (``arrivals="trace"``), or, with ``arrivals="poisson"``, one seeded
Poisson draw (:func:`~planner.inputs.with_synthetic_arrivals`) scaled to ``r``. Scaling one draw
means every probe sees the same random numbers (common random numbers), so the search is not fooled
by sampling noise between probes.

Search (deterministic):

1. start at ``rate_req_per_s`` (default: the workload's own rate); while the probe meets the SLO
   (:meth:`~planner.perf.sim_results.SimResult.meets`) multiply the rate by the step factor, otherwise
   divide it, until one probe meets it and the next one up does not (``lo`` meets, ``hi`` fails); give
   up at ``2^-20`` of the start (goodput 0: the SLO is not met even nearly unloaded). The step factor
   is ``growth`` (default 2: doubling and halving), squared after every step up to 2, so a caller with
   a good first guess brackets it tightly (``growth=1.2``: steps of 1.2, 1.44, 2, 2, ...);
   ``max_rate_req_per_s`` ends the search at a rate that meets the SLO at or above it (the caller
   needs to know no more: it caps the answer there), the step up stopping at it;
   ``bracket_req_per_s=(lo, hi)`` skips this stage: the caller knows ``lo`` meets and ``hi`` misses
   (an earlier, coarser search of the same pools);
2. bisect ``[lo, hi]`` until ``hi - lo <= rel_tol x hi``; the goodput is the last rate that met the
   SLO (``lo``).

With ``stop_early`` each probe stops as soon as it certainly misses the SLO
(``simulate(..., stop_on_miss=slo)``): the path and the answer are the same, the probes that missed
carry no statistics (``complete`` False, their attainment and percentiles ``nan``).

Because the probes follow one deterministic path and a request that meets a tighter SLO meets a
looser one, the goodput never decreases when an SLO limit is loosened (tested). The answer is a
rate that met the SLO within ``rel_tol`` of one that did not; if attainment is not monotone in the
rate (rare, batching effects) another passing rate may lie above it. Per-GPU goodput divides by
the deployment's GPUs (DistServe's objective).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from planner.errors import InputError
from planner.inputs import SLO, Workload, with_synthetic_arrivals
from planner.perf.simulator import Pool, check_pools, simulate

__all__ = ["goodput", "GoodputResult", "GoodputProbe", "ARRIVALS"]

ARRIVALS = ("trace", "poisson")
_MAX_HALVINGS = 20


@dataclass(frozen=True)
class GoodputProbe:
    """One simulated rate: its attainment (per-request), its p-th percentiles and whether it met the SLO;
    ``complete`` False for a probe stopped at a certain miss (its statistics are then ``nan``)."""

    rate_req_per_s: float
    attainment: float
    ttft_ms_percentile: float
    tpot_ms_percentile: float
    met: bool
    complete: bool = True


@dataclass(frozen=True)
class GoodputResult:
    """Outcome of :func:`goodput`.

    ``rate_req_per_s`` is the goodput (0 when no probed rate met the SLO), ``per_gpu`` the same
    divided by ``num_gpus``; ``upper_req_per_s`` the lowest probed rate that failed (inf if none
    did within the doublings); ``probes`` every simulation in order.
    """

    rate_req_per_s: float
    upper_req_per_s: float
    num_gpus: int
    slo: SLO
    arrivals: str
    num_requests: int
    rel_tol: float
    probes: tuple[GoodputProbe, ...]

    @property
    def per_gpu(self) -> float:
        """Goodput per GPU, req/s/GPU."""
        return self.rate_req_per_s / self.num_gpus

    def summary(self) -> str:
        """One line per probe and the answer."""
        lines = [f"goodput {self.rate_req_per_s:.4g} req/s = {self.per_gpu:.4g} req/s/GPU on {self.num_gpus} GPUs "
                 f"(SLO TTFT {self.slo.ttft_ms:g} ms, TPOT {self.slo.tpot_ms:g} ms, {self.slo.rule} at "
                 f"{self.slo.attainment_target:g}; {self.arrivals} arrivals, {self.num_requests} requests)"]
        q = self.slo.percentile
        lines += [f"  {p.rate_req_per_s:10.4g} req/s  attainment {p.attainment:.3f}  p{q:g} TTFT "
                  f"{p.ttft_ms_percentile:9.1f} ms  TPOT {p.tpot_ms_percentile:7.1f} ms  {'met' if p.met else 'missed'}"
                  if p.complete else f"  {p.rate_req_per_s:10.4g} req/s  missed (stopped at a certain miss)"
                  for p in self.probes]
        return "\n".join(lines)


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"must be a positive number, got {value!r}", param=name)
    return float(value)


def goodput(workload: Workload, pools: Pool | Sequence[Pool], slo: SLO, *, arrivals: str = "trace",
            rate_req_per_s: float | None = None, rel_tol: float = 0.02, max_probes: int = 40, seed: int = 0,
            growth: float = 2.0, max_rate_req_per_s: float | None = None,
            bracket_req_per_s: tuple[float, float] | None = None, stop_early: bool = False,
            progress: Callable[[GoodputProbe], None] | None = None) -> GoodputResult:
    """Highest rate at which ``pools`` serve ``workload`` within ``slo`` (module docstring).

    Parameters
    ----------
    workload : the requests; their count sets each probe's length (``workload.head(n)`` to shorten).
    pools : the deployment, as for :func:`~planner.perf.simulator.simulate`.
    slo : limits, attainment target and rule (:class:`~planner.inputs.SLO`).
    arrivals : ``"trace"`` (the workload's arrival pattern) or ``"poisson"``.
    rate_req_per_s : first rate probed; default the workload's own rate.
    rel_tol : stop when the bracket is narrower than ``rel_tol`` times its upper end.
    max_probes : cap on simulations (the search stops with the bracket it has).
    seed : seed of the Poisson draw (``arrivals="poisson"``).
    growth : first step factor of the bracketing stage (> 1; squared after each step, at most 2).
    max_rate_req_per_s : a rate at which a met probe ends the search (None: no cap).
    bracket_req_per_s : ``(lo, hi)``, rates known to meet and to miss the SLO: bisect between them.
    stop_early : stop each probe at a certain miss (same answer, fewer simulated steps).
    progress : called with each :class:`GoodputProbe`.

    Returns
    -------
    GoodputResult

    Examples
    --------
    >>> from planner.inputs import poisson_workload
    >>> from planner.perf.cost import distserve_cost
    >>> w = poisson_workload(1.0, 300, input_tokens=512, output_tokens=128, seed=0)
    >>> g = goodput(w, Pool(distserve_cost("opt-13b", tp=1)), SLO(ttft_ms=200, tpot_ms=100))
    >>> g.rate_req_per_s > 1.0, g.probes[-1].rate_req_per_s <= g.upper_req_per_s
    (True, True)
    """
    if not isinstance(workload, Workload):
        raise InputError(f"expected a Workload, got {type(workload).__name__}", param="workload")
    pools = check_pools(pools)
    if not isinstance(slo, SLO):
        raise InputError(f"expected an SLO, got {type(slo).__name__}", param="slo")
    if arrivals not in ARRIVALS:
        raise InputError(f"unknown arrivals {arrivals!r}; known: {', '.join(ARRIVALS)}", param="arrivals")
    if len(workload) < 2:
        raise InputError("a goodput search needs at least 2 requests", param="workload")
    tol = _positive("rel_tol", rel_tol)
    if isinstance(max_probes, bool) or not isinstance(max_probes, int) or max_probes < 2:
        raise InputError(f"must be an integer >= 2, got {max_probes!r}", param="max_probes")
    base = with_synthetic_arrivals(workload, seed=seed) if arrivals == "poisson" else workload
    start = base.rate_req_per_s if rate_req_per_s is None else _positive("rate_req_per_s", rate_req_per_s)
    if not (math.isfinite(start) and start > 0):
        raise InputError("the workload's requests arrive at one instant; give rate_req_per_s", param="rate_req_per_s")
    if isinstance(growth, bool) or not isinstance(growth, (int, float)) or not (1 < growth <= 2):
        raise InputError(f"must be a number in (1, 2], got {growth!r}", param="growth")
    cap = math.inf if max_rate_req_per_s is None else _positive("max_rate_req_per_s", max_rate_req_per_s)
    if bracket_req_per_s is not None:
        try:
            b_lo, b_hi = (_positive("bracket_req_per_s", float(x)) for x in bracket_req_per_s)
        except (TypeError, ValueError):
            raise InputError(f"expected (lo, hi), got {bracket_req_per_s!r}", param="bracket_req_per_s") from None
        if not b_lo < b_hi:
            raise InputError(f"expected lo < hi, got {bracket_req_per_s!r}", param="bracket_req_per_s")

    probes: list[GoodputProbe] = []
    q = slo.percentile
    watch = slo if stop_early else None

    def probe(rate: float) -> bool:
        res = simulate(base.with_rate(rate), pools, stop_on_miss=watch)
        if res.complete:
            p = GoodputProbe(rate, res.attainment(slo), res.percentile("ttft_ms", q), res.percentile("tpot_ms", q),
                             res.meets(slo))
        else:
            p = GoodputProbe(rate, math.nan, math.nan, math.nan, False, complete=False)
        probes.append(p)
        if progress is not None:
            progress(p)
        return p.met

    lo, hi = 0.0, math.inf
    rate, factor = start, float(growth)
    if bracket_req_per_s is not None:
        lo, hi = b_lo, b_hi
    elif probe(rate):
        lo = rate
        while len(probes) < max_probes and rate < cap:
            rate = min(rate * factor, cap)
            factor = min(factor * factor, 2.0)
            if not probe(rate):
                hi = rate
                break
            lo = rate
    else:
        hi = rate
        floor = start / 2 ** _MAX_HALVINGS
        while len(probes) < max_probes and rate > floor:
            rate = max(rate / factor, floor)
            factor = min(factor * factor, 2.0)
            if probe(rate):
                lo = rate
                break
            hi = rate
    if lo > 0:
        while math.isfinite(hi) and hi - lo > tol * hi and len(probes) < max_probes:
            mid = (lo + hi) / 2
            if probe(mid):
                lo = mid
            else:
                hi = mid
    return GoodputResult(
        rate_req_per_s=lo, upper_req_per_s=hi, num_gpus=sum(p.num_gpus for p in pools), slo=slo, arrivals=arrivals,
        num_requests=len(workload), rel_tol=tol, probes=tuple(probes),
    )
