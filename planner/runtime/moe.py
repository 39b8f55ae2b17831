r"""A plain torch MoE layer and the single-process reference forward the EP workers must equal.

One layer, fp32, ``T`` tokens of width ``H``, ``E`` experts of intermediate width ``I``, top-``k``::

    router     p = softmax(x W_r^T)                       W_r [E, H], no bias
               (w, e) = topk(p, k);  w <- w / sum_k w     renormalised over the chosen k
    expert e   f_e(x) = (silu(x G_e^T) * (x U_e^T)) D_e^T  G_e, U_e [I, H], D_e [H, I]   (SwiGLU)
    layer      y_t = sum_j w_tj f_{e_tj}(x_t)
    stack      x <- x + y   for every layer in order (a residual stack, no norms)

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

__all__ = ["MoELayer", "make_layers", "random_tokens", "route", "swiglu", "reference_forward"]

_FIELDS = ("router_weight", "gate_proj", "up_proj", "down_proj")


def route(x: torch.Tensor, router_weight: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Router weights ``[T, k]`` (renormalised to sum 1) and expert ids ``[T, k]`` (int64) of tokens ``x``.

    The ids come in ``torch.topk`` order (descending probability); that order is the "top-k
    position" the EP dispatch rules count occurrences in.
    """
    import torch

    probs = torch.softmax(x @ router_weight.T, dim=-1)
    weights, experts = torch.topk(probs, top_k, dim=-1)
    return weights / weights.sum(dim=-1, keepdim=True), experts


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

    Examples
    --------
    >>> layer = MoELayer.random(16, 32, 4, 2, seed=0)
    >>> layer.num_experts, layer.hidden_size, layer.intermediate_size, layer.top_k
    (4, 16, 32, 2)
    >>> tuple(layer(random_tokens(5, 16, seed=1)).shape)
    (5, 16)
    """

    def __init__(self, router_weight, gate_proj, up_proj, down_proj, top_k: int) -> None:
        import torch

        tensors = [torch.as_tensor(t, dtype=torch.float32).contiguous() for t in (router_weight, gate_proj, up_proj, down_proj)]
        r, g, u, d = tensors
        if r.ndim != 2:
            raise InputError(f"router_weight: expected [experts, hidden], got shape {list(r.shape)}")
        E, H = r.shape
        if g.ndim != 3 or g.shape[0] != E or g.shape[2] != H:
            raise InputError(f"gate_proj: expected [{E}, intermediate, {H}], got shape {list(g.shape)}")
        I = g.shape[1]
        if tuple(u.shape) != (E, I, H):
            raise InputError(f"up_proj: expected [{E}, {I}, {H}], got shape {list(u.shape)}")
        if tuple(d.shape) != (E, H, I):
            raise InputError(f"down_proj: expected [{E}, {H}, {I}], got shape {list(d.shape)}")
        if not isinstance(top_k, int) or not 1 <= top_k <= E:
            raise InputError(f"top_k: must be an integer in 1..{E}, got {top_k!r}")
        self.router_weight, self.gate_proj, self.up_proj, self.down_proj = tensors
        self.top_k = top_k

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
        return route(x, self.router_weight, self.top_k)

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
        y = torch.zeros_like(x)
        for e in torch.unique(experts).tolist():
            tok, pos = torch.nonzero(experts == e, as_tuple=True)
            y.index_add_(0, tok, self.expert(e, x[tok]) * weights[tok, pos, None])
        return y, experts

    # pickled as numpy: crosses a spawn boundary as bytes, not as shared-memory tensors
    def __getstate__(self) -> dict:
        state = {name: getattr(self, name).numpy() for name in _FIELDS}
        state["top_k"] = self.top_k
        return state

    def __setstate__(self, state: dict) -> None:
        self.__init__(*(state[name] for name in _FIELDS), state["top_k"])


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
    """Validate a layer stack and its input; returns the layers as a list and the tokens as fp32 numpy."""
    layers = [layers] if isinstance(layers, MoELayer) else list(layers)
    if not layers:
        raise InputError("model_layers: empty; give at least one MoELayer")
    for i, layer in enumerate(layers):
        if not isinstance(layer, MoELayer):
            raise InputError(f"model_layers[{i}]: expected a MoELayer, got {type(layer).__name__}")
        if layer.hidden_size != layers[0].hidden_size:
            raise InputError(f"model_layers[{i}]: hidden size {layer.hidden_size}, but layer 0 has {layers[0].hidden_size}")
    if hasattr(tokens, "detach"):
        tokens = tokens.detach().cpu().numpy()
    x = np.asarray(tokens, dtype=np.float32)
    H = layers[0].hidden_size
    if x.ndim != 2 or x.shape[1] != H or x.shape[0] < 1:
        raise InputError(f"tokens: expected shape [tokens, {H}], got {list(x.shape)}")
    if not np.isfinite(x).all():
        raise InputError("tokens: non-finite values")
    return layers, x


def reference_forward(layers: Sequence[MoELayer], tokens) -> tuple[np.ndarray, np.ndarray]:
    """The unreplicated single-process forward of a layer stack.

    Parameters
    ----------
    layers : the stack, applied in order with a residual (``x <- x + layer(x)``).
    tokens : ``[T, H]`` fp32 hidden states (numpy or torch).

    Returns
    -------
    (outputs, routing)
        ``outputs`` ``[T, H]`` float32, the hidden states after the last layer; ``routing``
        ``[L, T, k]`` int64, the expert ids each layer's router chose for every token (what
        :func:`planner.runtime.workers.predicted_rank_tokens` takes).

    Examples
    --------
    >>> out, routing = reference_forward(make_layers(2, 8, 16, 4, 2), random_tokens(6, 8))
    >>> out.shape, routing.shape
    ((6, 8), (2, 6, 2))
    """
    import torch

    layers, x_np = check_stack(layers, tokens)
    x = torch.from_numpy(x_np.copy())
    routing = []
    with torch.no_grad():
        for layer in layers:
            y, experts = layer.forward_with_routing(x)
            x = x + y
            routing.append(experts.numpy())
    return x.numpy(), np.stack(routing).astype(np.int64)
