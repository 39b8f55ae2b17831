"""`moeplan report` / planner.report: every plan kind renders a self-contained, verified page (fast lane).

The page must open offline: no script, no external resource (the only URL is the SVG namespace), every
figure a well-formed inline SVG; a part the verifier cannot check says what it needs; a missing figure
says why instead of leaving a blank; a plan that fails its verifier gets no page from the CLI.
"""

import json
import re
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

import report_plans
from planner.cli import app
from planner.plans.io import write_plan
from planner.report import ReportInputs, build_report, plan_parts
from planner.report.svg import bar_chart, heatmap, line_chart, range_bars

runner = CliRunner()
SVG_NS = "http://www.w3.org/2000/svg"


def _self_contained(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script" not in html.lower()
    assert not re.search(r"\b(src|href)=\"(?!#|data:)", html), "a resource outside the page"
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {SVG_NS}
    for svg in re.findall(r"<svg.*?</svg>", html, flags=re.S):
        root = ET.fromstring(svg)  # well-formed
        assert float(root.get("width")) > 0 and float(root.get("height")) > 0


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    return {k: (report_plans.make(k, tmp), build_report(*report_plans.make(k, tmp))) for k in report_plans.KINDS}


@pytest.mark.parametrize("kind", report_plans.KINDS)
def test_every_kind_renders_a_self_contained_verified_page(reports, kind):
    _, result = reports[kind]
    _self_contained(result.html)
    assert result.verified and result.figures >= 1
    assert result.html.count("<svg") == result.figures
    for part, verdict in result.parts:
        assert part.sections and verdict.ok is (None if kind == "migration" else True)
        for s in part.sections:
            assert f"<h2>{s.title}</h2>" in result.html.replace("&#x27;", "'")


def test_content_where_the_kind_has_it(reports):
    html = {k: r.html for k, (_, r) in reports.items()}
    assert "before replication" in html["replicas"] and "Balancedness vs replica budget" in html["replicas"]
    assert "Pareto front" in html["deployment"] and "SLO target" in html["deployment"]
    assert "Memory per GPU" in html["deployment"] and "KV cache" in html["deployment"]
    assert "single-type fleets" in html["fleet"] and "cost per million tokens" in html["fleet"]
    assert "Layer ranges with flows" in html["cluster"]
    assert "copies moved per layer" in html["migration"]


def test_missing_inputs_say_what_is_missing(reports):
    (plan, _), _ = reports["replicas"]
    result = build_report(plan)  # no loads, no GPU
    (part, verdict), = result.parts
    assert verdict.ok is None and "--loads" in verdict.detail
    assert result.html.count("Not shown") == 3 and "NOT VERIFIED" in result.html
    (dplan, _), _ = reports["deployment"]
    assert "Not shown: goodput vs rate" in build_report(dplan, ReportInputs(rate_points=0)).html


def test_a_deployment_with_a_replica_plan_renders_both_parts(reports):
    (dplan, dinp), _ = reports["deployment"]
    (rplan, rinp), _ = reports["replicas"]
    both = dplan.model_copy(update={"replica_plan": rplan})
    assert [k for _, k, _ in plan_parts(both)] == ["deployment", "replicas"]
    result = build_report(both, ReportInputs(loads=rinp.loads, rate_points=0))
    titles = [p.title for p, _ in result.parts]
    assert len(titles) == 2 and all(f"<h1>{t}</h1>" in result.html for t in titles)


def test_a_tampered_plan_fails_and_the_cli_writes_no_page(reports, tmp_path):
    (plan, _), _ = reports["fleet"]
    bad = plan.model_copy(update={"cost_per_hour_usd": plan.cost_per_hour_usd * 0.5})
    result = build_report(bad)
    assert not result.verified and "FAILS VERIFICATION" in result.html
    path, out = tmp_path / "fleet.json", tmp_path / "r.html"
    write_plan(bad, path)
    res = runner.invoke(app, ["report", str(path), "-o", str(out)])
    assert res.exit_code == 2 and "fails verification: " in res.stderr and not out.exists()


def test_cli_writes_the_page_and_json(reports, tmp_path):
    (plan, _), _ = reports["cluster"]
    path, out = tmp_path / "cluster.json", tmp_path / "r.html"
    write_plan(plan, path)
    res = runner.invoke(app, ["report", str(path), "-o", str(out), "--cluster", "helix:single24-llama2-70b", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["parts"][0]["verified"] is True and data["figures"] == 2
    _self_contained(out.read_text(encoding="utf-8"))
    sched = tmp_path / "schedule.json"
    (doc, _), _ = reports["migration"]
    sched.write_text(json.dumps(doc))
    res = runner.invoke(app, ["report", str(sched), "-o", str(out)])
    assert res.exit_code == 0 and "not verified" in res.stdout


def test_svg_charts_are_well_formed_with_odd_data():
    charts = [
        bar_chart([], {}, title="empty", ylabel="y"),
        bar_chart(["a<b", "c&d"], {"s": [float("nan"), 0.0]}, title="t & <t>", ylabel="y", hline=(0.5, "x")),
        line_chart({"a": ([1.0], [float("inf")])}, title="t", xlabel="x", ylabel="y"),
        heatmap([[0.0, 0.0]], title="zeros", xlabel="x", ylabel="y"),
        range_bars([("n", 0, 3, 2.0, "")], title="t", xlabel="layer", x_max=3),
    ]
    for svg in charts:
        ET.fromstring(svg)
