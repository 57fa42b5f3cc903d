#!/usr/bin/env bash
# `rewardkit eval` on the real data of ../shared/data: GSM8K's labelled model solutions (as
# 731 pairs and as best-of-4) with the `gsm8k` verifier against a "shorter is better" baseline,
# and the last 300 HH-RLHF harmless-base pairs with length and repetition rewards (and a
# learned reward model when MODEL_DIR names one). Writes the reports to bench/results/eval-*.txt
# (and .json) and the HTML reports to $OUT (default: a temporary directory).
#
# Usage: bench/eval_real_data.sh            (REWARDKIT_BIN overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/data
[ -d "$data" ] || { echo "skipping: $data is absent"; exit 0; }
bin=${REWARDKIT_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release -q -p rewardkit-cli
    bin=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/rewardkit
fi
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
results=bench/results
# Scores are cached per (reward, sample) under the default cache directory; --no-cache here so
# the run measures nothing stale.
gsm8k=(--bench "$data/gsm8k/example_model_solutions.jsonl" --layout labelled
    --prompt-field question
    --samples-field 6b_finetuning,6b_verification,175b_finetuning,175b_verification
    --sample-text-field solution --sample-label-field is_correct --reference-field ground_truth)
hh=(--bench "$data/hh-rlhf/harmless-base-test.dev.jsonl.gz" --last 300 --prompt-field none
    --split-marker $'\n\nAssistant:' --skip-bad-rows)

run() {
    local name=$1
    shift
    "$bin" eval "$@" --no-cache --no-progress --html "$out/$name.html" | tee "$results/eval-$name.txt"
    "$bin" eval "$@" --no-cache --no-progress --json >"$results/eval-$name.json"
    echo
}

run gsm8k-pairs --spec examples/eval/gsm8k.toml --compare examples/eval/shorter.toml \
    "${gsm8k[@]}" --protocol pairwise
run gsm8k-best-of-4 --spec examples/eval/gsm8k.toml --compare examples/eval/shorter.toml \
    "${gsm8k[@]}"
run hh-length --spec examples/eval/shorter.toml --compare examples/eval/repetition.toml "${hh[@]}"
if [ -n "${MODEL_DIR:-}" ]; then
    run hh-model --model "$MODEL_DIR" --compare examples/eval/shorter.toml "${hh[@]}"
fi
echo "HTML reports in $out"
