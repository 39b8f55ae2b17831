"""Scenarios: the main job. ``moeplan plan [SCENARIO]`` runs one end to end into an output folder.

A full scenario (``gpu(s)``, ``fleet`` or ``cluster``; :mod:`planner.scenario.spec`) runs the chain of
:mod:`planner.scenario.chain` and writes one combined, verified plan (``kind: "scenario"``), the
expert-location file of every MoE pool per engine, SGLang launch lines per worker group, a Kubernetes
manifest and a summary. A replica-only scenario (the first format: loads, model, EP ranks) writes a
replica plan, its engine files and the summary. Everything is rendered and verified before the first
file is written. The default scenario ships with the package (``planner/data/scenarios/default.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from planner.errors import InputError, PlannerError
from planner.plans.export import ExportRefused, export_plan
from planner.common.fileio import atomic_write_text, ensure_dir
from planner.plans.io import write_plan
from planner.plans.schema import Plan, ScenarioPlan
from planner.scenario.spec import Scenario, load_scenario

__all__ = ["Scenario", "ScenarioResult", "load_scenario", "run_scenario", "EXPORT_FILES"]

EXPORT_FILES = {
    "sglang": "sglang-expert-location.json",
    "vllm": "vllm-eplb-mapping.jsonl",
    "trtllm": "trtllm-moe-load-balancer.yaml",
}


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    plan: Plan | ScenarioPlan
    files: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    refused: dict[str, str] = field(default_factory=dict)  # target -> why no file was written
    warnings: tuple[str, ...] = ()


def run_scenario(scenario: Scenario, out_dir: str | Path, *,
                 progress: Callable[[str], None] | None = None) -> ScenarioResult:
    """Plan, verify, summarise and export one scenario into ``out_dir`` (created if missing)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory", param="out_dir")
    if not scenario.replica_only:
        return _run_chain(scenario, out, progress)
    from planner.inputs.readers import read_loads
    from planner.replicas import plan_replicas

    loads = read_loads(scenario.path(scenario.loads))
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


def _run_chain(sc: Scenario, out: Path, progress) -> ScenarioResult:
    from planner.scenario.artefacts import launch_script, manifest
    from planner.scenario.chain import run_chain
    from planner.scenario.verify import verify_scenario

    say = progress or (lambda msg: None)
    res = run_chain(sc, progress=say)
    plan = res.plan
    say("verifying the combined plan")
    report = verify_scenario(plan, alternatives=False)
    if not report.ok:  # a bug: every part was verified by its own planner
        c = report.failures[0]
        raise PlannerError(f"internal error: the scenario plan fails verification: {c.name}: {c.detail}")
    texts: dict[str, str] = {}
    refused: dict[str, str] = {}
    warnings: list[str] = []
    expert_files: dict[str, str] = {}
    for pool in plan.replicas:  # render everything before writing anything
        for t in sc.exports:
            key = f"{pool.role}-{t}"
            try:
                exp = export_plan(pool.plan, t, allow_unsupported=sc.allow_unsupported_exports)
            except ExportRefused as exc:
                switch = "; set allow_unsupported_exports to write it anyway" if "allow_unsupported" in exc.remedy else ""
                refused[key] = exc.message + switch
                continue
            name = f"{pool.role}-{EXPORT_FILES[t]}"
            texts[key] = (name, exp.text)
            warnings += [f"{key}: {w}" for w in exp.warnings]
            if t == "sglang":
                expert_files[pool.role] = name
    arch_name = _model_path(plan.model)
    launch = launch_script(plan, expert_files, arch_name)
    if launch:
        texts["launch"] = ("launch-sglang.sh", launch)
        texts["manifest"] = ("manifest.yaml", manifest(plan, expert_files, arch_name))
    summary = _summary(sc, plan, res.tables, refused)
    ensure_dir(out)
    files = {"plan": str(atomic_write_text(out / "plan.json", plan.to_json()))}
    for key, (name, text) in texts.items():
        files[key] = str(atomic_write_text(out / name, text))
    files["summary"] = str(atomic_write_text(out / "summary.txt", summary))
    return ScenarioResult(sc, plan, files, summary, refused, tuple(warnings))


def _change(value: float, base: float) -> str:
    """`` (+1.23%)`` relative to ``base``; nothing when ``base`` is 0."""
    return f" ({100 * (value / base - 1):+.2f}%)" if base else ""


def _model_path(model_id: str) -> str:
    from planner.profiles import get_model

    arch = get_model(model_id)
    return arch.names[0] if arch.names else arch.id


def _summary(sc: Scenario, plan: ScenarioPlan, tables: dict[str, str], refused: dict[str, str]) -> str:
    parts = [f"scenario {sc.name}: {sc.description}".rstrip(": ")]
    parts.append("decisions:\n" + "\n".join(f"  - {d}" for d in plan.decisions))
    titles = {"gpus": "GPU types (cheapest per token among those meeting the SLO: *)",
              "deployment": f"deployments on {plan.chosen_gpu} (the chosen one first)",
              "replicas": "replica plans of the chosen deployment's MoE pools (b = replayed balancedness)",
              "migration": "migration from the running placement",
              "fleet": "cheapest GPU mix", "cluster": "layer placement on the mixed cluster"}
    for key, title in titles.items():
        if key in tables:
            parts.append(f"{title}\n{tables[key]}")
    if refused:
        parts.append("\n".join(f"no {k} file: {why}" for k, why in refused.items()))
    return "\n\n".join(parts) + "\n"
