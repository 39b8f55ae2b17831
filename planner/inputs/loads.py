"""Measured expert loads: token-to-expert assignment counts per step, layer and expert."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from planner.common.limits import MAX_LOAD_COUNT, check_load_shape
from planner.errors import InputError

__all__ = ["ExpertLoads", "LayerStats", "rows_as_moe_layers"]


@dataclass(frozen=True)
class LayerStats:
    """Skew of one layer's summed loads.

    ``max_over_mean`` is the hottest expert's load over the mean expert load, ``cv`` the coefficient
    of variation over experts, ``hottest_share`` the hottest expert's share of the layer's load.
    """

    layer: int
    total: float
    max_over_mean: float
    cv: float
    hottest_expert: int
    hottest_share: float


@dataclass(frozen=True, eq=False)
class ExpertLoads:
    """Counts of token-to-expert assignments (token x top-k) shaped ``[steps, layers, experts]``.

    Parameters
    ----------
    counts : array ``[steps, layers, experts]`` (a ``[layers, experts]`` array is one step);
        finite, non-negative and at most ``MAX_LOAD_COUNT``, its shape within the limits of
        :mod:`planner.common.limits`. Stored as a read-only float64 copy.
    layer_ids : hidden-layer index of every row of the layer axis (e.g. ``(3, 4, ..., 60)`` for
        DeepSeek-V3's MoE layers, ``(0, 7, 15)`` for the OLMoE analysis files). Default ``0..L-1``.
    model : the model the loads were measured on, as written in the source (may be None).
    source : where the counts came from (file names).
    provenance : free-form ``{"source": ..., "license": ..., "date": ...}`` record.

    Examples
    --------
    >>> loads = ExpertLoads([[4, 2, 1, 1]], layer_ids=[5])
    >>> loads.shape
    (1, 1, 4)
    >>> loads.layer_stats()[0].max_over_mean
    2.0
    """

    counts: np.ndarray
    layer_ids: tuple[int, ...] = ()
    model: str | None = None
    source: str = ""
    provenance: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.counts)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InputError(f"expected numbers, got dtype {arr.dtype}", param="counts")
        if arr.ndim in (2, 3):
            check_load_shape(arr.shape, "counts")  # before the float64 copy
        arr = np.array(arr, dtype=np.float64)
        if arr.ndim == 2:
            arr = arr[None, :, :]
        if arr.ndim != 3:
            raise InputError(
                f"expected shape [steps, layers, experts] or [layers, experts], got {list(arr.shape)}", param="counts"
            )
        if 0 in arr.shape:
            raise InputError(f"empty array of shape {list(arr.shape)}", param="counts")
        bad = ~np.isfinite(arr)
        if bad.any():
            s, l, e = (int(i) for i in np.argwhere(bad)[0])
            raise InputError(f"non-finite value {arr[s, l, e]} at step {s}, layer row {l}, expert {e}", param="counts")
        if (arr < 0).any():
            s, l, e = (int(i) for i in np.argwhere(arr < 0)[0])
            raise InputError(f"negative value {arr[s, l, e]:g} at step {s}, layer row {l}, expert {e}", param="counts")
        if (arr > MAX_LOAD_COUNT).any():
            s, l, e = (int(i) for i in np.argwhere(arr > MAX_LOAD_COUNT)[0])
            raise InputError(f"value {arr[s, l, e]:g} at step {s}, layer row {l}, expert {e} is above MAX_LOAD_COUNT "
                             f"{MAX_LOAD_COUNT:g} (docs/limits.md); divide the counts by a constant (the planners use "
                             "their ratios)", param="counts")
        arr.setflags(write=False)
        object.__setattr__(self, "counts", arr)
        ids = tuple(int(i) for i in self.layer_ids) if len(self.layer_ids) else tuple(range(arr.shape[1]))
        if len(ids) != arr.shape[1]:
            raise InputError(f"{len(ids)} ids for {arr.shape[1]} layer rows in counts", param="layer_ids")
        if len(set(ids)) != len(ids):
            raise InputError(f"duplicate layer ids in {list(ids)}", param="layer_ids")
        if any(i < 0 for i in ids):
            raise InputError(f"negative layer id in {list(ids)}", param="layer_ids")
        object.__setattr__(self, "layer_ids", ids)
        object.__setattr__(self, "provenance", MappingProxyType(dict(self.provenance)))

    # -- shape -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.counts.shape)  # type: ignore[return-value]

    @property
    def num_steps(self) -> int:
        return self.counts.shape[0]

    @property
    def num_layers(self) -> int:
        return self.counts.shape[1]

    @property
    def num_experts(self) -> int:
        return self.counts.shape[2]

    # -- views -------------------------------------------------------------------------------
    def summed(self) -> np.ndarray:
        """Loads summed over steps, ``[layers, experts]``."""
        return self.counts.sum(axis=0)

    def sha256(self) -> str:
        """Hash of the counts and layer ids (what a plan records about its input)."""
        h = hashlib.sha256()
        h.update(np.asarray(self.counts.shape, dtype=np.int64).tobytes())
        h.update(np.asarray(self.layer_ids, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.counts).tobytes())
        return h.hexdigest()

    def select_layers(self, layer_ids) -> "ExpertLoads":
        """The rows of the given hidden layers (each must be present)."""
        ids = [int(i) for i in layer_ids]
        missing = [i for i in ids if i not in self.layer_ids]
        if missing:
            raise InputError(f"layers {missing} are not in the loads (have {list(self.layer_ids)})", param="layer_ids")
        rows = [self.layer_ids.index(i) for i in ids]
        return ExpertLoads(self.counts[:, rows, :], ids, self.model, self.source, self.provenance)

    def window(self, start: int, stop: int | None = None) -> "ExpertLoads":
        """Steps ``start:stop`` (a time window)."""
        part = self.counts[start:stop]
        if part.shape[0] == 0:
            raise InputError(f"steps {start}:{stop} select nothing of {self.num_steps} steps", param="window")
        return ExpertLoads(part, self.layer_ids, self.model, self.source, self.provenance)

    def layer_stats(self) -> list[LayerStats]:
        """Skew statistics per layer on the summed loads."""
        out = []
        for row, lid in enumerate(self.layer_ids):
            w = self.summed()[row]
            total = float(w.sum())
            mean = total / w.size
            hot = int(np.argmax(w))
            out.append(
                LayerStats(
                    layer=lid,
                    total=total,
                    max_over_mean=float(w[hot] / mean) if mean > 0 else 0.0,
                    cv=float(w.std() / mean) if mean > 0 else 0.0,
                    hottest_expert=hot,
                    hottest_share=float(w[hot] / total) if total > 0 else 0.0,
                )
            )
        return out


def rows_as_moe_layers(loads: ExpertLoads, moe_layers) -> ExpertLoads | None:
    """``loads`` with its rows read as the model's MoE layers, when that is the only sensible reading.

    An EPLB-style ``[moe_layers, experts]`` array (what DeepSeek's ``eplb.py`` takes, what vLLM records)
    carries no hidden-layer ids: its rows are numbered ``0..L-1``. Row ``i`` is read as MoE layer
    ``moe_layers[i]`` when ``L`` equals the model's number of MoE layers, those are not ``0..L-1``
    themselves (DeepSeek-V3: 58 rows, MoE layers 3..60), and reading the rows as hidden layers is
    impossible — a row numbered like a dense layer holds tokens — or the reader says the axis is the
    MoE-layer index (``provenance["layer_axis"] == "moe-layer-index"``, vLLM). Otherwise returns None
    and the loads are read as they are (a partial file whose dense rows are zero keeps its hidden-layer
    reading). The provenance records the mapping under ``reader_notes``.

    >>> rows_as_moe_layers(ExpertLoads([[1, 2], [3, 4]]), (1, 2)).layer_ids
    (1, 2)
    >>> rows_as_moe_layers(ExpertLoads([[0, 0], [3, 4]]), (1, 2)) is None
    True
    """
    ids = tuple(int(i) for i in moe_layers)
    L = loads.num_layers
    if loads.layer_ids != tuple(range(L)) or len(ids) != L or ids == tuple(range(L)):
        return None
    dense_rows = [i for i in range(L) if i not in set(ids)]
    moe_axis = loads.provenance.get("layer_axis") == "moe-layer-index"
    if not moe_axis and not any(loads.counts[:, i].any() for i in dense_rows):
        return None
    provenance = dict(loads.provenance)
    note = (f"the {L} rows carry no hidden-layer ids and match the model's {L} MoE layers: "
            f"row i is read as MoE layer i (layers {ids[0]}..{ids[-1]})")
    provenance["reader_notes"] = "; ".join(filter(None, (provenance.get("reader_notes", ""), note)))
    return ExpertLoads(loads.counts, ids, loads.model, loads.source, provenance)
