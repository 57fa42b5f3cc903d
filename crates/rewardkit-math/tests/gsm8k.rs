//! Real data: the 5,276 model solutions of GSM8K's test set with their `is_correct` labels.
//! The `math` verifier's verdict must agree with the labels on at least 99% of them.

use rewardkit_core::Budget;
use rewardkit_math::{verify, Judgement, MathOptions};

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/gsm8k/example_model_solutions.jsonl"
);

/// The gold number: the last `A: N` line of the reference solution.
fn gold_of(ground_truth: &str) -> Option<&str> {
    ground_truth
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("A:"))
        .map(str::trim)
}

#[test]
fn agrees_with_gsm8k_labels() {
    let Ok(text) = std::fs::read_to_string(DATA) else {
        eprintln!("skipping: {DATA} not found");
        return;
    };
    let options = MathOptions::default();
    let (mut total, mut agree, mut stopped) = (0usize, 0usize, 0usize);
    let mut disagreements = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {}: not JSON: {e}", number + 1));
        let gold = gold_of(row["ground_truth"].as_str().expect("ground_truth"))
            .unwrap_or_else(|| panic!("line {}: no `A: N` in ground_truth", number + 1));
        for key in [
            "6b_finetuning",
            "6b_verification",
            "175b_finetuning",
            "175b_verification",
        ] {
            let solution = row[key]["solution"].as_str().expect("solution");
            let label = row[key]["is_correct"].as_bool().expect("is_correct");
            let verdict = verify(gold, solution, &options, &mut Budget::default().meter());
            total += 1;
            if matches!(verdict.judgement, Judgement::Stopped(_)) {
                stopped += 1;
                eprintln!("stopped: line {} {key}: {}", number + 1, verdict.reason);
            }
            if verdict.is_equal() == label {
                agree += 1;
            } else if disagreements.len() < 20 {
                disagreements.push(format!(
                    "line {} {key}: label {label}, gold {gold}, got {:?} ({})",
                    number + 1,
                    verdict.extracted,
                    verdict.reason
                ));
            }
        }
    }
    let rate = agree as f64 / total as f64;
    eprintln!(
        "GSM8K: {agree}/{total} agree ({:.2}%), {stopped} stopped",
        100.0 * rate
    );
    for d in &disagreements {
        eprintln!("  {d}");
    }
    assert_eq!(total, 5276);
    // A solution that hits a limit (one writes a 1,000-digit number) is not a correct one.
    assert!(stopped <= 2, "{stopped} real solutions hit a limit");
    assert!(rate >= 0.99, "agreement {rate:.4} below 99%");
}
