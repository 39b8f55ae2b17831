"""Performance model: parallel layouts, the per-GPU memory model and the latency model.

Modules
    layout            :class:`ParallelLayout` (tp, pp, dp, ep, moe_tp) and its rules for a model
    memory            weights, activations, overhead and the KV cache left per GPU
    memory_breakdown  what the memory model reports for one GPU (:class:`MemoryBreakdown`)
    factors           the latency model's named efficiency factors and their defaults
    op_times          time of one GEMM, memory-bound op, attention core or collective on one GPU
    latency           time of one prefill batch or decode step, by component (:class:`StepTime`)
    measured          shipped Vidur op tables and moeplan's op-timing CSV (import from the module)
    kernel_tables     measured kernel tables per GPU and family (AIConfigurator's, shipped; import from the module)
    aic_database      reads an installed aiconfigurator's silicon database as kernel tables (optional)
    fit_report        the least-squares fit and the error report every calibration shares
    kernel_fit        fits the factors per GPU to the kernel tables, held out by shape (scipy)
    calibration       fits the factors to measured op times; calibrated_factors(gpu) (scipy; import from the module)
    replica_effect    slots per GPU and balancedness a replica plan gives an instance
    estimate          TTFT, TPOT, throughput and memory of one static batch (``planner.estimate``)
    cost              what the serving simulator asks of an instance (:class:`CostModel`); DistServe's fitted model
    cost_table        moeplan's latency model tabulated as a simulator cost model (:func:`latency_model_cost`)
    simulator         discrete-event serving simulator: :class:`Pool`, :func:`simulate`
    sim_results       per-request TTFT / TPOT, percentiles and SLO attainment (:class:`SimResult`)
    goodput_search    highest rate that meets an SLO (:func:`goodput`)
    concurrency_search  most closed-loop clients that meet an SLO in steady state (:func:`max_concurrency`)

>>> from planner.perf import ParallelLayout, memory_per_gpu
>>> memory_per_gpu("qwen3-235b-a22b", "h100", ParallelLayout(tp=8, ep=8)).kv_bytes_per_token
48128.0
"""

from planner.perf import factors, latency, layout, memory, memory_breakdown, op_times
from planner.perf import concurrency_search, cost, cost_table, goodput_search, replica_effect, sim_results, simulator
from planner.perf.factors import *  # noqa: F403
from planner.perf.latency import *  # noqa: F403
from planner.perf.layout import *  # noqa: F403
from planner.perf.memory import *  # noqa: F403
from planner.perf.memory_breakdown import *  # noqa: F403
from planner.perf.op_times import *  # noqa: F403
from planner.perf.cost import *  # noqa: F403
from planner.perf.cost_table import *  # noqa: F403
from planner.perf.goodput_search import *  # noqa: F403
from planner.perf.concurrency_search import *  # noqa: F403
from planner.perf.sim_results import *  # noqa: F403
from planner.perf.simulator import *  # noqa: F403
from planner.perf.replica_effect import *  # noqa: F403

__all__ = [*layout.__all__, *memory_breakdown.__all__, *memory.__all__, *factors.__all__, *op_times.__all__,
           *latency.__all__]
__all__ += [*cost.__all__, *cost_table.__all__, *simulator.__all__, *sim_results.__all__, *goodput_search.__all__]
__all__ += [*replica_effect.__all__, *concurrency_search.__all__]
