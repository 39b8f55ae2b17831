"""`moeplan cluster`: contiguous layer ranges per node of a heterogeneous cluster, by max-flow (Helix-class)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli._output import emit
from planner.cli.options import ActivationsOpt, ExpertsOpt, JsonOpt, KvOpt, WeightsOpt, precision_overrides

__all__ = ["cluster"]


def cluster(
    cluster_file: Annotated[str, typer.Argument(metavar="CLUSTER", help="Cluster file (YAML or JSON), a Helix instance file, or helix:NAME (shipped).")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model id or profile YAML; omit for a Helix instance (its given capacity tables).")] = None,
    time_limit_s: Annotated[float, typer.Option("--time-limit-s", help="Safety cap on the whole search in seconds (the work budget is --iterations).")] = 60.0,
    iterations: Annotated[int, typer.Option("--iterations", help="Annealing moves per chain: the search's work budget (0: seeds and the stage-chain MILP only).")] = 20000,
    chains: Annotated[int, typer.Option("--chains", help="Annealing chains, each from one of the best seeds with its own seed.")] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the annealing chains.")] = 0,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Processes running the annealing chains (the plan does not depend on it).")] = 1,
    chain_milp: Annotated[bool, typer.Option("--chain-milp/--no-chain-milp", help="Run the stage-chain MILP (best single chain of stages) as a seed (default on).")] = True,
    prune: Annotated[Optional[int], typer.Option("--prune", help="Keep only each node's fastest N links (Helix's pruning); default all.")] = None,
    isl: Annotated[int, typer.Option("--isl", help="Prompt tokens per request (capacity model: KV per request).")] = 1024,
    osl: Annotated[int, typer.Option("--osl", help="Output tokens per request (capacity model).")] = 256,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Largest decode batch a node runs (capacity model).")] = 256,
    max_weight_share: Annotated[float, typer.Option("--max-weight-share", help="Share of a GPU's usable memory weights may take; the rest is KV cache (Helix: 0.5).")] = 0.5,
    weights: WeightsOpt = None,
    experts: ExpertsOpt = None,
    kv: KvOpt = None,
    activations: ActivationsOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the layer ranges and flows as a PNG.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the cluster plan JSON here (atomically).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Place layer ranges on every node to maximise the max-flow; print ranges, pipelines, bound and gap."""
    from planner.cluster import plan_cluster, verify_cluster
    from planner.errors import InputError
    from planner.plans.io import write_plan

    result = plan_cluster(
        cluster_file, model, precision=precision_overrides(weights, experts, kv, activations), isl=isl, osl=osl,
        max_batch=max_batch, max_weight_share=max_weight_share, prune_keep=prune, iterations=iterations, chains=chains, seed=seed, workers=workers,
        chain_milp=chain_milp, time_limit_s=time_limit_s,
    )
    report = verify_cluster(result.plan)
    if not report.ok:  # a bug: the planner's own plan must verify
        c = report.failures[0]
        raise InputError(f"the plan fails verification: {c.name}: {c.detail}")
    if output is not None:
        write_plan(result.plan, output)
    if plot is not None:
        result.plot(plot)
    human = result.table() + "\nplan verified (max-flow recomputed in networkx)" + (f"; written to {output}" if output else "")
    emit(result.to_dict(), human, json_out)
