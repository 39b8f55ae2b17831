"""EP workers serving MoE layers with a plan's replicas: outputs equal the unreplicated reference,
measured rows per rank equal the prediction from the routing, and the failure path names the rank.

Four tests start 4 gloo workers once each (~7 s apiece on 2 cores); the rest runs without workers.
"""

import dataclasses
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from planner.errors import InputError, RuntimeAdapterError
from planner.inputs.loads import ExpertLoads
from planner.profiles import get_model
from planner.replicas import plan_replicas
from planner.runtime.moe import MoELayer, make_layers, random_tokens, reference_forward
from planner.runtime.dispatch import DISPATCHES, _largest_remainder
from planner.runtime.workers import (
    counts_report,
    predicted_rank_tokens,
    predicted_slot_tokens,
    routing_counts,
    serve_dispatches,
    serve_layers,
)

MAX_ABS_DIFF = 1e-5  # fp32; only the summation order differs from the reference
T, H, I, K, W = 512, 64, 128, 2, 4


def _stack(num_experts: int, seed: int = 0):
    layers = make_layers(2, H, I, num_experts, K, seed=seed)
    x = random_tokens(T, H, seed=seed + 100)
    out, routing = reference_forward(layers, x)
    return layers, x, out, routing


@pytest.fixture(scope="module")
def stack8():
    return _stack(8)


@pytest.fixture(scope="module")
def plan8(stack8):
    """Stepaware plan made from the layers' own routing of these tokens (12 slots, 4 GPUs)."""
    routing = stack8[3]
    loads = ExpertLoads(routing_counts(routing, 8)[None], layer_ids=[0, 1])
    return plan_replicas(loads, "mixtral-8x7b", num_gpus=W, swap_time_limit_s=0)


def _replicated_slots_per_gpu(plan) -> np.ndarray:
    """[row, gpu] slots whose expert has >= 2 replicas: the round-robin rounding bound."""
    rp = plan.replicas
    out = np.zeros((len(rp.physical_to_logical), rp.num_gpus))
    for row, (p2l, gpu) in enumerate(zip(rp.physical_to_logical, rp.slot_gpu)):
        n = np.bincount(p2l, minlength=rp.num_experts)
        for e, g in zip(p2l, gpu):
            out[row, g] += n[e] > 1
    return out


def _check_run(res, plan, routing, ref, dispatch):
    """The invariants every run must satisfy."""
    assert res.outputs.shape == ref.shape and res.outputs.dtype == np.float32
    diff = float(np.abs(res.outputs - ref).max())
    assert diff <= MAX_ABS_DIFF, diff
    predicted = predicted_rank_tokens(plan, routing, dispatch=dispatch)
    np.testing.assert_array_equal(res.rank_tokens, predicted)
    for got, want in zip(res.slot_tokens, predicted_slot_tokens(plan, routing, dispatch=dispatch)):
        np.testing.assert_array_equal(got, want)
    assert (res.rank_tokens.sum(axis=1) == T * K).all()
    assert res.tokens_per_rank.tolist() == [T // W] * W
    assert res.step_ms.shape == (2, W) and np.isfinite(res.step_ms).all() and (res.step_ms > 0).all()
    assert res.expert_ms.shape == (2, W) and np.isfinite(res.expert_ms).all() and (res.expert_ms >= 0).all()
    assert (res.expert_ms[res.rank_tokens > 0] > 0).all()  # a rank that computed rows spent CPU time on them
    return diff


# -- with workers (one spawn each) ----------------------------------------------------------------


@pytest.mark.slow  # starts worker processes
def test_even_and_deterministic_dispatch_on_one_placement(stack8, plan8):
    layers, x, ref, routing = stack8
    runs = serve_dispatches(plan8, layers, x, dispatches=("even", "deterministic"))
    assert list(runs) == ["even", "deterministic"]
    for dispatch, res in runs.items():
        _check_run(res, plan8, routing, ref, dispatch)
    # the plan was made from exactly these counts: its fractional even split differs from the
    # integer round-robin by less than one row per slot of a replicated expert
    even = runs["even"]
    plan_loads = np.array(plan8.replicas.predicted.gpu_load_tokens)
    assert (np.abs(even.rank_tokens - plan_loads) < _replicated_slots_per_gpu(plan8) + 1e-6).all()
    assert "(equal)" in counts_report(even, plan8, routing)
    # static dispatch: every pair whose expert has a copy on its own rank stays there
    rp, det = plan8.replicas, runs["deterministic"]
    for row in range(2):
        for r in range(W):
            own = {e for e, g in zip(rp.physical_to_logical[row], rp.slot_gpu[row]) if g == r}
            mine = routing[row, r * (T // W):(r + 1) * (T // W)].reshape(-1)
            assert det.local_tokens[row, r] == np.isin(mine, list(own)).sum()


@pytest.mark.slow  # starts worker processes
def test_eplb_plan_with_duplicates_on_a_rank():
    layers, x, ref, routing = _stack(16, seed=7)
    arch = dataclasses.replace(get_model("mixtral-8x7b"), id="mixtral-16e", num_routed_experts=16, reference_total_params=None)
    counts = np.full((2, 16), 100.0)
    counts[:, 0] = 3000.0  # one hot expert: 5 replicas over 4 GPUs, so two share a GPU
    plan = plan_replicas(ExpertLoads(counts[None], layer_ids=[0, 1]), arch, num_gpus=W, algorithm="eplb")
    rp = plan.replicas
    dup = [(row, g) for row in range(2) for g in range(W)
           if len([e for e, s in zip(rp.physical_to_logical[row], rp.slot_gpu[row]) if s == g])
           > len({e for e, s in zip(rp.physical_to_logical[row], rp.slot_gpu[row]) if s == g})]
    assert dup, "the EPLB plan should hold two copies of one expert on a GPU"
    res = serve_layers(plan, layers, x, dispatch="even", repeats=1)
    _check_run(res, plan, routing, ref, "even")
    row, g = dup[0]  # both copies on that GPU served rows (one weight copy per slot)
    p2l, gpu = np.array(rp.physical_to_logical[row]), np.array(rp.slot_gpu[row])
    on_g = np.flatnonzero(gpu == g)
    e = next(int(v) for v in p2l[on_g] if (p2l[on_g] == v).sum() > 1)
    assert (res.slot_tokens[row][on_g[p2l[on_g] == e]] > 0).all()


@pytest.mark.slow  # starts worker processes
def test_plan_dispatch_follows_dispatch_weights(stack8):
    layers, x, ref, routing = stack8
    loads = ExpertLoads(routing_counts(routing, 8)[None], layer_ids=[0, 1])
    plan = plan_replicas(loads, "mixtral-8x7b", num_gpus=W, split="optimal", swap_time_limit_s=0)
    assert plan.replicas.dispatch_weights is not None
    res = serve_layers(plan, layers, x, dispatch="plan", repeats=1)
    _check_run(res, plan, routing, ref, "plan")
    # largest-remainder quotas: each slot within one row of its fractional share
    spg = np.array(plan.replicas.slots_per_gpu)
    assert (np.abs(res.rank_tokens - np.array(plan.replicas.predicted.gpu_load_tokens)) < spg + 1e-6).all()


@pytest.mark.slow  # starts worker processes
def test_bad_slot_fails_on_its_rank(stack8, plan8):
    layers, x, _, _ = stack8
    rp = plan8.replicas
    p2l = [list(r) for r in rp.physical_to_logical]
    # a slot on rank 2 whose expert has another replica: only rank 2 notices
    slot = next(s for s, (e, g) in enumerate(zip(p2l[0], rp.slot_gpu[0])) if g == 2 and p2l[0].count(e) > 1)
    p2l[0][slot] = 99
    bad = plan8.model_copy(update={"replicas": rp.model_copy(update={"physical_to_logical": p2l})})
    with pytest.raises(RuntimeAdapterError, match=rf"worker rank 2 of 4 .*slot {slot} holds expert 99"):
        serve_layers(bad, layers, x, timeout_s=60)


# -- without workers --------------------------------------------------------------------------------


def test_reference_equals_dense_per_token_formula(stack8):
    layers, x, _, routing = stack8
    layer, xt = layers[0], torch.from_numpy(x[:16])
    probs = torch.softmax(xt @ layer.router_weight.T, dim=-1)
    y = torch.zeros_like(xt)
    for t in range(16):
        top = torch.argsort(probs[t], descending=True)[:K]
        w = probs[t, top] / probs[t, top].sum()
        for j, e in enumerate(top.tolist()):
            y[t] += w[j] * layer.expert(e, xt[t:t + 1])[0]
            assert e in routing[0, t]
    out, _ = reference_forward(layers[:1], x[:16])
    assert np.abs(out - (xt + y).numpy()).max() <= MAX_ABS_DIFF


def test_layer_pickles_as_numpy():
    layer = MoELayer.random(8, 16, 4, 2, seed=3)
    assert isinstance(layer.__getstate__()["gate_proj"], np.ndarray)
    back = pickle.loads(pickle.dumps(layer))
    assert back.top_k == 2 and torch.equal(back.down_proj, layer.down_proj)


@pytest.mark.parametrize("dispatch", DISPATCHES)
def test_predictions_conserve_rows(stack8, plan8, dispatch):
    _, _, _, routing = stack8
    slots = predicted_slot_tokens(plan8, routing, dispatch=dispatch)
    counts = routing_counts(routing, 8)
    for row in range(2):
        per_expert = np.bincount(plan8.replicas.physical_to_logical[row], weights=slots[row], minlength=8)
        np.testing.assert_array_equal(per_expert, counts[row])
    assert (predicted_rank_tokens(plan8, routing, dispatch=dispatch).sum(axis=1) == T * K).all()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_largest_remainder(total, weights):
    q = _largest_remainder(total, np.array(weights))
    w = np.array(weights) / sum(weights) if sum(weights) > 0 else np.full(len(weights), 1 / len(weights))
    assert q.sum() == total and (q >= 0).all()
    assert (np.abs(q - total * w) < 1 + 1e-9).all()


@pytest.mark.parametrize(
    "change, match",
    [
        ({"model_layers": "one"}, "1 layer.* but the plan has 2 row"),
        ({"world_size": 2}, "world_size"),
        ({"dispatch": "random"}, "dispatch: unknown"),
        ({"experts": 16}, "16 experts, but the plan has 8"),
        ({"tokens": "narrow"}, r"tokens: expected shape \[tokens, 64\]"),
        ({"slot_gpu": 9}, "on GPU 9"),
        ({"expert": "drop"}, "plan row 1: no slot holds expert 7"),
    ],
)
def test_bad_inputs_fail_before_spawning(stack8, plan8, change, match):
    layers, x, _, _ = stack8
    plan, kw = plan8, {}
    if change.get("model_layers"):
        layers = layers[:1]
    if "experts" in change:
        layers = make_layers(2, H, I, 16, K)
    if change.get("tokens"):
        x = x[:, :32]
    if "slot_gpu" in change:
        sg = [list(r) for r in plan8.replicas.slot_gpu]
        sg[1][0] = change["slot_gpu"]
        plan = plan8.model_copy(update={"replicas": plan8.replicas.model_copy(update={"slot_gpu": sg})})
    if "expert" in change:  # every slot of expert 7 in row 1 now holds expert 0
        p2l = [list(r) for r in plan8.replicas.physical_to_logical]
        p2l[1] = [0 if e == 7 else e for e in p2l[1]]
        plan = plan8.model_copy(update={"replicas": plan8.replicas.model_copy(update={"physical_to_logical": p2l})})
    kw.update({k: v for k, v in change.items() if k in ("world_size", "dispatch")})
    with pytest.raises(InputError, match=match):
        serve_layers(plan, layers, x, **kw)


def test_prediction_rejects_bad_routing(plan8):
    with pytest.raises(InputError, match="expert ids must be in 0..7"):
        predicted_rank_tokens(plan8, np.full((2, 4, 2), 8))
    with pytest.raises(InputError, match="routing: 1 layer"):
        predicted_rank_tokens(plan8, np.zeros((4, 2), dtype=int))
