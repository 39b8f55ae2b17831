"""Hugging Face MoE models for the runtime adapter: tiny offline models, router-hook load collection,
HF MoE blocks as :class:`~planner.runtime.moe.MoELayer`. torch and transformers are imported inside
functions only."""

from planner.runtime.hf.models import (
    FIT_SEED,
    TINY_MODELS,
    BlockIO,
    TinySpec,
    collect_loads,
    load_model,
    model_name,
    moe_block_io,
    moe_layer_ids,
    moe_layers,
    require_runtime,
    skew_target,
    token_stream,
)

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
