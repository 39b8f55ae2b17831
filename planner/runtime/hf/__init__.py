"""Hugging Face MoE models for the runtime adapter, one module per job:

- :mod:`~planner.runtime.hf.zoo` — the built-in tiny models (:data:`TINY_MODELS`, :class:`TinySpec`)
  and the name a model was loaded by;
- :mod:`~planner.runtime.hf.models` — :func:`load_model`: build a tiny model offline, or load a
  local model directory without network;
- :mod:`~planner.runtime.hf.skew` — the measured loads the tiny models' routers are fitted to
  (:func:`skew_target`, :data:`FIT_SEED`) and the fit;
- :mod:`~planner.runtime.hf.collect` — the seeded token stream and expert loads counted by hooks on
  the routers (:func:`collect_loads`);
- :mod:`~planner.runtime.hf.convert` — HF MoE blocks as :class:`~planner.runtime.moe.MoELayer`
  (:func:`moe_layers`) and a record of their forward (:func:`moe_block_io`).

torch and transformers are imported inside functions only.
"""

from planner.runtime.hf.collect import collect_loads, moe_layer_ids, token_stream
from planner.runtime.hf.convert import BlockIO, moe_block_io, moe_layers
from planner.runtime.hf.models import load_model, require_runtime
from planner.runtime.hf.skew import FIT_SEED, skew_target
from planner.runtime.hf.zoo import TINY_MODELS, TinySpec, model_name

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
