#!/usr/bin/env bash
# Advantages (GRPO, Dr.GRPO, RLOO, REINFORCE++ with and without baseline) for 1M samples in groups of 16 and GAE over 1M
# steps: rewardkit-shape (release; on one thread, and on every core) vs NumPy (one core) on the
# same inputs, same run; prints the ratios and the largest difference between the outputs.
# Writes bench/out/shape/result.json.
#
#   bash bench/shape_advantages.sh [extra args for bench/shape_advantages.py]
#
# Environment: PYTHON (default python3) creates the shared venv bench/.venv if needed (NumPy is
# added to it); CARGO_TARGET_DIR is honoured.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/bench/.venv"
[[ -x "$venv/bin/python" ]] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -c "import numpy" 2>/dev/null || "$venv/bin/pip" install --quiet numpy
cargo build --quiet --release -p rewardkit-shape --example shape_timing
timing="${CARGO_TARGET_DIR:-$root/target}/release/examples/shape_timing"
"$venv/bin/python" bench/shape_advantages.py --timing "$timing" "$@"
