r"""Routers fitted to measured expert loads, so a tiny model's load skew is a real model's.

Random routers give loads with no relation to any real model. ``qwen3-moe-tiny`` and
``mixtral-tiny`` therefore get their routers fitted, at build time, so that each MoE layer's expert
usage on the built-in token stream matches measured per-layer shares:

* ``qwen3-moe-tiny`` <- OLMoE-1B-7B (``builtin:olmoe-*``), ``mixtral-tiny`` <- Mixtral-8x7B
  (``builtin:mistral-*``): counts shipped in ``planner/data/expert_loads`` (allenai/OLMoE routing
  analysis, snapshot 357454f, Apache-2.0; see ``PROVENANCE.md`` there), summed over the five text
  domains arxiv, book, c4, github and wikipedia (a mixed serving stream).
* The measured layers are 0, 7 and 15; tiny layer ``i`` takes the measured layer nearest in
  relative depth ``i / 3``: OLMoE (16 layers) 0, 7, 7, 15 and Mixtral (32 layers) 0, 7, 15, 15.
* Each layer's target is permuted by ``numpy.random.default_rng(layer).permutation`` so the two
  layers that share a source differ and hot experts are not tied to the measured ids.
* Fit: only the router weight changes. One forward pass over 4,096 tokens (2 sequences of 2,048,
  stream seed :data:`FIT_SEED`, :func:`~planner.runtime.hf.collect.token_stream`) fits each router in a forward pre-hook, in layer order, so later
  layers see the already-fitted earlier ones. The router weight is rescaled to unit logit spread
  and then 100 Adam steps (lr 0.05) minimise KL(target || usage), where usage is the mean over
  tokens of a relaxed top-k membership ``sigmoid((logit - tau) / 0.1)`` with ``tau`` halfway
  between each token's k-th and (k+1)-th logit. The fit runs on one torch thread, so the caller's
  thread count does not change the weights; ``qwen3-moe-tiny`` builds and fits in about 4 s
  (0.7 s per layer), 8.5 s in a fresh process including the imports. Bitwise repeatable on one
  machine; another CPU or BLAS may round differently and so fit slightly other weights.

Measured (hard top-k counts on 8,192 held-out tokens, stream seed 0; ``docs/collect.md`` has all
numbers; ``tests/test_runtime_hf.py`` requires Spearman > 0.8, max/mean > 1.5, KL < 0.03):
``qwen3-moe-tiny`` KL(target || measured) 0.004-0.008 per layer, Spearman 0.85-0.96, max/mean
1.95/2.74/2.81/2.74 against targets 2.10/2.75/2.75/2.73 (unfitted routers: KL 0.16-0.22,
Spearman <= 0.30); ``mixtral-tiny`` KL <= 0.001 against targets of max/mean 1.07-1.18.
``olmoe-tiny`` and ``deepseek-v3-tiny`` keep their random routers (no measured trace of their shape
ships with moeplan): the Zipf stream still makes their loads skewed (max/mean 1.9-2.7), but which
experts are hot is arbitrary, not measured.

torch is imported inside the functions (house rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from planner.errors import InputError, RuntimeAdapterError
from planner.inputs.loads import ExpertLoads
from planner.runtime.hf.collect import find_routers, forward_pass, moe_layer_ids, token_stream
from planner.runtime.hf.zoo import TINY_MODELS, TinySpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["FIT_SEED", "skew_target", "target_shares", "fit_skew", "skew_fit_stats"]

#: seed of the token stream the routers are fitted on (collect's default seed 0 is held out)
FIT_SEED = 12345
_FIT_TOKENS = 4096
_FIT_SEQ = 2048
_FIT_STEPS = 100
_FIT_LR = 0.05
_FIT_TEMPERATURE = 0.1
_DOMAINS = ("arxiv", "book", "c4", "github", "wikipedia")


def skew_target(name: str) -> ExpertLoads | None:
    """The measured loads a built-in model's routers are fitted to (one step, its MoE layer ids), or None.

    Rows are the summed counts of the source layer (five domains), permuted per tiny layer; the
    provenance names the source files.

    >>> skew_target("qwen3-moe-tiny").shape
    (1, 4, 64)
    >>> skew_target("olmoe-tiny") is None
    True
    """
    spec = TINY_MODELS.get(str(name).strip().lower())
    if spec is None:
        raise InputError(f"unknown built-in model {name!r}; known: {', '.join(TINY_MODELS)}", param="model")
    if spec.skew is None:
        return None
    from planner.inputs.readers import builtin_loads

    family, sources = spec.skew
    parts = [builtin_loads(f"{family}-{domain}") for domain in _DOMAINS]
    summed = sum(p.summed() for p in parts)
    first = spec.config.get("first_k_dense_replace", 0)
    layer_ids = list(range(first, spec.config["num_hidden_layers"]))
    rows = []
    for layer, source in zip(layer_ids, sources):
        row = summed[parts[0].layer_ids.index(source)]
        rows.append(row[np.random.default_rng(layer).permutation(row.size)])
    provenance = {
        "source": f"planner/data/expert_loads/{family}-{{{','.join(_DOMAINS)}}}.json summed",
        "model": str(parts[0].model),
        "source_layers": ",".join(str(s) for s in sources),
        "license": str(parts[0].provenance.get("license", "")),
        "note": "row i is the measured layer source_layers[i], permuted by numpy default_rng(layer id)",
    }
    return ExpertLoads(np.array(rows), layer_ids, spec.name, "moeplan skew target", provenance)


def target_shares(spec: TinySpec, model) -> dict[int, np.ndarray]:
    """Per MoE layer of ``model`` (hidden-layer index), the expert usage shares its router is fitted
    to: the rows of :func:`skew_target`, normalised to sum 1."""
    target = skew_target(spec.name)
    ids = moe_layer_ids(model)
    if list(target.layer_ids) != ids:  # a spec that does not match its own config is a bug
        raise RuntimeAdapterError(f"{spec.name}: skew target layers {list(target.layer_ids)} but MoE layers {ids}")
    counts = target.summed()
    return {layer: counts[row] / counts[row].sum() for row, layer in enumerate(ids)}


def fit_skew(model, shares: Mapping[int, np.ndarray]) -> None:
    """Fit every router of ``model`` in place to ``shares`` (:func:`target_shares`), in one forward
    pass over the fit stream (module docstring); only the router weights change."""
    import torch

    ids = torch.cat(token_stream(model, _FIT_TOKENS, batch_tokens=_FIT_SEQ, seed=FIT_SEED))
    threads = torch.get_num_threads()
    handles = []
    for layer, _, router in find_routers(model):
        def pre_hook(module, args, _layer=layer):
            x = args[0].reshape(-1, args[0].shape[-1]).detach().to(torch.float32)
            _fit_router(module, x, shares[_layer])

        handles.append(router.register_forward_pre_hook(pre_hook))
    try:
        # one thread: the same weights whatever the caller's thread count, and no OpenMP spin-waiting
        # when other processes share the cores (measured on 2 busy cores: 85 s with 2 threads, 8 s with 1)
        torch.set_num_threads(1)
        with torch.no_grad():
            forward_pass(model, ids)
    finally:
        torch.set_num_threads(threads)
        for h in handles:
            h.remove()


def _fit_router(router, x: torch.Tensor, shares: np.ndarray) -> None:
    import torch

    k = int(router.top_k)
    q = torch.as_tensor(shares, dtype=torch.float32)
    w0 = router.weight.detach().to(torch.float32)
    w = (w0 / (x @ w0.T).std()).clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=_FIT_LR)
    with torch.enable_grad():
        for _ in range(_FIT_STEPS):
            logits = x @ w.T
            top = logits.topk(k + 1, dim=-1).values
            tau = (0.5 * (top[:, k - 1] + top[:, k])).detach()
            usage = torch.sigmoid((logits - tau[:, None]) / _FIT_TEMPERATURE).mean(dim=0)
            usage = usage / usage.sum()
            loss = (q * (q.log() - usage.clamp_min(1e-12).log())).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        router.weight.copy_(w.detach().to(router.weight.dtype))


def skew_fit_stats(target: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """How close one layer's measured expert counts are to its target counts (docs/collect.md):
    ``kl`` = KL(target || measured) of the normalised shares (measured shares floored at 1e-12),
    ``spearman`` = Spearman rank correlation over the experts, ``max_over_mean`` of ``measured``.

    >>> s = skew_fit_stats(np.array([1.0, 2.0, 3.0]), np.array([10, 20, 30]))
    >>> round(s["kl"], 12), round(s["spearman"], 12), s["max_over_mean"]
    (0.0, 1.0, 1.5)
    """
    from scipy.stats import spearmanr

    t, m = np.asarray(target, dtype=float), np.asarray(measured, dtype=float)
    q, h = t / t.sum(), m / m.sum()
    return {
        "kl": float((q * np.log(q / np.maximum(h, 1e-12))).sum()),
        "spearman": float(spearmanr(t, m).statistic),
        "max_over_mean": float(m.max() / m.mean()),
    }
