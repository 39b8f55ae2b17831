"""Scenario files: the inputs of the main job (``moeplan plan SCENARIO.yaml``), checked before any work.

A scenario is YAML or JSON (``docs/scenarios.md`` documents every key)::

    name: mixtral-azure-h100
    model: mixtral-8x7b                  # a shipped model id or a profile file
    gpus: [h100, a100-80g]               # GPU type(s): a deployment search on each, the cheapest per token wins
    num_gpus: 16                         # the GPU budget (or rate_req_per_s: the fewest GPUs for that rate)
    slo: {ttft_ms: 2000, tpot_ms: 50}    # limits at the 90th percentile (slo.percentile)
    workload: {trace: builtin:azure-2023-conv}     # or {isl: 4000, osl: 500}
    loads: builtin:mistral-github        # measured expert loads: replica plans per pool
    running_plan: {loads: builtin:mistral-arxiv}   # or a plan file: the migration schedule to the new plans
    fleet: {gpus: [h100, a100-80g, l40s], rate_req_per_s: 20}   # the cheapest GPU mix (Mélange)
    cluster: {...}                       # a mixed fleet you own (inline, a file or helix:NAME): layer placement
    exports: [sglang, vllm, trtllm]

Without ``gpu``/``gpus``, ``fleet`` and ``cluster`` the scenario is replica-only (the first format):
``loads``, ``model``, ``num_gpus`` (EP ranks) and the replica options. Relative paths are relative to the
scenario file. Every value is checked here (type, integer-ness, finite, range), before any solver runs.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from planner.common.fileio import read_input_text
from planner.common.limits import MAX_GPUS, MAX_SLOTS
from planner.errors import InputError
from planner.plans.export import TARGETS

__all__ = ["Scenario", "load_scenario", "parse_scenario", "list_builtin_scenarios", "DEFAULT_SCENARIO"]

#: the scenario ``moeplan plan`` runs without an argument (shipped with the package)
DEFAULT_SCENARIO = "default"

_KEYS = {
    "name", "description", "model", "gpu", "gpus", "num_gpus", "num_nodes", "rate_req_per_s", "slo", "workload",
    "loads", "redundant_slots", "algorithm", "policy", "running_plan", "fleet", "cluster", "exports",
    "compare_eplb", "allow_unsupported_exports", "prices", "precision", "spare_slots", "objective", "load",
}
_SLO_KEYS = {"ttft_ms", "tpot_ms", "percentile"}
_WORKLOAD_KEYS = {"trace", "isl", "osl", "num_requests"}
_FLEET_KEYS = {"gpus", "rate_req_per_s", "available_gpus"}
_PRECISION_KEYS = {"weights", "experts", "kv_cache", "activations"}


@dataclass(frozen=True)
class Scenario:
    """A checked scenario (module docstring). ``base`` is the folder relative paths are read from."""

    name: str
    model: str
    description: str = ""
    gpus: tuple[str, ...] = ()
    num_gpus: int | None = None
    num_nodes: int = 1
    rate_req_per_s: float | None = None
    slo: dict = field(default_factory=dict)
    workload: dict = field(default_factory=dict)
    loads: str | None = None
    redundant_slots: int | None = None
    algorithm: str = "stepaware"
    policy: str = "auto"
    running_plan: str | dict | None = None
    fleet: dict | None = None
    cluster: str | dict | None = None
    exports: tuple[str, ...] = ()
    compare_eplb: bool = True
    allow_unsupported_exports: bool = False
    prices: dict = field(default_factory=dict)
    precision: dict = field(default_factory=dict)
    spare_slots: int = 1
    objective: str = "max_rate"
    load: str = "open"
    base: str = "."

    @property
    def replica_only(self) -> bool:
        return not self.gpus and self.fleet is None and self.cluster is None

    def to_dict(self) -> dict:
        """The scenario as run (JSON-ready, stable key order), file values resolved against its folder."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "base"}
        if self.loads:
            d["loads"] = self.path(self.loads)
        if "trace" in self.workload:
            d["workload"] = {**self.workload, "trace": self.path(self.workload["trace"])}
        if isinstance(self.running_plan, str):
            d["running_plan"] = self.path(self.running_plan)
        elif isinstance(self.running_plan, dict):
            d["running_plan"] = {"loads": self.path(self.running_plan["loads"])}
        if isinstance(self.cluster, str):
            d["cluster"] = self.path(self.cluster)
        return json.loads(json.dumps(d, sort_keys=True, default=list))

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def path(self, value: str) -> str:
        """A file value resolved against the scenario's folder (``builtin:``/``helix:`` names unchanged)."""
        if ":" in value.split("/")[0] or Path(value).is_absolute():
            return value
        return str(Path(self.base) / value)


def list_builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped with moeplan (``builtin:NAME``)."""
    folder = resources.files("planner") / "data" / "scenarios"
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith((".yaml", ".json")))


def _builtin_text(name: str) -> str:
    folder = resources.files("planner") / "data" / "scenarios"
    for ext in (".yaml", ".json"):
        f = folder / f"{name}{ext}"
        if f.is_file():
            return f.read_text(encoding="utf-8")
    raise InputError(f"unknown scenario builtin:{name}; known: {', '.join(list_builtin_scenarios())}")


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Read and check a scenario file (YAML or JSON); ``builtin:NAME`` a shipped one; ``None``: the default."""
    from planner.profiles.schema import load_yaml_text

    if path is None or str(path).startswith("builtin:"):
        name = DEFAULT_SCENARIO if path is None else str(path)[len("builtin:"):]
        text = _builtin_text(name)
        where, base = "default scenario" if path is None else str(path), "."
    else:
        p = Path(path)
        text = read_input_text(p, "scenario file")
        where, base = str(p), str(p.parent)
    doc = load_yaml_text(text, where)
    return parse_scenario(doc, where, base=base)


def _int(where: str, key: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise InputError(f"{where}: {key}: must be a whole number, got {v!r}")
    v = int(v)
    if not lo <= v <= hi:
        raise InputError(f"{where}: {key}: must be in [{lo}, {hi}], got {v}")
    return v


def _num(where: str, key: str, v: Any, lo: float, hi: float, *, open_lo: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{where}: {key}: must be a finite number, got {v!r}")
    if (v <= lo if open_lo else v < lo) or v > hi:
        raise InputError(f"{where}: {key}: must be in {'(' if open_lo else '['}{lo}, {hi}], got {v}")
    return float(v)


def _str(where: str, key: str, v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise InputError(f"{where}: {key}: must be a non-empty string, got {v!r}")
    return v


def _keys(where: str, key: str, d: Any, allowed: set[str]) -> dict:
    if not isinstance(d, dict):
        raise InputError(f"{where}: {key}: must be a mapping, got {type(d).__name__}")
    unknown = sorted(set(map(str, d)) - allowed)
    if unknown:
        raise InputError(f"{where}: {key}: unknown keys {unknown}; known: {sorted(allowed)}")
    return d


def _gpu_list(where: str, key: str, v: Any) -> tuple[str, ...]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not items:
        raise InputError(f"{where}: {key}: must be a GPU type or a non-empty list of them, got {v!r}")
    out = tuple(_str(where, f"{key}[{i}]", g) for i, g in enumerate(items))
    if len(set(out)) != len(out):
        raise InputError(f"{where}: {key}: a GPU type is listed twice: {list(out)}")
    return out


def parse_scenario(doc: Any, where: str = "scenario", *, base: str = ".") -> Scenario:
    """Check a scenario mapping (module docstring) and return it as a :class:`Scenario`."""
    raw = _keys(where, "scenario", doc, _KEYS)
    for key in ("name", "model"):
        if key not in raw:
            raise InputError(f"{where}: missing key {key!r}")
    out: dict[str, Any] = {"name": _str(where, "name", raw["name"]), "model": _str(where, "model", raw["model"]),
                           "base": base}
    if "description" in raw:
        if not isinstance(raw["description"], str):
            raise InputError(f"{where}: description: must be a string")
        out["description"] = raw["description"]
    if "gpu" in raw and "gpus" in raw:
        raise InputError(f"{where}: give gpu or gpus, not both")
    if "gpu" in raw or "gpus" in raw:
        key = "gpu" if "gpu" in raw else "gpus"
        out["gpus"] = _gpu_list(where, key, raw[key])
    if "num_gpus" in raw:
        out["num_gpus"] = _int(where, "num_gpus", raw["num_gpus"], 1, MAX_GPUS)
    if "num_nodes" in raw:
        out["num_nodes"] = _int(where, "num_nodes", raw["num_nodes"], 1, 512)
    if "rate_req_per_s" in raw:
        out["rate_req_per_s"] = _num(where, "rate_req_per_s", raw["rate_req_per_s"], 0, 1e6)
    if "redundant_slots" in raw and raw["redundant_slots"] is not None:
        out["redundant_slots"] = _int(where, "redundant_slots", raw["redundant_slots"], 0, MAX_SLOTS)
    if "spare_slots" in raw:
        out["spare_slots"] = _int(where, "spare_slots", raw["spare_slots"], 0, 64)
    for key in ("algorithm", "policy", "objective", "load"):
        if key in raw:
            out[key] = _str(where, key, raw[key])
    if out.get("load", "open") not in ("open", "closed"):
        raise InputError(f"{where}: load: must be open or closed, got {out['load']!r}")
    if out.get("load") == "closed" and "rate_req_per_s" in out:
        raise InputError(f"{where}: load: a closed loop has no arrival rate to serve; give num_gpus, not rate_req_per_s")
    for key in ("compare_eplb", "allow_unsupported_exports"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise InputError(f"{where}: {key}: must be true or false, got {raw[key]!r}")
            out[key] = raw[key]
    if "loads" in raw:
        out["loads"] = _str(where, "loads", raw["loads"])
    if "exports" in raw:
        ex = raw["exports"]
        if not isinstance(ex, list) or not all(isinstance(t, str) for t in ex):
            raise InputError(f"{where}: exports: must be a list of engine names")
        bad = [t for t in ex if t not in TARGETS]
        if bad:
            raise InputError(f"{where}: exports: unknown targets {bad}; known: {', '.join(TARGETS)}")
        out["exports"] = tuple(ex)
    if "slo" in raw:
        slo = _keys(where, "slo", raw["slo"], _SLO_KEYS)
        for key in ("ttft_ms", "tpot_ms"):
            if key not in slo:
                raise InputError(f"{where}: slo: missing key {key!r}")
        out["slo"] = {"ttft_ms": _num(where, "slo.ttft_ms", slo["ttft_ms"], 0, 3.6e6),
                      "tpot_ms": _num(where, "slo.tpot_ms", slo["tpot_ms"], 0, 3.6e6),
                      "percentile": _num(where, "slo.percentile", slo.get("percentile", 90), 0, 100)}
    if "workload" in raw:
        wl = _keys(where, "workload", raw["workload"], _WORKLOAD_KEYS)
        w: dict[str, Any] = {}
        if "trace" in wl:
            if "isl" in wl or "osl" in wl:
                raise InputError(f"{where}: workload: give trace or isl/osl, not both")
            w["trace"] = _str(where, "workload.trace", wl["trace"])
        elif "isl" in wl and "osl" in wl:
            w["isl"] = _int(where, "workload.isl", wl["isl"], 1, 1 << 20)
            w["osl"] = _int(where, "workload.osl", wl["osl"], 1, 1 << 20)
        else:
            raise InputError(f"{where}: workload: give trace, or isl and osl")
        if "num_requests" in wl:
            w["num_requests"] = _int(where, "workload.num_requests", wl["num_requests"], 10, 100_000)
        out["workload"] = w
    if "running_plan" in raw:
        rp = raw["running_plan"]
        if isinstance(rp, dict):
            _keys(where, "running_plan", rp, {"loads"})
            out["running_plan"] = {"loads": _str(where, "running_plan.loads", rp.get("loads"))}
        else:
            out["running_plan"] = _str(where, "running_plan", rp)
    if "fleet" in raw:
        fl = _keys(where, "fleet", raw["fleet"], _FLEET_KEYS)
        if "gpus" not in fl:
            raise InputError(f"{where}: fleet: missing key 'gpus'")
        f: dict[str, Any] = {"gpus": list(_gpu_list(where, "fleet.gpus", fl["gpus"]))}
        if "rate_req_per_s" in fl:
            f["rate_req_per_s"] = _num(where, "fleet.rate_req_per_s", fl["rate_req_per_s"], 0, 1e6)
        if "available_gpus" in fl:
            av = _keys(where, "fleet.available_gpus", fl["available_gpus"], set(f["gpus"]))
            f["available_gpus"] = {g: _int(where, f"fleet.available_gpus.{g}", n, 0, 1 << 20) for g, n in av.items()}
        out["fleet"] = f
    if "cluster" in raw:
        cl = raw["cluster"]
        if not isinstance(cl, (str, dict)):
            raise InputError(f"{where}: cluster: must be a file, helix:NAME or an inline cluster")
        out["cluster"] = cl
    if "prices" in raw:
        pr = raw["prices"]
        if not isinstance(pr, dict):
            raise InputError(f"{where}: prices: must map GPU types to USD per GPU-hour")
        out["prices"] = {str(g): _num(where, f"prices.{g}", v, 0, 1e4) for g, v in pr.items()}
    if "precision" in raw:
        pc = _keys(where, "precision", raw["precision"], _PRECISION_KEYS)
        out["precision"] = {k: _str(where, f"precision.{k}", v) for k, v in pc.items()}
    sc = Scenario(**out)
    _check_combination(sc, where)
    return sc


def _check_combination(sc: Scenario, where: str) -> None:
    if sc.replica_only:
        for key in ("loads", "num_gpus"):
            if getattr(sc, key) is None:
                raise InputError(f"{where}: a replica-only scenario (no gpu, fleet or cluster) needs {key!r}")
        return
    if sc.gpus:
        if (sc.num_gpus is None) == (sc.rate_req_per_s is None):
            raise InputError(f"{where}: with gpu(s), give num_gpus (a budget) or rate_req_per_s (a target), one of them")
    if (sc.gpus or sc.fleet is not None) and not sc.slo:
        raise InputError(f"{where}: a deployment or fleet search needs slo: {{ttft_ms, tpot_ms}}")
    if (sc.gpus or sc.fleet is not None) and not sc.workload:
        raise InputError(f"{where}: a deployment or fleet search needs workload: {{trace}} or {{isl, osl}}")
    if sc.fleet is not None and "rate_req_per_s" not in sc.fleet and sc.rate_req_per_s is None and not sc.gpus:
        raise InputError(f"{where}: fleet: needs rate_req_per_s (or gpus + num_gpus to take the chosen deployment's rate)")
    if sc.running_plan is not None and sc.loads is None:
        raise InputError(f"{where}: running_plan needs loads (the new replica plans are made from them)")
