"""Names and versions of the solver backends, for SolveReports."""

from __future__ import annotations

import functools

__all__ = ["scipy_highs_version"]


@functools.lru_cache(maxsize=1)
def scipy_highs_version() -> str:
    """``"scipy X (HiGHS a.b.c)"``: the HiGHS build inside scipy that ``milp`` / ``linprog`` use."""
    import scipy

    try:  # private module; only used to label the report
        from scipy.optimize._highspy import _core

        highs = f"{_core.HIGHS_VERSION_MAJOR}.{_core.HIGHS_VERSION_MINOR}.{_core.HIGHS_VERSION_PATCH}"
    except (ImportError, AttributeError):
        highs = "?"
    return f"scipy {scipy.__version__} (HiGHS {highs})"
