"""Build the report of a plan file: verify each part with its kind's verifier, then render its sections.

A document is split into *parts* (:func:`plan_parts`): one per plan it holds. A replica, fleet or
cluster plan is one part; a deployment plan with an embedded replica plan is two (the deployment, then
the replica plan its MoE pools used); a migration schedule (``moeplan migrate -o``, not a plan kind) is
one. A later combined plan kind adds its case to :func:`plan_parts` and every part's sections follow.

Each part is verified first (:func:`verify_part`) with the verifier ``moeplan verify`` uses for its kind;
the verdict heads the page. A part that cannot be verified without an input the plan does not hold
(a replica plan's loads, a deployment's trace) is shown as NOT VERIFIED with what to give.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from planner.cluster import verify_cluster, verify_fleet
from planner.common.fileio import atomic_write_text
from planner.deploy import verify_deployment
from planner.inputs import Cluster, ExpertLoads, Workload
from planner.plans.io import read_plan
from planner.plans.schema import ClusterPlan, DeploymentPlan, FleetPlan, PlacementPlan, Plan, ScenarioPlan
from planner.plans.verify import VerifyReport, verify_placement, verify_plan
from planner.report.deployment import RATE_FACTORS, deployment_sections
from planner.report.fleet_cluster import (cluster_sections, fleet_sections, is_migration_schedule,
                                          migration_sections)
from planner.report.page import Part, Verdict, render_page
from planner.report.replicas import replica_sections
from planner.report.scenario import placement_sections, scenario_sections

__all__ = ["ReportInputs", "ReportResult", "plan_parts", "verify_part", "build_report", "write_report", "read_report_source"]

AnyDoc = Union[Plan, DeploymentPlan, FleetPlan, ClusterPlan, ScenarioPlan, PlacementPlan, dict]


@dataclass(frozen=True)
class ReportInputs:
    """What a plan does not hold but some checks and figures need (all optional)."""

    loads: ExpertLoads | None = None  # replica plans: the loads they were made from
    workload: Workload | None = None  # deployment plans simulated on a trace: that trace
    cluster: Cluster | None = None  # cluster plans: the cluster file (adds the hash / links check)
    gpu: str | None = None  # replica plans without a GPU parameter: the profile the budget sweep prices in
    rate_points: int = len(RATE_FACTORS)  # deployment: rates of the goodput curve (0: none)


@dataclass(frozen=True)
class ReportResult:
    html: str
    parts: tuple[tuple[Part, Verdict], ...]

    @property
    def verified(self) -> bool:
        """No part failed its verifier (parts that could not be verified do not count as failures)."""
        return all(v.ok is not False for _, v in self.parts)

    @property
    def figures(self) -> int:
        return sum(s.figures for p, _ in self.parts for s in p.sections)


def plan_parts(doc: AnyDoc) -> list[tuple[str, str, AnyDoc]]:
    """``(title, kind, object)`` of every part of a document, in page order."""
    if isinstance(doc, dict):
        return [("Migration schedule", "migration", doc)]
    if isinstance(doc, ScenarioPlan):
        parts = [(f"Scenario {doc.name}: {doc.model}", "scenario", doc)]
        for d in doc.deployments:
            parts += [(f"Deployment on {d.inputs.gpu}" + (" (chosen)" if d.inputs.gpu == doc.chosen_gpu else ""),
                       "deployment", d)]
        parts += [(f"Replica plan of the {r.role} pool ({r.layout}, EP {r.ep})", "replicas", r.plan) for r in doc.replicas]
        parts += [(f"Migration of the {m.role} pool ({m.running_source})", "migration", m.schedule) for m in doc.migrations]
        if doc.replica_plan is not None:
            parts.append((f"Replica plan: {doc.model}", "replicas", doc.replica_plan))
        if doc.fleet is not None:
            parts += plan_parts(doc.fleet)
        if doc.cluster is not None:
            parts += plan_parts(doc.cluster)
        return parts
    if isinstance(doc, DeploymentPlan):
        parts = [(f"Deployment plan: {doc.inputs.model} on {doc.inputs.gpu}", "deployment", doc)]
        if doc.replica_plan is not None:
            parts.append((f"Replica plan of the MoE pools: {doc.replica_plan.inputs.model}", "replicas", doc.replica_plan))
        return parts
    if isinstance(doc, FleetPlan):
        return [(f"Fleet plan: {doc.inputs.model or 'profile table'} at {doc.inputs.rate_req_per_s:g} req/s", "fleet", doc)]
    if isinstance(doc, ClusterPlan):
        return [(f"Cluster plan: {doc.inputs.model} on {doc.inputs.cluster}", "cluster", doc)]
    if isinstance(doc, PlacementPlan):
        return [(f"Placement: {doc.model} on {doc.num_gpus} GPUs, migration step {doc.step} of {doc.steps}", "placement", doc)]
    return [(f"Replica plan: {doc.inputs.model} on {doc.replicas.num_gpus} GPUs", "replicas", doc)]


def _verdict(report: VerifyReport, what: str) -> Verdict:
    checks = tuple((c.name, c.ok, c.detail) for c in report.checks)
    if report.ok:
        return Verdict(True, f"{what}: {len(checks)} checks pass.", checks)
    c = report.failures[0]
    return Verdict(False, f"{what}: {c.name}: {c.detail}", checks)


def verify_part(kind: str, obj: AnyDoc, inputs: ReportInputs) -> Verdict:
    """The part's verifier (the one ``moeplan verify`` runs for its kind), or why it cannot run."""
    if kind == "replicas":
        if inputs.loads is None:  # what the file alone shows is checked; a failure there is a failure
            alone = verify_plan(obj)
            if not alone.ok:
                return _verdict(alone, "replica verifier without the loads")
            return Verdict(None, "A replica plan is verified in full on the loads it was made from; give them "
                                 "(--loads). Without them its structure and recorded numbers were checked.")
        return _verdict(verify_plan(obj, inputs.loads), "replica verifier on the given loads")
    if kind == "deployment":
        if obj.inputs.workload.spec.get("kind") != "fixed" and inputs.workload is None:
            return Verdict(None, f"The plan was simulated on {obj.inputs.workload.source}; give that trace (--trace) "
                                 "to re-simulate it.")
        return _verdict(verify_deployment(obj, inputs.workload), "every deployment re-simulated")
    if kind == "fleet":
        return _verdict(verify_fleet(obj), "fleet re-derived from its capacities")
    if kind == "cluster":
        return _verdict(verify_cluster(obj, inputs.cluster), "max-flow recomputed in networkx")
    if kind == "placement":
        return _verdict(verify_placement(obj), "placement structure and model checked")
    return Verdict(None, "A migration schedule is checked against its two plans when `moeplan migrate` writes it; "
                         "the schedule file does not hold them.")


def _sections(kind: str, obj: AnyDoc, inputs: ReportInputs, verdict: Verdict):
    if kind == "scenario":
        return scenario_sections(obj)
    if kind == "placement":
        return placement_sections(obj)
    if kind == "replicas":
        loads = inputs.loads if verdict.ok else None  # loads that fail the hash are not the plan's loads
        return replica_sections(obj, loads, gpu=inputs.gpu)
    if kind == "deployment":
        return deployment_sections(obj, inputs.workload, rate_points=inputs.rate_points)
    if kind == "fleet":
        return fleet_sections(obj)
    if kind == "cluster":
        return cluster_sections(obj)
    return migration_sections(obj)


def build_report(doc: AnyDoc, inputs: ReportInputs | None = None, *, title: str | None = None) -> ReportResult:
    """The report of a plan (any kind) or a migration schedule: every part verified, then rendered.

    Examples
    --------
    >>> from planner.plans.io import read_plan  # doctest: +SKIP
    >>> build_report(read_plan("fleet.json")).html.startswith("<!DOCTYPE html>")  # doctest: +SKIP
    True
    """
    inputs = inputs or ReportInputs()
    parts = []
    verdicts = _scenario_verdicts(doc) if isinstance(doc, ScenarioPlan) else None
    if isinstance(doc, ScenarioPlan):
        inputs = _scenario_inputs(doc, inputs)
    for i, (part_title, kind, obj) in enumerate(plan_parts(doc)):
        verdict = verdicts[i] if verdicts is not None else verify_part(kind, obj, inputs)
        parts.append((Part(part_title, kind, tuple(_sections(kind, obj, inputs, verdict))), verdict))
    version = getattr(getattr(doc, "tool", None), "version", None)
    subtitle = "moeplan report" + (f" of a plan written by moeplan {version}" if version else "") + \
               "; self-contained: no script, no network."
    html = render_page(title or parts[0][0].title, parts, subtitle=subtitle)
    return ReportResult(html, tuple(parts))


def _scenario_inputs(plan: ScenarioPlan, inputs: ReportInputs) -> ReportInputs:
    """A scenario records its loads and trace: read them unless the caller gave them."""
    from dataclasses import replace

    from planner.inputs import read_trace
    from planner.inputs.readers import read_loads

    loads = inputs.loads
    if loads is None and plan.scenario.get("loads"):
        loads = read_loads(plan.scenario["loads"])
    workload = inputs.workload
    trace = (plan.scenario.get("workload") or {}).get("trace")
    if workload is None and trace:
        workload = read_trace(trace)
    return replace(inputs, loads=loads, workload=workload, gpu=inputs.gpu or plan.chosen_gpu)


def _scenario_verdicts(plan: ScenarioPlan) -> list[Verdict]:
    """One verdict per part of :func:`plan_parts`, from :func:`planner.scenario.verify_scenario`'s checks (each
    part's own verifier plus the joints), so nothing is re-simulated twice."""
    from planner.scenario import verify_scenario

    report = verify_scenario(plan)
    by_name = {c.name: c for c in report.checks}

    def one(name: str, what: str) -> Verdict:
        c = by_name.get(name)
        if c is None:
            return Verdict(None, f"{what}: no check ran")
        return Verdict(c.ok, f"{what}: {'passes' if c.ok else c.detail}", ((c.name, c.ok, c.detail),))

    out = [_verdict(report, "scenario verifier (every part and the joints between them)")]
    out += [one(f"deployment:{d.inputs.gpu}", "every deployment re-simulated") for d in plan.deployments]
    out += [one(f"replicas:{r.role}", "replica plan verified on the scenario's loads, priced balancedness checked")
            for r in plan.replicas]
    out += [one(f"migration:{m.role}", "schedule replayed against the running and target plans") for m in plan.migrations]
    if plan.replica_plan is not None:
        out.append(one("replicas", "replica verifier on the scenario's loads"))
    if plan.fleet is not None:
        out.append(one("fleet", "fleet re-derived from its capacities"))
    if plan.cluster is not None:
        out.append(one("cluster", "max-flow recomputed in networkx"))
    return out


def read_report_source(path: str | os.PathLike) -> AnyDoc:
    """A plan file of any kind, or a migration schedule (``moeplan migrate -o``)."""
    p = Path(path)
    if p.is_file():
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raw = None
        if is_migration_schedule(raw):
            return raw
    return read_plan(p)


def write_report(doc: AnyDoc, path: str | os.PathLike, inputs: ReportInputs | None = None) -> ReportResult:
    """Build the report and write it atomically as one HTML file."""
    result = build_report(doc, inputs)
    atomic_write_text(path, result.html)
    return result
