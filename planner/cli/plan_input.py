"""The one way a command reads a plan file: validate it, then run the independent, solver-free verifier
of its kind, and refuse it (exit 2, one line naming the check and the item) if any check fails.

Every command that reads a plan goes through :func:`read_trusted_plan`: ``verify`` (which also prints the
checks), ``export``, ``estimate --replicas``, ``deploy --replicas``, ``migrate`` (both plans) and
``apply`` (the new plan and ``--from``). What each kind's verifier needs beyond the file is optional:
a replica plan without its loads gets the checks the file alone supports
(:func:`planner.plans.verify.verify_plan`), a deployment plan simulated on a trace needs the trace, a
cluster plan is checked against its cluster file only when one is given, a scenario plan by the
scenario verifier, a placement (``apply --state``) by its structure and model (``docs/plans.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from planner.errors import InputError

__all__ = ["read_trusted_plan", "verify_any_plan"]


def verify_any_plan(plan: Any, *, loads=None, trace=None, cluster=None, model=None):
    """The verifier of ``plan``'s kind: a :class:`~planner.plans.verify.VerifyReport`.

    ``loads`` (:class:`~planner.inputs.ExpertLoads`) and ``model`` (:class:`~planner.profiles.ModelArch`)
    are for replica plans, ``trace`` (:class:`~planner.inputs.Workload`) for deployment plans, ``cluster``
    (:class:`~planner.inputs.Cluster`) for cluster plans; each is optional.
    """
    if plan.kind == "scenario":
        from planner.scenario import verify_scenario

        return verify_scenario(plan)
    if plan.kind == "cluster":
        from planner.cluster import verify_cluster

        return verify_cluster(plan, cluster)
    if plan.kind == "fleet":
        from planner.cluster import verify_fleet

        return verify_fleet(plan)
    if plan.kind == "deployment":
        from planner.deploy import verify_deployment

        return verify_deployment(plan, trace)
    if plan.kind == "placement":  # what a live apply leaves (apply --state): structure and model
        from planner.plans.verify import verify_placement

        return verify_placement(plan)
    from planner.plans.verify import verify_plan

    return verify_plan(plan, loads, model=model)


def read_trusted_plan(path: str | Path, *, kinds: tuple[str, ...] | None = None, loads=None, trace=None,
                      cluster=None, model=None, role: str = "plan"):
    """Read a plan file and verify it; returns ``(plan, report)``.

    Raises :class:`~planner.errors.InputError` (exit 2) naming the file and the first failed check when
    the plan does not verify, or when its kind is not one of ``kinds``. ``role`` names the file in
    messages (``"current plan"``, ``"--replicas"``).
    """
    from planner.plans.io import read_plan

    plan = read_plan(path)
    if kinds is not None and plan.kind not in kinds:
        raise InputError(f"{path}: the {role} is a {plan.kind} plan; this needs a {' or '.join(kinds)} plan")
    report = verify_any_plan(plan, loads=loads, trace=trace, cluster=cluster, model=model)
    if not report.ok:
        c = report.failures[0]
        who = "placement" if role == "plan" and plan.kind == "placement" else role
        raise InputError(f"{path}: {who} fails verification: {c.name}: {c.detail}")
    return plan, report
