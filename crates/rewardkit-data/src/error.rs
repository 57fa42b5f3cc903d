use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Everything that can go wrong reading or writing a dataset.
///
/// Variants about one input row carry the file, the 1-based line (or Parquet row) number and,
/// where it applies, the dotted field path and what was expected; see
/// [`DataError::is_row_error`] for which errors concern one row and which end the stream.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataError {
    /// The operating system failed to open, read or write a file (this includes a corrupt gzip
    /// stream, which surfaces as a read error).
    #[error("{}{}: {source}", .file.display(), at_line(*.line))]
    Io {
        /// The file.
        file: PathBuf,
        /// The last line read before the failure, if reading had started.
        line: Option<u64>,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A JSONL line is not valid JSON.
    #[error("{}:{line}:{column}: malformed JSON: {message}", .file.display())]
    MalformedJson {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// 1-based column within the line, as reported by the JSON parser.
        column: usize,
        /// The parser's message.
        message: String,
    },

    /// A JSONL line is valid JSON but not an object (`[1, 2]`, `"text"`, `42`).
    #[error("{}:{line}: expected a JSON object, found {found}", .file.display())]
    NotAnObject {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What was found instead.
        found: String,
    },

    /// A mapped field is absent from a row.
    #[error(
        "{}:{line}: missing field `{field}`{} (available: {})",
        .file.display(),
        where_missing(.field, .missing),
        list_or_none(.available)
    )]
    MissingField {
        /// The file.
        file: PathBuf,
        /// 1-based line or row number.
        line: u64,
        /// The dotted path that was looked up.
        field: String,
        /// The part of the path that is absent: `field` itself, or a prefix of it (`response`
        /// when looking up `response.text` in a row without `response`).
        missing: String,
        /// The keys (or list indexes) present where the lookup stopped.
        available: Vec<String>,
    },

    /// A field has a value of the wrong type.
    #[error("{}:{line}: field `{field}`: expected {expected}, found {found}", .file.display())]
    WrongType {
        /// The file.
        file: PathBuf,
        /// 1-based line or row number.
        line: u64,
        /// The dotted path of the offending value.
        field: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },

    /// A JSONL line is not valid UTF-8.
    #[error("{}:{line}: invalid UTF-8 at byte {offset} of the line", .file.display())]
    InvalidUtf8 {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Byte offset within the line of the first invalid byte.
        offset: usize,
    },

    /// The input is not a text (JSONL) file at all.
    #[error("{}: not a JSONL text file: {hint}", .file.display())]
    Binary {
        /// The file.
        file: PathBuf,
        /// What the content looks like instead.
        hint: String,
    },

    /// The input has no rows.
    #[error("{}: no rows ({})", .file.display(), no_rows_detail(*.blank_lines))]
    NoRows {
        /// The file.
        file: PathBuf,
        /// Blank lines seen (a file of only blank lines has no rows either).
        blank_lines: u64,
    },

    /// A file read as Parquet is not a Parquet file (or its footer or a page header is corrupt).
    #[error("{}: not a Parquet file: {message}", .file.display())]
    NotParquet {
        /// The file.
        file: PathBuf,
        /// The Parquet library's message.
        message: String,
    },

    /// Decoding a Parquet file failed part-way.
    #[error("{}: Parquet read error after row {row}: {message}", .file.display())]
    Parquet {
        /// The file.
        file: PathBuf,
        /// Rows read before the failure.
        row: u64,
        /// The Parquet library's message.
        message: String,
    },

    /// Writing a Parquet file failed.
    #[error("{}: Parquet write error: {message}", .file.display())]
    ParquetWrite {
        /// The file.
        file: PathBuf,
        /// The Parquet library's message.
        message: String,
    },

    /// A field path is not well formed (empty, or with an empty segment as in `a..b`).
    #[error("invalid field path `{path}`: {reason}")]
    InvalidFieldPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The format cannot be told from the file name, or is not supported for this use.
    #[error("{}: {message}", .file.display())]
    UnsupportedFormat {
        /// The file.
        file: PathBuf,
        /// What is unsupported and what would work.
        message: String,
    },

    /// An output schema is not usable (no columns, duplicate names).
    #[error("invalid output schema: {reason}")]
    InvalidSchema {
        /// What is wrong.
        reason: String,
    },

    /// An output row does not match the declared schema.
    #[error("{}: output row {row}: {message}", .file.display())]
    RowMismatch {
        /// The file being written.
        file: PathBuf,
        /// 1-based number of the output row.
        row: u64,
        /// Which column or count is wrong, and how.
        message: String,
    },
}

impl DataError {
    /// Whether this error concerns one input row only, so that reading can go on with the next
    /// (malformed JSON, not an object, a missing field, a wrong type, invalid UTF-8). Every other
    /// error ends the stream.
    pub fn is_row_error(&self) -> bool {
        matches!(
            self,
            DataError::MalformedJson { .. }
                | DataError::NotAnObject { .. }
                | DataError::MissingField { .. }
                | DataError::WrongType { .. }
                | DataError::InvalidUtf8 { .. }
        )
    }

    /// The file the error is about, if any.
    pub fn file(&self) -> Option<&Path> {
        match self {
            DataError::Io { file, .. }
            | DataError::MalformedJson { file, .. }
            | DataError::NotAnObject { file, .. }
            | DataError::MissingField { file, .. }
            | DataError::WrongType { file, .. }
            | DataError::InvalidUtf8 { file, .. }
            | DataError::Binary { file, .. }
            | DataError::NoRows { file, .. }
            | DataError::NotParquet { file, .. }
            | DataError::Parquet { file, .. }
            | DataError::ParquetWrite { file, .. }
            | DataError::UnsupportedFormat { file, .. }
            | DataError::RowMismatch { file, .. } => Some(file),
            DataError::InvalidFieldPath { .. } | DataError::InvalidSchema { .. } => None,
        }
    }

    /// The 1-based input line (or Parquet row) number of a row error, if any.
    pub fn line(&self) -> Option<u64> {
        match self {
            DataError::MalformedJson { line, .. }
            | DataError::NotAnObject { line, .. }
            | DataError::MissingField { line, .. }
            | DataError::WrongType { line, .. }
            | DataError::InvalidUtf8 { line, .. } => Some(*line),
            DataError::Io { line, .. } => *line,
            _ => None,
        }
    }
}

fn at_line(line: Option<u64>) -> String {
    match line {
        Some(line) => format!(" (after line {line})"),
        None => String::new(),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_owned()
    } else {
        items.join(", ")
    }
}

fn where_missing(field: &str, missing: &str) -> String {
    if field == missing {
        String::new()
    } else {
        format!(": `{missing}` is absent")
    }
}

fn no_rows_detail(blank_lines: u64) -> String {
    if blank_lines == 0 {
        "the input is empty".to_owned()
    } else {
        format!("only {blank_lines} blank line(s)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_line_and_field() {
        let e = DataError::MissingField {
            file: "data.jsonl".into(),
            line: 7,
            field: "response.text".into(),
            missing: "response.text".into(),
            available: vec!["prompt".into(), "response".into()],
        };
        assert_eq!(
            e.to_string(),
            "data.jsonl:7: missing field `response.text` (available: prompt, response)"
        );
        assert!(e.is_row_error());
        assert_eq!(e.line(), Some(7));

        let e = DataError::NoRows {
            file: "empty.jsonl".into(),
            blank_lines: 0,
        };
        assert_eq!(e.to_string(), "empty.jsonl: no rows (the input is empty)");
        assert!(!e.is_row_error());

        let e = DataError::Io {
            file: "x.jsonl.gz".into(),
            line: Some(3),
            source: io::Error::new(io::ErrorKind::InvalidData, "corrupt deflate stream"),
        };
        assert_eq!(
            e.to_string(),
            "x.jsonl.gz (after line 3): corrupt deflate stream"
        );
    }
}
