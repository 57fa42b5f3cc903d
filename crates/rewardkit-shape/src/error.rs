use thiserror::Error;

/// Everything a caller can get wrong when asking for a transform, a combination or an advantage.
///
/// Non-finite *values* are never an error: they are masked and counted (see the crate docs).
/// Errors are about the shape of the request: slices of different lengths, options out of range.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum ShapeError {
    /// Two inputs that must be parallel have different lengths.
    #[error("`{what}` has {found} values, expected {expected} (one per {per})")]
    LengthMismatch {
        /// The input with the wrong length.
        what: &'static str,
        /// The length it should have.
        expected: usize,
        /// Its length.
        found: usize,
        /// What each value corresponds to.
        per: &'static str,
    },
    /// An option has a value the method cannot use.
    #[error("option `{option}` = {value}: expected {expected}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// The value given, as text.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// An option given for an estimator that does not use it (e.g. `scale` with RLOO).
    #[error("option `{option}` applies to estimator {applies_to} only; {estimator} {why}")]
    NotApplicable {
        /// The option's name.
        option: &'static str,
        /// The estimator chosen.
        estimator: &'static str,
        /// The estimators that use the option.
        applies_to: &'static str,
        /// Why the chosen one does not, e.g. `does not divide by a std`.
        why: &'static str,
    },
}

impl ShapeError {
    pub(crate) fn invalid(
        option: &'static str,
        value: impl std::fmt::Display,
        expected: &'static str,
    ) -> ShapeError {
        ShapeError::InvalidOption {
            option,
            value: value.to_string(),
            expected,
        }
    }

    pub(crate) fn check_len(
        what: &'static str,
        found: usize,
        expected: usize,
        per: &'static str,
    ) -> Result<(), ShapeError> {
        if found == expected {
            Ok(())
        } else {
            Err(ShapeError::LengthMismatch {
                what,
                expected,
                found,
                per,
            })
        }
    }
}

/// Checks that `value` is finite and at least `min`.
pub(crate) fn check_finite_at_least(
    option: &'static str,
    value: f64,
    min: f64,
    expected: &'static str,
) -> Result<(), ShapeError> {
    if value.is_finite() && value >= min {
        Ok(())
    } else {
        Err(ShapeError::invalid(option, value, expected))
    }
}
