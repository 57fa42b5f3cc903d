use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// A dataset file format.
///
/// When reading, gzip compression is detected from the content, so [`Format::Jsonl`] and
/// [`Format::JsonlGz`] read the same; when writing, they decide whether the output is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// JSON Lines: one JSON object per line.
    Jsonl,
    /// Gzip-compressed JSON Lines.
    JsonlGz,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The format a file name implies: `.jsonl`, `.ndjson` and `.json` are JSONL; the same with
    /// `.gz` added (or a bare `name.gz`) are gzip-compressed JSONL; `.parquet` and `.pq` are
    /// Parquet. The comparison ignores ASCII case. `None` for any other name (`x.csv`,
    /// `x.csv.gz`).
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let is_jsonl = |name: &str| {
            [".jsonl", ".ndjson", ".json"]
                .iter()
                .any(|ext| name.ends_with(ext))
        };
        if name.ends_with(".parquet") || name.ends_with(".pq") {
            Some(Format::Parquet)
        } else if let Some(stem) = name.strip_suffix(".gz") {
            (is_jsonl(stem) || !stem.contains('.')).then_some(Format::JsonlGz)
        } else if is_jsonl(&name) {
            Some(Format::Jsonl)
        } else {
            None
        }
    }

    /// The canonical name: `jsonl`, `jsonl.gz` or `parquet`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::JsonlGz => "jsonl.gz",
            Format::Parquet => "parquet",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;

    /// Parses `jsonl` (also `ndjson`), `jsonl.gz` (also `jsonl-gz`, `gz`) or `parquet`, ignoring
    /// ASCII case.
    fn from_str(s: &str) -> Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            "jsonl.gz" | "jsonl-gz" | "gz" => Ok(Format::JsonlGz),
            "parquet" => Ok(Format::Parquet),
            other => Err(format!(
                "unknown format `{other}`; expected jsonl, jsonl.gz or parquet"
            )),
        }
    }
}

/// What the first bytes of a file say it is, as far as this crate cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Magic {
    Gzip,
    Parquet,
    Other,
}

pub(crate) fn sniff(bytes: &[u8]) -> Magic {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Magic::Gzip
    } else if bytes.starts_with(b"PAR1") {
        Magic::Parquet
    } else {
        Magic::Other
    }
}

/// If `bytes` (the start of a decompressed input) do not look like UTF-8 text, says what they
/// look like instead: a known binary format by its magic bytes, or a first line holding control
/// bytes (NUL and the like), which text never has and random or binary data nearly always does.
///
/// Only the first line decides, so that a JSONL file with a damaged line further on (a crash can
/// leave a zero-filled tail) still yields its good rows and one error per damaged line.
pub(crate) fn binary_hint(bytes: &[u8]) -> Option<String> {
    let named = if bytes.starts_with(b"PAR1") {
        Some("it looks like a Parquet file (name it .parquet or choose the parquet format)")
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("it looks zstd-compressed; decompress it first (gzip is read directly)")
    } else if bytes.starts_with(b"PK\x03\x04") {
        Some("it looks like a zip archive; unzip it first")
    } else if bytes.starts_with(b"BZh") && bytes.get(3).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        Some("it looks bzip2-compressed; decompress it first (gzip is read directly)")
    } else if bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("it looks xz-compressed; decompress it first (gzip is read directly)")
    } else if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        Some("it looks like UTF-16 text; convert it to UTF-8")
    } else {
        None
    };
    if let Some(named) = named {
        return Some(named.to_owned());
    }
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or(bytes);
    first_line
        .iter()
        .position(|&b| b < 0x20 && !matches!(b, b'\t' | b'\r' | 0x0c | 0x1b))
        .map(|at| {
            format!(
                "its first line has the control byte {:#04x} at offset {at}, so it is binary \
                 data, not UTF-8 text",
                first_line[at]
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_names() {
        let check = |name: &str, expected: Option<Format>| {
            assert_eq!(Format::from_path(Path::new(name)), expected, "{name}");
        };
        check("a.jsonl", Some(Format::Jsonl));
        check("dir/A.JSONL", Some(Format::Jsonl));
        check("a.ndjson", Some(Format::Jsonl));
        check("a.jsonl.gz", Some(Format::JsonlGz));
        check("a.gz", Some(Format::JsonlGz));
        check("a.parquet", Some(Format::Parquet));
        check("a.pq", Some(Format::Parquet));
        check("a.csv", None);
        check("a.csv.gz", None);
        check("a.ndjson.GZ", Some(Format::JsonlGz));
        check("noext", None);
        assert_eq!("Parquet".parse::<Format>(), Ok(Format::Parquet));
        assert_eq!("jsonl.gz".parse::<Format>(), Ok(Format::JsonlGz));
        assert!("csv".parse::<Format>().is_err());
    }

    #[test]
    fn binary_inputs_are_named() {
        assert!(binary_hint(b"{\"a\": 1}\n").is_none());
        assert!(binary_hint(b"PAR1\x15\x00").unwrap().contains("Parquet"));
        assert!(binary_hint(b"\xff\xfe{\x00").unwrap().contains("UTF-16"));
        assert!(binary_hint(b"ab\x00cd")
            .unwrap()
            .contains("0x00 at offset 2"));
        assert!(binary_hint(b"{}\r\n{}\t\n").is_none());
        // Damage after the first line is left to the per-line errors.
        assert!(binary_hint(b"{}\n\x00\x00\x00").is_none());
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Magic::Gzip);
        assert_eq!(sniff(b"PAR1"), Magic::Parquet);
        assert_eq!(sniff(b"{}"), Magic::Other);
        assert_eq!(sniff(b""), Magic::Other);
    }
}
