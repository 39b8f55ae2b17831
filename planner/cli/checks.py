"""The CLI's input and output layers: every command's values and paths checked before any work.

Every command runs as a :class:`CheckedCommand`. After click has parsed the command line and before
the command's body runs:

1. **values** (:data:`VALUE_RULES`): every number a flag takes is finite, an integer where it counts
   something, and inside its range; sizes are bounded by the limits of
   :mod:`planner.common.limits` (``docs/limits.md``), so ``--gpus 1e9`` or ``--time-limit-s nan`` is
   refused in one line (exit 2) before anything is read or allocated. ``tests/test_cli_checks.py``
   keeps the table complete: every numeric option of every command has a rule.
2. **outputs** (:data:`OUTPUT_PARAMS`): every path the command will write is declared in one
   :class:`~planner.common.fileio.OutputSet` and checked (its directory exists and takes files, no
   directory in the way, not one of the command's inputs, :data:`INPUT_PARAMS`). The command body then
   runs inside the set: its files are written together when it returns, and not at all when it fails.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from typer.core import TyperCommand

from planner.common import limits as L
from planner.common.checks import POSITIVE, check_number
from planner.common.fileio import OutputSet
from planner.errors import InputError

__all__ = ["Rule", "VALUE_RULES", "COMMAND_VALUE_RULES", "OUTPUT_PARAMS", "INPUT_PARAMS", "rule_for",
           "check_values", "check_value", "declare_outputs", "numeric_params", "CheckedCommand"]


@dataclass(frozen=True)
class Rule:
    """A flag's number: finite, ``low <= value`` (``POSITIVE``: ``> 0``), ``value <= high`` when set;
    ``limit`` names the :mod:`planner.common.limits` constant ``high`` comes from."""

    low: float
    high: float | None = None
    integer: bool = False
    limit: str | None = None


def _count(low: int, limit: str) -> Rule:
    return Rule(low, getattr(L, limit), True, limit)


_SECONDS = Rule(POSITIVE, L.MAX_TIME_S, False, "MAX_TIME_S")
_SHARE = Rule(POSITIVE, 1.0)
_SEED = _count(0, "MAX_SEED")

#: python parameter name -> rule, for every numeric option of every command (command overrides below)
VALUE_RULES: dict[str, Rule] = {
    # sizes of loads, traces and plans
    "gpus": _count(1, "MAX_GPUS"),
    "nodes": _count(1, "MAX_GPUS"),
    "redundant": _count(0, "MAX_SLOTS"),
    "spare_slots": _count(0, "MAX_SLOTS"),
    "groups": _count(1, "MAX_EXPERTS"),
    "num_experts": _count(1, "MAX_EXPERTS"),
    "top_k": _count(1, "MAX_EXPERTS"),
    "layers": _count(1, "MAX_LAYERS"),
    "first_layer": _count(0, "MAX_LAYERS"),
    "steps": _count(1, "MAX_STEPS"),
    "window": _count(1, "MAX_STEPS"),
    "holdout": _count(0, "MAX_STEPS"),
    "sample_steps": _count(1, "MAX_STEPS"),
    "check_steps": _count(1, "MAX_STEPS"),
    "tokens": _count(1, "MAX_TOKENS"),
    "batch_tokens": _count(1, "MAX_TOKENS"),
    "max_batch_tokens": _count(1, "MAX_TOKENS"),
    "batch": _count(1, "MAX_REQUESTS"),
    "max_batch": _count(1, "MAX_REQUESTS"),
    "num_requests": _count(1, "MAX_REQUESTS"),
    "isl": _count(1, "MAX_SEQUENCE_TOKENS"),
    "osl": _count(1, "MAX_SEQUENCE_TOKENS"),
    "tp": _count(1, "MAX_GPUS"),
    "pp": _count(1, "MAX_GPUS"),
    "dp": _count(1, "MAX_GPUS"),
    "ep": _count(1, "MAX_GPUS"),
    "moe_tp": _count(1, "MAX_GPUS"),
    "max_instance_gpus": _count(1, "MAX_GPUS"),
    "slices": _count(1, "MAX_REQUESTS"),
    "prune": _count(1, "MAX_GPUS"),
    "hidden": _count(1, "MAX_HIDDEN"),
    "intermediate": _count(1, "MAX_INTERMEDIATE"),
    # work budgets, processes, seeds
    "iterations": _count(0, "MAX_ITERATIONS"),
    "swap_evaluations": _count(0, "MAX_SWAP_EVALUATIONS"),
    "chains": _count(1, "MAX_WORKERS"),
    "workers": _count(1, "MAX_WORKERS"),
    "threads": _count(1, "MAX_WORKERS"),
    "seed": _SEED,
    "kill_rank": _count(0, "MAX_GPUS"),
    "kill_at_step": _count(1, "MAX_STEPS"),
    "timing_repeats": Rule(0, 1000, True),
    # seconds
    "time_limit_s": _SECONDS,
    "timeout_s": _SECONDS,
    "swap_time_limit_s": Rule(0.0, L.MAX_TIME_S, False, "MAX_TIME_S"),
    # rates, limits and shares
    "budget_gb": Rule(POSITIVE, 1e6),
    "ttft_ms": Rule(POSITIVE, L.MAX_TIME_S * 1e3, False, "MAX_TIME_S"),
    "tpot_ms": Rule(POSITIVE, L.MAX_TIME_S * 1e3, False, "MAX_TIME_S"),
    "rate": Rule(POSITIVE, 1e9),
    "percentile": Rule(POSITIVE, 100.0),
    "balancedness": _SHARE,
    "memory_utilization": _SHARE,
    "max_weight_share": _SHARE,
    "tolerance_b": Rule(0.0, 1.0),
    "drift": Rule(0.0, 10.0),
    "step_rate": Rule(POSITIVE, 1e6),  # engine steps per second (replan's wall-time recommendation)
    "rate_points": Rule(0, 64, True),  # 0: none; rates on the report's goodput-vs-rate curve
}

#: (command, parameter) -> rule where one command means something else by the name
COMMAND_VALUE_RULES: dict[tuple[str, str], Rule] = {
    ("profile", "workers"): _count(0, "MAX_WORKERS"),  # 0 or 1 skips the all-to-all
    ("estimate", "osl"): _count(2, "MAX_SEQUENCE_TOKENS"),
}

#: parameter -> how the command writes it: ``file`` (held back and written with the others when the
#: command returns), ``live`` (rewritten while the command runs: checked up front, written at once),
#: ``dir`` (a directory of outputs, created at the end)
OUTPUT_PARAMS: dict[str, str] = {
    "output": "file",
    "plot": "file",
    "target_plan": "file",
    "state": "live",
    "out_dir": "dir",
}

#: parameters naming files a command reads (an output may not be one of them)
INPUT_PARAMS: frozenset[str] = frozenset({
    "loads", "plan_path", "current", "new", "scenario", "trace", "cluster", "cluster_file", "replicas",
    "profile", "fleet_file", "profile_table",
})


def rule_for(command: str, param: str) -> Rule | None:
    """The rule of ``param`` in ``command`` (None: not a number)."""
    return COMMAND_VALUE_RULES.get((command, param), VALUE_RULES.get(param))


def check_values(command: str, params: Mapping[str, Any], flags: Mapping[str, str]) -> None:
    """Raise :class:`InputError` at the first number of ``params`` its rule refuses, under its flag."""
    for name, value in params.items():
        rule = rule_for(command, name)
        if rule is None or value is None or isinstance(value, (bool, str, Path, list, tuple)):
            continue
        check_value(flags.get(name, name), value, rule)


def check_value(flag: str, value, rule: Rule) -> None:
    """Raise :class:`InputError` (``--flag: must be ...``) unless ``value`` keeps ``rule``.

    >>> check_value("--gpus", 10**9, VALUE_RULES["gpus"])
    Traceback (most recent call last):
    ...
    planner.errors.InputError: --gpus: must be an integer >= 1 and <= 4096, got 1000000000 (MAX_GPUS, docs/limits.md)
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{flag}: must be a finite number, got {value!r}")
    try:
        check_number(flag, value, low=rule.low, integer=rule.integer, high=rule.high)
    except InputError as exc:
        where = f" ({rule.limit}, docs/limits.md)" if rule.limit and rule.high is not None and value > rule.high else ""
        raise InputError(f"{flag}: {exc.message.removeprefix(flag + ' ')}{where}") from None


def declare_outputs(command: str, params: Mapping[str, Any], flags: Mapping[str, str]) -> OutputSet:
    """The command's :class:`OutputSet`: every output path checked (its directory exists and takes new
    files, nothing is in the way, it is none of the command's inputs nor another of its outputs)."""
    inputs = []
    for name in sorted(INPUT_PARAMS):
        value = params.get(name)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None and not str(item).startswith(("builtin:", "helix:")):
                inputs.append(Path(item))
    outputs = OutputSet()
    for name, kind in OUTPUT_PARAMS.items():
        value = params.get(name)
        if value is None:
            continue
        flag = flags.get(name, name)
        if kind == "dir":
            outputs.declare_dir(value, flag, _dir_files(command), inputs=inputs)
        elif kind == "live":
            outputs.declare_live(value, flag, inputs=inputs)
        else:
            outputs.declare(value, flag, inputs=inputs)
            for extra in _derived_outputs(command, name, Path(value)):
                outputs.declare(extra, flag, inputs=inputs)
    return outputs


def _dir_files(command: str) -> tuple[str, ...]:
    if command == "plan":
        from planner.scenario import EXPORT_FILES

        return ("plan.json", "summary.txt", "launch-sglang.sh", "manifest.yaml", *EXPORT_FILES.values())
    return ()


def _derived_outputs(command: str, param: str, path: Path) -> list[Path]:
    """Files a command writes next to an output it was given."""
    if command == "profile" and param == "output":
        from planner.runtime.profile.io import sidecar_path

        return [sidecar_path(path)]
    return []


class CheckedCommand(TyperCommand):
    """A command whose values and output paths are checked before its body runs, and whose files are
    written together when it returns (module docstring)."""

    def invoke(self, ctx):
        flags = {p.name: max(p.opts, key=len) for p in self.params if p.opts and p.name}
        check_values(self.name or "", ctx.params, flags)
        with declare_outputs(self.name or "", ctx.params, flags):
            return super().invoke(ctx)


def numeric_params(callback) -> dict[str, type]:
    """The int and float parameters of a command function (for the completeness test)."""
    hints = typing.get_type_hints(callback, include_extras=True)
    out = {}
    for name, hint in hints.items():
        if typing.get_origin(hint) is typing.Annotated:
            hint = typing.get_args(hint)[0]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
        if len(args) == 1 and args[0] in (int, float):
            out[name] = args[0]
    return out

