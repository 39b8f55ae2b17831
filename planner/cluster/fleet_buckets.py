"""Request-size buckets of a workload: prompt length x output length, the unit Mélange plans in.

A bucket is a rectangle of lengths ``input_tokens_min < input <= input_tokens_max`` and
``output_tokens_min < output <= output_tokens_max`` (an upper edge of ``None`` is unbounded). The
edges are log-spaced by default, a factor of 4 apart (:data:`DEFAULT_INPUT_EDGES`,
:data:`DEFAULT_OUTPUT_EDGES`): the rate an instance sustains falls roughly in proportion to the tokens
of a request, so equal ratios keep the requests of one bucket alike (Mélange profiles prompt sizes
25-2,000 and output sizes 25-2,000 on a similar grid; ``docs/fleet.md``). Only buckets that hold
requests are kept. Each bucket's rate is its share of the requests times the fleet's rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from planner.errors import InputError
from planner.inputs import Workload

__all__ = ["Bucket", "bucket_workload", "DEFAULT_INPUT_EDGES", "DEFAULT_OUTPUT_EDGES", "parse_edges"]

#: upper edges (inclusive) of the prompt-length buckets, tokens; the last bucket is unbounded
DEFAULT_INPUT_EDGES = (256, 1024, 4096, 16384, 65536)
#: upper edges (inclusive) of the output-length buckets, tokens; the last bucket is unbounded
DEFAULT_OUTPUT_EDGES = (64, 256, 1024)


@dataclass(frozen=True)
class Bucket:
    """One request-size bucket with the requests of the workload that fall in it (module docstring)."""

    input_tokens_min: int
    input_tokens_max: int | None
    output_tokens_min: int
    output_tokens_max: int | None
    input_tokens_mean: float
    output_tokens_mean: float
    max_context_tokens: int  # longest prompt + output of its requests
    num_requests: int
    share: float
    rate_req_per_s: float

    @property
    def label(self) -> str:
        """``in 257-1024 / out 65-256`` (``in >65536`` for an unbounded last bucket)."""
        def span(lo, hi):
            return f">{lo}" if hi is None else f"{lo + 1}-{hi}"
        return f"in {span(self.input_tokens_min, self.input_tokens_max)} / out " \
               f"{span(self.output_tokens_min, self.output_tokens_max)}"


def parse_edges(edges, param: str) -> tuple[int, ...]:
    """Strictly increasing positive integer edges from a sequence or a comma-separated string."""
    if isinstance(edges, str):
        try:
            edges = [int(x) for x in edges.split(",") if x.strip()]
        except ValueError:
            raise InputError(f"expected comma-separated integers, got {edges!r}", param=param) from None
    out = []
    for e in edges:
        if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < 1:
            raise InputError(f"edges must be integers >= 1, got {e!r}", param=param)
        out.append(int(e))
    if not out or any(b <= a for a, b in zip(out, out[1:])):
        raise InputError(f"edges must be a non-empty, strictly increasing list, got {out}", param=param)
    return tuple(out)


def bucket_workload(workload: Workload, rate_req_per_s: float, *, input_edges: Sequence[int] = DEFAULT_INPUT_EDGES,
                    output_edges: Sequence[int] = DEFAULT_OUTPUT_EDGES, open_ended: bool = True) -> list[Bucket]:
    """The non-empty buckets of ``workload`` on these edges, each with its share of ``rate_req_per_s``.

    ``open_ended``: a last bucket above the largest edge on each axis; without it (a profile table's grid)
    a request longer than the largest edge is an error that says how many there are.

    >>> from planner.inputs import poisson_workload
    >>> w = poisson_workload(1.0, 4, input_tokens=300, output_tokens=50, seed=0)
    >>> [(b.label, b.share, b.rate_req_per_s) for b in bucket_workload(w, 2.0)]
    [('in 257-1024 / out 1-64', 1.0, 2.0)]
    """
    if not isinstance(workload, Workload):
        raise InputError(f"expected a Workload, got {type(workload).__name__}", param="workload")
    if isinstance(rate_req_per_s, bool) or not isinstance(rate_req_per_s, (int, float)) \
            or not math.isfinite(rate_req_per_s) or rate_req_per_s <= 0:
        raise InputError(f"must be a positive number, got {rate_req_per_s!r}", param="rate_req_per_s")
    ie = parse_edges(input_edges, "input_edges")
    oe = parse_edges(output_edges, "output_edges")
    inp = np.asarray(workload.input_tokens, dtype=np.int64)
    out = np.asarray(workload.output_tokens, dtype=np.int64)
    if not open_ended:
        over = int(((inp > ie[-1]) | (out > oe[-1])).sum())
        if over:
            raise InputError(f"{over} of {inp.size} requests are longer than the largest bucket (prompt {ie[-1]}, "
                             f"output {oe[-1]} tokens)", param="workload")
    i_idx = np.searchsorted(np.asarray(ie), inp, side="left")  # bucket i holds edges[i-1] < x <= edges[i]
    o_idx = np.searchsorted(np.asarray(oe), out, side="left")
    lows_i, highs_i = (0, *ie), (*ie, None)
    lows_o, highs_o = (0, *oe), (*oe, None)
    n = inp.size
    buckets = []
    for i in range(len(ie) + 1):
        for j in range(len(oe) + 1):
            mask = (i_idx == i) & (o_idx == j)
            k = int(mask.sum())
            if not k:
                continue
            buckets.append(Bucket(lows_i[i], highs_i[i], lows_o[j], highs_o[j], float(inp[mask].mean()),
                                  float(out[mask].mean()), int((inp[mask] + out[mask]).max()), k, k / n,
                                  float(rate_req_per_s) * k / n))
    return buckets
