//! A check of a Parquet file's footer before the `parquet` crate decodes it.
//!
//! The footer is a Thrift compact-protocol `FileMetaData` (Parquet format spec, "File format";
//! Thrift compact protocol spec). The `parquet` crate (54) decodes each list in it with
//! `Vec::with_capacity(declared count)` before reading any element, so a corrupt or hostile file
//! of a few hundred bytes that declares a list of 10⁸ row groups asks for tens of gigabytes, and
//! an allocation failure aborts the process (it is not a panic that `catch_unwind` could turn into
//! an error; found by `fuzz/fuzz_targets/read_rows.rs`). Every list element takes at least one
//! byte, so a count larger than the bytes left in the footer cannot be right: this walk of the
//! footer's Thrift structure refuses such a count, and anything else malformed, before the
//! decoder sees it.
//!
//! The walk follows the types the bytes declare, except where the decoder does not: it reads a
//! field it knows by the type `parquet.thrift` gives it, whatever type the bytes declare, so a
//! footer that mislabels a list field (an `i32` where the format has a list) would be read
//! differently by the two. The fields the format gives as lists, and the structs on the way to
//! them, must therefore carry their format types ([`Expect`]); what else a footer mislabels the
//! decoder reads as a few bytes, a string (at most 4 GiB, allocated lazily) or a struct without
//! lists.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// Nesting depth past which a footer is refused (a real one nests fewer than ten structs).
const MAX_DEPTH: usize = 64;

/// Checks the footer of the Parquet file `file` and seeks back to its start. `Ok(())` when the
/// footer is sound, or when the file is too short or lacks the plain `PAR1` trailer (the
/// decoder then reports that itself); `Err` with what is wrong otherwise.
pub(crate) fn check(file: &mut File) -> io::Result<Result<(), String>> {
    let len = file.seek(SeekFrom::End(0))?;
    let result = if len < 12 {
        Ok(())
    } else {
        let mut trailer = [0u8; 8];
        file.seek(SeekFrom::Start(len - 8))?;
        file.read_exact(&mut trailer)?;
        let meta_len = u64::from(u32::from_le_bytes([
            trailer[0], trailer[1], trailer[2], trailer[3],
        ]));
        if &trailer[4..] != b"PAR1" || meta_len + 8 > len {
            Ok(())
        } else {
            let mut meta = vec![0u8; meta_len as usize];
            file.seek(SeekFrom::Start(len - 8 - meta_len))?;
            file.read_exact(&mut meta)?;
            check_metadata(&meta)
        }
    };
    file.seek(SeekFrom::Start(0))?;
    Ok(result)
}

/// Checks the page headers of column chunks (`(start, length)` in bytes, from the decoded
/// footer) the same way, each against the bytes left in its chunk, and seeks back to the start.
///
/// Page headers are Thrift structs too, which the `parquet` crate decodes through the `thrift`
/// crate's reader; its `read_bytes` allocates the declared length (up to 4 GiB) before reading,
/// so a 900-byte file asked for 3.2 GB (found by `fuzz/fuzz_targets/read_rows.rs`). Each header
/// is read in pieces of 4 KiB and up, as far as the walk needs; the pages' bodies are skipped.
pub(crate) fn check_pages(
    file: &mut File,
    chunks: impl IntoIterator<Item = (u64, u64)>,
) -> io::Result<Result<(), String>> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut result = Ok(());
    'chunks: for (start, chunk_len) in chunks {
        let end = start.saturating_add(chunk_len).min(len);
        let mut at = start;
        while at < end {
            let mut want = 4096u64;
            let (header, body) = loop {
                let take = want.min(end - at);
                let mut buf = vec![0u8; take as usize];
                file.seek(SeekFrom::Start(at))?;
                file.read_exact(&mut buf)?;
                match page_header(&buf, (end - at) as usize) {
                    Err(e) if e == MORE => want = want.saturating_mul(4),
                    Err(e) => {
                        result = Err(format!("corrupt page header at byte {at}: {e}"));
                        break 'chunks;
                    }
                    Ok(sizes) => break sizes,
                }
            };
            // A negative page size is the decoder's to report.
            let Ok(body) = u64::try_from(body) else {
                break;
            };
            at = at.saturating_add(header as u64).saturating_add(body);
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(result)
}

/// Walks a `PageHeader` at the start of `bytes` (a prefix of the `limit` bytes left in its
/// chunk): its length, and its field 3, `compressed_page_size` (−1 when absent).
fn page_header(bytes: &[u8], limit: usize) -> Result<(usize, i64), String> {
    let mut walk = Walk {
        bytes,
        at: 0,
        limit,
    };
    let mut id = 0i64;
    let mut compressed = -1;
    loop {
        let header = walk.byte()?;
        let kind = header & 0x0f;
        if kind == 0 {
            return Ok((walk.at, compressed));
        }
        id = match header >> 4 {
            0 => unzigzag(walk.varint()?),
            delta => id + i64::from(delta),
        };
        if id == 3 && kind == 5 {
            compressed = unzigzag(walk.varint()?);
        } else if kind != 1 && kind != 2 {
            walk.value(kind, 1)?;
        }
    }
}

/// A zigzag-encoded integer, as 32 bits (the decoder's `i16`/`i32`).
fn unzigzag(value: u64) -> i64 {
    let v = value as u32;
    i64::from(((v >> 1) as i32) ^ -((v & 1) as i32))
}

/// Walks one Thrift compact-protocol struct (the footer's `FileMetaData`) and refuses counts
/// larger than the bytes left, and nesting deeper than [`MAX_DEPTH`].
pub(crate) fn check_metadata(meta: &[u8]) -> Result<(), String> {
    let mut walk = Walk {
        bytes: meta,
        at: 0,
        limit: meta.len(),
    };
    walk.value_as(STRUCT, 0, FILE_META_DATA).map_err(|e| {
        format!(
            "corrupt footer metadata at byte {} of {}: {e}",
            walk.at,
            meta.len()
        )
    })
}

const STRUCT: u8 = 12;
const I32: u8 = 5;
const I64: u8 = 6;
const BINARY: u8 = 8;
const LIST: u8 = 9;

/// What parquet.thrift says a field of a struct is, for the fields the decoder reads as lists, and
/// the structs that lead to such lists. The decoder reads a known field by its id, whatever wire
/// type the bytes declare: a list header read from bytes that declare something else gives a count
/// this walk never saw (a 570-byte file made it reserve 32.7 GB for `FileMetaData.schema`; found by
/// `fuzz/fuzz_targets/read_rows.rs`). So a known field must carry the type the format gives it.
#[derive(Clone, Copy)]
enum Expect {
    /// A list of elements of this compact type; struct elements have this schema.
    List(u8, Schema),
    /// A struct with this schema.
    Struct(Schema),
}

/// Field ids of a struct and what each must be; fields not listed are walked by their wire type.
type Schema = &'static [(i64, Expect)];

/// Structs whose list fields, if any, hold only scalars the decoder reads at a few bytes each.
const PLAIN: Schema = &[];
/// `SizeStatistics`: level histograms.
const SIZE_STATISTICS: Schema = &[(2, Expect::List(I64, PLAIN)), (3, Expect::List(I64, PLAIN))];
/// `EncryptionWithColumnKey`.
const COLUMN_KEY: Schema = &[(1, Expect::List(BINARY, PLAIN))];
/// `ColumnCryptoMetaData` (a union).
const COLUMN_CRYPTO: Schema = &[(2, Expect::Struct(COLUMN_KEY))];
/// `ColumnMetaData`: encodings, path_in_schema, key_value_metadata, encoding_stats,
/// size_statistics.
const COLUMN_META_DATA: Schema = &[
    (2, Expect::List(I32, PLAIN)),
    (3, Expect::List(BINARY, PLAIN)),
    (8, Expect::List(STRUCT, PLAIN)),
    (13, Expect::List(STRUCT, PLAIN)),
    (16, Expect::Struct(SIZE_STATISTICS)),
];
/// `ColumnChunk`: meta_data, crypto_metadata.
const COLUMN_CHUNK: Schema = &[
    (3, Expect::Struct(COLUMN_META_DATA)),
    (8, Expect::Struct(COLUMN_CRYPTO)),
];
/// `RowGroup`: columns, sorting_columns.
const ROW_GROUP: Schema = &[
    (1, Expect::List(STRUCT, COLUMN_CHUNK)),
    (4, Expect::List(STRUCT, PLAIN)),
];
/// `FileMetaData`: schema, row_groups, key_value_metadata, column_orders.
const FILE_META_DATA: Schema = &[
    (2, Expect::List(STRUCT, PLAIN)),
    (4, Expect::List(STRUCT, ROW_GROUP)),
    (5, Expect::List(STRUCT, PLAIN)),
    (7, Expect::List(STRUCT, PLAIN)),
];

/// The walk of a Thrift value over `bytes`, a prefix of the `limit` bytes it may take.
struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
    limit: usize,
}

/// Said when the walk needs bytes past `bytes` but within `limit`: read more and walk again.
const MORE: &str = "(more bytes needed)";

impl Walk<'_> {
    fn left(&self) -> usize {
        self.limit - self.at
    }

    fn byte(&mut self) -> Result<u8, String> {
        let Some(&b) = self.bytes.get(self.at) else {
            return Err(if self.bytes.len() < self.limit {
                MORE
            } else {
                "unexpected end"
            }
            .to_owned());
        };
        self.at += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if n > self.left() {
            return Err(format!("{n} bytes declared, {} left", self.left()));
        }
        if n > self.bytes.len() - self.at {
            return Err(MORE.to_owned());
        }
        self.at += n;
        Ok(())
    }

    /// An unsigned LEB128 varint, as the decoder reads it (at most ten bytes).
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than ten bytes".to_owned())
    }

    /// A count of elements that take at least `min_bytes` each. The decoder keeps the low 32
    /// bits as an `i32`, so that is what is checked.
    fn count(&mut self, value: u64, min_bytes: usize) -> Result<usize, String> {
        let count = value as i32;
        let count = usize::try_from(count).map_err(|_| format!("negative count {count}"))?;
        if count.saturating_mul(min_bytes) > self.left() {
            return Err(format!(
                "{count} elements declared, {} bytes left",
                self.left()
            ));
        }
        Ok(count)
    }

    /// Skips one value of compact type `kind`; `depth` is the current nesting.
    fn value(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        self.value_as(kind, depth, PLAIN)
    }

    /// The header of a list: its element type and count.
    fn list_header(&mut self) -> Result<(u8, usize), String> {
        let header = self.byte()?;
        let count = match header >> 4 {
            15 => self.varint()?,
            short => u64::from(short),
        };
        Ok((header & 0x0f, self.count(count, 1)?))
    }

    /// [`Walk::value`], a struct's known fields checked against `schema`.
    fn value_as(&mut self, kind: u8, depth: usize, schema: Schema) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH}"));
        }
        match kind {
            // Booleans inside collections take a byte; as fields they live in the header.
            1..=3 => self.skip(1),
            4..=6 => self.varint().map(drop),
            7 => self.skip(8),
            8 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| "length overflows".to_owned())?;
                self.skip(len)
            }
            9 | 10 => {
                let (element, count) = self.list_header()?;
                for _ in 0..count {
                    self.value(element, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let size = self.varint()?;
                let size = self.count(size, 2)?;
                if size > 0 {
                    let kinds = self.byte()?;
                    for _ in 0..size {
                        self.value(kinds >> 4, depth + 1)?;
                        self.value(kinds & 0x0f, depth + 1)?;
                    }
                }
                Ok(())
            }
            STRUCT => {
                let mut id = 0i64;
                loop {
                    let header = self.byte()?;
                    let field = header & 0x0f;
                    if field == 0 {
                        return Ok(());
                    }
                    id = match header >> 4 {
                        0 => unzigzag(self.varint()?), // a field id as a zigzag varint
                        delta => id + i64::from(delta),
                    };
                    match schema
                        .iter()
                        .find(|(known, _)| *known == id)
                        .map(|(_, e)| *e)
                    {
                        Some(Expect::List(element, elements)) => {
                            if field != LIST {
                                return Err(format!("field {id} has type {field}, not a list"));
                            }
                            let (declared, count) = self.list_header()?;
                            if declared != element {
                                return Err(format!(
                                    "field {id} is a list of type {declared}, not {element}"
                                ));
                            }
                            for _ in 0..count {
                                self.value_as(element, depth + 1, elements)?;
                            }
                        }
                        Some(Expect::Struct(fields)) => {
                            if field != STRUCT {
                                return Err(format!("field {id} has type {field}, not a struct"));
                            }
                            self.value_as(STRUCT, depth + 1, fields)?;
                        }
                        None if field != 1 && field != 2 => self.value(field, depth + 1)?,
                        None => {}
                    }
                }
            }
            other => Err(format!("unknown Thrift type {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{check_metadata, page_header, MORE};

    #[test]
    fn accepts_sound_structures() {
        for meta in [
            &[0x00][..],                           // empty struct
            &[0x15, 0x04, 0x00],                   // field 1: i32 2
            &[0x19, 0x25, 0x02, 0x04, 0x00],       // field 1: list of two i32
            &[0x19, 0x1c, 0x00, 0x00],             // field 1: list of one empty struct
            &[0x18, 0x02, b'a', b'b', 0x00],       // field 1: binary "ab"
            &[0x11, 0x22, 0x00],                   // two boolean fields, ids 1 and 3
            &[0x05, 0x02, 0x04, 0x00],             // long-form field id 1: i32
            &[0x1b, 0x01, 0x55, 0x02, 0x04, 0x00], // field 1: map {1: 2} of i32
        ] {
            assert_eq!(check_metadata(meta), Ok(()), "{meta:x?}");
        }
    }

    #[test]
    fn refuses_impossible_counts_and_garbage() {
        for (meta, why) in [
            (
                &[0x19, 0xfc, 0xff, 0xff, 0xff, 0x3f, 0x00][..],
                "elements declared",
            ),
            (
                &[0x19, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00],
                "negative count",
            ),
            (&[0x18, 0x10, b'a', 0x00], "bytes declared"),
            (&[0x1b, 0x80, 0x80, 0x04, 0x55, 0x00], "elements declared"),
            (&[0x15], "unexpected end"),
            (&[0x1d, 0x00], "unknown Thrift type 13"),
            (
                &[
                    0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                "ten bytes",
            ),
        ] {
            let error = check_metadata(meta).expect_err(why);
            assert!(error.contains(why), "{meta:x?}: {error}");
        }
        let deep: Vec<u8> = std::iter::repeat_n(0x1c, 100).collect();
        assert!(check_metadata(&deep).unwrap_err().contains("nested deeper"));
    }

    #[test]
    fn known_fields_must_have_the_format_s_types() {
        // FileMetaData.schema (field 2) declared as an i32 whose varint, read as a list header
        // by the decoder, would be a count of 2^28 − 1: refused, whatever the walk of an i32
        // would have said.
        let error = check_metadata(&[0x15, 0x02, 0x15, 0xff, 0xff, 0xff, 0x7f, 0x00]).unwrap_err();
        assert!(error.contains("field 2 has type 5, not a list"), "{error}");
        // A list of the wrong element type, and a known struct field of another type, deeper
        // down: row_groups (4) → RowGroup.columns (1) → ColumnChunk.meta_data (3).
        let error = check_metadata(&[0x49, 0x15, 0x02, 0x00]).unwrap_err();
        assert!(
            error.contains("field 4 is a list of type 5, not 12"),
            "{error}"
        );
        let error =
            check_metadata(&[0x49, 0x1c, 0x19, 0x1c, 0x35, 0x02, 0x00, 0x00, 0x00]).unwrap_err();
        assert!(
            error.contains("field 3 has type 5, not a struct"),
            "{error}"
        );
        // The same path with the format's types is accepted: row_groups = [RowGroup { columns:
        // [ColumnChunk { meta_data: ColumnMetaData { encodings: [0] } }] }].
        let sound = [
            0x49, 0x1c, 0x19, 0x1c, 0x3c, 0x29, 0x15, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(check_metadata(&sound), Ok(()));
    }

    #[test]
    fn page_headers_give_their_length_and_page_size_or_ask_for_more() {
        // Field 1 (type, i32 0), field 2 (uncompressed size, i32 100), field 3 (compressed,
        // i32 60), stop.
        let header = [0x15, 0x00, 0x15, 0xc8, 0x01, 0x15, 0x78, 0x00];
        assert_eq!(page_header(&header, 100), Ok((8, 60)));
        assert_eq!(page_header(&header[..5], 100), Err(MORE.to_owned()));
        assert_eq!(
            page_header(&header[..5], 5),
            Err("unexpected end".to_owned())
        );
        // An unknown field 15, a string of 2^32 − 16 bytes, in a chunk of 100.
        let huge = [0xf8, 0xf0, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let error = page_header(&huge, 100).unwrap_err();
        assert!(error.contains("4294967280 bytes declared"), "{error}");
    }
}
