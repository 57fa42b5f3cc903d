//! Reading the real datasets in `../shared/data` (skipped with a message when it is absent).

use std::path::Path;

use rewardkit_data::{open, FieldMap, InputRow};

const GSM8K_SOLUTIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/gsm8k/example_model_solutions.jsonl"
);
const HH_RLHF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/hh-rlhf/harmless-base-test.dev.jsonl.gz"
);

fn present(path: &str) -> bool {
    let present = Path::new(path).exists();
    if !present {
        eprintln!("skipping: real data file {path} is absent");
    }
    present
}

fn read(path: &str, fields: FieldMap) -> Vec<InputRow> {
    open(path, fields)
        .unwrap_or_else(|e| panic!("{e}"))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn gsm8k_model_solutions() {
    if !present(GSM8K_SOLUTIONS) {
        return;
    }
    let fields = FieldMap::default()
        .with_prompt("question")
        .unwrap()
        .with_completion("6b_finetuning.solution")
        .unwrap()
        .with_reference("ground_truth")
        .unwrap();
    let rows = read(GSM8K_SOLUTIONS, fields);
    assert_eq!(rows.len(), 1319);
    assert!(rows
        .iter()
        .all(|row| row.samples.len() == 1 && !row.expanded));
    let first = &rows[0].samples[0];
    assert!(first.prompt.text().starts_with("Janet"));
    assert!(first
        .reference
        .as_ref()
        .unwrap()
        .text()
        .unwrap()
        .ends_with("A: 18"));
    assert!(!first.completion.text().is_empty());
    // The nested path leaves `6b_finetuning` (with `is_correct`) in the metadata; the mapped
    // top-level fields are gone from it.
    assert!(first.metadata["6b_finetuning"].get("is_correct").is_some());
    assert!(first.metadata.contains_key("175b_verification"));
    assert!(!first.metadata.contains_key("question"));
    assert!(!first.metadata.contains_key("ground_truth"));
    let lines: Vec<u64> = rows.iter().map(|row| row.line).collect();
    assert_eq!(lines, (1..=1319).collect::<Vec<u64>>());
}

#[test]
fn hh_rlhf_harmless_base() {
    if !present(HH_RLHF) {
        return;
    }
    let fields = FieldMap::default()
        .without_prompt()
        .with_completion("chosen")
        .unwrap();
    let rows = read(HH_RLHF, fields);
    assert_eq!(rows.len(), 1800);
    let first = &rows[0].samples[0];
    assert!(first.completion.text().contains("\n\nHuman:"));
    assert!(first.completion.text().contains("\n\nAssistant:"));
    assert!(first.metadata.contains_key("rejected"));
    assert_eq!(first.prompt.text(), "");
}
