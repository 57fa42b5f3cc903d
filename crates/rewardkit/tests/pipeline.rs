//! Pipeline behaviour with small test terms: combination, non-score policies, panic isolation,
//! batched == single.

use rewardkit::{BuiltTerm, Pipeline, Registry, Spec};
use rewardkit_core::{Meter, Outcome, OutcomeKind, Reward, RewardOutput, Sample};

/// Scores the completion's length in bytes; unscorable when empty; times out on "slow"; panics
/// on "boom"; fails on "fail".
struct Probe;

impl Reward for Probe {
    fn kind(&self) -> &str {
        "probe"
    }

    fn component_names(&self) -> &[&'static str] {
        &["half"]
    }

    fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput {
        let text = sample.completion.text();
        if let Err(e) = meter.check_input(text.len()) {
            return RewardOutput::all(e.into_outcome(), 1);
        }
        match text.as_ref() {
            "" => RewardOutput::all(Outcome::unscorable("empty"), 1),
            "boom" => panic!("probe exploded"),
            "fail" => RewardOutput::all(Outcome::failed("probe failed"), 1),
            "slow" => loop {
                if let Err(e) = meter.step(1000) {
                    return RewardOutput::all(e.into_outcome(), 1);
                }
            },
            other => RewardOutput {
                outcome: Outcome::scored(other.len() as f64),
                components: vec![Outcome::scored(other.len() as f64 / 2.0)],
            },
        }
    }
}

fn registry() -> Registry {
    let mut registry = Registry::empty();
    registry.register("probe", "test probe", |options| {
        if let Some(key) = options.keys().next() {
            return Err(format!("unknown option `{key}`"));
        }
        Ok(BuiltTerm {
            reward: Box::new(Probe),
            resolved_options: "{}".to_owned(),
        })
    });
    registry
}

fn pipeline(toml: &str) -> Pipeline {
    let spec = Spec::from_toml_str(toml, "test.toml").expect("spec parses");
    Pipeline::build_with(&spec, &registry()).expect("spec builds")
}

const TWO_TERMS: &str = r#"
[budget]
max_steps = 100000
[[term]]
name = "a"
kind = "probe"
weight = 2.0
[[term]]
name = "b"
kind = "probe"
weight = -0.5
"#;

#[test]
fn weighted_sum_of_terms_with_components() {
    let p = pipeline(TWO_TERMS);
    let out = p.score_one(&Sample::new("", "abcd"));
    assert_eq!(out.reward, Outcome::scored(2.0 * 4.0 - 0.5 * 4.0));
    assert_eq!(out.terms.len(), 2);
    assert_eq!(out.terms[0].components, vec![Outcome::scored(2.0)]);
}

#[test]
fn propagate_keeps_the_kind_and_names_the_term() {
    let p = pipeline(TWO_TERMS);
    let out = p.score_one(&Sample::new("", ""));
    assert_eq!(out.reward, Outcome::unscorable("a: empty"));
    let out = p.score_one(&Sample::new("", "slow"));
    assert_eq!(out.reward, Outcome::TimedOut);
    let out = p.score_one(&Sample::new("", "fail"));
    assert_eq!(out.reward, Outcome::failed("a: probe failed"));
}

#[test]
fn exclude_and_value_policies() {
    let p = pipeline(
        r#"
        [non_score]
        policy = "exclude"
        [[term]]
        name = "a"
        kind = "probe"
        non_score = { policy = "value", value = -3.0 }
        [[term]]
        name = "b"
        kind = "probe"
        weight = 0.0
        "#,
    );
    // Both terms unscorable: `a` counts as -3, `b` excludes the sample.
    let out = p.score_one(&Sample::new("", ""));
    assert_eq!(out.reward, Outcome::unscorable("excluded: b: empty"));

    let p = pipeline(
        r#"
        [non_score]
        policy = "value"
        value = -1.0
        [[term]]
        name = "a"
        kind = "probe"
        weight = 3.0
        "#,
    );
    let out = p.score_one(&Sample::new("", "fail"));
    assert_eq!(out.reward, Outcome::scored(-3.0));
    // The term's own outcome is still the failure, so reports can count it.
    assert_eq!(out.terms[0].outcome.kind(), OutcomeKind::Failed);
}

#[test]
fn a_panicking_term_fails_only_its_sample() {
    let p = pipeline(TWO_TERMS);
    let samples: Vec<Sample> = ["ab", "boom", "abc"]
        .iter()
        .map(|c| Sample::new("", *c))
        .collect();
    let out = p.score_batch(&samples);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].reward, Outcome::scored(3.0));
    assert_eq!(out[1].reward.kind(), OutcomeKind::Failed);
    assert!(out[1].reward.reason().unwrap().contains("panicked"));
    assert_eq!(out[1].terms[0].components[0].kind(), OutcomeKind::Failed);
    assert_eq!(out[2].reward, Outcome::scored(4.5));
}

#[test]
fn batched_equals_single() {
    let p = pipeline(TWO_TERMS);
    let samples: Vec<Sample> = (0..500)
        .map(|i| match i % 7 {
            0 => Sample::new("", ""),
            1 => Sample::new("", "slow"),
            2 => Sample::new("", "fail"),
            _ => Sample::new("", "x".repeat(i)),
        })
        .collect();
    let batched = p.score_batch(&samples);
    let single: Vec<_> = samples.iter().map(|s| p.score_one(s)).collect();
    assert_eq!(batched, single);
}

#[test]
fn unknown_kind_and_bad_options_name_the_term() {
    let spec =
        Spec::from_toml_str("[[term]]\nname = \"a\"\nkind = \"nope\"\n", "test.toml").unwrap();
    let e = Pipeline::build_with(&spec, &registry())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("term[0].kind") && e.contains("nope") && e.contains("probe"),
        "{e}"
    );

    let spec = Spec::from_toml_str(
        "[[term]]\nname = \"a\"\nkind = \"probe\"\n[term.options]\nx = 1\n",
        "test.toml",
    )
    .unwrap();
    let e = Pipeline::build_with(&spec, &registry())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("term[0].options") && e.contains("`x`"), "{e}");
}

#[test]
fn describe_says_what_is_computed() {
    let p = pipeline(TWO_TERMS);
    let text = p.describe();
    assert!(text.contains("reward = 2 × a + -0.5 × b"), "{text}");
    assert!(text.contains("components: half"), "{text}");
}
