//! Math answer extraction and equivalence: as right as Math-Verify, microseconds per call, and
//! bounded on every input.
//!
//! # Pipeline
//!
//! 1. **Extraction** ([`extract`]): the final answer of a completion is the last `\boxed{…}`, else
//!    the text after "the final answer is", else the last LaTeX span (`$…$`, `\(…\)`, `\[…\]`;
//!    `$` pairs that hold prose are currency, not maths), else the whole completion when it is a
//!    bare expression, else the last number; the order is configurable ([`MathOptions::extract`]) and the first
//!    candidate that parses wins. The gold answer is read whole (surrounding `$` and a `\boxed{}`
//!    are removed).
//! 2. **Parsing** ([`parse`]): LaTeX and plain text into one small tree ([`Expr`]): numbers with
//!    thousands separators and scientific notation, `\frac`/`\dfrac12`, `\sqrt[n]{}`, powers,
//!    implicit multiplication, mixed numbers (`2\frac12`), π/e/i/∞, percentages, degrees,
//!    `\text{}` units dropped, subscripted symbols (`C_{1}`), floor and ceiling, sets (also
//!    set-builder `\{x \mid x \ge 0\}` and `\emptyset`), intervals and unions, tuples,
//!    matrices, relations, `±`, lists of answers.
//! 3. **Equivalence** ([`compare`]): identities of polynomials and rational functions in free
//!    variables, π and e are decided by evaluation at seeded random points modulo two large
//!    primes ([`modular`]: any degree in microseconds), other answers by exact evaluation over
//!    the Gaussian rationals (constants, and roots of perfect powers at rational points),
//!    numeric evaluation with a tolerance only when a side is irrational or written as a
//!    decimal, and structural rules for everything that is
//!    not a scalar — including Math-Verify's anti-hacking asymmetry (several candidates, or a set
//!    or interval containing the gold, do not pass).
//!
//! # Why not a computer-algebra system
//!
//! Math-Verify hands the parsed LaTeX to SymPy and asks it to simplify `gold − pred`. That is
//! general but unbounded: simplification of a power tower or a large polynomial can take minutes,
//! and the only guard is a SIGALRM timer that does not work off the main thread. Deciding
//! equality by *evaluation* needs no simplifier: two rational functions are equal iff they agree
//! at enough random points (Schwartz–Zippel), and evaluation cost is bounded by the tree size and
//! the bit length of the numbers, both of which the [`Limits`] cap. What evaluation cannot do
//! exactly (irrational roots, trigonometry) it does in floating point with a tolerance.
//!
//! # Budget
//!
//! Every byte lexed, node parsed and arithmetic operation (weighted by operand size) is a step
//! on the caller's [`Meter`]. Nesting depth, tokens, digits of a literal, exponents, bit length of
//! intermediate results and factorial arguments are limited; a limit hit is reported as
//! unscorable (`answer too complex` / `number too large`), the step budget or deadline as a
//! time-out. Nothing here panics on any input (property tests and a cargo-fuzz target).

#![deny(missing_docs)]

pub mod compare;
pub mod eval;
pub mod extract;
pub mod lex;
pub mod modular;
pub mod parse;
mod verifier;

use std::fmt;

use rewardkit_core::{Exhausted, Meter, Outcome};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use compare::Decision;
pub use extract::Strategy;
pub use parse::Expr;
pub use verifier::Math;

/// Errors of this crate: bad options, and the reasons an answer could not be read.
#[derive(Clone, Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum MathError {
    /// An option is out of range.
    #[error("option `{field}`: {expected}")]
    Option {
        /// The option's name.
        field: &'static str,
        /// What was expected.
        expected: String,
    },
    /// The text is not a maths expression this parser reads.
    #[error("cannot parse: {0}")]
    Parse(String),
    /// A structural limit (depth, tokens, length) was hit.
    #[error("answer too complex: {0}")]
    TooComplex(&'static str),
    /// A number would exceed the size limits.
    #[error("number too large: {0}")]
    TooLarge(&'static str),
    /// The step budget or deadline ran out.
    #[error(transparent)]
    Budget(#[from] Exhausted),
}

/// Structural limits on one verification (besides the caller's step budget).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest extracted answer, in bytes (default 4096).
    pub max_answer_bytes: usize,
    /// Deepest nesting of brackets and operators, counting each operator of a chain `a + b + …`
    /// as one level (default 100).
    pub max_depth: usize,
    /// Most tokens in one answer (default 1024).
    pub max_tokens: usize,
    /// Most digits in one number literal (default 1000).
    pub max_digits: usize,
    /// Largest integer exponent evaluated exactly, and largest `e` in `1e…` (default 10,000).
    pub max_exponent: u64,
    /// Largest bit length of an exact intermediate value (default 65,536).
    pub max_bits: u64,
    /// Largest `n` in `n!` and `\binom{n}{k}` (default 3000).
    pub max_factorial: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_answer_bytes: 4096,
            max_depth: 100,
            max_tokens: 1024,
            max_digits: 1000,
            max_exponent: 10_000,
            max_bits: 1 << 16,
            max_factorial: 3000,
        }
    }
}

/// What a completion with no readable answer scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoAnswer {
    /// The `incorrect` score (for RL, not answering is a wrong answer).
    #[default]
    Incorrect,
    /// Unscorable (`no answer found`), for pipelines that count these separately.
    Unscorable,
}

/// Options of the `math` verifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MathOptions {
    /// Extraction strategies, in priority order (default boxed, answer_phrase, latex,
    /// last_number).
    pub extract: Vec<Strategy>,
    /// Relative tolerance when a side is written with decimals (default 1e-6).
    pub rel_tol: f64,
    /// Absolute tolerance added to every numeric comparison (default 0).
    pub abs_tol: f64,
    /// Relative tolerance for irrational values written exactly (`\sqrt2/2` vs
    /// `1/\sqrt2`): floating-point noise only (default 1e-12).
    pub exact_rel_tol: f64,
    /// Evaluation points for expressions with free variables, π or e (default 4).
    pub points: usize,
    /// Seed of the evaluation points (default 0x5EED).
    pub seed: u64,
    /// Score of a correct answer (default 1).
    pub correct: f64,
    /// Score of a wrong answer (default 0).
    pub incorrect: f64,
    /// What a completion with no readable answer scores (default `incorrect`).
    pub no_answer: NoAnswer,
    /// Structural limits.
    pub limits: Limits,
}

impl Default for MathOptions {
    fn default() -> Self {
        MathOptions {
            extract: extract::default_strategies(),
            rel_tol: 1e-6,
            abs_tol: 0.0,
            exact_rel_tol: 1e-12,
            points: 4,
            seed: 0x5EED,
            correct: 1.0,
            incorrect: 0.0,
            no_answer: NoAnswer::Incorrect,
            limits: Limits::default(),
        }
    }
}

impl MathOptions {
    /// Checks the options; the error names the field.
    pub fn validate(&self) -> Result<(), MathError> {
        let tol = |field: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(MathError::Option {
                    field,
                    expected: format!("a finite number >= 0, got {v}"),
                })
            }
        };
        tol("rel_tol", self.rel_tol)?;
        tol("abs_tol", self.abs_tol)?;
        tol("exact_rel_tol", self.exact_rel_tol)?;
        if self.extract.is_empty() {
            return Err(MathError::Option {
                field: "extract",
                expected: "at least one strategy".into(),
            });
        }
        if !(1..=64).contains(&self.points) {
            return Err(MathError::Option {
                field: "points",
                expected: format!("1 to 64, got {}", self.points),
            });
        }
        for (field, v) in [("correct", self.correct), ("incorrect", self.incorrect)] {
            if !v.is_finite() {
                return Err(MathError::Option {
                    field,
                    expected: format!("a finite number, got {v}"),
                });
            }
        }
        Ok(())
    }
}

/// What [`verify`] concluded.
#[derive(Clone, Debug, PartialEq)]
pub enum Judgement {
    /// Equivalent.
    Equal,
    /// Not equivalent.
    NotEqual,
    /// No answer could be read from the prediction.
    NoAnswer,
    /// The gold answer could not be read.
    BadGold(String),
    /// A limit or the budget stopped the work.
    Stopped(MathError),
}

/// The verdict of one verification and why: the extracted answer and the normal forms compared.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The conclusion.
    pub judgement: Judgement,
    /// The gold answer's normal form, if it parsed.
    pub gold: Option<String>,
    /// The extracted prediction text and the strategy that found it.
    pub extracted: Option<(Strategy, String)>,
    /// The prediction's normal form, if it parsed.
    pub pred: Option<String>,
    /// The rule that decided (or why nothing could be decided).
    pub reason: String,
}

impl Verdict {
    /// Whether the prediction was judged equivalent.
    pub fn is_equal(&self) -> bool {
        self.judgement == Judgement::Equal
    }

    /// The reward outcome under `options`.
    pub fn outcome(&self, options: &MathOptions) -> Outcome {
        match &self.judgement {
            Judgement::Equal => Outcome::scored(options.correct),
            Judgement::NotEqual => Outcome::scored(options.incorrect),
            Judgement::NoAnswer => match options.no_answer {
                NoAnswer::Incorrect => Outcome::scored(options.incorrect),
                NoAnswer::Unscorable => Outcome::unscorable("no answer found"),
            },
            Judgement::BadGold(_) => Outcome::unscorable("reference is not a readable answer"),
            Judgement::Stopped(MathError::Budget(e)) => e.clone().into_outcome(),
            Judgement::Stopped(MathError::TooLarge(_)) => Outcome::unscorable("number too large"),
            Judgement::Stopped(_) => Outcome::unscorable("answer too complex"),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match &self.judgement {
            Judgement::Equal => "equal".to_string(),
            Judgement::NotEqual => "not equal".to_string(),
            Judgement::NoAnswer => "no answer".to_string(),
            Judgement::BadGold(e) => format!("unreadable gold ({e})"),
            Judgement::Stopped(e) => format!("stopped ({e})"),
        };
        writeln!(f, "verdict: {verdict}")?;
        if let Some(g) = &self.gold {
            writeln!(f, "gold:    {g}")?;
        }
        if let Some((s, text)) = &self.extracted {
            let s = serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            writeln!(f, "answer:  {text:?} (found by {s})")?;
        }
        if let Some(p) = &self.pred {
            writeln!(f, "pred:    {p}")?;
        }
        write!(f, "why:     {}", self.reason)
    }
}

/// Parses one answer string (no extraction) into its tree.
pub fn parse_answer(text: &str, limits: &Limits, meter: &mut Meter) -> Result<Expr, MathError> {
    if text.len() > limits.max_answer_bytes {
        return Err(MathError::TooComplex("answer longer than max_answer_bytes"));
    }
    let toks = lex::lex(text, limits, meter)?;
    parse::parse(&toks, limits, meter)
}

/// Reads a gold answer: the content of its last `\boxed{}` if it has one, else the whole text
/// (the lexer drops `$`).
pub fn parse_gold(text: &str, limits: &Limits, meter: &mut Meter) -> Result<Expr, MathError> {
    let boxed = extract::last_boxed(text);
    let body = extract::clean(boxed.as_deref().unwrap_or(text));
    match parse_answer(&body, limits, meter) {
        Ok(e) => Ok(e),
        Err(first @ (MathError::Parse(_) | MathError::TooComplex(_))) => {
            // A gold written as a sentence ("The answer is $3$"): extract as from a completion.
            for (_, c) in extract::candidates(text, &extract::default_strategies()) {
                if c != body {
                    if let Ok(e) = parse_answer(&c, limits, meter) {
                        return Ok(e);
                    }
                }
            }
            Err(first)
        }
        Err(e) => Err(e),
    }
}

/// Normalised text for answers that are not maths (`\text{Devon}`): lower case, no spaces, no
/// `$`, `\text{…}` and `\mathrm{…}` unwrapped.
fn text_form(s: &str) -> String {
    let mut t = s.to_string();
    for w in ["\\text", "\\mathrm", "\\textbf", "\\mbox"] {
        t = t.replace(w, "");
    }
    t.chars()
        .filter(|c| !c.is_whitespace() && !"${}\\.".contains(*c))
        .flat_map(|c| c.to_lowercase())
        .collect()
}

/// Verifies a completion against a gold answer, spending from `meter`.
pub fn verify(gold: &str, completion: &str, options: &MathOptions, meter: &mut Meter) -> Verdict {
    let mut verdict = Verdict {
        judgement: Judgement::NotEqual,
        gold: None,
        extracted: None,
        pred: None,
        reason: String::new(),
    };
    let stop = |mut v: Verdict, e: MathError| {
        v.reason = e.to_string();
        v.judgement = Judgement::Stopped(e);
        v
    };
    if let Err(e) = meter.check_input(gold.len().max(completion.len())) {
        return stop(verdict, e.into());
    }
    let limits = &options.limits;
    let gold_expr = match parse_gold(gold, limits, meter) {
        Ok(e) => Some(e),
        Err(MathError::Parse(_)) => None,
        Err(e) => return stop(verdict, e),
    };
    if gold_expr.is_none() && text_form(gold).is_empty() {
        verdict.judgement = Judgement::BadGold("empty".into());
        verdict.reason = "the gold answer is empty".into();
        return verdict;
    }
    verdict.gold = Some(match &gold_expr {
        Some(e) => e.to_string(),
        None => format!("text {:?}", text_form(gold)),
    });
    let mut last_error = None;
    for (strategy, candidate) in extract::candidates(completion, &options.extract) {
        if let Err(e) = meter.step(candidate.len() as u64) {
            return stop(verdict, e.into());
        }
        let pred = match parse_answer(&candidate, limits, meter) {
            Ok(p) => p,
            Err(MathError::Budget(e)) => return stop(verdict, e.into()),
            // A candidate over the limits stops the verification: falling through to a later
            // strategy would read a number out of the pathological answer.
            Err(e @ (MathError::TooComplex(_) | MathError::TooLarge(_))) => {
                verdict.extracted = Some((strategy, candidate.clone()));
                return stop(verdict, e);
            }
            Err(e) => {
                // Text answers compare as normalised text.
                if gold_expr.is_none() && matches!(e, MathError::Parse(_)) {
                    verdict.extracted = Some((strategy, candidate.clone()));
                    verdict.pred = Some(format!("text {:?}", text_form(&candidate)));
                    let equal = !text_form(&candidate).is_empty()
                        && text_form(&candidate) == text_form(gold);
                    verdict.judgement = if equal {
                        Judgement::Equal
                    } else {
                        Judgement::NotEqual
                    };
                    verdict.reason = "compared as text".into();
                    return verdict;
                }
                last_error = Some(e);
                continue;
            }
        };
        verdict.extracted = Some((strategy, candidate.clone()));
        verdict.pred = Some(pred.to_string());
        let Some(gold_expr) = &gold_expr else {
            let equal = text_form(&candidate) == text_form(gold);
            verdict.judgement = if equal {
                Judgement::Equal
            } else {
                Judgement::NotEqual
            };
            verdict.reason = "gold is not maths; compared as text".into();
            return verdict;
        };
        let mut comparer = compare::Comparer {
            options,
            limits,
            meter,
        };
        return match comparer.compare(gold_expr, &pred) {
            Ok(Decision::Equal(why)) => {
                verdict.judgement = Judgement::Equal;
                verdict.reason = why;
                verdict
            }
            Ok(Decision::NotEqual(why)) => {
                verdict.judgement = Judgement::NotEqual;
                verdict.reason = why;
                verdict
            }
            Err(compare::Stop::TooLarge(what)) => stop(verdict, MathError::TooLarge(what)),
            Err(compare::Stop::Budget(e)) => stop(verdict, e.into()),
        };
    }
    if gold_expr.is_none() {
        // A text gold against a one-line completion that no strategy read.
        let line = extract::clean(completion);
        if !line.is_empty() && !line.contains('\n') && line.len() <= limits.max_answer_bytes {
            let equal = text_form(&line) == text_form(gold);
            verdict.pred = Some(format!("text {:?}", text_form(&line)));
            verdict.judgement = if equal {
                Judgement::Equal
            } else {
                Judgement::NotEqual
            };
            verdict.reason = "compared as text".into();
            return verdict;
        }
    }
    match last_error {
        Some(e @ (MathError::TooComplex(_) | MathError::TooLarge(_))) => stop(verdict, e),
        Some(e) => {
            verdict.judgement = Judgement::NoAnswer;
            verdict.reason = format!("no readable answer ({e})");
            verdict
        }
        None => {
            verdict.judgement = Judgement::NoAnswer;
            verdict.reason = "no answer found".into();
            verdict
        }
    }
}
