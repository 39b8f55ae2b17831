"""moeplan: capacity planning for serving Mixture-of-Experts LLMs.

The notebook API is the same the CLI calls::

    from planner import read_loads, plan_replicas, verify_plan
    plan = plan_replicas(read_loads("loads.json"), "deepseek-v3", num_gpus=32, num_nodes=4)
    print(plan.summary())

    from planner import plan_deployment
    from planner.inputs import SLO
    result = plan_deployment("qwen3-30b-a3b", "h100", SLO(2000, 50, rule="percentile"),
                             isl=4000, osl=1000, num_gpus=8)
    print(result.table())

    from planner import plan_cluster
    print(plan_cluster("helix:single24-llama2-70b").table())   # layer ranges on a mixed cluster
"""

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "ExpertLoads",
    "read_loads",
    "builtin_loads",
    "get_model",
    "get_gpu",
    "Precision",
    "plan_replicas",
    "verify_plan",
    "read_plan",
    "write_plan",
    "Plan",
    "estimate",
    "plan_deployment",
    "verify_deployment",
    "plan_cluster",
    "verify_cluster",
    "plan_fleet",
    "verify_fleet",
    "sweep",
    "build_report",
]


def __getattr__(name):  # lazy: `import planner` stays cheap and free of import cycles
    if name == "ExpertLoads":
        from planner.inputs.loads import ExpertLoads

        return ExpertLoads
    if name in ("read_loads", "builtin_loads"):
        from planner.inputs import readers

        return getattr(readers, name)
    if name in ("get_model", "get_gpu", "Precision"):
        from planner import profiles

        return getattr(profiles, name)
    if name == "plan_replicas":
        from planner.replicas import plan_replicas

        return plan_replicas
    if name == "verify_plan":
        from planner.plans.verify import verify_plan

        return verify_plan
    if name in ("read_plan", "write_plan"):
        from planner.plans import io

        return getattr(io, name)
    if name == "estimate":
        from planner.perf.estimate import estimate

        return estimate
    if name in ("plan_deployment", "verify_deployment"):
        from planner import deploy

        return getattr(deploy, name)
    if name == "sweep":
        from planner.whatif import sweep

        return sweep
    if name == "build_report":
        from planner.report import build_report

        return build_report
    if name in ("plan_cluster", "verify_cluster", "plan_fleet", "verify_fleet"):
        from planner import cluster

        return getattr(cluster, name)
    if name == "Plan":
        from planner.plans.schema import Plan

        return Plan
    raise AttributeError(f"module 'planner' has no attribute {name!r}")
