r"""Instance counts of a serving deployment: one layout per role, how many instances, on which nodes.

A deployment has ``R`` *roles*: two for disaggregated serving (prefill, decode: ``xPyD``), one for
aggregated serving. Every request passes every role once, so the rate a deployment serves is the
smallest capacity of its roles.

Data:

- for each role ``p`` a list of candidate instance layouts ``c``, each with ``s[c]`` GPUs (an integer
  >= 1) and a capacity ``g[c] >= 0``: the request rate one instance sustains within its role's SLO;
- nodes ``k = 1..K`` of ``G[k]`` GPUs; ``Gmax = max_k G[k]`` is the node size. A layout with
  ``s[c] <= Gmax`` must sit inside one node; a larger one must span ``s[c] / Gmax`` whole nodes of
  ``Gmax`` GPUs (``s[c]`` a multiple of ``Gmax``);
- a mode: ``max_rate`` (serve as much as possible), ``min_gpus`` (serve ``target`` with the fewest
  GPUs) or ``max_rate_per_gpu`` (the most rate per GPU used, DistServe's objective);
- ``node_local``: whether the requests a node's prefill instances serve must be decoded on the same
  node (DistServe's low node-affinity placement: KV moves over NVLink only);
- ``per_node_cap`` (optional): at most this many instances of each role on one node (1 with
  ``node_local`` is DistServe's algorithm 2: one prefill and one decode segment per node).

Variables:

- ``z[c] in {0, 1}``: layout ``c`` is its role's layout (engines run one configuration per role, and
  the simulator's pools are of identical instances);
- ``n[c, k] in Z+``: instances of a node-sized layout ``c`` on node ``k``;
- ``m[c] in Z+``: instances of a multi-node layout ``c``;
- ``f[k] in {0, 1}``: node ``k`` is given whole to multi-node instances;
- ``r >= 0``: the served rate; with ``node_local`` also ``r[k] >= 0``, the rate node ``k`` serves.

Constraints:

1. one layout per role: ``sum_{c in role p} z[c] = 1`` for every role ``p``;
2. only the chosen layout has instances: ``n[c, k] <= floor(G[k] / s[c]) z[c]``,
   ``m[c] <= floor(sum_k G[k] / s[c]) z[c]``;
2b. with ``per_node_cap``: ``sum_{c in role p} n[c, k] <= per_node_cap`` for every role and node;
3. node capacity: ``sum_c s[c] n[c, k] <= G[k] (1 - f[k])`` (a node given to multi-node instances
   holds nothing else; ``f[k] = 0`` for a node smaller than ``Gmax``);
4. multi-node instances fill whole nodes: ``sum_c (s[c] / Gmax) m[c] <= sum_k f[k]``;
5. capacity: ``r <= sum_{c in role p} g[c] (sum_k n[c, k] + m[c])`` for every role ``p``;
   with ``node_local``: ``r[k] <= sum_{c in role p} g[c] n[c, k]`` for every role and node,
   ``r = sum_k r[k]``, and no multi-node instance (``m = 0``);
6. ``min_gpus``: ``r >= target``;
7. symmetry: nodes of equal size are used in order, ``used[k] >= used[k + 1]`` with
   ``used[k] = sum_c s[c] n[c, k] + G[k] f[k]`` (this removes copies of one solution, none of its values).

Objective, with ``gpus = sum_c s[c] (sum_k n[c, k] + m[c])``:

- ``max_rate``: maximise ``r``; then, keeping ``r >= (1 - 1e-9) r*``, minimise ``gpus`` (two solves,
  lexicographic: the fewest GPUs among the best rates);
- ``min_gpus``: minimise ``gpus``; then, keeping ``gpus <= gpus*``, maximise ``r``;
- ``max_rate_per_gpu``: maximise ``r / gpus`` by Dinkelbach's method: solve ``max r - lam * gpus`` with
  ``lam`` the ratio of the previous answer, starting at 0, until the optimum is 0 (within 1e-9 of the
  rate), which proves ``lam`` the best ratio; a handful of solves.

``exclude`` forbids layout combinations already found (a no-good cut per combination,
``sum_{p} z[c_p] <= R - 1``), so repeated calls give the best deployment of the next-best
combination: the ranked alternatives.

The model is solved by PuLP with its bundled CBC (``pulp.PULP_CBC_CMD``); ``evaluate_counts`` checks
any answer against constraints 1-6 without a solver, and the tests compare the optimum with brute-force
enumeration of every count on small instances.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from solvers._checks import positive_float
from solvers.report import SolveReport

__all__ = ["XpydSolution", "choose_instance_counts", "evaluate_counts", "OBJECTIVES", "pulp_version"]

Objective = Literal["max_rate", "min_gpus", "max_rate_per_gpu"]
OBJECTIVES = ("max_rate", "min_gpus", "max_rate_per_gpu")
_DINKELBACH_ITERATIONS = 30


@dataclass(frozen=True)
class XpydSolution:
    """One deployment: per role the chosen candidate, its instance count and its instances per node.

    ``nodes[p][k]`` counts role ``p``'s node-sized instances on node ``k``; ``spanning[p]`` its
    multi-node instances. ``rate`` is the served rate (the smallest role capacity; with
    ``node_local`` the sum over nodes of each node's smallest role capacity), ``gpus`` the GPUs used.
    """

    choice: tuple[int, ...]
    counts: tuple[int, ...]
    nodes: tuple[tuple[int, ...], ...]
    spanning: tuple[int, ...]
    rate: float
    gpus: int

    @property
    def rate_per_gpu(self) -> float:
        """``rate / gpus`` (0 for an empty deployment)."""
        return self.rate / self.gpus if self.gpus else 0.0


def pulp_version() -> str:
    """``"pulp X (CBC)"``, for reports."""
    import pulp

    return f"pulp {pulp.__version__} (CBC)"


def _check(gpus, capacity, node_gpus):
    if not isinstance(gpus, (list, tuple)) or not gpus or len(gpus) != len(capacity):
        raise ValueError("gpus_per_instance and capacity_req_per_s need one list per role, as many of each")
    s_all, g_all = [], []
    for p, (s, g) in enumerate(zip(gpus, capacity)):
        s = np.asarray(s)
        g = np.asarray(g, dtype=np.float64)
        if s.ndim != 1 or s.size == 0 or s.shape != g.shape:
            raise ValueError(f"role {p}: gpus_per_instance and capacity_req_per_s must be equal-length, non-empty 1-D")
        if not np.issubdtype(s.dtype, np.integer) or (s < 1).any():
            raise ValueError(f"role {p}: gpus_per_instance must be integers >= 1")
        if not np.isfinite(g).all() or (g < 0).any():
            raise ValueError(f"role {p}: capacity_req_per_s must be finite and >= 0")
        s_all.append(s.astype(np.int64))
        g_all.append(g)
    G = np.asarray(node_gpus)
    if G.ndim != 1 or G.size == 0 or not np.issubdtype(G.dtype, np.integer) or (G < 1).any():
        raise ValueError("node_gpus must be a non-empty 1-D array of integers >= 1")
    gmax = int(G.max())
    for p, s in enumerate(s_all):
        bad = [int(x) for x in s if x > gmax and x % gmax]
        if bad:
            raise ValueError(f"role {p}: an instance of {bad[0]} GPUs neither fits a node of {gmax} nor fills whole nodes")
    return s_all, g_all, G.astype(np.int64)


def evaluate_counts(gpus_per_instance, capacity_req_per_s, node_gpus, choice, nodes, spanning, *,
                    node_local: bool = False) -> tuple[float, int, list[str]]:
    """``(rate, gpus, problems)`` of a deployment, checked against constraints 1-5 without a solver.

    ``problems`` is empty for a feasible deployment; the rate is recomputed from the counts
    (the smallest role capacity, per node with ``node_local``).

    >>> evaluate_counts([[2], [1]], [[14.0], [10.0]], [4], (0, 0), ((1,), (2,)), (0, 0))
    (14.0, 4, [])
    """
    s, g, G = _check(gpus_per_instance, capacity_req_per_s, node_gpus)
    gmax = int(G.max())
    problems: list[str] = []
    R, K = len(s), G.size
    if len(choice) != R or len(nodes) != R or len(spanning) != R:
        return 0.0, 0, [f"need one choice, node row and spanning count per role ({R} roles)"]
    used = np.zeros(K, dtype=np.int64)
    full_nodes = 0
    for p in range(R):
        c = choice[p]
        if not 0 <= c < s[p].size:
            return 0.0, 0, [f"role {p}: choice {c} is not a candidate"]
        row = np.asarray(nodes[p], dtype=np.int64)
        if row.shape != (K,) or (row < 0).any() or spanning[p] < 0:
            return 0.0, 0, [f"role {p}: counts must be {K} non-negative node counts and a spanning count"]
        if s[p][c] > gmax and row.any():
            problems.append(f"role {p}: a {s[p][c]}-GPU instance cannot sit inside a node of {gmax}")
        if s[p][c] <= gmax and spanning[p]:
            problems.append(f"role {p}: a {s[p][c]}-GPU instance does not span nodes")
        used += row * s[p][c]
        full_nodes += spanning[p] * s[p][c] // gmax
    if node_local and any(spanning):
        problems.append("node_local: no instance may span nodes")
    over = np.flatnonzero(used > G)
    if over.size:
        k = int(over[0])
        problems.append(f"node {k}: {int(used[k])} GPUs used of {int(G[k])}")
    free_full = int(((used == 0) & (G == gmax)).sum())
    if full_nodes > free_full:
        problems.append(f"multi-node instances need {full_nodes} whole nodes, {free_full} are free")
    caps = [g[p][choice[p]] * (np.asarray(nodes[p], dtype=np.float64).sum() + spanning[p]) for p in range(R)]
    if node_local:
        per_node = [min(g[p][choice[p]] * nodes[p][k] for p in range(R)) for k in range(K)]
        rate = float(sum(per_node))
    else:
        rate = float(min(caps))
    gpus = int(used.sum() + full_nodes * gmax)
    return rate, gpus, problems


def _build(s, g, G, objective, lam, target, node_local, exclude, second, cap):
    import pulp

    gmax = int(G.max())
    R, K = len(s), G.size
    sense = pulp.LpMinimize if (objective == "min_gpus") == (second is None) else pulp.LpMaximize
    prob = pulp.LpProblem("xpyd", sense)
    z = [[pulp.LpVariable(f"z_r{p}_c{c}", cat="Binary") for c in range(s[p].size)] for p in range(R)]
    n = [[[pulp.LpVariable(f"n_r{p}_c{c}_k{k}", 0, int(G[k] // s[p][c]), cat="Integer") if s[p][c] <= G[k] else None
           for k in range(K)] for c in range(s[p].size)] for p in range(R)]
    spans = not node_local and any(int(x) > gmax for row in s for x in row)
    m = [[pulp.LpVariable(f"m_r{p}_c{c}", 0, int(G.sum() // s[p][c]), cat="Integer")
          if spans and s[p][c] > gmax else None for c in range(s[p].size)] for p in range(R)]
    f = [pulp.LpVariable(f"f_k{k}", cat="Binary") if spans and G[k] == gmax else None for k in range(K)]
    r = pulp.LpVariable("r", 0)
    rk = [pulp.LpVariable(f"r_k{k}", 0) for k in range(K)] if node_local else None

    def on_node(p, c, k):
        return n[p][c][k] if n[p][c][k] is not None else 0

    gpus = pulp.lpSum(s[p][c] * v for p in range(R) for c in range(s[p].size) for v in n[p][c] if v is not None)
    gpus += pulp.lpSum(s[p][c] * m[p][c] for p in range(R) for c in range(s[p].size) if m[p][c] is not None)
    # (1) one layout per role
    for p in range(R):
        prob += pulp.lpSum(z[p]) == 1, f"one_layout_r{p}"
    # (2) instances only of the chosen layout
    for p in range(R):
        for c in range(s[p].size):
            for k in range(K):
                if n[p][c][k] is not None:
                    prob += n[p][c][k] <= int(G[k] // s[p][c]) * z[p][c], f"chosen_r{p}_c{c}_k{k}"
            if m[p][c] is not None:
                prob += m[p][c] <= int(G.sum() // s[p][c]) * z[p][c], f"chosen_span_r{p}_c{c}"
    # (2b) instances per role and node
    if cap is not None:
        for p in range(R):
            for k in range(K):
                prob += pulp.lpSum(n[p][c][k] for c in range(s[p].size) if n[p][c][k] is not None) <= cap, \
                    f"per_node_cap_r{p}_k{k}"
    # (3) node capacity
    used = []
    for k in range(K):
        load = pulp.lpSum(s[p][c] * on_node(p, c, k) for p in range(R) for c in range(s[p].size))
        whole = int(G[k]) * f[k] if f[k] is not None else 0
        prob += load + whole <= int(G[k]), f"node_cap_k{k}"
        used.append(load + whole)
    # (4) multi-node instances fill whole nodes
    if spans:
        prob += (pulp.lpSum((s[p][c] // gmax) * m[p][c] for p in range(R) for c in range(s[p].size)
                            if m[p][c] is not None) <= pulp.lpSum(v for v in f if v is not None)), "whole_nodes"
    # (5) every role's capacity covers the rate
    for p in range(R):
        if node_local:
            for k in range(K):
                prob += rk[k] <= pulp.lpSum(float(g[p][c]) * on_node(p, c, k) for c in range(s[p].size)), f"cap_r{p}_k{k}"
        else:
            total = pulp.lpSum(float(g[p][c]) * on_node(p, c, k) for c in range(s[p].size) for k in range(K))
            total += pulp.lpSum(float(g[p][c]) * m[p][c] for c in range(s[p].size) if m[p][c] is not None)
            prob += r <= total, f"cap_r{p}"
    if node_local:
        prob += r == pulp.lpSum(rk), "node_rates"
    # (6) target rate
    if objective == "min_gpus":
        prob += r >= float(target), "target"
    # (7) symmetry between nodes of one size
    for k in range(K - 1):
        if G[k] == G[k + 1]:
            prob += used[k] >= used[k + 1], f"order_k{k}"
    # no-good cuts: layout combinations already reported
    for i, combo in enumerate(exclude):
        prob += pulp.lpSum(z[p][c] for p, c in enumerate(combo)) <= R - 1, f"exclude_{i}"
    # lexicographic second stage: keep the first stage's optimum, then the fewest GPUs / the most rate
    if second is not None:
        if objective == "max_rate":
            prob += r >= second * (1 - 1e-9), "keep_rate"
        else:
            prob += gpus <= second, "keep_gpus"
    if objective == "min_gpus":
        prob += (-r if second is not None else gpus)
    elif objective == "max_rate":
        prob += (-gpus if second is not None else r)
    else:
        prob += r - lam * gpus
    return prob, z, n, m


def _solve_once(s, g, G, objective, lam, target, node_local, exclude, deadline, second=None, cap=None):
    import pulp

    with warnings.catch_warnings():  # PuLP 3 announces its 4.0 API on every variable
        warnings.simplefilter("ignore", DeprecationWarning)
        prob, z, n, m = _build(s, g, G, objective, lam, target, node_local, exclude, second, cap)
        left = max(0.05, deadline - time.perf_counter())
        status = prob.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=left))
    if pulp.LpStatus[status] == "Infeasible":
        return None, "infeasible"
    if prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return None, "time_limit" if time.perf_counter() >= deadline else "error"
    R, K = len(s), G.size
    choice = tuple(int(np.argmax([v.value() or 0 for v in z[p]])) for p in range(R))
    nodes = tuple(tuple(int(round(n[p][choice[p]][k].value() or 0)) if n[p][choice[p]][k] is not None else 0
                        for k in range(K)) for p in range(R))
    spanning = tuple(int(round(m[p][choice[p]].value() or 0)) if m[p][choice[p]] is not None else 0 for p in range(R))
    proven = prob.sol_status == pulp.LpSolutionOptimal  # IntegerFeasible: an incumbent at the time limit
    return (choice, nodes, spanning), ("completed" if proven else "time_limit")


def choose_instance_counts(
    gpus_per_instance: Sequence[Sequence[int]],
    capacity_req_per_s: Sequence[Sequence[float]],
    node_gpus: Sequence[int],
    *,
    objective: Objective = "max_rate",
    target_req_per_s: float | None = None,
    node_local: bool = False,
    per_node_cap: int | None = None,
    exclude: Sequence[tuple[int, ...]] = (),
    time_limit_s: float = 10.0,
) -> tuple[XpydSolution | None, SolveReport]:
    """Best layout per role and instance counts (module docstring for the model).

    Parameters
    ----------
    gpus_per_instance : per role, the GPUs of each candidate layout.
    capacity_req_per_s : per role, the rate one instance of each candidate sustains.
    node_gpus : GPUs of each node (the budget is their sum).
    objective : ``"max_rate"``, ``"min_gpus"`` (needs ``target_req_per_s``) or ``"max_rate_per_gpu"``.
    node_local : every node serves its own requests through all roles (DistServe's low affinity).
    per_node_cap : at most this many instances of each role per node (None: no cap).
    exclude : layout combinations (one candidate index per role) not to return again.
    time_limit_s : wall-time budget of all solves of the call.

    Returns
    -------
    (XpydSolution or None, SolveReport)
        ``None`` when nothing is feasible (``min_gpus``: the target is out of reach on these nodes;
        every combination excluded). The report's ``objective`` is the rate (``max_rate``), the GPUs
        (``min_gpus``) or the rate per GPU; its ``bound`` equals it when proven optimal.

    Raises
    ------
    ValueError
        Malformed data (lengths, negative capacities, a layout that neither fits a node nor fills nodes).

    Examples
    --------
    >>> sol, rep = choose_instance_counts([[1, 2], [1, 2]], [[5.0, 15.0], [10.0, 30.0]], [4])
    >>> sol.rate, sol.gpus, rep.status
    (15.0, 4, 'optimal')
    """
    start = time.perf_counter()
    s, g, G = _check(gpus_per_instance, capacity_req_per_s, node_gpus)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if objective == "min_gpus":
        target = positive_float(target_req_per_s, "target_req_per_s")
    else:
        target = None
    limit = positive_float(time_limit_s, "time_limit_s")
    deadline = start + limit
    exclude = [tuple(int(c) for c in combo) for combo in exclude]
    cap = None if per_node_cap is None else int(per_node_cap)
    if cap is not None and cap < 1:
        raise ValueError(f"per_node_cap must be an integer >= 1, got {per_node_cap!r}")
    if any(len(combo) != len(s) for combo in exclude):
        raise ValueError("every excluded combination needs one candidate index per role")

    def report(status, stop, value, message=""):
        bound = value if status == "optimal" else None
        return SolveReport(status, stop, value, bound, 0.0 if bound is not None else None,
                           time.perf_counter() - start, "xpyd-milp", pulp_version(), message)

    if objective != "max_rate_per_gpu":
        found, stop = _solve_once(s, g, G, objective, 0.0, target, node_local, exclude, deadline, cap=cap)
        if found is None:
            st = "infeasible" if stop == "infeasible" else "error"
            msg = "no deployment meets the target on these nodes" if stop == "infeasible" else "solver found nothing"
            return None, report(st, stop if stop != "completed" else "error", None, msg)
        sol = _solution(s, g, G, *found, node_local)
        if objective == "max_rate" and sol.rate <= 0:
            return None, report("infeasible", "infeasible", None, "no combination serves any rate")
        keep = sol.rate if objective == "max_rate" else float(sol.gpus)
        again, stop2 = _solve_once(s, g, G, objective, 0.0, target, node_local, exclude, deadline, second=keep,
                                    cap=cap)
        if again is not None:
            sol2 = _solution(s, g, G, *again, node_local)
            better = (sol2.gpus < sol.gpus and sol2.rate >= sol.rate * (1 - 1e-9)) if objective == "max_rate" else (
                sol2.rate > sol.rate and sol2.gpus <= sol.gpus)
            sol = sol2 if better else sol
            stop = stop if stop2 == "completed" else stop2
        value = sol.rate if objective == "max_rate" else float(sol.gpus)
        return sol, report("optimal" if stop == "completed" else "feasible", stop, value)

    # Dinkelbach: lam <- rate / gpus of the best answer of max r - lam * gpus, until that optimum is 0
    lam, best, stop, iterations = 0.0, None, "completed", 0
    while iterations < _DINKELBACH_ITERATIONS:
        iterations += 1
        found, stop = _solve_once(s, g, G, "max_rate_per_gpu", lam, None, node_local, exclude, deadline, cap=cap)
        if found is None:
            break
        sol = _solution(s, g, G, *found, node_local)
        if sol.gpus == 0:
            break
        gain = sol.rate - lam * sol.gpus
        if best is None or sol.rate_per_gpu > best.rate_per_gpu:
            best = sol
        if gain <= 1e-9 * max(sol.rate, 1e-12) or stop != "completed":
            break
        lam = sol.rate_per_gpu
    if best is None:
        st = "infeasible" if stop == "infeasible" else "error"
        return None, report(st, stop if stop != "completed" else "error", None, "no deployment serves any rate")
    done = stop == "completed" and iterations < _DINKELBACH_ITERATIONS
    return best, report("optimal" if done else "feasible", "completed" if done else (
        stop if stop != "completed" else "iteration_limit"), best.rate_per_gpu,
        f"Dinkelbach, {iterations} solve(s)")


def _solution(s, g, G, choice, nodes, spanning, node_local) -> XpydSolution:
    rate, gpus, problems = evaluate_counts(s, g, G, choice, nodes, spanning, node_local=node_local)
    if problems:  # the model and the evaluation disagree: a bug, never a user's error
        raise AssertionError(f"solver answer breaks the model: {problems}")
    counts = tuple(int(sum(nodes[p])) + int(spanning[p]) for p in range(len(s)))
    return XpydSolution(tuple(choice), counts, tuple(tuple(r) for r in nodes), tuple(spanning), rate, gpus)
