#!/usr/bin/env bash
# Headless-browser check of `rewardkit eval`'s HTML report: Debian's chromium renders it, every
# plot is present (an inline script counts the <svg> plots into <body data-plots>, which only a
# browser that ran the page can report), and the page logs nothing to the console (no errors).
#
# Installs chromium with apt-get when it is missing and this is a Debian-like root environment,
# bounded in time. If a browser cannot be had, it says so loudly and falls back to the best check
# without one: every SVG parses as XML and every plot is present.
#
# Usage: .ci/eval.sh [SCREENSHOT.png]   (a screenshot of the GSM8K report when ../shared exists)
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
screenshot=${1:-$out/report.png}

echo "== rewardkit eval: reports"
# REWARDKIT_BIN overrides the binary (e.g. a debug build); by default the release build.
bin=${REWARDKIT_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release -q -p rewardkit-cli
    bin=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/rewardkit
fi
export REWARDKIT_CACHE_DIR="$out/cache"

# 1. Pairwise (RewardBench v1 sections), two rewards compared: 4 plots.
"$bin" eval --spec examples/eval/gsm8k.toml --compare examples/eval/shorter.toml \
    --bench examples/eval/tiny-pairs.jsonl --html "$out/pairs.html" --no-progress >/dev/null
# 2. Labelled samples with a continuous reward: 6 plots (adds best-of-N and balance).
"$bin" eval --spec examples/eval/shorter.toml --bench examples/eval/tiny-labelled.jsonl \
    --layout labelled --html "$out/labelled.html" --no-progress >/dev/null
reports=("pairs.html:4" "labelled.html:6")
# 3. Real data when ../shared is there: GSM8K's labelled solutions, best-of-4 (6 plots).
gsm8k=../shared/data/gsm8k/example_model_solutions.jsonl
if [ -f "$gsm8k" ]; then
    "$bin" eval --spec examples/eval/gsm8k.toml --compare examples/eval/shorter.toml \
        --bench "$gsm8k" --layout labelled --prompt-field question \
        --samples-field 6b_finetuning,6b_verification,175b_finetuning,175b_verification \
        --sample-text-field solution --sample-label-field is_correct \
        --reference-field ground_truth --html "$out/gsm8k.html" --no-progress >/dev/null
    reports+=("gsm8k.html:6")
else
    echo "(../shared/data absent: no GSM8K report)"
fi

for entry in "${reports[@]}"; do
    file=${entry%%:*}
    if grep -Eq '(src|href)="(https?:)?//' "$out/$file"; then
        echo "FAIL: $file refers to the network"
        exit 1
    fi
done

find_browser() {
    for candidate in chromium chromium-browser google-chrome; do
        if command -v "$candidate" >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

browser=$(find_browser || true)
if [ -z "$browser" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "== installing chromium (apt-get, at most 6 minutes)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 120 apt-get update -qq >/dev/null 2>&1 || true
    timeout 240 apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || true
    browser=$(find_browser || true)
fi

if [ -z "$browser" ]; then
    echo "!! SKIPPED the browser check: no chromium and it could not be installed here."
    echo "== fallback: every SVG parses as XML, every plot is present"
    for entry in "${reports[@]}"; do
        file=${entry%%:*}
        want=${entry##*:}
        python3 - "$out/$file" "$want" <<'PY'
import re, sys, xml.etree.ElementTree as ET
page = open(sys.argv[1], encoding="utf-8").read()
svgs = re.findall(r"<svg\b.*?</svg>", page, flags=re.S)
for svg in svgs:
    ET.fromstring(svg)
assert len(svgs) == int(sys.argv[2]), (sys.argv[1], len(svgs))
print(f"ok: {sys.argv[1]}: {len(svgs)} well-formed SVG plots")
PY
    done
    exit 0
fi

echo "== headless $browser"
run_browser() {
    timeout 90 "$browser" --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-extensions --host-resolver-rules="MAP * ~NOTFOUND" \
        --enable-logging=stderr --v=0 "$@"
}

# Self-test of the checker: a page with a console error and an exception must be caught.
cat >"$out/probe.html" <<'HTML'
<!DOCTYPE html><html><body data-plots="0"><script>console.error("probe");
document.body.dataset.plots = "1"; not_defined();</script></body></html>
HTML
run_browser --dump-dom "file://$out/probe.html" >"$out/probe.dom" 2>"$out/probe.log" || true
if ! grep -q 'data-plots="1"' "$out/probe.dom" || [ "$(grep -c ':CONSOLE' "$out/probe.log")" -lt 2 ]; then
    echo "FAIL: the checker does not see scripts run or console messages in this browser"
    exit 1
fi

for entry in "${reports[@]}"; do
    file=${entry%%:*}
    want=${entry##*:}
    run_browser --dump-dom "file://$out/$file" >"$out/$file.dom" 2>"$out/$file.log" || true
    plots=$(grep -o 'data-plots="[0-9]*"' "$out/$file.dom" | head -n 1 | grep -o '[0-9]*' || true)
    if [ "$plots" != "$want" ]; then
        echo "FAIL: $file: the browser counted '${plots}' plots, expected $want"
        exit 1
    fi
    if grep -E ':CONSOLE|Uncaught|net::ERR' "$out/$file.log"; then
        echo "FAIL: $file: console output or a failed load (above)"
        exit 1
    fi
    echo "ok: $file rendered, $plots plots, no console messages"
done

shot=gsm8k.html
[ -f "$out/$shot" ] || shot=labelled.html
run_browser --screenshot="$screenshot" --window-size=1100,2600 --hide-scrollbars \
    "file://$out/$shot" >/dev/null 2>&1 || true
if [ ! -s "$screenshot" ]; then
    echo "FAIL: no screenshot"
    exit 1
fi
echo "ok: screenshot of $shot ($(wc -c <"$screenshot") bytes) at $screenshot"
