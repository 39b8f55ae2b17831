"""The one table of size limits moeplan accepts (``docs/limits.md`` says why, with memory measured).

Every input that sets a size (a count of experts, GPUs, steps, tokens; a load value; the shape an
``.npz`` header declares) is checked against these numbers before anything is allocated, so a typo
like ``--gpus 1e9`` is refused in one line (exit 2) naming the limit, instead of allocating tens of GB.
The limits are far above any model or cluster served today (DeepSeek-V3: 256 experts, 58 MoE layers;
the largest public expert-parallel deployments: a few hundred GPUs) and far below what would exhaust a
workstation's memory.
"""

from __future__ import annotations

from planner.errors import InputError

__all__ = [
    "MAX_EXPERTS",
    "MAX_LAYERS",
    "MAX_STEPS",
    "MAX_LOAD_VALUES",
    "MAX_LOAD_COUNT",
    "MAX_GPUS",
    "MAX_SLOTS",
    "MAX_TOKENS",
    "MAX_SEQUENCE_TOKENS",
    "MAX_REQUESTS",
    "MAX_HIDDEN",
    "MAX_INTERMEDIATE",
    "MAX_SEED",
    "MAX_TIME_S",
    "MAX_ITERATIONS",
    "MAX_SWAP_EVALUATIONS",
    "MAX_WORKERS",
    "MAX_TEXT_BYTES",
    "BYTES_PER_LOAD_VALUE",
    "LIMITS",
    "available_memory_bytes",
    "check_load_shape",
]

#: routed experts per MoE layer (DeepSeek-V3: 256, Kimi-K2: 384)
MAX_EXPERTS = 4096
#: MoE layers (rows) of a load file or a synthetic trace; hidden-layer ids stay below it too
MAX_LAYERS = 1024
#: steps (forward passes) of a load trace
MAX_STEPS = 1_000_000
#: values of a load array, steps x layers x experts (float64: 8 bytes each, 400 MB at the limit)
MAX_LOAD_VALUES = 50_000_000
#: one load value (tokens routed to one expert in one step, or summed over a window)
MAX_LOAD_COUNT = 1e15
#: GPUs of one plan (EP ranks, nodes x GPUs, a deployment budget, a GPU type's availability)
MAX_GPUS = 4096
#: expert slots per layer (experts + redundant copies) and spare slots per GPU
MAX_SLOTS = 65536
#: tokens of one step or batch (a forward pass) and of a collection run
MAX_TOKENS = 100_000_000
#: prompt or output tokens of one request
MAX_SEQUENCE_TOKENS = 10_000_000
#: requests of one simulation or decode batch
MAX_REQUESTS = 1_000_000
#: hidden size of synthetic runtime layers (DeepSeek-V3: 7168)
MAX_HIDDEN = 16384
#: expert intermediate size of synthetic runtime layers (DeepSeek-V3: 2048; Mixtral: 14336)
MAX_INTERMEDIATE = 65536
#: random seeds: numpy takes non-negative integers; 32 bits keep every seed portable
MAX_SEED = 2**32 - 1
#: seconds of any time limit or deadline (one week)
MAX_TIME_S = 604_800.0
#: annealing moves per chain (cluster) and other work budgets
MAX_ITERATIONS = 100_000_000
#: the replica swap search's work budget: candidate swaps x steps evaluated (about 5e7 per second on one
#: core, docs/replicas.md): 1e13 is more than two days of one core
MAX_SWAP_EVALUATIONS = 10**13
#: worker processes and threads
MAX_WORKERS = 1024
#: a text input file (plan, scenario, loads JSON/CSV/JSONL, trace, cluster, fleet or profile file): 256 MiB;
#: parsed JSON takes about 12 bytes of memory per byte of text (docs/limits.md)
MAX_TEXT_BYTES = 2**28
#: peak bytes per load value of the most memory-hungry command (``synth``: 43 measured, docs/limits.md)
BYTES_PER_LOAD_VALUE = 48

#: name -> (value, what it bounds): the table docs/limits.md documents (tests keep the two equal)
LIMITS: dict[str, tuple[float, str]] = {
    "MAX_EXPERTS": (MAX_EXPERTS, "routed experts per MoE layer"),
    "MAX_LAYERS": (MAX_LAYERS, "MoE layers of loads or a synthetic trace; hidden-layer ids"),
    "MAX_STEPS": (MAX_STEPS, "steps of a load trace"),
    "MAX_LOAD_VALUES": (MAX_LOAD_VALUES, "values of a load array (steps x layers x experts)"),
    "MAX_LOAD_COUNT": (MAX_LOAD_COUNT, "one load value (tokens of one expert)"),
    "MAX_GPUS": (MAX_GPUS, "GPUs of one plan or budget; nodes; parallel degrees"),
    "MAX_SLOTS": (MAX_SLOTS, "expert slots per layer; redundant and spare slots"),
    "MAX_TOKENS": (MAX_TOKENS, "tokens of one step, batch or collection run"),
    "MAX_SEQUENCE_TOKENS": (MAX_SEQUENCE_TOKENS, "prompt or output tokens of one request"),
    "MAX_REQUESTS": (MAX_REQUESTS, "requests of a simulation or a batch"),
    "MAX_HIDDEN": (MAX_HIDDEN, "hidden size of synthetic runtime layers"),
    "MAX_INTERMEDIATE": (MAX_INTERMEDIATE, "expert intermediate size of synthetic runtime layers"),
    "MAX_SEED": (MAX_SEED, "random seeds (0 .. 2**32-1)"),
    "MAX_TIME_S": (MAX_TIME_S, "seconds of a time limit or deadline"),
    "MAX_ITERATIONS": (MAX_ITERATIONS, "search moves (work budgets)"),
    "MAX_SWAP_EVALUATIONS": (MAX_SWAP_EVALUATIONS, "swap-search evaluations (its work budget)"),
    "MAX_WORKERS": (MAX_WORKERS, "worker processes and threads"),
    "MAX_TEXT_BYTES": (MAX_TEXT_BYTES, "bytes of a text input file"),
}


def available_memory_bytes() -> int | None:
    """Memory the kernel can give this process now (``MemAvailable`` of ``/proc/meminfo``); None where
    it cannot be read (not Linux)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_load_shape(shape, where: str) -> None:
    """Raise :class:`InputError` unless a load array of ``shape`` (``[layers, experts]`` or
    ``[steps, layers, experts]``) is within the limits and its planning fits in the memory available
    now (``BYTES_PER_LOAD_VALUE`` per value); called on a file's declared shape before the
    array is read, and by :class:`~planner.inputs.loads.ExpertLoads`.

    >>> check_load_shape((400, 58, 256), "trace.npz")
    >>> check_load_shape((10**9, 61, 384), "big.npz")
    Traceback (most recent call last):
    ...
    planner.errors.InputError: big.npz: shape [1000000000, 61, 384] exceeds the limits: 1000000000 steps > MAX_STEPS 1000000 (docs/limits.md)
    """
    dims = [int(d) for d in shape]
    named = dict(zip(("steps", "layers", "experts")[3 - len(dims):], dims)) if len(dims) in (2, 3) else {}
    over = [f"{named[k]} {k} > {name} {limit}" for k, name, limit in
            (("steps", "MAX_STEPS", MAX_STEPS), ("layers", "MAX_LAYERS", MAX_LAYERS), ("experts", "MAX_EXPERTS", MAX_EXPERTS))
            if named.get(k, 0) > limit]  # fmt: skip
    total = 1
    for d in dims:
        total *= d
    if not over and total > MAX_LOAD_VALUES:
        over.append(f"{total} values > MAX_LOAD_VALUES {MAX_LOAD_VALUES}")
    if not over:
        need, free = total * BYTES_PER_LOAD_VALUE, available_memory_bytes()
        if free is not None and need > free:
            over.append(f"about {need / 1e9:.1f} GB needed ({BYTES_PER_LOAD_VALUE} bytes per value), "
                        f"{free / 1e9:.1f} GB available")
    if over:
        raise InputError(f"{where}: shape {dims} exceeds the limits: {'; '.join(over)} (docs/limits.md)")
