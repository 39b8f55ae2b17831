"""Plan files on disk: atomic writes and validated reads."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from planner.errors import InputError
from planner.plans.schema import Plan

__all__ = ["atomic_write_text", "atomic_write_bytes", "write_plan", "read_plan"]


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The bytes go to a temporary file in the same directory, are flushed to disk and then renamed over
    the target. The parent directory must exist.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{target}: output directory {parent} does not exist")
    if target.is_dir():
        raise InputError(f"{target}: is a directory, expected a file path")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def write_plan(plan: Plan, path: str | os.PathLike) -> Path:
    """Write a plan as canonical JSON, atomically."""
    return atomic_write_text(path, plan.to_json())


def read_plan(path: str | os.PathLike) -> Plan:
    """Read and validate a plan file; errors name the file and the first offending field."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: plan file not found")
    text = p.read_text(encoding="utf-8")
    if not text.strip():
        raise InputError(f"{p}: plan file is empty")
    try:
        return Plan.from_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(document)"
        raise InputError(f"{p}: invalid plan at {where}: {err['msg']} ({exc.error_count()} error(s))") from None
