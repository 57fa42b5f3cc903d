#!/usr/bin/env bash
# Load, faults and bad input against `rewardkit serve` (issue 4); see bench/server_load.py.
#
#   bash bench/server_load.sh [--short]      # --short: the CI mode, well under 2 minutes
#
# Rollouts: bench/out/rollouts_20000.jsonl when present (bench/gen_rollouts.py on GSM8K train),
# else the bundled examples. Writes bench/out/server_load[_short].json. CARGO_TARGET_DIR is
# honoured; the venv (aiohttp) lives in the target directory (server-load-venv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/server-load-venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import aiohttp" 2>/dev/null; then
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check aiohttp
fi
# The full mode also runs the FastAPI peer (bench/fastapi_rm.py).
if [[ "${1:-}" != "--short" ]] && ! "$venv/bin/python" -c "import fastapi, uvicorn" 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check fastapi uvicorn
fi
cargo build --quiet --release -p rewardkit-cli
mkdir -p bench/out
data="bench/out/rollouts_20000.jsonl"
train="$root/../shared/data/gsm8k/train.jsonl"
if [[ ! -f "$data" && -f "$train" ]]; then
    python3 bench/gen_rollouts.py "$train" "$data" 20000
fi
[[ -f "$data" ]] || data="examples/rollouts.jsonl"
suffix=""
[[ "${1:-}" == "--short" ]] && suffix="_short"
"$venv/bin/python" bench/server_load.py "$target/release/rewardkit" bench/throughput.toml "$data" \
    ${1:-} --out "bench/out/server_load$suffix.json"
