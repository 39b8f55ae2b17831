"""What-if sweeps for notebooks: ``planner.sweep(...)`` runs the deployment search over a grid of GPU types,
SLOs, rates or GPU budgets, on local cores or a Dask cluster, and returns a pandas-friendly table with
cost per million tokens where prices are known (``docs/sweep.md``)."""

from planner.whatif.sweep import COLUMNS, SweepPoint, SweepTable, run_point, sweep

__all__ = ["sweep", "SweepTable", "SweepPoint", "COLUMNS", "run_point"]
