"""Small helpers every planner shares: atomic file writes, the float tolerance, plain-text tables,
number checks."""

from planner.common.checks import POSITIVE, check_number
from planner.common.fileio import atomic_write_bytes, atomic_write_text
from planner.common.numerics import ABS_TOL, REL_TOL, close, round_float
from planner.common.tables import format_table

__all__ = [
    "atomic_write_text",
    "atomic_write_bytes",
    "REL_TOL",
    "ABS_TOL",
    "close",
    "round_float",
    "format_table",
    "POSITIVE",
    "check_number",
]
