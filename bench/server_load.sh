#!/usr/bin/env bash
# Load, faults and bad input against `rewardkit serve` (issue 4); see bench/server_load.py.
#
#   bash bench/server_load.sh [--short]      # --short: the CI mode, about 30 s of load
#
# Full mode (about 2 minutes of load on 2 cores) also runs the HTTP-overhead harness
# (crates/rewardkit-server/examples/http_overhead.rs: in-process vs HTTP samples/s on the same
# batches of 256, interleaved repeats, medians and their ratio, CPU per sample, and the transport
# floor: a bare hyper server answering the same bytes) and the FastAPI peer.
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
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check aiohttp
fi
# The full mode also runs the FastAPI peer (bench/fastapi_rm.py).
if [[ "${1:-}" != "--short" ]] && ! "$venv/bin/python" -c "import fastapi, uvicorn" 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check fastapi uvicorn
fi
cargo build --quiet --release -p rewardkit-cli
if [[ "${1:-}" != "--short" ]]; then
    cargo build --quiet --release -p rewardkit-server --example http_overhead
fi
mkdir -p bench/out
data="bench/out/rollouts_20000.jsonl"
train="$root/../shared/data/gsm8k/train.jsonl"
if [[ ! -f "$data" && -f "$train" ]]; then
    python3 bench/gen_rollouts.py "$train" "$data" 20000
fi
[[ -f "$data" ]] || data="examples/rollouts.jsonl"
suffix=""
[[ "${1:-}" == "--short" ]] && suffix="_short"
if [[ "${1:-}" != "--short" ]]; then
    echo "== HTTP overhead (batch 256, 4 client threads; in-process and HTTP repeats interleaved)"
    "$target/release/examples/http_overhead" "$target/release/rewardkit" bench/throughput.toml \
        "$data" --batch 256 --clients 4 --repeats 7 | tee bench/out/server_overhead.txt
    echo "== HTTP overhead with a learned reward model term (bench/server_model.toml, 2,000 samples)"
    "$target/release/rewardkit" train --data examples/preferences.jsonl --val-last 8 \
        --backbone hashed --out bench/out/rm-quickstart --no-progress > /dev/null
    head -n 2000 "$data" > bench/out/rollouts_2000.jsonl
    "$target/release/examples/http_overhead" "$target/release/rewardkit" bench/server_model.toml \
        bench/out/rollouts_2000.jsonl --batch 256 --clients 4 --repeats 5 \
        | tee bench/out/server_overhead_model.txt
fi
"$venv/bin/python" bench/server_load.py "$target/release/rewardkit" bench/throughput.toml "$data" \
    ${1:-} --out "bench/out/server_load$suffix.json"
