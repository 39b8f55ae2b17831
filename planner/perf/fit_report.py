"""Fit reports and the least-squares fit shared by every calibration of the latency model.

A fit adjusts the parameters of one group of :class:`~planner.perf.factors.EfficiencyFactors`
(``scipy.optimize.least_squares``, trust-region reflective, with bounds) to minimise log-time
residuals ``log t_model - log t_measured``, i.e. relative error, so a 2 us kernel counts as much as
a 5 ms one (DistServe fits its latency model on relative error too). A report gives, per op
family, ``|t_model / t_measured - 1|``: its median, 90th percentile and the number of points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.optimize import least_squares

from planner.errors import InputError

__all__ = ["FamilyError", "FitReport", "family_errors", "fit_log_time", "fit_parameters"]


@dataclass(frozen=True)
class FamilyError:
    """Relative error of the model on one op family: ``|t_model / t_measured - 1|``."""

    family: str
    n_points: int
    median_rel_error: float
    p90_rel_error: float


@dataclass(frozen=True)
class FitReport:
    """Errors per op family of one set of factors on one set of measurements."""

    gpu: str
    fitted_on: str
    evaluated_on: str
    min_tokens: int
    errors: tuple[FamilyError, ...]

    def error(self, family: str) -> FamilyError:
        """The row of ``family``; InputError if it was not evaluated."""
        for row in self.errors:
            if row.family == family:
                return row
        raise InputError(f"no error row for {family!r}; have {', '.join(r.family for r in self.errors)}")

    def worst(self) -> FamilyError:
        """The family with the largest median error."""
        return max(self.errors, key=lambda r: r.median_rel_error)

    def table(self) -> str:
        """Markdown table: family, points, median and p90 relative error in %."""
        lines = ["| op family | points | median error | p90 error |", "|---|---:|---:|---:|"]
        for r in self.errors:
            lines.append(
                f"| {r.family} | {r.n_points} | {100 * r.median_rel_error:.1f} % | {100 * r.p90_rel_error:.1f} % |"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return asdict(self)


def family_errors(predicted_ms, measured_ms, family) -> tuple[FamilyError, ...]:
    """One :class:`FamilyError` per distinct label of ``family`` (in order of first appearance).

    >>> family_errors([1.1, 2.0], [1.0, 2.0], ["a", "a"])[0].median_rel_error
    0.05
    """
    rel = np.abs(np.asarray(predicted_ms, dtype=np.float64) / np.asarray(measured_ms, dtype=np.float64) - 1.0)
    family = np.asarray(family)
    rows = []
    for name in dict.fromkeys(family.tolist()):
        e = rel[family == name]
        rows.append(FamilyError(str(name), int(e.size), float(np.median(e)), float(np.percentile(e, 90))))
    return tuple(rows)


def fit_parameters(predict, measured_ms, apply, x0, low, high, *, starts=()) -> np.ndarray:
    """The parameter vector ``x`` (within ``low``..``high``) minimising log-time residuals, where
    ``apply(x)`` builds the factors and ``predict(factors)`` gives model times in ms of the rows.
    ``starts``: more starting points (for forms with a ``min`` of two ways); the best fit wins."""
    measured = np.log(np.asarray(measured_ms, dtype=np.float64))
    if measured.size == 0:
        raise InputError("no measurements to fit on")

    def residuals(x):
        return np.log(predict(apply(x))) - measured

    fits = [least_squares(residuals, start, bounds=(low, high), method="trf") for start in (x0, *starts)]
    return min(fits, key=lambda r: r.cost).x


def fit_log_time(predict, measured_ms, base, field: str, build, x0, low, high, *, starts=()):
    """The factor group ``field`` that minimises log-time residuals; ``build(x)`` makes the group
    from a parameter vector, ``predict(factors)`` gives model times in ms of the measured rows."""
    x = fit_parameters(predict, measured_ms, lambda x: replace(base, **{field: build(x)}), x0, low, high,
                       starts=starts)  # fmt: skip
    return build(x)
