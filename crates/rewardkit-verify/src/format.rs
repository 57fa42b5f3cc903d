//! Reasoning format: `<think>…</think>` followed by an answer.
//!
//! [`ThinkFormat`] (kind `think_format`) scores `correct` when the completion has the shape
//! reasoning-tuned models are trained to produce, and `incorrect` otherwise. It is the
//! well-formedness half of R1-style rewards (TRL's `think_format_reward`), stricter than the
//! usual one-line regular expression in the ways that models exploit:
//!
//! - exactly one opening and one closing think tag, the opening one first (a second
//!   `<think>` block, a stray `</think>` in the answer or a missing tag all fail);
//! - nothing but whitespace before the opening tag;
//! - with `require_thinking = true` (the default), something other than whitespace inside the
//!   think block (`<think></think>` is what a model emits when it does *not* think);
//! - a non-blank answer after `</think>`;
//! - with `require_answer_tag = true`, that answer is exactly one `<answer>…</answer>` block
//!   with non-blank content and only whitespace around it, and no answer tag appears inside the
//!   thinking.
//!
//! Chat templates that open the think block in the prompt (DeepSeek-R1's, Qwen3's) leave the
//! completion without its `<think>`: set `think_in_prompt = true`, and the completion must then
//! contain no opening tag and exactly one closing tag.
//!
//! Tag names are options (`think_open`, `think_close`, `answer_open`, `answer_close`), for
//! models trained with `<reasoning>` or `<|begin_of_thought|>` and the like. No reference is
//! needed. The check reads the completion a few times over, one step per byte each time, and
//! refuses inputs over `max_input_bytes`.

use memchr::memmem;
use rewardkit_core::{Exhausted, Meter, Outcome, Reward, RewardOutput, Sample};
use serde::{Deserialize, Serialize};

use crate::VerifyError;

/// Options of [`ThinkFormat`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThinkFormatOptions {
    /// The opening think tag (default `<think>`).
    pub think_open: String,
    /// The closing think tag (default `</think>`).
    pub think_close: String,
    /// Whether the think block must hold more than whitespace (default true).
    pub require_thinking: bool,
    /// Whether the opening think tag is part of the prompt (the chat template), so the
    /// completion starts inside the thinking and must not repeat the tag (default false).
    pub think_in_prompt: bool,
    /// Whether the answer must be wrapped in one answer block (default false).
    pub require_answer_tag: bool,
    /// The opening answer tag (default `<answer>`).
    pub answer_open: String,
    /// The closing answer tag (default `</answer>`).
    pub answer_close: String,
    /// The score of a well-formed completion (default 1.0).
    pub correct: f64,
    /// The score of any other completion (default 0.0).
    pub incorrect: f64,
}

impl Default for ThinkFormatOptions {
    fn default() -> Self {
        ThinkFormatOptions {
            think_open: "<think>".to_string(),
            think_close: "</think>".to_string(),
            require_thinking: true,
            think_in_prompt: false,
            require_answer_tag: false,
            answer_open: "<answer>".to_string(),
            answer_close: "</answer>".to_string(),
            correct: 1.0,
            incorrect: 0.0,
        }
    }
}

/// Why a completion is not well formed; the first rule it breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatViolation {
    /// The opening think tag is missing, repeated, or (with `think_in_prompt`) present.
    ThinkOpen,
    /// The closing think tag is missing or repeated, or comes before the opening one.
    ThinkClose,
    /// Something other than whitespace comes before the opening think tag.
    TextBeforeThink,
    /// The think block holds only whitespace.
    EmptyThinking,
    /// Nothing but whitespace follows the closing think tag.
    EmptyAnswer,
    /// The answer block is missing, repeated, empty, misplaced or has text around it.
    AnswerTag,
}

/// Reasoning-format verifier (kind `think_format`); see the module documentation.
#[derive(Clone, Debug)]
pub struct ThinkFormat {
    options: ThinkFormatOptions,
    /// Precompiled SIMD searchers for the two think tags (`memchr::memmem`), built once here
    /// rather than per sample.
    think_open: memmem::Finder<'static>,
    think_close: memmem::Finder<'static>,
}

impl ThinkFormat {
    /// Builds the verifier, refusing non-finite scores and empty or clashing tags.
    pub fn new(options: ThinkFormatOptions) -> Result<ThinkFormat, VerifyError> {
        for (name, value) in [
            ("correct", options.correct),
            ("incorrect", options.incorrect),
        ] {
            if !value.is_finite() {
                return Err(VerifyError::invalid(name, "a finite number"));
            }
        }
        let tags = [
            ("think_open", &options.think_open),
            ("think_close", &options.think_close),
            ("answer_open", &options.answer_open),
            ("answer_close", &options.answer_close),
        ];
        for (i, (name, tag)) in tags.iter().enumerate() {
            if tag.trim().is_empty() {
                return Err(VerifyError::invalid(*name, "a non-blank tag"));
            }
            let clashes = tags[..i]
                .iter()
                .any(|(_, other)| other.contains(tag.as_str()) || tag.contains(other.as_str()));
            // The answer tags only matter when required; the think tags always do.
            if clashes && (i < 2 || options.require_answer_tag) {
                return Err(VerifyError::invalid(
                    *name,
                    "a tag that neither contains nor is contained in another tag",
                ));
            }
        }
        Ok(ThinkFormat {
            think_open: memmem::Finder::new(options.think_open.as_bytes()).into_owned(),
            think_close: memmem::Finder::new(options.think_close.as_bytes()).into_owned(),
            options,
        })
    }

    /// The options this verifier was built with.
    pub fn options(&self) -> &ThinkFormatOptions {
        &self.options
    }

    /// Checks a completion: `Ok(Ok(()))` when well formed, `Ok(Err(v))` naming the first rule
    /// broken, `Err` when the budget ran out.
    pub fn check(
        &self,
        text: &str,
        meter: &mut Meter,
    ) -> Result<Result<(), FormatViolation>, Exhausted> {
        meter.check_input(text.len())?;
        let o = &self.options;
        // Each count below reads the text once.
        meter.step(2 * text.len() as u64)?;
        let opens = count_non_overlapping(&self.think_open, text.as_bytes());
        let closes = count_non_overlapping(&self.think_close, text.as_bytes());
        let expected_opens = usize::from(!o.think_in_prompt);
        if opens != expected_opens {
            return Ok(Err(FormatViolation::ThinkOpen));
        }
        if closes != 1 {
            return Ok(Err(FormatViolation::ThinkClose));
        }
        let close_at = self
            .think_close
            .find(text.as_bytes())
            .expect("one closing tag was counted, this is a bug");
        let thinking_start = if o.think_in_prompt {
            0
        } else {
            let open_at = self
                .think_open
                .find(text.as_bytes())
                .expect("one opening tag was counted, this is a bug");
            if open_at > close_at {
                return Ok(Err(FormatViolation::ThinkClose));
            }
            if !text[..open_at].trim().is_empty() {
                return Ok(Err(FormatViolation::TextBeforeThink));
            }
            open_at + o.think_open.len()
        };
        let thinking = &text[thinking_start..close_at];
        let answer = &text[close_at + o.think_close.len()..];
        if o.require_thinking && thinking.trim().is_empty() {
            return Ok(Err(FormatViolation::EmptyThinking));
        }
        if answer.trim().is_empty() {
            return Ok(Err(FormatViolation::EmptyAnswer));
        }
        if o.require_answer_tag {
            meter.step(2 * text.len() as u64)?;
            let in_thinking = thinking.contains(o.answer_open.as_str())
                || thinking.contains(o.answer_close.as_str());
            let answer = answer.trim();
            let well_placed = answer.starts_with(o.answer_open.as_str())
                && answer.ends_with(o.answer_close.as_str())
                && answer.len() >= o.answer_open.len() + o.answer_close.len();
            let single = answer.matches(o.answer_open.as_str()).count() == 1
                && answer.matches(o.answer_close.as_str()).count() == 1;
            if in_thinking || !well_placed || !single {
                return Ok(Err(FormatViolation::AnswerTag));
            }
            let content = &answer[o.answer_open.len()..answer.len() - o.answer_close.len()];
            if content.trim().is_empty() {
                return Ok(Err(FormatViolation::AnswerTag));
            }
        }
        Ok(Ok(()))
    }
}

/// Non-overlapping occurrences of the finder's needle in `haystack`, as `str::matches` counts
/// them (`memmem::find_iter` reports overlapping ones, which differ for tags like `aa`).
fn count_non_overlapping(finder: &memmem::Finder<'_>, haystack: &[u8]) -> usize {
    let step = finder.needle().len().max(1);
    let mut count = 0;
    let mut at = 0;
    while let Some(found) = haystack.get(at..).and_then(|rest| finder.find(rest)) {
        count += 1;
        at += found + step;
    }
    count
}

impl Reward for ThinkFormat {
    fn kind(&self) -> &str {
        "think_format"
    }

    fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput {
        let outcome = match self.check(&sample.completion.text(), meter) {
            Ok(Ok(())) => Outcome::scored(self.options.correct),
            Ok(Err(_)) => Outcome::scored(self.options.incorrect),
            Err(e) => e.into_outcome(),
        };
        outcome.into()
    }
}

#[cfg(test)]
mod tests {
    use rewardkit_core::Budget;

    use super::*;

    #[test]
    fn tag_counts_match_str_matches() {
        for (needle, haystack) in [
            ("aa", "aaaaa"),
            ("<think>", "<think><think>x</think>"),
            ("ab", ""),
            ("é", "éée"),
            ("</think>", "</think</think>>"),
        ] {
            let finder = memmem::Finder::new(needle.as_bytes());
            assert_eq!(
                count_non_overlapping(&finder, haystack.as_bytes()),
                haystack.matches(needle).count(),
                "{needle:?} in {haystack:?}"
            );
        }
    }

    /// Checks `text` with `options`; `expected` is `ok` or the violation's name.
    #[track_caller]
    fn check_with(options: &ThinkFormatOptions, text: &str, expected: &str) {
        let verifier = ThinkFormat::new(options.clone()).expect("valid options");
        let got = match verifier.check(text, &mut Budget::default().meter()) {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(v)) => format!("{v:?}"),
            Err(e) => format!("exhausted: {e}"),
        };
        assert_eq!(got, expected, "checking {text:?}");
    }

    #[track_caller]
    fn check(text: &str, expected: &str) {
        check_with(&ThinkFormatOptions::default(), text, expected);
    }

    #[test]
    fn accepts_well_formed_reasoning() {
        check("<think>\nLet me add.\n</think>\nThe answer is 4.", "ok");
        check("<think>x</think>4", "ok");
        check("  \n<think>x</think>\n4\n", "ok");
        check("<think>é 🤔</think>答案", "ok");
        check("<think>a < b and c > d</think>4", "ok");
    }

    #[test]
    fn refuses_malformed_reasoning() {
        check("", "ThinkOpen");
        check("The answer is 4.", "ThinkOpen");
        check("<think>x", "ThinkClose");
        check("x</think>4", "ThinkOpen");
        check("</think>x<think>4", "ThinkClose");
        check("<think>a</think><think>b</think>4", "ThinkOpen");
        check("<think>a</think>4</think>", "ThinkClose");
        check("Sure! <think>x</think>4", "TextBeforeThink");
        check("<think></think>4", "EmptyThinking");
        check("<think> \n </think>4", "EmptyThinking");
        check("<think>x</think>", "EmptyAnswer");
        check("<think>x</think>  \n", "EmptyAnswer");
        check("<THINK>x</THINK>4", "ThinkOpen");
        check("<think >x</think>4", "ThinkOpen");
    }

    #[test]
    fn answer_tags_when_required() {
        let o = ThinkFormatOptions {
            require_answer_tag: true,
            ..ThinkFormatOptions::default()
        };
        check_with(&o, "<think>x</think><answer>4</answer>", "ok");
        check_with(&o, "<think>x</think>\n<answer>\n4\n</answer>\n", "ok");
        check_with(&o, "<think>x</think>4", "AnswerTag");
        check_with(&o, "<think>x</think><answer>4", "AnswerTag");
        check_with(&o, "<think>x</think><answer></answer>", "AnswerTag");
        check_with(&o, "<think>x</think><answer> </answer>", "AnswerTag");
        check_with(&o, "<think>x</think>So <answer>4</answer>", "AnswerTag");
        check_with(&o, "<think>x</think><answer>4</answer> done", "AnswerTag");
        check_with(
            &o,
            "<think>x</think><answer>4</answer><answer>5</answer>",
            "AnswerTag",
        );
        check_with(
            &o,
            "<think><answer>3</answer></think><answer>4</answer>",
            "AnswerTag",
        );
        check_with(&o, "<think>x</think></answer>4<answer>", "AnswerTag");
    }

    #[test]
    fn think_may_open_in_the_prompt_and_tags_may_be_renamed() {
        let o = ThinkFormatOptions {
            think_in_prompt: true,
            ..ThinkFormatOptions::default()
        };
        check_with(&o, "Let me add.\n</think>\n4", "ok");
        check_with(&o, "<think>x</think>4", "ThinkOpen");
        check_with(&o, "x", "ThinkClose");
        check_with(&o, "</think>4", "EmptyThinking");
        let renamed = ThinkFormatOptions {
            think_open: "<reasoning>".into(),
            think_close: "</reasoning>".into(),
            ..ThinkFormatOptions::default()
        };
        check_with(&renamed, "<reasoning>x</reasoning>4", "ok");
        check_with(&renamed, "<think>x</think>4", "ThinkOpen");
        let lax = ThinkFormatOptions {
            require_thinking: false,
            ..ThinkFormatOptions::default()
        };
        check_with(&lax, "<think></think>4", "ok");
    }

    #[test]
    fn scores_and_budgets() {
        let verifier = ThinkFormat::new(ThinkFormatOptions {
            correct: 0.5,
            incorrect: -0.5,
            ..ThinkFormatOptions::default()
        })
        .unwrap();
        assert_eq!(verifier.kind(), "think_format");
        let score = |text: &str, budget: Budget| {
            verifier
                .score(&Sample::new("", text), &mut budget.meter())
                .outcome
        };
        assert_eq!(
            score("<think>x</think>4", Budget::default()),
            Outcome::scored(0.5)
        );
        assert_eq!(score("4", Budget::default()), Outcome::scored(-0.5));
        let tight = Budget {
            max_steps: 5,
            ..Budget::default()
        };
        assert_eq!(score("<think>x</think>4", tight), Outcome::TimedOut);
        let small = Budget {
            max_input_bytes: 5,
            ..Budget::default()
        };
        assert_eq!(
            score("<think>x</think>4", small),
            Outcome::unscorable("input too large")
        );
        let many = "<think>".repeat(100_000);
        assert_eq!(score(&many, Budget::default()), Outcome::scored(-0.5));
    }

    #[test]
    fn refuses_bad_options() {
        let bad = |options: ThinkFormatOptions| ThinkFormat::new(options).unwrap_err().to_string();
        assert_eq!(
            bad(ThinkFormatOptions {
                correct: f64::INFINITY,
                ..Default::default()
            }),
            "option `correct`: a finite number"
        );
        assert_eq!(
            bad(ThinkFormatOptions {
                think_open: " ".into(),
                ..Default::default()
            }),
            "option `think_open`: a non-blank tag"
        );
        assert!(bad(ThinkFormatOptions {
            think_close: "<think>".into(),
            ..Default::default()
        })
        .starts_with("option `think_close`"));
        assert!(bad(ThinkFormatOptions {
            require_answer_tag: true,
            answer_open: "<think>".into(),
            ..Default::default()
        })
        .starts_with("option `answer_open`"));
        // Unused answer tags may be anything.
        assert!(ThinkFormat::new(ThinkFormatOptions {
            answer_open: "<think>".into(),
            ..Default::default()
        })
        .is_ok());
        let options: ThinkFormatOptions =
            serde_json::from_str(r#"{"require_answer_tag": true, "think_open": "<r>"}"#).unwrap();
        assert_eq!(options.think_open, "<r>");
        assert!(serde_json::from_str::<ThinkFormatOptions>(r#"{"tag": "<r>"}"#).is_err());
    }
}
