"""Run a function in N local processes joined by one ``torch.distributed`` process group.

The launcher of the profiler's all-to-all, the EP serving workers and the live apply. It fails
fast and cleanly: whatever a worker does (raise, exit, die by a signal, hang), the call returns or
raises within its deadline, leaves no process behind and prints nothing.

1. Payload. ``(fn, args)`` is pickled once into a private temporary directory; each worker reads
   it from there. Nothing large goes through a spawn pipe, so a worker that dies while the others
   start cannot block the parent (a spawn pipe write to a dead child could).
2. Workers. Each is a fresh ``spawn`` process (:mod:`multiprocessing`) that first arranges to die
   with its parent (Linux ``PR_SET_PDEATHSIG`` = SIGKILL, and a check that the parent is still the
   one that started it), leaves the terminal's process group (a Ctrl-C reaches the parent only,
   which then stops the workers), and sends its stdout and stderr -- Python tracebacks and torch's
   C++ (c10d) log lines -- to ``rank<r>.log`` in that directory (``TORCH_CPP_LOG_LEVEL=ERROR``).
   It sets ``MASTER_ADDR=127.0.0.1`` and a free port, limits torch to ``threads_per_worker``
   threads (the workers share the host's cores), joins the group (gloo on CPU, NCCL with one GPU
   per rank on CUDA), runs ``fn(rank, world_size, *args)`` and sends its return value back.
3. Messages. One pipe per worker carries ``report`` values (progress), the result, or the error
   (exception type and message); each message is pickled by value.
4. Watch. The parent waits on the pipes and the processes' sentinels with one deadline for the
   whole run, start-up included. A worker that raises, exits without a result, or is killed, or
   the deadline passing, becomes one :class:`~planner.errors.RuntimeAdapterError` naming the rank
   (a rank killed by a signal is named before the peers whose collectives failed because of it)
   and the directory of the worker logs, which is kept; every worker is terminated (SIGTERM,
   SIGKILL after a grace period) before the call returns or raises, on success, failure or
   ``KeyboardInterrupt``. On success the directory is removed.

torch is imported inside the functions: importing this module stays cheap and works without
torch (the doctest collector imports every module).
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from planner.errors import InputError, RuntimeAdapterError

__all__ = ["BACKENDS", "free_port", "report", "run_workers"]

#: process-group backends this launcher sets up
BACKENDS = ("gloo", "nccl")
_POLL_S = 0.2  # longest wait between two looks at the deadline
_ROOT_CAUSE_S = 1.0  # after a failure, how long to wait for the rank that caused it to show
# what a rank raises when a peer is gone (gloo / c10d): a consequence, never the cause, when a peer exited
_PEER_LOST = ("DistNetworkError", "Connection reset by peer", "Connection closed by peer", "Broken pipe")
_KILL_GRACE_S = 3.0  # SIGTERM, then SIGKILL after this long
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host`` (the OS picks it; another process could
    still take it before the workers bind it, which then fails as a RuntimeAdapterError)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_CONN = None  # in a worker: the write end of its pipe to the parent


def report(value: Any) -> None:
    """From inside a worker: hand ``value`` (picklable) to the parent's ``on_progress(rank, value)``
    now, while the run goes on (the write is synchronous: a report is delivered even if the worker
    is killed right after). A no-op outside a worker."""
    if _CONN is not None:
        _CONN.send_bytes(pickle.dumps(("progress", value)))


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel sends this process SIGKILL when its parent dies (no orphaned worker
    tracebacks after a ``kill -9`` of the command). Elsewhere the parent's cleanup does it."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _quiet(log_path: str) -> None:
    """Send this process's stdout and stderr (Python and C++ alike) to ``log_path``."""
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _worker_entry(rank, world_size, port, backend, threads, timeout_s, payload, log_path, conn, parent_pid):
    """Body of one spawned worker (module docstring, item 2)."""
    global _CONN
    _die_with_parent(parent_pid)
    try:
        os.setsid()  # out of the terminal's process group: signals from the terminal go to the parent
    except OSError:  # pragma: no cover - already a session leader
        pass
    _quiet(log_path)
    _CONN = conn
    try:
        with open(payload, "rb") as fh:
            fn, args = pickle.load(fh)
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        import torch
        import torch.distributed as dist

        torch.set_num_threads(threads)
        if backend == "nccl":
            torch.cuda.set_device(rank)
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
        try:
            value = fn(rank, world_size, *args)
        finally:
            dist.destroy_process_group()
        message = pickle.dumps(("result", value))
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent as one line
        import traceback

        traceback.print_exc()  # into the rank's log
        text = " ".join(str(exc).split())
        message = pickle.dumps(("error", f"{type(exc).__name__}: {text}" if text else type(exc).__name__))
        conn.send_bytes(message)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    conn.send_bytes(message)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _stop(processes) -> None:
    """Terminate every live worker; SIGKILL what is left after the grace period."""
    for p in processes:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + _KILL_GRACE_S
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


class _Watch:
    """The parent's view of the workers: pipes read as messages arrive, exits as they happen."""

    def __init__(self, processes, conns, on_progress):
        self.processes, self.on_progress = processes, on_progress
        self.open = {c: r for r, c in enumerate(conns)}
        self.values: dict[int, Any] = {}
        self.errors: dict[int, str] = {}  # rank -> "Type: message", in arrival order

    def _read(self, conn) -> None:
        rank = self.open[conn]
        try:
            kind, value = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):  # the worker exited (or died mid-message): nothing more from it
            conn.close()
            del self.open[conn]
            return
        except Exception as exc:  # noqa: BLE001 - a result that does not unpickle in the parent
            kind, value = "error", f"its result could not be read: {type(exc).__name__}: {exc}"
        if kind == "progress":
            if self.on_progress is not None:
                self.on_progress(rank, value)
        elif kind == "result":
            self.values[rank] = value
        else:
            self.errors.setdefault(rank, value)

    def wait(self, timeout: float) -> None:
        from multiprocessing.connection import wait

        sentinels = {p.sentinel: p for p in self.processes if p.exitcode is None}
        for obj in wait([*self.open, *sentinels], timeout=max(0.0, timeout)):
            if obj in self.open:
                self._read(obj)

    def drain(self, rank: int) -> None:
        """Everything rank ``rank`` wrote before it exited."""
        for conn, r in list(self.open.items()):
            while r == rank and conn in self.open and conn.poll(0):
                self._read(conn)

    def failed(self) -> list[int]:
        """Ranks that are done without a result (exited, killed or raised)."""
        out = []
        for r, p in enumerate(self.processes):
            if r in self.errors or (p.exitcode is not None and r not in self.values):
                out.append(r)
        return out

    def finished(self) -> bool:
        return all(p.exitcode == 0 for p in self.processes) and not self.open


def _failure(watch: _Watch, num_workers: int, backend: str, logs: str) -> RuntimeAdapterError:
    """One error for a failed run: a rank killed by a signal other than our SIGTERM first (its peers
    fail too when their collectives lose it), else the first rank that raised (but when the only errors
    are lost peers, :data:`_PEER_LOST`, and a rank exited with a nonzero code, that rank), else the first
    that exited."""
    deadline = time.monotonic() + _ROOT_CAUSE_S
    while True:
        for r in range(num_workers):
            watch.drain(r)
        killed = [r for r, p in enumerate(watch.processes)
                  if p.exitcode is not None and p.exitcode < 0 and p.exitcode != -signal.SIGTERM]
        # after a kill, the survivors fail at their next collective: let them end, so that the reports they sent
        # before (progress of a step every rank finished) are read rather than lost when they are stopped
        if time.monotonic() > deadline or (killed and all(p.exitcode is not None for p in watch.processes)):
            break
        watch.wait(0.05)
    for r in range(num_workers):  # what a rank wrote just before it ended
        watch.drain(r)
    where = f"(worker logs: {logs})"
    if killed:
        r = killed[0]
        return RuntimeAdapterError(f"worker rank {r} of {num_workers} ({backend}) was killed by signal "
                                   f"{_signal_name(-watch.processes[r].exitcode)} {where}")
    # a rank that exited without raising, while its peers only raised because they lost it: the exit is the cause
    exited = [r for r in watch.failed() if r not in watch.errors and watch.processes[r].exitcode not in (None, 0)]
    caused = [r for r, e in watch.errors.items() if not any(m in str(e) for m in _PEER_LOST)]
    if caused or (watch.errors and not exited):
        r = (caused or list(watch.errors))[0]
        return RuntimeAdapterError(f"worker rank {r} of {num_workers} ({backend}) failed: {watch.errors[r]} {where}")
    r = exited[0] if exited else watch.failed()[0]
    code = watch.processes[r].exitcode
    how = f"was killed by signal {_signal_name(-code)}" if code is not None and code < 0 else f"exited with code {code}"
    if code == 0:
        how = "exited without a result"
    return RuntimeAdapterError(f"worker rank {r} of {num_workers} ({backend}) {how} {where}")


def run_workers(
    fn: Callable[..., Any],
    num_workers: int,
    *,
    args: tuple = (),
    backend: str = "gloo",
    timeout_s: float = 120.0,
    threads_per_worker: int = 1,
    on_progress: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``num_workers`` local processes of one process group.

    Parameters
    ----------
    fn : a module-level function (spawned workers import it by name); its return value must
        pickle. The process group is initialised before ``fn`` runs and destroyed after.
    num_workers : processes (ranks), >= 1.
    args : extra positional arguments, pickled once to a file every worker reads.
    backend : ``"gloo"`` (CPU tensors) or ``"nccl"`` (rank r uses ``cuda:r``).
    timeout_s : deadline for the whole run, start-up included; also the process group's
        timeout for each collective.
    threads_per_worker : ``torch.set_num_threads`` in every worker (1: the workers already
        oversubscribe a small host).
    on_progress : called in the parent as ``on_progress(rank, value)`` for every :func:`report`
        a worker makes, while the run goes on (and for the last ones even when a worker fails).

    Returns
    -------
    list
        ``fn``'s return value of each rank, by rank.

    Raises
    ------
    InputError
        Bad argument (unknown backend, ``num_workers < 1``, ...).
    RuntimeAdapterError
        A worker raised (the message has its rank, the exception's type and message), exited or
        was killed, returned nothing, or the deadline passed; the message ends with the directory
        of the workers' logs. Every worker is stopped first.
    """
    import multiprocessing as mp

    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not isinstance(num_workers, int) or num_workers < 1:
        raise InputError(f"num_workers must be an integer >= 1, got {num_workers!r}")
    if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < float("inf")):
        raise InputError(f"timeout_s must be a finite number > 0, got {timeout_s!r}")
    if not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise InputError(f"threads_per_worker must be an integer >= 1, got {threads_per_worker!r}")
    deadline = time.monotonic() + timeout_s
    ctx = mp.get_context("spawn")
    tmp = Path(tempfile.mkdtemp(prefix="moeplan-workers-"))
    payload = tmp / "payload.pkl"
    processes, ok = [], False
    try:
        with open(payload, "wb") as fh:
            pickle.dump((fn, tuple(args)), fh, protocol=pickle.HIGHEST_PROTOCOL)
        port = free_port()
        conns = []
        for rank in range(num_workers):
            read, write = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_worker_entry, name=f"moeplan-worker-{rank}", daemon=True,
                            args=(rank, num_workers, port, backend, threads_per_worker, float(timeout_s), str(payload),
                                  str(tmp / f"rank{rank}.log"), write, os.getpid()))
            p.start()
            write.close()  # the parent keeps the read end only: EOF when the worker is gone
            processes.append(p)
            conns.append(read)
        watch = _Watch(processes, conns, on_progress)
        while True:
            for r, p in enumerate(processes):
                if p.exitcode is not None:
                    watch.drain(r)  # what it wrote before it exited, its result included
            if watch.finished():
                break
            if watch.failed():
                raise _failure(watch, num_workers, backend, str(tmp))
            now = time.monotonic()
            if now > deadline:
                raise RuntimeAdapterError(f"{num_workers} {backend} worker(s) did not finish within {timeout_s:g} s "
                                          f"(done: {sorted(watch.values)}; worker logs: {tmp})")
            watch.wait(min(_POLL_S, deadline - now))
        ok = True
    finally:
        _stop(processes)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            payload.unlink(missing_ok=True)
    return [watch.values[r] for r in range(num_workers)]
