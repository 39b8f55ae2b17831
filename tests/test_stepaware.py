"""Replay scoring and the per-step-aware planner (solvers.stepaware): invariants, a reference
implementation, and the gains over EPLB measured in docs/replicas.md ("Why these methods"), on small instances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from planner.inputs import builtin_loads, list_builtin_loads
from planner.inputs.synthetic import synthetic_trace
from solvers import stepaware
from solvers.eplb import eplb, replicate_experts
from solvers.replay import contiguous_slot_gpu, replay_balancedness, replay_gpu_loads, replay_score
from solvers.stepaware import (
    assign_groups_to_nodes,
    pack_stepaware,
    plan_stepaware,
    replica_counts_greedy,
    spread_capacity,
    swap_search,
)

FAST = settings(max_examples=40, deadline=None)


# -- helpers --------------------------------------------------------------------------------------
def naive_loads(w, phy2log, slot_gpu, num_gpus, split=None):
    """Replay by plain loops, straight from the definition."""
    w = np.asarray(w, dtype=float)
    steps, layers, _ = w.shape
    out = np.zeros((steps, layers, num_gpus))
    for layer in range(layers):
        slots = [p for p in range(phy2log.shape[1]) if phy2log[layer, p] >= 0]
        for t in range(steps):
            for p in slots:
                e = phy2log[layer, p]
                share = split[layer, p] if split is not None else 1.0 / sum(phy2log[layer, q] == e for q in slots)
                out[t, layer, slot_gpu[layer, p]] += share * w[t, layer, e]
    return out


def naive_pack(w, counts, cap, projection=True):
    """The greedy of the docstring, one layer and one GPU at a time (no repair: None if stuck)."""
    steps, layers, experts = w.shape
    num_gpus = cap.shape[1]
    result = []
    for layer in range(layers):
        per_item = w[:, layer].sum(axis=0) / counts[layer]
        items = [e for e in sorted(range(experts), key=lambda e: (-per_item[e], e)) for _ in range(counts[layer, e])]
        load, free, held = np.zeros((steps, num_gpus)), cap[layer].astype(float), set()
        placed = []
        for k, e in enumerate(items):
            vec = w[:, layer, e] / counts[layer, e]
            rest = items[k + 1:]
            mean = np.zeros(steps)
            if rest and projection:
                mean = sum(w[:, layer, f] / counts[layer, f] for f in rest) / len(rest)
            scores = {}
            for g in range(num_gpus):
                if free[g] == 0 or (e, g) in held:
                    continue
                proj = load + free * mean[:, None]
                proj[:, g] += vec - mean
                scores[g] = proj.max(axis=1).sum()
            if not scores:
                return None
            best = min(scores.values())
            ties = [g for g, s in scores.items() if s <= best + 1e-9 * abs(best)]
            g = min(ties, key=lambda g: (load[:, g].sum(), g))
            load[:, g] += vec
            free[g] -= 1
            held.add((e, g))
            placed.append((g, e))
        result.append(sorted(placed))
    return result


def as_pairs(phy2log, slot_gpu):
    return [sorted((int(g), int(e)) for e, g in zip(p, s, strict=True) if e >= 0)
            for p, s in zip(phy2log, slot_gpu, strict=True)]


def check_layout(phy2log, slot_gpu, counts, cap, expert_nodes=None, gpus_per_node=None):
    """Every packing invariant, independent of how the layout was built."""
    layers, experts = counts.shape
    for layer in range(layers):
        used = phy2log[layer] >= 0
        assert not (phy2log[layer, used.sum():] >= 0).any(), "padding only at the row end"
        e, g = phy2log[layer, used], slot_gpu[layer, used]
        assert (np.diff(g) >= 0).all(), "slots are GPU-major"
        assert np.array_equal(np.bincount(e, minlength=experts), counts[layer]), "every replica placed"
        assert np.array_equal(np.bincount(g, minlength=cap.shape[1]), cap[layer]), "capacities respected"
        assert len(set(zip(e, g, strict=True))) == len(e), "no two replicas of one expert on a GPU"
        if expert_nodes is not None:
            assert (g // gpus_per_node == expert_nodes[layer, e]).all(), "replicas stay in their node"


@st.composite
def instances(draw, max_steps=6):
    steps = draw(st.integers(1, max_steps))
    layers = draw(st.integers(1, 3))
    experts = draw(st.integers(2, 8))
    gpus = draw(st.integers(1, 4))
    slots = np.array([draw(st.integers(experts, experts * gpus)) for _ in range(layers)])
    seed = draw(st.integers(0, 2**31 - 1))
    w = np.random.default_rng(seed).random((steps, layers, experts)) ** 3 * 100
    return w, slots, gpus


# -- replay ---------------------------------------------------------------------------------------
@FAST
@given(instances(), st.integers(0, 2**31 - 1))
def test_replay_matches_loops(inst, seed):
    w, slots, gpus = inst
    rng = np.random.default_rng(seed)
    layers, experts = w.shape[1:]
    phy2log = np.full((layers, slots.max()), -1)
    slot_gpu = np.full_like(phy2log, -1)
    for layer, p in enumerate(slots):
        extra = rng.integers(0, experts, p - experts)
        phy2log[layer, :p] = rng.permutation(np.concatenate([np.arange(experts), extra]))
        slot_gpu[layer, :p] = np.sort(rng.integers(0, gpus, p))
    loads = replay_gpu_loads(w, phy2log, slot_gpu, gpus)
    np.testing.assert_allclose(loads, naive_loads(w, phy2log, slot_gpu, gpus), rtol=1e-12, atol=1e-9)
    counts = np.array([[np.sum(row == e) for e in range(experts)] for row in phy2log])
    even = np.where(phy2log >= 0, 1.0 / np.take_along_axis(counts, np.maximum(phy2log, 0), 1), 0.0)
    np.testing.assert_allclose(replay_gpu_loads(w, phy2log, slot_gpu, gpus, split=even), loads, rtol=1e-12, atol=1e-9)
    raw = np.where(phy2log >= 0, rng.random(phy2log.shape) + 0.1, 0.0)
    total = np.array([[raw[layer, phy2log[layer] == e].sum() for e in range(experts)] for layer in range(layers)])
    split = np.where(phy2log >= 0, raw / np.take_along_axis(total, np.maximum(phy2log, 0), 1), 0.0)
    np.testing.assert_allclose(replay_gpu_loads(w, phy2log, slot_gpu, gpus, split=split),
                               naive_loads(w, phy2log, slot_gpu, gpus, split), rtol=1e-12, atol=1e-9)
    b = replay_balancedness(w, phy2log, slot_gpu, gpus)
    assert b.shape == w.shape[:2] and ((b > 0) & (b <= 1 + 1e-12)).all()
    assert replay_score(w, phy2log, slot_gpu, gpus) == pytest.approx(b.mean())


def test_replay_agrees_with_eplb_layout():
    w = np.random.default_rng(0).random((5, 3, 12)) * 10
    layout, _ = eplb(w.sum(0), 16, 4, policy="global")
    ours = replay_gpu_loads(w, layout.phy2log, contiguous_slot_gpu(3, 16, 4), 4)
    np.testing.assert_allclose(ours, layout.gpu_loads(w))


@pytest.mark.parametrize(
    "phy2log, slot_gpu, split, match",
    [
        ([[0, 0, -1]], [[0, 1, -1]], None, "expert 1 has no slot"),
        ([[0, 1, -1]], [[0, 1, 1]], None, "disagree on padding"),
        ([[0, 1, 2]], [[0, 1, 1]], None, "phy2log"),
        ([[0, 1, 1]], [[0, 1, 5]], None, "slot_gpu"),
        ([[0, 1, 1]], [[0, 1, 1]], [[1.0, 0.5, 0.2]], "sum to 0.7"),
    ],
)
def test_replay_rejects_bad_layouts(phy2log, slot_gpu, split, match):
    with pytest.raises(ValueError, match=match):
        replay_gpu_loads([[1.0, 2.0]], phy2log, slot_gpu, 2, split=split)


# -- step 1: counts -------------------------------------------------------------------------------
def test_counts_equal_eplb_replication_when_cap_does_not_bind():
    w = np.random.default_rng(1).random((6, 16)) ** 3
    _, _, eplb_counts = replicate_experts(w, 24)
    np.testing.assert_array_equal(replica_counts_greedy(w, 24, max_copies=100), eplb_counts)


@FAST
@given(instances())
def test_counts_respect_cap_and_budget(inst):
    w, slots, gpus = inst
    counts = replica_counts_greedy(w.sum(0), slots, max_copies=gpus)
    assert (counts >= 1).all() and (counts <= gpus).all()
    np.testing.assert_array_equal(counts.sum(axis=1), slots)


# -- step 2: packing ------------------------------------------------------------------------------
@FAST
@given(instances(), st.booleans())
def test_pack_invariants_and_reference(inst, projection):
    w, slots, gpus = inst
    counts = replica_counts_greedy(w.sum(0), slots, max_copies=gpus)
    cap = spread_capacity(slots, gpus)
    phy2log, slot_gpu = pack_stepaware(w, counts, cap, projection=projection)
    check_layout(phy2log, slot_gpu, counts, cap)
    again = pack_stepaware(w, counts, cap, projection=projection)
    assert np.array_equal(again[0], phy2log) and np.array_equal(again[1], slot_gpu)
    reference = naive_pack(w, counts, cap, projection)
    assume(reference is not None)  # the reference has no repair step
    assert as_pairs(phy2log, slot_gpu) == reference


@FAST
@given(instances(max_steps=3), st.integers(1, 2))
def test_pack_respects_nodes(inst, gpus_per_node):
    w = inst[0]
    layers, experts = w.shape[1:]
    gpus = 2 * gpus_per_node
    nodes = np.random.default_rng(int(w.sum() * 1000) % 2**31).integers(0, 2, (layers, experts))
    counts = np.ones((layers, experts), dtype=np.int64)
    cap = np.zeros((layers, gpus), dtype=np.int64)
    for layer in range(layers):  # node n's slots = its experts, spread over its GPUs
        for n in range(2):
            size = int((nodes[layer] == n).sum())
            cap[layer, n * gpus_per_node:(n + 1) * gpus_per_node] = spread_capacity([size], gpus_per_node)[0]
    phy2log, slot_gpu = pack_stepaware(w, counts, cap, expert_nodes=nodes, gpus_per_node=gpus_per_node)
    check_layout(phy2log, slot_gpu, counts, cap, nodes, gpus_per_node)


REPAIR = stepaware._repair


def test_pack_repairs_a_dead_end(monkeypatch):
    # P % D != 0: the hot single replica fills the 1-slot GPU, then expert 0's second replica has
    # nowhere to go; the augmenting-path repair moves expert 1 to make room.
    calls = []
    monkeypatch.setattr(stepaware, "_repair", lambda *a: calls.append(1) or REPAIR(*a))
    phy2log, slot_gpu, _ = plan_stepaware([[5.0, 4.0]], 3, 2)
    assert calls and phy2log.tolist() == [[0, 1, 0]] and slot_gpu.tolist() == [[0, 0, 1]]


def test_pack_rejects_capacities_that_force_duplicates():
    # expert 0 has 3 replicas but only 2 GPUs have room: Gale-Ryser fails up front
    with pytest.raises(ValueError, match="layer 0"):
        pack_stepaware([[1.0, 1.0]], [[3, 1]], [[2, 2, 0]])
    with pytest.raises(ValueError, match=r"counts\[0, 0\]"):
        pack_stepaware([[1.0, 1.0]], [[3, 1]], [[2, 2]])
    with pytest.raises(ValueError, match="capacity of layer 0"):
        pack_stepaware([[1.0, 1.0]], [[1, 1]], [[2, 1]])


# -- the planner ----------------------------------------------------------------------------------
def _trace(seed, steps=40):
    # small instance; drift 0.05 (not 0.02) so that 20 planning steps of 32 experts carry time structure
    trace = synthetic_trace(num_steps=steps, num_layers=8, num_experts=32, tokens_per_step=8192, drift=0.05, seed=seed)
    return trace.counts


def _gains(w, num_gpus=8, redundant=8):
    half = w.shape[0] // 2
    win, out = w[:half], w[half:]
    layers, experts = w.shape[1:]
    slots = experts + redundant
    layout, _ = eplb(win.sum(0), slots, num_gpus, policy="global")
    base = layout.phy2log, contiguous_slot_gpu(layers, slots, num_gpus)
    phy2log, slot_gpu, report = plan_stepaware(win, slots, num_gpus)
    gain_in = replay_score(win, phy2log, slot_gpu, num_gpus) - replay_score(win, *base, num_gpus)
    gain_out = replay_score(out, phy2log, slot_gpu, num_gpus) - replay_score(out, *base, num_gpus)
    return gain_in, gain_out, report


def test_beats_eplb_in_window_and_held_out():
    # Measured on seeds 0..199 (L=8, E=32, D=8, R=8): in-window gain >= 0.0125 on every seed;
    # held-out gain 0.0146 on average, 0.0088 for the worst block of 10 seeds, 0.0118 on seeds
    # 0..9, but negative on 10 % of single seeds (drift makes a single held-out window noisy).
    gains = np.array([_gains(_trace(seed))[:2] for seed in range(10)])
    assert (gains[:, 0] > 0.008).all(), gains[:, 0]
    assert gains[:, 1].mean() > 0.005, gains[:, 1]


def test_report():
    _, _, report = _gains(_trace(0))
    assert report.status == "feasible" and report.stop_reason == "completed"
    assert report.solver == "stepaware" and report.wall_time_s > 0
    assert 0 < report.bound <= report.objective and 0 <= report.gap < 1


def test_uneven_slots_keep_gpu_totals_within_one():
    w = _trace(1)
    slots = np.array([36, 44, 42, 35, 40, 33, 47, 38])
    _, slot_gpu, _ = plan_stepaware(w, slots, 8)
    per_layer = np.stack([np.bincount(g[g >= 0], minlength=8) for g in slot_gpu])
    np.testing.assert_array_equal(per_layer.sum(axis=1), slots)
    assert np.ptp(per_layer.sum(axis=0)) <= 1
    assert (np.ptp(per_layer, axis=1) <= 1).all()
    cap = spread_capacity(slots, 8)
    np.testing.assert_array_equal(per_layer, cap)


def test_projection_fixes_uneven_capacities():
    # Measured on seeds 0..19 (P % D != 0 in every layer): projection +0.058 on average, >= +0.043
    # on every seed; the GPUs that keep an extra slot otherwise end up the busiest.
    slots = np.array([36, 44, 42, 35])
    diffs = []
    for seed in range(5):
        w = _trace(seed)[:20, :4]
        counts = replica_counts_greedy(w.sum(0), slots, max_copies=8)
        cap = spread_capacity(slots, 8)
        with_ = replay_score(w, *pack_stepaware(w, counts, cap), 8)
        without = replay_score(w, *pack_stepaware(w, counts, cap, projection=False), 8)
        diffs.append(with_ - without)
    assert np.mean(diffs) > 0.02, diffs


@pytest.mark.parametrize("redundant", [8, 16])
def test_single_step_aggregates_match_eplb(redundant):
    # OLMoE counts are aggregates (T = 1); time-greedy packing is then a no-duplicate LPT with
    # projection. Measured: within -0.0006 of EPLB on every domain.
    for name in [n for n in list_builtin_loads() if n.startswith("olmoe")]:
        w = builtin_loads(name).counts
        layers, experts = w.shape[1:]
        slots = experts + redundant
        layout, _ = eplb(w[0], slots, 8, policy="global")
        base = replay_score(w, layout.phy2log, contiguous_slot_gpu(layers, slots, 8), 8)
        phy2log, slot_gpu, _ = plan_stepaware(w[0], slots, 8)
        assert replay_score(w, phy2log, slot_gpu, 8) >= base - 0.002, name


def test_sampling_and_determinism():
    w = _trace(2, steps=60)
    full = plan_stepaware(w, 40, 8, sample_steps=None)
    sampled = plan_stepaware(w, 40, 8, sample_steps=15)
    assert np.array_equal(sampled[0], plan_stepaware(w, 40, 8, sample_steps=15)[0])
    assert np.array_equal(full[0], plan_stepaware(w, 40, 8, sample_steps=60)[0])
    assert not np.array_equal(full[0], sampled[0])


def test_hierarchical_keeps_replicas_in_their_node():
    w = _trace(3)[:20]
    nodes = assign_groups_to_nodes(w.sum(0), 4, 2)
    assert (np.bincount(nodes.ravel(), minlength=2) == w.shape[1] * 16).all()
    phy2log, slot_gpu, _ = plan_stepaware(w, 44, 8, num_nodes=2, expert_nodes=nodes)
    counts = np.stack([np.bincount(p[p >= 0], minlength=32) for p in phy2log])
    check_layout(phy2log, slot_gpu, counts, spread_capacity([44] * 8, 8), nodes, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_slots": 31}, "layer 0: num_slots 31"),
        ({"num_slots": [40] * 3}, "num_slots must be"),
        ({"num_gpus": 0}, "num_gpus"),
        ({"num_nodes": 3}, "num_nodes"),
        ({"capacity": np.full((8, 8), 4)}, "capacity of layer 0"),
        ({"expert_nodes": np.full((8, 32), 2), "num_nodes": 2}, r"expert_nodes\[0, 0\]"),
    ],
)
def test_plan_rejects_bad_input(kwargs, match):
    args = {"num_slots": 40, "num_gpus": 8} | kwargs
    with pytest.raises(ValueError, match=match):
        plan_stepaware(_trace(0, steps=4), args.pop("num_slots"), args.pop("num_gpus"), **args)


# -- step 3: swap search --------------------------------------------------------------------------
@FAST
@given(instances(max_steps=4))
def test_swap_search_improves_and_keeps_invariants(inst):
    w, slots, gpus = inst
    counts = replica_counts_greedy(w.sum(0), slots, max_copies=gpus)
    cap = spread_capacity(slots, gpus)
    start = pack_stepaware(w, counts, cap)
    swapped = swap_search(w, *start, gpus, time_limit_s=30.0, max_steps=50)
    check_layout(*swapped, counts, cap)
    before = replay_balancedness(w, *start, gpus).sum(axis=0)
    after = replay_balancedness(w, *swapped, gpus).sum(axis=0)
    assert (after >= before - 1e-9).all()
    again = swap_search(w, *start, gpus, time_limit_s=30.0, max_steps=50)
    assert np.array_equal(again[0], swapped[0]) and np.array_equal(again[1], swapped[1])


def test_swap_search_on_aggregates_and_nodes():
    w = builtin_loads("olmoe-book").counts
    plain = plan_stepaware(w, 72, 8)[2]
    _, _, report = plan_stepaware(w, 72, 8, swap_time_limit_s=5.0)
    assert report.solver == "stepaware+swap" and report.objective < plain.objective
    nodes = assign_groups_to_nodes(w[0], 8, 2)
    p2l, gpu, _ = plan_stepaware(w, 72, 8, num_nodes=2, expert_nodes=nodes, swap_time_limit_s=5.0)
    counts = np.stack([np.bincount(p, minlength=64) for p in p2l])
    check_layout(p2l, gpu, counts, spread_capacity([72] * 3, 8), nodes, 4)
