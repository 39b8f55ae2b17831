"""Argument checks every layer shares: a number in a range, named in a one-line :class:`InputError`."""

from __future__ import annotations

import math
import numbers

from planner.errors import InputError

__all__ = ["POSITIVE", "check_number"]

#: the ``low`` bound of :func:`check_number` that reads "> 0": the smallest value accepted where zero makes no sense
POSITIVE = 1e-12


def check_number(name: str, value, *, low: float, integer: bool = False, high: float | None = None) -> None:
    """Raise :class:`InputError` unless ``value`` is a finite number (an integer if asked) in ``[low, high]``.

    ``bool`` is refused (it is an ``int`` to Python, never a count or a size here). The message
    names ``name`` and the bound; ``low=POSITIVE`` reads "> 0".

    >>> check_number("batch", 4, low=1, integer=True)
    >>> check_number("batch", 1.5, low=1, integer=True)
    Traceback (most recent call last):
    ...
    planner.errors.InputError: batch must be an integer >= 1, got 1.5
    >>> check_number("memory_utilization", 0, low=POSITIVE, high=1.0)
    Traceback (most recent call last):
    ...
    planner.errors.InputError: memory_utilization must be a number > 0 and <= 1.0, got 0
    """
    ok_type = isinstance(value, numbers.Integral if integer else numbers.Real)
    bad = isinstance(value, bool) or not ok_type or not math.isfinite(value)
    if bad or value < low or (high is not None and value > high):
        bound = "> 0" if low == POSITIVE else f">= {low}"
        bound += f" and <= {high}" if high is not None else ""
        raise InputError(f"{name} must be {'an integer' if integer else 'a number'} {bound}, got {value!r}")
