"""moeplan's file boundary: atomic writes, the output set of a command, and checked input files.

Writes
    :func:`atomic_write_bytes` writes a temporary file in the target's directory, flushes it and renames
    it over the target: readers see the old file or the whole new one, never a part. New files get the
    mode ``0666 & ~umask`` (like ``open()``), a replaced file keeps its mode.

The output set of a command (:class:`OutputSet`)
    A command declares every path it will write before it does any work; each is checked then (its
    directory exists and takes new files, no directory is in the way, it is not one of the command's
    input files). While the set is active (``with outputs:``), every :func:`atomic_write_bytes` to a
    declared path is held back; when the command returns, all of them are written to temporary files
    first and then renamed together. If the command fails, or writing any one of them fails, nothing
    is renamed and no temporary file is left: the user's files stay as they were.

Inputs
    :func:`check_input_file` and :func:`read_input_text` say why a file cannot be read (not found, a
    symlink loop, a directory, no permission, not UTF-8 text) in one :class:`InputError` line.
"""

from __future__ import annotations

import contextvars
import errno
import os
import tempfile
from pathlib import Path

from planner.common.limits import MAX_TEXT_BYTES
from planner.errors import InputError

__all__ = [
    "atomic_write_text",
    "atomic_write_bytes",
    "ensure_dir",
    "OutputSet",
    "check_output_path",
    "check_input_file",
    "read_input_text",
    "decode_text",
    "new_file_mode",
]

#: the output set of the running command, if any (see :class:`OutputSet`)
_ACTIVE: contextvars.ContextVar["OutputSet | None"] = contextvars.ContextVar("moeplan_outputs", default=None)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The bytes go to a temporary file in the same directory, are flushed to disk and then renamed over
    the target. The parent directory must exist. Inside an active :class:`OutputSet` that declared
    ``path``, the write is held back until the set commits (with every other output of the command).
    """
    target = Path(path)
    active = _ACTIVE.get()
    if active is not None and active.hold(target, data):
        return target
    _check_target(target)
    tmp = _write_temp(target, data)
    try:
        os.replace(tmp, target)
    except BaseException:
        _unlink(tmp)
        raise
    return target


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create directory ``path`` (and its parents) unless it exists; inside an active
    :class:`OutputSet` that declared it, it is created when the set commits."""
    target = Path(path)
    active = _ACTIVE.get()
    if active is not None and active.creates(target):
        return target
    target.mkdir(parents=True, exist_ok=True)
    return target


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` without the process's umask bits."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class OutputSet:
    """Every file one command writes: checked before any work, written together at the end.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> outs = OutputSet()
    >>> outs.declare(d / "plan.json", "--output", inputs=[d / "loads.npz"])
    >>> with outs:
    ...     _ = atomic_write_text(d / "plan.json", "{}")
    ...     (d / "plan.json").exists()      # held back until the command has finished
    False
    >>> (d / "plan.json").read_text()
    '{}'
    """

    def __init__(self) -> None:
        self._files: dict[Path, str] = {}  # resolved target -> label (the flag)
        self._dirs: dict[Path, str] = {}  # resolved directory of outputs -> label; every file in it is held
        self._create: set[Path] = set()  # of those, the ones to create at commit
        self._held: dict[Path, tuple[Path, bytes]] = {}
        self._live: set[Path] = set()
        self._token = None

    # -- declaring (before any work) --------------------------------------------------------
    def declare(self, path: str | os.PathLike, label: str, *, inputs=()) -> None:
        """Check ``path`` as an output (see :func:`check_output_path`) and hold its writes back."""
        target = Path(path)
        check_output_path(target, label, inputs=inputs, creating=self._creating(target))
        key = _key(target)
        if key in self._files:
            raise InputError(f"{label}: {target}: also given as {self._files[key]}; every output needs its own file")
        self._files[key] = label

    def declare_live(self, path: str | os.PathLike, label: str, *, inputs=()) -> None:
        """Check ``path`` like :meth:`declare`, but let its writes through at once: a file the command
        rewrites while it runs (``apply --state``)."""
        self.declare(path, label, inputs=inputs)
        self._live.add(_key(Path(path)))

    def declare_dir(self, path: str | os.PathLike, label: str, files=(), *, inputs=()) -> None:
        """Check directory ``path`` (created at commit if missing) and the ``files`` known to be written in
        it; every file the command writes in it is held back and committed with the others."""
        target = Path(path)
        if target.exists() or target.is_symlink():
            if not target.is_dir():
                raise InputError(f"{label}: {target}: exists and is not a directory")
            _probe_writable(target, label, target)
        else:
            ancestor = target.parent
            while not ancestor.exists() and ancestor != ancestor.parent:
                ancestor = ancestor.parent
            if not ancestor.is_dir():
                raise InputError(f"{label}: {target}: {ancestor} is not a directory")
            _probe_writable(ancestor, label, target)
            self._create.add(_dir_key(target))
        self._dirs[_dir_key(target)] = label
        for name in files:
            self.declare(target / name, label, inputs=inputs)

    def _creating(self, target: Path) -> bool:
        return _dir_key(target.parent if str(target.parent) else Path(".")) in self._create

    def creates(self, directory: str | os.PathLike) -> bool:
        """True when ``directory`` is an output directory this set creates when it commits."""
        return _dir_key(Path(directory)) in self._create

    # -- running ----------------------------------------------------------------------------
    def __enter__(self) -> "OutputSet":
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        _ACTIVE.reset(self._token)
        self._token = None
        if exc_type is None:
            self.commit()
        self._held.clear()

    def hold(self, target: Path, data: bytes) -> bool:
        """Keep ``data`` for ``target`` until :meth:`commit` if ``target`` was declared; else False."""
        key = _key(target)
        if key in self._live or (key not in self._files and key.parent not in self._dirs):
            return False
        self._held[key] = (target, bytes(data))
        return True

    def _label(self, key: Path) -> str:
        return self._files.get(key) or self._dirs[key.parent]

    def commit(self) -> list[Path]:
        """Write every held file: all to temporary files first, then rename them all.

        On any failure nothing is renamed (or what was renamed is put back), the temporary files are
        removed, and an :class:`InputError` names the file.
        """
        if not self._held:
            return []
        made_dirs: list[Path] = []
        temps: list[tuple[Path, Path]] = []
        done: list[tuple[Path, Path | None]] = []  # (target, backup of the old file or None)
        try:
            for key in sorted(self._create):
                if any(k.parent == key for k in self._held) and not key.exists():
                    missing = [key]
                    while not missing[-1].parent.exists():
                        missing.append(missing[-1].parent)
                    key.mkdir(parents=True)
                    made_dirs.extend(reversed(missing))
            for key, (target, _) in self._held.items():  # nothing in the way of any file before writing one
                _check_target(target, self._label(key))
            for key, (target, data) in self._held.items():
                temps.append((_write_temp(target, data, self._label(key)), target))
            for tmp, target in temps:
                backup = _backup(target)
                try:
                    os.replace(tmp, target)
                except OSError as exc:
                    if backup is not None:
                        _unlink(backup)
                    raise InputError(f"{self._label(_key(target))}: {target}: cannot write: {_reason(exc)}") from None
                done.append((target, backup))
        except BaseException:
            for tmp, _ in temps:
                _unlink(tmp)
            for target, backup in reversed(done):
                if backup is not None:
                    os.replace(backup, target)
                else:
                    _unlink(target)
            for d in reversed(made_dirs):
                try:
                    d.rmdir()
                except OSError:
                    pass
            raise
        for _, backup in done:
            if backup is not None:
                _unlink(backup)
        return [t for t, _ in done]


def check_output_path(path: str | os.PathLike, label: str, *, inputs=(), creating: bool = False) -> None:
    """Raise :class:`InputError` (naming ``label``, the flag) unless ``path`` can take a new file.

    Checks: the path is not empty and not a directory; its directory exists (unless ``creating``),
    is a directory and takes new files (a file is created and removed there: permissions, read-only
    file systems and ``/proc`` all answer truly); the path is none of ``inputs`` (same file through a
    symlink or a hard link too).
    """
    target = Path(path)
    if not str(path).strip():
        raise InputError(f"{label}: empty output path")
    for inp in inputs:
        if _same_file(target, Path(inp)):
            raise InputError(f"{label}: {target} is also an input ({inp}); write the output to another file")
    if target.is_dir():
        raise InputError(f"{label}: {target}: is a directory, expected a file path")
    parent = target.parent if str(target.parent) else Path(".")
    if creating:
        return
    try:
        parent.stat()
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise InputError(f"{label}: {target}: output directory {parent} does not exist") from None
        raise InputError(f"{label}: {target}: output directory {parent}: {_reason(exc)}") from None
    if not parent.is_dir():
        raise InputError(f"{label}: {target}: {parent} is not a directory")
    _probe_writable(parent, label, target)


def check_input_file(path: str | os.PathLike, what: str = "file", *, allow_dir: bool = False,
                     max_bytes: int | None = None) -> Path:
    """``path`` if it names a readable file, else :class:`InputError` saying why: not found, a symlink
    loop, a directory, not a regular file, no permission, more than ``max_bytes``.

    >>> check_input_file("/nonexistent/plan.json", "plan file")
    Traceback (most recent call last):
    ...
    planner.errors.InputError: /nonexistent/plan.json: plan file not found
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            if p.is_symlink():
                raise InputError(f"{p}: {what} is a dangling symlink (its target does not exist)") from None
            raise InputError(f"{p}: {what} not found") from None
        if exc.errno == errno.ELOOP:
            raise InputError(f"{p}: {what} is a symlink loop") from None
        raise InputError(f"{p}: cannot read {what}: {_reason(exc)}") from None
    import stat as _stat

    if _stat.S_ISDIR(st.st_mode):
        if allow_dir:
            return p
        raise InputError(f"{p}: {what} is a directory, expected a file")
    if not _stat.S_ISREG(st.st_mode):
        raise InputError(f"{p}: {what} is not a regular file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: cannot read {what}: permission denied")
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputError(f"{p}: {what} of {st.st_size} bytes is above the limit of {max_bytes} bytes "
                         "(MAX_TEXT_BYTES, docs/limits.md)")
    return p


def read_input_text(path: str | os.PathLike, what: str = "file") -> str:
    """The text of a UTF-8 file (a leading BOM dropped), or :class:`InputError` naming the file and
    why it cannot be read (see :func:`check_input_file`; more than ``MAX_TEXT_BYTES``; bytes that are not
    UTF-8 at their offset)."""
    p = check_input_file(path, what, max_bytes=MAX_TEXT_BYTES)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot read {what}: {_reason(exc)}") from None
    return decode_text(data, str(p), what)


def decode_text(data: bytes, where: str, what: str | None = None) -> str:
    """``data`` as UTF-8 text (a leading BOM dropped), or :class:`InputError` naming ``where`` (and
    ``what`` it is), the first byte that is not UTF-8 and its offset.

    >>> decode_text(b"ok \\xff", "loads.json")
    Traceback (most recent call last):
    ...
    planner.errors.InputError: loads.json: not UTF-8 text (byte 0xff at offset 3)
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        head = f"{where}: {what} is" if what else f"{where}:"
        raise InputError(f"{head} not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


# -- helpers --------------------------------------------------------------------------------------
def _key(path: Path) -> Path:
    """One name per file: the resolved directory plus the file name (a symlinked file is replaced, not
    followed, as os.replace does)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    return Path(os.path.realpath(parent)) / p.name


def _dir_key(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else type(exc).__name__


def _probe_writable(directory: Path, label: str, target: Path) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=".moeplan-probe.", dir=directory)
    except OSError as exc:
        raise InputError(f"{label}: {target}: cannot write in {directory}: {_reason(exc)}") from None
    os.close(fd)
    _unlink(Path(probe))


def _check_target(target: Path, label: str | None = None) -> None:
    head = f"{label}: " if label else ""
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{head}{target}: output directory {parent} does not exist")
    if target.is_dir():
        raise InputError(f"{head}{target}: is a directory, expected a file path")


def _write_temp(target: Path, data: bytes, label: str | None = None) -> Path:
    parent = target.parent if str(target.parent) else Path(".")
    try:
        mode = target.stat().st_mode & 0o7777 if target.is_file() else new_file_mode()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise InputError(f"{label + ': ' if label else ''}{target}: cannot write: {_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as exc:
        _unlink(Path(tmp))
        if isinstance(exc, OSError):
            raise InputError(f"{label + ': ' if label else ''}{target}: cannot write: {_reason(exc)}") from None
        raise
    return Path(tmp)


def _backup(target: Path) -> Path | None:
    """A hard link to the file about to be replaced (to put it back if a later rename fails)."""
    if not target.is_file():
        return None
    backup = target.parent / f".{target.name}.{os.getpid()}.bak"
    try:
        _unlink(backup)
        os.link(target, backup)
    except OSError:
        return None
    return backup


def _unlink(path: Path | str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
