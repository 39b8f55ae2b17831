"""The one numerical tolerance moeplan uses to compare recomputed metrics with recorded ones."""

from __future__ import annotations

import math

__all__ = ["REL_TOL", "ABS_TOL", "close", "round_float", "usd_per_million_tokens"]

#: relative tolerance between a recorded metric and its recomputation
REL_TOL = 1e-6
#: absolute floor for values near zero
ABS_TOL = 1e-9
#: significant digits kept when floats are written to plan files (deterministic, readable)
_SIG_DIGITS = 12


def close(a: float, b: float) -> bool:
    """True when two metrics agree within the house tolerance.

    >>> close(0.1 + 0.2, 0.3)
    True
    >>> close(1.0, 1.001)
    False
    """
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def round_float(x: float) -> float:
    """Round to 12 significant digits so plan files stay short and stable across platforms.

    >>> round_float(0.1 + 0.2)
    0.3
    """
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{_SIG_DIGITS}g}")


def usd_per_million_tokens(usd_per_hour: float | None, tokens_per_s: float) -> float | None:
    """Cost of a million tokens at a steady rate: ``usd_per_hour / (tokens_per_s * 3600) * 1e6``
    (None without a price or a rate). The one formula for every table that prices tokens.

    >>> round(usd_per_million_tokens(3.78 * 8, 10_000), 4)
    0.84
    """
    if usd_per_hour is None or not tokens_per_s > 0:
        return None
    return usd_per_hour / (tokens_per_s * 3600.0) * 1e6
