"""The outcome of one solver call, kept apart from the solution itself.

Problem status (did we find a solution, is it proven optimal) and the reason the solver stopped
are separate fields, as in PuLP and OR-Tools MathOpt: a time-limited incumbent is ``feasible``,
never ``optimal``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Literal

__all__ = ["SolveReport", "Status", "StopReason", "relative_gap"]

Status = Literal["optimal", "feasible", "infeasible", "error"]
#: why the solver stopped: ``completed`` (ran to the end: exact optimum or heuristic finished),
#: ``time_limit``, ``gap_limit``, ``iteration_limit``, ``infeasible`` or ``error``.
StopReason = Literal["completed", "time_limit", "gap_limit", "iteration_limit", "infeasible", "error"]


def relative_gap(objective: float | None, bound: float | None) -> float | None:
    """Relative gap ``(objective - bound) / |objective|`` for a minimisation, ``None`` if unknown.

    >>> relative_gap(110.0, 100.0)
    0.09090909090909091
    >>> relative_gap(0.0, 0.0)
    0.0
    """
    if objective is None or bound is None or not math.isfinite(objective) or not math.isfinite(bound):
        return None
    if objective == 0.0:
        return 0.0 if bound == 0.0 else None
    return max(0.0, (objective - bound) / abs(objective))


@dataclass(frozen=True)
class SolveReport:
    """What a solver call did.

    Attributes
    ----------
    status : {"optimal", "feasible", "infeasible", "error"}
    stop_reason : why it stopped (see :data:`StopReason`)
    objective : primal value of the returned solution (minimisation), or None
    bound : a valid lower bound on the optimum, or None
    gap : ``(objective - bound) / objective``, or None
    wall_time_s : seconds spent in the call
    solver : algorithm / backend name, e.g. ``"eplb-greedy"`` or ``"pulp-HiGHS"``
    solver_version : version string of the backend
    message : free text (e.g. the explanation of infeasibility)
    """

    status: Status
    stop_reason: StopReason
    objective: float | None
    bound: float | None
    gap: float | None
    wall_time_s: float
    solver: str
    solver_version: str = ""
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> "SolveReport":
        return replace(self, **changes)
