"""One output path for every command: human text or --json on stdout, warnings on stderr.

Errors are not printed here: commands raise, and :mod:`planner.cli._errors` prints the one stderr
line and picks the exit code.
"""

from __future__ import annotations

import json
from typing import Any

import typer

__all__ = ["emit", "warn"]


def emit(result: dict[str, Any], human: str, json_out: bool) -> None:
    """Print a command's result: ``result`` as JSON with --json, else the human text."""
    if json_out:
        typer.echo(json.dumps(result, indent=2, default=_json_default))
    elif human:
        typer.echo(human)


def warn(message: str) -> None:
    """One ``moeplan: warning:`` line on stderr."""
    typer.echo(f"moeplan: warning: {message}", err=True)


def _json_default(obj: Any):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
