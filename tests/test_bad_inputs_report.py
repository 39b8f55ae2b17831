"""Bad inputs of `moeplan report` and of `moeplan replan`'s wall-time flags (tests/corpus_case.py format)."""

import pytest

import report_plans
from corpus_case import Case, check_case
from planner.plans.io import write_plan


def _tampered_fleet(tmp):
    plan, _ = report_plans.fleet(tmp)
    write_plan(plan.model_copy(update={"cost_per_hour_usd": plan.cost_per_hour_usd * 0.5}), tmp / "fleet.json")


def _replicas(tmp):
    plan, _ = report_plans.replicas()
    write_plan(plan, tmp / "replicas.json")


def _text(name, text):
    return lambda tmp: (tmp / name).write_text(text)


CASES = [
    Case("report-missing-plan", "file", ["report", "{tmp}/nope.json", "-o", "{tmp}/r.html"], 2, "nope.json"),
    Case("report-not-json", "file", ["report", "{tmp}/p.json", "-o", "{tmp}/r.html"], 2, "p.json", setup=_text("p.json", "{oops")),
    Case("report-unknown-kind", "value", ["report", "{tmp}/p.json", "-o", "{tmp}/r.html"], 2, "kind",
         setup=_text("p.json", '{"kind": "banana"}')),
    Case("report-negative-rate-points", "value", ["report", "{tmp}/fleet.json", "-o", "{tmp}/r.html", "--rate-points", "-1"],
         2, "--rate-points", setup=_tampered_fleet),
    Case("report-tampered-plan", "verification", ["report", "{tmp}/fleet.json", "-o", "{tmp}/r.html"], 2, "cost",
         setup=_tampered_fleet),
    Case("report-wrong-loads", "verification", ["report", "{tmp}/replicas.json", "-o", "{tmp}/r.html", "--loads",
                                                 "builtin:olmoe-github"], 2, "loads_hash", setup=_replicas),
    Case("replan-step-rate-without-gpu", "value", ["replan", "builtin:olmoe-arxiv", "-m", "olmoe-1b-7b", "--gpus", "8",
                                                   "--step-rate", "10"], 2, "--step-rate"),
    Case("replan-step-rate-zero", "value", ["replan", "builtin:olmoe-arxiv", "-m", "olmoe-1b-7b", "--gpus", "8",
                                            "--gpu", "h100", "--step-rate", "0"], 2, "--step-rate"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case, tmp_path):
    check_case(case, tmp_path)
