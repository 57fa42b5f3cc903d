#!/usr/bin/env bash
# GSM8K answer checking, side by side on the same 5,276 real model solutions:
# rewardkit's `gsm8k` verifier, verl's GSM8K rule (strict and flexible) and Math-Verify.
# Prints per-call median/mean times, agreement with the `is_correct` labels, and the speed
# ratios (one core each); writes bench/out/gsm8k_peers.json.
#
#   bash bench/gsm8k_peers.sh [DATA.jsonl]
#
# Environment: PYTHON (default python3) builds the venv at bench/.venv on first use;
# RUST_PASSES (default 5), VERL_PASSES (default 20), MV_PASSES (default 1) set the passes;
# CARGO_TARGET_DIR is honoured.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
data="${1:-$root/../shared/data/gsm8k/example_model_solutions.jsonl}"
if [[ ! -f "$data" ]]; then
    echo "error: $data not found (pass the path of example_model_solutions.jsonl)" >&2
    exit 1
fi
venv="$root/bench/.venv"
out="$root/bench/out"
mkdir -p "$out"

# Math-Verify pinned, with the ANTLR runtime its LaTeX parser was generated for (4.13.2).
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import math_verify" 2>/dev/null; then
    echo "== creating $venv (math-verify)" >&2
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "math-verify[antlr4_13_2]==0.9.0"
fi

export BENCH_GIT="$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
echo "== building rewardkit (release)" >&2
cargo build --quiet --release -p rewardkit-verify --example gsm8k_timing
target="${CARGO_TARGET_DIR:-$root/target}"

echo "== rewardkit gsm8k (${RUST_PASSES:-5} passes)" >&2
"$target/release/examples/gsm8k_timing" "$data" "${RUST_PASSES:-5}" > "$out/gsm8k_rewardkit.json"

"$venv/bin/python" "$root/bench/gsm8k_peers.py" "$data" "$out/gsm8k_rewardkit.json" \
    "$out/gsm8k_peers.json" --verl-passes="${VERL_PASSES:-20}" --mv-passes="${MV_PASSES:-1}"
