"""Plan expert replicas from measured loads, verify the plan and see what SGLang would say about it.

Run: python examples/replicas_quickstart.py [OUT_DIR]

Uses the real OLMoE-1B-7B routing counts shipped with moeplan (allenai/OLMoE routing analysis).
"""

import sys
import tempfile
from pathlib import Path

from planner import builtin_loads, plan_replicas, verify_plan, write_plan
from planner.plans.export import ExportRefused, export_plan


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    loads = builtin_loads("olmoe-wikipedia")
    for stat in loads.layer_stats():
        print(f"layer {stat.layer}: hottest expert {stat.hottest_expert} at {stat.max_over_mean:.2f}x the mean")

    # how much do redundant slots buy on EP8? (moeplan's default step-aware planner)
    for redundant in (0, 8, 16):
        plan = plan_replicas(loads, "olmoe-1b-7b", num_gpus=8, redundant_slots=redundant)
        assert verify_plan(plan, loads).ok
        m = plan.replicas.predicted
        print(f"R={redundant:2d}: balancedness {m.balancedness_mean:.4f}, gap to bound {100 * plan.report.gap:.2f}%")

    print(plan.summary())
    write_plan(plan, out_dir / "plan.json")
    print(f"wrote {out_dir / 'plan.json'}")
    # SGLang has no expert-location hook for OLMoE (docs/engines.md): the export is refused with the reason
    try:
        export_plan(plan, "sglang")
    except ExportRefused as exc:
        print(f"no SGLang file: {exc}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="moeplan-")))
