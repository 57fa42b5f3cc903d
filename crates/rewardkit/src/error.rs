use std::path::PathBuf;

use thiserror::Error;

/// Everything that can be wrong with a spec. Each variant names where (file, term, key) and what
/// was expected.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The spec file could not be read.
    #[error("{}: cannot read spec: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key is unknown or has the wrong type.
    #[error("{file}: {message}")]
    Toml {
        /// The file (or a label for an in-memory spec).
        file: String,
        /// The TOML parser's message, which names the key, line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{file}: `{key}`: expected {expected}")]
    Invalid {
        /// The file.
        file: String,
        /// The dotted key, e.g. `term[1].weight`.
        key: String,
        /// What was expected.
        expected: String,
    },
    /// A term names a kind no registry entry knows.
    #[error("{file}: `term[{index}].kind`: unknown kind `{kind}`; known kinds: {known}")]
    UnknownKind {
        /// The file.
        file: String,
        /// The term's position in the spec.
        index: usize,
        /// The unknown kind.
        kind: String,
        /// The kinds that exist, comma-separated.
        known: String,
    },
    /// A term's options did not deserialise or did not validate.
    #[error("{file}: `term[{index}].options` (term `{name}`, kind `{kind}`): {message}")]
    Options {
        /// The file.
        file: String,
        /// The term's position in the spec.
        index: usize,
        /// The term's name.
        name: String,
        /// The term's kind.
        kind: String,
        /// What was wrong.
        message: String,
    },
    /// The batch pass was given inputs that do not fit the spec or each other.
    #[error("{file}: batch pass: {message}")]
    Batch {
        /// The spec file.
        file: String,
        /// What did not fit.
        message: String,
    },
}
