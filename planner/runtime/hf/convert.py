"""Each Hugging Face MoE block as a :class:`planner.runtime.moe.MoELayer`, and a record of the blocks' forward.

:func:`moe_layers` converts each HF MoE block into a ``MoELayer`` with the same routing options
and :func:`moe_block_io` records every block's input, output and chosen experts, so tests can
check that the plain torch layer equals the HF block, and the runtime can serve every layer on
its own real input (:mod:`planner.runtime.sources`).

torch is imported inside the functions (house rule).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from planner.errors import InputError
from planner.runtime.hf.collect import as_ids, find_routers, forward_pass, router_indices

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from planner.runtime.moe import MoELayer

__all__ = ["BlockIO", "moe_layers", "moe_block_io"]

# routing options of MoELayer per HF model_type (see planner.runtime.moe)
_SOFTMAX_TYPES = ("qwen3_moe", "olmoe", "mixtral")
_SUPPORTED_TYPES = (*_SOFTMAX_TYPES, "deepseek_v3")


class BlockIO(NamedTuple):
    """One MoE block's recorded forward: hidden layer, input ``[T, H]``, output ``[T, H]``, chosen experts ``[T, k]``."""

    layer: int
    inputs: "torch.Tensor"
    outputs: "torch.Tensor"
    experts: "torch.Tensor"


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
        raise InputError(f"type {model_type!r} has no MoELayer conversion; supported: {', '.join(_SUPPORTED_TYPES)}", param="model")
    act = getattr(cfg, "hidden_act", "silu")
    if act != "silu":
        raise InputError(f"hidden_act {act!r}; MoELayer experts are SwiGLU (silu)", param="model")
    out = []
    for layer, name, router in find_routers(model):
        block = _block(model, name)
        experts = getattr(block, "experts", None)
        if experts is None or not hasattr(experts, "gate_up_proj") or not hasattr(experts, "down_proj"):
            raise InputError(f"layer {layer}: no fused experts.gate_up_proj / down_proj (transformers >= 5 layout)", param="model")
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

    ids = as_ids(ids, 0)
    routers = find_routers(model)
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
            _rec["e"] = router_indices(module, output).detach().clone()

        handles.append(_block(model, name).register_forward_hook(block_hook))
        handles.append(router.register_forward_hook(router_hook))
    try:
        with torch.no_grad():
            forward_pass(model, ids)
    finally:
        for h in handles:
            h.remove()
    return [BlockIO(layer, seen[layer]["x"], seen[layer]["y"], seen[layer]["e"]) for layer, _, _ in routers]
