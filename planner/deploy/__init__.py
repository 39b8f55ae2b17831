"""Deployment search (DESIGN §5.2): parallel layouts per phase and prefill/decode splits under SLOs.

Room for the deployment planner; it builds on :mod:`planner.perf` (memory, latency, serving simulator)
and :mod:`planner.replicas` (the replica plan of the chosen layout). Nothing is exported yet.
"""

__all__: list[str] = []
