"""Replay scoring: per-step GPU loads and balancedness of a replica layout on a load trace.

Data: loads ``w[t, l, e] >= 0`` for ``T`` steps, ``L`` layers and ``E`` logical experts; a layout
given as two padded arrays over the slots of each layer,

* ``phy2log[l, p]``: logical expert held by slot ``p`` (``-1`` for unused padding at the row end),
* ``slot_gpu[l, p]``: GPU of slot ``p`` in ``0 .. D-1`` (``-1`` exactly where ``phy2log`` is ``-1``),

so layers may have different slot counts ``P_l <= Pmax`` and GPUs different slot counts per layer.

Load model: slot ``p`` of expert ``e`` carries the fraction ``f[l, p]`` of that expert's load,
``f = 1 / c[l, e]`` (even split over its ``c[l, e]`` replicas) unless an explicit split is given.
The load of GPU ``g`` in step ``t`` is ``x[t, l, g] = sum over slots p on g of f[l, p] w[t, l, e(p)]``
and the balancedness of a (step, layer) is ``b[t, l] = mean_g x / max_g x`` (``0 / 0 -> 1``), the
metric of SGLang's ``compute_utilization_rate`` and of CRAFT's replay (Zhao et al., arXiv 2603.28768).

The loads are one batched matrix product per call: the layout is first folded into a routing
matrix ``A[l, e, g] = sum of f over the slots of e on g``, then ``x[:, l] = w[:, l] @ A[l]``.
"""

from __future__ import annotations

import numpy as np

from solvers._checks import check_padded_layout, check_weight

__all__ = [
    "replay_gpu_loads",
    "replay_balancedness",
    "replay_score",
    "contiguous_slot_gpu",
    "gpu_major_layout",
    "busiest_gpu_sum",
]

#: tolerance on the fractions of an explicit split summing to 1 per expert
_SPLIT_ATOL = 1e-9


def replay_gpu_loads(weight, phy2log, slot_gpu, num_gpus: int, *, split=None) -> np.ndarray:
    """Per-step load of every GPU when each expert's load is split over its replicas.

    Parameters
    ----------
    weight : array_like of float, shape (T, L, E) or (L, E)
        Non-negative loads per step (a 2-D array is one step, ``T = 1``).
    phy2log : array_like of int, shape (L, Pmax)
        Expert of each slot, ``-1`` for padding. Every expert must hold at least one slot per layer.
    slot_gpu : array_like of int, shape (L, Pmax)
        GPU of each slot in ``[0, num_gpus)``, ``-1`` exactly on the padding.
    num_gpus : int
        GPUs ``D``.
    split : array_like of float, shape (L, Pmax), optional
        Share of its expert's load that each slot carries; the shares of one expert's slots sum
        to 1. Default: even split, ``1 / replicas``.

    Returns
    -------
    ndarray of float64, shape (T, L, D)

    Raises
    ------
    ValueError
        On a shape mismatch, an expert or GPU id out of range, padding that disagrees between
        the two arrays, an expert without a slot, or a split that does not sum to 1; the message
        names the layer and slot or expert.

    Notes
    -----
    Time ``O(L * Pmax + T * L * E * D)`` (one batched matrix product); no Python loop over steps
    or slots.

    Examples
    --------
    Expert 0 has two replicas (GPUs 0 and 1), expert 1 one (GPU 1):

    >>> replay_gpu_loads([[[8.0, 2.0]], [[4.0, 6.0]]], [[0, 0, 1]], [[0, 1, 1]], 2).tolist()
    [[[4.0, 6.0]], [[2.0, 8.0]]]
    >>> replay_gpu_loads([[8.0, 2.0]], [[0, 0, 1]], [[0, 1, 1]], 2, split=[[0.75, 0.25, 1.0]]).tolist()
    [[[6.0, 4.0]]]
    """
    w = check_weight(weight, "(T, L, E)")
    routing = _routing_matrix(phy2log, slot_gpu, num_gpus, w.shape[2], w.shape[1], split)
    # [L, T, E] @ [L, E, D] -> [L, T, D]; then steps first
    return np.matmul(w.transpose(1, 0, 2), routing).transpose(1, 0, 2)


def replay_balancedness(weight, phy2log, slot_gpu, num_gpus: int, *, split=None) -> np.ndarray:
    """Balancedness ``mean_g / max_g`` of the GPU loads in every step and layer.

    Parameters
    ----------
    weight, phy2log, slot_gpu, num_gpus, split
        As in :func:`replay_gpu_loads`.

    Returns
    -------
    ndarray of float64, shape (T, L)
        In ``(0, 1]``; a (step, layer) without any load counts as 1.

    Examples
    --------
    >>> replay_balancedness([[[8.0, 2.0]], [[0.0, 0.0]]], [[0, 0, 1]], [[0, 1, 1]], 2).tolist()
    [[0.8333333333333334], [1.0]]
    """
    return _balancedness(replay_gpu_loads(weight, phy2log, slot_gpu, num_gpus, split=split))


def replay_score(weight, phy2log, slot_gpu, num_gpus: int, *, split=None) -> float:
    """Replayed balancedness: the mean over steps and layers of :func:`replay_balancedness`.

    Examples
    --------
    >>> replay_score([[[8.0, 2.0]], [[0.0, 0.0]]], [[0, 0, 1]], [[0, 1, 1]], 2)
    0.9166666666666667
    """
    return float(replay_balancedness(weight, phy2log, slot_gpu, num_gpus, split=split).mean())


def contiguous_slot_gpu(num_layers: int, num_slots: int, num_gpus: int) -> np.ndarray:
    """``slot_gpu`` of an engine layout: ``P / D`` consecutive slots per GPU, same in every layer.

    This is how EPLB's and the engines' ``phy2log [L, P]`` is laid out (slot ``p`` on GPU
    ``p // (P / D)``).

    Raises
    ------
    ValueError
        If `num_gpus` does not divide `num_slots`.

    Examples
    --------
    >>> contiguous_slot_gpu(1, 6, 3).tolist()
    [[0, 0, 1, 1, 2, 2]]
    """
    if num_gpus < 1 or num_slots % num_gpus:
        raise ValueError(f"num_gpus ({num_gpus}) must be a positive divisor of num_slots ({num_slots})")
    row = np.arange(num_slots, dtype=np.int64) // (num_slots // num_gpus)
    return np.tile(row, (num_layers, 1))


def busiest_gpu_sum(slot_load, slot_gpu, num_gpus: int) -> float:
    """``sum_t max_g`` of the GPU loads when slot ``s`` carries ``slot_load[t, s]`` on GPU ``slot_gpu[s]``
    (one layer; the objective the exact solvers minimise).

    >>> busiest_gpu_sum(np.array([[2.0, 1.0, 2.0]]), np.array([0, 1, 1]), 2)
    3.0
    """
    loads = np.zeros((slot_load.shape[0], int(num_gpus)))
    np.add.at(loads.T, slot_gpu, slot_load.T)
    return float(loads.max(axis=1).sum())


# -- helpers --------------------------------------------------------------------------------------
def _balancedness(loads: np.ndarray) -> np.ndarray:
    peak = loads.max(axis=-1)
    return np.divide(loads.mean(axis=-1), peak, out=np.ones_like(peak), where=peak > 0)


def _routing_matrix(phy2log, slot_gpu, num_gpus, num_experts, num_layers, split) -> np.ndarray:
    """``A[l, e, g]``: share of expert ``e``'s load that GPU ``g`` carries in layer ``l``."""
    p2l, gpu, counts = check_padded_layout(phy2log, slot_gpu, num_gpus, num_experts, num_layers)
    used = p2l >= 0
    layer = np.broadcast_to(np.arange(num_layers)[:, None], p2l.shape)[used]
    expert = p2l[used]
    if split is None:
        share = 1.0 / counts[layer, expert]
    else:
        f = np.asarray(split, dtype=np.float64)
        if f.shape != p2l.shape:
            raise ValueError(f"split must have the shape of phy2log {p2l.shape}, got {f.shape}")
        share = f[used]
        if not np.all(np.isfinite(share)) or np.any(share < 0):
            raise ValueError("split must be finite and non-negative on the used slots")
        total = np.bincount(layer * num_experts + expert, weights=share, minlength=num_layers * num_experts)
        off = np.argwhere(np.abs(total.reshape(num_layers, num_experts) - 1.0) > _SPLIT_ATOL)
        if off.size:
            bad_layer, e = off[0]
            share_sum = total[bad_layer * num_experts + e]
            raise ValueError(f"split: the shares of expert {e} in layer {bad_layer} sum to {share_sum:g}, not 1")
    flat = (layer * num_experts + expert) * num_gpus + gpu[used]
    size = num_layers * num_experts * num_gpus
    return np.bincount(flat, weights=share, minlength=size).reshape(num_layers, num_experts, num_gpus)


def gpu_major_layout(gpu_of_item, item_expert, experts):
    """Padded phy2log / slot_gpu, slots GPU-major and by expert id within a GPU."""
    pad = np.iinfo(np.int64).max
    key = np.sort(np.where(item_expert >= 0, gpu_of_item * experts + item_expert, pad), axis=1)
    used = key != pad
    return np.where(used, key % experts, -1), np.where(used, key // experts, -1)
