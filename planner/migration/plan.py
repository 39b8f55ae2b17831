"""Migration planning: from the running replica plan to a new one with the least weight traffic.

The domain side of :mod:`solvers.migration` (see ``docs/migration.md``). Per MoE layer:

1. the new plan's GPUs are relabelled so the most expert copies stay where they are (optional; an
   engine's GPUs are physical, so the new plan's GPU ``b`` then runs on physical GPU ``pi(b)``);
2. on every GPU, each copy of the new plan takes a physical slot, maximising copies already in place;
3. the remaining copies are ordered into steps in which every expert keeps a serving replica, no
   GPU uses more than ``spare_slots_per_gpu`` staging slots and every source holds its expert.

Layers are independent: step ``s`` of every layer may run together (the report's ``steps`` is the
longest layer, its rounds sum the layers' step ``s``). A staging slot is one extra expert row of that
layer on that GPU; ``peak_staging_bytes_per_gpu`` is the most a GPU holds when all layers run together.

The new plan in physical coordinates is returned as ``Migration.target_plan``: the same copies and
metrics (per-GPU loads are permuted with the GPUs; everything else is invariant), slots listed in
physical order. When a GPU holds fewer slots in the new plan, its freed slots are released after the
last step and the engine re-indexes the rest in order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from planner.errors import Infeasible, InputError, PlannerError
from planner.inputs.loads import ExpertLoads
from planner.plans.schema import Plan
from planner.plans.verify import verify_plan
from planner.common.tables import format_table
from solvers.migration import MigrationInfeasible, SlotCopy, SlotMatching, match_slots
from solvers.migration_schedule import MoveSchedule, check_schedule, schedule_moves

__all__ = ["LayerMigration", "Migration", "plan_migration", "link_seconds"]

#: columns of a write in ``Migration.to_dict()``
WRITE_COLUMNS = ("gpu", "slot", "expert", "src_gpu", "src_slot", "commit")


@dataclass(frozen=True)
class LayerMigration:
    """One MoE layer: where the new copies go, which GPU sends them, and in which order."""

    layer: int
    matching: SlotMatching
    schedule: MoveSchedule
    naive_copies: int  # the new plan's slot k of GPU g simply overwrites the running slot k of GPU g
    cross_node_copies: int

    @property
    def copies(self) -> tuple[SlotCopy, ...]:
        """The copies (GPU, final slot, expert, source GPU in the running placement)."""
        return self.schedule.moves

    @property
    def steps(self) -> int:
        return len(self.schedule.steps)

    def staging_in_use(self) -> np.ndarray:
        """Staging slots in use per step and GPU, ``[steps, gpus]`` (held from staging to commit)."""
        cap = self.matching.capacity
        out = np.zeros((self.steps, cap.size), dtype=np.int64)
        held = np.zeros(cap.size, dtype=np.int64)
        for i, step in enumerate(self.schedule.steps):
            for w in step:
                if not w.commit and w.slot >= cap[w.gpu]:
                    held[w.gpu] += 1
            out[i] = held
            for w in step:
                if w.commit:
                    held[w.gpu] -= 1
        return out


@dataclass(frozen=True)
class Migration:
    """The migration from ``current`` to ``new``: per-layer moves and steps, totals, target plan."""

    layers: tuple[LayerMigration, ...]
    target_plan: Plan
    bytes_per_expert: int
    spare_slots_per_gpu: int
    relabel: bool

    @property
    def copies(self) -> int:
        return sum(len(lm.copies) for lm in self.layers)

    @property
    def naive_copies(self) -> int:
        return sum(lm.naive_copies for lm in self.layers)

    @property
    def bytes_moved(self) -> int:
        """Weight bytes sent: copies x bytes per expert (staging commits are local and not counted)."""
        return self.copies * self.bytes_per_expert

    @property
    def staged(self) -> int:
        return sum(lm.schedule.commits for lm in self.layers)

    @property
    def steps(self) -> int:
        """Rounds when all layers migrate together (the longest layer's steps)."""
        return max((lm.steps for lm in self.layers), default=0)

    @property
    def peak_staging_bytes_per_gpu(self) -> int:
        num_gpus = self.target_plan.replicas.num_gpus
        total = np.zeros((self.steps, num_gpus), dtype=np.int64)
        for lm in self.layers:
            use = lm.staging_in_use()
            total[: use.shape[0]] += use
        return int(total.max(initial=0)) * self.bytes_per_expert

    def rounds(self) -> list[dict]:
        """Per-step breakdown over all layers: copies, commits, bytes sent, layers active."""
        out = []
        for s in range(self.steps):
            steps = [lm.schedule.steps[s] for lm in self.layers if s < lm.steps]
            copies = sum(not w.commit for step in steps for w in step)
            out.append({"step": s + 1, "copies": copies, "commits": sum(w.commit for step in steps for w in step),
                        "bytes_moved": copies * self.bytes_per_expert, "layers": len(steps)})
        return out

    def to_dict(self) -> dict:
        """JSON-ready schedule: totals, rounds, and per layer the copies and the writes of every step."""
        layers = []
        for lm in self.layers:
            layers.append({
                "layer": lm.layer,
                "kept": lm.matching.kept,
                "naive_copies": lm.naive_copies,
                "copies": len(lm.copies),
                "cross_node_copies": lm.cross_node_copies,
                "bytes_moved": len(lm.copies) * self.bytes_per_expert,
                "staged": lm.schedule.commits,
                "gpu_of_bin": lm.matching.gpu_of_bin.tolist(),
                "moves": [list(c) for c in lm.copies],
                "steps": [[[int(x) for x in w] for w in step] for step in lm.schedule.steps],
            })
        return {
            "relabel": self.relabel,
            "spare_slots_per_gpu": self.spare_slots_per_gpu,
            "bytes_per_expert": self.bytes_per_expert,
            "move_columns": list(SlotCopy._fields),
            "write_columns": list(WRITE_COLUMNS),
            "totals": {
                "copies": self.copies,
                "naive_copies": self.naive_copies,
                "bytes_moved": self.bytes_moved,
                "cross_node_copies": sum(lm.cross_node_copies for lm in self.layers),
                "staged": self.staged,
                "steps": self.steps,
                "peak_staging_bytes_per_gpu": self.peak_staging_bytes_per_gpu,
            },
            "rounds": self.rounds(),
            "layers": layers,
        }

    def table(self) -> str:
        """Per-layer table, per-step rounds and a totals line, for humans."""
        gb = 1e9
        rows = [[lm.layer, lm.matching.kept, lm.naive_copies, len(lm.copies), lm.cross_node_copies,
                 lm.schedule.commits, lm.steps, f"{len(lm.copies) * self.bytes_per_expert / gb:.2f}"]
                for lm in self.layers]
        per_layer = format_table(["layer", "kept", "naive_copies", "copies", "cross_node", "staged", "steps", "moved_GB"], rows)
        rounds = format_table(["step", "copies", "commits", "moved_GB", "layers"],
                              [[r["step"], r["copies"], r["commits"], f"{r['bytes_moved'] / gb:.2f}", r["layers"]]
                               for r in self.rounds()])
        saved = 1 - self.copies / self.naive_copies if self.naive_copies else 0.0
        return (
            f"{per_layer}\n\nsteps (all layers together):\n{rounds}\n\n"
            f"{len(self.layers)} layer(s): {self.copies} copies ({self.naive_copies} slot by slot, "
            f"{100 * saved:.1f}% saved by {'GPU relabelling + ' if self.relabel else ''}slot matching), "
            f"{self.bytes_moved / gb:.2f} GB moved, {self.steps} step(s), {self.staged} staged; "
            f"staging memory {self.peak_staging_bytes_per_gpu / gb:.2f} GB per GPU at most "
            f"({self.spare_slots_per_gpu} staging slot(s) per GPU and layer allowed)"
        )


def _check_compatible(current: Plan, new: Plan) -> None:
    if current.inputs.model != new.inputs.model:
        raise InputError(f"plans: model differs: current {current.inputs.model!r}, new {new.inputs.model!r}")
    a, b = current.replicas, new.replicas
    for name in ("num_gpus", "num_nodes", "gpus_per_node", "num_experts", "layers", "bytes_per_expert"):
        if getattr(a, name) != getattr(b, name):
            raise InputError(f"plans: {name} differs: current {getattr(a, name)}, new {getattr(b, name)}")


def _check_structure(plan: Plan, which: str) -> None:
    """What the solvers rely on: row shapes, ids in range, every expert present, GPU-major slots."""
    rp = plan.replicas
    E, D = rp.num_experts, rp.num_gpus
    if len(rp.physical_to_logical) != len(rp.layers) or len(rp.slot_gpu) != len(rp.layers):
        raise InputError(f"{which}: physical_to_logical / slot_gpu need one row per layer ({len(rp.layers)})")
    for r, layer in enumerate(rp.layers):
        p2l, sg = np.asarray(rp.physical_to_logical[r]), np.asarray(rp.slot_gpu[r])
        if p2l.size != sg.size or p2l.size == 0:
            raise InputError(f"{which}: layer {layer}: {p2l.size} slots but {sg.size} slot GPUs")
        if p2l.min() < 0 or p2l.max() >= E or sg.min() < 0 or sg.max() >= D:
            raise InputError(f"{which}: layer {layer}: expert ids must be in 0..{E - 1} and GPUs in 0..{D - 1}")
        missing = np.flatnonzero(np.bincount(p2l, minlength=E) == 0)
        if missing.size:
            raise InputError(f"{which}: layer {layer}: experts {missing[:5].tolist()} have no replica")
        if np.any(np.diff(sg) < 0):
            raise InputError(f"{which}: layer {layer}: slots are not numbered GPU-major")


def _naive_copies(old_p2l, old_sg, new_p2l, new_sg, num_gpus: int) -> int:
    """Slot k of the new plan's GPU g written over slot k of the running GPU g, no reuse elsewhere."""
    total = 0
    for g in range(num_gpus):
        o, n = old_p2l[old_sg == g], new_p2l[new_sg == g]
        m = min(o.size, n.size)
        total += int((o[:m] != n[:m]).sum()) + n.size - m
    return total


def _target_plan(current: Plan, new: Plan, layers: list[LayerMigration], relabel: bool) -> Plan:
    """The new plan in physical coordinates: slots in physical order, per-GPU rows permuted."""
    rp = new.replicas
    D, gpn = rp.num_gpus, rp.gpus_per_node
    data = new.model_dump(mode="json")
    rep, pred = data["replicas"], data["replicas"]["predicted"]
    spg_total = np.zeros(D, dtype=np.int64)
    for r, lm in enumerate(layers):
        final = lm.schedule.target
        gpu, pos = np.nonzero(final >= 0)  # row-major: GPU-major, slots in physical order
        origin = lm.schedule.origin[gpu, pos]
        rep["physical_to_logical"][r] = final[gpu, pos].tolist()
        rep["slot_gpu"][r] = gpu.tolist()
        rep["slot_node"][r] = (gpu // gpn).tolist()
        spg = np.bincount(gpu, minlength=D)
        rep["slots_per_gpu"][r] = spg.tolist()
        spg_total += spg
        if rp.dispatch_weights is not None:
            rep["dispatch_weights"][r] = [rp.dispatch_weights[r][i] for i in origin]
        loads = [0.0] * D
        for b, g in enumerate(lm.matching.gpu_of_bin.tolist()):
            loads[g] = rp.predicted.gpu_load_tokens[r][b]
        pred["gpu_load_tokens"][r] = loads
    pred["expert_bytes_per_gpu"] = (spg_total * rp.bytes_per_expert).tolist()
    data["inputs"]["parameters"]["migrated_from"] = hashlib.sha256(current.to_json().encode()).hexdigest()[:16]
    data["inputs"]["parameters"]["migration_relabel"] = relabel
    return Plan.model_validate(data)


def _short(ids, limit: int = 8) -> str:
    ids = [int(i) for i in ids]
    return str(ids) if len(ids) <= limit else f"{str(ids[:limit])[:-1]}, ... +{len(ids) - limit} more]"


def _infeasible_message(failed: list[tuple[int, MigrationInfeasible]], num_layers: int, spare: int, bytes_per_expert: int) -> str:
    parts = "; ".join(f"layer {layer}: {len(exc.cycles)} cycle(s), first: experts {_short(exc.cycles[0][0])} on GPUs "
                      f"{_short(exc.cycles[0][1])}" for layer, exc in failed[:3])
    more = f"; +{len(failed) - 3} more layer(s)" if len(failed) > 3 else ""
    return (
        f"{len(failed)} of {num_layers} layer(s) cannot migrate with {spare} staging slot(s) per GPU: their experts "
        f"must move in cycles in which each has a single replica, so overwriting any of them leaves an expert "
        f"unserved ({parts}{more}); 1 staging slot per GPU makes them movable (one extra expert copy, "
        f"{bytes_per_expert / 1e6:.1f} MB, per GPU and migrating layer)"
    )


def plan_migration(current: Plan, new: Plan, *, relabel: bool = True, spare_slots_per_gpu: int = 0,
                   loads: ExpertLoads | None = None) -> Migration:
    """Plan moving the running placement ``current`` to ``new`` with the fewest copies and a safe order.

    Parameters
    ----------
    current : the plan the engine runs (its GPU numbers are the physical GPUs).
    new : the plan to move to; same model, GPUs, nodes, experts and layers.
    relabel : permute the new plan's GPUs per layer to keep the most copies in place (within nodes
        when there are several); turn off when the new plan's GPU numbers must be kept.
    spare_slots_per_gpu : staging slots a GPU may use per layer during the migration; 0 = in place.
    loads : the loads ``new`` was planned on; when given, ``target_plan`` is re-verified on them.

    Returns
    -------
    Migration
        Every layer's schedule passes :func:`solvers.migration_schedule.check_schedule`.

    Raises
    ------
    InputError
        Plans that do not match (the message names the field) or are malformed.
    Infeasible
        With no staging slot, a layer whose single-replica experts must swap GPUs in a cycle.
    """
    if isinstance(spare_slots_per_gpu, bool) or not isinstance(spare_slots_per_gpu, int) or spare_slots_per_gpu < 0:
        raise InputError(f"spare-slots: must be an integer >= 0, got {spare_slots_per_gpu!r}")
    _check_compatible(current, new)
    _check_structure(current, "current plan")
    _check_structure(new, "new plan")
    a, b = current.replicas, new.replicas
    D, E = a.num_gpus, a.num_experts
    gpn = a.gpus_per_node
    layers, failed = [], []
    for r, layer in enumerate(a.layers):
        op, og = np.asarray(a.physical_to_logical[r]), np.asarray(a.slot_gpu[r])
        np_, ng = np.asarray(b.physical_to_logical[r]), np.asarray(b.slot_gpu[r])
        try:
            m = match_slots(op, og, np_, ng, D, E, relabel=relabel, gpus_per_node=gpn if a.num_nodes > 1 else None)
            s = schedule_moves(m, spare_slots_per_gpu=spare_slots_per_gpu)
        except MigrationInfeasible as exc:
            failed.append((layer, exc))
            continue
        except ValueError as exc:  # the solvers' own checks; ours above should catch them first
            raise InputError(f"layer {layer}: {exc}") from None
        problems = check_schedule(m.old, s.target, m.capacity, s.steps, spare_slots_per_gpu=spare_slots_per_gpu)
        if problems:  # a bug, not a user error
            raise PlannerError(f"internal error: layer {layer}: migration schedule fails its check: {problems[0]}")
        cross = sum(not w.commit and w.src_gpu // gpn != w.gpu // gpn for step in s.steps for w in step)
        layers.append(LayerMigration(layer, m, s, _naive_copies(op, og, np_, ng, D), int(cross)))
    if failed:
        raise Infeasible(_infeasible_message(failed, len(a.layers), spare_slots_per_gpu, a.bytes_per_expert),
                         remedy={"spare_slots_per_gpu": spare_slots_per_gpu + 1})
    target = _target_plan(current, new, layers, relabel)
    if loads is not None:
        for plan, which in ((new, "new"), (target, "target")):
            report = verify_plan(plan, loads)
            if report.ok:
                continue
            c = report.failures[0]
            if which == "new":
                raise InputError(f"the new plan does not verify on them: {c.name}: {c.detail}", param="loads")
            # a bug: relabelling and slot order change no metric
            raise PlannerError(f"internal error: target plan fails verification: {c.name}: {c.detail}")
    return Migration(tuple(layers), target, a.bytes_per_expert, spare_slots_per_gpu, relabel)


def link_seconds(migration: Migration, intra_node_bytes_per_s: float, inter_node_bytes_per_s: float) -> float:
    """Time on the links to run ``migration``: the sum over its steps (all layers' step ``s`` together) of
    the busiest receiving GPU's ``bytes from its node / intra_node_bytes_per_s + bytes from other nodes /
    inter_node_bytes_per_s``. Copies a GPU makes from its own memory (staging commits) cost nothing here;
    senders are assumed not to be the bottleneck and steps not to overlap.
    """
    if not (intra_node_bytes_per_s > 0 and inter_node_bytes_per_s > 0):
        raise InputError("link bandwidths must be positive", param="bandwidth")
    rep = migration.target_plan.replicas
    per_node = rep.gpus_per_node
    total = 0.0
    for s in range(migration.steps):
        t = np.zeros(rep.num_gpus)
        for lm in migration.layers:
            if s >= lm.steps:
                continue
            for w in lm.schedule.steps[s]:
                if w.commit or w.src_gpu == w.gpu:
                    continue
                same = w.src_gpu // per_node == w.gpu // per_node
                t[w.gpu] += migration.bytes_per_expert / (intra_node_bytes_per_s if same else inter_node_bytes_per_s)
        total += float(t.max(initial=0.0))
    return total
