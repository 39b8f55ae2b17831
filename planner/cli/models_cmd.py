"""`moeplan models`: the built-in model architectures."""

from __future__ import annotations

from planner.cli._output import emit
from planner.cli.options import JsonOpt
from planner.common.tables import format_table

__all__ = ["models"]


def models(json_out: JsonOpt = False) -> None:
    """List the built-in model architectures with their native precision and expert sizes."""
    from planner.profiles import list_models

    ms = list_models()
    rows = [
        [m.id, m.num_hidden_layers, len(m.moe_layers), m.num_routed_experts, m.top_k,
         f"{m.total_params() / 1e9:.3g}", m.precision.label(), f"{m.weight_bytes() / 1e9:.1f}",
         f"{m.bytes_per_expert / 1e6:.1f}", m.names[0] if m.names else ""]
        for m in ms
    ]
    table = format_table(["id", "layers", "moe_layers", "experts", "top_k", "params_B", "precision", "weights_GB",
                          "expert_MB", "name"], rows)  # fmt: skip
    emit(
        {"models": [{"id": m.id, "names": list(m.names), "num_hidden_layers": m.num_hidden_layers,
                     "moe_layers": list(m.moe_layers), "num_routed_experts": m.num_routed_experts, "top_k": m.top_k,
                     "total_params": m.total_params(), "precision": m.precision.to_dict(),
                     "weight_bytes": m.weight_bytes(), "bytes_per_expert": m.bytes_per_expert} for m in ms]},
        table,
        json_out,
    )
