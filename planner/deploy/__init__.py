"""Deployment search (DESIGN §5.2): parallel layouts per phase and prefill/decode splits under SLOs.

``plan_deployment(model, gpu, slo, workload | isl/osl, num_gpus=N | rate_req_per_s=R)`` enumerates
memory-feasible layouts per role, scores each by simulated goodput, chooses instance counts with an
integer program (:mod:`solvers.xpyd`), simulates the best deployments end to end (aggregated serving
always among them) and returns a ranked :class:`DeploymentResult` with a verified deployment plan.
``verify_deployment(plan)`` re-simulates a plan. ``docs/deploy.md`` describes the method.
"""

from planner.deploy.plots import plot_pareto
from planner.deploy.result import Deployment, DeploymentResult, pareto_front
from planner.deploy.search import OBJECTIVES, plan_deployment
from planner.deploy.verify import verify_deployment

__all__ = ["plan_deployment", "verify_deployment", "DeploymentResult", "Deployment", "pareto_front", "plot_pareto",
           "OBJECTIVES"]
