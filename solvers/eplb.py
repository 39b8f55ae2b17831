"""DeepSeek's expert-parallel load balancer (EPLB), re-implemented as a baseline.

Data: loads ``W[l, e] >= 0`` for ``L`` layers and ``E`` logical experts, in ``G`` groups of
``S = E / G`` consecutive experts; ``P`` physical slots per layer on ``D`` GPUs (``P / D`` slots
each) in ``N`` nodes (``D / N`` GPUs each). Every layer is solved independently with the same ``P``.

Steps, per layer (hierarchical policy):

1. groups to nodes: pack the ``G`` group loads into ``N`` nodes, ``G / N`` groups each, with the
   greedy fixed-cardinality packer (:func:`solvers.packing.balanced_packing`); renumber the experts
   node-major (node 0's groups first, in packing order; experts keep their order inside a group);
2. replicate inside each node: the node's ``E / N`` experts start with one slot each; each of the
   remaining ``P / N - E / N`` slots goes to the expert with the largest load per replica
   (:func:`replicate_experts`);
3. replicas to GPUs inside each node: an item per slot weighing its expert's load divided by the
   expert's replica count, packed greedily into the node's ``D / N`` GPUs, ``P / D`` items each;
   the item at position ``r`` of GPU ``g`` gets slot ``g * (P / D) + r``.

The global policy is the same routine with ``G = N = 1``: step 1 is a no-op, step 2 replicates over
all experts with budget ``P`` and step 3 packs all ``P`` items onto the ``D`` GPUs.

Reference: deepseek-ai/EPLB ``eplb.py`` (MIT, 2025-03), test vector from its README. No code is
taken from it. The result is a heuristic: nothing stops two replicas of one expert landing on one
GPU, and more slots can lower balance.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np

from solvers._checks import check_weight, positive_int
from solvers.layout import ReplicaLayout
from solvers.packing import balanced_packing
from solvers.report import SolveReport, relative_gap

__all__ = ["eplb", "replicate_experts", "balanced_packing", "ReplicaLayout", "SOLVER_VERSION"]

SOLVER_VERSION = "deepseek-eplb-2025-03 (reimplemented)"

Policy = Literal["auto", "hierarchical", "global"]


def eplb(
    weight,
    num_slots: int,
    num_gpus: int,
    *,
    num_groups: int = 1,
    num_nodes: int = 1,
    policy: Policy = "auto",
) -> tuple[ReplicaLayout, SolveReport]:
    """Replicate and place experts with DeepSeek's EPLB heuristic.

    Parameters
    ----------
    weight : array_like of float, shape (L, E)
        Non-negative load of each logical expert in each layer (e.g. routed token counts).
    num_slots : int
        Physical slots per layer ``P``; ``P >= E`` and a multiple of `num_gpus`.
    num_gpus : int
        GPUs ``D`` (expert-parallel ranks); a multiple of `num_nodes`.
    num_groups : int, default 1
        Expert groups ``G`` (consecutive experts); must divide ``E`` for the hierarchical policy.
    num_nodes : int, default 1
        Nodes ``N``.
    policy : {"auto", "hierarchical", "global"}, default "auto"
        ``"auto"`` follows the reference: hierarchical if ``G % N == 0`` (unless ``G = N = 1``,
        where both policies are the same computation and the result is labelled global),
        otherwise global.

    Returns
    -------
    layout : ReplicaLayout
        ``log2phy`` numbers replicas in slot order (the reference numbers them in replication
        order; the set of slots of each expert is the same).
    report : SolveReport
        ``status="feasible"``; ``objective`` = sum over layers of the busiest GPU's load;
        ``bound`` = sum over layers of ``max(total / D, max_e W / min(D, P - E + 1))``.

    Raises
    ------
    ValueError
        On a bad shape or value of `weight`, or sizes that violate the divisibility rules; the
        message names the parameter.

    Notes
    -----
    Time ``O(L * (P * E + P * D))`` with both inner loops vectorised over layers (and nodes).
    Ties: items of equal weight are packed in index order (stable sort) and extra replicas go to
    the lowest-numbered expert among equal per-replica loads; the reference sorts unstably, so on
    ties the two may differ.

    Examples
    --------
    The README vector of deepseek-ai/EPLB (2 layers, 12 experts, 4 groups, 2 nodes, 8 GPUs):

    >>> w = [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
    ...      [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]
    >>> lay, rep = eplb(w, 16, 8, num_groups=4, num_nodes=2)
    >>> lay.phy2log.tolist()  # doctest: +NORMALIZE_WHITESPACE
    [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
     [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]]
    >>> lay.balancedness(w).round(4).tolist(), rep.solver
    ([0.8277, 0.805], 'eplb-hierarchical')
    >>> eplb(w, 16, 8, policy="global")[0].phy2log[0].tolist()
    [10, 6, 10, 7, 0, 2, 11, 4, 5, 9, 5, 4, 8, 3, 1, 1]
    """
    start = time.perf_counter()
    w = check_weight(weight, "(L, E)")
    layers, experts = w.shape
    num_slots = positive_int(num_slots, "num_slots")
    num_gpus = positive_int(num_gpus, "num_gpus")
    num_groups = positive_int(num_groups, "num_groups")
    num_nodes = positive_int(num_nodes, "num_nodes")
    if num_slots % num_gpus:
        raise ValueError(f"num_slots ({num_slots}) must be a multiple of num_gpus ({num_gpus})")
    if num_slots < experts:
        raise ValueError(f"num_slots ({num_slots}) must be at least the number of experts ({experts})")
    if num_gpus % num_nodes:
        raise ValueError(f"num_gpus ({num_gpus}) must be a multiple of num_nodes ({num_nodes})")
    hierarchical = _resolve_policy(policy, num_groups, num_nodes)
    if hierarchical and experts % num_groups:
        raise ValueError(f"num_groups ({num_groups}) must divide the number of experts ({experts})")

    if hierarchical:
        phy2log = _rebalance(w, num_slots, num_groups, num_nodes, num_gpus)
    else:
        phy2log = _rebalance(w, num_slots, 1, 1, num_gpus)
    layout = ReplicaLayout.from_phy2log(phy2log, experts, num_gpus, num_nodes)

    objective = float(layout.gpu_loads(w).max(axis=1).sum())
    spread = min(num_gpus, num_slots - experts + 1)
    bound = float(np.maximum(w.sum(axis=1) / num_gpus, w.max(axis=1) / spread).sum())
    report = SolveReport(
        status="feasible",
        stop_reason="completed",
        objective=objective,
        bound=bound,
        gap=relative_gap(objective, bound),
        wall_time_s=time.perf_counter() - start,
        solver="eplb-hierarchical" if hierarchical else "eplb-global",
        solver_version=SOLVER_VERSION,
    )
    return layout, report


def replicate_experts(weights, num_slots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Give ``num_slots`` slots to ``n`` experts, each extra slot to the largest load per replica.

    Slots ``0 .. n-1`` hold experts ``0 .. n-1`` (replica rank 0); slot ``s >= n`` holds the expert
    maximising ``weights / count`` at that moment (lowest index on ties), which greedily minimises
    the largest load per replica.

    Parameters
    ----------
    weights : array_like of float, shape (R, n)
        Non-negative loads, one independent row per instance.
    num_slots : int
        Slots per row, ``>= n``.

    Returns
    -------
    slot_expert : ndarray of int64, shape (R, num_slots)
        Expert held by each slot.
    slot_rank : ndarray of int64, shape (R, num_slots)
        Replica rank of each slot within its expert (order of creation).
    count : ndarray of int64, shape (R, n)
        Replicas per expert.

    Raises
    ------
    ValueError
        If `weights` is not 2-D or `num_slots` is smaller than ``n``.

    Examples
    --------
    >>> slot, rank, count = replicate_experts([[6.0, 2.0, 4.0]], 5)
    >>> slot.tolist(), rank.tolist(), count.tolist()
    ([[0, 1, 2, 0, 2]], [[0, 0, 0, 1, 1]], [[2, 1, 2]])
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D, got shape {w.shape}")
    rows, n = w.shape
    num_slots = positive_int(num_slots, "num_slots")
    if num_slots < n:
        raise ValueError(f"num_slots ({num_slots}) must be at least the number of experts ({n})")
    row = np.arange(rows)
    count = np.ones((rows, n), dtype=np.int64)
    slot_expert = np.empty((rows, num_slots), dtype=np.int64)
    slot_rank = np.zeros((rows, num_slots), dtype=np.int64)
    slot_expert[:, :n] = np.arange(n)
    for s in range(n, num_slots):
        best = (w / count).argmax(axis=1)  # first maximum: lowest expert id on ties
        slot_expert[:, s] = best
        slot_rank[:, s] = count[row, best]
        count[row, best] += 1
    return slot_expert, slot_rank, count


# -- the three steps ------------------------------------------------------------------------------
def _rebalance(w: np.ndarray, num_slots: int, num_groups: int, num_nodes: int, num_gpus: int) -> np.ndarray:
    """phy2log [L, P] of the hierarchical routine (global = ``num_groups = num_nodes = 1``)."""
    layers, experts = w.shape
    group_size = experts // num_groups
    experts_per_node = experts // num_nodes
    slots_per_node = num_slots // num_nodes
    slots_per_gpu = num_slots // num_gpus

    # 1. groups -> nodes; relabel experts node-major: mlog = position in node-major order
    node, rank = balanced_packing(w.reshape(layers, num_groups, group_size).sum(axis=2), num_nodes)
    group_pos = node * (num_groups // num_nodes) + rank
    log2mlog = (group_pos[:, :, None] * group_size + np.arange(group_size)).reshape(layers, experts)
    mlog2log = _inverse(log2mlog)

    # 2. replicate inside each node; one row per (layer, node)
    w_node = np.take_along_axis(w, mlog2log, axis=1).reshape(layers * num_nodes, experts_per_node)
    slot_mlog, _, count = replicate_experts(w_node, slots_per_node)

    # 3. replicas -> GPUs of the node; item weight = load per replica
    item = np.take_along_axis(w_node / count, slot_mlog, axis=1)
    gpu, rank_in_gpu = balanced_packing(item, num_gpus // num_nodes)
    new_slot = gpu * slots_per_gpu + rank_in_gpu  # a permutation of each row
    node_slot_mlog = np.take_along_axis(slot_mlog, _inverse(new_slot), axis=1)

    # back to layer-wide slots (node-major) and original expert ids
    node_offset = np.tile(np.arange(num_nodes) * experts_per_node, layers)[:, None]
    slot2mlog = (node_slot_mlog + node_offset).reshape(layers, num_slots)
    return np.take_along_axis(mlog2log, slot2mlog, axis=1)


def _inverse(perm: np.ndarray) -> np.ndarray:
    """Row-wise inverse of a batch of permutations."""
    inv = np.empty_like(perm)
    np.put_along_axis(inv, perm, np.broadcast_to(np.arange(perm.shape[1]), perm.shape), axis=1)
    return inv


# -- validation -----------------------------------------------------------------------------------
def _resolve_policy(policy: str, num_groups: int, num_nodes: int) -> bool:
    """True for the hierarchical policy."""
    if policy == "auto":
        return num_groups % num_nodes == 0 and (num_groups, num_nodes) != (1, 1)
    if policy == "global":
        return False
    if policy == "hierarchical":
        if num_groups % num_nodes:
            raise ValueError(
                f"num_groups ({num_groups}) must be a multiple of num_nodes ({num_nodes}) for policy='hierarchical'"
            )
        return True
    raise ValueError(f"policy must be 'auto', 'hierarchical' or 'global', got {policy!r}")
