"""Plans: the versioned Plan schema (pydantic, JSON Schema published), the solver-free verifier,
engine exports and atomic plan I/O."""

from planner.plans.export import TARGETS, Export, ExportRefused, check_output_name, export_plan
from planner.plans.io import read_plan, write_plan
from planner.plans.schema import SCHEMA_VERSION, Plan
from planner.plans.verify import Check, VerifyReport, replica_lower_bound, verify_plan

__all__ = [
    "Plan",
    "SCHEMA_VERSION",
    "read_plan",
    "write_plan",
    "verify_plan",
    "VerifyReport",
    "Check",
    "replica_lower_bound",
    "export_plan",
    "check_output_name",
    "Export",
    "ExportRefused",
    "TARGETS",
]
