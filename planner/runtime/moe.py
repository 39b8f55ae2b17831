r"""A plain torch MoE layer and the single-process reference forward the EP workers must equal.

One layer, fp32, ``T`` tokens of width ``H``, ``E`` experts of intermediate width ``I``, top-``k``::

    router     p = softmax(x W_r^T)  or  sigmoid(x W_r^T)  W_r [E, H], no bias   (``scoring``)
               c = p + b                                   selection score, b [E] (``score_bias``, default 0)
               groups: keep the ``topk_groups`` of ``num_groups`` equal groups with the largest
                       sum of their two best c; the others cannot be chosen  (only if num_groups > 1)
               e = topk(c, k);  w = p[e]                   the weights come from p, not c
               w <- w / sum_k w   if ``renormalize``;  w <- ``scale`` * w
    expert e   f_e(x) = (silu(x G_e^T) * (x U_e^T)) D_e^T  G_e, U_e [I, H], D_e [H, I]   (SwiGLU)
    shared     s(x)   = the same SwiGLU with dense weights on every token (DeepSeek's shared experts; optional)
    layer      y_t = sum_j w_tj f_{e_tj}(x_t) + s(x_t)
    stack      x <- x + y   for every layer in order (a residual stack, no norms)

The router options cover the Hugging Face MoE blocks moeplan converts (``planner.runtime.hf``):
Mixtral (softmax, renormalised), Qwen3-MoE and OLMoE (softmax, ``norm_topk_prob``), DeepSeek-V3
(sigmoid, correction bias, group-limited, ``routed_scaling_factor``, shared experts). The default is
softmax with renormalisation and no shared expert.

Weights are drawn from a seeded ``torch.Generator``, uniform in +-1/sqrt(fan_in) (``nn.Linear``'s
default bound), so a layer is a pure function of its sizes and seed.

torch is imported inside the functions (house rule: importing this module works without torch).
A :class:`MoELayer` pickles its tensors as numpy arrays, so it crosses a ``spawn`` boundary as
plain bytes rather than through torch's shared-memory file descriptors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from planner.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["MoELayer", "make_layers", "random_tokens", "route", "check_routing", "check_stack", "swiglu", "reference_forward",
           "ROUTING_DEFAULTS"]

_FIELDS = ("router_weight", "gate_proj", "up_proj", "down_proj")


#: router options (module docstring) and their defaults
ROUTING_DEFAULTS = {"scoring": "softmax", "renormalize": True, "num_groups": 1, "topk_groups": 1, "scale": 1.0}
SCORINGS = ("softmax", "sigmoid")


def check_routing(routing: dict | None, num_experts: int, top_k: int) -> dict:
    """Router options with defaults filled in; an unknown key or a bad value is an InputError.

    >>> check_routing({"scoring": "sigmoid"}, 8, 2)["renormalize"]
    True
    """
    out = dict(ROUTING_DEFAULTS)
    for key, value in (routing or {}).items():
        if key not in ROUTING_DEFAULTS:
            raise InputError(f"routing.{key}: unknown option; known: {', '.join(ROUTING_DEFAULTS)}")
        out[key] = value
    if out["scoring"] not in SCORINGS:
        raise InputError(f"routing.scoring: must be one of {', '.join(SCORINGS)}, got {out['scoring']!r}")
    out["renormalize"] = bool(out["renormalize"])
    G, KG = out["num_groups"], out["topk_groups"]
    if not isinstance(G, int) or G < 1 or num_experts % G:
        raise InputError(f"routing.num_groups: must be an integer >= 1 dividing {num_experts} experts, got {G!r}")
    if not isinstance(KG, int) or not 1 <= KG <= G or KG * (num_experts // G) < top_k:
        raise InputError(f"routing.topk_groups: must be an integer in 1..{G} whose groups hold >= top_k={top_k} experts, got {KG!r}")
    if G > 1 and num_experts // G < 2:
        raise InputError(f"routing.num_groups: each group needs >= 2 experts (its score is its two best), got {G} groups of {num_experts}")
    out["scale"] = float(out["scale"])
    if not out["scale"] > 0:
        raise InputError(f"routing.scale: must be > 0, got {out['scale']!r}")
    return out


def route(x: torch.Tensor, router_weight: torch.Tensor, top_k: int, routing: dict | None = None,
          score_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Router weights ``[T, k]`` and expert ids ``[T, k]`` (int64) of tokens ``x``.

    ``routing``: options as in the module docstring (``None``: softmax, renormalised); ``score_bias``
    ``[E]`` shifts the selection score only. The ids come in ``torch.topk`` order; that order is the
    "top-k position" the EP dispatch rules count occurrences in.
    """
    import torch

    opts = ROUTING_DEFAULTS if routing is None else routing
    logits = x @ router_weight.T
    probs = torch.softmax(logits, dim=-1) if opts["scoring"] == "softmax" else torch.sigmoid(logits)
    choice = probs if score_bias is None else probs + score_bias
    G = opts["num_groups"]
    if G > 1:
        T, E = choice.shape
        grouped = choice.view(T, G, E // G)
        group_score = grouped.topk(2, dim=-1)[0].sum(dim=-1)
        keep = torch.zeros_like(group_score, dtype=torch.bool)
        keep.scatter_(1, torch.topk(group_score, opts["topk_groups"], dim=-1)[1], True)
        choice = choice.masked_fill(~keep.repeat_interleave(E // G, dim=1), float("-inf"))
    experts = torch.topk(choice, top_k, dim=-1)[1]
    weights = probs.gather(1, experts)
    if opts["renormalize"]:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    if opts["scale"] != 1.0:
        weights = weights * opts["scale"]
    return weights, experts


def swiglu(x: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """One expert's FFN on rows ``x`` ``[n, H]``: ``(silu(x gate^T) * (x up^T)) down^T``."""
    import torch.nn.functional as F

    return (F.silu(x @ gate.T) * (x @ up.T)) @ down.T


class MoELayer:
    """Router + ``E`` SwiGLU experts as stacked fp32 tensors (not an ``nn.Module``: nothing trains it).

    Parameters
    ----------
    router_weight : ``[E, H]``.
    gate_proj, up_proj : ``[E, I, H]``.
    down_proj : ``[E, H, I]``.
    top_k : experts per token, ``1 <= top_k <= E``.
    routing : router options (module docstring; ``None``: softmax, renormalised).
    score_bias : ``[E]`` selection bias (DeepSeek-V3's ``e_score_correction_bias``), or ``None``.
    shared : ``(gate [I_s, H], up [I_s, H], down [H, I_s])`` of a shared expert run on every token, or ``None``.

    Examples
    --------
    >>> layer = MoELayer.random(16, 32, 4, 2, seed=0)
    >>> layer.num_experts, layer.hidden_size, layer.intermediate_size, layer.top_k
    (4, 16, 32, 2)
    >>> tuple(layer(random_tokens(5, 16, seed=1)).shape)
    (5, 16)
    """

    def __init__(self, router_weight, gate_proj, up_proj, down_proj, top_k: int, *, routing: dict | None = None,
                 score_bias=None, shared=None) -> None:
        import torch

        tensors = [torch.as_tensor(t, dtype=torch.float32).contiguous() for t in (router_weight, gate_proj, up_proj, down_proj)]
        r, g, u, d = tensors
        if r.ndim != 2:
            raise InputError(f"expected [experts, hidden], got shape {list(r.shape)}", param="router_weight")
        E, H = r.shape
        if g.ndim != 3 or g.shape[0] != E or g.shape[2] != H:
            raise InputError(f"expected [{E}, intermediate, {H}], got shape {list(g.shape)}", param="gate_proj")
        I = g.shape[1]
        if tuple(u.shape) != (E, I, H):
            raise InputError(f"expected [{E}, {I}, {H}], got shape {list(u.shape)}", param="up_proj")
        if tuple(d.shape) != (E, H, I):
            raise InputError(f"expected [{E}, {H}, {I}], got shape {list(d.shape)}", param="down_proj")
        if not isinstance(top_k, int) or not 1 <= top_k <= E:
            raise InputError(f"must be an integer in 1..{E}, got {top_k!r}", param="top_k")
        self.router_weight, self.gate_proj, self.up_proj, self.down_proj = tensors
        self.top_k = top_k
        self.routing = check_routing(routing, E, top_k)
        self.score_bias = None
        if score_bias is not None:
            self.score_bias = torch.as_tensor(score_bias, dtype=torch.float32).contiguous()
            if tuple(self.score_bias.shape) != (E,):
                raise InputError(f"expected [{E}], got shape {list(self.score_bias.shape)}", param="score_bias")
        self.shared = None
        if shared is not None:
            sg, su, sd = (torch.as_tensor(t, dtype=torch.float32).contiguous() for t in shared)
            if sg.ndim != 2 or sg.shape[1] != H or tuple(su.shape) != tuple(sg.shape) or tuple(sd.shape) != (H, sg.shape[0]):
                raise InputError(f"expected gate/up [I_s, {H}] and down [{H}, I_s], got shapes "
                                 f"{list(sg.shape)}, {list(su.shape)}, {list(sd.shape)}", param="shared")
            self.shared = (sg, su, sd)

    @classmethod
    def random(cls, hidden_size: int, intermediate_size: int, num_experts: int, top_k: int, *, seed: int = 0) -> MoELayer:
        """A layer with seeded weights, uniform in +-1/sqrt(fan_in)."""
        import torch

        for name, v in (("hidden_size", hidden_size), ("intermediate_size", intermediate_size), ("num_experts", num_experts)):
            if not isinstance(v, int) or v < 1:
                raise InputError(f"{name}: must be an integer >= 1, got {v!r}")
        gen = torch.Generator().manual_seed(int(seed))

        def uniform(*shape: int) -> torch.Tensor:
            bound = 1.0 / math.sqrt(shape[-1])
            return (torch.rand(*shape, generator=gen) * 2.0 - 1.0) * bound

        E, H, I = num_experts, hidden_size, intermediate_size
        return cls(uniform(E, H), uniform(E, I, H), uniform(E, I, H), uniform(E, H, I), top_k)

    @property
    def num_experts(self) -> int:
        return int(self.router_weight.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.router_weight.shape[1])

    @property
    def intermediate_size(self) -> int:
        return int(self.gate_proj.shape[1])

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Router weights and expert ids of tokens ``x`` (see :func:`route`)."""
        return route(x, self.router_weight, self.top_k, self.routing, self.score_bias)

    def shared_forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """The shared expert's output on rows ``x``, or ``None`` when the layer has none."""
        return None if self.shared is None else swiglu(x, *self.shared)

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert ``e``'s FFN on rows ``x``."""
        return swiglu(x, self.gate_proj[e], self.up_proj[e], self.down_proj[e])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output ``y`` (without the residual) for tokens ``x`` ``[T, H]``."""
        return self.forward_with_routing(x)[0]

    def forward_with_routing(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, experts)``: the output and the ``[T, k]`` expert ids the router chose (``x`` may be numpy)."""
        import torch

        x = torch.as_tensor(x, dtype=torch.float32)
        weights, experts = self.route(x)
        shared = self.shared_forward(x)
        y = torch.zeros_like(x) if shared is None else shared
        for e in torch.unique(experts).tolist():
            tok, pos = torch.nonzero(experts == e, as_tuple=True)
            y.index_add_(0, tok, self.expert(e, x[tok]) * weights[tok, pos, None])
        return y, experts

    # pickled as numpy: crosses a spawn boundary as bytes, not as shared-memory tensors
    def __getstate__(self) -> dict:
        state = {name: getattr(self, name).numpy() for name in _FIELDS}
        state["top_k"] = self.top_k
        state["routing"] = dict(self.routing)
        state["score_bias"] = None if self.score_bias is None else self.score_bias.numpy()
        state["shared"] = None if self.shared is None else tuple(t.numpy() for t in self.shared)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__init__(*(state[name] for name in _FIELDS), state["top_k"], routing=state.get("routing"),
                      score_bias=state.get("score_bias"), shared=state.get("shared"))


def make_layers(
    num_layers: int, hidden_size: int, intermediate_size: int, num_experts: int, top_k: int, *, seed: int = 0
) -> list[MoELayer]:
    """A stack of ``num_layers`` random layers; layer ``i`` is seeded with ``seed + i``.

    >>> [layer.num_experts for layer in make_layers(2, 8, 16, 4, 1)]
    [4, 4]
    """
    return [MoELayer.random(hidden_size, intermediate_size, num_experts, top_k, seed=seed + i) for i in range(num_layers)]


def random_tokens(num_tokens: int, hidden_size: int, *, seed: int = 0) -> np.ndarray:
    """Standard-normal fp32 hidden states ``[num_tokens, hidden_size]`` (numpy's seeded generator).

    >>> random_tokens(3, 4, seed=0).shape
    (3, 4)
    """
    return np.random.default_rng(seed).standard_normal((num_tokens, hidden_size)).astype(np.float32)


def check_stack(layers: Sequence[MoELayer], tokens) -> tuple[list[MoELayer], np.ndarray]:
    """Validate a layer stack and its input; returns the layers as a list and the tokens as fp32 numpy
    (``[T, H]`` for the stack, or ``[L, T, H]``: each layer's own input, e.g. captured from a model)."""
    layers = [layers] if isinstance(layers, MoELayer) else list(layers)
    if not layers:
        raise InputError("empty; give at least one MoELayer", param="model_layers")
    for i, layer in enumerate(layers):
        if not isinstance(layer, MoELayer):
            raise InputError(f"model_layers[{i}]: expected a MoELayer, got {type(layer).__name__}")
        if layer.hidden_size != layers[0].hidden_size:
            raise InputError(f"model_layers[{i}]: hidden size {layer.hidden_size}, but layer 0 has {layers[0].hidden_size}")
    if hasattr(tokens, "detach"):
        tokens = tokens.detach().cpu().numpy()
    x = np.asarray(tokens, dtype=np.float32)
    H = layers[0].hidden_size
    per_layer = x.ndim == 3 and x.shape[0] == len(layers) and x.shape[2] == H and x.shape[1] >= 1
    if not per_layer and (x.ndim != 2 or x.shape[1] != H or x.shape[0] < 1):
        raise InputError(f"expected shape [tokens, {H}] (a stack's input) or [{len(layers)}, tokens, {H}] "
                         f"(every layer's own input), got {list(x.shape)}", param="tokens")
    if not np.isfinite(x).all():
        raise InputError("non-finite values", param="tokens")
    return layers, x


def reference_forward(layers: Sequence[MoELayer], tokens) -> tuple[np.ndarray, np.ndarray]:
    """The unreplicated single-process forward of a layer stack, or of every layer on its own input.

    Parameters
    ----------
    layers : the stack, applied in order with a residual (``x <- x + layer(x)``).
    tokens : ``[T, H]`` fp32 hidden states (numpy or torch) fed to the stack; or ``[L, T, H]``, layer
        ``l``'s own input (each layer then runs independently: ``x_l + layer_l(x_l)``).

    Returns
    -------
    (outputs, routing)
        ``outputs`` float32: ``[T, H]``, the hidden states after the last layer (stack), or
        ``[L, T, H]``, each layer's ``x_l + y_l`` (per-layer inputs); ``routing`` ``[L, T, k]``
        int64, the expert ids each layer's router chose for every token (what
        :func:`planner.runtime.workers.predicted_rank_tokens` takes).

    Examples
    --------
    >>> out, routing = reference_forward(make_layers(2, 8, 16, 4, 2), random_tokens(6, 8))
    >>> out.shape, routing.shape
    ((6, 8), (2, 6, 2))
    """
    import torch

    layers, x_np = check_stack(layers, tokens)
    per_layer = x_np.ndim == 3
    x = torch.from_numpy(x_np.copy())
    routing, outputs = [], []
    with torch.no_grad():
        for row, layer in enumerate(layers):
            x_in = x[row] if per_layer else x
            y, experts = layer.forward_with_routing(x_in)
            out = x_in + y
            if per_layer:
                outputs.append(out.numpy())
            else:
                x = out
            routing.append(experts.numpy())
    return (np.stack(outputs) if per_layer else x.numpy()), np.stack(routing).astype(np.int64)
