#!/usr/bin/env bash
# The closed loop on 4 CPU workers: collect -> replicas -> apply -> measure.
#
#   bash examples/closed_loop.sh [OUT_DIR] [TOKENS]        (moeplan installed with the runtime extra)
#
# 1. collect: run the tiny Qwen3-MoE (routers fitted to OLMoE's measured skew) on a seeded token
#    stream (seed 0) and write its per-layer expert loads;
# 2. replicas: plan 8 redundant slots per layer over 4 GPUs from those loads;
# 3. apply: start 4 gloo workers on the engine's default placement (no replicas), move them to the
#    plan step by step (weights sent between ranks, outputs and rows verified after every step), and
#    measure the busiest rank before and after on a different token stream (seed 1); then time both
#    placements on fresh workers, one warm-up forward each and 5 interleaved rounds (medians, min-max).
# Every file lands in OUT_DIR (default closed-loop/); apply's result is OUT_DIR/apply.json.
# torch runs one thread per process (docs/collect.md: OpenMP threads spin-wait against each other and
# against the 4 workers on a small or busy host); set OMP_NUM_THREADS yourself to override.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
out="${1:-closed-loop}"
tokens="${2:-8192}"
mkdir -p "$out"
moeplan collect --model qwen3-moe-tiny --tokens "$tokens" --seed 0 -o "$out/loads.npz"
moeplan replicas "$out/loads.npz" --model qwen3-moe-tiny --gpus 4 --redundant 8 -o "$out/plan.json"
moeplan apply "$out/plan.json" --workers 4 --batch-tokens "$tokens" --seed 1 --state "$out/state.json" \
    -o "$out/running.json" --json > "$out/apply.json"
python3 - "$out/apply.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"closed loop: {d['steps']} migration steps, {d['transfers']} expert copies sent ({d['bytes_sent'] / 1e6:.1f} MB, "
      f"planned {d['bytes_planned'] / 1e6:.1f} MB); max_abs_diff {d['max_abs_diff']:.2g}; counts_match {d['counts_match']}")
print(f"busiest rank per layer (rows): {d['busiest_rank_tokens_before']} -> {d['busiest_rank_tokens_after']}")
t = d["timing"]
print(f"forward, warm and interleaved, median (min-max) of {t['repeats']}: {t['before_ms_median']:.0f} "
      f"({min(t['before_ms']):.0f}-{max(t['before_ms']):.0f}) ms before -> {t['after_ms_median']:.0f} "
      f"({min(t['after_ms']):.0f}-{max(t['after_ms']):.0f}) ms after; paired change {100 * t['change_median']:+.0f} % "
      f"({100 * t['change_min']:+.0f} to {100 * t['change_max']:+.0f} %)")
sys.exit(0 if d["ok"] and d["counts_match"] and d["bytes_match"] and d["max_abs_diff"] <= 1e-5 else 1)
PY
