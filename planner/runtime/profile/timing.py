r"""Time the latency model's ops with torch on the local device: :func:`run_profile`.

What is timed (:class:`~planner.runtime.profile.config.ProfileConfig`; shapes as in
:mod:`planner.perf.measured`, ``T`` = each of ``token_counts``, ``H`` / ``I`` the expert's hidden /
intermediate width)::

    gemm           (T x k) @ (k x n) for each (k, n) of gemm_shapes, weights stored [n, k] (nn.Linear)
    mlp_up_proj    one expert's fused gate+up projection (T x H) @ (H x 2I)
    act            SiLU(gate) * up: T rows, n = 2I in, k = I out (two kernels: silu, mul)
    mlp_down_proj  (T x I) @ (I x H)
    add            residual add of T rows of H
    norm           T rows of each of norm_widths: F.rms_norm on CUDA; on CPU the fused
                   F.layer_norm kernel (same bytes), because torch's CPU rms_norm is a chain of
                   unfused kernels with fp32 temporaries (``norm_kernel`` in the provenance)
    all_to_all     dist.all_to_all_single of S bytes per rank across num_workers local processes
                   (gloo on CPU, NCCL on GPU); the received data is checked
  in the sidecar only (the op-timing format has no op for them):
    attention      causal SDPA prefill on [batch, heads, tokens, head_dim]
    expert FFN     up -> act -> down as one call: do the op times add up?

Timing. Outputs are preallocated (``out=``) where torch allows, so times are kernel times, as on
a GPU with a caching allocator. Each point is timed in ``rounds`` rounds spread over the run;
a round makes ``warmup`` untimed calls, then enough timed calls to fill ``target_s_per_round``
(``min_repeats`` .. ``max_repeats``); the point's time is the median of all its timed calls, so
a slow spell of the host hits one round of every point rather than every call of one. CPU:
1 torch thread by default -- with 2 threads on this 2-core host, one busy process elsewhere
made every parallel op wait for its descheduled second thread (times quantised to 8 ms) -- and
each call's wall time, or its thread CPU time when smaller (:func:`_call_timer`); CUDA: events
around each call. All-to-all: a barrier before each call, the call's time is the slowest
rank's, the median over ``rounds x a2a_repeats`` calls.

torch is imported inside the functions (house rule: torch only in ``planner/runtime/``), so the
spawned all-to-all workers, which import this package, start fast. Scripts that call
:func:`run_profile` need the ``if __name__ == "__main__":`` guard (spawned workers re-import the
main module).
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from planner.errors import InputError
from planner.perf.measured import COLLECTIVE_OPS, OpTable
from planner.profiles import get_gpu
from planner.runtime.profile.config import DEFAULT_CONFIG, QUICK_CONFIG, ProfileConfig
from planner.runtime.profile.result import AttentionPoint, ExpertFfnPoint, MeasuredProfile

__all__ = ["run_profile"]


@dataclass
class _Point:
    kind: str  # "op" (a table row), "attention" or "expert_ffn"
    meta: dict
    fn: Callable[[], object]
    rounds: list = field(default_factory=list)  # seconds of each timed call, one list per round


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _device_id(name: str, is_cpu: bool) -> str:
    """The table's device column: a shipped GPU profile's id when ``name`` is one of its aliases
    (so :func:`~planner.perf.measured.load_op_table` reads back the same id)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"
    if is_cpu:
        return "cpu-" + slug
    try:
        return get_gpu(name).id
    except InputError:
        return slug


def _call_timer(torch, device, single_thread: bool) -> tuple[Callable, str]:
    """(``run(fn, n) -> [seconds of each call]``, description) for ``device``.

    CPU with one torch thread (the op runs in the calling thread): each call's wall time, or its
    thread CPU time when that is smaller -- the thread was descheduled during the call, and a
    time-sliced call says nothing about the op (measured here: a 10.5 ms GEMM read 34 ms by
    the wall clock and 10.6 ms by the thread clock with two busy processes on the 2 cores). The
    CPU clock is read outside the wall clock, so its ~0.6 us syscall does not enter short calls.
    """
    if device.type == "cuda":

        def run_cuda(fn, n):
            out = []
            for _ in range(n):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                out.append(start.elapsed_time(end) / 1e3)
            return out

        return run_cuda, "cuda events"
    wall, cpu = time.perf_counter, time.thread_time

    def run_wall(fn, n):
        out = []
        for _ in range(n):
            t0 = wall()
            fn()
            out.append(wall() - t0)
        return out

    def run_wall_or_cpu(fn, n):
        out = []
        for _ in range(n):
            c0 = cpu()
            t0 = wall()
            fn()
            t1 = wall()
            out.append(min(t1 - t0, cpu() - c0))
        return out

    if single_thread:
        return run_wall_or_cpu, "min(time.perf_counter, time.thread_time) per call"
    return run_wall, "time.perf_counter"


def _compute_points(torch, device, dtype, cfg: ProfileConfig) -> tuple[list[_Point], str]:
    """Every compute point with its preallocated tensors; returns (points, norm kernel)."""
    F = torch.nn.functional
    gen = torch.Generator().manual_seed(0)
    T, points = max(cfg.token_counts), []

    def rand(*shape):  # small values: no overflow in 2-byte types
        return (torch.randn(*shape, generator=gen) * 0.1).to(device=device, dtype=dtype)

    def empty(*shape):
        return torch.empty(*shape, device=device, dtype=dtype)

    def add_op(op, model, m, n, k, fn):
        points.append(_Point("op", {"op": op, "model": model, "num_tokens": m, "m": m, "n": n, "k": k}, fn))

    def mm(x, w_t, o):
        return functools.partial(torch.mm, x, w_t, out=o)

    for k, n in cfg.gemm_shapes:
        x, w, o = rand(T, k), rand(n, k), empty(T, n)
        for m in cfg.token_counts:
            add_op("gemm", "", m, n, k, mm(x[:m], w.t(), o[:m]))
    H, I = cfg.expert_hidden, cfg.expert_intermediate
    label, silu = f"expert H={H} I={I}", torch.ops.aten.silu.out
    x, w_up, w_down, h, a, y = rand(T, H), rand(2 * I, H), rand(H, I), empty(T, 2 * I), empty(T, I), empty(T, H)
    torch.mm(x, w_up.t(), out=h)  # real activations for the act points

    def act(hm, am):
        gate, up = hm[:, :I], hm[:, I:]
        return lambda: torch.mul(silu(gate, out=am), up, out=am)

    def ffn(xm, hm, am, ym):
        up_proj, act_mul, down_proj = mm(xm, w_up.t(), hm), act(hm, am), mm(am, w_down.t(), ym)
        return lambda: (up_proj(), act_mul(), down_proj())

    for m in cfg.token_counts:
        add_op("mlp_up_proj", label, m, 2 * I, H, mm(x[:m], w_up.t(), h[:m]))
        add_op("act", label, m, 2 * I, I, act(h[:m], a[:m]))
        add_op("mlp_down_proj", label, m, H, I, mm(a[:m], w_down.t(), y[:m]))
    r1, r2, r3 = rand(T, H), rand(T, H), empty(T, H)
    for m in cfg.token_counts:
        add_op("add", f"hidden {H}", m, 0, H, functools.partial(torch.add, r1[:m], r2[:m], out=r3[:m]))
    norm_kernel = "rms_norm" if device.type == "cuda" else "layer_norm"
    for width in cfg.norm_widths:
        xs, g = rand(T, width), rand(width)
        for m in cfg.token_counts:
            if norm_kernel == "rms_norm":
                fn = functools.partial(F.rms_norm, xs[:m], (width,), g, 1e-6)
            else:
                fn = functools.partial(F.layer_norm, xs[:m], (width,), g, None, 1e-6)
            add_op("norm", f"hidden {width}", m, 0, width, fn)
    b, heads, d = cfg.attention_batch, cfg.attention_heads, cfg.attention_head_dim
    for L in cfg.attention_tokens:
        qkv = (rand(b, heads, L, d) for _ in range(3))
        fn = functools.partial(F.scaled_dot_product_attention, *qkv, is_causal=True)
        points.append(_Point("attention", {"batch": b, "heads": heads, "tokens": L, "head_dim": d}, fn))
    for m in cfg.token_counts:
        fn = ffn(x[:m], h[:m], a[:m], y[:m])
        points.append(_Point("expert_ffn", {"tokens": m, "hidden": H, "intermediate": I}, fn))
    return points, norm_kernel


def _time_points(points: list[_Point], run, cfg: ProfileConfig, progress) -> None:
    for r in range(cfg.rounds):
        for p in points:
            warm = run(p.fn, max(1, cfg.warmup))
            n = math.ceil(cfg.target_s_per_round / max(warm[-1], 1e-7))
            p.rounds.append(run(p.fn, int(min(cfg.max_repeats, max(cfg.min_repeats, n)))))
        progress(f"compute round {r + 1}/{cfg.rounds} done")


def _all_to_all_worker(rank: int, world_size: int, sizes_bytes, rounds: int, warmup: int, repeats: int,
                       use_cuda: bool):  # fmt: skip
    """Spawned by :func:`run_profile`, one per rank: time ``all_to_all_single`` per size and round
    (``{bytes: [[seconds per call] per round]}``) and check the received data.

    Chunk ``j`` of rank ``r``'s send buffer holds ``(r * n + j) * 1024 + (i mod 1024)`` (exact in
    float32), so chunk ``s`` of rank ``r``'s receive buffer must hold ``(s * n + r) * 1024 + (i mod 1024)``.
    """
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", rank) if use_cuda else torch.device("cpu")
    buffers = {}
    for size in sizes_bytes:
        chunk = max(1, size // 4 // world_size)
        pattern = torch.arange(chunk, device=device, dtype=torch.float32).remainder_(1024)
        send = torch.cat([pattern + (rank * world_size + j) * 1024 for j in range(world_size)])
        expected = torch.cat([pattern + (s * world_size + rank) * 1024 for s in range(world_size)])
        buffers[send.numel() * 4] = (send, torch.empty_like(send), expected, chunk)
    times = {size: [] for size in buffers}
    for _ in range(rounds):
        for size, (send, recv, expected, _) in buffers.items():
            samples = []
            for i in range(warmup + repeats):
                dist.barrier()
                t0 = time.perf_counter()
                dist.all_to_all_single(recv, send)
                if use_cuda:
                    torch.cuda.synchronize(device)
                if i >= warmup:
                    samples.append(time.perf_counter() - t0)
            if not torch.equal(recv, expected):
                raise RuntimeError(f"all_to_all_single of {size} bytes delivered wrong data to rank {rank}")
            recv.zero_()  # the next round's check must see new data
            times[size].append(samples)
    send, recv, expected, chunk = buffers[max(buffers)]
    dist.all_to_all_single(recv, send)
    heads = [recv[s * chunk : s * chunk + 3].tolist() for s in range(world_size)]
    return {"times_s": times, "received": heads}


def _estimate(rounds) -> tuple[float, float]:
    """(time, spread) of one point from its rounds of timed calls (seconds): the median of all
    calls, and their interquartile range over it. (Paired on the same calls with another process
    busy on this host, the pooled median gave smaller held-out errors than the smallest round
    median, the minimum or the 10th / 25th percentile.)"""
    q1, med, q3 = np.percentile(np.concatenate(rounds), [25, 50, 75])
    return float(med), float((q3 - q1) / med) if med > 0 else 0.0


def _measure_all_to_all(cfg: ProfileConfig, backend: str, use_cuda: bool):
    """(table rows, spreads, per rank the first 3 values of each received chunk) of the all-to-all."""
    from planner.runtime.dist import run_workers

    per_rank = run_workers(_all_to_all_worker, cfg.num_workers, backend=backend, timeout_s=cfg.timeout_s,
                           args=(tuple(cfg.a2a_sizes_bytes), cfg.rounds, cfg.a2a_warmup, cfg.a2a_repeats, use_cuda))  # fmt: skip
    rows, spreads = [], []
    for size in per_rank[0]["times_s"]:
        # per call, the slowest rank's time
        slowest = [np.max([r["times_s"][size][i] for r in per_rank], axis=0) for i in range(cfg.rounds)]
        time_s, spread = _estimate(slowest)
        rows.append({"op": "all_to_all", "size_bytes": float(size), "num_workers": cfg.num_workers,
                     "devices_per_node": cfg.num_workers, "time_ms": time_s * 1e3})  # fmt: skip
        spreads.append(spread)
    return rows, spreads, tuple(tuple(tuple(c) for c in r["received"]) for r in per_rank)


def _op_table(rows: list[dict], device_id: str, source: str) -> OpTable:
    def col(name, dtype, default=0):
        return np.array([r.get(name, default) for r in rows], dtype=dtype)

    return OpTable(
        device=np.full(len(rows), device_id),
        model=np.array([r.get("model", "") for r in rows], dtype=str),
        op=np.array([r["op"] for r in rows], dtype=str),
        **{name: col(name, np.int64) for name in ("num_tokens", "m", "n", "k", "num_workers", "devices_per_node")},
        tp=np.array([0 if r["op"] in COLLECTIVE_OPS else 1 for r in rows], dtype=np.int64),
        size_bytes=col("size_bytes", np.float64, 0.0),
        time_ms=col("time_ms", np.float64),
        source=source,
    )


def run_profile(config: ProfileConfig | None = None, *, quick: bool = False, num_workers: int | None = None,
                progress: Callable[[str], None] | None = None) -> MeasuredProfile:  # fmt: skip
    """Time the ops of ``config`` on the local device (CUDA if available, else CPU).

    Parameters
    ----------
    config : what to time; default :data:`DEFAULT_CONFIG` (:data:`QUICK_CONFIG` with ``quick``).
    quick : use :data:`QUICK_CONFIG` when ``config`` is not given.
    num_workers : processes of the all-to-all, overriding ``config.num_workers`` (< 2: none).
    progress : called with a short line after each phase (the CLI prints them on stderr).

    Returns
    -------
    MeasuredProfile
        The table (one row per op and token count or message size; ``time_ms`` the median) and
        the provenance: device, torch version, date, host CPUs, dtype, threads, repeats, timer.

    Raises
    ------
    InputError
        torch is missing, or a bad config.
    RuntimeAdapterError
        An all-to-all worker failed, delivered wrong data, or timed out.
    """
    try:
        import torch
    except ImportError:
        raise InputError("the profiler needs torch: pip install 'moeplan[runtime]' (torch>=2.4)") from None
    cfg = config if config is not None else (QUICK_CONFIG if quick else DEFAULT_CONFIG)
    cfg = (cfg if num_workers is None else replace(cfg, num_workers=num_workers)).validate()
    progress = progress or (lambda line: None)
    started = time.perf_counter()
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda", 0) if use_cuda else torch.device("cpu")
    name = torch.cuda.get_device_name(device) if use_cuda else _cpu_name()
    device_id = _device_id(name, not use_cuda)
    if use_cuda and cfg.num_workers > torch.cuda.device_count():
        raise InputError(f"num_workers {cfg.num_workers} > {torch.cuda.device_count()} visible GPUs (NCCL: one GPU per rank)")
    threads_before = torch.get_num_threads()
    try:
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        threads = torch.get_num_threads()
        points, norm_kernel = _compute_points(torch, device, getattr(torch, cfg.dtype), cfg)
        progress(f"{len(points)} compute points on {name} ({device_id}), {cfg.dtype}, {threads} thread(s)")
        run, timer = _call_timer(torch, device, threads == 1)
        _time_points(points, run, cfg, progress)
    finally:
        torch.set_num_threads(threads_before)
    ops = [p for p in points if p.kind == "op"]
    rows = [{**p.meta, "time_ms": _estimate(p.rounds)[0] * 1e3} for p in ops]
    spreads = [_estimate(p.rounds)[1] for p in ops]
    attention = tuple(AttentionPoint(**p.meta, time_ms=_estimate(p.rounds)[0] * 1e3)
                      for p in points if p.kind == "attention")  # fmt: skip
    expert_ffn = tuple(ExpertFfnPoint(**p.meta, time_ms=_estimate(p.rounds)[0] * 1e3)
                       for p in points if p.kind == "expert_ffn")  # fmt: skip
    del points, ops  # free the tensors before the workers start
    backend, check = ("nccl" if use_cuda else "gloo"), ()
    if cfg.num_workers >= 2:
        t0 = time.perf_counter()
        a2a_rows, a2a_spreads, check = _measure_all_to_all(cfg, backend, use_cuda)
        rows, spreads = rows + a2a_rows, spreads + a2a_spreads
        progress(f"all_to_all on {cfg.num_workers} {backend} workers done ({time.perf_counter() - t0:.1f} s)")
    date = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    if use_cuda:
        memory_bytes = torch.cuda.get_device_properties(device).total_memory
    else:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    provenance = {
        "device": device_id,
        "device_name": name,
        "device_type": device.type,
        "memory_bytes": float(memory_bytes),
        "torch_version": torch.__version__,
        "date_utc": date,
        "host_cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "dtype": cfg.dtype,
        "torch_threads": threads,
        "norm_kernel": norm_kernel,
        "timer": timer,
        "statistic": "median of all timed calls of all rounds (all-to-all: of the slowest rank's time per call)",
        "repeats": {"rounds": cfg.rounds, "warmup_per_round": cfg.warmup, "min_per_round": cfg.min_repeats,
                    "max_per_round": cfg.max_repeats, "target_s_per_round": cfg.target_s_per_round,
                    "a2a_warmup": cfg.a2a_warmup, "a2a_repeats": cfg.a2a_repeats},
        "collective_backend": backend if cfg.num_workers >= 2 else None,
        "num_workers": cfg.num_workers,
        "config": asdict(cfg),
        "wall_s": round(time.perf_counter() - started, 3),
    }
    return MeasuredProfile(
        table=_op_table(rows, device_id, f"moeplan profile of {name} ({cfg.dtype}, torch {torch.__version__}, {date})"),
        attention=attention,
        expert_ffn=expert_ffn,
        provenance=provenance,
        row_spread=tuple(spreads),
        all_to_all_check=check,
    )
