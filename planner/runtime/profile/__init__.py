"""The op profiler, one module per job:

- :mod:`~planner.runtime.profile.config` — what to time and how often (:class:`ProfileConfig`,
  :data:`DEFAULT_CONFIG`, :data:`QUICK_CONFIG`);
- :mod:`~planner.runtime.profile.timing` — :func:`run_profile`: time GEMMs, an expert FFN, norms,
  attention and an all-to-all with torch on the local device;
- :mod:`~planner.runtime.profile.result` — what comes out (:class:`MeasuredProfile`, its
  attention and expert-FFN points);
- :mod:`~planner.runtime.profile.io` — the profile on disk: op-timing CSV and provenance sidecar;
- :mod:`~planner.runtime.profile.calibration` — the device spec the profile implies and the
  held-out calibration of the latency model on it (the protocol itself is
  :func:`planner.perf.calibration.held_out_alternate`).

Importing the package needs neither torch nor scipy: the functions import them when called.
"""

from planner.runtime.profile.calibration import (
    TARGET_HELD_OUT_MEDIAN_REL_ERROR,
    HeldOutCalibration,
    device_spec,
    held_out_calibration,
)
from planner.runtime.profile.config import DEFAULT_CONFIG, QUICK_CONFIG, ProfileConfig
from planner.runtime.profile.io import load_profile, sidecar_path, write_profile
from planner.runtime.profile.result import AttentionPoint, ExpertFfnPoint, MeasuredProfile
from planner.runtime.profile.timing import run_profile

__all__ = [
    "ProfileConfig",
    "DEFAULT_CONFIG",
    "QUICK_CONFIG",
    "AttentionPoint",
    "ExpertFfnPoint",
    "MeasuredProfile",
    "HeldOutCalibration",
    "TARGET_HELD_OUT_MEDIAN_REL_ERROR",
    "run_profile",
    "device_spec",
    "held_out_calibration",
    "write_profile",
    "load_profile",
    "sidecar_path",
]
