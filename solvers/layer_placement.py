r"""Layer placement on a heterogeneous cluster: seeds, simulated annealing, bounds, a SolveReport.

Data: ``L`` layers; nodes ``i = 1..n`` with capacity tables ``T_i(k)``, ``k = 1..K_i`` (tokens/s
through all ``k`` layers it holds); directed link capacities ``C_uv`` and source / sink capacities
(tokens/s). A layout gives node ``i`` the layers ``[s_i, s_i + k_i)``.

Objective: maximise the exact max-flow ``F(s, k)`` of the layout (:class:`~solvers.layer_flow.LayoutFlow`,
Helix's graph with the exact-abutment rule; Mei et al., ASPLOS'25). Constraints (Helix's MILP):

1. ``1 <= k_i <= K_i`` (every node holds at least one layer; weights within its memory);
2. ``0 <= s_i`` and ``s_i + k_i <= L``.

Method (``docs/cluster.md``, which records why: on Helix's instances MILPs found little cold and never
improved a warm start, while this reached +11 to +16 % over the published values):

1. **Seeds** -- every heuristic of :mod:`solvers.layer_heuristics` (Petals spans, Swarm stages for every
   stage size, one pipeline per GPU type, the fast type as a tail chain for every chain length and
   head stage size, in LPT and round-robin order), each scored exactly.
1b. **Stage-chain MILP** (:mod:`solvers.layer_milp`) -- the best single chain of stages by bisection on
   the flow, one small feasibility program per step; scored exactly like the seeds (on a network
   that binds, its value can be lower than the chain's stage minimum). On single24 it reaches the
   layer-crossing bound: proven optimal.
2. **Simulated annealing** over ranges, one chain per seed of the best few, moves on one node: shift by
   1-2, grow / shrink one end, *snap* its start onto another node's end (or 0) or its end onto another
   node's start (or ``L``), swap two nodes' ranges. Metropolis acceptance, temperature geometric from
   ``t0`` to ``t_end`` (shares of the start value) over the chain's ``iterations``.
   A candidate whose layer-crossing bound (:meth:`~solvers.layer_flow.LayoutFlow.crossing_bound`,
   kept incrementally) is below the acceptance threshold is rejected without a max-flow: exact, and
   most rejections cost a few microseconds.
3. **Bounds** -- Helix's ``sum_i max_k k T_i(k) / L`` and the tighter layer-crossing bound; the report's
   ``bound`` is the smaller one (with the source and sink cuts), ``gap = (bound - F) / F``.

The search is bounded by work (iterations, seeded): the same inputs and seed give the same layout.
``time_limit_s`` is a safety cap per chain; a chain stopped by it is reported (``stop_reason``).
"""

from __future__ import annotations

import math
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from solvers.layer_flow import LayoutFlow
from solvers.layer_heuristics import (
    crossing_upper_bound,
    helix_upper_bound,
    petals_layout,
    swarm_layout,
    tail_chain_layout,
    type_pipelines_layout,
)
from solvers.layer_milp import chain_layout
from solvers.report import SolveReport, relative_gap

__all__ = ["Seed", "PlacementResult", "seed_layouts", "anneal", "place_layers", "flow_bounds"]

_EPS = 1e-9


@dataclass(frozen=True)
class Seed:
    """A scored layout: its name (method and parameters), ranges and exact flow (tokens/s)."""

    name: str
    starts: tuple[int, ...]
    sizes: tuple[int, ...]
    value: float


@dataclass(frozen=True)
class PlacementResult:
    """The best layout found, the seeds it was chosen against, the bounds and what each chain did."""

    starts: tuple[int, ...]
    sizes: tuple[int, ...]
    value: float
    method: str
    seeds: tuple[Seed, ...]
    helix_bound: float
    crossing_bound: float
    bound: float
    chains: tuple[dict, ...]
    report: SolveReport
    chain_report: SolveReport | None = None


def flow_bounds(lf: LayoutFlow, source_caps: Sequence[float] | None = None,
                sink_caps: Sequence[float] | None = None) -> tuple[float, float, float]:
    """``(helix, crossing, best)`` upper bounds on the flow of any layout; ``best`` also takes the
    source and sink cuts (``sum_i C_si``, ``sum_i C_it``) when given."""
    helix = helix_upper_bound(lf.capacity, lf.num_layers)
    cross = crossing_upper_bound(lf.capacity, lf.num_layers)
    best = min(helix, cross)
    for caps in (source_caps, sink_caps):
        if caps is not None:
            best = min(best, float(sum(caps)))
    return helix, cross, best


def seed_layouts(lf: LayoutFlow, types: Sequence) -> list[Seed]:
    """Every constructive layout of the portfolio, scored exactly, best first (ties: name order)."""
    L, caps = lf.num_layers, lf.capacity
    found: dict[tuple, Seed] = {}

    def add(name: str, layout) -> None:
        s, k = layout
        key = (tuple(s), tuple(k))
        if key not in found:
            found[key] = Seed(name, key[0], key[1], lf.value(s, k))

    add("petals", petals_layout(caps, L))
    add("type-pipelines", type_pipelines_layout(caps, L, types))
    kmax = max(lf.max_layers)
    for q in range(1, kmax + 1):
        for order in ("lpt", "round_robin"):
            add(f"swarm q={q} {order}", swarm_layout(caps, L, q, order))
    by_type: dict = {}
    for i, t in enumerate(types):
        by_type.setdefault(t, []).append(i)
    for t, chain in by_type.items():
        others = [lf.max_layers[i] for i in range(len(caps)) if i not in set(chain)]
        if not others:
            continue
        kchain = min(lf.max_layers[i] for i in chain)
        for k in range(1, kchain + 1):
            if L - len(chain) * k < 1:
                break
            for q in range(1, max(others) + 1):
                for order in ("round_robin", "lpt"):
                    add(f"tail-chain {t} k={k} q={q} {order}", tail_chain_layout(caps, L, chain, k, q, order))
    return sorted(found.values(), key=lambda sd: (-sd.value, sd.name))


def _propose(rng: random.Random, i: int, s: list[int], k: list[int], K: list[int], L: int, n: int):
    """One move: ``[(node, start, size), ...]`` (one node, or two for a swap), or None."""
    si, ki = s[i], k[i]
    Ki = K[i]
    r = rng.random()
    if r < 0.2:  # shift
        d = rng.choice((-2, -1, 1, 2))
        return [(i, si + d, ki)]
    if r < 0.45:  # grow or shrink one end
        d = 1 if rng.random() < 0.5 else -1
        if rng.random() < 0.5:
            return [(i, si - d, ki + d)]
        return [(i, si, ki + d)]
    if r < 0.65:  # snap the start onto another node's end (or 0)
        j = rng.randrange(n + 1)
        a = 0 if j == n or j == i else s[j] + k[j]
        if a >= L:
            return None
        if rng.random() < 0.5:
            j2 = rng.randrange(n + 1)
            b = L if j2 == n or j2 == i else s[j2]
            if a < b <= a + Ki:
                return [(i, a, b - a)]
        return [(i, a, rng.randint(1, min(Ki, L - a)))]
    if r < 0.85:  # snap the end onto another node's start (or L)
        j = rng.randrange(n + 1)
        b = L if j == n or j == i else s[j]
        if b <= 0:
            return None
        kk = rng.randint(1, min(Ki, b))
        return [(i, b - kk, kk)]
    j = rng.randrange(n)  # swap
    if j == i or k[j] > Ki or ki > K[j]:
        return None
    return [(i, s[j], k[j]), (j, si, ki)]


def anneal(lf: LayoutFlow, starts: Sequence[int], sizes: Sequence[int], *, iterations: int, seed: int,
           t0: float = 0.05, t_end: float = 0.0005, time_limit_s: float | None = None) -> dict:
    """One simulated-annealing chain from a layout; returns its best layout and what it did.

    ``t0`` and ``t_end`` are the start and end temperatures as shares of the start value (of the
    crossing bound when the start value is 0). The result dict has ``starts``, ``sizes``, ``value``,
    ``iterations`` done, ``flows`` (max-flows computed), ``improvements``, ``seed``, ``stopped_by_time``,
    ``time_to_best_s``, ``wall_time_s``.
    """
    t_start = time.perf_counter()
    rng = random.Random(seed)
    L, n = lf.num_layers, len(lf.capacity)
    K = lf.max_layers
    caps = lf.capacity
    s, k = list(starts), list(sizes)
    lf.check_layout(s, k)
    cur = lf.value(s, k)
    best, best_s, best_k = cur, list(s), list(k)
    cover = [0.0] * L
    for i in range(n):
        c = caps[i][k[i] - 1]
        for layer in range(s[i], s[i] + k[i]):
            cover[layer] += c
    scale = cur if cur > 0 else lf.crossing_bound(s, k)
    temp, t_last = t0 * scale, t_end * scale
    cool = (t_last / temp) ** (1.0 / max(1, iterations)) if temp > 0 and t_last > 0 else 1.0
    flows = improvements = done = 0
    time_to_best = 0.0
    stopped = False
    log = math.log
    for it in range(iterations):
        done = it + 1
        if time_limit_s is not None and (it & 1023) == 0 and time.perf_counter() - t_start > time_limit_s:
            stopped = True
            done = it
            break
        temp *= cool
        i = rng.randrange(n)
        move = _propose(rng, i, s, k, K, L, n)
        if move is None:
            continue
        if any(not (0 <= a and 1 <= b <= K[j] and a + b <= L) or (a == s[j] and b == k[j]) for j, a, b in move):
            continue
        u = rng.random()
        threshold = cur + (temp * log(u) if u > 0.0 else -math.inf)
        old = [(j, s[j], k[j]) for j, _, _ in move]
        for j, a, b in old:
            c = caps[j][b - 1]
            for layer in range(a, a + b):
                cover[layer] -= c
        for j, a, b in move:
            c = caps[j][b - 1]
            for layer in range(a, a + b):
                cover[layer] += c
            s[j], k[j] = a, b
        accept = False
        if min(cover) >= threshold - _EPS:
            value = lf.value(s, k)
            flows += 1
            if value >= threshold - _EPS:
                accept = True
                cur = value
                if value > best + _EPS * max(1.0, best):
                    best, best_s, best_k = value, list(s), list(k)
                    improvements += 1
                    time_to_best = time.perf_counter() - t_start
        if not accept:
            for j, a, b in move:
                c = caps[j][b - 1]
                for layer in range(a, a + b):
                    cover[layer] -= c
            for j, a, b in old:
                c = caps[j][b - 1]
                for layer in range(a, a + b):
                    cover[layer] += c
                s[j], k[j] = a, b
    return {"starts": best_s, "sizes": best_k, "value": best, "iterations": done, "flows": flows,
            "improvements": improvements, "seed": seed, "stopped_by_time": stopped,
            "time_to_best_s": time_to_best, "wall_time_s": time.perf_counter() - t_start}


def _chain(args) -> dict:
    lf, seed_layout, kw = args
    out = anneal(lf, seed_layout.starts, seed_layout.sizes, **kw)
    out["from"] = seed_layout.name
    return out


def place_layers(lf: LayoutFlow, types: Sequence, *, iterations: int = 20000, chains: int = 2, seed: int = 0,
                 t0: float = 0.05, t_end: float = 0.0005, time_limit_s: float | None = 60.0,
                 workers: int = 1, source_caps: Sequence[float] | None = None,
                 sink_caps: Sequence[float] | None = None, extra_seeds: Sequence[Seed] = (),
                 chain_milp: bool = True, chain_time_limit_s: float = 30.0, chain_node_limit: int = 2000,
                 chain_max_solves: int = 20) -> PlacementResult:
    """The best layout of seeds + annealing (module docstring), with bounds and a SolveReport.

    Parameters
    ----------
    lf : the instance's evaluator.
    types : a label per node (GPU type); nodes of one label form the per-type heuristics.
    iterations : moves per annealing chain (the work budget; 0 keeps the best seed).
    chains : annealing chains; chain ``c`` starts from the ``c mod 3``-th best distinct seed with
        seed ``seed + c``.
    t0, t_end : start and end temperature, shares of the start value.
    time_limit_s : safety cap per chain (seconds; None: none). Reported when it stops a chain.
    workers : processes running the chains (the result does not depend on it).
    source_caps, sink_caps : capacities of the source and sink links, for the cut bounds.
    extra_seeds : more starting layouts (e.g. a user's current layout), scored again here.
    chain_milp : run the stage-chain MILP (:func:`~solvers.layer_milp.chain_layout`) and add its layout
        as a seed; ``chain_max_solves`` programs of at most ``chain_node_limit`` nodes each bound its
        work, ``chain_time_limit_s`` caps its time.

    Returns
    -------
    PlacementResult
        Never worse than the best seed: a chain returns the best layout it visited, its start included.
    """
    t_start = time.perf_counter()
    seeds = seed_layouts(lf, types)
    for sd in extra_seeds:
        lf.check_layout(sd.starts, sd.sizes)
        seeds.append(Seed(sd.name, tuple(sd.starts), tuple(sd.sizes), lf.value(sd.starts, sd.sizes)))
    seeds.sort(key=lambda sd: (-sd.value, sd.name))
    helix, cross, bound = flow_bounds(lf, source_caps, sink_caps)
    chain_report = None
    if chain_milp and seeds[0].value < bound * (1 - 1e-9):
        ch = chain_layout(lf.capacity, lf.num_layers, lower=seeds[0].value, upper=cross,
                          time_limit_s=chain_time_limit_s, solve_time_limit_s=chain_time_limit_s,
                          node_limit=chain_node_limit, max_solves=chain_max_solves)
        chain_report = ch.report
        if ch.starts is not None:
            seeds.append(Seed("stage-chain milp", ch.starts, ch.sizes, lf.value(ch.starts, ch.sizes)))
            seeds.sort(key=lambda sd: (-sd.value, sd.name))
    distinct: list[Seed] = []
    for sd in seeds:
        if all(abs(sd.value - d.value) > 1e-9 * max(1.0, d.value) for d in distinct):
            distinct.append(sd)
        if len(distinct) == 3:
            break
    best = seeds[0]
    best_value, best_s, best_k, method = best.value, best.starts, best.sizes, best.name
    runs: list[dict] = []
    if iterations > 0 and chains > 0 and best_value < bound * (1 - 1e-9):
        kw = {"iterations": int(iterations), "t0": t0, "t_end": t_end, "time_limit_s": time_limit_s}
        jobs = [(lf, distinct[c % len(distinct)], {**kw, "seed": seed + c}) for c in range(chains)]
        if workers > 1 and chains > 1:
            with ProcessPoolExecutor(max_workers=min(workers, chains, os.cpu_count() or 1)) as pool:
                runs = list(pool.map(_chain, jobs))
        else:
            runs = [_chain(job) for job in jobs]
        for c, run in enumerate(runs):
            if run["value"] > best_value + 1e-9 * max(1.0, best_value):
                best_value, best_s, best_k = run["value"], tuple(run["starts"]), tuple(run["sizes"])
                method = f"anneal chain {c} from {run['from']}"
    stopped = any(r["stopped_by_time"] for r in runs) or (chain_report is not None and chain_report.stop_reason == "time_limit")
    optimal = best_value >= bound * (1 - 1e-9)
    report = SolveReport(
        status="optimal" if optimal else "feasible",
        stop_reason="time_limit" if stopped and not optimal else "completed",
        objective=best_value,
        bound=bound,
        gap=relative_gap(-best_value, -bound),
        wall_time_s=time.perf_counter() - t_start,
        solver="seeds+anneal (exact max-flow, layer-crossing bound)",
        solver_version="moeplan",
        message=(f"{len(seeds)} seeds"
                 + (f" (stage-chain MILP: {chain_report.message}, {chain_report.stop_reason})" if chain_report else "")
                 + f", {len(runs)} annealing chains x {iterations} moves"
                 + ("; a time cap stopped the work budget" if stopped else "")),
    )
    chain_info = tuple({key: r[key] for key in ("from", "seed", "value", "iterations", "flows", "improvements",
                                                  "stopped_by_time", "time_to_best_s", "wall_time_s")} for r in runs)
    return PlacementResult(tuple(best_s), tuple(best_k), best_value, method, tuple(seeds), helix, cross, bound,
                           chain_info, report, chain_report)
