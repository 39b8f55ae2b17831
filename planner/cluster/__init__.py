"""Heterogeneous clusters (DESIGN §5.3-5.4): layer placement by max-flow + MILP, and the cheapest GPU mix.

Room for the cluster planner; it builds on :mod:`planner.perf` for per-GPU capacities and on
``solvers/`` for max-flow, MILP and covering programs.

GPU mix (Mélange's covering program, ``docs/fleet.md``): ``plan_fleet(model, gpus, slo, workload, ...)``
returns a :class:`FleetResult` with a verified fleet plan; ``verify_fleet(plan)`` re-derives it.
"""

from planner.cluster.fleet import FleetResult, plan_fleet
from planner.cluster.fleet_verify import verify_fleet

__all__: list[str] = []
__all__ += ["plan_fleet", "FleetResult", "verify_fleet"]
