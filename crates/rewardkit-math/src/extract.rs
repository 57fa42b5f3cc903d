//! Finding the final answer in a long chain of thought.
//!
//! Each [`Strategy`] yields at most one candidate string; [`candidates`] returns them in the
//! configured order and the verifier takes the first that parses (so an unparseable box falls
//! through to "the final answer is …", as Math-Verify's extraction targets do). Every search is a
//! backwards scan from the end of the text, linear in its length.

use serde::{Deserialize, Serialize};

/// A way of finding the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The last `\boxed{…}` / `\fbox{…}` / `\framebox{…}` (nested braces allowed).
    Boxed,
    /// "The final answer is …", "final answer: …", "the answer is …", "Answer: …".
    AnswerPhrase,
    /// The last LaTeX maths span: `$…$`, `$$…$$`, `\(…\)`, `\[…\]`.
    Latex,
    /// The whole completion, when it is a bare expression: one line with no word of three or
    /// more letters other than LaTeX commands, function names and `\text{…}` contents.
    Whole,
    /// The last number (with its sign, decimals and a `/` fraction) in the text.
    LastNumber,
}

/// The default order: boxed, answer phrase, LaTeX span, whole text, last number.
pub fn default_strategies() -> Vec<Strategy> {
    vec![
        Strategy::Boxed,
        Strategy::AnswerPhrase,
        Strategy::Latex,
        Strategy::Whole,
        Strategy::LastNumber,
    ]
}

/// Candidate answers in the order of `strategies` (each strategy gives at most one).
pub fn candidates(text: &str, strategies: &[Strategy]) -> Vec<(Strategy, String)> {
    let mut out = Vec::new();
    for &s in strategies {
        let found = match s {
            Strategy::Boxed => last_boxed(text),
            Strategy::AnswerPhrase => answer_phrase(text),
            Strategy::Latex => last_latex(text),
            Strategy::Whole => whole(text),
            Strategy::LastNumber => last_number(text),
        };
        if let Some(c) = found {
            let c = clean(&c);
            if !c.is_empty() {
                out.push((s, c));
            }
        }
    }
    out
}

/// Trims spaces, markdown emphasis (`**73**`), and a trailing full stop.
pub fn clean(s: &str) -> String {
    let mut t = s.trim();
    loop {
        let before = t.len();
        t = t.trim_matches(|c: char| c == '*' || c.is_whitespace());
        t = t.strip_suffix('.').unwrap_or(t);
        t = t.trim();
        if t.len() == before {
            break;
        }
    }
    t.to_string()
}

/// The content of the `{…}` group opening at byte `open`, if it closes.
fn braced(text: &str, open: usize) -> Option<&str> {
    let b = text.as_bytes();
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[open + 1..i]);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The content of the last closed `\boxed{…}` (or `\fbox`, `\framebox`; `\boxed 5` too).
pub fn last_boxed(text: &str) -> Option<String> {
    let mut end = text.len();
    loop {
        let slice = &text[..end];
        let pos = ["\\boxed", "\\fbox", "\\framebox"]
            .iter()
            .filter_map(|m| slice.rfind(m).map(|p| (p, m.len())))
            .max()?;
        let after = pos.0 + pos.1;
        let rest = &text[after..];
        let skipped = rest.len() - rest.trim_start().len();
        let open = after + skipped;
        if let Some(content) = braced(text, open) {
            return Some(content.to_string());
        }
        if skipped > 0 {
            // `\boxed 5`: one token up to a space or `$`.
            let token: String = text[open..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '$')
                .collect();
            if !token.is_empty() && !token.starts_with('{') {
                return Some(token);
            }
        }
        end = pos.0;
    }
}

/// The text after the last answer phrase, up to the end of its line or sentence; the maths span
/// inside it if there is one.
pub fn answer_phrase(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let phrases = [
        "final answer is",
        "final answer:",
        "the answer is",
        "answer is:",
        "answer:",
    ];
    let (pos, len) = phrases
        .iter()
        .filter_map(|p| lower.rfind(p).map(|i| (i, p.len())))
        .max_by_key(|(i, len)| (*i + *len, *len))?;
    let rest = &text[pos + len..];
    let line = rest
        .split('\n')
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    // Maths spans inside the phrase win; several (`$(1,2)$, $(3,4)$`) are several answers.
    let spans = latex_spans(line);
    if !spans.is_empty() {
        return Some(spans.join(", "));
    }
    let line = line.trim().trim_start_matches(':').trim();
    // The sentence ends at ". " (a full stop followed by a space), not at a decimal point.
    let end = line.find(". ").unwrap_or(line.len());
    Some(line[..end].to_string())
}

/// The content of the last LaTeX maths span.
pub fn last_latex(text: &str) -> Option<String> {
    let mut spans = spans_with_ends(text);
    spans.sort_by_key(|(end, _)| *end);
    spans.pop().map(|(_, c)| c)
}

/// The contents of the dollar spans of `text`, in order.
fn latex_spans(text: &str) -> Vec<String> {
    spans_with_ends(text).into_iter().map(|(_, c)| c).collect()
}

/// Maths spans as (end offset, content): the last `\(…\)` and `\[…\]`, and every dollar span.
fn spans_with_ends(text: &str) -> Vec<(usize, String)> {
    let mut found: Vec<(usize, String)> = Vec::new();
    let mut consider = |end: usize, content: &str| {
        if !content.trim().is_empty() {
            found.push((end, content.to_string()));
        }
    };
    for (open, close) in [("\\(", "\\)"), ("\\[", "\\]")] {
        if let Some(c) = text.rfind(close) {
            if let Some(o) = text[..c].rfind(open) {
                consider(c + close.len(), &text[o + open.len()..c]);
            }
        }
    }
    // Dollar spans: pair up `$` signs (and `$$`) from the start, skipping escaped `\$`.
    let b = text.as_bytes();
    let mut i = 0;
    let mut open: Option<(usize, usize)> = None;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == b'$' {
            let width = if b.get(i + 1) == Some(&b'$') { 2 } else { 1 };
            // TeX's rule for inline maths, which also tells currency apart: a closing `$` is not
            // preceded by a space and a single-`$` span does not cross a line; an opening `$` is
            // not followed by a space.
            let after_space = matches!(b.get(i + width), None | Some(b' ' | b'\n' | b'\t'));
            match open {
                Some((o, w))
                    if w == width
                        && (width == 2
                            || (!b[i - 1].is_ascii_whitespace()
                                && !text[o + w..i].contains('\n'))) =>
                {
                    let content = &text[o + w..i];
                    if width == 1 && whole(content).is_none() {
                        // Prose between two dollar signs is currency, not maths: this `$` may
                        // open the next span.
                        open = (!after_space).then_some((i, width));
                    } else {
                        consider(i + width, content);
                        open = None;
                    }
                }
                _ => open = (!after_space || width == 2).then_some((i, width)),
            }
            i += width;
            continue;
        }
        i += 1;
    }
    found
}

/// The last number in the text: optional minus, digits with `,` separators and decimals, and an
/// optional `/digits` fraction.
pub fn last_number(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let last_digit = b.iter().rposition(|c| c.is_ascii_digit())?;
    let mut start = last_digit;
    while start > 0
        && (b[start - 1].is_ascii_digit() || b[start - 1] == b'.' || b[start - 1] == b'/')
        || (start > 1 && b[start - 1] == b',' && b[start - 2].is_ascii_digit())
    {
        start -= 1;
    }
    while start < last_digit && !b[start].is_ascii_digit() {
        start += 1;
    }
    if start > 0 && (b[start - 1] == b'-') {
        start -= 1;
    }
    Some(text[start..=last_digit].to_string())
}

/// Function and constant names allowed in a bare expression.
const EXPRESSION_WORDS: &[&str] = &[
    "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh",
    "tanh", "log", "exp", "abs", "pi", "inf", "infty", "and", "matrix", "pmatrix", "bmatrix",
    "array", "frac", "dfrac", "tfrac",
];

/// The whole text if it reads as a bare expression (see [`Strategy::Whole`]).
pub fn whole(text: &str) -> Option<String> {
    let t = text.trim();
    if t.is_empty() || t.contains('\n') {
        return None;
    }
    let b = t.as_bytes();
    let mut i = 0;
    let mut in_text_group = 0usize;
    while i < b.len() {
        if b[i] == b'\\' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            let name = &t[start..i];
            if matches!(name, "text" | "mathrm" | "textbf" | "mbox") {
                in_text_group += 1;
            }
            continue;
        }
        if b[i].is_ascii_alphabetic() {
            let start = i;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            let word = t[start..i].to_ascii_lowercase();
            if word.len() >= 3 && in_text_group == 0 && !EXPRESSION_WORDS.contains(&word.as_str()) {
                return None;
            }
            continue;
        }
        if b[i] == b'}' && in_text_group > 0 {
            in_text_group -= 1;
        }
        i += 1;
    }
    Some(t.to_string())
}
