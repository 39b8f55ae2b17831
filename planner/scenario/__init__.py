"""Scenarios: a named set of inputs that ``moeplan plan`` runs end to end (plan, verify, summary, exports)."""

from planner.scenario.run import EXPORT_FILES, Scenario, ScenarioResult, load_scenario, run_scenario

__all__ = ["Scenario", "ScenarioResult", "load_scenario", "run_scenario", "EXPORT_FILES"]
