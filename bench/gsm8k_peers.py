"""GSM8K answer checking: rewardkit vs verl's GSM8K rule vs Math-Verify, on the same solutions.

Usage (normally through bench/gsm8k_peers.sh, which builds the Rust side and the venv):

    python bench/gsm8k_peers.py DATA.jsonl REWARDKIT.json OUT.json [--verl-passes N] [--mv-passes N]

DATA.jsonl is GSM8K's example_model_solutions.jsonl (1,319 questions x 4 labelled solutions);
REWARDKIT.json is the output of `cargo run --release -p rewardkit-verify --example gsm8k_timing`.

Every peer is timed per call with time.perf_counter_ns() around that one call, single-threaded,
on the main thread (where Math-Verify's SIGALRM timeouts work). Accuracy is agreement with the
file's `is_correct` labels. The gold answer of a question is the number on the last `A: N` line
of its `ground_truth`.
"""

import json
import os
import re
import statistics
import sys
import time

KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")

# ---------------------------------------------------------------------------------------------
# verl's GSM8K rule, written here from its description (verl/utils/reward_score/gsm8k.py):
# strict mode reads `#### N`, flexible mode the last number; `,` and `$` are dropped and the
# string is compared with the ground truth. Like verl, only the last 300 characters of the
# solution are searched (this only makes the peer faster).
# ---------------------------------------------------------------------------------------------

CLIP_CHARS = 300
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
NUMBER = re.compile(r"(\-?[0-9\.\,]+)")


def verl_extract(solution, method):
    tail = solution[-CLIP_CHARS:]
    if method == "strict":
        found = STRICT.findall(tail)
        if not found:
            return None
        return found[-1].replace(",", "").replace("$", "")
    for candidate in reversed(NUMBER.findall(tail)):
        if candidate not in ("", "."):
            return candidate.replace(",", "").replace("$", "")
    return None


def verl_score(solution, ground_truth, method, format_score=0.0, score=1.0):
    answer = verl_extract(solution, method)
    if answer is None:
        return 0.0
    return score if answer == ground_truth else format_score


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

ANSWER_LINE = re.compile(r"^A:\s*(.+?)\s*$", re.MULTILINE)


def gold_of(ground_truth):
    found = ANSWER_LINE.findall(ground_truth)
    if not found:
        raise ValueError(f"no `A: N` line in ground truth: {ground_truth[-80:]!r}")
    return found[-1]


def load(path):
    cases = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            gold = gold_of(row["ground_truth"])
            for key in KEYS:
                cases.append((row[key]["solution"], gold, bool(row[key]["is_correct"])))
    return cases


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def summarise(name, times_ns, verdicts, cases, passes, extra=None):
    correct_total = sum(1 for _, _, label in cases if label)
    correct_hit = sum(1 for v, (_, _, label) in zip(verdicts, cases) if label and v)
    incorrect_hit = sum(1 for v, (_, _, label) in zip(verdicts, cases) if not label and not v)
    ordered = sorted(times_ns)
    result = {
        "name": name,
        "solutions": len(cases),
        "passes": passes,
        "calls": len(times_ns),
        "median_ns": statistics.median(times_ns),
        "mean_ns": statistics.fmean(times_ns),
        "p90_ns": ordered[round((len(ordered) - 1) * 0.9)],
        "p99_ns": ordered[round((len(ordered) - 1) * 0.99)],
        "max_ns": ordered[-1],
        "total_ns_per_pass": sum(times_ns) / passes,
        "agree": correct_hit + incorrect_hit,
        "accuracy": (correct_hit + incorrect_hit) / len(cases),
        "correct_total": correct_total,
        "correct_hit": correct_hit,
        "incorrect_total": len(cases) - correct_total,
        "incorrect_hit": incorrect_hit,
    }
    if extra:
        result.update(extra)
    return result


def timer_overhead_ns():
    """The median time of timing nothing, to read the per-call medians against."""
    clock = time.perf_counter_ns
    times = []
    for _ in range(100_000):
        start = clock()
        times.append(clock() - start)
    return statistics.median(times)


def time_verl(cases, method, passes):
    clock = time.perf_counter_ns
    golds = [gold.replace(",", "") for _, gold, _ in cases]
    verdicts = [verl_score(s, g, method) == 1.0 for (s, _, _), g in zip(cases, golds)]
    for (solution, _, _), gold in zip(cases, golds):  # warm-up
        verl_score(solution, gold, method)
    times = []
    for _ in range(passes):
        for (solution, _, _), gold in zip(cases, golds):
            start = clock()
            verl_score(solution, gold, method)
            times.append(clock() - start)
    return summarise(f"verl gsm8k rule ({method})", times, verdicts, cases, passes)


def time_math_verify(cases, passes):
    import_start = time.perf_counter_ns()
    from math_verify import parse, verify
    import_ns = time.perf_counter_ns() - import_start
    try:
        from importlib.metadata import version

        mv_version = version("math-verify")
    except Exception:  # noqa: BLE001 - version is informational only
        mv_version = "unknown"

    clock = time.perf_counter_ns
    times, verdicts, errors = [], [], []
    for p in range(passes):
        for i, (solution, gold, _) in enumerate(cases):
            start = clock()
            try:
                ok = bool(verify(parse(gold), parse(solution)))
                error = None
            except Exception as e:  # noqa: BLE001 - a peer's failure is a data point
                ok = False
                error = f"{type(e).__name__}: {e}"
            times.append(clock() - start)
            if p == 0:
                verdicts.append(ok)
                if error:
                    errors.append({"index": i, "error": error[:200]})
    return summarise(
        "Math-Verify verify(parse(gold), parse(solution))",
        times,
        verdicts,
        cases,
        passes,
        {"version": mv_version, "import_ms": import_ns / 1e6, "errors": len(errors),
         "error_examples": errors[:10]},
    )


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    if len(args) != 3:
        sys.exit(__doc__)
    data_path, rewardkit_path, out_path = args
    verl_passes = int(opts.get("verl-passes", 20))
    mv_passes = int(opts.get("mv-passes", 1))

    cases = load(data_path)
    with open(rewardkit_path, encoding="utf-8") as f:
        rewardkit = json.load(f)
    if rewardkit["solutions"] != len(cases):
        sys.exit(f"rewardkit scored {rewardkit['solutions']} solutions, Python read {len(cases)}")

    print(f"{len(cases)} solutions ({sum(c[2] for c in cases)} labelled correct)", flush=True)
    print(f"verl rule: {verl_passes} passes ...", flush=True)
    verl_strict = time_verl(cases, "strict", verl_passes)
    verl_flexible = time_verl(cases, "flexible", verl_passes)
    print(f"Math-Verify: {mv_passes} pass(es) ...", flush=True)
    math_verify = time_math_verify(cases, mv_passes)

    rk_number = rewardkit["number_reference"]
    rows = [rk_number, rewardkit, verl_strict, verl_flexible, math_verify]
    print()
    print(f"{'checker':<52} {'median':>10} {'mean':>10} {'p99':>10}  {'accuracy':>8}  "
          f"{'correct':>11}  {'incorrect':>11}")
    for r in rows:
        print(f"{r['name']:<52} {fmt_ns(r['median_ns']):>10} {fmt_ns(r['mean_ns']):>10} "
              f"{fmt_ns(r['p99_ns']):>10}  {100 * r['accuracy']:>7.2f}%  "
              f"{r['correct_hit']:>5}/{r['correct_total']:<5}  "
              f"{r['incorrect_hit']:>5}/{r['incorrect_total']:<5}")

    # Headline ratios on equal inputs: every checker gets the bare gold number. The worked-answer
    # reference (rewardkit reads `A: N` out of the ground truth itself) is shown for information.
    ratios = {}
    print()
    print("speed ratios, one core each (peer time / rewardkit time; > 1 means rewardkit is faster)")
    for base_key, base in (("number_reference", rk_number), ("worked_reference", rewardkit)):
        print(f"  rewardkit with reference = {base['reference']}:")
        ratios[base_key] = {}
        for key, r in (("verl_strict", verl_strict), ("verl_flexible", verl_flexible),
                       ("math_verify", math_verify)):
            ratio = {"median": r["median_ns"] / base["median_ns"],
                     "mean": r["mean_ns"] / base["mean_ns"]}
            ratios[base_key][key] = ratio
            print(f"    vs {r['name']:<50} median {ratio['median']:8.2f}x   "
                  f"mean {ratio['mean']:8.2f}x")
    py_overhead = timer_overhead_ns()
    print(f"\ntimer overhead (timing nothing, median): Rust {rewardkit['timer_overhead_ns']} ns, "
          f"Python {py_overhead:.0f} ns (included in the times above)")
    if math_verify["errors"]:
        print(f"\nMath-Verify raised on {math_verify['errors']} solutions, e.g. "
              f"{math_verify['error_examples'][0]}")
    for r in (rk_number, rewardkit):
        if r.get("disagreements"):
            print(f"\n{r['name']} disagrees with is_correct on {len(r['disagreements'])} "
                  f"solutions, e.g. {r['disagreements'][:3]}")

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "git": os.environ.get("BENCH_GIT", "unknown"),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "data": data_path,
        "rewardkit": rewardkit,
        "verl_strict": verl_strict,
        "verl_flexible": verl_flexible,
        "math_verify": math_verify,
        "ratios": ratios,
        "python_timer_overhead_ns": py_overhead,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {out_path}")


if __name__ == "__main__":
    main(sys.argv[1:])
