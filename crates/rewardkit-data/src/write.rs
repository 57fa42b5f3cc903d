use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::write::GzEncoder;
use flate2::Compression as GzCompression;
use parquet::basic::{Compression, ConvertedType, LogicalType, Repetition, Type as PhysicalType};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{PrimitiveTypeBuilder, Type};
use tempfile::NamedTempFile;

use crate::{DataError, Format};

/// Rows buffered before a Parquet row group is written.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Buffered string bytes that also close a Parquet row group (keeps memory bounded when cells are
/// long texts).
const ROW_GROUP_BYTES: usize = 128 * 1024 * 1024;

/// The type of an output column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ColumnKind {
    /// An unsigned integer, or null (row numbers, counts, pass-through ids).
    U64,
    /// A float, or null. Non-finite values are written as null.
    F64,
    /// A UTF-8 string, or null.
    Str,
    /// A list of floats, or null (per-step rewards, advantages and returns). Non-finite elements
    /// are written as null elements; the list keeps its length.
    F64List,
    /// A boolean, or null (a pass-through `true`/`false` field stays a boolean).
    Bool,
    /// A list of unsigned integers (null elements allowed), or null: a pass-through list of ids or
    /// counts stays a list of integers.
    U64List,
    /// A signed integer, or null: a pass-through integer column that holds a negative number
    /// (`"offset": -3`) stays integers.
    I64,
    /// A list of signed integers (null elements allowed), or null: a pass-through list of integers
    /// with a negative one (`[-1, 2]`) stays a list of integers.
    I64List,
}

/// One output column: a name and a type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Column {
    /// The column name (the JSON key, the Parquet field name).
    pub name: String,
    /// The type.
    pub kind: ColumnKind,
}

impl Column {
    /// A column of the given kind.
    pub fn new(name: impl Into<String>, kind: ColumnKind) -> Column {
        Column {
            name: name.into(),
            kind,
        }
    }

    /// A [`ColumnKind::U64`] column.
    pub fn u64(name: impl Into<String>) -> Column {
        Column::new(name, ColumnKind::U64)
    }

    /// A [`ColumnKind::F64`] column.
    pub fn f64(name: impl Into<String>) -> Column {
        Column::new(name, ColumnKind::F64)
    }

    /// A [`ColumnKind::Str`] column.
    pub fn str(name: impl Into<String>) -> Column {
        Column::new(name, ColumnKind::Str)
    }

    /// A [`ColumnKind::F64List`] column.
    pub fn f64_list(name: impl Into<String>) -> Column {
        Column::new(name, ColumnKind::F64List)
    }

    /// A [`ColumnKind::Bool`] column.
    pub fn bool(name: impl Into<String>) -> Column {
        Column::new(name, ColumnKind::Bool)
    }

    /// A [`ColumnKind::U64List`] column.
    pub fn u64_list(name: impl Into<String>) -> Column {
        Column::new(name, ColumnKind::U64List)
    }

    /// A [`ColumnKind::I64`] column.
    pub fn i64(name: impl Into<String>) -> Column {
        Column::new(name, ColumnKind::I64)
    }

    /// A [`ColumnKind::I64List`] column.
    pub fn i64_list(name: impl Into<String>) -> Column {
        Column::new(name, ColumnKind::I64List)
    }
}

/// One value of an output row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'a> {
    /// For a [`ColumnKind::U64`] column.
    U64(u64),
    /// For a [`ColumnKind::F64`] column; NaN and infinities are written as null.
    F64(f64),
    /// For a [`ColumnKind::Str`] column.
    Str(&'a str),
    /// For a [`ColumnKind::F64List`] column; NaN and infinities become null elements.
    F64List(&'a [f64]),
    /// For a [`ColumnKind::Bool`] column.
    Bool(bool),
    /// For a [`ColumnKind::U64List`] column; `None` elements are null elements.
    U64List(&'a [Option<u64>]),
    /// For a [`ColumnKind::I64`] column.
    I64(i64),
    /// For a [`ColumnKind::I64List`] column; `None` elements are null elements.
    I64List(&'a [Option<i64>]),
    /// Null, for a column of any kind.
    Null,
}

impl From<u64> for Cell<'_> {
    fn from(value: u64) -> Self {
        Cell::U64(value)
    }
}

impl From<f64> for Cell<'_> {
    fn from(value: f64) -> Self {
        Cell::F64(value)
    }
}

impl<'a> From<&'a str> for Cell<'a> {
    fn from(value: &'a str) -> Self {
        Cell::Str(value)
    }
}

impl From<bool> for Cell<'_> {
    fn from(value: bool) -> Self {
        Cell::Bool(value)
    }
}

impl<'a> From<&'a [f64]> for Cell<'a> {
    fn from(value: &'a [f64]) -> Self {
        Cell::F64List(value)
    }
}

impl<'a> From<&'a [Option<u64>]> for Cell<'a> {
    fn from(value: &'a [Option<u64>]) -> Self {
        Cell::U64List(value)
    }
}

impl From<i64> for Cell<'_> {
    fn from(value: i64) -> Self {
        Cell::I64(value)
    }
}

impl<'a> From<&'a [Option<i64>]> for Cell<'a> {
    fn from(value: &'a [Option<i64>]) -> Self {
        Cell::I64List(value)
    }
}

impl<'a, T: Into<Cell<'a>>> From<Option<T>> for Cell<'a> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Cell::Null, Into::into)
    }
}

/// Writes a table of results as JSONL, gzip-compressed JSONL or Parquet.
///
/// The columns are declared up front; each [`TableWriter::write_row`] gives one cell per column,
/// in order, and is checked against them. Output goes to a temporary file next to the
/// destination, which [`TableWriter::finish`] flushes, syncs and renames into place: until then
/// the destination is untouched, and a writer dropped without `finish` (an error, a panic, a
/// `Ctrl-C`) leaves nothing behind. `-` writes JSONL to standard output instead (not atomic).
///
/// In JSONL each row is one flat object with the column names as keys, in column order; floats
/// are written in the shortest form that reads back to the same `f64`, integers as JSON integers.
/// In Parquet every column is optional (nullable): `U64` is `INT64 (UINT_64)`, `I64` `INT64
/// (INT_64)`, `F64` `DOUBLE`, `Str` `BYTE_ARRAY (UTF8)`, `F64List` a standard three-level `LIST` of
/// optional `DOUBLE` (a JSON array in JSONL), `Bool` `BOOLEAN` (`true`/`false` in JSONL), `U64List`
/// and `I64List` the same `LIST` of optional `INT64 (UINT_64)` or `INT64 (INT_64)` (a JSON array of
/// integers); rows are grouped by 65,536 and compressed with Snappy. In both, a non-finite float is written as null: a NaN must never pass for a reward
/// downstream.
pub struct TableWriter {
    columns: Vec<Column>,
    target: PathBuf,
    temp: Option<NamedTempFile>,
    sink: Sink,
    rows: u64,
}

enum Sink {
    Jsonl {
        out: Box<dyn JsonlOut>,
        keys: Vec<Vec<u8>>,
        line: Vec<u8>,
    },
    Parquet {
        writer: Box<SerializedFileWriter<File>>,
        buffers: Vec<ColumnBuffer>,
        buffered_rows: usize,
        buffered_bytes: usize,
    },
}

/// A JSONL byte sink that can be finished (gzip needs its trailer written).
trait JsonlOut: Write + Send {
    fn finish_stream(self: Box<Self>) -> io::Result<()>;
}

impl<W: Write + Send> JsonlOut for BufWriter<W> {
    fn finish_stream(mut self: Box<Self>) -> io::Result<()> {
        self.flush()
    }
}

impl<W: Write + Send> JsonlOut for GzEncoder<W> {
    fn finish_stream(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}

enum ColumnBuffer {
    /// `U64` and `I64` columns: both are stored as INT64 (UINT_64 with the same bits).
    Int {
        values: Vec<i64>,
        levels: Vec<i16>,
    },
    F64 {
        values: Vec<f64>,
        levels: Vec<i16>,
    },
    Str {
        values: Vec<ByteArray>,
        levels: Vec<i16>,
    },
    /// Definition levels: 0 null list, 1 empty list, 2 null element, 3 element; repetition
    /// levels: 0 starts a row, 1 continues its list.
    F64List {
        values: Vec<f64>,
        definition: Vec<i16>,
        repetition: Vec<i16>,
    },
    Bool {
        values: Vec<bool>,
        levels: Vec<i16>,
    },
    /// `U64List` and `I64List` columns: levels as for `F64List`; the values are stored as INT64
    /// (UINT_64 with the same bits).
    IntList {
        values: Vec<i64>,
        definition: Vec<i16>,
        repetition: Vec<i16>,
    },
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("target", &self.target)
            .field("columns", &self.columns)
            .field("rows", &self.rows)
            .finish()
    }
}

impl TableWriter {
    /// Creates a writer for `path` in the format its extension names (`.jsonl`, `.jsonl.gz`,
    /// `.parquet`; see [`Format::from_path`]); `-` is JSONL on standard output.
    pub fn create(path: impl AsRef<Path>, columns: Vec<Column>) -> Result<TableWriter, DataError> {
        let path = path.as_ref();
        if path == Path::new("-") {
            return TableWriter::create_as(path, Format::Jsonl, columns);
        }
        let format = Format::from_path(path).ok_or_else(|| DataError::UnsupportedFormat {
            file: path.to_path_buf(),
            message: "cannot tell the output format from the file name; use .jsonl, .jsonl.gz \
                      or .parquet, or choose the format explicitly"
                .to_owned(),
        })?;
        TableWriter::create_as(path, format, columns)
    }

    /// Creates a writer for `path` in the given format, whatever its extension.
    pub fn create_as(
        path: impl AsRef<Path>,
        format: Format,
        columns: Vec<Column>,
    ) -> Result<TableWriter, DataError> {
        let target = path.as_ref().to_path_buf();
        check_schema(&columns)?;
        let stdout = target == Path::new("-");
        if stdout && format == Format::Parquet {
            return Err(DataError::UnsupportedFormat {
                file: target,
                message: "Parquet cannot be written to standard output; give a file name"
                    .to_owned(),
            });
        }
        let io_error = |source| DataError::Io {
            file: target.clone(),
            line: None,
            source,
        };
        let (temp, file) = if stdout {
            (None, None)
        } else {
            let temp = temp_file_for(&target).map_err(io_error)?;
            let file = temp.as_file().try_clone().map_err(io_error)?;
            (Some(temp), Some(file))
        };
        let sink = match (format, file) {
            (Format::Parquet, Some(file)) => {
                let schema = parquet_schema(&columns).map_err(|e| DataError::ParquetWrite {
                    file: target.clone(),
                    message: e.to_string(),
                })?;
                let properties = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_created_by(format!("rewardkit-data {}", env!("CARGO_PKG_VERSION")))
                    .build();
                let writer = SerializedFileWriter::new(file, schema, Arc::new(properties))
                    .map_err(|e| DataError::ParquetWrite {
                        file: target.clone(),
                        message: e.to_string(),
                    })?;
                Sink::Parquet {
                    writer: Box::new(writer),
                    buffers: columns.iter().map(|c| ColumnBuffer::new(c.kind)).collect(),
                    buffered_rows: 0,
                    buffered_bytes: 0,
                }
            }
            (format, file) => {
                let out: Box<dyn JsonlOut> = match (format, file) {
                    (Format::JsonlGz, Some(file)) => Box::new(GzEncoder::new(
                        BufWriter::with_capacity(256 * 1024, file),
                        GzCompression::default(),
                    )),
                    (Format::JsonlGz, None) => Box::new(GzEncoder::new(
                        BufWriter::new(io::stdout()),
                        GzCompression::default(),
                    )),
                    (_, Some(file)) => Box::new(BufWriter::with_capacity(256 * 1024, file)),
                    (_, None) => Box::new(BufWriter::new(io::stdout())),
                };
                let keys = columns
                    .iter()
                    .map(|column| {
                        serde_json::to_vec(&column.name)
                            .expect("serialising a string cannot fail; this is a bug")
                    })
                    .collect();
                Sink::Jsonl {
                    out,
                    keys,
                    line: Vec::new(),
                }
            }
        };
        Ok(TableWriter {
            columns,
            target,
            temp,
            sink,
            rows: 0,
        })
    }

    /// The declared columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Rows written so far.
    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// Writes one row: one cell per column, in column order, of the column's kind or
    /// [`Cell::Null`] (every kind is nullable). A row that does not match is refused and nothing
    /// of it is written.
    pub fn write_row(&mut self, cells: &[Cell<'_>]) -> Result<(), DataError> {
        self.check_row(cells)?;
        let row = self.rows + 1;
        match &mut self.sink {
            Sink::Jsonl { out, keys, line } => {
                line.clear();
                line.push(b'{');
                for (index, (key, cell)) in keys.iter().zip(cells).enumerate() {
                    if index > 0 {
                        line.push(b',');
                    }
                    line.extend_from_slice(key);
                    line.push(b':');
                    write_json_cell(line, cell);
                }
                line.extend_from_slice(b"}\n");
                out.write_all(line).map_err(|source| DataError::Io {
                    file: self.target.clone(),
                    line: Some(row),
                    source,
                })?;
            }
            Sink::Parquet {
                buffers,
                buffered_rows,
                buffered_bytes,
                ..
            } => {
                for (buffer, cell) in buffers.iter_mut().zip(cells) {
                    *buffered_bytes += buffer.push(cell);
                }
                *buffered_rows += 1;
            }
        }
        self.rows = row;
        if let Sink::Parquet {
            buffered_rows,
            buffered_bytes,
            ..
        } = &self.sink
        {
            if *buffered_rows >= ROW_GROUP_ROWS || *buffered_bytes >= ROW_GROUP_BYTES {
                self.flush_row_group()?;
            }
        }
        Ok(())
    }

    /// Finishes the file (the last row group and the footer, or the gzip trailer), syncs it to
    /// disk and renames it into place. Returns the number of rows written.
    pub fn finish(mut self) -> Result<u64, DataError> {
        self.flush_row_group()?;
        let target = self.target.clone();
        let io_error = |source| DataError::Io {
            file: target.clone(),
            line: None,
            source,
        };
        match self.sink {
            Sink::Jsonl { out, .. } => out.finish_stream().map_err(io_error)?,
            Sink::Parquet { writer, .. } => {
                writer
                    .into_inner()
                    .map_err(|e| DataError::ParquetWrite {
                        file: target.clone(),
                        message: e.to_string(),
                    })?
                    .flush()
                    .map_err(io_error)?;
            }
        }
        if let Some(temp) = self.temp {
            temp.as_file().sync_all().map_err(io_error)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                // Temporary files are private (0600); a results file is an ordinary one.
                std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644))
                    .map_err(io_error)?;
            }
            temp.persist(&target).map_err(|e| io_error(e.error))?;
        }
        Ok(self.rows)
    }

    fn check_row(&self, cells: &[Cell<'_>]) -> Result<(), DataError> {
        let mismatch = |message: String| DataError::RowMismatch {
            file: self.target.clone(),
            row: self.rows + 1,
            message,
        };
        if cells.len() != self.columns.len() {
            return Err(mismatch(format!(
                "{} cells for {} columns",
                cells.len(),
                self.columns.len()
            )));
        }
        for (column, cell) in self.columns.iter().zip(cells) {
            let fits = matches!(
                (column.kind, cell),
                (ColumnKind::U64, Cell::U64(_) | Cell::Null)
                    | (ColumnKind::I64, Cell::I64(_) | Cell::Null)
                    | (ColumnKind::F64, Cell::F64(_) | Cell::Null)
                    | (ColumnKind::Str, Cell::Str(_) | Cell::Null)
                    | (ColumnKind::F64List, Cell::F64List(_) | Cell::Null)
                    | (ColumnKind::Bool, Cell::Bool(_) | Cell::Null)
                    | (ColumnKind::U64List, Cell::U64List(_) | Cell::Null)
                    | (ColumnKind::I64List, Cell::I64List(_) | Cell::Null)
            );
            if !fits {
                return Err(mismatch(format!(
                    "column `{}` is {:?}, got {}",
                    column.name,
                    column.kind,
                    cell_kind(cell)
                )));
            }
        }
        Ok(())
    }

    /// Writes the buffered Parquet rows as one row group (nothing for JSONL or an empty buffer).
    fn flush_row_group(&mut self) -> Result<(), DataError> {
        let Sink::Parquet {
            writer,
            buffers,
            buffered_rows,
            buffered_bytes,
        } = &mut self.sink
        else {
            return Ok(());
        };
        if *buffered_rows == 0 {
            return Ok(());
        }
        write_row_group(writer, buffers).map_err(|e| DataError::ParquetWrite {
            file: self.target.clone(),
            message: e.to_string(),
        })?;
        for buffer in buffers.iter_mut() {
            buffer.clear();
        }
        *buffered_rows = 0;
        *buffered_bytes = 0;
        Ok(())
    }
}

fn write_row_group(
    writer: &mut SerializedFileWriter<File>,
    buffers: &[ColumnBuffer],
) -> parquet::errors::Result<()> {
    let mut group = writer.next_row_group()?;
    let mut buffers = buffers.iter();
    while let Some(mut column) = group.next_column()? {
        let buffer = buffers.next().ok_or_else(|| {
            parquet::errors::ParquetError::General(
                "more Parquet columns than buffers; this is a bug".to_owned(),
            )
        })?;
        match buffer {
            ColumnBuffer::Int { values, levels } => {
                column
                    .typed::<Int64Type>()
                    .write_batch(values, Some(levels), None)?;
            }
            ColumnBuffer::F64 { values, levels } => {
                column
                    .typed::<DoubleType>()
                    .write_batch(values, Some(levels), None)?;
            }
            ColumnBuffer::Str { values, levels } => {
                column
                    .typed::<ByteArrayType>()
                    .write_batch(values, Some(levels), None)?;
            }
            ColumnBuffer::F64List {
                values,
                definition,
                repetition,
            } => {
                column.typed::<DoubleType>().write_batch(
                    values,
                    Some(definition),
                    Some(repetition),
                )?;
            }
            ColumnBuffer::Bool { values, levels } => {
                column
                    .typed::<BoolType>()
                    .write_batch(values, Some(levels), None)?;
            }
            ColumnBuffer::IntList {
                values,
                definition,
                repetition,
            } => {
                column.typed::<Int64Type>().write_batch(
                    values,
                    Some(definition),
                    Some(repetition),
                )?;
            }
        }
        column.close()?;
    }
    group.close()?;
    Ok(())
}

impl ColumnBuffer {
    fn new(kind: ColumnKind) -> ColumnBuffer {
        match kind {
            ColumnKind::U64 | ColumnKind::I64 => ColumnBuffer::Int {
                values: Vec::new(),
                levels: Vec::new(),
            },
            ColumnKind::F64 => ColumnBuffer::F64 {
                values: Vec::new(),
                levels: Vec::new(),
            },
            ColumnKind::Str => ColumnBuffer::Str {
                values: Vec::new(),
                levels: Vec::new(),
            },
            ColumnKind::F64List => ColumnBuffer::F64List {
                values: Vec::new(),
                definition: Vec::new(),
                repetition: Vec::new(),
            },
            ColumnKind::Bool => ColumnBuffer::Bool {
                values: Vec::new(),
                levels: Vec::new(),
            },
            ColumnKind::U64List | ColumnKind::I64List => ColumnBuffer::IntList {
                values: Vec::new(),
                definition: Vec::new(),
                repetition: Vec::new(),
            },
        }
    }

    /// Appends a cell already checked against the column; returns the bytes it buffered.
    fn push(&mut self, cell: &Cell<'_>) -> usize {
        match (self, cell) {
            // Parquet's UINT_64 is stored in INT64 with the same bits.
            (ColumnBuffer::Int { values, levels }, Cell::U64(value)) => {
                values.push(i64::from_ne_bytes(value.to_ne_bytes()));
                levels.push(1);
                8
            }
            (ColumnBuffer::Int { values, levels }, Cell::I64(value)) => {
                values.push(*value);
                levels.push(1);
                8
            }
            (ColumnBuffer::F64 { values, levels }, Cell::F64(value)) if value.is_finite() => {
                values.push(*value);
                levels.push(1);
                8
            }
            (ColumnBuffer::Str { values, levels }, Cell::Str(text)) => {
                values.push(ByteArray::from(text.as_bytes().to_vec()));
                levels.push(1);
                text.len()
            }
            (ColumnBuffer::Bool { values, levels }, Cell::Bool(value)) => {
                values.push(*value);
                levels.push(1);
                1
            }
            (
                ColumnBuffer::F64List {
                    values,
                    definition,
                    repetition,
                },
                Cell::F64List(list),
            ) => push_list(
                list.iter().map(|x| Some(*x).filter(|x| x.is_finite())),
                values,
                definition,
                repetition,
            ),
            (
                ColumnBuffer::IntList {
                    values,
                    definition,
                    repetition,
                },
                Cell::U64List(list),
            ) => push_list(
                // Parquet's UINT_64 is stored in INT64 with the same bits.
                list.iter()
                    .map(|x| x.map(|x| i64::from_ne_bytes(x.to_ne_bytes()))),
                values,
                definition,
                repetition,
            ),
            (
                ColumnBuffer::IntList {
                    values,
                    definition,
                    repetition,
                },
                Cell::I64List(list),
            ) => push_list(list.iter().copied(), values, definition, repetition),
            (
                ColumnBuffer::F64List {
                    definition,
                    repetition,
                    ..
                }
                | ColumnBuffer::IntList {
                    definition,
                    repetition,
                    ..
                },
                _,
            ) => {
                definition.push(0);
                repetition.push(0);
                4
            }
            (
                ColumnBuffer::Int { levels, .. }
                | ColumnBuffer::F64 { levels, .. }
                | ColumnBuffer::Str { levels, .. }
                | ColumnBuffer::Bool { levels, .. },
                _,
            ) => {
                levels.push(0);
                2
            }
        }
    }

    fn clear(&mut self) {
        match self {
            ColumnBuffer::Int { values, levels } => {
                values.clear();
                levels.clear();
            }
            ColumnBuffer::F64 { values, levels } => {
                values.clear();
                levels.clear();
            }
            ColumnBuffer::Str { values, levels } => {
                values.clear();
                levels.clear();
            }
            ColumnBuffer::F64List {
                values,
                definition,
                repetition,
            } => {
                values.clear();
                definition.clear();
                repetition.clear();
            }
            ColumnBuffer::Bool { values, levels } => {
                values.clear();
                levels.clear();
            }
            ColumnBuffer::IntList {
                values,
                definition,
                repetition,
            } => {
                values.clear();
                definition.clear();
                repetition.clear();
            }
        }
    }
}

/// Appends one present list of a standard three-level list column (`None` elements are null):
/// definition levels 1 for an empty list, 2 for a null element, 3 for an element; repetition
/// levels 0 to start the row, 1 to continue its list. Returns the bytes it buffered.
fn push_list<T>(
    list: impl ExactSizeIterator<Item = Option<T>>,
    values: &mut Vec<T>,
    definition: &mut Vec<i16>,
    repetition: &mut Vec<i16>,
) -> usize {
    let len = list.len();
    if len == 0 {
        definition.push(1);
        repetition.push(0);
    }
    for (k, value) in list.enumerate() {
        repetition.push(i16::from(k > 0));
        match value {
            Some(value) => {
                values.push(value);
                definition.push(3);
            }
            None => definition.push(2),
        }
    }
    12 * len.max(1)
}

fn write_json_cell(line: &mut Vec<u8>, cell: &Cell<'_>) {
    match cell {
        Cell::U64(value) => push_integer(line, value),
        Cell::I64(value) => push_integer(line, value),
        // serde_json writes floats in the shortest form that round-trips (ryu), `1.0` not `1`.
        Cell::F64(value) if value.is_finite() => serde_json::to_writer(&mut *line, value)
            .expect("writing to a Vec cannot fail; this is a bug"),
        Cell::Str(text) => serde_json::to_writer(&mut *line, text)
            .expect("writing to a Vec cannot fail; this is a bug"),
        Cell::F64List(list) => {
            line.push(b'[');
            for (k, value) in list.iter().enumerate() {
                if k > 0 {
                    line.push(b',');
                }
                write_json_cell(line, &Cell::F64(*value));
            }
            line.push(b']');
        }
        Cell::Bool(value) => line.extend_from_slice(if *value { b"true" } else { b"false" }),
        Cell::U64List(list) => push_integer_list(line, list),
        Cell::I64List(list) => push_integer_list(line, list),
        Cell::F64(_) | Cell::Null => line.extend_from_slice(b"null"),
    }
}

/// Appends an integer as a JSON number.
fn push_integer(line: &mut Vec<u8>, value: impl std::fmt::Display) {
    write!(line, "{value}").expect("writing to a Vec cannot fail; this is a bug");
}

/// Appends a list of integers as a JSON array, `None` elements as `null`.
fn push_integer_list<T: std::fmt::Display>(line: &mut Vec<u8>, list: &[Option<T>]) {
    line.push(b'[');
    for (k, value) in list.iter().enumerate() {
        if k > 0 {
            line.push(b',');
        }
        match value {
            Some(value) => push_integer(line, value),
            None => line.extend_from_slice(b"null"),
        }
    }
    line.push(b']');
}

fn cell_kind(cell: &Cell<'_>) -> &'static str {
    match cell {
        Cell::U64(_) => "a U64 cell",
        Cell::F64(_) => "an F64 cell",
        Cell::Str(_) => "a Str cell",
        Cell::F64List(_) => "an F64List cell",
        Cell::Bool(_) => "a Bool cell",
        Cell::U64List(_) => "a U64List cell",
        Cell::I64(_) => "an I64 cell",
        Cell::I64List(_) => "an I64List cell",
        Cell::Null => "null",
    }
}

fn check_schema(columns: &[Column]) -> Result<(), DataError> {
    if columns.is_empty() {
        return Err(DataError::InvalidSchema {
            reason: "no columns".to_owned(),
        });
    }
    let mut seen = HashSet::new();
    for column in columns {
        if column.name.is_empty() {
            return Err(DataError::InvalidSchema {
                reason: "a column has an empty name".to_owned(),
            });
        }
        if !seen.insert(column.name.as_str()) {
            return Err(DataError::InvalidSchema {
                reason: format!("column `{}` is declared twice", column.name),
            });
        }
    }
    Ok(())
}

fn parquet_schema(columns: &[Column]) -> parquet::errors::Result<Arc<Type>> {
    let fields = columns
        .iter()
        .map(|column| {
            let builder = match column.kind {
                ColumnKind::U64 | ColumnKind::I64 => {
                    integer_type(&column.name, column.kind == ColumnKind::I64)
                        .with_repetition(Repetition::OPTIONAL)
                }
                ColumnKind::F64 => Type::primitive_type_builder(&column.name, PhysicalType::DOUBLE)
                    .with_repetition(Repetition::OPTIONAL),
                ColumnKind::Str => {
                    Type::primitive_type_builder(&column.name, PhysicalType::BYTE_ARRAY)
                        .with_repetition(Repetition::OPTIONAL)
                        .with_logical_type(Some(LogicalType::String))
                        .with_converted_type(ConvertedType::UTF8)
                }
                ColumnKind::F64List => {
                    let element = Type::primitive_type_builder("element", PhysicalType::DOUBLE);
                    return list_type(&column.name, element);
                }
                ColumnKind::U64List | ColumnKind::I64List => {
                    let signed = column.kind == ColumnKind::I64List;
                    return list_type(&column.name, integer_type("element", signed));
                }
                ColumnKind::Bool => {
                    Type::primitive_type_builder(&column.name, PhysicalType::BOOLEAN)
                        .with_repetition(Repetition::OPTIONAL)
                }
            };
            builder.build().map(Arc::new)
        })
        .collect::<parquet::errors::Result<Vec<_>>>()?;
    Ok(Arc::new(
        Type::group_type_builder("schema")
            .with_fields(fields)
            .build()?,
    ))
}

/// A 64-bit integer field: `INT64 (INT_64)` when signed, `INT64 (UINT_64)` when not.
fn integer_type(name: &str, signed: bool) -> PrimitiveTypeBuilder<'_> {
    Type::primitive_type_builder(name, PhysicalType::INT64)
        .with_logical_type(Some(LogicalType::Integer {
            bit_width: 64,
            is_signed: signed,
        }))
        .with_converted_type(if signed {
            ConvertedType::INT_64
        } else {
            ConvertedType::UINT_64
        })
}

/// The standard three-level Parquet list of optional elements:
/// `optional group <name> (LIST) { repeated group list { optional <element> element; } }`.
fn list_type(name: &str, element: PrimitiveTypeBuilder<'_>) -> parquet::errors::Result<Arc<Type>> {
    let element = element.with_repetition(Repetition::OPTIONAL).build()?;
    let list = Type::group_type_builder("list")
        .with_repetition(Repetition::REPEATED)
        .with_fields(vec![Arc::new(element)])
        .build()?;
    Type::group_type_builder(name)
        .with_repetition(Repetition::OPTIONAL)
        .with_logical_type(Some(LogicalType::List))
        .with_converted_type(ConvertedType::LIST)
        .with_fields(vec![Arc::new(list)])
        .build()
        .map(Arc::new)
}

/// A temporary file in the target's directory, so that the final rename stays on one file system
/// and is atomic.
fn temp_file_for(target: &Path) -> io::Result<NamedTempFile> {
    let directory = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".to_owned());
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(directory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_cell(cell: Cell<'_>) -> String {
        let mut line = Vec::new();
        write_json_cell(&mut line, &cell);
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn json_cells_round_trip_and_never_write_nan() {
        assert_eq!(json_cell(Cell::U64(u64::MAX)), "18446744073709551615");
        assert_eq!(json_cell(Cell::F64(1.0)), "1.0");
        assert_eq!(json_cell(Cell::F64(0.1)), "0.1");
        assert_eq!(json_cell(Cell::F64(f64::NAN)), "null");
        assert_eq!(json_cell(Cell::F64(f64::NEG_INFINITY)), "null");
        assert_eq!(json_cell(Cell::Str("a\"b\n")), r#""a\"b\n""#);
        assert_eq!(json_cell(Cell::Null), "null");
        assert_eq!(json_cell(Cell::Bool(true)), "true");
        assert_eq!(json_cell(Cell::Bool(false)), "false");
        assert_eq!(
            json_cell(Cell::U64List(&[Some(0), None, Some(u64::MAX)])),
            "[0,null,18446744073709551615]"
        );
        assert_eq!(json_cell(Cell::U64List(&[])), "[]");
        assert_eq!(json_cell(Cell::I64(i64::MIN)), "-9223372036854775808");
        assert_eq!(json_cell(Cell::I64(-1)), "-1");
        assert_eq!(json_cell(Cell::I64(0)), "0");
        assert_eq!(
            json_cell(Cell::I64List(&[
                Some(i64::MIN),
                None,
                Some(-1),
                Some(i64::MAX)
            ])),
            "[-9223372036854775808,null,-1,9223372036854775807]"
        );
        assert_eq!(json_cell(Cell::I64List(&[None])), "[null]");
        for x in [
            1e300,
            -2.5e-308,
            0.30000000000000004,
            f64::MIN_POSITIVE,
            5e-324,
        ] {
            let text = json_cell(Cell::F64(x));
            assert_eq!(text.parse::<f64>().unwrap(), x, "{text}");
        }
    }

    #[test]
    fn writers_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<TableWriter>();
    }

    #[test]
    fn schemas_are_checked() {
        assert!(check_schema(&[]).is_err());
        assert!(check_schema(&[Column::u64("a"), Column::str("a")]).is_err());
        assert!(check_schema(&[Column::u64("")]).is_err());
        assert!(check_schema(&[Column::u64("a"), Column::f64("b")]).is_ok());
    }

    #[test]
    fn cells_convert_from_plain_values() {
        assert_eq!(Cell::from(3u64), Cell::U64(3));
        assert_eq!(Cell::from(Some(0.5)), Cell::F64(0.5));
        assert_eq!(Cell::from(None::<&str>), Cell::Null);
        assert_eq!(Cell::from("x"), Cell::Str("x"));
        assert_eq!(Cell::from(Some(false)), Cell::Bool(false));
        let ids: &[Option<u64>] = &[Some(1), None];
        assert_eq!(Cell::from(Some(ids)), Cell::U64List(ids));
        assert_eq!(Cell::from(-3i64), Cell::I64(-3));
        assert_eq!(Cell::from(None::<i64>), Cell::Null);
        let offsets: &[Option<i64>] = &[Some(-1), None];
        assert_eq!(Cell::from(offsets), Cell::I64List(offsets));
    }
}
