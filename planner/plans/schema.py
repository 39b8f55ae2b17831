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
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = [
    "SCHEMA_VERSION",
    "Plan",
    "ReplicaPlan",
    "ReplicaMetrics",
    "LoadsRef",
    "PlanInputs",
    "ReportRecord",
    "ToolInfo",
]

SCHEMA_VERSION = "1.0"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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


class Plan(_Frozen):
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

    def to_json(self) -> str:
        """Canonical JSON text (deterministic: fixed field order, two-space indent, final newline)."""
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        return cls.model_validate_json(text)

    def summary(self) -> str:
        """A readable per-layer table of the replica plan."""
        from planner.plans.summary import replica_table

        return replica_table(self)
