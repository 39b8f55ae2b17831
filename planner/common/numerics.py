"""The one numerical tolerance moeplan uses to compare recomputed metrics with recorded ones."""

from __future__ import annotations

import math

__all__ = ["REL_TOL", "ABS_TOL", "close", "round_float"]

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
