"""Helpers shared by the load-file readers (package-internal)."""

from __future__ import annotations

from planner.errors import InputError
from planner.inputs.loads import ExpertLoads


__all__ = ["BadContent", "make_loads"]


class BadContent(Exception):
    """A problem found inside a file; the caller prefixes the file name."""


def make_loads(where: str, counts, layer_ids, model, source: str, provenance: dict) -> ExpertLoads:
    """Build the loads, naming the file in ExpertLoads' own validation errors."""
    try:
        return ExpertLoads(counts, layer_ids, model, source, provenance)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
