"""Code that runs on real torch: the op profiler (:mod:`planner.runtime.profile`) and the local
multi-process launcher (:mod:`planner.runtime._dist`).

The only package allowed to import torch (house rule, checked by ``tests/test_architecture.py``).
Nothing here imports torch at module import: ``import planner.runtime.profile`` works without
torch, and the functions that need it import it when called.
"""

__all__: list[str] = []
