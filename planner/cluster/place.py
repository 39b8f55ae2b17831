"""``plan_cluster``: layer ranges for every node of a heterogeneous cluster, by max-flow (Helix-class).

cluster file -> capacity tables (given, or :mod:`planner.cluster.capacity`) -> the instance's arrays
-> :func:`solvers.layer_placement.place_layers` (seeds, stage-chain MILP, annealing, bounds) -> the
layout's flow recomputed independently in networkx (:mod:`planner.cluster.graph`) -> a
:class:`~planner.plans.schema.ClusterPlan`, verified by :func:`planner.cluster.verify.verify_cluster`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from planner import __version__
from planner.cluster.capacity import NodeTables, node_tables
from planner.cluster.graph import SINK, SOURCE, build_flow_graph, decompose_pipelines, layout_max_flow
from planner.common.numerics import round_float
from planner.common.tables import format_table
from planner.errors import InputError
from planner.inputs.cluster import COORDINATOR, Cluster, read_cluster
from planner.plans.schema import (
    ClusterEdgeRecord,
    ClusterInputs,
    ClusterNodeRecord,
    ClusterPlan,
    ClusterReport,
    PipelineRecord,
    ToolInfo,
)
from solvers.layer_flow import LayoutFlow
from solvers.layer_placement import PlacementResult, place_layers

__all__ = ["ClusterResult", "plan_cluster", "cluster_instance", "ClusterInstance"]


@dataclass(frozen=True)
class ClusterInstance:
    """A cluster as arrays for ``solvers/``: the nodes that can hold a layer (``index`` into the
    cluster's nodes), their tables, links, source and sink capacities (tokens/s) and type labels."""

    cluster: Cluster
    tables: NodeTables
    index: tuple[int, ...]
    link: np.ndarray
    source: np.ndarray
    sink: np.ndarray
    types: tuple[str, ...]

    def flow(self) -> LayoutFlow:
        return LayoutFlow(self.tables.num_layers, [self.tables.tables[i] for i in self.index], self.link,
                          self.source, self.sink)


def cluster_instance(cluster: Cluster, tables: NodeTables, *, prune_keep: int | None = None) -> ClusterInstance:
    """The arrays of a cluster; ``prune_keep`` keeps each node's fastest ``prune_keep`` outgoing and
    incoming links (Helix's pruning, ``min_keep = max_keep``), the coordinator's links always."""
    index = tuple(i for i, t in enumerate(tables.tables) if t)
    pos = {cluster.nodes[i].name: j for j, i in enumerate(index)}
    n = len(index)
    link, source, sink = np.zeros((n, n)), np.zeros(n), np.zeros(n)
    for lk in cluster.links:
        if lk.capacity_tokens_per_s is not None:
            cap = lk.capacity_tokens_per_s
        else:
            per = tables.token_bytes if COORDINATOR in (lk.src, lk.dst) else tables.activation_bytes
            cap = lk.bytes_per_s / per
        if lk.src == COORDINATOR and lk.dst in pos:
            source[pos[lk.dst]] = cap
        elif lk.dst == COORDINATOR and lk.src in pos:
            sink[pos[lk.src]] = cap
        elif lk.src in pos and lk.dst in pos:
            link[pos[lk.src], pos[lk.dst]] = cap
    if prune_keep is not None:
        if isinstance(prune_keep, bool) or not isinstance(prune_keep, int) or prune_keep < 1:
            raise InputError(f"must be an integer >= 1, got {prune_keep!r}", param="prune_keep")
        keep = np.zeros_like(link, dtype=bool)
        for u in range(n):
            order = np.argsort(-link[u], kind="stable")[:prune_keep]
            keep[u, order[link[u, order] > 0]] = True
            order = np.argsort(-link[:, u], kind="stable")[:prune_keep]
            keep[order[link[order, u] > 0], u] = True
        link = np.where(keep, link, 0.0)
    types = tuple(f"{cluster.nodes[i].gpu}x{cluster.nodes[i].gpus}" if cluster.given is None else cluster.nodes[i].gpu
                  for i in index)
    return ClusterInstance(cluster, tables, index, link, source, sink, types)


@dataclass(frozen=True)
class ClusterResult:
    """The plan, the search behind it and the wall time; ``table()`` / ``plot()`` / ``to_dict()``."""

    plan: ClusterPlan
    placement: PlacementResult
    wall_time_s: float
    extra: dict = field(default_factory=dict)

    def table(self, *, wall_time: bool = True) -> str:
        """Per-node layer ranges and flows, then the pipelines and the bounds (and the search's wall time,
        unless ``wall_time=False``: files that must be the same bytes for the same inputs)."""
        p = self.plan
        rows = [[n.name, n.gpu, n.gpus, n.region, f"[{n.first_layer}, {n.last_layer})", n.last_layer - n.first_layer,
                 f"{n.capacity_tokens_per_s:,.1f}", f"{n.flow_tokens_per_s:,.1f}"] for n in p.nodes]
        head = format_table(["node", "gpu", "gpus", "region", "layers", "k", "T(k) tok/s", "flow tok/s"], rows,
                            title=f"{p.inputs.cluster}: {p.inputs.model}, {p.inputs.num_layers} layers")
        pipes = format_table(["pipeline", "VLLM_PP_LAYER_PARTITION", "tok/s"],
                             [[" > ".join(pl.nodes), pl.layer_partition, f"{pl.rate_tokens_per_s:,.1f}"]
                              for pl in p.pipelines[:12]])
        more = f"\n({len(p.pipelines) - 12} more pipelines in the plan)" if len(p.pipelines) > 12 else ""
        gap = f"{p.report.gap:.1%}" if p.report.gap is not None else "n/a"
        tail = (f"throughput {p.throughput_tokens_per_s:,.1f} tok/s ({p.method}); upper bound {p.report.bound:,.1f} "
                f"(layer-crossing {p.crossing_bound_tokens_per_s:,.1f}, Helix {p.helix_upper_bound_tokens_per_s:,.1f}); "
                f"gap {gap}; {p.report.status}" + (f"; {self.wall_time_s:.1f} s" if wall_time else ""))
        return "\n".join([head, "", pipes + more, "", tail, *p.notes])

    def to_dict(self) -> dict:
        return {"plan": self.plan.model_dump(), "wall_time_s": round(self.wall_time_s, 3),
                "seeds": [{"name": s.name, "value": s.value} for s in self.placement.seeds[:10]],
                "chains": list(self.placement.chains)}

    def plot(self, path) -> None:
        """Layer ranges (bars per node, shaded by flow) and the flow per node, as a PNG."""
        from planner.cluster.plots import plot_layout

        plot_layout(self.plan, path)


def plan_cluster(cluster: Cluster | str, model: str | None = None, *, precision: Mapping[str, Any] | None = None,
                 isl: int = 1024, osl: int = 256, max_batch: int = 256, max_weight_share: float = 0.5,
                 prune_keep: int | None = None, iterations: int = 20000, chains: int = 2, seed: int = 0,
                 workers: int = 1, chain_milp: bool = True, time_limit_s: float = 60.0) -> ClusterResult:
    """Place contiguous layer ranges on every node of a cluster to maximise the max-flow (tokens/s).

    Parameters
    ----------
    cluster : a :class:`~planner.inputs.cluster.Cluster`, a cluster file or ``helix:NAME``.
    model : a shipped model (or profile file); None for a Helix instance (given tables).
    precision : number-format overrides (``{"weights": "fp8", "kv_cache": "fp8"}``), as ``estimate``.
    isl, osl, max_batch, max_weight_share : the capacity model (:mod:`planner.cluster.capacity`).
    prune_keep : keep only each node's fastest ``prune_keep`` links (Helix's pruning); None: all.
    iterations, chains, seed : the annealing work budget (moves per chain), chains and seed.
    workers : processes for the chains (the plan does not depend on it).
    chain_milp : run the stage-chain MILP (:mod:`solvers.layer_milp`).
    time_limit_s : safety cap on the whole search; a stop by it is reported, the plan is still valid.

    Returns
    -------
    ClusterResult
        Its plan passes :func:`~planner.cluster.verify.verify_cluster`.

    Raises
    ------
    InputError
        A bad cluster file or argument (the message names the node, link or field).
    Infeasible
        The model fits nowhere, or the cluster holds fewer layers than the model has.

    Examples
    --------
    >>> r = plan_cluster("helix:single8-l4-llama1-30b", iterations=200, chain_milp=False)
    >>> r.plan.throughput_tokens_per_s >= 214.98
    True
    """
    t_start = time.perf_counter()
    if not isinstance(cluster, Cluster):
        cluster = read_cluster(cluster)
    if not (isinstance(time_limit_s, (int, float)) and time_limit_s > 0):
        raise InputError(f"must be > 0, got {time_limit_s!r}", param="time_limit_s")
    for name, v, low in (("iterations", iterations, 0), ("chains", chains, 1), ("workers", workers, 1), ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise InputError(f"must be an integer >= {low}, got {v!r}", param=name)
    tables = node_tables(cluster, model, precision=precision, isl=isl, osl=osl, max_batch=max_batch,
                         max_weight_share=max_weight_share)
    inst = cluster_instance(cluster, tables, prune_keep=prune_keep)
    lf = inst.flow()
    chain_cap = time_limit_s / 3 if chain_milp else 0.0
    result = place_layers(lf, inst.types, iterations=iterations, chains=chains, seed=seed,
                          time_limit_s=max(0.1, (time_limit_s - chain_cap) / (1 if workers > 1 else chains)),
                          workers=workers, source_caps=inst.source, sink_caps=inst.sink, chain_milp=chain_milp,
                          chain_time_limit_s=max(0.1, chain_cap))
    params = {"precision": None if precision is None else ",".join(f"{k}={v}" for k, v in sorted(precision.items())),
              "isl": isl, "osl": osl, "max_batch": max_batch, "max_weight_share": max_weight_share,
              "prune_keep": prune_keep, "iterations": iterations, "chains": chains, "seed": seed,
              "chain_milp": chain_milp, "time_limit_s": float(time_limit_s)}
    plan = build_cluster_plan(inst, result, model or cluster.given["name"], params)
    return ClusterResult(plan, result, time.perf_counter() - t_start)


def build_cluster_plan(inst: ClusterInstance, result: PlacementResult, model: str, params: dict) -> ClusterPlan:
    """The plan of a placement: flows recomputed in networkx (the solver's value must agree)."""
    cluster, tables = inst.cluster, inst.tables
    L = tables.num_layers
    names = [cluster.nodes[i].name for i in inst.index]
    ranges = [(s, s + k) for s, k in zip(result.starts, result.sizes)]
    caps = [tables.tables[i][k - 1] for i, k in zip(inst.index, result.sizes)]
    nic = [(cluster.nodes[i].nic_in_bytes_per_s / tables.activation_bytes,
            cluster.nodes[i].nic_out_bytes_per_s / tables.activation_bytes) for i in inst.index]
    links = _link_map(inst, names)
    G = build_flow_graph(L, ranges, caps, nic, links, names)
    value, flow = layout_max_flow(G)
    if abs(value - result.value) > 1e-6 * max(1.0, value):
        raise RuntimeError(f"fast evaluator {result.value!r} and networkx {value!r} disagree")  # a bug, not bad input
    edges = []
    for u, nbrs in sorted(flow.items()):
        out = sum(nbrs.values())
        for v, f in sorted(nbrs.items()):
            if "/start" in v or "/end" in v or "/out" in v:  # inside a node
                continue
            src = SOURCE if u == SOURCE else u.split("/")[0]
            dst = SINK if v == SINK else v.split("/")[0]
            edges.append(ClusterEdgeRecord(src=src, dst=dst, capacity_tokens_per_s=round_float(G[u][v]["capacity"]),
                                           flow_tokens_per_s=round_float(f),
                                           routing_weight=round_float(f / out) if out > 0 else 0.0))
    records = []
    for j, i in enumerate(inst.index):
        node = cluster.nodes[i]
        records.append(ClusterNodeRecord(
            name=node.name, gpu=node.gpu, gpus=node.gpus, region=node.region, first_layer=ranges[j][0],
            last_layer=ranges[j][1], capacity_table_tokens_per_s=[round_float(x) for x in tables.tables[i]],
            capacity_tokens_per_s=round_float(caps[j]), nic_in_tokens_per_s=round_float(nic[j][0]),
            nic_out_tokens_per_s=round_float(nic[j][1]),
            flow_tokens_per_s=round_float(flow[f"{node.name}/start"][f"{node.name}/end"])))
    where = dict(zip(names, ranges))
    pipes = [PipelineRecord(nodes=nodes, layer_partition=",".join(str(where[x][1] - where[x][0]) for x in nodes),
                            rate_tokens_per_s=round_float(rate)) for nodes, rate in decompose_pipelines(flow)]
    rep = result.report
    report = ClusterReport(status=rep.status, stop_reason=rep.stop_reason, objective=round_float(value),
                           bound=round_float(rep.bound) if rep.bound is not None else None,
                           gap=round_float(rep.gap) if rep.gap is not None else None,
                           solver=rep.solver, solver_version=rep.solver_version, message=rep.message)
    return ClusterPlan(
        tool=ToolInfo(version=__version__),
        inputs=ClusterInputs(cluster=cluster.source, cluster_sha256=cluster.sha256(), model=model, num_layers=L,
                             capacity_source=tables.source, parameters=params),
        nodes=records, edges=edges, pipelines=pipes, throughput_tokens_per_s=round_float(value),
        helix_upper_bound_tokens_per_s=round_float(result.helix_bound),
        crossing_bound_tokens_per_s=round_float(result.crossing_bound), method=result.method, report=report,
        notes=list(tables.notes),
    )


def _link_map(inst: ClusterInstance, names: list[str]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for j, a in enumerate(names):
        if inst.source[j] > 0:
            out[(SOURCE, a)] = float(inst.source[j])
        if inst.sink[j] > 0:
            out[(a, SINK)] = float(inst.sink[j])
        for k, b in enumerate(names):
            if inst.link[j, k] > 0:
                out[(a, b)] = float(inst.link[j, k])
    return out
