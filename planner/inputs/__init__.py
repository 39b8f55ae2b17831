"""Measured inputs: expert loads (and later workloads, SLOs, clusters)."""

from planner.inputs.loads import ExpertLoads, LayerStats

__all__ = ["ExpertLoads", "LayerStats"]

from planner.inputs.readers import (  # noqa: E402
    builtin_loads,
    list_builtin_loads,
    read_loads,
    write_loads_npz,
)

__all__ += ["read_loads", "write_loads_npz", "builtin_loads", "list_builtin_loads"]
