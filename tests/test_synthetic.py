"""The synthetic DeepSeek-scale trace generator and its calibration figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from planner.errors import InputError
from planner.inputs.loads import ExpertLoads
from planner.inputs.synthetic import calibration_stats, synthetic_trace

SMALL = {"num_steps": 30, "num_layers": 3, "num_experts": 16, "top_k": 4, "tokens_per_step": 256}


def test_shape_layers_and_totals():
    loads = synthetic_trace(**SMALL, first_layer=5)
    assert isinstance(loads, ExpertLoads)
    assert loads.shape == (30, 3, 16)
    assert loads.layer_ids == (5, 6, 7)
    np.testing.assert_array_equal(loads.counts.sum(axis=2), 256 * 4)
    assert np.array_equal(loads.counts, np.round(loads.counts))


def test_deepseek_defaults():
    loads = synthetic_trace(num_steps=2)
    assert loads.shape == (2, 58, 256) and loads.layer_ids == tuple(range(3, 61))
    np.testing.assert_array_equal(loads.counts.sum(axis=2), 8192 * 8)


def test_deterministic_by_seed():
    a, b, c = synthetic_trace(**SMALL, seed=7), synthetic_trace(**SMALL, seed=7), synthetic_trace(**SMALL, seed=8)
    assert np.array_equal(a.counts, b.counts) and a.sha256() == b.sha256()
    assert not np.array_equal(a.counts, c.counts)


def _share_shift(loads, width=20):
    """Total-variation distance between the expert shares of the first and last `width` steps."""
    share = loads.counts / loads.counts.sum(axis=2, keepdims=True)
    return 0.5 * np.abs(share[:width].mean(axis=0) - share[-width:].mean(axis=0)).sum(axis=1).mean()


def test_drift_moves_popularity():
    params = {"num_steps": 200, "num_layers": 4, "num_experts": 32}
    still = _share_shift(synthetic_trace(**params, drift=0.0))
    moving = _share_shift(synthetic_trace(**params, drift=0.02))
    # measured (seeds 0-2): drift 0 leaves only multinomial noise, TV 0.003; drift 0.02 gives 0.10-0.11
    assert moving > 10 * still, (still, moving)


def test_zipf_exponent_sets_skew():
    flat = calibration_stats(synthetic_trace(**SMALL, zipf_low=0.0, zipf_high=0.0, drift=0.0), ep_ranks=4)
    steep = calibration_stats(synthetic_trace(**SMALL, zipf_low=1.0, zipf_high=1.0), ep_ranks=4)
    assert flat["expert_max_over_mean_max"] < 1.3
    assert steep["expert_max_over_mean_min"] > 3


def test_provenance_says_synthetic():
    loads = synthetic_trace(**SMALL, seed=3)
    prov = loads.provenance
    assert prov["synthetic"] == "true" and prov["source"] == "moeplan synthetic generator" and prov["seed"] == "3"
    params = json.loads(prov["params"])
    assert params["num_experts"] == 16 and params["drift"] == 0.02 and params["zipf_high"] == 0.85
    assert loads.model is None and loads.source == "synthetic"


def test_defaults_match_published_skew():
    """The docstring's figures (seed 0) and the published ranges they are compared with."""
    stats = calibration_stats(synthetic_trace(seed=0))
    assert stats["ep_ranks"] == 32
    assert stats["imbalance_mean"] == pytest.approx(1.50, abs=0.01)  # TensorRT-LLM: ~1.56 at EP32
    assert stats["expert_max_over_mean_min"] == pytest.approx(3.44, abs=0.01)  # study: 3.6 ... 30.6
    assert stats["expert_max_over_mean_max"] == pytest.approx(30.74, abs=0.01)
    assert stats["expert_max_over_mean_median"] == pytest.approx(11.99, abs=0.01)  # study: 10.8


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_steps": 0}, "num_steps"),
        ({"top_k": 1.5}, "top_k"),
        ({"zipf_low": 0.9, "zipf_high": 0.5}, "zipf_low"),
        ({"drift": -0.1}, "drift"),
        ({"first_layer": -1}, "first_layer"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(InputError, match=match):
        synthetic_trace(**(SMALL | kwargs))


def test_calibration_rejects_bad_ranks():
    with pytest.raises(InputError, match="ep_ranks"):
        calibration_stats(synthetic_trace(**SMALL), ep_ranks=5)
