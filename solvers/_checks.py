"""Argument checks shared by the solvers: one-line ValueErrors that name the parameter."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["positive_int", "non_negative_int", "positive_float"]


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
