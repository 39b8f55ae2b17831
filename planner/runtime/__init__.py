"""Code that runs on real torch: the op profiler, the EP serving workers and everything that moves
or measures them.

- :mod:`planner.runtime.dist` — local multi-process launcher (spawn, one process group, gloo on
  CPU / NCCL on GPU), progress reports from the ranks, root-cause naming of a dead rank;
- :mod:`planner.runtime.moe` — the plain fp32 MoE layer (router options, shared experts) and the
  single-process reference forward;
- :mod:`planner.runtime.dispatch` — the dispatch rules (even, plan weights, static) and the
  rows they predict per slot and rank, from the routing alone (numpy only);
- :mod:`planner.runtime.workers` — ranks that hold a plan's expert slots and serve MoE layers with
  all-to-all dispatch; measured rows and step times next to the prediction (what each rank runs
  is in the package-private ``_rank`` module);
- :mod:`planner.runtime.apply` — live apply: execute a migration schedule on running workers
  (point-to-point weight moves), verify after every step, recover the last consistent placement;
- :mod:`planner.runtime.placements` — the placements between the rounds of a live apply, and the
  state file of the last consistent one (numpy only);
- :mod:`planner.runtime.hf` — tiny Hugging Face MoE models (transformers), router-hook load
  collection, MoE blocks converted to :class:`~planner.runtime.moe.MoELayer`;
- :mod:`planner.runtime.sources` — where served weights and tokens come from (tiny HF model, model
  directory, or synthetic layers);
- :mod:`planner.runtime.torchrun` — the same workers under ``torchrun`` (``env://``);
- :mod:`planner.runtime.profile` — op timings on the local device, and the held-out calibration
  of the latency model on them.

The only package allowed to import torch and transformers (house rule, checked by
``tests/test_architecture.py``). Nothing here imports either at module import: the functions that
need them import them when called.
"""

__all__: list[str] = []
