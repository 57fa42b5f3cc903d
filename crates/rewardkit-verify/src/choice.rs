//! Multiple-choice answers: which lettered option did the completion pick?
//!
//! # What it does
//!
//! [`MultipleChoice`] (kind `multiple_choice`) reads the chosen letter from free text and scores
//! `correct` when it is the reference's letter. Models phrase a choice in many ways, so the
//! completion is read by these rules, in order; the first that finds a valid letter wins:
//!
//! 1. `\boxed{B}` (the last box; `\boxed{(B)}` and `\boxed{\text{B}}` too).
//! 2. An answer phrase: "The answer is (B)", "Answer: C", "**Answer:** B", "the correct option
//!    is C", "the correct choice is (D)", "the answer is option B" (the last such phrase that is
//!    followed by a letter).
//! 3. The whole completion is a lone choice: `B`, `(B)`, `**B**`, `B.`, or it *starts* with one
//!    that introduces the option text (`B) Paris`, `B. Paris`, `(B) Paris`, `B: Paris`).
//! 4. A marked letter: the last `**B**`, `(B)` or "option B" / "choice B".
//! 5. With `last_letter = true` (the default), the last standalone capital letter that is a
//!    valid option, skipping the article-looking ones ("A bird …": a capital followed by a
//!    lowercase word), the most lenient reading.
//!
//! A letter only counts as a word of its own: the "B" of "Bob" never does. With
//! `case_sensitive = false` (the default) the marked forms of rules 1–4 also accept lower case
//! ("the answer is (b)"); rule 5 always wants a capital, because a lone lowercase "a" is the
//! English article.
//!
//! # Reference
//!
//! The reference is a letter (`B`, `(B)`, `b`), or the text of an option: then the prompt's
//! option lines (`A) …`, `(A) …`, `A. …`, `A: …`) are read and the option whose text equals the
//! reference (ignoring case and surrounding whitespace) gives the letter. A reference that is
//! neither is unscorable (`reference is not a choice`); a missing one is unscorable (`missing
//! reference`).
//!
//! # Options
//!
//! `letters` (default `"ABCDE"`) are the valid options; MMLU-Pro needs `"ABCDEFGHIJ"`.
//! `correct`, `incorrect` and `no_answer` work as in the GSM8K verifier: by default a completion
//! that picks nothing scores `incorrect`.
//!
//! # Budget
//!
//! Each rule scans the completion once (backwards, from the end); inputs over
//! `max_input_bytes` are unscorable.

use rewardkit_core::{Exhausted, Meter, Outcome, Reward, RewardOutput, Sample};
use serde::{Deserialize, Serialize};

use crate::numeric::NoAnswer;
use crate::VerifyError;

/// One reading rule: the letter it finds in a completion's bytes.
type Rule = fn(&MultipleChoice, &[u8]) -> Option<u8>;

/// Options of [`MultipleChoice`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultipleChoiceOptions {
    /// The valid option letters, ASCII, each once (default `"ABCDE"`).
    pub letters: String,
    /// Whether the letters must be written in the case given in `letters` (default false: the
    /// marked forms also accept the other case).
    pub case_sensitive: bool,
    /// Whether, when no marked answer is found, the last standalone capital option letter
    /// counts (default true).
    pub last_letter: bool,
    /// The score of the right choice (default 1.0).
    pub correct: f64,
    /// The score of a wrong choice, and of none under `no_answer = "incorrect"` (default 0.0).
    pub incorrect: f64,
    /// What a completion that picks no option scores: `"incorrect"` (default) or
    /// `"unscorable"`.
    pub no_answer: NoAnswer,
}

impl Default for MultipleChoiceOptions {
    fn default() -> Self {
        MultipleChoiceOptions {
            letters: "ABCDE".to_string(),
            case_sensitive: false,
            last_letter: true,
            correct: 1.0,
            incorrect: 0.0,
            no_answer: NoAnswer::Incorrect,
        }
    }
}

/// Multiple-choice verifier (kind `multiple_choice`); see the module documentation.
#[derive(Clone, Debug)]
pub struct MultipleChoice {
    options: MultipleChoiceOptions,
    /// `valid[c]`: whether byte `c` is a valid letter as written (case handled on lookup).
    valid: [bool; 128],
}

impl MultipleChoice {
    /// Builds the verifier, refusing non-finite scores and an empty, non-letter or repetitive
    /// `letters`.
    pub fn new(options: MultipleChoiceOptions) -> Result<MultipleChoice, VerifyError> {
        for (name, value) in [
            ("correct", options.correct),
            ("incorrect", options.incorrect),
        ] {
            if !value.is_finite() {
                return Err(VerifyError::invalid(name, "a finite number"));
            }
        }
        let mut valid = [false; 128];
        if options.letters.is_empty() {
            return Err(VerifyError::invalid("letters", "at least one letter"));
        }
        for c in options.letters.bytes() {
            if !c.is_ascii_alphabetic() {
                return Err(VerifyError::invalid("letters", "ASCII letters only"));
            }
            let folded = if options.case_sensitive {
                c
            } else {
                c.to_ascii_uppercase()
            };
            if valid[usize::from(folded)] {
                return Err(VerifyError::invalid("letters", "each letter at most once"));
            }
            valid[usize::from(folded)] = true;
        }
        Ok(MultipleChoice { options, valid })
    }

    /// The options this verifier was built with.
    pub fn options(&self) -> &MultipleChoiceOptions {
        &self.options
    }

    /// The letter `c` stands for, in canonical case, if it is a valid option.
    fn letter(&self, c: u8) -> Option<u8> {
        let key = if self.options.case_sensitive {
            c
        } else {
            c.to_ascii_uppercase()
        };
        self.valid.get(usize::from(key)).copied()?.then_some(key)
    }

    /// A valid letter at `i` that stands as a word of its own.
    fn letter_word_at(&self, b: &[u8], i: usize) -> Option<u8> {
        let c = *b.get(i)?;
        let alone =
            (i == 0 || !is_word_byte(b[i - 1])) && b.get(i + 1).is_none_or(|&n| !is_word_byte(n));
        if alone {
            self.letter(c)
        } else {
            None
        }
    }

    /// Extracts the chosen letter (in canonical case) from a completion.
    pub fn extract(&self, text: &str, meter: &mut Meter) -> Result<Option<char>, Exhausted> {
        meter.check_input(text.len())?;
        let b = text.as_bytes();
        let rules: [Rule; 4] = [
            MultipleChoice::boxed,
            MultipleChoice::answer_phrase,
            MultipleChoice::lone_choice,
            MultipleChoice::marked_letter,
        ];
        for rule in rules {
            meter.step(b.len() as u64 + 1)?;
            if let Some(c) = rule(self, b) {
                return Ok(Some(char::from(c)));
            }
        }
        if self.options.last_letter {
            meter.step(b.len() as u64 + 1)?;
            return Ok(self.last_capital(b).map(char::from));
        }
        Ok(None)
    }

    /// The letter a short stretch of mark-up holds: `B`, `(B)`, `**B**`, `\text{B}`, `B.`.
    fn letter_in(&self, b: &[u8], start: usize, end: usize) -> Option<u8> {
        let at = skip_markup(b, start, end);
        let letter = self.letter_word_at(b, at).filter(|_| at < end)?;
        let rest = skip_closing(b, at + 1, end);
        (rest == end).then_some(letter)
    }

    fn boxed(&self, b: &[u8]) -> Option<u8> {
        let mut limit = b.len();
        while let Some(p) = rfind(b, b"\\boxed{", limit) {
            let open = p + "\\boxed".len();
            if let Some(close) = matching_brace(b, open, limit) {
                if let Some(letter) = self.letter_in(b, open + 1, close) {
                    return Some(letter);
                }
            }
            limit = p;
        }
        None
    }

    fn answer_phrase(&self, b: &[u8]) -> Option<u8> {
        const MARKERS: [&[u8]; 3] = [b"answer", b"option", b"choice"];
        let mut p = b.len();
        while p > 0 {
            p -= 1;
            let Some(marker) = MARKERS.iter().find(|m| starts_with_ignore_case(b, p, m)) else {
                continue;
            };
            if p > 0 && is_word_byte(b[p - 1]) {
                continue;
            }
            let mut q = skip_inline(b, p + marker.len());
            // "answer:", "answer is", "answer would be" (and the same after option/choice).
            let mut marked = false;
            if q < b.len() && matches!(b[q], b':' | b'=') {
                q += 1;
                marked = true;
            } else {
                for word in [&b"is"[..], b"would be", b"will be", b"should be"] {
                    if starts_with_ignore_case(b, q, word)
                        && b.get(q + word.len()).is_none_or(|&c| !is_word_byte(c))
                    {
                        q += word.len();
                        marked = true;
                        break;
                    }
                }
                if marked {
                    q = skip_inline(b, q);
                    if q < b.len() && b[q] == b':' {
                        q += 1;
                    }
                }
            }
            if !marked {
                continue;
            }
            q = skip_markup(b, q, b.len());
            // "the answer is option B", "the answer is choice (C)".
            for word in [&b"option"[..], b"choice", b"letter"] {
                if starts_with_ignore_case(b, q, word) {
                    q = skip_markup(b, q + word.len(), b.len());
                }
            }
            if let Some(letter) = self.letter_word_at(b, q) {
                return Some(letter);
            }
        }
        None
    }

    fn lone_choice(&self, b: &[u8]) -> Option<u8> {
        let start = skip_markup(b, 0, b.len());
        let letter = self.letter_word_at(b, start)?;
        let after = start + 1;
        let rest = skip_closing(b, after, b.len());
        if rest == b.len() {
            return Some(letter);
        }
        // `B) Paris`, `B. Paris`, `B: Paris`, `(B) Paris`: the letter introduces its option.
        let introduced = after < b.len()
            && (matches!(b[after], b')' | b':' | b']')
                || (b[after] == b'.' && b.get(after + 1).is_none_or(u8::is_ascii_whitespace)));
        introduced.then_some(letter)
    }

    fn marked_letter(&self, b: &[u8]) -> Option<u8> {
        let mut i = b.len();
        while i > 0 {
            i -= 1;
            let Some(letter) = self.letter_word_at(b, i) else {
                continue;
            };
            let bold = i >= 2 && &b[i - 2..i] == b"**" && b.get(i + 1..i + 3) == Some(&b"**"[..]);
            let parenthesised = i >= 1 && b[i - 1] == b'(' && b.get(i + 1) == Some(&b')');
            let named = {
                let mut j = i;
                while j > 0 && b[j - 1] == b' ' {
                    j -= 1;
                }
                (j >= 6
                    && (ends_with_ignore_case(&b[..j], b"option")
                        || ends_with_ignore_case(&b[..j], b"choice")))
                    && j < i
            };
            if bold || parenthesised || named {
                return Some(letter);
            }
        }
        None
    }

    fn last_capital(&self, b: &[u8]) -> Option<u8> {
        let mut i = b.len();
        while i > 0 {
            i -= 1;
            let c = b[i];
            if !c.is_ascii_uppercase() {
                continue;
            }
            let Some(letter) = self.letter_word_at(b, i) else {
                continue;
            };
            // "A bird", "I think": a capital followed by a lowercase word reads as prose.
            let prose =
                b.get(i + 1) == Some(&b' ') && b.get(i + 2).is_some_and(u8::is_ascii_lowercase);
            if !prose {
                return Some(letter);
            }
        }
        None
    }

    /// The expected letter from a reference text, reading the prompt's options if the reference
    /// is an option's text.
    fn expected(&self, reference: &str, prompt: &str) -> Option<u8> {
        let b = reference.as_bytes();
        if let Some(letter) = self.letter_in(b, 0, b.len()) {
            return Some(letter);
        }
        let wanted = reference.trim();
        if wanted.is_empty() {
            return None;
        }
        for line in prompt.lines() {
            let l = line.trim_start().as_bytes();
            let (at, open) = if l.first() == Some(&b'(') {
                (1, true)
            } else {
                (0, false)
            };
            let Some(&c) = l.get(at) else { continue };
            let Some(letter) = self.letter(c) else {
                continue;
            };
            let sep = l.get(at + 1).copied();
            let ok = if open {
                sep == Some(b')')
            } else {
                matches!(sep, Some(b')' | b'.' | b':'))
            };
            if !ok {
                continue;
            }
            let text = line.trim_start().get(at + 2..).unwrap_or("").trim();
            if text.eq_ignore_ascii_case(wanted) || text.to_lowercase() == wanted.to_lowercase() {
                return Some(letter);
            }
        }
        None
    }

    fn outcome(&self, sample: &Sample, meter: &mut Meter) -> Outcome {
        let Some(reference) = sample.reference.as_ref().and_then(|r| r.text()) else {
            return Outcome::unscorable("missing reference");
        };
        let completion = sample.completion.text();
        for len in [completion.len(), reference.len()] {
            if let Err(e) = meter.check_input(len) {
                return e.into_outcome();
            }
        }
        let prompt = sample.prompt.text();
        if let Err(e) = meter.check_input(prompt.len()) {
            return e.into_outcome();
        }
        if let Err(e) = meter.step((reference.len() + prompt.len()) as u64) {
            return e.into_outcome();
        }
        let Some(expected) = self.expected(&reference, &prompt) else {
            return Outcome::unscorable("reference is not a choice");
        };
        match self.extract(&completion, meter) {
            Err(e) => e.into_outcome(),
            Ok(None) => match self.options.no_answer {
                NoAnswer::Incorrect => Outcome::scored(self.options.incorrect),
                NoAnswer::Unscorable => Outcome::unscorable("no answer found"),
            },
            Ok(Some(c)) if c == char::from(expected) => Outcome::scored(self.options.correct),
            Ok(Some(_)) => Outcome::scored(self.options.incorrect),
        }
    }
}

impl Reward for MultipleChoice {
    fn kind(&self) -> &str {
        "multiple_choice"
    }

    fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput {
        self.outcome(sample, meter).into()
    }
}

fn is_word_byte(c: u8) -> bool {
    // Non-ASCII bytes belong to letters of other scripts as often as not: treat them as word
    // characters so that "Bé" is not a lone "B".
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fn starts_with_ignore_case(b: &[u8], i: usize, pattern: &[u8]) -> bool {
    b.get(i..i.saturating_add(pattern.len()))
        .is_some_and(|s| s.eq_ignore_ascii_case(pattern))
}

fn ends_with_ignore_case(b: &[u8], pattern: &[u8]) -> bool {
    b.len() >= pattern.len() && b[b.len() - pattern.len()..].eq_ignore_ascii_case(pattern)
}

/// Skips spaces, tabs and emphasis on the same line.
fn skip_inline(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'*' | b'_') {
        i += 1;
    }
    i
}

/// Skips whitespace and opening mark-up: emphasis, brackets, quotes, `$`, and LaTeX commands
/// with their opening brace (`\text{`, `\mathrm{`, `\(`).
fn skip_markup(b: &[u8], mut i: usize, end: usize) -> usize {
    while i < end {
        let c = b[i];
        if c.is_ascii_whitespace()
            || matches!(
                c,
                b'*' | b'_' | b'(' | b'[' | b'{' | b'"' | b'\'' | b'`' | b'$' | b':'
            )
        {
            i += 1;
        } else if c == b'\\' {
            let mut j = i + 1;
            while j < end && b[j].is_ascii_alphabetic() {
                j += 1;
            }
            if j == i + 1 {
                j += 1; // `\(`, `\[`
            }
            i = j;
        } else {
            break;
        }
    }
    i.min(end)
}

/// Skips whitespace and closing mark-up after a letter: emphasis, brackets, quotes, `$`, `.`,
/// LaTeX `\)` and `\]`.
fn skip_closing(b: &[u8], mut i: usize, end: usize) -> usize {
    while i < end {
        let c = b[i];
        if c.is_ascii_whitespace()
            || matches!(
                c,
                b'*' | b'_' | b')' | b']' | b'}' | b'"' | b'\'' | b'`' | b'$' | b'.'
            )
        {
            i += 1;
        } else if c == b'\\' && matches!(b.get(i + 1), Some(b')' | b']')) {
            i += 2;
        } else {
            break;
        }
    }
    i.min(end)
}

/// The last occurrence of `needle` starting before `limit` and ending within the slice.
fn rfind(b: &[u8], needle: &[u8], limit: usize) -> Option<usize> {
    let last_start = limit.min(b.len().checked_sub(needle.len())?.saturating_add(1));
    (0..last_start).rev().find(|&i| b[i..].starts_with(needle))
}

/// The position of the `}` closing the `{` at `open`, searching no further than `limit`.
fn matching_brace(b: &[u8], open: usize, limit: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < limit.min(b.len()) {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use rewardkit_core::{Budget, Prompt};

    use super::*;

    #[track_caller]
    fn check(text: &str, expected: &str) {
        check_with(MultipleChoiceOptions::default(), text, expected);
    }

    #[track_caller]
    fn check_with(options: MultipleChoiceOptions, text: &str, expected: &str) {
        let verifier = MultipleChoice::new(options).expect("valid options");
        let got = verifier
            .extract(text, &mut Budget::default().meter())
            .expect("within budget")
            .map_or_else(|| "none".to_string(), String::from);
        assert_eq!(got, expected, "extracting from {text:?}");
    }

    #[track_caller]
    fn check_score(prompt: &str, completion: &str, reference: Option<&str>, expected: &str) {
        let verifier = MultipleChoice::new(MultipleChoiceOptions::default()).unwrap();
        let mut sample = Sample::new(prompt, completion);
        sample.reference = reference.map(|r| rewardkit_core::Reference::Text(r.to_string()));
        let outcome = verifier
            .score(&sample, &mut Budget::default().meter())
            .outcome;
        assert_eq!(
            outcome.to_string(),
            expected,
            "{completion:?} against {reference:?}"
        );
    }

    #[test]
    fn extracts_the_chosen_letter() {
        check("The answer is (B)", "B");
        check("The answer is B.", "B");
        check("the answer is (b)", "B");
        check("Answer: C", "C");
        check("**Answer:** C", "C");
        check("**Answer: C**", "C");
        check("Final answer: D", "D");
        check("The correct option is C.", "C");
        check("The correct choice is (D) because it fits.", "D");
        check("The answer is option B", "B");
        check("The answer is choice (e)", "E");
        check("Answer:\n\nB", "B");
        check("The answer would be A", "A");
        check("\\boxed{D}", "D");
        check("$\\boxed{D}$", "D");
        check("\\boxed{(D)}", "D");
        check("\\boxed{\\text{D}}", "D");
        check("\\boxed{D} but then \\boxed{A}", "A");
        check("\\boxed{42}. The answer is C", "C");
        check("B", "B");
        check(" b ", "B");
        check("(B)", "B");
        check("**B**", "B");
        check("B.", "B");
        check("[C]", "C");
        check("B) Paris", "B");
        check("(B) Paris", "B");
        check("B. Paris is the capital", "B");
        check("B: Paris", "B");
        check("I think **C** is right", "C");
        check("I pick (C), not the others", "C");
        check("I would go with option D here", "D");
        check("Between A and C, I choose C", "C");
        check("A bird in the hand. So C", "C");
        check("First A, then the winner is E", "E");
        check("The answer is A. Answer: B", "B");
        check("Answer: A\nWait, I re-checked. Answer: D", "D");
    }

    #[test]
    fn finds_nothing_where_there_is_no_choice() {
        check("", "none");
        check("   ", "none");
        check("I don't know", "none");
        check("A bird sang", "none");
        check("Bob and Alice", "none");
        check("The answer is F", "none");
        check("The answer is 42", "none");
        check("(F)", "none");
        check("\\boxed{", "none");
        check("\\boxed{}", "none");
        check("Bé", "none");
        check("é B", "B");
        check("answer:", "none");
        check("\u{1F600}", "none");
    }

    #[test]
    fn options_change_the_letters_and_case() {
        let ten = MultipleChoiceOptions {
            letters: "ABCDEFGHIJ".to_string(),
            ..MultipleChoiceOptions::default()
        };
        check_with(ten.clone(), "The answer is (J)", "J");
        check_with(ten, "The answer is (K)", "none");
        let strict = MultipleChoiceOptions {
            case_sensitive: true,
            ..MultipleChoiceOptions::default()
        };
        check_with(strict.clone(), "the answer is (b)", "none");
        check_with(strict, "the answer is (B)", "B");
        let no_fallback = MultipleChoiceOptions {
            last_letter: false,
            ..MultipleChoiceOptions::default()
        };
        check_with(no_fallback.clone(), "Between A and C, I choose C", "none");
        check_with(no_fallback, "Answer: C", "C");
    }

    #[test]
    fn scores_against_references() {
        check_score("", "The answer is (B)", Some("B"), "1");
        check_score("", "The answer is (B)", Some("(B)"), "1");
        check_score("", "The answer is (B)", Some("b"), "1");
        check_score("", "The answer is (B)", Some("C"), "0");
        check_score("", "nothing", Some("C"), "0");
        check_score(
            "",
            "The answer is (B)",
            None,
            "unscorable (missing reference)",
        );
        check_score(
            "",
            "The answer is (B)",
            Some(""),
            "unscorable (reference is not a choice)",
        );
        check_score(
            "",
            "The answer is (B)",
            Some("Z"),
            "unscorable (reference is not a choice)",
        );
        let prompt = "Capital of France?\nA) Lyon\nB) Paris\nC) Nice";
        check_score(prompt, "The answer is (B)", Some("Paris"), "1");
        check_score(prompt, "The answer is (B)", Some(" paris "), "1");
        check_score(prompt, "The answer is (A)", Some("Paris"), "0");
        check_score(
            prompt,
            "The answer is (A)",
            Some("Rome"),
            "unscorable (reference is not a choice)",
        );
        check_score("(A) one\n(B) two", "(A)", Some("one"), "1");
        check_score("A. one\nB. two", "B", Some("two"), "1");
    }

    #[test]
    fn reads_chat_prompts_and_json_references() {
        let verifier = MultipleChoice::new(MultipleChoiceOptions::default()).unwrap();
        let mut sample = Sample::new("", "Answer: B");
        sample.prompt = Prompt::Chat(vec![rewardkit_core::Message::new("user", "A) x\nB) y")]);
        sample.reference = Some(rewardkit_core::Reference::Json(serde_json::json!("y")));
        let outcome = verifier
            .score(&sample, &mut Budget::default().meter())
            .outcome;
        assert_eq!(outcome, Outcome::scored(1.0));
        sample.reference = Some(rewardkit_core::Reference::Json(serde_json::json!(["B"])));
        let outcome = verifier
            .score(&sample, &mut Budget::default().meter())
            .outcome;
        assert_eq!(outcome, Outcome::unscorable("missing reference"));
    }

    #[test]
    fn no_answer_may_be_unscorable() {
        let verifier = MultipleChoice::new(MultipleChoiceOptions {
            no_answer: NoAnswer::Unscorable,
            ..MultipleChoiceOptions::default()
        })
        .unwrap();
        let sample = Sample::new("", "no idea").with_reference("A");
        let outcome = verifier
            .score(&sample, &mut Budget::default().meter())
            .outcome;
        assert_eq!(outcome, Outcome::unscorable("no answer found"));
    }

    #[test]
    fn refuses_bad_options() {
        let bad =
            |options: MultipleChoiceOptions| MultipleChoice::new(options).unwrap_err().to_string();
        assert_eq!(
            bad(MultipleChoiceOptions {
                correct: f64::NAN,
                ..Default::default()
            }),
            "option `correct`: a finite number"
        );
        assert_eq!(
            bad(MultipleChoiceOptions {
                letters: String::new(),
                ..Default::default()
            }),
            "option `letters`: at least one letter"
        );
        assert_eq!(
            bad(MultipleChoiceOptions {
                letters: "AB1".into(),
                ..Default::default()
            }),
            "option `letters`: ASCII letters only"
        );
        assert_eq!(
            bad(MultipleChoiceOptions {
                letters: "ABa".into(),
                ..Default::default()
            }),
            "option `letters`: each letter at most once"
        );
        assert!(MultipleChoice::new(MultipleChoiceOptions {
            letters: "ABa".into(),
            case_sensitive: true,
            ..Default::default()
        })
        .is_ok());
        let options: MultipleChoiceOptions =
            serde_json::from_str(r#"{"letters": "ABCD", "last_letter": false}"#).unwrap();
        assert_eq!(options.letters, "ABCD");
        assert!(serde_json::from_str::<MultipleChoiceOptions>(r#"{"letter": "AB"}"#).is_err());
        assert_eq!(
            MultipleChoice::new(options).unwrap().kind(),
            "multiple_choice"
        );
    }

    #[test]
    fn adversarial_inputs_stay_bounded() {
        let verifier = MultipleChoice::new(MultipleChoiceOptions::default()).unwrap();
        for text in [
            "answer is ".repeat(50_000),
            "\\boxed{".repeat(50_000),
            "(".repeat(100_000),
            "B".repeat(100_000),
            "é".repeat(100_000),
        ] {
            let mut meter = Budget::default().meter();
            assert!(verifier.extract(&text, &mut meter).is_ok());
        }
        let sample = Sample::new("", "x".repeat(1000)).with_reference("A");
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
    }
}
