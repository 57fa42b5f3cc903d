#!/usr/bin/env bash
# rewardkit-shape against its NumPy reference (tests/reference/shape_reference.py): thousands of
# random cases (NaN, ±inf, 1e9/1e15 offsets, groups of 1 and 2) must agree to 1e-12 relative.
# Creates its own venv with NumPy; about a minute on two cores, most of it pip and the build.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${SHAPE_VENV:-${TMPDIR:-/tmp}/rewardkit-shape-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -c "import numpy" 2>/dev/null || "$venv/bin/pip" install --quiet numpy

cargo build --quiet -p rewardkit-shape --example shape_cases
driver="${CARGO_TARGET_DIR:-target}/debug/examples/shape_cases"
"$venv/bin/python" tests/reference/shape_reference.py --driver "$driver" --cases 300
