//! The GSM8K verifier against real data from `../shared/data/gsm8k` (skipped, saying so, when
//! the folder is absent).
//!
//! 1. `example_model_solutions.jsonl`: 1,319 test questions, each with four real model solutions
//!    labelled `is_correct`. The verifier, given the question's `ground_truth` (a worked answer
//!    ending in `A: N`) as reference, must agree with every label, except the label errors listed
//!    in `tests/fixtures/gsm8k_label_errors.tsv` (and each listed entry must still disagree, so
//!    the list never goes stale).
//! 2. `train.jsonl`: 7,473 worked answers ending in `#### N`, rewritten into the phrasings models
//!    actually use (`\boxed{N}`, "The answer is N.", `$N.00`, thousands separators, "Final
//!    answer: N"); each must score correct against the original, and a wrong number incorrect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rewardkit_core::{Budget, Outcome, Reward, Sample};
use rewardkit_verify::numeric::{Gsm8k, Gsm8kOptions};

const SOLUTION_KEYS: [&str; 4] = [
    "6b_finetuning",
    "6b_verification",
    "175b_finetuning",
    "175b_verification",
];

fn data_dir() -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/gsm8k"
    ));
    if dir.is_dir() {
        Some(dir.to_path_buf())
    } else {
        println!("skipping: ../shared/data not found");
        None
    }
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn str_field<'a>(row: &'a serde_json::Value, pointer: &str) -> &'a str {
    row.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("missing string field {pointer}"))
}

/// The listed label errors: `(question_index, solution_key)` → reason.
fn label_errors() -> BTreeMap<(usize, String), String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gsm8k_label_errors.tsv"
    );
    let text = std::fs::read_to_string(path).expect("fixture file exists");
    let mut errors = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (Some(index), Some(key), Some(reason)) = (fields.next(), fields.next(), fields.next())
        else {
            panic!("{path}:{}: expected index<TAB>key<TAB>reason", n + 1);
        };
        let index: usize = index
            .parse()
            .unwrap_or_else(|e| panic!("{path}:{}: bad index: {e}", n + 1));
        assert!(
            SOLUTION_KEYS.contains(&key),
            "{path}:{}: unknown key {key}",
            n + 1
        );
        assert!(!reason.trim().is_empty(), "{path}:{}: empty reason", n + 1);
        errors.insert((index, key.to_string()), reason.to_string());
    }
    errors
}

#[test]
fn agrees_with_the_labels_of_real_model_solutions() {
    let Some(dir) = data_dir() else { return };
    let rows = read_jsonl(&dir.join("example_model_solutions.jsonl"));
    assert_eq!(rows.len(), 1319);
    let verifier = Gsm8k::new(Gsm8kOptions::default()).expect("default options are valid");
    let budget = Budget::default();
    let listed = label_errors();

    let mut agree = 0;
    let mut unexpected = Vec::new();
    let mut still_listed = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let reference = str_field(row, "/ground_truth");
        for key in SOLUTION_KEYS {
            let solution = str_field(row, &format!("/{key}/solution"));
            let label = row
                .pointer(&format!("/{key}/is_correct"))
                .and_then(serde_json::Value::as_bool)
                .expect("is_correct is a boolean");
            let sample = Sample::new("", solution).with_reference(reference);
            let outcome = verifier.score(&sample, &mut budget.meter()).outcome;
            let agrees = match outcome {
                Outcome::Scored { value } => (value == 1.0) == label,
                other => panic!("question {index} {key}: not scored: {other}"),
            };
            let is_listed = listed.contains_key(&(index, key.to_string()));
            if agrees {
                agree += 1;
                if is_listed {
                    still_listed.push(format!("{index}\t{key}"));
                }
            } else if !is_listed {
                let tail: String = solution
                    .chars()
                    .rev()
                    .take(120)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                unexpected.push(format!(
                    "{index}\t{key}\tlabel={label}\tref={:?}\ttail={tail:?}",
                    reference.lines().last().unwrap_or("")
                ));
            }
        }
    }
    println!("agreement: {agree} of {}", rows.len() * 4);
    assert!(
        unexpected.is_empty(),
        "{} unlisted disagreements:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        still_listed.is_empty(),
        "listed label errors that now agree (remove them):\n{}",
        still_listed.join("\n")
    );
}

/// The final answer of a GSM8K worked answer (`… #### N`).
fn final_answer(answer: &str) -> &str {
    answer
        .rsplit_once("####")
        .map(|(_, n)| n.trim())
        .expect("every GSM8K answer ends in #### N")
}

/// `digits` with a comma every three digits from the right (`1234567` → `1,234,567`).
fn with_separators(digits: &str) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn every_common_phrasing_of_the_train_answers_scores_correct() {
    let Some(dir) = data_dir() else { return };
    let rows = read_jsonl(&dir.join("train.jsonl"));
    assert_eq!(rows.len(), 7473);
    let verifier = Gsm8k::new(Gsm8kOptions::default()).expect("default options are valid");
    let budget = Budget::default();

    let mut failures = Vec::new();
    let mut checked = 0;
    for (index, row) in rows.iter().enumerate() {
        let reference = str_field(row, "/answer");
        let n = final_answer(reference).replace(',', "");
        let body = reference
            .rsplit_once("####")
            .map(|(body, _)| body)
            .unwrap_or_default();
        let mut phrasings = vec![
            format!("{body}\\boxed{{{n}}}"),
            format!("{body}The answer is {n}."),
            format!("{body}Final answer: {n}"),
            format!("{body}#### {n}"),
            format!("{body}So the answer is **{n}**."),
        ];
        let unsigned = n.trim_start_matches('-');
        if unsigned.chars().all(|c| c.is_ascii_digit()) {
            let sign = if n.starts_with('-') { "-" } else { "" };
            phrasings.push(format!("{body}The answer is {sign}${unsigned}.00."));
            phrasings.push(format!("{body}#### {sign}${unsigned}.00"));
            if unsigned.len() >= 4 {
                let grouped = with_separators(unsigned);
                phrasings.push(format!("{body}The answer is {sign}{grouped}."));
                phrasings.push(format!("{body}\\boxed{{{sign}{grouped}}}"));
            }
        }
        for completion in &phrasings {
            let sample = Sample::new("", completion.as_str()).with_reference(reference);
            let outcome = verifier.score(&sample, &mut budget.meter()).outcome;
            checked += 1;
            if outcome != Outcome::scored(1.0) {
                failures.push(format!("row {index}: {outcome} for {:?}", tail(completion)));
            }
        }
        // A wrong number must score incorrect.
        let wrong = format!("{body}The answer is {n}1.");
        let sample = Sample::new("", wrong.as_str()).with_reference(reference);
        let outcome = verifier.score(&sample, &mut budget.meter()).outcome;
        checked += 1;
        if outcome != Outcome::scored(0.0) {
            failures.push(format!(
                "row {index}: {outcome} for wrong {:?}",
                tail(&wrong)
            ));
        }
    }
    println!("checked {checked} rewritten answers");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .take(50)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn tail(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars[chars.len().saturating_sub(80)..].iter().collect()
}
