//! Property tests for the tool-call and length verifiers: on arbitrary text and JSON-ish input
//! they never panic, return a score inside their documented range or a typed non-score, and
//! stop when their budget is spent (Architecture Invariant 1).

use proptest::prelude::*;
use rewardkit_core::{Budget, Outcome, OutcomeKind, Reference, Reward, RewardOutput, Sample};
use rewardkit_verify::length::{
    LengthCap, LengthCapOptions, LengthUnit, Repetition, RepetitionOptions, SoftOverlong,
    SoftOverlongOptions,
};
use rewardkit_verify::tool::{CorrectnessMode, Schedule, ToolCall, ToolCallOptions};
use serde_json::json;

/// Text made of the pieces tool-call completions are built from, in any order.
fn tool_ish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<think>".to_string()),
        Just("</think>".to_string()),
        Just("<tool_call>".to_string()),
        Just("</tool_call>".to_string()),
        Just("<response>".to_string()),
        Just("</response>".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("\"name\"".to_string()),
        Just("\"arguments\"".to_string()),
        Just("\"parameters\"".to_string()),
        Just(":".to_string()),
        Just(",".to_string()),
        Just("\"f\"".to_string()),
        Just("\"a\"".to_string()),
        Just("1".to_string()),
        Just("1.0".to_string()),
        Just("null".to_string()),
        Just("\n".to_string()),
        Just(" ".to_string()),
        Just("{\"name\": \"f\", \"arguments\": {\"a\": 1}}".to_string()),
        "\\PC{0,4}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// Any string, or a tool-call-like one.
fn completion() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), tool_ish()]
}

/// References: well-formed call lists, tagged ToolRL strings and junk.
fn reference() -> impl Strategy<Value = Option<Reference>> {
    prop_oneof![
        Just(None),
        Just(Some(Reference::Json(
            json!([{"name": "f", "arguments": {"a": 1}}])
        ))),
        Just(Some(Reference::Json(json!([])))),
        Just(Some(Reference::Json(json!([
            {"name": "f", "arguments": {"a": 1, "b": [1, 2]}},
            {"name": "g", "parameters": {}}
        ])))),
        tool_ish().prop_map(|text| Some(Reference::Text(text))),
        any::<String>().prop_map(|text| Some(Reference::Text(text))),
    ]
}

fn tool_options() -> impl Strategy<Value = ToolCallOptions> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(CorrectnessMode::Fine),
            Just(CorrectnessMode::Coarse),
            Just(CorrectnessMode::Intermediate)
        ],
        prop_oneof![
            Just(Schedule::Fixed),
            Just(Schedule::Dynamic),
            Just(Schedule::Max1Step30Max3)
        ],
        prop::option::of(0u64..400),
    )
        .prop_map(
            |(
                require_think,
                strict_whitespace,
                multiple_blocks,
                bare_json,
                expect_response,
                correctness,
                schedule,
                step,
            )| ToolCallOptions {
                require_think,
                strict_whitespace,
                multiple_blocks,
                bare_json,
                expect_response,
                correctness,
                schedule,
                step,
                schedule_steps: 150,
            },
        )
}

/// Small budgets that real inputs will often exceed, without a clock so results are exact.
fn budget() -> impl Strategy<Value = Budget> {
    (prop_oneof![Just(usize::MAX), 0usize..200], 0u64..300).prop_map(
        |(max_input_bytes, max_steps)| Budget {
            max_input_bytes,
            max_steps,
            timeout: None,
        },
    )
}

/// Scores with a fresh meter and checks the budget contract: a term that spent more steps than
/// allowed must have reported a time-out (it stopped at the first refused step).
fn score_within(reward: &dyn Reward, sample: &Sample, budget: &Budget) -> RewardOutput {
    let mut meter = budget.meter();
    let output = reward.score(sample, &mut meter);
    if meter.steps() > budget.max_steps {
        assert_eq!(output.outcome, Outcome::TimedOut, "{sample:?}");
    }
    assert_eq!(
        output.components.len(),
        reward.component_names().len(),
        "components must align with their names"
    );
    output
}

fn in_range(outcome: &Outcome, low: f64, high: f64) {
    match outcome.kind() {
        OutcomeKind::Scored => {
            let value = outcome.value().expect("scored");
            assert!(
                (low..=high).contains(&value),
                "{value} outside [{low}, {high}]"
            );
        }
        OutcomeKind::Unscorable | OutcomeKind::TimedOut => {}
        OutcomeKind::Failed => panic!("a verifier failed: {outcome}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tool_call_never_panics_and_stays_in_range(
        completion in completion(),
        reference in reference(),
        options in tool_options(),
        step in prop::option::of(0u64..400),
    ) {
        let reward = ToolCall::new(options).expect("valid options");
        let mut sample = Sample { reference, ..Sample::new("", completion) };
        if let Some(step) = step {
            sample.metadata.insert("step".into(), json!(step));
        }
        let output = score_within(&reward, &sample, &Budget::default());
        // The widest ranges over all schedules: format [−2, 2], correctness [−3, 3].
        in_range(&output.outcome, -5.0, 5.0);
        in_range(&output.components[0], -2.0, 2.0);
        in_range(&output.components[1], -3.0, 3.0);
        if let (Some(total), Some(format), Some(correctness)) = (
            output.outcome.value(),
            output.components[0].value(),
            output.components[1].value(),
        ) {
            prop_assert!((total - (format + correctness)).abs() < 1e-12);
        }
    }

    #[test]
    fn tool_call_respects_small_budgets(
        completion in completion(),
        reference in reference(),
        budget in budget(),
    ) {
        let reward = ToolCall::new(ToolCallOptions::default()).expect("valid options");
        let sample = Sample { reference, ..Sample::new("", completion) };
        let output = score_within(&reward, &sample, &budget);
        in_range(&output.outcome, -3.0, 4.0);
    }

    #[test]
    fn length_terms_never_panic_and_stay_in_range(
        completion in any::<String>(),
        max_length in 0usize..64,
        cache in 1usize..64,
        ngram_size in 1usize..6,
        unit in prop_oneof![Just(LengthUnit::Chars), Just(LengthUnit::Words)],
        budget in budget(),
    ) {
        let sample = Sample::new("", completion);
        if let Ok(soft) = SoftOverlong::new(SoftOverlongOptions {
            max_length, cache, unit, tokenizer: None,
        }) {
            let output = score_within(&soft, &sample, &budget);
            in_range(&output.outcome, -1.0, 0.0);
            let output = score_within(&soft, &sample, &Budget::unlimited());
            in_range(&output.outcome, -1.0, 0.0);
            prop_assert_eq!(output.outcome.kind(), OutcomeKind::Scored);
        }
        let cap = LengthCap::new(LengthCapOptions {
            max_length, over: -1.0, within: 0.5, unit, tokenizer: None,
        }).expect("valid options");
        let output = score_within(&cap, &sample, &budget);
        in_range(&output.outcome, -1.0, 0.5);
        let repetition = Repetition::new(RepetitionOptions {
            ngram_size, unit, ..RepetitionOptions::default()
        }).expect("valid options");
        let output = score_within(&repetition, &sample, &budget);
        in_range(&output.outcome, -1.0, 0.0);
        let output = score_within(&repetition, &sample, &Budget::unlimited());
        prop_assert_eq!(output.outcome.kind(), OutcomeKind::Scored);
    }
}

#[cfg(feature = "tokenizer")]
mod tokens {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use super::*;

    /// A word-level tokenizer written once per test binary; the directory lives as long as it.
    fn tokenizer_path() -> &'static PathBuf {
        static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
        &DIR.get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("tokenizer.json");
            let tokenizer = json!({
                "version": "1.0",
                "truncation": null,
                "padding": null,
                "added_tokens": [],
                "normalizer": null,
                "pre_tokenizer": {"type": "Whitespace"},
                "post_processor": null,
                "decoder": null,
                "model": {
                    "type": "WordLevel",
                    "vocab": {"[UNK]": 0, "a": 1, "b": 2, ".": 3},
                    "unk_token": "[UNK]"
                }
            });
            std::fs::write(&path, tokenizer.to_string()).expect("write tokenizer");
            (dir, path)
        })
        .1
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn token_units_never_panic(completion in any::<String>(), budget in budget()) {
            let path = tokenizer_path().clone();
            let sample = Sample::new("", completion);
            let soft = SoftOverlong::new(SoftOverlongOptions {
                max_length: 8, cache: 4, unit: LengthUnit::Tokens, tokenizer: Some(path.clone()),
            }).expect("valid options");
            in_range(&score_within(&soft, &sample, &budget).outcome, -1.0, 0.0);
            let repetition = Repetition::new(RepetitionOptions {
                ngram_size: 2, unit: LengthUnit::Tokens, tokenizer: Some(path),
                ..RepetitionOptions::default()
            }).expect("valid options");
            in_range(&score_within(&repetition, &sample, &budget).outcome, -1.0, 0.0);
        }
    }
}
