"""Every command's ``--help`` examples: one list, shown at the end of each command's help and run as
written by ``tests/test_cli_examples.py`` (in order, in one empty directory, on shipped data only).

Later examples may read what earlier ones wrote (``plan.json`` from ``replicas``). ``slow`` marks an
example that starts worker processes or runs a search of several seconds; the fast lane runs the
others.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Example", "EXAMPLES", "epilog"]


@dataclass(frozen=True)
class Example:
    command: str
    line: str  # what the user types, starting with "moeplan "
    slow: bool = False


#: in run order: an example reads only files that earlier ones wrote
EXAMPLES: tuple[Example, ...] = (
    Example("models", "moeplan models"),
    Example("gpus", "moeplan gpus"),
    Example("loads", "moeplan loads builtin:olmoe-arxiv"),
    Example("loads", "moeplan loads --list"),
    Example("replicas", "moeplan replicas builtin:olmoe-arxiv --model olmoe-1b-7b --gpus 8 -o plan.json"),
    Example("replicas", "moeplan replicas builtin:olmoe-c4 --model olmoe-1b-7b --gpus 8 -o new.json"),
    Example("verify", "moeplan verify plan.json --loads builtin:olmoe-arxiv"),
    Example("report", "moeplan report plan.json --loads builtin:olmoe-arxiv -o report.html", slow=True),
    Example("export", "moeplan export plan.json --target sglang -o sglang.json --allow-unsupported"),
    Example("migrate", "moeplan migrate plan.json new.json --spare-slots 1 -o schedule.json"),
    Example("synth", "moeplan synth -o trace.npz --steps 160 --layers 4 --num-experts 64 --first-layer 0"),
    Example("replan", "moeplan replan trace.npz --model olmoe-1b-7b --gpus 8 --every 20,50 --window 60 "
                      "--gpu h100 --step-rate 50", slow=True),
    Example("estimate", "moeplan estimate --model deepseek-v3 --gpu h200 --dp 8 --ep 8 --batch 64 --isl 4000 --osl 500"),
    Example("schema", "moeplan schema --markdown"),
    Example("cluster", "moeplan cluster helix:single24-llama2-70b -o cluster.json", slow=True),
    Example("plan", "moeplan plan builtin:olmoe-arxiv-ep8 -o olmoe-out"),
    Example("plan", "moeplan plan -o moeplan-out", slow=True),
    Example("deploy", "moeplan deploy --model qwen3-30b-a3b --gpu h100 --gpus 8 --ttft-ms 2000 --tpot-ms 50 "
                      "--isl 4000 --osl 1000 -o deploy.json", slow=True),
    Example("fleet", "moeplan fleet --model qwen3-30b-a3b --ttft-ms 2000 --tpot-ms 100 --trace builtin:azure-2023-conv "
                     "--rate 20 --gpu a100-80g --gpu l4 --gpu t4 -o fleet.json", slow=True),
    Example("collect", "moeplan collect --model qwen3-moe-tiny --tokens 2048 -o tiny-loads.npz", slow=True),
    Example("replicas", "moeplan replicas tiny-loads.npz --model qwen3-moe-tiny --gpus 4 --redundant 8 -o tiny-plan.json",
            slow=True),
    Example("apply", "moeplan apply tiny-plan.json --workers 4 --batch-tokens 2048 --timing-repeats 1 -o running.json",
            slow=True),
    Example("profile", "moeplan profile --quick -o profile.csv", slow=True),
)


def epilog(command: str) -> str | None:
    """The examples of ``command`` as its help's closing paragraph (click keeps ``\\b`` blocks unwrapped)."""
    lines = [e.line for e in EXAMPLES if e.command == command]
    if not lines:
        return None
    return "\b\nExamples (shipped data; docs/cli.md):\n" + "\n".join(f"  {l}" for l in lines)
