#!/usr/bin/env bash
# Differential test and side-by-side timing of rewardkit's `math` verifier against Math-Verify
# on (a) the 5,276 GSM8K model solutions and (b) the math-gold answers against generated
# equivalent rewrites and wrong perturbations. Writes bench/out/math_diff.json (every
# disagreement, agreement per set, per-call timing and the ratio, one core each).
#
#   bash bench/math_diff.sh [DATA_DIR]      (default ../shared/data)
#
# Environment: PYTHON builds the venv at bench/.venv on first use (shared with
# gsm8k_peers.sh); LIMIT_GOLD=N uses only the first N gold answers; CARGO_TARGET_DIR is honoured.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
data="${1:-$root/../shared/data}"
if [[ ! -d "$data/math-gold" || ! -f "$data/gsm8k/example_model_solutions.jsonl" ]]; then
    echo "error: $data must hold math-gold/ and gsm8k/example_model_solutions.jsonl" >&2
    exit 1
fi
venv="$root/bench/.venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import math_verify" 2>/dev/null; then
    echo "== creating $venv (math-verify)" >&2
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "math-verify[antlr4_13_2]==0.9.0"
fi
export BENCH_GIT="$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
echo "== building rewardkit (release)" >&2
cargo build --quiet --release -p rewardkit-math --example math_pairs
target="${CARGO_TARGET_DIR:-$root/target}"
"$venv/bin/python" "$root/bench/math_diff.py" "$data" "$target/release/examples/math_pairs" \
    "$root/bench/out" ${LIMIT_GOLD:+--limit-gold=$LIMIT_GOLD}
