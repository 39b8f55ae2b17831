"""Discrete-event serving simulator: aggregated (continuous batching, chunked prefill) or disaggregated
(prefill pool -> KV transfer -> decode pool) deployments on a :class:`~planner.inputs.Workload`.

A deployment is one or two :class:`Pool` s of identical instances, each described by a
:class:`~planner.perf.cost.CostModel`:

``[Pool(cost, phase="both")]``
    aggregated serving: every instance prefills and decodes;
``[Pool(p, phase="prefill"), Pool(d, phase="decode")]``
    disaggregated: prompts are prefilled in one pool, their KV moved to the other, which decodes;
``[Pool(p, phase="prefill")]`` or ``[Pool(d, phase="decode")]``
    one phase alone (DistServe's per-phase placement search): a prefill-only run finishes each
    request at its first token; a decode-only run starts each request at its arrival as if its
    prompt were prefilled and its KV already in place (TTFT 0).

Rules (one instance runs one step at a time per pipeline stage; time advances by the cost model's
step times):

1. **Routing.** An arriving request goes to one instance of the first pool, a prefilled one to
   one instance of the decode pool: ``least_loaded`` (fewest tokens reserved in KV or queued, ties
   to the lower index) or ``round_robin``.
2. **Admission and KV reservation.** Requests wait in FCFS order; the head of the queue is admitted
   when its reservation fits the instance's free KV (and the batch has a slot); nobody overtakes
   it. An instance that decodes reserves ``prompt + output`` tokens at admission and frees them
   when the last token is emitted, so a running sequence is never preempted (TensorRT-LLM's
   ``GUARANTEED_NO_EVICT`` policy; it assumes the output length is known, where engines reserve
   ``max_tokens``). A prefill instance reserves the prompt from admission until its KV has
   reached the decode instance. A request larger than an instance's whole capacity is rejected.
3. **Steps (phase both: Sarathi-style continuous batching).** A step holds every decoding sequence
   of the lane (one token each; decodes are never held back) and then, into the token budget
   left, chunks of prompts: first the prompts already being prefilled, oldest first, then new
   admissions. With ``chunked_prefill`` a prompt is cut to the budget left; without it a whole
   prompt that does not fit waits for the next step (it runs alone when it is longer than the
   whole budget). A prompt's last chunk emits its first token; it decodes from the next step on.
   At most ``max_batch_size`` sequences (decoding plus being prefilled) share a step.
4. **Prefill pool (DistServe).** Batches of whole prompts in FCFS order up to the token budget
   (``token_budget`` None: unbounded) and ``max_batch_size`` prompts, no decodes. On a pipeline
   a new batch enters the first stage as soon as it is free.
5. **KV transfer.** When a prompt is prefilled the decode instance is chosen (rule 1); the
   transfer starts once that instance has room for ``prompt + output`` tokens (FCFS) and takes
   the prefill cost model's ``kv_transfer_time_s(prompt)``; transfers do not contend. The prompt's
   KV is freed on the prefill instance when the transfer ends; the request joins the decode
   instance's next step.
6. **Decode pool.** Continuous batching of up to ``max_batch_size`` sequences per step.
7. **Pipelines.** An instance with ``pp`` stages runs ``pp`` lanes (micro-batch groups); a step
   takes ``step_time_s / pp`` in each stage, enters stage ``s`` when the step has left stage
   ``s - 1`` and the stage is free, and a lane's next step starts after its previous one has left
   the last stage. New sequences join the lane whose step is being formed.
8. **Ties.** Events at one instant are all applied before any instance forms a step, so requests
   arriving together are batched together. Everything is deterministic: same inputs, same result.
9. **Load.** Open loop (default): request ``i`` arrives at the workload's ``arrival_s[i]``. Closed
   loop (``concurrency=N``, what ``--concurrency`` / ``--max-concurrency`` of aiperf, genai-perf and
   ``vllm bench serve`` do): the workload's arrival times are ignored; ``N`` clients send the first
   ``N`` requests at time 0, and whenever a request ends (its last token, or its rejection) its
   client sends the next request of the workload, in workload order, ``think_time_s`` later. The
   arrival times so made are the result's ``workload.arrival_s``. Instances of a closed-loop run do
   not coast (``Engine.coast``): a request that ends can send one that joins the next step.

See ``docs/simulator.md`` for the validation against M/D/1 queueing formulas.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from planner.errors import InputError
from planner.inputs import SLO, Workload
from planner.perf._engine import DONE, TRANSFER, WAKE, Engine
from planner.perf._miss_watch import MissWatch
from planner.perf._native import ENV_VAR, built, native_pools, requested_core, run_native
from planner.perf.cost import CostModel
from planner.perf.sim_results import SimResult, StepLog

__all__ = ["Pool", "simulate", "check_pools", "simulator_core", "PHASES", "ROUTING", "DEFAULT_TOKEN_BUDGET"]

PHASES = ("both", "prefill", "decode")
ROUTING = ("least_loaded", "round_robin")
#: per-step token budget of aggregated instances when none is given (Sarathi-Serve's chunk sizes are 512-2048)
DEFAULT_TOKEN_BUDGET = 2048


@dataclass(frozen=True)
class Pool:
    """``instances`` identical serving instances described by ``cost``, all running ``phase``.

    Parameters
    ----------
    cost : a :class:`~planner.perf.cost.CostModel` (one instance).
    instances : how many.
    phase : ``"both"`` (aggregated), ``"prefill"`` or ``"decode"``.
    token_budget : tokens per step. Default: :data:`DEFAULT_TOKEN_BUDGET` for ``both``, unbounded for
        ``prefill``; ignored by ``decode``.
    chunked_prefill : cut prompts to the budget left (Sarathi). Default: True for ``both``, False
        for ``prefill`` (DistServe batches whole prompts).
    max_batch_size : sequences per step; default the cost model's.
    routing : ``"least_loaded"`` or ``"round_robin"`` (simulator rule 1).

    Examples
    --------
    >>> from planner.perf.cost import distserve_cost
    >>> Pool(distserve_cost("opt-13b", tp=2), 2, phase="prefill").num_gpus
    4
    """

    cost: CostModel
    instances: int = 1
    phase: str = "both"
    token_budget: int | None = None
    chunked_prefill: bool | None = None
    max_batch_size: int | None = None
    routing: str = "least_loaded"

    def __post_init__(self) -> None:
        if not isinstance(self.cost, CostModel):
            raise InputError(f"expected a CostModel, got {type(self.cost).__name__}", param="cost")
        if self.phase not in PHASES:
            raise InputError(f"unknown phase {self.phase!r}; known: {', '.join(PHASES)}", param="phase")
        if self.routing not in ROUTING:
            raise InputError(f"unknown routing {self.routing!r}; known: {', '.join(ROUTING)}", param="routing")
        for name in ("instances", "token_budget", "max_batch_size"):
            v = getattr(self, name)
            if v is None and name != "instances":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"must be an integer >= 1, got {v!r}", param=name)
        if self.chunked_prefill is not None and not isinstance(self.chunked_prefill, bool):
            raise InputError(f"must be True, False or None, got {self.chunked_prefill!r}", param="chunked_prefill")
        c = self.cost
        if c.kv_capacity_tokens < 1 or c.max_batch_size < 1 or c.pipeline_stages < 1 or c.num_gpus < 1:
            raise InputError(f"{c.name}: KV capacity, max batch, stages and GPUs must be >= 1", param="cost")

    @property
    def num_gpus(self) -> int:
        """GPUs of the pool: instances x GPUs per instance."""
        return self.instances * self.cost.num_gpus

    @property
    def resolved_token_budget(self) -> int | None:
        """The token budget in force (None: unbounded)."""
        if self.phase == "decode":
            return None
        if self.token_budget is None:
            return DEFAULT_TOKEN_BUDGET if self.phase == "both" else None
        return int(self.token_budget)

    @property
    def resolved_chunked(self) -> bool:
        """Whether prompts are chunked."""
        return (self.phase == "both") if self.chunked_prefill is None else self.chunked_prefill

    @property
    def label(self) -> str:
        """``2 x prefill distserve opt-13b tp2pp1``."""
        return f"{self.instances} x {self.phase} {self.cost.name}"


def check_pools(pools) -> tuple[Pool, ...]:
    """``pools`` as a tuple of :class:`Pool`, checked to be a deployment: ``[both]``, ``[prefill, decode]``,
    ``[prefill]`` or ``[decode]`` (a single :class:`Pool` is accepted)."""
    if isinstance(pools, Pool):
        pools = (pools,)
    if not isinstance(pools, (list, tuple)) or not pools or not all(isinstance(p, Pool) for p in pools):
        raise InputError("expected a Pool or a list of Pools", param="pools")
    phases = [p.phase for p in pools]
    if phases not in (["both"], ["prefill"], ["decode"], ["prefill", "decode"]):
        raise InputError(f"pools of phases {phases} are no deployment; give [both], [prefill, decode], "
                         "[prefill] or [decode]", param="pools")
    return tuple(pools)


def _engine_order(engine: Engine) -> tuple[int, int]:
    """Order in which dirty engines form their steps at one instant: pool, then instance."""
    return engine.pool_index, engine.index


class _ClosedLoopEngine(Engine):
    """An instance of a closed-loop run (rule 9): a request that ends sends its client's next one, which
    may join the very next step, so pure decode steps cannot run ahead of the event queue."""

    def can_coast(self) -> bool:
        return False


class _Sim:
    """Event loop and request bookkeeping (module docstring); engines call back into it."""

    def __init__(self, workload: Workload, pools: tuple[Pool, ...], record_steps: bool, progress, progress_every,
                 stop_on_miss=None, concurrency: int | None = None, think_time_s: float = 0.0):
        self.inp = workload.input_tokens.tolist()
        self.out = workload.output_tokens.tolist()
        n = len(self.inp)
        # closed loop (rule 9): the first N requests at 0, the others sent as requests end (inf until then);
        # the loop reads arrival[i] afresh at every event, so it sees each one once it is set
        self.closed = concurrency is not None
        if self.closed:
            first = min(concurrency, n)
            self.arrival = [0.0] * first + [math.inf] * (n - first)
            self.next_send = first
            self.think_s = think_time_s
        else:
            self.arrival = workload.arrival_s.tolist()
        self.first = [math.nan] * n
        self.finish = [math.nan] * n
        self.rejected = [False] * n
        self.prefill_inst = [-1] * n
        self.decode_inst = [-1] * n
        self.tokens = 0
        self.done = 0
        self.heap: list = []
        self.seq = 0
        self.dirty: set = set()
        self.step_log = [] if record_steps else None
        self.progress = progress
        self.progress_every = progress_every
        self.pools = pools
        engine = _ClosedLoopEngine if self.closed else Engine
        self.engines = [[engine(self, i, j, p.cost, p.phase, p.resolved_token_budget, p.resolved_chunked,
                                p.max_batch_size or p.cost.max_batch_size) for j in range(p.instances)]
                        for i, p in enumerate(pools)]
        self.rr = [0] * len(pools)
        self.decode_pool = 1 if len(pools) == 2 else None
        self.prefill_engine_of: dict[int, Engine] = {}
        self.watch = None if stop_on_miss is None else MissWatch(stop_on_miss, self.arrival, self.out,
                                                                  pools[-1].phase != "prefill")
        self.stopped = False

    # -- called by engines -----------------------------------------------------------------------
    def push(self, t, kind, engine, lane, chunks, bs) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, engine, lane, chunks, bs))

    def first_token(self, rid: int, t: float) -> None:
        self.first[rid] = t
        self.tokens += 1
        if self.watch is not None:
            self.watch.first_token(rid, t)

    def finished(self, rid: int, t: float) -> None:
        self.finish[rid] = t
        self.done += 1
        if self.watch is not None:
            self.watch.finished(rid, self.first[rid], t)
        if self.closed:
            self._send_next(t)
        if self.progress is not None and self.done % self.progress_every == 0:
            self.progress(self.done, len(self.inp))

    def prefilled(self, rid: int, t: float, engine: Engine) -> None:
        """A prefill instance emitted the first token: finish, or route to the decode pool."""
        self.first_token(rid, t)
        if self.decode_pool is None or self.out[rid] == 1:
            engine.release(self.inp[rid])
            self.finished(rid, t)
            return
        target = self._route(self.decode_pool)
        if self.inp[rid] + self.out[rid] > target.kv_cap:
            engine.release(self.inp[rid])
            self.rejected[rid] = True
            self.first[rid] = math.nan
            self.tokens -= 1
            self.done += 1
            if self.watch is not None:
                self.watch.rejected(rid)
            if self.closed:
                self._send_next(t)
            return
        self.prefill_engine_of[rid] = engine
        self.decode_inst[rid] = target.index
        target.enqueue(rid)

    def transfer(self, rid: int, target: Engine, t: float) -> None:
        """Start moving a request's KV to ``target`` (a decode-only run has nothing to move)."""
        src = self.prefill_engine_of.get(rid)
        dt = 0.0 if src is None else self.pools[src.pool_index].cost.kv_transfer_time_s(self.inp[rid])
        self.push(t + dt, TRANSFER, target, None, rid, 0)

    # -- routing and arrivals ------------------------------------------------------------------------
    def _route(self, pool_index: int) -> Engine:
        engines = self.engines[pool_index]
        if len(engines) == 1:
            return engines[0]
        if self.pools[pool_index].routing == "round_robin":
            i = self.rr[pool_index]
            self.rr[pool_index] = (i + 1) % len(engines)
            return engines[i]
        return min(engines, key=Engine.load_tokens)

    def _send_next(self, t: float) -> None:
        """Closed loop: a request ended at ``t``; its client sends the next one of the workload after its
        think time. Requests end in time order, so the arrival times so made never decrease."""
        i = self.next_send
        if i < len(self.arrival):
            self.arrival[i] = t + self.think_s
            self.next_send = i + 1

    def _arrive(self, rid: int, t: float) -> None:
        engine = self._route(0)
        if engine.need(rid) > engine.kv_cap:
            self.rejected[rid] = True
            self.done += 1
            if self.watch is not None:
                self.watch.rejected(rid)
            if self.closed:
                self._send_next(t)
            return
        if engine.phase == "decode":
            self.first_token(rid, t)  # decode-only run: the prompt counts as prefilled on arrival
            if self.out[rid] == 1:
                self.finished(rid, t)
                return
            self.decode_inst[rid] = engine.index
        else:
            self.prefill_inst[rid] = engine.index
        engine.enqueue(rid)

    def run(self) -> float:
        arrival = self.arrival
        n = len(arrival)
        heap = self.heap
        dirty = self.dirty
        watch = self.watch
        i = 0
        now = 0.0
        inf = math.inf
        while True:
            ta = arrival[i] if i < n else inf
            te = heap[0][0] if heap else inf
            t = ta if ta <= te else te
            if dirty and t > now:
                # pokes never mark an engine dirty (only events do), so one dirty engine needs no sorting
                if len(dirty) == 1:
                    dirty.pop().poke(now)
                    continue
                for engine in sorted(dirty, key=_engine_order):
                    engine.poke(now)
                dirty.clear()
                continue
            if t == inf:
                return now
            if watch is not None:  # stop_on_miss: deadlines passed before t, then stop if the SLO is missed
                if t > watch.next_check:
                    watch.advance(t, i, self.first, self.finish)
                if watch.missed:
                    self.stopped = True
                    return now
            now = t
            if ta <= te:
                self._arrive(i, t)
                i += 1
                continue
            _, _, kind, engine, lane, chunks, bs = heapq.heappop(heap)
            if kind == DONE:
                engine.step_done(t, lane, chunks, bs)
                # pure decode steps that end before anything else happens need no trip through the heap
                if len(dirty) == 1 and engine.coastable and engine.can_coast():
                    until = arrival[i] if i < n else inf
                    if heap and heap[0][0] < until:
                        until = heap[0][0]
                    if watch is not None and watch.next_check < until:
                        until = watch.next_check
                    now = engine.coast(t, until)
            elif kind == TRANSFER:
                rid = chunks
                src = self.prefill_engine_of.pop(rid, None)
                if src is not None:
                    src.release(self.inp[rid])
                engine.joined(rid)
            else:  # WAKE
                engine.wake_at = -1.0
                dirty.add(engine)


def simulator_core() -> str:
    """What :func:`simulate` runs a supported simulation on (``docs/simulator.md``, "Native core"):
    ``"native"`` (the C core, built and allowed by ``MOEPLAN_SIM_CORE``) or ``"python"`` (the Python loop).
    Step logs, progress callbacks and cost models other than ``LatencyModelCost`` and ``DistServeCost``
    always run in Python; the results are the same either way."""
    core = requested_core()
    return "native" if core != "python" and built() else "python"


def simulate(workload: Workload, pools: Pool | Sequence[Pool], *, record_steps: bool = False,
             progress: Callable[[int, int], None] | None = None, progress_every: int = 1000,
             stop_on_miss: SLO | None = None, concurrency: int | None = None,
             think_time_s: float = 0.0) -> SimResult:
    """Serve ``workload`` on the deployment ``pools`` (module docstring for the rules).

    Parameters
    ----------
    workload : the requests (:class:`~planner.inputs.Workload`).
    pools : a :class:`Pool`, or a list ``[both]``, ``[prefill, decode]``, ``[prefill]``, ``[decode]``.
    record_steps : keep a :class:`~planner.perf.sim_results.StepLog` of every step (memory grows with the steps).
    progress : called as ``progress(finished_requests, total_requests)`` every ``progress_every``
        finished requests.
    stop_on_miss : an SLO: stop as soon as the run certainly misses it (:mod:`planner.perf._miss_watch`:
        enough requests already past a limit, whatever happens next). A run that meets it is simulated
        to the end and is the same as without; a stopped run has ``complete`` False, its unfinished
        requests have no times, and its statistics describe the part simulated only. What a goodput
        search uses to skip the rest of an overloaded probe. Open loop only.
    concurrency : None (default): open loop, requests arrive at the workload's times. An integer
        ``N >= 1``: closed loop (rule 9), ``N`` clients each sending its next request, in workload
        order, when its previous one ends: the load of a benchmark run with ``--concurrency N``.
        :meth:`SimResult.steady_state` gives its throughput and latencies without warm-up and drain.
    think_time_s : closed loop: seconds between a request's end and its client's next request (default 0).

    Returns
    -------
    SimResult
        Per-request times, TTFT/TPOT, attainment of an SLO (:meth:`SimResult.attainment`), throughput.

    Raises
    ------
    InputError
        Bad pools (a phase combination that is no deployment, non-positive sizes), a non-Workload, a
        ``concurrency`` that is no integer >= 1, a negative or non-finite ``think_time_s`` (or one
        without ``concurrency``), ``stop_on_miss`` with ``concurrency``.

    Examples
    --------
    >>> from planner.inputs import poisson_workload
    >>> from planner.perf.cost import distserve_cost
    >>> w = poisson_workload(2.0, 500, input_tokens=512, output_tokens=64, seed=0)
    >>> agg = simulate(w, Pool(distserve_cost("opt-13b", tp=1), token_budget=512))
    >>> agg.served_requests, agg.tokens_generated == w.total_output_tokens
    (500, True)
    >>> dis = simulate(w, [Pool(distserve_cost("opt-13b", tp=2), phase="prefill"),
    ...                    Pool(distserve_cost("opt-13b", tp=1), phase="decode")])
    >>> bool(dis.percentile("ttft_ms", 90) < agg.percentile("ttft_ms", 90))
    True
    >>> closed = simulate(w, Pool(distserve_cost("opt-13b", tp=1), token_budget=512), concurrency=8)
    >>> closed.arrival_s[:8].tolist() == [0.0] * 8, closed.served_requests
    (True, 500)
    """
    if not isinstance(workload, Workload):
        raise InputError(f"expected a Workload, got {type(workload).__name__}", param="workload")
    pools = check_pools(pools)
    if isinstance(progress_every, bool) or not isinstance(progress_every, int) or progress_every < 1:
        raise InputError(f"must be an integer >= 1, got {progress_every!r}", param="progress_every")
    if stop_on_miss is not None and not isinstance(stop_on_miss, SLO):
        raise InputError(f"expected an SLO or None, got {type(stop_on_miss).__name__}", param="stop_on_miss")
    if concurrency is not None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, (int, np.integer)) or concurrency < 1:
            raise InputError(f"must be None (open loop) or an integer >= 1 (clients of a closed loop), "
                             f"got {concurrency!r}", param="concurrency")
        concurrency = int(concurrency)
        if stop_on_miss is not None:
            raise InputError("stopping at a certain miss is for open-loop runs; give concurrency or stop_on_miss, "
                             "not both", param="stop_on_miss")
    if (isinstance(think_time_s, bool) or not isinstance(think_time_s, (int, float, np.integer, np.floating))
            or not math.isfinite(think_time_s) or think_time_s < 0):
        raise InputError(f"must be a finite number of seconds >= 0, got {think_time_s!r}", param="think_time_s")
    if think_time_s and concurrency is None:
        raise InputError("a think time needs a closed loop: give concurrency too", param="think_time_s")
    start = time.perf_counter()
    core = requested_core()
    specs = None
    if core != "python":
        if not built():
            if core == "native":
                raise InputError(f"{ENV_VAR}=native but the C core is not built (pip install -e . with a "
                                 "C compiler)", param=ENV_VAR)
        elif record_steps or progress is not None:
            if core == "native":
                raise InputError(f"{ENV_VAR}=native: step logs and progress callbacks need the Python loop",
                                 param=ENV_VAR)
        else:
            specs = native_pools(pools, workload)
            if specs is None and core == "native":
                raise InputError(f"{ENV_VAR}=native: the C core prices LatencyModelCost and DistServeCost "
                                 f"only, not {', '.join(type(p.cost).__name__ for p in pools)}",
                                 param=ENV_VAR)
    if specs is not None:  # the C core: the same result as the Python loop below, float for float
        r = run_native(workload, pools, specs, stop_on_miss, concurrency, float(think_time_s))
        arrival, end, stopped = r["arrival"], r["end"], r["stopped"]
        first, finish, rejected = r["first"], r["finish"], r["rejected"]
        prefill_inst, decode_inst, tokens = r["prefill_inst"], r["decode_inst"], r["tokens"]
        kv_peak, busy_s, steps = r["kv_peak"], r["busy_s"], r["steps"]
    else:
        sim = _Sim(workload, pools, record_steps, progress, progress_every, stop_on_miss, concurrency,
                   float(think_time_s))
        end = sim.run()
        if progress is not None and sim.done % progress_every:
            progress(sim.done, len(workload))
        arrival, stopped = sim.arrival, sim.stopped
        first, finish, rejected = sim.first, sim.finish, sim.rejected
        prefill_inst, decode_inst, tokens = sim.prefill_inst, sim.decode_inst, sim.tokens
        kv_peak = tuple(tuple(e.kv_peak for e in engines) for engines in sim.engines)
        busy_s = tuple(tuple(e.busy_s for e in engines) for engines in sim.engines)
        steps = tuple(tuple(e.steps for e in engines) for engines in sim.engines)
    if concurrency is not None:  # the arrival times the clients made (rule 9)
        prov = {**workload.provenance, "closed_loop": f"concurrency {concurrency}, think time {float(think_time_s):g} s"}
        workload = Workload(np.asarray(arrival, dtype=np.float64), workload.input_tokens, workload.output_tokens,
                            workload.source, prov)
    return SimResult(
        workload=workload,
        pool_names=tuple(p.label for p in pools),
        first_token_s=np.asarray(first, dtype=np.float64),
        finish_s=np.asarray(finish, dtype=np.float64),
        rejected=np.asarray(rejected, dtype=bool),
        prefill_instance=np.asarray(prefill_inst, dtype=np.int64),
        decode_instance=np.asarray(decode_inst, dtype=np.int64),
        tokens_generated=tokens,
        kv_capacity_tokens=tuple(p.cost.kv_capacity_tokens for p in pools),
        kv_peak_tokens=kv_peak,
        busy_s=busy_s,
        steps=steps,
        num_gpus=sum(p.num_gpus for p in pools),
        sim_end_s=end,
        decodes=pools[-1].phase != "prefill",
        steps_log=StepLog.from_rows(sim.step_log) if record_steps else None,
        complete=not stopped,
        concurrency=concurrency,
        think_time_s=float(think_time_s),
        wall_s=time.perf_counter() - start,
    )
