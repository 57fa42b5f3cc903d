//! The expression tree and a recursive-descent parser over [`Tok`]ens.
//!
//! Precedence, loosest first: several answers (`,`, "and", "or") → union (`∪`) → relations
//! (`=`, `<`, `≤`, chains like `1 < x < 3`) → `+ - ±` → `* / ÷`, implicit multiplication → unary
//! minus → powers (right-associative) → postfix `!`, `%`, `°` → atoms. Brackets that hold a comma
//! are tuples or intervals (kept with their bracket shapes, so `[1, 2)` stays half-open), `\{…\}`
//! is a set, `pmatrix`/`bmatrix` environments are matrices.

use std::fmt;

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{Signed, Zero};
use rewardkit_core::Meter;

use crate::lex::{RelOp, Tok};
use crate::{Limits, MathError};

/// A function of one argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    /// Square root.
    Sqrt,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// Tangent.
    Tan,
    /// Cotangent.
    Cot,
    /// Secant.
    Sec,
    /// Cosecant.
    Csc,
    /// Inverse sine.
    Asin,
    /// Inverse cosine.
    Acos,
    /// Inverse tangent.
    Atan,
    /// Hyperbolic sine.
    Sinh,
    /// Hyperbolic cosine.
    Cosh,
    /// Hyperbolic tangent.
    Tanh,
    /// Natural logarithm (`\ln`, and `\log` without a base, as SymPy reads it).
    Ln,
    /// Exponential.
    Exp,
    /// Absolute value.
    Abs,
    /// Factorial (the gamma function `Γ(x + 1)` at non-integers).
    Factorial,
    /// Floor `⌊x⌋`.
    Floor,
    /// Ceiling `⌈x⌉`.
    Ceil,
}

impl Func {
    fn name(self) -> &'static str {
        match self {
            Func::Sqrt => "sqrt",
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Tan => "tan",
            Func::Cot => "cot",
            Func::Sec => "sec",
            Func::Csc => "csc",
            Func::Asin => "asin",
            Func::Acos => "acos",
            Func::Atan => "atan",
            Func::Sinh => "sinh",
            Func::Cosh => "cosh",
            Func::Tanh => "tanh",
            Func::Ln => "ln",
            Func::Exp => "exp",
            Func::Abs => "abs",
            Func::Factorial => "factorial",
            Func::Floor => "floor",
            Func::Ceil => "ceil",
        }
    }

    fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "sqrt" => Func::Sqrt,
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "tan" => Func::Tan,
            "cot" => Func::Cot,
            "sec" => Func::Sec,
            "csc" => Func::Csc,
            "arcsin" => Func::Asin,
            "arccos" => Func::Acos,
            "arctan" => Func::Atan,
            "sinh" => Func::Sinh,
            "cosh" => Func::Cosh,
            "tanh" => Func::Tanh,
            "ln" | "log" => Func::Ln,
            "exp" => Func::Exp,
            "abs" => Func::Abs,
            _ => return None,
        })
    }
}

/// A parsed answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A number; `decimal` when written with decimals (possibly a rounded value).
    Num {
        /// The exact value of the literal.
        value: BigRational,
        /// Written with decimals or an exponent.
        decimal: bool,
    },
    /// A free variable (or a multiple-choice letter).
    Var(String),
    /// π.
    Pi,
    /// Euler's number.
    E,
    /// The imaginary unit.
    I,
    /// ∞.
    Inf,
    /// `-a`.
    Neg(Box<Expr>),
    /// `a + b`.
    Add(Box<Expr>, Box<Expr>),
    /// `a - b`.
    Sub(Box<Expr>, Box<Expr>),
    /// `a * b`.
    Mul(Box<Expr>, Box<Expr>),
    /// `a / b`.
    Div(Box<Expr>, Box<Expr>),
    /// `a ^ b`.
    Pow(Box<Expr>, Box<Expr>),
    /// `f(a)`.
    Func(Func, Box<Expr>),
    /// `log_b(a)`: (base, argument).
    Log(Box<Expr>, Box<Expr>),
    /// `\sqrt[n]{a}`: (n, a).
    Root(Box<Expr>, Box<Expr>),
    /// `\binom{n}{k}`.
    Binom(Box<Expr>, Box<Expr>),
    /// `a%`.
    Percent(Box<Expr>),
    /// `a°` (kept as the number of degrees).
    Degree(Box<Expr>),
    /// `a ± b` (or `±b` with `a` absent): the two values `a + b` and `a - b`.
    PlusMinus(Option<Box<Expr>>, Box<Expr>),
    /// Brackets around several items: a tuple, or an interval with these end shapes.
    Bracket {
        /// `(` or `[`.
        open: char,
        /// `)` or `]`.
        close: char,
        /// The items.
        items: Vec<Expr>,
    },
    /// `\{a, b\}`.
    Set(Vec<Expr>),
    /// `A ∪ B`.
    Union(Vec<Expr>),
    /// A matrix, row by row.
    Matrix(Vec<Vec<Expr>>),
    /// `a op b op c …` (a chain of relations).
    Rel(Vec<Expr>, Vec<RelOp>),
    /// Several answers (`a, b`, "a and b").
    List(Vec<Expr>),
}

impl Expr {
    fn boxed(self) -> Box<Expr> {
        Box::new(self)
    }

    /// An integer literal.
    pub fn int(n: i64) -> Expr {
        Expr::Num {
            value: BigRational::from_integer(n.into()),
            decimal: false,
        }
    }

    /// Whether the tree is a scalar (no tuples, sets, relations, lists).
    pub fn is_scalar(&self) -> bool {
        !matches!(
            self,
            Expr::Bracket { .. }
                | Expr::Set(_)
                | Expr::Union(_)
                | Expr::Matrix(_)
                | Expr::Rel(..)
                | Expr::List(_)
                | Expr::PlusMinus(..)
        )
    }

    /// Number of nodes, for budgeting.
    pub fn size(&self) -> usize {
        let mut n = 1;
        self.visit(&mut |_| n += 1);
        n
    }

    /// Calls `f` on every direct child.
    pub fn visit(&self, f: &mut dyn FnMut(&Expr)) {
        match self {
            Expr::Num { .. } | Expr::Var(_) | Expr::Pi | Expr::E | Expr::I | Expr::Inf => {}
            Expr::Neg(a) | Expr::Func(_, a) | Expr::Percent(a) | Expr::Degree(a) => f(a),
            Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Mul(a, b)
            | Expr::Div(a, b)
            | Expr::Pow(a, b)
            | Expr::Log(a, b)
            | Expr::Root(a, b)
            | Expr::Binom(a, b) => {
                f(a);
                f(b)
            }
            Expr::PlusMinus(a, b) => {
                if let Some(a) = a {
                    f(a)
                }
                f(b)
            }
            Expr::Bracket { items, .. }
            | Expr::Set(items)
            | Expr::Union(items)
            | Expr::List(items) => items.iter().for_each(&mut *f),
            Expr::Rel(items, _) => items.iter().for_each(&mut *f),
            Expr::Matrix(rows) => rows.iter().flatten().for_each(&mut *f),
        }
    }

    /// Whether any node satisfies `pred` (depth-first, including this one).
    pub fn any(&self, pred: &dyn Fn(&Expr) -> bool) -> bool {
        if pred(self) {
            return true;
        }
        let mut found = false;
        self.visit(&mut |e| {
            if !found && e.any(pred) {
                found = true
            }
        });
        found
    }

    /// Whether the tree holds a decimal literal (so it may be a rounded value).
    pub fn has_decimal(&self) -> bool {
        self.any(&|e| matches!(e, Expr::Num { decimal: true, .. }))
    }

    /// The free variable names, sorted and deduplicated.
    pub fn variables(&self) -> Vec<String> {
        let mut names = Vec::new();
        collect_vars(self, &mut names);
        names.sort();
        names.dedup();
        names
    }
}

fn collect_vars(e: &Expr, out: &mut Vec<String>) {
    if let Expr::Var(v) = e {
        out.push(v.clone());
    }
    e.visit(&mut |c| collect_vars(c, out));
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[Expr]) -> fmt::Result {
    for (k, item) in items.iter().enumerate() {
        if k > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl fmt::Display for Expr {
    /// A plain-text normal form: fully parenthesised binary operations, rationals as `p/q`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Num { value, decimal } => {
                if *decimal {
                    write!(f, "{}~", value)
                } else {
                    write!(f, "{value}")
                }
            }
            Expr::Var(v) => f.write_str(v),
            Expr::Pi => f.write_str("pi"),
            Expr::E => f.write_str("E"),
            Expr::I => f.write_str("I"),
            Expr::Inf => f.write_str("oo"),
            Expr::Neg(a) => write!(f, "-({a})"),
            Expr::Add(a, b) => write!(f, "({a} + {b})"),
            Expr::Sub(a, b) => write!(f, "({a} - {b})"),
            Expr::Mul(a, b) => write!(f, "({a} * {b})"),
            Expr::Div(a, b) => write!(f, "({a} / {b})"),
            Expr::Pow(a, b) => write!(f, "({a} ^ {b})"),
            Expr::Func(func, a) => write!(f, "{}({a})", func.name()),
            Expr::Log(b, a) => write!(f, "log_{{{b}}}({a})"),
            Expr::Root(n, a) => write!(f, "root[{n}]({a})"),
            Expr::Binom(n, k) => write!(f, "binom({n}, {k})"),
            Expr::Percent(a) => write!(f, "{a}%"),
            Expr::Degree(a) => write!(f, "{a} deg"),
            Expr::PlusMinus(a, b) => match a {
                Some(a) => write!(f, "({a} ± {b})"),
                None => write!(f, "±({b})"),
            },
            Expr::Bracket { open, close, items } => {
                write!(f, "{open}")?;
                write_list(f, items)?;
                write!(f, "{close}")
            }
            Expr::Set(items) => {
                f.write_str("{")?;
                write_list(f, items)?;
                f.write_str("}")
            }
            Expr::Union(items) => {
                for (k, item) in items.iter().enumerate() {
                    if k > 0 {
                        f.write_str(" U ")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
            Expr::Matrix(rows) => {
                f.write_str("Matrix[")?;
                for (k, row) in rows.iter().enumerate() {
                    if k > 0 {
                        f.write_str("; ")?;
                    }
                    write_list(f, row)?;
                }
                f.write_str("]")
            }
            Expr::Rel(items, ops) => {
                for (k, item) in items.iter().enumerate() {
                    if k > 0 {
                        write!(f, " {} ", ops[k - 1].symbol())?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
            Expr::List(items) => {
                f.write_str("[")?;
                write_list(f, items)?;
                f.write_str("]")
            }
        }
    }
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
    depth: usize,
    limits: &'a Limits,
    meter: &'a mut Meter,
}

/// Parses tokens into an answer tree.
pub fn parse(toks: &[Tok], limits: &Limits, meter: &mut Meter) -> Result<Expr, MathError> {
    if toks.is_empty() {
        return Err(MathError::Parse("nothing to parse".into()));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        limits,
        meter,
    };
    // `\approx 17.1`, `= 5`: a leading equals or approximately sign introduces the value.
    if toks.len() > 1 && toks[0] == Tok::Rel(RelOp::Eq) {
        p.pos = 1;
    }
    let e = p.list()?;
    if p.pos < toks.len() {
        return Err(MathError::Parse(format!(
            "unexpected {:?} at token {}",
            toks[p.pos], p.pos
        )));
    }
    Ok(e)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Tok) -> Result<(), MathError> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(MathError::Parse(format!(
                "expected {t:?}, found {:?}",
                self.peek()
            )))
        }
    }

    fn enter(&mut self) -> Result<(), MathError> {
        self.depth += 1;
        self.meter.step(1)?;
        if self.depth > self.limits.max_depth {
            return Err(MathError::TooComplex("nesting too deep"));
        }
        Ok(())
    }

    /// `item (, item)*` at the top level.
    fn list(&mut self) -> Result<Expr, MathError> {
        let mut items = Vec::new();
        loop {
            while self.eat(&Tok::Comma) {}
            if self.peek().is_none() {
                break;
            }
            items.push(self.union()?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        match items.len() {
            0 => Err(MathError::Parse("nothing to parse".into())),
            1 => Ok(items.pop().expect("one item, this is a bug")),
            _ => Ok(Expr::List(items)),
        }
    }

    fn union(&mut self) -> Result<Expr, MathError> {
        let first = self.relation()?;
        if self.peek() != Some(&Tok::Union) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat(&Tok::Union) {
            items.push(self.relation()?);
        }
        Ok(Expr::Union(items))
    }

    fn relation(&mut self) -> Result<Expr, MathError> {
        let first = self.sum()?;
        let mut items = vec![first];
        let mut ops = Vec::new();
        while let Some(Tok::Rel(op)) = self.peek() {
            let op = *op;
            self.pos += 1;
            ops.push(op);
            items.push(self.sum()?);
        }
        if ops.is_empty() {
            Ok(items.pop().expect("one item, this is a bug"))
        } else {
            Ok(Expr::Rel(items, ops))
        }
    }

    fn sum(&mut self) -> Result<Expr, MathError> {
        self.enter()?;
        let base_depth = self.depth;
        let mut left = self.product()?;
        loop {
            // Each operator of a chain deepens the (left-leaning) tree by one.
            self.enter()?;
            match self.peek() {
                Some(Tok::Plus) => {
                    self.pos += 1;
                    let right = self.product()?;
                    left = Expr::Add(left.boxed(), right.boxed());
                }
                Some(Tok::Minus) => {
                    self.pos += 1;
                    let right = self.product()?;
                    left = Expr::Sub(left.boxed(), right.boxed());
                }
                Some(Tok::PlusMinus) => {
                    self.pos += 1;
                    let right = self.product()?;
                    left = Expr::PlusMinus(Some(left.boxed()), right.boxed());
                }
                _ => break,
            }
        }
        self.depth = base_depth - 1;
        Ok(left)
    }

    fn starts_atom(&self) -> bool {
        match self.peek() {
            Some(Tok::Num { .. })
            | Some(Tok::Ident(_))
            | Some(Tok::LParen)
            | Some(Tok::LBrace)
            | Some(Tok::LSet) => true,
            Some(Tok::Cmd(c)) => !c.starts_with("end:") && c != "rfloor" && c != "rceil",
            _ => false,
        }
    }

    /// After an integer literal: a `\frac` of two integer literals makes a mixed number
    /// (`2\frac{1}{2}` is 5/2, as Math-Verify and every textbook read it). Returns the fraction.
    fn mixed_fraction(&mut self) -> Option<BigRational> {
        if self.peek() != Some(&Tok::Cmd("frac".into())) {
            return None;
        }
        let start = self.pos;
        self.pos += 1;
        let literal = |p: &mut Self| -> Option<BigInt> {
            let braced = p.eat(&Tok::LBrace);
            let value = match p.peek() {
                Some(Tok::Num {
                    value,
                    decimal: false,
                }) if value.is_integer() => value.to_integer(),
                _ => return None,
            };
            p.pos += 1;
            if braced && !p.eat(&Tok::RBrace) {
                return None;
            }
            Some(value)
        };
        let parts = literal(self).zip(literal(self));
        match parts {
            Some((n, d)) if !d.is_zero() && n < d => Some(BigRational::new(n, d)),
            _ => {
                self.pos = start;
                None
            }
        }
    }

    /// Set-builder notation after `\{`: `x \mid x \geq 0` (or `|`) is the condition, which
    /// compares as the set it describes (an inequality in one variable is an interval).
    fn set_builder(&mut self) -> Result<Option<Expr>, MathError> {
        let is_builder = matches!(self.toks.get(self.pos), Some(Tok::Ident(_)))
            && self.toks.get(self.pos + 1) == Some(&Tok::Bar);
        if !is_builder {
            return Ok(None);
        }
        let start = self.pos;
        self.pos += 2;
        match self.union() {
            Ok(condition @ Expr::Rel(..)) if self.eat(&Tok::RSet) => Ok(Some(condition)),
            Err(MathError::Budget(e)) => Err(e.into()),
            Err(e @ MathError::TooComplex(_)) => Err(e),
            _ => {
                self.pos = start;
                Ok(None)
            }
        }
    }

    fn product(&mut self) -> Result<Expr, MathError> {
        self.enter()?;
        let base_depth = self.depth;
        let mut left = self.unary()?;
        loop {
            self.enter()?;
            match self.peek() {
                Some(Tok::Star) => {
                    self.pos += 1;
                    let right = self.unary()?;
                    left = Expr::Mul(left.boxed(), right.boxed());
                }
                Some(Tok::Slash) => {
                    self.pos += 1;
                    let right = self.unary()?;
                    left = Expr::Div(left.boxed(), right.boxed());
                }
                _ if self.starts_atom() => {
                    // Implicit multiplication: `2x`, `2\pi`, `(a)(b)`, `3\sqrt2`.
                    // A number right after a number is not a product (`2 3` is malformed).
                    if matches!(self.peek(), Some(Tok::Num { .. }))
                        && matches!(left, Expr::Num { .. })
                    {
                        return Err(MathError::Parse("two numbers in a row".into()));
                    }
                    let right = self.power()?;
                    left = Expr::Mul(left.boxed(), right.boxed());
                }
                _ => break,
            }
        }
        self.depth = base_depth - 1;
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, MathError> {
        self.enter()?;
        let e = match self.peek() {
            Some(Tok::Minus) => {
                self.pos += 1;
                Expr::Neg(self.unary()?.boxed())
            }
            Some(Tok::Plus) => {
                self.pos += 1;
                self.unary()?
            }
            Some(Tok::PlusMinus) => {
                self.pos += 1;
                Expr::PlusMinus(None, self.unary()?.boxed())
            }
            _ => self.power()?,
        };
        self.depth -= 1;
        Ok(e)
    }

    fn power(&mut self) -> Result<Expr, MathError> {
        self.enter()?;
        let base = self.postfix()?;
        let e = if self.eat(&Tok::Caret) {
            // Right-associative; the exponent may carry a sign.
            let exponent = self.unary()?;
            let e = Expr::Pow(base.boxed(), exponent.boxed());
            self.postfix_ops(e)?
        } else {
            base
        };
        self.depth -= 1;
        Ok(e)
    }

    fn postfix(&mut self) -> Result<Expr, MathError> {
        let atom = self.atom()?;
        self.postfix_ops(atom)
    }

    fn postfix_ops(&mut self, mut e: Expr) -> Result<Expr, MathError> {
        loop {
            match self.peek() {
                Some(Tok::Bang) => {
                    self.pos += 1;
                    e = Expr::Func(Func::Factorial, e.boxed());
                }
                Some(Tok::Percent) => {
                    self.pos += 1;
                    e = Expr::Percent(e.boxed());
                }
                Some(Tok::Degree) => {
                    self.pos += 1;
                    e = Expr::Degree(e.boxed());
                }
                _ => return Ok(e),
            }
        }
    }

    /// A `{…}` group or, failing that, one atom with its power (LaTeX arguments).
    fn argument(&mut self) -> Result<Expr, MathError> {
        if self.eat(&Tok::LBrace) {
            let e = self.list()?;
            self.expect(&Tok::RBrace)?;
            Ok(e)
        } else {
            self.power()
        }
    }

    /// The items of a bracket up to `close`, separated by commas.
    fn items_until(&mut self, close: &[Tok]) -> Result<(Vec<Expr>, Tok), MathError> {
        let mut items = Vec::new();
        loop {
            if let Some(t) = self.peek() {
                if close.contains(t) {
                    let t = t.clone();
                    self.pos += 1;
                    return Ok((items, t));
                }
            }
            if self.peek().is_none() {
                return Err(MathError::Parse("unclosed bracket".into()));
            }
            items.push(self.union()?);
            if !self.eat(&Tok::Comma) {
                match self.peek() {
                    Some(t) if close.contains(t) => {}
                    other => {
                        return Err(MathError::Parse(format!(
                            "expected , or a closing bracket, found {other:?}"
                        )))
                    }
                }
            }
        }
    }

    fn atom(&mut self) -> Result<Expr, MathError> {
        self.enter()?;
        let tok = self
            .peek()
            .cloned()
            .ok_or_else(|| MathError::Parse("unexpected end".into()))?;
        self.pos += 1;
        let e = match tok {
            Tok::Num { value, decimal } => {
                let mixed = if !decimal && value.is_integer() && !value.is_negative() {
                    self.mixed_fraction()
                } else {
                    None
                };
                match mixed {
                    Some(fraction) => Expr::Num {
                        value: value + fraction,
                        decimal: false,
                    },
                    None => Expr::Num { value, decimal },
                }
            }
            // A subscripted symbol (`P_1`, `C_{2}`, `\theta_w`) is one variable.
            Tok::Ident(name) if self.peek() == Some(&Tok::Underscore) => {
                self.pos += 1;
                let sub = self.argument_atom()?;
                Expr::Var(format!("{name}_{sub}"))
            }
            Tok::Ident(name) => match name.as_str() {
                "e" => Expr::E,
                "i" => Expr::I,
                _ => Expr::Var(name),
            },
            Tok::LBrace => {
                let e = self.list()?;
                self.expect(&Tok::RBrace)?;
                e
            }
            Tok::LParen | Tok::LBrack => {
                let open = if tok == Tok::LParen { '(' } else { '[' };
                let (items, close) = self.items_until(&[Tok::RParen, Tok::RBrack])?;
                let close = if close == Tok::RParen { ')' } else { ']' };
                match items.len() {
                    0 => return Err(MathError::Parse("empty brackets".into())),
                    1 if open == '(' && close == ')' => {
                        items.into_iter().next().expect("one item, this is a bug")
                    }
                    1 if open == '[' && close == ']' => {
                        items.into_iter().next().expect("one item, this is a bug")
                    }
                    _ => Expr::Bracket { open, close, items },
                }
            }
            Tok::LSet => match self.set_builder()? {
                Some(condition) => condition,
                None => {
                    let (items, _) = self.items_until(&[Tok::RSet])?;
                    Expr::Set(items)
                }
            },
            Tok::Bar => {
                let inner = self.sum()?;
                self.expect(&Tok::Bar)?;
                Expr::Func(Func::Abs, inner.boxed())
            }
            Tok::Cmd(name) => self.command(&name)?,
            other => return Err(MathError::Parse(format!("unexpected {other:?}"))),
        };
        self.depth -= 1;
        Ok(e)
    }

    fn command(&mut self, name: &str) -> Result<Expr, MathError> {
        Ok(match name {
            "pi" => Expr::Pi,
            "infty" => Expr::Inf,
            "emptyset" => Expr::Set(Vec::new()),
            "lfloor" | "lceil" => {
                let inner = self.sum()?;
                let (close, func) = if name == "lfloor" {
                    ("rfloor", Func::Floor)
                } else {
                    ("rceil", Func::Ceil)
                };
                self.expect(&Tok::Cmd(close.into()))?;
                Expr::Func(func, inner.boxed())
            }
            "frac" => {
                let a = self.argument()?;
                let b = self.argument()?;
                Expr::Div(a.boxed(), b.boxed())
            }
            "binom" => {
                let a = self.argument()?;
                let b = self.argument()?;
                Expr::Binom(a.boxed(), b.boxed())
            }
            "sqrt" => {
                if self.eat(&Tok::LBrack) {
                    let n = self.sum()?;
                    self.expect(&Tok::RBrack)?;
                    let a = self.argument()?;
                    Expr::Root(n.boxed(), a.boxed())
                } else {
                    let a = self.func_argument()?;
                    Expr::Func(Func::Sqrt, a.boxed())
                }
            }
            "log" if self.peek() == Some(&Tok::Underscore) => {
                self.pos += 1;
                let base = self.argument_atom()?;
                let a = self.func_argument()?;
                Expr::Log(base.boxed(), a.boxed())
            }
            "exp" => {
                let a = self.func_argument()?;
                Expr::Pow(Expr::E.boxed(), a.boxed())
            }
            _ if name.starts_with("begin:") => self.environment(&name["begin:".len()..])?,
            _ => {
                let func = Func::from_name(name)
                    .ok_or_else(|| MathError::Parse(format!("unexpected command {name}")))?;
                // `\sin^2 x` is `(\sin x)^2`.
                let power = if self.eat(&Tok::Caret) {
                    Some(self.argument_atom()?)
                } else {
                    None
                };
                let a = self.func_argument()?;
                let e = Expr::Func(func, a.boxed());
                match power {
                    Some(p) => Expr::Pow(e.boxed(), p.boxed()),
                    None => e,
                }
            }
        })
    }

    /// A single atom (a subscript or superscript argument without braces: `\log_2 8`).
    fn argument_atom(&mut self) -> Result<Expr, MathError> {
        if self.eat(&Tok::LBrace) {
            let e = self.list()?;
            self.expect(&Tok::RBrace)?;
            Ok(e)
        } else {
            self.atom()
        }
    }

    /// The argument of a function: a group, a bracket, or a product of atoms without operators
    /// (`\sin 2x` is `\sin(2x)`).
    fn func_argument(&mut self) -> Result<Expr, MathError> {
        match self.peek() {
            Some(Tok::LBrace) | Some(Tok::LParen) => self.power(),
            _ => {
                let mut e = self.power()?;
                while self.starts_atom()
                    && !matches!(self.peek(), Some(Tok::Cmd(_)) | Some(Tok::LParen))
                {
                    let right = self.power()?;
                    e = Expr::Mul(e.boxed(), right.boxed());
                }
                Ok(e)
            }
        }
    }

    fn environment(&mut self, env: &str) -> Result<Expr, MathError> {
        let mut rows: Vec<Vec<Expr>> = vec![Vec::new()];
        loop {
            match self.peek() {
                None => return Err(MathError::Parse(format!("unclosed {env} environment"))),
                Some(Tok::Cmd(c)) if c.starts_with("end:") => {
                    self.pos += 1;
                    break;
                }
                Some(Tok::Amp) => {
                    self.pos += 1;
                }
                Some(Tok::RowSep) => {
                    self.pos += 1;
                    rows.push(Vec::new());
                }
                _ => {
                    let e = self.relation()?;
                    rows.last_mut()
                        .expect("rows is never empty, this is a bug")
                        .push(e);
                }
            }
        }
        while rows.last().is_some_and(|r| r.is_empty()) {
            rows.pop();
        }
        if rows.is_empty() {
            return Err(MathError::Parse("empty matrix".into()));
        }
        let width = rows[0].len();
        if rows.iter().any(|r| r.len() != width) {
            return Err(MathError::Parse("ragged matrix".into()));
        }
        Ok(Expr::Matrix(rows))
    }
}
