"""Reader fuzzing (issue 14): valid files of every reader, mutated, truncated and garbled by a seeded byte
mutator. A reader may accept a mutant or refuse it with :class:`~planner.errors.InputError` (its
subclass ``ProfileNotFound`` included: exit 2, one line); any other exception is a bug in the reader.

The mutants are the same on every run (seeded), so a failure names a reproducible case:
``reader``, mutant index and the mutation applied.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import engine_dump_writers as w
from planner.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
GOOD = ROOT / "tests" / "data" / "loads" / "good"
MUTANTS = int(os.environ.get("MOEPLAN_FUZZ_MUTANTS", "30"))  # per reader; raise it for a deeper run


# -- the mutator ---------------------------------------------------------------------------------------------
def _mutations(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """One seeded mutation of ``data``: its name and the mutated bytes."""
    n = len(data)
    kind = rng.choice(["truncate", "flip", "insert", "delete", "duplicate", "number", "non_utf8", "empty",
                       "swap_token"])
    if kind == "empty" or n == 0:
        return "empty", b""
    at = rng.randrange(n)
    if kind == "truncate":
        return f"truncate@{at}", data[:at]
    if kind == "flip":
        out = bytearray(data)
        spots = [rng.randrange(n) for _ in range(rng.randint(1, 8))]
        for i in spots:
            out[i] = rng.randrange(256)
        return f"flip@{spots}", bytes(out)
    if kind == "insert":
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        return f"insert@{at}:{junk!r}", data[:at] + junk + data[at:]
    if kind == "delete":
        end = min(n, at + rng.randint(1, max(1, n // 4)))
        return f"delete@{at}-{end}", data[:at] + data[end:]
    if kind == "duplicate":
        end = min(n, at + rng.randint(1, 64))
        return f"duplicate@{at}-{end}", data[:end] + data[at:end] + data[end:]
    if kind == "non_utf8":
        return f"non_utf8@{at}", data[:at] + b"\xff\xfe\xc3" + data[at:]
    digits = [i for i, b in enumerate(data) if 48 <= b <= 57]
    if kind == "number" and digits:
        i = rng.choice(digits)
        repl = rng.choice([b"-1", b"1e308", b"nan", b"-0", b"99999999999999999999", b"0", b"inf", b"\"x\""])
        return f"number@{i}:{repl!r}", data[:i] + repl + data[i + 1:]
    tokens = [b"null", b"[]", b"{}", b"true", b"\"\"", b":", b",", b"\n", b"- ", b"!!python/object:os.system"]
    tok = rng.choice(tokens)
    return f"token@{at}:{tok!r}", data[:at] + tok + data[at:]


# -- valid inputs and their readers ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _plan_text() -> str:
    from planner.inputs.readers import builtin_loads
    from planner.replicas import plan_replicas

    return plan_replicas(builtin_loads("olmoe-arxiv"), "olmoe-1b-7b", num_gpus=8, swap_evaluations=0).to_json()


def _truth(steps=3, layers=2, experts=8, seed=0):
    return np.random.default_rng(seed).integers(0, 50, size=(steps, layers, experts))


def _read_loads(path):
    from planner.inputs.readers import read_loads

    return read_loads(path)


def _read_plan(path):
    from planner.cli.plan_input import read_trusted_plan

    return read_trusted_plan(path)


def _read_trace(path):
    from planner.inputs import read_trace

    return read_trace(path)


def _read_cluster(path):
    from planner.inputs import read_cluster

    return read_cluster(path)


def _load_scenario(path):
    from planner.scenario import load_scenario

    return load_scenario(path)


def _load_op_table(path):
    from planner.perf.measured import load_op_table

    return load_op_table(path)


def _model_file(path):
    from planner.profiles import get_model

    return get_model(path)


def _gpu_file(path):
    from planner.profiles import get_gpu

    return get_gpu(path)


def _profile_table(path):
    from planner.cluster.fleet_inputs import read_profile_table

    return read_profile_table(path)


def _fleet_file(path):
    from planner.cluster.fleet_inputs import read_fleet_file

    return read_fleet_file(path)


def _head(path: Path, lines: int) -> bytes:
    return b"".join(path.read_bytes().splitlines(keepends=True)[:lines])


def _make_op_table(tmp: Path) -> Path:
    from planner.perf.measured import OpTable, load_compute_table, write_op_table

    table = OpTable.concat([load_compute_table("h100", "Llama-2-7b-hf").to_op_table().select(slice(0, 12))])
    return write_op_table(table, tmp / "ops.csv")


def _make_trtllm(tmp: Path) -> Path:
    truth = _truth()
    return w.write_trtllm(tmp / "trt", [truth // 2, truth - truth // 2], [1, 2])


#: reader name -> (make a valid input in a folder: returns the path to pass, the file inside it to mutate, reader)
READERS: dict[str, tuple[Callable[[Path], tuple[Path, Path]], Callable]] = {
    "loads-npz": (lambda t: _copy(GOOD / "counts_3d.npz", t), _read_loads),
    "loads-json": (lambda t: _copy(GOOD / "moeplan.json", t), _read_loads),
    "loads-sglang-json": (lambda t: _copy(GOOD / "sglang_logical_count.json", t), _read_loads),
    "loads-csv": (lambda t: _copy(GOOD / "rank0.csv", t), _read_loads),
    "loads-sglang-pt": (lambda t: _same(w.write_sglang_pt(t / "d.pt", _truth(), [1, 2], 4, buffer_steps=4)),
                        _read_loads),
    "loads-vllm-jsonl": (lambda t: _same(w.write_vllm_stats(t / "eplb.jsonl", _truth(),
                                                            np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 3]))), _read_loads),
    "loads-trtllm-meta": (lambda t: (_make_trtllm(t), t / "trt" / "meta_info.json"), _read_loads),
    "loads-trtllm-safetensors": (lambda t: (_make_trtllm(t), t / "trt" / "rank0.safetensors"), _read_loads),
    "plan-json": (lambda t: _write(t / "plan.json", _plan_text().encode()), _read_plan),
    "scenario-yaml": (lambda t: _copy(ROOT / "planner" / "data" / "scenarios" / "default.yaml", t), _load_scenario),
    "scenario-json": (lambda t: _copy(ROOT / "planner" / "data" / "scenarios" / "olmoe-arxiv-ep8.json", t),
                      _load_scenario),
    "cluster-yaml": (lambda t: _copy(ROOT / "examples" / "cluster-mixed.yaml", t), _read_cluster),
    "profile-csv": (lambda t: _same(_make_op_table(t)), _load_op_table),
    "trace-azure": (lambda t: _write(t / "azure.csv", _head(ROOT / "planner/data/traces/azure-2023-conv.csv", 40)),
                    _read_trace),
    "trace-mooncake": (lambda t: _write(t / "mooncake.jsonl",
                                        _head(ROOT / "planner/data/traces/mooncake-conversation.jsonl", 40)),
                       _read_trace),
    "trace-burstgpt": (lambda t: _copy(ROOT / "tests/data/traces/burstgpt-sample.csv", t), _read_trace),
    "model-yaml": (lambda t: _copy(ROOT / "profiles/models/mixtral-8x7b.yaml", t), _model_file),
    "model-hf-config": (lambda t: _copy(ROOT / "tests/data/hf_configs/mixtral-8x7b.json", t, "config.json"),
                        _model_file),
    "gpu-yaml": (lambda t: _copy(ROOT / "profiles/gpus/h100.yaml", t, "mygpu.yaml"), _gpu_file),
    "fleet-profile-table": (lambda t: _write(t / "table.csv", b"gpu,gpus_per_instance,input_tokens,output_tokens,"
                                             b"max_rate_req_per_s\nl4,1,512,128,2.0\nh100,1,512,128,8.0\n"),
                            _profile_table),
    "fleet-file": (lambda t: _write(t / "fleet.yaml", b"gpus:\n  l4: {price_per_gpu_hour_usd: 0.8}\n"
                                    b"  h100: {price_per_gpu_hour_usd: 3.78, available_gpus: 8}\n"), _fleet_file),
}


def _copy(src: Path, tmp: Path, name: str | None = None) -> tuple[Path, Path]:
    dst = tmp / (name or src.name)
    shutil.copyfile(src, dst)
    return dst, dst


def _write(path: Path, data: bytes) -> tuple[Path, Path]:
    path.write_bytes(data)
    return path, path


def _same(path: Path) -> tuple[Path, Path]:
    return path, path


@pytest.mark.parametrize("reader", sorted(READERS))
def test_reader_accepts_its_valid_input(reader, tmp_path):
    make, read = READERS[reader]
    arg, _ = make(tmp_path)
    read(arg)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_mutated_inputs_are_read_or_refused_as_input_errors(reader, tmp_path):
    make, read = READERS[reader]
    arg, target = make(tmp_path)
    original = target.read_bytes()
    rng = random.Random(f"{reader}-fuzz")  # str seeds hash with SHA-512: the same mutants on every run
    bugs = []
    for i in range(MUTANTS):
        what, data = _mutations(rng, original)
        target.write_bytes(data)
        try:
            read(arg)
        except InputError as exc:
            assert "\n" not in str(exc).strip() or len(str(exc)) < 2000, f"{reader} #{i} {what}: long message"
        except Exception as exc:  # noqa: BLE001 - any other exception is the bug this test looks for
            bugs.append(f"#{i} {what[:80]}: {type(exc).__name__}: {str(exc)[:160]}")
    target.write_bytes(original)
    assert not bugs, f"{reader}: {len(bugs)} mutant(s) crashed the reader:\n" + "\n".join(bugs[:8])
