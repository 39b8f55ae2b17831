"""Small helpers every planner shares: atomic file writes and the output set of a command, checked
input files, the size limits, JSON parsing with located errors, number checks, the float tolerance,
plain-text tables."""

from planner.common import checks, fileio, jsontext, limits, numerics, tables
from planner.common.checks import *  # noqa: F403
from planner.common.fileio import *  # noqa: F403
from planner.common.jsontext import *  # noqa: F403
from planner.common.limits import *  # noqa: F403
from planner.common.numerics import *  # noqa: F403
from planner.common.tables import *  # noqa: F403

__all__ = [*checks.__all__, *fileio.__all__, *jsontext.__all__, *limits.__all__, *numerics.__all__, *tables.__all__]
