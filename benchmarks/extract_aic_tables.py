"""Extract the compact kernel tables moeplan ships from NVIDIA AIConfigurator's silicon database.

Needs ``aiconfigurator`` installed (``pip install aiconfigurator``, Apache-2.0; the optional extra
``aic`` of moeplan). Run from the repository root::

    python benchmarks/extract_aic_tables.py                     # writes profiles/measured/aic/
    python benchmarks/extract_aic_tables.py --out /tmp/aic      # somewhere else
    python benchmarks/extract_aic_tables.py --check             # rows and bytes only, writes nothing

For each GPU with a silicon database (``h100``, ``h200``, ``b200``, ``a100-80g``) it reads every
family through :func:`planner.perf.kernel_tables.read_installed` -- TensorRT-LLM's tables at the
version AIConfigurator queries by default, NCCL at the system's NCCL version, SGLang's DeepEP
tables for the expert-parallel dispatch -- and keeps the rows that cover the shapes of moeplan's
shipped models (the selection rules below, one function per family). Values are not changed:
times are AIConfigurator's latencies in ms, only renamed columns, format names and the derived
``size_bytes`` (2-byte elements x count), ``context_tokens`` (isl + step) and ``ep`` (8 x nodes).
The manifest ``manifest.json`` records, per file, the source parquet, its SHA-256, the framework
and version, the rows read and kept, and the selection rule; ``LICENSE`` is the package's
Apache-2.0 text. ``PROVENANCE.md`` (why this framework, what was changed) is maintained by hand.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np

from planner.common.fileio import atomic_write_text
from planner.perf.aic_database import read_installed
from planner.perf.kernel_tables import FAMILIES, KernelTable

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "profiles" / "measured" / "aic"
GPUS = ("h100", "h200", "b200", "a100-80g")

M_VALUES = (1, 4, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
GEMM_N = (512, 1536, 4096, 7168, 16384)
GEMM_K = (2048, 4096, 7168)
# routed-expert shapes (hidden, inter, experts, top_k) of moeplan's models and two more for held-out checks
MOE_SHAPES = {
    (7168, 2048, 256, 8): "deepseek-v3",
    (7168, 2048, 384, 8): "kimi-k2",
    (4096, 1536, 128, 8): "qwen3-235b-a22b",
    (2048, 768, 128, 8): "qwen3-30b-a3b",
    (2880, 2880, 128, 4): "gpt-oss-120b",
    (4096, 14336, 8, 2): "mixtral-8x7b",
    (6144, 2560, 160, 8): "(160 experts, hidden 6144)",
}
MOE_LAYOUTS = ((1, 1), (1, 2), (1, 4), (1, 8), (1, 16), (2, 1), (4, 1), (8, 1), (2, 4))  # (moe_tp, moe_ep)
MOE_TOKENS = (1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
# GQA heads per rank (heads, kv heads, head dim): Qwen3-235B / Qwen3-30B / Mixtral / gpt-oss at TP 1..8
GQA_HEADS = ((64, 4, 128), (32, 4, 128), (16, 2, 128), (8, 1, 128), (32, 8, 128), (8, 2, 128),
             (64, 8, 64), (16, 2, 64), (8, 1, 64))  # fmt: skip
PREFILL_BATCH, PREFILL_ISL = (1, 8, 64), (128, 512, 1024, 2048, 4096, 8192, 16384)
DECODE_BATCH, DECODE_CONTEXT = (1, 8, 64, 256), (128, 512, 2048, 8192, 32768)
MLA_HEADS = (128, 64, 32, 16, 8)
DISPATCH_SHAPES = ((7168, 8, 256), (4096, 8, 128), (2048, 8, 128))  # (hidden, top_k, experts)


def _keep(t: KernelTable, mask) -> KernelTable:
    return t.select(np.asarray(mask, dtype=bool))


def _gemm(t: KernelTable):
    mask = np.isin(t["m"], M_VALUES) & np.isin(t["n"], GEMM_N) & np.isin(t["k"], GEMM_K)
    rule = f"m in {M_VALUES}; n in {GEMM_N}; k in {GEMM_K}; every number format"
    return _keep(t, mask), rule


def _moe(t: KernelTable):
    shape = np.zeros(len(t), dtype=bool)
    for h, i, e, k in MOE_SHAPES:
        shape |= (t["hidden_size"] == h) & (t["inter_size"] == i) & (t["num_experts"] == e) & (t["top_k"] == k)
    layout = np.zeros(len(t), dtype=bool)
    for mtp, mep in MOE_LAYOUTS:
        layout |= (t["moe_tp"] == mtp) & (t["moe_ep"] == mep)
    tokens = np.isin(t["num_tokens"], MOE_TOKENS)
    # balanced routing for the fits; the power law AIConfigurator assumes for the model, at EP 8 and 4, to show
    # the imbalance it builds into its MoE times
    alpha = np.where(t["hidden_size"] == 7168, "power_law_1.01", "power_law_1.2")
    dist = (t["distribution"] == "balanced") | ((t["distribution"] == alpha) & np.isin(t["moe_ep"], (4, 8))
                                                & (t["moe_tp"] == 1))  # fmt: skip
    rule = (f"(hidden, inter, experts, top_k) in {sorted(MOE_SHAPES)}; (moe_tp, moe_ep) in {MOE_LAYOUTS}; "
            f"num_tokens in {MOE_TOKENS}; balanced routing, plus the model's power law at moe_ep 4 and 8")  # fmt: skip
    return _keep(t, shape & layout & tokens & dist), rule


def _heads_mask(t: KernelTable):
    mask = np.zeros(len(t), dtype=bool)
    for h, kv, d in GQA_HEADS:
        mask |= (t["num_heads"] == h) & (t["num_kv_heads"] == kv) & (t["head_dim"] == d)
    windows = (t["window_tokens"] == 0) | ((t["window_tokens"] == 128) & (t["head_dim"] == 64))  # gpt-oss's window
    return mask & windows


def _formats(t: KernelTable, prefill: bool):
    same = (t["kv_cache"] == "bf16") | (t["kv_cache"] == "fp8")
    if prefill:  # BF16 attention on a BF16 cache, FP8 attention on an FP8 cache
        bf16 = (t["compute"] == "bf16") & (t["kv_cache"] == "bf16")
        same = bf16 | ((t["compute"] == "fp8") & (t["kv_cache"] == "fp8"))
    return same


def _attention_prefill(t: KernelTable):
    mask = _heads_mask(t) & np.isin(t["batch"], PREFILL_BATCH) & np.isin(t["isl_tokens"], PREFILL_ISL)
    mask &= _formats(t, True)
    rule = (f"(heads, kv heads, head dim) in {GQA_HEADS}; window 0 (128 for head dim 64); batch in {PREFILL_BATCH}; "
            f"isl in {PREFILL_ISL}; (compute, kv cache) bf16/bf16 or fp8/fp8")  # fmt: skip
    return _keep(t, mask), rule


def _attention_decode(t: KernelTable):
    mask = (_heads_mask(t) & np.isin(t["batch"], DECODE_BATCH) & np.isin(t["context_tokens"], DECODE_CONTEXT)
            & _formats(t, False))  # fmt: skip
    rule = (f"(heads, kv heads, head dim) in {GQA_HEADS}; window 0 (128 for head dim 64); batch in {DECODE_BATCH}; "
            f"context in {DECODE_CONTEXT}; kv cache bf16 or fp8")  # fmt: skip
    return _keep(t, mask), rule


def _mla_prefill(t: KernelTable):
    mask = np.isin(t["num_heads"], MLA_HEADS) & np.isin(t["batch"], PREFILL_BATCH + (16,)) & np.isin(
        t["isl_tokens"], PREFILL_ISL)
    return _keep(t, mask), f"heads in {MLA_HEADS}; batch in {PREFILL_BATCH + (16,)}; isl in {PREFILL_ISL}"


def _mla_decode(t: KernelTable):
    mask = np.isin(t["num_heads"], MLA_HEADS) & np.isin(t["batch"], DECODE_BATCH) & np.isin(
        t["context_tokens"], DECODE_CONTEXT)
    return _keep(t, mask), f"heads in {MLA_HEADS}; batch in {DECODE_BATCH}; context in {DECODE_CONTEXT}"


def _collective(t: KernelTable):
    return t, "every row: NCCL all_reduce, all_gather, reduce_scatter, all_to_all (2-byte elements); custom all-reduce"


def _moe_dispatch(t: KernelTable):
    mask = np.zeros(len(t), dtype=bool)
    for h, k, e in DISPATCH_SHAPES:
        mask |= (t["hidden_size"] == h) & (t["top_k"] == k) & (t["num_experts"] == e)
    return _keep(t, mask), (f"(hidden, top_k, experts) in {DISPATCH_SHAPES}; the fastest SM budget per shape; "
                            "the newest SGLang version measuring a shape")  # fmt: skip


SELECT = {
    "gemm": _gemm,
    "moe": _moe,
    "attention_prefill": _attention_prefill,
    "attention_decode": _attention_decode,
    "mla_prefill": _mla_prefill,
    "mla_decode": _mla_decode,
    "collective": _collective,
    "moe_dispatch": _moe_dispatch,
}


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _relative(path: str) -> str:
    return path.split("site-packages/", 1)[-1]


def extract(out: Path | None) -> dict:
    """Select and (unless ``out`` is None) write every table; the manifest (a dict)."""
    import aiconfigurator_core

    files = {}
    for gpu in GPUS:
        for family in FAMILIES:
            try:
                table = read_installed(gpu, family)
            except Exception as exc:  # a GPU without this family in AIConfigurator's database
                print(f"{gpu}/{family}: skipped ({exc})", file=sys.stderr)
                continue
            kept, rule = SELECT[family](table)
            if not len(kept):
                continue
            text = kept.to_csv_text()
            name = f"{gpu}/{family}.csv"
            sources = [s.strip() for s in table.source.split(";")]
            framework = {"collective": "nccl + trtllm", "moe_dispatch": "sglang (DeepEP)"}.get(family, "trtllm")
            versions = sorted({Path(s).parent.name for s in sources})
            files[name] = {
                "gpu": gpu,
                "family": family,
                "source": [_relative(s) for s in sources],
                "source_sha256": [_sha256(s) for s in sources],
                "framework": framework,
                "version": versions,
                "rows_read": len(table),
                "rows": len(kept),
                "bytes": len(text.encode()),
                "selection": rule,
                "license": "Apache-2.0",
            }
            if out is not None:
                (out / gpu).mkdir(parents=True, exist_ok=True)
                atomic_write_text(out / name, text)
            print(f"{name}: {len(kept)} of {len(table)} rows, {len(text.encode()):,} B", file=sys.stderr)
    return {
        "format": "moeplan-kernel-tables/1",
        "source": "NVIDIA AIConfigurator silicon performance database (PyPI aiconfigurator-core, "
                  "github.com/ai-dynamo/aiconfigurator), Copyright (c) 2025-2026 NVIDIA CORPORATION & AFFILIATES",
        "license": "Apache-2.0 (LICENSE in this folder)",
        "versions": {d: importlib.metadata.version(d) for d in ("aiconfigurator", "aiconfigurator-core")},
        "core_path": _relative(str(Path(aiconfigurator_core.__file__).parent)),
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/extract_aic_tables.py",
        "changes": "rows selected (see 'selection'); columns renamed; AIConfigurator's dtype labels written as moeplan "
                   "format names; size_bytes = 2 x message_size (2-byte elements); context_tokens = isl + step; "
                   "ep = 8 x node_num; DeepEP: the fastest SM budget per shape kept; times unchanged (ms)",
        "files": files,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT), help="Folder to write (default profiles/measured/aic).")
    parser.add_argument("--check", action="store_true", help="Print rows and bytes only; write nothing.")
    args = parser.parse_args(argv)
    try:
        import aiconfigurator_core  # noqa: F401
    except ImportError:
        print("skipped: aiconfigurator is not installed (pip install aiconfigurator)", file=sys.stderr)
        return 0
    out = None if args.check else Path(args.out)
    manifest = extract(out)
    total_rows = sum(f["rows"] for f in manifest["files"].values())
    total_bytes = sum(f["bytes"] for f in manifest["files"].values())
    print(f"{len(manifest['files'])} tables, {total_rows:,} rows, {total_bytes:,} B")
    if out is not None:
        atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
        # the licence travels with the data (Apache-2.0 s4a); PROVENANCE.md next to it is written by hand
        licence = importlib.metadata.distribution("aiconfigurator").read_text("licenses/LICENSE")
        if licence:
            atomic_write_text(out / "LICENSE", licence)
    return 0


if __name__ == "__main__":
    sys.exit(main())
