"""Dollars per token from a price per hour: the one formula the sweep, the report and their tables share.

The fleet planner's definition (``docs/fleet.md``): cost per hour / tokens served per hour x 10^6, where
tokens are prompt + output tokens (or output tokens only, for the output-only figure). GPU prices per
hour are the profiles' ``price_per_hour_usd`` (indicative, with their source) unless the caller gives its own.
"""

from __future__ import annotations

from planner.common.numerics import usd_per_million_tokens

__all__ = ["cost_per_million_tokens_usd"]


def cost_per_million_tokens_usd(cost_per_hour_usd: float, rate_req_per_s: float, tokens_per_request: float) -> float | None:
    """Dollars per million tokens served at ``rate_req_per_s`` requests of ``tokens_per_request`` tokens
    (None when nothing is served).

    >>> cost_per_million_tokens_usd(3.6, 1.0, 1000.0)
    1.0
    """
    return usd_per_million_tokens(cost_per_hour_usd, rate_req_per_s * tokens_per_request)
