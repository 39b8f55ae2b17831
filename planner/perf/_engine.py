"""One serving instance inside the simulator: queues, micro-batch lanes, pipeline stages, KV accounting.

Package-internal: :mod:`planner.perf.simulator` builds one :class:`Engine` per instance and drives
them from its event loop. The rules are written out in :mod:`planner.perf.simulator` and
``docs/simulator.md``; this module is their implementation, kept to running sums so that a step
costs O(1) plus O(log n) per finished request:

- a *lane* is a micro-batch group (``pp`` lanes on a ``pp``-stage pipeline, one otherwise): its
  decoding sequences, their summed context ``ctx`` for the next step, a step counter ``k`` and a
  heap of the step at which each sequence emits its last token;
- prompts being prefilled in chunks stay in ``lane.prefilling`` until their last chunk is scheduled.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

__all__ = ["Engine", "Lane", "DONE", "WAKE", "TRANSFER"]

# event kinds of the simulator's heap
DONE, WAKE, TRANSFER = 0, 1, 2
_NO_LIMIT = 1 << 62
inf = float("inf")
#: coasting: a run of at least this many decode steps of one batch (no sequence finishing) is priced in one
#: vectorised call (:meth:`CostModel.decode_step_times`), at most this many at a time
_VECTOR_RUN = 32
_MAX_VECTOR_RUN = 4096


class Lane:
    """A micro-batch group of one instance (module docstring)."""

    __slots__ = ("busy", "bs", "ctx", "k", "heap", "prefilling")

    def __init__(self) -> None:
        self.busy = False
        self.bs = 0  # decoding sequences
        self.ctx = 0  # sum over them of (prompt + tokens generated so far) at the next step
        self.k = 0  # index of the lane's next step
        self.heap: list[tuple[int, int]] = []  # (index of the step that emits the last token, request)
        self.prefilling: deque[list[int]] = deque()  # [request, tokens left, tokens done] of chunked prompts


class Engine:
    """State and step rules of one instance; ``sim`` is the simulator it reports to."""

    def __init__(self, sim, pool_index: int, index: int, cost, phase: str, token_budget: int | None,
                 chunked: bool, max_batch: int) -> None:
        self.sim = sim
        self.pool_index = pool_index
        self.index = index
        self.step_time = cost.step_time_s
        self.decode_step_reader = cost.decode_step_reader
        self.decode_step_times = cost.decode_step_times
        self.readers: dict = {}  # decode batch size -> the cost model's step time of a pure decode step
        self.pp = cost.pipeline_stages
        # one stage, decodes, no step log: may run pure decode steps outside the event queue (coast)
        self.coastable = self.pp == 1 and phase != "prefill" and sim.step_log is None
        self.phase = phase
        self.budget = _NO_LIMIT if token_budget is None else token_budget
        self.chunked = chunked
        self.max_batch = max_batch
        self.kv_cap = cost.kv_capacity_tokens
        self.kv_used = 0
        self.kv_peak = 0
        self.waiting: deque[int] = deque()  # prompts to prefill (phases both/prefill) or sequences to join (decode)
        self.waiting_tokens = 0
        self.pending: deque[int] = deque()  # decode phase: prefilled requests waiting for KV room to transfer
        self.pending_tokens = 0
        self.lanes = [Lane() for _ in range(self.pp)]
        self.rr = 0
        self.stage_free = [0.0] * self.pp
        self.wake_at = -1.0
        self.busy_s = 0.0
        self.steps = 0

    # -- load and KV ---------------------------------------------------------------------------------
    def load_tokens(self) -> int:
        """Tokens reserved or queued: what least-loaded routing compares."""
        return self.kv_used + self.waiting_tokens + self.pending_tokens

    def need(self, rid: int) -> int:
        """KV tokens reserved for a request: its prompt on a prefill instance, prompt + output otherwise."""
        sim = self.sim
        return sim.inp[rid] if self.phase == "prefill" else sim.inp[rid] + sim.out[rid]

    def release(self, tokens: int) -> None:
        self.kv_used -= tokens
        self.sim.dirty.add(self)

    def enqueue(self, rid: int) -> None:
        """A new prompt (phases both/prefill), or a prefilled request waiting to transfer (decode)."""
        if self.phase == "decode":
            self.pending.append(rid)
            self.pending_tokens += self.need(rid)
        else:
            self.waiting.append(rid)
            self.waiting_tokens += self.sim.inp[rid]
        self.sim.dirty.add(self)

    def joined(self, rid: int) -> None:
        """Decode phase: the request's KV has arrived; it joins a lane at the next step."""
        self.waiting.append(rid)
        self.sim.dirty.add(self)

    def _start_transfers(self, t: float) -> None:
        sim = self.sim
        pending = self.pending
        while pending:
            rid = pending[0]
            need = sim.inp[rid] + sim.out[rid]
            if self.kv_used + need > self.kv_cap:
                break
            pending.popleft()
            self.pending_tokens -= need
            self._reserve(need)
            sim.transfer(rid, self, t)

    def _reserve(self, tokens: int) -> None:
        self.kv_used += tokens
        if self.kv_used > self.kv_peak:
            self.kv_peak = self.kv_used

    # -- scheduling ------------------------------------------------------------------------------
    def poke(self, t: float) -> None:
        """Start a step at ``t`` if a stage and a lane are free and there is work."""
        if self.phase == "decode" and self.pending:
            self._start_transfers(t)
        if self.stage_free[0] > t:
            self._wake(self.stage_free[0])
            return
        if self.phase == "prefill":
            if self._dispatch(self.lanes[0], t) and self.pp > 1:
                self._wake(self.stage_free[0])
            return
        pp = self.pp
        if pp == 1:  # the loop below with one lane
            lane = self.lanes[0]
            if not lane.busy:
                self._dispatch(lane, t, 0)
            return
        for j in range(pp):
            i = (self.rr + j) % pp
            lane = self.lanes[i]
            if not lane.busy and self._dispatch(lane, t, i):
                self.rr = (i + 1) % pp
                if pp > 1:
                    self._wake(self.stage_free[0])
                return

    def _wake(self, at: float) -> None:
        if self.pp > 1 and self.wake_at != at:
            self.wake_at = at
            self.sim.push(at, WAKE, self, None, None, 0)

    def _dispatch(self, lane: Lane, t: float, lane_index: int = 0) -> bool:
        """Form the lane's next step (decodes first, then prompt chunks into the budget left) and schedule it."""
        sim = self.sim
        inp = sim.inp
        bs = lane.bs
        if self.phase == "decode":
            waiting, out = self.waiting, sim.out
            while waiting and bs < self.max_batch:
                rid = waiting.popleft()
                bs += 1
                lane.ctx += inp[rid] + 1
                heapq.heappush(lane.heap, (lane.k + out[rid] - 2, rid))
            lane.bs = bs
            if not bs:
                return False
            n = tokens = squares = 0
            chunks = None
        else:
            budget = self.budget - bs
            n = tokens = squares = 0
            chunks = []
            prefilling = lane.prefilling
            active = n if self.phase == "prefill" else bs + len(prefilling)  # sequences holding a batch slot
            for entry in prefilling:  # continue chunked prompts, oldest first
                if budget <= 0:
                    break
                left, done = entry[1], entry[2]
                c = left if left < budget else budget
                n += 1
                tokens += c
                squares += (done + c) * (done + c) - done * done
                budget -= c
                entry[1] = left - c
                entry[2] = done + c
                chunks.append((entry[0], left == c))
            while prefilling and prefilling[0][1] == 0:
                prefilling.popleft()
            if self.phase == "prefill":
                active = n
            waiting = self.waiting
            both = self.phase == "both"
            out = sim.out
            while waiting and budget > 0 and active < self.max_batch:
                rid = waiting[0]
                p = inp[rid]
                need = p + out[rid] if both else p
                if self.kv_used + need > self.kv_cap:
                    break  # first come, first served: the head waits for room, nobody overtakes it
                if self.chunked:
                    c = p if p < budget else budget
                elif p > budget and n:
                    break  # a whole prompt that does not fit the budget left waits for a step of its own
                else:
                    c = p
                waiting.popleft()
                self.waiting_tokens -= p
                self._reserve(need)
                n += 1
                active += 1
                tokens += c
                squares += c * c
                budget -= c
                if c < p:
                    prefilling.append([rid, p - c, c])
                chunks.append((rid, c == p))
            if not n and not bs:
                return False
        tau = self.step_time(n, tokens, squares, bs, lane.ctx)
        pp = self.pp
        stage_free = self.stage_free
        if pp == 1:
            end = t + tau
            stage_free[0] = end
            self.busy_s += tau
        else:
            stage = tau / pp
            end = t
            for s in range(pp):
                start = stage_free[s] if stage_free[s] > end else end
                end = start + stage
                stage_free[s] = end
            self.busy_s += stage
        self.steps += 1
        if self.phase != "prefill":
            lane.busy = True
        if sim.step_log is not None:
            sim.step_log.append((self.pool_index, self.index, t, end, n, tokens, bs, lane.ctx, self.kv_used))
        sim.push(end, DONE, self, lane, chunks, bs)
        return True

    def can_coast(self) -> bool:
        """Whether the next steps are pure decode steps that need nothing from outside (:meth:`coast`): one
        stage, sequences decoding, no prompt being prefilled, and nothing the next step would take from the
        queues (:meth:`_queues_blocked`)."""
        if not self.coastable:
            return False
        lane = self.lanes[0]
        if not lane.bs or lane.busy or lane.prefilling:
            return False
        return not (self.waiting or self.pending) or self._queues_blocked(lane.bs)

    def _queues_blocked(self, bs: int) -> bool:
        """Whether a step formed now (:meth:`poke`, :meth:`_dispatch`) with ``bs`` sequences decoding would
        start no transfer and admit nobody: the queues are empty, or their heads wait for KV room or a batch
        slot (first come, first served: nobody overtakes a head that waits)."""
        sim = self.sim
        if self.phase == "decode":
            if self.waiting and bs < self.max_batch:
                return False
            if self.pending:
                rid = self.pending[0]
                return self.kv_used + sim.inp[rid] + sim.out[rid] > self.kv_cap
            return True
        if self.waiting and bs < self.max_batch and self.budget > bs:
            rid = self.waiting[0]
            return self.kv_used + sim.inp[rid] + sim.out[rid] > self.kv_cap
        return True

    def coast(self, t: float, until: float) -> float:
        """From ``t``, when the lane's last step ended, run its pure decode steps that end before ``until``
        (the simulation's next event) without the event queue, schedule the first one that does not, and
        return the time the last step run here ended (``t`` if none).

        Each step is exactly what :meth:`poke`, :meth:`_dispatch` and :meth:`step_done` do for a lane of
        decoding sequences and nothing else (same step time, same sums in the same order), so the result
        is the same as going through the simulator's loop; it only skips the heap and the loop for steps
        no other event can interleave with. Stops early when the simulation's miss watch has decided, and
        after a step whose finished sequences let a queued request in (the simulator's loop then forms
        the next step at that instant, as it would have).
        """
        sim = self.sim
        lane = self.lanes[0]
        bs = lane.bs
        readers = self.readers
        step_time = readers.get(bs) or readers.setdefault(bs, self.decode_step_reader(bs))
        tau = step_time(lane.ctx)
        end = t + tau
        if not end < until:  # the common case under load: another event comes first, schedule the step
            self.stage_free[0] = end
            self.busy_s += tau
            self.steps += 1
            lane.busy = True
            sim.push(end, DONE, self, lane, None if self.phase == "decode" else [], bs)
            sim.dirty.discard(self)
            return t
        heap = lane.heap
        inp, out = sim.inp, sim.out
        watch = sim.watch
        finished = sim.finished
        ctx, k = lane.ctx, lane.k
        queued = bool(self.waiting or self.pending)  # nothing joins the queues while coasting
        # running sums kept in locals and written back on leaving: the same additions in the same order
        busy, steps, tokens = self.busy_s + tau, self.steps + 1, 0
        next_done = heap[0][0] if heap else _NO_LIMIT  # the step at which the next sequence emits its last token
        if watch is not None and watch.missed:  # decided already (by the step that just ended): one step, then stop
            next_done = k
        while True:  # the step of ``tau`` ends at ``end``, before ``until``
            tokens += bs
            ctx += bs
            t = end
            if k < next_done:
                k += 1
            else:
                while heap and heap[0][0] <= k:
                    rid = heapq.heappop(heap)[1]
                    total = inp[rid] + out[rid]
                    bs -= 1
                    ctx -= total
                    self.kv_used -= total
                    finished(rid, end)
                k += 1
                next_done = heap[0][0] if heap else _NO_LIMIT
                if not bs or (watch is not None and watch.missed) or (queued and not self._queues_blocked(bs)):
                    break
                step_time = readers.get(bs) or readers.setdefault(bs, self.decode_step_reader(bs))
            # steps before the next one that finishes a sequence (same batch, known contexts), as many as may end
            # before ``until`` at the last step's pace (more run through the loop below, the result is the same)
            m = next_done - k
            if m >= _VECTOR_RUN and until - t > _VECTOR_RUN * tau:  # price them at once; same floats, same order
                m = min(m, _MAX_VECTOR_RUN, int((until - t) / tau) + 2) if until < inf else min(m, _MAX_VECTOR_RUN)
                taus = self.decode_step_times(bs, ctx + bs * np.arange(m, dtype=np.int64))
                ends = np.cumsum(np.concatenate(((t,), taus)))[1:]
                stop = int(np.searchsorted(ends, until, side="left"))  # the first step not ending before until
                ran = stop if stop < m else m
                busy = float(np.cumsum(np.concatenate(((busy,), taus[:stop + 1])))[-1])
                steps += stop + 1 if stop < m else m
                tokens += bs * ran
                ctx += bs * ran
                k += ran
                if ran:
                    t = float(ends[ran - 1])
                if stop < m:  # schedule it as _dispatch does
                    self.stage_free[0] = float(ends[stop])
                    self.busy_s, self.steps = busy, steps
                    sim.tokens += tokens
                    lane.bs, lane.ctx, lane.k = bs, ctx, k
                    lane.busy = True
                    sim.push(float(ends[stop]), DONE, self, lane, None if self.phase == "decode" else [], bs)
                    sim.dirty.discard(self)
                    return t
            tau = step_time(ctx)
            end = t + tau
            busy += tau
            steps += 1
            if not end < until:  # another event comes first: schedule this step as _dispatch does
                self.stage_free[0] = end
                self.busy_s, self.steps = busy, steps
                sim.tokens += tokens
                lane.bs, lane.ctx, lane.k = bs, ctx, k
                lane.busy = True
                sim.push(end, DONE, self, lane, None if self.phase == "decode" else [], bs)
                sim.dirty.discard(self)
                return t
        self.stage_free[0] = t
        self.busy_s, self.steps = busy, steps
        sim.tokens += tokens
        lane.bs, lane.ctx, lane.k = bs, ctx, k
        return t

    def step_done(self, t: float, lane: Lane, chunks, bs: int) -> None:
        """A step left the last stage at ``t``: emit tokens, finish sequences, move prefilled prompts on."""
        sim = self.sim
        sim.dirty.add(self)
        if self.phase == "prefill":
            for rid, complete in chunks:
                if complete:
                    sim.prefilled(rid, t, self)
            return
        lane.busy = False
        inp, out = sim.inp, sim.out
        k_done = lane.k
        lane.k = k_done + 1
        if bs:
            sim.tokens += bs
            lane.ctx += bs
            heap = lane.heap
            while heap and heap[0][0] <= k_done:
                rid = heapq.heappop(heap)[1]
                total = inp[rid] + out[rid]
                lane.bs -= 1
                lane.ctx -= total
                self.kv_used -= total
                sim.finished(rid, t)
        if chunks:
            for rid, complete in chunks:
                if not complete:
                    continue
                sim.first_token(rid, t)
                o = out[rid]
                if o == 1:
                    self.kv_used -= inp[rid] + 1
                    sim.finished(rid, t)
                else:
                    lane.bs += 1
                    lane.ctx += inp[rid] + 1
                    heapq.heappush(lane.heap, (lane.k + o - 2, rid))
