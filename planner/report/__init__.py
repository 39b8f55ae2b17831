"""The HTML report of a plan (``moeplan report PLAN -o report.html``): one self-contained page.

Modules
    svg             small inline-SVG charts (bars, lines, heatmap, range bars); no plotting dependency
    page            sections, parts, verdicts and the HTML document (inline CSS, no script, no network)
    replicas        a replica plan's sections: decision, load heatmaps before/after, memory, budget sweep
    deployment      a deployment plan's: decision and alternatives, attainment, Pareto front, memory, goodput vs rate
    fleet_cluster   a fleet plan's (mix vs single types), a cluster plan's (layer ranges, flows), a migration schedule's
    build           parts of a document, each verified by its kind's verifier, then rendered; write_report

It reads every planner's plans, so it sits above them (layer 9, beside ``scenario``).
"""

from planner.report.build import ReportInputs, ReportResult, build_report, plan_parts, read_report_source, write_report

__all__ = ["ReportInputs", "ReportResult", "build_report", "write_report", "plan_parts", "read_report_source"]
