"""Atomic file writes (readers see the old file or the whole new one, never a part) and the one way
readers decode a text file (bytes that are not UTF-8 are an input error naming the file and offset)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from planner.errors import InputError

__all__ = ["atomic_write_text", "atomic_write_bytes", "read_text", "decode_text"]


def decode_text(data: bytes, where: str, *, encoding: str = "utf-8") -> str:
    r"""``data`` decoded as UTF-8 (``encoding="utf-8-sig"`` drops a byte-order mark); bytes that are not
    UTF-8 raise :class:`~planner.errors.InputError` naming ``where`` and the offset.

    >>> decode_text(b"ok", "f.json")
    'ok'
    >>> decode_text(b"a\xffb", "f.json")
    Traceback (most recent call last):
    ...
    planner.errors.InputError: f.json: not UTF-8 text (byte 0xff at offset 1)
    """
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def read_text(path: str | os.PathLike, *, encoding: str = "utf-8") -> str:
    """The text of a file, decoded by :func:`decode_text` (an InputError if it is not UTF-8)."""
    return decode_text(Path(path).read_bytes(), str(path), encoding=encoding)


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
