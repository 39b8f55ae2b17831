"""Migration: the slot matching is optimal against brute force, every schedule passes the independent
checker, in-place infeasibility is exact, and plan_migration / `moeplan migrate` work end to end."""

import itertools
import json
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from planner.cli import app
from planner.errors import Infeasible, InputError
from planner.inputs.synthetic import synthetic_trace
from planner.migration import plan_migration
from planner.plans.io import read_plan, write_plan
from planner.plans.schema import Plan
from planner.plans.verify import verify_plan
from planner.replicas import plan_replicas
from solvers.migration import MigrationInfeasible, SlotWrite, copies_to_move, match_slots, relabel_gpus
from solvers.migration_schedule import check_schedule, schedule_moves


def _layout(rng, num_experts, slots_per_gpu):
    """Every expert once plus random extra copies, GPU-major with the given slots per GPU."""
    p2l = np.r_[np.arange(num_experts), rng.integers(0, num_experts, sum(slots_per_gpu) - num_experts)]
    rng.shuffle(p2l)
    return p2l, np.repeat(np.arange(len(slots_per_gpu)), slots_per_gpu)


def _instance(seed, num_gpus, slots, *, same_slots=True):
    rng = np.random.default_rng(seed)
    old_spg = [slots] * num_gpus if same_slots else rng.integers(1, slots + 1, num_gpus).tolist()
    new_spg = [slots] * num_gpus if same_slots else rng.integers(1, slots + 1, num_gpus).tolist()
    E = int(rng.integers(1, min(4, sum(old_spg), sum(new_spg)) + 1))
    return (*_layout(rng, E, old_spg), *_layout(rng, E, new_spg), E)


def _brute_copies(old, old_gpu, new, new_gpu, num_gpus, relabel):
    """Minimum copies over GPU permutations and every order of each GPU's new copies on its slots."""
    best = None
    for pi in itertools.permutations(range(num_gpus)) if relabel else [tuple(range(num_gpus))]:
        total = 0
        for b in range(num_gpus):
            slots, copies = old[old_gpu == pi[b]], new[new_gpu == b]
            total += min(int((np.asarray(order) != slots).sum()) for order in itertools.permutations(copies))
        best = total if best is None else min(best, total)
    return best


def _order_exists(old, t, moves, count0) -> bool:
    """Depth-first over the sets of writes done: can every move run, one at a time, in place?"""

    @lru_cache(None)
    def finish(done: int) -> bool:
        if done == (1 << len(moves)) - 1:
            return True
        cnt = count0.copy()
        for i, (g, k) in enumerate(moves):
            if done >> i & 1:
                cnt[old[g, k]] -= old[g, k] >= 0
                cnt[t[g, k]] += 1
        return any(finish(done | 1 << i) for i, (g, k) in enumerate(moves)
                   if not done >> i & 1 and (old[g, k] < 0 or cnt[old[g, k]] >= 2))

    return finish(0)


def _some_order_exists(old, target, kept_mask):
    """Brute force: over every pairing of a GPU's incoming copies with its changed slots, is there an
    order of single in-place writes that never leaves an expert without a replica?"""
    changed = [(g, k) for g, k in zip(*np.nonzero((target >= 0) & ~kept_mask))]
    by_gpu = {}
    for g, k in changed:
        by_gpu.setdefault(g, []).append(k)
    count0 = np.bincount(old[old >= 0], minlength=int(max(old.max(), target.max())) + 1)
    for perms in itertools.product(*[itertools.permutations(ks) for ks in by_gpu.values()]):
        t = target.copy()
        for (g, ks), perm in zip(by_gpu.items(), perms):
            t[g, list(ks)] = target[g, list(perm)]
        moves = [(g, k) for g, k in changed if t[g, k] != old[g, k]]
        if len(moves) == len(changed) and _order_exists(old, t, moves, count0):
            return True  # (a pairing that keeps a copy in place is not one of the matching's)
    return False


def _check_consistent(m, s):
    """The schedule's placement is the matching's up to re-pairing on a GPU; same copies."""
    assert s.copies == len(m.copies) == len(s.moves)
    assert np.array_equal(s.target >= 0, m.target >= 0)
    kept = (m.target >= 0) & (m.target == m.old)
    assert np.array_equal(s.target[kept], m.target[kept])
    for g in range(m.target.shape[0]):
        assert sorted(s.target[g].tolist()) == sorted(m.target[g].tolist())
    assert sorted((c.gpu, c.expert, c.src_gpu) for c in s.moves) == sorted((c.gpu, c.expert, c.src_gpu) for c in m.copies)


# ---- matching ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**6), num_gpus=st.integers(1, 3), slots=st.integers(1, 2), relabel=st.booleans())
def test_matching_copies_equal_brute_force_minimum(seed, num_gpus, slots, relabel):
    old, og, new, ng, E = _instance(seed, num_gpus, slots)
    m = match_slots(old, og, new, ng, num_gpus, E, relabel=relabel)
    assert len(m.copies) == _brute_copies(old, og, new, ng, num_gpus, relabel)
    for b in range(num_gpus):  # physical GPU pi(b) holds exactly bin b's copies
        g = int(m.gpu_of_bin[b])
        assert sorted(m.target[g][m.target[g] >= 0].tolist()) == sorted(new[ng == b].tolist())
        assert sorted(m.origin[g][m.origin[g] >= 0].tolist()) == np.flatnonzero(ng == b).tolist()
    for c in m.copies:
        assert m.target[c.gpu, c.slot] == c.expert != m.old[c.gpu, c.slot]
        assert c.expert in m.old[c.src_gpu]


def test_matching_agrees_with_relabel_gpus_and_copies_to_move():
    rng = np.random.default_rng(7)
    for _ in range(30):
        old, og = _layout(rng, 12, [4] * 4)
        new, ng = _layout(rng, 12, [4] * 4)
        p2l, sg = relabel_gpus(old[None], og[None], new[None], ng[None], 4, 12)
        assert len(match_slots(old, og, new, ng, 4, 12).copies) == copies_to_move(old[None], og[None], p2l, sg, 4, 12)[0]
        assert len(match_slots(old, og, new, ng, 4, 12, relabel=False).copies) == copies_to_move(
            old[None], og[None], new[None], ng[None], 4, 12)[0]


def test_sources_prefer_the_receiving_node_then_the_least_loaded_gpu():
    # GPU 3 needs expert 0, held by GPUs 0, 1 and 2; GPU 2 shares its node
    args = ([0, 1, 0, 2, 0, 3, 4, 1], [0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 0, 2, 0, 3, 4, 0], [0, 0, 1, 1, 2, 2, 3, 3], 4, 5)
    assert [c.src_gpu for c in match_slots(*args, relabel=False, gpus_per_node=2).copies] == [2]
    assert [c.src_gpu for c in match_slots(*args, relabel=False).copies] == [0]
    # GPUs 2 and 3 both need expert 0: one copy from each holder
    m = match_slots([0, 1, 0, 2, 3, 3, 4, 4], [0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 0, 2, 3, 0, 4, 0], [0, 0, 1, 1, 2, 2, 3, 3],
                    4, 5, relabel=False)
    assert sorted(c.src_gpu for c in m.copies) == [0, 1]


def test_matching_rejects_bad_layouts():
    with pytest.raises(ValueError, match="experts \\[2\\] have no replica"):
        match_slots([0, 1], [0, 1], [0, 1], [0, 1], 2, 3)
    with pytest.raises(ValueError, match="GPUs in 0..1"):
        match_slots([0, 1], [0, 2], [0, 1], [0, 1], 2, 2)


# ---- schedule ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), num_gpus=st.integers(1, 4), slots=st.integers(1, 3),
       same_slots=st.booleans(), relabel=st.booleans(), spare=st.integers(0, 2))
def test_every_schedule_passes_the_checker(seed, num_gpus, slots, same_slots, relabel, spare):
    old, og, new, ng, E = _instance(seed, num_gpus, slots, same_slots=same_slots)
    m = match_slots(old, og, new, ng, num_gpus, E, relabel=relabel)
    try:
        s = schedule_moves(m, spare_slots_per_gpu=spare)
    except MigrationInfeasible:
        assert spare == 0  # one staging slot always suffices
        return
    assert check_schedule(m.old, s.target, m.capacity, s.steps, spare_slots_per_gpu=spare) == []
    _check_consistent(m, s)
    if spare == 0:
        assert s.commits == 0


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**6), num_gpus=st.integers(1, 3), slots=st.integers(1, 2), relabel=st.booleans())
def test_in_place_infeasible_exactly_when_no_order_exists(seed, num_gpus, slots, relabel):
    old, og, new, ng, E = _instance(seed, num_gpus, slots)
    m = match_slots(old, og, new, ng, num_gpus, E, relabel=relabel)
    kept = (m.target >= 0) & (m.target == m.old)
    try:
        schedule_moves(m)
        feasible = True
    except MigrationInfeasible:
        feasible = False
    assert feasible == _some_order_exists(m.old, m.target, kept)


def test_swap_cycle_needs_a_staging_slot():
    # expert 0 (only on GPU 0) and expert 1 (only on GPU 1) trade places; expert 2 stays
    m = match_slots([0, 2, 1, 2], [0, 0, 1, 1], [1, 2, 0, 2], [0, 0, 1, 1], 2, 3, relabel=False)
    assert len(m.copies) == 2
    with pytest.raises(MigrationInfeasible, match=r"experts \[0, 1\] on GPUs \[0, 1\]") as info:
        schedule_moves(m)
    assert info.value.cycles == (((0, 1), (0, 1)),)
    s = schedule_moves(m, spare_slots_per_gpu=1)
    assert (len(s.steps), s.copies, s.commits) == (2, 2, 2)
    assert check_schedule(m.old, s.target, m.capacity, s.steps, spare_slots_per_gpu=1) == []
    # with a second replica of expert 0 elsewhere the same swap runs in place: 1 -> GPU 0 first
    m = match_slots([0, 2, 1, 2, 0, 3], [0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 3], [0, 0, 1, 1, 2, 2], 3, 4, relabel=False)
    s = schedule_moves(m)
    assert [[(w.gpu, w.expert) for w in step] for step in s.steps] == [[(0, 1)], [(1, 0)]]


def test_relabelling_removes_a_pure_gpu_swap():
    m = match_slots([0, 1, 2, 3], [0, 0, 1, 1], [2, 3, 0, 1], [0, 0, 1, 1], 2, 4)
    assert m.copies == () and m.gpu_of_bin.tolist() == [1, 0]
    assert schedule_moves(m).steps == ()


def test_growing_and_shrinking_gpus():
    # GPU 0 goes from 1 to 2 slots (a fresh position), GPU 1 from 2 to 1 (a slot released at the end)
    m = match_slots([0, 1, 0], [0, 1, 1], [0, 1, 1], [0, 0, 1], 2, 2, relabel=False)
    assert m.capacity.tolist() == [2, 2]
    s = schedule_moves(m)
    assert check_schedule(m.old, s.target, m.capacity, s.steps) == []
    assert s.copies == 1 and len(s.steps) == 1


def test_checker_catches_each_violation():
    old, target, cap = [[0, 2], [1, 2]], [[1, 2], [0, 2]], [2, 2]
    ok = [[SlotWrite(0, 2, 1, 1, 0), SlotWrite(1, 2, 0, 0, 0)],
          [SlotWrite(0, 0, 1, 0, 2, True), SlotWrite(1, 0, 0, 1, 2, True)]]
    assert check_schedule(old, target, cap, ok, spare_slots_per_gpu=1) == []
    cases = {
        "no serving replica": [[SlotWrite(0, 0, 1, 1, 0), SlotWrite(1, 0, 0, 0, 0)]],  # (4)
        "does not exist": [[SlotWrite(0, 2, 1, 1, 0), SlotWrite(0, 3, 2, 1, 1)]],  # (5) a second staging slot
        "overwritten in the same step": [[SlotWrite(0, 0, 2, 0, 1), SlotWrite(0, 1, 1, 1, 0)]],  # (6)
        "does not hold expert": [[SlotWrite(0, 2, 1, 1, 1)]],
        "not from its own staging slot": [ok[0], [SlotWrite(0, 0, 1, 1, 2, True), SlotWrite(1, 0, 0, 1, 2, True)]],
        "still uses a staging slot": ok[:1],  # (7)
        "holds expert 0, not 1": [],
    }
    for needle, steps in cases.items():
        problems = check_schedule(old, target, cap, steps, spare_slots_per_gpu=1)
        assert any(needle in p for p in problems), (needle, problems)


# ---- domain -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trace():
    return synthetic_trace(num_steps=80, num_layers=4, num_experts=64, tokens_per_step=1024, first_layer=0, seed=11)


@pytest.fixture(scope="module")
def plans(trace):
    """Two consecutive re-plans: on steps 0-39, then on steps 40-79."""
    kw = dict(num_gpus=8, num_nodes=2, window_steps=40)
    return (plan_replicas(trace, "olmoe-1b-7b", holdout_steps=40, **kw),
            plan_replicas(trace, "olmoe-1b-7b", holdout_steps=0, **kw))


def _arrays(plan, r):
    rp = plan.replicas
    return np.asarray(rp.physical_to_logical[r]), np.asarray(rp.slot_gpu[r])


@pytest.mark.parametrize("relabel", [True, False])
def test_plan_migration_end_to_end(trace, plans, relabel):
    current, new = plans
    mig = plan_migration(current, new, relabel=relabel, spare_slots_per_gpu=1, loads=trace)
    target = mig.target_plan
    assert verify_plan(target, trace).ok
    for r in range(len(new.replicas.layers)):
        (op, og), (np_, ng), (tp, tg) = _arrays(current, r), _arrays(new, r), _arrays(target, r)
        if relabel:
            p2l, sg = relabel_gpus(op[None], og[None], np_[None], ng[None], 8, 64, gpus_per_node=4)
        else:
            p2l, sg = np_[None], ng[None]
        assert len(mig.layers[r].copies) == copies_to_move(op[None], og[None], p2l, sg, 8, 64)[0]
        assert copies_to_move(op[None], og[None], tp[None], tg[None], 8, 64)[0] == len(mig.layers[r].copies)
        if not relabel:  # same GPUs: only the order of slots within a GPU may change
            assert all(sorted(tp[tg == g]) == sorted(np_[ng == g]) for g in range(8))
    pred_new, pred_t = new.replicas.predicted, target.replicas.predicted
    assert pred_t.replay_balancedness == pred_new.replay_balancedness
    assert [sorted(x) for x in pred_t.gpu_load_tokens] == [sorted(x) for x in pred_new.gpu_load_tokens]
    assert mig.copies <= mig.naive_copies and mig.bytes_moved == mig.copies * new.replicas.bytes_per_expert
    assert mig.steps == max(lm.steps for lm in mig.layers)
    assert sum(r["copies"] for r in mig.rounds()) == mig.copies
    data = json.loads(json.dumps(mig.to_dict()))
    assert data["totals"]["copies"] == mig.copies and data["write_columns"][0] == "gpu"
    assert "moved_GB" in mig.table() and "slot by slot" in mig.table()


def test_relabelling_never_costs_copies(plans):
    current, new = plans
    assert plan_migration(current, new, spare_slots_per_gpu=1).copies <= plan_migration(
        current, new, relabel=False, spare_slots_per_gpu=1).copies


def test_migrating_to_itself_moves_nothing(plans):
    mig = plan_migration(plans[0], plans[0])
    assert (mig.copies, mig.steps, mig.bytes_moved) == (0, 0, 0)
    assert mig.target_plan.replicas.physical_to_logical == plans[0].replicas.physical_to_logical


def _edited(plan: Plan, fn) -> Plan:
    data = json.loads(plan.to_json())
    fn(data)
    return Plan.model_validate(data)


def _swap_singles(data):
    """Swap two single-replica experts of layer row 0 between GPU 0 and GPU 1."""
    rp = data["replicas"]
    p2l, sg = np.asarray(rp["physical_to_logical"][0]), np.asarray(rp["slot_gpu"][0])
    counts = np.bincount(p2l)
    a = next(s for s in np.flatnonzero(sg == 0) if counts[p2l[s]] == 1)
    b = next(s for s in np.flatnonzero(sg == 1) if counts[p2l[s]] == 1)
    rp["physical_to_logical"][0][a], rp["physical_to_logical"][0][b] = int(p2l[b]), int(p2l[a])


def test_single_replica_swap_is_infeasible_in_place(plans):
    current = plans[0]
    swapped = _edited(current, _swap_singles)
    with pytest.raises(Infeasible, match=r"1 of 4 layer\(s\).*spare_slots_per_gpu=1"):
        plan_migration(current, swapped, relabel=False)
    mig = plan_migration(current, swapped, relabel=False, spare_slots_per_gpu=1)
    assert (mig.copies, mig.staged, mig.steps) == (2, 2, 2)
    assert mig.peak_staging_bytes_per_gpu == current.replicas.bytes_per_expert


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d["replicas"].update(num_gpus=4), "num_gpus differs"),
    (lambda d: d["inputs"].update(model="mixtral-8x7b"), "model differs"),
    (lambda d: d["replicas"].update(layers=[0, 1, 2, 5]), "layers differs"),
    (lambda d: d["replicas"]["physical_to_logical"][1].__setitem__(0, 99), "layer 1: expert ids"),
])
def test_incompatible_or_malformed_plans_are_input_errors(plans, edit, needle):
    with pytest.raises(InputError, match=needle):
        plan_migration(plans[0], _edited(plans[1], edit))
    with pytest.raises(InputError, match="spare-slots"):
        plan_migration(plans[0], plans[1], spare_slots_per_gpu=-1)


# ---- CLI --------------------------------------------------------------------------------------


def test_cli_migrate_writes_schedule_and_target_plan(tmp_path, plans):
    cur, new = tmp_path / "cur.json", tmp_path / "new.json"
    write_plan(plans[0], cur)
    write_plan(plans[1], new)
    out, tgt = tmp_path / "schedule.json", tmp_path / "target.json"
    res = CliRunner().invoke(app, ["migrate", str(cur), str(new), "--spare-slots", "1", "-o", str(out),
                                      "--target-plan", str(tgt), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    schedule = json.loads(out.read_text())
    assert summary["totals"] == schedule["totals"] and summary["totals"]["copies"] > 0
    assert len(schedule["layers"][0]["steps"]) == summary["layers"][0]["steps"]
    assert read_plan(tgt).replicas.num_gpus == 8
    human = CliRunner().invoke(app, ["migrate", str(cur), str(new), "--no-relabel", "--spare-slots", "1"])
    assert human.exit_code == 0 and "naive_copies" in human.stdout and "GB moved" in human.stdout


def test_cli_migrate_exit_codes(tmp_path, plans):
    cur, bad, swapped = tmp_path / "cur.json", tmp_path / "bad.json", tmp_path / "swapped.json"
    write_plan(plans[0], cur)
    write_plan(_edited(plans[1], lambda d: d["inputs"].update(model="mixtral-8x7b")), bad)
    write_plan(_edited(plans[0], _swap_singles), swapped)
    res = CliRunner().invoke(app, ["migrate", str(cur), str(bad)])  # an OLMoE plan relabelled as Mixtral:
    assert res.exit_code == 2 and "new plan fails verification: model" in res.stderr  # refused when read
    with pytest.raises(InputError, match="model differs"):
        plan_migration(plans[0], _edited(plans[1], lambda d: d["inputs"].update(model="mixtral-8x7b")))
    res = CliRunner().invoke(app, ["migrate", str(cur), str(swapped), "--no-relabel"])
    assert res.exit_code == 3 and len(res.stderr.strip().splitlines()) == 1 and "--spare-slots 1" in res.stderr


def test_loads_that_are_not_the_new_plans_are_an_input_error(plans):
    other = synthetic_trace(num_steps=80, num_layers=4, num_experts=64, tokens_per_step=1024, first_layer=0, seed=12)
    with pytest.raises(InputError, match="new plan does not verify on them: loads_hash"):
        plan_migration(plans[0], plans[1], spare_slots_per_gpu=1, loads=other)
