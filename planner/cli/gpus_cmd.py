"""`moeplan gpus`: the built-in GPU profiles."""

from __future__ import annotations

from planner.cli._output import emit
from planner.cli.options import JsonOpt
from planner.common.tables import format_table

__all__ = ["gpus"]


def gpus(json_out: JsonOpt = False) -> None:
    """List the built-in GPU profiles (SI units)."""
    from planner.profiles import list_gpus

    gs = list_gpus()
    rows = [
        [g.id, f"{g.memory_bytes / 1e9:.0f}", f"{g.hbm_bytes_per_s / 1e12:.2f}", f"{g.bf16_flops_per_s / 1e12:.0f}",
         *(f"{x / 1e12:.0f}" if x else "-" for x in (g.fp8_flops_per_s, g.int8_ops_per_s, g.fp4_flops_per_s)),
         f"{g.intra_node_bytes_per_s / 1e9:.0f}",
         f"{g.price_per_hour_usd:.2f}" if g.price_per_hour_usd is not None else "-"]
        for g in gs
    ]
    table = format_table(["id", "memory_GB", "hbm_TB/s", "bf16_TFLOP/s", "fp8_TFLOP/s", "int8_TOP/s", "fp4_TFLOP/s",
                          "intra_node_GB/s", "usd/h"], rows)  # fmt: skip
    emit({"gpus": [{k: v for k, v in g.__dict__.items() if k != "provenance"} for g in gs]}, table, json_out)
