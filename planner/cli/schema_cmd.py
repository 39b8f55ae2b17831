"""`moeplan schema`: the JSON Schema of plan files."""

from __future__ import annotations

import json

from planner.cli._output import emit
from planner.cli.options import JsonOpt

__all__ = ["schema"]


def schema(json_out: JsonOpt = False) -> None:
    """Print the JSON Schema of plan files (replica and deployment plans)."""
    from planner.plans.schema import plan_json_schema

    schema_doc = plan_json_schema()
    emit(schema_doc, json.dumps(schema_doc, indent=2), json_out)
