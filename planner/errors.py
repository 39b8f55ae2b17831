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
    "SolverLimit",
    "RuntimeAdapterError",
    "exit_code_for",
    "one_line",
]


class PlannerError(Exception):
    """Base of every error moeplan raises on purpose.

    ``remedy`` holds parameter values that would avoid the error, written out after the message as
    the keyword arguments a notebook user passes; the CLI shows them as the flags to give.

    >>> str(Infeasible("2 layers cannot migrate in place", remedy={"spare_slots_per_gpu": 1}))
    '2 layers cannot migrate in place; try spare_slots_per_gpu=1'
    """

    exit_code = 1

    def __init__(self, message: str = "", *, remedy: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = dict(remedy or {})

    def __str__(self) -> str:
        return self.message + self.remedy_text(lambda name: f"{name}=")

    def remedy_text(self, spell) -> str:
        """``"; try a=1, b=2"`` with each parameter written as ``spell(name)`` (``""`` without a remedy)."""
        if not self.remedy:
            return ""
        return "; try " + ", ".join(self._remedy_item(spell(k), v) for k, v in self.remedy.items())

    @staticmethod
    def _remedy_item(spelled: str, value) -> str:
        # a switch (value True) spelled as a flag ("--allow-unsupported ") is the bare flag
        return spelled.rstrip() if value is True and spelled.endswith(" ") else f"{spelled}{value}"

    def __reduce__(self):  # keep the keyword fields when an error crosses a process boundary (runtime workers)
        return self.__class__, (self.message,), dict(self.__dict__)


class InputError(PlannerError, ValueError):
    """A bad file, shape, value or argument. The message names the offending item.

    ``param`` names the library parameter at fault (``"redundant_slots"``); ``str()`` then reads
    ``"redundant_slots: <message>"``. Library messages name parameters, never command-line flags: the
    CLI shows the same message under the flag that fills the parameter (``--redundant: ...``).

    >>> str(InputError("must be >= 0, got -1", param="redundant_slots"))
    'redundant_slots: must be >= 0, got -1'
    """

    exit_code = 2

    def __init__(self, message: str = "", *, param: str | None = None, remedy: dict | None = None) -> None:
        super().__init__(message, remedy=remedy)
        self.param = param

    def __str__(self) -> str:
        return (f"{self.param}: " if self.param else "") + super().__str__()


class ProfileNotFound(InputError, KeyError):
    """An unknown model or GPU name. The message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Infeasible(PlannerError):
    """No plan satisfies the constraints; the message says which one and by how much."""

    exit_code = 3


class SolverLimit(PlannerError):
    """A solver stopped at its limit without any solution (DESIGN §8: exit code 4)."""

    exit_code = 4


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
