"""Test fixtures in the serving engines' dump formats, written by moeplan's tests from the formats'
documented fields (docs/engines.md); no engine code. Each writer takes the true counts and writes them
the way the engine would, so a reader is right when it reads them back.

- SGLang ``stat`` recorder: ``torch.save({"rank", "logical_count", "average_utilization_rate_over_window"})``
  with ``logical_count`` a circular buffer ``[buffer_steps, num_hidden_layers, E]`` (needs torch);
- SGLang's first recorder: per-rank CSV ``layer_id,expert_id,count``, zero counts left out;
- vLLM PR #41141 load statistics: JSONL, optional ``eplb_load_meta`` record, one ``eplb_load_stats``
  record per step with per-slot ``expert_load`` and ``p2l_map``;
- TensorRT-LLM ``ExpertStatistic``: ``meta_info.json`` + ``rank<r>.safetensors`` (keys ``"<iter>_<layer>"``),
  the safetensors container written here from its public specification.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np


def write_sglang_pt(path: Path, counts: np.ndarray, layer_ids, num_hidden_layers: int, buffer_steps: int) -> Path:
    """Steps ``counts[s]`` in row ``s % buffer_steps`` of a zero buffer, as SGLang's recorder dumps it."""
    import torch

    buf = np.zeros((buffer_steps, num_hidden_layers, counts.shape[2]), dtype=np.int32)
    for s in range(counts.shape[0]):
        buf[s % buffer_steps, list(layer_ids)] = counts[s]
    torch.save({"rank": 0, "logical_count": torch.from_numpy(buf), "average_utilization_rate_over_window": None},
               path)
    return path


def write_sglang_csvs(folder: Path, per_rank: list[np.ndarray], layer_ids, seed: int = 0) -> list[Path]:
    """One CSV per rank of ``[layers, E]`` totals, experts in a shuffled first-hit order, zeros left out."""
    rng = np.random.default_rng(seed)
    paths = []
    for r, part in enumerate(per_rank):
        lines = ["layer_id,expert_id,count"]
        for i, layer in enumerate(layer_ids):
            lines += [f"{layer},{e},{int(part[i, e])}" for e in rng.permutation(part.shape[1]) if part[i, e]]
        paths.append(folder / f"expert_distribution_rank{r}_timestamp1.0.csv")
        paths[-1].write_text("\n".join(lines) + "\n")
    return paths


def vllm_slot_loads(counts_step: np.ndarray, p2l: np.ndarray) -> np.ndarray:
    """Per-slot loads ``[layers, slots]``: an expert's tokens split evenly over its replicas (remainder to the first)."""
    n_rep = np.bincount(p2l, minlength=counts_step.shape[1])
    rank_in_expert = np.array([int((p2l[:p] == p2l[p]).sum()) for p in range(p2l.size)])
    c = counts_step[:, p2l]
    return c // n_rep[p2l] + (rank_in_expert < c % n_rep[p2l])


def write_vllm_stats(path: Path, counts: np.ndarray, p2l: np.ndarray, *, meta: bool = True, first_step: int = 2250) -> Path:
    steps, layers, experts = counts.shape
    records = []
    if meta:
        records.append({"record_type": "eplb_load_meta", "version": 1, "model": "test/tiny", "num_logical_experts": experts,
                        "num_physical_experts": int(p2l.size), "num_moe_layers": layers})
    for s in range(steps):
        records.append({"record_type": "eplb_load_stats", "version": 1, "step": first_step + s, "num_ranks": 2,
                        "expert_load": vllm_slot_loads(counts[s], p2l).tolist(), "p2l_map": [p2l.tolist()] * layers})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    """The safetensors container: u64 header length, JSON header, raw little-endian buffer."""
    header, chunks, offset = {}, [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, dtype="<i8").tobytes()
        header[name] = {"dtype": "I64", "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(chunks))
    return path


def write_trtllm(folder: Path, per_rank: list[np.ndarray], layer_ids, *, top_k: int = 2, first_iter: int = 100) -> Path:
    """``per_rank[r]`` is ``[steps, layers, E]`` of the tokens rank ``r`` routed."""
    folder.mkdir(parents=True, exist_ok=True)
    E = per_rank[0].shape[2]
    (folder / "meta_info.json").write_text(json.dumps({"num_experts": E, "num_experts_per_token": top_k}))
    for r, part in enumerate(per_rank):
        tensors = {f"{first_iter + s}_{layer}": part[s, i] for s in range(part.shape[0]) for i, layer in enumerate(layer_ids)}
        write_safetensors(folder / f"rank{r}.safetensors", tensors)
    return folder
