r"""Constructive layer layouts and valid upper bounds on the flow of any layout.

Heuristics (each returns ``(starts, sizes)``, every node holding ``1..K_i`` layers):

- :func:`petals_layout` -- Petals-style greedy spans (Borzunov et al., 2023): nodes join in order
  and each takes its most layers ``K_i`` where the layers' summed throughput is lowest;
- :func:`swarm_layout` -- Swarm-style equal stages (Ryabinin et al., 2023): ``ceil(L / q)`` stages
  of ``q`` layers, nodes assigned to the weakest stage they can hold (largest first), ``q`` scanned;
- :func:`type_pipelines_layout` -- one pipeline per GPU type: each type with enough nodes to hold
  the model splits it into equal stages and forms as many parallel pipelines as it can;
- :func:`tail_chain_layout` -- the fast type as one contiguous tail chain of ``k`` layers per node
  ending at ``L``, the other nodes in equal ``q``-layer stages over the head (``docs/cluster.md``:
  this alone beats Helix's published values on single24 and geo24).

Bounds (``T_i(k)`` node capacities, ``L`` layers):

- ``helix_upper_bound = sum_i max_k k T_i(k) / L`` (Helix's ``get_flow_upper_bound``: each node
  processes at most ``max_k k T_i(k)`` layer-tokens per second, a token needs ``L``);
- ``crossing_upper_bound`` = the largest ``F`` with ``L F <= sum_i max_k k min(T_i(k), F)``: a
  flow ``F`` crosses every layer once, and node ``i`` holding ``k`` layers carries at most
  ``min(T_i(k), F)`` of it through each; never above Helix's bound (``min(T, F) <= T``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "petals_layout",
    "swarm_layout",
    "type_pipelines_layout",
    "tail_chain_layout",
    "helix_upper_bound",
    "crossing_upper_bound",
]


def _caps(capacity) -> list[list[float]]:
    return [list(map(float, c)) for c in capacity]


def helix_upper_bound(capacity, num_layers: int) -> float:
    """``sum_i max_k k T_i(k) / L`` (tokens/s).

    >>> helix_upper_bound([[10.0, 6.0], [4.0]], 2)
    8.0
    """
    caps = _caps(capacity)
    return sum(max((k + 1) * t for k, t in enumerate(c[:num_layers])) for c in caps) / num_layers


def crossing_upper_bound(capacity, num_layers: int) -> float:
    """The layer-crossing bound: the largest ``F`` with ``L F <= sum_i max_k k min(T_i(k), F)``.

    ``sum_i max_k k min(T_i(k) / F, 1)`` does not increase with ``F``, so bisection finds the largest
    ``F`` where it is still ``>= L`` (to 1e-12 relative). The sum often equals ``L F`` on a whole
    interval of ``F`` (each node's best ``k`` has ``T_i(k) >= F``), so the comparison carries a
    relative tolerance of 1e-12; without it rounding stops the bisection inside that interval (on
    single24 at 2,028.5 instead of 2,045.6, a value a layout reaches).

    >>> round(crossing_upper_bound([[10.0, 6.0], [4.0]], 3), 9)  # Helix's bound is 16 / 3
    4.0
    """
    L = int(num_layers)
    tables = [np.asarray(c[:L], dtype=np.float64) for c in _caps(capacity)]
    ks = [np.arange(1, t.size + 1) for t in tables]

    def ok(F: float) -> bool:  # the sum is often exactly L F on a whole interval: compare with a tolerance
        return sum(float((k * np.minimum(t, F)).max()) for k, t in zip(ks, tables)) >= L * F * (1.0 - 1e-12)

    lo, hi = 0.0, helix_upper_bound(capacity, L)
    if hi <= 0.0 or ok(hi):
        return hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if ok(mid):
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return lo


def petals_layout(capacity, num_layers: int) -> tuple[list[int], list[int]]:
    """Petals-style spans: node by node (in order), ``K_i`` layers where the summed throughput is lowest.

    >>> petals_layout([[5.0, 3.0], [5.0, 3.0]], 3)
    ([0, 1], [2, 2])
    """
    L = int(num_layers)
    caps = _caps(capacity)
    cover = [0.0] * L
    starts, sizes = [], []
    for c in caps:
        k = min(len(c), L)
        best = min(range(L - k + 1), key=lambda s: (min(cover[s:s + k]), sum(cover[s:s + k]), s))
        for layer in range(best, best + k):
            cover[layer] += c[k - 1]
        starts.append(best)
        sizes.append(k)
    return starts, sizes


def _stages(lo: int, hi: int, count: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` split into ``count`` contiguous stages whose sizes differ by at most one."""
    n = hi - lo
    out, at = [], lo
    for j in range(count):
        size = n // count + (1 if j < n % count else 0)
        out.append((at, at + size))
        at += size
    return out


def _assign(caps, nodes: Sequence[int], stages: list[tuple[int, int]], order: str,
            starts: list[int], sizes: list[int]) -> None:
    """Put ``nodes`` on ``stages``: ``lpt`` = largest throughput first onto the weakest stage it can
    hold; ``round_robin`` = in node order, cycling over the stages it can hold. A node that can hold
    no stage takes its most layers at the weakest stage's start (it adds nothing, harmlessly)."""
    total = [0.0] * len(stages)
    if order == "lpt":
        seq = sorted(nodes, key=lambda i: (-caps[i][min(len(caps[i]), stages[0][1] - stages[0][0]) - 1], i))
    else:
        seq = list(nodes)
    turn = 0
    for i in seq:
        K = len(caps[i])
        fits = [j for j, (a, b) in enumerate(stages) if b - a <= K]
        if not fits:
            j = min(range(len(stages)), key=lambda j: (total[j], j))
            a = stages[j][0]
            k = min(K, stages[-1][1] - a)
            starts[i], sizes[i] = a, k
            continue
        if order == "lpt":
            j = min(fits, key=lambda j: (total[j], j))
        else:
            j = fits[turn % len(fits)]
            turn += 1
        a, b = stages[j]
        starts[i], sizes[i] = a, b - a
        total[j] += caps[i][b - a - 1]


def swarm_layout(capacity, num_layers: int, stage_layers: int, order: str = "lpt") -> tuple[list[int], list[int]]:
    """Equal stages of ``stage_layers`` layers (the last one shorter), nodes balanced over them.

    >>> swarm_layout([[5.0, 3.0], [5.0, 3.0], [4.0]], 2, 1)
    ([0, 1, 0], [1, 1, 1])
    """
    L, q = int(num_layers), int(stage_layers)
    caps = _caps(capacity)
    stages = [(a, min(L, a + q)) for a in range(0, L, q)]
    starts, sizes = [0] * len(caps), [1] * len(caps)
    _assign(caps, range(len(caps)), stages, order, starts, sizes)
    return starts, sizes


def _type_groups(types: Sequence) -> dict:
    groups: dict = {}
    for i, t in enumerate(types):
        groups.setdefault(t, []).append(i)
    return groups


def type_pipelines_layout(capacity, num_layers: int, types: Sequence) -> tuple[list[int], list[int]]:
    """One pipeline (or several parallel ones) per GPU type; types too small for a pipeline of their
    own join the other types' stages (Swarm-style balancing).

    >>> type_pipelines_layout([[5.0, 3.0]] * 2 + [[4.0]] * 2, 2, ["a", "a", "b", "b"])
    ([0, 0, 0, 1], [2, 2, 1, 1])
    """
    L = int(num_layers)
    caps = _caps(capacity)
    starts, sizes = [0] * len(caps), [1] * len(caps)
    leftovers: list[int] = []
    all_stages: list[tuple[int, int]] = []
    for _, nodes in _type_groups(types).items():
        K = min(min(len(caps[i]) for i in nodes), L)
        need = math.ceil(L / K)
        pipes = len(nodes) // need
        if pipes == 0:
            leftovers.extend(nodes)
            continue
        count = min(len(nodes) // pipes, L)
        stages = _stages(0, L, count)
        all_stages.extend(stages)
        for j, i in enumerate(nodes[: pipes * count]):
            a, b = stages[j % count]
            starts[i], sizes[i] = a, b - a
        leftovers.extend(nodes[pipes * count:])
    if leftovers:
        stages = sorted(set(all_stages)) or _stages(0, L, math.ceil(L / max(len(caps[i]) for i in leftovers)))
        _assign(caps, leftovers, stages, "lpt", starts, sizes)
    return starts, sizes


def tail_chain_layout(capacity, num_layers: int, chain: Sequence[int], chain_layers: int, head_stage_layers: int,
                      order: str = "round_robin") -> tuple[list[int], list[int]]:
    """``chain`` nodes hold consecutive ``chain_layers``-layer ranges ending at ``L``; every other node a
    ``head_stage_layers``-layer stage of the head ``[0, L - len(chain) x chain_layers)``.

    >>> tail_chain_layout([[9.0, 8.0]] * 2 + [[3.0]] * 2, 5, [0, 1], 2, 1)
    ([1, 3, 0, 0], [2, 2, 1, 1])
    """
    L, k, q = int(num_layers), int(chain_layers), int(head_stage_layers)
    caps = _caps(capacity)
    head = L - len(chain) * k
    if head < 1 or any(len(caps[i]) < k for i in chain):
        raise ValueError("the chain must leave a head of >= 1 layer and each chain node must hold chain_layers")
    starts, sizes = [0] * len(caps), [1] * len(caps)
    for j, i in enumerate(chain):
        starts[i], sizes[i] = head + j * k, k
    rest = [i for i in range(len(caps)) if i not in set(chain)]
    stages = [(a, min(head, a + q)) for a in range(0, head, q)]
    _assign(caps, rest, stages, order, starts, sizes)
    return starts, sizes
