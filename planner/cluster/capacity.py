r"""Node capacity tables ``T_i(k)`` from the performance model: tokens/s a node pushes through ``k`` layers.

For a node of ``g`` GPUs of one type holding ``k`` consecutive layers of the model (tensor- and
expert-parallel over its ``g`` GPUs, ``tp = ep = g``), with ``c = isl + osl`` KV tokens per request
and a mean decode context ``isl + osl / 2``:

1. per-layer weights ``w`` and KV bytes per token ``kv`` per GPU: the memory model's stage breakdown
   (:func:`planner.perf.memory.memory_per_stage` of the whole model at ``tp = ep = g``) without the
   embeddings, divided by ``L``; ``free = usable - runtime overhead - activations`` of the same stage;
2. ``K`` = the most layers with ``k w <= max_weight_share x usable`` (Helix keeps weights within half of
   the VRAM, ``max_weight_share = 0.5``; Mei et al., ASPLOS'25) and room for one request's KV;
3. batch ``B(k) = min(max_batch, floor((free - k w) / (k kv c)))``: the requests whose KV fits;
4. ``t(B)`` = one decode step of one layer at batch ``B``: the latency model's decode step
   (:func:`planner.perf.latency.decode_step_time_s`, calibrated factors where shipped) without the
   embedding and LM head, divided by ``L``;
5. ``T(k) = min(B(k) / (k t(B(k))), min(NIC in, NIC out) / (hidden x 2 bytes))``: decode tokens per
   second, capped by the NIC at 16-bit hidden states between stages (Helix folds the NIC in the same way).

Prompt and decode tokens are counted alike, as in Helix's tables; the steady decode batch is the typical
batch (a stated simplification: no prefill interference, no queueing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from planner.errors import Infeasible, InputError
from planner.inputs.cluster import Cluster
from planner.perf.calibration import calibrated_factors, calibrated_gpus
from planner.perf.factors import DEFAULT_FACTORS
from planner.perf.latency import decode_step_time_s
from planner.perf.layout import ParallelLayout
from planner.perf.memory import memory_per_stage
from planner.perf.op_times import ACTIVATION_BYTES
from planner.profiles import get_gpu, get_model, resolve_precision

__all__ = ["NodeTables", "node_tables", "model_tables"]


@dataclass(frozen=True)
class NodeTables:
    """Capacity tables of every node (``tables[i][k - 1] = T_i(k)``), the layer count and the bytes of
    one token between stages (``activation_bytes``) and between a node and the coordinator (``token_bytes``)."""

    tables: tuple[tuple[float, ...], ...]
    num_layers: int
    activation_bytes: float
    token_bytes: float
    source: str
    notes: tuple[str, ...] = ()


def node_tables(cluster: Cluster, model: str | None = None, *, precision: Mapping[str, Any] | None = None,
                isl: int = 1024, osl: int = 256, max_batch: int = 256, max_weight_share: float = 0.5,
                memory_utilization: float = 0.9) -> NodeTables:
    """The capacity tables of a cluster: given ones (Helix instances) or the performance model's.

    Raises
    ------
    InputError
        No model for a cluster without given tables, or a bad number.
    Infeasible
        No node can hold one layer, or all nodes together hold fewer than ``L`` layers.
    """
    if cluster.given is not None:
        g = cluster.given
        if model is not None and model.lower() not in (g["name"].lower(), "given"):
            raise InputError(f"{cluster.name} carries its own capacity tables for {g['name']}; omit the model",
                             param="model")
        return NodeTables(tuple(n.capacity_tokens_per_s for n in cluster.nodes), g["num_layers"],
                          g["activation_size_bytes"], g["token_size_bytes"], f"given tables ({g['name']})")
    if model is None:
        raise InputError("a cluster without capacity tables needs a model", param="model")
    for name, v, low in (("isl", isl, 1), ("osl", osl, 1), ("max_batch", max_batch, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise InputError(f"must be an integer >= {low}, got {v!r}", param=name)
    if not 0 < max_weight_share <= 1:
        raise InputError(f"must be in (0, 1], got {max_weight_share!r}", param="max_weight_share")
    arch = get_model(model)
    prec = resolve_precision(arch.precision, precision)
    cache: dict[tuple[str, int], tuple[float, ...]] = {}
    tables = []
    for node in cluster.nodes:
        key = (node.gpu, node.gpus)
        if key not in cache:
            cache[key] = _gpu_table(arch, node.gpu, node.gpus, prec, isl, osl, max_batch, max_weight_share,
                                    memory_utilization)
        act = arch.hidden_size * ACTIVATION_BYTES
        nic = min(node.nic_in_bytes_per_s, node.nic_out_bytes_per_s) / act
        tables.append(tuple(min(t, nic) for t in cache[key]))
    L = arch.num_hidden_layers
    empty = [n.name for n, t in zip(cluster.nodes, tables) if not t]
    if len(empty) == len(tables):
        raise Infeasible(f"{arch.id}: no node can hold a single layer with its KV cache "
                         f"(isl {isl} + osl {osl} tokens, weights within {max_weight_share:.0%} of memory)")
    held = sum(len(t) for t in tables)
    if held < L:
        raise Infeasible(f"{arch.id}: the cluster holds at most {held} of its {L} layers "
                         f"(weights within {max_weight_share:.0%} of each GPU's usable memory)")
    notes = tuple(f"node {n} cannot hold one layer of {arch.id}: left out" for n in empty)
    return NodeTables(tuple(tables), L, float(arch.hidden_size * ACTIVATION_BYTES), 4.0,
                      f"performance model ({arch.id}, isl {isl}, osl {osl})", notes)


def model_tables(model: str, gpu: str, gpus: int, **options) -> tuple[float, ...]:
    """``T(k)`` for ``k = 1..K`` of one node type (no NIC cap): :func:`node_tables`' per-type table."""
    arch = get_model(model)
    prec = resolve_precision(arch.precision, options.pop("precision", None))
    return _gpu_table(arch, get_gpu(gpu).id, gpus, prec, options.get("isl", 1024), options.get("osl", 256),
                      options.get("max_batch", 256), options.get("max_weight_share", 0.5),
                      options.get("memory_utilization", 0.9))


def _gpu_table(arch, gpu: str, gpus: int, prec, isl, osl, max_batch, share, util) -> tuple[float, ...]:
    spec = get_gpu(gpu)
    layout = ParallelLayout(tp=gpus, ep=gpus)
    stage = memory_per_stage(arch, spec, layout, precision=prec, memory_utilization=util)[0]
    L = arch.num_hidden_layers
    w = (stage.total_weights_bytes - stage.embedding_bytes) / L
    kv = stage.kv_bytes_per_token / L
    free = stage.usable_memory_bytes - stage.runtime_overhead_bytes - stage.activation_bytes
    factors = calibrated_factors(spec) if spec.id in calibrated_gpus() else DEFAULT_FACTORS
    context = isl + osl
    out = []
    for k in range(1, L + 1):
        if k * w > share * stage.usable_memory_bytes:
            break
        batch = min(max_batch, math.floor((free - k * w) / (k * kv * context)))
        if batch < 1:
            break
        step = decode_step_time_s(arch, spec, layout, batch, isl + osl // 2, factors=factors, precision=prec)
        per_layer = (step.total_s - step.embedding_s - step.lm_head_s) / L
        out.append(batch / (k * per_layer))
    return tuple(out)
