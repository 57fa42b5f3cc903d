#!/usr/bin/env bash
# End-to-end throughput of `rewardkit score` on a 1,000,000-row JSONL rollout file:
# read + parse + score (gsm8k + think_format + soft_overlong, bench/throughput.toml) + write,
# with Parquet output and without any output. Prints rows/s; writes bench/out/score_throughput.json.
#
#   bash bench/score_throughput.sh [ROWS]
#
# Environment: THREADS (default 2) scoring threads; RUNS (default: 3 if one run takes under a
# minute, else 1) runs per configuration, the median is reported; TRAIN (default
# ../shared/data/gsm8k/train.jsonl) the questions the rollouts are made from; PYTHON (default
# python3) runs the generator; CARGO_TARGET_DIR is honoured.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rows="${1:-1000000}"
threads="${THREADS:-2}"
train="${TRAIN:-$root/../shared/data/gsm8k/train.jsonl}"
out="$root/bench/out"
input="$out/rollouts_${rows}.jsonl"
mkdir -p "$out"

if [[ ! -s "$input" ]]; then
    if [[ ! -f "$train" ]]; then
        echo "error: $train not found (set TRAIN to GSM8K's train.jsonl)" >&2
        exit 1
    fi
    echo "== generating $input ($rows rows)" >&2
    "${PYTHON:-python3}" "$root/bench/gen_rollouts.py" "$train" "$input.tmp" "$rows"
    mv "$input.tmp" "$input"
fi
echo "== input: $(du -h "$input" | cut -f1), $(wc -l < "$input") rows" >&2

export BENCH_GIT="$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
echo "== building rewardkit (release)" >&2
cargo build --quiet --release -p rewardkit-cli
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/release/rewardkit"

# One run: prints "wall_seconds cli_seconds samples" on stdout, keeps the JSON summary.
run_once() {
    local label="$1"
    shift
    local start end
    start=$(date +%s.%N)
    "$bin" score --spec "$root/bench/throughput.toml" --input "$input" --threads "$threads" \
        --json --no-progress "$@" > "$out/score_${label}.json"
    end=$(date +%s.%N)
    "${PYTHON:-python3}" - "$out/score_${label}.json" "$start" "$end" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
print(float(sys.argv[3]) - float(sys.argv[2]), report["seconds"], report["samples"])
EOF
}

declare -A results
for config in parquet none; do
    if [[ "$config" == parquet ]]; then
        args=(--output "$out/scores.parquet")
    else
        args=()
    fi
    echo "== rewardkit score --threads $threads, output: $config" >&2
    first="$(run_once "$config" "${args[@]}")"
    echo "   run 1: $first (wall s, reported s, samples)" >&2
    runs_wanted="${RUNS:-}"
    if [[ -z "$runs_wanted" ]]; then
        if awk -v w="${first%% *}" 'BEGIN { exit !(w < 60) }'; then runs_wanted=3; else runs_wanted=1; fi
    fi
    all="$first"
    for ((i = 2; i <= runs_wanted; i++)); do
        next="$(run_once "$config" "${args[@]}")"
        echo "   run $i: $next" >&2
        all+=$'\n'"$next"
    done
    results[$config]="$all"
done

"${PYTHON:-python3}" - "$out/score_throughput.json" "$rows" "$threads" "$input" \
    "${results[parquet]}" "${results[none]}" <<'EOF'
import json, os, statistics, sys, time
path, rows, threads, input_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
summary = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "rows": rows, "threads": threads,
           "input": input_path, "git": os.environ.get("BENCH_GIT", "unknown"), "input_bytes": os.path.getsize(input_path), "cores": os.cpu_count()}
print(f"\n{rows:,} rows, {summary['input_bytes'] / 1e6:.0f} MB of JSONL, --threads {threads}, "
      f"{os.cpu_count()} cores")
print(f"{'output':<10} {'runs':>4} {'median wall s':>14} {'rows/s (wall)':>14} "
      f"{'rows/s (reported)':>18}")
for name, text in (("parquet", sys.argv[5]), ("none", sys.argv[6])):
    runs = [tuple(map(float, line.split())) for line in text.strip().splitlines()]
    wall = statistics.median(r[0] for r in runs)
    reported = statistics.median(r[1] for r in runs)
    samples = runs[0][2]
    summary[name] = {"runs": len(runs), "wall_s": [r[0] for r in runs],
                     "reported_s": [r[1] for r in runs], "samples": samples,
                     "median_wall_s": wall, "rows_per_s_wall": samples / wall,
                     "rows_per_s_reported": samples / reported}
    print(f"{name:<10} {len(runs):>4} {wall:>14.2f} {samples / wall:>14,.0f} "
          f"{samples / reported:>18,.0f}")
json.dump(summary, open(path, "w"), indent=2)
print(f"\nwrote {path}")
EOF
