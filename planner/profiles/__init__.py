"""Profiles: GPU specs and MoE model architectures, one loader for the shipped YAML files.

Modules
    specs       the frozen dataclasses :class:`GpuSpec`, :class:`AttentionSpec`, :class:`ModelArch`
    params      parameter-count formulas of a decoder-only MoE transformer (one function per formula)
    schema      field-by-field validation of profile YAML (names the file and the field)
    hf_config   a Hugging Face ``config.json`` -> :class:`ModelArch` fields
    registry    shipped profiles by id or alias, user YAML / ``config.json`` files
"""

from planner.profiles.registry import (
    PROFILES_PACKAGE,
    get_gpu,
    get_model,
    list_gpus,
    list_models,
    load_gpu_yaml,
    load_model_yaml,
    model_from_hf_config,
)
from planner.profiles.specs import AttentionSpec, GpuSpec, ModelArch

__all__ = [
    "GpuSpec",
    "AttentionSpec",
    "ModelArch",
    "get_model",
    "get_gpu",
    "list_models",
    "list_gpus",
    "model_from_hf_config",
    "load_model_yaml",
    "load_gpu_yaml",
    "PROFILES_PACKAGE",
]
