"""Heterogeneous clusters (DESIGN §5.3-5.4): layer placement by max-flow + MILP, and the cheapest GPU mix.

Room for the cluster planner; it builds on :mod:`planner.perf` for per-GPU capacities and on
``solvers/`` for max-flow, MILP and covering programs. Nothing is exported yet.
"""

__all__: list[str] = []
