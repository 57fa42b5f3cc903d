use std::path::PathBuf;

use rewardkit_data::DataError;
use thiserror::Error;

/// Everything that can go wrong evaluating a reward on a benchmark.
///
/// Errors about one benchmark or score row name the file, the 1-based line and the field, and
/// say what was expected; nothing here is ever turned into a silently wrong number.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Reading the benchmark or score file failed (malformed JSON, a missing field, I/O, …).
    #[error(transparent)]
    Data(#[from] DataError),

    /// A benchmark field has the wrong shape or value.
    #[error("{}:{line}: field `{field}`: expected {expected}, found {found}", .file.display())]
    Field {
        /// The file.
        file: PathBuf,
        /// 1-based line (or Parquet row).
        line: u64,
        /// The dotted path of the field.
        field: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },

    /// The benchmark as a whole cannot be evaluated (no rows left, an empty subset, duplicate
    /// ids, a Ties prompt without its counterpart, …).
    #[error("{}: {message}", .file.display())]
    Benchmark {
        /// The benchmark file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// A score file does not line up with the benchmark, or holds a value that is not a score.
    #[error("{}{}: {message}", .file.display(), line_part(*.line))]
    Scores {
        /// The score file.
        file: PathBuf,
        /// 1-based line, when the problem is one row.
        line: Option<u64>,
        /// What is wrong and what was expected.
        message: String,
    },

    /// A benchmark item has a candidate the reward did not score, under the `error` policy.
    #[error(
        "benchmark line {line} (id `{id}`): candidate {candidate} was not scored ({reason}); \
         use `--non-scores wrong` or `exclude` to evaluate anyway"
    )]
    NonScore {
        /// The item's line in the benchmark.
        line: u64,
        /// The item's id.
        id: String,
        /// 0-based candidate index.
        candidate: usize,
        /// The outcome's reason.
        reason: String,
    },

    /// An option is out of range or inconsistent.
    #[error("invalid option `{option}`: {message}")]
    Option {
        /// The option.
        option: String,
        /// What is wrong.
        message: String,
    },

    /// A reward spec failed to load or build.
    #[error(transparent)]
    Spec(#[from] rewardkit::SpecError),

    /// Reading or writing a file other than a dataset (the score cache, a report).
    #[error("{}: {source}", .file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl EvalError {
    /// Whether the error concerns one benchmark row only (a malformed line, a missing or
    /// ill-shaped field), so that reading may skip it and go on.
    pub fn is_row_error(&self) -> bool {
        match self {
            EvalError::Data(error) => error.is_row_error(),
            EvalError::Field { .. } => true,
            _ => false,
        }
    }

    /// The 1-based line of a row error.
    pub fn line(&self) -> Option<u64> {
        match self {
            EvalError::Data(error) => error.line(),
            EvalError::Field { line, .. } => Some(*line),
            EvalError::Scores { line, .. } => *line,
            EvalError::NonScore { line, .. } => Some(*line),
            _ => None,
        }
    }
}

fn line_part(line: Option<u64>) -> String {
    line.map_or(String::new(), |line| format!(":{line}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_place() {
        let e = EvalError::Field {
            file: "b.jsonl".into(),
            line: 3,
            field: "subset".into(),
            expected: "a string".into(),
            found: "a number".into(),
        };
        assert_eq!(
            e.to_string(),
            "b.jsonl:3: field `subset`: expected a string, found a number"
        );
        let e = EvalError::Scores {
            file: "s.jsonl".into(),
            line: None,
            message: "2 rows for 3 items".into(),
        };
        assert_eq!(e.to_string(), "s.jsonl: 2 rows for 3 items");
    }
}
