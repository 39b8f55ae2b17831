"""Read a ``torch.save`` file into plain Python and numpy objects, without torch.

Why not ``torch.load``: moeplan imports torch only in ``planner/runtime/`` (it is an optional extra),
and the readers of ``planner/inputs`` sit below the runtime. The file format is public and simple:
since torch 1.6 ``torch.save`` writes a zip archive ``<name>/data.pkl`` (a pickle of the object)
plus one member ``<name>/data/<key>`` of raw little-endian bytes per tensor storage. The pickle names
each tensor as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` and each
storage as a persistent id ``("storage", torch.<Type>Storage, key, device, numel)``.

The unpickler below is restricted like ``torch.load(weights_only=True)``: it resolves only those
rebuild functions, the typed storage classes and ``collections.OrderedDict``; any other global in the
pickle (code a malicious file would run) is refused. Tensors come back as read-only numpy arrays.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from typing import Any

import numpy as np

from planner.inputs._common import BadContent

__all__ = ["read_torch_zip", "is_torch_zip"]

# torch.<Type>Storage -> numpy dtype (little-endian; BFloat16 has no numpy dtype and is refused)
_STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_ignored) -> np.ndarray:
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if offset < 0 or last >= storage.size:
        raise BadContent(f"a tensor of shape {list(size)} reaches past its storage of {storage.size} elements")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=[s * item for s in stride])
    out = np.array(view)
    out.setflags(write=False)
    return out


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("collections", "OrderedDict"): _ordered_dict,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self._archive, self._prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        raise BadContent(f"refusing to load {module}.{name}: only tensors, dicts, lists and numbers are read "
                         "(what torch.load(weights_only=True) allows)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise BadContent(f"unknown persistent id {pid!r:.60}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(kind, _StorageType):
            raise BadContent(f"storage of unsupported type {kind!r:.40} (bfloat16 or an untyped storage)")
        try:
            raw = self._archive.read(f"{self._prefix}data/{key}")
        except KeyError:
            raise BadContent(f"storage {key} is missing from the archive") from None
        arr = np.frombuffer(raw, dtype=_STORAGE_DTYPES[kind.name])
        if arr.size < numel:
            raise BadContent(f"storage {key} holds {arr.size} elements, the pickle says {numel}")
        return arr[:numel]


def is_torch_zip(archive: zipfile.ZipFile) -> bool:
    """True when the zip archive is a ``torch.save`` file (it has a ``<name>/data.pkl`` member)."""
    return any(n.endswith("/data.pkl") or n == "data.pkl" for n in archive.namelist())


def read_torch_zip(path) -> Any:
    """The object a ``torch.save`` zip file holds, tensors as numpy arrays.

    Raises ``BadContent`` (the caller names the file) for a pickle that needs anything beyond
    tensors and containers, a big-endian file, or storages that do not match the pickle, and
    ``zipfile.BadZipFile`` / ``OSError`` for an unreadable archive.
    """
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise BadContent("a zip archive without data.pkl: not a torch.save file")
        prefix = pkl[: -len("data.pkl")]
        order = prefix + "byteorder"
        if order in names and archive.read(order).strip() not in (b"", b"little"):
            raise BadContent("written on a big-endian machine; re-save it on a little-endian one")
        try:
            return _Unpickler(archive.read(pkl), archive, prefix).load()
        except BadContent:
            raise
        except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError) as exc:
            raise BadContent(f"unreadable pickle in data.pkl: {exc}") from None
