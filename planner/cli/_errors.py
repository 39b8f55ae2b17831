"""The one place the CLI turns an error into a stderr line and an exit code.

Every command runs inside :class:`CliGroup` (the app's click group), whose ``main`` catches

- moeplan's own errors (:class:`~planner.errors.PlannerError`): ``moeplan: error: <message>`` and the
  error's exit code (2 input, 3 infeasible, 4 solver limit, 5 runtime); an
  :class:`~planner.errors.InputError` naming a library parameter the command fills from a flag is
  shown under that flag (``moeplan: error: --redundant: ...``, :data:`~planner.cli.options.PARAM_FLAGS`);
- click's usage errors (unknown option, bad value, missing argument): one line, exit 2; a flag
  spelled the previous way says what to write now (:data:`~planner.cli.options.RENAMED_FLAGS`);
- anything else, a bug: ``moeplan: internal error: ...``, exit 1, the traceback only with ``--debug``;
- a signal: SIGINT (Ctrl-C) ``moeplan: error: interrupted``, exit 130; SIGTERM ``moeplan: error:
  terminated``, exit 143. The handlers raise in the main thread, so the command unwinds: worker
  processes are stopped (:mod:`planner.runtime.dist`) and no half-written file is left
  (:mod:`planner.common.fileio`); a second signal during that clean-up is ignored.

``moeplan`` alone prints the help and exits 0. The same happens under ``typer.testing.CliRunner``,
so tests see what users see.
"""

from __future__ import annotations

import inspect
import signal
import sys
import threading
import traceback
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any, Sequence

import typer
from typer.core import TyperGroup

from planner.cli.options import RENAMED_FLAGS, flag_for
from planner.errors import InputError, PlannerError, exit_code_for, one_line

__all__ = ["CliState", "CliGroup"]

# click's exception classes as the installed typer raises them: recent typer releases vendor click
# (typer._click), older ones use click itself. typer.BadParameter is public in both, and its module is
# where the other classes live. NoArgsIsHelpError is new in click 8.2; older clicks print the help and
# exit 0 on their own, and ``except ()`` catches nothing.
_CLICK_EXCEPTIONS = sys.modules[typer.BadParameter.__module__]
_CLICK_EXCEPTION = _CLICK_EXCEPTIONS.ClickException
_BAD_PARAMETER = typer.BadParameter
_MISSING_PARAMETER = _CLICK_EXCEPTIONS.MissingParameter
_NO_SUCH_OPTION = _CLICK_EXCEPTIONS.NoSuchOption
_NO_ARGS_IS_HELP = getattr(_CLICK_EXCEPTIONS, "NoArgsIsHelpError", ())


@dataclass
class CliState:
    """``ctx.obj`` of one run: what the root command learned (``--debug``, which command runs), read
    by the error handler after the command has returned or raised."""

    debug: bool = False
    command: str | None = None
    progress: bool | None = None  # --progress / --no-progress; None: only when stderr is a terminal


class _Signalled(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException: no ``except Exception`` in a command swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: signal -> (the error line's words, exit code); 128 + the signal number, as a shell reports it
_SIGNALS = {signal.SIGINT: ("interrupted", 130), signal.SIGTERM: ("terminated", 143)}


def _raise_signalled(signum, frame) -> None:
    for sig in _SIGNALS:  # clean up undisturbed: a second Ctrl-C does not cut the unwinding short
        signal.signal(sig, signal.SIG_IGN)
    raise _Signalled(signum)


def _install_signal_handlers() -> dict | None:
    """Route SIGINT / SIGTERM to :class:`_Signalled` (main thread only); the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return {sig: signal.signal(sig, _raise_signalled) for sig in _SIGNALS}


def _restore_signal_handlers(previous: dict | None) -> None:
    for sig, handler in (previous or {}).items():
        signal.signal(sig, handler)


class CliGroup(TyperGroup):
    """The moeplan app's group: runs a command and renders whatever it raises in one line."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        state = CliState()  # a fresh context object per run: nothing carries over between runs
        extra["obj"] = state
        previous = _install_signal_handlers()
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                              **extra)
        except _Signalled as exc:
            words, code = _SIGNALS[exc.signum]
            if state.debug:
                traceback.print_exc(file=sys.stderr)
            typer.echo(f"moeplan: error: {words}", err=True)
        except _NO_ARGS_IS_HELP as exc:  # `moeplan` alone
            typer.echo(exc.ctx.get_help())
            code = 0
        except _CLICK_EXCEPTION as exc:
            typer.echo(f"moeplan: error: {one_line(_usage_message(exc, args))}", err=True)
            code = exc.exit_code
        except typer.Abort:  # click's own KeyboardInterrupt path (a SIGINT outside our handler)
            typer.echo(f"moeplan: error: {_SIGNALS[signal.SIGINT][0]}", err=True)
            code = 130
        except PlannerError as exc:
            if state.debug:
                traceback.print_exc(file=sys.stderr)
            typer.echo(f"moeplan: error: {one_line(self._planner_message(exc, state.command)) or type(exc).__name__}",
                       err=True)
            code = exit_code_for(exc)
        except Exception as exc:  # a bug: say so, keep the traceback for --debug
            if state.debug:
                traceback.print_exc(file=sys.stderr)
            typer.echo(f"moeplan: internal error: {type(exc).__name__}: {one_line(str(exc)) or type(exc).__name__} "
                       "(rerun with --debug for the traceback)", err=True)
            code = 1
        else:
            if not standalone_mode:
                return rv
            code = rv if isinstance(rv, int) else 0
        finally:
            _restore_signal_handlers(previous)
        if not standalone_mode:
            return code
        sys.exit(code)

    def _planner_message(self, exc: PlannerError, command: str | None) -> str:
        """The library's message in the command's words: ``--flag: message`` when the error names a
        parameter the command fills from a flag, and its remedy (``; try spare_slots_per_gpu=1``) as the
        flags to give (``; try --spare-slots 1``)."""
        if type(exc).__str__ is not PlannerError.__str__ and type(exc).__str__ is not InputError.__str__:
            return str(exc)  # an error that words itself (ProfileNotFound)
        cmd = self.commands.get(command or "")
        flags = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} if cmd is not None else set()

        def spell(name: str) -> str:
            flag = flag_for(name, command, flags)
            return f"{name}=" if flag is None else f"{flag} "

        param = getattr(exc, "param", None)
        flag = flag_for(param, command, flags)
        head = f"{flag}: " if flag is not None else (f"{param}: " if param else "")
        return head + exc.message + exc.remedy_text(spell)


def _usage_message(exc, args: list[str]) -> str:
    """One line for a click usage error: the flag first, its choices or its new spelling."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.info_name if ctx is not None else None
    if isinstance(exc, _NO_SUCH_OPTION):
        new = RENAMED_FLAGS.get((command or "", exc.option_name))
        if new is not None:
            return f"{exc.option_name}: no such option in `moeplan {command}`; it is now {new} (docs/cli.md)"
        return exc.format_message()
    param = getattr(exc, "param", None)
    if (isinstance(exc, _BAD_PARAMETER) and not isinstance(exc, _MISSING_PARAMETER) and param is not None
            and param.opts and ctx is not None):
        flag = max(param.opts, key=len)
        choices = _enum_of(ctx, param.name)
        if choices is not None:
            known = ", ".join(c.value for c in choices)
            given = _given(args, (*param.opts, *param.secondary_opts))
            what = f"unknown value {given!r}" if given is not None else "unknown value"
            return f"{flag}: {what} (known: {known})"
        return f"{flag}: {exc.message}" if param.param_type_name == "option" else exc.format_message()
    return exc.format_message()


def _enum_of(ctx, name: str | None) -> type[Enum] | None:
    """The Enum a command's parameter is annotated with (the choices typer checked), or None."""
    callback = getattr(ctx.command, "callback", None)
    if callback is None or name is None:
        return None
    try:
        hint = typing.get_type_hints(inspect.unwrap(callback), include_extras=True).get(name)
    except Exception:  # an annotation that does not resolve: fall back to click's own message
        return None
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return hint if isinstance(hint, type) and issubclass(hint, Enum) else None


def _given(args: list[str], opts: Sequence[str]) -> str | None:
    """The value given on the command line to one of ``opts`` (the last one, as click takes it)."""
    value = None
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                value = args[i + 1]
            elif opt.startswith("--") and arg.startswith(opt + "="):
                value = arg[len(opt) + 1:]
    return value
