//! Length and repetition rewards: penalties that shape *how much* a policy writes rather than
//! whether it is right.
//!
//! # Units
//!
//! Every verifier here measures the completion in one [`LengthUnit`], chosen by the `unit`
//! option:
//!
//! - `chars`: Unicode scalar values (`"é"` is one, whatever its UTF-8 length);
//! - `words`: runs of non-whitespace separated by Unicode whitespace (Python's `str.split()`,
//!   which TRL uses, apart from a few ASCII control characters Python also treats as space);
//! - `tokens`: the ids a Hugging Face tokenizer produces, with `tokenizer` naming its
//!   `tokenizer.json`. The file is loaded once when the verifier is built; a missing or invalid
//!   file is an error naming the path. Special tokens are not added (only what the policy wrote
//!   is counted), and any truncation or padding configured in the file is switched off, since
//!   either would falsify the count. Token units need the crate's `tokenizer` cargo feature (on
//!   by default).
//!
//! Length limits are meaningless without their unit, so the length verifiers have no default
//! unit: a spec must say which one `max_length` is counted in.
//!
//! # Verifiers
//!
//! - [`SoftOverlong`] (kind `soft_overlong`): DAPO's soft overlong punishment (Yu et al. 2025,
//!   "DAPO: An Open-Source LLM Reinforcement Learning System at Scale", §3.4, overlong reward
//!   shaping). With
//!   `L_max = max_length` and `L_cache = cache`, a completion of length `|y|` scores `0` when
//!   `|y| ≤ L_max − L_cache`, `((L_max − L_cache) − |y|) / L_cache` (falling linearly from 0 to
//!   −1) when `L_max − L_cache < |y| ≤ L_max`, and `−1` beyond `L_max`. It is meant to be added
//!   to a correctness reward, so that truncated answers are discouraged gradually rather than by
//!   a cliff.
//! - [`LengthCap`] (kind `length_cap`): a hard cap: `within` (default 0) up to `max_length`,
//!   `over` (default −1) beyond.
//! - [`Repetition`] (kind `repetition`): the n-gram repetition penalty TRL users know from
//!   open-r1's `get_repetition_penalty_reward`: the completion is lowercased (by default), cut
//!   into units (words by default), and with `U` distinct n-grams among `T` n-grams the score is
//!   `(1 − U/T) · max_penalty`. Completions with fewer than `ngram_size` units score `0`.
//!   `max_penalty ≤ 0` is the score of a text that repeats one n-gram forever.
//!
//! None of them has sub-components, and none reads the reference.
//!
//! # Bounds
//!
//! Inputs over the budget's byte limit are unscorable. Measuring a text costs one step per byte
//! (plus one per token); the repetition penalty adds `ngram_size` steps per n-gram, charged
//! before the n-grams are hashed. A tokenizer cannot be interrupted half-way, so its cost is
//! charged before it runs and bounded by the input-size limit rather than by the step count. A
//! tokenizer that fails (or panics) on an input yields [`Outcome::Failed`], never a panic.

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::path::{Path, PathBuf};
#[cfg(feature = "tokenizer")]
use std::sync::Arc;

use rewardkit_core::{Meter, Outcome, Reward, RewardOutput, Sample};
use serde::Deserialize;

use crate::VerifyError;

/// What a length is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthUnit {
    /// Unicode scalar values.
    Chars,
    /// Whitespace-separated words.
    Words,
    /// Tokens of a Hugging Face tokenizer (needs the `tokenizer` option).
    Tokens,
}

impl fmt::Display for LengthUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LengthUnit::Chars => "chars",
            LengthUnit::Words => "words",
            LengthUnit::Tokens => "tokens",
        })
    }
}

/// A way to measure text: a [`LengthUnit`] plus, for tokens, the loaded tokenizer. Cheap to
/// clone (the tokenizer is shared).
#[derive(Clone)]
pub struct LengthMeasure {
    unit: LengthUnit,
    tokenizer_path: Option<PathBuf>,
    #[cfg(feature = "tokenizer")]
    tokenizer: Option<Arc<tokenizers::Tokenizer>>,
}

impl fmt::Debug for LengthMeasure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The tokenizer itself (a whole vocabulary) is left out on purpose.
        f.debug_struct("LengthMeasure")
            .field("unit", &self.unit)
            .field("tokenizer", &self.tokenizer_path)
            .finish()
    }
}

impl LengthMeasure {
    /// Builds a measure, loading the tokenizer for token units. `tokenizer` is required with
    /// [`LengthUnit::Tokens`] and refused with the other units (where it would be silently
    /// ignored, which is more likely a mistake than an intention).
    pub fn new(unit: LengthUnit, tokenizer: Option<&Path>) -> Result<LengthMeasure, VerifyError> {
        match (unit, tokenizer) {
            (LengthUnit::Tokens, None) => Err(VerifyError::invalid(
                "tokenizer",
                "the path of a Hugging Face tokenizer.json, required with `unit = \"tokens\"`",
            )),
            (LengthUnit::Chars | LengthUnit::Words, Some(_)) => Err(VerifyError::invalid(
                "tokenizer",
                format!("no tokenizer with `unit = \"{unit}\"` (it is only used with \"tokens\")"),
            )),
            (LengthUnit::Chars | LengthUnit::Words, None) => Ok(LengthMeasure {
                unit,
                tokenizer_path: None,
                #[cfg(feature = "tokenizer")]
                tokenizer: None,
            }),
            (LengthUnit::Tokens, Some(path)) => LengthMeasure::tokens(path),
        }
    }

    #[cfg(feature = "tokenizer")]
    fn tokens(path: &Path) -> Result<LengthMeasure, VerifyError> {
        let failed = |why: String| {
            VerifyError::invalid(
                "tokenizer",
                format!(
                    "a readable Hugging Face tokenizer.json, but `{}` could not be loaded: {why}",
                    path.display()
                ),
            )
        };
        let mut tokenizer =
            tokenizers::Tokenizer::from_file(path).map_err(|e| failed(e.to_string()))?;
        tokenizer
            .with_truncation(None)
            .map_err(|e| failed(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(LengthMeasure {
            unit: LengthUnit::Tokens,
            tokenizer_path: Some(path.to_path_buf()),
            tokenizer: Some(Arc::new(tokenizer)),
        })
    }

    #[cfg(not(feature = "tokenizer"))]
    fn tokens(_path: &Path) -> Result<LengthMeasure, VerifyError> {
        Err(VerifyError::invalid(
            "unit",
            "\"chars\" or \"words\": this build of rewardkit-verify lacks the `tokenizer` feature",
        ))
    }

    /// The unit this measure counts in.
    pub fn unit(&self) -> LengthUnit {
        self.unit
    }

    /// The length of `text` in this measure's unit, charging the meter one step per byte (plus
    /// one per token). The error is the outcome to report (time-out or tokenizer failure).
    pub fn length(&self, text: &str, meter: &mut Meter) -> Result<usize, Outcome> {
        meter.step(text.len() as u64)?;
        match self.unit {
            LengthUnit::Chars => Ok(text.chars().count()),
            LengthUnit::Words => Ok(count_words(text)),
            LengthUnit::Tokens => Ok(self.token_ids(text, meter)?.len()),
        }
    }

    /// The token ids of `text` (no special tokens added); the caller has charged for the bytes.
    #[cfg(feature = "tokenizer")]
    fn token_ids(&self, text: &str, meter: &mut Meter) -> Result<Vec<u32>, Outcome> {
        let tokenizer = self
            .tokenizer
            .as_ref()
            .expect("a token measure always holds its tokenizer; this is a bug");
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tokenizer.encode_fast(text, false)
        }));
        let ids = match encoded {
            Ok(Ok(encoding)) => encoding.get_ids().to_vec(),
            Ok(Err(e)) => return Err(Outcome::failed(format!("tokenizer: {e}"))),
            Err(_) => return Err(Outcome::failed("tokenizer panicked")),
        };
        meter.step(ids.len() as u64)?;
        Ok(ids)
    }

    #[cfg(not(feature = "tokenizer"))]
    fn token_ids(&self, _text: &str, _meter: &mut Meter) -> Result<Vec<u32>, Outcome> {
        // `new` refuses token units in this build, so this is never reached.
        Err(Outcome::failed("token units need the `tokenizer` feature"))
    }
}

/// The number of whitespace-separated words, exactly as `text.split_whitespace().count()`
/// (Unicode `White_Space`), with a fast path for ASCII bytes, which are most of any text.
fn count_words(text: &str) -> usize {
    let bytes = text.as_bytes();
    if text.is_ascii() {
        // Branch-free over bytes: a word starts where a non-space follows a space (or the start).
        let mut count = 0;
        let mut previous_white = true;
        for &b in bytes {
            let white = ASCII_WHITE[usize::from(b)];
            count += usize::from(previous_white & !white);
            previous_white = white;
        }
        return count;
    }
    let mut count = 0;
    let mut in_word = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (white, width) = if b.is_ascii() {
            (ASCII_WHITE[usize::from(b)], 1)
        } else {
            // `i` is always at a character boundary: it advances by whole characters.
            match text.get(i..).and_then(|rest| rest.chars().next()) {
                Some(c) => (c.is_whitespace(), c.len_utf8()),
                None => (false, 1),
            }
        };
        if white {
            in_word = false;
        } else if !in_word {
            in_word = true;
            count += 1;
        }
        i += width;
    }
    count
}

/// The ASCII members of `char::is_whitespace`: `\t`, `\n`, `\x0B`, `\x0C`, `\r` and space.
const ASCII_WHITE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x09;
    while b <= 0x0D {
        table[b] = true;
        b += 1;
    }
    table[0x20] = true;
    table
};

/// Measures the completion of `sample` after the input-size check.
fn completion_length(
    measure: &LengthMeasure,
    sample: &Sample,
    meter: &mut Meter,
) -> Result<usize, Outcome> {
    let text = sample.completion.text();
    meter.check_input(text.len())?;
    measure.length(&text, meter)
}

/// Options of the [`SoftOverlong`] verifier.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftOverlongOptions {
    /// `L_max`: the length at and beyond which the penalty is −1. Required.
    pub max_length: usize,
    /// `L_cache`: the width of the band below `max_length` over which the penalty ramps from 0
    /// to −1. Must be positive and at most `max_length`. Required (DAPO used 4096 tokens with
    /// `L_max` = 20480).
    pub cache: usize,
    /// The unit lengths are counted in: `chars`, `words` or `tokens`. Required.
    pub unit: LengthUnit,
    /// Path of a Hugging Face `tokenizer.json`; required with `unit = "tokens"`, refused
    /// otherwise.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
}

/// DAPO's soft overlong punishment (kind `soft_overlong`); see the module documentation.
#[derive(Clone, Debug)]
pub struct SoftOverlong {
    max_length: usize,
    cache: usize,
    measure: LengthMeasure,
}

impl SoftOverlong {
    /// Builds the verifier, checking `0 < cache ≤ max_length` and loading any tokenizer.
    pub fn new(options: SoftOverlongOptions) -> Result<SoftOverlong, VerifyError> {
        if options.cache == 0 {
            return Err(VerifyError::invalid("cache", "a positive length"));
        }
        if options.cache > options.max_length {
            return Err(VerifyError::invalid(
                "cache",
                format!(
                    "at most `max_length` ({}), got {}",
                    options.max_length, options.cache
                ),
            ));
        }
        Ok(SoftOverlong {
            max_length: options.max_length,
            cache: options.cache,
            measure: LengthMeasure::new(options.unit, options.tokenizer.as_deref())?,
        })
    }

    /// The penalty for a completion of `length` units.
    pub fn penalty(&self, length: usize) -> f64 {
        let free = self.max_length - self.cache;
        if length <= free {
            0.0
        } else if length <= self.max_length {
            -((length - free) as f64) / self.cache as f64
        } else {
            -1.0
        }
    }
}

impl Reward for SoftOverlong {
    fn kind(&self) -> &str {
        "soft_overlong"
    }

    fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput {
        match completion_length(&self.measure, sample, meter) {
            Ok(length) => Outcome::scored(self.penalty(length)).into(),
            Err(outcome) => outcome.into(),
        }
    }
}

/// Options of the [`LengthCap`] verifier.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthCapOptions {
    /// The longest completion that still scores `within`. Required.
    pub max_length: usize,
    /// The score of a completion longer than `max_length`. Default −1.
    #[serde(default = "default_over")]
    pub over: f64,
    /// The score of a completion of at most `max_length`. Default 0.
    #[serde(default)]
    pub within: f64,
    /// The unit lengths are counted in: `chars`, `words` or `tokens`. Required.
    pub unit: LengthUnit,
    /// Path of a Hugging Face `tokenizer.json`; required with `unit = "tokens"`, refused
    /// otherwise.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
}

fn default_over() -> f64 {
    -1.0
}

/// A plain length cap (kind `length_cap`): `within` up to `max_length`, `over` beyond.
#[derive(Clone, Debug)]
pub struct LengthCap {
    max_length: usize,
    over: f64,
    within: f64,
    measure: LengthMeasure,
}

impl LengthCap {
    /// Builds the verifier, checking that both scores are finite and loading any tokenizer.
    pub fn new(options: LengthCapOptions) -> Result<LengthCap, VerifyError> {
        for (key, value) in [("over", options.over), ("within", options.within)] {
            if !value.is_finite() {
                return Err(VerifyError::invalid(
                    key,
                    format!("a finite number, got {value}"),
                ));
            }
        }
        Ok(LengthCap {
            max_length: options.max_length,
            over: options.over,
            within: options.within,
            measure: LengthMeasure::new(options.unit, options.tokenizer.as_deref())?,
        })
    }
}

impl Reward for LengthCap {
    fn kind(&self) -> &str {
        "length_cap"
    }

    fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput {
        match completion_length(&self.measure, sample, meter) {
            Ok(length) if length <= self.max_length => Outcome::scored(self.within).into(),
            Ok(_) => Outcome::scored(self.over).into(),
            Err(outcome) => outcome.into(),
        }
    }
}

/// Options of the [`Repetition`] verifier.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepetitionOptions {
    /// The n-gram length, in units. At least 1. Default 3 (open-r1's default).
    pub ngram_size: usize,
    /// The score of a completion made of one n-gram repeated; the penalty scales linearly
    /// towards 0 for a completion with no repeated n-gram. At most 0. Default −1.
    pub max_penalty: f64,
    /// The units n-grams are made of: `words` (TRL), `chars` or `tokens`. Default `words`.
    pub unit: LengthUnit,
    /// Path of a Hugging Face `tokenizer.json`; required with `unit = "tokens"`, refused
    /// otherwise.
    pub tokenizer: Option<PathBuf>,
    /// Whether the completion is lowercased before it is cut into units, so that "The" and
    /// "the" repeat each other (TRL does). Default `true`.
    pub lowercase: bool,
}

impl Default for RepetitionOptions {
    fn default() -> Self {
        RepetitionOptions {
            ngram_size: 3,
            max_penalty: -1.0,
            unit: LengthUnit::Words,
            tokenizer: None,
            lowercase: true,
        }
    }
}

/// TRL's n-gram repetition penalty (kind `repetition`); see the module documentation.
#[derive(Clone, Debug)]
pub struct Repetition {
    ngram_size: usize,
    max_penalty: f64,
    lowercase: bool,
    measure: LengthMeasure,
}

impl Repetition {
    /// Builds the verifier, checking `ngram_size ≥ 1` and `max_penalty ≤ 0` (finite), and
    /// loading any tokenizer.
    pub fn new(options: RepetitionOptions) -> Result<Repetition, VerifyError> {
        if options.ngram_size == 0 {
            return Err(VerifyError::invalid("ngram_size", "at least 1"));
        }
        if !(options.max_penalty.is_finite() && options.max_penalty <= 0.0) {
            return Err(VerifyError::invalid(
                "max_penalty",
                format!("a finite number at most 0, got {}", options.max_penalty),
            ));
        }
        Ok(Repetition {
            ngram_size: options.ngram_size,
            max_penalty: options.max_penalty,
            lowercase: options.lowercase,
            measure: LengthMeasure::new(options.unit, options.tokenizer.as_deref())?,
        })
    }

    fn penalty(&self, sample: &Sample, meter: &mut Meter) -> Result<f64, Outcome> {
        let text = sample.completion.text();
        meter.check_input(text.len())?;
        meter.step(text.len() as u64)?;
        let text = if self.lowercase {
            std::borrow::Cow::Owned(text.to_lowercase())
        } else {
            text
        };
        let n = self.ngram_size;
        let repeated = match self.measure.unit() {
            LengthUnit::Words => {
                let words: Vec<&str> = text.split_whitespace().collect();
                repeated_fraction(&words, n, meter)?
            }
            LengthUnit::Chars => {
                let chars: Vec<char> = text.chars().collect();
                repeated_fraction(&chars, n, meter)?
            }
            LengthUnit::Tokens => {
                let ids = self.measure.token_ids(&text, meter)?;
                repeated_fraction(&ids, n, meter)?
            }
        };
        // Written so that no repetition is +0, not −0.
        Ok(if repeated == 0.0 {
            0.0
        } else {
            repeated * self.max_penalty
        })
    }
}

/// `1 − distinct n-grams / all n-grams`, or 0 with fewer than `n` items. Charges `n` steps per
/// n-gram before hashing them.
fn repeated_fraction<T: Hash + Eq>(
    items: &[T],
    n: usize,
    meter: &mut Meter,
) -> Result<f64, rewardkit_core::Exhausted> {
    if n == 0 || items.len() < n {
        return Ok(0.0);
    }
    let total = items.len() - n + 1;
    meter.step((total as u64).saturating_mul(n as u64))?;
    let distinct: HashSet<&[T]> = items.windows(n).collect();
    Ok(1.0 - distinct.len() as f64 / total as f64)
}

impl Reward for Repetition {
    fn kind(&self) -> &str {
        "repetition"
    }

    fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput {
        match self.penalty(sample, meter) {
            Ok(value) => Outcome::scored(value).into(),
            Err(outcome) => outcome.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use rewardkit_core::{Budget, Completion, Message};
    use serde_json::json;

    use super::*;

    #[test]
    fn word_count_matches_split_whitespace() {
        let cases = [
            "",
            " ",
            "a",
            " a ",
            "a b\tc\nd\re\x0Bf\x0Cg",
            "a\u{85}b",
            "a\u{a0}b",
            "é è\u{2003}ü",
            "\u{3000}日本 語\u{3000}",
            "a\u{200b}b",
            "  lots   of\n\n space  ",
            "\u{feff}x y",
        ];
        for text in cases {
            assert_eq!(
                count_words(text),
                text.split_whitespace().count(),
                "{text:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn word_count_agrees_on_any_string(text in "\\PC*|[ a\t\u{85}\u{a0}\u{2028}é]*") {
            proptest::prop_assert_eq!(count_words(&text), text.split_whitespace().count());
        }
    }

    fn score(reward: &dyn Reward, completion: &str) -> Outcome {
        reward
            .score(&Sample::new("", completion), &mut Budget::default().meter())
            .outcome
    }

    fn soft(max_length: usize, cache: usize, unit: LengthUnit) -> SoftOverlong {
        SoftOverlong::new(SoftOverlongOptions {
            max_length,
            cache,
            unit,
            tokenizer: None,
        })
        .expect("valid options")
    }

    fn cap(max_length: usize, unit: LengthUnit) -> LengthCap {
        LengthCap::new(LengthCapOptions {
            max_length,
            over: -1.0,
            within: 0.0,
            unit,
            tokenizer: None,
        })
        .expect("valid options")
    }

    fn repetition(ngram_size: usize, max_penalty: f64) -> Repetition {
        Repetition::new(RepetitionOptions {
            ngram_size,
            max_penalty,
            ..RepetitionOptions::default()
        })
        .expect("valid options")
    }

    /// Checks a score to 1e-12.
    fn check(reward: &dyn Reward, completion: &str, expected: f64) {
        let outcome = score(reward, completion);
        let value = outcome
            .value()
            .unwrap_or_else(|| panic!("{completion:?}: not scored: {outcome}"));
        assert!(
            (value - expected).abs() < 1e-12,
            "{completion:?}: got {value}, expected {expected}"
        );
    }

    #[test]
    fn soft_overlong_follows_dapo() {
        // L_max = 10, L_cache = 4: free up to 6, then −1/4 per char, −1 beyond 10.
        let reward = soft(10, 4, LengthUnit::Chars);
        check(&reward, "", 0.0);
        check(&reward, "abcdef", 0.0);
        check(&reward, "abcdefg", -0.25);
        check(&reward, "abcdefgh", -0.5);
        check(&reward, "abcdefghi", -0.75);
        check(&reward, "abcdefghij", -1.0);
        check(&reward, "abcdefghijk", -1.0);
        check(&reward, &"x".repeat(10_000), -1.0);
        // Characters, not bytes.
        check(&reward, "éééééé", 0.0);
        check(&reward, "ééééééé", -0.25);
        // cache = max_length: everything non-empty is penalised.
        let all = soft(4, 4, LengthUnit::Chars);
        check(&all, "", 0.0);
        check(&all, "a", -0.25);
        check(&all, "abcd", -1.0);
        // Words.
        let words = soft(4, 2, LengthUnit::Words);
        check(&words, "one two", 0.0);
        check(&words, "  one\ttwo\nthree ", -0.5);
        check(&words, "one two three four", -1.0);
        check(&words, "one two three four five", -1.0);
        assert_eq!(words.kind(), "soft_overlong");
        assert!(words.component_names().is_empty());
    }

    #[test]
    fn soft_overlong_penalty_is_monotone_and_bounded() {
        let reward = soft(100, 30, LengthUnit::Chars);
        let mut last = 0.0;
        for length in 0..200 {
            let p = reward.penalty(length);
            assert!((-1.0..=0.0).contains(&p));
            assert!(p <= last);
            last = p;
        }
        assert_eq!(reward.penalty(70), 0.0);
        assert_eq!(reward.penalty(85), -0.5);
        assert_eq!(reward.penalty(100), -1.0);
    }

    #[test]
    fn length_cap() {
        let reward = cap(3, LengthUnit::Words);
        check(&reward, "", 0.0);
        check(&reward, "a b c", 0.0);
        check(&reward, "a b c d", -1.0);
        let chars = cap(3, LengthUnit::Chars);
        check(&chars, "abc", 0.0);
        check(&chars, "abcd", -1.0);
        let custom = LengthCap::new(LengthCapOptions {
            max_length: 0,
            over: -0.5,
            within: 1.0,
            unit: LengthUnit::Chars,
            tokenizer: None,
        })
        .unwrap();
        check(&custom, "", 1.0);
        check(&custom, " ", -0.5);
        assert_eq!(custom.kind(), "length_cap");
    }

    #[test]
    fn repetition_follows_trl() {
        let reward = repetition(3, -1.0);
        check(&reward, "", 0.0);
        check(&reward, "too short", 0.0);
        // 3 trigrams, all distinct.
        check(&reward, "the cat sat on", 0.0);
        // "a b a b a b": 4 trigrams, 2 distinct → 1 − 2/4.
        check(&reward, "a b a b a b", -0.5);
        // Lowercased: "A b a B a b" is the same text.
        check(&reward, "A b a B a b", -0.5);
        // One word repeated 10 times: 8 trigrams, 1 distinct.
        check(&reward, &"go ".repeat(10), -(1.0 - 1.0 / 8.0));
        // Scaled by max_penalty.
        check(&repetition(3, -2.0), "a b a b a b", -1.0);
        check(&repetition(3, 0.0), "a b a b a b", 0.0);
        // Unigrams: "x y x": 3 unigrams, 2 distinct.
        check(&repetition(1, -1.0), "x y x", -(1.0 - 2.0 / 3.0));
        // Exactly n words: one n-gram, nothing repeated.
        check(&reward, "a a a", 0.0);
        // Whitespace of any kind separates words.
        check(&reward, "a\tb\na  b\r\na b", -0.5);
        // No repetition is +0, not −0.
        let zero = score(&reward, "the cat sat on").value().unwrap();
        assert!(zero.is_sign_positive());
        assert_eq!(reward.kind(), "repetition");
    }

    #[test]
    fn repetition_over_chars_and_case() {
        let chars = Repetition::new(RepetitionOptions {
            ngram_size: 2,
            unit: LengthUnit::Chars,
            ..RepetitionOptions::default()
        })
        .unwrap();
        // "abab": bigrams ab, ba, ab → 1 − 2/3.
        check(&chars, "abab", -(1.0 - 2.0 / 3.0));
        check(&chars, "a", 0.0);
        check(&chars, "éé", 0.0);
        check(&chars, "ééé", -0.5);
        let keep_case = Repetition::new(RepetitionOptions {
            ngram_size: 1,
            lowercase: false,
            ..RepetitionOptions::default()
        })
        .unwrap();
        check(&keep_case, "The the", 0.0);
        check(&repetition(1, -1.0), "The the", -0.5);
    }

    #[test]
    fn chat_completions_are_measured_on_assistant_text() {
        let sample = Sample {
            completion: Completion::Chat(vec![
                Message::new("user", "a very long question indeed"),
                Message::new("assistant", "short"),
            ]),
            ..Sample::default()
        };
        let output = cap(1, LengthUnit::Words).score(&sample, &mut Budget::default().meter());
        assert_eq!(output.outcome, Outcome::scored(0.0));
    }

    #[test]
    fn budgets_are_respected() {
        let small_input = Budget {
            max_input_bytes: 4,
            ..Budget::default()
        };
        let few_steps = Budget {
            max_steps: 10,
            timeout: None,
            ..Budget::default()
        };
        let soft = soft(10, 4, LengthUnit::Chars);
        let rep = repetition(3, -1.0);
        let text = Sample::new("", "a b c d e f g");
        for reward in [&soft as &dyn Reward, &rep] {
            let output = reward.score(&text, &mut small_input.meter());
            assert_eq!(output.outcome, Outcome::unscorable("input too large"));
            let output = reward.score(&text, &mut few_steps.meter());
            assert_eq!(output.outcome, Outcome::TimedOut);
        }
        // A long n-gram size is charged per n-gram: 1000 words with n = 500 is 501·500 steps.
        let long = Repetition::new(RepetitionOptions {
            ngram_size: 500,
            ..RepetitionOptions::default()
        })
        .unwrap();
        let words = Sample::new("", "w ".repeat(1000));
        let budget = Budget {
            max_steps: 200_000,
            timeout: None,
            ..Budget::default()
        };
        assert_eq!(
            long.score(&words, &mut budget.meter()).outcome,
            Outcome::TimedOut
        );
        let mut meter = Budget::unlimited().meter();
        let output = long.score(&words, &mut meter);
        assert_eq!(output.outcome, Outcome::scored(-(1.0 - 1.0 / 501.0)));
        assert_eq!(meter.steps(), 2000 + 501 * 500);
    }

    #[test]
    fn options_are_validated() {
        let invalid = |result: Result<(), VerifyError>, key: &str| {
            let error = result.expect_err("should be refused");
            assert!(error.to_string().contains(key), "{error}");
        };
        let soft_options = |max_length, cache| SoftOverlongOptions {
            max_length,
            cache,
            unit: LengthUnit::Chars,
            tokenizer: None,
        };
        invalid(SoftOverlong::new(soft_options(10, 0)).map(drop), "cache");
        invalid(SoftOverlong::new(soft_options(10, 11)).map(drop), "cache");
        assert!(SoftOverlong::new(soft_options(0, 0)).is_err());
        for (over, within) in [(f64::NAN, 0.0), (-1.0, f64::INFINITY)] {
            let result = LengthCap::new(LengthCapOptions {
                max_length: 3,
                over,
                within,
                unit: LengthUnit::Chars,
                tokenizer: None,
            });
            assert!(result.is_err());
        }
        invalid(
            Repetition::new(RepetitionOptions {
                ngram_size: 0,
                ..RepetitionOptions::default()
            })
            .map(drop),
            "ngram_size",
        );
        for max_penalty in [0.5, f64::NAN, f64::NEG_INFINITY] {
            invalid(
                Repetition::new(RepetitionOptions {
                    max_penalty,
                    ..RepetitionOptions::default()
                })
                .map(drop),
                "max_penalty",
            );
        }
        // Tokens need a tokenizer; other units refuse one.
        invalid(
            LengthMeasure::new(LengthUnit::Tokens, None).map(drop),
            "tokenizer",
        );
        invalid(
            LengthMeasure::new(LengthUnit::Words, Some(Path::new("tokenizer.json"))).map(drop),
            "tokenizer",
        );
    }

    #[test]
    fn options_deserialise() {
        let options: SoftOverlongOptions =
            serde_json::from_value(json!({"max_length": 20480, "cache": 4096, "unit": "chars"}))
                .unwrap();
        assert_eq!(options.cache, 4096);
        assert_eq!(options.unit, LengthUnit::Chars);
        // Required fields and unknown keys.
        assert!(serde_json::from_value::<SoftOverlongOptions>(
            json!({"max_length": 10, "cache": 4})
        )
        .is_err());
        assert!(serde_json::from_value::<SoftOverlongOptions>(
            json!({"max_length": 10, "cache": 4, "unit": "chars", "extra": 1})
        )
        .is_err());
        assert!(serde_json::from_value::<SoftOverlongOptions>(
            json!({"max_length": -10, "cache": 4, "unit": "chars"})
        )
        .is_err());
        let options: LengthCapOptions =
            serde_json::from_value(json!({"max_length": 5, "unit": "words"})).unwrap();
        assert_eq!((options.over, options.within), (-1.0, 0.0));
        assert!(serde_json::from_value::<LengthCapOptions>(
            json!({"max_length": 5, "unit": "bytes"})
        )
        .is_err());
        let options: RepetitionOptions = serde_json::from_value(json!({})).unwrap();
        assert_eq!(options, RepetitionOptions::default());
        let options: RepetitionOptions =
            serde_json::from_value(json!({"ngram_size": 2, "lowercase": false})).unwrap();
        assert_eq!(options.ngram_size, 2);
        assert!(!options.lowercase);
    }

    #[cfg(feature = "tokenizer")]
    mod tokens {
        use super::*;

        /// Writes a tiny word-level tokenizer (whitespace pre-tokenizer, which also splits
        /// punctuation from words) and returns its directory and path.
        pub(crate) fn tiny_tokenizer() -> (tempfile::TempDir, PathBuf) {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("tokenizer.json");
            let tokenizer = json!({
                "version": "1.0",
                "truncation": {"direction": "Right", "max_length": 2, "strategy": "LongestFirst",
                               "stride": 0},
                "padding": null,
                "added_tokens": [],
                "normalizer": null,
                "pre_tokenizer": {"type": "Whitespace"},
                "post_processor": null,
                "decoder": null,
                "model": {
                    "type": "WordLevel",
                    "vocab": {"[UNK]": 0, "hello": 1, "world": 2, ",": 3, "!": 4},
                    "unk_token": "[UNK]"
                }
            });
            std::fs::write(&path, tokenizer.to_string()).expect("write tokenizer");
            (dir, path)
        }

        #[test]
        fn counts_tokens_with_a_tokenizer_json() {
            let (_dir, path) = tiny_tokenizer();
            let measure = LengthMeasure::new(LengthUnit::Tokens, Some(&path)).unwrap();
            let mut meter = Budget::default().meter();
            // Truncation in the file (max_length 2) is switched off.
            for (text, tokens) in [
                ("", 0),
                ("hello", 1),
                ("hello, world!", 4),
                ("hello world hello", 3),
                ("unknown words here", 3),
                ("!!!", 1),
            ] {
                assert_eq!(measure.length(text, &mut meter), Ok(tokens), "{text:?}");
            }
            let reward = SoftOverlong::new(SoftOverlongOptions {
                max_length: 4,
                cache: 2,
                unit: LengthUnit::Tokens,
                tokenizer: Some(path.clone()),
            })
            .unwrap();
            // "hello, world" is 3 tokens (2 words, 12 chars): −1/2.
            check(&reward, "hello, world", -0.5);
            check(&reward, "hello world", 0.0);

            // Repetition over token ids: "hello, hello, hello" = hello , hello , hello:
            // bigrams (hello ,) (, hello) (hello ,) (, hello) → 2 distinct of 4.
            let rep = Repetition::new(RepetitionOptions {
                ngram_size: 2,
                unit: LengthUnit::Tokens,
                tokenizer: Some(path),
                ..RepetitionOptions::default()
            })
            .unwrap();
            check(&rep, "hello, hello, hello", -0.5);
            // Lowercasing happens before tokenising: HELLO becomes a known word.
            check(&rep, "HELLO hello", 0.0);
            assert!(format!("{rep:?}").contains("tokenizer.json"));
        }

        #[test]
        fn bad_tokenizer_files_are_errors_naming_the_path() {
            let dir = tempfile::tempdir().unwrap();
            let missing = dir.path().join("absent").join("tokenizer.json");
            let error = LengthMeasure::new(LengthUnit::Tokens, Some(&missing)).unwrap_err();
            let message = error.to_string();
            assert!(message.contains("tokenizer"), "{message}");
            assert!(
                message.contains(&missing.display().to_string()),
                "{message}"
            );
            assert!(message.contains("tokenizer.json"), "{message}");

            let junk = dir.path().join("junk.json");
            std::fs::write(&junk, "{\"model\": 42}").unwrap();
            let message = LengthMeasure::new(LengthUnit::Tokens, Some(&junk))
                .unwrap_err()
                .to_string();
            assert!(message.contains("junk.json"), "{message}");

            let not_json = dir.path().join("binary.json");
            std::fs::write(&not_json, [0xff, 0xfe, 0x00]).unwrap();
            assert!(LengthMeasure::new(LengthUnit::Tokens, Some(&not_json)).is_err());
            assert!(LengthMeasure::new(LengthUnit::Tokens, Some(dir.path())).is_err());
        }
    }
}
