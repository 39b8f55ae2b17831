r"""Number formats of weights, KV cache and activations, and the GEMM mode a pair of formats runs in.

A **format** stores elements in ``element_bits`` bits plus, where the format has them, one
``scale_bits`` scale per ``scale_group_elements`` elements. Its storage cost per element is

    bytes_per_element = (element_bits + scale_bits / scale_group_elements) / 8

with the scale counted where it is real and documented (block and micro-block scales) and left out
where it is one number per tensor or per output channel (fp8 per-tensor, int8 per-channel: under
0.1 % of the bytes for rows of 4,096 elements or more). The table, with the source of each number:

=========  ======  ========================================  ===========  ======  =========================
format     bits    scale                                     bytes/elem   tensor  source
=========  ======  ========================================  ===========  ======  =========================
fp32       32      --                                        4            bf16    IEEE 754 (CPU tiny models)
bf16       16      --                                        2            bf16
fp16       16      --                                        2            bf16    (the 16-bit peak of the GPU)
fp8        8 e4m3  one fp32 per tensor (not counted)         1            fp8     vLLM ``Fp8LinearMethod``
fp8-block  8 e4m3  one fp32 per 128 x 128 block              1 + 4/16384  fp8     DeepSeek-V3 README_WEIGHTS.md
int8       8       one fp32 per output channel (not counted) 1            int8    SmoothQuant W8A8 (arXiv:2211.10438)
mxfp4      4 e2m1  one 8-bit E8M0 per 32                     4.25 / 8     fp4     OCP MX spec v1.0, table 1
nvfp4      4 e2m1  one fp8 E4M3 per 16 (+ fp32 per tensor)   4.5 / 8      fp4     NVIDIA, "Introducing NVFP4" (2025)
int4-awq   4       fp16 scale + 4-bit zero per 128 along k   4.15625 / 8  --      vLLM ``AWQLinearMethod``
=========  ======  ========================================  ===========  ======  =========================

The **GEMM mode** ``w{w}a{a}`` of a linear layer follows from its weight format and the activation
format, with one rule each (stated here and nowhere else; ``docs/precision.md`` explains them):

1. ``w`` is the weights' element bits (16 for any 16- or 32-bit format). Activations are never
   narrower than the weights: ``a = max(activation bits, w)``, so FP8 activations leave a BF16
   layer at ``w16a16`` and BF16 activations make FP8 weights weight-only (``w8a16``).
2. The GEMM runs on the tensor cores of its activation operand: ``a = 16`` on the BF16 (16-bit)
   peak; ``a = 8`` or ``4`` on the peak of the activation format's type (``fp8``, ``int8``,
   ``fp4``), or of the weights' type when rule 1 widened the activations to the weights' bits.
   Narrower weights are converted in the kernel (int4 to fp8 in a ``w4a8`` GEMM).
3. **Fallback**: a GPU without that tensor-core type (``GpuSpec.tensor_peak_per_s`` is None) runs
   the GEMM with 16-bit activations, the weights dequantised in the kernel (Marlin-style): the
   BF16 peak, the weight bytes of the weight format still read. ``w8a8`` and ``w4a8`` become
   ``w8a16`` and ``w4a16``, ``w4a4`` becomes ``w4a16``.

A :class:`Precision` gives one format per component of a model: ``attention`` (attention, dense FFN
and shared-expert weights), ``experts`` (routed experts), ``kv_cache``, ``activations`` (the GEMM
inputs; stored activations stay 16-bit, see ``docs/precision.md``) and ``base`` (embeddings, lm_head,
norms, router and biases, which no release modelled here quantises).

>>> Precision(experts="mxfp4").gemm_modes()["experts"].name
'w4a16'
>>> get_format("fp8-block").bytes_per_element
1.000244140625
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from planner.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from planner.profiles.specs import GpuSpec

__all__ = [
    "NumberFormat",
    "FORMATS",
    "TENSOR_TYPES",
    "GEMM_MODES",
    "COMPONENTS",
    "COMPONENT_ROLES",
    "OVERRIDES",
    "get_format",
    "GemmMode",
    "gemm_mode",
    "Precision",
    "resolve_precision",
]

#: tensor-core types a GEMM can run on, as the GPU profile names their peaks
TENSOR_TYPES = ("bf16", "fp8", "int8", "fp4")
#: every GEMM mode the rules give, widest first
GEMM_MODES = ("w16a16", "w8a16", "w8a8", "w4a16", "w4a8", "w4a4")
#: the components of a :class:`Precision`
COMPONENTS = ("attention", "experts", "kv_cache", "activations", "base")
#: the keys :meth:`Precision.override` takes (``weights`` sets attention and experts)
OVERRIDES = ("weights", "attention", "experts", "kv_cache", "activations")

_WEIGHTS, _KV, _ACT, _BASE = "weights", "kv_cache", "activations", "base"
#: the role each component asks of its format (a format lists the roles it can fill)
COMPONENT_ROLES = {"attention": _WEIGHTS, "experts": _WEIGHTS, "kv_cache": _KV, "activations": _ACT, "base": _BASE}


@dataclass(frozen=True)
class NumberFormat:
    """One storage format: element bits, scale overhead, the tensor-core type it feeds, its source.

    ``scale_group_elements`` is None when the format's scales are not counted (one per tensor or
    per output channel); ``tensor_type`` is None for a format no tensor core multiplies (int4 here:
    it only runs weight-only or converted). ``roles`` are the components it may fill.
    """

    name: str
    element_bits: int
    scale_bits: int
    scale_group_elements: int | None
    tensor_type: str | None
    roles: frozenset
    source: str = field(compare=False)
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def bits_per_element(self) -> float:
        """Storage bits of one element, its share of the scales included."""
        scale = self.scale_bits / self.scale_group_elements if self.scale_group_elements else 0.0
        return self.element_bits + scale

    @property
    def bytes_per_element(self) -> float:
        """Storage bytes of one element, its share of the scales included (mxfp4: 0.53125)."""
        return self.bits_per_element / 8

    @property
    def gemm_bits(self) -> int:
        """The width rule 1 of the GEMM mode uses: the element bits, 16 for any wider format."""
        return min(self.element_bits, 16)

    def bytes_for(self, elements: float) -> float:
        """Bytes of ``elements`` elements in this format (scales included, not rounded)."""
        return elements * self.bytes_per_element

    def __str__(self) -> str:
        return self.name


def _fmt(name, bits, scale_bits, group, tensor, roles, source, aliases=()) -> NumberFormat:
    return NumberFormat(name, bits, scale_bits, group, tensor, frozenset(roles), source, tuple(aliases))


_ALL = (_WEIGHTS, _KV, _ACT, _BASE)
#: every known format by name (``docs/precision.md`` has the table with its sources)
FORMATS: dict[str, NumberFormat] = {
    f.name: f
    for f in (
        _fmt("fp32", 32, 0, None, "bf16", _ALL,
             "IEEE 754 binary32; GEMMs priced at the 16-bit peak (TF32 not modelled)", ("float32",)),
        _fmt("bf16", 16, 0, None, "bf16", _ALL, "bfloat16", ("bfloat16",)),
        _fmt("fp16", 16, 0, None, "bf16", _ALL, "IEEE 754 binary16; the GPU profile's 16-bit peak",
             ("float16", "half")),
        _fmt("fp8", 8, 0, None, "fp8", (_WEIGHTS, _KV, _ACT),
             "FP8 E4M3 with one fp32 scale per tensor (vLLM Fp8LinearMethod, kv_cache_dtype fp8); the scale is not "
             "counted", ("fp8-e4m3", "e4m3", "fp8-per-tensor", "float8-e4m3fn")),
        _fmt("fp8-block", 8, 32, 128 * 128, "fp8", (_WEIGHTS,),
             "FP8 E4M3 with one fp32 weight_scale_inv per 128x128 block (deepseek-ai/DeepSeek-V3 README_WEIGHTS.md; "
             "config.json quantization_config weight_block_size [128, 128])", ("fp8-block-128", "fp8-blockwise")),
        _fmt("int8", 8, 0, None, "int8", (_WEIGHTS, _KV, _ACT),
             "INT8 with one fp32 scale per output channel (SmoothQuant W8A8, Xiao et al. 2022, arXiv:2211.10438); "
             "the scales are not counted (4/k bytes per element)", ("w8a8-int8",)),
        _fmt("mxfp4", 4, 8, 32, "fp4", (_WEIGHTS, _ACT),
             "OCP Microscaling Formats (MX) Specification v1.0 (2023), table 1: MXFP4 = 32 FP4 E2M1 elements + one "
             "8-bit E8M0 scale = 4.25 bits per element"),
        _fmt("nvfp4", 4, 8, 16, "fp4", (_WEIGHTS, _ACT),
             "NVIDIA technical blog 'Introducing NVFP4 for Efficient and Accurate Low-Precision Inference' (2025): "
             "16 FP4 E2M1 elements + one FP8 E4M3 scale = 4.5 bits, plus one fp32 per tensor (not counted)"),
        _fmt("int4-awq", 4, 16 + 4, 128, None, (_WEIGHTS,),
             "AWQ (Lin et al. 2023, arXiv:2306.00978) as vLLM stores it (AWQLinearMethod.create_weights): int4 "
             "weights, per group of 128 input elements one fp16 scale and one 4-bit zero = 4.15625 bits",
             ("awq", "int4", "w4a16-awq")),
    )
}
_BY_ALIAS = {key: f for f in FORMATS.values() for key in (f.name, *f.aliases)}


def get_format(name: str | NumberFormat, *, param: str | None = None, role: str | None = None) -> NumberFormat:
    """The format called ``name`` (case-insensitive; ``_`` and ``-`` alike; aliases such as ``bfloat16``).

    ``role`` (``weights``, ``kv_cache``, ``activations``, ``base``) refuses a format that cannot fill it;
    errors are :class:`~planner.errors.InputError` naming ``param``.

    >>> get_format("BFloat16").name, get_format("fp8_block").name
    ('bf16', 'fp8-block')
    """
    if isinstance(name, NumberFormat):
        fmt = name
    else:
        key = str(name).strip().lower().replace("_", "-") if isinstance(name, str) else None
        fmt = _BY_ALIAS.get(key)
        if fmt is None:
            raise InputError(f"unknown number format {name!r}; known: {', '.join(FORMATS)}", param=param)
    if role is not None and role not in fmt.roles:
        allowed = [f.name for f in FORMATS.values() if role in f.roles]
        raise InputError(f"{fmt.name} cannot be used for {role.replace('_', ' ')}; use one of {', '.join(allowed)}",
                         param=param)
    return fmt


@dataclass(frozen=True)
class GemmMode:
    """How one linear layer's GEMM runs: ``name`` the mode after the GPU's fallback (``w8a16``) and
    ``tensor_type`` the tensor cores whose peak it runs at (``bf16``, ``fp8``, ``int8``, ``fp4``);
    ``declared`` and ``declared_tensor_type`` what the formats ask for (``w8a8`` on ``fp8``);
    ``weights`` the format whose bytes it reads."""

    name: str
    tensor_type: str
    declared: str
    declared_tensor_type: str
    weights: NumberFormat

    @property
    def fell_back(self) -> bool:
        """The GPU has no tensor cores of the declared type, so the GEMM runs with 16-bit activations."""
        return self.name != self.declared

    def describe(self) -> str:
        """``"w8a8 on fp8 tensor cores"``, or ``"w8a16 (w8a8 falls back: no fp8 tensor cores)"``."""
        if not self.fell_back:
            return f"{self.name} on {self.tensor_type} tensor cores"
        return f"{self.name} ({self.declared} falls back: no {self.declared_tensor_type} tensor cores)"


def gemm_mode(weights: NumberFormat | str, activations: NumberFormat | str, gpu: GpuSpec | None = None) -> GemmMode:
    """The GEMM mode of a layer with ``weights`` in one format and ``activations`` in another (rules 1-3
    of the module docstring); with ``gpu``, after that GPU's fallback.

    >>> gemm_mode("fp8-block", "fp8").name, gemm_mode("fp8-block", "bf16").name
    ('w8a8', 'w8a16')
    >>> gemm_mode("bf16", "fp8").name
    'w16a16'
    >>> from planner.profiles import get_gpu
    >>> gemm_mode("mxfp4", "mxfp4", get_gpu("h100")).describe()
    'w4a16 (w4a4 falls back: no fp4 tensor cores)'
    """
    w_fmt, a_fmt = get_format(weights, role=_WEIGHTS), get_format(activations)
    w = w_fmt.gemm_bits
    a = max(a_fmt.gemm_bits, w)  # rule 1
    if a == 16:  # rule 2
        tensor = "bf16"
    else:
        tensor = (a_fmt if a_fmt.gemm_bits == a else w_fmt).tensor_type or f"int{a}"
    declared, declared_tensor = f"w{w}a{a}", tensor
    if tensor not in TENSOR_TYPES or (gpu is not None and gpu.tensor_peak_per_s(tensor) is None):  # rule 3
        tensor, a = "bf16", 16
    return GemmMode(name=f"w{w}a{a}", tensor_type=tensor, declared=declared, declared_tensor_type=declared_tensor,
                    weights=w_fmt)


@dataclass(frozen=True)
class Precision:
    """One number format per component of a model; a field given as a name is looked up, a field left
    None takes the ``base`` format (``Precision()`` is BF16 throughout, ``Precision(base="fp32")`` FP32).

    Parameters
    ----------
    attention : attention projections, dense-FFN and shared-expert weights.
    experts : routed-expert weights (their biases are ``base``).
    kv_cache : KV-cache elements (``bf16``, ``fp16``, ``fp32``, ``fp8``, ``int8``).
    activations : the inputs of the GEMMs; sets the GEMM mode with the weights' format.
    base : embeddings, lm_head, norms, router and biases (``bf16``, ``fp16``, ``fp32``).

    Raises
    ------
    InputError
        An unknown format, or one that cannot fill its component; ``param`` names the component.

    Examples
    --------
    >>> p = Precision(attention="fp8-block", experts="fp8-block", activations="fp8")
    >>> p.kv_cache.name, p.override(kv_cache="fp8").kv_cache.bytes_per_element
    ('bf16', 1.0)
    """

    attention: NumberFormat | None = None
    experts: NumberFormat | None = None
    kv_cache: NumberFormat | None = None
    activations: NumberFormat | None = None
    base: NumberFormat | None = None

    def __post_init__(self) -> None:
        base = get_format("bf16" if self.base is None else self.base, param="base", role=_BASE)
        object.__setattr__(self, "base", base)
        for name in COMPONENTS[:-1]:
            value = getattr(self, name)
            fmt = base if value is None else get_format(value, param=name, role=COMPONENT_ROLES[name])
            object.__setattr__(self, name, fmt)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, param: str = "precision") -> Precision:
        """A precision from ``{component: format name}``; an unknown key is an error naming ``param``."""
        if not isinstance(data, Mapping):
            raise InputError(f"must be a mapping of {', '.join(COMPONENTS)} to format names, got {data!r}",
                             param=param)
        unknown = sorted(set(map(str, data)) - set(COMPONENTS))
        if unknown:
            raise InputError(f"unknown component {unknown[0]!r} (known: {', '.join(COMPONENTS)})", param=param)
        return cls(**dict(data))

    def override(self, *, weights=None, attention=None, experts=None, kv_cache=None, activations=None) -> Precision:
        """A copy with some components replaced; None keeps a component.

        ``weights`` sets ``attention`` and ``experts`` together (what "FP8 weights" means);
        ``attention`` and ``experts`` given as well take precedence for their component.
        """
        weights = None if weights is None else get_format(weights, param="weights", role=_WEIGHTS)
        changes = {
            "attention": attention if attention is not None else weights,
            "experts": experts if experts is not None else weights,
            "kv_cache": kv_cache,
            "activations": activations,
        }
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def gemm_modes(self, gpu: GpuSpec | None = None) -> dict[str, GemmMode]:
        """GEMM modes of the ``attention`` layers (attention, dense FFN, shared experts), the routed
        ``experts`` and the ``base`` layers (router, lm_head), on ``gpu`` if given (after its fallback)."""
        return {
            "attention": gemm_mode(self.attention, self.activations, gpu),
            "experts": gemm_mode(self.experts, self.activations, gpu),
            "base": gemm_mode(self.base, self.base, gpu),
        }

    def to_dict(self) -> dict[str, str]:
        """``{component: format name}``."""
        return {name: getattr(self, name).name for name in COMPONENTS}

    def label(self) -> str:
        """Short label of the weight formats: ``"fp8-block"``, or ``"bf16 + mxfp4 experts"``."""
        if self.attention == self.experts:
            return self.attention.name
        return f"{self.attention.name} + {self.experts.name} experts"


def resolve_precision(native: Precision, precision: Precision | Mapping[str, Any] | None) -> Precision:
    """The precision to model: ``native`` (a model's) for None, ``precision`` itself, or ``native``
    with the overrides of a mapping (keys of :data:`OVERRIDES`, e.g. ``{"kv_cache": "fp8"}``).

    >>> resolve_precision(Precision(), {"weights": "fp8"}).to_dict()["experts"]
    'fp8'
    """
    if precision is None:
        return native
    if isinstance(precision, Precision):
        return precision
    if isinstance(precision, Mapping):
        unknown = sorted(set(map(str, precision)) - set(OVERRIDES))
        if unknown:
            raise InputError(f"unknown override {unknown[0]!r} (known: {', '.join(OVERRIDES)})", param="precision")
        return native.override(**dict(precision))
    raise InputError(f"must be a Precision, a mapping of overrides or None, got {type(precision).__name__}",
                     param="precision")

