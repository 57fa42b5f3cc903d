use std::fmt;

use serde::{Deserialize, Serialize};

/// What scoring one sample with one reward term produced.
///
/// Only [`Outcome::Scored`] carries a number, and that number is always finite: the
/// [`Outcome::scored`] constructor turns NaN and infinities into [`Outcome::Failed`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// A finite reward value.
    Scored {
        /// The value.
        value: f64,
    },
    /// The sample cannot be scored by this term (no answer found, no reference given, input
    /// over the size limit, …). `reason` is a short, stable phrase suitable for counting.
    Unscorable {
        /// Why there is no score.
        reason: String,
    },
    /// The term ran out of its step budget or its wall-clock deadline.
    TimedOut,
    /// The term failed (a bug, a broken model, a panic caught at the pipeline boundary).
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// The kind of an [`Outcome`], without its payload; used for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// [`Outcome::Scored`].
    Scored,
    /// [`Outcome::Unscorable`].
    Unscorable,
    /// [`Outcome::TimedOut`].
    TimedOut,
    /// [`Outcome::Failed`].
    Failed,
}

impl OutcomeKind {
    /// The snake-case name used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Scored => "scored",
            OutcomeKind::Unscorable => "unscorable",
            OutcomeKind::TimedOut => "timed_out",
            OutcomeKind::Failed => "failed",
        }
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Outcome {
    /// A score; a non-finite value becomes [`Outcome::Failed`] so that NaN never travels on.
    pub fn scored(value: f64) -> Outcome {
        if value.is_finite() {
            Outcome::Scored { value }
        } else {
            Outcome::Failed {
                error: format!("non-finite score {value}"),
            }
        }
    }

    /// An unscorable outcome with the given reason.
    pub fn unscorable(reason: impl Into<String>) -> Outcome {
        Outcome::Unscorable {
            reason: reason.into(),
        }
    }

    /// A failed outcome with the given error.
    pub fn failed(error: impl Into<String>) -> Outcome {
        Outcome::Failed {
            error: error.into(),
        }
    }

    /// The value if this is a score.
    pub fn value(&self) -> Option<f64> {
        match self {
            Outcome::Scored { value } => Some(*value),
            _ => None,
        }
    }

    /// The kind of this outcome.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Scored { .. } => OutcomeKind::Scored,
            Outcome::Unscorable { .. } => OutcomeKind::Unscorable,
            Outcome::TimedOut => OutcomeKind::TimedOut,
            Outcome::Failed { .. } => OutcomeKind::Failed,
        }
    }

    /// The reason or error text of a non-score (`"timed out"` for a time-out), `None` for a score.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Scored { .. } => None,
            Outcome::Unscorable { reason } => Some(reason),
            Outcome::TimedOut => Some("timed out"),
            Outcome::Failed { error } => Some(error),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Scored { value } => write!(f, "{value}"),
            Outcome::Unscorable { reason } => write!(f, "unscorable ({reason})"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::Failed { error } => write!(f, "failed ({error})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_scores_become_failures() {
        assert_eq!(Outcome::scored(1.5).value(), Some(1.5));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let outcome = Outcome::scored(bad);
            assert_eq!(outcome.kind(), OutcomeKind::Failed);
            assert_eq!(outcome.value(), None);
        }
    }

    #[test]
    fn serialises_with_a_kind_tag() {
        let json = serde_json::to_string(&Outcome::unscorable("no answer")).unwrap();
        assert_eq!(json, r#"{"kind":"unscorable","reason":"no answer"}"#);
        let json = serde_json::to_string(&Outcome::TimedOut).unwrap();
        assert_eq!(json, r#"{"kind":"timed_out"}"#);
    }
}
