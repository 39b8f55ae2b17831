"""`moeplan schema`: the JSON Schema of plan files (or its Markdown reference, docs/plan-schema.md)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from planner.cli._output import emit
from planner.cli.options import JsonOpt

__all__ = ["schema"]


def schema(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the field reference as Markdown (docs/plan-schema.md) instead.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Print the JSON Schema of plan files (every kind: replicas, deployment, fleet, cluster, scenario)."""
    from planner.plans.schema import plan_json_schema

    if markdown:
        from planner.plans.schema_doc import schema_markdown

        typer.echo(schema_markdown(), nl=False)
        return
    schema_doc = plan_json_schema()
    emit(schema_doc, json.dumps(schema_doc, indent=2), json_out)
