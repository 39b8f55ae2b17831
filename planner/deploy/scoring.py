"""Per-instance scores of the deployment search: candidates per role, screened, then simulated alone.

Roles (DistServe's placement algorithm 1, ``docs/deploy.md``):

- ``prefill``: a prefill-only pool of one instance against the TTFT limit (TPOT free);
- ``decode``: a decode-only pool of one instance against the TPOT limit (TTFT free);
- ``both``: one aggregated instance (Sarathi-style chunked prefill) against both limits.

A candidate is an instance layout with a batch / token budget from a small grid. Before any
simulation, each candidate gets a throughput **bound** from a few latency-model calls (a full batch
back to back, no queueing): a candidate whose unloaded latency already misses its limit is dropped, a
candidate dominated by another of the role (no more GPUs, no less bound per GPU) is dropped, and the
``keep`` best bounds per GPU go on to simulation. The score is the goodput of one instance
(:func:`planner.perf.goodput`), capped by the bound (a short probe cannot saturate an instance that
holds every request of it at once). Since the bound caps it, the search probes the bound first (a
share of it for aggregated instances, which queue for both limits) and brackets the goodput in
steps of 25 % from there; each probe stops at a certain miss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.inputs import SLO, Workload
from planner.perf import CostModel, Pool, goodput

__all__ = ["Candidate", "PhaseScore", "ROLES", "bound_points", "bound_candidate", "prune", "score", "probe_at"]

ROLES = ("prefill", "decode", "both")
#: first rate probed, as a share of the bound: prefill and decode instances mostly reach their bound within a
#: probe (the score is then the bound, one simulation); aggregated ones reached 0.4-0.8 of it in the issue's
#: scenarios (benchmarks/deploy.py), queueing for both limits at once
_START_SHARE = {"prefill": 1.0, "decode": 1.0, "both": 0.6}
#: first step of the goodput search's bracketing from that guess (then 1.56, 2, 2, ...)
_GROWTH = 1.25


@dataclass(frozen=True)
class Candidate:
    """One instance layout of one role with its budgets: ``token_budget`` (tokens per step, None:
    unbounded) and ``max_batch_size`` (sequences per step, None: the cost model's)."""

    role: str
    instance: object  # planner.deploy.instances.Instance
    token_budget: int | None
    max_batch_size: int | None
    bound_req_per_s: float = math.inf

    @property
    def num_gpus(self) -> int:
        """GPUs of one instance."""
        return self.instance.num_gpus

    @property
    def label(self) -> str:
        """``tp1pp1dp8ep8 bs256`` (layout and batch cap) or ``tp2pp1`` when uncapped."""
        parts = [self.instance.label]
        if self.max_batch_size is not None:
            parts.append(f"bs{self.max_batch_size}")
        if self.role != "decode" and self.token_budget is not None:
            parts.append(f"tok{self.token_budget}")
        return " ".join(parts)

    def pool(self, cost: CostModel, instances: int = 1) -> Pool:
        """The simulator pool of ``instances`` copies of this candidate."""
        return Pool(cost, instances, phase=self.role, token_budget=self.token_budget,
                    max_batch_size=self.max_batch_size)


@dataclass(frozen=True)
class PhaseScore:
    """A simulated candidate: goodput of one instance (req/s) and the p-th TTFT / TPOT at it."""

    candidate: Candidate
    goodput_req_per_s: float
    ttft_ms: float
    tpot_ms: float
    capped: bool  # the goodput search never failed; the bound was used

    @property
    def per_gpu(self) -> float:
        """Goodput per GPU, req/s/GPU."""
        return self.goodput_req_per_s / self.candidate.num_gpus

    def to_dict(self) -> dict:
        c = self.candidate
        return {"role": c.role, "layout": c.instance.label, "num_gpus": c.num_gpus, "token_budget": c.token_budget,
                "max_batch_size": c.max_batch_size, "goodput_req_per_s": self.goodput_req_per_s,
                "goodput_req_per_s_per_gpu": self.per_gpu, "bound_req_per_s": c.bound_req_per_s,
                "ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms, "bound_used": self.capped,
                "balancedness": c.instance.imbalance.balancedness}


def bound_points(cand: Candidate, mean_input: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two ``(prompts, decode_batch)`` points :func:`bound_candidate` reads: one request per DP group
    (unloaded), and a full batch (the prompts the token budget holds at the mean input, the batch cap)."""
    dp = cand.instance.layout.dp
    prompts = max(dp, min(cand.max_batch_size or 10**9, int((cand.token_budget or mean_input * dp) // max(mean_input, 1))))
    return (dp, dp), (prompts, cand.max_batch_size or 256 * dp)


def bound_candidate(cand: Candidate, cost_times, slo: SLO, mean_input: float, mean_output: float) -> Candidate | None:
    """``cand`` with its throughput bound, or None when its unloaded latency misses the limit.

    ``cost_times(prompts, decode_batch)`` returns ``(prefill_s of prompts prompts, decode_step_s of
    decode_batch sequences)`` at the workload's mean lengths.
    """
    inst = cand.instance
    unloaded, (prompts, batch) = bound_points(cand, mean_input)
    one_p, one_d = cost_times(*unloaded)  # one request per DP group, unloaded
    full_p, full_d = cost_times(prompts, batch)
    prefill_rate = prompts / full_p
    decode_rate = batch / (full_d * max(mean_output - 1, 1))
    if cand.role == "prefill":
        if one_p * 1e3 > slo.ttft_ms:
            return None
        bound = prefill_rate
    elif cand.role == "decode":
        if one_d * 1e3 > slo.tpot_ms:
            return None
        # the batch the TPOT limit allows: the step time grows about linearly in the batch
        allowed = batch if full_d * 1e3 <= slo.tpot_ms else max(1.0, batch * (slo.tpot_ms / 1e3 - one_d) / (full_d - one_d))
        bound = min(batch, allowed) / (min(full_d, slo.tpot_ms / 1e3) * max(mean_output - 1, 1))
    else:
        if one_p * 1e3 > slo.ttft_ms or one_d * 1e3 > slo.tpot_ms:
            return None
        bound = 1.0 / (1.0 / prefill_rate + 1.0 / decode_rate)
    return Candidate(cand.role, inst, cand.token_budget, cand.max_batch_size, float(bound))


def prune(cands: list[Candidate], keep: int | None) -> list[Candidate]:
    """Drop candidates dominated within their role (no fewer GPUs and no more bound per GPU than another,
    one strictly), then keep the ``keep`` best bounds per GPU (ties: fewer GPUs). ``keep=None``: every
    candidate, in the same order (the wide search: nothing dropped)."""
    order = lambda c: (-c.bound_req_per_s / c.num_gpus, c.num_gpus, c.label)  # noqa: E731
    if keep is None:
        return sorted(cands, key=order)
    out = []
    for c in cands:
        dominated = any(o is not c and o.num_gpus <= c.num_gpus and o.bound_req_per_s >= c.bound_req_per_s
                        and (o.num_gpus < c.num_gpus or o.bound_req_per_s > c.bound_req_per_s) for o in cands)
        if not dominated:
            out.append(c)
    out.sort(key=order)
    return out[:keep]


def probe_at(result, rate: float):
    """The probe of a goodput search at ``rate`` (the last one there)."""
    return [p for p in result.probes if p.rate_req_per_s == rate][-1]


def score(cand: Candidate, cost: CostModel, workload: Workload, slo: SLO, *, arrivals: str, seed: int,
          rel_tol: float) -> PhaseScore:
    """Goodput of one instance of ``cand`` in its role alone (module docstring)."""
    role_slo = {"prefill": SLO(slo.ttft_ms, math.inf, slo.attainment_target, slo.rule),
                "decode": SLO(math.inf, slo.tpot_ms, slo.attainment_target, slo.rule),
                "both": slo}[cand.role]
    bound = cand.bound_req_per_s
    if math.isfinite(bound):  # the bound caps the score: probe it first, then come down in small steps
        kw = dict(rate_req_per_s=bound * _START_SHARE[cand.role], max_rate_req_per_s=bound, growth=_GROWTH)
    else:
        kw = {}
    g = goodput(workload, cand.pool(cost), role_slo, arrivals=arrivals, rel_tol=rel_tol, seed=seed, max_probes=14,
                stop_early=True, **kw)
    rate, capped = g.rate_req_per_s, False
    if not math.isfinite(g.upper_req_per_s) or rate > bound:
        rate, capped = min(rate, bound), True
    if g.rate_req_per_s > 0:
        p = probe_at(g, g.rate_req_per_s)
        ttft, tpot = p.ttft_ms_percentile, p.tpot_ms_percentile
    else:
        ttft = tpot = math.nan
    return PhaseScore(cand, float(rate), float(ttft), float(tpot), capped)
