"""Where the runtime's weights and tokens come from: a Hugging Face MoE or random layers.

A *source* is ``(layers, tokens, label)`` for :func:`planner.runtime.workers.serve_layers` and
:func:`planner.runtime.apply.apply_plan`:

- a tiny built-in Hugging Face MoE by name (``planner.runtime.hf.TINY_MODELS``) or a local model
  directory: the model runs once on a seeded token stream, its MoE blocks become
  :class:`~planner.runtime.moe.MoELayer` s (router options and shared experts included), and
  ``tokens`` are the hidden states each block received, ``[L, T, H]`` -- every layer is served on
  its own real input, so the routing the workers see is the model's own;
- ``"synthetic"``: a residual stack of random layers with the plan's expert count and the model
  profile's top-k, small hidden sizes, fed seeded normal tokens ``[T, H]``.

torch and transformers are imported inside the functions (house rule).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from planner.errors import InputError

__all__ = ["SYNTHETIC", "is_runnable", "load_source", "single_thread"]

#: the model name that builds random layers shaped like a plan's experts
SYNTHETIC = "synthetic"


def load_source(name: str, *, num_experts: int | None = None, top_k: int | None = None, num_layers: int | None = None,
                num_tokens: int = 2048, seed: int = 0, hidden: int = 64, intermediate: int = 128,
                token_seed: int | None = None, batch_tokens: int = 2048, built=None):
    """``(layers, tokens, layer_ids, label)`` of a source (module docstring).

    ``num_experts`` / ``top_k`` / ``num_layers`` shape the synthetic layers (ignored for a model);
    ``layer_ids`` are the hidden-layer indices of the MoE layers (``0..L-1`` for synthetic).
    ``seed`` draws synthetic weights; ``token_seed`` (default ``seed + 1``) the token stream, so one
    model can serve several streams. A model runs on :func:`planner.runtime.hf.token_stream`'s
    batches of ``batch_tokens`` (what ``moeplan collect`` uses by default: the same seed gives the
    same tokens and routing as a collect run). ``built``: the model ``name`` already built by
    :func:`planner.runtime.hf.load_model`, reused (several streams of one model without rebuilding it).
    """
    token_seed = seed + 1 if token_seed is None else token_seed
    if not isinstance(num_tokens, int) or num_tokens < 1:
        raise InputError(f"must be an integer >= 1, got {num_tokens!r}", param="num_tokens")
    if name == SYNTHETIC:
        from planner.runtime.moe import make_layers, random_tokens

        if not (num_experts and top_k and num_layers):
            raise InputError("'synthetic' needs the experts, top-k and layer count (from a plan)", param="model")
        layers = make_layers(num_layers, hidden, intermediate, num_experts, top_k, seed=seed)
        return (layers, random_tokens(num_tokens, hidden, seed=token_seed), list(range(num_layers)),
                f"synthetic {num_layers} layer(s) x {num_experts} experts, hidden {hidden}")
    from planner.runtime import hf

    with single_thread():
        model = hf.load_model(name) if built is None else built
        layers = hf.moe_layers(model)
        batch = min(batch_tokens, int(getattr(model.config, "max_position_embeddings", batch_tokens) or batch_tokens))
        records = [hf.moe_block_io(model, ids) for ids in hf.token_stream(model, num_tokens, batch_tokens=batch, seed=token_seed)]
    inputs = np.stack([np.concatenate([rec[row].inputs.numpy() for rec in records]) for row in range(len(layers))])
    return layers, inputs, [io.layer for io in records[0]], (
        f"{name} ({len(layers)} MoE layers, inputs captured from its own forward on {num_tokens} tokens, stream seed {token_seed})")


@contextlib.contextmanager
def single_thread():
    """torch on one intra-op thread inside the block, restored after. The models here are tiny and
    the hosts small: with other processes on the cores (workers, a test run), torch's default
    OpenMP threads spin-wait against them -- building qwen3-moe-tiny took 83 s with the default
    threads on a loaded 2-core host and 10 s with one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def is_runnable(name: str) -> bool:
    """Whether :func:`load_source` can run ``name`` without being told the plan's shape: a built-in
    tiny model or a local model directory (``synthetic`` needs the plan)."""
    from planner.runtime.hf import TINY_MODELS

    return str(name).lower() in TINY_MODELS or Path(name).is_dir()
