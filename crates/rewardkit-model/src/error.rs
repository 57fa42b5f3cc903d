use std::path::PathBuf;

use rewardkit_data::DataError;
use thiserror::Error;

/// Everything that can go wrong training, saving, loading or scoring with a reward model.
///
/// Errors about one input row name the file, the 1-based line and the field, and say what was
/// expected, like [`DataError`] does for the readers this crate builds on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ModelError {
    /// Reading the data file failed (malformed JSON, I/O, …); the error names the place.
    #[error(transparent)]
    Data(#[from] DataError),

    /// A field of one row has the wrong shape or is missing.
    #[error("{}:{line}: field `{field}`: expected {expected}", .file.display())]
    Field {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The field (column) name.
        field: String,
        /// What was expected there.
        expected: String,
    },

    /// A data file has no row the objective can use.
    #[error("{}: {reason}", .file.display())]
    NoRows {
        /// The file.
        file: PathBuf,
        /// Why nothing could be used.
        reason: String,
    },

    /// A training or scoring option is out of range or inconsistent with another.
    #[error("option `{option}`: {reason}")]
    Option {
        /// The option's name as the user wrote it (CLI flag or spec key).
        option: String,
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// A model directory or checkpoint is missing a file, or a file there is malformed.
    #[error("{}: {reason}", .path.display())]
    Load {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A chat template could not be compiled or rendered; `origin` names its file (and field).
    #[error("{origin}: {reason}")]
    Template {
        /// Where the template came from (`…/tokenizer_config.json, field chat_template`).
        origin: String,
        /// What failed, with the template line the error points at.
        reason: String,
    },

    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The loss became NaN or infinite: training stopped instead of writing a broken model.
    #[error("training diverged at step {step}: the loss is {loss} (lower the learning rate)")]
    Diverged {
        /// The optimizer step (1-based).
        step: usize,
        /// The non-finite loss.
        loss: f64,
    },

    /// A tensor operation failed (a shape mismatch is a bug in this crate; a device error is not).
    #[error("tensor computation: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl ModelError {
    pub(crate) fn option(option: &str, reason: impl Into<String>) -> ModelError {
        ModelError::Option {
            option: option.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn load(path: impl Into<PathBuf>, reason: impl Into<String>) -> ModelError {
        ModelError::Load {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ModelError {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}
