//! The case table: `tests/cases.tsv`, one `gold <TAB> prediction <TAB> expected <TAB> comment`
//! per line, run through [`rewardkit_math::verify`] with default options.

use rewardkit_core::Budget;
use rewardkit_math::{verify, Judgement, MathOptions};

const TABLE: &str = include_str!("cases.tsv");

/// The verdict's name in the table's vocabulary.
fn name(judgement: &Judgement) -> &'static str {
    match judgement {
        Judgement::Equal => "equal",
        Judgement::NotEqual => "not_equal",
        Judgement::NoAnswer => "no_answer",
        Judgement::BadGold(_) => "bad_gold",
        Judgement::Stopped(_) => "stopped",
    }
}

/// Runs one case; returns a description of the mismatch, if any.
fn check(gold: &str, pred: &str, expected: &str) -> Option<String> {
    let options = MathOptions::default();
    let verdict = verify(gold, pred, &options, &mut Budget::default().meter());
    let got = name(&verdict.judgement);
    (got != expected).then(|| {
        format!(
            "expected {expected}, got {got}\n    gold {gold:?} -> {:?}\n    pred {pred:?} -> {:?}\n    why: {}",
            verdict.gold, verdict.pred, verdict.reason
        )
    })
}

#[test]
fn case_table() {
    let mut cases = 0;
    let mut failures = Vec::new();
    for (number, line) in TABLE.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            fields.len(),
            4,
            "cases.tsv line {}: expected 4 tab-separated fields",
            number + 1
        );
        let expected = fields[2];
        assert!(
            ["equal", "not_equal", "no_answer", "stopped", "bad_gold"].contains(&expected),
            "cases.tsv line {}: unknown verdict {expected:?}",
            number + 1
        );
        let pred = fields[1].replace("<NL>", "\n");
        cases += 1;
        if let Some(mismatch) = check(fields[0], &pred, expected) {
            failures.push(format!("line {} ({}): {mismatch}", number + 1, fields[3]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        cases >= 400,
        "the table must hold at least 400 cases, has {cases}"
    );
}
