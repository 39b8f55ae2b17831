r"""Hugging Face MoE models on CPU: built-in tiny models, measured expert loads, and each MoE block
as a :class:`planner.runtime.moe.MoELayer`.

What this module does
---------------------
* :func:`load_model` builds one of four tiny random-weight models of real transformers
  architectures (:data:`TINY_MODELS`), or loads a local directory (``config.json`` + weights) with
  ``AutoModelForCausalLM.from_pretrained`` and no network.
* :func:`token_stream` makes seeded input ids; :func:`collect_loads` runs the model over them and
  counts the expert ids every router chooses (a forward hook on every module whose class name ends
  in ``Router``: ``mlp.gate`` in Mixtral/Qwen3-MoE/OLMoE/DeepSeek-V3, ``mlp.router`` in gpt-oss),
  giving :class:`~planner.inputs.loads.ExpertLoads` with one step per batch, rows indexed by hidden
  layer (DeepSeek's dense layer 0 has no row).
* :func:`moe_layers` converts each HF MoE block into a ``MoELayer`` with the same routing options
  and :func:`moe_block_io` records every block's input, output and chosen experts, so tests can
  check that the plain torch layer equals the HF block.

Tiny models (fp32, 4 layers, vocabulary 1,024, ``experts_implementation="eager"``)
-------------------------------------------------------------------------------------
* ``qwen3-moe-tiny``: Qwen3MoeForCausalLM, hidden 128, 64 experts of width 256, top-8, softmax
  with ``norm_topk_prob``; 25.7 M parameters (103 MB).
* ``mixtral-tiny``: MixtralForCausalLM, hidden 64, 8 experts of width 128, top-2, softmax
  renormalised; 0.97 M parameters.
* ``olmoe-tiny``: OlmoeForCausalLM, hidden 64, 16 experts of width 128, top-2, softmax not
  renormalised; 1.77 M parameters.
* ``deepseek-v3-tiny``: DeepseekV3ForCausalLM, hidden 64, layer 0 dense (``first_k_dense_replace``
  1), 16 routed experts of width 128 in 4 groups (keep 2) + 1 shared, top-2, sigmoid scores with
  ``e_score_correction_bias``, ``routed_scaling_factor`` 2.5; 1.50 M parameters.

``qwen3-moe-tiny`` has OLMoE-1B-7B's expert count and top-k (64, top-8; ``profiles/models/
olmoe-1b-7b.yaml``) with Qwen3's ``norm_topk_prob=True``. Weights come from the transformers
initialiser (normal, std ``initializer_range`` 0.02) under ``torch.manual_seed(0)``, so a name always
gives the same model on one machine. Every attention output projection is then scaled by 0.1:
random-init attention averages almost uniformly over the context, and at full size its output
swamps the 0.02-std token embeddings, so every position's hidden state collapses towards the
running context mean and a router sees the sequence rather than the token. Scaled down, the
residual stream stays token-dominated, as in trained MoE models whose experts specialise by
token id ("vocabulary specialization" in Muennighoff et al., "OLMoE: Open Mixture-of-Experts
Language Models", arXiv:2409.02060). Measured on qwen3-moe-tiny with the fit below: with
full-size o_proj the fitted routers miss held-out streams by KL 0.66-1.44 in layers 1-3 (max/mean
6-8 instead of 2.75); with the 0.1 scale by KL <= 0.01.

Skew fitted to measured loads
-----------------------------
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
  stream seed :data:`FIT_SEED`) fits each router in a forward pre-hook, in layer order, so later
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

Token stream
------------
Ids follow Zipf's law, ``P(rank r) ~ 1 / r`` (exponent 1: Zipf 1949, reviewed in Piantadosi,
"Zipf's word frequency law in natural language", Psychon. Bull. Rev. 2014, eq. 1) over the whole
vocabulary; which id has which rank is fixed by ``numpy.random.default_rng(0).permutation(vocab)``
(the same "language" for every seed), and ``seed`` draws the sample. Each batch is one sequence
``[1, batch_tokens]`` (the last one may be shorter), as in OLMoE's analysis of 2,048-token
prefill sequences.

torch and transformers are imported inside the functions (house rule: importing this module
works without them); :func:`require_runtime` turns their absence into a one-line InputError.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from planner.errors import InputError, RuntimeAdapterError
from planner.inputs.loads import ExpertLoads

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from planner.runtime.moe import MoELayer

__all__ = [
    "TINY_MODELS",
    "TinySpec",
    "BlockIO",
    "FIT_SEED",
    "require_runtime",
    "load_model",
    "model_name",
    "token_stream",
    "collect_loads",
    "skew_target",
    "moe_layer_ids",
    "moe_layers",
    "moe_block_io",
]

#: seed of the token stream the routers are fitted on (collect's default seed 0 is held out)
FIT_SEED = 12345
_WEIGHT_SEED = 0
_VOCAB_SEED = 0
_ZIPF_EXPONENT = 1.0
_FIT_TOKENS = 4096
_FIT_SEQ = 2048
_FIT_STEPS = 100
_FIT_LR = 0.05
_FIT_TEMPERATURE = 0.1
_O_PROJ_SCALE = 0.1
_DOMAINS = ("arxiv", "book", "c4", "github", "wikipedia")
_LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_NAME_ATTR = "_moeplan_name"


@dataclass(frozen=True)
class TinySpec:
    """One built-in tiny model: transformers class names, config keywords and the skew it is fitted to.

    ``skew`` is ``(family, source_layers)``: the built-in loads ``builtin:<family>-<domain>`` summed
    over five domains, and for every MoE layer of the tiny model the measured layer its target
    comes from; ``None`` keeps the random router.
    """

    name: str
    model_class: str
    config_class: str
    config: Mapping[str, Any]
    skew: tuple[str, tuple[int, ...]] | None = None
    notes: str = ""


_COMMON = {
    "vocab_size": 1024,
    "num_hidden_layers": 4,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
}

#: the built-in tiny models by name
TINY_MODELS: dict[str, TinySpec] = {
    spec.name: spec
    for spec in (
        TinySpec(
            "qwen3-moe-tiny", "Qwen3MoeForCausalLM", "Qwen3MoeConfig",
            {**_COMMON, "hidden_size": 128, "intermediate_size": 256, "moe_intermediate_size": 256,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "num_experts": 64,
             "num_experts_per_tok": 8, "norm_topk_prob": True},
            skew=("olmoe", (0, 7, 7, 15)),
            notes="OLMoE's MoE shape (64 experts, top-8) in Qwen3-MoE's architecture",
        ),
        TinySpec(
            "mixtral-tiny", "MixtralForCausalLM", "MixtralConfig",
            {**_COMMON, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16, "num_local_experts": 8, "num_experts_per_tok": 2,
             "sliding_window": None},
            skew=("mistral", (0, 7, 15, 15)),
            notes="Mixtral-8x7B's MoE shape (8 experts, top-2)",
        ),
        TinySpec(
            "olmoe-tiny", "OlmoeForCausalLM", "OlmoeConfig",
            {**_COMMON, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
             "num_key_value_heads": 4, "num_experts": 16, "num_experts_per_tok": 2, "norm_topk_prob": False},
            notes="random router",
        ),
        TinySpec(
            "deepseek-v3-tiny", "DeepseekV3ForCausalLM", "DeepseekV3Config",
            {**_COMMON, "hidden_size": 64, "intermediate_size": 256, "moe_intermediate_size": 128,
             "num_attention_heads": 4, "num_key_value_heads": 4, "n_routed_experts": 16, "n_shared_experts": 1,
             "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2, "first_k_dense_replace": 1,
             "routed_scaling_factor": 2.5, "norm_topk_prob": True, "q_lora_rank": 32, "kv_lora_rank": 32,
             "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16},
            notes="random router; layer 0 dense",
        ),
    )
}

# routing options of MoELayer per HF model_type (see planner.runtime.moe)
_SOFTMAX_TYPES = ("qwen3_moe", "olmoe", "mixtral")
_SUPPORTED_TYPES = (*_SOFTMAX_TYPES, "deepseek_v3")


class BlockIO(NamedTuple):
    """One MoE block's recorded forward: hidden layer, input ``[T, H]``, output ``[T, H]``, chosen experts ``[T, k]``."""

    layer: int
    inputs: "torch.Tensor"
    outputs: "torch.Tensor"
    experts: "torch.Tensor"


# -- runtime requirements ---------------------------------------------------------------------
def require_runtime() -> None:
    """Raise a one-line InputError unless torch and transformers >= 5 can be imported."""
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as exc:
        raise InputError(
            f"Hugging Face models need torch and transformers ({exc.name or 'a module'} is missing): "
            "pip install 'moeplan[runtime]'"
        ) from None
    major = int(str(transformers.__version__).split(".")[0])
    if major < 5:
        raise InputError(
            f"transformers {transformers.__version__} found; moeplan needs >= 5.0 (fused experts, routers "
            "returning (logits, weights, indices)): pip install 'moeplan[runtime]'"
        )


# -- models -----------------------------------------------------------------------------------
def load_model(name_or_dir: str | os.PathLike):
    """A built-in tiny model by name, or a local model directory, in eval mode on CPU (fp32).

    Parameters
    ----------
    name_or_dir : a key of :data:`TINY_MODELS` (case-insensitive), or a directory holding a
        ``config.json`` and weights (``save_pretrained`` layout). Directories are loaded with
        ``HF_HUB_OFFLINE=1`` and ``local_files_only=True``: nothing is downloaded. A built-in name
        wins over a same-named directory; write ``./name`` for the directory.

    Raises
    ------
    InputError
        Unknown name that is no directory, a directory without ``config.json``, weights that
        transformers cannot load, or a model without any router (not an MoE); the message lists
        the built-in names. Also when torch or transformers is missing.
    """
    key = str(name_or_dir).strip()
    known = ", ".join(TINY_MODELS)
    spec = TINY_MODELS.get(key.lower())
    if spec is not None:
        require_runtime()
        return _build_tiny(spec)
    path = Path(key)
    if not key or not path.exists():
        raise InputError(f"model: unknown model {key!r}: neither a built-in tiny model ({known}) nor a directory")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise InputError(f"model: {key}: not a model directory with a config.json (built-in models: {known})")
    require_runtime()
    model = _from_pretrained(path, key)
    if not _routers(model):
        raise InputError(
            f"model: {key}: not an MoE model: no router module (class name ending in 'Router') found "
            f"in {type(model).__name__}; built-in models: {known}"
        )
    setattr(model, _NAME_ATTR, key)
    return model


def model_name(model) -> str:
    """The name a model was loaded by (built-in name or directory), else its class name."""
    return getattr(model, _NAME_ATTR, None) or getattr(model.config, "_name_or_path", "") or type(model).__name__


@contextlib.contextmanager
def _offline():
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _from_pretrained(path: Path, key: str):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"local_files_only": True, "dtype": torch.float32}
    with _offline():
        try:
            try:
                model = AutoModelForCausalLM.from_pretrained(path, experts_implementation="eager", **kwargs)
            except ValueError as exc:  # a model class without selectable expert kernels
                if "experts_implementation" not in str(exc):
                    raise
                model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except Exception as exc:  # whatever transformers raises on a bad directory is an input problem
            raise InputError(f"model: {key}: transformers cannot load it: {_one_line(exc)}") from None
    return model.eval()


def _build_tiny(spec: TinySpec):
    import torch
    import transformers

    config = getattr(transformers, spec.config_class)(**spec.config, experts_implementation="eager")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_WEIGHT_SEED)
        model = getattr(transformers, spec.model_class)(config)
    model = model.to(torch.float32).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(_O_PROJ_SCALE)
    setattr(model, _NAME_ATTR, spec.name)
    if spec.skew is not None:
        _fit_skew(model, _target_shares(spec, model))
    return model


# -- skew fit ---------------------------------------------------------------------------------
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
        raise InputError(f"model: unknown built-in model {name!r}; known: {', '.join(TINY_MODELS)}")
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


def _target_shares(spec: TinySpec, model) -> dict[int, np.ndarray]:
    target = skew_target(spec.name)
    ids = moe_layer_ids(model)
    if list(target.layer_ids) != ids:  # a spec that does not match its own config is a bug
        raise RuntimeAdapterError(f"{spec.name}: skew target layers {list(target.layer_ids)} but MoE layers {ids}")
    counts = target.summed()
    return {layer: counts[row] / counts[row].sum() for row, layer in enumerate(ids)}


def _fit_skew(model, shares: Mapping[int, np.ndarray]) -> None:
    """Fit every router in one forward pass over the fit stream (module docstring)."""
    import torch

    ids = torch.cat(token_stream(model, _FIT_TOKENS, batch_tokens=_FIT_SEQ, seed=FIT_SEED))
    threads = torch.get_num_threads()
    handles = []
    for layer, _, router in _routers(model):
        def pre_hook(module, args, _layer=layer):
            x = args[0].reshape(-1, args[0].shape[-1]).detach().to(torch.float32)
            _fit_router(module, x, shares[_layer])

        handles.append(router.register_forward_pre_hook(pre_hook))
    try:
        # one thread: the same weights whatever the caller's thread count, and no OpenMP spin-waiting
        # when other processes share the cores (measured on 2 busy cores: 85 s with 2 threads, 8 s with 1)
        torch.set_num_threads(1)
        with torch.no_grad():
            _forward(model, ids)
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


def _forward(model, ids) -> None:
    """One forward pass without KV cache, computing the LM head for the last position only."""
    try:
        model(ids, use_cache=False, logits_to_keep=1)
    except TypeError as exc:  # a model class without logits_to_keep
        if "logits_to_keep" not in str(exc):
            raise
        model(ids, use_cache=False)


# -- token stream -----------------------------------------------------------------------------
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
        raise InputError(f"batch_tokens: {batch_tokens} exceeds the model's max_position_embeddings {limit}")
    vocab = int(model.config.vocab_size)
    weights = 1.0 / np.arange(1, vocab + 1, dtype=np.float64) ** _ZIPF_EXPONENT
    ranks = np.random.default_rng(int(seed)).choice(vocab, size=int(num_tokens), p=weights / weights.sum())
    ids = np.random.default_rng(_VOCAB_SEED).permutation(vocab)[ranks].astype(np.int64)
    return [torch.from_numpy(ids[i:i + batch_tokens].copy())[None, :] for i in range(0, int(num_tokens), int(batch_tokens))]


# -- routers and counting ---------------------------------------------------------------------
def _routers(model) -> list[tuple[int, str, Any]]:
    """``(hidden layer, module name, module)`` of every router, in layer order."""
    found = []
    for name, module in model.named_modules():
        if not type(module).__name__.endswith("Router"):
            continue
        match = _LAYER_RE.search(f".{name}.")
        if match is None:
            raise InputError(f"model: router module {name!r} ({type(module).__name__}) is not under a 'layers.<i>' module")
        found.append((int(match.group(1)), name, module))
    found.sort(key=lambda item: item[0])
    layers = [layer for layer, _, _ in found]
    if len(set(layers)) != len(layers):
        raise InputError(f"model: several router modules in one hidden layer ({[n for _, n, _ in found]})")
    return found


def moe_layer_ids(model) -> list[int]:
    """Hidden-layer indices that hold a router (DeepSeek-V3 tiny: ``[1, 2, 3]``)."""
    return [layer for layer, _, _ in _routers(model)]


def _router_indices(module, output) -> torch.Tensor:
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

    routers = _routers(model)
    if not routers:
        raise InputError(f"model: {model_name(model)}: no router module (class name ending in 'Router'); not an MoE model")
    batches = [_as_ids(b, i) for i, b in enumerate(ids_batches)]
    if not batches:
        raise InputError("ids_batches: no batches given")
    total = sum(int(b.numel()) for b in batches)
    num_experts: dict[int, int] = {}
    top_k: dict[int, int] = {}
    step_counts: dict[int, torch.Tensor] = {}

    def make_hook(layer: int):
        def hook(module, args, output):
            idx = _router_indices(module, output)
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
                _forward(model, ids)
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


def _as_ids(batch, index: int):
    import torch

    ids = torch.as_tensor(batch)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dtype.is_complex:
        raise InputError(f"ids_batches[{index}]: expected integer token ids, got dtype {ids.dtype}")
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.numel() == 0:
        raise InputError(f"ids_batches[{index}]: expected a non-empty [batch, seq] array, got shape {list(ids.shape)}")
    return ids.to(torch.int64)


# -- MoE blocks as MoELayer -------------------------------------------------------------------
def _block(model, router_name: str):
    return model.get_submodule(router_name.rsplit(".", 1)[0])


def moe_layers(model) -> list[MoELayer]:
    """Every MoE block of ``model`` as a :class:`MoELayer`, in hidden-layer order (see :func:`moe_layer_ids`).

    Routing per ``config.model_type``: ``qwen3_moe`` / ``olmoe`` softmax, renormalised iff
    ``norm_topk_prob``; ``mixtral`` softmax, renormalised; ``deepseek_v3`` sigmoid with
    ``e_score_correction_bias`` as ``score_bias``, ``n_group`` / ``topk_group`` groups, renormalised
    iff ``norm_topk_prob``, times ``routed_scaling_factor``, and ``shared_experts`` as the shared
    SwiGLU. The fused expert weights are split as transformers does: ``gate_up_proj[e]`` is
    ``[gate; up]`` (``[2I, H]``), ``down_proj[e]`` is ``[H, I]``.

    Raises
    ------
    InputError
        A model type or activation the plain layer does not cover (gpt-oss, Qwen2-MoE's gated shared
        expert, DeepSeek-V2, ...), named with the supported ones.
    """
    from planner.runtime.moe import MoELayer

    cfg = model.config
    model_type = getattr(cfg, "model_type", None)
    if model_type not in _SUPPORTED_TYPES:
        raise InputError(f"model: type {model_type!r} has no MoELayer conversion; supported: {', '.join(_SUPPORTED_TYPES)}")
    act = getattr(cfg, "hidden_act", "silu")
    if act != "silu":
        raise InputError(f"model: hidden_act {act!r}; MoELayer experts are SwiGLU (silu)")
    out = []
    for layer, name, router in _routers(model):
        block = _block(model, name)
        experts = getattr(block, "experts", None)
        if experts is None or not hasattr(experts, "gate_up_proj") or not hasattr(experts, "down_proj"):
            raise InputError(f"model: layer {layer}: no fused experts.gate_up_proj / down_proj (transformers >= 5 layout)")
        gate_up = experts.gate_up_proj.detach().to("cpu", dtype=_f32())
        inter = gate_up.shape[1] // 2
        kwargs: dict[str, Any] = {}
        if model_type in _SOFTMAX_TYPES:
            renorm = True if model_type == "mixtral" else bool(getattr(cfg, "norm_topk_prob", False))
            kwargs["routing"] = {"scoring": "softmax", "renormalize": renorm}
        else:
            kwargs["routing"] = {"scoring": "sigmoid", "renormalize": bool(cfg.norm_topk_prob),
                                 "num_groups": int(cfg.n_group), "topk_groups": int(cfg.topk_group),
                                 "scale": float(cfg.routed_scaling_factor)}
            kwargs["score_bias"] = router.e_score_correction_bias.detach().to(_f32())
            shared = getattr(block, "shared_experts", None)
            if shared is not None:
                kwargs["shared"] = tuple(getattr(shared, p).weight.detach().to(_f32()) for p in ("gate_proj", "up_proj", "down_proj"))
        out.append(MoELayer(router.weight.detach().to(_f32()), gate_up[:, :inter], gate_up[:, inter:],
                            experts.down_proj.detach().to(_f32()), int(router.top_k), **kwargs))
    return out


def _f32():
    import torch

    return torch.float32


def moe_block_io(model, ids) -> list[BlockIO]:
    """Run ``model`` on ``ids`` once and record every MoE block (forward hooks on the ``mlp`` blocks).

    Returns one :class:`BlockIO` per MoE layer in hidden-layer order: the block's input and output
    hidden states flattened to ``[T, H]`` (fp32) and the router's expert ids ``[T, k]``.
    """
    import torch

    ids = _as_ids(ids, 0)
    routers = _routers(model)
    seen: dict[int, dict[str, torch.Tensor]] = {layer: {} for layer, _, _ in routers}
    handles = []
    for layer, name, router in routers:
        rec = seen[layer]

        def block_hook(module, args, output, _rec=rec):
            hidden = args[0]
            y = output[0] if isinstance(output, tuple) else output
            _rec["x"] = hidden.reshape(-1, hidden.shape[-1]).detach().to(torch.float32).clone()
            _rec["y"] = y.reshape(-1, y.shape[-1]).detach().to(torch.float32).clone()

        def router_hook(module, args, output, _rec=rec):
            _rec["e"] = _router_indices(module, output).detach().clone()

        handles.append(_block(model, name).register_forward_hook(block_hook))
        handles.append(router.register_forward_hook(router_hook))
    try:
        with torch.no_grad():
            _forward(model, ids)
    finally:
        for h in handles:
            h.remove()
    return [BlockIO(layer, seen[layer]["x"], seen[layer]["y"], seen[layer]["e"]) for layer, _, _ in routers]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
