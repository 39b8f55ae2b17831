"""Synthetic workloads: Poisson or gamma arrivals at a rate, lengths fixed, drawn or resampled from a trace.

Arrivals. Inter-arrival times are i.i.d. gamma with shape ``k = 1 / cv^2`` and scale
``1 / (rate k)``: mean ``1 / rate``, coefficient of variation ``cv``. ``cv = 1`` is the exponential,
i.e. a Poisson process; ``cv > 1`` is burstier, ``cv < 1`` smoother (DistServe's simulator draws
its ``--arrival gamma --cv`` the same way). Request ``i`` arrives at the sum of the first ``i + 1``
gaps.

Lengths. :class:`LengthDist` draws prompt or output lengths: ``fixed``, ``uniform`` (integers,
both ends included), ``lognormal`` given the mean and CV (rounded, at least 1, optionally capped) or
``empirical`` (resampled with replacement from given values). A :class:`~planner.inputs.Workload`
passed as ``input_tokens`` resamples (prompt, output) *pairs* from its requests, which keeps their
correlation.

Determinism. One seed gives two independent streams, one for arrivals and one for lengths
(``numpy.random.default_rng([seed, 0])`` and ``[seed, 1]``), so changing the length model leaves the
arrival times unchanged and the same seed always gives the same workload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.errors import InputError
from planner.inputs.workload import Workload

__all__ = ["LengthDist", "gamma_arrivals_s", "synthetic_workload", "poisson_workload", "gamma_workload",
           "with_synthetic_arrivals"]

_KINDS = ("fixed", "uniform", "lognormal", "empirical")


def _positive(name: str, value, *, integer: bool = False) -> float:
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
        kind = "an integer >= 1" if integer else "a positive number"
        raise InputError(f"must be {kind}, got {value!r}", param=name)
    return value


@dataclass(frozen=True)
class LengthDist:
    """A distribution of token counts; build it with :meth:`fixed`, :meth:`uniform`, :meth:`lognormal`
    or :meth:`empirical`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> LengthDist.fixed(512).sample(3, rng).tolist()
    [512, 512, 512]
    >>> x = LengthDist.lognormal(mean_tokens=487, cv=1.0).sample(100_000, rng)
    >>> bool(470 < x.mean() < 505), int(x.min()) >= 1
    (True, True)
    """

    kind: str
    params: tuple[float, ...] = ()
    values: tuple[int, ...] = ()

    @classmethod
    def fixed(cls, tokens: int) -> LengthDist:
        """Every request has ``tokens`` tokens."""
        return cls("fixed", (int(_positive("tokens", tokens, integer=True)),))

    @classmethod
    def uniform(cls, low_tokens: int, high_tokens: int) -> LengthDist:
        """Integers from ``low_tokens`` to ``high_tokens``, both included, equally likely."""
        low = int(_positive("low_tokens", low_tokens, integer=True))
        high = int(_positive("high_tokens", high_tokens, integer=True))
        if high < low:
            raise InputError(f"must be >= low_tokens ({low}), got {high}", param="high_tokens")
        return cls("uniform", (low, high))

    @classmethod
    def lognormal(cls, mean_tokens: float, cv: float, *, max_tokens: int | None = None) -> LengthDist:
        """Log-normal with the given mean and coefficient of variation, rounded to integers >= 1.

        ``sigma^2 = ln(1 + cv^2)``, ``mu = ln(mean) - sigma^2 / 2``; ``max_tokens`` caps the draws.
        """
        mean = float(_positive("mean_tokens", mean_tokens))
        c = float(_positive("cv", cv))
        cap = float("inf") if max_tokens is None else float(_positive("max_tokens", max_tokens, integer=True))
        return cls("lognormal", (mean, c, cap))

    @classmethod
    def empirical(cls, values) -> LengthDist:
        """Resample (with replacement) from observed token counts, e.g. a trace's ``input_tokens``."""
        arr = np.asarray(values)
        if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
            raise InputError("expected a non-empty 1-D sequence of token counts", param="values")
        if not np.isfinite(arr).all() or (arr < 1).any() or not np.array_equal(arr, np.round(arr)):
            raise InputError("token counts must be whole numbers >= 1", param="values")
        return cls("empirical", (), tuple(int(v) for v in arr))

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InputError(f"unknown length distribution {self.kind!r}; known: {', '.join(_KINDS)}", param="kind")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` token counts (int64) drawn with ``rng``."""
        if self.kind == "fixed":
            return np.full(n, int(self.params[0]), dtype=np.int64)
        if self.kind == "uniform":
            low, high = (int(p) for p in self.params)
            return rng.integers(low, high + 1, size=n, dtype=np.int64)
        if self.kind == "lognormal":
            mean, cv, cap = self.params
            sigma2 = math.log1p(cv * cv)
            x = rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), size=n)
            return np.clip(np.rint(x), 1, cap).astype(np.int64)
        vals = np.asarray(self.values, dtype=np.int64)
        return vals[rng.integers(0, vals.size, size=n)]

    def __str__(self) -> str:
        if self.kind == "empirical":
            return f"empirical({len(self.values)} values)"
        return f"{self.kind}({', '.join(f'{p:g}' for p in self.params)})"


def gamma_arrivals_s(rate_req_per_s: float, num_requests: int, *, cv: float = 1.0,
                     rng: np.random.Generator) -> np.ndarray:
    """Arrival times of a renewal process with gamma gaps of mean ``1 / rate`` and CV ``cv``.

    >>> t = gamma_arrivals_s(10.0, 200_000, rng=np.random.default_rng(1))
    >>> round(float(len(t) / t[-1]), 1)
    10.0
    """
    rate = float(_positive("rate_req_per_s", rate_req_per_s))
    n = int(_positive("num_requests", num_requests, integer=True))
    c = float(_positive("cv", cv))
    shape = 1.0 / (c * c)
    gaps = rng.gamma(shape, 1.0 / (rate * shape), size=n)
    return np.cumsum(gaps)


def _lengths(spec, name: str, n: int, rng) -> np.ndarray:
    if isinstance(spec, LengthDist):
        return spec.sample(n, rng)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return LengthDist.fixed(int(spec)).sample(n, rng)
    raise InputError(f"expected a token count, a LengthDist or (for input_tokens) a Workload to resample, "
                     f"got {type(spec).__name__}", param=name)


def synthetic_workload(rate_req_per_s: float, num_requests: int, *, input_tokens, output_tokens=None,
                       cv: float = 1.0, seed: int = 0) -> Workload:
    """Requests with gamma (``cv``; Poisson at 1) arrivals at ``rate_req_per_s`` and the given lengths.

    Parameters
    ----------
    rate_req_per_s : mean arrival rate.
    num_requests : requests to generate.
    input_tokens : an int (fixed), a :class:`LengthDist`, or a :class:`Workload` whose (prompt,
        output) pairs are resampled with replacement (then ``output_tokens`` must be None).
    output_tokens : an int or a :class:`LengthDist`.
    cv : coefficient of variation of inter-arrival times (1 = Poisson).
    seed : seed of the arrival and length streams (module docstring).

    Returns
    -------
    Workload
        ``source`` ``"poisson"`` or ``"gamma(cv=...)"``; the provenance records every parameter.

    Examples
    --------
    >>> w = synthetic_workload(2.0, 1000, input_tokens=512, output_tokens=LengthDist.uniform(64, 256), seed=3)
    >>> w.source, int(w.input_tokens.max()), 64 <= int(w.output_tokens.min())
    ('poisson', 512, True)
    >>> w.arrival_s[:2].tolist() == synthetic_workload(2.0, 1000, input_tokens=512, output_tokens=7, seed=3).arrival_s[:2].tolist()
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"must be an integer >= 0, got {seed!r}", param="seed")
    arrivals = gamma_arrivals_s(rate_req_per_s, num_requests, cv=cv, rng=np.random.default_rng([int(seed), 0]))
    rng = np.random.default_rng([int(seed), 1])
    n = int(num_requests)
    if isinstance(input_tokens, Workload):
        if output_tokens is not None:
            raise InputError("give no output_tokens when resampling (prompt, output) pairs from a workload",
                             param="output_tokens")
        pick = rng.integers(0, len(input_tokens), size=n)
        inp, out = input_tokens.input_tokens[pick], input_tokens.output_tokens[pick]
        lengths = f"resampled pairs of {input_tokens.source or 'a workload'}"
    else:
        if output_tokens is None:
            raise InputError("give output_tokens (a token count or a LengthDist)", param="output_tokens")
        inp = _lengths(input_tokens, "input_tokens", n, rng)
        out = _lengths(output_tokens, "output_tokens", n, rng)
        lengths = f"input {input_tokens}, output {output_tokens}"
    source = "poisson" if cv == 1 else f"gamma(cv={cv:g})"
    prov = {"source": "moeplan synthetic workload", "synthetic": "true", "arrivals": source,
            "rate_req_per_s": f"{float(rate_req_per_s):g}", "seed": str(int(seed)), "lengths": lengths}
    return Workload(arrivals, inp, out, source, prov)


def poisson_workload(rate_req_per_s: float, num_requests: int, *, input_tokens, output_tokens=None,
                     seed: int = 0) -> Workload:
    """:func:`synthetic_workload` with Poisson arrivals (``cv = 1``).

    >>> w = poisson_workload(5.0, 20_000, input_tokens=100, output_tokens=10, seed=0)
    >>> round(w.rate_req_per_s, 1), round(w.stats().interarrival_cv, 2)
    (5.0, 1.0)
    """
    return synthetic_workload(rate_req_per_s, num_requests, input_tokens=input_tokens,
                              output_tokens=output_tokens, cv=1.0, seed=seed)


def gamma_workload(rate_req_per_s: float, num_requests: int, *, cv: float, input_tokens, output_tokens=None,
                   seed: int = 0) -> Workload:
    """:func:`synthetic_workload` with gamma arrivals of coefficient of variation ``cv`` (burstiness).

    >>> w = gamma_workload(5.0, 50_000, cv=3.0, input_tokens=100, output_tokens=10, seed=0)
    >>> round(w.stats().interarrival_cv, 1)
    3.0
    """
    return synthetic_workload(rate_req_per_s, num_requests, input_tokens=input_tokens,
                              output_tokens=output_tokens, cv=cv, seed=seed)


def with_synthetic_arrivals(workload: Workload, *, rate_req_per_s: float | None = None, cv: float = 1.0,
                            seed: int = 0) -> Workload:
    """The requests of ``workload`` (same order and lengths) with Poisson or gamma arrival times.

    ``rate_req_per_s`` defaults to the workload's own rate. A goodput search over Poisson arrivals
    uses this once and then rescales (:meth:`Workload.with_rate`): scaling the gaps of one draw is a
    draw at the new rate, so every probed rate sees the same random numbers.

    >>> trace = Workload([0.0, 0.0, 0.1, 5.0], [10, 20, 30, 40], [1, 2, 3, 4])
    >>> w = with_synthetic_arrivals(trace, seed=1)
    >>> w.input_tokens.tolist(), round(w.rate_req_per_s, 6) > 0
    ([10, 20, 30, 40], True)
    """
    if not isinstance(workload, Workload):
        raise InputError(f"expected a Workload, got {type(workload).__name__}", param="workload")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"must be an integer >= 0, got {seed!r}", param="seed")
    rate = workload.rate_req_per_s if rate_req_per_s is None else rate_req_per_s
    if rate_req_per_s is None and not (math.isfinite(rate) and rate > 0):
        raise InputError("the workload has no finite rate; give rate_req_per_s", param="rate_req_per_s")
    arrivals = gamma_arrivals_s(rate, len(workload), cv=cv, rng=np.random.default_rng([int(seed), 0]))
    prov = dict(workload.provenance, arrivals="poisson" if cv == 1 else f"gamma(cv={cv:g})",
                arrivals_seed=str(int(seed)), arrivals_rate_req_per_s=f"{float(rate):g}")
    return Workload(arrivals, workload.input_tokens, workload.output_tokens, workload.source, prov)
