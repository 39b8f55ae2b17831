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

from planner.errors import InputError

__all__ = ["SYNTHETIC", "load_source"]

#: the model name that builds random layers shaped like a plan's experts
SYNTHETIC = "synthetic"


def load_source(name: str, *, num_experts: int | None = None, top_k: int | None = None, num_layers: int | None = None,
                num_tokens: int = 2048, seed: int = 0, hidden: int = 64, intermediate: int = 128,
                token_seed: int | None = None):
    """``(layers, tokens, layer_ids, label)`` of a source (module docstring).

    ``num_experts`` / ``top_k`` / ``num_layers`` shape the synthetic layers (ignored for a model);
    ``layer_ids`` are the hidden-layer indices of the MoE layers (``0..L-1`` for synthetic).
    ``seed`` draws synthetic weights; ``token_seed`` (default ``seed + 1``) the token stream, so one
    model can serve several streams.
    """
    token_seed = seed + 1 if token_seed is None else token_seed
    if not isinstance(num_tokens, int) or num_tokens < 1:
        raise InputError(f"tokens: must be an integer >= 1, got {num_tokens!r}")
    if name == SYNTHETIC:
        from planner.runtime.moe import make_layers, random_tokens

        if not (num_experts and top_k and num_layers):
            raise InputError("model: 'synthetic' needs the experts, top-k and layer count (from a plan)")
        layers = make_layers(num_layers, hidden, intermediate, num_experts, top_k, seed=seed)
        return (layers, random_tokens(num_tokens, hidden, seed=token_seed), list(range(num_layers)),
                f"synthetic {num_layers} layer(s) x {num_experts} experts, hidden {hidden}")
    from planner.runtime import hf

    model = hf.load_model(name)
    layers, inputs, layer_ids = hf.runtime_inputs(model, num_tokens, seed=token_seed)
    return layers, inputs, list(layer_ids), f"{name} ({len(layers)} MoE layers, inputs captured from its own forward)"
