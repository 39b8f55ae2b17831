"""The ``moeplan`` command line: thin commands over the library (parse -> call -> render).

One module per command (``<name>_cmd.py``); the options several commands share, the choices and the
flag tables live in :mod:`planner.cli.options`; errors become one stderr line and an exit code in
:mod:`planner.cli._errors`; every value and output path is checked before a command's body runs, and
its files are written together when it returns (:mod:`planner.cli.checks`). The vocabulary is documented in ``docs/cli.md``.
"""

from __future__ import annotations

from typing import Optional

import typer

from planner.cli import (
    apply_cmd,
    cluster_cmd,
    collect_cmd,
    deploy_cmd,
    estimate_cmd,
    export_cmd,
    fleet_cmd,
    gpus_cmd,
    loads_cmd,
    migrate_cmd,
    models_cmd,
    plan_cmd,
    profile_cmd,
    replan_cmd,
    replicas_cmd,
    report_cmd,
    schema_cmd,
    synth_cmd,
    verify_cmd,
)
from planner.cli._errors import CliGroup, CliState
from planner.cli.examples import epilog
from planner.cli.checks import CheckedCommand

__all__ = ["app", "main"]

app = typer.Typer(
    name="moeplan",
    cls=CliGroup,
    help="Capacity planning for serving Mixture-of-Experts LLMs. Exit codes: 0 ok, 1 bug, 2 bad input, "
    "3 infeasible, 4 solver limit, 5 runtime failure, 130 interrupted (SIGINT), 143 terminated (SIGTERM).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Print progress lines on stderr (default: only when stderr is a terminal)."),
) -> None:
    state = ctx.ensure_object(CliState)
    state.debug = debug
    state.progress = progress
    state.command = ctx.invoked_subcommand


#: (name, function) in the order of the help: the main job, replica plans and their checks, migration
#: and the runtime, then what feeds them
_COMMANDS = (
    ("plan", plan_cmd.plan),
    ("replicas", replicas_cmd.replicas),
    ("replan", replan_cmd.replan),
    ("synth", synth_cmd.synth),
    ("verify", verify_cmd.verify),
    ("report", report_cmd.report),
    ("export", export_cmd.export),
    ("migrate", migrate_cmd.migrate),
    ("apply", apply_cmd.apply),
    ("collect", collect_cmd.collect),
    ("deploy", deploy_cmd.deploy),
    ("cluster", cluster_cmd.cluster),
    ("fleet", fleet_cmd.fleet),
    ("estimate", estimate_cmd.estimate),
    ("profile", profile_cmd.profile),
    ("loads", loads_cmd.loads),
    ("models", models_cmd.models),
    ("gpus", gpus_cmd.gpus),
    ("schema", schema_cmd.schema),
)
for _name, _command in _COMMANDS:
    app.command(_name, cls=CheckedCommand, epilog=epilog(_name))(_command)
del _name, _command


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``moeplan``): run the app and exit with its code (see ``docs/cli.md``)."""
    return app(args=argv, prog_name="moeplan")
