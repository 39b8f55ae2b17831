"""Inputs of the GPU-mix planner: GPU types with prices and availability, and Mélange-style profile tables.

**Prices and availability** (:func:`resolve_offers`): the GPU types to mix, each with a price in $ per
GPU-hour and the most GPUs of it the fleet may use. Prices default to the GPU profile's
``price_per_hour_usd`` (``profiles/gpus/*.yaml``: public on-demand figures, each with its source and
date; indicative only, pass your own); availability defaults to unlimited. A fleet file carries both::

    gpus:
      h100: {price_per_gpu_hour_usd: 3.78, available_gpus: 16}
      l4:   {price_per_gpu_hour_usd: 0.80}

**Profile table** (:func:`read_profile_table`): Mélange's input, the highest request rate one instance
sustains within the SLO per GPU type and request size, measured elsewhere. CSV with a header (or a
YAML/JSON list of the same rows)::

    gpu,gpus_per_instance,input_tokens,output_tokens,max_rate_req_per_s
    l4,1,256,64,2.4

``input_tokens`` and ``output_tokens`` are the sizes profiled; they become the inclusive upper edges of
the buckets (a request goes to the smallest profiled size that holds it, the conservative side, as
AIBrix's GPU optimizer does), so the table's sizes must form a grid. A missing cell is capacity 0.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from planner.common.fileio import read_input_text
from planner.common.limits import MAX_GPUS
from planner.errors import InputError
from planner.profiles import GpuSpec, get_gpu
from planner.profiles.schema import load_yaml_text

__all__ = ["GpuOffer", "ProfileTable", "resolve_offers", "read_fleet_file", "read_profile_table", "DEFAULT_GPUS",
           "parse_assignments"]

#: GPU types mixed when none are named: Mélange's four (L4, A10G, A100-80GB, H100) and the L40S
DEFAULT_GPUS = ("l4", "a10g", "l40s", "a100-80g", "h100")


@dataclass(frozen=True)
class GpuOffer:
    """One GPU type the fleet may use: its profile, price per GPU-hour, where the price comes from, and the
    most GPUs available (None: unlimited)."""

    spec: GpuSpec
    price_per_gpu_hour_usd: float
    price_source: str
    available_gpus: int | None


@dataclass(frozen=True)
class ProfileTable:
    """Max rate per (GPU type, prompt size, output size) cell; the sizes are the bucket edges."""

    source: str
    input_edges: tuple[int, ...]
    output_edges: tuple[int, ...]
    gpus_per_instance: dict  # gpu id -> GPUs per instance
    rates: dict  # (gpu id, input_tokens, output_tokens) -> req/s

    @property
    def gpus(self) -> list[str]:
        """GPU ids of the table, in first-seen order."""
        return list(self.gpus_per_instance)

    def capacity(self, gpu: str, input_tokens_max: int | None, output_tokens_max: int | None) -> float:
        """Rate of one instance of ``gpu`` on the bucket with these upper edges (0: not in the table)."""
        return float(self.rates.get((gpu, input_tokens_max, output_tokens_max), 0.0))


def _number(value, where: str, param: str, *, integer=False, low=0.0) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or value < low:
        kind = "an integer" if integer else "a number"
        raise InputError(f"{where}: must be {kind} >= {low:g}, got {value!r}", param=param)
    return int(value) if integer else float(value)


def parse_assignments(items: Sequence[str] | None, param: str, *, integer: bool = False) -> dict[str, float]:
    """``["h100=3.5", "l4=0.8"]`` -> ``{"h100": 3.5, "l4": 0.8}`` (the CLI's repeated ``GPU=VALUE`` options)."""
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip():
            raise InputError(f"expected GPU=VALUE, got {item!r}", param=param)
        try:
            v = float(value)
        except ValueError:
            raise InputError(f"{name}: expected a number, got {value!r}", param=param) from None
        out[name.strip()] = _number(int(v) if integer and v.is_integer() else v, name.strip(), param, integer=integer)
        if integer and out[name.strip()] > MAX_GPUS:
            raise InputError(f"{name.strip()}: at most MAX_GPUS {MAX_GPUS} (docs/limits.md), got {value}", param=param)
    return out


def resolve_offers(gpus: Sequence[str | GpuSpec] | None, prices: Mapping[str, float] | None = None,
                   available_gpus: Mapping[str, int] | None = None) -> list[GpuOffer]:
    """The GPU types to mix with their prices and availability (module docstring).

    ``prices`` and ``available_gpus`` are keyed by any name :func:`planner.profiles.get_gpu` knows; a key
    that is not among ``gpus`` is an error (a typo would otherwise be ignored). ``gpus`` None:
    :data:`DEFAULT_GPUS` and any other type named in ``prices`` / ``available_gpus``.

    >>> [(o.spec.id, o.price_per_gpu_hour_usd, o.available_gpus) for o in resolve_offers(["l4"], {"l4": 0.7}, {"l4": 4})]
    [('l4', 0.7, 4)]
    """
    prices, avail = dict(prices or {}), dict(available_gpus or {})
    if gpus is None:
        default = list(DEFAULT_GPUS)
        gpus = default + [n for n in dict.fromkeys([*prices, *avail]) if get_gpu(n).id not in default]
    if not gpus:
        raise InputError("name at least one GPU type", param="gpus")
    specs: dict[str, GpuSpec] = {}
    for g in gpus:
        spec = g if isinstance(g, GpuSpec) else get_gpu(g)
        if spec.id in specs:
            raise InputError(f"GPU type {spec.id} is named twice", param="gpus")
        specs[spec.id] = spec
    by_id = {}
    for label, table in (("prices", prices), ("available_gpus", avail)):
        by_id[label] = {}
        for name, v in table.items():
            sid = get_gpu(name).id
            if sid not in specs:
                raise InputError(f"{name}: not among the GPU types to mix ({', '.join(specs)})", param=label)
            by_id[label][sid] = v
    out = []
    for sid, spec in specs.items():
        if sid in by_id["prices"]:
            price = _number(by_id["prices"][sid], sid, "prices")
            source = "given"
        else:
            price = float(spec.price_per_hour_usd)
            source = f"profile: {spec.provenance.get('source', 'profiles/gpus/' + sid + '.yaml')}"
        a = by_id["available_gpus"].get(sid)
        a = None if a is None or (isinstance(a, float) and math.isinf(a)) else int(
            _number(a, sid, "available_gpus", integer=True))
        out.append(GpuOffer(spec, price, source, a))
    return out


def _load(path: str | Path, what: str):
    p = Path(path)
    return p, read_input_text(p, what)


def read_fleet_file(path: str | Path) -> tuple[list[str], dict[str, float], dict[str, int]]:
    """``(gpus, prices, available_gpus)`` from a fleet file (YAML or JSON, module docstring)."""
    p, text = _load(path, "fleet file")
    data = load_yaml_text(text, str(p))  # JSON is YAML
    if not isinstance(data, dict) or not isinstance(data.get("gpus"), dict) or not data["gpus"]:
        raise InputError(f"{p}: expected a mapping 'gpus: {{TYPE: {{price_per_gpu_hour_usd: ..., available_gpus: ...}}}}'")
    unknown = sorted(set(data) - {"gpus", "provenance"})
    if unknown:
        raise InputError(f"{p}: unknown field {unknown[0]!r} (known: gpus, provenance)")
    gpus, prices, avail = [], {}, {}
    for name, entry in data["gpus"].items():
        entry = entry or {}
        if not isinstance(entry, dict):
            raise InputError(f"{p}: gpus.{name}: expected a mapping")
        bad = sorted(set(entry) - {"price_per_gpu_hour_usd", "available_gpus"})
        if bad:
            raise InputError(f"{p}: gpus.{name}.{bad[0]}: unknown field (known: price_per_gpu_hour_usd, available_gpus)")
        gpus.append(str(name))
        if entry.get("price_per_gpu_hour_usd") is not None:
            prices[str(name)] = _number(entry["price_per_gpu_hour_usd"], f"{p}: gpus.{name}.price_per_gpu_hour_usd",
                                        "prices")
        if entry.get("available_gpus") is not None:
            avail[str(name)] = int(_number(entry["available_gpus"], f"{p}: gpus.{name}.available_gpus",
                                           "available_gpus", integer=True))
    return gpus, prices, avail


_COLUMNS = ("gpu", "gpus_per_instance", "input_tokens", "output_tokens", "max_rate_req_per_s")


def read_profile_table(path: str | Path) -> ProfileTable:
    """A profile table from CSV, YAML or JSON (module docstring); errors name the row and field."""
    p, text = _load(path, "profile table")
    if p.suffix.lower() == ".csv":
        try:
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
        except csv.Error as exc:
            raise InputError(f"{p}: not a CSV file ({exc})") from None
        missing = [c for c in _COLUMNS if c != "gpus_per_instance" and c not in (rows[0] if rows else {})]
        if not rows or missing:
            raise InputError(f"{p}: expected a header with {', '.join(_COLUMNS)} and at least one row"
                             + (f" (missing {missing[0]})" if rows else ""))
        parsed = []
        for i, r in enumerate(rows, start=2):
            if None in r or None in r.values():  # csv's marks for a row longer / shorter than the header
                raise InputError(f"{p}: line {i}: {len(r) - (None in r)} header columns, the row has "
                                 f"{'more' if None in r else 'fewer'} fields")
            try:
                parsed.append({k: (v if k == "gpu" else float(v)) for k, v in r.items() if k in _COLUMNS and v != ""})
            except ValueError as exc:
                raise InputError(f"{p}: line {i}: {exc}") from None
        rows, first_row = parsed, 2
    else:
        rows = load_yaml_text(text, str(p))
        if isinstance(rows, dict):
            rows = rows.get("rows")
        if not isinstance(rows, list) or not rows:
            raise InputError(f"{p}: expected a list of rows with {', '.join(_COLUMNS)} (or 'rows: [...]')")
        first_row = 0
    per_gpu: dict[str, int] = {}
    rates: dict = {}
    ins, outs = set(), set()
    for i, r in enumerate(rows, start=first_row):
        where = f"{p}: {'line' if first_row else 'row'} {i}"
        if not isinstance(r, dict) or "gpu" not in r:
            raise InputError(f"{where}: expected fields {', '.join(_COLUMNS)}")
        unknown = sorted(set(r) - set(_COLUMNS))
        if unknown:
            raise InputError(f"{where}: unknown field {unknown[0]!r}")
        gid = get_gpu(str(r["gpu"])).id
        n = int(_number(r.get("gpus_per_instance", 1), f"{where}: gpus_per_instance", "profile_table", integer=True,
                        low=1))
        if per_gpu.setdefault(gid, n) != n:
            raise InputError(f"{where}: {gid} has gpus_per_instance {per_gpu[gid]} in an earlier row, {n} here")
        it = int(_number(r.get("input_tokens"), f"{where}: input_tokens", "profile_table", integer=True, low=1))
        ot = int(_number(r.get("output_tokens"), f"{where}: output_tokens", "profile_table", integer=True, low=1))
        rate = _number(r.get("max_rate_req_per_s"), f"{where}: max_rate_req_per_s", "profile_table")
        if (gid, it, ot) in rates:
            raise InputError(f"{where}: {gid} at {it}/{ot} tokens is given twice")
        rates[(gid, it, ot)] = rate
        ins.add(it)
        outs.add(ot)
    return ProfileTable(str(p), tuple(sorted(ins)), tuple(sorted(outs)), per_gpu, rates)
