"""Pure math on numpy arrays: replica packing, EPLB (the baseline), knapsack, split LP, exact MILPs,
replay scoring, migration matching and schedules, and the :class:`~solvers.report.SolveReport` every
solve returns. Never imports ``planner``; import the modules directly (``from solvers.eplb import eplb``)."""

__all__: list[str] = []
