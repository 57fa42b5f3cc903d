//! GSM8K-style numeric answers: find the final number in a completion, compare it exactly.
//!
//! # What it does
//!
//! [`Gsm8k`] (kind `gsm8k`) reads the final answer of a completion and of the reference, turns
//! both into an exact [`Number`], and scores `correct` when they are equal. The peers' rule
//! (verl's `gsm8k.py`) looks only for `#### N` and compares strings, so `\boxed{18}`, "The answer
//! is 18", `$18.00` and `1,000` against `1000` all score zero; this verifier reads them all and
//! still does very little work per call (hand-written scanning from the end of the text, no
//! regular expressions, no allocation for numbers below 2^128).
//!
//! # Extraction
//!
//! The answer is looked for by the [`Strategy`]s in `strategies`, in that order; the first one
//! that finds a number wins. Each marker strategy looks at its *last* marker first and walks
//! backwards, so a completion that quotes an earlier "answer" and then gives its own is read by
//! its own:
//!
//! - `hashes`: `#### N`, the GSM8K dataset's own form. The number must come right after the
//!   marker (spaces, `$`, `**` and similar mark-up may come between), so a markdown heading
//!   `#### Step 2` does not read as 2.
//! - `boxed`: `\boxed{N}` (and `\fbox{N}`), the LaTeX convention of maths-tuned models. The box
//!   must close; its content is read after its last `=` (`\boxed{x = 5}` is 5).
//! - `answer_line`: a line starting with `A: N`, the form of the GSM8K model-solution files.
//! - `answer_phrase`: "the answer is N", "final answer: N", "Answer: N", "**Answer:** N" (case
//!   does not matter). Words may come between the phrase and the number ("the answer is that she
//!   makes $18"); the sentence (up to a newline or a full stop) is read after its last `=`, so
//!   "the answer is 3 + 15 = 18" is 18.
//! - `last_number`: the last number anywhere in the text, verl's "flexible" mode.
//!
//! After the number comes its *tail*. Units and words ("18 dollars", "$18 per day",
//! `18\text{ eggs}`) are fine; an arithmetic continuation (`5 * 2`, `10 - 3`, `4 \times 2`) means
//! the marker was followed by an expression, not an answer, and the marker does not count.
//!
//! # Normalisation
//!
//! A number is read with an optional sign (`-`, `+`, or the unicode minus `−`), an optional
//! currency sign (`$` or `\$`, before or after the sign), digits with optional thousands
//! separators (`1,000`, LaTeX `1{,}000` and `1\,000`; a separator must be followed by exactly
//! three digits), an optional decimal part (`18.00` is 18, `.5` is 0.5), an optional fraction
//! (`3/4`, `\frac{3}{4}`, `\dfrac`, `\tfrac`) and an optional percent sign (`%`, `\%`), which is
//! dropped: GSM8K asks "what percentage …" and stores the answer `25`, so `25%` must equal `25`.
//!
//! Values are exact: a decimal is a `u128` mantissa and a power of ten (or, past 2^128, its digit
//! string), a fraction is reduced and turned into a decimal when its denominator allows it, so
//! `0.5 == 1/2 == \frac{2}{4}` and `1/3` stays `1/3`. There is no float tolerance because none is
//! needed. Fractions whose parts do not fit in a `u128` are not read as fractions. Not supported
//! (on purpose, to stay small and exact): scientific notation, mixed numbers (`1 1/2`), number
//! words ("eighteen").
//!
//! # Reference
//!
//! The reference may be a bare number (`18`, `1,000`, `$18.00`, `3/4`), a full GSM8K worked
//! answer ending in `#### N` or `A: N` (read with the same strategies), or a JSON list of such
//! values (any one of them is accepted). A missing reference is unscorable (`missing
//! reference`); a reference with no readable number is unscorable (`reference has no number`):
//! that is a data problem, never the policy's fault, so it must not become a reward.
//!
//! # Scores
//!
//! `correct` (default 1.0) for a match; `incorrect` (default 0.0) for a wrong answer; if
//! `format_score` is set, a wrong answer that was at least found scores that instead (verl's
//! `format_score`). A completion with no answer at all is, for RL, a wrong answer: by default it
//! scores `incorrect`; with `no_answer = "unscorable"` it is reported as unscorable (`no answer
//! found`) for pipelines that want to count such cases separately.
//!
//! # Budget
//!
//! Every byte scanned and every digit read is a step; inputs over `max_input_bytes` are
//! unscorable. Each strategy's backward search visits every byte at most a constant number of
//! times (a marker's region ends where the later marker, already examined, begins), so the work
//! is linear in the input whatever it contains.

use std::fmt;

use rewardkit_core::{Exhausted, Meter, Outcome, Reference, Reward, RewardOutput, Sample};
use serde::{Deserialize, Serialize};

use crate::VerifyError;

// ---------------------------------------------------------------------------------------------
// Exact numbers
// ---------------------------------------------------------------------------------------------

/// An exact number read from text: a decimal of any length or a reduced fraction.
///
/// Every value has exactly one representation (a canonical form), so equality of values is
/// structural equality: `18`, `18.00`, `$18` and `36/2` are all the same `Number`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Number {
    negative: bool,
    repr: Repr,
}

/// The canonical forms. A terminating value is always a decimal; a decimal whose mantissa fits
/// in a `u128` is always `Decimal`; only non-terminating fractions are `Ratio`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Repr {
    /// `mantissa × 10^exponent`, the mantissa without trailing zeros (zero is `0 × 10^0`).
    Decimal { mantissa: u128, exponent: i64 },
    /// Like `Decimal` for mantissas past `u128`: ASCII digits without leading or trailing zeros.
    BigDecimal { digits: Box<str>, exponent: i64 },
    /// `numerator / denominator` in lowest terms; the denominator has a prime factor other than
    /// 2 and 5 (otherwise the value would be a decimal).
    Ratio { numerator: u128, denominator: u128 },
}

impl Number {
    /// Parses a string that is exactly one number (surrounding whitespace, a currency sign and a
    /// percent sign allowed), e.g. `"1,000"`, `"-$18.00"`, `"3/4"`, `"\frac{1}{2}"`, `"25%"`.
    /// Anything else, including units, gives `None`.
    pub fn parse(text: &str) -> Option<Number> {
        let mut meter = rewardkit_core::Budget::unlimited().meter();
        let b = text.as_bytes();
        let start = skip_space(b, 0, b.len());
        let token = next_number(b, start, b.len(), start, &mut meter).ok()??;
        let rest = skip_space(b, token.end, b.len());
        (token.start == start && rest == b.len()).then_some(token.number)
    }

    /// Zero.
    pub fn zero() -> Number {
        Number {
            negative: false,
            repr: Repr::Decimal {
                mantissa: 0,
                exponent: 0,
            },
        }
    }

    /// An integer.
    pub fn from_i128(value: i128) -> Number {
        Number::decimal(value < 0, value.unsigned_abs(), 0)
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// A canonical decimal from a sign, a mantissa and a power of ten.
    fn decimal(negative: bool, mut mantissa: u128, mut exponent: i64) -> Number {
        if mantissa == 0 {
            return Number::zero();
        }
        while mantissa.is_multiple_of(10) {
            mantissa /= 10;
            exponent = exponent.saturating_add(1);
        }
        Number {
            negative,
            repr: Repr::Decimal { mantissa, exponent },
        }
    }

    /// The value as an unsigned fraction `(numerator, denominator)` if both fit in a `u128`.
    fn as_fraction(&self) -> Option<(u128, u128)> {
        match &self.repr {
            Repr::Decimal { mantissa, exponent } => {
                let scale = pow10(exponent.unsigned_abs())?;
                if *exponent >= 0 {
                    Some((mantissa.checked_mul(scale)?, 1))
                } else {
                    Some((*mantissa, scale))
                }
            }
            Repr::BigDecimal { .. } => None,
            Repr::Ratio {
                numerator,
                denominator,
            } => Some((*numerator, *denominator)),
        }
    }

    /// `self / other` in canonical form; `None` when dividing by zero or when the parts do not
    /// fit in a `u128`.
    fn divide(&self, other: &Number) -> Option<Number> {
        let (n1, d1) = self.as_fraction()?;
        let (n2, d2) = other.as_fraction()?;
        if n2 == 0 {
            return None;
        }
        // Cross-reduce before multiplying to keep the products small.
        let g1 = gcd(n1, n2).max(1);
        let g2 = gcd(d1, d2).max(1);
        let numerator = (n1 / g1).checked_mul(d2 / g2)?;
        let denominator = (d1 / g2).checked_mul(n2 / g1)?;
        Number::ratio(self.negative != other.negative, numerator, denominator)
    }

    /// A canonical number from a sign and an unsigned fraction (denominator non-zero).
    fn ratio(negative: bool, numerator: u128, denominator: u128) -> Option<Number> {
        if denominator == 0 {
            return None;
        }
        if numerator == 0 {
            return Some(Number::zero());
        }
        let g = gcd(numerator, denominator);
        let (numerator, denominator) = (numerator / g, denominator / g);
        let (mut rest, mut twos, mut fives) = (denominator, 0u32, 0u32);
        while rest % 2 == 0 {
            rest /= 2;
            twos += 1;
        }
        while rest % 5 == 0 {
            rest /= 5;
            fives += 1;
        }
        if rest != 1 {
            return Some(Number {
                negative,
                repr: Repr::Ratio {
                    numerator,
                    denominator,
                },
            });
        }
        // A terminating fraction: scale it to a power-of-ten denominator.
        let k = twos.max(fives);
        let multiplier = 2u128
            .checked_pow(k - twos)?
            .checked_mul(5u128.checked_pow(k - fives)?)?;
        let mantissa = numerator.checked_mul(multiplier)?;
        Some(Number::decimal(negative, mantissa, -i64::from(k)))
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        match &self.repr {
            Repr::Decimal { mantissa, exponent } => {
                write_decimal(f, &mantissa.to_string(), *exponent)
            }
            Repr::BigDecimal { digits, exponent } => write_decimal(f, digits, *exponent),
            Repr::Ratio {
                numerator,
                denominator,
            } => write!(f, "{numerator}/{denominator}"),
        }
    }
}

/// Writes `digits × 10^exponent` in plain notation, or in `e` notation when that would take
/// more than a few dozen zeros.
fn write_decimal(f: &mut fmt::Formatter<'_>, digits: &str, exponent: i64) -> fmt::Result {
    const MAX_PLAIN_ZEROS: i64 = 40;
    if exponent >= 0 {
        if exponent > MAX_PLAIN_ZEROS {
            return write!(f, "{digits}e{exponent}");
        }
        f.write_str(digits)?;
        for _ in 0..exponent {
            f.write_str("0")?;
        }
        return Ok(());
    }
    let len = digits.len() as i64;
    let point = len + exponent;
    if point > 0 {
        let (int, frac) = digits.split_at(point as usize);
        write!(f, "{int}.{frac}")
    } else if -point > MAX_PLAIN_ZEROS {
        write!(f, "{digits}e{exponent}")
    } else {
        f.write_str("0.")?;
        for _ in 0..-point {
            f.write_str("0")?;
        }
        f.write_str(digits)
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn pow10(k: u64) -> Option<u128> {
    10u128.checked_pow(u32::try_from(k).ok()?)
}

/// Accumulates the digits of a decimal into a canonical mantissa and exponent without
/// allocating until the mantissa outgrows a `u128`.
struct DecimalBuilder {
    mantissa: u128,
    big: Option<String>,
    /// Zeros seen after the last non-zero digit (not yet known to be significant).
    pending_zeros: u64,
    fraction_digits: u64,
}

impl DecimalBuilder {
    fn new() -> DecimalBuilder {
        DecimalBuilder {
            mantissa: 0,
            big: None,
            pending_zeros: 0,
            fraction_digits: 0,
        }
    }

    fn push(&mut self, digit: u8, fractional: bool) {
        if fractional {
            self.fraction_digits += 1;
        }
        if digit == 0 {
            if self.mantissa != 0 || self.big.is_some() {
                self.pending_zeros += 1;
            }
            return;
        }
        if let Some(big) = &mut self.big {
            push_zeros(big, self.pending_zeros);
            big.push(char::from(b'0' + digit));
            self.pending_zeros = 0;
            return;
        }
        let small = pow10(self.pending_zeros)
            .and_then(|scale| self.mantissa.checked_mul(scale))
            .and_then(|m| m.checked_mul(10))
            .and_then(|m| m.checked_add(u128::from(digit)));
        match small {
            Some(m) => self.mantissa = m,
            None => {
                let mut big = self.mantissa.to_string();
                push_zeros(&mut big, self.pending_zeros);
                big.push(char::from(b'0' + digit));
                self.big = Some(big);
            }
        }
        self.pending_zeros = 0;
    }

    fn finish(self, negative: bool) -> Number {
        let exponent =
            i64::try_from(i128::from(self.pending_zeros) - i128::from(self.fraction_digits))
                .unwrap_or(if self.pending_zeros > self.fraction_digits {
                    i64::MAX
                } else {
                    i64::MIN
                });
        match self.big {
            Some(digits) => Number {
                negative,
                repr: Repr::BigDecimal {
                    digits: digits.into_boxed_str(),
                    exponent,
                },
            },
            None => Number::decimal(negative, self.mantissa, exponent),
        }
    }
}

fn push_zeros(s: &mut String, n: u64) {
    for _ in 0..n {
        s.push('0');
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// A number found in text, with the byte range it covers (prefix and suffix included).
#[derive(Debug)]
struct Token {
    number: Number,
    start: usize,
    end: usize,
}

const UNICODE_MINUS: &[u8] = "\u{2212}".as_bytes();

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn skip_space(b: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Whether `b[i..]` starts with `pattern`.
fn starts_with_at(b: &[u8], i: usize, pattern: &[u8]) -> bool {
    b.get(i..i.saturating_add(pattern.len())) == Some(pattern)
}

/// The length of a LaTeX fraction command (`\frac{`, `\dfrac{`, `\tfrac{`) at `i`, if any.
fn frac_command_at(b: &[u8], i: usize) -> Option<usize> {
    [&b"\\frac{"[..], b"\\dfrac{", b"\\tfrac{"]
        .into_iter()
        .find(|p| starts_with_at(b, i, p))
        .map(<[u8]>::len)
}

/// Finds the first number starting at or after `from` and ending by `end`. A sign or currency
/// sign just before the digits is part of the number, but the search never looks before
/// `floor`.
fn next_number(
    b: &[u8],
    from: usize,
    end: usize,
    floor: usize,
    meter: &mut Meter,
) -> Result<Option<Token>, Exhausted> {
    let end = end.min(b.len());
    let mut i = from;
    while i < end {
        let c = b[i];
        let starts_decimal = c.is_ascii_digit()
            || (c == b'.'
                && i + 1 < end
                && b[i + 1].is_ascii_digit()
                && (i == 0 || !is_word_byte(b[i - 1])));
        let found = if starts_decimal {
            read_decimal_token(b, i, end, floor, meter)?
        } else if c == b'\\' && frac_command_at(b, i).is_some() {
            read_frac_token(b, i, end, floor, meter)?
        } else {
            None
        };
        if let Some(token) = found {
            meter.step((i - from) as u64)?;
            return Ok(Some(token));
        }
        i += 1;
    }
    meter.step((end.saturating_sub(from)) as u64)?;
    Ok(None)
}

/// The start of the sign-and-currency prefix before position `i`, and whether it is negative.
fn prefix_before(b: &[u8], i: usize, floor: usize) -> (usize, bool) {
    let mut start = i;
    if start > floor && b[start - 1] == b'$' {
        start -= 1;
        if start > floor && b[start - 1] == b'\\' {
            start -= 1;
        }
    }
    let sign_len = if start > floor && (b[start - 1] == b'-' || b[start - 1] == b'+') {
        1
    } else if start >= floor + UNICODE_MINUS.len()
        && &b[start - UNICODE_MINUS.len()..start] == UNICODE_MINUS
    {
        UNICODE_MINUS.len()
    } else {
        0
    };
    if sign_len > 0 {
        let sign_at = start - sign_len;
        // `16-3` is a subtraction, not a negative three; `= -3`, `(-3` and `x=-3` are negative.
        let binary = sign_at > 0 && {
            let before = b[sign_at - 1];
            is_word_byte(before) || before == b')' || before == b'.' || before == b'%'
        };
        if !binary {
            let negative = b[sign_at] != b'+';
            // A currency sign may also come before the minus: `$-5`.
            let mut s = sign_at;
            if s > floor && b[s - 1] == b'$' {
                s -= 1;
                if s > floor && b[s - 1] == b'\\' {
                    s -= 1;
                }
            }
            return (s, negative);
        }
    }
    (start, false)
}

/// Reads digits (with thousands separators when the first group allows them) and an optional
/// decimal part starting at `i`; returns the builder and the end.
fn read_digits(
    b: &[u8],
    mut i: usize,
    end: usize,
    meter: &mut Meter,
) -> Result<(DecimalBuilder, usize), Exhausted> {
    let start = i;
    let mut builder = DecimalBuilder::new();
    let first_group_start = i;
    while i < end && b[i].is_ascii_digit() {
        builder.push(b[i] - b'0', false);
        i += 1;
    }
    if i - first_group_start <= 3 && i > first_group_start {
        // Thousands separators: `,`, `{,}` and `\,`, each followed by exactly three digits.
        loop {
            let sep_len = if starts_with_at(b, i, b",") {
                1
            } else if starts_with_at(b, i, b"{,}") || starts_with_at(b, i, b"\\,") {
                if starts_with_at(b, i, b"{,}") {
                    3
                } else {
                    2
                }
            } else {
                0
            };
            if sep_len == 0 {
                break;
            }
            let g = i + sep_len;
            let is_group = g + 3 <= end
                && b[g..g + 3].iter().all(u8::is_ascii_digit)
                && !(g + 3 < end && b[g + 3].is_ascii_digit());
            if !is_group {
                break;
            }
            for &d in &b[g..g + 3] {
                builder.push(d - b'0', false);
            }
            i = g + 3;
        }
    }
    if i + 1 < end && b[i] == b'.' && b[i + 1].is_ascii_digit() {
        i += 1;
        while i < end && b[i].is_ascii_digit() {
            builder.push(b[i] - b'0', true);
            i += 1;
        }
    }
    meter.step((i - start) as u64)?;
    Ok((builder, i))
}

/// Skips a percent sign (`%` or `\%`) at `i`.
fn skip_percent(b: &[u8], i: usize, end: usize) -> usize {
    if i < end && b[i] == b'%' {
        i + 1
    } else if i + 1 < end && b[i] == b'\\' && b[i + 1] == b'%' {
        i + 2
    } else {
        i
    }
}

/// Reads a decimal (and an optional `/denominator`) whose first digit or point is at `i`.
fn read_decimal_token(
    b: &[u8],
    i: usize,
    end: usize,
    floor: usize,
    meter: &mut Meter,
) -> Result<Option<Token>, Exhausted> {
    let (start, negative) = prefix_before(b, i, floor);
    let (builder, mut pos) = read_digits(b, i, end, meter)?;
    let mut number = builder.finish(negative);
    // A plain fraction `3/4`: a slash directly followed by a decimal.
    if pos + 1 < end && b[pos] == b'/' && b[pos + 1].is_ascii_digit() {
        let (denominator, after) = read_digits(b, pos + 1, end, meter)?;
        if let Some(value) = number.divide(&denominator.finish(false)) {
            number = value;
            pos = after;
        }
    }
    let pos = skip_percent(b, pos, end);
    Ok(Some(Token {
        number,
        start,
        end: pos,
    }))
}

/// Reads `\frac{A}{B}` (or `\dfrac`, `\tfrac`) at `i`, where `A` and `B` are plain decimals
/// (`A` may carry a sign). Returns `None` if the braces do not hold exactly that.
fn read_frac_token(
    b: &[u8],
    i: usize,
    end: usize,
    floor: usize,
    meter: &mut Meter,
) -> Result<Option<Token>, Exhausted> {
    let Some(command_len) = frac_command_at(b, i) else {
        return Ok(None);
    };
    let mut pos = skip_space(b, i + command_len, end);
    let mut inner_negative = false;
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        inner_negative = b[pos] == b'-';
        pos += 1;
    } else if starts_with_at(b, pos, UNICODE_MINUS) {
        inner_negative = true;
        pos += UNICODE_MINUS.len();
    }
    if !(pos < end && b[pos].is_ascii_digit()) {
        return Ok(None);
    }
    let (numerator, after) = read_digits(b, pos, end, meter)?;
    let pos = skip_space(b, after, end);
    if !(starts_with_at(b, pos, b"}{") || starts_with_at(b, pos, b"} {")) {
        return Ok(None);
    }
    let pos = skip_space(b, pos + 1, end) + 1;
    let pos = skip_space(b, pos, end);
    if !(pos < end && b[pos].is_ascii_digit()) {
        return Ok(None);
    }
    let (denominator, after) = read_digits(b, pos, end, meter)?;
    let pos = skip_space(b, after, end);
    if !(pos < end && b[pos] == b'}') {
        return Ok(None);
    }
    let (start, outer_negative) = prefix_before(b, i, floor);
    let Some(number) = numerator
        .finish(inner_negative != outer_negative)
        .divide(&denominator.finish(false))
    else {
        return Ok(None);
    };
    let pos = skip_percent(b, pos + 1, end);
    Ok(Some(Token {
        number,
        start,
        end: pos,
    }))
}

/// Whether what follows a number at `i` continues an arithmetic expression (`5 * 2`, `10 - 3`,
/// `4 \times 2`), in which case the number is an operand, not an answer.
fn is_expression_tail(b: &[u8], i: usize, end: usize) -> bool {
    let mut pos = i;
    while pos < end && (b[pos] == b' ' || b[pos] == b'\t') {
        pos += 1;
    }
    let operators: [&[u8]; 17] = [
        b"+",
        b"-",
        b"*",
        b"/",
        b"^",
        b"=",
        b"x",
        "\u{00d7}".as_bytes(),
        "\u{00f7}".as_bytes(),
        "\u{00b7}".as_bytes(),
        UNICODE_MINUS,
        b"\\times",
        b"\\cdot",
        b"\\div",
        b"\\pm",
        b"\\mp",
        b"\\%",
    ];
    let Some(op) = operators.iter().find(|op| starts_with_at(b, pos, op)) else {
        return false;
    };
    if *op == b"\\%" {
        return false;
    }
    let mut after = pos + op.len();
    while after < end && matches!(b[after], b' ' | b'\t' | b'$' | b'{') {
        after += 1;
    }
    after < end && (b[after].is_ascii_digit() || b[after] == b'(' || b[after] == b'\\')
}

// ---------------------------------------------------------------------------------------------
// Extraction strategies
// ---------------------------------------------------------------------------------------------

/// A way of finding the final answer in a completion; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// `#### N`, the GSM8K dataset's marker.
    Hashes,
    /// `\boxed{N}` or `\fbox{N}`.
    Boxed,
    /// A line starting with `A: N`, as in the GSM8K model-solution files.
    AnswerLine,
    /// "The answer is N", "Final answer: N", "Answer: N", in any case.
    AnswerPhrase,
    /// The last number in the text.
    LastNumber,
}

/// The default strategies, most explicit first.
pub const DEFAULT_STRATEGIES: [Strategy; 5] = [
    Strategy::Hashes,
    Strategy::Boxed,
    Strategy::AnswerLine,
    Strategy::AnswerPhrase,
    Strategy::LastNumber,
];

/// Extracts the final answer of `text` with the default strategies ([`DEFAULT_STRATEGIES`]);
/// `Ok(None)` when there is none. This is the whole cost of reading a completion, exposed for
/// benchmarks and for callers that want the number itself.
pub fn extract_answer(text: &str, meter: &mut Meter) -> Result<Option<Number>, Exhausted> {
    extract_with(text, &DEFAULT_STRATEGIES, meter)
}

/// Extracts the final answer of `text` with the given strategies, tried in order.
pub fn extract_with(
    text: &str,
    strategies: &[Strategy],
    meter: &mut Meter,
) -> Result<Option<Number>, Exhausted> {
    meter.check_input(text.len())?;
    for strategy in strategies {
        let found = match strategy {
            Strategy::Hashes => find_hashes(text, meter)?,
            Strategy::Boxed => find_boxed(text, meter)?,
            Strategy::AnswerLine => find_answer_line(text, meter)?,
            Strategy::AnswerPhrase => find_answer_phrase(text, meter)?,
            Strategy::LastNumber => find_last_number(text, meter)?,
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The last occurrence of `needle` that ends by `limit`.
///
/// The search runs `memrchr` (SIMD, from the `memchr` crate) for the needle's first byte (for `A:`, its colon), the rarest in
/// ordinary text, and compares the rest only there; this is several times faster than a
/// general reverse substring search on the short texts scored here.
fn rfind_before(text: &str, needle: &str, limit: usize) -> Option<usize> {
    let b = text.as_bytes();
    let n = needle.as_bytes();
    let anchor = if n == b"A:" { 1 } else { 0 };
    let anchor_byte = *n.get(anchor)?;
    let limit = limit.min(b.len());
    let mut end = limit;
    loop {
        let q = memchr::memrchr(anchor_byte, b.get(..end)?)?;
        if let Some(p) = q.checked_sub(anchor) {
            if p + n.len() <= limit && b.get(p..p + n.len()) == Some(n) {
                return Some(p);
            }
        }
        end = q;
    }
}

/// Where the answer sentence that starts at `start` ends: a newline, a full stop (or `!`, `?`)
/// followed by whitespace or the end, or `limit`.
fn sentence_end(b: &[u8], start: usize, limit: usize) -> usize {
    let mut i = start;
    while i < limit {
        match b[i] {
            b'\n' => return i,
            b'.' | b'!' | b'?' if i + 1 >= limit || b[i + 1].is_ascii_whitespace() => return i,
            _ => {}
        }
        i += 1;
    }
    limit
}

/// Skips mark-up that may sit between a marker and its number: whitespace, emphasis, colons,
/// brackets, `$`, and LaTeX commands other than fractions (`\text{`, `\(`, `\!`, …).
fn skip_markup(b: &[u8], mut i: usize, end: usize) -> usize {
    while i < end {
        let c = b[i];
        if c.is_ascii_whitespace()
            || matches!(
                c,
                b'*' | b'_' | b':' | b'(' | b'[' | b'{' | b'"' | b'\'' | b'`' | b'$'
            )
        {
            i += 1;
        } else if c == b'\\' && frac_command_at(b, i).is_none() {
            // `\$` is a currency sign the number reader understands; keep it if a digit follows.
            if starts_with_at(b, i, b"\\$") {
                return i;
            }
            let mut j = i + 1;
            while j < end && b[j].is_ascii_alphabetic() {
                j += 1;
            }
            if j == i + 1 && j < end && !b[j].is_ascii_alphanumeric() {
                j += 1; // `\(`, `\[`, `\!`, `\,`
            }
            if j == i + 1 {
                return i;
            }
            i = j;
        } else {
            return i;
        }
    }
    i
}

/// The number right at `start` (after mark-up) in `b[start..end]`, if it is an answer (not an
/// operand of an expression).
fn immediate_token(
    b: &[u8],
    start: usize,
    end: usize,
    meter: &mut Meter,
) -> Result<Option<Token>, Exhausted> {
    let at = skip_markup(b, start, end);
    let Some(token) = next_number(b, at, end, start, meter)? else {
        return Ok(None);
    };
    // The number (with its sign or currency sign, which may sit just before `at`) must begin
    // where the mark-up ended: `#### Step 2` is not an answer.
    if token.start > at || is_expression_tail(b, token.end, end) {
        return Ok(None);
    }
    Ok(Some(token))
}

fn immediate_number(
    b: &[u8],
    start: usize,
    end: usize,
    meter: &mut Meter,
) -> Result<Option<Number>, Exhausted> {
    Ok(immediate_token(b, start, end, meter)?.map(|t| t.number))
}

/// The first number anywhere in `b[start..end]`, if it is an answer (not an operand).
fn first_number(
    b: &[u8],
    start: usize,
    end: usize,
    meter: &mut Meter,
) -> Result<Option<Number>, Exhausted> {
    match next_number(b, start, end, start, meter)? {
        Some(token) if !is_expression_tail(b, token.end, end) => Ok(Some(token.number)),
        _ => Ok(None),
    }
}

/// The position just after the last `=` in `b[start..end]`, or `start`.
fn after_last_equals(b: &[u8], start: usize, end: usize) -> usize {
    b[start..end]
        .iter()
        .rposition(|&c| c == b'=')
        .map_or(start, |p| start + p + 1)
}

fn find_hashes(text: &str, meter: &mut Meter) -> Result<Option<Number>, Exhausted> {
    let b = text.as_bytes();
    let mut limit = b.len();
    while let Some(p) = rfind_before(text, "####", limit) {
        meter.step((limit - p) as u64)?;
        let start = p + 4;
        let end = sentence_end(b, skip_space(b, start, limit), limit);
        if let Some(number) = immediate_number(b, start, end, meter)? {
            return Ok(Some(number));
        }
        limit = p;
    }
    meter.step(limit as u64)?;
    Ok(None)
}

fn find_boxed(text: &str, meter: &mut Meter) -> Result<Option<Number>, Exhausted> {
    let b = text.as_bytes();
    let mut limit = b.len();
    // The last `\boxed` and `\fbox` before `limit`, each searched for again only once passed,
    // so that the two searches together read every byte once.
    let mut boxed = rfind_before(text, "\\boxed", limit);
    let mut fbox = rfind_before(text, "\\fbox", limit);
    loop {
        let (p, len) = match (boxed, fbox) {
            (Some(x), Some(y)) if y > x => (y, 5),
            (Some(x), _) => (x, 6),
            (None, Some(y)) => (y, 5),
            (None, None) => break,
        };
        if len == 6 {
            boxed = rfind_before(text, "\\boxed", p);
        } else {
            fbox = rfind_before(text, "\\fbox", p);
        }
        meter.step((limit - p) as u64)?;
        let open = skip_space(b, p + len, limit);
        if open < limit && b[open] == b'{' {
            if let Some(close) = matching_brace(b, open, limit) {
                let start = after_last_equals(b, open + 1, close);
                if let Some(number) = immediate_number(b, start, close, meter)? {
                    return Ok(Some(number));
                }
            }
        }
        limit = p;
    }
    meter.step(limit as u64)?;
    Ok(None)
}

/// The position of the `}` closing the `{` at `open`, searching no further than `limit`.
fn matching_brace(b: &[u8], open: usize, limit: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < limit {
        match b[i] {
            b'\\' => i += 1, // an escaped brace `\{` does not count
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
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

fn find_answer_line(text: &str, meter: &mut Meter) -> Result<Option<Number>, Exhausted> {
    let b = text.as_bytes();
    let mut limit = b.len();
    while let Some(p) = rfind_before(text, "A:", limit) {
        meter.step((limit - p) as u64)?;
        let mut q = p;
        while q > 0 && matches!(b[q - 1], b' ' | b'\t' | b'*' | b'#' | b'>') {
            q -= 1;
        }
        if q == 0 || b[q - 1] == b'\n' || b[q - 1] == b'\r' {
            let start = p + 2;
            let end = sentence_end(b, skip_space(b, start, limit), limit);
            if let Some(number) = immediate_number(b, start, end, meter)? {
                return Ok(Some(number));
            }
        }
        limit = p;
    }
    meter.step(limit as u64)?;
    Ok(None)
}

/// The end of an answer phrase ("answer:", "answer is", "answer =") whose word "answer" starts
/// at `p`, or `None` if the word is not used as a marker there.
fn answer_phrase_end(b: &[u8], p: usize, limit: usize) -> Option<usize> {
    if p > 0 && is_word_byte(b[p - 1]) {
        return None;
    }
    let mut q = p + "answer".len();
    while q < limit && matches!(b[q], b' ' | b'\t' | b'*' | b'_') {
        q += 1;
    }
    if q < limit && (b[q] == b':' || b[q] == b'=') {
        return Some(q + 1);
    }
    if q + 2 <= limit
        && b[q..q + 2].eq_ignore_ascii_case(b"is")
        && (q + 2 == limit || !is_word_byte(b[q + 2]))
    {
        let mut r = q + 2;
        while r < limit && matches!(b[r], b' ' | b'\t' | b'*' | b'_') {
            r += 1;
        }
        if r < limit && b[r] == b':' {
            r += 1;
        }
        return Some(r);
    }
    None
}

fn find_answer_phrase(text: &str, meter: &mut Meter) -> Result<Option<Number>, Exhausted> {
    const WORD: &[u8] = b"answer";
    let b = text.as_bytes();
    let mut limit = b.len();
    let mut p = b.len().saturating_sub(WORD.len());
    // The region of a marker ends where the next (later) marker begins, so no byte is read
    // twice.
    let mut scanned_from = b.len();
    loop {
        if b.len() >= WORD.len() && b[p..p + WORD.len()].eq_ignore_ascii_case(WORD) {
            if let Some(q) = answer_phrase_end(b, p, limit) {
                let start = skip_space(b, q, limit);
                let end = sentence_end(b, start, limit);
                let from = after_last_equals(b, start, end);
                if let Some(number) = first_number(b, from, end, meter)? {
                    meter.step((scanned_from - p) as u64)?;
                    return Ok(Some(number));
                }
                limit = p;
            }
        }
        if p == 0 || b.len() < WORD.len() {
            break;
        }
        p -= 1;
        if (scanned_from - p).is_multiple_of(4096) {
            meter.step(4096)?;
            scanned_from = p;
        }
    }
    meter.step((scanned_from - p) as u64)?;
    Ok(None)
}

fn find_last_number(text: &str, meter: &mut Meter) -> Result<Option<Number>, Exhausted> {
    let b = text.as_bytes();
    let Some(last_digit) = b.iter().rposition(u8::is_ascii_digit) else {
        meter.step(b.len() as u64)?;
        return Ok(None);
    };
    // Numbers never contain whitespace, so tokenising from the last whitespace before the last
    // digit finds the same last number as tokenising the whole text.
    let safe_start = b[..last_digit]
        .iter()
        .rposition(u8::is_ascii_whitespace)
        .map_or(0, |p| p + 1);
    meter.step((b.len() - safe_start) as u64)?;
    let mut from = safe_start;
    let mut last = None;
    while let Some(token) = next_number(b, from, b.len(), 0, meter)? {
        // Every token consumes at least one byte, so this loop ends.
        from = token.end.max(from + 1);
        last = Some(token.number);
    }
    Ok(last)
}

// ---------------------------------------------------------------------------------------------
// The verifier
// ---------------------------------------------------------------------------------------------

/// What a completion with no answer scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoAnswer {
    /// It scores `incorrect`: for RL, not answering is a wrong answer.
    #[default]
    Incorrect,
    /// It is unscorable (`no answer found`).
    Unscorable,
}

/// Options of [`Gsm8k`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gsm8kOptions {
    /// How to find the answer, tried in this order; the first that finds a number wins. Default:
    /// `["hashes", "boxed", "answer_line", "answer_phrase", "last_number"]`. Leave out
    /// `last_number` for a strict verifier that only accepts an explicitly marked answer.
    pub strategies: Vec<Strategy>,
    /// The score of a correct answer (default 1.0).
    pub correct: f64,
    /// The score of a wrong answer, and of a missing one under `no_answer = "incorrect"`
    /// (default 0.0).
    pub incorrect: f64,
    /// If set, the score of an answer that was found but is wrong, so that answering in the
    /// expected form earns something over not answering (verl's `format_score`). Default: unset.
    pub format_score: Option<f64>,
    /// What a completion with no answer scores: `"incorrect"` (default) or `"unscorable"`.
    pub no_answer: NoAnswer,
}

impl Default for Gsm8kOptions {
    fn default() -> Self {
        Gsm8kOptions {
            strategies: DEFAULT_STRATEGIES.to_vec(),
            correct: 1.0,
            incorrect: 0.0,
            format_score: None,
            no_answer: NoAnswer::Incorrect,
        }
    }
}

/// GSM8K-style numeric answer verifier (kind `gsm8k`); see the module documentation.
#[derive(Clone, Debug)]
pub struct Gsm8k {
    options: Gsm8kOptions,
}

impl Gsm8k {
    /// Builds the verifier, refusing non-finite scores and an empty or repetitive strategy list.
    pub fn new(options: Gsm8kOptions) -> Result<Gsm8k, VerifyError> {
        for (name, value) in [
            ("correct", Some(options.correct)),
            ("incorrect", Some(options.incorrect)),
            ("format_score", options.format_score),
        ] {
            if value.is_some_and(|v| !v.is_finite()) {
                return Err(VerifyError::invalid(name, "a finite number"));
            }
        }
        if options.strategies.is_empty() {
            return Err(VerifyError::invalid(
                "strategies",
                "at least one of hashes, boxed, answer_line, answer_phrase, last_number",
            ));
        }
        for (i, s) in options.strategies.iter().enumerate() {
            if options.strategies[..i].contains(s) {
                return Err(VerifyError::invalid(
                    "strategies",
                    "each strategy at most once",
                ));
            }
        }
        Ok(Gsm8k { options })
    }

    /// The options this verifier was built with.
    pub fn options(&self) -> &Gsm8kOptions {
        &self.options
    }

    /// Extracts the answer of `text` with this verifier's strategies.
    pub fn extract(&self, text: &str, meter: &mut Meter) -> Result<Option<Number>, Exhausted> {
        extract_with(text, &self.options.strategies, meter)
    }

    /// Reads the expected number(s) from a reference; `Err` carries the outcome to report.
    fn expected(&self, reference: &Reference, meter: &mut Meter) -> Result<Vec<Number>, Outcome> {
        if let Some(text) = reference.text() {
            return match self.reference_number(&text, meter)? {
                Some(number) => Ok(vec![number]),
                None => Err(Outcome::unscorable("reference has no number")),
            };
        }
        let serde_json::Value::Array(items) = reference.to_json() else {
            return Err(Outcome::unscorable("reference is not text"));
        };
        let mut expected = Vec::with_capacity(items.len());
        for item in items {
            let text = match item {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                _ => return Err(Outcome::unscorable("reference list holds a non-number")),
            };
            match self.reference_number(&text, meter)? {
                Some(number) => expected.push(number),
                None => return Err(Outcome::unscorable("reference has no number")),
            }
        }
        if expected.is_empty() {
            return Err(Outcome::unscorable("missing reference"));
        }
        Ok(expected)
    }

    /// Reads one reference: a bare number (units allowed) first, then the strategies.
    fn reference_number(&self, text: &str, meter: &mut Meter) -> Result<Option<Number>, Outcome> {
        meter.check_input(text.len())?;
        let b = text.as_bytes();
        if let Some(token) = immediate_token(b, 0, b.len(), meter)? {
            // A bare number is one whose tail holds no further digits ("18 dollars").
            meter.step((b.len() - token.end) as u64)?;
            if !b[token.end..].iter().any(u8::is_ascii_digit) {
                return Ok(Some(token.number));
            }
        }
        Ok(self.extract(text, meter)?)
    }

    fn outcome(&self, sample: &Sample, meter: &mut Meter) -> Outcome {
        let Some(reference) = &sample.reference else {
            return Outcome::unscorable("missing reference");
        };
        let completion = sample.completion.text();
        if let Err(e) = meter.check_input(completion.len()) {
            return e.into_outcome();
        }
        let expected = match self.expected(reference, meter) {
            Ok(expected) => expected,
            Err(outcome) => return outcome,
        };
        match self.extract(&completion, meter) {
            Err(e) => e.into_outcome(),
            Ok(None) => match self.options.no_answer {
                NoAnswer::Incorrect => Outcome::scored(self.options.incorrect),
                NoAnswer::Unscorable => Outcome::unscorable("no answer found"),
            },
            Ok(Some(answer)) if expected.contains(&answer) => Outcome::scored(self.options.correct),
            Ok(Some(_)) => {
                Outcome::scored(self.options.format_score.unwrap_or(self.options.incorrect))
            }
        }
    }
}

impl Reward for Gsm8k {
    fn kind(&self) -> &str {
        "gsm8k"
    }

    fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput {
        self.outcome(sample, meter).into()
    }
}

#[cfg(test)]
mod tests {
    use rewardkit_core::{Budget, Completion};

    use super::*;

    /// Extracts with the default strategies and compares the number's display (`none` for no
    /// answer).
    #[track_caller]
    fn check(text: &str, expected: &str) {
        let mut meter = Budget::default().meter();
        let got = extract_answer(text, &mut meter)
            .expect("within budget")
            .map_or_else(|| "none".to_string(), |n| n.to_string());
        assert_eq!(got, expected, "extracting from {text:?}");
    }

    /// Scores a completion against a reference with default options; compares the outcome's
    /// display (`1`, `0`, `unscorable (…)`, `timed out`).
    #[track_caller]
    fn check_score(completion: &str, reference: &str, expected: &str) {
        check_score_with(
            Gsm8kOptions::default(),
            completion,
            Some(reference),
            expected,
        );
    }

    #[track_caller]
    fn check_score_with(
        options: Gsm8kOptions,
        completion: &str,
        reference: Option<&str>,
        expected: &str,
    ) {
        let verifier = Gsm8k::new(options).expect("valid options");
        let mut sample = Sample::new("", completion);
        sample.reference = reference.map(|r| Reference::Text(r.to_string()));
        let outcome = verifier
            .score(&sample, &mut Budget::default().meter())
            .outcome;
        assert_eq!(
            outcome.to_string(),
            expected,
            "{completion:?} against {reference:?}"
        );
    }

    #[track_caller]
    fn check_parse(text: &str, expected: &str) {
        let got = Number::parse(text).map_or_else(|| "none".to_string(), |n| n.to_string());
        assert_eq!(got, expected, "parsing {text:?}");
    }

    #[test]
    fn parses_numbers_exactly() {
        check_parse("18", "18");
        check_parse("  18  ", "18");
        check_parse("18.00", "18");
        check_parse("18.50", "18.5");
        check_parse("0.5", "0.5");
        check_parse(".5", "0.5");
        check_parse("007", "7");
        check_parse("0", "0");
        check_parse("-0", "0");
        check_parse("0.000", "0");
        check_parse("1000", "1000");
        check_parse("1,000", "1000");
        check_parse("1,234,567", "1234567");
        check_parse("1,234,567.89", "1234567.89");
        check_parse("1{,}000", "1000");
        check_parse("1\\,000", "1000");
        check_parse("12,34", "none");
        check_parse("1234,567", "none");
        check_parse("$18", "18");
        check_parse("\\$18", "18");
        check_parse("-$18", "-18");
        check_parse("$-18", "-18");
        check_parse("-18", "-18");
        check_parse("+18", "18");
        check_parse("\u{2212}18", "-18");
        check_parse("25%", "25");
        check_parse("25\\%", "25");
        check_parse("3/4", "0.75");
        check_parse("1/2", "0.5");
        check_parse("2/4", "0.5");
        check_parse("1/3", "1/3");
        check_parse("2/6", "1/3");
        check_parse("-1/3", "-1/3");
        check_parse("10/5", "2");
        check_parse("1/0", "none");
        check_parse("0/5", "0");
        check_parse("1.5/3", "0.5");
        check_parse("\\frac{3}{4}", "0.75");
        check_parse("\\dfrac{1}{3}", "1/3");
        check_parse("\\tfrac{6}{3}", "2");
        check_parse("-\\frac{1}{2}", "-0.5");
        check_parse("\\frac{-1}{2}", "-0.5");
        check_parse("\\frac{1}{0}", "none");
        check_parse("\\frac{x}{2}", "none");
        check_parse("", "none");
        check_parse("abc", "none");
        check_parse("18 dollars", "none");
        check_parse("1e5", "none");
        check_parse("0.1", "0.1");
        check_parse("0.0001", "0.0001");
        check_parse(
            "123456789012345678901234567890123456789012345",
            "123456789012345678901234567890123456789012345",
        );
        check_parse(
            "340282366920938463463374607431768211455",
            "340282366920938463463374607431768211455",
        );
        check_parse(
            "340282366920938463463374607431768211456",
            "340282366920938463463374607431768211456",
        );
        check_parse("1000000000000000000000000000000000000000000000000", "1e48");
    }

    #[test]
    fn equal_values_have_equal_numbers() {
        let same = [
            ("0.5", "1/2"),
            ("18", "18.000"),
            ("1000", "1,000"),
            ("0.75", "\\frac{3}{4}"),
            ("1/3", "2/6"),
            ("-0.25", "-1/4"),
            ("0", "-0.0"),
            ("100", "1e2-is-not-parsed-so-use-100"),
        ];
        for (a, b) in same.iter().take(7) {
            assert_eq!(Number::parse(a), Number::parse(b), "{a} vs {b}");
            assert!(Number::parse(a).is_some());
        }
        assert_ne!(Number::parse("1/3"), Number::parse("0.333333333333"));
        assert_ne!(Number::parse("18"), Number::parse("-18"));
        assert_ne!(Number::parse("1.8"), Number::parse("18"));
        assert_eq!(Number::parse("42"), Some(Number::from_i128(42)));
        assert_eq!(Number::parse("-42"), Some(Number::from_i128(-42)));
        assert!(Number::parse("-42").is_some_and(|n| n.is_negative()));
        assert_eq!(Number::parse("0"), Some(Number::zero()));
        // Past u128 the digit strings are compared exactly.
        let big = format!("1{}", "0".repeat(400));
        let big_with_decimals = format!("{big}.000");
        assert_eq!(Number::parse(&big), Number::parse(&big_with_decimals));
        assert_ne!(Number::parse(&big), Number::parse(&format!("{big}1")));
    }

    #[test]
    fn extracts_the_marked_answer() {
        // `#### N`, the dataset's own marker.
        check("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", "18");
        check("#### 18", "18");
        check("####18", "18");
        check("#### $18", "18");
        check("#### -3", "-3");
        check("#### 1,000", "1000");
        check("#### 18.00", "18");
        check("#### 18 dollars", "18");
        check("#### **18**", "18");
        check("#### 18\n\nSome trailing chatter about 7 things.", "18");
        check("#### 5\n#### 7", "7");
        check("#### Step 2: compute\nthe total is 40", "40");
        check("#### 5 * 2", "2");
        // `\boxed{N}`.
        check("So the total is \\boxed{18}.", "18");
        check("$\\boxed{18}$", "18");
        check("\\boxed{ 18 }", "18");
        check("\\boxed{\\$18.00}", "18");
        check("\\boxed{18 \\text{ dollars}}", "18");
        check("\\boxed{\\text{18}}", "18");
        check("\\boxed{\\frac{3}{4}}", "0.75");
        check("\\boxed{-\\frac{1}{3}}", "-1/3");
        check("\\boxed{50\\%}", "50");
        check("\\boxed{x = 5}", "5");
        check("\\boxed{1{,}000}", "1000");
        check("\\boxed{5} and later \\boxed{7}", "7");
        check("\\boxed{7} then \\boxed{no}", "7");
        check("\\fbox{9}", "9");
        check("\\boxed{3 + 4}", "4");
        check("\\boxed{18", "18");
        // `A: N` lines of the GSM8K model-solution files.
        check("Janet sells 9 eggs.\nA: 18", "18");
        check("A: 1,450,000", "1450000");
        check("A: -1.8 billion", "-1.8");
        check("A: $18.50", "18.5");
        check("A: 7/14", "0.5");
        check("QA: 5 and 6", "6");
        // Answer phrases.
        check("The answer is 18.", "18");
        check("the answer is: 18", "18");
        check("THE ANSWER IS 18", "18");
        check("Final answer: 18", "18");
        check("**Final Answer:** 18", "18");
        check("**Answer**: $18", "18");
        check("Answer = 18", "18");
        check("The answer is:\n\n18", "18");
        check("The final answer is $18$. I hope it is correct.", "18");
        check("The answer is that she makes $18 per day.", "18");
        check("The answer is 3 + 15 = 18 fruits.", "18");
        check("The answer is 18. Then 5 more things happen.", "18");
        check("The answer is 12. Wait, the answer is 14.", "14");
        check("The answer is 12. I hope this answer is correct.", "12");
        check("The answers: 12", "12");
        check("No answer here, 5 apples", "5");
        check("The answer is -7.", "-7");
        check("The answer is \u{2212}7.", "-7");
        check("The answer is 25%.", "25");
        check("The answer is 1/2.", "0.5");
        check("The answer is 0.50", "0.5");
        check("The answer is 5 * 2", "2");
        // The last number.
        check("She has 16 - 3 - 4 = 9 eggs", "9");
        check("16-3", "3");
        check("the change is -5", "-5");
        check("x=-5", "-5");
        check("It costs $1,234.50.", "1234.5");
        check("3rd place", "3");
        check("H2O", "2");
        check("version 1.2.3", "3");
        check("ratio 12/60=1/5 pm", "0.2");
        check("3,4", "4");
        check("1,0000", "0");
        check("<<2*0.5=1.0>>1.0 bolts", "1");
        check("in 2024.", "2024");
        check("costs $5/hour", "5");
        check("The answer is $1,000.00.", "1000");
        check("The answer is 2,125 people.", "2125");
        check("The answer is 1,450,000", "1450000");
        check("#### 1 000", "1");
        check("A: 0.5 hours", "0.5");
        check("A: .5", "0.5");
        check("The answer is **$18.00**.", "18");
        check("The answer is \\(18\\).", "18");
        check("The answer is \\$18.", "18");
        check("The answer is -$18.", "-18");
        check("The answer is ($18).", "18");
        check("The answer is 18 eggs per day at $2 each.", "18");
        check("The answer is 100%.", "100");
        check(
            "Final Answer: The final answer is 7. I hope it is correct.",
            "7",
        );
        check("so he has 20-5=15 left", "15");
        check("<<16-3-4=9>>9 eggs, so 9 * 2 = $<<9*2=18>>18", "18");
        check("the temperature dropped to \u{2212}4 degrees", "-4");
    }

    #[test]
    fn strategies_have_priority() {
        check("The answer is 5.\n#### 6", "6");
        check("#### 6\nThe answer is 5.", "6");
        check("\\boxed{4}\nA: 5", "4");
        check("A: 5\nThe answer is 4", "5");
        check("The answer is 4. Then I computed 17.", "4");
    }

    #[test]
    fn finds_nothing_where_there_is_nothing() {
        check("", "none");
        check("   ", "none");
        check("no numbers at all", "none");
        check("####", "none");
        check("\\boxed{}", "none");
        check("\\boxed{", "none");
        check("The answer is", "none");
        check("A:", "none");
        check("\u{1F600}\u{0660}\u{0661}", "none");
        check("\\frac{", "none");
        check("\\frac{1}{", "1");
        check("-", "none");
        check("$", "none");
        check(".", "none");
        check("%", "none");
        check("/", "none");
        check("1/", "1");
        check("\\", "none");
    }

    #[test]
    fn scores_against_references() {
        check_score("#### 18", "18", "1");
        check_score("#### 18", "19", "0");
        check_score("#### 18", "18.00", "1");
        check_score("#### 18", "$18", "1");
        check_score("#### 1000", "1,000", "1");
        check_score("#### 1,000", "1000", "1");
        check_score("The answer is 0.5", "1/2", "1");
        check_score("The answer is 1/2", "0.5", "1");
        check_score("\\boxed{\\frac{1}{2}}", "0.5", "1");
        check_score("The answer is 25%", "25", "1");
        check_score("The answer is 18 dollars", "18 dollars", "1");
        check_score("The answer is 18", "She makes $<<9*2=18>>18.\n#### 18", "1");
        check_score("The answer is 18", "She makes $<<9*2=18>>18.\nA: 18", "1");
        check_score(
            "The answer is 18",
            "He has 3 apples and 4 pears\n#### 7",
            "0",
        );
        check_score(
            "The answer is 7",
            "He has 3 apples and 4 pears\n#### 7",
            "1",
        );
        check_score("The answer is -3", "-3", "1");
        check_score("The answer is 3", "-3", "0");
        check_score("The answer is 1/3", "2/6", "1");
        check_score("The answer is 0.333", "1/3", "0");
        check_score("", "18", "0");
        check_score("no idea", "18", "0");
        check_score("#### 18", "", "unscorable (reference has no number)");
        check_score(
            "#### 18",
            "eighteen",
            "unscorable (reference has no number)",
        );
    }

    #[test]
    fn options_change_the_scores() {
        let options = Gsm8kOptions {
            correct: 2.0,
            incorrect: -1.0,
            format_score: Some(0.1),
            ..Gsm8kOptions::default()
        };
        check_score_with(options.clone(), "#### 18", Some("18"), "2");
        check_score_with(options.clone(), "#### 17", Some("18"), "0.1");
        check_score_with(options, "nothing", Some("18"), "-1");

        let unscorable = Gsm8kOptions {
            no_answer: NoAnswer::Unscorable,
            ..Gsm8kOptions::default()
        };
        check_score_with(
            unscorable,
            "nothing",
            Some("18"),
            "unscorable (no answer found)",
        );

        let strict = Gsm8kOptions {
            strategies: vec![Strategy::Hashes],
            ..Gsm8kOptions::default()
        };
        check_score_with(strict.clone(), "The answer is 18", Some("18"), "0");
        check_score_with(strict.clone(), "#### 18", Some("18"), "1");
        // The reference is read with the same strategies, after trying it as a bare number.
        check_score_with(
            strict.clone(),
            "#### 18",
            Some("work\nA: 18"),
            "unscorable (reference has no number)",
        );
        check_score_with(strict, "#### 18", Some("18"), "1");

        check_score_with(
            Gsm8kOptions::default(),
            "#### 18",
            None,
            "unscorable (missing reference)",
        );
    }

    #[test]
    fn references_may_be_json() {
        let verifier = Gsm8k::new(Gsm8kOptions::default()).unwrap();
        let score = |completion: &str, reference: serde_json::Value| {
            let mut sample = Sample::new("", completion);
            sample.reference = Some(Reference::Json(reference));
            verifier
                .score(&sample, &mut Budget::default().meter())
                .outcome
                .to_string()
        };
        assert_eq!(score("#### 18", serde_json::json!(18)), "1");
        assert_eq!(score("#### 18.5", serde_json::json!(18.5)), "1");
        assert_eq!(score("#### 18", serde_json::json!(["17", 18])), "1");
        assert_eq!(score("#### 19", serde_json::json!(["17", 18])), "0");
        assert_eq!(
            score("#### 19", serde_json::json!([])),
            "unscorable (missing reference)"
        );
        assert_eq!(
            score("#### 19", serde_json::json!({"a": 1})),
            "unscorable (reference is not text)"
        );
        assert_eq!(
            score("#### 19", serde_json::json!([null])),
            "unscorable (reference list holds a non-number)"
        );
        assert_eq!(
            score("#### 19", serde_json::json!(null)),
            "unscorable (reference is not text)"
        );
    }

    #[test]
    fn reads_chat_completions() {
        let verifier = Gsm8k::new(Gsm8kOptions::default()).unwrap();
        let mut sample = Sample::new("", "").with_reference("18");
        sample.completion =
            Completion::Message(rewardkit_core::Message::new("assistant", "#### 18"));
        let outcome = verifier
            .score(&sample, &mut Budget::default().meter())
            .outcome;
        assert_eq!(outcome, Outcome::scored(1.0));
    }

    #[test]
    fn refuses_bad_options() {
        let bad = |options: Gsm8kOptions| Gsm8k::new(options).unwrap_err().to_string();
        assert_eq!(
            bad(Gsm8kOptions {
                correct: f64::NAN,
                ..Default::default()
            }),
            "option `correct`: a finite number"
        );
        assert_eq!(
            bad(Gsm8kOptions {
                incorrect: f64::INFINITY,
                ..Default::default()
            }),
            "option `incorrect`: a finite number"
        );
        assert_eq!(
            bad(Gsm8kOptions {
                format_score: Some(f64::NAN),
                ..Default::default()
            }),
            "option `format_score`: a finite number"
        );
        assert!(bad(Gsm8kOptions {
            strategies: vec![],
            ..Default::default()
        })
        .starts_with("option `strategies`"));
        assert!(bad(Gsm8kOptions {
            strategies: vec![Strategy::Boxed, Strategy::Boxed],
            ..Default::default()
        })
        .starts_with("option `strategies`"));
    }

    #[test]
    fn options_deserialise_with_defaults_and_refuse_unknown_keys() {
        let options: Gsm8kOptions = serde_json::from_str(
            r#"{"strategies": ["boxed", "last_number"], "no_answer": "unscorable"}"#,
        )
        .unwrap();
        assert_eq!(
            options.strategies,
            vec![Strategy::Boxed, Strategy::LastNumber]
        );
        assert_eq!(options.no_answer, NoAnswer::Unscorable);
        assert_eq!(options.correct, 1.0);
        let empty: Gsm8kOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, Gsm8kOptions::default());
        assert!(serde_json::from_str::<Gsm8kOptions>(r#"{"corect": 1}"#).is_err());
        assert!(serde_json::from_str::<Gsm8kOptions>(r#"{"strategies": ["regex"]}"#).is_err());
        assert_eq!(Gsm8k::new(empty).unwrap().kind(), "gsm8k");
    }

    #[test]
    fn adversarial_inputs_stay_bounded() {
        // 400-digit numbers compare exactly.
        let big = format!("1{}", "0".repeat(400));
        check_score(&format!("#### {big}"), &big, "1");
        check_score(&format!("#### {big}1"), &big, "0");
        // A megabyte of digits is read once, linearly.
        let digits = "7".repeat(1 << 20);
        check(&digits, &digits);
        // Fractions past u128 are not fractions.
        check(&format!("The answer is {big}/3"), "3");
        // Over the size limit: unscorable, not a hang.
        let huge = "1".repeat((1 << 20) + 1);
        check_score(&huge, "1", "unscorable (input too large)");
        check_score("#### 1", &huge, "unscorable (input too large)");
        // Many markers without numbers do not make the search quadratic.
        let markers = "answer is ".repeat(100_000);
        let mut meter = Budget::default().meter();
        assert_eq!(extract_answer(&markers, &mut meter), Ok(None));
        assert!(meter.steps() < 10_000_000, "spent {}", meter.steps());
        let boxes = "\\boxed{".repeat(100_000);
        let mut meter = Budget::default().meter();
        assert_eq!(extract_answer(&boxes, &mut meter), Ok(None));
        assert!(meter.steps() < 10_000_000, "spent {}", meter.steps());
        let hashes = "#### x ".repeat(100_000);
        let mut meter = Budget::default().meter();
        assert_eq!(extract_answer(&hashes, &mut meter), Ok(None));
        assert!(meter.steps() < 10_000_000, "spent {}", meter.steps());
        // A small step budget times out instead of finishing.
        let budget = Budget {
            max_steps: 100,
            ..Budget::default()
        };
        let verifier = Gsm8k::new(Gsm8kOptions::default()).unwrap();
        let sample = Sample::new("", "x ".repeat(1000)).with_reference("1");
        assert_eq!(
            verifier.score(&sample, &mut budget.meter()).outcome,
            Outcome::TimedOut
        );
        // Unicode everywhere and at every cut.
        let unicode = "Ⅻ ½ ¾ ٣ 𝟙𝟚 the answer is −٣ ①②";
        for (i, _) in unicode.char_indices() {
            let mut meter = Budget::default().meter();
            let _ = extract_answer(&unicode[i..], &mut meter);
        }
        check(unicode, "none");
    }
}
