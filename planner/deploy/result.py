"""What the deployment search returns: simulated deployments (:class:`Deployment`), the Pareto front, the table.

Columns follow the field's words (DESIGN §9): layout strings ``tp1pp1dp8ep8``, ``(p)`` prefill and
``(d)`` decode columns, ``xPyD`` counts; ``tokens/s/GPU`` = served rate x mean output tokens / GPUs,
``tokens/s/user`` = 1000 / TPOT at the percentile; TTFT / TPOT at the SLO's percentile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from planner.common.numerics import round_float
from planner.common.tables import format_table
from planner.deploy.scoring import PhaseScore

__all__ = ["Deployment", "DeploymentResult", "pareto_front"]


@dataclass(frozen=True)
class Deployment:
    """One deployment simulated end to end (all its pools together).

    ``prefill`` / ``decode`` are set for a disaggregated deployment, ``both`` for an aggregated one;
    ``counts`` are the instances per pool. ``rate_req_per_s`` is the joint goodput (GPU budget) or the
    target rate (rate mode); ``attainment`` (per-request share meeting both limits) and the percentiles
    are those of the simulation at that rate, of ``num_requests`` requests. A closed-loop search
    (``load="closed"``) sets ``concurrency``: the most clients meeting the SLO in steady state; the rate is
    then the steady window's served rate and the attainment and percentiles are the window's.
    """

    mode: str  # "disaggregated" | "aggregated"
    scores: tuple[PhaseScore, ...]
    counts: tuple[int, ...]
    predicted_req_per_s: float
    rate_req_per_s: float
    attainment: float
    ttft_ms: float
    tpot_ms: float
    meets_slo: bool
    num_requests: int
    mean_output_tokens: float
    nodes: tuple[tuple[int, ...], ...] = ()
    concurrency: int | None = None

    @property
    def num_gpus(self) -> int:
        """GPUs of the deployment."""
        return sum(n * s.candidate.num_gpus for n, s in zip(self.counts, self.scores))

    @property
    def xpyd(self) -> str:
        """``1P2D`` or ``4xAGG``."""
        if self.mode == "aggregated":
            return f"{self.counts[0]}xAGG"
        return f"{self.counts[0]}P{self.counts[1]}D"

    @property
    def label(self) -> str:
        """``1P2D (p) tp2pp1 (d) tp1pp1`` or ``2xAGG tp1pp1dp4ep4 bs128``."""
        if self.mode == "aggregated":
            return f"{self.xpyd} {self.scores[0].candidate.label}"
        return f"{self.xpyd} (p) {self.scores[0].candidate.label} (d) {self.scores[1].candidate.label}"

    @property
    def per_gpu(self) -> float:
        """Served rate per GPU, req/s/GPU."""
        return self.rate_req_per_s / self.num_gpus if self.num_gpus else 0.0

    @property
    def tokens_per_s_per_gpu(self) -> float:
        """Output tokens per second per GPU at the served rate."""
        return self.per_gpu * self.mean_output_tokens

    @property
    def tokens_per_s_per_user(self) -> float:
        """1000 / TPOT (ms) at the percentile."""
        return 1000.0 / self.tpot_ms if self.tpot_ms and math.isfinite(self.tpot_ms) and self.tpot_ms > 0 else math.nan

    def to_dict(self) -> dict:
        out = {
            "label": self.label, "mode": self.mode, "xpyd": self.xpyd, "counts": list(self.counts),
            "num_gpus": self.num_gpus, "nodes": [list(r) for r in self.nodes],
            "pools": [s.to_dict() for s in self.scores],
            "predicted_req_per_s": self.predicted_req_per_s, "rate_req_per_s": self.rate_req_per_s,
            "rate_req_per_s_per_gpu": self.per_gpu, "attainment": self.attainment, "ttft_ms": self.ttft_ms,
            "tpot_ms": self.tpot_ms, "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
            "tokens_per_s_per_user": self.tokens_per_s_per_user, "meets_slo": self.meets_slo,
            "num_requests": self.num_requests, "concurrency": self.concurrency,
        }
        return _rounded(out)


def _rounded(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) else round_float(obj)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated in (x, y), both maximised, sorted by x.

    >>> pareto_front([(1, 5), (2, 4), (2, 3), (3, 1), (0.5, 5)])
    [0, 1, 3]
    """
    ok = [i for i, (x, y) in enumerate(points) if math.isfinite(x) and math.isfinite(y)]
    front = [i for i in ok if not any((points[j][0] >= points[i][0] and points[j][1] >= points[i][1])
                                      and points[j] != points[i] for j in ok)]
    seen, out = set(), []
    for i in sorted(front, key=lambda i: (points[i][0], -points[i][1])):
        if points[i] not in seen:
            seen.add(points[i])
            out.append(i)
    return out


@dataclass(frozen=True)
class DeploymentResult:
    """Outcome of :func:`planner.deploy.plan_deployment`.

    ``deployments`` are ranked best first (``chosen`` is the first); ``best_disaggregated`` and
    ``best_aggregated`` the best of each kind (None when none serves a rate); ``winner_ratio`` how many
    times the chosen kind's figure of merit beats the other's; ``pareto`` indices into
    ``deployments`` of the tokens/s/GPU vs tokens/s/user front; ``scores`` every simulated
    candidate; ``plan`` the verified deployment plan; ``notes`` the assumptions in force.
    """

    request: dict
    deployments: tuple[Deployment, ...]
    scores: tuple[PhaseScore, ...]
    pareto: tuple[int, ...]
    plan: object  # planner.plans.DeploymentPlan
    notes: tuple[str, ...]
    solve_reports: tuple = ()
    wall_s: float = 0.0
    timings_s: dict = field(default_factory=dict)

    @property
    def chosen(self) -> Deployment:
        return self.deployments[0]

    def _best(self, mode: str) -> Deployment | None:
        for d in self.deployments:
            if d.mode == mode and d.rate_req_per_s > 0:
                return d
        return None

    @property
    def best_disaggregated(self) -> Deployment | None:
        return self._best("disaggregated")

    @property
    def best_aggregated(self) -> Deployment | None:
        return self._best("aggregated")

    @property
    def figure_of_merit(self) -> str:
        """What the ranking compares: ``rate_req_per_s``, ``rate_req_per_s_per_gpu`` or ``num_gpus``."""
        return self.request["figure_of_merit"]

    def merit(self, d: Deployment) -> float:
        """The ranked figure of ``d`` (larger is better; GPUs are negated)."""
        f = self.figure_of_merit
        return {"rate_req_per_s": d.rate_req_per_s, "rate_req_per_s_per_gpu": d.per_gpu,
                "num_gpus": -float(d.num_gpus)}[f]

    @property
    def comparison(self) -> str:
        """One line: which kind wins and by how much."""
        dis, agg = self.best_disaggregated, self.best_aggregated
        if dis is None or agg is None:
            only = dis or agg
            return f"only {only.mode} serving meets the SLO" if only else "nothing meets the SLO"
        a, b = self.merit(dis), self.merit(agg)
        if self.figure_of_merit == "num_gpus":
            win = dis if (dis.num_gpus, -dis.attainment) < (agg.num_gpus, -agg.attainment) else agg
            lose = agg if win is dis else dis
            return (f"{win.mode} wins: {win.num_gpus} GPUs against {lose.num_gpus} for the same rate "
                    f"({lose.num_gpus / win.num_gpus:.2f}x fewer)")
        win, lose = (dis, agg) if a >= b else (agg, dis)
        ratio = max(a, b) / min(a, b) if min(a, b) > 0 else math.inf
        unit = "req/s" if self.figure_of_merit == "rate_req_per_s" else "req/s/GPU"
        return (f"{win.mode} wins: {self.merit(win):.4g} {unit} against {self.merit(lose):.4g} {unit} "
                f"for {lose.mode} ({ratio:.2f}x); tokens/s/GPU {win.tokens_per_s_per_gpu:.1f} vs "
                f"{lose.tokens_per_s_per_gpu:.1f}")

    def table(self) -> str:
        """The ranked deployments, the comparison and the assumptions (human output)."""
        q = self.request["percentile"]
        closed = self.request.get("load") == "closed"
        heads = ["rank", "kind", "xPyD", "(p)parallel", "(p)bs/tok", "(d)parallel", "(d)bs", "GPUs",
                 *(["clients"] if closed else []), "req/s", "tokens/s/GPU", "tokens/s/user", f"TTFT p{q:g} ms",
                 f"TPOT p{q:g} ms", "attain", "SLO", "$/M tok"]
        rows = []
        price = _price_per_gpu_hour(self.request["gpu"])
        wl = self.request["workload"]
        tokens_per_request = wl["input_tokens_mean"] + wl["output_tokens_mean"]
        front = set(self.pareto)
        for i, d in enumerate(self.deployments):
            if d.mode == "aggregated":
                c = d.scores[0].candidate
                p_par, p_b, d_par, d_b = c.instance.label, _budget(c), "-", str(c.max_batch_size or "-")
            else:
                p, dc = d.scores[0].candidate, d.scores[1].candidate
                p_par, p_b, d_par, d_b = p.instance.label, _budget(p), dc.instance.label, str(dc.max_batch_size or "-")
            rows.append([f"{i + 1}{'*' if i in front else ''}", d.mode[:5], d.xpyd, p_par, p_b, d_par, d_b,
                         d.num_gpus, *([d.concurrency] if closed else []), f"{d.rate_req_per_s:.3g}",
                         f"{d.tokens_per_s_per_gpu:.1f}",
                         f"{d.tokens_per_s_per_user:.1f}", f"{d.ttft_ms:.0f}", f"{d.tpot_ms:.1f}",
                         f"{d.attainment:.3f}", "met" if d.meets_slo else "MISSED",
                         _usd(price, d.num_gpus, d.rate_req_per_s * tokens_per_request)])
        r = self.request
        title = (f"{r['model']} on {r['gpu']}: {r['target']}; SLO TTFT {r['ttft_ms']:g} ms, TPOT {r['tpot_ms']:g} ms "
                 f"at p{q:g}; workload {r['workload']['source']} (mean in/out {r['workload']['input_tokens_mean']:.0f}/"
                 f"{r['workload']['output_tokens_mean']:.0f} tokens)")
        lines = [format_table(heads, rows, title=title), "* = on the Pareto front (tokens/s/GPU vs tokens/s/user); "
                 "$/M tok: $ per million prompt + output tokens at the GPU profile's price",
                 f"chosen: {self.chosen.label} on {self.chosen.num_gpus} GPUs, {self.chosen.rate_req_per_s:.4g} req/s "
                 + (f"at {self.chosen.concurrency} clients in steady state " if closed else "")
                 + f"(simulated attainment {self.chosen.attainment:.3f})", self.comparison, "assumptions:"]
        lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    def pareto_points(self) -> list[dict]:
        """The front as data: one dict per deployment on it, sorted by tokens/s/user."""
        return [{"rank": i + 1, "label": self.deployments[i].label, "mode": self.deployments[i].mode,
                 "tokens_per_s_per_user": _rounded(self.deployments[i].tokens_per_s_per_user),
                 "tokens_per_s_per_gpu": _rounded(self.deployments[i].tokens_per_s_per_gpu)} for i in self.pareto]

    def to_dict(self) -> dict:
        """JSON-ready result (the plan under ``plan``)."""
        return {
            "request": self.request,
            "chosen": self.chosen.to_dict(),
            "comparison": self.comparison,
            "deployments": [d.to_dict() for d in self.deployments],
            "pareto_front": self.pareto_points(),
            "candidates": [_rounded(s.to_dict()) for s in self.scores],
            "notes": list(self.notes),
            "solve_reports": [r.to_dict() for r in self.solve_reports],
            "wall_s": round(self.wall_s, 3),
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
            "plan": self.plan.model_dump(mode="json"),
        }

    def plot(self, path) -> None:
        """Write the Pareto front as a PNG (:func:`planner.deploy.plots.plot_pareto`)."""
        from planner.deploy.plots import plot_pareto

        plot_pareto(self, path)


def _price_per_gpu_hour(gpu_id: str) -> float | None:
    from planner.errors import ProfileNotFound
    from planner.profiles import get_gpu

    try:
        return get_gpu(gpu_id).price_per_hour_usd or None
    except ProfileNotFound:  # DistServe's cost model names no shipped GPU
        return None


def _usd(price: float | None, gpus: int, tokens_per_s: float) -> str:
    from planner.common.numerics import usd_per_million_tokens

    v = usd_per_million_tokens(None if price is None else price * gpus, tokens_per_s)
    return "-" if v is None else f"{v:.3f}"


def _budget(c) -> str:
    parts = []
    if c.max_batch_size is not None:
        parts.append(f"bs{c.max_batch_size}")
    if c.token_budget is not None:
        parts.append(f"tok{c.token_budget}")
    return "/".join(parts) or "-"
