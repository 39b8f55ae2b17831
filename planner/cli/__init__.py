"""The ``moeplan`` command line: thin commands over the library (parse -> call -> render)."""

from __future__ import annotations

import sys

import typer

from planner.cli._output import STATE

__all__ = ["app", "main"]

app = typer.Typer(
    name="moeplan",
    help="Capacity planning for serving Mixture-of-Experts LLMs. Exit codes: 0 ok, 1 bug, 2 bad input, "
    "3 infeasible, 4 solver limit, 5 runtime failure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    STATE["debug"] = debug


def _register() -> None:
    from planner.cli import (apply_cmd, collect_cmd, estimate_cmd, info_cmd, migrate_cmd, plan_cmd, profile_cmd,
                             replan_cmd, replicas_cmd)

    for module in (plan_cmd, replicas_cmd, replan_cmd, migrate_cmd, apply_cmd, collect_cmd, estimate_cmd, profile_cmd,
                   info_cmd):
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Console entry point: usage errors become one stderr line with exit code 2.

    Typer's exceptions come from click or, in newer typer, from its vendored copy of click; both carry
    ``format_message()`` and ``exit_code``, which is all this relies on.
    """
    try:
        rv = app(args=argv, prog_name="moeplan", standalone_mode=False)
    except typer.Abort:
        typer.echo("moeplan: aborted", err=True)
        sys.exit(130)
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `moeplan` alone prints help
            ctx = getattr(exc, "ctx", None)
            typer.echo(ctx.get_help() if ctx else "")
            sys.exit(0)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            typer.echo(f"moeplan: error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        raise
    sys.exit(rv if isinstance(rv, int) else 0)
