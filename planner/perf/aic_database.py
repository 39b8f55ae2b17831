"""Read NVIDIA AIConfigurator's silicon database, when installed, as moeplan kernel tables.

AIConfigurator (PyPI ``aiconfigurator``, Apache-2.0; moeplan's optional extra ``aic``) ships Parquet
tables per system, op family, framework and version under
``aiconfigurator_core/systems/data/<system>/<family>/<framework>/<version>/``. :func:`read_installed`
converts one family for one GPU to a :class:`~planner.perf.kernel_tables.KernelTable`: columns
renamed, dtype labels written as moeplan format names, NCCL's 2-byte element counts as bytes, the
generation tables' ``isl + step`` as the context, DeepEP's nodes as ranks (the conversions
``profiles/measured/aic/PROVENANCE.md`` lists). Only data is read: nothing of AIConfigurator's code
runs. pandas and pyarrow come with that package and are imported only here, inside functions.

``benchmarks/extract_aic_tables.py`` uses it to write the shipped subset.
"""

from __future__ import annotations

from pathlib import Path

from planner.errors import InputError
from planner.perf.kernel_tables import FAMILIES, KernelTable, kernel_table_from_columns
from planner.profiles import get_gpu

__all__ = ["AIC_SYSTEMS", "read_installed"]

#: AIConfigurator system name of each moeplan GPU with a silicon database
AIC_SYSTEMS = {"h100": "h100_sxm", "h200": "h200_sxm", "b200": "b200_sxm", "a100-80g": "a100_sxm"}


def _gpu_id(gpu) -> str:
    return gpu.id if hasattr(gpu, "id") else get_gpu(gpu).id


# AIConfigurator dtype labels -> (weights, activations) in moeplan's format names
_AIC_GEMM = {"bfloat16": ("bf16", "bf16"), "fp8": ("fp8", "fp8"), "fp8_block": ("fp8-block", "fp8"),
             "nvfp4": ("nvfp4", "nvfp4"), "sq": ("int8", "int8"), "int8_wo": ("int8", "bf16"),
             "int4_wo": ("int4-awq", "bf16")}  # fmt: skip
_AIC_MOE = {"bfloat16": ("bf16", "bf16"), "fp8": ("fp8", "fp8"), "fp8_block": ("fp8-block", "fp8"),
            "w4a16_mxfp4": ("mxfp4", "bf16"), "nvfp4": ("nvfp4", "nvfp4"),
            "w4a8_mxfp4_mxfp8": ("mxfp4", "fp8")}  # fmt: skip
_AIC_FORMAT = {"bfloat16": "bf16", "fp8": "fp8", "float16": "fp16", "half": "bf16", "int8": "int8",
               "nvfp4": "nvfp4"}  # fmt: skip


def _aic_data_root():
    try:
        import aiconfigurator_core
    except ImportError:
        raise InputError("aiconfigurator is not installed: pip install aiconfigurator (the optional extra 'aic'), "
                         "or use the shipped tables (load_kernel_table)", param="source") from None
    return Path(aiconfigurator_core.__file__).parent / "systems" / "data"


def _parquet(path: Path):
    try:
        import pandas as pd
    except ImportError:
        raise InputError("reading AIConfigurator's parquet tables needs pandas and pyarrow", param="source") from None
    return pd.read_parquet(path)


def _version_key(name: str) -> tuple:
    return tuple(int(x) if x.isdigit() else -1 for x in name.replace("rc", ".").replace("post", ".").split("."))


def _aic_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _version_dir(base: Path, version: str | None, *, system: str = "", framework: str = "") -> Path:
    """``base/<version>``; by default the version AIConfigurator itself queries ("current" in its
    ``systems/query_versions.yaml``), else the highest version present."""
    if version is None and system and framework:
        slots = _aic_yaml(base.parents[2].parent / "query_versions.yaml")
        entry = (slots.get("overrides", {}).get(system, {}) or {}).get(framework) or slots.get("defaults", {}).get(
            framework
        )
        current = (entry or {}).get("current")
        if current and (base / current).is_dir():
            version = current
    if version is not None:
        path = base / version
        if not path.is_dir():
            raise InputError(f"no AIConfigurator data at {path}", param="version")
        return path
    versions = [p for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
    if not versions:
        raise InputError(f"no AIConfigurator data under {base}", param="version")
    return max(versions, key=lambda p: _version_key(p.name))


def read_installed(gpu, family: str, *, framework: str = "trtllm", version: str | None = None) -> KernelTable:
    """Read one family for ``gpu`` from an installed ``aiconfigurator`` database, as a :class:`KernelTable`.

    Parameters
    ----------
    gpu : a moeplan GPU with an AIConfigurator system (:data:`AIC_SYSTEMS`).
    family : one of :data:`FAMILIES`.
    framework : the serving framework whose measurements to read (``trtllm``, ``sglang``, ``vllm``);
        collectives read NCCL's table and the framework's custom all-reduce, ``moe_dispatch``
        SGLang's DeepEP tables (the only ones with several nodes).
    version : the framework (NCCL, SGLang) version directory; default the highest present.

    Every row AIConfigurator holds for the family is returned, converted to moeplan's columns and
    format names; rows in formats moeplan has no name for are dropped.

    Raises
    ------
    InputError
        aiconfigurator (or pandas) not installed, a GPU without an AIConfigurator system, or no data.
    """
    gpu_id = _gpu_id(gpu)
    if gpu_id not in AIC_SYSTEMS:
        raise InputError(f"{gpu_id} has no AIConfigurator system; have {', '.join(AIC_SYSTEMS)}", param="gpu")
    if family not in FAMILIES:
        raise InputError(f"unknown kernel family {family!r}; known: {', '.join(FAMILIES)}", param="family")
    root = _aic_data_root() / AIC_SYSTEMS[gpu_id]
    return _READERS[family](root, gpu_id, framework, version)


def _table(gpu: str, family: str, frame, source: str) -> KernelTable:
    return kernel_table_from_columns(gpu, family, {c: frame[c].to_numpy() for c in FAMILIES[family]}, source)


def _read_gemm(root, gpu, framework, version):
    path = _version_dir(root / "gemm" / framework, version, system=root.name, framework=framework) / "gemm_perf.parquet"
    d = _parquet(path)
    d = d[d["gemm_dtype"].isin(list(_AIC_GEMM))].copy()
    d["weights"] = d["gemm_dtype"].map(lambda x: _AIC_GEMM[x][0])
    d["activations"] = d["gemm_dtype"].map(lambda x: _AIC_GEMM[x][1])
    d["time_ms"] = d["latency"]
    return _table(gpu, "gemm", d, str(path))


def _read_moe(root, gpu, framework, version):
    path = _version_dir(root / "moe" / framework, version, system=root.name, framework=framework) / "moe_perf.parquet"
    d = _parquet(path)
    gated = ~d["kernel_source"].astype(str).str.contains("nongated|min_latency")  # SwiGLU experts, default kernels
    d = d[gated & d["moe_dtype"].isin(list(_AIC_MOE))].copy()
    d["weights"] = d["moe_dtype"].map(lambda x: _AIC_MOE[x][0])
    d["activations"] = d["moe_dtype"].map(lambda x: _AIC_MOE[x][1])
    d = d.rename(columns={"topk": "top_k", "moe_tp_size": "moe_tp", "moe_ep_size": "moe_ep", "latency": "time_ms"})
    return _table(gpu, "moe", d, str(path))


def _read_attention(root, gpu, framework, version, phase):
    name = "context_attention_perf.parquet" if phase == "prefill" else "generation_attention_perf.parquet"
    path = _version_dir(root / "attention" / framework, version, system=root.name, framework=framework) / name
    d = _parquet(path)
    d = d[d["kv_cache_dtype"].isin(["bfloat16", "fp8"]) & d["attn_dtype"].isin(["bfloat16", "fp8"])].copy()
    d["kv_cache"] = d["kv_cache_dtype"].map(_AIC_FORMAT)
    d["compute"] = d["attn_dtype"].map(_AIC_FORMAT)
    d = d.rename(columns={"batch_size": "batch", "num_key_value_heads": "num_kv_heads", "window_size": "window_tokens",
                          "latency": "time_ms"})  # fmt: skip
    if phase == "prefill":
        d["isl_tokens"] = d["isl"]
        return _table(gpu, "attention_prefill", d, str(path))
    d["context_tokens"] = d["isl"] + d["step"]  # the KV length a generation row attends to
    return _table(gpu, "attention_decode", d, str(path))


def _read_mla(root, gpu, framework, version, phase):
    name = "context_mla_perf.parquet" if phase == "prefill" else "generation_mla_perf.parquet"
    path = _version_dir(root / "mla" / framework, version, system=root.name, framework=framework) / name
    d = _parquet(path)
    d = d[d["kv_cache_dtype"].isin(["bfloat16", "fp8"]) & (d["mla_dtype"] == "bfloat16")].copy()
    d["kv_cache"] = d["kv_cache_dtype"].map(_AIC_FORMAT)
    d = d.rename(columns={"batch_size": "batch", "latency": "time_ms"})
    if phase == "prefill":
        d["isl_tokens"] = d["isl"]
        return _table(gpu, "mla_prefill", d, str(path))
    d["context_tokens"] = d["isl"] + d["step"]
    return _table(gpu, "mla_decode", d, str(path))


def _read_collective(root, gpu, framework, version):
    import pandas as pd

    nccl = str(_aic_yaml(root.parents[1] / f"{root.name}.yaml").get("misc", {}).get("nccl_version", "")) or None
    if nccl is not None and not (root / "comm" / "nccl" / nccl).is_dir():
        nccl = None  # the system's NCCL version has no table: take the highest present
    nccl_path = _version_dir(root / "comm" / "nccl", nccl) / "nccl_perf.parquet"
    d = _parquet(nccl_path)
    d = d[d["nccl_dtype"] == "half"].copy()  # message_size counts 2-byte elements
    d["op"] = d["op_name"].replace({"alltoall": "all_to_all"})
    d["implementation"] = "nccl"
    d["size_bytes"] = d["message_size"] * 2
    frames, sources = [d], [str(nccl_path)]
    try:
        custom_dir = _version_dir(root / "comm" / framework, version, system=root.name, framework=framework)
    except InputError:
        custom_dir = None
    custom_path = custom_dir / "custom_allreduce_perf.parquet" if custom_dir is not None else None
    if custom_path is not None and custom_path.is_file():
        c = _parquet(custom_path)
        c = c[c["allreduce_dtype"].isin(["bfloat16", "float16", "half"])].copy()
        c["op"], c["implementation"], c["size_bytes"] = "all_reduce", "custom", c["message_size"] * 2
        frames.append(c)
        sources.append(str(custom_path))
    frame = pd.concat(frames, ignore_index=True).rename(columns={"latency": "time_ms"})
    return _table(gpu, "collective", frame, "; ".join(sources))


def _read_dispatch(root, gpu, framework, version):
    import pandas as pd

    base = root / "comm" / "sglang"  # SGLang's DeepEP tables: the only ones measured across nodes
    frames, sources = [], []
    dirs = [base / version] if version else (sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else [])
    for vdir in dirs:
        normal, ll = vdir / "wideep_deepep_normal_perf.parquet", vdir / "wideep_deepep_ll_perf.parquet"
        if normal.is_file():
            d = _parquet(normal)
            for phase in ("dispatch", "combine"):
                f = d.assign(phase=phase, mode="normal", element="fp8" if phase == "dispatch" else "bf16",
                             time_ms=d[f"{phase}_transmit_us"] / 1e3, sms=d[f"{phase}_sms"])  # fmt: skip
                frames.append(f.assign(version=vdir.name))
            sources.append(str(normal))
        if ll.is_file():
            d = _parquet(ll)
            for phase in ("dispatch", "combine"):
                f = d.assign(phase=phase, mode="low_latency", element="fp8" if phase == "dispatch" else "bf16",
                             time_ms=d[f"{phase}_avg_t_us"] / 1e3, sms=0)  # fmt: skip
                frames.append(f.assign(version=vdir.name))
            sources.append(str(ll))
    if not frames:
        raise InputError(f"no DeepEP tables under {base}", param="version")
    d = pd.concat(frames, ignore_index=True)
    d = d.rename(columns={"num_token": "tokens_per_rank", "num_topk": "top_k", "node_num": "nodes"})
    d["ep"] = d["nodes"] * 8  # one rank per GPU, 8 GPUs per node in every table here
    # several SM budgets per shape: keep the fastest, as a tuned deployment would
    keys = ["phase", "mode", "tokens_per_rank", "hidden_size", "top_k", "num_experts", "nodes"]
    d = d.sort_values("time_ms").drop_duplicates(["version", *keys], keep="first")
    # a shape measured by several SGLang versions: keep the newest
    d = d.assign(_v=d["version"].map(_version_key)).sort_values("_v", ascending=False)
    d = d.drop_duplicates(keys, keep="first").sort_values(keys)
    return _table(gpu, "moe_dispatch", d, "; ".join(sources))


_READERS = {
    "gemm": _read_gemm,
    "moe": _read_moe,
    "attention_prefill": lambda r, g, f, v: _read_attention(r, g, f, v, "prefill"),
    "attention_decode": lambda r, g, f, v: _read_attention(r, g, f, v, "decode"),
    "mla_prefill": lambda r, g, f, v: _read_mla(r, g, f, v, "prefill"),
    "mla_decode": lambda r, g, f, v: _read_mla(r, g, f, v, "decode"),
    "collective": _read_collective,
    "moe_dispatch": _read_dispatch,
}
