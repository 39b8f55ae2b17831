"""Service-level objectives of a serving deployment: TTFT and TPOT limits and the attainment target.

Two rules decide whether a simulated run meets an SLO (``rule``):

``per_request`` (DistServe's definition, paper and evaluation scripts)
    a request attains the SLO when its TTFT <= ``ttft_ms`` **and** its TPOT <= ``tpot_ms``; the run
    meets the SLO when the share of such requests (the *attainment*) is >= ``attainment_target``.
``percentile`` (DistServe's placement-search script)
    the run meets the SLO when the ``100 x attainment_target`` percentile of TTFT is <= ``ttft_ms``
    and, separately, that percentile of TPOT is <= ``tpot_ms``.

The first is stricter: a request slow in either metric counts against it once, while the second
lets the slow-TTFT and slow-TPOT requests be different ones. The simulator's results evaluate both
(``SimResult.attainment``, ``SimResult.meets``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.errors import InputError

__all__ = ["SLO", "SLO_RULES"]

SLO_RULES = ("per_request", "percentile")


@dataclass(frozen=True)
class SLO:
    """TTFT and TPOT limits (ms), the attainment target (a share) and the rule (module docstring).

    ``ttft_ms`` or ``tpot_ms`` may be ``math.inf`` to leave that metric free (a prefill-only or a
    decode-only search).

    Examples
    --------
    >>> SLO(ttft_ms=200, tpot_ms=100)
    SLO(ttft_ms=200.0, tpot_ms=100.0, attainment_target=0.9, rule='per_request')
    >>> SLO(200, 100, rule="percentile").percentile
    90.0
    """

    ttft_ms: float
    tpot_ms: float
    attainment_target: float = 0.9
    rule: str = "per_request"

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "tpot_ms"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v <= 0:
                raise InputError(f"must be a positive number of milliseconds (inf for no limit), got {v!r}", param=name)
            object.__setattr__(self, name, float(v))
        t = self.attainment_target
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
            raise InputError(f"must be a share in (0, 1], e.g. 0.9, got {t!r}", param="attainment_target")
        object.__setattr__(self, "attainment_target", float(t))
        if self.rule not in SLO_RULES:
            raise InputError(f"unknown rule {self.rule!r}; known: {', '.join(SLO_RULES)}", param="rule")

    @property
    def percentile(self) -> float:
        """The percentile of the ``percentile`` rule: ``100 x attainment_target``."""
        return 100.0 * self.attainment_target

    def loosened(self, *, ttft_factor: float = 1.0, tpot_factor: float = 1.0) -> SLO:
        """The same SLO with the limits multiplied (an SLO-scale sweep, DistServe's "tighter SLO" axis).

        >>> SLO(200, 100).loosened(ttft_factor=2).ttft_ms
        400.0
        """
        return SLO(self.ttft_ms * ttft_factor, self.tpot_ms * tpot_factor, self.attainment_target, self.rule)
