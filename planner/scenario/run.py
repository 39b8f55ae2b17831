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
from planner.common.fileio import atomic_write_text
from planner.plans.io import write_plan
from planner.plans.schema import Plan
from planner.common.fileio import read_text

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
        if not p.is_file():
            raise InputError(f"{p}: scenario file not found")
        text, where = read_text(p), str(p)
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
    raw["exports"] = tuple(raw.get("exports", ()))
    return Scenario(**raw)


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
            f"{plan.report.objective:.0f} tokens here ({100 * (plan.report.objective / base.report.objective - 1):+.2f}%)\n"
        )
    if refused:
        summary += "".join(f"no {t} file: {why}\n" for t, why in refused.items())
    warnings = tuple(f"{e.target}: {w}" for e in exports for w in e.warnings)
    out.mkdir(parents=True, exist_ok=True)
    files = {"plan": str(write_plan(plan, out / "plan.json"))}
    for exp in exports:
        files[exp.target] = str(atomic_write_text(out / EXPORT_FILES[exp.target], exp.text))
    files["summary"] = str(atomic_write_text(out / "summary.txt", summary))
    return ScenarioResult(scenario, plan, files, summary, refused, warnings)
