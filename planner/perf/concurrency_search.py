"""Closed-loop capacity: the most clients a deployment serves while meeting an SLO in steady state.

The counterpart of :func:`planner.perf.goodput` for a fixed client count (the load of ``aiperf`` /
``genai-perf --concurrency N`` runs, and the one NVIDIA AIConfigurator prices): ``N`` clients each send
their next request when the previous one ends (``simulate(..., concurrency=N)``), and the SLO is judged
on the steady window between warm-up and drain (:meth:`~planner.perf.SimResult.steady_mask`).

Search (deterministic, one fixed request sequence: the workload's requests in order):

1. a probe at ``N`` clients simulates the first ``max(min_requests, requests_per_client x N)`` requests
   (fewer when the workload is shorter); ``N`` is probed only while those leave a steady window of at
   least ``N`` requests (``3 N`` requests in all), so the workload's length caps ``N`` (``capped`` says so);
2. start at ``start`` clients; while the probe meets the SLO, double ``N`` (up to ``max_clients``);
   when ``start`` misses, halve it down to 1 (no client count meets it: capacity 0);
3. bisect between the last ``N`` that met and the first that missed until the bracket is at most
   ``lo / bisect_to`` wide (1 client at least). The answer is the last ``N`` that met.

The steady state of the answer's run gives the served rate (requests finished in the window over its
length) and the percentiles at that load. Like goodput in the rate, the steady-window SLO need not be
monotone in ``N`` (batching effects); the answer is a count that met within the bracket of one that missed.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.errors import InputError
from planner.inputs import SLO, Workload
from planner.perf.sim_results import SimResult
from planner.perf.simulator import Pool, simulate

__all__ = ["max_concurrency", "ConcurrencyResult", "ConcurrencyProbe", "concurrency_requests", "MAX_CLIENTS",
           "REQUESTS_PER_CLIENT", "MIN_REQUESTS", "START_CLIENTS", "BISECT_TO"]

MIN_REQUESTS = 1500  # a probe's requests at least (the steady window of a small N needs many rounds)
REQUESTS_PER_CLIENT = 6  # ... and 6 per client: warm-up and drain take about N each, 4 N are left
START_CLIENTS = 8
MAX_CLIENTS = 16384
BISECT_TO = 32  # the bracket ends at most 1/32 of the answer wide


@dataclass(frozen=True)
class ConcurrencyProbe:
    """One simulated client count, judged on its steady window: attainment, the percentiles, met or not."""

    clients: int
    num_requests: int
    attainment: float
    ttft_ms_percentile: float
    tpot_ms_percentile: float
    met: bool


@dataclass(frozen=True)
class ConcurrencyResult:
    """Outcome of :func:`max_concurrency`.

    ``clients``: the most clients that met the SLO (0: none did); ``upper_clients`` the fewest that
    missed (None: none did up to the cap); ``capped``: the workload's length or ``max_clients`` ended
    the doubling while it still met; ``result``: the simulation at ``clients`` (None when 0), whose
    steady window gives ``requests_per_s``, ``output_tokens_per_s`` and the probes' percentiles.
    """

    clients: int
    upper_clients: int | None
    capped: bool
    probes: tuple[ConcurrencyProbe, ...]
    result: SimResult | None
    slo: SLO

    @property
    def requests_per_s(self) -> float:
        """Requests finished in the steady window over its length at ``clients`` (0 when none met)."""
        return self.result.steady_state()["requests_per_s"] if self.result is not None else 0.0

    @property
    def output_tokens_per_s(self) -> float:
        """Output tokens finished in the steady window over its length at ``clients`` (0 when none met)."""
        return self.result.steady_state()["output_tokens_per_s"] if self.result is not None else 0.0

    @property
    def best(self) -> ConcurrencyProbe | None:
        """The probe at ``clients`` (None when none met)."""
        return next((p for p in reversed(self.probes) if p.clients == self.clients and p.met), None)


def concurrency_requests(clients: int, available: int, *, min_requests: int = MIN_REQUESTS,
                         requests_per_client: int = REQUESTS_PER_CLIENT) -> int:
    """Requests a probe of ``clients`` simulates: ``max(min_requests, requests_per_client x clients)``, at most
    ``available`` (the workload's length)."""
    return min(available, max(min_requests, requests_per_client * clients))


def _probe(workload: Workload, pools, slo: SLO, clients: int, min_requests: int,
           requests_per_client: int) -> tuple[ConcurrencyProbe, SimResult]:
    n = concurrency_requests(clients, len(workload), min_requests=min_requests,
                             requests_per_client=requests_per_client)
    res = simulate(workload.head(n), pools, concurrency=clients)
    q = slo.percentile
    probe = ConcurrencyProbe(clients, n, res.attainment(slo, steady=True), res.percentile("ttft_ms", q, steady=True),
                             res.percentile("tpot_ms", q, steady=True), res.meets(slo, steady=True))
    return probe, res


def max_concurrency(workload: Workload, pools: Pool | list[Pool], slo: SLO, *, start: int = START_CLIENTS,
                    max_clients: int = MAX_CLIENTS, bisect_to: int = BISECT_TO, min_requests: int = MIN_REQUESTS,
                    requests_per_client: int = REQUESTS_PER_CLIENT) -> ConcurrencyResult:
    """The most clients the pools serve in a closed loop with the SLO met in steady state (module docstring).

    Parameters
    ----------
    workload : the requests, sent in order (their arrival times are not used).
    pools : one pool (aggregated) or a prefill and a decode pool, as for :func:`planner.perf.simulate`.
    slo : the limits and the rule, judged on each probe's steady window.
    start, max_clients : the first client count and the doubling's cap.
    bisect_to : the bracket's final width is at most ``answer / bisect_to`` (and 1 client).
    min_requests, requests_per_client : a probe's length (:func:`concurrency_requests`).

    Raises
    ------
    InputError
        ``start``, ``max_clients``, ``bisect_to``, ``min_requests`` or ``requests_per_client`` no integer >= 1
        (``start`` above ``max_clients``), or a workload of fewer than 3 requests (no steady window).

    Examples
    --------
    >>> from planner.inputs import SLO, poisson_workload
    >>> from planner.perf import Pool, distserve_cost, max_concurrency
    >>> w = poisson_workload(1.0, 3000, input_tokens=512, output_tokens=64, seed=0)
    >>> r = max_concurrency(w, Pool(distserve_cost("opt-13b", tp=1)), SLO(400, 60, rule="percentile"))
    >>> r.clients > 0 and r.best.met
    True
    """
    for name, value in (("start", start), ("max_clients", max_clients), ("bisect_to", bisect_to),
                        ("min_requests", min_requests), ("requests_per_client", requests_per_client)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"must be an integer >= 1, got {value!r}", param=name)
    if start > max_clients:
        raise InputError(f"the first client count {start} exceeds max_clients {max_clients}", param="start")
    limit = min(max_clients, len(workload) // 3)  # a steady window of at least N requests
    if limit < 1:
        raise InputError(f"{len(workload)} requests leave no steady window; give at least 3", param="workload")
    probes: list[ConcurrencyProbe] = []
    best: SimResult | None = None

    def run(n: int) -> bool:
        nonlocal best
        p, res = _probe(workload, pools, slo, n, min_requests, requests_per_client)
        probes.append(p)
        if p.met:
            best = res
        return p.met

    lo, hi, n = 0, None, min(start, limit)
    if run(n):
        lo = n
        while lo < limit:
            n = min(2 * lo, limit)
            if not run(n):
                hi = n
                break
            lo = n
    else:
        hi = n
        while n > 1:
            n //= 2
            if run(n):
                lo = n
                break
            hi = n
    while hi is not None and lo and hi - lo > max(1, lo // bisect_to):
        m = (lo + hi) // 2
        if run(m):
            lo = m
        else:
            hi = m
    if best is not None and best.concurrency != lo:  # the last met probe is lo's by construction
        raise AssertionError("max_concurrency kept another run than its answer's")
    return ConcurrencyResult(lo, hi, hi is None, tuple(probes), best if lo else None, slo)
