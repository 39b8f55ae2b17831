"""Helix's throughput graph in networkx: the independent max-flow of a layout, routing weights, pipelines.

Built from capacities only (tokens/s), never from ``solvers/``: it is the reference the fast evaluator
is tested against and what the plan verifier recomputes. For a layout ``[s_i, e_i)`` (Mei et al.,
ASPLOS'25, section 4; the instances' README, "Verification"):

- node ``i`` becomes ``i/in -> i/start -> i/end -> i/out`` with capacities in-NIC / activation bytes,
  ``T_i(e_i - s_i)`` and out-NIC / activation bytes;
- ``source -> i/in`` (the link's capacity) only if ``s_i = 0``; ``i/out -> sink`` only if ``e_i = L``;
- ``u/out -> v/in`` (the link's capacity) only if ``e_u = s_v`` exactly.

The max-flow's edge flows become routing weights (the share of a node's output each successor gets:
weighted round robin) and, decomposed into source-sink paths, pipelines with vLLM-style contiguous
stage sizes (``VLLM_PP_LAYER_PARTITION``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import networkx as nx

__all__ = ["SOURCE", "SINK", "build_flow_graph", "layout_max_flow", "decompose_pipelines"]

SOURCE, SINK = "source", "sink"


def build_flow_graph(num_layers: int, ranges: Sequence[tuple[int, int] | None], node_caps: Sequence[float],
                     nic_caps: Sequence[tuple[float, float]], links: Mapping[tuple[str, str], float],
                     names: Sequence[str]) -> nx.DiGraph:
    """The graph of one layout. ``ranges[i] = (first, last_exclusive)`` or None (node unused),
    ``node_caps[i] = T_i(k_i)``, ``nic_caps[i] = (in, out)`` tokens/s, ``links[(a, b)]`` tokens/s with
    ``"source"`` / ``"sink"`` for the coordinator's ends (a link ``(name, "sink")`` feeds the sink)."""
    G = nx.DiGraph()
    G.add_node(SOURCE)
    G.add_node(SINK)
    for name, r, cap, (nin, nout) in zip(names, ranges, node_caps, nic_caps):
        if r is None:
            continue
        G.add_edge(f"{name}/in", f"{name}/start", capacity=float(nin))
        G.add_edge(f"{name}/start", f"{name}/end", capacity=float(cap))
        G.add_edge(f"{name}/end", f"{name}/out", capacity=float(nout))
    where = {name: r for name, r in zip(names, ranges) if r is not None}
    for (a, b), cap in links.items():
        if a == SOURCE and b in where and where[b][0] == 0:
            G.add_edge(SOURCE, f"{b}/in", capacity=float(cap))
        elif b == SINK and a in where and where[a][1] == num_layers:
            G.add_edge(f"{a}/out", SINK, capacity=float(cap))
        elif a in where and b in where and where[a][1] == where[b][0]:
            G.add_edge(f"{a}/out", f"{b}/in", capacity=float(cap))
    return G


def layout_max_flow(G: nx.DiGraph) -> tuple[float, dict]:
    """``(value, flow)`` of :func:`networkx.maximum_flow` from source to sink, by Edmonds-Karp: networkx's
    default preflow-push can fail on float capacities (an ``IndexError`` in its height levels when
    rounding leaves an excess), augmenting paths cannot."""
    from networkx.algorithms.flow import edmonds_karp

    return nx.maximum_flow(G, SOURCE, SINK, flow_func=edmonds_karp)


def decompose_pipelines(flow: dict, tol: float = 1e-9) -> list[tuple[list[str], float]]:
    """Source-sink paths of a flow, each as its node names and rate: repeatedly follow the edges that
    carry the most flow, take the path's smallest flow and subtract it (a flow decomposition; at most
    one path per edge). Cycles cannot occur: every edge moves forward through the layers."""
    rest = {u: {v: f for v, f in nbrs.items() if f > tol} for u, nbrs in flow.items()}
    paths = []
    while rest.get(SOURCE):
        path, u = [SOURCE], SOURCE
        while u != SINK:
            nbrs = rest.get(u)
            if not nbrs:
                break
            u = max(sorted(nbrs), key=lambda v: nbrs[v])
            path.append(u)
        if u != SINK:
            break
        rate = min(rest[a][b] for a, b in zip(path, path[1:]))
        for a, b in zip(path, path[1:]):
            rest[a][b] -= rate
            if rest[a][b] <= tol:
                del rest[a][b]
        nodes = [p.split("/")[0] for p in path[1:-1] if p.endswith("/in")]
        paths.append((nodes, rate))
    return paths
