"""Results of a serving simulation: per-request times, TTFT/TPOT distributions, SLO attainment.

Per request ``i`` (arrays of :class:`SimResult`): ``arrival_s`` (from the workload),
``first_token_s`` (the prefill's last chunk left the last pipeline stage), ``finish_s`` (the last
token), and the derived

- ``ttft_ms = 1000 (first_token_s - arrival_s)``, queueing included;
- ``tpot_ms = 1000 (finish_s - first_token_s) / (output_tokens - 1)``, DistServe's definition (in a
  disaggregated deployment it includes the KV transfer and the wait for a decode slot); ``nan`` for
  a one-token output, which has no TPOT and meets any TPOT limit;
- ``e2e_ms = 1000 (finish_s - arrival_s)``.

A request the deployment cannot hold (its KV reservation exceeds an instance's capacity) is
*rejected*: its times are ``nan`` and it misses every SLO.

Closed-loop runs (``simulate(..., concurrency=N)``): ``arrival_s`` are the times the clients sent
the requests. Whole-run figures (:meth:`SimResult.stats`: tokens over first arrival to last finish,
percentiles over every request) are what ``vllm bench serve`` reports; :meth:`SimResult.steady_state`
leaves out the warm-up (until ``N`` requests have ended: the clients start together) and the drain
(after the last request was sent: fewer than ``N`` in flight).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from planner.common.tables import format_table
from planner.errors import InputError
from planner.inputs import SLO, Workload

__all__ = ["SimResult", "StepLog", "METRICS"]

#: per-request metrics of :meth:`SimResult.percentile`
METRICS = ("ttft_ms", "tpot_ms", "e2e_ms")


@dataclass(frozen=True, eq=False)
class StepLog:
    """Every engine step of a run (``simulate(..., record_steps=True)``), one entry per step.

    ``kv_used_tokens`` is the instance's reserved KV right after the step was formed.
    """

    pool: np.ndarray
    instance: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    num_prefills: np.ndarray
    prefill_tokens: np.ndarray
    decode_batch: np.ndarray
    decode_context_tokens: np.ndarray
    kv_used_tokens: np.ndarray

    @staticmethod
    def from_rows(rows: list[tuple]) -> StepLog:
        """Build from the simulator's ``(pool, instance, start, end, n, tokens, bs, ctx, kv)`` tuples."""
        cols = list(zip(*rows)) if rows else [()] * 9
        ints = (np.int64,) * 2 + (np.float64,) * 2 + (np.int64,) * 5
        return StepLog(*(np.asarray(c, dtype=d) for c, d in zip(cols, ints)))


@dataclass(frozen=True, eq=False)
class SimResult:
    """Outcome of :func:`planner.perf.simulate` (module docstring for the per-request fields).

    Other fields: ``rejected`` (bool per request), ``prefill_instance`` / ``decode_instance`` (index
    in its pool, -1 where none), ``tokens_generated`` (tokens emitted by every step: first tokens
    plus decode tokens), ``decodes`` (False for a prefill-only run), per pool and instance ``kv_capacity_tokens``, ``kv_peak_tokens``,
    ``busy_s`` and ``steps``, ``num_gpus``, ``sim_end_s`` (last event) and ``steps_log`` (a
    :class:`StepLog` when asked for). ``complete`` is False for a run stopped as soon as it certainly
    missed an SLO (``simulate(..., stop_on_miss=slo)``): its unfinished requests have no times and it
    meets no SLO. ``concurrency`` is the number of clients of a closed-loop run (None: open loop),
    ``think_time_s`` their think time.
    """

    workload: Workload
    pool_names: tuple[str, ...]
    first_token_s: np.ndarray
    finish_s: np.ndarray
    rejected: np.ndarray
    prefill_instance: np.ndarray
    decode_instance: np.ndarray
    tokens_generated: int
    kv_capacity_tokens: tuple[int, ...]
    kv_peak_tokens: tuple[tuple[int, ...], ...]
    busy_s: tuple[tuple[float, ...], ...]
    steps: tuple[tuple[int, ...], ...]
    num_gpus: int
    sim_end_s: float
    decodes: bool = True
    steps_log: StepLog | None = None
    complete: bool = True
    concurrency: int | None = None
    think_time_s: float = 0.0
    wall_s: float = field(default=0.0, compare=False)

    # -- per-request metrics -------------------------------------------------------------------------
    @property
    def arrival_s(self) -> np.ndarray:
        """Arrival times (the workload's)."""
        return self.workload.arrival_s

    @property
    def ttft_ms(self) -> np.ndarray:
        """Time to first token per request, ms (nan if rejected)."""
        return (self.first_token_s - self.workload.arrival_s) * 1e3

    @property
    def tpot_ms(self) -> np.ndarray:
        """Time per output token after the first, ms (nan for one-token outputs, rejected requests and
        every request of a prefill-only run)."""
        out = self.workload.output_tokens
        if not self.decodes:
            return np.full(out.shape, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = (self.finish_s - self.first_token_s) * 1e3 / (out - 1)
        return np.where(out > 1, t, np.nan)

    @property
    def e2e_ms(self) -> np.ndarray:
        """Arrival to last token per request, ms."""
        return (self.finish_s - self.workload.arrival_s) * 1e3

    @property
    def num_rejected(self) -> int:
        """Requests no instance could hold."""
        return int(self.rejected.sum())

    def percentile(self, metric: str, q: float, *, steady: bool = False) -> float:
        """The ``q``-th percentile of ``metric`` (``ttft_ms``, ``tpot_ms``, ``e2e_ms``) over requests
        (``steady``: over the closed loop's steady window, :meth:`steady_mask`).

        Rejected requests count as infinitely slow; one-token outputs have no TPOT and are left
        out of ``tpot_ms``. ``nan`` when no request has the metric.
        """
        if metric not in METRICS:
            raise InputError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}", param="metric")
        if not (isinstance(q, (int, float)) and 0 <= q <= 100):
            raise InputError(f"must be a number in [0, 100], got {q!r}", param="q")
        values = getattr(self, metric)
        values = np.where(self.rejected, np.inf, values)
        keep = self.workload.output_tokens > 1 if metric == "tpot_ms" else np.ones(values.shape, dtype=bool)
        if steady:
            keep = keep & self.steady_mask()
        values = values[keep]
        if values.size == 0:
            return float("nan")
        return float(np.percentile(values, q))

    # -- SLOs ----------------------------------------------------------------------------------------
    def attains(self, slo: SLO) -> np.ndarray:
        """Per request: TTFT <= ``slo.ttft_ms`` and TPOT <= ``slo.tpot_ms`` (no TPOT: met); rejected: False."""
        ttft_ok = self.ttft_ms <= slo.ttft_ms
        tpot = self.tpot_ms
        tpot_ok = np.isnan(tpot) | (tpot <= slo.tpot_ms)
        return ttft_ok & tpot_ok & ~self.rejected

    def attainment(self, slo: SLO, *, steady: bool = False) -> float:
        """Share of requests that meet both limits (DistServe's per-request SLO attainment); ``steady``:
        of the closed loop's steady window (:meth:`steady_mask`)."""
        ok = self.attains(slo)
        if steady:
            ok = ok[self.steady_mask()]
        return float(ok.mean()) if ok.size else float("nan")

    def meets(self, slo: SLO, *, steady: bool = False) -> bool:
        """Whether the run meets ``slo`` under its rule (``planner.inputs.slo``): attainment >= target
        (``per_request``) or both percentiles within their limits (``percentile``); a run stopped on a
        certain miss (``complete`` False) meets none. ``steady``: judged on the closed loop's steady
        window (:meth:`steady_mask`), the load a fixed client count keeps up."""
        if not self.complete:
            return False
        if slo.rule == "per_request":
            return self.attainment(slo, steady=steady) >= slo.attainment_target
        q = slo.percentile
        ttft, tpot = self.percentile("ttft_ms", q, steady=steady), self.percentile("tpot_ms", q, steady=steady)
        return ttft <= slo.ttft_ms and (math.isnan(tpot) or tpot <= slo.tpot_ms)

    # -- throughput ----------------------------------------------------------------------------------
    @property
    def served_requests(self) -> int:
        """Requests that finished."""
        return int(np.isfinite(self.finish_s).sum())

    def _per_served_second(self, per_request) -> float:
        """The sum of ``per_request`` over finished requests, over the time from the first arrival to the
        last finish (0 when none finished)."""
        served = np.isfinite(self.finish_s)
        if not served.any():
            return 0.0
        span = float(np.nanmax(self.finish_s) - self.workload.arrival_s[0])
        return float(per_request[served].sum()) / span if span > 0 else float("inf")

    @property
    def output_tokens_per_s(self) -> float:
        """Output tokens of finished requests over the time from the first arrival to the last finish."""
        return self._per_served_second(self.workload.output_tokens)

    @property
    def requests_per_s(self) -> float:
        """Finished requests over the time from the first arrival to the last finish."""
        return self._per_served_second(np.ones(len(self.finish_s)))

    def stats(self) -> Mapping[str, float]:
        """Headline numbers: mean and p50/p90/p99 of TTFT, TPOT and e2e (ms), throughput and utilisation."""
        out: dict[str, float] = {"requests": float(len(self.workload)), "rejected": float(self.num_rejected)}
        for metric in METRICS:
            values = getattr(self, metric)
            values = values[np.isfinite(values)]
            out[f"{metric}_mean"] = float(values.mean()) if values.size else float("nan")
            for q in (50, 90, 99):
                out[f"{metric}_p{q}"] = self.percentile(metric, q)
        out["requests_per_s"] = self.requests_per_s
        out["output_tokens_per_s"] = self.output_tokens_per_s
        out["output_tokens_per_s_per_gpu"] = self.output_tokens_per_s / self.num_gpus
        span = self.sim_end_s - float(self.workload.arrival_s[0])
        busy = [b for pool in self.busy_s for b in pool]
        out["mean_instance_busy_share"] = float(np.mean(busy)) / span if span > 0 and busy else float("nan")
        return out

    def steady_state(self) -> Mapping[str, float]:
        """Throughput and latencies of a closed-loop run between its warm-up and its drain.

        With ``N`` clients and ``n`` requests, ``f_k`` the ``k``-th earliest finish: the window is
        ``(f_N, f_{n-N}]`` -- it opens once ``N`` requests have ended (the clients all start at 0, so
        the first ones run as one synchronised batch) and closes when the last request is sent (from
        then on fewer than ``N`` are in flight). Over the requests that finish in it: ``requests``,
        ``start_s``, ``end_s``, ``requests_per_s`` (their count over the window's length),
        ``output_tokens_per_s`` (their output tokens likewise; also ``_per_gpu``), mean and
        p50/p90/p99 of ``ttft_ms``, ``tpot_ms``, ``e2e_ms``, and ``mean_in_flight`` = requests/s x
        mean e2e (Little's law: about ``N`` with no think time). Rejected requests are left out.

        Raises
        ------
        InputError
            An open-loop run, or one of at most ``2 N`` served requests (no window).

        Examples
        --------
        >>> from planner.inputs import poisson_workload
        >>> from planner.perf import Pool, distserve_cost, simulate
        >>> w = poisson_workload(1.0, 400, input_tokens=256, output_tokens=32, seed=0)
        >>> s = simulate(w, Pool(distserve_cost("opt-13b", tp=1)), concurrency=8).steady_state()
        >>> s["requests"], round(s["mean_in_flight"], 1)
        (384.0, 8.0)
        """
        start, end = self._steady_window()
        inside = self.steady_mask() & ~self.rejected
        span = end - start
        out: dict[str, float] = {"requests": float(inside.sum()), "start_s": start, "end_s": end}
        out["requests_per_s"] = out["requests"] / span if span > 0 else float("inf")
        tokens = float(self.workload.output_tokens[inside].sum())
        out["output_tokens_per_s"] = tokens / span if span > 0 else float("inf")
        out["output_tokens_per_s_per_gpu"] = out["output_tokens_per_s"] / self.num_gpus
        for metric in METRICS:
            values = getattr(self, metric)[inside]
            values = values[np.isfinite(values)]
            out[f"{metric}_mean"] = float(values.mean()) if values.size else float("nan")
            for q in (50, 90, 99):
                out[f"{metric}_p{q}"] = float(np.percentile(values, q)) if values.size else float("nan")
        out["mean_in_flight"] = out["requests_per_s"] * out["e2e_ms_mean"] / 1e3
        return out

    def _steady_window(self) -> tuple[float, float]:
        n_clients = self.concurrency
        if n_clients is None:
            raise InputError("the steady state is for closed-loop runs (simulate(..., concurrency=N))",
                             param="concurrency")
        finish = np.sort(self.finish_s[np.isfinite(self.finish_s)])
        if finish.size <= 2 * n_clients:
            raise InputError(f"{finish.size} served requests leave no steady window between the first and the "
                             f"last {n_clients}; simulate more than {2 * n_clients} requests", param="concurrency")
        return float(finish[n_clients - 1]), float(finish[finish.size - n_clients - 1])

    def steady_mask(self) -> np.ndarray:
        """Per request: in the closed loop's steady window (:meth:`steady_state`): finished in it, or rejected
        when sent in it (a rejected request is a miss the window must see).

        Raises
        ------
        InputError
            An open-loop run, or one of at most ``2 N`` served requests (no window).
        """
        start, end = self._steady_window()
        served = np.isfinite(self.finish_s)
        sent = self.workload.arrival_s
        return (served & (self.finish_s > start) & (self.finish_s <= end)) | (
            self.rejected & (sent > start) & (sent <= end))

    def summary(self, slo: SLO | None = None) -> str:
        """A table of TTFT / TPOT / e2e percentiles, throughput and (with ``slo``) attainment."""
        s = self.stats()
        rows = [[m, f"{s[f'{m}_mean']:.1f}", *(f"{s[f'{m}_p{q}']:.1f}" for q in (50, 90, 99))] for m in METRICS]
        load = "" if self.concurrency is None else f", closed loop of {self.concurrency} clients"
        title = (f"{len(self.workload)} requests on {' + '.join(self.pool_names)} ({self.num_gpus} GPUs{load}): "
                 f"{s['output_tokens_per_s']:.0f} output tokens/s, {self.num_rejected} rejected")
        text = format_table(["metric", "mean", "p50", "p90", "p99"], rows, title=title)
        if slo is not None:
            text += (f"\nSLO TTFT <= {slo.ttft_ms:g} ms, TPOT <= {slo.tpot_ms:g} ms: attainment "
                     f"{self.attainment(slo):.3f} (target {slo.attainment_target:g}, rule {slo.rule}: "
                     f"{'met' if self.meets(slo) else 'missed'})")
        return text
