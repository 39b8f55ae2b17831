"""One output path for every command: human text or --json on stdout, one-line errors on stderr."""

from __future__ import annotations

import functools
import json
import sys
import traceback
from typing import Any, Callable

import typer

from planner.errors import PlannerError, exit_code_for

__all__ = ["emit", "warn", "handle_errors", "STATE"]

#: global flags set by the app callback
STATE = {"debug": False}


def emit(result: dict[str, Any], human: str, json_out: bool) -> None:
    """Print a command's result: ``result`` as JSON with --json, else the human text."""
    if json_out:
        typer.echo(json.dumps(result, indent=2, default=_json_default))
    elif human:
        typer.echo(human)


def warn(message: str) -> None:
    typer.echo(f"moeplan: warning: {message}", err=True)


def _json_default(obj: Any):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def handle_errors(fn: Callable) -> Callable:
    """Map moeplan errors to one stderr line and their documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except PlannerError as exc:
            if STATE["debug"]:
                traceback.print_exc(file=sys.stderr)
            typer.echo(f"moeplan: error: {_one_line(exc)}", err=True)
            raise typer.Exit(exit_code_for(exc)) from None
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a bug: say so, keep the traceback for --debug
            if STATE["debug"]:
                traceback.print_exc(file=sys.stderr)
            typer.echo(
                f"moeplan: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the traceback)",
                err=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
