"""Argument checks shared by the solvers: one-line ValueErrors that name the parameter.

One check per kind: a positive or non-negative integer, a positive number, an integer array, a
float array, a load array (``weight``) and a padded replica layout. Where the solvers word a
check differently, the words that differ are arguments (the parameter's name, the axes of its shape).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "positive_int",
    "non_negative_int",
    "positive_float",
    "int_array",
    "float_array",
    "check_weight",
    "check_padded_layout",
]


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def positive_float(value, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (out > 0.0) or math.isnan(out):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return out


def int_array(value, name: str, shape: tuple) -> np.ndarray:
    """``value`` as a new int64 array of ``shape``: per axis a length, or a name (``"P"``) for an axis
    of any length >= 1.

    >>> int_array([[0, 1]], "phy2log", ("L", "P")).dtype
    dtype('int64')
    >>> int_array([0.0, 1.0], "phy2log", ("P",))
    Traceback (most recent call last):
    ...
    ValueError: phy2log must be an integer array of shape (P,), got float64 (2,)
    >>> int_array([[1, 2, 3]], "capacity", (1, 2))
    Traceback (most recent call last):
    ...
    ValueError: capacity must be an integer array of shape (1, 2), got int64 (1, 3)
    """
    arr = np.asarray(value)
    sizes_ok = all(n >= 1 if isinstance(want, str) else n == want for want, n in zip(shape, arr.shape))
    fits = arr.ndim == len(shape) and sizes_ok
    if not fits or not np.issubdtype(arr.dtype, np.integer):
        text = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{name} must be an integer array of shape {text}, got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64)


def float_array(value, name: str, axes: str) -> np.ndarray:
    """``value`` as a float64 array with the ``axes`` named like ``"(L, E)"``, none of them empty
    (not a copy if it already is one). A leading step axis ``T`` may be left out: an array without
    it is one step and gains a leading axis of length 1.

    >>> float_array([1.0, 2.0], "values", "(T, E)").shape
    (1, 2)
    >>> float_array([1.0, 2.0], "values", "(L, K)")
    Traceback (most recent call last):
    ...
    ValueError: values must have shape (L, K) with no empty axis, got (2,)
    """
    names = [a.strip() for a in axes.strip("()").split(",")]
    one_step = names[0] == "T"
    shape = f"{axes} or ({', '.join(names[1:])}{',' if len(names) == 2 else ''})" if one_step else axes
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array of shape {shape}: {exc}") from None
    if one_step and arr.ndim == len(names) - 1:
        arr = arr[None]
    if arr.ndim != len(names) or 0 in arr.shape:
        raise ValueError(f"{name} must have shape {shape} with no empty axis, got {arr.shape}")
    return arr


def check_weight(weight, axes: str, name: str = "weight") -> np.ndarray:
    """Loads as by :func:`float_array`, finite and non-negative.

    >>> check_weight([[1.0, 2.0]], "(T, L, E)").shape
    (1, 1, 2)
    >>> check_weight([1.0, -2.0], "(T, E)")
    Traceback (most recent call last):
    ...
    ValueError: weight must be finite and non-negative
    >>> check_weight(np.ones((2, 0)), "(L, E)")
    Traceback (most recent call last):
    ...
    ValueError: weight must have shape (L, E) with no empty axis, got (2, 0)
    """
    w = float_array(weight, name, axes)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    return w


def check_padded_layout(phy2log, slot_gpu, num_gpus: int, num_experts: int, num_layers: int):
    """Validated int64 copies of a padded layout (``-1`` on unused slots, in both arrays at the same
    places; :mod:`solvers.replay`) and its replica counts ``[L, E]``; every expert needs a slot."""
    positive_int(num_gpus, "num_gpus")
    p2l = int_array(phy2log, "phy2log", (num_layers, "Pmax"))
    gpu = int_array(slot_gpu, "slot_gpu", ("L", "Pmax"))
    if gpu.shape != p2l.shape:
        raise ValueError(f"slot_gpu must have the shape of phy2log {p2l.shape}, got {gpu.shape}")
    for name, arr, hi in (("phy2log", p2l, num_experts), ("slot_gpu", gpu, num_gpus)):
        bad = np.argwhere((arr < -1) | (arr >= hi))
        if bad.size:
            layer, p = bad[0]
            raise ValueError(f"{name}[{layer}, {p}] = {arr[layer, p]} is outside [0, {hi}) (or -1 for padding)")
    bad = np.argwhere((p2l < 0) != (gpu < 0))
    if bad.size:
        layer, p = bad[0]
        raise ValueError(f"layer {layer} slot {p}: phy2log and slot_gpu disagree on padding (-1)")
    layer = np.broadcast_to(np.arange(num_layers)[:, None], p2l.shape)
    used = p2l >= 0
    counts = np.bincount(
        (layer[used] * num_experts + p2l[used]), minlength=num_layers * num_experts
    ).reshape(num_layers, num_experts)
    missing = np.argwhere(counts == 0)
    if missing.size:
        layer, e = missing[0]
        raise ValueError(f"layer {layer}: expert {e} has no slot, its load would be lost")
    return p2l, gpu, counts
