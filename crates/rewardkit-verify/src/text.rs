//! Textual answers: normalised string equality and regular-expression matches.
//!
//! # `string_match`
//!
//! [`StringMatch`] compares the completion's answer with the reference after normalising both
//! the same way, the SQuAD "exact match" recipe made configurable. The steps run in SQuAD's
//! order, each behind an option:
//!
//! 1. `case_fold` (default true): Unicode lower-casing.
//! 2. `strip_punctuation` (default false): drop ASCII punctuation and the common typographic
//!    quotes, dashes and ellipsis.
//! 3. `strip_articles` (default false): drop the words "a", "an", "the".
//! 4. `collapse_whitespace` (default true): trim, and turn every run of whitespace into one space.
//!
//! Which part of the completion is "the answer" is `extract`: `"whole"` (default, the whole
//! completion), `"boxed"` (the content of the last `\boxed{…}`), `"last_line"` (the last
//! non-blank line) or `"answer_tag"` (the content of the last `<answer>…</answer>`). When the
//! chosen part is absent the completion has no answer: it scores `incorrect`, or is unscorable
//! with `no_answer = "unscorable"`. The reference is a string, or a JSON list of strings of which
//! any may match; a missing reference is unscorable.
//!
//! # `regex_match`
//!
//! [`RegexMatch`] scores `correct` when a regular expression matches the completion (anywhere,
//! or the whole of it with `full_match = true`). The pattern is either the `pattern` option,
//! compiled once when the verifier is built, or, with `pattern_from_reference = true`, the
//! sample's reference, compiled per sample. Patterns are compiled with the `regex` crate, whose
//! matching time is linear in the text (no backtracking), under `size_limit` bytes of compiled
//! program, so neither a hostile pattern nor a hostile completion can stall a worker. A bad
//! `pattern` option is an error when building; a bad reference pattern makes that sample
//! unscorable (`reference is not a valid pattern`), never a panic.
//!
//! # Budget
//!
//! Both verifiers refuse inputs over `max_input_bytes` and spend a step per byte they read.

use std::sync::Mutex;

use regex::{Regex, RegexBuilder};
use rewardkit_core::{Exhausted, Meter, Outcome, Reference, Reward, RewardOutput, Sample};
use serde::{Deserialize, Serialize};

use crate::numeric::NoAnswer;
use crate::VerifyError;

/// Which part of a completion is compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Extract {
    /// The whole completion.
    #[default]
    Whole,
    /// The content of the last `\boxed{…}`.
    Boxed,
    /// The last line that is not blank.
    LastLine,
    /// The content of the last `<answer>…</answer>`.
    AnswerTag,
}

/// Options of [`StringMatch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StringMatchOptions {
    /// Which part of the completion is the answer (default `"whole"`).
    pub extract: Extract,
    /// Lower-case both sides (default true).
    pub case_fold: bool,
    /// Drop punctuation (default false).
    pub strip_punctuation: bool,
    /// Drop the articles "a", "an" and "the" (default false; SQuAD does).
    pub strip_articles: bool,
    /// Trim and collapse whitespace runs to one space (default true).
    pub collapse_whitespace: bool,
    /// The score of a match (default 1.0).
    pub correct: f64,
    /// The score of a mismatch, and of a missing answer under `no_answer = "incorrect"`
    /// (default 0.0).
    pub incorrect: f64,
    /// What a completion without the part `extract` names scores: `"incorrect"` (default) or
    /// `"unscorable"`.
    pub no_answer: NoAnswer,
}

impl Default for StringMatchOptions {
    fn default() -> Self {
        StringMatchOptions {
            extract: Extract::Whole,
            case_fold: true,
            strip_punctuation: false,
            strip_articles: false,
            collapse_whitespace: true,
            correct: 1.0,
            incorrect: 0.0,
            no_answer: NoAnswer::Incorrect,
        }
    }
}

/// Normalised string-equality verifier (kind `string_match`); see the module documentation.
#[derive(Clone, Debug)]
pub struct StringMatch {
    options: StringMatchOptions,
}

fn check_finite(name: &str, value: f64) -> Result<(), VerifyError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(VerifyError::invalid(name, "a finite number"))
    }
}

impl StringMatch {
    /// Builds the verifier, refusing non-finite scores.
    pub fn new(options: StringMatchOptions) -> Result<StringMatch, VerifyError> {
        check_finite("correct", options.correct)?;
        check_finite("incorrect", options.incorrect)?;
        Ok(StringMatch { options })
    }

    /// The options this verifier was built with.
    pub fn options(&self) -> &StringMatchOptions {
        &self.options
    }

    /// The part of `text` that `extract` names, if present.
    pub fn extract<'a>(&self, text: &'a str) -> Option<&'a str> {
        match self.options.extract {
            Extract::Whole => Some(text),
            Extract::LastLine => text.lines().rev().find(|line| !line.trim().is_empty()),
            Extract::Boxed => last_boxed(text),
            Extract::AnswerTag => {
                let open = text.rfind("<answer>")?;
                let content = text.get(open + "<answer>".len()..)?;
                let close = content.find("</answer>")?;
                content.get(..close)
            }
        }
    }

    /// Normalises `text` with this verifier's options.
    pub fn normalize(&self, text: &str) -> String {
        let o = &self.options;
        let mut s = if o.case_fold {
            text.to_lowercase()
        } else {
            text.to_string()
        };
        if o.strip_punctuation {
            s.retain(|c| !is_punctuation(c));
        }
        if o.strip_articles {
            s = strip_articles(&s);
        }
        if o.collapse_whitespace {
            s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        s
    }

    fn outcome(&self, sample: &Sample, meter: &mut Meter) -> Outcome {
        let references = match reference_texts(sample.reference.as_ref()) {
            Ok(references) => references,
            Err(outcome) => return outcome,
        };
        let completion = sample.completion.text();
        let checked = (|| -> Result<(), Exhausted> {
            meter.check_input(completion.len())?;
            for r in &references {
                meter.check_input(r.len())?;
            }
            let total: usize = completion.len() + references.iter().map(String::len).sum::<usize>();
            meter.step(total as u64)
        })();
        if let Err(e) = checked {
            return e.into_outcome();
        }
        let Some(answer) = self.extract(&completion) else {
            return match self.options.no_answer {
                NoAnswer::Incorrect => Outcome::scored(self.options.incorrect),
                NoAnswer::Unscorable => Outcome::unscorable("no answer found"),
            };
        };
        let answer = self.normalize(answer);
        if references.iter().any(|r| self.normalize(r) == answer) {
            Outcome::scored(self.options.correct)
        } else {
            Outcome::scored(self.options.incorrect)
        }
    }
}

impl Reward for StringMatch {
    fn kind(&self) -> &str {
        "string_match"
    }

    fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput {
        self.outcome(sample, meter).into()
    }
}

/// Replaces the words "a", "an" and "the" (any case) by a space, as SQuAD's
/// `re.sub(r"\b(a|an|the)\b", " ", text)` does.
fn strip_articles(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word_start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        if c.is_alphanumeric() || c == '_' {
            word_start.get_or_insert(i);
            continue;
        }
        if let Some(start) = word_start.take() {
            let word = &text[start..i];
            if ["a", "an", "the"]
                .iter()
                .any(|a| word.eq_ignore_ascii_case(a))
            {
                out.push(' ');
            } else {
                out.push_str(word);
            }
        }
        if i < text.len() {
            out.push(c);
        }
    }
    out
}

/// Punctuation as SQuAD strips it (ASCII), plus typographic quotes, dashes and the ellipsis.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(
            c,
            '\u{2018}'
                | '\u{2019}'
                | '\u{201c}'
                | '\u{201d}'
                | '\u{2013}'
                | '\u{2014}'
                | '\u{2026}'
        )
}

/// The content of the last `\boxed{…}` whose braces balance.
fn last_boxed(text: &str) -> Option<&str> {
    let mut limit = text.len();
    while let Some(p) = text.get(..limit)?.rfind("\\boxed{") {
        let open = p + "\\boxed".len();
        let b = text.as_bytes();
        let mut depth = 0usize;
        let mut i = open;
        while i < limit {
            match b[i] {
                b'\\' => i += 1,
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return text.get(open + 1..i);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        limit = p;
    }
    None
}

/// The reference's acceptable strings: one string, or a JSON list of strings (numbers and
/// booleans in their JSON spelling).
fn reference_texts(reference: Option<&Reference>) -> Result<Vec<String>, Outcome> {
    let Some(reference) = reference else {
        return Err(Outcome::unscorable("missing reference"));
    };
    if let Some(text) = reference.text() {
        return Ok(vec![text.into_owned()]);
    }
    let serde_json::Value::Array(items) = reference.to_json() else {
        return Err(Outcome::unscorable("reference is not text"));
    };
    let texts: Vec<String> = items
        .into_iter()
        .map(|item| match item {
            serde_json::Value::String(s) => Ok(s),
            v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => Ok(v.to_string()),
            _ => Err(Outcome::unscorable("reference list holds a non-string")),
        })
        .collect::<Result<_, _>>()?;
    if texts.is_empty() {
        return Err(Outcome::unscorable("missing reference"));
    }
    Ok(texts)
}

/// Options of [`RegexMatch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegexMatchOptions {
    /// The pattern (`regex` crate syntax); required unless `pattern_from_reference`.
    pub pattern: Option<String>,
    /// Use each sample's reference as its pattern instead of `pattern` (default false).
    pub pattern_from_reference: bool,
    /// Require the pattern to match the whole completion rather than any part (default false).
    pub full_match: bool,
    /// Match letters regardless of case (default false).
    pub case_insensitive: bool,
    /// The largest compiled pattern allowed, in bytes (default 1 MiB); bigger patterns are
    /// refused rather than compiled.
    pub size_limit: usize,
    /// The score of a match (default 1.0).
    pub correct: f64,
    /// The score of no match (default 0.0).
    pub incorrect: f64,
}

impl Default for RegexMatchOptions {
    fn default() -> Self {
        RegexMatchOptions {
            pattern: None,
            pattern_from_reference: false,
            full_match: false,
            case_insensitive: false,
            size_limit: 1 << 20,
            correct: 1.0,
            incorrect: 0.0,
        }
    }
}

/// How many compiled reference patterns [`RegexMatch`] keeps. GRPO-style data repeats one
/// reference across a group of completions, so a few recent patterns cover nearly every hit.
const PATTERN_CACHE: usize = 32;

/// Regular-expression verifier (kind `regex_match`); see the module documentation.
#[derive(Debug)]
pub struct RegexMatch {
    options: RegexMatchOptions,
    /// The compiled `pattern`, unless patterns come from references.
    regex: Option<Regex>,
    /// Recently compiled reference patterns, most recent last (`pattern_from_reference` only).
    /// A hit saves the compile but not its budget charge, so a score never depends on what
    /// other samples were scored before it.
    cache: Mutex<Vec<(String, Regex)>>,
}

impl Clone for RegexMatch {
    fn clone(&self) -> RegexMatch {
        RegexMatch {
            options: self.options.clone(),
            regex: self.regex.clone(),
            cache: Mutex::new(Vec::new()),
        }
    }
}

impl RegexMatch {
    /// Builds the verifier: checks that exactly one pattern source is given, and compiles
    /// `pattern` (an invalid or oversized pattern is an error naming `pattern`).
    pub fn new(options: RegexMatchOptions) -> Result<RegexMatch, VerifyError> {
        check_finite("correct", options.correct)?;
        check_finite("incorrect", options.incorrect)?;
        if options.size_limit == 0 {
            return Err(VerifyError::invalid(
                "size_limit",
                "a positive number of bytes",
            ));
        }
        let regex = match (&options.pattern, options.pattern_from_reference) {
            (Some(_), true) => {
                return Err(VerifyError::invalid(
                    "pattern",
                    "no pattern when pattern_from_reference is true",
                ))
            }
            (None, false) => {
                return Err(VerifyError::invalid(
                    "pattern",
                    "a regular expression (or pattern_from_reference = true)",
                ))
            }
            (Some(pattern), false) => Some(compile(pattern, &options).map_err(|e| {
                VerifyError::invalid("pattern", format!("a valid regular expression ({e})"))
            })?),
            (None, true) => None,
        };
        Ok(RegexMatch {
            options,
            regex,
            cache: Mutex::new(Vec::new()),
        })
    }

    /// Compiles a reference pattern, or returns the cached compile of the same pattern.
    fn compile_cached(&self, pattern: &str) -> Result<Regex, regex::Error> {
        // A poisoned lock only means another thread panicked mid-update of a plain Vec; the
        // entries are still whole, so keep using them.
        let lookup = |cache: &mut Vec<(String, Regex)>| {
            let at = cache.iter().position(|(p, _)| p == pattern)?;
            let entry = cache.remove(at);
            let regex = entry.1.clone();
            cache.push(entry);
            Some(regex)
        };
        if let Some(regex) = lookup(&mut self.cache.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(regex);
        }
        let regex = compile(pattern, &self.options)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() == PATTERN_CACHE {
            cache.remove(0);
        }
        cache.push((pattern.to_owned(), regex.clone()));
        Ok(regex)
    }

    /// The options this verifier was built with.
    pub fn options(&self) -> &RegexMatchOptions {
        &self.options
    }

    fn outcome(&self, sample: &Sample, meter: &mut Meter) -> Outcome {
        let completion = sample.completion.text();
        if let Err(e) = meter.check_input(completion.len()) {
            return e.into_outcome();
        }
        let per_sample;
        let regex = match &self.regex {
            Some(regex) => regex,
            None => {
                let Some(pattern) = sample.reference.as_ref().and_then(Reference::text) else {
                    return Outcome::unscorable("missing reference");
                };
                if let Err(e) = meter
                    .check_input(pattern.len())
                    .and_then(|()| meter.step(pattern.len() as u64))
                {
                    return e.into_outcome();
                }
                match self.compile_cached(&pattern) {
                    Ok(regex) => {
                        per_sample = regex;
                        &per_sample
                    }
                    Err(_) => return Outcome::unscorable("reference is not a valid pattern"),
                }
            }
        };
        // The regex crate matches in time linear in the text for a compiled program of bounded
        // size, so one step per byte is an honest account.
        if let Err(e) = meter.step(completion.len() as u64) {
            return e.into_outcome();
        }
        if regex.is_match(&completion) {
            Outcome::scored(self.options.correct)
        } else {
            Outcome::scored(self.options.incorrect)
        }
    }
}

/// Compiles a pattern under the options' size limit, anchored at both ends for `full_match`.
fn compile(pattern: &str, options: &RegexMatchOptions) -> Result<Regex, regex::Error> {
    let anchored;
    let source = if options.full_match {
        anchored = format!("^(?:{pattern})$");
        anchored.as_str()
    } else {
        pattern
    };
    RegexBuilder::new(source)
        .case_insensitive(options.case_insensitive)
        .size_limit(options.size_limit)
        .dfa_size_limit(options.size_limit)
        .build()
}

impl Reward for RegexMatch {
    fn kind(&self) -> &str {
        "regex_match"
    }

    fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput {
        self.outcome(sample, meter).into()
    }
}

#[cfg(test)]
mod tests {
    use rewardkit_core::Budget;

    use super::*;

    /// Scores `completion` against `reference` with string-match options built by `options`.
    #[track_caller]
    fn check(options: &StringMatchOptions, completion: &str, reference: &str, expected: &str) {
        let verifier = StringMatch::new(options.clone()).unwrap();
        let sample = Sample::new("", completion).with_reference(reference);
        let outcome = verifier
            .score(&sample, &mut Budget::default().meter())
            .outcome;
        assert_eq!(
            outcome.to_string(),
            expected,
            "{completion:?} against {reference:?}"
        );
    }

    fn squad() -> StringMatchOptions {
        StringMatchOptions {
            strip_punctuation: true,
            strip_articles: true,
            ..StringMatchOptions::default()
        }
    }

    #[test]
    fn normalises_like_squad() {
        let d = StringMatchOptions::default();
        check(&d, "Paris", "Paris", "1");
        check(&d, "paris", "PARIS", "1");
        check(&d, "  Paris \n", "Paris", "1");
        check(&d, "New   York", "new york", "1");
        check(&d, "New\n\tYork", "new york", "1");
        check(&d, "Paris.", "Paris", "0");
        check(&d, "The Paris", "Paris", "0");
        check(&d, "Pariss", "Paris", "0");
        check(&d, "", "", "1");
        check(&d, "", "Paris", "0");
        check(&d, "ÉCOLE", "école", "1");
        let s = squad();
        check(&s, "Paris.", "Paris", "1");
        check(&s, "The Paris!", "paris", "1");
        check(&s, "an apple", "Apple", "1");
        check(&s, "A  tale of two cities", "tale of two cities", "1");
        check(&s, "the", "", "1");
        check(&s, "theatre", "atre", "0");
        check(&s, "“Paris”", "paris", "1");
        check(&s, "rock–paper", "rockpaper", "1");
        check(&s, "U.S.A.", "usa", "1");
        let exact = StringMatchOptions {
            case_fold: false,
            collapse_whitespace: false,
            ..StringMatchOptions::default()
        };
        check(&exact, "Paris", "Paris", "1");
        check(&exact, "paris", "Paris", "0");
        check(&exact, "Paris ", "Paris", "0");
    }

    #[test]
    fn extracts_the_configured_part() {
        let boxed = StringMatchOptions {
            extract: Extract::Boxed,
            ..StringMatchOptions::default()
        };
        check(&boxed, "so \\boxed{Paris}.", "paris", "1");
        check(&boxed, "\\boxed{Lyon} no, \\boxed{Paris}", "paris", "1");
        check(&boxed, "\\boxed{\\text{Paris}}", "\\text{paris}", "1");
        check(&boxed, "\\boxed{Paris", "paris", "0");
        check(&boxed, "Paris", "paris", "0");
        let last = StringMatchOptions {
            extract: Extract::LastLine,
            ..StringMatchOptions::default()
        };
        check(&last, "thinking...\nParis\n\n", "paris", "1");
        check(&last, "Paris\nthinking", "paris", "0");
        check(&last, "", "paris", "0");
        let tag = StringMatchOptions {
            extract: Extract::AnswerTag,
            ..StringMatchOptions::default()
        };
        check(
            &tag,
            "<think>x</think><answer> Paris </answer>",
            "paris",
            "1",
        );
        check(
            &tag,
            "<answer>Lyon</answer><answer>Paris</answer>",
            "paris",
            "1",
        );
        check(&tag, "<answer>Paris", "paris", "0");
        let unscorable = StringMatchOptions {
            extract: Extract::AnswerTag,
            no_answer: NoAnswer::Unscorable,
            ..StringMatchOptions::default()
        };
        check(
            &unscorable,
            "Paris",
            "paris",
            "unscorable (no answer found)",
        );
    }

    #[test]
    fn references_may_be_lists_or_missing() {
        let verifier = StringMatch::new(StringMatchOptions::default()).unwrap();
        let score = |reference: Option<serde_json::Value>| {
            let mut sample = Sample::new("", "Paris");
            sample.reference = reference.map(Reference::Json);
            verifier
                .score(&sample, &mut Budget::default().meter())
                .outcome
                .to_string()
        };
        assert_eq!(score(Some(serde_json::json!(["Lyon", "paris"]))), "1");
        assert_eq!(score(Some(serde_json::json!(["Lyon"]))), "0");
        assert_eq!(
            score(Some(serde_json::json!([]))),
            "unscorable (missing reference)"
        );
        assert_eq!(
            score(Some(serde_json::json!([{}]))),
            "unscorable (reference list holds a non-string)"
        );
        assert_eq!(
            score(Some(serde_json::json!({"a": 1}))),
            "unscorable (reference is not text)"
        );
        assert_eq!(score(None), "unscorable (missing reference)");
        let mut sample = Sample::new("", "42");
        sample.reference = Some(Reference::Json(serde_json::json!(42)));
        assert_eq!(
            verifier
                .score(&sample, &mut Budget::default().meter())
                .outcome,
            Outcome::scored(1.0)
        );
    }

    /// Scores `completion` with a regex verifier built from `options` (reference `reference`).
    #[track_caller]
    fn check_regex(
        options: RegexMatchOptions,
        completion: &str,
        reference: Option<&str>,
        expected: &str,
    ) {
        let verifier = RegexMatch::new(options).unwrap();
        let mut sample = Sample::new("", completion);
        sample.reference = reference.map(|r| Reference::Text(r.to_string()));
        let outcome = verifier
            .score(&sample, &mut Budget::default().meter())
            .outcome;
        assert_eq!(outcome.to_string(), expected, "{completion:?}");
    }

    fn pattern(p: &str) -> RegexMatchOptions {
        RegexMatchOptions {
            pattern: Some(p.to_string()),
            ..RegexMatchOptions::default()
        }
    }

    #[test]
    fn matches_patterns() {
        check_regex(pattern(r"\d+"), "abc 123", None, "1");
        check_regex(pattern(r"\d+"), "abc", None, "0");
        check_regex(pattern(r"^yes$"), "yes", None, "1");
        check_regex(pattern("yes"), "YES", None, "0");
        check_regex(
            RegexMatchOptions {
                case_insensitive: true,
                ..pattern("yes")
            },
            "YES",
            None,
            "1",
        );
        check_regex(
            RegexMatchOptions {
                full_match: true,
                ..pattern("yes|no")
            },
            "no",
            None,
            "1",
        );
        check_regex(
            RegexMatchOptions {
                full_match: true,
                ..pattern("yes|no")
            },
            "yes!",
            None,
            "0",
        );
        check_regex(pattern("é+"), "ééé", None, "1");
        check_regex(pattern(""), "", None, "1");
        let from_reference = RegexMatchOptions {
            pattern_from_reference: true,
            ..RegexMatchOptions::default()
        };
        check_regex(
            from_reference.clone(),
            "the year 1984",
            Some(r"19\d\d"),
            "1",
        );
        check_regex(
            from_reference.clone(),
            "the year 2084",
            Some(r"19\d\d"),
            "0",
        );
        check_regex(
            from_reference.clone(),
            "x",
            Some("("),
            "unscorable (reference is not a valid pattern)",
        );
        check_regex(
            from_reference.clone(),
            "x",
            Some(r"\p{NotAClass}"),
            "unscorable (reference is not a valid pattern)",
        );
        check_regex(
            from_reference.clone(),
            "x",
            Some("a{1000}{1000}{1000}"),
            "unscorable (reference is not a valid pattern)",
        );
        check_regex(from_reference, "x", None, "unscorable (missing reference)");
    }

    #[test]
    fn reference_pattern_cache_never_changes_a_verdict() {
        // One verifier scores many samples whose patterns repeat, interleave and overflow the
        // cache; every verdict and every budget charge must match a fresh verifier's.
        let options = RegexMatchOptions {
            pattern_from_reference: true,
            full_match: true,
            ..RegexMatchOptions::default()
        };
        let shared = RegexMatch::new(options.clone()).unwrap();
        for round in 0..3 {
            for i in 0..(PATTERN_CACHE + 5) {
                let pattern = format!("n{i}|m{i}");
                for completion in [format!("n{i}"), format!("m{}", i + round), "x".to_string()] {
                    let sample =
                        Sample::new("", completion.as_str()).with_reference(pattern.as_str());
                    let mut cached_meter = Budget::default().meter();
                    let cached = shared.score(&sample, &mut cached_meter).outcome;
                    let mut fresh_meter = Budget::default().meter();
                    let fresh = RegexMatch::new(options.clone())
                        .unwrap()
                        .score(&sample, &mut fresh_meter)
                        .outcome;
                    assert_eq!(cached, fresh, "{pattern:?} on {completion:?}");
                    assert_eq!(cached_meter.steps(), fresh_meter.steps());
                    let expected = completion == format!("n{i}") || completion == format!("m{i}");
                    assert_eq!(cached, Outcome::scored(if expected { 1.0 } else { 0.0 }));
                }
            }
        }
        assert_eq!(shared.cache.lock().unwrap().len(), PATTERN_CACHE);
    }

    #[test]
    fn refuses_bad_regex_options() {
        let bad = |options: RegexMatchOptions| RegexMatch::new(options).unwrap_err().to_string();
        assert!(bad(pattern("(")).starts_with("option `pattern`: a valid regular expression"));
        assert!(bad(pattern("a{1000}{1000}{1000}")).starts_with("option `pattern`"));
        assert!(bad(RegexMatchOptions::default()).starts_with("option `pattern`"));
        assert!(bad(RegexMatchOptions {
            pattern_from_reference: true,
            ..pattern("x")
        })
        .starts_with("option `pattern`"));
        assert_eq!(
            bad(RegexMatchOptions {
                correct: f64::NAN,
                ..pattern("x")
            }),
            "option `correct`: a finite number"
        );
        assert_eq!(
            bad(RegexMatchOptions {
                size_limit: 0,
                ..pattern("x")
            }),
            "option `size_limit`: a positive number of bytes"
        );
        assert_eq!(
            StringMatch::new(StringMatchOptions {
                incorrect: f64::INFINITY,
                ..Default::default()
            })
            .unwrap_err()
            .to_string(),
            "option `incorrect`: a finite number"
        );
        let options: RegexMatchOptions =
            serde_json::from_str(r#"{"pattern": "x", "full_match": true}"#).unwrap();
        assert_eq!(RegexMatch::new(options).unwrap().kind(), "regex_match");
        assert!(serde_json::from_str::<RegexMatchOptions>(r#"{"patern": "x"}"#).is_err());
        let options: StringMatchOptions =
            serde_json::from_str(r#"{"extract": "last_line"}"#).unwrap();
        assert_eq!(options.extract, Extract::LastLine);
        assert_eq!(StringMatch::new(options).unwrap().kind(), "string_match");
        assert!(
            serde_json::from_str::<StringMatchOptions>(r#"{"extract": "first_line"}"#).is_err()
        );
    }

    #[test]
    fn budgets_are_respected() {
        let verifier = RegexMatch::new(pattern("x")).unwrap();
        let sample = Sample::new("", "y".repeat(1000));
        let budget = Budget {
            max_steps: 10,
            ..Budget::default()
        };
        assert_eq!(
            verifier.score(&sample, &mut budget.meter()).outcome,
            Outcome::TimedOut
        );
        let budget = Budget {
            max_input_bytes: 10,
            ..Budget::default()
        };
        assert_eq!(
            verifier.score(&sample, &mut budget.meter()).outcome,
            Outcome::unscorable("input too large")
        );
        let verifier = StringMatch::new(StringMatchOptions::default()).unwrap();
        let sample = sample.with_reference("y");
        assert_eq!(
            verifier.score(&sample, &mut budget.meter()).outcome,
            Outcome::unscorable("input too large")
        );
        let budget = Budget {
            max_steps: 10,
            ..Budget::default()
        };
        assert_eq!(
            verifier.score(&sample, &mut budget.meter()).outcome,
            Outcome::TimedOut
        );
    }
}
