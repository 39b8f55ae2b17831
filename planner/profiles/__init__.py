"""Profiles: GPU specs and MoE model architectures, one loader for the shipped YAML files.

Modules
    specs       the frozen dataclasses :class:`GpuSpec`, :class:`AttentionSpec`, :class:`ModelArch`
    params      parameter-count formulas of a decoder-only MoE transformer (one function per formula)
    precision   number formats (bytes per element with their scales), :class:`Precision` per model
                component, and the GEMM mode a weight and an activation format run in on a GPU
    schema      field-by-field validation of profile YAML (names the file and the field)
    hf_config   a Hugging Face ``config.json`` -> :class:`ModelArch` fields
    registry    shipped profiles by id or alias, user YAML / ``config.json`` files
    pricing     dollars per million tokens from a price per hour (the sweep's, the report's)
"""

from planner.profiles import precision, pricing, registry, specs
from planner.profiles.precision import *  # noqa: F403  (the names of precision.__all__)
from planner.profiles.registry import *  # noqa: F403  (the names of registry.__all__)
from planner.profiles.pricing import *  # noqa: F403  (the names of pricing.__all__)
from planner.profiles.specs import *  # noqa: F403  (the names of specs.__all__)

__all__ = [*specs.__all__, *precision.__all__, *registry.__all__, *pricing.__all__]
