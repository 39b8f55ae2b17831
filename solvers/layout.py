"""Replica layouts: which logical expert each physical slot holds, per layer.

Data: ``L`` layers, ``E`` logical experts, ``P`` physical slots per layer on ``D`` GPUs in ``N``
nodes. Slot ``p`` lives on GPU ``p // (P / D)``; GPU ``g`` lives on node ``g // (D / N)``.

The engine-facing contract is ``phy2log`` [L, P] alone (SGLang ``physical_to_logical_map``,
vLLM ``physical_to_logical_map``); ``log2phy`` [L, E, X] and ``logcnt`` [L, E] are derived from it.
A :class:`ReplicaLayout` checks on construction that the three agree, so an invalid layout cannot
exist.

Load model (the one EPLB and the engines assume): the load of an expert is split evenly over its
replicas, and a GPU's load is the sum over its slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solvers._checks import int_array, positive_int

__all__ = ["ReplicaLayout"]


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class ReplicaLayout:
    """Replicas of each logical expert and the slot (hence GPU) that holds each replica.

    Attributes
    ----------
    phy2log : ndarray of int64, shape (L, P)
        Logical expert held by slot ``p``; slot ``p`` is on GPU ``p // slots_per_gpu``.
    log2phy : ndarray of int64, shape (L, E, X)
        Slots of each logical expert by replica rank, padded with -1 (``X >= max(logcnt)``).
    logcnt : ndarray of int64, shape (L, E)
        Replicas per expert, ``>= 1``; each row sums to ``P``.
    num_gpus : int
        GPUs ``D``; must divide ``P``.
    num_nodes : int
        Nodes ``N``; must divide ``D``.

    The arrays are read-only copies. Construction raises ``ValueError`` if the three arrays
    disagree (see :meth:`from_phy2log` to build one from ``phy2log`` alone).

    Examples
    --------
    >>> lay = ReplicaLayout.from_phy2log([[0, 1, 0, 2]], num_experts=3, num_gpus=2, num_nodes=1)
    >>> lay.logcnt.tolist(), lay.log2phy.tolist(), lay.slots_per_gpu
    ([[2, 1, 1]], [[[0, 2], [1, -1], [3, -1]]], 2)
    >>> lay.gpu_loads([[10.0, 4.0, 6.0]]).tolist()
    [[9.0, 11.0]]
    """

    phy2log: np.ndarray
    log2phy: np.ndarray
    logcnt: np.ndarray
    num_gpus: int
    num_nodes: int

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "num_gpus", positive_int(self.num_gpus, "num_gpus"))
        set_(self, "num_nodes", positive_int(self.num_nodes, "num_nodes"))
        set_(self, "phy2log", _read_only(int_array(self.phy2log, "phy2log", ("L", "P"))))
        set_(self, "log2phy", _read_only(int_array(self.log2phy, "log2phy", ("L", "E", "X"))))
        set_(self, "logcnt", _read_only(int_array(self.logcnt, "logcnt", ("L", "E"))))
        _check(self.phy2log, self.log2phy, self.logcnt, self.num_gpus, self.num_nodes)

    # -- sizes -----------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """Layers ``L``."""
        return self.phy2log.shape[0]

    @property
    def num_experts(self) -> int:
        """Logical experts per layer ``E``."""
        return self.logcnt.shape[1]

    @property
    def num_slots(self) -> int:
        """Physical slots per layer ``P``."""
        return self.phy2log.shape[1]

    @property
    def slots_per_gpu(self) -> int:
        """Slots on each GPU, ``P / D``."""
        return self.num_slots // self.num_gpus

    # -- evaluation ------------------------------------------------------------------------------
    def gpu_loads(self, weight) -> np.ndarray:
        """Load of each GPU when each expert's load is split evenly over its replicas.

        Parameters
        ----------
        weight : array_like of float, shape (L, E) or (T, L, E)
            Non-negative load per logical expert (optionally per step ``T``).

        Returns
        -------
        ndarray of float64, shape (L, D) or (T, L, D)

        Raises
        ------
        ValueError
            If `weight` has the wrong shape or has negative or non-finite entries.
        """
        w = np.asarray(weight, dtype=np.float64)
        shape = (self.num_layers, self.num_experts)
        if w.ndim not in (2, 3) or w.shape[-2:] != shape:
            raise ValueError(f"weight must have shape (L, E) = {shape} or (T, L, E), got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weight must be finite and non-negative")
        per_replica = w / self.logcnt
        index = np.broadcast_to(self.phy2log, w.shape[:-1] + (self.num_slots,))
        slot_load = np.take_along_axis(per_replica, index, axis=-1)
        # slots of one GPU are contiguous, so a reshape groups them
        return slot_load.reshape(w.shape[:-1] + (self.num_gpus, self.slots_per_gpu)).sum(axis=-1)

    def balancedness(self, weight) -> np.ndarray:
        """Mean over GPUs of the GPU load divided by the max, per layer (and step).

        1.0 is perfect balance; a layer without any load counts as 1.0.

        Parameters
        ----------
        weight : array_like of float, shape (L, E) or (T, L, E)

        Returns
        -------
        ndarray of float64, shape (L,) or (T, L)
        """
        loads = self.gpu_loads(weight)
        peak = loads.max(axis=-1)
        return np.divide(loads.mean(axis=-1), peak, out=np.ones_like(peak), where=peak > 0)

    # -- construction ----------------------------------------------------------------------------
    @staticmethod
    def from_phy2log(phy2log, num_experts: int, num_gpus: int, num_nodes: int) -> "ReplicaLayout":
        """Build a layout from the slot-to-expert map alone.

        Replica ranks are numbered in slot order: replica 0 of an expert is its lowest slot.

        Parameters
        ----------
        phy2log : array_like of int, shape (L, P)
        num_experts : int
            ``E``; every expert ``0 .. E-1`` must hold at least one slot in every layer.
        num_gpus, num_nodes : int
            ``D`` (divides ``P``) and ``N`` (divides ``D``).

        Returns
        -------
        ReplicaLayout

        Raises
        ------
        ValueError
            On a wrong shape or dtype, an expert id outside ``[0, E)``, an expert without a slot,
            or sizes that do not divide.

        Examples
        --------
        >>> lay = ReplicaLayout.from_phy2log([[0, 1, 2, 3, 0, 1], [0, 2, 0, 1, 0, 3]], 4, 3, 1)
        >>> lay.log2phy[1].tolist()
        [[0, 2, 4], [3, -1, -1], [1, -1, -1], [5, -1, -1]]
        """
        num_experts = positive_int(num_experts, "num_experts")
        p2l = int_array(phy2log, "phy2log", ("L", "P"))
        layers, slots = p2l.shape
        _check_phy2log(p2l, num_experts)
        logcnt = _counts(p2l, num_experts)
        # a stable sort groups the slots of each expert, in slot order
        order = np.argsort(p2l, axis=1, kind="stable")
        expert = np.take_along_axis(p2l, order, axis=1)
        first = np.cumsum(logcnt, axis=1) - logcnt
        rank = np.arange(slots) - np.take_along_axis(first, expert, axis=1)
        log2phy = np.full((layers, num_experts, int(logcnt.max())), -1, dtype=np.int64)
        log2phy[np.arange(layers)[:, None], expert, rank] = order
        return ReplicaLayout(p2l, log2phy, logcnt, num_gpus, num_nodes)

    def __eq__(self, other) -> bool:
        if not isinstance(other, ReplicaLayout):
            return NotImplemented
        return (
            self.num_gpus == other.num_gpus
            and self.num_nodes == other.num_nodes
            and np.array_equal(self.phy2log, other.phy2log)
            and np.array_equal(self.logcnt, other.logcnt)
            and np.array_equal(self.log2phy, other.log2phy)
        )

    __hash__ = None  # holds arrays


def _counts(phy2log: np.ndarray, num_experts: int) -> np.ndarray:
    layers = phy2log.shape[0]
    flat = (phy2log + num_experts * np.arange(layers)[:, None]).ravel()
    return np.bincount(flat, minlength=layers * num_experts).reshape(layers, num_experts)


def _check_phy2log(phy2log: np.ndarray, num_experts: int) -> None:
    bad = np.argwhere((phy2log < 0) | (phy2log >= num_experts))
    if bad.size:
        layer, slot = bad[0]
        raise ValueError(
            f"phy2log[{layer}, {slot}] = {phy2log[layer, slot]} is not an expert id in [0, {num_experts})"
        )
    missing = np.argwhere(_counts(phy2log, num_experts) == 0)
    if missing.size:
        layer, expert = missing[0]
        raise ValueError(f"phy2log: expert {expert} has no slot in layer {layer}")


def _check(phy2log, log2phy, logcnt, num_gpus: int, num_nodes: int) -> None:
    layers, slots = phy2log.shape  # both >= 1 (int_array)
    if slots % num_gpus:
        raise ValueError(f"num_gpus ({num_gpus}) must divide the number of slots P ({slots})")
    if num_gpus % num_nodes:
        raise ValueError(f"num_nodes ({num_nodes}) must divide num_gpus ({num_gpus})")
    if logcnt.shape[0] != layers or logcnt.shape[1] < 1:
        raise ValueError(f"logcnt must have shape (L, E) with L = {layers}, got {logcnt.shape}")
    experts = logcnt.shape[1]
    if log2phy.shape[:2] != (layers, experts) or log2phy.shape[2] < int(logcnt.max(initial=1)):
        raise ValueError(
            f"log2phy must have shape (L, E, X) = ({layers}, {experts}, >= max logcnt), got {log2phy.shape}"
        )
    _check_phy2log(phy2log, experts)
    if not np.array_equal(logcnt, _counts(phy2log, experts)):
        layer, expert = np.argwhere(logcnt != _counts(phy2log, experts))[0]
        raise ValueError(f"logcnt[{layer}, {expert}] does not match the count of expert {expert} in phy2log")
    held = np.arange(log2phy.shape[2]) < logcnt[..., None]
    if np.any(log2phy[~held] != -1):
        raise ValueError("log2phy must be -1 exactly at replica ranks >= logcnt")
    slot = log2phy[held]
    layer = np.nonzero(held)[0]
    expert = np.nonzero(held)[1]
    if np.any((slot < 0) | (slot >= slots)) or np.any(phy2log[layer, slot] != expert):
        raise ValueError("log2phy lists a slot that phy2log does not assign to that expert")
    if np.any(np.bincount(layer * slots + slot, minlength=layers * slots) != 1):
        raise ValueError("log2phy must list every slot of every layer exactly once")
