"""Plan files on disk: atomic writes and validated reads."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from planner.errors import InputError
from planner.common.fileio import atomic_write_text, read_input_text
from planner.plans.schema import ClusterPlan, DeploymentPlan, FleetPlan, Plan, parse_plan_json

__all__ = ["write_plan", "read_plan"]


def write_plan(plan: Plan | DeploymentPlan | FleetPlan | ClusterPlan, path: str | os.PathLike) -> Path:
    """Write a plan (any kind) as canonical JSON, atomically."""
    return atomic_write_text(path, plan.to_json())


def read_plan(path: str | os.PathLike) -> Plan | DeploymentPlan | FleetPlan | ClusterPlan:
    """Read and validate a plan file of any kind (``kind``: ``replicas``, ``deployment``, ``fleet`` or ``cluster``); errors name
    the file and the first offending field."""
    p = Path(path)
    text = read_input_text(p, "plan file")
    if not text.strip():
        raise InputError(f"{p}: plan file is empty")
    try:
        return parse_plan_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(document)"
        raise InputError(f"{p}: invalid plan at {where}: {err['msg']} ({exc.error_count()} error(s))") from None
