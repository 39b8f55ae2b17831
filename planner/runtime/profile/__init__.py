"""The op profiler: times GEMMs, attention, an expert FFN, norms and an all-to-all on the local device
into a measured table, and checks a held-out calibration of the latency model on it."""

from planner.runtime.profile.run import (
    DEFAULT_CONFIG,
    QUICK_CONFIG,
    TARGET_HELD_OUT_MEDIAN_REL_ERROR,
    AttentionPoint,
    ExpertFfnPoint,
    HeldOutCalibration,
    MeasuredProfile,
    ProfileConfig,
    device_spec,
    held_out_calibration,
    load_profile,
    run_profile,
    sidecar_path,
    write_profile,
)

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
