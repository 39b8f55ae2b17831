r"""Live apply: move running expert-parallel workers from one replica placement to another.

Data: the running plan ``current`` and the ``new`` one (same model, GPUs, experts, layers; checked by
:func:`planner.migration.plan_migration`), the model's MoE layers (the weights an engine loaded),
tokens, ``W = num_gpus`` ranks.

1. Schedule. :func:`planner.migration.plan_migration` matches slots (fewest copies) and orders the
   copies into steps in which every expert keeps a serving replica and no GPU uses more than
   ``spare`` staging slots per layer. Round ``s`` runs step ``s`` of every layer at once.
2. Placements. A per-layer occupancy table ``occ[g, k]`` (expert in position ``k`` of GPU ``g``, -1
   empty; positions ``>= cap[g]`` are staging) starts as the running placement; round ``s`` applies its
   writes (a commit also empties its staging position). ``P_s`` is the placement after round ``s``;
   after the last round the positions the new plan no longer uses are released, and ``P_n`` must
   equal the target plan (checked). Between rounds every occupied position serves: slots are listed
   GPU-major by position, dispatch weights even, except ``P_n``, which has the target plan's.
3. Workers. The ``W`` ranks load ``current``'s copies from the model -- the only weights that come
   from the source; every later copy arrives from the rank holding it. Per round: (a) *transfer*:
   a write whose source is another rank is one point-to-point message of the expert's three
   matrices (``isend`` / ``irecv``, posted in one global order and tagged by it); a write from the
   same rank and a staging commit are local copies; (b) *verify*: serve ``P_s`` (route,
   all-to-all, compute, combine; :mod:`planner.runtime.workers`), compare the outputs with the
   single-process reference (max abs difference, all-reduced) and count rows per rank; (c) report
   the round to the parent (:func:`planner.runtime.dist.report`).
4. Consistency. A round is *verified* when every rank reported it and the outputs are within
   ``tol``. If a rank dies, a collective fails or the outputs drift, the run stops; the placement of
   the last verified round ``P_k`` is the last consistent one (all its copies were in place and it
   served the reference outputs). It is written to the state file and, with ``recover``, served on a
   fresh group of workers (weights reloaded from the source, as an engine restart would) to show that
   it still serves. A real engine keeps its surviving ranks; a local gloo group cannot lose a member,
   so the recovery restarts the group (``docs/runtime.md``).

Measured against planned: ``bytes_sent`` (the matrices' bytes on the wire) equals the cross-rank
copies times the runtime's bytes per expert; per-rank rows equal the dispatch rule's prediction for
``P_s`` (:func:`planner.runtime.workers.predicted_rank_tokens`'s arithmetic on the same layout).

torch is imported inside the functions (house rule).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from planner.errors import InputError, PlannerError, RuntimeAdapterError
from planner.common.fileio import atomic_write_text
from planner.migration import DEFAULT_SPARE_SLOTS
from planner.runtime.dist import BACKENDS, report, run_workers
from planner.runtime.moe import MoELayer, check_stack, reference_forward
from planner.runtime.dispatch import check_dispatch, layout_of, layout_rank_tokens
from planner.runtime.placements import PLACEMENT_KIND, Rounds, placement_plan, replay_rounds
from planner.runtime._rank import forward_once, held_row, router_state, token_block
from planner.runtime.workers import serve_layout, time_layouts

if TYPE_CHECKING:  # pragma: no cover
    from planner.migration import Migration
    from planner.plans.schema import Plan

__all__ = ["ApplyFailed", "ApplyResult", "RoundRecord", "apply_plan", "engine_default_plan", "PLACEMENT_KIND"]

@dataclass(frozen=True)
class RoundRecord:
    """One verified round: ``step`` 0 is the running placement before any move.

    ``rank_tokens`` / ``predicted_tokens`` [L, W] rows per rank measured / predicted;
    ``transfers`` cross-rank copies, ``local_copies`` same-rank copies and commits; ``bytes_sent``
    bytes on the wire (all ranks); ``move_ms`` the slowest rank's transfer time; ``step_ms`` [L]
    the slowest rank's time per layer of the verifying forward.
    """

    step: int
    max_abs_diff: float
    counts_match: bool
    rank_tokens: np.ndarray
    predicted_tokens: np.ndarray
    transfers: int
    local_copies: int
    bytes_sent: int
    move_ms: float
    step_ms: np.ndarray

    def to_dict(self) -> dict:
        return {"step": self.step, "max_abs_diff": self.max_abs_diff, "counts_match": self.counts_match,
                "transfers": self.transfers, "local_copies": self.local_copies, "bytes_sent": self.bytes_sent,
                "move_ms": round(self.move_ms, 3), "forward_ms": round(float(self.step_ms.sum()), 3),
                "busiest_rank_tokens": self.rank_tokens.max(axis=1).tolist(),
                "rank_tokens": self.rank_tokens.tolist(), "predicted_tokens": self.predicted_tokens.tolist()}


@dataclass(frozen=True)
class ApplyResult:
    """A finished live migration: the schedule, every verified round, and the totals."""

    migration: Migration
    rounds: tuple[RoundRecord, ...]
    bytes_per_expert: int  # of the runtime's weights (fp32), not the plan's model
    planned_transfers: int
    wall_s: float
    backend: str
    dispatch: str
    timing: dict | None = None  # warm, interleaved forward times before / after (apply_plan's timing_repeats)

    @property
    def max_abs_diff(self) -> float:
        return max(r.max_abs_diff for r in self.rounds)

    @property
    def counts_match(self) -> bool:
        return all(r.counts_match for r in self.rounds)

    @property
    def bytes_sent(self) -> int:
        return sum(r.bytes_sent for r in self.rounds)

    @property
    def bytes_planned(self) -> int:
        return self.planned_transfers * self.bytes_per_expert

    @property
    def move_s(self) -> float:
        return sum(r.move_ms for r in self.rounds) / 1e3

    def to_dict(self) -> dict:
        first, last = self.rounds[0], self.rounds[-1]
        return {
            "ok": True,
            "steps": len(self.rounds) - 1,
            "max_abs_diff": self.max_abs_diff,
            "counts_match": self.counts_match,
            "bytes_sent": self.bytes_sent,
            "bytes_planned": self.bytes_planned,
            "bytes_match": self.bytes_sent == self.bytes_planned,
            "transfers": sum(r.transfers for r in self.rounds),
            "local_copies": sum(r.local_copies for r in self.rounds),
            "move_s": round(self.move_s, 4),
            "wall_s": round(self.wall_s, 3),
            "backend": self.backend,
            "dispatch": self.dispatch,
            "busiest_rank_tokens_before": first.rank_tokens.max(axis=1).tolist(),
            "busiest_rank_tokens_after": last.rank_tokens.max(axis=1).tolist(),
            "forward_ms_before": None if self.timing is None else self.timing["before_ms_median"],
            "forward_ms_after": None if self.timing is None else self.timing["after_ms_median"],
            "timing": self.timing,
            "rounds": [r.to_dict() for r in self.rounds],
        }


class ApplyFailed(RuntimeAdapterError):
    """The live apply stopped; ``last_step`` is the last verified round, ``recovery`` what serving its
    placement again on fresh workers gave (``None`` when not tried)."""

    def __init__(self, message: str, *, last_step: int, steps: int, rounds: tuple[RoundRecord, ...],
                 recovery: dict | None, state_path: str | None):
        super().__init__(message)
        self.last_step, self.steps, self.rounds = last_step, steps, rounds
        self.recovery, self.state_path = recovery, state_path


# -- the workers -----------------------------------------------------------------------------------


def _transfer(writes: tuple, released: tuple, held: list[dict], rank: int, shapes: list[tuple[int, int]], device) -> tuple[int, int, int]:
    """Run one round's writes on this rank; returns (bytes sent, transfers, local copies) seen by it."""
    import torch
    import torch.distributed as dist

    before = [dict(h) for h in held]  # sources are read as they were when the round started
    ops, incoming, sent, transfers, local = [], [], 0, 0, 0
    tag = 0
    for row, row_writes in enumerate(writes):
        I, H = shapes[row]
        for gpu, slot, _expert, src_gpu, src_slot, commit in row_writes:
            tag += 1
            if gpu != rank and src_gpu != rank:
                continue
            if gpu == src_gpu:  # a copy within the rank (from another position or a staging commit)
                g, u, d = before[row][src_slot]
                held[row][slot] = (g, u, d) if commit else (g.clone(), u.clone(), d.clone())
                if commit and src_slot != slot:
                    held[row].pop(src_slot, None)  # the staging position is free again
                local += 1
            elif src_gpu == rank:
                buf = torch.cat([t.reshape(-1) for t in before[row][src_slot]])
                ops.append(dist.isend(buf, dst=gpu, tag=tag))
                sent += buf.numel() * buf.element_size()
                transfers += 1
            else:
                buf = torch.empty(3 * I * H, dtype=torch.float32, device=device)
                ops.append(dist.irecv(buf, src=src_gpu, tag=tag))
                incoming.append((row, slot, buf, I, H))
    for op in ops:
        op.wait()
    for row, slot, buf, I, H in incoming:
        g, u, d = buf.split(I * H)
        held[row][slot] = (g.view(I, H), u.view(I, H), d.view(H, I))
    for row, row_released in enumerate(released):
        for gpu, pos in row_released:
            if gpu == rank:
                held[row].pop(pos, None)
    return sent, transfers, local


def _apply_worker(rank: int, world_size: int, rounds: Rounds, layers: list[MoELayer], tokens: np.ndarray,
                  reference: np.ndarray, dispatch: str, tol: float, kill: tuple[int, int] | None, use_cuda: bool) -> dict:
    """Spawned by :func:`apply_plan`, one per rank (module docstring, item 3)."""
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", rank) if use_cuda else torch.device("cpu")
    first = rounds.layouts[0]
    routers = [router_state(layer, device) for layer in layers]
    shapes = [(layer.intermediate_size, layer.hidden_size) for layer in layers]
    held: list[dict] = []  # per row: position on this rank -> (gate, up, down)
    for row, layer in enumerate(layers):
        mine = np.flatnonzero(first.slot_gpu[row] == rank)
        held.append({int(rounds.positions[0][row][s]): tuple(t[int(first.physical_to_logical[row][s])].clone().to(device)
                                                             for t in (layer.gate_proj, layer.up_proj, layer.down_proj))
                     for s in mine})
    del layers  # from here on weights move only between ranks
    x0 = token_block(tokens, rank, world_size, device)
    ref = token_block(reference, rank, world_size, device)
    n = len(rounds.writes)
    with torch.no_grad():
        for s in range(n + 1):
            sent = transfers = local = 0
            move_ms = 0.0
            if s > 0:
                if kill is not None and kill == (rank, s):
                    os.kill(os.getpid(), signal.SIGKILL)  # the fault drill: this rank dies mid-migration
                dist.barrier()
                t0 = time.perf_counter()
                sent, transfers, local = _transfer(rounds.writes[s - 1], rounds.released if s == n else (),
                                                   held, rank, shapes, device)
                if use_cuda:
                    torch.cuda.synchronize(device)
                dist.barrier()
                move_ms = (time.perf_counter() - t0) * 1e3
            layout = rounds.layouts[s]
            rows = []
            for row in range(len(held)):
                mine = np.flatnonzero(layout.slot_gpu[row] == rank)
                copies = [held[row][int(rounds.positions[s][row][k])] for k in mine]
                rows.append(held_row(layout, row, rank, copies, routers[row]))
            y, stats, ms = forward_once(x0, layout, rank, rows, dispatch, use_cuda)
            diff = torch.tensor([float((y - ref).abs().max()) if y.numel() else 0.0], dtype=torch.float64, device=device)
            dist.all_reduce(diff, op=dist.ReduceOp.MAX)
            report({"step": s, "max_abs_diff": float(diff.item()), "received": [st["received"] for st in stats],
                    "bytes_sent": sent, "transfers": transfers, "local": local, "move_ms": move_ms, "step_ms": ms})
            if float(diff.item()) > tol:  # every rank sees the same value: all stop here together
                return {"stopped_at": s}
    return {"stopped_at": None}


# -- the parent --------------------------------------------------------------------------------------


def _check_kill(kill, num_gpus: int, steps: int):
    if kill is None:
        return None
    rank, step = kill
    if not 0 <= rank < num_gpus:
        raise InputError(f"kill rank: must be in 0..{num_gpus - 1}, got {rank}")
    if not 1 <= step <= max(steps, 0):
        raise InputError(f"kill step: the migration has {steps} step(s); give one in 1..{steps}, got {step}")
    return (int(rank), int(step))


def apply_plan(
    current: Plan,
    new: Plan,
    model_layers: Sequence[MoELayer],
    tokens,
    *,
    spare_slots_per_gpu: int = DEFAULT_SPARE_SLOTS,
    relabel: bool = True,
    dispatch: str = "even",
    backend: str = "gloo",
    tol: float = 1e-5,
    timeout_s: float = 600.0,  # the whole call: workers, and the recovery after a failure
    threads_per_worker: int = 1,
    state_path: str | Path | None = None,
    recover: bool = True,
    kill: tuple[int, int] | None = None,
    on_round: Callable[[RoundRecord, int], None] | None = None,
    source: str = "the given layers",
    timing_repeats: int = 0,
) -> ApplyResult:
    """Migrate running workers from ``current`` to ``new``, verifying every step (module docstring).

    Parameters
    ----------
    current, new : the running plan and the one to move to (rows = ``model_layers``).
    model_layers : the MoE layers (:class:`~planner.runtime.moe.MoELayer`); their weights are
        what the ranks load for ``current``.
    tokens : ``[T, H]`` stack input or ``[L, T, H]`` per-layer inputs, split over the ranks.
    spare_slots_per_gpu, relabel : passed to :func:`planner.migration.plan_migration`.
    dispatch : ``"even"``, ``"plan"`` or ``"deterministic"`` for every verifying forward.
    tol : largest allowed max abs difference to the single-process reference.
    state_path : JSON file rewritten (atomically) with the last verified placement after every round,
        a plan of kind ``placement`` (:func:`planner.runtime.placements.placement_plan`).
    recover : after a failure, serve the last consistent placement on fresh workers.
    kill : ``(rank, step)``: the fault drill -- ``rank`` kills itself (SIGKILL) as ``step`` starts.
    on_round : ``on_round(record, steps)`` in the parent after each verified round (progress).
    source : where the layers and tokens came from, recorded in the state file.
    timing_repeats : after a successful migration, time the running placement before and after it
        on fresh workers: one warm-up forward of each, then this many rounds that serve each once,
        interleaved (:func:`planner.runtime.workers.time_layouts`); 0 skips it. The verifying
        forwards' own times (one per round, the first one cold) are not a comparison.

    Returns
    -------
    ApplyResult

    Raises
    ------
    InputError
        Plans that do not fit each other or the layers; bad arguments.
    Infeasible
        No in-place schedule with ``spare_slots_per_gpu`` (the message says how many to allow).
    ApplyFailed
        A rank died or failed, or the outputs drifted; the message names the rank, the step and the
        last consistent placement, and what serving it again gave.
    """
    from planner.migration import plan_migration

    check_dispatch(dispatch)
    if isinstance(timing_repeats, bool) or not isinstance(timing_repeats, int) or timing_repeats < 0:
        raise InputError(f"must be an integer >= 0, got {timing_repeats!r}", param="timing_repeats")
    if backend not in BACKENDS:
        raise InputError(f"unknown {backend!r}; known: {', '.join(BACKENDS)}", param="backend")
    if not tol >= 0:
        raise InputError(f"must be >= 0, got {tol!r}", param="tol")
    layers, x = check_stack(model_layers, tokens)
    layout_of(current, len(layers))
    layout_of(new, len(layers))
    for i, layer in enumerate(layers):
        if layer.num_experts != current.replicas.num_experts:
            raise InputError(f"model_layers[{i}]: {layer.num_experts} experts, but the plans have {current.replicas.num_experts}")
    migration = plan_migration(current, new, relabel=relabel, spare_slots_per_gpu=spare_slots_per_gpu)
    rounds = replay_rounds(migration, current)
    n = len(rounds.writes)
    kill = _check_kill(kill, current.replicas.num_gpus, n)
    reference, routing = reference_forward(layers, x)
    W = current.replicas.num_gpus
    predicted = [layout_rank_tokens(layout, routing, dispatch) for layout in rounds.layouts]
    bytes_per_expert = 3 * layers[0].intermediate_size * layers[0].hidden_size * 4
    planned = sum(1 for step in rounds.writes for row in step for w in row if not w[5] and w[0] != w[3])
    reports: dict[int, dict[int, dict]] = {}
    verified: list[RoundRecord] = []
    state = str(state_path) if state_path is not None else None

    def on_progress(rank: int, value: dict) -> None:
        s = value["step"]
        reports.setdefault(s, {})[rank] = value
        if len(reports[s]) < W:
            return
        per = [reports[s][r] for r in range(W)]
        measured = np.array([p["received"] for p in per], dtype=np.int64).T  # [L, W]
        record = RoundRecord(
            step=s, max_abs_diff=per[0]["max_abs_diff"], counts_match=bool(np.array_equal(measured, predicted[s])),
            rank_tokens=measured, predicted_tokens=predicted[s], transfers=sum(p["transfers"] for p in per),
            local_copies=sum(p["local"] for p in per), bytes_sent=sum(p["bytes_sent"] for p in per),
            move_ms=max(p["move_ms"] for p in per), step_ms=np.max([p["step_ms"] for p in per], axis=0),
        )
        if record.max_abs_diff > tol:
            return
        verified.append(record)
        if state is not None:
            placed = placement_plan(rounds.layouts[s], step=s, steps=n, current=current, target=migration.target_plan,
                                    max_abs_diff=record.max_abs_diff,
                                    verified_on=f"{source}; {x.shape[-2]} tokens; {dispatch} dispatch")
            atomic_write_text(state, placed.to_json())
        if on_round is not None:
            on_round(record, n)

    start = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    failure = None
    try:
        per_rank = run_workers(_apply_worker, W, args=(rounds, layers, x, reference, dispatch, tol, kill, backend == "nccl"),
                               backend=backend, timeout_s=timeout_s, threads_per_worker=threads_per_worker,
                               on_progress=on_progress)
        stopped = per_rank[0]["stopped_at"]
        if stopped is not None:
            diff = reports[stopped][0]["max_abs_diff"]
            failure = f"outputs differ from the single-process reference by {diff:.3g} > tol {tol:g} after step {stopped} of {n}"
    except RuntimeAdapterError as exc:
        failure = str(exc)
    if failure is None:
        timing = None
        if timing_repeats:
            ms = time_layouts([rounds.layouts[0], rounds.layouts[-1]], layers, x, dispatch=dispatch, warmup=1,
                              repeats=timing_repeats, backend=backend, timeout_s=max(1.0, deadline - time.monotonic()),
                              threads_per_worker=threads_per_worker)
            timing = _timing_summary(ms[0], ms[1])
        return ApplyResult(migration, tuple(verified), bytes_per_expert, planned, time.perf_counter() - start, backend,
                           dispatch, timing)
    return _fail(failure, verified, n, rounds, layers, x, reference, routing, dispatch, backend, deadline,
                 threads_per_worker, state, recover)


def _timing_summary(before: np.ndarray, after: np.ndarray) -> dict:
    """Medians and ranges of the interleaved forward times, and the paired after/before ratios."""
    ratio = after / before - 1
    r3 = lambda v: round(float(v), 3)  # noqa: E731
    return {"warmup": 1, "repeats": int(before.size), "before_ms": [r3(v) for v in before],
            "after_ms": [r3(v) for v in after], "before_ms_median": r3(np.median(before)),
            "after_ms_median": r3(np.median(after)), "change_median": r3(np.median(ratio)),
            "change_min": r3(ratio.min()), "change_max": r3(ratio.max()),
            "faster_in_every_round": bool((ratio < 0).all())}


def _fail(failure: str, verified: list[RoundRecord], n: int, rounds: Rounds, layers, x, reference, routing,
          dispatch: str, backend: str, deadline: float, threads: int, state: str | None, recover: bool):
    """Raise :class:`ApplyFailed` after (optionally) serving the last consistent placement again."""
    k = verified[-1].step if verified else None
    if k is None:  # nothing was verified: the running placement never served the reference
        raise ApplyFailed(f"{failure}; no step was verified (the running placement did not serve)",
                          last_step=-1, steps=n, rounds=(), recovery=None, state_path=state)
    where = f"during step {k + 1} of {n}" if k < n else f"after the last step ({n})"
    msg = f"{failure} {where}; last consistent placement: after step {k}"
    if state is not None:
        msg += f" (written to {state})"
    recovery = None
    left = deadline - time.monotonic()  # the recovery runs inside the same deadline (timeout_s)
    if recover and left < 1.0:
        recovery = {"step": k, "error": "not tried: the deadline (timeout_s) has passed"}
        msg += "; not served again: the deadline has passed"
    elif recover:
        layout = rounds.layouts[k]
        try:
            res = serve_layout(layout, layers, x, (dispatch,), backend=backend, warmup=0, repeats=1,
                                timeout_s=left, threads_per_worker=threads)[dispatch]
            diff = float(np.abs(res.outputs - reference).max())
            pred = layout_rank_tokens(layout, routing, dispatch)
            recovery = {"step": k, "max_abs_diff": diff, "counts_match": bool(np.array_equal(res.rank_tokens, pred))}
            msg += f"; it still serves on {layout.num_gpus} fresh workers: max_abs_diff {diff:.3g}"
        except PlannerError as exc:
            recovery = {"step": k, "error": str(exc)}
            msg += f"; serving it again failed too: {exc}"
    raise ApplyFailed(msg, last_step=k, steps=n, rounds=tuple(verified), recovery=recovery, state_path=state)



def engine_default_plan(new: Plan, routing) -> Plan:
    """What an engine runs before any plan: expert ``e`` on GPU ``e * D // E``, no replicas -- as a
    verified :class:`~planner.plans.schema.Plan` (``algorithm="none"``) on the counts of ``routing``
    (``[L, T, k]``, rows = ``new``'s layers), with ``new``'s model, GPUs and nodes."""
    from planner.inputs.loads import ExpertLoads
    from planner.replicas import plan_replicas
    from planner.runtime.dispatch import routing_counts

    rp = new.replicas
    counts = routing_counts(routing, rp.num_experts)
    loads = ExpertLoads(counts[None], layer_ids=list(rp.layers), model=new.inputs.model)
    return plan_replicas(loads, new.inputs.model, num_gpus=rp.num_gpus, num_nodes=rp.num_nodes, algorithm="none")
