"""The Plan document: versioned, frozen, validated, with a published JSON Schema.

A plan file is a pure function of its inputs (loads, model, parameters): it carries no wall-clock
times or dates, so the same inputs give the same bytes. Solver timings are reported on stdout.

Layout of the replica part (one row per planned MoE layer, in ``layers`` order)::

    physical_to_logical[row][slot]  logical expert held by that slot
    slot_gpu[row][slot]             GPU (EP rank) holding the slot
    slot_node[row][slot]            node of that GPU
    slots_per_gpu[row][gpu]         slots the GPU holds in that layer

Slots are numbered GPU-major (slot ``s`` on GPU ``s // slots_per_gpu`` when every GPU holds the same
number of slots), the convention of SGLang, vLLM and TensorRT-LLM.

A deployment plan (``kind: "deployment"``, :class:`DeploymentPlan`) records a serving deployment chosen
by ``planner.deploy``: the layouts and instance counts per pool, the simulated SLO attainment and the
alternatives considered. A cluster plan (``kind: "cluster"``, :class:`ClusterPlan`) records the layer range
of every node of a heterogeneous cluster chosen by ``planner.cluster.plan_cluster``, its max-flow, routing
weights and pipelines; a fleet plan (``kind: "fleet"``) a GPU mix. A placement (``kind: "placement"``,
:class:`PlacementPlan`) is the last consistent expert placement a live apply verified (``moeplan apply
--state``): slots and GPUs only, no load metrics. Replica plans keep their fields and
bytes; :data:`AnyPlan` reads any kind and :func:`plan_json_schema` is the published schema of all.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter

__all__ = [
    "SCHEMA_VERSION",
    "Plan",
    "ReplicaPlan",
    "ReplicaMetrics",
    "LoadsRef",
    "PlanInputs",
    "ReportRecord",
    "ToolInfo",
    "DeploymentPlan",
    "DeploymentInputs",
    "DeploymentRecord",
    "PoolRecord",
    "WorkloadRef",
    "SloRecord",
    "SearchReport",
    "ClusterPlan",
    "ClusterInputs",
    "ClusterNodeRecord",
    "ClusterEdgeRecord",
    "PipelineRecord",
    "ClusterReport",
    "AnyPlan",
    "plan_json_schema",
    "FleetPlan",
    "FleetInputs",
    "FleetWorkloadRef",
    "FleetBucketRecord",
    "FleetGpuRecord",
    "FleetBaseline",
    "FleetReport",
    "parse_plan_json",
    "ScenarioPlan",
    "GpuChoiceRecord",
    "PoolReplicasRecord",
    "MigrationRecord",
    "PlacementPlan",
]

SCHEMA_VERSION = "1.0"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Document(_Frozen):
    """A plan file of any kind: canonical JSON out, validated JSON in."""

    def to_json(self) -> str:
        """Canonical JSON text (deterministic: fixed field order, two-space indent, final newline)."""
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str):
        return cls.model_validate_json(text)


class ToolInfo(_Frozen):
    name: Literal["moeplan"] = "moeplan"
    version: str


class LoadsRef(_Frozen):
    """What the plan knows about the loads it was planned on."""

    sha256: str = Field(description="hash of counts shape, layer ids and values (ExpertLoads.sha256)")
    source: str = Field(description="file name(s) the loads were read from")
    shape: tuple[int, int, int] = Field(description="[steps, layers, experts] of the counts")
    layer_ids: list[int] = Field(description="hidden-layer index of each layer row of the counts")
    model: str | None = Field(default=None, description="model named by the load file, if any")


class PlanInputs(_Frozen):
    loads: LoadsRef
    model: str = Field(description="model profile id")
    parameters: dict[str, str | int | float | bool | None] = Field(
        description="every parameter that shaped the plan (algorithm, GPUs, nodes, slots, ...)"
    )


class ReportRecord(_Frozen):
    """The SolveReport as recorded in a plan (without wall time, which goes to stdout)."""

    status: Literal["optimal", "feasible", "infeasible", "error"]
    stop_reason: str
    objective: float | None = Field(
        description="sum over layers of the per-step busiest-GPU load averaged over the planning steps, tokens"
    )
    bound: float | None = Field(description="valid lower bound on the objective, tokens")
    gap: float | None = Field(description="(objective - bound) / objective")
    solver: str
    solver_version: str = ""
    message: str = ""


class ReplicaMetrics(_Frozen):
    """Predicted per-GPU loads of the plan on its input loads.

    An expert's load is split over its replicas evenly, or by ``dispatch_weights`` when the plan has
    them. "Planning steps" are the steps ``plan_steps`` of the loads the plan was made from; the
    "summed" metrics use the counts summed over those steps, the "replay" metrics are computed step by
    step and averaged. ``holdout_*`` are the same replayed on later steps the planner did not see.
    """

    load_basis: str = Field(description="how the summed loads were formed, e.g. 'sum over steps 0-199'")
    plan_steps: tuple[int, int] = Field(description="[start, stop) step range of the loads used for planning")
    gpu_load_tokens: list[list[float]] = Field(description="[row][gpu] load on the summed counts, tokens")
    max_gpu_load_tokens: list[float] = Field(description="[row] busiest-GPU load on the summed counts, tokens")
    lower_bound_tokens: list[float] = Field(
        description="[row] lower bound on the busiest-GPU load on the summed counts for this slot budget, tokens"
    )
    balancedness: list[float] = Field(description="[row] mean_g load / max_g load on the summed counts")
    balancedness_mean: float = Field(description="mean of balancedness over rows")
    replay_balancedness: list[float] = Field(
        description="[row] per-step balancedness averaged over the planning steps"
    )
    replay_balancedness_mean: float
    replay_max_gpu_load_tokens: list[float] = Field(
        description="[row] per-step busiest-GPU load averaged over the planning steps, tokens"
    )
    replay_lower_bound_tokens: list[float] = Field(
        description="[row] per-step lower bound on the busiest-GPU load averaged over the planning steps, tokens"
    )
    holdout_steps: tuple[int, int] | None = Field(
        default=None, description="[start, stop) later steps replayed as held-out, or null"
    )
    holdout_replay_balancedness: list[float] | None = Field(
        default=None, description="[row] per-step balancedness averaged over the held-out steps"
    )
    holdout_replay_balancedness_mean: float | None = None
    expert_bytes_per_gpu: list[int] = Field(
        description="[gpu] bytes of routed-expert weights the GPU holds over the planned layers"
    )


class ReplicaPlan(_Frozen):
    layers: list[int] = Field(description="hidden-layer index of each planned row (MoE layers)")
    num_hidden_layers: int = Field(ge=1)
    num_experts: int = Field(ge=1, description="logical (routed) experts per layer")
    num_gpus: int = Field(ge=1, description="EP ranks")
    num_nodes: int = Field(ge=1)
    gpus_per_node: int = Field(ge=1)
    bytes_per_expert: int = Field(ge=0, description="weight bytes of one routed-expert copy")
    duplicates_allowed: bool = Field(
        description="whether two replicas of one expert may sit on one GPU (EPLB's packing allows it)"
    )
    mode: Literal["uniform", "per-layer"] = Field(
        default="uniform", description="same slot count in every layer (what engines load) or per-layer counts"
    )
    physical_to_logical: list[list[int]]
    slot_gpu: list[list[int]]
    slot_node: list[list[int]]
    slots_per_gpu: list[list[int]]
    dispatch_weights: list[list[float]] | None = Field(
        default=None,
        description="[row][slot] share of its expert's tokens each slot receives (sums to 1 per expert); "
        "null = even split over replicas",
    )
    predicted: ReplicaMetrics


class Plan(_Document):
    """One moeplan plan document."""

    schema_version: Literal["1.0"] = SCHEMA_VERSION
    kind: Literal["replicas"] = "replicas"
    tool: ToolInfo
    inputs: PlanInputs
    replicas: ReplicaPlan
    report: ReportRecord
    _solve_report: object = PrivateAttr(default=None)
    _budget_sweep: object = PrivateAttr(default=None)

    @property
    def solve_report(self):
        """The solver's full SolveReport including wall time (None for a plan read from disk)."""
        return self._solve_report

    @property
    def budget_sweep(self):
        """The budgets tried by ``plan_replicas(..., budget="auto")`` (a list of
        :class:`~planner.replicas.sweep.BudgetPoint`); None otherwise and for a plan read from disk."""
        return self._budget_sweep

    def attach(self, *, solve_report=None, budget_sweep=None) -> "Plan":
        """Attach in-memory results that the plan file does not store (wall times, a budget sweep);
        returns the same plan. The document itself stays frozen."""
        if solve_report is not None:
            self._solve_report = solve_report
        if budget_sweep is not None:
            self._budget_sweep = budget_sweep
        return self

    def summary(self) -> str:
        """A readable per-layer table of the replica plan."""
        from planner.plans.summary import replica_table

        return replica_table(self)


# -- deployment plans ---------------------------------------------------------------------------------


class WorkloadRef(_Frozen):
    """The requests a deployment was simulated on: enough to rebuild them and to check they are the same."""

    sha256: str = Field(description="hash of arrival times and token counts of the simulated requests (Workload.sha256)")
    source: str = Field(description="trace file, builtin:NAME or 'isl/osl' for fixed lengths")
    spec: dict[str, str | int | float | None] = Field(
        description="how to rebuild the requests: kind 'fixed' (isl_tokens, osl_tokens, seed) or 'trace' (path)"
    )
    num_requests: int = Field(ge=1, description="requests of the workload before the search took its first ones")
    input_tokens_mean: float
    output_tokens_mean: float
    input_tokens_p90: float
    output_tokens_p90: float


class SloRecord(_Frozen):
    ttft_ms: float
    tpot_ms: float
    percentile: float = Field(description="the percentile the limits apply to, 100 x attainment_target")
    attainment_target: float
    rule: Literal["per_request", "percentile"]


class PoolRecord(_Frozen):
    """One pool of identical instances and everything needed to rebuild its cost model."""

    role: Literal["prefill", "decode", "both"]
    layout: str = Field(description="layout string of one instance, e.g. tp1pp1dp8ep8")
    gpus_per_instance: int = Field(ge=1)
    instances: int = Field(ge=1)
    token_budget: int | None = Field(description="tokens per engine step; null: unbounded")
    max_batch_size: int | None = Field(description="sequences per engine step; null: the cost model's")
    kv_capacity_tokens: int = Field(description="KV-cache tokens of one instance")
    balancedness: float = Field(description="MoE balancedness (mean / max GPU load) the MoE time uses")
    expert_slots_per_gpu: int | None
    cost: dict[str, str | int | float | dict[str, str] | None] = Field(
        description="cost-model kind and its parameters (``precision``: number format per model component)")
    alone_goodput_req_per_s: float = Field(description="goodput of one instance in its role alone (the search's score)")


class DeploymentRecord(_Frozen):
    """A deployment simulated end to end: its pools, GPUs and the simulation at its rate."""

    mode: Literal["disaggregated", "aggregated"]
    xpyd: str = Field(description="e.g. 1P2D or 4xAGG")
    pools: list[PoolRecord]
    num_gpus: int
    nodes: list[list[int]] = Field(description="[pool][node] instances on each node, from the integer program")
    rate_req_per_s: float = Field(description="simulated rate: the joint goodput (GPU budget) or the target rate")
    num_requests: int = Field(description="requests simulated (the workload's first ones)")
    arrivals: Literal["trace", "poisson"]
    seed: int
    attainment: float = Field(description="share of requests meeting both limits at rate_req_per_s")
    ttft_ms: float = Field(description="TTFT at the SLO's percentile")
    tpot_ms: float = Field(description="TPOT at the SLO's percentile")
    meets_slo: bool
    tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float | None
    concurrency: int | None = Field(
        default=None, description="closed-loop search: the most clients meeting the SLO in steady state; the rate, "
        "attainment and percentiles are then the steady window's (null: open loop, arrivals at the rate)")


class DeploymentInputs(_Frozen):
    model: str
    gpu: str
    gpus_per_node: int
    slo: SloRecord
    workload: WorkloadRef
    parameters: dict[str, str | int | float | bool | None] = Field(
        description="every parameter that shaped the search (GPU budget or rate, objective, grids, cost model)"
    )
    precision: dict[str, str] | None = Field(
        default=None, description="number format per model component the latency model priced (null: DistServe's costs)")
    imbalance_source: list[str] = Field(description="where each EP size's balancedness came from")


class SearchReport(_Frozen):
    """The integer program's outcome for the chosen deployment (wall times go to stdout)."""

    status: Literal["optimal", "feasible", "infeasible", "error"]
    stop_reason: str
    figure_of_merit: Literal["rate_req_per_s", "rate_req_per_s_per_gpu", "num_gpus"]
    objective: float | None = Field(description="the integer program's value of the chosen layouts")
    solver: str
    solver_version: str = ""


class DeploymentPlan(_Document):
    """A serving deployment: layouts and counts per pool, simulated attainment, alternatives considered."""

    schema_version: Literal["1.0"] = SCHEMA_VERSION
    kind: Literal["deployment"] = "deployment"
    tool: ToolInfo
    inputs: DeploymentInputs
    chosen: DeploymentRecord
    alternatives: list[DeploymentRecord] = Field(description="the other deployments simulated, ranked")
    comparison: str = Field(description="aggregated against disaggregated: which wins and by how much")
    report: SearchReport
    replica_plan: Plan | None = Field(default=None, description="the replica plan the MoE pools used, if any")


# -- fleet plans (GPU mix, ``planner.cluster.fleet``) ------------------------------------------------


class FleetWorkloadRef(_Frozen):
    """The requests the buckets were cut from."""

    source: str = Field(description="trace file, builtin:NAME, or 'profile table' buckets")
    sha256: str = Field(description="hash of the workload (Workload.sha256)")
    num_requests: int = Field(ge=1)
    trace_rate_req_per_s: float = Field(description="the trace's own mean rate")


class FleetInputs(_Frozen):
    model: str | None = Field(description="model profile id (null: capacities from a profile table alone)")
    slo: SloRecord | None = Field(description="the SLO the capacities hold at (null: the profile table's own)")
    workload: FleetWorkloadRef
    rate_req_per_s: float = Field(gt=0, description="total request rate the fleet must serve")
    capacity_source: Literal["performance_model", "profile_table"]
    parameters: dict[str, str | int | float | bool | None] = Field(
        description="every parameter that shaped the plan (edges, slices, time limit, simulation settings)")
    precision: dict[str, str] | None = Field(default=None, description="number format per model component priced")


class FleetBucketRecord(_Frozen):
    """One request-size bucket: input and output length ranges (max inclusive, null: unbounded), its requests."""

    input_tokens_min: int = Field(ge=0, description="exclusive lower edge of the prompt length")
    input_tokens_max: int | None = Field(description="inclusive upper edge of the prompt length (null: none)")
    output_tokens_min: int = Field(ge=0, description="exclusive lower edge of the output length")
    output_tokens_max: int | None = Field(description="inclusive upper edge of the output length (null: none)")
    input_tokens_mean: float = Field(description="mean prompt tokens of the bucket's requests")
    output_tokens_mean: float = Field(description="mean output tokens of the bucket's requests")
    num_requests: int = Field(ge=1)
    share: float = Field(description="share of the workload's requests in this bucket")
    rate_req_per_s: float = Field(description="share x the fleet's rate")
    assignment: list[float] = Field(description="[gpu type] share of this bucket's rate each GPU type serves")


class FleetGpuRecord(_Frozen):
    """One GPU type: its serving instance, price, availability, capacity per bucket and what the plan buys."""

    gpu: str
    layout: str = Field(description="layout of one instance, e.g. tp2pp1dp1ep2 (or 'table' from a profile table)")
    gpus_per_instance: int = Field(ge=1)
    price_per_gpu_hour_usd: float = Field(ge=0)
    price_per_instance_hour_usd: float = Field(ge=0, description="gpus_per_instance x price_per_gpu_hour_usd")
    price_source: str
    available_gpus: int | None = Field(description="most GPUs of this type the fleet may use (null: unlimited)")
    capacity_req_per_s: list[float] = Field(
        description="[bucket] highest rate one instance sustains within the SLO on that bucket's requests (0: none)")
    instances: int = Field(ge=0)
    gpus: int = Field(ge=0, description="instances x gpus_per_instance")
    load_instances: float = Field(description="sum over buckets of rate x share / capacity: instances' worth of work")
    cost_per_hour_usd: float


class FleetBaseline(_Frozen):
    """A fleet of one GPU type only (or the greedy rule): its cheapest instance count and cost."""

    name: str = Field(description="the GPU type, or 'greedy' (each bucket on its cheapest type per req/s)")
    feasible: bool
    instances: list[int] = Field(description="[gpu type] instances")
    cost_per_hour_usd: float | None
    note: str = ""


class FleetReport(_Frozen):
    """The covering program's outcome (wall times go to stdout)."""

    status: Literal["optimal", "feasible", "infeasible", "error"]
    stop_reason: str
    objective: float | None = Field(description="cost of the fleet, $/hour")
    bound: float | None = Field(description="valid lower bound on the cost, $/hour")
    gap: float | None
    solver: str
    solver_version: str = ""
    message: str = ""


class FleetPlan(_Document):
    """The cheapest GPU mix serving a request mix within an SLO (Mélange's covering program)."""

    schema_version: Literal["1.0"] = SCHEMA_VERSION
    kind: Literal["fleet"] = "fleet"
    tool: ToolInfo
    inputs: FleetInputs
    slices: int | None = Field(description="Mélange's slice factor (null: bucket shares are continuous)")
    buckets: list[FleetBucketRecord]
    gpu_types: list[FleetGpuRecord]
    cost_per_hour_usd: float
    cost_per_million_tokens_usd: float = Field(description="$/hour over prompt + output tokens per hour, x 1e6")
    cost_per_million_output_tokens_usd: float
    baselines: list[FleetBaseline] = Field(description="one per GPU type (that type alone), then 'greedy'")
    saving_vs_best_single_type: float | None = Field(
        description="1 - cost / cheapest single-type fleet (null: no single type is feasible)")
    report: FleetReport


# -- cluster plans (heterogeneous layer placement) ------------------------------------------------------


class ClusterNodeRecord(_Frozen):
    """One node of a cluster plan: the contiguous layers it holds and what flows through it."""

    name: str
    gpu: str
    gpus: int = Field(ge=1)
    region: str
    first_layer: int = Field(ge=0)
    last_layer: int = Field(description="exclusive: the node holds layers first_layer .. last_layer - 1")
    capacity_table_tokens_per_s: list[float] = Field(description="T(k) for k = 1..K: tokens/s through k layers")
    capacity_tokens_per_s: float = Field(description="T(last_layer - first_layer)")
    nic_in_tokens_per_s: float
    nic_out_tokens_per_s: float
    flow_tokens_per_s: float = Field(description="tokens/s the max-flow sends through the node")


class ClusterEdgeRecord(_Frozen):
    """A link of the layout's flow graph (it abuts: the sender's last layer + 1 is the receiver's first)."""

    src: str = Field(description="node name or 'source' (the coordinator)")
    dst: str = Field(description="node name or 'sink' (the coordinator)")
    capacity_tokens_per_s: float
    flow_tokens_per_s: float
    routing_weight: float = Field(description="share of the sender's output sent here (weighted round robin)")


class PipelineRecord(_Frozen):
    """A source-sink path of the flow: one pipeline-parallel engine over these nodes."""

    nodes: list[str]
    layer_partition: str = Field(description="layers per stage, VLLM_PP_LAYER_PARTITION style ('20,20,40')")
    rate_tokens_per_s: float


class ClusterInputs(_Frozen):
    cluster: str = Field(description="cluster file or helix:NAME")
    cluster_sha256: str
    model: str
    num_layers: int = Field(ge=1)
    capacity_source: str = Field(description="given tables or the performance model (model, isl, osl)")
    parameters: dict[str, str | int | float | bool | None] = Field(
        description="every parameter that shaped the plan (precision, work budget, seed, pruning)")


class ClusterReport(_Frozen):
    """The placement search's outcome (maximisation: ``bound`` is an upper bound; wall times go to stdout)."""

    status: Literal["optimal", "feasible", "infeasible", "error"]
    stop_reason: str
    objective: float | None = Field(description="max-flow of the layout, tokens/s")
    bound: float | None = Field(description="valid upper bound on the max-flow of any layout, tokens/s")
    gap: float | None = Field(description="(bound - objective) / objective")
    solver: str
    solver_version: str = ""
    message: str = ""


class ClusterPlan(_Document):
    """Layer ranges per node of a heterogeneous cluster, the max-flow, routing weights and pipelines."""

    schema_version: Literal["1.0"] = SCHEMA_VERSION
    kind: Literal["cluster"] = "cluster"
    tool: ToolInfo
    inputs: ClusterInputs
    nodes: list[ClusterNodeRecord]
    edges: list[ClusterEdgeRecord]
    pipelines: list[PipelineRecord]
    throughput_tokens_per_s: float = Field(description="max-flow of the layout: tokens/s through all layers")
    helix_upper_bound_tokens_per_s: float = Field(description="sum_i max_k k T_i(k) / L")
    crossing_bound_tokens_per_s: float = Field(description="largest F with L F <= sum_i max_k k min(T_i(k), F)")
    method: str = Field(description="the heuristic or search step that found the layout")
    report: ClusterReport
    notes: list[str] = Field(default_factory=list)


# -- scenario plans (the main job, ``planner.scenario``) ---------------------------------------------


class GpuChoiceRecord(_Frozen):
    """One GPU type's best deployment and what it costs per token (price from the profile or the scenario)."""

    gpu: str
    price_per_gpu_hour_usd: float | None
    num_gpus: int
    deployment: str = Field(description="label of that type's chosen deployment")
    meets_slo: bool
    rate_req_per_s: float
    tokens_per_s: float = Field(description="prompt + output tokens per second the deployment serves: its rate x the "
                                            "workload's mean input + output tokens")
    usd_per_hour: float | None
    usd_per_million_tokens: float | None = Field(description="usd_per_hour / (tokens_per_s x 3600) x 1e6")


class PoolReplicasRecord(_Frozen):
    """The replica plan of one pool of the chosen deployment (its EP size), and the balancedness priced."""

    role: Literal["prefill", "decode", "both"]
    layout: str
    ep: int = Field(ge=2)
    priced_balancedness: float = Field(description="the balancedness the deployment search priced this pool with")
    engine_default_balancedness: float = Field(
        description="replayed balancedness of the engine's default placement (contiguous experts, no replicas)")
    plan: Plan


class MigrationRecord(_Frozen):
    """From the placement a pool runs now to its new replica plan: copies, steps, bytes and time on the fabric."""

    role: Literal["prefill", "decode", "both"]
    running_source: str = Field(description="the running plan's file, or the loads it was planned from")
    running_plan: Plan
    target_plan: Plan = Field(description="the new plan in the running GPUs' numbering and slot order")
    copies: int
    naive_copies: int
    bytes_moved: int
    steps: int
    link_seconds: float = Field(description="sum over steps of the busiest receiving GPU's bytes / its link bandwidth")
    schedule: dict = Field(description="the migration schedule (moeplan migrate -o), checked by the verifier")


class ScenarioPlan(_Document):
    """The main job's combined plan: deployment per GPU type, replicas per pool, migration, fleet, cluster."""

    schema_version: Literal["1.0"] = SCHEMA_VERSION
    kind: Literal["scenario"] = "scenario"
    tool: ToolInfo
    name: str
    description: str
    scenario: dict = Field(description="the scenario as run, normalised (paths resolved, defaults filled)")
    scenario_sha256: str
    model: str
    chosen_gpu: str | None = Field(description="the GPU type chosen (cheapest per token among those meeting the SLO)")
    gpu_choices: list[GpuChoiceRecord]
    deployments: list[DeploymentPlan] = Field(description="one deployment search per GPU type, in gpu_choices order")
    replicas: list[PoolReplicasRecord] = Field(description="a replica plan per MoE pool (EP > 1) of the chosen deployment")
    replica_plan: Plan | None = Field(default=None, description="replica-only scenarios: the one replica plan")
    migrations: list[MigrationRecord]
    fleet: FleetPlan | None = None
    cluster: ClusterPlan | None = None
    decisions: list[str] = Field(description="what was decided and why, with the alternatives' numbers")

    @property
    def chosen_deployment(self) -> DeploymentPlan | None:
        """The deployment plan of the chosen GPU type (None without a deployment stage)."""
        return next((d for d in self.deployments if d.inputs.gpu == self.chosen_gpu), None)


# -- placements ---------------------------------------------------------------------------------------


class PlacementPlan(_Document):
    """An expert placement running workers served and verified: the state a live apply (``moeplan apply
    --state``) leaves after every verified step, the last consistent one after a fault.

    Same row layout as a replica plan's ``physical_to_logical`` / ``slot_gpu`` (GPU-major), but a GPU
    may hold more slots than others in a layer: between migration steps a staged copy occupies a
    staging slot. It carries no load metrics (it was not planned on loads); ``moeplan verify`` checks
    its structure and model, ``moeplan apply --from`` continues the migration from it, ``moeplan
    export`` writes it when every GPU holds the same number of slots."""

    schema_version: Literal["1.0"] = SCHEMA_VERSION
    kind: Literal["placement"] = "placement"
    tool: ToolInfo
    model: str = Field(description="model profile id (the plans' model)")
    layers: list[int] = Field(description="hidden-layer index of each row (MoE layers)")
    num_hidden_layers: int = Field(ge=1)
    num_experts: int = Field(ge=1, description="logical (routed) experts per layer")
    num_gpus: int = Field(ge=1, description="EP ranks")
    num_nodes: int = Field(ge=1)
    gpus_per_node: int = Field(ge=1)
    bytes_per_expert: int = Field(ge=0, description="weight bytes of one routed-expert copy (the plans' model)")
    physical_to_logical: list[list[int]] = Field(description="[row][slot] logical expert held by the slot")
    slot_gpu: list[list[int]] = Field(description="[row][slot] GPU holding the slot (GPU-major)")
    step: int = Field(ge=0, description="migration steps applied (0: the placement running before any move)")
    steps: int = Field(ge=0, description="steps of the whole migration")
    from_plan_sha256: str = Field(description="sha256 of the running plan's JSON the migration started from")
    to_plan_sha256: str = Field(description="sha256 of the target plan's JSON (the new plan in the running GPUs' numbering)")
    max_abs_diff: float = Field(ge=0, description="outputs' max abs difference to the single-process reference at this step")
    verified_on: str = Field(description="what the verifying forward served: source, tokens, seed, dispatch")


#: a plan file of any kind, told apart by ``kind``
AnyPlan = Annotated[Union[Plan, DeploymentPlan, FleetPlan, ClusterPlan, ScenarioPlan, PlacementPlan],
                    Field(discriminator="kind")]
_ANY = TypeAdapter(AnyPlan)


def parse_plan_json(text: str) -> Plan | DeploymentPlan | FleetPlan | ClusterPlan | ScenarioPlan | PlacementPlan:
    """Validate a plan document of any kind, strictly: a number written as a string (``"3"`` for an
    expert id) is refused, not converted."""
    return _ANY.validate_json(text, strict=True)


def plan_json_schema() -> dict:
    """The published JSON Schema of plan files (``planner/plans/plan.schema.json``): every kind."""
    return _ANY.json_schema()
