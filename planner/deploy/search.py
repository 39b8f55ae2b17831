"""The deployment search: candidates per role -> per-instance goodput -> integer program -> end-to-end check.

1. **Candidates** (:mod:`planner.deploy.instances`): instance layouts that fit in memory, each with a
   small grid of budgets: prefill token budget ``8192 x dp`` (whole prompts batched, at most 64 per
   step), decode batch caps ``16 x dp``, ``128 x dp`` and ``512 x dp`` sequences, aggregated token
   budget ``2048 x dp`` with ``128 x dp`` or ``256 x dp`` sequences (Sarathi-Serve's chunk sizes are
   512-2048; the large caps are engine defaults' order: TensorRT-LLM's ``max_batch_size`` 2048, vLLM's
   ``max_num_seqs`` 256-1024; the KV cache and the TPOT limit bind before them).
2. **Screening and pruning** (:mod:`planner.deploy.scoring`): a throughput bound from a few latency-model
   calls; candidates that miss their limit unloaded or are dominated go, the best bounds per GPU stay.
3. **Scores**: per-instance goodput of each kept candidate in its role alone, simulated (best bound per
   GPU first; one whose bound cannot reach the rate already predicted for its kind is skipped).
4. **Integer program** (:mod:`solvers.xpyd`): one layout per role and instance counts for the GPU
   budget (most rate, or most rate per GPU) or the target rate (fewest GPUs), nodes packed; the next
   best layout combinations by no-good cuts. Disaggregated (prefill + decode) and aggregated
   (one role) programs are solved separately.
5. **End-to-end check** (:mod:`planner.deploy.end_to_end`): every deployment from step 4 is simulated
   with all its pools together: its goodput (budget) or its attainment at the target rate (a deployment
   that misses gets one more instance of the role that missed, up to three times); with
   ``load="closed"``, its most clients meeting the SLO in steady state and the rate it serves there.
   Deployments are ranked by that.

``docs/deploy.md`` states the rules, the program and the DistServe reproduction. One module past 450
lines because every stage reads the resolved request (``_Setup``) and its few helpers (probe lengths,
cost models, pools); the rules of scoring and of step 5 live in their own modules.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Callable

from planner.deploy.instances import (
    COST_MODELS,
    Instance,
    balancedness_arg,
    cost_from_record,
    cost_record,
    distserve_layouts,
    latency_model_layouts,
    quick_times,
)
from planner.deploy.end_to_end import (
    COARSE_TOL,
    REL_TOL,
    closed_loop_deployments,
    deployments_at_rate,
    goodput_deployments,
)
from planner.deploy.result import Deployment, DeploymentResult, pareto_front
from planner.deploy.scoring import ROLES, Candidate, PhaseScore, bound_candidate, bound_points, prune, score
from planner.errors import Infeasible, InputError
from planner.inputs import SLO, ExpertLoads, Workload, poisson_workload
from planner.perf import (
    BISECT_TO,
    MAX_CLIENTS,
    MIN_REQUESTS,
    REQUESTS_PER_CLIENT,
    START_CLIENTS,
    check_memory_rule,
)
from planner.plans import Plan
from planner.profiles import get_gpu, get_model, resolve_precision
from solvers.xpyd import choose_instance_counts

__all__ = ["plan_deployment", "cost_args", "OBJECTIVES", "LOADS", "DEFAULT_BALANCEDNESS_SOURCE"]

#: what a GPU budget maximises: the served rate, or the rate per GPU used (DistServe's objective)
OBJECTIVES = ("max_rate", "max_rate_per_gpu")
#: how step 5 loads a deployment: arrivals at a rate (goodput) or a fixed number of clients (closed loop)
LOADS = ("open", "closed")
#: requests of a fixed-length closed-loop search: a probe's per client, up to the most clients probed
_CLOSED_REQUESTS = REQUESTS_PER_CLIENT * MAX_CLIENTS
DEFAULT_BALANCEDNESS_SOURCE = "planner/inputs/synthetic.py (TensorRT-LLM DeepSeek-R1 EP32 imbalance 1.56)"
_PREFILL_TOKENS_PER_RANK = 8192
_DECODE_CAPS_PER_RANK = (16, 128, 512)
#: aggregated token budgets per rank and step: Sarathi-Serve's largest chunk (2048) and TensorRT-LLM's default
#: ``max_num_tokens`` (8192), also the top of AIConfigurator's own ``ctx_tokens`` sweep for aggregated workers
#: (``max_normal_ctx_tokens`` in its ``sdk/sweep.py``). Under a closed loop the larger one served 6-14 % more
#: tokens/s/GPU on the 8-GPU benchmark scenarios (benchmarks/README.md); under Poisson arrivals the smaller one
#: can keep TPOT's tail lower. Both within the cost tables' ``_PREFILL_TOKENS_PER_RANK``.
_AGG_TOKENS_PER_RANK = (2048, 8192)
_AGG_BATCHES_PER_RANK = (128, 256)
_MAX_PREFILL_BATCH = 64
_MAX_NODES = 64


@dataclass(frozen=True)
class _Setup:
    model: object
    arch: object
    spec: object
    cost_kind: str
    gpus_per_node: int
    slo: SLO
    workload: Workload
    workload_spec: dict
    arrivals: str
    seed: int
    precision: dict | None  # {component: format name} of the latency model (None: DistServe's costs)
    num_requests: int | None
    num_gpus: int | None
    rate: float | None
    objective: str
    node_local: bool
    max_context: int
    per_node_cap: int | None
    steady_state_cap: bool = True
    load: str = "open"
    balancedness: float | dict | None = None  # given by the caller: b for every EP size, or {ep: b}
    # the memory model's engine rule: {"memory_utilization": u, "memory_fraction_of": "total" | "free"}
    memory_options: dict = field(default_factory=dict)
    # integer programs solved in this search, by their arguments: the screening's last program of a kind is
    # step 4's first (a pure function of its arguments, solved once)
    solved: dict = field(default_factory=dict, compare=False, repr=False)


def plan_deployment(
    model,
    gpu,
    slo: SLO,
    workload: Workload | None = None,
    *,
    num_gpus: int | None = None,
    rate_req_per_s: float | None = None,
    isl: int | None = None,
    osl: int | None = None,
    loads: ExpertLoads | None = None,
    replica_plan: Plan | None = None,
    balancedness: float | Mapping[int, float] | None = None,
    objective: str = "max_rate",
    gpus_per_node: int | None = None,
    node_local: bool = False,
    max_instances_per_node: int | None = None,
    steady_state_cap: bool = True,
    load: str = "open",
    cost_model: str = "latency_model",
    num_requests: int | None = None,
    precision=None,
    memory_utilization: float = 0.9,
    memory_fraction_of: str = "total",
    max_candidates_per_role: int | None = 4,
    alternatives: int = 4,
    time_limit_s: float = 30.0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> DeploymentResult:
    """Search parallel layouts and prefill/decode splits for a GPU budget or a target rate under an SLO.

    Parameters
    ----------
    model, gpu : profiles or names (``cost_model="distserve"``: ``"opt-13b"`` / ``"opt-66b"``; the GPU then
        only gives the node size).
    slo : TTFT / TPOT limits, the attainment target (its percentile) and the rule.
    workload : the requests (a trace); or give ``isl`` and ``osl`` for fixed lengths and Poisson arrivals.
    num_gpus : the GPU budget; or ``rate_req_per_s``: the rate to serve with the fewest GPUs.
    loads : measured expert loads: a replica plan per EP size sets each MoE layout's balancedness.
    replica_plan : a replica plan: MoE layouts must have its EP size and take its slots and balancedness.
    balancedness : the mean / max GPU load of a MoE layer (0 < b <= 1; e.g. measured on your engine, or another
        tool's routing assumption): one number for every EP size, or ``{ep: b}`` for the EP sizes given (the
        others keep the default). Not with ``loads`` or ``replica_plan``, which set it themselves.
    objective : with ``num_gpus``: ``"max_rate"`` (serve the most) or ``"max_rate_per_gpu"`` (DistServe's).
    gpus_per_node : node size; default the GPU profile's.
    node_local : prefill and decode that exchange KV share a node (DistServe's low node-affinity).
    max_instances_per_node : at most this many instances of a role per node (1 with ``node_local``:
        DistServe's algorithm 2, one prefill and one decode segment per node).
    steady_state_cap : cap each deployment's goodput at the rate its pools sustain (instances x one
        instance's full-batch throughput, the least role): a finite probe lets a pool absorb a burst it
        could not sustain. False: the probes' answer alone (DistServe's protocol).
    load : how the end-to-end check (step 5) loads a deployment and ranks it. ``"open"`` (default): requests
        arrive at a rate (the trace's pattern or Poisson), the figure is the goodput. ``"closed"``: a fixed
        number of clients each send their next request when the last one ends (``aiperf`` / ``genai-perf
        --concurrency``, the load AIConfigurator prices); the figure is the rate served at the most clients
        whose steady-state TTFT and TPOT meet the SLO (:func:`planner.perf.max_concurrency`), recorded with
        that client count. Needs ``num_gpus``; steps 1-4 are the same in both.
    cost_model : ``"latency_model"`` (moeplan's) or ``"distserve"`` (DistServe's fitted OPT coefficients).
    num_requests : requests per simulation; default three times the largest decode batch, 300 to 3000 (the
        length of the fixed-length workload: 3000; with ``load="closed"``, 98,304 = 6 per client up to
        16,384 clients).
    precision : number formats per component (:class:`planner.profiles.Precision`, a mapping of overrides
        such as ``{"kv_cache": "fp8"}``, or None for the model's native precision).
    memory_utilization, memory_fraction_of : the serving engine's memory rule, as in
        :func:`planner.perf.memory_per_gpu`: 0.9 of the whole GPU (``"total"``: vLLM's
        ``gpu_memory_utilization``, SGLang's ``--mem-fraction-static``; the default) or the KV cache's
        share of the memory left after the weights (``"free"``: TensorRT-LLM's ``free_gpu_memory_fraction``).
        It decides which layouts fit and each instance's KV capacity.
    max_candidates_per_role : candidates simulated per role after screening; None: every memory-feasible
        candidate that meets its limits unloaded, dominated ones too (a wide search, ``benchmarks/deploy_width.py``:
        slower, to check what the screening costs).
    alternatives : layout combinations per kind (disaggregated, aggregated) simulated end to end, the best
        included (>= 1).
    time_limit_s : budget of each integer program.
    seed : seed of the synthetic requests.
    progress : called with one line per stage.

    Returns
    -------
    DeploymentResult
        Ranked deployments, the Pareto front, the chosen deployment's verified plan.

    Raises
    ------
    InputError
        Conflicting or missing arguments, unknown names (``param`` names the argument).
    Infeasible
        No deployment meets the SLO on the budget, or the rate is out of reach; the message gives
        the closest miss in numbers.
    """
    start = time.perf_counter()
    say = progress or (lambda msg: None)
    timings: dict[str, float] = {}
    if load not in LOADS:
        raise InputError(f"unknown load {load!r}; known: {', '.join(LOADS)}", param="load")
    if load == "closed" and num_gpus is None:
        raise InputError("a closed loop has no arrival rate to serve: give a GPU budget (num_gpus) with "
                         "load='closed'", param="load")
    setup = _resolve(model, gpu, slo, workload, num_gpus, rate_req_per_s, isl, osl, loads, replica_plan, objective,
                     gpus_per_node, node_local, cost_model, num_requests, precision, seed, load)
    if max_instances_per_node is not None:
        setup = replace(setup, per_node_cap=_check_int("max_instances_per_node", max_instances_per_node))
    if not isinstance(steady_state_cap, bool):
        raise InputError(f"must be True or False, got {steady_state_cap!r}", param="steady_state_cap")
    # the best layout combination of each kind counts as the first: 0 would simulate nothing and end in
    # a false "infeasible" (found by the report's tests)
    _check_int("alternatives", alternatives)
    if max_candidates_per_role is not None:
        _check_int("max_candidates_per_role", max_candidates_per_role)
    setup = replace(setup, steady_state_cap=steady_state_cap,
                    memory_options=_memory_options(setup, memory_utilization, memory_fraction_of),
                    balancedness=_check_balancedness(balancedness, setup, loads, replica_plan))
    t = time.perf_counter()
    roles = _candidates(setup, loads, replica_plan, max_candidates_per_role, say)
    timings["candidates_s"] = time.perf_counter() - t
    t = time.perf_counter()
    scores, skipped = _scores(setup, roles, time_limit_s)
    say(f"scored {sum(len(v) for v in scores.values())} candidates alone in {time.perf_counter() - t:.1f} s"
        + (f" ({skipped} could not reach the best predicted rate: not simulated)" if skipped else ""))
    timings["scores_s"] = time.perf_counter() - t
    t = time.perf_counter()
    found, reports = [], []
    for kind, role_names in (("disaggregated", ("prefill", "decode")), ("aggregated", ("both",))):
        role_scores = [[s for s in scores[r] if s.goodput_req_per_s > 0] for r in role_names]
        if all(role_scores):
            sols, rep = _counts(setup, role_scores, alternatives, time_limit_s)
            reports.append(rep)
            found += [(kind, [role_scores[p][c] for p, c in enumerate(sol.choice)], sol) for sol in sols]
    timings["integer_program_s"] = time.perf_counter() - t
    if not found:
        raise _nothing_fits(setup, scores)
    t = time.perf_counter()
    deployments = _end_to_end(setup, found)
    say(f"simulated {len(deployments)} deployments end to end in {time.perf_counter() - t:.1f} s")
    timings["end_to_end_s"] = time.perf_counter() - t
    merit = _merit(setup)
    # ties (a rate bound by one role is the same whatever the other role's layout): fewer GPUs, then the
    # lower TTFT and TPOT at the percentile
    deployments.sort(key=lambda d: (not d.meets_slo, -merit(d), d.num_gpus, d.ttft_ms, d.tpot_ms, d.label))
    if not deployments[0].meets_slo or deployments[0].rate_req_per_s <= 0:
        raise _closest_miss(setup, deployments)
    front = pareto_front([(d.tokens_per_s_per_user, d.tokens_per_s_per_gpu) if d.meets_slo else (math.nan, math.nan)
                          for d in deployments])
    request = _request_record(setup)
    notes = _notes(setup, [s for v in scores.values() for s in v], skipped)
    from planner.deploy.build import build_deployment_plan
    from planner.deploy.verify import verify_deployment

    plan = build_deployment_plan(setup, request, deployments, notes, reports[0] if reports else None, replica_plan)
    result = DeploymentResult(request, tuple(deployments), tuple(s for v in scores.values() for s in v), tuple(front),
                              plan, tuple(notes), tuple(reports), time.perf_counter() - start, timings)
    report = verify_deployment(plan, setup.workload if setup.workload_spec["kind"] == "trace" else None,
                               alternatives=False)
    if not report.ok:
        c = report.failures[0]
        raise AssertionError(f"the deployment plan fails its own verification: {c.name}: {c.detail}")
    return replace(result, plan=plan, wall_s=time.perf_counter() - start)


# -- 0. arguments -----------------------------------------------------------------------------------------
def _check_int(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"must be an integer >= {low}, got {value!r}", param=name)
    return value


def _resolve(model, gpu, slo, workload, num_gpus, rate, isl, osl, loads, replica_plan, objective, gpus_per_node,
             node_local, cost_model, num_requests, precision, seed, load="open") -> _Setup:
    if cost_model not in COST_MODELS:
        raise InputError(f"unknown cost model {cost_model!r}; known: {', '.join(COST_MODELS)}", param="cost_model")
    if not isinstance(slo, SLO):
        raise InputError(f"expected an SLO, got {type(slo).__name__}", param="slo")
    if (num_gpus is None) == (rate is None):
        raise InputError("give either a GPU budget (num_gpus) or a target rate (rate_req_per_s)", param="num_gpus")
    if num_gpus is not None:
        _check_int("num_gpus", num_gpus)
    if rate is not None and not (isinstance(rate, (int, float)) and not isinstance(rate, bool)
                                 and math.isfinite(rate) and rate > 0):
        raise InputError(f"must be a positive number, got {rate!r}", param="rate_req_per_s")
    if objective not in OBJECTIVES:
        raise InputError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}", param="objective")
    if loads is not None and replica_plan is not None:
        raise InputError("give measured loads or a replica plan, not both", param="loads")
    _check_int("seed", seed, 0)
    spec = get_gpu(gpu) if isinstance(gpu, str) else gpu
    arch = None if cost_model == "distserve" else (get_model(model) if isinstance(model, str) else model)
    if cost_model == "distserve" and (loads is not None or replica_plan is not None):
        raise InputError("DistServe's OPT models are dense: no loads or replica plan", param="cost_model")
    node = spec.gpus_per_node if gpus_per_node is None else _check_int("gpus_per_node", gpus_per_node)
    if workload is None:
        if isl is None or osl is None:
            raise InputError("give a workload (a trace) or both isl and osl", param="isl")
        _check_int("isl", isl)
        _check_int("osl", osl)
        n = (3000 if load == "open" else _CLOSED_REQUESTS) if num_requests is None else \
            _check_int("num_requests", num_requests, 2)
        base = poisson_workload(1.0, n, input_tokens=isl, output_tokens=osl, seed=seed)
        wl = Workload(base.arrival_s, base.input_tokens, base.output_tokens, f"isl {isl} / osl {osl}", base.provenance)
        spec_w = {"kind": "fixed", "isl_tokens": isl, "osl_tokens": osl, "seed": seed}
    else:
        if not isinstance(workload, Workload):
            raise InputError(f"expected a Workload, got {type(workload).__name__}", param="workload")
        if isl is not None or osl is not None:
            raise InputError("give a workload or isl/osl, not both", param="isl")
        wl = workload
        spec_w = {"kind": "trace", "path": workload.source}
    if num_requests is not None:
        _check_int("num_requests", num_requests, 2)
    max_context = int((wl.input_tokens + wl.output_tokens).max())
    if cost_model == "distserve":
        if precision is not None:
            raise InputError("DistServe's fitted costs have one precision (FP16)", param="precision")
        formats = None
    else:
        formats = resolve_precision(arch.precision, precision).to_dict()
    return _Setup(model if cost_model == "distserve" else arch.id, arch, spec, cost_model, node, slo, wl, spec_w,
                  "trace", seed, formats, num_requests, num_gpus,
                  None if rate is None else float(rate), objective, bool(node_local), max_context, None, load=load)


def _memory_options(setup: _Setup, utilization, fraction_of) -> dict:
    check_memory_rule(utilization, fraction_of)
    if setup.cost_kind == "distserve" and (utilization != 0.9 or fraction_of != "total"):
        raise InputError("DistServe's costs carry their own KV capacity; no memory rule", param="memory_utilization")
    return {"memory_utilization": float(utilization), "memory_fraction_of": fraction_of}


def _check_balancedness(given, setup: _Setup, loads, replica_plan) -> float | dict[int, float] | None:
    if given is not None and (loads is not None or replica_plan is not None):
        raise InputError("measured loads and replica plans set the balancedness themselves: give one of the three",
                         param="balancedness")
    if given is not None and setup.cost_kind == "distserve":
        raise InputError("DistServe's OPT models are dense: no balancedness", param="balancedness")
    return balancedness_arg(given)


# -- 1-2. candidates, screened ---------------------------------------------------------------------------
def _budget_limit(setup: _Setup) -> int:
    if setup.num_gpus is not None:
        return setup.num_gpus
    return setup.gpus_per_node * _MAX_NODES


def _candidates(setup: _Setup, loads, replica_plan, keep: int | None, say) -> dict[str, list[Candidate]]:
    limit = _budget_limit(setup)
    if setup.node_local:
        limit = min(limit, setup.gpus_per_node)
    if setup.cost_kind == "distserve":
        insts = distserve_layouts(setup.model, max_gpus=limit)
    else:
        insts = latency_model_layouts(setup.arch, setup.spec, max_gpus=limit, gpus_per_node=setup.gpus_per_node,
                                      longest_context_tokens=setup.max_context,
                                      batch_tokens_per_rank=_PREFILL_TOKENS_PER_RANK, precision=setup.precision,
                                      replica_plan=replica_plan, loads=loads, memory_options=setup.memory_options,
                                      balancedness=setup.balancedness)
    if not insts:
        raise _no_layout(setup, limit)
    say(f"{len(insts)} layouts fit in memory: {', '.join(i.label for i in insts[:8])}{' ...' if len(insts) > 8 else ''}")
    w = setup.workload
    mean_in, mean_out = float(w.input_tokens.mean()), float(w.output_tokens.mean())
    out: dict[str, list[Candidate]] = {}
    # the latency-model points the screening of a layout's candidates reads, priced together
    times = {id(inst): _times_for(setup, inst, mean_in, mean_out, [pt for role in ROLES for c in _grid(setup, role, inst)
                                                                   for pt in bound_points(c, mean_in)])
             for inst in insts}
    for role in ("prefill", "decode", "both"):
        cands = []
        for inst in insts:
            for c in _grid(setup, role, inst):
                b = bound_candidate(c, times[id(inst)], setup.slo, mean_in, mean_out)
                if b is not None:
                    cands.append(b)
        out[role] = prune(cands, keep) if setup.cost_kind != "distserve" else cands
    say("candidates per role after screening: " + ", ".join(f"{r} {len(v)}" for r, v in out.items()))
    return out


def _grid(setup: _Setup, role: str, inst: Instance) -> list[Candidate]:
    dp = inst.layout.dp
    if setup.cost_kind == "distserve":  # DistServe's own settings: unbounded batches, the KV cache binds
        return [Candidate(role, inst, None, None)]
    if role == "prefill":
        return [Candidate(role, inst, _PREFILL_TOKENS_PER_RANK * dp, min(_MAX_PREFILL_BATCH, 8 * dp))]
    if role == "decode":
        return [Candidate(role, inst, None, cap * dp) for cap in _DECODE_CAPS_PER_RANK]
    return [Candidate(role, inst, tokens * dp, cap * dp)
            for tokens in _AGG_TOKENS_PER_RANK for cap in _AGG_BATCHES_PER_RANK]


def cost_args(setup: _Setup, cand: Candidate) -> dict:
    """The recorded arguments of ``cand``'s cost model (one table serves every budget of a layout)."""
    dp = cand.instance.layout.dp
    return cost_record(setup.cost_kind, setup.model, setup.spec, cand.instance,
                       max_batch_size=max(*_AGG_BATCHES_PER_RANK, *_DECODE_CAPS_PER_RANK) * dp,
                       max_prefill_batch=_MAX_PREFILL_BATCH, max_context_tokens=setup.max_context,
                       batch_tokens=_PREFILL_TOKENS_PER_RANK * dp, precision=setup.precision,
                       memory_options=setup.memory_options)


def _cost(setup: _Setup, cand: Candidate):
    return cost_from_record(cost_args(setup, cand))


def _times_for(setup: _Setup, inst: Instance, mean_in: float, mean_out: float, points):
    context = int(mean_in + mean_out / 2)
    if setup.cost_kind == "distserve":
        cost = cost_from_record(cost_record("distserve", setup.model, None, inst, max_batch_size=1, max_prefill_batch=1,
                                            max_context_tokens=1, batch_tokens=1, precision=None))
        return lambda prompts, batch: (cost.prefill_time_s([int(mean_in)] * prompts),
                                       cost.decode_time_s([context] * min(batch, 4096)))
    prefill, decode = quick_times(setup.arch, setup.spec, inst, prompts=[p for p, _ in points],
                                  prompt_tokens=max(1, int(mean_in)), decode_batches=[b for _, b in points],
                                  context_tokens=context, precision=setup.precision)
    return lambda prompts, batch: (prefill[prompts], decode[batch])


# -- 3. scores -----------------------------------------------------------------------------------------------
def _requests_for(setup: _Setup, concurrency: float) -> int:
    """Requests per simulation: the caller's, or three times the deployment's largest batch (300 to 3000),
    so that a probe fills the instances before it drains."""
    if setup.num_requests is not None:
        return min(setup.num_requests, len(setup.workload))
    return int(min(len(setup.workload), 3000, max(300, 3 * concurrency)))


def _concurrency(cand: Candidate, setup: _Setup) -> float:
    mean_ctx = float((setup.workload.input_tokens + setup.workload.output_tokens).mean())
    kv = cand.instance.kv_tokens / max(mean_ctx, 1)
    return min(kv, cand.max_batch_size or kv)


def _score(setup: _Setup, cand: Candidate) -> PhaseScore:
    n = _requests_for(setup, _concurrency(cand, setup))
    return score(cand, _cost(setup, cand), setup.workload.head(n), setup.slo, arrivals=setup.arrivals,
                 seed=setup.seed, rel_tol=REL_TOL)


_KIND_ROLES = {"disaggregated": ("prefill", "decode"), "aggregated": ("both",)}


def _scores(setup: _Setup, roles: dict[str, list[Candidate]], time_limit_s: float):
    """Per-phase scores, best bound per GPU first; a candidate that cannot reach the best rate already
    predicted for its kind is not simulated (returns the scores and how many were skipped).

    A candidate's score is capped by its bound, so with a GPU budget ``B`` no deployment using it is
    predicted to serve more than ``floor(B / s) x bound`` (``max_rate``) or more than ``bound / s`` per
    GPU (``max_rate_per_gpu``): when that is below what the integer program already achieves with the
    scored candidates of its kind, the candidate cannot be in the program's best solution, which is
    therefore the same as with every candidate scored. The next-best solutions (the alternatives
    simulated end to end) are drawn from the candidates scored. Rate mode and DistServe's costs (its
    algorithm scores every candidate) score all, and so does a closed-loop search: its ranking is step 5's
    client-count throughput, which the open-loop bound does not bound, so a candidate the rule would skip
    can still win there.
    """
    if setup.rate is not None or setup.cost_kind == "distserve" or setup.load == "closed":
        return {role: [_score(setup, c) for c in cands] for role, cands in roles.items()}, 0
    out: dict[str, list[PhaseScore]] = {role: [] for role in roles}
    for role, cands in roles.items():  # the best bound per GPU of every role first: a rate to beat
        if cands:
            out[role].append(_score(setup, cands[0]))
    best = {kind: _predicted_best(setup, [out[r] for r in rs], time_limit_s) for kind, rs in _KIND_ROLES.items()}
    skipped = 0
    for kind, role_names in _KIND_ROLES.items():
        for role in role_names:
            for cand in roles[role][1:]:
                if _reach(setup, cand) < best[kind]:
                    skipped += 1
                    continue
                out[role].append(_score(setup, cand))
                best[kind] = _predicted_best(setup, [out[r] for r in role_names], time_limit_s)
    return out, skipped


def _reach(setup: _Setup, cand: Candidate) -> float:
    """The most a deployment using ``cand`` can be predicted to serve (``_scores``), in the merit's unit."""
    if setup.objective == "max_rate_per_gpu":
        return cand.bound_req_per_s / cand.num_gpus
    return (setup.num_gpus // cand.num_gpus) * cand.bound_req_per_s


def _predicted_best(setup: _Setup, role_scores, time_limit_s: float) -> float:
    """The integer program's best predicted rate (or rate per GPU) with these scores; 0 if none."""
    role_scores = [[s for s in scores if s.goodput_req_per_s > 0] for scores in role_scores]
    if not all(role_scores):
        return 0.0
    sols, _ = _counts(setup, role_scores, 1, time_limit_s)
    if not sols:
        return 0.0
    return sols[0].rate / sols[0].gpus if setup.objective == "max_rate_per_gpu" else sols[0].rate


# -- 4. integer program ------------------------------------------------------------------------------------
def _nodes(setup: _Setup, role_scores) -> list[int]:
    G = setup.gpus_per_node
    if setup.num_gpus is not None:
        return [G] * (setup.num_gpus // G) + ([setup.num_gpus % G] if setup.num_gpus % G else [])
    # rate mode: enough nodes for the best per-GPU candidate of every role, plus one
    need = 0
    for scores in role_scores:
        best = max(scores, key=lambda s: s.per_gpu)
        need += math.ceil(setup.rate / best.goodput_req_per_s) * best.candidate.num_gpus
    k = math.ceil(need / G) + 1
    if k > _MAX_NODES:
        raise Infeasible(f"serving {setup.rate:g} req/s needs about {need} GPUs, more than {_MAX_NODES} nodes of {G}",
                         remedy={"rate_req_per_s": round(setup.rate * _MAX_NODES * G / need / 2, 3)})
    return [G] * k


def _counts(setup: _Setup, role_scores, alternatives: int, time_limit_s: float):
    gpus = [[s.candidate.num_gpus for s in scores] for scores in role_scores]
    caps = [[s.goodput_req_per_s for s in scores] for scores in role_scores]
    nodes = _nodes(setup, role_scores)
    if setup.rate is not None:
        kw = dict(objective="min_gpus", target_req_per_s=setup.rate)
    else:
        kw = dict(objective=setup.objective)
    node_local = setup.node_local and len(role_scores) == 2
    sols, first, seen = [], None, []
    per_node_cap = setup.per_node_cap if len(role_scores) == 2 else None
    for _ in range(alternatives):
        key = (repr(gpus), repr(caps), tuple(nodes), node_local, repr(seen), per_node_cap, time_limit_s,
               tuple(sorted(kw.items())))
        if key not in setup.solved:
            setup.solved[key] = choose_instance_counts(gpus, caps, nodes, node_local=node_local, exclude=seen,
                                                       per_node_cap=per_node_cap, time_limit_s=time_limit_s, **kw)
        sol, rep = setup.solved[key]
        first = first or rep
        if sol is None:
            break
        sols.append(sol)
        seen.append(sol.choice)
    return sols, first


# -- 5. end to end ---------------------------------------------------------------------------------------
def _pools(setup: _Setup, chosen: list[PhaseScore], counts) -> list:
    return [s.candidate.pool(_cost(setup, s.candidate), int(n)) for s, n in zip(chosen, counts)]


def _end_to_end(setup: _Setup, found) -> list[Deployment]:
    """Step 5 (:mod:`planner.deploy.end_to_end`) on this search's workload and pools."""
    def workload_for(chosen, counts):  # the decode side's concurrency sets the probe's length
        return setup.workload.head(_requests_for(setup, _concurrency(chosen[-1].candidate, setup) * counts[-1]))

    def pools_for(chosen, counts):
        return _pools(setup, chosen, counts)

    if setup.rate is not None:
        return deployments_at_rate(found, workload_for=workload_for, pools_for=pools_for, slo=setup.slo,
                                   rate=setup.rate)
    if setup.load == "closed":
        return closed_loop_deployments(found, workload=setup.workload, pools_for=pools_for, slo=setup.slo)
    return goodput_deployments(found, workload_for=workload_for, pools_for=pools_for, slo=setup.slo,
                               arrivals=setup.arrivals, seed=setup.seed,
                               per_gpu=setup.objective == "max_rate_per_gpu", steady_cap=setup.steady_state_cap)


def _merit(setup: _Setup):
    if setup.rate is not None:
        return lambda d: -float(d.num_gpus)
    if setup.objective == "max_rate_per_gpu":
        return lambda d: d.per_gpu
    return lambda d: d.rate_req_per_s


def _figure_of_merit(setup: _Setup) -> str:
    if setup.rate is not None:
        return "num_gpus"
    return "rate_req_per_s_per_gpu" if setup.objective == "max_rate_per_gpu" else "rate_req_per_s"


# -- errors ---------------------------------------------------------------------------------------------
def _no_layout(setup: _Setup, limit: int) -> Infeasible:
    return Infeasible(f"no layout of {setup.model} fits on up to {limit} x {setup.spec.id} with KV room for the "
                      f"longest request ({setup.max_context:,} tokens)",
                      remedy={"num_gpus": max(2 * limit, setup.gpus_per_node)} if setup.num_gpus else {})


def _nothing_fits(setup: _Setup, scores) -> Infeasible:
    every = [s for v in scores.values() for s in v]
    where = f"{setup.num_gpus} x {setup.spec.id}" if setup.num_gpus else f"up to {_budget_limit(setup)} x {setup.spec.id}"
    if not every:
        return Infeasible(f"no layout meets TTFT {setup.slo.ttft_ms:g} ms / TPOT {setup.slo.tpot_ms:g} ms even "
                          f"unloaded on {where} (one request per DP group already misses a limit)")
    best = {r: max(v, key=lambda s: s.goodput_req_per_s, default=None) for r, v in scores.items()}
    parts = [f"{r}: best {s.candidate.label} {s.goodput_req_per_s:.3g} req/s" for r, s in best.items() if s is not None]
    return Infeasible(f"no pair of roles meets TTFT {setup.slo.ttft_ms:g} ms / TPOT {setup.slo.tpot_ms:g} ms at "
                      f"p{setup.slo.percentile:g} on {where} ({'; '.join(parts)})")


def _closest_miss(setup: _Setup, deployments) -> Infeasible:
    q = setup.slo.percentile
    d = min(deployments, key=lambda d: max(d.ttft_ms / setup.slo.ttft_ms, d.tpot_ms / setup.slo.tpot_ms))
    where = f"{setup.num_gpus} x {setup.spec.id}" if setup.num_gpus else f"{setup.rate:g} req/s on {setup.spec.id}"
    msg = (f"nothing meets TTFT {setup.slo.ttft_ms:g} ms / TPOT {setup.slo.tpot_ms:g} ms at p{q:g} on {where}: the "
           f"closest, {d.label} on {d.num_gpus} GPUs, reaches p{q:g} TTFT {d.ttft_ms:.0f} ms, TPOT {d.tpot_ms:.1f} ms, "
           f"attainment {d.attainment:.3f}")
    remedy = {"num_gpus": 2 * setup.num_gpus} if setup.num_gpus else {}
    return Infeasible(msg, remedy=remedy)


# -- records -------------------------------------------------------------------------------------------
def _request_record(setup: _Setup) -> dict:
    st = setup.workload.stats()
    target = (f"{setup.num_gpus} GPUs ({setup.objective})" if setup.num_gpus is not None
              else f"{setup.rate:g} req/s with the fewest GPUs")
    return {
        "model": str(setup.model), "gpu": setup.spec.id, "gpus_per_node": setup.gpus_per_node, "target": target,
        "num_gpus": setup.num_gpus, "rate_req_per_s": setup.rate, "objective": setup.objective,
        "figure_of_merit": _figure_of_merit(setup), "ttft_ms": setup.slo.ttft_ms, "tpot_ms": setup.slo.tpot_ms,
        "percentile": setup.slo.percentile, "rule": setup.slo.rule, "node_local": setup.node_local,
        "max_instances_per_node": setup.per_node_cap, "steady_state_cap": setup.steady_state_cap, "load": setup.load,
        "cost_model": setup.cost_kind, **setup.memory_options,
        "balancedness": ({str(k): v for k, v in setup.balancedness.items()} if isinstance(setup.balancedness, dict)
                         else setup.balancedness),
        "workload": {"source": setup.workload.source, "num_requests": len(setup.workload),
                     "input_tokens_mean": st.input_tokens_mean, "output_tokens_mean": st.output_tokens_mean},
    }


def _notes(setup: _Setup, scores: list[PhaseScore], skipped: int = 0) -> list[str]:
    notes = [f"goodput = highest rate whose p{setup.slo.percentile:g} TTFT and TPOT meet the limits "
             f"({setup.slo.rule} rule), simulated on the workload's first requests with "
             f"{'its own' if setup.workload_spec['kind'] == 'trace' else 'Poisson'} arrivals time-compressed"]
    if setup.cost_kind == "distserve":
        notes.append("cost model: DistServe's fitted A100-80GB coefficients (planner/data/distserve)")
    else:
        formats = ", ".join(f"{k} {v}" for k, v in (setup.precision or {}).items())
        notes.append("cost model: moeplan's latency model (docs/performance.md), tabulated per layout; number "
                     f"formats: {formats or 'the model profile native precision'}")
        sources = sorted({s.candidate.instance.imbalance.source for s in scores})
        notes += [f"MoE imbalance: {s}" for s in sources]
    notes.append("KV moves between prefill and decode nodes at the GPU's inter-node bandwidth" if not setup.node_local
                 else "prefill and decode of one request share a node (KV over NVLink, free)")
    if any(s.capped for s in scores):
        notes.append("some candidates never missed within their probes; their throughput bound was used")
    if skipped:
        notes.append(f"candidates not simulated: {skipped} (their throughput bound could not reach the best rate the "
                     "integer program already predicted for their kind)")
    if setup.load == "closed":
        notes.append("closed loop: each end-to-end deployment ranked by the rate it serves at the most clients whose "
                     f"steady-state p{setup.slo.percentile:g} TTFT and TPOT meet the limits (clients doubled from "
                     f"{START_CLIENTS}, then bisected to 1/{BISECT_TO}; {REQUESTS_PER_CLIENT} requests per client, at "
                     f"least {MIN_REQUESTS:,}, sent in the workload's order; "
                     "the window between the first and the last N requests to end); candidates and counts "
                     "(steps 1-4) come from open-loop goodput")
        if len(setup.workload) // 3 < MAX_CLIENTS:
            notes.append(f"closed loop: at most {len(setup.workload) // 3:,} clients (a steady window needs 3 requests "
                         f"per client; the workload has {len(setup.workload):,})")
    if setup.rate is None and setup.steady_state_cap and setup.load == "open":
        notes.append("end-to-end goodput capped at the rate the pools sustain (instances x full-batch throughput, "
                     "least role); a finite probe can absorb a burst above it")
    if setup.rate is None and setup.load == "open":
        notes.append(f"end-to-end goodput to {REL_TOL:.0%} for deployments that could still win, to "
                     f"{COARSE_TOL:.0%} for the others")
    return notes
