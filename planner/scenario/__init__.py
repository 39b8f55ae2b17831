"""Scenarios: the main job, ``moeplan plan [SCENARIO]`` (deployment, replicas, migration, fleet, cluster; docs/scenarios.md)."""

from planner.scenario.run import EXPORT_FILES, Scenario, ScenarioResult, load_scenario, run_scenario
from planner.scenario.verify import verify_scenario

__all__ = ["Scenario", "ScenarioResult", "load_scenario", "run_scenario", "verify_scenario", "EXPORT_FILES"]
