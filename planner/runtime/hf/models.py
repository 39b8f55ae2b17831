r"""Hugging Face MoE models on CPU: a built-in tiny model by name, or a local model directory.

:func:`load_model` builds one of four tiny random-weight models of real transformers
architectures (:data:`~planner.runtime.hf.zoo.TINY_MODELS`), or loads a local directory
(``config.json`` + weights) with ``AutoModelForCausalLM.from_pretrained`` and no network.

Weights of a tiny model come from the transformers initialiser (normal, std ``initializer_range``
0.02) under ``torch.manual_seed(0)``, so a name always gives the same model on one machine. Every
attention output projection is then scaled by 0.1: random-init attention averages almost
uniformly over the context, and at full size its output swamps the 0.02-std token embeddings, so
every position's hidden state collapses towards the running context mean and a router sees the
sequence rather than the token. Scaled down, the residual stream stays token-dominated, as in
trained MoE models whose experts specialise by token id ("vocabulary specialization" in
Muennighoff et al., "OLMoE: Open Mixture-of-Experts Language Models", arXiv:2409.02060).
Measured on qwen3-moe-tiny with the skew fit (:mod:`planner.runtime.hf.skew`): with full-size
o_proj the fitted routers miss held-out streams by KL 0.66-1.44 in layers 1-3 (max/mean 6-8
instead of 2.75); with the 0.1 scale by KL <= 0.01.

torch and transformers are imported inside functions (house rule: importing this module works
without them); :func:`require_runtime` turns their absence into a one-line InputError.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from planner.errors import InputError
from planner.runtime.hf.collect import find_routers
from planner.runtime.hf.skew import fit_skew, target_shares
from planner.runtime.hf.zoo import TINY_MODELS, TinySpec, set_model_name

__all__ = ["require_runtime", "load_model"]

_WEIGHT_SEED = 0
_O_PROJ_SCALE = 0.1


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


def load_model(name_or_dir: str | os.PathLike, *, fit_routers: bool = True):
    """A built-in tiny model by name, or a local model directory, in eval mode on CPU (fp32).

    Parameters
    ----------
    name_or_dir : a key of :data:`~planner.runtime.hf.zoo.TINY_MODELS` (case-insensitive), or a directory holding a
        ``config.json`` and weights (``save_pretrained`` layout). Directories are loaded with
        ``HF_HUB_OFFLINE=1`` and ``local_files_only=True``: nothing is downloaded. A built-in name
        wins over a same-named directory; write ``./name`` for the directory.
    fit_routers : for a built-in model with a skew target, fit its routers (the default); False
        keeps the random routers (the "not fitted" comparison of docs/collect.md). Ignored for a
        directory.

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
        return _build_tiny(spec, fit=fit_routers)
    path = Path(key)
    if not key or not path.exists():
        raise InputError(f"unknown model {key!r}: neither a built-in tiny model ({known}) nor a directory", param="model")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise InputError(f"{key}: not a model directory with a config.json (built-in models: {known})", param="model")
    require_runtime()
    model = _from_pretrained(path, key)
    if not find_routers(model):
        raise InputError(
            f"{key}: not an MoE model: no router module (class name ending in 'Router') found "
            f"in {type(model).__name__}; built-in models: {known}", param="model"
        )
    set_model_name(model, key)
    return model


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
            raise InputError(f"{key}: transformers cannot load it: {_one_line(exc)}", param="model") from None
    return model.eval()


def _build_tiny(spec: TinySpec, *, fit: bool = True):
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
    set_model_name(model, spec.name)
    if fit and spec.skew is not None:
        fit_skew(model, target_shares(spec, model))
    return model


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
