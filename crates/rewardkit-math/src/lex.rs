//! Tokens of LaTeX and plain-text maths.
//!
//! The lexer does the LaTeX-specific work so that the parser sees one small token language:
//! spacing commands, `\left`/`\right`, `$` and formatting wrappers (`\textbf{…}`, `\mathbf{…}`)
//! disappear; `\text{…}`/`\mathrm{…}` words (units) are dropped while their digits are kept,
//! together with the `/`, `·`, `-` and exponents that join units (`\mathrm{km}/\mathrm{hr}`,
//! `\mathrm{yd}^{3}`);
//! synonyms collapse (`\cdot`, `\times`, `*`, `×` are all [`Tok::Star`]; `\le`, `\leq`, `≤`, `<=` are
//! all `Rel(Le)`); numbers are read whole with thousands separators (`1,000`, `1{,}000`, `1\,000`)
//! and scientific notation (`1.5e-3`); and the one-character arguments of `\frac12` and `\sqrt2`
//! are split off as LaTeX does.

use num_bigint::BigInt;
use num_rational::BigRational;
use rewardkit_core::Meter;

use crate::{Limits, MathError};

/// A relation between two sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelOp {
    /// `=`
    Eq,
    /// `≠`
    Ne,
    /// `<`
    Lt,
    /// `≤`
    Le,
    /// `>`
    Gt,
    /// `≥`
    Ge,
}

impl RelOp {
    /// The relation seen from the other side (`a < b` is `b > a`).
    pub fn flipped(self) -> RelOp {
        match self {
            RelOp::Lt => RelOp::Gt,
            RelOp::Le => RelOp::Ge,
            RelOp::Gt => RelOp::Lt,
            RelOp::Ge => RelOp::Le,
            other => other,
        }
    }

    /// The operator's symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            RelOp::Eq => "=",
            RelOp::Ne => "!=",
            RelOp::Lt => "<",
            RelOp::Le => "<=",
            RelOp::Gt => ">",
            RelOp::Ge => ">=",
        }
    }
}

/// One token.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A number literal; `decimal` when written with a fractional part (`0.5`, `4.5e33`: such a
    /// number may be a rounded approximation, which comparison takes into account). An integer
    /// mantissa with an exponent (`3e8`) is exact, as `3 \times 10^8` is.
    Num {
        /// Its exact value.
        value: BigRational,
        /// Written with decimals.
        decimal: bool,
    },
    /// A variable or symbol name (`x`, `alpha`).
    Ident(String),
    /// A known function or constant name (`sqrt`, `frac`, `pi`, `sin`, …) or a structural command
    /// (`begin`, `end` with the environment name).
    Cmd(String),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBrack,
    /// `]`
    RBrack,
    /// `{` (a TeX group)
    LBrace,
    /// `}`
    RBrace,
    /// `\{` (a set)
    LSet,
    /// `\}`
    RSet,
    /// `|`
    Bar,
    /// `,`, `;`, "and", "or"
    Comma,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `±` (`\mp` too: as a set of two values they are the same)
    PlusMinus,
    /// multiplication
    Star,
    /// division
    Slash,
    /// power (`^`, `**`)
    Caret,
    /// `_` (subscripts: `\log_2`)
    Underscore,
    /// `!`
    Bang,
    /// `%`
    Percent,
    /// `°`, `^\circ`
    Degree,
    /// A relation.
    Rel(RelOp),
    /// `∪`
    Union,
    /// `&` (matrix column separator)
    Amp,
    /// A unit word (`\mathrm{km}`, `\text{ dollars}`); removed, with the operators joining
    /// units, before parsing.
    Unit,
    /// `\\` (matrix row separator)
    RowSep,
}

/// Words that name functions or constants in plain text and LaTeX.
const FUNCTIONS: &[&str] = &[
    "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh",
    "tanh", "ln", "log", "exp", "pi", "infty", "inf", "infinity", "abs", "frac", "dfrac", "tfrac",
    "cfrac", "binom", "dbinom", "tbinom",
];

/// Greek letters and other symbol commands read as variables.
const SYMBOLS: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
];

/// Commands that only format their argument: the argument is read as if they were not there.
const WRAPPERS: &[&str] = &[
    "textbf",
    "mathbf",
    "boldsymbol",
    "bm",
    "mathit",
    "mathsf",
    "mathbb",
    "mathcal",
    "emph",
    "displaystyle",
    "textstyle",
    "boxed",
    "fbox",
    "framebox",
    "underline",
    "overline",
    "hat",
    "vec",
    "bar",
    "tilde",
    "widehat",
    "mathbfit",
];

/// Commands that carry no meaning for the value.
const IGNORED: &[&str] = &[
    "left",
    "right",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "biggl",
    "biggr",
    "quad",
    "qquad",
    "displaystyle",
    "textstyle",
    "scriptstyle",
    "limits",
    "nolimits",
    "middle",
    "rm",
    "bf",
    "it",
    "mathstrut",
    "phantom",
    "hfill",
    "noindent",
    "ldots",
    "dots",
    "cdots",
    "hline",
    "therefore",
    "implies",
    "Rightarrow",
    "rightarrow",
    "to",
];

/// Text words read as separators of several answers.
const SEPARATOR_WORDS: &[&str] = &["and", "or"];

struct Lexer<'a> {
    s: &'a [u8],
    text: &'a str,
    out: Vec<Tok>,
    limits: &'a Limits,
}

/// Splits `text` into tokens, spending one step per byte.
pub fn lex(text: &str, limits: &Limits, meter: &mut Meter) -> Result<Vec<Tok>, MathError> {
    meter.step(text.len() as u64)?;
    let mut lexer = Lexer {
        s: text.as_bytes(),
        text,
        out: Vec::new(),
        limits,
    };
    lexer.run(0, text.len(), 0)?;
    Ok(strip_units(lexer.out))
}

/// Removes [`Tok::Unit`] markers together with what only connects units: a unit's exponent
/// (`\mathrm{m}^{2}`), `/`, `·` or `-` between two units, and a `/` before a unit after a value
/// (`6.608 \mathrm{mi} / \mathrm{hr} + 1` is `6.608 + 1`, not `6.608 / (+1)`).
fn strip_units(toks: Vec<Tok>) -> Vec<Tok> {
    if !toks.contains(&Tok::Unit) {
        return toks;
    }
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let per_unit =
            toks[i] == Tok::Slash && toks.get(i + 1) == Some(&Tok::Unit) && !out.is_empty();
        if toks[i] != Tok::Unit && !per_unit {
            out.push(toks[i].clone());
            i += 1;
            continue;
        }
        i += if per_unit { 2 } else { 1 };
        loop {
            match toks.get(i) {
                Some(Tok::Caret) => i = skip_exponent(&toks, i + 1),
                Some(Tok::Slash | Tok::Star | Tok::Minus)
                    if toks.get(i + 1) == Some(&Tok::Unit) =>
                {
                    i += 2
                }
                _ => break,
            }
        }
    }
    out
}

/// The index after a unit's exponent starting at `i`: `2`, `-1`, or a `{…}` group.
fn skip_exponent(toks: &[Tok], mut i: usize) -> usize {
    if toks.get(i) == Some(&Tok::Minus) {
        i += 1;
    }
    match toks.get(i) {
        Some(Tok::Num { .. }) => i + 1,
        Some(Tok::LBrace) => {
            let mut depth = 0usize;
            for (k, t) in toks.iter().enumerate().skip(i) {
                match t {
                    Tok::LBrace => depth += 1,
                    Tok::RBrace => {
                        depth -= 1;
                        if depth == 0 {
                            return k + 1;
                        }
                    }
                    _ => {}
                }
            }
            toks.len()
        }
        _ => i,
    }
}

fn is_digit(b: u8) -> bool {
    b.is_ascii_digit()
}

impl<'a> Lexer<'a> {
    fn push(&mut self, t: Tok) -> Result<(), MathError> {
        if self.out.len() >= self.limits.max_tokens {
            return Err(MathError::TooComplex("too many tokens"));
        }
        self.out.push(t);
        Ok(())
    }

    /// The index of the `}` closing the group opened at `open` (a `{`), or `end`.
    fn group_end(&self, open: usize, end: usize) -> Result<usize, MathError> {
        let mut depth = 0usize;
        let mut i = open;
        while i < end {
            match self.s[i] {
                b'\\' => i += 1,
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(i);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        Err(MathError::Parse("unclosed {".into()))
    }

    fn skip_space(&self, mut i: usize, end: usize) -> usize {
        while i < end && (self.s[i] == b' ' || self.s[i] == b'\n' || self.s[i] == b'\t') {
            i += 1;
        }
        i
    }

    /// Lexes one LaTeX argument starting at `i`: a `{…}` group (as braces around its tokens) or a
    /// single character (`\frac12`). Returns the index after it.
    fn argument(&mut self, i: usize, end: usize, depth: usize) -> Result<usize, MathError> {
        let i = self.skip_space(i, end);
        if i >= end {
            return Ok(i);
        }
        if self.s[i] == b'{' {
            let close = self.group_end(i, end)?;
            self.push(Tok::LBrace)?;
            self.run(i + 1, close, depth + 1)?;
            self.push(Tok::RBrace)?;
            Ok(close + 1)
        } else if is_digit(self.s[i]) {
            self.push(Tok::Num {
                value: BigRational::from_integer(BigInt::from(self.s[i] - b'0')),
                decimal: false,
            })?;
            Ok(i + 1)
        } else if self.s[i].is_ascii_alphabetic() {
            self.push(Tok::Ident((self.s[i] as char).to_string()))?;
            Ok(i + 1)
        } else {
            // A command argument such as `\frac\pi2`: lex one token.
            let before = self.out.len();
            let mut j = i + 1;
            if self.s[i] == b'\\' {
                while j < end && self.s[j].is_ascii_alphabetic() {
                    j += 1;
                }
            }
            self.run(i, j, depth + 1)?;
            if self.out.len() == before {
                return Err(MathError::Parse("empty argument".into()));
            }
            Ok(j)
        }
    }

    fn run(&mut self, mut i: usize, end: usize, depth: usize) -> Result<(), MathError> {
        // A brace level costs several parser levels (group, sum, product, power, atom), so a
        // quarter of the parser's depth is all the lexer needs; it also bounds this recursion.
        if depth > self.limits.max_depth / 4 {
            return Err(MathError::TooComplex("nesting too deep"));
        }
        while i < end {
            let c = self.s[i];
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b'$' | b'~' | b'`' => i += 1,
                b'0'..=b'9' | b'.' => i = self.number(i, end)?,
                b'a'..=b'z' | b'A'..=b'Z' => i = self.word(i, end)?,
                b'\\' => i = self.command(i, end, depth)?,
                b'{' => {
                    // `{,}` is a thousands separator only inside numbers (handled there).
                    let close = self.group_end(i, end)?;
                    self.push(Tok::LBrace)?;
                    self.run(i + 1, close, depth + 1)?;
                    self.push(Tok::RBrace)?;
                    i = close + 1;
                }
                b'}' => return Err(MathError::Parse("unbalanced }".into())),
                b'(' => {
                    self.push(Tok::LParen)?;
                    i += 1
                }
                b')' => {
                    self.push(Tok::RParen)?;
                    i += 1
                }
                b'[' => {
                    self.push(Tok::LBrack)?;
                    i += 1
                }
                b']' => {
                    self.push(Tok::RBrack)?;
                    i += 1
                }
                b'|' => {
                    self.push(Tok::Bar)?;
                    i += 1
                }
                b',' | b';' => {
                    self.push(Tok::Comma)?;
                    i += 1
                }
                b'+' => {
                    self.push(Tok::Plus)?;
                    i += 1
                }
                b'-' => {
                    self.push(Tok::Minus)?;
                    i += 1
                }
                b'*' => {
                    if self.s.get(i + 1) == Some(&b'*') {
                        self.push(Tok::Caret)?;
                        i += 2;
                    } else {
                        self.push(Tok::Star)?;
                        i += 1;
                    }
                }
                b'/' => {
                    self.push(Tok::Slash)?;
                    i += 1
                }
                b'^' => {
                    // `^\circ`, `^{\circ}`, `^{\circ}` are degrees.
                    let rest = &self.text[i + 1..end];
                    let rest_trim = rest.trim_start();
                    let skipped = rest.len() - rest_trim.len();
                    if let Some(n) = ["\\circ", "{\\circ}", "{ \\circ }", "{\\circ }", "{ \\circ}"]
                        .iter()
                        .find(|p| rest_trim.starts_with(**p))
                        .map(|p| p.len())
                    {
                        self.push(Tok::Degree)?;
                        i += 1 + skipped + n;
                    } else {
                        self.push(Tok::Caret)?;
                        i += 1;
                    }
                }
                b'_' => {
                    self.push(Tok::Underscore)?;
                    i += 1
                }
                b'!' => {
                    if self.s.get(i + 1) == Some(&b'=') {
                        self.push(Tok::Rel(RelOp::Ne))?;
                        i += 2;
                    } else {
                        self.push(Tok::Bang)?;
                        i += 1;
                    }
                }
                b'%' => {
                    self.push(Tok::Percent)?;
                    i += 1
                }
                b'=' => {
                    self.push(Tok::Rel(RelOp::Eq))?;
                    i += if self.s.get(i + 1) == Some(&b'=') {
                        2
                    } else {
                        1
                    };
                }
                b'<' | b'>' => {
                    let eq = self.s.get(i + 1) == Some(&b'=');
                    let op = match (c, eq) {
                        (b'<', false) => RelOp::Lt,
                        (b'<', true) => RelOp::Le,
                        (_, false) => RelOp::Gt,
                        (_, true) => RelOp::Ge,
                    };
                    self.push(Tok::Rel(op))?;
                    i += if eq { 2 } else { 1 };
                }
                b'&' => {
                    self.push(Tok::Amp)?;
                    i += 1
                }
                b'\'' | b'"' | b':' | b'?' => i += 1,
                _ if c >= 0x80 => i = self.unicode(i)?,
                _ => {
                    return Err(MathError::Parse(format!(
                        "unexpected character {:?}",
                        c as char
                    )))
                }
            }
        }
        Ok(())
    }

    fn unicode(&mut self, i: usize) -> Result<usize, MathError> {
        let ch = self.text[i..]
            .chars()
            .next()
            .expect("a char starts at a non-ASCII lead byte, this is a bug");
        let tok = match ch {
            '−' | '–' | '—' => Some(Tok::Minus),
            '×' | '·' | '⋅' | '∙' => Some(Tok::Star),
            '÷' => Some(Tok::Slash),
            '±' | '∓' => Some(Tok::PlusMinus),
            '≤' | '⩽' => Some(Tok::Rel(RelOp::Le)),
            '≥' | '⩾' => Some(Tok::Rel(RelOp::Ge)),
            '≠' => Some(Tok::Rel(RelOp::Ne)),
            '∪' => Some(Tok::Union),
            '°' => Some(Tok::Degree),
            '⌊' => Some(Tok::Cmd("lfloor".into())),
            '⌋' => Some(Tok::Cmd("rfloor".into())),
            '⌈' => Some(Tok::Cmd("lceil".into())),
            '⌉' => Some(Tok::Cmd("rceil".into())),
            '∅' => Some(Tok::Cmd("emptyset".into())),
            'π' => Some(Tok::Cmd("pi".into())),
            '∞' => Some(Tok::Cmd("infty".into())),
            '√' => Some(Tok::Cmd("sqrt".into())),
            '\u{a0}' | '\u{2009}' | '\u{202f}' | '\u{200b}' => None,
            _ => return Err(MathError::Parse(format!("unexpected character {ch:?}"))),
        };
        if let Some(tok) = tok {
            self.push(tok)?;
        }
        Ok(i + ch.len_utf8())
    }

    /// Reads a number: digits with thousands separators, a decimal part, an exponent.
    fn number(&mut self, start: usize, end: usize) -> Result<usize, MathError> {
        let s = self.s;
        let mut digits = String::new();
        let mut i = start;
        let mut int_digits = 0usize;
        while i < end && is_digit(s[i]) {
            digits.push(s[i] as char);
            int_digits += 1;
            i += 1;
        }
        // Thousands separators: `,`, `{,}` or `\,` followed by exactly three digits, only after a
        // first group of one to three digits.
        // Inside a comma list (`36,36,108`) a bare comma separates items, not thousands.
        let in_list = self.out.last() == Some(&Tok::Comma);
        // A first group `0` is not a number with separators (`0,245` is two answers).
        if (1..=3).contains(&int_digits) && s[start] != b'0' {
            loop {
                let sep_len = if s[i..end].starts_with(b"{,}") || s[i..end].starts_with(b"\\,") {
                    if s[i] == b'{' {
                        3
                    } else {
                        2
                    }
                } else if i < end && s[i] == b',' && !in_list {
                    1
                } else {
                    0
                };
                if sep_len == 0 {
                    break;
                }
                let g = i + sep_len;
                let three = g + 3 <= end
                    && s[g..g + 3].iter().all(|b| is_digit(*b))
                    && (g + 3 == end || !is_digit(s[g + 3]));
                if !three {
                    break;
                }
                digits.push_str(&self.text[g..g + 3]);
                i = g + 3;
            }
            // `25,100,55` is a list, not 25100 followed by 55: separators are only separators
            // when no shorter comma group follows.
            if i < end && s[i] == b',' && s.get(i + 1).is_some_and(|b| is_digit(*b)) {
                digits.truncate(int_digits);
                i = start + int_digits;
            }
        }
        let mut frac_digits = 0usize;
        let mut decimal = false;
        if i < end && s[i] == b'.' && i + 1 < end && is_digit(s[i + 1]) {
            decimal = true;
            i += 1;
            while i < end && is_digit(s[i]) {
                digits.push(s[i] as char);
                frac_digits += 1;
                i += 1;
            }
        } else if i < end && s[i] == b'.' && int_digits > 0 {
            // `3.` is 3 (a sentence's full stop or a trailing point).
            i += 1;
        }
        if digits.is_empty() {
            // A lone `.`: punctuation.
            return Ok(start + 1);
        }
        if digits.len() > self.limits.max_digits {
            return Err(MathError::TooLarge("number literal has too many digits"));
        }
        // Scientific notation: `e`/`E` followed by an optionally signed integer.
        let mut exponent: i64 = 0;
        if i < end && (s[i] == b'e' || s[i] == b'E') {
            let mut j = i + 1;
            let negative = j < end && s[j] == b'-';
            if j < end && (s[j] == b'-' || s[j] == b'+') {
                j += 1;
            }
            let digits_start = j;
            while j < end && is_digit(s[j]) {
                j += 1;
            }
            if j > digits_start && (j == end || !s[j].is_ascii_alphabetic()) {
                let text = &self.text[digits_start..j];
                let e: i64 = if text.len() > 6 {
                    i64::MAX
                } else {
                    text.parse().unwrap_or(i64::MAX)
                };
                if e > self.limits.max_exponent as i64 {
                    return Err(MathError::TooLarge(
                        "exponent of a number literal too large",
                    ));
                }
                exponent = if negative { -e } else { e };
                // `3e8` is exact like `3 \times 10^8`; `4.5e33` is decimal (a rounded value)
                // because of its fractional digits, not its exponent.
                i = j;
            }
        }
        let mantissa: BigInt = digits
            .parse()
            .expect("a non-empty string of ASCII digits parses, this is a bug");
        let scale = exponent - frac_digits as i64;
        let ten = BigInt::from(10u32);
        let value = if scale >= 0 {
            BigRational::from_integer(mantissa * num_traits::pow(ten, scale as usize))
        } else {
            BigRational::new(mantissa, num_traits::pow(ten, (-scale) as usize))
        };
        self.push(Tok::Num { value, decimal })?;
        Ok(i)
    }

    /// Reads a run of letters: a function name, a separator word, a unit word (dropped) or
    /// single-letter variables (implicit multiplication: `xy` is `x y`).
    fn word(&mut self, start: usize, end: usize) -> Result<usize, MathError> {
        let mut i = start;
        while i < end && self.s[i].is_ascii_alphabetic() {
            i += 1;
        }
        let w = &self.text[start..i];
        let lower = w.to_ascii_lowercase();
        if FUNCTIONS.contains(&w) || (w.len() > 2 && FUNCTIONS.contains(&lower.as_str())) {
            self.push(Tok::Cmd(normalise_function(&lower).into()))?;
        } else if SEPARATOR_WORDS.contains(&lower.as_str()) {
            self.push(Tok::Comma)?;
        } else if w.len() <= 2 {
            for ch in w.chars() {
                self.push(Tok::Ident(ch.to_string()))?;
            }
        }
        // Longer words are text (units, "dollars", "cm"): dropped.
        Ok(i)
    }

    fn command(&mut self, start: usize, end: usize, depth: usize) -> Result<usize, MathError> {
        let s = self.s;
        let mut i = start + 1;
        if i >= end {
            return Ok(end);
        }
        if !s[i].is_ascii() {
            // A backslash before a non-ASCII character: skip the whole character.
            let len = self.text[i..].chars().next().map_or(1, char::len_utf8);
            return Ok(i + len);
        }
        if !s[i].is_ascii_alphabetic() {
            // One-character commands.
            let tok = match s[i] {
                b'{' => Some(Tok::LSet),
                b'}' => Some(Tok::RSet),
                b'%' => Some(Tok::Percent),
                b'$' => None,
                b'\\' => Some(Tok::RowSep),
                b'|' => Some(Tok::Bar),
                b',' | b';' | b'!' | b':' | b' ' | b'>' => None,
                b'(' | b')' | b'[' | b']' => None,
                _ => None,
            };
            if let Some(tok) = tok {
                self.push(tok)?;
            }
            return Ok(i + 1);
        }
        while i < end && s[i].is_ascii_alphabetic() {
            i += 1;
        }
        let name = &self.text[start + 1..i];
        match name {
            "frac" | "dfrac" | "tfrac" | "cfrac" | "binom" | "dbinom" | "tbinom" => {
                let canonical = if name.ends_with("binom") {
                    "binom"
                } else {
                    "frac"
                };
                self.push(Tok::Cmd(canonical.into()))?;
                let j = self.argument(i, end, depth)?;
                self.argument(j, end, depth)
            }
            "sqrt" => {
                self.push(Tok::Cmd("sqrt".into()))?;
                let mut j = self.skip_space(i, end);
                if j < end && s[j] == b'[' {
                    let close = self.text[j..end]
                        .find(']')
                        .map(|k| j + k)
                        .ok_or_else(|| MathError::Parse("unclosed [ in \\sqrt".into()))?;
                    self.push(Tok::LBrack)?;
                    self.run(j + 1, close, depth + 1)?;
                    self.push(Tok::RBrack)?;
                    j = close + 1;
                }
                self.argument(j, end, depth)
            }
            "text" | "textrm" | "mathrm" | "mbox" | "operatorname" | "textnormal" | "texttt"
            | "hbox" | "textsf" | "textit" | "mathtt" => {
                let j = self.skip_space(i, end);
                if j >= end || s[j] != b'{' {
                    return Ok(j);
                }
                let close = self.group_end(j, end)?;
                let inner = self.text[j + 1..close].trim();
                let lower = inner.to_ascii_lowercase();
                // A word joined to a unit by `/`, `·` or `-` is a unit too (`\mathrm{ft} /
                // \mathrm{sec}` is not a secant).
                let n = self.out.len();
                let joined_to_unit = n >= 2
                    && self.out[n - 2] == Tok::Unit
                    && matches!(self.out[n - 1], Tok::Slash | Tok::Star | Tok::Minus);
                if inner
                    .chars()
                    .any(|c| c.is_ascii_digit() || "+-=/^(),".contains(c))
                {
                    self.run(j + 1, close, depth + 1)?;
                } else if joined_to_unit && inner.chars().any(|c| c.is_ascii_alphabetic()) {
                    self.push(Tok::Unit)?;
                } else if inner.len() == 1 && inner.as_bytes()[0].is_ascii_alphabetic() {
                    // `\mathrm{x}` is a symbol, but a unit right after a number or a unit
                    // (`5 \mathrm{m}`); `e` and `i` stay constants.
                    let unit_context = !matches!(inner, "e" | "i")
                        && matches!(self.out.last(), Some(Tok::Num { .. }) | Some(Tok::Unit));
                    self.push(if unit_context {
                        Tok::Unit
                    } else {
                        Tok::Ident(inner.to_string())
                    })?;
                } else if SEPARATOR_WORDS.contains(&lower.as_str()) {
                    self.push(Tok::Comma)?;
                } else if FUNCTIONS.contains(&lower.as_str()) {
                    self.push(Tok::Cmd(normalise_function(&lower).into()))?;
                } else if inner.chars().any(|c| c.is_ascii_alphabetic()) {
                    // Other words are units: dropped before parsing, with the operators that
                    // join them (`\mathrm{km} / \mathrm{hr}`, `\mathrm{yd}^{3}`).
                    self.push(Tok::Unit)?;
                }
                Ok(close + 1)
            }
            "begin" | "end" => {
                let j = self.skip_space(i, end);
                if j < end && s[j] == b'{' {
                    let close = self.group_end(j, end)?;
                    let env = self.text[j + 1..close].trim().trim_end_matches('*');
                    self.push(Tok::Cmd(format!("{name}:{env}")))?;
                    // Array column specs: `\begin{array}{cc}`.
                    let mut k = close + 1;
                    if name == "begin" && env == "array" {
                        let k2 = self.skip_space(k, end);
                        if k2 < end && s[k2] == b'{' {
                            k = self.group_end(k2, end)? + 1;
                        }
                    }
                    Ok(k)
                } else {
                    Ok(j)
                }
            }
            "lfloor" | "rfloor" | "lceil" | "rceil" => {
                self.push(Tok::Cmd(name.into()))?;
                Ok(i)
            }
            "emptyset" | "varnothing" => {
                self.push(Tok::Cmd("emptyset".into()))?;
                Ok(i)
            }
            "circ" | "degree" => {
                self.push(Tok::Degree)?;
                Ok(i)
            }
            "cdot" | "times" | "ast" | "bullet" => {
                self.push(Tok::Star)?;
                Ok(i)
            }
            "div" | "over" => {
                self.push(Tok::Slash)?;
                Ok(i)
            }
            "pm" | "mp" => {
                self.push(Tok::PlusMinus)?;
                Ok(i)
            }
            "le" | "leq" | "leqslant" | "leqq" => {
                self.push(Tok::Rel(RelOp::Le))?;
                Ok(i)
            }
            "ge" | "geq" | "geqslant" | "geqq" => {
                self.push(Tok::Rel(RelOp::Ge))?;
                Ok(i)
            }
            "lt" => {
                self.push(Tok::Rel(RelOp::Lt))?;
                Ok(i)
            }
            "gt" => {
                self.push(Tok::Rel(RelOp::Gt))?;
                Ok(i)
            }
            "ne" | "neq" => {
                self.push(Tok::Rel(RelOp::Ne))?;
                Ok(i)
            }
            "approx" | "equiv" | "in" | "coloneqq" => {
                self.push(Tok::Rel(RelOp::Eq))?;
                Ok(i)
            }
            "cup" | "union" => {
                self.push(Tok::Union)?;
                Ok(i)
            }
            "lbrace" => {
                self.push(Tok::LSet)?;
                Ok(i)
            }
            "rbrace" => {
                self.push(Tok::RSet)?;
                Ok(i)
            }
            "langle" | "lparen" => {
                self.push(Tok::LParen)?;
                Ok(i)
            }
            "rangle" | "rparen" => {
                self.push(Tok::RParen)?;
                Ok(i)
            }
            "lbrack" => {
                self.push(Tok::LBrack)?;
                Ok(i)
            }
            "rbrack" => {
                self.push(Tok::RBrack)?;
                Ok(i)
            }
            "vert" | "lvert" | "rvert" | "mid" => {
                self.push(Tok::Bar)?;
                Ok(i)
            }
            "percent" => {
                self.push(Tok::Percent)?;
                Ok(i)
            }
            "infty" | "infin" => {
                self.push(Tok::Cmd("infty".into()))?;
                Ok(i)
            }
            "left" | "right" | "bigl" | "bigr" | "Bigl" | "Bigr" | "big" | "Big" | "middle" => {
                // The delimiter that follows is lexed normally; `\left.` is dropped.
                let j = self.skip_space(i, end);
                if j < end && s[j] == b'.' {
                    Ok(j + 1)
                } else {
                    Ok(j)
                }
            }
            _ if IGNORED.contains(&name) => Ok(i),
            _ if WRAPPERS.contains(&name) => Ok(i),
            _ if SYMBOLS.contains(&name) => {
                self.push(Tok::Ident(name.to_string()))?;
                Ok(i)
            }
            _ if FUNCTIONS.contains(&name) => {
                self.push(Tok::Cmd(normalise_function(name).into()))?;
                Ok(i)
            }
            "e" => {
                self.push(Tok::Ident("e".into()))?;
                Ok(i)
            }
            "land" | "wedge" | "lor" | "vee" | "text{and}" => {
                self.push(Tok::Comma)?;
                Ok(i)
            }
            _ => Err(MathError::Parse(format!("unknown command \\{name}"))),
        }
    }
}

fn normalise_function(name: &str) -> &str {
    match name {
        "inf" | "infinity" => "infty",
        "dfrac" | "tfrac" | "cfrac" => "frac",
        "dbinom" | "tbinom" => "binom",
        other => other,
    }
}
