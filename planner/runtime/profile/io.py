"""A profile on disk: the op-timing CSV (:func:`~planner.perf.measured.write_op_table`) and its
provenance sidecar JSON (:func:`sidecar_path`), written atomically and read back.

The CSV loader reads plain CSV (a ``#`` line would be taken for the header), hence the sidecar for
everything the table cannot hold: provenance, attention and expert-FFN points, noise, the
all-to-all check and the device spec.
"""

from __future__ import annotations

import json
from pathlib import Path

from planner.common.fileio import atomic_write_text
from planner.errors import InputError
from planner.perf.measured import load_op_table, write_op_table
from planner.runtime.profile.calibration import device_spec, spec_dict
from planner.runtime.profile.result import PROFILE_FORMAT, AttentionPoint, ExpertFfnPoint, MeasuredProfile

__all__ = ["sidecar_path", "write_profile", "load_profile"]


def sidecar_path(path: str | Path) -> Path:
    """The provenance sidecar of a profile CSV.

    >>> sidecar_path("out/profile.csv").as_posix()
    'out/profile.provenance.json'
    """
    p = Path(path)
    return p.with_name(p.stem + ".provenance.json")


def write_profile(profile: MeasuredProfile, path: str | Path) -> tuple[Path, Path]:
    """Write the table (op-timing CSV via :func:`~planner.perf.measured.write_op_table`) and the
    sidecar JSON (:func:`sidecar_path`: provenance, attention, expert FFN, noise, device spec),
    each atomically; returns both paths. The CSV loader reads plain CSV (a ``#`` line would be
    taken for the header), hence the sidecar."""
    csv_path = write_op_table(profile.table, path)
    meta = {**profile.to_dict(), "table": csv_path.name, "device_spec": spec_dict(device_spec(profile))}
    return csv_path, atomic_write_text(sidecar_path(csv_path), json.dumps(meta, indent=2) + "\n")


def load_profile(path: str | Path) -> MeasuredProfile:
    """Read a profile CSV and its sidecar; a CSV without a sidecar loads with empty provenance.

    Raises
    ------
    InputError
        A bad CSV (:func:`~planner.perf.measured.load_op_table`) or an unreadable or foreign sidecar.
    """
    table = load_op_table(path)
    side = sidecar_path(path)
    if not side.is_file():
        return MeasuredProfile(table=table, attention=(), expert_ffn=(), provenance={})
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{side}: cannot read the profile sidecar ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != PROFILE_FORMAT:
        raise InputError(f"{side}: not a moeplan profile sidecar (format must be {PROFILE_FORMAT!r})")
    try:
        attention = tuple(AttentionPoint(**p) for p in meta.get("attention", []))
        expert_ffn = tuple(ExpertFfnPoint(**p) for p in meta.get("expert_ffn", []))
        spread = tuple(float(s) for s in meta.get("row_spread", []))
        check = tuple(tuple(tuple(float(v) for v in c) for c in r) for r in meta.get("all_to_all_check", []))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{side}: bad entry ({exc})") from None
    if spread and len(spread) != len(table):
        raise InputError(f"{side}: row_spread has {len(spread)} entries for {len(table)} table rows")
    return MeasuredProfile(table, attention, expert_ffn, dict(meta.get("provenance", {})), spread, check)
