//! Every kind of bad input gives a typed error naming the file and line, never a panic and never a
//! silently dropped row.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use rewardkit_data::{
    open, Cell, Column, DataError, FieldMap, InputRow, RecordReader, RowEvent, TableWriter,
};
use tempfile::TempDir;

fn write(dir: &TempDir, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, bytes).unwrap();
    path
}

/// Reads `path` with the default field map and returns every item.
fn items(path: &Path) -> Vec<Result<InputRow, DataError>> {
    match open(path, FieldMap::default()) {
        Ok(reader) => reader.collect(),
        Err(error) => vec![Err(error)],
    }
}

/// Reads `path` and returns the first error, which must exist.
fn first_error(path: &Path) -> DataError {
    items(path)
        .into_iter()
        .find_map(Result::err)
        .unwrap_or_else(|| panic!("{} read without error", path.display()))
}

/// A small deterministic pseudo-random generator (xorshift), so the tests need no extra crate.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn a_malformed_line_names_file_line_and_column() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "m.jsonl",
        "{\"prompt\":\"p\",\"completion\":\"c\"}\n{\"prompt\":\"p\",\"completion\":}\n",
    );
    let error = first_error(&path);
    assert!(
        matches!(
            error,
            DataError::MalformedJson {
                line: 2,
                column: 28,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("{}:2:28: malformed JSON: expected value", path.display())
    );
    assert!(error.is_row_error());
    assert_eq!(error.file(), Some(path.as_path()));
}

#[test]
fn a_line_that_is_not_an_object() {
    let dir = TempDir::new().unwrap();
    for (line, found) in [
        (
            "[1, 2]",
            "a list of 2 items (if this is a JSON array file: JSON Lines has one object per line)",
        ),
        ("\"text\"", "a string (\"text\")"),
        ("42", "a number (42)"),
        ("null", "null"),
    ] {
        let path = write(&dir, "n.jsonl", format!("{line}\n"));
        let error = first_error(&path);
        assert_eq!(
            error.to_string(),
            format!(
                "{}:1: expected a JSON object, found {found}",
                path.display()
            )
        );
    }
}

#[test]
fn a_missing_field_names_the_path_and_the_keys_present() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "f.jsonl", "{\"question\":\"q\",\"answer\":\"a\"}\n");
    let error = first_error(&path);
    assert_eq!(
        error.to_string(),
        format!(
            "{}:1: missing field `prompt` (available: question, answer)",
            path.display()
        )
    );
    match error {
        DataError::MissingField {
            line,
            field,
            available,
            ..
        } => {
            assert_eq!(line, 1);
            assert_eq!(field, "prompt");
            assert_eq!(available, ["question", "answer"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_wrong_type_says_what_was_found() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "t.jsonl",
        "\n{\"prompt\":\"p\",\"completion\":{\"role\":\"assistant\",\"content\":7}}\n",
    );
    let error = first_error(&path);
    assert_eq!(
        error.to_string(),
        format!(
            "{}:2: field `completion.content`: expected a string, null or a list of content \
             parts, found a number (7)",
            path.display()
        )
    );
}

#[test]
fn empty_files_have_no_rows() {
    let dir = TempDir::new().unwrap();
    for (name, bytes) in [
        ("empty.jsonl", Vec::new()),
        ("blank.jsonl", b"\n  \n\r\n".to_vec()),
        ("empty.jsonl.gz", {
            let encoder = GzEncoder::new(Vec::new(), Compression::default());
            encoder.finish().unwrap()
        }),
        ("empty.parquet", Vec::new()),
    ] {
        let path = write(&dir, name, bytes);
        let all = items(&path);
        assert_eq!(all.len(), 1, "{name}");
        let error = all.into_iter().next().unwrap().unwrap_err();
        assert!(
            matches!(error, DataError::NoRows { .. }),
            "{name}: {error:?}"
        );
        assert!(error.to_string().contains("no rows"), "{error}");
    }
    let error = first_error(&dir.path().join("blank.jsonl"));
    assert!(
        error
            .to_string()
            .ends_with("no rows (only 3 blank line(s))"),
        "{error}"
    );
}

#[test]
fn invalid_utf8_names_the_line_and_byte() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "u.jsonl",
        b"{\"prompt\":\"p\",\"completion\":\"ok\"}\n{\"prompt\":\"caf\xe9\",\"completion\":\"c\"}\n",
    );
    let error = first_error(&path);
    assert_eq!(
        error.to_string(),
        format!("{}:2: invalid UTF-8 at byte 14 of the line", path.display())
    );
}

#[test]
fn binary_garbage_is_refused_up_front() {
    let dir = TempDir::new().unwrap();
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let path = write(&dir, "garbage.jsonl", random.bytes(64 * 1024));
    let error = first_error(&path);
    assert!(matches!(error, DataError::Binary { .. }), "{error:?}");
    assert!(
        error.to_string().contains("not a JSONL text file"),
        "{error}"
    );

    // Other binary formats are named.
    let path = write(&dir, "zipped.jsonl", b"PK\x03\x04rest of a zip");
    assert!(first_error(&path).to_string().contains("zip archive"));
    let path = write(&dir, "utf16.jsonl", b"\xff\xfe{\x00\"\x00");
    assert!(first_error(&path).to_string().contains("UTF-16"));

    // Garbage named .parquet is not Parquet.
    let path = write(&dir, "garbage.parquet", random.bytes(4096));
    let error = first_error(&path);
    assert!(matches!(error, DataError::NotParquet { .. }), "{error:?}");

    // Garbage after a gzip header is a read error naming the file, not a panic.
    let mut bytes = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    bytes.extend(random.bytes(4096));
    let path = write(&dir, "garbage.jsonl.gz", bytes);
    let error = first_error(&path);
    assert!(!error.is_row_error());
    assert!(error.to_string().contains("garbage.jsonl.gz"), "{error}");
}

/// cargo-fuzz `read_rows` regression: a 24-byte Parquet file whose footer declares a list of
/// 2^28 row groups. The `parquet` crate reserved room for all of them (26 GB) before reading
/// one, and a failed allocation aborts the process; the footer is now checked first.
#[test]
fn a_footer_declaring_more_elements_than_bytes_is_not_parquet() {
    let dir = TempDir::new().unwrap();
    // FileMetaData field 4 (row_groups): a list of structs, count 2^28 as a varint; end.
    let meta = [0x49, 0xfc, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00];
    let mut bytes = b"PAR1".to_vec();
    bytes.extend(meta);
    bytes.extend((meta.len() as u32).to_le_bytes());
    bytes.extend(b"PAR1");
    let path = write(&dir, "huge-list.parquet", bytes);
    let error = first_error(&path);
    assert!(matches!(error, DataError::NotParquet { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("huge-list.parquet")
            && message.contains("268435456 elements declared, 1 bytes left"),
        "{message}"
    );
}

/// cargo-fuzz `read_rows` regression: the footer's `schema` field (2) declared as an i32. The
/// decoder reads field 2 as a list whatever the wire type says, and took the varint for a count:
/// a 570-byte file made it reserve 32.7 GB and the process aborted. The footer walk now checks
/// the wire types of the fields the format gives as lists. Both inputs the fuzzer found are in
/// `fuzz/findings/`; a hand-built footer shows the same.
#[test]
fn a_list_field_declared_with_another_type_is_not_parquet() {
    let dir = TempDir::new().unwrap();
    let findings = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/findings");
    let mut inputs: Vec<(String, Vec<u8>)> = ["", "-min"]
        .iter()
        .map(|suffix| {
            let name = format!("read_rows-schema-list-32GB{suffix}.bin");
            let bytes = fs::read(format!("{findings}/{name}")).unwrap();
            (name, bytes)
        })
        .collect();
    // FileMetaData field 2 as an i32 whose varint would be a count of 2^28 − 1; end.
    let meta = [0x25, 0xff, 0xff, 0xff, 0x7f, 0x00];
    let mut bytes = b"PAR1".to_vec();
    bytes.extend(meta);
    bytes.extend((meta.len() as u32).to_le_bytes());
    bytes.extend(b"PAR1");
    inputs.push(("hand-built".to_owned(), bytes));
    for (name, bytes) in inputs {
        let path = write(&dir, &format!("{name}.parquet"), bytes);
        let error = first_error(&path);
        assert!(
            matches!(error, DataError::NotParquet { .. }),
            "{name}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("field 2 has type 5, not a list"),
            "{name}: {message}"
        );
    }
}

/// cargo-fuzz `read_rows` regression: a page header with an unknown field holding a string of
/// 2^32 − 16 bytes, in a file of a few hundred. The `thrift` crate's reader under `parquet`
/// allocated the declared length before reading it (3.2 GB for the fuzzer's 900-byte file); the
/// page headers are now checked against their column chunk first.
#[test]
fn a_page_header_declaring_a_huge_string_is_not_parquet() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("huge-string.parquet");
    let mut writer = TableWriter::create(&path, vec![Column::str("completion")]).unwrap();
    writer.write_row(&[Cell::Str("a")]).unwrap();
    writer.finish().unwrap();
    let mut bytes = fs::read(&path).unwrap();
    // The first column chunk starts after the leading `PAR1` with a page header; its first
    // bytes become field 15 (unknown to the decoder, which skips it), a string of 2^32 − 16.
    bytes[4..10].copy_from_slice(&[0xf8, 0xf0, 0xff, 0xff, 0xff, 0x0f]);
    fs::write(&path, bytes).unwrap();
    let error = first_error(&path);
    assert!(matches!(error, DataError::NotParquet { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("huge-string.parquet")
            && message.contains("corrupt page header at byte 4: 4294967280 bytes declared"),
        "{message}"
    );
}

/// A crash can leave a zero-filled tail after good lines: the good rows are read, and the damage
/// is an error on its own line (not a refusal of the whole file as binary).
#[test]
fn a_zero_filled_tail_after_good_rows() {
    let dir = TempDir::new().unwrap();
    let mut bytes = b"{\"prompt\":\"p\",\"completion\":\"1\"}\n".repeat(3);
    bytes.extend(vec![0u8; 4096]);
    let path = write(&dir, "tail.jsonl", bytes);
    let all = items(&path);
    assert_eq!(all.len(), 4);
    assert!(all[..3].iter().all(Result::is_ok));
    let error = all[3].as_ref().unwrap_err();
    assert!(
        matches!(error, DataError::MalformedJson { line: 4, .. }),
        "{error:?}"
    );
}

#[test]
fn a_truncated_gzip_file_is_a_fatal_read_error_after_the_good_rows() {
    let dir = TempDir::new().unwrap();
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    for i in 0..2000 {
        writeln!(encoder, "{{\"prompt\":\"p{i}\",\"completion\":\"c{i}\"}}").unwrap();
    }
    let mut bytes = encoder.finish().unwrap();
    bytes.truncate(bytes.len() / 2);
    let path = write(&dir, "cut.jsonl.gz", bytes);
    let all = items(&path);
    let last = all.last().unwrap();
    let error = last.as_ref().unwrap_err();
    assert!(matches!(error, DataError::Io { .. }), "{error:?}");
    assert!(all[..all.len() - 1].iter().all(Result::is_ok));
    assert!(all.len() > 100, "the rows before the cut are read");
}

#[test]
fn a_huge_line_is_read_like_any_other() {
    let dir = TempDir::new().unwrap();
    let size = 64 * 1024 * 1024;
    let mut line = String::with_capacity(size + 64);
    line.push_str("{\"prompt\":\"p\",\"completion\":\"");
    line.extend(std::iter::repeat_n('x', size));
    line.push_str("\"}\n{\"prompt\":\"p\",\"completion\":\"short\"}\n");
    let path = write(&dir, "huge.jsonl", line);
    let rows: Vec<InputRow> = open(&path, FieldMap::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].samples[0].completion.text().len(), size);
    assert_eq!(rows[1].samples[0].completion.text(), "short");
}

#[test]
fn skipping_bad_rows_counts_every_one() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "mixed.jsonl",
        concat!(
            "{\"prompt\":\"p\",\"completion\":\"1\"}\n",
            "not json\n",
            "\n",
            "{\"prompt\":\"p\"}\n",
            "[]\n",
            "{\"prompt\":\"p\",\"completion\":[\"a\",\"b\"]}\n",
            "{\"prompt\":\"p\",\"completion\":7}\n",
            "{\"prompt\":\"p\",\"completion\":\"8\"}\n",
        ),
    );

    // By default the first bad row is an error (and `?` stops there).
    let first_bad = open(&path, FieldMap::default())
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err();
    assert_eq!(first_bad.line(), Some(2));

    // Skipping: every non-blank line gives exactly one event.
    let mut reader = open(&path, FieldMap::default()).unwrap().skip_bad_rows();
    let mut good = Vec::new();
    let mut skipped = Vec::new();
    for event in reader.by_ref() {
        match event.unwrap() {
            RowEvent::Row(row) => good.push(row.line),
            RowEvent::Skipped(skip) => {
                assert!(skip.error.is_row_error());
                assert_eq!(skip.error.line(), Some(skip.line));
                skipped.push(skip.line);
            }
        }
    }
    assert_eq!(good, [1, 6, 8]);
    assert_eq!(skipped, [2, 4, 5, 7]);
    let stats = reader.stats();
    assert_eq!(stats.rows, 3);
    assert_eq!(stats.bad_rows, 4);
    assert_eq!(stats.blank_lines, 1);
    assert_eq!(stats.samples, 4);
}

#[test]
fn a_missing_file_names_the_file() {
    let dir = TempDir::new().unwrap();
    let error = open(dir.path().join("absent.jsonl"), FieldMap::default()).unwrap_err();
    assert!(matches!(error, DataError::Io { .. }));
    assert!(error.to_string().contains("absent.jsonl"), "{error}");
}

/// Random bytes, and random damage to valid files of every format, never panic and always give
/// one item per row or a fatal error. (The Parquet decoder is guarded: a panic inside it becomes
/// an error; its message may still appear on stderr.)
#[test]
fn random_damage_never_panics() {
    let dir = TempDir::new().unwrap();
    let mut random = Random(12345);

    let jsonl = b"{\"prompt\":\"p\",\"completion\":[\"a\",\"b\"],\"reference\":{\"x\":[1,2]}}\n\
                  {\"prompt\":[{\"role\":\"user\",\"content\":\"q\"}],\"completion\":\"c\",\"group\":3}\n"
        .repeat(20);
    let gz = {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&jsonl).unwrap();
        encoder.finish().unwrap()
    };
    let parquet_path = dir.path().join("valid.parquet");
    let mut writer = TableWriter::create(
        &parquet_path,
        vec![
            Column::u64("n"),
            Column::str("prompt"),
            Column::str("completion"),
            Column::f64("x"),
        ],
    )
    .unwrap();
    for i in 0..200u64 {
        let text = format!("completion {i}");
        writer
            .write_row(&[
                Cell::U64(i),
                Cell::Str("p"),
                Cell::Str(&text),
                Cell::F64(i as f64),
            ])
            .unwrap();
    }
    writer.finish().unwrap();
    let parquet = fs::read(&parquet_path).unwrap();

    for round in 0..300 {
        let (name, mut bytes) = match round % 4 {
            0 => ("damaged.jsonl", jsonl.clone()),
            1 => ("damaged.jsonl.gz", gz.clone()),
            2 => ("damaged.parquet", parquet.clone()),
            _ => {
                let n = (random.next() % 2048) as usize;
                ("random.jsonl", random.bytes(n))
            }
        };
        if !bytes.is_empty() {
            let flips = 1 + random.next() % 8;
            for _ in 0..flips {
                let at = (random.next() % bytes.len() as u64) as usize;
                bytes[at] = random.next() as u8;
            }
            if random.next().is_multiple_of(4) {
                let keep = (random.next() % bytes.len() as u64) as usize;
                bytes.truncate(keep);
            }
        }
        let path = write(&dir, name, &bytes);
        let reader = match RecordReader::open(&path, None) {
            Ok(reader) => reader,
            Err(error) => {
                assert!(!error.to_string().is_empty());
                continue;
            }
        };
        let mut reader = rewardkit_data::SampleReader::new(reader, FieldMap::default());
        let mut fatal = 0;
        let mut items = 0u64;
        for item in reader.by_ref() {
            items += 1;
            if let Err(error) = item {
                if !error.is_row_error() {
                    fatal += 1;
                }
            }
        }
        assert!(
            fatal <= 1,
            "at most one fatal error, and it ends the stream"
        );
        let stats = reader.stats();
        assert_eq!(
            stats.rows + stats.bad_rows + fatal,
            items,
            "round {round}: {name}"
        );
    }
}
