"""Scenarios: a named set of inputs that `moeplan plan` runs end to end (plan, verify, summary, exports).

The default scenario ships with the package (``planner/data/scenarios/default.json``); a user scenario
is a JSON file with the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from planner.common.jsontext import parse_json_object
from planner.errors import InputError
from planner.plans.export import TARGETS, ExportRefused, export_plan
from planner.common.checks import check_number
from planner.common.fileio import atomic_write_text, ensure_dir, read_input_text
from planner.common.limits import MAX_GPUS, MAX_SLOTS
from planner.plans.io import write_plan
from planner.plans.schema import Plan

__all__ = ["Scenario", "ScenarioResult", "load_scenario", "run_scenario", "EXPORT_FILES"]

EXPORT_FILES = {
    "sglang": "sglang-expert-location.json",
    "vllm": "vllm-eplb-mapping.jsonl",
    "trtllm": "trtllm-moe-load-balancer.yaml",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    loads: str
    model: str
    num_gpus: int
    num_nodes: int = 1
    redundant_slots: int | None = None
    algorithm: str = "stepaware"
    policy: str = "auto"
    exports: tuple[str, ...] = ()
    compare_eplb: bool = True
    allow_unsupported_exports: bool = False


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    plan: Plan
    files: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    refused: dict[str, str] = field(default_factory=dict)  # target -> why no file was written
    warnings: tuple[str, ...] = ()


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Read a scenario JSON file; ``None`` gives the default scenario shipped with moeplan."""
    if path is None:
        text = (resources.files("planner") / "data" / "scenarios" / "default.json").read_text(encoding="utf-8")
        where = "default scenario"
    else:
        p = Path(path)
        text, where = read_input_text(p, "scenario file"), str(p)
    raw = parse_json_object(text, where)
    known = set(Scenario.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    for key in ("name", "loads", "model", "num_gpus"):
        if key not in raw:
            raise InputError(f"{where}: missing key {key!r}")
    bad = [t for t in raw.get("exports", []) if t not in TARGETS]
    if bad:
        raise InputError(f"{where}: exports: unknown targets {bad}; known: {', '.join(TARGETS)}")
    raw.setdefault("description", "")
    _check_types(raw, where)
    raw["exports"] = tuple(raw.get("exports", ()))
    return Scenario(**raw)


def _change(value: float, base: float) -> str:
    """`` (+1.23%)`` relative to ``base``; nothing when ``base`` is 0 (loads without tokens)."""
    return f" ({100 * (value / base - 1):+.2f}%)" if base else ""


#: scenario key -> (what it must be, the check); counts within the limits of planner.common.limits
_KEY_TYPES = {
    "name": "a string", "description": "a string", "loads": "a string", "model": "a string",
    "algorithm": "a string", "policy": "a string",
    "num_gpus": ("an integer", 1, MAX_GPUS), "num_nodes": ("an integer", 1, MAX_GPUS),
    "redundant_slots": ("an integer or null", 0, MAX_SLOTS),
    "exports": "a list of strings", "compare_eplb": "true or false", "allow_unsupported_exports": "true or false",
}


def _check_types(raw: dict, where: str) -> None:
    """Refuse a value of the wrong JSON type (``"num_gpus": "8"``, ``"redundant_slots": 8.5``) by key."""
    for key, value in raw.items():
        kind = _KEY_TYPES[key]
        if isinstance(kind, tuple):
            if value is None and "null" in kind[0]:
                continue
            try:
                check_number(key, value, low=kind[1], integer=True, high=kind[2])
            except InputError as exc:
                raise InputError(f"{where}: {exc.message}") from None
            continue
        ok = {"a string": isinstance(value, str), "true or false": isinstance(value, bool),
              "a list of strings": isinstance(value, list) and all(isinstance(v, str) for v in value)}[kind]
        if not ok:
            raise InputError(f"{where}: {key} must be {kind}, got {value!r}")


def run_scenario(scenario: Scenario, out_dir: str | Path) -> ScenarioResult:
    """Plan, verify, summarise and export one scenario into ``out_dir`` (created if missing)."""
    from planner.inputs.readers import read_loads
    from planner.replicas import plan_replicas

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    loads = read_loads(scenario.loads)
    plan = plan_replicas(
        loads,
        scenario.model,
        num_gpus=scenario.num_gpus,
        num_nodes=scenario.num_nodes,
        redundant_slots=scenario.redundant_slots,
        algorithm=scenario.algorithm,
        policy=scenario.policy,
    )
    exports, refused = [], {}
    for t in scenario.exports:  # render everything before writing anything
        try:
            exports.append(export_plan(plan, t, allow_unsupported=scenario.allow_unsupported_exports))
        except ExportRefused as exc:  # an engine that cannot take this plan or model: say so, write the rest
            switch = "; set allow_unsupported_exports to write it anyway" if "allow_unsupported" in exc.remedy else ""
            refused[t] = exc.message + switch
    summary = (
        f"scenario {scenario.name}: {scenario.description}\n"
        f"loads: {loads.source} ({loads.num_steps} step(s) x {loads.num_layers} layer(s) x {loads.num_experts} experts)\n\n"
        + plan.summary()
        + "\n"
    )
    if scenario.compare_eplb and scenario.algorithm != "eplb":
        base = plan_replicas(
            loads, scenario.model, num_gpus=scenario.num_gpus, num_nodes=scenario.num_nodes,
            redundant_slots=scenario.redundant_slots, algorithm="eplb", policy=scenario.policy,
        )
        m, mb = plan.replicas.predicted, base.replicas.predicted
        summary += (
            f"EPLB at the same slots (the engines' default): replayed balancedness {mb.replay_balancedness_mean:.4f} "
            f"vs {m.replay_balancedness_mean:.4f} here; busiest-GPU load {base.report.objective:.0f} vs "
            f"{plan.report.objective:.0f} tokens here{_change(plan.report.objective, base.report.objective)}\n"
        )
    if refused:
        summary += "".join(f"no {t} file: {why}\n" for t, why in refused.items())
    warnings = tuple(f"{e.target}: {w}" for e in exports for w in e.warnings)
    ensure_dir(out)
    files = {"plan": str(write_plan(plan, out / "plan.json"))}
    for exp in exports:
        files[exp.target] = str(atomic_write_text(out / EXPORT_FILES[exp.target], exp.text))
    files["summary"] = str(atomic_write_text(out / "summary.txt", summary))
    return ScenarioResult(scenario, plan, files, summary, refused, warnings)
