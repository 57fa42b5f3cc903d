#!/usr/bin/env bash
# Reward-model quality on real data with the `hashed` backbone (issue 5):
#  * HH-RLHF harmless-base: train on the first 1,500 pairs, validate on the last 300;
#  * GSM8K: correct vs incorrect model solution of the same question (bench/model_pairs.py),
#    first 500 questions train, the other 231 validate.
# Prints validation accuracy (of the saved weights: the lowest validation loss among the
# per-epoch validations, so selection used the validation set at `epochs` points) and the last
# epoch's accuracy, and training pairs/s. One thread (RAYON_NUM_THREADS=1) unless THREADS is set.
# Usage: bench/model_quality.sh [results.md]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
OUT=${1:-}
THREADS=${THREADS:-1}
[ -d "$DATA" ] || { echo "skip: $DATA is absent"; exit 0; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p rewardkit-cli
BIN=$CARGO_TARGET_DIR/release/rewardkit
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

run() { # name, args...
  local name=$1; shift
  RAYON_NUM_THREADS=$THREADS "$BIN" train --no-progress --json --out "$WORK/$name" "$@" > "$WORK/$name.json" 2> "$WORK/$name.log"
  python3 - "$name" "$WORK/$name.json" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
h = r["report"]["history"]
best = r["final_metrics"]
print(f"| {name} | {r['train_examples']} | {r['validation_examples']} | {100*best['accuracy']:.2f} | "
      f"{100*h[-1]['accuracy']:.2f} | {best['loss']:.4f} | {r['report']['steps']} | {r['report']['examples_per_sec']:.0f} |")
PY
}

python3 bench/model_pairs.py --solutions "$DATA/gsm8k/example_model_solutions.jsonl" --train 500 \
  --out-train "$WORK/gsm8k-train.jsonl" --out-val "$WORK/gsm8k-val.jsonl" >&2

{
  echo "| run | train pairs | validation pairs | accuracy % (saved) | accuracy % (last epoch) | validation loss | steps | train pairs/s |"
  echo "|---|---|---|---|---|---|---|---|"
  COMMON=(--backbone hashed --epochs 4 --batch-size 16 --lr 3e-3 --seed 42)
  run hh-hashed-mlp --data "$DATA/hh-rlhf/harmless-base-test.dev.jsonl.gz" --val-last 300 "${COMMON[@]}"
  run hh-hashed-linear --data "$DATA/hh-rlhf/harmless-base-test.dev.jsonl.gz" --val-last 300 --head linear "${COMMON[@]}"
  run gsm8k-hashed-mlp --data "$WORK/gsm8k-train.jsonl" --val-data "$WORK/gsm8k-val.jsonl" "${COMMON[@]}"
} | tee "$WORK/table.md"
if [ -n "$OUT" ]; then
  { echo "Machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, RAYON_NUM_THREADS=$THREADS."; echo; cat "$WORK/table.md"; } > "$OUT"
fi
