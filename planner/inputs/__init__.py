"""Measured inputs: expert loads (and later workloads, SLOs, clusters)."""

from planner.inputs.loads import ExpertLoads, LayerStats

__all__ = ["ExpertLoads", "LayerStats"]
