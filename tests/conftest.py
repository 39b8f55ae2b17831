"""Test order for the two CI workers (``pytest -n 2``, with ``--dist worksteal`` from pyproject.toml's addopts).

A long test that starts last leaves the other worker idle until it ends. So the ``slow`` tests (processes, torch
workers, benchmark smoke runs: 5-160 s each, where a fast test takes well under a second) go first, longest
first (the longest-processing-time rule), and the fast tests follow. Under work stealing the first worker gets
the first half of that order; the other runs through the fast half and then steals from the end of the first's
queue, the shorter tests. Only the order changes: every test runs, and a one-process run is the same set.

``_SECONDS``: the longest tests' call times in a fresh-clone run of ``pytest -n 2 --durations=80`` on the
2-core machine (2026-12-08). A test not listed counts as ``_DEFAULT_SLOW_S``; a stale entry only changes
the order.
"""

from __future__ import annotations

_SECONDS = {
    "test_runtime_numbers.py::test_regenerated_numbers_match_the_docs[loop]": 157,
    "test_cli_examples.py::test_every_example_runs_as_written[workers]": 131,
    "test_runtime_numbers.py::test_regenerated_numbers_match_the_docs[collect]": 84,
    "test_notebooks.py::test_notebook_runs[05_runtime_closed_loop.ipynb]": 68,
    "test_runtime_numbers.py::test_regenerated_numbers_match_the_docs[migration]": 59,
    "test_benchmarks_smoke.py::test_runtime_benchmark_smoke": 57,
    "test_calibration.py::test_benchmark_prints_the_tables_and_writes_json": 51,
    "test_runtime_numbers.py::test_regenerated_numbers_match_the_docs[rows]": 50,
    "test_benchmarks_smoke.py::test_reliability_report_quick": 49,
    "test_kernel_tables.py::test_held_out_errors_meet_the_target_where_claimed": 46,
    "test_benchmarks_smoke.py::test_quick_benchmark": 41,
    "test_runtime_hf.py::test_moe_layer_equals_hf_block": 37,
    "test_runtime_apply.py::test_killed_worker_leaves_a_consistent_placement_that_serves": 34,
    "test_runtime_apply.py::test_cli_apply_json_and_errors": 32,
}
_DEFAULT_SLOW_S = 10


def _expected_s(item) -> float:
    if item.get_closest_marker("slow") is None:
        return 0.0
    nodeid = item.nodeid
    return max((s for name, s in _SECONDS.items() if name in nodeid), default=_DEFAULT_SLOW_S)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_expected_s, reverse=True)  # stable: collection order among equals
