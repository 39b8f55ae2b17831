"""The CLI's vocabulary: the choices, the options more than one command takes, and the tables that
tie flags to library parameters (errors) and to their previous spellings (``docs/cli.md``).

Rules the commands keep (``docs/cli.md`` lists every flag):

- one meaning per flag name, one short flag per long one: ``--gpus N`` is a count, ``--gpu TYPE``
  a GPU profile; ``--tokens`` tokens in total, ``--batch-tokens`` tokens in one forward pass;
- ``--time-limit-s`` wherever a solver runs; ``--timeout-s`` is a deadline of a live run, which
  fails when it passes instead of returning the best answer found so far;
- choices are :class:`~enum.Enum` s, so ``--help`` lists them and typer checks them; the commands
  hand the library their ``.value`` (the plain strings it has always taken).

The choice lists repeat the library's (``planner.replicas.ALGORITHMS`` ...) rather than import
them: importing the replica planner costs ~1 s of start-up (scipy) that ``moeplan models`` should not
pay. ``tests/test_cli.py`` keeps the two lists equal.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

__all__ = [
    "Mode",
    "Algorithm",
    "ReplanAlgorithm",
    "Policy",
    "Split",
    "Target",
    "Dispatch",
    "Format",
    "Objective",
    "Load",
    "JsonOpt",
    "ModelOpt",
    "GpusOpt",
    "NodesOpt",
    "RedundantOpt",
    "LoadsArg",
    "NumExpertsOpt",
    "MemoryFractionOf",
    "MemoryFractionOfOpt",
    "MemoryUtilizationOpt",
    "RankFiles",
    "RankFilesOpt",
    "SampleStepsOpt",
    "SpareSlotsOpt",
    "NoRelabelOpt",
    "WeightsOpt",
    "ExpertsOpt",
    "KvOpt",
    "ActivationsOpt",
    "precision_overrides",
    "PARAM_FLAGS",
    "COMMAND_PARAM_FLAGS",
    "RENAMED_FLAGS",
    "flag_for",
    "read_loads_arg",
]


# ---- choices ------------------------------------------------------------------------------------


class Mode(str, Enum):
    """Shape of the replica budget (``planner.replicas.MODES``)."""

    uniform = "uniform"
    per_layer = "per-layer"


class Algorithm(str, Enum):
    """Replica planner (``planner.replicas.ALGORITHMS``)."""

    stepaware = "stepaware"
    eplb = "eplb"
    none = "none"


class ReplanAlgorithm(str, Enum):
    """Planner of every re-plan in a simulation (the replica planners that move replicas)."""

    stepaware = "stepaware"
    eplb = "eplb"


class Policy(str, Enum):
    """Where replicas may go (``planner.replicas.POLICIES``)."""

    auto = "auto"
    hierarchical = "hierarchical"
    global_ = "global"


class Split(str, Enum):
    """Token split between the replicas of an expert (``planner.replicas.SPLITS``)."""

    even = "even"
    optimal = "optimal"


class Target(str, Enum):
    """Engine export format (``planner.plans.export.TARGETS``)."""

    sglang = "sglang"
    vllm = "vllm"
    trtllm = "trtllm"


class Dispatch(str, Enum):
    """Dispatch rule of the runtime workers (``planner.runtime.dispatch.DISPATCHES``)."""

    even = "even"
    plan = "plan"
    deterministic = "deterministic"


class Format(str, Enum):
    """Number format of weights, KV cache or activations (``planner.profiles.FORMATS``)."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    fp8 = "fp8"
    fp8_block = "fp8-block"
    int8 = "int8"
    mxfp4 = "mxfp4"
    nvfp4 = "nvfp4"
    int4_awq = "int4-awq"
class Objective(str, Enum):
    """What a GPU budget maximises in ``deploy`` (``planner.deploy.OBJECTIVES``: max_rate, max_rate_per_gpu)."""

    max_rate = "max_rate"
    max_rate_per_gpu = "max_rate_per_gpu"


class Load(str, Enum):
    """How ``deploy`` loads each deployment end to end (``planner.deploy.LOADS``: open, closed)."""

    open = "open"
    closed = "closed"


# ---- options shared by several commands (one spelling, one help text) ---------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model id, Hugging Face name, profile YAML or config.json.")]
GpusOpt = Annotated[int, typer.Option("--gpus", help="Number of GPUs (EP ranks) holding experts.")]
NodesOpt = Annotated[int, typer.Option("--nodes", "-n", help="Number of nodes the GPUs sit in.")]
RedundantOpt = Annotated[Optional[int], typer.Option("--redundant", "-r", help="Redundant slots per layer (copies beyond one per expert); default one per GPU, rounded up so that slots divide over the GPUs.")]
LoadsArg = Annotated[list[str], typer.Argument(metavar="LOADS", help="Expert-load file(s): .npz, .json, per-rank .csv (summed), or builtin:NAME (see `moeplan loads --list`).")]
NumExpertsOpt = Annotated[Optional[int], typer.Option("--num-experts", help="Experts per layer, for CSV dumps that miss some experts.")]


class MemoryFractionOf(str, Enum):
    """What --memory-utilization is a share of (``planner.perf.memory.MEMORY_FRACTION_OF``)."""

    total = "total"
    free = "free"


MemoryUtilizationOpt = Annotated[float, typer.Option("--memory-utilization", help="Share of GPU memory the engine may use (vLLM gpu_memory_utilization, SGLang mem-fraction-static), or with --memory-fraction-of free the share of the memory left after weights, activations and overhead that the KV cache gets (TensorRT-LLM free_gpu_memory_fraction).")]
MemoryFractionOfOpt = Annotated[MemoryFractionOf, typer.Option("--memory-fraction-of", help="total (vLLM, SGLang: a cap on all the engine uses) or free (TensorRT-LLM: the KV cache's share of what is left once weights are loaded).")]


class RankFiles(str, Enum):
    """How per-rank load files combine (``planner.inputs.readers.RANK_FILES``)."""

    auto = "auto"
    sum = "sum"
    copies = "copies"


RankFilesOpt = Annotated[RankFiles, typer.Option("--rank-files", help="Per-rank dumps (several CSVs, TensorRT-LLM ranks): sum them (DP attention), take one of identical copies (TP attention), or auto: copies when all files are identical, else sum.")]
SampleStepsOpt = Annotated[Optional[int], typer.Option("--sample-steps", help="The step-aware packer plans on at most this many steps of its window.")]
SpareSlotsOpt = Annotated[int, typer.Option("--spare-slots", help="Staging slots a GPU may use per layer during the migration; 0 moves in place only.")]
NoRelabelOpt = Annotated[bool, typer.Option("--no-relabel", help="Keep the new plan's GPU numbers instead of permuting them to keep more copies in place.")]
WeightsOpt = Annotated[Optional[Format], typer.Option("--weights", help="Format of every weight (attention, dense, shared and, unless --experts is given, routed experts); default the model's native precision (`moeplan models`).")]
ExpertsOpt = Annotated[Optional[Format], typer.Option("--experts", help="Format of the routed-expert weights; default --weights or the native precision.")]
KvOpt = Annotated[Optional[Format], typer.Option("--kv", help="Format of the KV cache: bf16, fp16, fp32, fp8 or int8; default the native precision (the model dtype).")]
ActivationsOpt = Annotated[Optional[Format], typer.Option("--activations", help="Format of the GEMM inputs (fp8 with fp8 weights: w8a8; bf16: weight-only); default the native precision.")]


def precision_overrides(weights, experts, kv, activations) -> dict | None:
    """The ``precision=`` mapping of the library from the four format options (None: the native precision)."""
    given = {"weights": weights, "experts": experts, "kv_cache": kv, "activations": activations}
    return {k: v.value for k, v in given.items() if v is not None} or None


# ---- library parameter -> flag (errors) ---------------------------------------------------------

#: Library parameter names and the flags that fill them. An :class:`~planner.errors.InputError`
#: whose ``param`` is here is shown under the flag (``moeplan: error: --redundant: ...``) when the
#: running command takes that flag; otherwise it is shown as the library wrote it (``str(exc)``).
PARAM_FLAGS: dict[str, str] = {
    # inputs and profiles
    "model": "--model",
    "gpu": "--gpu",
    "num_experts": "--num-experts",
    "rank_files": "--rank-files",
    # replica planning (plan_replicas, simulate_replanning, certify_plan)
    "num_gpus": "--gpus",
    "num_nodes": "--nodes",
    "redundant_slots": "--redundant",
    "budget_gb": "--budget-gb",
    "budget": "--auto-budget",
    "plot": "--plot",
    "mode": "--mode",
    "algorithm": "--algorithm",
    "policy": "--policy",
    "num_groups": "--groups",
    "layout": "--layout",
    "window_steps": "--window",
    "holdout_steps": "--holdout",
    "split": "--split",
    "sample_steps": "--sample-steps",
    "swap_evaluations": "--swap-evaluations",
    "swap_time_limit_s": "--swap-time-limit-s",
    "time_limit_s": "--time-limit-s",
    "every_steps": "--every",
    "threshold_b": "--thresholds",
    "check_steps": "--check-steps",
    "tolerance_b": "--tolerance-b",
    # synthetic traces and collection
    "num_steps": "--steps",
    "num_layers": "--layers",
    "top_k": "--top-k",
    "tokens_per_step": "--batch-tokens",
    "batch_tokens": "--batch-tokens",
    "drift": "--drift",
    "first_layer": "--first-layer",
    "seed": "--seed",
    "token_seed": "--seed",
    # plans, migration and the runtime
    "target": "--target",
    "output": "--output",
    "rate_points": "--rate-points",
    "step_rate_per_s": "--step-rate",
    "allow_unsupported": "--allow-unsupported",
    "spare_slots_per_gpu": "--spare-slots",
    "dispatch": "--dispatch",
    "state_path": "--state",
    "timeout_s": "--timeout-s",
    "num_workers": "--workers",
    "threads": "--threads",
    "hidden": "--hidden",
    "intermediate": "--intermediate",
    # estimate
    "tp": "--tp",
    "pp": "--pp",
    "dp": "--dp",
    "ep": "--ep",
    "moe_tp": "--moe-tp",
    "batch": "--batch",
    "isl": "--isl",
    "osl": "--osl",
    "weights": "--weights",
    "experts": "--experts",
    "kv_cache": "--kv",
    "activations": "--activations",
    "memory_utilization": "--memory-utilization",
    "memory_fraction_of": "--memory-fraction-of",
    "max_batch_tokens": "--max-batch-tokens",
    "replica_plan": "--replicas",
    # deploy
    "rate_req_per_s": "--rate",
    "ttft_ms": "--ttft-ms",
    "tpot_ms": "--tpot-ms",
    "percentile": "--percentile",
    "workload": "--trace",
    "loads": "--loads",
    "objective": "--objective",
    "load": "--load",
    "num_requests": "--requests",
    "balancedness": "--balancedness",
    # cluster
    "iterations": "--iterations",
    "chains": "--chains",
    "workers": "--workers",
    "prune_keep": "--prune",
    "max_batch": "--max-batch",
    "max_weight_share": "--max-weight-share",
    "chain_milp": "--chain-milp",
    # fleet (GPU mix)
    "gpus": "--gpu",
    "prices": "--price",
    "available_gpus": "--available",
    "profile_table": "--profile-table",
    "input_edges": "--input-edges",
    "output_edges": "--output-edges",
    "slices": "--slices",
    "max_instance_gpus": "--max-instance-gpus",
}

#: Where one library parameter is filled by different flags in different commands.
COMMAND_PARAM_FLAGS: dict[tuple[str, str], str] = {
    ("collect", "num_tokens"): "--tokens",  # hf.token_stream: tokens in total
    ("apply", "num_tokens"): "--batch-tokens",  # runtime.sources.load_source: tokens in one forward pass
    ("estimate", "path"): "--profile",  # perf.calibration.profile_factors: your op-timing CSV
}


def flag_for(param: str | None, command: str | None, flags: set[str] | frozenset[str]) -> str | None:
    """The flag of ``command`` that fills library parameter ``param``, or None.

    ``flags`` are the options ``command`` takes: a parameter filled by something else (a scenario
    file, a plan) is not shown under a flag the user did not give.

    >>> flag_for("redundant_slots", "replicas", {"--redundant", "--gpus"})
    '--redundant'
    >>> flag_for("redundant_slots", "plan", {"--scenario", "--out-dir"}) is None
    True
    >>> flag_for("num_tokens", "apply", {"--batch-tokens"})
    '--batch-tokens'
    """
    if param is None:
        return None
    flag = COMMAND_PARAM_FLAGS.get((command or "", param), PARAM_FLAGS.get(param))
    return flag if flag in flags else None


# ---- previous spellings (docs/cli.md, and the hint shown when one is used) ----------------------

#: (command, old spelling) -> what to write now.
RENAMED_FLAGS: dict[tuple[str, str], str] = {
    ("replicas", "-d"): "--gpus",
    ("replan", "-d"): "--gpus",
    ("replicas", "--swap-time-s"): "--swap-time-limit-s",
    ("replicas", "--certify-time-s"): "--certify --time-limit-s",
    ("export", "-t"): "--target",
    ("collect", "-t"): "--tokens",
    ("collect", "-b"): "--batch-tokens",
    ("estimate", "-b"): "--batch",
    ("estimate", "--kv-dtype-bytes"): "--kv",
    ("synth", "--tokens"): "--batch-tokens",
    ("synth", "--experts"): "--num-experts",
    ("apply", "--tokens"): "--batch-tokens",
    ("plan", "--scenario"): "the SCENARIO argument (moeplan plan FILE)",
    ("plan", "-s"): "the SCENARIO argument (moeplan plan FILE)",
}


# ---- reading the LOADS argument -----------------------------------------------------------------


def read_loads_arg(paths: list[str], num_experts: int | None = None, rank_files: "RankFiles | str" = "auto"):
    """The loads named by a LOADS argument or ``--loads``: one file, an engine dump, or per-rank files.

    What the reader noticed (empty recorder rows dropped, identical rank files read as copies) is
    printed as a warning.
    """
    from planner.cli._output import warn
    from planner.inputs.readers import read_loads

    mode = rank_files.value if isinstance(rank_files, RankFiles) else rank_files
    loads = read_loads(paths if len(paths) > 1 else paths[0], num_experts=num_experts, rank_files=mode)
    if loads.provenance.get("reader_notes"):
        warn(f"{loads.source}: {loads.provenance['reader_notes']}")
    return loads
