"""Solver-free verifier of a cluster plan: the layout's max-flow recomputed in networkx from the plan.

Independent of ``solvers/``: the flow graph is rebuilt from the plan's own records (node capacities, NIC
and link capacities) by :mod:`planner.cluster.graph`. Checks (each reported by name):

1. ``ranges``      every node holds ``1..K`` contiguous layers inside ``[0, L)``; its capacity is its
                   table's entry for that many layers
2. ``edges``       every edge abuts (``source`` only into layer 0, ``sink`` only after layer ``L - 1``,
                   node to node only where one's last layer + 1 is the other's first), once each
3. ``flow``        the max-flow recomputed from the plan equals its throughput; recorded edge and node
                   flows are within capacity and conserved, and the source's edges carry the throughput
4. ``routing``     each sender's routing weights are its edge flows over its output and sum to 1
5. ``pipelines``   each pipeline runs from layer 0 to ``L`` through abutting nodes, its
                   ``layer_partition`` lists their layer counts, and the rates sum to the throughput
6. ``bounds``      Helix's bound equals ``sum_i max_k k T_i(k) / L``; the layer-crossing bound ``F``
                   satisfies ``L F <= sum_i max_k k min(T_i(k), F)`` and is the largest such (within
                   1e-6); the throughput is below both; the report's objective, bound and gap agree
7. ``cluster``     (with the cluster) the inputs hash, every node's GPU, GPUs and region, and every
                   link capacity match the cluster; no abutting link of the cluster is missing
"""

from __future__ import annotations

from planner.cluster.graph import SINK, SOURCE, build_flow_graph, layout_max_flow
from planner.common.numerics import close
from planner.inputs.cluster import COORDINATOR, Cluster
from planner.plans.schema import ClusterPlan
from planner.plans.verify import Check, VerifyReport

__all__ = ["verify_cluster"]

_TOL = 1e-6


def _le(a: float, b: float) -> bool:
    return a <= b + _TOL * max(1.0, abs(b))


def verify_cluster(plan: ClusterPlan, cluster: Cluster | None = None) -> VerifyReport:
    """Every check of the module docstring (``cluster`` adds check 7)."""
    checks = [_ranges(plan), _edges(plan), _flow(plan), _routing(plan), _pipelines(plan), _bounds(plan)]
    if cluster is not None:
        checks.append(_cluster(plan, cluster))
    return VerifyReport(tuple(checks))


def _ranges(plan: ClusterPlan) -> Check:
    L = plan.inputs.num_layers
    for n in plan.nodes:
        k = n.last_layer - n.first_layer
        if not (0 <= n.first_layer and 1 <= k <= len(n.capacity_table_tokens_per_s) and n.last_layer <= L):
            return Check("ranges", False, f"node {n.name}: [{n.first_layer}, {n.last_layer}) is not 1..{len(n.capacity_table_tokens_per_s)} layers inside [0, {L})")
        if not close(n.capacity_tokens_per_s, n.capacity_table_tokens_per_s[k - 1]):
            return Check("ranges", False, f"node {n.name}: capacity {n.capacity_tokens_per_s} is not T({k}) = {n.capacity_table_tokens_per_s[k - 1]}")
    names = [n.name for n in plan.nodes]
    if len(set(names)) != len(names):
        return Check("ranges", False, "a node appears twice")
    return Check("ranges", True, f"{len(names)} nodes")


def _edges(plan: ClusterPlan) -> Check:
    L = plan.inputs.num_layers
    where = {n.name: (n.first_layer, n.last_layer) for n in plan.nodes}
    seen = set()
    for e in plan.edges:
        if (e.src, e.dst) in seen:
            return Check("edges", False, f"edge {e.src} -> {e.dst} twice")
        seen.add((e.src, e.dst))
        if e.src == SOURCE:
            ok = e.dst in where and where[e.dst][0] == 0
        elif e.dst == SINK:
            ok = e.src in where and where[e.src][1] == L
        else:
            ok = e.src in where and e.dst in where and where[e.src][1] == where[e.dst][0]
        if not ok:
            return Check("edges", False, f"edge {e.src} -> {e.dst} does not abut")
    return Check("edges", True, f"{len(plan.edges)} edges abut")


def _graph(plan: ClusterPlan):
    names = [n.name for n in plan.nodes]
    ranges = [(n.first_layer, n.last_layer) for n in plan.nodes]
    caps = [n.capacity_tokens_per_s for n in plan.nodes]
    nic = [(n.nic_in_tokens_per_s, n.nic_out_tokens_per_s) for n in plan.nodes]
    links = {(e.src, e.dst): e.capacity_tokens_per_s for e in plan.edges}
    return build_flow_graph(plan.inputs.num_layers, ranges, caps, nic, links, names)


def _flow(plan: ClusterPlan) -> Check:
    value, _ = layout_max_flow(_graph(plan))
    if not close(value, plan.throughput_tokens_per_s):
        return Check("flow", False, f"max-flow recomputed {value!r}, plan says {plan.throughput_tokens_per_s!r}")
    inflow = {n.name: 0.0 for n in plan.nodes}
    outflow = {n.name: 0.0 for n in plan.nodes}
    source = 0.0
    for e in plan.edges:
        if e.flow_tokens_per_s < -_TOL or not _le(e.flow_tokens_per_s, e.capacity_tokens_per_s):
            return Check("flow", False, f"edge {e.src} -> {e.dst}: flow {e.flow_tokens_per_s} outside [0, {e.capacity_tokens_per_s}]")
        if e.src == SOURCE:
            source += e.flow_tokens_per_s
        else:
            outflow[e.src] += e.flow_tokens_per_s
        if e.dst != SINK:
            inflow[e.dst] += e.flow_tokens_per_s
    for n in plan.nodes:
        f = n.flow_tokens_per_s
        if not (_le(f, n.capacity_tokens_per_s) and close(inflow[n.name] + 1.0, f + 1.0) and close(outflow[n.name] + 1.0, f + 1.0)):
            return Check("flow", False, f"node {n.name}: in {inflow[n.name]}, through {f}, out {outflow[n.name]} (capacity {n.capacity_tokens_per_s})")
    if not close(source + 1.0, plan.throughput_tokens_per_s + 1.0):
        return Check("flow", False, f"source edges carry {source}, throughput {plan.throughput_tokens_per_s}")
    return Check("flow", True, f"{value:,.4f} tokens/s recomputed (networkx)")


def _routing(plan: ClusterPlan) -> Check:
    out: dict[str, float] = {}
    weights: dict[str, float] = {}
    for e in plan.edges:
        out[e.src] = out.get(e.src, 0.0) + e.flow_tokens_per_s
        weights[e.src] = weights.get(e.src, 0.0) + e.routing_weight
    for e in plan.edges:
        want = e.flow_tokens_per_s / out[e.src] if out[e.src] > 0 else 0.0
        if not close(e.routing_weight + 1.0, want + 1.0):
            return Check("routing", False, f"edge {e.src} -> {e.dst}: weight {e.routing_weight}, flow share {want}")
    for src, total in weights.items():
        if out[src] > 0 and not close(total, 1.0):
            return Check("routing", False, f"{src}: weights sum to {total}")
    return Check("routing", True, f"{len(weights)} senders")


def _pipelines(plan: ClusterPlan) -> Check:
    L = plan.inputs.num_layers
    where = {n.name: (n.first_layer, n.last_layer) for n in plan.nodes}
    total = 0.0
    for p in plan.pipelines:
        at = 0
        for name in p.nodes:
            if name not in where or where[name][0] != at:
                return Check("pipelines", False, f"pipeline {' > '.join(p.nodes)} breaks at {name} (layer {at})")
            at = where[name][1]
        sizes = ",".join(str(where[x][1] - where[x][0]) for x in p.nodes)
        if at != L or sizes != p.layer_partition:
            return Check("pipelines", False, f"pipeline {' > '.join(p.nodes)} ends at {at} or partition {p.layer_partition} != {sizes}")
        total += p.rate_tokens_per_s
    if not close(total + 1.0, plan.throughput_tokens_per_s + 1.0):
        return Check("pipelines", False, f"pipeline rates sum to {total}, throughput {plan.throughput_tokens_per_s}")
    return Check("pipelines", True, f"{len(plan.pipelines)} pipelines")


def _crossing_sum(tables, F: float) -> float:
    return sum(max((k + 1) * min(t, F) for k, t in enumerate(tab)) for tab in tables)


def _bounds(plan: ClusterPlan) -> Check:
    L = plan.inputs.num_layers
    tables = [n.capacity_table_tokens_per_s[:L] for n in plan.nodes]
    helix = sum(max((k + 1) * t for k, t in enumerate(tab)) for tab in tables) / L
    if not close(helix, plan.helix_upper_bound_tokens_per_s):
        return Check("bounds", False, f"Helix bound {plan.helix_upper_bound_tokens_per_s}, recomputed {helix}")
    F = plan.crossing_bound_tokens_per_s
    if _crossing_sum(tables, F) < L * F * (1 - _TOL):
        return Check("bounds", False, f"layer-crossing bound {F} violates L F <= sum_i max_k k min(T_i(k), F)")
    if F * (1 + _TOL) < helix and _crossing_sum(tables, F * (1 + _TOL)) >= L * F * (1 + _TOL):
        return Check("bounds", False, f"layer-crossing bound {F} is not the largest F")
    rep = plan.report
    thr = plan.throughput_tokens_per_s
    if not (_le(thr, F) and _le(thr, helix)) or rep.bound is None or not _le(thr, rep.bound) or not _le(rep.bound, min(F, helix)):
        return Check("bounds", False, f"throughput {thr} above a bound (crossing {F}, Helix {helix}, report {rep.bound})")
    if rep.objective is None or not close(rep.objective, thr):
        return Check("bounds", False, f"report objective {rep.objective} != throughput {thr}")
    if thr > 0 and rep.gap is not None and not close(rep.gap + 1.0, (rep.bound - thr) / thr + 1.0):
        return Check("bounds", False, f"gap {rep.gap} != (bound - throughput) / throughput")
    return Check("bounds", True, f"throughput {thr:,.1f} <= bound {rep.bound:,.1f}")


def _cluster(plan: ClusterPlan, cluster: Cluster) -> Check:
    if cluster.sha256() != plan.inputs.cluster_sha256:
        return Check("cluster", False, "the cluster given is not the one the plan was made for (sha256 differs)")
    nodes = {n.name: n for n in cluster.nodes}
    for rec in plan.nodes:
        n = nodes.get(rec.name)
        if n is None or (n.gpu, n.gpus, n.region) != (rec.gpu, rec.gpus, rec.region):
            return Check("cluster", False, f"node {rec.name} is not the cluster's")
    where = {n.name: (n.first_layer, n.last_layer) for n in plan.nodes}
    recorded = {(e.src, e.dst) for e in plan.edges}
    L = plan.inputs.num_layers
    for lk in cluster.links:
        a = SOURCE if lk.src == COORDINATOR else lk.src
        b = SINK if lk.dst == COORDINATOR else lk.dst
        if a == SOURCE:
            abuts = b in where and where[b][0] == 0
        elif b == SINK:
            abuts = a in where and where[a][1] == L
        else:
            abuts = a in where and b in where and where[a][1] == where[b][0]
        pruned = plan.inputs.parameters.get("prune_keep") is not None
        if abuts and (a, b) not in recorded and not pruned:
            return Check("cluster", False, f"link {a} -> {b} abuts but is not in the plan")
    return Check("cluster", True, f"{len(cluster.nodes)} nodes, {len(cluster.links)} links match")
