"""Run a function in N local processes joined by one ``torch.distributed`` process group.

The launcher of the profiler's all-to-all, the EP serving workers and the live apply. Each
worker is a fresh ``spawn`` process (``torch.multiprocessing.start_processes``, what
``mp.spawn`` does) that sets ``MASTER_ADDR=127.0.0.1`` and a free port, limits torch to
``threads_per_worker`` threads (the workers share the host's cores), joins the group (gloo on
CPU, NCCL with one GPU per rank on CUDA), runs ``fn(rank, world_size, *args)`` and sends its
return value back. The parent waits with a deadline; a worker that raises, dies or outlives
the deadline becomes one :class:`~planner.errors.RuntimeAdapterError` naming the rank, and every
other worker is terminated, so no process outlives the call.

torch is imported inside the functions: importing this module stays cheap and works without
torch (the doctest collector imports every module).
"""

from __future__ import annotations

import os
import queue as _queue
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from planner.errors import InputError, RuntimeAdapterError

__all__ = ["BACKENDS", "free_port", "report", "run_workers"]

#: process-group backends this launcher sets up
BACKENDS = ("gloo", "nccl")
_POLL_S = 0.05  # how often the parent looks at the workers and the result queue
_KILL_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this long


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host`` (the OS picks it; another process could
    still take it before the workers bind it, which then fails as a RuntimeAdapterError)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_PROGRESS = None  # in a worker: the parent's progress queue (None when the parent takes no progress)
_RANK = None


def report(value: Any) -> None:
    """From inside a worker: hand ``value`` (picklable) to the parent's ``on_progress(rank, value)``
    now, while the run goes on. A no-op when the parent passed no ``on_progress``."""
    if _PROGRESS is not None:
        _PROGRESS.put((_RANK, value))


def _worker_entry(local_rank, fn, args, world_size, port, backend, threads, timeout_s, results, progress=None):
    """Body of one spawned worker: join the group, run ``fn``, report ``(rank, value)``."""
    global _PROGRESS, _RANK
    _PROGRESS, _RANK = progress, local_rank
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, rank=local_rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
    try:
        value = fn(local_rank, world_size, *args)
        results.put((local_rank, value))
    finally:
        dist.destroy_process_group()


def _drain(results, into: dict) -> None:
    while True:
        try:
            rank, value = results.get_nowait()
        except _queue.Empty:
            return
        into[rank] = value


def _drain_progress(progress, on_progress) -> None:
    while progress is not None and not progress.empty():
        rank, value = progress.get()
        on_progress(rank, value)


def _root_cause(processes, reported: int, wait_s: float = 1.0) -> int | None:
    """A rank killed by a signal, if one other than ``reported`` was: the peers of a killed rank fail
    too (their collectives lose the connection), and the parent may notice one of them first.
    SIGTERM does not count: torch's ``join`` sends it to the survivors of the first failure."""
    import signal

    deadline = time.monotonic() + wait_s
    while True:
        killed = [i for i, p in enumerate(processes) if p.exitcode is not None and p.exitcode < 0 and p.exitcode != -signal.SIGTERM]
        if killed or time.monotonic() > deadline:
            return next((i for i in killed if i != reported), None) if reported not in killed else None
        time.sleep(_POLL_S)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _signal_name(sig: int) -> str:
    import signal

    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _stop(processes) -> None:
    for p in processes:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + _KILL_GRACE_S
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


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
    args : extra positional arguments, pickled to every worker.
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
        A worker raised (the message has its rank and last traceback line; the full traceback
        is chained), exited or was killed, returned nothing, or the deadline passed. The other
        workers are terminated first.
    """
    import logging

    import torch.multiprocessing as mp

    # torch logs a warning per survivor it terminates after a failure; the error we raise says it all
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not isinstance(num_workers, int) or num_workers < 1:
        raise InputError(f"num_workers must be an integer >= 1, got {num_workers!r}")
    if not timeout_s > 0:
        raise InputError(f"timeout_s must be > 0, got {timeout_s!r}")
    if not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise InputError(f"threads_per_worker must be an integer >= 1, got {threads_per_worker!r}")
    results = mp.get_context("spawn").Queue()
    # a SimpleQueue writes to the pipe inside put(): a report is delivered even if its worker is
    # killed right after (a Queue's feeder thread would die with it)
    progress = mp.get_context("spawn").SimpleQueue() if on_progress is not None else None
    port = free_port()
    context = mp.start_processes(
        _worker_entry,
        args=(fn, tuple(args), num_workers, port, backend, threads_per_worker, float(timeout_s), results, progress),
        nprocs=num_workers,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout_s
    values: dict[int, Any] = {}
    try:
        while True:
            _drain(results, values)  # before join: a worker blocks on a full pipe until read
            _drain_progress(progress, on_progress)
            try:
                if context.join(timeout=_POLL_S):
                    break
            except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
                _drain_progress(progress, on_progress)
                killed = _root_cause(context.processes, exc.error_index)
                if killed is not None:
                    sig = -context.processes[killed].exitcode
                    raise RuntimeAdapterError(
                        f"worker rank {killed} of {num_workers} ({backend}) was killed by signal {_signal_name(sig)}"
                    ) from exc
                if isinstance(exc, mp.ProcessRaisedException):
                    raise RuntimeAdapterError(
                        f"worker rank {exc.error_index} of {num_workers} ({backend}) failed: {_last_line(exc.msg)}"
                    ) from exc
                how = f"was killed by signal {exc.signal_name}" if exc.signal_name else f"exited with code {exc.exit_code}"
                raise RuntimeAdapterError(f"worker rank {exc.error_index} of {num_workers} ({backend}) {how}") from exc
            if time.monotonic() > deadline:
                raise RuntimeAdapterError(
                    f"{num_workers} {backend} worker(s) did not finish within {timeout_s:g} s (done: {sorted(values)})"
                )
        _drain(results, values)  # every worker has exited: what is left in the pipe
        _drain_progress(progress, on_progress)
    finally:
        _stop(context.processes)
        results.close()
        if progress is not None:
            progress.close()
    missing = [r for r in range(num_workers) if r not in values]
    if missing:
        raise RuntimeAdapterError(f"worker rank(s) {missing} of {num_workers} finished without a result")
    return [values[r] for r in range(num_workers)]
