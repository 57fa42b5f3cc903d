use thiserror::Error;

/// Errors building a verifier from its options. Scoring itself never errors: it yields
/// [`rewardkit_core::Outcome`]s.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// An option has a value the verifier cannot use.
    #[error("option `{option}`: {expected}")]
    InvalidOption {
        /// The option's key.
        option: String,
        /// What was expected instead.
        expected: String,
    },
}

impl VerifyError {
    /// An [`VerifyError::InvalidOption`] error.
    pub fn invalid(option: impl Into<String>, expected: impl Into<String>) -> VerifyError {
        VerifyError::InvalidOption {
            option: option.into(),
            expected: expected.into(),
        }
    }
}
