"""Cluster files: nodes (GPU type, GPUs per node, NIC, region), links, coordinator; and Helix's instances.

A user's cluster file (YAML or JSON; ``docs/cluster.md``, ``examples/cluster-mixed.yaml``)::

    name: mixed-fleet
    coordinator: {region: east, nic_bytes_per_s: 1.25e10}
    network:                       # optional: a full mesh with these defaults
      intra_region_bytes_per_s: 1.25e10
      inter_region_bytes_per_s: 1.25e9
      intra_region_latency_s: 0.0002
      inter_region_latency_s: 0.02
    nodes:
      - {name: h100, gpu: h100, gpus: 8, nic_bytes_per_s: 5.0e10, region: east}
      - {name: l4, gpu: l4, gpus: 4, nic_bytes_per_s: 1.25e10, region: west, count: 3}   # l4-0, l4-1, l4-2
    links:                         # optional: added to or replacing mesh links, both directions
      - {between: [h100, l4-0], bytes_per_s: 2.5e9, latency_s: 0.01}

``coordinator`` is the endpoint ``between`` names for the source and sink links. Without ``network``
every node needs a link in ``links`` (a node with none is an error). Bandwidths are bytes per second,
latencies seconds; every number is checked and every error names the node, link or field.

Helix's published instances (``moeplan_profiles/clusters/helix/``, Apache-2.0 derived data with its
README) are read by :func:`read_helix_instance`: their nodes carry the given capacity tables
``T_i(k)`` and their links the given token capacities, so the planner reproduces Helix's numbers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from planner.common.jsontext import parse_json_object
from planner.common.fileio import read_input_text
from planner.errors import InputError
from planner.profiles.registry import PROFILES_PACKAGE, get_gpu
from planner.profiles.schema import load_yaml_text

__all__ = [
    "ClusterNode",
    "ClusterLink",
    "Cluster",
    "COORDINATOR",
    "read_cluster",
    "parse_cluster",
    "read_helix_instance",
    "read_helix_layouts",
    "list_helix_instances",
    "HELIX_PREFIX",
]

#: the endpoint name of the source / sink (the coordinator) in links
COORDINATOR = "coordinator"
#: ``read_cluster("helix:single24-llama2-70b")`` reads a shipped Helix instance
HELIX_PREFIX = "helix:"
_HELIX_DIR = ("clusters", "helix")


@dataclass(frozen=True)
class ClusterNode:
    """One machine: ``gpus`` GPUs of one type, its NICs (bytes/s) and region.

    ``capacity_tokens_per_s`` is a given table ``T(k)``, ``k = 1..K`` (Helix's instances), else None:
    the planner derives it from the performance model.
    """

    name: str
    gpu: str
    gpus: int
    nic_in_bytes_per_s: float
    nic_out_bytes_per_s: float
    region: str
    capacity_tokens_per_s: tuple[float, ...] | None = None


@dataclass(frozen=True)
class ClusterLink:
    """A directed link; ``src`` a node or :data:`COORDINATOR` (the source), ``dst`` a node or the
    coordinator (the sink). ``capacity_tokens_per_s`` is given by Helix's instances, else None."""

    src: str
    dst: str
    bytes_per_s: float
    latency_s: float
    capacity_tokens_per_s: float | None = None


@dataclass(frozen=True)
class Cluster:
    """Nodes, directed links and the coordinator's NIC; ``given`` holds a Helix instance's model data
    (``num_layers``, ``token_size_bytes``, ``activation_size_bytes``, ``name``), None for a user file."""

    name: str
    nodes: tuple[ClusterNode, ...]
    links: tuple[ClusterLink, ...]
    coordinator_region: str | None
    coordinator_nic_bytes_per_s: float
    source: str
    given: dict | None = field(default=None, compare=False)

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def sha256(self) -> str:
        """Hash of every node and link field (not the file name)."""
        doc = {"nodes": [n.__dict__ for n in self.nodes], "links": [lk.__dict__ for lk in self.links],
               "coordinator": [self.coordinator_region, self.coordinator_nic_bytes_per_s], "given": self.given}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=list).encode()).hexdigest()


# -- user files ---------------------------------------------------------------------------------------


def read_cluster(path: str | Path) -> Cluster:
    """Read a cluster file (YAML or JSON), a Helix instance file, or ``helix:NAME`` (shipped).

    >>> c = read_cluster("helix:single24-llama2-70b")
    >>> len(c.nodes), c.given["num_layers"]
    (24, 80)
    """
    text_path = str(path)
    if text_path.startswith(HELIX_PREFIX):
        return read_helix_instance(text_path[len(HELIX_PREFIX):])
    p = Path(path)
    text = read_input_text(p, "cluster file")
    if p.suffix.lower() == ".json":
        doc = parse_json_object(text, str(p))
    else:
        doc = load_yaml_text(text, str(p))
    if isinstance(doc, dict) and "machine_num_dict" in doc:
        return _helix_cluster(doc, str(p), pruned=False)
    return parse_cluster(doc, str(p))


def _num(where: str, value: Any, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
        raise InputError(f"{where}: must be a number, got {value!r}", param="cluster")
    if (value <= 0) if positive else (value < 0):
        raise InputError(f"{where}: must be {'> 0' if positive else '>= 0'}, got {value!r}", param="cluster")
    return float(value)


def _fields(where: str, d: Any, allowed: set[str], required: set[str]) -> dict:
    if not isinstance(d, dict):
        raise InputError(f"{where}: must be a mapping, got {type(d).__name__}", param="cluster")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise InputError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(allowed))})", param="cluster")
    missing = sorted(required - set(d))
    if missing:
        raise InputError(f"{where}: missing field {missing[0]!r}", param="cluster")
    return d


_NODE_FIELDS = {"name", "gpu", "gpus", "nic_bytes_per_s", "nic_in_bytes_per_s", "nic_out_bytes_per_s", "region", "count"}
_NET_FIELDS = {"intra_region_bytes_per_s", "inter_region_bytes_per_s", "intra_region_latency_s", "inter_region_latency_s"}


def parse_cluster(doc: Any, where: str = "cluster") -> Cluster:
    """Validate a cluster document (the mapping of a cluster file) into a :class:`Cluster`."""
    d = _fields(where, doc, {"name", "coordinator", "network", "nodes", "links"}, {"nodes"})
    raw_nodes = d["nodes"]
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise InputError(f"{where}: nodes must be a non-empty list", param="cluster")
    nodes: list[ClusterNode] = []
    for j, raw in enumerate(raw_nodes):
        at = f"{where}: nodes[{j}]"
        r = _fields(at, raw, _NODE_FIELDS, {"name", "gpu", "region"})
        name = str(r["name"])
        at = f"{where}: node {name!r}"
        if not name or "/" in name or name in ("source", "sink", COORDINATOR):
            raise InputError(f"{at}: a node name is not empty, has no '/' and is not source, sink or coordinator",
                             param="cluster")
        gpus = r.get("gpus", 1)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
            raise InputError(f"{at}: gpus must be an integer >= 1, got {gpus!r}", param="cluster")
        try:
            gpu = get_gpu(str(r["gpu"])).id
        except InputError as exc:
            raise InputError(f"{at}: unknown GPU type {r['gpu']!r} ({exc})", param="cluster") from None
        nic = r.get("nic_bytes_per_s")
        nic_in = _num(f"{at}: nic_in_bytes_per_s", r.get("nic_in_bytes_per_s", nic))
        nic_out = _num(f"{at}: nic_out_bytes_per_s", r.get("nic_out_bytes_per_s", nic))
        count = r.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InputError(f"{at}: count must be an integer >= 1, got {count!r}", param="cluster")
        for c in range(count):
            nodes.append(ClusterNode(name if count == 1 else f"{name}-{c}", gpu, gpus, nic_in, nic_out, str(r["region"])))
    names = [n.name for n in nodes]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise InputError(f"{where}: node name {dup[0]!r} is used twice", param="cluster")
    coord = _fields(f"{where}: coordinator", d.get("coordinator", {}), {"region", "nic_bytes_per_s"}, set())
    coord_region = str(coord["region"]) if "region" in coord else nodes[0].region
    coord_nic = _num(f"{where}: coordinator.nic_bytes_per_s", coord.get("nic_bytes_per_s", 1e11))
    links: dict[tuple[str, str], ClusterLink] = {}
    if "network" in d:
        net = _fields(f"{where}: network", d["network"], _NET_FIELDS, {"intra_region_bytes_per_s", "inter_region_bytes_per_s"})
        bw = {k: _num(f"{where}: network.{k}", net[k]) for k in ("intra_region_bytes_per_s", "inter_region_bytes_per_s")}
        lat = {k: _num(f"{where}: network.{k}", net.get(k, 0.0), positive=False)
               for k in ("intra_region_latency_s", "inter_region_latency_s")}
        regions = {n.name: n.region for n in nodes} | {COORDINATOR: coord_region}
        ends = [*names, COORDINATOR]
        for a in ends:
            for b in ends:
                if a == b:
                    continue
                same = regions[a] == regions[b]
                links[(a, b)] = ClusterLink(a, b, bw["intra_region_bytes_per_s" if same else "inter_region_bytes_per_s"],
                                            lat["intra_region_latency_s" if same else "inter_region_latency_s"])
    known = set(names) | {COORDINATOR}
    for j, raw in enumerate(d.get("links") or []):
        at = f"{where}: links[{j}]"
        r = _fields(at, raw, {"between", "from", "to", "bytes_per_s", "latency_s"}, {"bytes_per_s"})
        if "between" in r:
            pair = r["between"]
            if not isinstance(pair, list) or len(pair) != 2:
                raise InputError(f"{at}: between must name two endpoints", param="cluster")
            pairs = [(str(pair[0]), str(pair[1])), (str(pair[1]), str(pair[0]))]
        elif "from" in r and "to" in r:
            pairs = [(str(r["from"]), str(r["to"]))]
        else:
            raise InputError(f"{at}: give between: [a, b] or from / to", param="cluster")
        for a, b in pairs:
            for e in (a, b):
                if e not in known:
                    raise InputError(f"{at}: unknown endpoint {e!r} (nodes or {COORDINATOR!r})", param="cluster")
            if a == b:
                raise InputError(f"{at}: a link joins two different endpoints, got {a!r} twice", param="cluster")
        bw = _num(f"{at} ({pairs[0][0]} -> {pairs[0][1]}): bytes_per_s", r["bytes_per_s"])
        lat = _num(f"{at}: latency_s", r.get("latency_s", 0.0), positive=False)
        for a, b in pairs:
            links[(a, b)] = ClusterLink(a, b, bw, lat)
    touched = {e for pair in links for e in pair}
    lonely = [n for n in names if n not in touched]
    if lonely:
        raise InputError(f"{where}: node {lonely[0]!r} has no link (give network: defaults or a link naming it)",
                         param="cluster")
    return Cluster(str(d.get("name", Path(where).stem)), tuple(nodes), tuple(links[k] for k in sorted(links)),
                   coord_region, coord_nic, where)


# -- Helix's instances --------------------------------------------------------------------------------


def _helix_dir():
    return files(PROFILES_PACKAGE).joinpath(*_HELIX_DIR)


def list_helix_instances() -> list[str]:
    """Names of the shipped Helix instances.

    >>> "hetero42-llama2-70b" in list_helix_instances()
    True
    """
    return sorted(e.name[:-5] for e in _helix_dir().iterdir() if e.name.endswith(".json"))


def _helix_doc(name: str) -> dict:
    if name not in list_helix_instances():
        raise InputError(f"unknown Helix instance {name!r}; known: {', '.join(list_helix_instances())}", param="cluster")
    return json.loads(_helix_dir().joinpath(f"{name}.json").read_text(encoding="utf-8"))


def read_helix_instance(name: str, *, pruned: bool = False) -> Cluster:
    """A shipped Helix instance; ``pruned`` keeps only the links of its published pruned runs."""
    return _helix_cluster(_helix_doc(name), f"{HELIX_PREFIX}{name}", pruned=pruned)


def read_helix_layouts(name: str) -> list[dict]:
    """The published layouts of a Helix instance: ``{name, ranges, objective_tokens_per_s, pruned}``;
    ``ranges[i] = [first, last_exclusive]`` or None (node unused); the objective is the published MILP
    value when the layout is a published run's output, else None."""
    doc = _helix_doc(name)
    lay = json.loads(_helix_dir().joinpath("layouts", f"{name}.layouts.json").read_text(encoding="utf-8"))
    out = []
    for entry in lay["layouts"]:
        paths = {entry["repo_path"], *entry.get("identical_copies", [])}
        runs = [r for r in doc["published"]["milp_runs"] if r["layout_file"] in paths]
        for run in runs or [None]:
            out.append({"name": entry["name"], "ranges": entry["ranges"],
                        "objective_tokens_per_s": run["objective_tokens_per_s"] if run else None,
                        "pruned": bool(run["pruned"]) if run else False})
    return out


def _helix_cluster(doc: dict, where: str, *, pruned: bool) -> Cluster:
    try:
        model = doc["model"]
        keep = None
        if pruned:
            if not doc.get("pruning", {}).get("pruned_links"):
                raise InputError(f"{where}: this instance has no pruned run", param="pruned")
            keep = {(str(a), str(b)) for a, b in doc["pruning"]["pruned_links"]}
        nodes = tuple(
            ClusterNode(str(n["id"]), str(n["gpu_type"]), 1, float(n["inbound_nic_bytes_per_s"]),
                        float(n["outbound_nic_bytes_per_s"]), str(n.get("region", 0)),
                        tuple(float(x) for x in n["throughput_tokens_per_s"]))
            for n in doc["nodes"]
        )
        links = []
        for e in doc["links"]:
            a, b = str(e["from"]), str(e["to"])
            if keep is not None and (a, b) not in keep:
                continue
            links.append(ClusterLink(COORDINATOR if a == "source" else a, COORDINATOR if b == "sink" else b,
                                     float(e["bandwidth_bytes_per_s"]), float(e["latency_s"]),
                                     float(e["capacity_tokens_per_s"])))
        coord = doc.get("coordinator", {})
        given = {"name": model["name"], "num_layers": int(model["num_layers"]),
                 "token_size_bytes": float(model["token_size_bytes"]),
                 "activation_size_bytes": float(model["activation_size_bytes"]), "pruned": pruned}
        return Cluster(doc.get("instance", where) + ("-pruned" if pruned else ""), nodes, tuple(links), None,
                       float(coord.get("source_outbound_nic_bytes_per_s", 1e10)), where, given)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where}: not a Helix instance file ({type(exc).__name__}: {exc})", param="cluster") from None
