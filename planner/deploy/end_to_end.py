"""Step 5 of the deployment search: every deployment the integer programs chose, simulated with all its pools
together (prefill pool -> KV transfer -> decode pool, or the aggregated pool).

- GPU budget (:func:`goodput_deployments`): each deployment's goodput (:func:`planner.perf.goodput`), first
  bracketed to ``COARSE_TOL`` from the program's predicted rate in steps of 25 %, 56 %, 2x
  (``E2E_GROWTH``); then only the deployments whose bracket still reaches the best rate found (in the
  figure of merit: rate, or rate per GPU) are bisected on to ``REL_TOL``, continuing from their bracket
  (the fine search's own path). The others keep their coarse answer: a rate that met the SLO within
  ``COARSE_TOL`` of one that did not, below the best. Every probe stops at a certain miss.
- **Steady-state cap.** A probe is a finite trace: a pool that holds a burst within the TPOT limit's
  waiting budget (50 ms x 999 tokens = 50 s per request) meets the SLO at rates it cannot sustain. The
  goodput is capped, as the per-instance scores are, at the deployment's steady-state bound
  (:func:`steady_bound`: per role, instances x one instance's full-batch throughput; the least role);
  a capped deployment is re-simulated at the bound so its recorded numbers are those of that rate.
- Target rate (:func:`deployments_at_rate`): each deployment simulated at the rate; one that misses gets
  one more instance of the role that missed, up to three times.
- Closed loop (``load="closed"``, :func:`closed_loop_deployments`): each deployment's most clients meeting
  the SLO in steady state (:func:`planner.perf.max_concurrency`); its rate is the steady window's served
  rate there, its attainment and percentiles the window's.

``docs/deploy.md`` ("Method", step 5) states the rules.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

from planner.deploy.result import Deployment
from planner.inputs import SLO, Workload
from planner.perf import GoodputProbe, goodput, max_concurrency, simulate

__all__ = ["goodput_deployments", "deployments_at_rate", "closed_loop_deployments", "steady_bound", "REL_TOL",
           "COARSE_TOL", "E2E_GROWTH", "MAX_PROBES"]

REL_TOL = 0.04  # goodput searches stop when the bracket is this narrow (relative)
COARSE_TOL = 0.10  # ... for a deployment whose bracket cannot reach the best one found
E2E_GROWTH = 1.25  # first bracketing step from the predicted rate
MAX_PROBES = 14  # simulations per deployment at most


def steady_bound(chosen, counts) -> float:
    """Requests/s the deployment's pools sustain at most: per role, instances x the candidate's bound (a full
    batch back to back); the least of the roles (inf when a bound is unknown)."""
    return min(n * s.candidate.bound_req_per_s for n, s in zip(counts, chosen))


def goodput_deployments(found, *, workload_for: Callable, pools_for: Callable, slo: SLO, arrivals: str, seed: int,
                        per_gpu: bool, steady_cap: bool = True) -> list[Deployment]:
    """The goodput of each ``(kind, chosen scores, solution)`` of ``found`` (module docstring).

    ``workload_for(chosen, counts)`` gives the requests of its simulations, ``pools_for(chosen, counts)``
    its pools; ``per_gpu``: the figure of merit is the rate per GPU; ``steady_cap``: the steady-state cap.
    """
    runs = []
    for kind, chosen, sol in found:
        counts = list(sol.counts)
        w, pools = workload_for(chosen, counts), pools_for(chosen, counts)
        cap = steady_bound(chosen, counts) if steady_cap else math.inf
        finite = math.isfinite(cap) and cap > 0
        g = goodput(w, pools, slo, arrivals=arrivals, seed=seed, rel_tol=COARSE_TOL,
                    rate_req_per_s=max(min(sol.rate, cap), 1e-3), growth=E2E_GROWTH, max_probes=MAX_PROBES,
                    stop_early=True, max_rate_req_per_s=cap if finite else None)  # fmt: skip
        runs.append((kind, chosen, sol, w, pools, g, cap))
    gpus = [sum(n * s.candidate.num_gpus for n, s in zip(sol.counts, chosen)) for _, chosen, sol, *_ in runs]

    def merit(rate: float, i: int) -> float:
        return rate / gpus[i] if per_gpu else rate

    best = max(merit(min(r[5].rate_req_per_s, r[6]), i) for i, r in enumerate(runs))
    out = []
    for i, (kind, chosen, sol, w, pools, g, cap) in enumerate(runs):
        probes = g.probes
        lo, hi = g.rate_req_per_s, g.upper_req_per_s
        if lo >= cap:  # met at the steady-state bound: the goodput is the bound
            out.append(_at_cap(slo, kind, chosen, sol, w, pools, probes, cap))
            continue
        if lo > 0 and math.isfinite(hi) and merit(hi, i) > best and len(probes) < MAX_PROBES:
            more = goodput(w, pools, slo, arrivals=arrivals, seed=seed, rel_tol=REL_TOL, bracket_req_per_s=(lo, hi),
                           max_probes=max(2, MAX_PROBES - len(probes)), stop_early=True)
            probes, lo = probes + more.probes, more.rate_req_per_s
        out.append(_at_goodput(slo, kind, chosen, sol, w, pools, probes, lo))
    return out


def _at_cap(slo: SLO, kind: str, chosen, sol, w, pools, probes, cap: float) -> Deployment:
    """The deployment at its steady-state bound, simulated there (a probe may have met above it); should that
    rate miss (the goodput is not monotone in the rate), the highest met probe below it."""
    if any(p.rate_req_per_s == cap and p.met and p.complete for p in probes):
        return _at_goodput(slo, kind, chosen, sol, w, pools, probes, cap)
    res = simulate(w.with_rate(cap), pools)
    if res.meets(slo):
        q = slo.percentile
        at = GoodputProbe(cap, res.attainment(slo), res.percentile("ttft_ms", q), res.percentile("tpot_ms", q), True)
        return _at_goodput(slo, kind, chosen, sol, w, pools, [*probes, at], cap)
    below = [p.rate_req_per_s for p in probes if p.met and p.rate_req_per_s < cap]
    return _at_goodput(slo, kind, chosen, sol, w, pools, probes, max(below, default=0.0))


def _at_goodput(slo: SLO, kind: str, chosen, sol, w, pools, probes, rate: float) -> Deployment:
    """The deployment at its goodput ``rate`` (0: the last, lowest probe's numbers, for the closest miss)."""
    counts, n, mean_out = tuple(sol.counts), len(w), float(w.output_tokens.mean())
    if rate > 0:
        p = [p for p in probes if p.rate_req_per_s == rate][-1]
        return Deployment(kind, tuple(chosen), counts, sol.rate, rate, p.attainment, p.ttft_ms_percentile,
                          p.tpot_ms_percentile, p.met, n, mean_out, sol.nodes)
    p = probes[-1]
    if not p.complete:  # stopped at a certain miss: simulate it to the end for the closest-miss numbers
        res = simulate(w.with_rate(p.rate_req_per_s), pools)
        p = replace(p, attainment=res.attainment(slo), ttft_ms_percentile=res.percentile("ttft_ms", slo.percentile),
                    tpot_ms_percentile=res.percentile("tpot_ms", slo.percentile), complete=True)
    return Deployment(kind, tuple(chosen), counts, sol.rate, 0.0, p.attainment, p.ttft_ms_percentile,
                      p.tpot_ms_percentile, False, n, mean_out, sol.nodes)


def deployments_at_rate(found, *, workload_for: Callable, pools_for: Callable, slo: SLO,
                        rate: float) -> list[Deployment]:
    """Each ``(kind, chosen scores, solution)`` of ``found`` simulated at ``rate`` (module docstring)."""
    return [_at_rate(kind, chosen, sol, workload_for, pools_for, slo, rate) for kind, chosen, sol in found]


def _at_rate(kind, chosen, sol, workload_for, pools_for, slo: SLO, rate: float) -> Deployment:
    counts = list(sol.counts)
    w = workload_for(chosen, counts)
    mean_out = float(w.output_tokens.mean())
    q = slo.percentile
    for _ in range(4):
        res = simulate(w.with_rate(rate), pools_for(chosen, counts))
        ttft, tpot = res.percentile("ttft_ms", q), res.percentile("tpot_ms", q)
        met = res.meets(slo)
        if met:
            break
        if kind == "aggregated":
            counts[0] += 1
        else:
            counts[0] += int(not ttft <= slo.ttft_ms)
            counts[1] += int(not tpot <= slo.tpot_ms) or int(ttft <= slo.ttft_ms)
    return Deployment(kind, tuple(chosen), tuple(counts), sol.rate, rate, res.attainment(slo), ttft, tpot,
                      met, len(w), mean_out, sol.nodes if tuple(counts) == sol.counts else ())


def closed_loop_deployments(found, *, workload: Workload, pools_for: Callable, slo: SLO) -> list[Deployment]:
    """Each ``(kind, chosen scores, solution)`` of ``found`` at its most clients meeting ``slo`` in steady state
    (module docstring); one that meets it with no client count gets rate 0 and its one-client numbers."""
    out = []
    for kind, chosen, sol in found:
        r = max_concurrency(workload, pools_for(chosen, list(sol.counts)), slo)
        p = r.best or r.probes[-1]  # no count met: the last probe is the smallest count tried
        if r.clients:
            st = r.result.steady_state()
            rate, mean_out = st["requests_per_s"], st["output_tokens_per_s"] / st["requests_per_s"]
        else:
            rate, mean_out = 0.0, float(workload.output_tokens[:p.num_requests].mean())
        out.append(Deployment(kind, tuple(chosen), tuple(sol.counts), sol.rate, rate, p.attainment,
                              p.ttft_ms_percentile, p.tpot_ms_percentile, p.met, p.num_requests, mean_out, sol.nodes,
                              concurrency=p.clients))
    return out
