"""Heterogeneous clusters (DESIGN §5.3): contiguous layer ranges per node by max-flow + MILP (Helix-class).

Modules
    capacity      capacity tables T_i(k) of a node from the performance model (or the given ones)
    graph         Helix's throughput graph in networkx: independent max-flow, routing weights, pipelines
    place         ``plan_cluster``: cluster -> arrays -> ``solvers.layer_placement`` -> a verified plan
    verify        the solver-free verifier of cluster plans (``moeplan verify``)
    plots         layer ranges and flows as a PNG
    fleet, fleet_verify   GPU mix (Mélange's covering program, ``docs/fleet.md``): ``plan_fleet(model, gpus,
                  slo, workload, ...)`` returns a :class:`FleetResult` with a verified fleet plan;
                  ``verify_fleet(plan)`` re-derives it
"""

from planner.cluster.capacity import NodeTables, node_tables
from planner.cluster.fleet import FleetResult, plan_fleet
from planner.cluster.fleet_verify import verify_fleet
from planner.cluster.place import ClusterResult, plan_cluster
from planner.cluster.verify import verify_cluster

__all__ = ["plan_cluster", "ClusterResult", "verify_cluster", "node_tables", "NodeTables"]
__all__ += ["plan_fleet", "FleetResult", "verify_fleet"]
