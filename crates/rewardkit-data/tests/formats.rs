//! Reading every format, and writing every format and reading it back.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::write::GzEncoder;
use flate2::Compression;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use rewardkit_core::{Completion, Message, Prompt, Reference};
use rewardkit_data::{
    open, Cell, Column, DataError, FieldMap, Format, InputRow, RecordReader, SampleReader,
    TableWriter,
};
use serde_json::{json, Value};
use tempfile::TempDir;

const ROWS: &str = r#"{"prompt": "2+2?", "completion": "4", "reference": "4", "id": 1}
{"prompt": [{"role": "user", "content": "3+3?"}], "completion": {"role": "assistant", "content": "6"}, "reference": 6}
{"prompt": "pick", "completion": ["a", "b"], "group": 9}
"#;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn read_all(path: &Path, fields: FieldMap) -> Vec<InputRow> {
    open(path, fields)
        .unwrap_or_else(|e| panic!("{e}"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn check_rows(rows: &[InputRow]) {
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].line, 1);
    assert_eq!(rows[0].samples[0].completion.text(), "4");
    assert_eq!(rows[0].samples[0].metadata.get("id"), Some(&json!(1)));
    assert_eq!(
        rows[1].samples[0].prompt,
        Prompt::Chat(vec![Message::new("user", "3+3?")])
    );
    assert_eq!(
        rows[1].samples[0].completion,
        Completion::Message(Message::new("assistant", "6"))
    );
    assert_eq!(
        rows[1].samples[0].reference,
        Some(Reference::Json(json!(6)))
    );
    assert!(rows[2].expanded);
    assert_eq!(rows[2].samples.len(), 2);
    assert_eq!(rows[2].samples[1].group.as_deref(), Some("9"));
}

#[test]
fn jsonl_plain_and_gzip_by_extension_and_by_magic() {
    let dir = TempDir::new().unwrap();
    let plain = dir.path().join("rows.jsonl");
    fs::write(&plain, ROWS).unwrap();
    check_rows(&read_all(&plain, FieldMap::default()));
    let mut reader = open(&plain, FieldMap::default()).unwrap();
    assert_eq!(reader.progress().bytes_total, Some(ROWS.len() as u64));
    assert_eq!(reader.by_ref().count(), 3);
    assert_eq!(reader.progress().bytes_read, ROWS.len() as u64);

    let gz = dir.path().join("rows.jsonl.gz");
    fs::write(&gz, gzip(ROWS.as_bytes())).unwrap();
    check_rows(&read_all(&gz, FieldMap::default()));

    // Gzip content under a plain name is still decompressed (magic bytes win)…
    let disguised = dir.path().join("disguised.jsonl");
    fs::write(&disguised, gzip(ROWS.as_bytes())).unwrap();
    check_rows(&read_all(&disguised, FieldMap::default()));

    // …and plain text under a .gz name is read as text.
    let not_gz = dir.path().join("not-really.jsonl.gz");
    fs::write(&not_gz, ROWS).unwrap();
    check_rows(&read_all(&not_gz, FieldMap::default()));

    // Concatenated gzip members (as `cat a.gz b.gz` makes) are one stream.
    let two = dir.path().join("two.jsonl.gz");
    let mut bytes = gzip(b"{\"prompt\":\"p\",\"completion\":\"1\"}\n");
    bytes.extend(gzip(b"{\"prompt\":\"p\",\"completion\":\"2\"}\n"));
    fs::write(&two, bytes).unwrap();
    let rows = read_all(&two, FieldMap::default());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].samples[0].completion.text(), "2");
}

#[test]
fn parquet_cannot_come_from_stdin() {
    let error = RecordReader::open("-", Some(Format::Parquet)).unwrap_err();
    assert!(matches!(error, DataError::UnsupportedFormat { .. }));
    let error = TableWriter::create_as("-", Format::Parquet, results_schema()).unwrap_err();
    assert!(matches!(error, DataError::UnsupportedFormat { .. }));
}

#[test]
fn any_reader_can_be_a_jsonl_source() {
    let records =
        RecordReader::from_reader("<memory>", std::io::Cursor::new(gzip(ROWS.as_bytes()))).unwrap();
    let rows: Vec<InputRow> = SampleReader::new(records, FieldMap::default())
        .collect::<Result<_, _>>()
        .unwrap();
    check_rows(&rows);
}

/// A reader handing out a million small rows without ever holding them: reading must stream.
struct GeneratedRows {
    next_row: u64,
    rows: u64,
    pending: Vec<u8>,
    offset: usize,
}

impl Read for GeneratedRows {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.offset == self.pending.len() {
            if self.next_row == self.rows {
                return Ok(0);
            }
            self.pending.clear();
            self.offset = 0;
            let row = self.next_row;
            writeln!(
                self.pending,
                r#"{{"prompt":"q{row}","completion":"a{row}"}}"#
            )?;
            self.next_row += 1;
        }
        let n = out.len().min(self.pending.len() - self.offset);
        out[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

#[test]
fn a_million_rows_stream() {
    let rows = 1_000_000;
    let source = GeneratedRows {
        next_row: 0,
        rows,
        pending: Vec::new(),
        offset: 0,
    };
    let mut reader = SampleReader::new(
        RecordReader::from_reader("<generated>", source).unwrap(),
        FieldMap::default(),
    );
    let mut last = 0;
    for row in reader.by_ref() {
        let row = row.unwrap();
        last = row.line;
    }
    assert_eq!(last, rows);
    assert_eq!(reader.stats().rows, rows);
    assert_eq!(reader.stats().samples, rows);
}

fn results_schema() -> Vec<Column> {
    vec![
        Column::u64("line"),
        Column::f64("reward"),
        Column::str("outcome"),
        Column::str("reason"),
    ]
}

fn write_results(path: &Path, format: Option<Format>) -> u64 {
    let mut writer = match format {
        Some(format) => TableWriter::create_as(path, format, results_schema()),
        None => TableWriter::create(path, results_schema()),
    }
    .unwrap();
    writer
        .write_row(&[
            Cell::U64(1),
            Cell::F64(0.1),
            Cell::Str("scored"),
            Cell::Null,
        ])
        .unwrap();
    writer
        .write_row(&[
            Cell::U64(2),
            Cell::Null,
            Cell::Str("unscorable"),
            Cell::Str("no answer \"found\"\n"),
        ])
        .unwrap();
    writer
        .write_row(&[
            Cell::U64(u64::MAX),
            Cell::F64(f64::NAN),
            Cell::Str("failed"),
            Cell::Str("ünïcødé ✓"),
        ])
        .unwrap();
    writer
        .write_row(&[Cell::U64(4), Cell::F64(-1e300), Cell::Str(""), Cell::Null])
        .unwrap();
    writer.finish().unwrap()
}

fn expected_results() -> Vec<Value> {
    vec![
        json!({"line": 1, "reward": 0.1, "outcome": "scored", "reason": null}),
        json!({"line": 2, "reward": null, "outcome": "unscorable", "reason": "no answer \"found\"\n"}),
        json!({"line": u64::MAX, "reward": null, "outcome": "failed", "reason": "ünïcødé ✓"}),
        json!({"line": 4, "reward": -1e300, "outcome": "", "reason": null}),
    ]
}

fn read_records(path: &Path) -> Vec<Value> {
    RecordReader::open(path, None)
        .unwrap()
        .map(|record| Value::Object(record.unwrap().fields))
        .collect()
}

#[test]
fn results_round_trip_through_every_format() {
    let dir = TempDir::new().unwrap();
    for name in ["out.jsonl", "out.jsonl.gz", "out.parquet"] {
        let path = dir.path().join(name);
        assert_eq!(write_results(&path, None), 4, "{name}");
        assert_eq!(read_records(&path), expected_results(), "{name}");
    }
    // JSONL is flat objects, keys in column order, floats that round-trip.
    let text = fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        r#"{"line":1,"reward":0.1,"outcome":"scored","reason":null}"#
    );
    // Gzip output is gzip.
    let bytes = fs::read(dir.path().join("out.jsonl.gz")).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
    // Parquet output is Parquet.
    let bytes = fs::read(dir.path().join("out.parquet")).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
    // Nothing else is left in the directory (no temporary files).
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["out.jsonl", "out.jsonl.gz", "out.parquet"]);
}

#[test]
fn float_list_columns_round_trip_through_every_format() {
    // Per-step advantages: lists of any length (empty too), non-finite elements as null
    // elements, a null list, and lists long enough to span Parquet pages.
    let long: Vec<f64> = (0..5_000).map(|i| f64::from(i) / 7.0).collect();
    let rows: Vec<(u64, Option<Vec<f64>>)> = vec![
        (1, Some(vec![0.5, -1.25, 1e-300])),
        (2, Some(vec![])),
        (3, None),
        (4, Some(vec![f64::NAN, 2.0, f64::INFINITY])),
        (5, Some(long.clone())),
        (6, Some(vec![0.1])),
    ];
    let dir = TempDir::new().unwrap();
    for name in ["steps.jsonl", "steps.jsonl.gz", "steps.parquet"] {
        let path = dir.path().join(name);
        let mut writer =
            TableWriter::create(&path, vec![Column::u64("i"), Column::f64_list("adv")]).unwrap();
        for (i, list) in &rows {
            let cell = list.as_deref().map_or(Cell::Null, Cell::F64List);
            writer.write_row(&[Cell::U64(*i), cell]).unwrap();
        }
        assert_eq!(writer.finish().unwrap(), rows.len() as u64, "{name}");
        let read = read_records(&path);
        assert_eq!(read.len(), rows.len(), "{name}");
        for ((i, list), record) in rows.iter().zip(&read) {
            assert_eq!(record["i"], json!(i), "{name}");
            let expected = match list {
                None => Value::Null,
                Some(list) => Value::Array(
                    list.iter()
                        .map(|&x| {
                            serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
                        })
                        .collect(),
                ),
            };
            assert_eq!(record["adv"], expected, "{name} row {i}");
        }
    }
    let text = fs::read_to_string(dir.path().join("steps.jsonl")).unwrap();
    assert_eq!(
        text.lines().nth(3).unwrap(),
        r#"{"i":4,"adv":[null,2.0,null]}"#
    );
    // A list cell in a scalar column, or a scalar in a list column, is refused.
    let mut writer = TableWriter::create(
        dir.path().join("bad.jsonl"),
        vec![Column::f64("x"), Column::f64_list("xs")],
    )
    .unwrap();
    for cells in [
        [Cell::F64List(&[1.0]), Cell::Null],
        [Cell::Null, Cell::F64(1.0)],
    ] {
        let error = writer.write_row(&cells).unwrap_err();
        assert!(matches!(error, DataError::RowMismatch { .. }), "{error}");
    }
}

#[test]
fn bool_columns_round_trip_through_every_format() {
    // Pass-through flags (`"correct": true`): true, false and null, over more rows than one
    // Parquet row group holds, so the levels of a second group are checked too.
    let cells = |i: u64| match i % 5 {
        0 | 3 => Cell::Bool(true),
        1 => Cell::Bool(false),
        _ => Cell::Null,
    };
    let expected = |i: u64| match cells(i) {
        Cell::Bool(b) => Value::Bool(b),
        _ => Value::Null,
    };
    let rows = 70_000u64;
    let dir = TempDir::new().unwrap();
    for name in ["flags.jsonl", "flags.jsonl.gz", "flags.parquet"] {
        let path = dir.path().join(name);
        let mut writer =
            TableWriter::create(&path, vec![Column::u64("i"), Column::bool("correct")]).unwrap();
        for i in 0..rows {
            writer.write_row(&[Cell::U64(i), cells(i)]).unwrap();
        }
        assert_eq!(writer.finish().unwrap(), rows, "{name}");
        let read = read_records(&path);
        assert_eq!(read.len() as u64, rows, "{name}");
        for (i, record) in (0..rows).zip(&read) {
            assert_eq!(record["i"], json!(i), "{name}");
            assert_eq!(record["correct"], expected(i), "{name} row {i}");
        }
    }
    let text = fs::read_to_string(dir.path().join("flags.jsonl")).unwrap();
    let first: Vec<&str> = text.lines().take(3).collect();
    assert_eq!(
        first,
        [
            r#"{"i":0,"correct":true}"#,
            r#"{"i":1,"correct":false}"#,
            r#"{"i":2,"correct":null}"#
        ]
    );
    // Parquet: an optional BOOLEAN, not text.
    let file = fs::File::open(dir.path().join("flags.parquet")).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    let schema = parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .schema_descr_ptr();
    let column = schema.column(1);
    assert_eq!(column.physical_type(), parquet::basic::Type::BOOLEAN);
    assert_eq!(column.max_def_level(), 1);
    // A boolean cell in another column, or another cell in a boolean column, is refused.
    let mut writer = TableWriter::create(
        dir.path().join("bad.jsonl"),
        vec![Column::str("x"), Column::bool("flag")],
    )
    .unwrap();
    for cells in [
        [Cell::Bool(true), Cell::Null],
        [Cell::Null, Cell::Str("true")],
        [Cell::Null, Cell::F64(1.0)],
    ] {
        let error = writer.write_row(&cells).unwrap_err();
        assert!(matches!(error, DataError::RowMismatch { .. }), "{error}");
    }
}

#[test]
fn integer_list_columns_round_trip_through_every_format() {
    // Pass-through ids and counts: empty lists, null lists, null elements, the largest u64 (which
    // a float would round) and a long list, over more rows than one Parquet row group holds.
    let long: Vec<Option<u64>> = (0..3_000).map(Some).collect();
    let list = |i: u64| -> Option<Vec<Option<u64>>> {
        match i % 6 {
            0 => Some(vec![Some(i), Some(i + 1)]),
            1 => Some(vec![]),
            2 => None,
            3 => Some(vec![None, Some(0), None]),
            4 => Some(vec![Some(u64::MAX), Some(1 << 53 | 1)]),
            _ if i == 5 => Some(long.clone()),
            _ => Some(vec![Some(7)]),
        }
    };
    let expected = |i: u64| match list(i) {
        None => Value::Null,
        Some(items) => Value::Array(
            items
                .into_iter()
                .map(|x| x.map_or(Value::Null, |x| json!(x)))
                .collect(),
        ),
    };
    let rows = 70_000u64;
    let dir = TempDir::new().unwrap();
    for name in ["ids.jsonl", "ids.jsonl.gz", "ids.parquet"] {
        let path = dir.path().join(name);
        let mut writer =
            TableWriter::create(&path, vec![Column::u64("i"), Column::u64_list("ids")]).unwrap();
        for i in 0..rows {
            let items = list(i);
            let cell = items.as_deref().map_or(Cell::Null, Cell::U64List);
            writer.write_row(&[Cell::U64(i), cell]).unwrap();
        }
        assert_eq!(writer.finish().unwrap(), rows, "{name}");
        let read = read_records(&path);
        assert_eq!(read.len() as u64, rows, "{name}");
        for (i, record) in (0..rows).zip(&read) {
            assert_eq!(record["i"], json!(i), "{name}");
            assert_eq!(record["ids"], expected(i), "{name} row {i}");
            // Integers, not floats that happen to be whole.
            if let Some(items) = record["ids"].as_array() {
                assert!(
                    items.iter().all(|x| x.is_null() || x.is_u64()),
                    "{name} row {i}"
                );
            }
        }
    }
    let text = fs::read_to_string(dir.path().join("ids.jsonl")).unwrap();
    let first: Vec<&str> = text.lines().take(5).collect();
    assert_eq!(
        first,
        [
            r#"{"i":0,"ids":[0,1]}"#,
            r#"{"i":1,"ids":[]}"#,
            r#"{"i":2,"ids":null}"#,
            r#"{"i":3,"ids":[null,0,null]}"#,
            r#"{"i":4,"ids":[18446744073709551615,9007199254740993]}"#,
        ]
    );
    // Parquet: an optional standard three-level LIST of optional INT64 (UINT_64), as the scalar
    // U64 column's type.
    let file = fs::File::open(dir.path().join("ids.parquet")).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    let schema = parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .schema_descr_ptr();
    let column = schema.column(1);
    assert_eq!(column.path().string(), "ids.list.element");
    assert_eq!(column.physical_type(), parquet::basic::Type::INT64);
    assert_eq!(
        column.converted_type(),
        parquet::basic::ConvertedType::UINT_64
    );
    assert_eq!((column.max_def_level(), column.max_rep_level()), (3, 1));
    assert_eq!(
        schema.root_schema().get_fields()[1]
            .get_basic_info()
            .converted_type(),
        parquet::basic::ConvertedType::LIST
    );
    // An integer list in another column, or another cell in an integer-list column, is refused.
    let mut writer = TableWriter::create(
        dir.path().join("bad.jsonl"),
        vec![Column::f64_list("xs"), Column::u64_list("ids")],
    )
    .unwrap();
    for cells in [
        [Cell::U64List(&[Some(1)]), Cell::Null],
        [Cell::Null, Cell::F64List(&[1.0])],
        [Cell::Null, Cell::U64(1)],
    ] {
        let error = writer.write_row(&cells).unwrap_err();
        assert!(matches!(error, DataError::RowMismatch { .. }), "{error}");
    }
}

#[test]
fn integer_columns_round_trip_signed_unsigned_and_null_through_every_format() {
    // Scalar integers (unsigned up to u64::MAX, signed down to i64::MIN) with nulls in every
    // position (the first row, around the 65,536-row Parquet row group boundary, the last row),
    // a signed list column, and all-null columns of each integer kind, over more rows than one
    // row group holds.
    let rows = 70_000u64;
    let unsigned = |i: u64| -> Option<u64> {
        match i {
            0 | 65_535 | 65_536 => None,
            _ if i == rows - 1 => None,
            _ => match i % 7 {
                0 => Some(u64::MAX),
                1 => Some((1 << 53) + 1),
                2 => Some(0),
                3 => None,
                4 => Some(i64::MAX as u64 + 1),
                _ => Some(i),
            },
        }
    };
    let signed = |i: u64| -> Option<i64> {
        match i {
            1 | 65_535 | 65_537 => None,
            _ if i == rows - 1 => None,
            _ => match i % 8 {
                0 => Some(i64::MIN),
                1 => Some(-1),
                2 => Some(0),
                3 => Some(i64::MAX),
                4 => Some((1 << 53) + 1),
                5 => Some(-(1 << 53) - 1),
                6 => None,
                _ => Some(-(i as i64)),
            },
        }
    };
    let list = |i: u64| -> Option<Vec<Option<i64>>> {
        match i % 5 {
            0 => Some(vec![
                Some(i64::MIN),
                None,
                Some(-1),
                Some(0),
                Some(i64::MAX),
            ]),
            1 => Some(vec![]),
            2 => None,
            3 => Some(vec![None]),
            _ => Some(vec![Some(-(i as i64)), Some(i as i64)]),
        }
    };
    let json_or_null = |value: Option<Value>| value.unwrap_or(Value::Null);
    let dir = TempDir::new().unwrap();
    let columns = vec![
        Column::u64("i"),
        Column::u64("u"),
        Column::i64("s"),
        Column::i64_list("sl"),
        Column::u64("u_null"),
        Column::i64("s_null"),
        Column::i64_list("sl_null"),
    ];
    for name in ["ints.jsonl", "ints.jsonl.gz", "ints.parquet"] {
        let path = dir.path().join(name);
        let mut writer = TableWriter::create(&path, columns.clone()).unwrap();
        for i in 0..rows {
            let items = list(i);
            writer
                .write_row(&[
                    Cell::U64(i),
                    unsigned(i).into(),
                    signed(i).into(),
                    items.as_deref().into(),
                    Cell::Null,
                    Cell::Null,
                    Cell::Null,
                ])
                .unwrap();
        }
        assert_eq!(writer.finish().unwrap(), rows, "{name}");
        let read = read_records(&path);
        assert_eq!(read.len() as u64, rows, "{name}");
        for (i, record) in (0..rows).zip(&read) {
            let at = format!("{name} row {i}: {record}");
            assert_eq!(record["i"], json!(i), "{at}");
            assert_eq!(
                record["u"],
                json_or_null(unsigned(i).map(|x| json!(x))),
                "{at}"
            );
            assert_eq!(
                record["s"],
                json_or_null(signed(i).map(|x| json!(x))),
                "{at}"
            );
            assert_eq!(
                record["sl"],
                json_or_null(list(i).map(|x| json!(x))),
                "{at}"
            );
            // Integers, not floats that happen to be whole.
            assert!(record["u"].is_null() || record["u"].is_u64(), "{at}");
            assert!(record["s"].is_null() || record["s"].is_i64(), "{at}");
            if let Some(items) = record["sl"].as_array() {
                assert!(items.iter().all(|x| x.is_null() || x.is_i64()), "{at}");
            }
            for column in ["u_null", "s_null", "sl_null"] {
                assert_eq!(record[column], Value::Null, "{at}");
            }
        }
    }
    let text = fs::read_to_string(dir.path().join("ints.jsonl")).unwrap();
    let first: Vec<&str> = text.lines().take(3).collect();
    assert_eq!(
        first,
        [
            r#"{"i":0,"u":null,"s":-9223372036854775808,"sl":[-9223372036854775808,null,-1,0,9223372036854775807],"u_null":null,"s_null":null,"sl_null":null}"#,
            r#"{"i":1,"u":9007199254740993,"s":null,"sl":[],"u_null":null,"s_null":null,"sl_null":null}"#,
            r#"{"i":2,"u":0,"s":0,"sl":null,"u_null":null,"s_null":null,"sl_null":null}"#,
        ]
    );
    // Parquet: optional INT64, UINT_64 or INT_64 (signed); the list an optional standard
    // three-level LIST of optional INT64 (INT_64).
    let file = fs::File::open(dir.path().join("ints.parquet")).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    let schema = parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .schema_descr_ptr();
    use parquet::basic::ConvertedType::{INT_64, UINT_64};
    for (k, path, converted, levels) in [
        (0, "i", UINT_64, (1, 0)),
        (1, "u", UINT_64, (1, 0)),
        (2, "s", INT_64, (1, 0)),
        (3, "sl.list.element", INT_64, (3, 1)),
        (4, "u_null", UINT_64, (1, 0)),
        (5, "s_null", INT_64, (1, 0)),
        (6, "sl_null.list.element", INT_64, (3, 1)),
    ] {
        let column = schema.column(k);
        assert_eq!(column.path().string(), path);
        assert_eq!(
            column.physical_type(),
            parquet::basic::Type::INT64,
            "{path}"
        );
        assert_eq!(column.converted_type(), converted, "{path}");
        assert_eq!(
            (column.max_def_level(), column.max_rep_level()),
            levels,
            "{path}"
        );
    }
    // A cell of the other signedness, or a float, is refused in an integer column.
    let mut writer = TableWriter::create(
        dir.path().join("bad.jsonl"),
        vec![Column::u64("u"), Column::i64("s"), Column::i64_list("sl")],
    )
    .unwrap();
    for cells in [
        [Cell::I64(-1), Cell::Null, Cell::Null],
        [Cell::F64(1.0), Cell::Null, Cell::Null],
        [Cell::Null, Cell::U64(1), Cell::Null],
        [Cell::Null, Cell::F64(-1.0), Cell::Null],
        [Cell::Null, Cell::Null, Cell::U64List(&[Some(1)])],
        [Cell::Null, Cell::Null, Cell::I64(1)],
        [Cell::Null, Cell::I64List(&[Some(1)]), Cell::Null],
    ] {
        let error = writer.write_row(&cells).unwrap_err();
        assert!(matches!(error, DataError::RowMismatch { .. }), "{error}");
    }
    writer
        .write_row(&[Cell::Null, Cell::Null, Cell::Null])
        .unwrap();
    assert_eq!(writer.finish().unwrap(), 1);
}

#[test]
fn the_format_can_be_chosen_whatever_the_name() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("results.out");
    assert!(matches!(
        TableWriter::create(&path, results_schema()),
        Err(DataError::UnsupportedFormat { .. })
    ));
    write_results(&path, Some(Format::Parquet));
    // Read back by magic bytes, and with an explicit format.
    assert_eq!(read_records(&path), expected_results());
    let forced: Vec<_> = RecordReader::open(&path, Some(Format::Parquet))
        .unwrap()
        .collect();
    assert_eq!(forced.len(), 4);
}

#[test]
fn many_rows_span_several_parquet_row_groups() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("big.parquet");
    let mut writer = TableWriter::create(
        &path,
        vec![Column::u64("i"), Column::f64("x"), Column::str("s")],
    )
    .unwrap();
    let rows = 150_000u64;
    for i in 0..rows {
        let text = i.to_string();
        let x = if i % 7 == 0 {
            Cell::Null
        } else {
            Cell::F64(i as f64 / 3.0)
        };
        let s = if i % 5 == 0 {
            Cell::Null
        } else {
            Cell::Str(&text)
        };
        writer.write_row(&[Cell::U64(i), x, s]).unwrap();
    }
    assert_eq!(writer.finish().unwrap(), rows);
    let file = fs::File::open(&path).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader;
    assert!(reader.metadata().num_row_groups() >= 3);
    let mut count = 0u64;
    let mut records = RecordReader::open(&path, None).unwrap();
    assert_eq!(records.progress().rows_total, Some(rows));
    for (i, record) in records.by_ref().enumerate() {
        let record = record.unwrap();
        let i = i as u64;
        assert_eq!(record.line, i + 1);
        assert_eq!(record.fields["i"], json!(i));
        if i.is_multiple_of(7) {
            assert_eq!(record.fields["x"], Value::Null);
        } else {
            assert_eq!(record.fields["x"].as_f64(), Some(i as f64 / 3.0));
        }
        if i.is_multiple_of(5) {
            assert_eq!(record.fields["s"], Value::Null);
        } else {
            assert_eq!(record.fields["s"], json!(i.to_string()));
        }
        count += 1;
    }
    assert_eq!(count, rows);
    assert_eq!(records.progress().rows_read, rows);
}

#[test]
fn writes_are_atomic() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("results.jsonl");
    fs::write(&path, "previous results\n").unwrap();

    // Until finish, the old file is untouched; a writer dropped unfinished leaves no trace.
    let mut writer = TableWriter::create(&path, vec![Column::u64("n")]).unwrap();
    writer.write_row(&[Cell::U64(1)]).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "previous results\n");
    drop(writer);
    assert_eq!(fs::read_to_string(&path).unwrap(), "previous results\n");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

    // A finished writer replaces it.
    let mut writer = TableWriter::create(&path, vec![Column::u64("n")]).unwrap();
    writer.write_row(&[Cell::U64(7)]).unwrap();
    writer.finish().unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "{\"n\":7}\n");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    // A writer into a missing directory fails up front, naming the file.
    let error = TableWriter::create(
        dir.path().join("no/such/dir/out.jsonl"),
        vec![Column::u64("n")],
    )
    .unwrap_err();
    assert!(matches!(error, DataError::Io { .. }));
    assert!(error.to_string().contains("out.jsonl"), "{error}");
}

#[test]
fn rows_that_do_not_match_the_schema_are_refused() {
    let dir = TempDir::new().unwrap();
    for name in ["t.jsonl", "t.parquet"] {
        let path = dir.path().join(name);
        let mut writer = TableWriter::create(&path, results_schema()).unwrap();
        let error = writer.write_row(&[Cell::U64(1)]).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{}: output row 1: 1 cells for 4 columns", path.display())
        );
        let error = writer
            .write_row(&[Cell::I64(-1), Cell::Null, Cell::Null, Cell::Null])
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("column `line` is U64, got an I64 cell"),
            "{error}"
        );
        let error = writer
            .write_row(&[Cell::U64(1), Cell::Str("x"), Cell::Null, Cell::Null])
            .unwrap_err();
        assert!(error
            .to_string()
            .contains("column `reward` is F64, got a Str cell"));
        // The refused rows left nothing behind: the file holds exactly the good row.
        writer
            .write_row(&[Cell::U64(1), Cell::F64(1.0), Cell::Str("ok"), Cell::Null])
            .unwrap();
        assert_eq!(writer.finish().unwrap(), 1);
        assert_eq!(read_records(&path).len(), 1);
    }
    assert!(matches!(
        TableWriter::create(dir.path().join("x.jsonl"), vec![]),
        Err(DataError::InvalidSchema { .. })
    ));
}

#[test]
fn an_empty_table_is_a_valid_file() {
    let dir = TempDir::new().unwrap();
    for name in ["e.jsonl", "e.parquet"] {
        let path = dir.path().join(name);
        let writer = TableWriter::create(&path, results_schema()).unwrap();
        assert_eq!(writer.finish().unwrap(), 0);
        // Reading it back says so.
        let items: Vec<_> = RecordReader::open(&path, None).unwrap().collect();
        assert!(
            matches!(items[..], [Err(DataError::NoRows { .. })]),
            "{name}"
        );
    }
}

/// Writes a Parquet file with nested columns, the way Hugging Face chat datasets store them:
/// `prompt` is a list of `{role, content}` structs, `completions` a list of strings, `meta` a
/// struct. Returns its path.
fn nested_parquet(dir: &Path) -> PathBuf {
    let schema = parse_message_type(
        "message schema {
            OPTIONAL group prompt (LIST) {
                REPEATED group list {
                    OPTIONAL group element {
                        REQUIRED BYTE_ARRAY role (UTF8);
                        REQUIRED BYTE_ARRAY content (UTF8);
                    }
                }
            }
            OPTIONAL group completions (LIST) {
                REPEATED group list {
                    OPTIONAL BYTE_ARRAY element (UTF8);
                }
            }
            OPTIONAL group meta {
                OPTIONAL BYTE_ARRAY answer (UTF8);
            }
        }",
    )
    .unwrap();
    let path = dir.join("nested.parquet");
    let file = fs::File::create(&path).unwrap();
    let mut writer = SerializedFileWriter::new(
        file,
        Arc::new(schema),
        Arc::new(WriterProperties::builder().build()),
    )
    .unwrap();
    let text = |s: &str| ByteArray::from(s.as_bytes().to_vec());
    // Row 1: prompt [system, user], completions ["a", "b", "c"], meta.answer "42".
    // Row 2: prompt [user], completions ["x"], meta null.
    let columns: Vec<(Vec<ByteArray>, Vec<i16>, Vec<i16>)> = vec![
        (
            vec![text("system"), text("user"), text("user")],
            vec![3, 3, 3],
            vec![0, 1, 0],
        ),
        (
            vec![text("be brief"), text("6*7?"), text("1+1?")],
            vec![3, 3, 3],
            vec![0, 1, 0],
        ),
        (
            vec![text("a"), text("b"), text("c"), text("x")],
            vec![3, 3, 3, 3],
            vec![0, 1, 1, 0],
        ),
        (vec![text("42")], vec![2, 0], vec![]),
    ];
    let mut group = writer.next_row_group().unwrap();
    let mut columns = columns.into_iter();
    while let Some(mut column) = group.next_column().unwrap() {
        let (values, definitions, repetitions) = columns.next().unwrap();
        let repetitions = (!repetitions.is_empty()).then_some(&repetitions[..]);
        column
            .typed::<ByteArrayType>()
            .write_batch(&values, Some(&definitions), repetitions)
            .unwrap();
        column.close().unwrap();
    }
    group.close().unwrap();
    writer.close().unwrap();
    path
}

#[test]
fn nested_parquet_columns_map_like_json() {
    let dir = TempDir::new().unwrap();
    let path = nested_parquet(dir.path());
    let fields = FieldMap::default()
        .with_completion("completions")
        .unwrap()
        .with_optional_reference("meta.answer")
        .unwrap();
    let rows = read_all(&path, fields);
    assert_eq!(rows.len(), 2);

    let first = &rows[0];
    assert_eq!(first.line, 1);
    assert!(first.expanded);
    assert_eq!(first.samples.len(), 3);
    assert_eq!(
        first.samples[0].prompt,
        Prompt::Chat(vec![
            Message::new("system", "be brief"),
            Message::new("user", "6*7?")
        ])
    );
    let texts: Vec<_> = first
        .samples
        .iter()
        .map(|s| s.completion.text().into_owned())
        .collect();
    assert_eq!(texts, ["a", "b", "c"]);
    assert!(first
        .samples
        .iter()
        .all(|s| s.group.as_deref() == Some("1")));
    assert_eq!(
        first.samples[2].reference,
        Some(Reference::Text("42".into()))
    );
    assert_eq!(
        first.samples[0].metadata.get("meta"),
        Some(&json!({"answer": "42"}))
    );

    // Field errors in Parquet rows name the row like a JSONL line.
    let strict = FieldMap::default()
        .with_completion("completions")
        .unwrap()
        .with_reference("meta.answer")
        .unwrap();
    let items: Vec<_> = open(&path, strict).unwrap().collect();
    assert!(items[0].is_ok());
    let error = items[1].as_ref().unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}:2: missing field `meta.answer` (available: nothing)",
            path.display()
        )
    );

    let second = &rows[1];
    assert_eq!(second.samples.len(), 1);
    assert_eq!(second.samples[0].group.as_deref(), Some("2"));
    assert_eq!(second.samples[0].reference, None);
    assert_eq!(second.samples[0].prompt.text(), "1+1?");
}
