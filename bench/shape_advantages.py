#!/usr/bin/env python3
"""Advantages for 1M samples in groups of 16 and GAE over 1M steps: rewardkit-shape vs NumPy.

Both sides get the same inputs (written here as raw f64 files) and the same repeats; the median
time of each is printed with the ratio, and the outputs are compared (max abs difference). The
NumPy side is what trainers write (verl's and TRL's tensor code, in NumPy): reshape into
(groups, 16), mean/std along the group axis; GAE as a loop over time steps vectorised across
episodes. It does no masking and no stable centring, so it does strictly less work than rewardkit.
NumPy runs these on one core. rewardkit-shape splits large inputs over the threads of its rayon
pool, so each round times it twice: on one thread (RAYON_NUM_THREADS=1: the like-for-like
ratio) and on every core (--threads, default all: what a user with those cores gets). The sides
alternate in rounds (--rounds), and the ratio reported is the median of the per-round ratios,
with their range: load on a shared machine drifts, and alternating spreads it over both sides.
The last row times a plain copy of the rewards on both sides (one thread for rewardkit: a
`to_vec`): reading a million values and writing a million is the floor under every estimator,
and what that floor costs here bounds the ratio an estimator that NumPy computes in a few passes
can reach.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import time

import numpy as np


def median_time(repeats, f):
    """Median and fastest of `repeats` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - start)
    return (statistics.median(times), min(times)), out


def grpo(r, k, eps=1e-6):
    g = r.reshape(-1, k)
    mean = g.mean(axis=1, keepdims=True)
    std = g.std(axis=1, ddof=1, keepdims=True)
    return ((g - mean) / (std + eps)).reshape(-1)


def dr_grpo(r, k):
    g = r.reshape(-1, k)
    return (g - g.mean(axis=1, keepdims=True)).reshape(-1)


def rloo(r, k):
    g = r.reshape(-1, k)
    return (g * k / (k - 1) - g.mean(axis=1, keepdims=True) * k / (k - 1)).reshape(-1)


def reinforce_pp(r, eps=1e-8):
    return (r - r.mean()) / (r.std(ddof=1) + eps)


def reinforce_pp_baseline(r, k, eps=1e-8):
    a = (r.reshape(-1, k) - r.reshape(-1, k).mean(axis=1, keepdims=True)).reshape(-1)
    return (a - a.mean()) / (a.std(ddof=1) + eps)


def gae(rewards, values, length, gamma=0.99, lam=0.95):
    r = rewards.reshape(-1, length)
    v = values.reshape(-1, length)
    adv = np.empty_like(r)
    running = np.zeros(r.shape[0])
    next_value = np.zeros(r.shape[0])
    for t in range(length - 1, -1, -1):
        delta = r[:, t] + gamma * next_value - v[:, t]
        running = delta + gamma * lam * running
        adv[:, t] = running
        next_value = v[:, t]
    # The critic's targets (returns = advantages + values) are part of GAE's output in every
    # trainer, and rewardkit computes them too: same work on both sides.
    returns = adv + v
    return adv.reshape(-1), returns.reshape(-1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--timing", required=True, help="the shape_timing example binary (release)")
    p.add_argument("--out", default="bench/out/shape")
    p.add_argument("--samples", type=int, default=1_000_000)
    p.add_argument("--group-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--episode-length", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3, help="alternating rewardkit/NumPy rounds")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="rewardkit's threads for the multi-threaded timing (default: every core)")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(7)
    k = args.group_size
    # Correctness-like rewards (0/1) plus a small continuous term, like a rule + length shaping.
    rewards = (rng.random(args.samples) < 0.4).astype(np.float64) + 0.1 * rng.random(args.samples)
    step_rewards = rng.normal(size=args.steps)
    step_values = rng.normal(size=args.steps)
    rewards.tofile(f"{args.out}/rewards.f64")
    step_rewards.tofile(f"{args.out}/step_rewards.f64")
    step_values.tofile(f"{args.out}/step_values.f64")

    numpy_side = {
        "grpo": lambda: grpo(rewards, k),
        "dr_grpo": lambda: dr_grpo(rewards, k),
        "rloo": lambda: rloo(rewards, k),
        "reinforce_pp": lambda: reinforce_pp(rewards),
        "reinforce_pp_baseline": lambda: reinforce_pp_baseline(rewards, k),
        "gae": lambda: gae(step_rewards, step_values, args.episode_length),
        # The floor under every estimator on both sides: read the rewards, write as many values.
        "copy": lambda: rewards.copy(),
    }
    # Rounds alternate the two sides (rewardkit's repeats, then NumPy's), so a change of load on a
    # shared machine hits both; each round gives a ratio, and the medians over rounds are reported.
    per_round = []
    expected = {}
    sides = [("1 thread", 1)] + ([(f"{args.threads} threads", args.threads)]
                                 if args.threads > 1 else [])
    for _ in range(args.rounds):
        rust = {}
        for label, threads in sides:
            run = subprocess.run(
                [args.timing, args.out, str(args.repeats), str(k), str(args.episode_length)],
                capture_output=True, text=True, check=True,
                env={**os.environ, "RAYON_NUM_THREADS": str(threads)})
            rust[label] = json.loads(run.stdout)
            # Each run writes its outputs; those of every thread count are compared below.
            for name in numpy_side:
                os.replace(f"{args.out}/rust_{name}.f64",
                           f"{args.out}/rust_{name}.{threads}.f64")
        numpy_times = {}
        for name, f in numpy_side.items():
            (seconds, fastest), out = median_time(args.repeats, f)
            numpy_times[name] = seconds
            numpy_times[name + "_min"] = fastest
            expected[name] = out[0] if name == "gae" else out
        per_round.append((rust, numpy_times))
    rust_rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    rows = []
    for name in numpy_side:
        n = args.steps if name == "gae" else args.samples
        for side, threads in sides:
            if name == "copy" and threads > 1:
                continue  # a copy is one thread's work on either side
            got = np.fromfile(f"{args.out}/rust_{name}.{threads}.f64", dtype=np.float64)
            diff = float(np.max(np.abs(got - expected[name])))
            for label, key in ((f"{name}, {side}", name),
                               (f"{name} (reused out), {side}", name + "_into")):
                rk = [r[side][key] for r, _ in per_round]
                npy = [t[name] for _, t in per_round]
                ratios = [b / a for a, b in zip(rk, npy)]
                # Fastest call of each side over every round: other processes only add time,
                # so on a loaded machine the best times are the steadiest estimate of the work.
                rk_best = min(r[side][key + "_min"] for r, _ in per_round)
                npy_best = min(t[name + "_min"] for _, t in per_round)
                rows.append({"op": label, "threads": threads, "n": n,
                             "rewardkit_s": statistics.median(rk),
                             "numpy_s": statistics.median(npy),
                             "ratio": statistics.median(ratios),
                             "ratio_min": min(ratios), "ratio_max": max(ratios),
                             "rewardkit_best_s": rk_best, "numpy_best_s": npy_best,
                             "best_ratio": npy_best / rk_best, "max_abs_diff": diff})
    print(f"numpy {np.__version__}; {args.samples:,} samples in groups of {k}; "
          f"GAE over {args.steps:,} steps in episodes of {args.episode_length}; "
          f"median of {args.repeats} calls per round, {args.rounds} alternating rounds")
    print(f"{'op':<42}{'rewardkit':>11}{'numpy':>11}{'ratio':>8}  {'(min-max)':<13}"
          f"{'best rk':>9}{'best np':>9}{'best ratio':>11}{'max |diff|':>11}")
    for r in rows:
        print(f"{r['op']:<42}{r['rewardkit_s'] * 1e3:>9.1f}ms{r['numpy_s'] * 1e3:>9.1f}ms"
              f"{r['ratio']:>7.1f}x  ({r['ratio_min']:.1f}-{r['ratio_max']:.1f}){'':<4}"
              f"{r['rewardkit_best_s'] * 1e3:>7.1f}ms{r['numpy_best_s'] * 1e3:>7.1f}ms"
              f"{r['best_ratio']:>10.1f}x{r['max_abs_diff']:>11.1e}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end (ratio: median of per-round ratios; "
          f"best: fastest call of each side over all rounds)")
    print(f"rewardkit process peak RSS {rust_rss_mib:.0f} MiB "
          f"(inputs {(args.samples + 2 * args.steps) * 8 / 2**20:.0f} MiB)")
    with open(f"{args.out}/result.json", "w") as fh:
        json.dump({"rows": rows, "rust_peak_rss_mib": rust_rss_mib}, fh, indent=1)


if __name__ == "__main__":
    main()
