"""Synthetic per-step expert loads at DeepSeek scale, for planners that need a time axis.

No reachable public data has per-step loads of a DeepSeek-class model (the OLMoE counts shipped
with moeplan are aggregates), so moeplan's replica benchmarks use this generator; see its parameters below.

Model, per MoE layer ``l`` (independent layers):

1. popularity: ``p[e] ∝ rank(e)^(-s_l)``, ``s_l ~ U[zipf_low, zipf_high]``, ranks randomly permuted
   over the experts;
2. drift: the log-popularity takes a Gaussian random walk, ``log p_t = log p_{t-1} + N(0, drift²)``
   per expert and step (then renormalised); step 0 is the undrifted popularity;
3. counts: step ``t`` draws ``tokens_per_step × top_k`` assignments from ``Multinomial(p_t)``.
   (Real routers pick ``top_k`` *distinct* experts per token; the multinomial ignores that.)

The 0.02/step drift is an assumption, not a measurement: no public per-step trace exists to fit it.
"""

from __future__ import annotations

import json

import numpy as np

from planner.common.limits import check_load_shape
from planner.errors import InputError
from planner.inputs.loads import ExpertLoads

__all__ = ["synthetic_trace", "calibration_stats"]


def synthetic_trace(*, num_steps=400, num_layers=58, num_experts=256, top_k=8, tokens_per_step=8192,
                    zipf_low=0.3, zipf_high=0.85, drift=0.02, first_layer=3, seed=0) -> ExpertLoads:
    """Per-step token-to-expert counts from drifting Zipf popularities (module docstring).

    Parameters
    ----------
    num_steps, num_layers, num_experts : int
        Shape of the trace ``[T, L, E]``; the defaults are DeepSeek-V3/R1's 58 MoE layers of 256
        experts, 400 steps.
    top_k : int, default 8
        Experts per token.
    tokens_per_step : int, default 8192
        Tokens per step; each step holds ``tokens_per_step * top_k`` assignments per layer.
    zipf_low, zipf_high : float, default 0.3, 0.85
        Range of the per-layer Zipf exponent ``s``.
    drift : float, default 0.02
        Standard deviation of the per-step log-space random walk (0 = stationary).
    first_layer : int, default 3
        Hidden-layer id of the first MoE layer (DeepSeek-V3: layers 3..60).
    seed : int, default 0
        Seed of the one ``numpy.random.Generator`` used; same seed, same trace.

    Returns
    -------
    ExpertLoads
        ``model`` None, ``source`` ``"synthetic"``, provenance ``{"source": "moeplan synthetic
        generator", "synthetic": "true", "seed": ..., "params": <JSON>}``.

    Raises
    ------
    InputError
        If a size is not a positive integer or a parameter is out of range.

    Notes
    -----
    With the defaults and seed 0 (:func:`calibration_stats`): the EP32 imbalance
    ``(max - mean) / mean`` without replication is 1.50 on average (per layer 0.29 ... 3.47), against
    TensorRT-LLM's 1.56 for DeepSeek-R1 (per layer 0.5 ... 2.5); the per-layer expert max/mean of the
    aggregate is 3.4 ... 30.7 (median 12.0), against CRAFT's "2.5x to >27x". Seeds 1 and 2 give imbalance means 1.54 and 1.59. The defaults
    therefore match the published figures; only the per-layer imbalance spread is wider (a few
    layers put several hot experts on one rank by chance), so no other preset is provided.
    Time: about 1-1.5 s for the default size (the multinomial draws dominate).

    Examples
    --------
    >>> loads = synthetic_trace(num_steps=3, num_layers=2, num_experts=8, tokens_per_step=16)
    >>> loads.shape, loads.layer_ids, loads.counts.sum(axis=2).tolist()
    ((3, 2, 8), (3, 4), [[128.0, 128.0], [128.0, 128.0], [128.0, 128.0]])
    >>> loads.provenance["synthetic"]
    'true'
    """
    sizes = {"num_steps": num_steps, "num_layers": num_layers, "num_experts": num_experts,
             "top_k": top_k, "tokens_per_step": tokens_per_step}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name}: must be a positive integer, got {value!r}")
    if top_k > num_experts:
        raise InputError(f"must be at most num_experts ({num_experts}), got {top_k}", param="top_k")
    check_load_shape((num_steps, num_layers, num_experts), "synthetic trace")
    if isinstance(first_layer, bool) or not isinstance(first_layer, (int, np.integer)) or first_layer < 0:
        raise InputError(f"must be a non-negative integer, got {first_layer!r}", param="first_layer")
    if not (0 <= zipf_low <= zipf_high) or not np.isfinite(zipf_high):
        raise InputError(f"zipf_low, zipf_high: need 0 <= zipf_low <= zipf_high < inf, got {zipf_low}, {zipf_high}")
    if not (0 <= drift < np.inf):
        raise InputError(f"must be finite and >= 0, got {drift}", param="drift")

    rng = np.random.default_rng(seed)
    # 1. popularity per layer: Zipf-like in rank, ranks shuffled over the experts
    exponent = rng.uniform(zipf_low, zipf_high, size=num_layers)
    ranks = np.argsort(rng.random((num_layers, num_experts)), axis=1) + 1
    log_p = -exponent[:, None] * np.log(ranks)
    # 2. log-space random walk; step 0 undrifted
    steps = rng.normal(0.0, drift, size=(num_steps, num_layers, num_experts))
    steps[0] = 0.0
    log_p = log_p[None] + np.cumsum(steps, axis=0)
    p = np.exp(log_p - log_p.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    # 3. one multinomial draw of tokens x top-k assignments per (step, layer)
    counts = rng.multinomial(int(tokens_per_step) * int(top_k), p)

    params = dict(sizes, zipf_low=float(zipf_low), zipf_high=float(zipf_high), drift=float(drift),
                  first_layer=int(first_layer))
    provenance = {"source": "moeplan synthetic generator", "synthetic": "true", "seed": str(seed),
                  "params": json.dumps(params, sort_keys=True)}
    layer_ids = range(int(first_layer), int(first_layer) + int(num_layers))
    return ExpertLoads(counts, layer_ids, None, "synthetic", provenance)


def calibration_stats(loads: ExpertLoads, *, ep_ranks: int = 32) -> dict:
    """Skew figures to compare a trace with published ones.

    * EP imbalance ``(max - mean) / mean`` of the per-step rank loads when the experts sit on
      ``ep_ranks`` ranks in order (``E / ep_ranks`` consecutive experts per rank, no replication),
      averaged over steps: TensorRT-LLM reports about 1.56 on average at EP32 for DeepSeek-R1,
      0.5-2.5 per layer (``examples/ep_load_balancer``, ``report_load_statistics.py``);
    * expert max/mean of each layer's summed loads: CRAFT reports about 2.5x to more than 27x
      across DeepSeek-R1's layers.

    Parameters
    ----------
    loads : ExpertLoads
    ep_ranks : int, default 32
        Must divide the number of experts.

    Returns
    -------
    dict
        ``ep_ranks``, ``imbalance_mean``, ``imbalance_layer_min``, ``imbalance_layer_max``,
        ``expert_max_over_mean_min``, ``expert_max_over_mean_median``, ``expert_max_over_mean_max``.

    Raises
    ------
    InputError
        If `ep_ranks` does not divide the number of experts.

    Examples
    --------
    >>> stats = calibration_stats(ExpertLoads([[[4, 0, 2, 2]]]), ep_ranks=2)
    >>> stats["imbalance_mean"], stats["expert_max_over_mean_max"]
    (0.0, 2.0)
    """
    experts = loads.num_experts
    if isinstance(ep_ranks, bool) or not isinstance(ep_ranks, (int, np.integer)) or ep_ranks < 1 or experts % ep_ranks:
        raise InputError(f"must be a positive divisor of the {experts} experts, got {ep_ranks!r}", param="ep_ranks")
    rank_load = loads.counts.reshape(loads.num_steps, loads.num_layers, ep_ranks, -1).sum(axis=3)
    mean = rank_load.mean(axis=2)
    gap = np.divide(rank_load.max(axis=2) - mean, mean, out=np.zeros_like(mean), where=mean > 0)
    per_layer = gap.mean(axis=0)
    summed = loads.summed()
    expert_mean = summed.mean(axis=1)
    ratio = np.divide(summed.max(axis=1), expert_mean, out=np.ones_like(expert_mean), where=expert_mean > 0)
    return {
        "ep_ranks": int(ep_ranks),
        "imbalance_mean": float(per_layer.mean()),
        "imbalance_layer_min": float(per_layer.min()),
        "imbalance_layer_max": float(per_layer.max()),
        "expert_max_over_mean_min": float(ratio.min()),
        "expert_max_over_mean_median": float(np.median(ratio)),
        "expert_max_over_mean_max": float(ratio.max()),
    }
