//! The row readers of `rewardkit-data` on arbitrary bytes: every input gives rows or a clear
//! error, never a panic, a hang (`-timeout`) or a huge allocation (`-rss_limit_mb`).
//!
//!     cargo +nightly fuzz run read_rows corpus/read_rows seeds/read_rows -- \
//!         -timeout=5 -rss_limit_mb=2048
//!
//! Decoding: the first byte picks the reader (its value mod 4), the rest is the input:
//!
//! * 0 — JSONL from memory (`RecordReader::from_reader`);
//! * 1 — the rest gzip-compressed by the target, then as 0 (so the JSON parser is reached
//!   through the gzip decoder);
//! * 2 — the rest written to a temporary file read as Parquet (`RecordReader::open` with
//!   `Format::Parquet`);
//! * 3 — the rest written to a temporary file opened by `rewardkit_data::open` with no format,
//!   so the content decides (JSONL, gzip or Parquet).
//!
//! Bit 2 of the first byte reads through `SampleReader::skip_bad_rows`. Rows are mapped with the
//! default `FieldMap`. Checks, besides "no panic": after a fatal error the reader yields nothing
//! more, and for plain JSONL every non-blank line yields exactly one item (the crate's
//! "nothing is lost" promise: `items + blank lines == lines`).
//!
//! The Parquet decoder (a dependency) is called under `catch_unwind` by the crate, which turns
//! its panics into errors; the panic hook set here prints those instead of aborting, so only a
//! panic that reaches this target fails it.
#![no_main]

use std::io::{Cursor, Write};
use std::sync::Once;

use flate2::write::GzEncoder;
use flate2::Compression;
use libfuzzer_sys::fuzz_target;
use rewardkit_data::{FieldMap, Format, RecordReader, RowEvent, SampleReader};

/// Items read at most: a tiny Parquet file can declare millions of (run-length encoded) rows.
const MAX_ITEMS: usize = 100_000;

fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys's hook aborts on every panic, even one the crate catches; replace it
    // (on the first input: libfuzzer-sys sets its own after any `init`) by Rust's default
    // hook, which prints the message. A panic that unwinds out of the target still aborts
    // (libfuzzer-sys's own catch_unwind).
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let _ = std::panic::take_hook();
    });
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let skip = mode & 4 != 0;
    let file;
    let reader = match mode % 4 {
        0 => RecordReader::from_reader("fuzz.jsonl", Cursor::new(rest.to_vec()))
            .map(|r| SampleReader::new(r, FieldMap::default())),
        1 => {
            let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
            gz.write_all(rest).expect("in memory");
            let bytes = gz.finish().expect("in memory");
            RecordReader::from_reader("fuzz.jsonl.gz", Cursor::new(bytes))
                .map(|r| SampleReader::new(r, FieldMap::default()))
        }
        m => {
            file = tempfile::NamedTempFile::new().expect("temporary file");
            std::fs::write(file.path(), rest).expect("temporary file");
            if m == 2 {
                RecordReader::open(file.path(), Some(Format::Parquet))
                    .map(|r| SampleReader::new(r, FieldMap::default()))
            } else {
                rewardkit_data::open(file.path(), FieldMap::default())
            }
        }
    };
    let Ok(reader) = reader else {
        return;
    };
    let (items, blank_lines) = if skip {
        drain(reader.skip_bad_rows(), |item| match item {
            Ok(RowEvent::Row(_) | RowEvent::Skipped(_)) => Ok(()),
            Err(e) => Err(e),
        })
    } else {
        drain(reader, |item| item.map(drop))
    };
    if mode % 4 <= 1 && items < MAX_ITEMS && !rest.starts_with(&[0x1f, 0x8b]) {
        // Plain JSONL (mode 1 decompresses to the same text; a gzip stream in mode 0 is
        // decompressed, so its lines are not these): lines as a line reader sees them, the
        // last one counted when it does not end in a newline.
        let lines = rest.split(|&b| b == b'\n').count()
            - usize::from(rest.ends_with(b"\n"))
            - usize::from(rest.is_empty());
        assert!(
            items == lines - blank_lines as usize || (items == 1 && lines == blank_lines as usize),
            "{lines} lines, {blank_lines} blank, {items} items"
        );
    }
});

/// Reads every item (at most [`MAX_ITEMS`]); checks that nothing follows a fatal error. Returns
/// the items that are rows or row errors (or the one fatal error), and the blank lines.
fn drain<I, T>(
    mut reader: I,
    classify: impl Fn(T) -> Result<(), rewardkit_data::DataError>,
) -> (usize, u64)
where
    I: Iterator<Item = T> + Stats,
{
    let mut items = 0;
    while let Some(item) = reader.next() {
        items += 1;
        if let Err(error) = classify(item) {
            let _ = error.to_string();
            if !error.is_row_error() {
                assert!(
                    reader.next().is_none(),
                    "an item after a fatal error: {error}"
                );
                break;
            }
        }
        if items >= MAX_ITEMS {
            break;
        }
    }
    (items, reader.blank_lines())
}

/// The blank-line count of either reader.
trait Stats {
    fn blank_lines(&self) -> u64;
}

impl Stats for SampleReader {
    fn blank_lines(&self) -> u64 {
        self.stats().blank_lines
    }
}

impl Stats for rewardkit_data::SkipBadRows {
    fn blank_lines(&self) -> u64 {
        self.stats().blank_lines
    }
}
