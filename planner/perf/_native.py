"""The simulator's C core (``planner.perf._simcore``, built from ``_simcore.c``): when it applies, and its inputs.

Package-internal: :func:`planner.perf.simulator.simulate` runs a simulation in C when the core is built,
the environment variable ``MOEPLAN_SIM_CORE`` allows it and every pool's cost model is one the core
prices itself (:class:`~planner.perf.cost_table.LatencyModelCost`,
:class:`~planner.perf.cost.DistServeCost`); otherwise in its Python loop, the reference
implementation. Both give the same :class:`~planner.perf.sim_results.SimResult` float for float
(``tests/test_simulator_native.py``; ``docs/simulator.md``, "Native core").

The cost models are handed over as flat float64 tables and coefficient tuples, built once per cost
object. A number the C code would convert to a double differently from Python's arithmetic (an integer
coefficient of 2^53 or more, an integer one where Python would multiply integers exactly) makes the run
fall back to Python rather than risk a different last bit.
"""

from __future__ import annotations

import math
import os
import weakref

import numpy as np

from planner.errors import InputError
from planner.perf._miss_watch import MissWatch
from planner.perf.cost import DistServeCost
from planner.perf.cost_table import LatencyModelCost

try:
    import planner.perf._simcore as _simcore
except ImportError:  # no C compiler at install time: the Python loop only
    _simcore = None

__all__ = ["ENV_VAR", "CORES", "built", "requested_core", "native_pools", "run_native"]

#: environment variable that picks the simulator core
ENV_VAR = "MOEPLAN_SIM_CORE"
#: its values: ``auto`` (default; C when built and the run is supported), ``python``, ``native`` (C or an error)
CORES = ("auto", "python", "native")
_PHASE = {"both": 0, "prefill": 1, "decode": 2}
_ROUTING = {"least_loaded": 0, "round_robin": 1}
_EXACT = 1 << 53  # integers below this convert to a double exactly
_packs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def built() -> bool:
    """Whether the C core was compiled and imports."""
    return _simcore is not None


def requested_core() -> str:
    """``MOEPLAN_SIM_CORE`` (default ``auto``), checked."""
    core = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if core not in CORES:
        raise InputError(f"unknown simulator core {core!r}; known: {', '.join(CORES)}", param=ENV_VAR)
    return core


def _number(x) -> float | None:
    """``x`` as the double Python's arithmetic would use, or None when an integer might not convert exactly."""
    if type(x) is float:
        return x
    if type(x) is int and -_EXACT < x < _EXACT:
        return float(x)
    return None


def _table_pack(cost: LatencyModelCost):
    tables = (cost.prefill_other, cost.prefill_attention_per_pair, cost.decode_other, cost.decode_attention_per_token)
    grids = (cost.prefill_other.xs, cost.decode_other.xs, cost.decode_other.ys)
    if not all(type(x) is int and 0 <= x < _EXACT for g in grids for x in g):
        return None
    values = [np.asarray(t.v, dtype=np.float64) for t in tables]
    if any(v.ndim != 2 or not all(type(x) is float for row in t.v for x in row) for v, t in zip(values, tables)):
        return None
    lat, link = _number(cost.kv_transfer_latency_s), _number(cost.kv_link_bytes_per_s)
    if lat is None or link is None:
        return None
    return (0, *(np.asarray(g, dtype=np.float64) for g in grids), *(v.ravel() for v in values), 1, lat,
            cost.kv_bytes_per_token, link)


def _distserve_pack(cost: DistServeCost):
    triples = (cost.prefill_ms, cost.decode_small_batch_ms, cost.decode_large_batch_ms)
    if not all(len(t) == 3 and all(type(x) is float for x in t) for t in triples):
        return None
    if type(cost.pp_prefill_overhead_ms) is not float or type(cost.large_batch_threshold) is not int:
        return None
    if cost.kv_link_bytes_per_s is None:
        return (1, *(tuple(t) for t in triples), cost.large_batch_threshold, cost.pp, cost.pp_prefill_overhead_ms,
                0, 0.0, 0.0, 1.0)
    lat, link = _number(cost.kv_transfer_latency_s), _number(cost.kv_link_bytes_per_s)
    if lat is None or link is None:
        return None
    return (1, *(tuple(t) for t in triples), cost.large_batch_threshold, cost.pp, cost.pp_prefill_overhead_ms,
            1, lat, cost.kv_bytes_per_token, link)


def _cost_pack(cost):
    """The cost model as the C core reads it, built once per cost object; None: not one the core prices."""
    kind = type(cost)
    if kind is not LatencyModelCost and kind is not DistServeCost:
        return None
    try:
        return _packs[cost]
    except KeyError:
        pass
    pack = _table_pack(cost) if kind is LatencyModelCost else _distserve_pack(cost)
    _packs[cost] = pack
    return pack


def _transfer_exact(pack, max_prompt: int) -> bool:
    """Whether ``prompt x kv_bytes_per_token`` is the same double in C as in Python for every prompt: a float
    coefficient always, an integer one while the exact product stays below 2^53."""
    if not pack[-4]:
        return True
    bpt = pack[-2]
    if type(bpt) is float:
        return True
    return type(bpt) is int and 0 <= bpt and max_prompt * bpt < _EXACT


def native_pools(pools, workload):
    """The pools as the C core takes them, or None when a pool's cost model is not one it prices."""
    max_prompt = int(workload.input_tokens.max()) if len(workload) else 0
    out = []
    for p in pools:
        pack = _cost_pack(p.cost)
        if pack is None or not _transfer_exact(pack, max_prompt):
            return None
        if type(pack[-2]) is int:
            pack = (*pack[:-2], float(pack[-2]), pack[-1])
        budget = p.resolved_token_budget
        c = p.cost
        out.append((int(p.instances), _PHASE[p.phase], -1 if budget is None else int(budget), int(p.resolved_chunked),
                    int(p.max_batch_size or c.max_batch_size), int(c.kv_capacity_tokens), int(c.pipeline_stages),
                    _ROUTING[p.routing], pack))
    return tuple(out)


def _watch_spec(slo, arrival, out, decodes: bool):
    """The C core's copy of a :class:`~planner.perf._miss_watch.MissWatch`'s thresholds and start."""
    w = MissWatch(slo, arrival, out, decodes)
    n = len(arrival)
    return (float(w.ttft_limit), float(w.tpot_limit), float(w.ttft_wait_s), float(w.next_check),
            int(w.percentile_rule), int(w.check_ttft), int(w.check_tpot),
            int(getattr(w, "ttft_needed", n + 1)), int(getattr(w, "tpot_needed", n + 1)),
            int(getattr(w, "any_needed", n + 1)))


def run_native(workload, pools, specs, stop_on_miss, concurrency: int | None, think_time_s: float) -> dict:
    """Run the simulation in C; the per-request arrays and per-instance sums of the result."""
    n = len(workload)
    inp = np.ascontiguousarray(workload.input_tokens, dtype=np.int64)  # no copy for a Workload's own arrays
    out = np.ascontiguousarray(workload.output_tokens, dtype=np.int64)
    if concurrency is not None:
        first = min(concurrency, n)
        arrival = np.full(n, math.inf)
        arrival[:first] = 0.0
        next_send = first
    else:
        arrival = np.array(workload.arrival_s, dtype=np.float64)
        next_send = -1
    first_s = np.full(n, math.nan)
    finish_s = np.full(n, math.nan)
    rejected = np.zeros(n, dtype=bool)
    prefill_inst = np.full(n, -1, dtype=np.int64)
    decode_inst = np.full(n, -1, dtype=np.int64)
    watch = None if stop_on_miss is None else _watch_spec(stop_on_miss, arrival, out, pools[-1].phase != "prefill")
    end, tokens, stopped, peaks, busy, steps = _simcore.run(
        inp, out, arrival, first_s, finish_s, rejected.view(np.uint8), prefill_inst, decode_inst, specs, watch,
        next_send, float(think_time_s))
    return dict(arrival=arrival, first=first_s, finish=finish_s, rejected=rejected, prefill_inst=prefill_inst,
                decode_inst=decode_inst, tokens=tokens, kv_peak=peaks, busy_s=busy, steps=steps, end=end,
                stopped=bool(stopped))
