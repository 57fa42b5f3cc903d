//! Dataset readers and writers for rewardkit: JSONL, gzip-compressed JSONL and Parquet in, the
//! same three formats out.
//!
//! ```no_run
//! use rewardkit_data::{open, Cell, Column, FieldMap, TableWriter};
//!
//! # fn main() -> Result<(), rewardkit_data::DataError> {
//! let fields = FieldMap::default()
//!     .with_prompt("question")?
//!     .with_completion("response.text")?
//!     .with_reference("answer")?;
//! let columns = vec![Column::u64("line"), Column::u64("index"), Column::f64("length")];
//! let mut out = TableWriter::create("lengths.parquet", columns)?;
//! for row in open("data.jsonl.gz", fields)? {
//!     let row = row?; // the first bad row stops the run, naming file, line and field
//!     for (index, sample) in row.samples.iter().enumerate() {
//!         let length = sample.completion.text().len() as f64;
//!         out.write_row(&[Cell::U64(row.line), Cell::U64(index as u64), Cell::F64(length)])?;
//!     }
//! }
//! out.finish()?; // until here, lengths.parquet is untouched
//! # Ok(())
//! # }
//! ```
//!
//! # Reading: one row out for every row in
//!
//! A reward run scores datasets of millions of rows, and the numbers it reports are only as
//! trustworthy as its accounting. So the readers here keep one promise (Architecture Invariant 5,
//! *nothing is lost*): **every input row yields exactly one item**, either `Ok(`[`InputRow`]`)` or
//! an `Err(`[`DataError`]`)` that names the file, the line and the field. No row is dropped because
//! it was odd, and no error is swallowed. The only lines that produce no item are blank ones
//! (empty or whitespace-only lines in JSONL, which editors and `cat a b > c` leave behind); they
//! are counted in [`ReadStats::blank_lines`] instead, and line numbers still count them, so that
//! `file.jsonl:1234` is the line an editor shows.
//!
//! What to do with a bad row is the caller's choice, made explicit:
//!
//! * iterate a [`SampleReader`] and use `?`: the first bad row stops the run with an error naming
//!   it (the default a command-line tool wants);
//! * or call [`SampleReader::skip_bad_rows`]: bad rows then arrive as
//!   [`RowEvent::Skipped`] carrying their line number and error, for the caller to count and
//!   report, while the rest of the file is read.
//!
//! Errors that make the rest of the stream unreadable (an I/O error, a corrupt gzip stream, a
//! Parquet decoding error, a binary file, an empty file) are *fatal*: they end the iteration in
//! both modes. [`DataError::is_row_error`] tells the two kinds apart.
//!
//! # Why streaming
//!
//! JSONL is read line by line through one reused buffer, so a file of a million rows needs memory
//! for one row at a time, and one enormous row (a 100 MB completion) is read like any other.
//! Parquet is read through the row iterator of the `parquet` crate, one row group at a time.
//! Readers are plain [`Iterator`]s: batching for parallel scoring is the caller's business.
//!
//! # Formats
//!
//! Gzip is detected by its magic bytes (whatever the extension says), Parquet by a `.parquet`
//! (or `.pq`) extension or its `PAR1` magic; [`Format`] overrides both. `-` reads JSONL (plain or
//! gzip) from standard input. A file that is neither text nor Parquet (binary garbage, a zip, a
//! UTF-16 file) is refused up front with a hint instead of producing a screenful of per-line
//! errors. Parquet rows are turned into JSON objects (`Row::to_json_value`), so both formats go
//! through the same field mapping and the same errors.
//!
//! # Field mapping
//!
//! A [`FieldMap`] says where in a row the prompt, the completion, the reference and the group id
//! live, as dotted paths into nested JSON (`response.text`, `messages.0.content`,
//! `messages.-1.content`). The shapes of the Hugging Face / TRL conventions are understood, and
//! the one ambiguity — is a JSON list of things *one chat completion* or *several completions*? —
//! is settled by shape alone, documented on [`FieldMap`]: a list of `{role, content}` objects is
//! one conversation; a list of strings or a list of lists is several completions of one prompt,
//! expanded into a group of samples.
//!
//! # Writing
//!
//! [`TableWriter`] writes flat result tables: the caller declares its [`Column`]s up front and
//! writes rows of [`Cell`]s. Output goes to a temporary file in the destination's directory and is
//! renamed into place by [`TableWriter::finish`], so a reader never sees half a file and a crashed
//! run leaves the previous results intact.

#![deny(missing_docs)]

mod error;
mod fields;
mod footer;
mod format;
mod read;
mod write;

pub use error::DataError;
pub use fields::{FieldMap, FieldPath};
pub use format::Format;
pub use read::{
    open, InputRow, Progress, ReadStats, Record, RecordReader, RowEvent, SampleReader, SkipBadRows,
    SkippedRow,
};
pub use write::{Cell, Column, ColumnKind, TableWriter};
