r"""The placements between the rounds of a live apply (parent side, numpy only, no torch).

:func:`replay_rounds` replays a migration schedule (:func:`planner.migration.plan_migration`) on
per-layer occupancy tables, as :mod:`planner.runtime.apply` describes in its item 2: ``occ[g, k]``
is the expert in position ``k`` of GPU ``g`` (-1 empty; positions ``>= cap[g]`` are staging). It
starts as the running placement; round ``s`` applies its writes (a commit also empties its staging
position); after the last round the positions the new plan no longer uses are released, and the
result must equal the target plan (checked). Every placement ``P_s`` becomes a
:class:`~planner.runtime.dispatch.Layout` whose slots are the occupied positions, GPU-major by
position, with even dispatch weights -- except the last, which has the target plan's.

:func:`placement_plan` is the state file's content: the last verified placement as a plan of kind
``placement`` (:class:`~planner.plans.schema.PlacementPlan`), which ``moeplan verify`` checks,
``moeplan apply --from`` continues from and ``moeplan export`` writes for an engine restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from planner.errors import PlannerError
from planner.runtime.dispatch import Layout, layout_of

if TYPE_CHECKING:  # pragma: no cover
    from planner.migration import Migration
    from planner.plans.schema import PlacementPlan, Plan

__all__ = ["PLACEMENT_KIND", "Rounds", "replay_rounds", "placement_plan"]

#: ``kind`` of the state file (the last consistent placement)
PLACEMENT_KIND = "placement"


@dataclass
class Rounds:
    """A replayed schedule. Per round ``s`` (0..n): ``layouts[s]`` the serving layout and
    ``positions[s]`` each slot's position on its GPU (per layer); per round 1..n ``writes[s - 1]``
    the writes of every layer as ``(gpu, slot, expert, src_gpu, src_slot, commit)`` tuples;
    ``released`` the ``(gpu, position)`` pairs freed after the last round (per layer)."""

    layouts: list[Layout] = field(default_factory=list)
    positions: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    writes: list[tuple[tuple[tuple[int, ...], ...], ...]] = field(default_factory=list)
    released: tuple[tuple[tuple[int, int], ...], ...] = ()


def _as_layout(occ: list[np.ndarray], num_experts: int, gpus_per_node: int, weights=None) -> tuple[Layout, tuple]:
    """(layout of the occupied positions, per layer each slot's position): one placement ``P_s``."""
    p2l, gpu, node, w, pos = [], [], [], [], []
    for row, table in enumerate(occ):
        g, k = np.nonzero(table >= 0)  # row-major: GPU-major, positions ascending
        p2l.append(table[g, k].astype(np.int64))
        gpu.append(g.astype(np.int64))
        node.append((g // gpus_per_node).astype(np.int64))
        w.append(np.ones(g.size) if weights is None else np.asarray(weights[row], dtype=np.float64))
        pos.append(k.astype(np.int64))
    layout = Layout(tuple(p2l), tuple(gpu), tuple(node), tuple(w), num_experts, occ[0].shape[0], gpus_per_node)
    return layout, tuple(pos)


def replay_rounds(migration: Migration, current: Plan) -> Rounds:
    """Replay ``migration``'s schedule from the running plan ``current`` on occupancy tables
    (module docstring); the placement after every round, checked to end at the target plan.

    Raises
    ------
    PlannerError
        Internal error: the schedule does not reach the target placement.
    """
    rp = current.replicas
    spare = migration.spare_slots_per_gpu
    occ = []
    for lm in migration.layers:
        old = lm.matching.old
        table = np.full((old.shape[0], old.shape[1] + spare), -1, dtype=np.int64)
        table[:, : old.shape[1]] = old
        occ.append(table)
    targets = [lm.schedule.target for lm in migration.layers]
    # positions the new plan no longer uses are released after the last step (a round of its own
    # when nothing has to move)
    total = migration.steps or int(any((o[:, : t.shape[1]] != t).any() for o, t in zip(occ, targets)))
    weights = migration.target_plan.replicas.dispatch_weights
    out = Rounds()
    layout, pos = _as_layout(occ, rp.num_experts, rp.gpus_per_node, weights if total == 0 else None)
    out.layouts.append(layout)
    out.positions.append(pos)
    for s in range(total):
        step_writes = []
        for row, lm in enumerate(migration.layers):
            writes = lm.schedule.steps[s] if s < lm.steps else ()
            for w in writes:
                occ[row][w.gpu, w.slot] = w.expert
            for w in writes:
                if w.commit:
                    occ[row][w.src_gpu, w.src_slot] = -1
            step_writes.append(tuple(tuple(int(v) for v in w) for w in writes))
        out.writes.append(tuple(step_writes))
        last = s == total - 1
        if last:
            released = []
            for row, (lm, target) in enumerate(zip(migration.layers, targets)):
                g, k = np.nonzero(occ[row][:, : target.shape[1]] != target)
                if (target[g, k] >= 0).any() or (occ[row][:, target.shape[1]:] >= 0).any():
                    raise PlannerError(f"internal error: layer {lm.layer}: the schedule does not reach the target placement")
                occ[row][g, k] = -1
                released.append(tuple(zip(g.tolist(), k.tolist())))
            out.released = tuple(released)
        layout, pos = _as_layout(occ, rp.num_experts, rp.gpus_per_node, weights if last else None)
        out.layouts.append(layout)
        out.positions.append(pos)
    final = layout_of(migration.target_plan)
    for a, b in zip(out.layouts[-1].physical_to_logical, final.physical_to_logical):
        if not np.array_equal(a, b):
            raise PlannerError("internal error: the last placement differs from the target plan")
    return out


def placement_plan(layout: Layout, *, step: int, steps: int, current: Plan, target: Plan, max_abs_diff: float,
                   verified_on: str) -> PlacementPlan:
    """The placement ``layout`` served after ``step`` of ``steps`` rounds of the migration from
    ``current`` to ``target`` (the state file)."""
    import hashlib

    from planner.plans.schema import PlacementPlan

    rp = target.replicas
    return PlacementPlan(
        tool=target.tool, model=target.inputs.model, layers=list(rp.layers), num_hidden_layers=rp.num_hidden_layers,
        num_experts=rp.num_experts, num_gpus=rp.num_gpus, num_nodes=rp.num_nodes, gpus_per_node=rp.gpus_per_node,
        bytes_per_expert=rp.bytes_per_expert, physical_to_logical=[p.tolist() for p in layout.physical_to_logical],
        slot_gpu=[g.tolist() for g in layout.slot_gpu], step=step, steps=steps,
        from_plan_sha256=hashlib.sha256(current.to_json().encode()).hexdigest(),
        to_plan_sha256=hashlib.sha256(target.to_json().encode()).hexdigest(),
        max_abs_diff=float(max_abs_diff), verified_on=verified_on,
    )
