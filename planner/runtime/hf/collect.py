r"""Expert loads of a Hugging Face MoE model, counted by hooks on its routers.

:func:`token_stream` makes seeded input ids; :func:`collect_loads` runs the model over them and
counts the expert ids every router chooses (a forward hook on every module whose class name ends
in ``Router``: ``mlp.gate`` in Mixtral/Qwen3-MoE/OLMoE/DeepSeek-V3, ``mlp.router`` in gpt-oss),
giving :class:`~planner.inputs.loads.ExpertLoads` with one step per batch, rows indexed by hidden
layer (DeepSeek's dense layer 0 has no row).

Token stream
------------
Ids follow Zipf's law, ``P(rank r) ~ 1 / r`` (exponent 1: Zipf 1949, reviewed in Piantadosi,
"Zipf's word frequency law in natural language", Psychon. Bull. Rev. 2014, eq. 1) over the whole
vocabulary; which id has which rank is fixed by ``numpy.random.default_rng(0).permutation(vocab)``
(the same "language" for every seed), and ``seed`` draws the sample. Each batch is one sequence
``[1, batch_tokens]`` (the last one may be shorter), as in OLMoE's analysis of 2,048-token
prefill sequences.

The router helpers (:func:`find_routers`, :func:`router_indices`, :func:`as_ids`, :func:`forward_pass`)
are shared with the other modules of :mod:`planner.runtime.hf` (the skew fit, the conversion to
``MoELayer``, model loading), which is why they have public names; the package re-exports only
:func:`token_stream`, :func:`collect_loads` and :func:`moe_layer_ids`.

torch and transformers are imported inside the functions (house rule).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from planner.errors import InputError, RuntimeAdapterError
from planner.inputs.loads import ExpertLoads
from planner.runtime.hf.zoo import model_name

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "token_stream",
    "collect_loads",
    "moe_layer_ids",
    "find_routers",
    "router_indices",
    "as_ids",
    "forward_pass",
]

_VOCAB_SEED = 0
_ZIPF_EXPONENT = 1.0
_LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def token_stream(model, num_tokens: int, *, batch_tokens: int = 2048, seed: int = 0) -> list[torch.Tensor]:
    """Seeded Zipf-distributed input ids, cut into batches ``[1, <= batch_tokens]`` (module docstring).

    Raises
    ------
    InputError
        ``num_tokens`` or ``batch_tokens`` < 1, ``seed`` < 0, or ``batch_tokens`` above the
        model's ``max_position_embeddings``.
    """
    import torch

    for label, value, low in (("tokens", num_tokens, 1), ("batch_tokens", batch_tokens, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InputError(f"{label}: must be an integer >= {low}, got {value!r}")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and batch_tokens > limit:
        raise InputError(f"{batch_tokens} exceeds the model's max_position_embeddings {limit}", param="batch_tokens")
    vocab = int(model.config.vocab_size)
    weights = 1.0 / np.arange(1, vocab + 1, dtype=np.float64) ** _ZIPF_EXPONENT
    ranks = np.random.default_rng(int(seed)).choice(vocab, size=int(num_tokens), p=weights / weights.sum())
    ids = np.random.default_rng(_VOCAB_SEED).permutation(vocab)[ranks].astype(np.int64)
    return [torch.from_numpy(ids[i:i + batch_tokens].copy())[None, :] for i in range(0, int(num_tokens), int(batch_tokens))]


def find_routers(model) -> list[tuple[int, str, Any]]:
    """``(hidden layer, module name, module)`` of every router of ``model``, in layer order: the
    modules whose class name ends in ``Router``, under a ``layers.<i>`` module (module docstring).

    Raises
    ------
    InputError
        A router outside ``layers.<i>``, or two routers in one hidden layer.
    """
    found = []
    for name, module in model.named_modules():
        if not type(module).__name__.endswith("Router"):
            continue
        match = _LAYER_RE.search(f".{name}.")
        if match is None:
            raise InputError(f"router module {name!r} ({type(module).__name__}) is not under a 'layers.<i>' module", param="model")
        found.append((int(match.group(1)), name, module))
    found.sort(key=lambda item: item[0])
    layers = [layer for layer, _, _ in found]
    if len(set(layers)) != len(layers):
        raise InputError(f"several router modules in one hidden layer ({[n for _, n, _ in found]})", param="model")
    return found


def moe_layer_ids(model) -> list[int]:
    """Hidden-layer indices that hold a router (DeepSeek-V3 tiny: ``[1, 2, 3]``)."""
    return [layer for layer, _, _ in find_routers(model)]


def router_indices(module, output) -> torch.Tensor:
    """The chosen expert ids ``[T, k]`` in a router's forward ``output`` (``(logits, weights,
    indices)`` in transformers >= 5); RuntimeAdapterError on any other shape of output."""
    if not isinstance(output, (tuple, list)) or len(output) < 3 or not hasattr(output[2], "dtype") or output[2].dtype.is_floating_point:
        raise RuntimeAdapterError(
            f"{type(module).__name__} returned {type(output).__name__}; expected (logits, weights, indices) "
            "as in transformers >= 5"
        )
    return output[2]


def collect_loads(model, ids_batches: Iterable, *, name: str | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  provenance: Mapping[str, str] | None = None) -> ExpertLoads:
    """Count the experts every router chooses, one step per batch.

    Parameters
    ----------
    model : a transformers MoE model (e.g. from :func:`load_model`).
    ids_batches : input ids, each ``[batch, seq]`` or ``[seq]`` (integers); one forward pass and
        one step of the loads each.
    name : the ``model`` field of the loads (default :func:`model_name`).
    progress : called with ``(tokens done, tokens total)`` after every batch.
    provenance : extra provenance fields (the CLI adds the stream's seed and batch size).

    Returns
    -------
    ExpertLoads
        ``counts[step, row, expert]`` = assignments (token x top-k) of the batch; ``layer_ids`` the
        hidden layers holding routers; provenance ``source`` "moeplan collect", ``model``,
        ``tokens``, ``steps``, ``top_k``, ``date`` (UTC), torch and transformers versions.

    Raises
    ------
    InputError
        No batches, a batch that is not integer ids, or a model without routers.
    RuntimeAdapterError
        A router returned something else than ``(logits, weights, indices)``, or a layer's counts
        of a batch do not sum to tokens x top_k.
    """
    import torch
    import transformers

    routers = find_routers(model)
    if not routers:
        raise InputError(f"{model_name(model)}: no router module (class name ending in 'Router'); not an MoE model", param="model")
    batches = [as_ids(b, i) for i, b in enumerate(ids_batches)]
    if not batches:
        raise InputError("no batches given", param="ids_batches")
    total = sum(int(b.numel()) for b in batches)
    num_experts: dict[int, int] = {}
    top_k: dict[int, int] = {}
    step_counts: dict[int, torch.Tensor] = {}

    def make_hook(layer: int):
        def hook(module, args, output):
            idx = router_indices(module, output)
            experts = int(output[0].shape[-1])
            num_experts.setdefault(layer, experts)
            top_k.setdefault(layer, int(idx.shape[-1]))
            counts = torch.bincount(idx.reshape(-1).to(torch.int64), minlength=experts)
            step_counts[layer] = step_counts.get(layer, 0) + counts

        return hook

    handles = [module.register_forward_hook(make_hook(layer)) for layer, _, module in routers]
    rows: list[np.ndarray] = []
    done = 0
    try:
        for step, ids in enumerate(batches):
            step_counts.clear()
            with torch.no_grad():
                forward_pass(model, ids)
            tokens = int(ids.numel())
            row = []
            for layer, module_name, _ in routers:
                if layer not in step_counts:
                    raise RuntimeAdapterError(f"router {module_name} did not run in the forward pass of batch {step}")
                counts = step_counts[layer].numpy()
                if int(counts.sum()) != tokens * top_k[layer]:
                    raise RuntimeAdapterError(
                        f"router {module_name}: batch {step} counts sum to {int(counts.sum())}, expected {tokens} tokens x "
                        f"top-{top_k[layer]} = {tokens * top_k[layer]}"
                    )
                row.append(counts)
            if len({c.size for c in row}) != 1:
                raise RuntimeAdapterError(f"routers have different expert counts: {sorted(num_experts.values())}")
            rows.append(np.stack(row))
            done += tokens
            if progress is not None:
                progress(done, total)
    finally:
        for h in handles:
            h.remove()
    loads_model = name or model_name(model)
    ks = sorted(set(top_k.values()))
    prov = {
        "source": "moeplan collect",
        "model": loads_model,
        "tokens": str(total),
        "steps": str(len(batches)),
        "top_k": ",".join(str(k) for k in ks),
        "date": _dt.datetime.now(_dt.timezone.utc).date().isoformat(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    prov.update({str(k): str(v) for k, v in (provenance or {}).items()})
    return ExpertLoads(np.stack(rows), [layer for layer, _, _ in routers], loads_model, "moeplan collect", prov)


def as_ids(batch, index: int):
    """``batch`` as an int64 tensor ``[batch, seq]`` (a ``[seq]`` gets a batch axis); InputError
    names ``ids_batches[index]`` when it is not non-empty integer ids."""
    import torch

    ids = torch.as_tensor(batch)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dtype.is_complex:
        raise InputError(f"ids_batches[{index}]: expected integer token ids, got dtype {ids.dtype}")
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.numel() == 0:
        raise InputError(f"ids_batches[{index}]: expected a non-empty [batch, seq] array, got shape {list(ids.shape)}")
    return ids.to(torch.int64)


def forward_pass(model, ids) -> None:
    """One forward pass without KV cache, computing the LM head for the last position only."""
    try:
        model(ids, use_cache=False, logits_to_keep=1)
    except TypeError as exc:  # a model class without logits_to_keep
        if "logits_to_keep" not in str(exc):
            raise
        model(ids, use_cache=False)
