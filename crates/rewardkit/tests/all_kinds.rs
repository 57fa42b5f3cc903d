//! Every verifier kind built from a spec and run through the pipeline, and batched == single with
//! the real verifiers on real GSM8K solutions.

use rewardkit::{Outcome, Pipeline, Sample, Spec};
use rewardkit_core::{Completion, Reference};

const ALL_KINDS: &str = r#"
[[term]]
name = "gsm8k"
kind = "gsm8k"
non_score = { policy = "value", value = 0.0 }

[[term]]
name = "choice"
kind = "multiple_choice"

[[term]]
name = "string"
kind = "string_match"

[[term]]
name = "regex"
kind = "regex_match"
[term.options]
pattern = "answer"

[[term]]
name = "think"
kind = "think_format"

[[term]]
name = "tool"
kind = "tool_call"
weight = 0.25
non_score = { policy = "value", value = -3.0 }

[[term]]
name = "overlong"
kind = "soft_overlong"
[term.options]
max_length = 10
cache = 5
unit = "words"

[[term]]
name = "cap"
kind = "length_cap"
[term.options]
max_length = 1000
unit = "chars"

[[term]]
name = "repetition"
kind = "repetition"

[[term]]
name = "math"
kind = "math"
weight = 0.0
"#;

#[test]
fn every_kind_builds_and_scores() {
    let spec = Spec::from_toml_str(ALL_KINDS, "all.toml").unwrap();
    let pipeline = Pipeline::build(&spec).unwrap();
    assert_eq!(pipeline.terms().len(), 10);
    assert_eq!(
        pipeline.terms()[5].component_names,
        vec!["format".to_owned(), "correctness".to_owned()]
    );

    // The reference "B" fits some terms and not others; the gsm8k and tool terms cannot read it
    // and count as 0 and -3 by their policies.
    let sample = Sample::new(
        "Pick one.",
        "<think>the answer is B</think>\nThe answer is B",
    )
    .with_reference("B");
    let out = pipeline.score_one(&sample);
    let values: Vec<Option<f64>> = out.terms.iter().map(|t| t.outcome.value()).collect();
    assert_eq!(
        values,
        vec![
            None,       // gsm8k: the reference holds no number (counts 0 by its policy)
            Some(1.0),  // multiple_choice
            Some(0.0),  // string_match: the whole completion is not "B"
            Some(1.0),  // regex_match: contains "answer"
            Some(1.0),  // think_format
            None,       // tool_call: the reference is not a list of calls
            Some(-0.6), // soft_overlong: 8 words, (10 − 5 − 8) / 5
            Some(0.0),  // length_cap
            Some(0.0),  // repetition: no repeated 3-gram
            Some(1.0),  // math: the final answer B is the letter B (weight 0)
        ]
    );
    let reward = out.reward.value().unwrap();
    assert!(
        (reward - (3.0 + 0.25 * -3.0 - 0.6)).abs() < 1e-12,
        "{reward}"
    );
    assert_eq!(
        out.terms[0].outcome.reason(),
        Some("reference has no number"),
        "{:?}",
        out.terms[0]
    );

    // The math term on a LaTeX answer.
    let maths = Sample::new("Simplify.", "So the result is $\\boxed{\\dfrac{\\pi}{2}}$.")
        .with_reference("\\pi/2");
    assert_eq!(
        pipeline.score_one(&maths).terms[9].outcome,
        Outcome::scored(1.0)
    );

    // A tool call matching its reference exactly: format 1 + correctness 3.
    let mut tool = Sample::new(
        "Weather?",
        "<think>call it</think>\n<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
    );
    tool.reference = Some(Reference::Json(
        serde_json::json!([{"name": "weather", "arguments": {"city": "Oslo"}}]),
    ));
    let out = pipeline.score_one(&tool);
    assert_eq!(out.terms[5].outcome, Outcome::scored(4.0));
    assert_eq!(
        out.terms[5].components,
        vec![Outcome::scored(1.0), Outcome::scored(3.0)]
    );
}

#[test]
fn batched_equals_single_on_real_gsm8k_solutions() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/gsm8k/example_model_solutions.jsonl"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("skipping: ../shared/data not found ({path})");
        return;
    };
    let mut samples = Vec::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in [
            "6b_finetuning",
            "6b_verification",
            "175b_finetuning",
            "175b_verification",
        ] {
            let mut sample = Sample::new(
                row["question"].as_str().unwrap(),
                row[key]["solution"].as_str().unwrap(),
            );
            sample.reference = Some(Reference::Text(
                row["ground_truth"].as_str().unwrap().to_owned(),
            ));
            samples.push(sample);
        }
    }
    assert_eq!(samples.len(), 5276);
    // Add samples that exercise non-scores, so those are compared too.
    samples.push(Sample {
        completion: Completion::Text("x".repeat(2_000_000)),
        ..Sample::new("", "")
    });
    samples.push(Sample::new("q", "#### 3"));

    let spec = Spec::from_toml_str(ALL_KINDS, "all.toml").unwrap();
    let pipeline = Pipeline::build(&spec).unwrap();
    let batched = pipeline.score_batch(&samples);
    let single: Vec<_> = samples.iter().map(|s| pipeline.score_one(s)).collect();
    assert_eq!(batched.len(), samples.len());
    assert_eq!(batched, single);
    let scored_correct = batched
        .iter()
        .filter(|s| s.terms[0].outcome.value() == Some(1.0))
        .count();
    assert_eq!(
        scored_correct, 2001,
        "the gsm8k term agrees with the labels"
    );
}
