"""Read a ``.safetensors`` file into numpy arrays, without the ``safetensors`` package.

The format is public (huggingface/safetensors README): 8 bytes little-endian unsigned header length
``N``, ``N`` bytes of JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__"?}``,
then the raw little-endian buffer; offsets are relative to the buffer's start.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from planner.inputs._common import BadContent

__all__ = ["read_safetensors"]

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
           "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_MAX_HEADER_BYTES = 100_000_000  # the format's own limit


def _offset(x) -> int:
    """A data offset: an int (not a bool, a string or a float)."""
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(x)
    return x


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """``{name: array}`` of every tensor in the file (read-only arrays); ``BadContent`` on a bad file."""
    data = path.read_bytes()
    if len(data) < 8:
        raise BadContent("not a safetensors file (shorter than its 8-byte header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(_MAX_HEADER_BYTES, len(data) - 8):
        raise BadContent(f"not a safetensors file (header length {n} exceeds the file)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadContent("not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise BadContent("safetensors header is not a JSON object")
    buf = memoryview(data)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], [int(s) for s in info["shape"]], info["data_offsets"]
            begin, end = _offset(begin), _offset(end)
        except (KeyError, TypeError, ValueError):
            raise BadContent(f"tensor {name!r}: header entry lacks dtype, shape or data_offsets") from None
        if dtype not in _DTYPES:
            raise BadContent(f"tensor {name!r}: dtype {dtype} is not read (known: {', '.join(_DTYPES)})")
        if not 0 <= begin <= end <= len(buf):
            raise BadContent(f"tensor {name!r}: data_offsets [{begin}, {end}] outside the {len(buf)}-byte buffer")
        arr = np.frombuffer(buf[begin:end], dtype=_DTYPES[dtype])
        if arr.size != int(np.prod(shape)):
            raise BadContent(f"tensor {name!r}: {arr.size} elements for shape {shape}")
        out[name] = arr.reshape(shape)
    return out
