"""Per-instance sustainable rate of each GPU type on each request-size bucket, from moeplan's own model.

Mélange measures, per GPU type and bucket, the highest request rate one GPU serves within the SLO
(Poisson arrivals, fixed request sizes; ``docs/fleet.md``). moeplan computes the same figure with its
latency model and serving simulator instead of a GPU:

1. **the serving unit** of a GPU type is the smallest instance (1, 2, 4, ... GPUs: within one node
   ``pp = 1``; beyond, one pipeline stage per node, ``pp = n / node size``, as ``planner.deploy`` spans
   nodes) on which the model's weights fit with KV room for the workload's longest request
   (:func:`planner.perf.latency_model_cost` applies the memory model); when no instance up to
   ``max_instance_gpus`` holds the longest request, the smallest one that holds the weights serves the
   buckets whose requests fit its KV cache. Candidate layouts at that size: attention TP over a stage's
   GPUs (``tp s, ep s``) and, for MoE models, DP attention (``tp 1, dp s, ep s``); the one with the
   smaller load for the whole workload (``sum_b rate_b / capacity_b``) is the unit. Its price is
   ``gpus x`` the GPU's price;
2. **the capacity** of the unit on a bucket is the goodput (:func:`planner.perf.goodput`) of one
   aggregated instance (chunked prefill, token budget 2,048 and at most 128 sequences per DP rank:
   the aggregated settings of ``planner.deploy``, ``docs/deploy.md``) on Poisson arrivals of requests of
   the bucket's mean prompt and output lengths, within both the TTFT and the TPOT limit. A bucket whose
   longest request does not fit the instance's KV cache, or whose SLO is missed even unloaded, has
   capacity 0 (that type does not serve it).

MoE balancedness is 1 (even routing) unless given: the covering program compares GPU types, and a
balancedness below 1 slows every type's MoE layers alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from planner.cluster.fleet_buckets import Bucket
from planner.errors import Infeasible, InputError
from planner.inputs import SLO, poisson_workload
from planner.perf import ParallelLayout, Pool, goodput, latency_model_cost, simulate
from planner.profiles import GpuSpec, ModelArch, Precision

__all__ = ["UnitRates", "unit_rates", "TOKENS_PER_RANK", "BATCH_PER_RANK"]

#: token budget per step and sequences per step of one aggregated DP rank (planner.deploy's aggregated grid)
TOKENS_PER_RANK = 2048
BATCH_PER_RANK = 128
_SIZES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class UnitRates:
    """The serving unit of one GPU type and its capacity (req/s per instance) on each bucket."""

    gpu: str
    layout: str
    gpus_per_instance: int
    kv_capacity_tokens: int
    capacity_req_per_s: tuple[float, ...]
    note: str = ""


def _layouts(arch: ModelArch, n: int, node: int) -> list[ParallelLayout]:
    if n > node and n % node:
        return []
    pp = max(1, n // node)
    stage = n // pp
    out = [ParallelLayout(tp=stage, pp=pp, ep=stage)]
    if arch.num_routed_experts > 1 and stage > 1:
        out.append(ParallelLayout(tp=1, dp=stage, pp=pp, ep=stage))
    good = []
    for lay in out:
        try:
            lay.validate(arch)
        except InputError:
            continue
        good.append(lay)
    return good


def _cost(arch, spec, lay, precision, balancedness, max_context):
    dp = lay.dp
    return latency_model_cost(arch, spec, lay, balancedness=balancedness, precision=precision,
                              max_batch_size=BATCH_PER_RANK * dp,
                              max_context_tokens=1 << max(5, math.ceil(math.log2(max(max_context, 32)))),
                              memory_options={"max_batch_tokens": TOKENS_PER_RANK * dp})


def _capacity(cost, lay, bucket: Bucket, slo: SLO, num_requests: int, seed: int) -> float:
    if bucket.max_context_tokens > cost.kv_capacity_tokens:
        return 0.0
    w = poisson_workload(1.0, num_requests, input_tokens=max(1, round(bucket.input_tokens_mean)),
                         output_tokens=max(1, round(bucket.output_tokens_mean)), seed=seed)
    pool = Pool(cost, 1, phase="both", token_budget=TOKENS_PER_RANK * lay.dp, max_batch_size=BATCH_PER_RANK * lay.dp)
    # the rate the instance sustains: every request at once, served at full batch (a finite probe at a
    # higher rate only absorbs a burst it could not keep up with)
    sat = simulate(w.with_rate(1e9), pool)
    served = ~sat.rejected
    steady = float(served.sum() / (sat.finish_s[served].max() - sat.arrival_s.min()))
    g = goodput(w, pool, slo, arrivals="trace", rate_req_per_s=steady / 2, rel_tol=0.05, stop_early=True,
                max_probes=24, seed=seed, max_rate_req_per_s=steady)
    return float(min(g.rate_req_per_s, steady))


def _load(caps: Sequence[float], buckets: Sequence[Bucket]) -> float:
    """Instances' worth of work of the whole workload on one type alone (inf if a bucket cannot be served)."""
    return sum(b.rate_req_per_s / c if c > 0 else math.inf for b, c in zip(buckets, caps))


def unit_rates(arch: ModelArch, spec: GpuSpec, buckets: Sequence[Bucket], slo: SLO, *, precision: Precision,
               balancedness: float = 1.0, max_instance_gpus: int = 8, num_requests: int = 300, seed: int = 0,
               progress: Callable[[str], None] | None = None) -> UnitRates:
    """The serving unit of ``spec`` for ``arch`` and its capacity on every bucket (module docstring).

    Raises
    ------
    Infeasible
        The weights fit no instance of up to ``max_instance_gpus`` GPUs.
    """
    longest = max(b.max_context_tokens for b in buckets)
    limit = max_instance_gpus
    fallback, why = None, ""
    for n in (s for s in _SIZES if s <= limit):
        costs = []
        for lay in _layouts(arch, n, spec.gpus_per_node):
            try:
                costs.append((lay, _cost(arch, spec, lay, precision, balancedness, longest)))
            except (Infeasible, InputError) as exc:
                why = str(exc)
                continue
        if not costs:
            continue
        if max(c.kv_capacity_tokens for _, c in costs) < longest and fallback is None:
            fallback = (n, costs)
            continue
        if max(c.kv_capacity_tokens for _, c in costs) >= longest:
            return _best(spec, costs, buckets, slo, num_requests, seed, "", progress)
    if fallback is not None:
        n, costs = fallback
        return _best(spec, costs, buckets, slo, num_requests, seed,
                     f"no instance of <= {limit} GPUs holds the longest request ({longest:,} tokens); {n}-GPU "
                     "instances serve the buckets that fit their KV cache", progress)
    raise Infeasible(f"{arch.id} does not fit on up to {limit} x {spec.id}"
                     + (f": at {limit} GPUs {why}" if why else ""))


def _best(spec, costs, buckets, slo, num_requests, seed, note, progress) -> UnitRates:
    best = None
    for lay, cost in costs:
        caps = tuple(_capacity(cost, lay, b, slo, num_requests, seed) for b in buckets)
        if progress is not None:
            progress(f"{spec.id} {lay.label}: " + ", ".join(f"{c:.3g}" for c in caps) + " req/s per bucket")
        key = _load(caps, buckets)
        if best is None or key < best[0] or (math.isinf(key) and math.isinf(best[0])
                                             and sum(c > 0 for c in caps) > sum(c > 0 for c in best[3])):
            best = (key, lay, cost, caps)
    _, lay, cost, caps = best
    return UnitRates(spec.id, lay.label, lay.num_gpus, int(cost.kv_capacity_tokens), caps, note)
