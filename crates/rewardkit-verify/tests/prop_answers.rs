//! Property tests for the answer verifiers (numeric, choice, text, format): on any input they
//! never panic, stay within their budget (finishing or reporting a time-out), spend work linear
//! in the input, and give the same outcome every time.

use proptest::prelude::*;
use rewardkit_core::{Budget, Outcome, OutcomeKind, Reward, Sample};
use rewardkit_verify::choice::{MultipleChoice, MultipleChoiceOptions};
use rewardkit_verify::format::{ThinkFormat, ThinkFormatOptions};
use rewardkit_verify::numeric::{extract_answer, Gsm8k, Gsm8kOptions, Number};
use rewardkit_verify::text::{
    Extract, RegexMatch, RegexMatchOptions, StringMatch, StringMatchOptions,
};

fn verifiers() -> Vec<Box<dyn Reward>> {
    vec![
        Box::new(Gsm8k::new(Gsm8kOptions::default()).unwrap()),
        Box::new(MultipleChoice::new(MultipleChoiceOptions::default()).unwrap()),
        Box::new(
            StringMatch::new(StringMatchOptions {
                extract: Extract::Boxed,
                strip_articles: true,
                strip_punctuation: true,
                ..StringMatchOptions::default()
            })
            .unwrap(),
        ),
        Box::new(
            RegexMatch::new(RegexMatchOptions {
                pattern_from_reference: true,
                ..RegexMatchOptions::default()
            })
            .unwrap(),
        ),
        Box::new(
            ThinkFormat::new(ThinkFormatOptions {
                require_answer_tag: true,
                ..ThinkFormatOptions::default()
            })
            .unwrap(),
        ),
    ]
}

/// Text made of the pieces the extractors look for, so that the interesting paths are taken
/// far more often than by uniformly random strings.
fn answerish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("#### ".to_string()),
        Just("\\boxed{".to_string()),
        Just("\\frac{".to_string()),
        Just("}{".to_string()),
        Just("}".to_string()),
        Just("The answer is ".to_string()),
        Just("answer: ".to_string()),
        Just("\nA: ".to_string()),
        Just("<think>".to_string()),
        Just("</think>".to_string()),
        Just("<answer>".to_string()),
        Just("</answer>".to_string()),
        Just("(B)".to_string()),
        Just("**".to_string()),
        Just("\u{2212}".to_string()),
        Just("é".to_string()),
        "[0-9]{1,45}",
        "[-+,./$%=*x \n\\\\{}()]",
        "[A-Ea-e]",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), answerish()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn verifiers_never_panic_and_are_deterministic(
        completion in any_text(),
        reference in any_text(),
    ) {
        let sample = Sample::new("A) x\nB) y", completion.as_str()).with_reference(reference.as_str());
        for verifier in verifiers() {
            let first = verifier.score(&sample, &mut Budget::default().meter()).outcome;
            let second = verifier.score(&sample, &mut Budget::default().meter()).outcome;
            prop_assert_eq!(&first, &second);
            prop_assert!(
                matches!(first.kind(), OutcomeKind::Scored | OutcomeKind::Unscorable),
                "{} gave {}", verifier.kind(), first
            );
        }
    }

    #[test]
    fn small_budgets_finish_or_time_out(
        completion in any_text(),
        reference in any_text(),
        max_steps in 0u64..200,
    ) {
        let sample = Sample::new("", completion.as_str()).with_reference(reference.as_str());
        let budget = Budget { max_steps, ..Budget::default() };
        for verifier in verifiers() {
            let mut meter = budget.meter();
            let outcome = verifier.score(&sample, &mut meter).outcome;
            prop_assert!(
                matches!(outcome.kind(), OutcomeKind::Scored | OutcomeKind::Unscorable)
                    || outcome == Outcome::TimedOut,
                "{} gave {}", verifier.kind(), outcome
            );
        }
    }

    #[test]
    fn work_is_linear_in_the_input(completion in any_text(), reference in any_text()) {
        let sample = Sample::new("", completion.as_str()).with_reference(reference.as_str());
        let size = (completion.len() + reference.len() + 1) as u64;
        for verifier in verifiers() {
            let mut meter = Budget::unlimited().meter();
            let _ = verifier.score(&sample, &mut meter);
            prop_assert!(
                meter.steps() <= 32 * size + 64,
                "{} spent {} steps on {} bytes", verifier.kind(), meter.steps(), size
            );
        }
    }

    #[test]
    fn extraction_never_panics(text in any_text()) {
        let _ = extract_answer(&text, &mut Budget::default().meter());
        let _ = Number::parse(&text);
    }

    #[test]
    fn integers_round_trip_through_every_phrasing(n in any::<i64>()) {
        let expected = Number::from_i128(i128::from(n));
        for text in [
            format!("#### {n}"),
            format!("\\boxed{{{n}}}"),
            format!("The answer is {n}."),
            format!("work\nA: {n}"),
            format!("so it is {n}"),
            format!("#### {n}.000"),
        ] {
            let got = extract_answer(&text, &mut Budget::default().meter()).unwrap();
            prop_assert_eq!(got.as_ref(), Some(&expected), "{}", text);
        }
    }

    #[test]
    fn displayed_numbers_parse_back(numerator in any::<i64>(), denominator in 1u64..100_000) {
        let text = format!("{numerator}/{denominator}");
        let number = Number::parse(&text).expect("a fraction parses");
        let shown = number.to_string();
        prop_assert_eq!(Number::parse(&shown), Some(number), "{} shown as {}", text, shown);
    }

    #[test]
    fn decimals_equal_their_fractions(whole in 0u32..1_000_000, frac in 0u32..1000) {
        let decimal = format!("{whole}.{frac:03}");
        let fraction = format!("{}/1000", u64::from(whole) * 1000 + u64::from(frac));
        prop_assert_eq!(Number::parse(&decimal), Number::parse(&fraction));
        prop_assert!(Number::parse(&decimal).is_some());
    }
}
