"""Greedy fixed-cardinality bin packing (LPT with a cardinality constraint).

Data: a batch of ``R`` rows of ``n`` item weights ``w[r, i]`` and ``m`` packs; ``m`` divides ``n``
and every pack must receive exactly ``c = n / m`` items.

Steps, per row:

1. if ``c == 1`` each item ``i`` goes to pack ``i`` (identity; the weights are not looked at);
2. otherwise visit the items by decreasing weight (stable sort, so among equal weights the lower
   index comes first) and put each into the currently lightest pack that still has room (among
   equally light packs the lowest index), recording the pack and the position inside it.

This is the packer DeepSeek's EPLB uses at two levels (expert groups onto nodes, expert replicas
onto GPUs); it minimises nothing provably, it is a heuristic. The rows are processed together: the
loop runs over the ``n`` positions of the sorted order and each step is vectorised over the rows.
"""

from __future__ import annotations

import numpy as np

__all__ = ["balanced_packing"]


def balanced_packing(weights, num_packs: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack ``n`` items into ``num_packs`` packs of ``n / num_packs`` items each, greedily.

    Parameters
    ----------
    weights : array_like of float, shape (R, n) or (n,)
        Item weights, one row per independent instance (e.g. one row per layer). Must be finite.
    num_packs : int
        Number of packs ``m``; must divide ``n``.

    Returns
    -------
    pack_index : ndarray of int64, same shape as `weights`
        Pack that receives each item.
    rank_in_pack : ndarray of int64, same shape as `weights`
        Position of each item inside its pack (0 for the first item placed there).

    Raises
    ------
    ValueError
        If `num_packs` is not a positive divisor of ``n``, or `weights` is not 1-D/2-D and finite.

    Notes
    -----
    Items are visited by decreasing weight with a *stable* sort, so ties are resolved by item
    index; each item goes to the lightest non-full pack, ties resolved by pack index. When every
    pack receives exactly one item the result is the identity (item ``i`` to pack ``i``), as in the
    reference implementation. Time ``O(R * n * (m + log n))``.

    Examples
    --------
    >>> pack, rank = balanced_packing([[5.0, 1.0, 4.0, 2.0]], 2)
    >>> pack.tolist(), rank.tolist()
    ([[0, 0, 1, 1]], [[0, 1, 0, 1]])
    >>> balanced_packing([3.0, 9.0], 2)[0].tolist()  # one item per pack: identity
    [0, 1]
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim not in (1, 2):
        raise ValueError(f"weights must be 1-D or 2-D, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")
    squeeze = w.ndim == 1
    w = np.atleast_2d(w)
    rows, n = w.shape
    if isinstance(num_packs, bool) or not isinstance(num_packs, (int, np.integer)) or num_packs < 1:
        raise ValueError(f"num_packs must be a positive integer, got {num_packs!r}")
    if n % num_packs != 0:
        raise ValueError(f"num_packs ({num_packs}) must divide the number of items ({n})")
    per_pack = n // num_packs

    if per_pack == 1:
        pack_index = np.broadcast_to(np.arange(n, dtype=np.int64), (rows, n)).copy()
        rank_in_pack = np.zeros((rows, n), dtype=np.int64)
    else:
        pack_index, rank_in_pack = _greedy(w, num_packs, per_pack)
    if squeeze:
        return pack_index[0], rank_in_pack[0]
    return pack_index, rank_in_pack


def _greedy(w: np.ndarray, num_packs: int, per_pack: int) -> tuple[np.ndarray, np.ndarray]:
    rows, n = w.shape
    order = np.argsort(-w, axis=1, kind="stable")
    row = np.arange(rows)
    pack_load = np.zeros((rows, num_packs))
    pack_size = np.zeros((rows, num_packs), dtype=np.int64)
    pack_index = np.empty((rows, n), dtype=np.int64)
    rank_in_pack = np.empty((rows, n), dtype=np.int64)
    for k in range(n):
        item = order[:, k]
        # full packs are hidden behind +inf; argmin returns the lowest index among equal loads
        target = np.where(pack_size < per_pack, pack_load, np.inf).argmin(axis=1)
        pack_index[row, item] = target
        rank_in_pack[row, item] = pack_size[row, target]
        pack_load[row, target] += w[row, item]
        pack_size[row, target] += 1
    return pack_index, rank_in_pack
