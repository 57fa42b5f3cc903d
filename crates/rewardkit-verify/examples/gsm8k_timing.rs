//! Times the `gsm8k` verifier per call on every solution of GSM8K's
//! `example_model_solutions.jsonl` and prints one JSON object (for `bench/gsm8k_peers.sh`, which
//! runs the Python peers on the same file and prints the ratios).
//!
//! ```sh
//! cargo run --release -p rewardkit-verify --example gsm8k_timing -- \
//!     ../shared/data/gsm8k/example_model_solutions.jsonl [PASSES]
//! ```
//!
//! Each call is what a trainer pays per sample: a fresh [`Meter`] from the default [`Budget`]
//! (which starts the deadline clock) and [`Reward::score`] on a [`Sample`] whose reference is the
//! question's `ground_truth` (a worked answer ending in `A: N`, read by the verifier itself). The
//! samples are built before timing. A second measurement gives the verifier the bare gold
//! number instead (what verl's rule receives), so the comparison with verl is on equal inputs.
//! Every call is timed on its own with [`Instant`], over
//! `PASSES` passes (default 5) through the file; the median and mean are over all timed calls.
//! Agreement with the file's `is_correct` labels is counted on the first pass.

use std::hint::black_box;
use std::time::Instant;

use rewardkit_core::{Budget, Meter, Outcome, Reward, Sample};
use rewardkit_verify::numeric::{Gsm8k, Gsm8kOptions};
use serde_json::Value;

const SOLUTION_KEYS: [&str; 4] = [
    "6b_finetuning",
    "6b_verification",
    "175b_finetuning",
    "175b_verification",
];

/// One labelled solution, ready to score.
struct Case {
    sample: Sample,
    label: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "../shared/data/gsm8k/example_model_solutions.jsonl".to_string());
    let passes: usize = match args.next() {
        Some(p) => p.parse().map_err(|e| format!("PASSES: {e}"))?,
        None => 5,
    };
    if passes == 0 {
        return Err("PASSES must be at least 1".into());
    }

    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let mut worked = Vec::new();
    let mut bare = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Value =
            serde_json::from_str(line).map_err(|e| format!("{path}:{}: {e}", n + 1))?;
        let reference = row["ground_truth"]
            .as_str()
            .ok_or_else(|| format!("{path}:{}: missing ground_truth", n + 1))?;
        let gold = reference
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("A:"))
            .map(str::trim)
            .ok_or_else(|| format!("{path}:{}: no `A: N` line in ground_truth", n + 1))?;
        for key in SOLUTION_KEYS {
            let solution = row[key]["solution"]
                .as_str()
                .ok_or_else(|| format!("{path}:{}: missing {key}.solution", n + 1))?;
            let label = row[key]["is_correct"]
                .as_bool()
                .ok_or_else(|| format!("{path}:{}: missing {key}.is_correct", n + 1))?;
            worked.push(Case {
                sample: Sample::new("", solution).with_reference(reference),
                label,
            });
            bare.push(Case {
                sample: Sample::new("", solution).with_reference(gold),
                label,
            });
        }
    }

    let verifier = Gsm8k::new(Gsm8kOptions::default())?;
    let mut report = measure(&verifier, &worked, passes);
    report["name"] = "rewardkit gsm8k".into();
    report["reference"] = "worked answer (ground_truth, ending in `A: N`)".into();
    let mut number = measure(&verifier, &bare, passes);
    number["name"] = "rewardkit gsm8k (reference: bare number)".into();
    number["reference"] = "the number of the last `A: N` line".into();
    report["number_reference"] = number;
    report["timer_overhead_ns"] = timer_overhead_ns().into();
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The median time of timing nothing (two clock reads), to read the per-call medians against.
fn timer_overhead_ns() -> u64 {
    let mut times: Vec<u64> = (0..100_000)
        .map(|_| {
            let start = Instant::now();
            black_box(());
            start.elapsed().as_nanos() as u64
        })
        .collect();
    times.sort_unstable();
    times[times.len() / 2]
}

/// Checks agreement with the labels, then times every call over `passes` passes.
fn measure(verifier: &Gsm8k, cases: &[Case], passes: usize) -> Value {
    let budget = Budget::default();
    let score = |sample: &Sample| -> Outcome {
        let mut meter: Meter = budget.meter();
        verifier.score(sample, &mut meter).outcome
    };

    // Agreement with the labels (untimed, so that counting costs nothing in the timings).
    let (mut correct_total, mut correct_hit, mut incorrect_hit, mut non_scores) =
        (0usize, 0usize, 0usize, 0usize);
    let mut disagreements = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let outcome = score(&case.sample);
        let says_correct = match outcome.value() {
            Some(v) => v == 1.0,
            None => {
                non_scores += 1;
                false
            }
        };
        if case.label {
            correct_total += 1;
        }
        if says_correct == case.label {
            if case.label {
                correct_hit += 1;
            } else {
                incorrect_hit += 1;
            }
        } else {
            disagreements.push(serde_json::json!({
                "question": i / 4,
                "key": SOLUTION_KEYS[i % 4],
                "label": case.label,
                "outcome": outcome.to_string(),
            }));
        }
    }

    // Warm-up pass, then the timed passes.
    for case in cases {
        black_box(score(black_box(&case.sample)));
    }
    let mut times_ns: Vec<u64> = Vec::with_capacity(cases.len() * passes);
    let wall = Instant::now();
    for _ in 0..passes {
        for case in cases {
            let start = Instant::now();
            let outcome = score(black_box(&case.sample));
            let elapsed = start.elapsed();
            black_box(outcome);
            times_ns.push(elapsed.as_nanos() as u64);
        }
    }
    let wall_s = wall.elapsed().as_secs_f64();
    times_ns.sort_unstable();
    let calls = times_ns.len();
    let median = if calls % 2 == 1 {
        times_ns[calls / 2] as f64
    } else {
        (times_ns[calls / 2 - 1] + times_ns[calls / 2]) as f64 / 2.0
    };
    let total_ns: u64 = times_ns.iter().sum();
    let quantile = |q: f64| times_ns[((calls - 1) as f64 * q).round() as usize];
    let agree = correct_hit + incorrect_hit;

    serde_json::json!({
        "solutions": cases.len(),
        "passes": passes,
        "calls": calls,
        "median_ns": median,
        "mean_ns": total_ns as f64 / calls as f64,
        "p90_ns": quantile(0.9),
        "p99_ns": quantile(0.99),
        "max_ns": times_ns[calls - 1],
        "total_ns_per_pass": total_ns as f64 / passes as f64,
        "wall_s": wall_s,
        "agree": agree,
        "accuracy": agree as f64 / cases.len() as f64,
        "correct_total": correct_total,
        "correct_hit": correct_hit,
        "incorrect_total": cases.len() - correct_total,
        "incorrect_hit": incorrect_hit,
        "non_scores": non_scores,
        "disagreements": disagreements,
    })
}
