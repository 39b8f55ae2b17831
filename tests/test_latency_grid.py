"""step_time_grid prices a grid of batches and lengths at once: the same numbers as the per-point calls, bit for bit."""

import pytest

from planner.errors import InputError
from planner.perf.latency import decode_step_time_s, prefill_time_s, step_time_grid

CASES = [
    ("deepseek-v3", "h200", "tp1pp1dp8ep8", {"balancedness": 0.8}),  # MLA, EP over DP attention
    ("gpt-oss-120b", "h100", "tp1pp1dp4ep4", {}),  # sliding-window layers, MXFP4 experts
    ("qwen3-30b-a3b", "h100", "tp2pp2dp1ep1moetp2", {}),  # pipeline stages, experts split by tp
    ("qwen3-235b-a22b-fp8", "b200", "tp2pp1dp1ep2", {"precision": {"kv_cache": "fp8"}}),
]


@pytest.mark.parametrize("model,gpu,layout,opts", CASES)
@pytest.mark.parametrize("prefill", [True, False])
def test_grid_equals_point_calls(model, gpu, layout, opts, prefill):
    batches, tokens = (1, 3, 8, 24), (16, 100, 2048, 6144)
    total, core = step_time_grid(model, gpu, layout, batches, tokens, prefill=prefill, **opts)
    assert total.shape == core.shape == (len(batches), len(tokens))
    call = prefill_time_s if prefill else decode_step_time_s
    for i, b in enumerate(batches):
        for j, t in enumerate(tokens):
            ref = call(model, gpu, layout, b, t, **opts)
            assert total[i, j] == ref.total_s and core[i, j] == ref.attention_core_s, (b, t)


def test_grid_checks_its_points():
    with pytest.raises(InputError):
        step_time_grid("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1", (1, 0), (16,), prefill=False)
    with pytest.raises(InputError):
        step_time_grid("qwen3-30b-a3b", "h100", "tp1pp1dp1ep1", (1,), (16.5,), prefill=True)
