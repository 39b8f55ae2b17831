"""Helpers shared by the load-file readers."""

from __future__ import annotations

from planner.errors import InputError
from planner.inputs.loads import ExpertLoads


class _Bad(Exception):
    """A problem found inside a file; the caller prefixes the file name."""


def _make(where: str, counts, layer_ids, model, source: str, provenance: dict) -> ExpertLoads:
    """Build the loads, naming the file in ExpertLoads' own validation errors."""
    try:
        return ExpertLoads(counts, layer_ids, model, source, provenance)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
