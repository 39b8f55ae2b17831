"""Measured inputs: expert loads, serving workloads (request traces and synthetic arrivals) and SLOs."""

from planner.inputs.loads import ExpertLoads, LayerStats, rows_as_moe_layers

__all__ = ["ExpertLoads", "LayerStats", "rows_as_moe_layers"]

from planner.inputs.readers import (  # noqa: E402
    builtin_loads,
    list_builtin_loads,
    read_loads,
    write_loads_npz,
)

__all__ += ["read_loads", "write_loads_npz", "builtin_loads", "list_builtin_loads"]

from planner.inputs.slo import SLO  # noqa: E402
from planner.inputs.traces import builtin_trace, list_builtin_traces, read_trace  # noqa: E402
from planner.inputs.workload import Workload, WorkloadStats  # noqa: E402
from planner.inputs.workload_gen import (  # noqa: E402
    LengthDist,
    gamma_workload,
    poisson_workload,
    synthetic_workload,
    with_synthetic_arrivals,
)

__all__ += ["Workload", "WorkloadStats", "read_trace", "builtin_trace", "list_builtin_traces", "LengthDist",
            "synthetic_workload", "poisson_workload", "gamma_workload", "with_synthetic_arrivals", "SLO"]

from planner.inputs.cluster import (  # noqa: E402
    Cluster,
    ClusterLink,
    ClusterNode,
    list_helix_instances,
    read_cluster,
    read_helix_instance,
    read_helix_layouts,
)

__all__ += ["Cluster", "ClusterNode", "ClusterLink", "read_cluster", "read_helix_instance", "read_helix_layouts",
            "list_helix_instances"]
