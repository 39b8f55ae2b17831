"""Build of the optional C core of the serving simulator (``planner.perf._simcore``, docs/simulator.md).

Everything else is declared in pyproject.toml. The extension is optional: without a C compiler the
install succeeds and the simulator runs its Python loop. ``-ffp-contract=off`` forbids fused
multiply-adds, so the core's floating-point results equal Python's on every CPU.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("planner.perf._simcore", ["planner/perf/_simcore.c"], optional=True,
                             extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math"])])
