r"""Exact max-flow of a layer layout on a compressed graph: the score of every placement candidate.

A *layout* gives node ``i`` the contiguous layers ``[s_i, e_i)``, ``1 <= e_i - s_i = k_i <= K_i``,
``e_i <= L``. Its value is the maximum ``source -> sink`` flow of Helix's graph (Mei et al., ASPLOS'25,
arXiv 2406.01566; the MILP of ``docs/cluster.md``) with the exact-abutment rule:

- node ``i`` carries at most ``T_i(k_i)`` tokens/s (its capacity table, NIC bound already folded in);
- ``source -> i`` (capacity ``C_si``) exists only if ``s_i = 0``; ``i -> sink`` (``C_it``) only if
  ``e_i = L``; ``i -> j`` (``C_ij``) only if ``e_i = s_j``.

**Compression** (exact; ``docs/cluster.md`` section "Why the evaluator is small"). A link ``u -> v``
never binds when ``C_uv >= min(max_k T_u(k), max_k T_v(k))``: no flow through it can exceed what its
end nodes carry. Nodes are grouped greedily into *cliques* of mutually non-binding links (a region of
one fast switch); inside a group every node ending at boundary ``b`` reaches every node starting at
``b``, so one *hub* vertex per ``(group, b)`` replaces the pairwise edges. A node whose links all
stay inside its group and whose source and sink links never bind is *simple*: it becomes one arc
``hub(g, s_i) -> hub(g, e_i)``. Other nodes keep an ``in -> out`` arc, hub edges and one edge per
cross-group link that abuts. On a single complete fast network (Helix's single24 and hetero42) the
graph is the *boundary graph* of at most ``L + 1`` vertices and ``n`` arcs (parallel arcs summed).

**Layer-crossing bound.** Every source-sink path crosses each layer ``l`` through exactly one node
holding ``l``, so ``flow <= min_l sum_{i : s_i <= l < e_i} T_i(k_i)`` (:meth:`LayoutFlow.crossing_bound`);
the search uses it to reject candidates without a max-flow.

Max-flow is Dinic's algorithm, ``O(V^2 E)``, on lists (the graphs have tens of arcs, where numpy or
scipy's csgraph cost more in set-up than the flow itself: 0.4 ms against 1.1 ms for scipy's
``maximum_flow`` on hetero42's Swarm layout).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["LayoutFlow", "max_flow_dinic", "FLOW_EPS"]

#: residual capacities below this count as saturated (tokens/s)
FLOW_EPS = 1e-9
_INF = float("inf")


def max_flow_dinic(num_vertices: int, tails: Sequence[int], heads: Sequence[int], caps: Sequence[float],
                   source: int, sink: int) -> tuple[float, list[float]]:
    """Maximum flow value and the flow on every arc (Dinic's algorithm).

    Arcs are ``tails[a] -> heads[a]`` with capacity ``caps[a] >= 0`` (``inf`` allowed).

    >>> max_flow_dinic(4, [0, 0, 1, 2, 1], [1, 2, 3, 3, 2], [10, 1, 1, 10, 10], 0, 3)
    (11.0, [10.0, 1.0, 1.0, 10.0, 9.0])
    """
    adj: list[list[int]] = [[] for _ in range(num_vertices)]
    to: list[int] = []
    res: list[float] = []
    for u, v, c in zip(tails, heads, caps):
        adj[u].append(len(to))
        to.append(v)
        res.append(float(c))
        adj[v].append(len(to))
        to.append(u)
        res.append(0.0)
    value = _dinic(num_vertices, adj, to, res, source, sink)
    flows = [float(c) - res[2 * a] if math.isfinite(c) else res[2 * a + 1] for a, c in enumerate(caps)]
    return value, flows


def _dinic(nv: int, adj: list[list[int]], to: list[int], res: list[float], s: int, t: int) -> float:
    total = 0.0
    while True:
        level = [-1] * nv
        level[s] = 0
        queue = [s]
        for u in queue:
            lu = level[u] + 1
            for a in adj[u]:
                v = to[a]
                if level[v] < 0 and res[a] > FLOW_EPS:
                    level[v] = lu
                    queue.append(v)
        if level[t] < 0:
            return total
        it = [0] * nv

        def push(u: int, f: float) -> float:
            if u == t:
                return f
            edges = adj[u]
            while it[u] < len(edges):
                a = edges[it[u]]
                v = to[a]
                if res[a] > FLOW_EPS and level[v] == level[u] + 1:
                    got = push(v, f if f < res[a] else res[a])
                    if got > 0.0:
                        res[a] -= got
                        res[a ^ 1] += got
                        return got
                it[u] += 1
            return 0.0

        while True:
            f = push(s, _INF)
            if f <= 0.0 or f == _INF:
                if f == _INF:  # an uncapacitated source-sink path: the flow is unbounded
                    return _INF
                break
            total += f


class LayoutFlow:
    """Scores layouts of one instance: exact max-flow on the compressed graph, and the crossing bound.

    Parameters
    ----------
    num_layers : L.
    capacity : per node, ``T_i(k)`` for ``k = 1..K_i`` (tokens/s), a sequence of 1-D arrays.
    link : ``(n, n)`` directed link capacities in tokens/s, ``0`` where there is no link.
    source, sink : ``(n,)`` capacities of ``source -> i`` and ``i -> sink``, ``0`` where absent.

    Examples
    --------
    >>> lf = LayoutFlow(2, [[10.0, 4.0], [6.0, 3.0]], np.full((2, 2), 1e9), np.full(2, 1e9), np.full(2, 1e9))
    >>> lf.value([0, 1], [1, 1]), lf.value([0, 0], [2, 2]), lf.value([0, 0], [1, 2])
    (6.0, 7.0, 3.0)
    """

    def __init__(self, num_layers: int, capacity, link, source, sink) -> None:
        L = int(num_layers)
        if L < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers!r}")
        caps = [np.asarray(c, dtype=np.float64) for c in capacity]
        n = len(caps)
        if n == 0:
            raise ValueError("capacity needs one table per node, got none")
        for i, c in enumerate(caps):
            if c.ndim != 1 or c.size == 0 or not np.isfinite(c).all() or (c < 0).any():
                raise ValueError(f"capacity[{i}] must be a non-empty 1-D array of finite numbers >= 0")
        link = np.asarray(link, dtype=np.float64)
        source = np.asarray(source, dtype=np.float64)
        sink = np.asarray(sink, dtype=np.float64)
        if link.shape != (n, n) or source.shape != (n,) or sink.shape != (n,):
            raise ValueError(f"link must be ({n}, {n}) and source, sink ({n},)")
        for name, arr in (("link", link), ("source", source), ("sink", sink)):
            if np.isnan(arr).any() or (arr < 0).any():
                raise ValueError(f"{name} capacities must be >= 0")
        self.num_layers = L
        self.capacity = [c.tolist() for c in caps]
        self.max_layers = [min(c.size, L) for c in caps]
        self.max_capacity = [float(c.max()) for c in caps]
        self.link = link
        mx = np.asarray(self.max_capacity)
        never = link >= np.minimum.outer(mx, mx)
        self.group = _cliques(never, link)
        g = self.group
        self.source_cap = [_INF if source[i] >= mx[i] else float(source[i]) for i in range(n)]
        self.sink_cap = [_INF if sink[i] >= mx[i] else float(sink[i]) for i in range(n)]
        cross = (link > 0) & (np.asarray(g)[:, None] != np.asarray(g)[None, :])
        self.cross = [[(int(v), float(link[u, v])) for v in np.flatnonzero(cross[u])] for u in range(n)]
        has_cross = cross.any(axis=0) | cross.any(axis=1)
        self.simple = [bool(not has_cross[i] and self.source_cap[i] == _INF and self.sink_cap[i] == _INF) for i in range(n)]
        self.num_groups = max(g) + 1
        self.boundary_graph = self.num_groups == 1 and all(self.simple)

    # -- the graph ---------------------------------------------------------------------------------

    def graph(self, starts: Sequence[int], sizes: Sequence[int]):
        """``(num_vertices, tails, heads, caps, source, sink, node_arc)`` of the compressed graph;
        ``node_arc[i]`` is the arc carrying node ``i``'s flow (shared by simple nodes with one range;
        -1 for a node of size 0, which holds nothing)."""
        L = self.num_layers
        vid: dict = {}
        tails: list[int] = []
        heads: list[int] = []
        caps: list[float] = []
        merged: dict = {}

        def vertex(key) -> int:
            v = vid.get(key)
            if v is None:
                v = vid[key] = len(vid)
            return v

        def arc(u: int, v: int, c: float, merge: bool = False) -> int:
            if merge:
                a = merged.get((u, v))
                if a is not None:
                    caps[a] += c
                    return a
                merged[(u, v)] = len(tails)
            tails.append(u)
            heads.append(v)
            caps.append(c)
            return len(tails) - 1

        src, snk = vertex("source"), vertex("sink")
        node_arc = [0] * len(starts)
        ends = [s + k for s, k in zip(starts, sizes)]
        io: dict[int, tuple[int, int]] = {}
        fed: set = set()
        for i, (s, e) in enumerate(zip(starts, ends)):
            if e == s:  # the node holds nothing (a published layout may leave a node out)
                node_arc[i] = -1
                continue
            g = self.group[i]
            c = self.capacity[i][e - s - 1]
            if self.simple[i]:
                a, b = vertex((g, s)), vertex((g, e))
                node_arc[i] = arc(a, b, c, merge=True)
                for key, u, v in (((g, 0), src, a), ((g, L), b, snk)):
                    if (s == 0 if key[1] == 0 else e == L) and key not in fed:
                        fed.add(key)
                        arc(u, v, _INF)
                continue
            vin, vout = vertex(("in", i)), vertex(("out", i))
            io[i] = (vin, vout)
            node_arc[i] = arc(vin, vout, c)
            if s > 0:
                arc(vertex((g, s)), vin, _INF)
            elif self.source_cap[i] > 0:
                arc(src, vin, self.source_cap[i])
            if e < L:
                arc(vout, vertex((g, e)), _INF)
            elif self.sink_cap[i] > 0:
                arc(vout, snk, self.sink_cap[i])
        if io:
            starting: dict[int, list[int]] = {}
            for j in io:
                starting.setdefault(starts[j], []).append(j)
            for u in io:
                if ends[u] < L and ends[u] in starting:
                    targets = set(starting[ends[u]])
                    for v, c in self.cross[u]:
                        if v in targets:
                            arc(io[u][1], io[v][0], c)
        return len(vid), tails, heads, caps, src, snk, node_arc

    # -- scores ------------------------------------------------------------------------------------

    def value(self, starts: Sequence[int], sizes: Sequence[int]) -> float:
        """Exact max-flow (tokens/s) of the layout ``[starts[i], starts[i] + sizes[i])``."""
        nv, tails, heads, caps, s, t, _ = self.graph(starts, sizes)
        adj: list[list[int]] = [[] for _ in range(nv)]
        to: list[int] = []
        res: list[float] = []
        for u, v, c in zip(tails, heads, caps):
            adj[u].append(len(to))
            to.append(v)
            res.append(c)
            adj[v].append(len(to))
            to.append(u)
            res.append(0.0)
        return _dinic(nv, adj, to, res, s, t)

    def node_flows(self, starts: Sequence[int], sizes: Sequence[int]) -> tuple[float, list[float]]:
        """Max-flow value and the flow through each node (simple nodes sharing an arc split it in
        proportion to their capacities)."""
        nv, tails, heads, caps, s, t, node_arc = self.graph(starts, sizes)
        value, flows = max_flow_dinic(nv, tails, heads, caps, s, t)
        out = []
        for i, a in enumerate(node_arc):
            if a < 0:
                out.append(0.0)
                continue
            c = self.capacity[i][sizes[i] - 1]
            out.append(flows[a] * c / caps[a] if caps[a] > 0 else 0.0)
        return value, out

    def crossing_bound(self, starts: Sequence[int], sizes: Sequence[int]) -> float:
        """``min_l`` of the capacity of the nodes holding layer ``l``: an upper bound on :meth:`value`."""
        cover = [0.0] * self.num_layers
        for i, (s, k) in enumerate(zip(starts, sizes)):
            if k == 0:
                continue
            c = self.capacity[i][k - 1]
            for layer in range(s, s + k):
                cover[layer] += c
        return min(cover)

    def check_layout(self, starts: Sequence[int], sizes: Sequence[int]) -> None:
        """Raise ValueError unless every node holds ``1..K_i`` layers inside ``[0, L)``."""
        if len(starts) != len(self.capacity) or len(sizes) != len(self.capacity):
            raise ValueError(f"a layout needs one start and one size per node ({len(self.capacity)})")
        for i, (s, k) in enumerate(zip(starts, sizes)):
            if not (0 <= s and 1 <= k <= self.max_layers[i] and s + k <= self.num_layers):
                raise ValueError(f"node {i}: range [{s}, {s + k}) is not 1..{self.max_layers[i]} layers inside [0, {self.num_layers})")


def _cliques(never: np.ndarray, link: np.ndarray) -> list[int]:
    """Greedy partition into groups whose ordered pairs all have a link that never binds."""
    n = never.shape[0]
    both = never & never.T & (link > 0) & (link.T > 0)
    groups: list[list[int]] = []
    out = [0] * n
    for i in range(n):
        for gi, members in enumerate(groups):
            if all(both[i, j] for j in members):
                members.append(i)
                out[i] = gi
                break
        else:
            out[i] = len(groups)
            groups.append([i])
    return out
