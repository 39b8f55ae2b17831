"""Heterogeneous clusters (DESIGN §5.3): contiguous layer ranges per node by max-flow + MILP (Helix-class).

Modules
    capacity   capacity tables T_i(k) of a node from the performance model (or the given ones)
    graph      Helix's throughput graph in networkx: independent max-flow, routing weights, pipelines
    place      ``plan_cluster``: cluster -> arrays -> ``solvers.layer_placement`` -> a verified plan
    verify     the solver-free verifier of cluster plans (``moeplan verify``)
    plots      layer ranges and flows as a PNG

The GPU-mix planner of §5.4 (Mélange) lives beside it (another module).
"""

from planner.cluster.capacity import NodeTables, node_tables
from planner.cluster.place import ClusterResult, plan_cluster
from planner.cluster.verify import verify_cluster

__all__ = ["plan_cluster", "ClusterResult", "verify_cluster", "node_tables", "NodeTables"]
