use std::any::Any;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::iter::FusedIterator;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use rewardkit_core::Sample;
use serde_json::{Map, Value};

use crate::fields::describe;
use crate::footer;
use crate::format::{binary_hint, sniff, Magic};
use crate::{DataError, FieldMap, Format};

/// Read-buffer size; also how much of the start of a text input is checked for binary content.
const BUFFER_BYTES: usize = 64 * 1024;

/// A line buffer grown past this by one huge row is released afterwards.
const KEEP_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// The name standard input goes by in errors.
const STDIN_NAME: &str = "<stdin>";

/// One input row as a JSON object, before field mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// 1-based line number (JSONL, counting blank lines) or row number (Parquet).
    pub line: u64,
    /// The row's fields.
    pub fields: Map<String, Value>,
}

/// One input row mapped to samples.
#[derive(Clone, Debug, PartialEq)]
pub struct InputRow {
    /// 1-based line number (JSONL, counting blank lines) or row number (Parquet).
    pub line: u64,
    /// The row's samples: one, or several when the completion was a list of completions.
    pub samples: Vec<Sample>,
    /// Whether the row was a list of completions expanded into a group (even a list of one).
    pub expanded: bool,
}

/// Counts kept while reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Rows read successfully.
    pub rows: u64,
    /// Rows that yielded an error (malformed, not an object, a bad field).
    pub bad_rows: u64,
    /// Blank JSONL lines, which yield nothing.
    pub blank_lines: u64,
    /// Samples produced (more than `rows` when rows expand into groups).
    pub samples: u64,
}

/// How far reading has got, for progress bars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input consumed so far (compressed bytes for gzip; read ahead by up to a
    /// buffer, so approximate). Zero for Parquet, which is counted in rows.
    pub bytes_read: u64,
    /// The input's size in bytes, when it is a file.
    pub bytes_total: Option<u64>,
    /// Rows (and bad rows) read so far.
    pub rows_read: u64,
    /// The number of rows in the input, when known in advance (Parquet).
    pub rows_total: Option<u64>,
}

/// Reads rows as JSON objects from JSONL (plain or gzip) or Parquet, one item per row.
///
/// Yields `Ok(`[`Record`]`)` or a row error for each row, and ends after the last row or after a
/// fatal error (see [`DataError::is_row_error`]). An input without any row yields one
/// [`DataError::NoRows`].
pub struct RecordReader {
    file: PathBuf,
    source: Source,
    stats: ReadStats,
    bytes_read: Arc<AtomicU64>,
    bytes_total: Option<u64>,
    rows_total: Option<u64>,
}

enum Source {
    Jsonl(JsonlSource),
    Parquet(ParquetSource),
    Done,
}

impl std::fmt::Debug for RecordReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.source {
            Source::Jsonl(_) => "jsonl",
            Source::Parquet(_) => "parquet",
            Source::Done => "done",
        };
        f.debug_struct("RecordReader")
            .field("file", &self.file)
            .field("source", &kind)
            .field("stats", &self.stats)
            .finish()
    }
}

impl RecordReader {
    /// Opens a file; `-` is standard input (JSONL only).
    ///
    /// Without a `format`, a `.parquet`/`.pq` name or the `PAR1` magic means Parquet and anything
    /// else is read as JSONL, gzip-compressed or not (told by the content). With
    /// [`Format::Parquet`] the file must be Parquet; with the JSONL formats it must be text,
    /// compressed or not.
    pub fn open(path: impl AsRef<Path>, format: Option<Format>) -> Result<RecordReader, DataError> {
        let path = path.as_ref();
        if path == Path::new("-") {
            if format == Some(Format::Parquet) {
                return Err(DataError::UnsupportedFormat {
                    file: STDIN_NAME.into(),
                    message: "Parquet cannot be read from standard input (it needs to seek); \
                              give a file name"
                        .to_owned(),
                });
            }
            return RecordReader::from_reader(STDIN_NAME, io::stdin());
        }
        let io_error = |source| DataError::Io {
            file: path.to_path_buf(),
            line: None,
            source,
        };
        let mut file = File::open(path).map_err(io_error)?;
        let bytes_total = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let mut head = [0u8; 4];
        let head_len = read_head(&mut file, &mut head).map_err(io_error)?;
        file.seek(SeekFrom::Start(0)).map_err(io_error)?;
        let parquet = match format {
            Some(Format::Parquet) => true,
            Some(_) => false,
            None => {
                // An empty file is read as (empty) JSONL, whatever its name: "no rows".
                head_len > 0
                    && (Format::from_path(path) == Some(Format::Parquet)
                        || sniff(&head[..head_len]) == Magic::Parquet)
            }
        };
        let mut reader = if parquet {
            RecordReader::parquet(path, file)?
        } else {
            RecordReader::from_reader(path, file)?
        };
        reader.bytes_total = bytes_total;
        Ok(reader)
    }

    /// Reads JSONL (plain or gzip-compressed, told by the content) from any reader; `name` labels
    /// errors.
    pub fn from_reader(
        name: impl Into<PathBuf>,
        reader: impl Read + Send + 'static,
    ) -> Result<RecordReader, DataError> {
        let file = name.into();
        let io_error = |source| DataError::Io {
            file: file.clone(),
            line: None,
            source,
        };
        let bytes_read = Arc::new(AtomicU64::new(0));
        let reader = CountingReader {
            inner: reader,
            count: Arc::clone(&bytes_read),
        };
        let mut plain = BufReader::with_capacity(BUFFER_BYTES, reader);
        let gzip = sniff(plain.fill_buf().map_err(io_error)?) == Magic::Gzip;
        let mut reader: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(
                BUFFER_BYTES,
                MultiGzDecoder::new(plain),
            ))
        } else {
            Box::new(plain)
        };
        if let Some(hint) = binary_hint(reader.fill_buf().map_err(io_error)?) {
            return Err(DataError::Binary { file, hint });
        }
        Ok(RecordReader {
            file,
            source: Source::Jsonl(JsonlSource {
                reader,
                buf: Vec::new(),
                line: 0,
            }),
            stats: ReadStats::default(),
            bytes_read,
            bytes_total: None,
            rows_total: None,
        })
    }

    fn parquet(path: &Path, mut file: File) -> Result<RecordReader, DataError> {
        let not_parquet = |message: String| DataError::NotParquet {
            file: path.to_path_buf(),
            message,
        };
        // A corrupt footer can make the decoder ask for gigabytes before reading anything
        // (see `footer`): checked first.
        let io_error = |source| DataError::Io {
            file: path.to_path_buf(),
            line: None,
            source,
        };
        footer::check(&mut file)
            .map_err(io_error)?
            .map_err(not_parquet)?;
        let mut pages = file.try_clone().map_err(io_error)?;
        // The Parquet decoder reads untrusted bytes; a panic in it must not take the run down.
        let (reader, chunks) = catch_unwind(AssertUnwindSafe(move || {
            SerializedFileReader::new(file).map(|reader| {
                let chunks: Vec<(u64, u64)> = reader
                    .metadata()
                    .row_groups()
                    .iter()
                    .flat_map(|group| group.columns())
                    .filter_map(|column| {
                        let start = column
                            .dictionary_page_offset()
                            .unwrap_or(column.data_page_offset());
                        Some((
                            start.try_into().ok()?,
                            column.compressed_size().try_into().ok()?,
                        ))
                    })
                    .collect();
                (reader, chunks)
            })
        }))
        .map_err(|panic| not_parquet(panic_message(panic)))?
        .map_err(|e| not_parquet(e.to_string()))?;
        // So can a page header (see `footer::check_pages`).
        footer::check_pages(&mut pages, chunks)
            .map_err(io_error)?
            .map_err(not_parquet)?;
        let rows_total = u64::try_from(reader.metadata().file_metadata().num_rows()).ok();
        let rows = catch_unwind(AssertUnwindSafe(move || reader.into_iter()))
            .map_err(|panic| not_parquet(panic_message(panic)))?;
        Ok(RecordReader {
            file: path.to_path_buf(),
            source: Source::Parquet(ParquetSource { rows, row: 0 }),
            stats: ReadStats::default(),
            bytes_read: Arc::new(AtomicU64::new(0)),
            bytes_total: None,
            rows_total,
        })
    }

    /// The file being read (`<stdin>` for standard input).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Counts so far (`samples` stays 0: records are not mapped to samples).
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// How far reading has got.
    pub fn progress(&self) -> Progress {
        Progress {
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_total: self.bytes_total,
            rows_read: self.stats.rows + self.stats.bad_rows,
            rows_total: self.rows_total,
        }
    }
}

/// Counts the bytes read through it, for [`Progress`].
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Iterator for RecordReader {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = match &mut self.source {
            Source::Jsonl(source) => source.next(&self.file, &mut self.stats),
            Source::Parquet(source) => source.next(&self.file),
            Source::Done => return None,
        };
        match item {
            None => {
                self.source = Source::Done;
                (self.stats.rows == 0 && self.stats.bad_rows == 0).then(|| {
                    Err(DataError::NoRows {
                        file: self.file.clone(),
                        blank_lines: self.stats.blank_lines,
                    })
                })
            }
            Some(Ok(record)) => {
                self.stats.rows += 1;
                Some(Ok(record))
            }
            Some(Err(error)) => {
                if error.is_row_error() {
                    self.stats.bad_rows += 1;
                } else {
                    self.source = Source::Done;
                }
                Some(Err(error))
            }
        }
    }
}

impl FusedIterator for RecordReader {}

struct JsonlSource {
    reader: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    line: u64,
}

impl JsonlSource {
    fn next(&mut self, file: &Path, stats: &mut ReadStats) -> Option<Result<Record, DataError>> {
        loop {
            if self.buf.capacity() > KEEP_BUFFER_BYTES {
                self.buf = Vec::new();
            }
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => {
                    return Some(Err(DataError::Io {
                        file: file.to_path_buf(),
                        line: Some(self.line),
                        source,
                    }))
                }
            }
            self.line += 1;
            let mut bytes = self.buf.as_slice();
            bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            let mut offset = 0;
            if self.line == 1 {
                if let Some(rest) = bytes.strip_prefix(b"\xef\xbb\xbf") {
                    bytes = rest;
                    offset = 3;
                }
            }
            if bytes
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                stats.blank_lines += 1;
                continue;
            }
            return Some(parse_line(bytes, offset, file, self.line));
        }
    }
}

/// Parses one non-blank JSONL line; `offset` is where `bytes` start within the line.
fn parse_line(bytes: &[u8], offset: usize, file: &Path, line: u64) -> Result<Record, DataError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DataError::InvalidUtf8 {
        file: file.to_path_buf(),
        line,
        offset: offset + e.valid_up_to(),
    })?;
    // A pretty-printed JSON array (a `.json` file) fails on its first line, `[`.
    let array_hint = if text.trim_start().starts_with('[') {
        " (if this is a JSON array file: JSON Lines has one object per line)"
    } else {
        ""
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(fields)) => Ok(Record { line, fields }),
        Ok(other) => Err(DataError::NotAnObject {
            file: file.to_path_buf(),
            line,
            found: format!("{}{array_hint}", describe(&other)),
        }),
        Err(e) => {
            let message = e.to_string();
            let position = format!(" at line {} column {}", e.line(), e.column());
            let message = message
                .strip_suffix(&position)
                .map(str::to_owned)
                .unwrap_or(message)
                + array_hint;
            Err(DataError::MalformedJson {
                file: file.to_path_buf(),
                line,
                column: e.column(),
                message,
            })
        }
    }
}

struct ParquetSource {
    rows: RowIter<'static>,
    row: u64,
}

impl ParquetSource {
    fn next(&mut self, file: &Path) -> Option<Result<Record, DataError>> {
        let failed = |row: u64, message: String| DataError::Parquet {
            file: file.to_path_buf(),
            row,
            message,
        };
        let rows = &mut self.rows;
        let next = match catch_unwind(AssertUnwindSafe(|| {
            rows.next().map(|row| row.map(|row| row.to_json_value()))
        })) {
            Ok(next) => next,
            Err(panic) => return Some(Err(failed(self.row, panic_message(panic)))),
        };
        match next? {
            Ok(Value::Object(fields)) => {
                self.row += 1;
                Some(Ok(Record {
                    line: self.row,
                    fields,
                }))
            }
            Ok(other) => {
                self.row += 1;
                Some(Err(DataError::NotAnObject {
                    file: file.to_path_buf(),
                    line: self.row,
                    found: describe(&other),
                }))
            }
            Err(e) => Some(Err(failed(self.row, with_codec_hint(e.to_string())))),
        }
    }
}

/// Reads up to `head.len()` bytes from the start of a file; fewer if it is shorter.
fn read_head(file: &mut File, head: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Adds what to do when a Parquet file uses a compression codec this build leaves out.
fn with_codec_hint(message: String) -> String {
    if message.contains("Disabled feature at compile time") {
        format!(
            "{message} (this build reads Parquet compressed with snappy or gzip, and zstd when \
             rewardkit-data is built with its `zstd` feature; or rewrite the file with snappy)"
        )
    } else {
        message
    }
}

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    format!("the Parquet decoder panicked on this input ({detail})")
}

/// Reads samples: a [`RecordReader`] with a [`FieldMap`] applied to each row.
///
/// Yields one item per input row: `Ok(`[`InputRow`]`)` or an error naming the row. Row errors do
/// not end the iteration, so `for row in reader { let row = row?; … }` stops at the first bad row
/// while [`SampleReader::skip_bad_rows`] reads past them; fatal errors end it.
#[derive(Debug)]
pub struct SampleReader {
    records: RecordReader,
    fields: FieldMap,
    stats: ReadStats,
}

/// Opens `path` (`-` for standard input) in the format its name and content imply, and maps its
/// rows with `fields`. See [`RecordReader::open`] and [`SampleReader`].
pub fn open(path: impl AsRef<Path>, fields: FieldMap) -> Result<SampleReader, DataError> {
    Ok(SampleReader::new(RecordReader::open(path, None)?, fields))
}

impl SampleReader {
    /// Maps the rows of `records` with `fields`.
    pub fn new(records: RecordReader, fields: FieldMap) -> SampleReader {
        SampleReader {
            records,
            fields,
            stats: ReadStats::default(),
        }
    }

    /// The file being read.
    pub fn file(&self) -> &Path {
        self.records.file()
    }

    /// The field mapping.
    pub fn fields(&self) -> &FieldMap {
        &self.fields
    }

    /// Counts so far.
    pub fn stats(&self) -> ReadStats {
        ReadStats {
            blank_lines: self.records.stats().blank_lines,
            ..self.stats
        }
    }

    /// How far reading has got.
    pub fn progress(&self) -> Progress {
        self.records.progress()
    }

    /// Reads past bad rows: they arrive as [`RowEvent::Skipped`] instead of errors.
    pub fn skip_bad_rows(self) -> SkipBadRows {
        SkipBadRows { inner: self }
    }
}

impl Iterator for SampleReader {
    type Item = Result<InputRow, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mapped = self.records.next()?.and_then(|record| {
            let (samples, expanded) =
                self.fields
                    .map_row(record.fields, &self.records.file, record.line)?;
            Ok(InputRow {
                line: record.line,
                samples,
                expanded,
            })
        });
        match &mapped {
            Ok(row) => {
                self.stats.rows += 1;
                self.stats.samples += row.samples.len() as u64;
            }
            Err(error) if error.is_row_error() => self.stats.bad_rows += 1,
            Err(_) => {}
        }
        Some(mapped)
    }
}

impl FusedIterator for SampleReader {}

/// A row that could not be read, with its line number and why.
#[derive(Debug)]
pub struct SkippedRow {
    /// 1-based line or row number.
    pub line: u64,
    /// What was wrong with it (a row error: [`DataError::is_row_error`] holds).
    pub error: DataError,
}

/// What reading one row gave, when bad rows are skipped.
#[derive(Debug)]
pub enum RowEvent {
    /// A good row.
    Row(InputRow),
    /// A bad row, skipped; count it and report it.
    Skipped(SkippedRow),
}

/// A [`SampleReader`] that reads past bad rows, from [`SampleReader::skip_bad_rows`].
///
/// Every input row still yields exactly one item: [`RowEvent::Row`] or [`RowEvent::Skipped`].
/// Only fatal errors come out as `Err`, and they end the iteration.
#[derive(Debug)]
pub struct SkipBadRows {
    inner: SampleReader,
}

impl SkipBadRows {
    /// Counts so far (skipped rows are `bad_rows`).
    pub fn stats(&self) -> ReadStats {
        self.inner.stats()
    }

    /// The file being read.
    pub fn file(&self) -> &Path {
        self.inner.file()
    }

    /// How far reading has got.
    pub fn progress(&self) -> Progress {
        self.inner.progress()
    }
}

impl Iterator for SkipBadRows {
    type Item = Result<RowEvent, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.inner.next()? {
            Ok(row) => Ok(RowEvent::Row(row)),
            Err(error) if error.is_row_error() => Ok(RowEvent::Skipped(SkippedRow {
                line: error.line().unwrap_or(0),
                error,
            })),
            Err(error) => Err(error),
        })
    }
}

impl FusedIterator for SkipBadRows {}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn readers_can_move_to_another_thread() {
        assert_send::<RecordReader>();
        assert_send::<SampleReader>();
        assert_send::<SkipBadRows>();
    }

    fn records(text: &'static [u8]) -> Vec<Result<Record, DataError>> {
        RecordReader::from_reader("mem.jsonl", text)
            .expect("opens")
            .collect()
    }

    #[test]
    fn blank_lines_count_but_keep_their_line_numbers() {
        let mut reader =
            RecordReader::from_reader("mem.jsonl", &b"\n{\"a\":1}\r\n  \n\t\n{\"a\":2}"[..])
                .unwrap();
        let lines: Vec<u64> = reader.by_ref().map(|r| r.unwrap().line).collect();
        assert_eq!(lines, [2, 5]);
        assert_eq!(
            reader.stats(),
            ReadStats {
                rows: 2,
                bad_rows: 0,
                blank_lines: 3,
                samples: 0
            }
        );
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let rows = records(b"\xef\xbb\xbf{\"a\":1}\n");
        assert_eq!(rows.len(), 1);
        assert!(rows[0].is_ok());
    }

    #[test]
    fn bad_lines_are_row_errors_and_reading_goes_on() {
        let rows = records(b"{\"a\":1}\n{\"a\":\n[1]\n\xff\xfe\n{\"a\":3}\n");
        assert_eq!(rows.len(), 5);
        let message = rows[1].as_ref().unwrap_err().to_string();
        assert!(
            message.starts_with("mem.jsonl:2:5: malformed JSON: EOF while parsing a value"),
            "{message}"
        );
        let message = rows[2].as_ref().unwrap_err().to_string();
        assert_eq!(
            message,
            "mem.jsonl:3: expected a JSON object, found a list of 1 item (if this is a JSON \
             array file: JSON Lines has one object per line)"
        );
        let message = rows[3].as_ref().unwrap_err().to_string();
        assert_eq!(message, "mem.jsonl:4: invalid UTF-8 at byte 0 of the line");
        assert_eq!(rows[4].as_ref().unwrap().line, 5);
    }

    #[test]
    fn empty_inputs_have_no_rows() {
        for text in [&b""[..], b"\n\n  \n"] {
            let rows: Vec<_> = RecordReader::from_reader("e.jsonl", text)
                .unwrap()
                .collect();
            assert_eq!(rows.len(), 1);
            assert!(matches!(rows[0], Err(DataError::NoRows { .. })));
        }
    }

    #[test]
    fn missing_codecs_get_a_hint() {
        let message = with_codec_hint("Disabled feature at compile time: zstd".to_owned());
        assert!(message.contains("`zstd` feature"), "{message}");
        assert_eq!(with_codec_hint("other".to_owned()), "other");
    }

    #[test]
    fn progress_counts_bytes() {
        let text = b"{\"a\":1}\n{\"a\":2}\n";
        let mut reader = RecordReader::from_reader("mem.jsonl", &text[..]).unwrap();
        assert_eq!(reader.by_ref().count(), 2);
        let progress = reader.progress();
        assert_eq!(progress.bytes_read, text.len() as u64);
        assert_eq!(progress.rows_read, 2);
        assert_eq!(progress.rows_total, None);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut line = "[".repeat(100_000);
        line.push('\n');
        let rows: Vec<_> = RecordReader::from_reader("deep.jsonl", io::Cursor::new(line))
            .unwrap()
            .collect();
        assert!(matches!(rows[0], Err(DataError::MalformedJson { .. })));
    }
}
