"""What-if sweeps for notebooks: the deployment search over a grid of GPU types, SLOs, rates or GPU budgets.

``sweep(model, gpus=[...], slos=[...], rates=[...] | num_gpus=[...])`` runs
:func:`planner.deploy.plan_deployment` at every point of the grid (the product, in the order
``gpu x slo x rate-or-budget``) and returns a :class:`SweepTable`: one record per point, in grid order
whatever ran first, with the chosen deployment, its simulated numbers and, where the GPU type has a
price (its profile's ``price_per_hour_usd`` or ``prices=``), the cost per hour and per million tokens.
``prices`` may also be a list of price scenarios (``[{}, {"h100": 2.0}]``): every point is then
repeated once per scenario (column ``price_scenario``) without searching again, since prices change
the cost of a deployment, not the deployment.

Where the points run (``executor``):

- ``"processes"`` (default): a :class:`concurrent.futures.ProcessPoolExecutor` over ``max_workers``
  local cores (default all); ``"serial"``: in this process, one after the other;
- a :class:`concurrent.futures.Executor` you made, or a Dask ``distributed.Client`` (the optional extra
  ``pip install 'moeplan[dask]'``): the points become tasks of its cluster, for sweeps that outgrow one
  machine. Every point is a pure function of its arguments (seeded simulations), so the table is the
  same wherever it ran.

A point the search finds infeasible (no deployment meets the SLO within the budget) is a row with
``feasible`` False and the search's one-line reason in ``note``; other errors (an unknown GPU, a bad
SLO) are raised before anything runs.

Cost per million tokens = cost per hour / (rate x (prompt + output tokens per request) x 3600) x 1e6,
the fleet planner's definition (``docs/fleet.md``), at the chosen deployment's simulated rate.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from planner.cluster.fleet_inputs import resolve_offers
from planner.common.tables import format_table
from planner.deploy import plan_deployment
from planner.errors import Infeasible, InputError
from planner.inputs import SLO
from planner.profiles import cost_per_million_tokens_usd, get_gpu, get_model

__all__ = ["COLUMNS", "SweepPoint", "SweepTable", "sweep", "run_point"]

#: the columns of every record, in order (units in the names)
COLUMNS = ("model", "gpu", "ttft_ms", "tpot_ms", "percentile", "budget_gpus", "target_rate_req_per_s", "feasible",
           "xpyd", "mode", "pools", "num_gpus", "rate_req_per_s", "attainment", "ttft_p_ms", "tpot_p_ms",
           "tokens_per_s_per_gpu", "tokens_per_s_per_user", "price_scenario", "price_per_gpu_hour_usd", "cost_per_hour_usd",
           "cost_per_million_tokens_usd", "cost_per_million_output_tokens_usd", "note")


@dataclass(frozen=True)
class SweepPoint:
    """One point of the grid: everything :func:`run_point` needs (plain values, so it pickles to any worker)."""

    model: str
    gpu: str
    ttft_ms: float
    tpot_ms: float
    percentile: float
    isl: int
    osl: int
    num_gpus: int | None = None
    rate_req_per_s: float | None = None
    options: tuple[tuple[str, Any], ...] = ()


def run_point(point: SweepPoint) -> dict:
    """The record of one point, unpriced (a top-level function, so process pools and Dask can ship it)."""
    row = dict.fromkeys(COLUMNS)
    row.update(model=point.model, gpu=point.gpu, ttft_ms=point.ttft_ms, tpot_ms=point.tpot_ms, percentile=point.percentile,
               budget_gpus=point.num_gpus, target_rate_req_per_s=point.rate_req_per_s, feasible=False, note="")
    slo = SLO(point.ttft_ms, point.tpot_ms, point.percentile / 100.0, rule="percentile")
    try:
        result = plan_deployment(point.model, point.gpu, slo, isl=point.isl, osl=point.osl, num_gpus=point.num_gpus,
                                 rate_req_per_s=point.rate_req_per_s, **dict(point.options))
    except Infeasible as exc:
        row["note"] = str(exc).splitlines()[0]
        return row
    d = result.plan.chosen
    row.update(feasible=bool(d.meets_slo), xpyd=d.xpyd, mode=d.mode, num_gpus=d.num_gpus, rate_req_per_s=d.rate_req_per_s,
               pools=" + ".join(f"{p.instances}x{p.role}:{p.layout}" for p in d.pools), attainment=d.attainment,
               ttft_p_ms=d.ttft_ms, tpot_p_ms=d.tpot_ms, tokens_per_s_per_gpu=d.tokens_per_s_per_gpu,
               tokens_per_s_per_user=d.tokens_per_s_per_user)
    return row


def _priced(row: dict, scenario: int, price: float | None, isl: int, osl: int) -> dict:
    """``row`` with the price of one scenario and the costs it gives (fixed lengths: isl + osl tokens per request)."""
    out = dict(row, price_scenario=scenario, price_per_gpu_hour_usd=price)
    if price is not None and row["num_gpus"] is not None and row["rate_req_per_s"]:
        cost = row["num_gpus"] * price
        out.update(cost_per_hour_usd=cost,
                   cost_per_million_tokens_usd=cost_per_million_tokens_usd(cost, row["rate_req_per_s"], isl + osl),
                   cost_per_million_output_tokens_usd=cost_per_million_tokens_usd(cost, row["rate_req_per_s"], osl))
    return out


class SweepTable:
    """The records of a sweep in grid order: ``records`` (dicts), ``columns()`` (a columnar dict),
    ``to_dataframe()`` (pandas, if installed), ``table()`` (text)."""

    def __init__(self, records: Sequence[dict]):
        self.records: tuple[dict, ...] = tuple(dict(r) for r in records)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records)

    def __getitem__(self, i: int) -> dict:
        return self.records[i]

    def columns(self) -> dict[str, list]:
        """``{column: [value per row]}``: what ``pandas.DataFrame(...)`` or a plotting call takes."""
        return {c: [r[c] for r in self.records] for c in COLUMNS}

    def to_dataframe(self):
        """A pandas DataFrame of the records (pandas is not a dependency of moeplan: install it)."""
        try:
            import pandas as pd
        except ImportError:
            raise InputError("to_dataframe needs pandas (pip install pandas); columns() gives the same table as a dict",
                             param="pandas") from None
        return pd.DataFrame(self.columns(), columns=list(COLUMNS))

    def table(self) -> str:
        """The main columns as a text table."""
        cols = ("gpu", "ttft_ms", "tpot_ms", "budget_gpus", "target_rate_req_per_s", "xpyd", "num_gpus", "rate_req_per_s",
                "attainment", "tokens_per_s_per_gpu", "cost_per_hour_usd", "cost_per_million_tokens_usd")
        def cell(v):
            return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else v)
        return format_table(list(cols), [[cell(r[c]) for c in cols] for r in self.records])


def _price_scenarios(gpu_ids: list[str], prices) -> list[dict[str, float | None]]:
    """``[{gpu id: $/GPU-hour or None}]`` per scenario: the profiles' prices overridden by each mapping."""
    scenarios = [prices or {}] if prices is None or isinstance(prices, Mapping) else list(prices)
    if not scenarios:
        raise InputError("give at least one price scenario (or none: the profiles' prices)", param="prices")
    out = []
    for sc in scenarios:
        if not isinstance(sc, Mapping):
            raise InputError(f"a price scenario is a mapping {{gpu: $/GPU-hour}}, got {sc!r}", param="prices")
        out.append({o.spec.id: (o.price_per_gpu_hour_usd if o.price_per_gpu_hour_usd > 0 else None)
                    for o in resolve_offers(gpu_ids, sc)})
    return out


def _grid(model: str, gpus, slos, rates, budgets, isl, osl, options) -> list[SweepPoint]:
    if (rates is None) == (budgets is None):
        raise InputError("give exactly one of rates (serve each with the fewest GPUs) and num_gpus (GPU budgets)",
                         param="rates")
    model_id = get_model(model).id
    gpu_ids = list(dict.fromkeys(get_gpu(g).id for g in gpus))
    norm = []
    for s in slos:
        t = tuple(s)
        if len(t) not in (2, 3):
            raise InputError(f"an SLO is (ttft_ms, tpot_ms[, percentile]), got {s!r}", param="slos")
        norm.append((float(t[0]), float(t[1]), float(t[2]) if len(t) == 3 else 90.0))
    axis = [("rate", float(r)) for r in rates] if rates is not None else [("gpus", int(n)) for n in budgets]
    if not axis or not norm:
        raise InputError("the grid is empty: give at least one SLO and one rate or budget", param="slos")
    opts = tuple(sorted(options.items()))
    out = []
    for gid, (ttft, tpot, pct), (kind, v) in itertools.product(gpu_ids, norm, axis):
        out.append(SweepPoint(model_id, gid, ttft, tpot, pct, int(isl), int(osl),
                              num_gpus=v if kind == "gpus" else None, rate_req_per_s=v if kind == "rate" else None,
                              options=opts))
    return out


def _run(points: list[SweepPoint], executor, max_workers: int | None) -> list[dict]:
    if executor == "serial" or (executor == "processes" and (len(points) == 1 or max_workers == 1)):
        return [run_point(p) for p in points]
    if executor == "processes":
        workers = min(len(points), max_workers or os.cpu_count() or 1)
        with cf.ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(run_point, points))  # map keeps the grid order
    if hasattr(executor, "get_executor"):  # a dask.distributed Client
        return [f.result() for f in [executor.submit(run_point, p, pure=False) for p in points]]
    if isinstance(executor, cf.Executor):
        return list(executor.map(run_point, points))
    raise InputError(f"executor: 'processes', 'serial', a concurrent.futures.Executor or a dask Client, got {executor!r}",
                     param="executor")


def sweep(
    model: str,
    gpus: Sequence[str],
    *,
    slos: Sequence[tuple[float, float] | tuple[float, float, float]],
    rates: Sequence[float] | None = None,
    num_gpus: Sequence[int] | None = None,
    isl: int,
    osl: int,
    prices: Mapping[str, float] | Sequence[Mapping[str, float]] | None = None,
    executor: Any = "processes",
    max_workers: int | None = None,
    **search_options: Any,
) -> SweepTable:
    """Run the deployment search at every point of ``gpus x slos x (rates | num_gpus)``.

    Parameters
    ----------
    model : a model profile id or name.
    gpus : GPU profile ids or names.
    slos : ``(ttft_ms, tpot_ms)`` or ``(ttft_ms, tpot_ms, percentile)`` tuples (percentile default 90).
    rates : target rates (req/s): each point serves its rate with the fewest GPUs.
    num_gpus : GPU budgets: each point serves the most it can on that many GPUs. Exactly one of the two.
    isl, osl : prompt and output tokens per request.
    prices : ``{gpu: $/GPU-hour}`` overriding the profiles' prices, or a list of such scenarios (every
        point repeated per scenario, column ``price_scenario``; the search runs once per point).
    executor : ``"processes"`` (local cores), ``"serial"``, a ``concurrent.futures.Executor`` or a Dask Client.
    max_workers : processes of the local pool (default: every core).
    search_options : passed to :func:`planner.deploy.plan_deployment` at every point (``num_requests``,
        ``max_candidates_per_role``, ``alternatives``, ``precision``, ...).

    Returns
    -------
    SweepTable
        One record per point (and price scenario) in grid order (columns :data:`COLUMNS`).

    Raises
    ------
    InputError
        Unknown model or GPU, a bad SLO, both or neither of ``rates`` / ``num_gpus``, an unknown executor.

    Examples
    --------
    >>> t = sweep("qwen3-30b-a3b", ["h100"], slos=[(1000, 50)], num_gpus=[2], isl=1024, osl=128,
    ...           executor="serial", num_requests=300, max_candidates_per_role=2, alternatives=1)  # doctest: +SKIP
    >>> t[0]["xpyd"], t[0]["cost_per_million_tokens_usd"] is not None  # doctest: +SKIP
    ('1xAGG', True)
    """
    if not (executor in ("processes", "serial") or hasattr(executor, "get_executor") or isinstance(executor, cf.Executor)):
        raise InputError(f"executor: 'processes', 'serial', a concurrent.futures.Executor or a dask Client, got {executor!r}",
                         param="executor")
    points = _grid(model, gpus, slos, rates, num_gpus, isl, osl, search_options)
    scenarios = _price_scenarios(list(dict.fromkeys(p.gpu for p in points)), prices)
    rows = _run(points, executor, max_workers)
    return SweepTable([_priced(row, i, sc[p.gpu], p.isl, p.osl) for p, row in zip(points, rows)
                       for i, sc in enumerate(scenarios)])
