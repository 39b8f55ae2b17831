"""`moeplan schema`: the JSON Schema of plan files."""

from __future__ import annotations

import json

from planner.cli._output import emit
from planner.cli.options import JsonOpt

__all__ = ["schema"]


def schema(json_out: JsonOpt = False) -> None:
    """Print the JSON Schema of plan files."""
    from planner.plans.schema import Plan

    emit(Plan.model_json_schema(), json.dumps(Plan.model_json_schema(), indent=2), json_out)
