"""One error hierarchy for moeplan, and the one place that maps errors to exit codes.

Exit codes (documented in the README):

====  ==========================================================
0     success
1     unexpected bug (traceback only with ``--debug``)
2     bad usage or bad input (file, shape, value, unknown name)
3     infeasible: no plan satisfies the constraints (explained)
4     reserved: a solver stopped at its limit without any solution. No command reaches it today:
      every time-limited solve of the replica planner falls back to a feasible plan and says so in its
      report (e.g. the optimal-split LP keeps the even split); the MILP planners to come will use it
5     runtime adapter failure (a worker died, a collective failed)
====  ==========================================================
"""

from __future__ import annotations

__all__ = [
    "PlannerError",
    "InputError",
    "ProfileNotFound",
    "Infeasible",
    "RuntimeAdapterError",
    "exit_code_for",
    "one_line",
]


class PlannerError(Exception):
    """Base of every error moeplan raises on purpose."""

    exit_code = 1


class InputError(PlannerError, ValueError):
    """A bad file, shape, value or argument. The message names the offending item.

    ``param`` names the library parameter at fault (``"redundant_slots"``); ``str()`` then reads
    ``"redundant_slots: <message>"``. Library messages name parameters, never command-line flags: the
    CLI shows the same message under the flag that fills the parameter (``--redundant: ...``).

    >>> str(InputError("must be >= 0, got -1", param="redundant_slots"))
    'redundant_slots: must be >= 0, got -1'
    """

    exit_code = 2

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def __str__(self) -> str:
        return f"{self.param}: {self.message}" if self.param else self.message

    def __reduce__(self):  # keep ``param`` when an error crosses a process boundary (runtime workers)
        return self.__class__, (self.message,), dict(self.__dict__)


class ProfileNotFound(InputError, KeyError):
    """An unknown model or GPU name. The message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Infeasible(PlannerError):
    """No plan satisfies the constraints; the message says which one and by how much."""

    exit_code = 3


class RuntimeAdapterError(PlannerError):
    """The torch runtime adapter failed (worker died, collective error)."""

    exit_code = 5


def exit_code_for(exc: BaseException) -> int:
    """Exit code of the CLI for an exception (1 for anything unexpected)."""
    return exc.exit_code if isinstance(exc, PlannerError) else 1


def one_line(what: BaseException | str, limit: int | None = None) -> str:
    """A message (an exception's, or text) on one line, whitespace runs collapsed, at most ``limit``
    characters; an exception without a message gives its class name.

    >>> one_line(ValueError("bad   value"), limit=7)
    'bad val'
    >>> one_line(KeyError())
    'KeyError'
    """
    text = " ".join(str(what).split())[:limit]
    return text or ("" if isinstance(what, str) else type(what).__name__)
