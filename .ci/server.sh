#!/usr/bin/env bash
# `rewardkit serve` against a Python client that uses OpenRLHF's request code path (`requests`,
# retries, time-outs). Creates its own venv; about a minute on a warm build.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=${CARGO_TARGET_DIR:-target}
VENV=$TARGET/ci-server-venv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check requests

cargo build --release -p rewardkit-cli
"$VENV/bin/python" crates/rewardkit-server/tests/python/openrlhf_client.py "$TARGET/release/rewardkit"

# The load/fault script in its short mode (about 25 s: saturation, typed 429s over the socket,
# faults under load; see bench/server_load.py).
bench/server_load.sh --short
