"""A DistServe-style reference simulator on simpy: one process per instance, one object per request.

The baseline of ``benchmarks/simulator.py`` and an independent check of moeplan's simulator
(``tests/test_simulator_reference.py``): it implements the same rules (``planner/perf/simulator.py``)
the way DistServe's ``simdistserve`` does — simpy processes that wake on events and hold request
objects in lists — without moeplan's running sums, lanes or event heap. Scope: instances of one
pipeline stage; aggregated pools with round-robin routing; disaggregated deployments of one
prefill and one decode instance. Needs ``pip install simpy``.
"""

from __future__ import annotations

from collections import deque

import simpy

__all__ = ["reference_simulate"]


class _Req:
    __slots__ = ("rid", "inp", "out", "gen", "left", "done", "first", "finish")

    def __init__(self, rid, inp, out):
        self.rid, self.inp, self.out = rid, inp, out
        self.gen = self.left = self.done = 0
        self.first = self.finish = float("nan")


class _Instance:
    """One instance: phase 'both' (chunked continuous batching), 'prefill' or 'decode'."""

    def __init__(self, env, cost, phase, budget, chunked, max_batch):
        self.env, self.cost, self.phase = env, cost, phase
        self.budget = budget if budget is not None else 1 << 62
        self.chunked, self.max_batch = chunked, max_batch
        self.cap = cost.kv_capacity_tokens
        self.kv = 0
        self.waiting: deque[_Req] = deque()  # prompts (both/prefill) or transferred requests (decode)
        self.pending: deque[_Req] = deque()  # decode: waiting for KV room to transfer
        self.prefilling: list[_Req] = []
        self.decoding: list[_Req] = []
        self.idle = None
        self.partner = None  # prefill <-> decode
        self.transfer_s = None
        env.process(self.run())

    def notify(self):
        if self.idle is not None and not self.idle.triggered:
            self.idle.succeed()

    def release(self, tokens):
        self.kv -= tokens
        self.notify()

    def start_transfers(self):
        while self.pending and self.kv + self.pending[0].inp + self.pending[0].out <= self.cap:
            r = self.pending.popleft()
            self.kv += r.inp + r.out
            self.env.process(self.transfer(r))

    def transfer(self, r):
        yield self.env.timeout(self.transfer_s(r.inp))
        self.partner.release(r.inp)
        self.waiting.append(r)
        self.notify()

    def form(self):
        """(chunks [(req, tokens, done before)], decoding requests) of the next step, or None."""
        if self.phase == "decode":
            self.start_transfers()
            while self.waiting and len(self.decoding) < self.max_batch:
                self.decoding.append(self.waiting.popleft())
            return ([], list(self.decoding)) if self.decoding else None
        decodes = list(self.decoding)
        budget = self.budget - len(decodes)
        chunks = []
        active = 0 if self.phase == "prefill" else len(decodes) + len(self.prefilling)
        for r in self.prefilling:
            if budget <= 0:
                break
            c = min(r.left, budget)
            chunks.append((r, c, r.done))
            budget -= c
        if self.phase == "prefill":
            active = len(chunks)
        while self.waiting and budget > 0 and active < self.max_batch:
            r = self.waiting[0]
            need = r.inp if self.phase == "prefill" else r.inp + r.out
            if self.kv + need > self.cap:
                break
            if self.chunked:
                c = min(r.inp, budget)
            elif r.inp > budget and chunks:
                break
            else:
                c = r.inp
            self.waiting.popleft()
            self.kv += need
            active += 1
            r.left, r.done = r.inp, 0
            self.prefilling.append(r)
            chunks.append((r, c, 0))
            budget -= c
        return (chunks, decodes) if chunks or decodes else None

    def run(self):
        env = self.env
        while True:
            step = self.form()
            if step is None:
                self.idle = env.event()
                yield self.idle
                continue
            chunks, decodes = step
            n = len(chunks)
            tokens = sum(c for _, c, _ in chunks)
            squares = sum((d + c) ** 2 - d * d for _, c, d in chunks)
            for r, c, _ in chunks:  # the chunk is scheduled: the prompt's progress is booked now
                r.left -= c
                r.done += c
            self.prefilling = [r for r in self.prefilling if r.left > 0]
            ctx = sum(r.inp + r.gen for r in decodes)
            yield env.timeout(self.cost.step_time_s(n, tokens, float(squares), len(decodes), ctx))
            t = env.now
            for r in decodes:
                r.gen += 1
                if r.gen == r.out:
                    r.finish = t
                    self.kv -= r.inp + r.out
            self.decoding = [r for r in self.decoding if r.gen < r.out]
            for r, _, _ in chunks:
                if r.left:
                    continue
                r.first, r.gen = t, 1
                if self.phase == "prefill":
                    if r.out == 1 or self.partner is None:
                        r.finish = t
                        self.kv -= r.inp
                    else:
                        self.partner.pending.append(r)
                        self.partner.start_transfers()
                elif r.out == 1:
                    r.finish = t
                    self.kv -= r.inp + r.out
                else:
                    self.decoding.append(r)
            if self.phase == "decode":
                self.start_transfers()


def reference_simulate(workload, pools):
    """First-token and finish times (two lists) of ``workload`` on ``pools`` (moeplan ``Pool`` objects)."""
    env = simpy.Environment()
    reqs = [_Req(i, int(a), int(b)) for i, (a, b) in enumerate(zip(workload.input_tokens, workload.output_tokens))]
    instances = [[_Instance(env, p.cost, p.phase, p.resolved_token_budget, p.resolved_chunked,
                            p.max_batch_size or p.cost.max_batch_size) for _ in range(p.instances)] for p in pools]
    if len(pools) == 2:
        (pre,), (dec,) = instances
        pre.partner, dec.partner = dec, pre
        dec.transfer_s = pools[0].cost.kv_transfer_time_s
    front = instances[0]

    def arrivals():
        for i, (t, r) in enumerate(zip(workload.arrival_s.tolist(), reqs)):
            yield env.timeout(t - env.now)
            target = front[i % len(front)]
            target.waiting.append(r)
            target.notify()

    env.process(arrivals())
    env.run()
    return [r.first for r in reqs], [r.finish for r in reqs]
