"""Data only: the shipped GPU and model profiles and measured op tables (YAML/CSV with provenance).

Installed as the package ``moeplan_profiles`` and read through ``importlib.resources`` by
:mod:`planner.profiles.registry`; nothing here is code.
"""
