"""One output path for every command: human text or --json on stdout, warnings and progress on stderr.

Progress lines (``moeplan apply: step 3/8 ...``) go to stderr only when stderr is a terminal, or when
``moeplan --progress`` asked for them (``--no-progress`` silences a terminal too): in a pipeline the
error channel carries warnings and the one error line only. Every command that reports progress
takes its printer from :func:`progress`.

Errors are not printed here: commands raise, and :mod:`planner.cli._errors` prints the one stderr
line and picks the exit code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import typer

__all__ = ["emit", "warn", "progress", "progress_enabled"]


def emit(result: dict[str, Any], human: str, json_out: bool) -> None:
    """Print a command's result: ``result`` as JSON with --json, else the human text."""
    if json_out:
        typer.echo(json.dumps(result, indent=2, default=_json_default))
    elif human:
        typer.echo(human)


def warn(message: str) -> None:
    """One ``moeplan: warning:`` line on stderr."""
    typer.echo(f"moeplan: warning: {message}", err=True)


def _current_context():
    """The running command's click context: from click itself, or from the copy of click that recent
    typer releases vendor (``typer._click``), whichever typer's ``Context`` derives from."""
    import importlib

    core = typer.Context.__mro__[1].__module__  # "click.core" or "typer._click.core"
    return importlib.import_module(core.rsplit(".", 1)[0] + ".globals").get_current_context(silent=True)


def progress_enabled() -> bool:
    """Whether this run prints progress: ``moeplan --progress`` / ``--no-progress`` if given, else
    whether stderr is a terminal."""
    ctx = _current_context()
    state = ctx.find_root().obj if ctx is not None else None
    chosen = getattr(state, "progress", None)
    if chosen is not None:
        return bool(chosen)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stderr
        return False


def progress(command: str) -> Callable[[str], None]:
    """The progress printer of ``command``: ``printer(line)`` writes ``moeplan COMMAND: line`` on
    stderr when progress is on (:func:`progress_enabled`, decided once here), else nothing."""
    if not progress_enabled():
        return lambda line: None
    return lambda line: typer.echo(f"moeplan {command}: {line}", err=True)


def _json_default(obj: Any):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
