//! The first tier of `POST /v1/score` parsing: a hand-written reader for the shape trainers
//! send nearly always — `{"samples": [{"prompt": "…", "completion": "…", "reference": "…",
//! "group": "…"}, …]}`, every field a string (`reference` and `group` may be `null`).
//!
//! It checks the body's UTF-8 once, finds string ends eight bytes at a time, copies each string
//! once into its sample (sized exactly when it has no escapes), and builds no serde state.
//! Anything else — another key, a non-string value, an escaped key, a duplicate key, a lone
//! surrogate, a raw control character, a limit exceeded, trailing bytes — is *declined* (`None`)
//! and the serde tiers in `wire` parse the body instead (and word the error, if there is one). So
//! this reader never decides what is valid: it accepts only bodies the checked parser accepts,
//! with the same samples (`direct_agrees_with_the_checked_parser` and
//! `direct_agrees_on_random_bodies_and_their_corruptions` hold it to that).

use rewardkit_core::{Completion, Prompt, Reference, Sample};

use crate::ServerConfig;

/// The samples of a body in the common shape, or `None`: let the serde tiers parse it.
pub(crate) fn parse_score(bytes: &[u8], config: &ServerConfig) -> Option<Vec<Sample>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut reader = Reader { text, at: 0 };
    reader.punct(b'{')?;
    if reader.key()? != "samples" {
        return None;
    }
    reader.punct(b':')?;
    reader.punct(b'[')?;
    let mut samples = Vec::new();
    if !reader.next_is(b']') {
        loop {
            if samples.len() == config.max_samples_per_request {
                return None;
            }
            let sample = reader.sample()?;
            if sample.completion.text().len() > config.max_completion_bytes {
                return None;
            }
            samples.push(sample);
            if reader.next_is(b']') {
                break;
            }
            reader.punct(b',')?;
        }
    }
    reader.punct(b'}')?;
    reader.skip_whitespace();
    (reader.at == text.len()).then_some(samples)
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn skip_whitespace(&mut self) {
        let bytes = self.bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// Skips whitespace and `expected`.
    fn punct(&mut self, expected: u8) -> Option<()> {
        self.skip_whitespace();
        (self.bytes().get(self.at) == Some(&expected)).then(|| self.at += 1)
    }

    /// Skips whitespace; takes `expected` if it comes next.
    fn next_is(&mut self, expected: u8) -> bool {
        self.punct(expected).is_some()
    }

    /// An object key without escapes.
    fn key(&mut self) -> Option<&'a str> {
        self.skip_whitespace();
        if self.bytes().get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let end = start + find_special(self.bytes().get(start..)?)?;
        if self.bytes()[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        Some(&self.text[start..end])
    }

    /// `null` (→ `None`) or a string.
    fn nullable_string(&mut self) -> Option<Option<String>> {
        self.skip_whitespace();
        if self.text[self.at..].starts_with("null") {
            self.at += 4;
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A JSON string, unescaped.
    fn string(&mut self) -> Option<String> {
        self.skip_whitespace();
        let bytes = self.bytes();
        if bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        // First pass: the raw extent (an upper bound of the decoded size) and where the first
        // escapes are, so that the second pass need not search again.
        let mut end = start;
        let mut escapes = [0usize; 32];
        let mut count = 0;
        loop {
            end += find_special(bytes.get(end..)?)?;
            match bytes[end] {
                b'"' => break,
                b'\\' => {
                    if let Some(slot) = escapes.get_mut(count) {
                        *slot = end;
                    }
                    count += 1;
                    end += 2;
                }
                _ => return None, // a raw control character
            }
        }
        self.at = end + 1;
        if count == 0 {
            return Some(self.text[start..end].to_owned());
        }
        let mut out = String::with_capacity(end - start);
        let mut at = start;
        // Copies the plain run before the backslash at `backslash`, then the escaped character.
        let escape = |out: &mut String, at: &mut usize, backslash: usize| -> Option<()> {
            out.push_str(&self.text[*at..backslash]);
            let (c, used) = unescape(&bytes[backslash + 1..end])?;
            out.push(c);
            *at = backslash + 1 + used;
            Some(())
        };
        if count <= escapes.len() {
            for &backslash in &escapes[..count] {
                // A surrogate pair's second escape was consumed with its first.
                if backslash >= at {
                    escape(&mut out, &mut at, backslash)?;
                }
            }
        } else {
            while let Some(plain) = find_special(&bytes[at..end]) {
                // A backslash: the first pass saw no other special byte before `end`.
                let backslash = at + plain;
                escape(&mut out, &mut at, backslash)?;
            }
        }
        out.push_str(&self.text[at..end]);
        Some(out)
    }

    /// One sample object; `None` for anything outside the common shape.
    fn sample(&mut self) -> Option<Sample> {
        self.punct(b'{')?;
        let (mut prompt, mut completion, mut reference, mut group) = (None, None, None, None);
        if !self.next_is(b'}') {
            loop {
                let key = self.key()?;
                self.punct(b':')?;
                match key {
                    "prompt" => once(&mut prompt, self.string()?)?,
                    "completion" => once(&mut completion, self.string()?)?,
                    "reference" => once(&mut reference, self.nullable_string()?)?,
                    "group" => once(&mut group, self.nullable_string()?)?,
                    _ => return None,
                }
                if self.next_is(b'}') {
                    break;
                }
                self.punct(b',')?;
            }
        }
        Some(Sample {
            prompt: Prompt::Text(prompt.unwrap_or_default()),
            completion: Completion::Text(completion?),
            reference: reference.flatten().map(Reference::Text),
            group: group.flatten(),
            metadata: Default::default(),
        })
    }
}

/// Fills an empty slot; `None` for a duplicate key.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.replace(value).is_none().then_some(())
}

/// Whether `b` ends a run of plain string bytes: a quote, a backslash or a control character.
fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// The index of the first special byte of `bytes`, eight bytes per step (SWAR: a byte is
/// flagged by the classic "has a zero byte" test on `word ^ '"'` and `word ^ '\\'`, and by a
/// subtract-borrow test for `< 0x20`; a flag can be spurious only above a true one, so the
/// lowest flag is exact).
fn find_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut at = 0;
    for chunk in bytes.chunks_exact(8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let flags = zero(word ^ (ONES * u64::from(b'"')))
            | zero(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGH);
        if flags != 0 {
            return Some(at + flags.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| is_special(b))
        .map(|i| at + i)
}

/// The character of the escape after a backslash (`after` starts at the escape letter) and how
/// many bytes it used; `None` for an invalid escape or a lone surrogate.
fn unescape(after: &[u8]) -> Option<(char, usize)> {
    let c = match after.first()? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let high = hex4(after.get(1..5)?)?;
            if !(0xD800..0xE000).contains(&high) {
                return Some((char::from_u32(high)?, 5));
            }
            // A surrogate pair: a high surrogate, then `\u` and a low one.
            if high >= 0xDC00 || after.get(5..7)? != b"\\u" {
                return None;
            }
            let low = hex4(after.get(7..11)?)?;
            if !(0xDC00..0xE000).contains(&low) {
                return None;
            }
            let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
            return Some((char::from_u32(c)?, 11));
        }
        _ => return None,
    };
    Some((c, 1))
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |value, &d| {
        let digit = char::from(d).to_digit(16)?;
        Some(value * 16 + digit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_score_checked;

    fn config() -> ServerConfig {
        ServerConfig {
            max_samples_per_request: 4,
            max_completion_bytes: 128,
            ..ServerConfig::default()
        }
    }

    /// When the direct reader accepts, the checked parser gives the same samples; `accepts`
    /// says whether it should accept at all.
    fn check(body: &str, accepts: bool) {
        let direct = parse_score(body.as_bytes(), &config());
        assert_eq!(direct.is_some(), accepts, "{body}: direct {direct:?}");
        if let Some(direct) = direct {
            assert_eq!(
                Ok::<_, String>(direct),
                parse_score_checked(body.as_bytes(), &config()).map_err(|e| e.to_string()),
                "{body}"
            );
        }
    }

    #[test]
    fn direct_agrees_with_the_checked_parser() {
        check(r#"{"samples": []}"#, true);
        check(" {\n\"samples\"\t:\r[ ] } \n", true);
        check(r#"{"samples": [{"completion": "x"}]}"#, true);
        check(
            r#"{"samples":[{"completion":"x"},{"completion":"y"}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"prompt": "p", "completion": "x", "reference": "4", "group": "g"}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"group": null, "reference": null, "completion": ""}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"completion": "a\"\\\/\b\f\n\r\t b"}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"completion": "\u00e9\u2713\uD83D\uDE00\u0000"}]}"#,
            true,
        );
        check(r#"{"samples": [{"completion": "é ✓ 😀 raw"}]}"#, true);
        check(
            r#"{"samples": [{"completion": "0123456789abcdef0123456789abcdef\n0123456789abcdef"}]}"#,
            true,
        );
        // More escapes than the first pass remembers: the second pass searches again.
        let many = format!(
            r#"{{"samples": [{{"completion": "{}\uD83D\uDE00"}}]}}"#,
            r"a\n".repeat(40)
        );
        check(&many, true);
        // Declined: the serde tiers parse (or refuse) these.
        check(
            r#"{"samples": [{"completion": "x", "metadata": {"k": 1}}]}"#,
            false,
        );
        check(r#"{"samples": [{"completion": "x", "other": 1}]}"#, false);
        check(
            r#"{"samples": [{"completion": "x", "reference": 4}]}"#,
            false,
        );
        check(
            r#"{"samples": [{"completion": {"role": "assistant", "content": "c"}}]}"#,
            false,
        );
        check(r#"{"samples": [{"prompt": [], "completion": "x"}]}"#, false);
        check(
            r#"{"samples": [{"prompt": null, "completion": "x"}]}"#,
            false,
        );
        check(
            r#"{"samples": [{"comp\u006cetion": "escaped key"}]}"#,
            false,
        );
        check(
            r#"{"samples": [{"completion": "x", "completion": "y"}]}"#,
            false,
        );
        check(r#"{"samples": [{"prompt": "p"}]}"#, false);
        check(r#"{"samples": [{"completion": "x"}], "other": 1}"#, false);
        check(r#"{"samples": [{"completion": "x"},]}"#, false);
        check(r#"{"samples": [{"completion": "x",}]}"#, false);
        check(r#"{"samples": [{"completion": "x"}]} x"#, false);
        check(r#"{"samples": [{"completion": "x"}]"#, false);
        check(r#"{"samples": [{"completion": "x"#, false);
        check(r#"{"samples": [{"completion": "x\"#, false);
        check("{\"samples\": [{\"completion\": \"raw\ncontrol\"}]}", false);
        check(r#"{"samples": [{"completion": "\uD83D"}]}"#, false);
        check(r#"{"samples": [{"completion": "\uDE00\uD83D"}]}"#, false);
        check(r#"{"samples": [{"completion": "\uD83D\u0041"}]}"#, false);
        check(r#"{"samples": [{"completion": "\x"}]}"#, false);
        check(r#"{"samples": [{"completion": "\u00g1"}]}"#, false);
        check(r#"{"samples": [{"group": nul, "completion": "x"}]}"#, false);
        check(r#"{"samples": {}}"#, false);
        check(r#"[]"#, false);
        check("", false);
        check(
            r#"{"samples": [{"completion": "1"}, {"completion": "2"}, {"completion": "3"}, {"completion": "4"}, {"completion": "5"}]}"#,
            false,
        );
        check(
            &format!(
                r#"{{"samples": [{{"completion": "{}"}}]}}"#,
                "x".repeat(129)
            ),
            false,
        );
    }

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    fn random_text(rng: &mut Rng) -> String {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            " ",
            "\"",
            "\\",
            "/",
            "\n",
            "\t",
            "\r",
            "\u{0}",
            "\u{1f}",
            "\u{7f}",
            "é",
            "✓",
            "😀",
            "#### 42",
            "<think>",
            "0123456789abcdef",
        ];
        (0..rng.below(60))
            .map(|_| PIECES[rng.below(PIECES.len() as u64) as usize])
            .collect()
    }

    /// A string as JSON, sometimes with gratuitous escapes (`\/`, `\u00XX`, surrogate pairs).
    fn encode(text: &str, rng: &mut Rng) -> String {
        let mut out = String::from("\"");
        for c in text.chars() {
            match (c, rng.below(3)) {
                ('/', 0) => out.push_str("\\/"),
                (c, 0) if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
                (c, 0) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04X}"));
                    }
                }
                (c, _) => {
                    let json = serde_json::to_string(&c.to_string()).unwrap();
                    out.push_str(&json[1..json.len() - 1]);
                }
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn direct_agrees_on_random_bodies_and_their_corruptions() {
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        let ws = |rng: &mut Rng| [" ", "", "\n", "\t ", "\r\n"][rng.below(5) as usize];
        let config = ServerConfig::default();
        for case in 0..2000 {
            let mut body = format!(
                "{{{}\"samples\"{}:{}[",
                ws(&mut rng),
                ws(&mut rng),
                ws(&mut rng)
            );
            for i in 0..rng.below(4) {
                if i > 0 {
                    body.push(',');
                }
                let completion = encode(&random_text(&mut rng), &mut rng);
                let mut fields = vec![format!("\"completion\":{completion}")];
                for key in ["prompt", "reference", "group"] {
                    match rng.below(3) {
                        0 => {}
                        1 if key != "prompt" => {
                            fields.push(format!("\"{key}\":{}null", ws(&mut rng)))
                        }
                        _ => {
                            let value = encode(&random_text(&mut rng), &mut rng);
                            fields.push(format!("\"{key}\":{}{value}", ws(&mut rng)))
                        }
                    }
                }
                // A random field order.
                for k in (1..fields.len()).rev() {
                    fields.swap(k, rng.below(k as u64 + 1) as usize);
                }
                let separator = format!(",{}", ws(&mut rng));
                body.push_str(&format!("{}{{{}}}", ws(&mut rng), fields.join(&separator)));
            }
            body.push_str(&format!(
                "{}]{}}}{}",
                ws(&mut rng),
                ws(&mut rng),
                ws(&mut rng)
            ));
            let checked = parse_score_checked(body.as_bytes(), &config).map_err(|e| e.to_string());
            assert_eq!(
                parse_score(body.as_bytes(), &config).ok_or_else(String::new),
                checked,
                "case {case}: {body}"
            );
            // Corruptions: a byte cut off, replaced or inserted. Whatever the direct reader
            // accepts must be exactly what the checked parser makes of it.
            let mut bytes = body.into_bytes();
            let at = rng.below(bytes.len() as u64) as usize;
            let byte = b"\"\\{}[],: nu0\x01"[rng.below(13) as usize];
            match rng.below(3) {
                0 => bytes.truncate(at),
                1 => bytes[at] = byte,
                _ => bytes.insert(at, byte),
            }
            if let Some(direct) = parse_score(&bytes, &config) {
                assert_eq!(
                    Ok(direct),
                    parse_score_checked(&bytes, &config).map_err(|e| e.to_string()),
                    "case {case} corrupted: {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
    }
}
