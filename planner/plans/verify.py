"""Solver-free verifier: recompute every invariant and metric of a plan from the plan and its loads.

Deliberately independent of ``solvers/``: it re-derives per-GPU loads with its own plain numpy code,
so a bug in a solver's bookkeeping cannot hide behind the same bug here.

Checks (each reported by name):

1. ``shapes``        every per-row array has one row per planned layer and one entry per slot/GPU
2. ``layers``        planned layers are distinct hidden layers, present in the loads
3. ``loads_hash``    the loads given are the loads the plan was made from
4. ``experts``       slot contents are valid expert ids and every expert has >= 1 replica per layer
5. ``gpus``          slot GPUs and nodes are in range and consistent (node = gpu // gpus_per_node),
                     slots are numbered GPU-major, ``slots_per_gpu`` counts them, every GPU holds one;
                     uniform mode: equal slots everywhere; per-layer mode: per-GPU totals within 1
6. ``duplicates``    no two replicas of one expert on one GPU, unless the plan allows it
7. ``split``         dispatch weights (if any) are non-negative and sum to 1 over each expert's replicas
8. ``metrics``       per-GPU loads, busiest load, balancedness (summed, replayed, held-out), lower bounds
                     (summed and per step), expert bytes per GPU and the report's objective / bound / gap
                     equal the recorded ones; the recorded planning / held-out steps are steps of the loads
9. ``model``         bytes per expert and expert count agree with the model profile; a model id that is
                     no shipped profile fails unless the profile is given (``model=``)

Without the loads (``loads=None``: what ``export``, ``estimate``, ``migrate`` and ``apply`` have when
they read a plan file) checks 2, 3 and 8 become what the plan alone can show: ``layers`` (distinct, in
range, in the recorded loads' layer ids), ``loads_hash`` (a well-formed SHA-256, steps within the
recorded shape) and ``metrics`` (the recorded numbers agree with each other: busiest load = max of the
per-GPU loads, balancedness = mean / max, means of the rows, lower bounds below the busiest loads and
above the mean, expert bytes = slots x bytes per expert, report objective / bound / gap = sums of the
replayed rows, every number finite and >= 0). A tampering that keeps every recorded number consistent
is caught only with the loads (``moeplan verify PLAN --loads FILE``).

A placement (``kind: "placement"``, what a live apply leaves) has no loads and no metrics;
:func:`verify_placement` runs checks 1, 2 (layers distinct and in the model), 4, 5 (a GPU may hold
extra staging slots, so no mode rule) and 9, plus ``steps`` (``0 <= step <= steps``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from planner.errors import ProfileNotFound
from planner.inputs.loads import ExpertLoads, rows_as_moe_layers
from planner.common.numerics import close
from planner.plans.schema import PlacementPlan, Plan

__all__ = ["Check", "VerifyReport", "verify_plan", "verify_placement", "replica_lower_bound"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class VerifyReport:
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checks": [c.__dict__ for c in self.checks]}


def replica_lower_bound(weight: np.ndarray, num_slots: int, num_gpus: int) -> float:
    """Lower bound on the busiest-GPU load of one layer with ``num_slots`` slots on ``num_gpus`` GPUs.

    No GPU can be below the average, and the GPU holding the hottest expert's largest share carries
    at least ``w_max / r`` where ``r <= min(D, P - E + 1)`` is the most GPUs that expert can span.

    >>> replica_lower_bound(np.array([90.0, 10.0, 10.0, 10.0]), 5, 3)
    45.0
    """
    w = np.asarray(weight, dtype=np.float64)
    spread = max(1, min(num_gpus, num_slots - w.size + 1))
    return float(max(w.sum() / num_gpus, w.max(initial=0.0) / spread))


def _balancedness(gpu_loads: np.ndarray) -> np.ndarray:
    """mean/max over the last axis; a layer with no load counts as perfectly balanced."""
    mx = gpu_loads.max(axis=-1)
    mean = gpu_loads.mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mx > 0, mean / np.where(mx > 0, mx, 1.0), 1.0)


def _slot_fractions(phy2log: np.ndarray, num_experts: int, weights) -> np.ndarray:
    """Share of its expert's tokens each slot receives: the plan's dispatch weights or an even split."""
    if weights is not None:
        return np.asarray(weights, dtype=np.float64)
    replicas = np.bincount(phy2log, minlength=num_experts).astype(np.float64)
    return 1.0 / replicas[phy2log]


def _gpu_loads(weight: np.ndarray, phy2log: np.ndarray, slot_gpu: np.ndarray, frac: np.ndarray, num_gpus: int):
    """weight [T, E] of one layer -> [T, D] per-GPU loads."""
    membership = np.zeros((phy2log.size, num_gpus))
    membership[np.arange(phy2log.size), slot_gpu] = 1.0
    return (weight[:, phy2log] * frac) @ membership


def _step_bounds(weight: np.ndarray, num_slots: int, num_gpus: int) -> np.ndarray:
    """Per-step lower bound on the busiest-GPU load, [T] (see replica_lower_bound)."""
    spread = max(1, min(num_gpus, num_slots - weight.shape[1] + 1))
    return np.maximum(weight.sum(axis=1) / num_gpus, weight.max(axis=1) / spread)


def _model_check(model_id: str, rp, model=None) -> Check:
    """9. bytes per expert, expert count, hidden layers and MoE layers of ``rp`` (a replica plan's
    ``replicas`` or a placement) agree with the model profile: ``model`` (a
    :class:`~planner.profiles.ModelArch`) or the shipped profile of ``model_id``."""
    from planner.profiles import get_model

    if model is None:
        try:
            model = get_model(model_id)
        except ProfileNotFound:
            return Check("model", False, f"model {model_id!r} is not a shipped profile, so bytes per expert "
                                         "and expert counts cannot be checked; give the profile the plan was made "
                                         "with (--model FILE of verify and migrate)")
    elif model.id != model_id:
        return Check("model", False, f"the plan is for model {model_id!r}, the profile given is {model.id!r}")
    problems = []
    if model.bytes_per_expert != rp.bytes_per_expert:
        problems.append(f"bytes_per_expert {rp.bytes_per_expert} != profile's {model.bytes_per_expert}")
    if model.num_routed_experts != rp.num_experts:
        problems.append(f"num_experts {rp.num_experts} != profile's {model.num_routed_experts}")
    if rp.num_hidden_layers != model.num_hidden_layers:
        problems.append(f"num_hidden_layers {rp.num_hidden_layers} != profile's {model.num_hidden_layers}")
    dense = sorted(set(rp.layers) - set(model.moe_layers))
    if dense:
        problems.append(f"layers {dense} are not MoE layers of {model.id}")
    return Check("model", not problems, "; ".join(problems))


def verify_plan(plan: Plan, loads: ExpertLoads | None = None, *, model=None) -> VerifyReport:
    """Recompute every invariant and metric of ``plan`` on ``loads``; never calls a solver.

    Returns a :class:`VerifyReport`; ``report.ok`` is True when every check passes. Checks run in the
    order of the module docstring; one whose failure makes the later ones meaningless ends the report.
    Without ``loads`` the checks that need them are replaced by what the plan alone can show (module
    docstring). ``model`` is the model profile to check against (a
    :class:`~planner.profiles.ModelArch`); default the shipped profile of the plan's model id, and a
    model id that is none fails the ``model`` check.
    """
    rp = plan.replicas
    checks = [_check_shapes(rp)]
    if not checks[-1].ok:
        return VerifyReport(tuple(checks))
    if loads is None:
        return _verify_alone(plan, checks, model)
    given = loads
    if plan.inputs.parameters.get("loads_rows_as_moe_layers"):  # the planner read row i as MoE layer i
        loads = rows_as_moe_layers(loads, rp.layers) or loads
    checks.append(_check_layers(rp, loads))
    if not checks[-1].ok:
        return VerifyReport(tuple(checks))
    recorded, digest = plan.inputs.loads.sha256, given.sha256()
    checks.append(Check("loads_hash", recorded == digest,
                        "" if recorded == digest else f"loads sha256 {digest[:12]} != plan's {recorded[:12]}"))
    checks += _check_slots(rp)
    if not (checks[-3].ok and checks[-2].ok):  # experts, gpus
        return VerifyReport(tuple(checks))
    checks.append(_check_split(rp))
    steps = _check_steps(rp, loads)
    if steps is not None:
        return VerifyReport(tuple(checks + [steps]))
    if not checks[-1].ok:
        return VerifyReport(tuple(checks))
    checks.append(_check_metrics(plan, loads.select_layers(rp.layers)))
    checks.append(_model_check(plan.inputs.model, plan.replicas, model))
    return VerifyReport(tuple(checks))


def _verify_alone(plan: Plan, checks: list[Check], model) -> VerifyReport:
    """The checks a plan file supports without its loads (module docstring), after ``shapes``."""
    rp = plan.replicas
    checks.append(_check_layers(rp, None, plan.inputs))
    checks.append(_check_loads_ref(plan))
    if not (checks[-1].ok and checks[-2].ok):
        return VerifyReport(tuple(checks))
    checks += _check_slots(rp)
    if not (checks[-3].ok and checks[-2].ok):  # experts, gpus
        return VerifyReport(tuple(checks))
    checks.append(_check_split(rp))
    if not checks[-1].ok:
        return VerifyReport(tuple(checks))
    checks.append(_check_recorded_metrics(plan))
    checks.append(_model_check(plan.inputs.model, plan.replicas, model))
    return VerifyReport(tuple(checks))


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_loads_ref(plan: Plan) -> Check:
    """3 without the loads: the recorded hash is a SHA-256 and the planning / held-out steps lie within
    the recorded shape of the loads."""
    ref, met = plan.inputs.loads, plan.replicas.predicted
    problems = []
    if not _SHA256.fullmatch(ref.sha256):
        problems.append(f"inputs.loads.sha256 {ref.sha256[:20]!r} is not a SHA-256 (64 hex digits)")
    steps, _, experts = ref.shape
    if experts != plan.replicas.num_experts and not plan.inputs.parameters.get("loads_rows_as_moe_layers"):
        problems.append(f"inputs.loads.shape has {experts} experts, the plan {plan.replicas.num_experts}")
    for name, rng in (("plan_steps", met.plan_steps), ("holdout_steps", met.holdout_steps)):
        if rng is not None and not 0 <= rng[0] < rng[1] <= steps:
            problems.append(f"predicted.{name} {rng[0]}-{rng[1]} outside the {steps} steps of the loads")
    return Check("loads_hash", not problems, "; ".join(problems[:3]))


def _check_recorded_metrics(plan: Plan) -> Check:
    """8 without the loads: the recorded metrics agree with each other (module docstring)."""
    rp, met, rep = plan.replicas, plan.replicas.predicted, plan.report
    mism: list[str] = []

    def cmp(what: str, got: float, recorded: float | None) -> None:
        if recorded is None or not close(got, recorded):
            mism.append(f"{what}: recorded {recorded} != {got:.9g} implied by the other recorded numbers")

    numbers = [met.balancedness_mean, met.replay_balancedness_mean, *met.max_gpu_load_tokens,
               *met.lower_bound_tokens, *met.balancedness, *met.replay_balancedness, *met.replay_max_gpu_load_tokens,
               *met.replay_lower_bound_tokens, *(x for row in met.gpu_load_tokens for x in row),
               *(met.holdout_replay_balancedness or ()), *(x for x in (rep.objective, rep.bound, rep.gap) if x is not None)]
    values = np.asarray(numbers, dtype=np.float64)
    if not np.isfinite(values).all() or (values < 0).any():
        return Check("metrics", False, "recorded metrics include a negative, infinite or NaN number")
    for r, layer in enumerate(rp.layers):
        g = np.asarray(met.gpu_load_tokens[r], dtype=np.float64)
        cmp(f"layer {layer} busiest-GPU load", float(g.max()), met.max_gpu_load_tokens[r])
        cmp(f"layer {layer} balancedness", float(_balancedness(g)), met.balancedness[r])
        lb, mean = met.lower_bound_tokens[r], float(g.mean())
        if not (mean * (1 - 1e-6) <= lb <= g.max() * (1 + 1e-6)):
            mism.append(f"layer {layer} lower bound {lb} not between the mean {mean:.9g} and the busiest load "
                        f"{g.max():.9g} of the recorded per-GPU loads")
        if met.replay_lower_bound_tokens[r] > met.replay_max_gpu_load_tokens[r] * (1 + 1e-6):
            mism.append(f"layer {layer} replay lower bound {met.replay_lower_bound_tokens[r]} exceeds the replay "
                        f"busiest-GPU load {met.replay_max_gpu_load_tokens[r]}")
        if not 0 <= met.replay_balancedness[r] <= 1 + 1e-9:
            mism.append(f"layer {layer} replay balancedness {met.replay_balancedness[r]} outside [0, 1]")
    cmp("balancedness_mean", float(np.mean(met.balancedness)), met.balancedness_mean)
    cmp("replay_balancedness_mean", float(np.mean(met.replay_balancedness)), met.replay_balancedness_mean)
    hb = met.holdout_replay_balancedness
    if met.holdout_steps is not None:
        if hb is None or len(hb) != len(rp.layers):
            mism.append("holdout_replay_balancedness missing or of the wrong length")
        else:
            cmp("holdout_replay_balancedness_mean", float(np.mean(hb)), met.holdout_replay_balancedness_mean)
    elif hb is not None or met.holdout_replay_balancedness_mean is not None:
        mism.append("held-out metrics recorded without holdout_steps")
    slots = np.zeros(rp.num_gpus, dtype=np.int64)
    for row in rp.slot_gpu:
        slots += np.bincount(np.asarray(row, dtype=np.int64), minlength=rp.num_gpus)
    if (slots * rp.bytes_per_expert).tolist() != list(met.expert_bytes_per_gpu):
        mism.append("expert_bytes_per_gpu differs from slots x bytes_per_expert")
    objective, bound = float(np.sum(met.replay_max_gpu_load_tokens)), float(np.sum(met.replay_lower_bound_tokens))
    if rep.objective is not None:
        cmp("report.objective", objective, rep.objective)
    if rep.bound is not None:
        cmp("report.bound", bound, rep.bound)
    if rep.gap is not None and objective > 0:
        cmp("report.gap", max(0.0, (objective - bound) / objective), rep.gap)
    a, b = met.plan_steps
    if met.load_basis != f"sum over steps {a}-{b - 1}":
        mism.append(f"load_basis {met.load_basis!r} does not match plan_steps {a}-{b}")
    return Check("metrics", not mism, "; ".join(mism[:3]) + (f" (+{len(mism) - 3} more)" if len(mism) > 3 else ""))


def _check_shapes(rp) -> Check:
    """1. every per-row array has one row per planned layer and one entry per slot / GPU."""
    rows, D = len(rp.layers), rp.num_gpus
    bad = []
    for name in ("physical_to_logical", "slot_gpu", "slot_node", "slots_per_gpu"):
        if len(getattr(rp, name)) != rows:
            bad.append(f"{name} has {len(getattr(rp, name))} rows for {rows} layers")
    for name in ("gpu_load_tokens", "max_gpu_load_tokens", "lower_bound_tokens", "balancedness", "replay_balancedness",
                 "replay_max_gpu_load_tokens", "replay_lower_bound_tokens"):
        if len(getattr(rp.predicted, name)) != rows:
            bad.append(f"predicted.{name} has {len(getattr(rp.predicted, name))} rows for {rows} layers")
    if not bad:
        for r in range(rows):
            n = len(rp.physical_to_logical[r])
            if len(rp.slot_gpu[r]) != n or len(rp.slot_node[r]) != n:
                bad.append(f"layer {rp.layers[r]}: slot_gpu/slot_node lengths differ from {n} slots")
            if len(rp.slots_per_gpu[r]) != D or len(rp.predicted.gpu_load_tokens[r]) != D:
                bad.append(f"layer {rp.layers[r]}: per-GPU arrays need {D} entries")
        if len(rp.predicted.expert_bytes_per_gpu) != D:
            bad.append(f"predicted.expert_bytes_per_gpu needs {D} entries")
    return Check("shapes", not bad, "; ".join(bad[:3]))


def _check_layers(rp, loads: ExpertLoads | None, inputs=None) -> Check:
    """2. planned layers are distinct hidden layers, present in the loads (without them: in the recorded
    loads' layer ids), with the plan's expert count."""
    problems = []
    if not rp.layers:
        problems.append("the plan has no layers")
    if len(set(rp.layers)) != len(rp.layers):
        problems.append(f"duplicate layers in {rp.layers}")
    out_of_range = [l for l in rp.layers if not 0 <= l < rp.num_hidden_layers]
    if out_of_range:
        problems.append(f"layers {out_of_range} outside 0..{rp.num_hidden_layers - 1}")
    if loads is None:
        ids = inputs.loads.layer_ids
        if not inputs.parameters.get("loads_rows_as_moe_layers") and any(l not in ids for l in rp.layers):
            problems.append(f"layers {[l for l in rp.layers if l not in ids][:5]} are not in the recorded loads' "
                            f"layer ids")
        return Check("layers", not problems, "; ".join(problems))
    missing = [l for l in rp.layers if l not in loads.layer_ids]
    if missing:
        problems.append(f"layers {missing} are not in the loads (have {list(loads.layer_ids)})")
    if loads.num_experts != rp.num_experts:
        problems.append(f"loads have {loads.num_experts} experts, plan has {rp.num_experts}")
    return Check("layers", not problems, "; ".join(problems))


def _check_slots(rp) -> list[Check]:
    """4-6. slot contents (experts), slot GPUs and nodes (gpus), replicas sharing a GPU (duplicates)."""
    E, D = rp.num_experts, rp.num_gpus
    exp_problems, gpu_problems, dup_problems = [], [], []
    for r, layer in enumerate(rp.layers):
        p2l = np.asarray(rp.physical_to_logical[r])
        sg = np.asarray(rp.slot_gpu[r])
        sn = np.asarray(rp.slot_node[r])
        if p2l.size and (p2l.min() < 0 or p2l.max() >= E):
            exp_problems.append(f"layer {layer}: expert id outside 0..{E - 1}")
            continue
        absent = np.flatnonzero(np.bincount(p2l, minlength=E) == 0)
        if absent.size:
            exp_problems.append(f"layer {layer}: experts {absent[:5].tolist()} have no replica")
        if sg.size and (sg.min() < 0 or sg.max() >= D):
            gpu_problems.append(f"layer {layer}: slot GPU outside 0..{D - 1}")
            continue
        if rp.num_nodes * rp.gpus_per_node != D:
            gpu_problems.append(f"num_nodes {rp.num_nodes} x gpus_per_node {rp.gpus_per_node} != num_gpus {D}")
        if not np.array_equal(sn, sg // rp.gpus_per_node):
            gpu_problems.append(f"layer {layer}: slot_node disagrees with slot_gpu // gpus_per_node")
        if np.any(np.diff(sg) < 0):
            gpu_problems.append(f"layer {layer}: slots are not numbered GPU-major")
        counts = np.bincount(sg, minlength=D)
        if counts.tolist() != list(rp.slots_per_gpu[r]):
            gpu_problems.append(f"layer {layer}: slots_per_gpu {list(rp.slots_per_gpu[r])[:8]} != counted {counts[:8].tolist()}")
        if (counts == 0).any():
            gpu_problems.append(f"layer {layer}: GPU {int(np.argmin(counts))} holds no slot")
        pairs = sg.astype(np.int64) * E + p2l
        if np.unique(pairs).size != pairs.size and not rp.duplicates_allowed:
            _, idx, cnt = np.unique(pairs, return_index=True, return_counts=True)
            s = int(idx[np.argmax(cnt > 1)])
            dup_problems.append(f"layer {layer}: expert {int(p2l[s])} has two replicas on GPU {int(sg[s])}")
    gpu_problems += _mode_problems(rp)
    return [Check("experts", not exp_problems, "; ".join(exp_problems[:3])),
            Check("gpus", not gpu_problems, "; ".join(gpu_problems[:3])),
            Check("duplicates", not dup_problems, "; ".join(dup_problems[:3]))]


def _mode_problems(rp) -> list[str]:
    """Uniform mode: equal slots everywhere; per-layer mode: per-GPU totals over layers within 1."""
    sizes = [len(row) for row in rp.physical_to_logical]
    problems = []
    if rp.mode == "uniform":
        if len(set(sizes)) > 1:
            problems.append(f"mode uniform but slot counts differ between layers ({sorted(set(sizes))})")
        if any(len(set(spg)) > 1 for spg in rp.slots_per_gpu):
            problems.append("mode uniform but GPUs hold different slot counts within a layer")
    else:
        totals = np.asarray(rp.slots_per_gpu).sum(axis=0)
        if totals.max() - totals.min() > 1:
            problems.append(
                f"per-layer mode: slots per GPU over all layers range {totals.min()}-{totals.max()}, more than 1 apart"
            )
    return problems


def _check_split(rp) -> Check:
    """7. dispatch weights (if any) are non-negative and sum to 1 over each expert's replicas."""
    problems: list[str] = []
    if rp.dispatch_weights is not None:
        if len(rp.dispatch_weights) != len(rp.layers):
            problems.append(f"dispatch_weights has {len(rp.dispatch_weights)} rows for {len(rp.layers)} layers")
        else:
            for r, layer in enumerate(rp.layers):
                w = np.asarray(rp.dispatch_weights[r], dtype=np.float64)
                p2l = np.asarray(rp.physical_to_logical[r])
                if w.size != p2l.size:
                    problems.append(f"layer {layer}: {w.size} dispatch weights for {p2l.size} slots")
                elif (w < -1e-12).any():
                    problems.append(f"layer {layer}: negative dispatch weight")
                else:
                    sums = np.bincount(p2l, weights=w, minlength=rp.num_experts)
                    bad_e = np.flatnonzero(np.abs(sums - 1.0) > 1e-6)
                    if bad_e.size:
                        problems.append(f"layer {layer}: dispatch weights of expert {int(bad_e[0])} sum to "
                                        f"{sums[bad_e[0]]:.6g}, not 1")
    return Check("split", not problems, "; ".join(problems[:3]))


def _check_steps(rp, loads: ExpertLoads) -> Check | None:
    """A failed ``metrics`` check when the recorded planning / held-out steps are not steps of the loads."""
    a, b = rp.predicted.plan_steps
    if not 0 <= a < b <= loads.num_steps:
        return Check("metrics", False, f"plan_steps {a}-{b} outside the {loads.num_steps} steps of the loads")
    hold = rp.predicted.holdout_steps
    if hold is not None and not 0 <= hold[0] < hold[1] <= loads.num_steps:
        return Check("metrics", False, f"holdout_steps {hold[0]}-{hold[1]} outside the {loads.num_steps} steps")
    return None


def _check_metrics(plan: Plan, sel: ExpertLoads) -> Check:
    """8. every recorded metric and the report's objective / bound / gap, recomputed on ``sel`` (the plan's rows)."""
    rp, met, rep = plan.replicas, plan.replicas.predicted, plan.report
    E, D = rp.num_experts, rp.num_gpus
    (a, b), hold = met.plan_steps, met.holdout_steps
    mism: list[str] = []

    def cmp(what: str, got: float, recorded: float | None) -> None:
        if recorded is None or not close(got, recorded):
            mism.append(f"{what}: recomputed {got:.9g} != recorded {recorded}")

    window = sel.counts[a:b]
    summed = window.sum(axis=0)
    objective = bound = 0.0
    b_rows, rb_rows, hb_rows = [], [], []
    expert_bytes = np.zeros(D, dtype=np.int64)
    for r, layer in enumerate(rp.layers):
        p2l = np.asarray(rp.physical_to_logical[r])
        sg = np.asarray(rp.slot_gpu[r])
        frac = _slot_fractions(p2l, E, None if rp.dispatch_weights is None else rp.dispatch_weights[r])
        g = _gpu_loads(summed[r][None, :], p2l, sg, frac, D)[0]
        for d in range(D):
            cmp(f"layer {layer} GPU {d} load", g[d], met.gpu_load_tokens[r][d])
        cmp(f"layer {layer} busiest-GPU load", g.max(), met.max_gpu_load_tokens[r])
        cmp(f"layer {layer} lower bound", replica_lower_bound(summed[r], p2l.size, D), met.lower_bound_tokens[r])
        bal = float(_balancedness(g))
        cmp(f"layer {layer} balancedness", bal, met.balancedness[r])
        per_step = _gpu_loads(window[:, r, :], p2l, sg, frac, D)
        rb = float(_balancedness(per_step).mean())
        cmp(f"layer {layer} replay balancedness", rb, met.replay_balancedness[r])
        rmax = float(per_step.max(axis=1).mean())
        rlb = float(_step_bounds(window[:, r, :], p2l.size, D).mean())
        cmp(f"layer {layer} replay busiest-GPU load", rmax, met.replay_max_gpu_load_tokens[r])
        cmp(f"layer {layer} replay lower bound", rlb, met.replay_lower_bound_tokens[r])
        if hold is not None:
            hb = float(_balancedness(_gpu_loads(sel.counts[hold[0]:hold[1], r, :], p2l, sg, frac, D)).mean())
            hb_rows.append(hb)
            if met.holdout_replay_balancedness is None or len(met.holdout_replay_balancedness) != len(rp.layers):
                mism.append("holdout_replay_balancedness missing or of the wrong length")
            else:
                cmp(f"layer {layer} held-out replay balancedness", hb, met.holdout_replay_balancedness[r])
        objective += rmax
        bound += rlb
        b_rows.append(bal)
        rb_rows.append(rb)
        expert_bytes += np.bincount(sg, minlength=D) * rp.bytes_per_expert
    cmp("balancedness_mean", float(np.mean(b_rows)), met.balancedness_mean)
    cmp("replay_balancedness_mean", float(np.mean(rb_rows)), met.replay_balancedness_mean)
    if hold is not None:
        cmp("holdout_replay_balancedness_mean", float(np.mean(hb_rows)), met.holdout_replay_balancedness_mean)
    elif met.holdout_replay_balancedness is not None or met.holdout_replay_balancedness_mean is not None:
        mism.append("held-out metrics recorded without holdout_steps")
    if expert_bytes.tolist() != list(met.expert_bytes_per_gpu):
        mism.append("expert_bytes_per_gpu differs from slots x bytes_per_expert")
    if rep.objective is not None:
        cmp("report.objective", objective, rep.objective)
    if rep.bound is not None:
        cmp("report.bound", bound, rep.bound)
        if rep.objective is not None and rep.bound > rep.objective * (1 + 1e-9):
            mism.append(f"report.bound {rep.bound} exceeds objective {rep.objective}")
    if rep.gap is not None and objective > 0:
        cmp("report.gap", max(0.0, (objective - bound) / objective), rep.gap)
    if met.load_basis != f"sum over steps {a}-{b - 1}":
        mism.append(f"load_basis {met.load_basis!r} does not match plan_steps {a}-{b}")
    return Check("metrics", not mism, "; ".join(mism[:3]) + (f" (+{len(mism) - 3} more)" if len(mism) > 3 else ""))


def verify_placement(placement: PlacementPlan) -> VerifyReport:
    """Check a placement (module docstring, last paragraph) without loads; never calls a solver."""
    p = placement
    E, D, rows = p.num_experts, p.num_gpus, len(p.layers)
    shape = []
    if len(p.physical_to_logical) != rows or len(p.slot_gpu) != rows:
        shape.append(f"physical_to_logical / slot_gpu have {len(p.physical_to_logical)} / {len(p.slot_gpu)} rows "
                     f"for {rows} layers")
    else:
        shape += [f"layer {layer}: {len(a)} slots but {len(b)} slot GPUs"
                  for layer, a, b in zip(p.layers, p.physical_to_logical, p.slot_gpu) if len(a) != len(b)]
    checks = [Check("shapes", not shape, "; ".join(shape[:3]))]
    if shape:
        return VerifyReport(tuple(checks))
    bad_layers = []
    if len(set(p.layers)) != rows:
        bad_layers.append("layers repeat")
    if any(not 0 <= layer < p.num_hidden_layers for layer in p.layers):
        bad_layers.append(f"layers outside 0..{p.num_hidden_layers - 1}")
    checks.append(Check("layers", not bad_layers, "; ".join(bad_layers)))
    exp, gpus = [], []
    if p.num_nodes * p.gpus_per_node != D:
        gpus.append(f"num_nodes {p.num_nodes} x gpus_per_node {p.gpus_per_node} != num_gpus {D}")
    for layer, p2l, sg in zip(p.layers, p.physical_to_logical, p.slot_gpu):
        p2l, sg = np.asarray(p2l, dtype=np.int64), np.asarray(sg, dtype=np.int64)
        if p2l.size == 0 or p2l.min() < 0 or p2l.max() >= E:
            exp.append(f"layer {layer}: expert id outside 0..{E - 1}" if p2l.size else f"layer {layer}: no slot")
            continue
        absent = np.flatnonzero(np.bincount(p2l, minlength=E) == 0)
        if absent.size:
            exp.append(f"layer {layer}: experts {absent[:5].tolist()} have no replica")
        if sg.min() < 0 or sg.max() >= D:
            gpus.append(f"layer {layer}: slot GPU outside 0..{D - 1}")
            continue
        if np.any(np.diff(sg) < 0):
            gpus.append(f"layer {layer}: slots are not numbered GPU-major")
        counts = np.bincount(sg, minlength=D)
        if (counts == 0).any():
            gpus.append(f"layer {layer}: GPU {int(np.argmin(counts))} holds no slot")
    checks += [Check("experts", not exp, "; ".join(exp[:3])), Check("gpus", not gpus, "; ".join(gpus[:3]))]
    checks.append(Check("steps", p.step <= p.steps, "" if p.step <= p.steps else f"step {p.step} > steps {p.steps}"))
    checks.append(_model_check(p.model, p))
    return VerifyReport(tuple(checks))
