//! Equivalence of two parsed answers, asymmetric in the way Math-Verify's `verify(gold, pred)` is.
//!
//! # Scalars
//!
//! 1. Identical trees are equal (this also settles `10^{10^{10^{10}}}` against itself without
//!    evaluating it).
//! 2. **Modular** (answers with free variables, π or e): when both sides are rational functions
//!    (`+ − × ÷`, constant integer powers, exactly-evaluable constant parts), they are evaluated
//!    at seeded random points in `F_{p²}` for two primes near 2⁶¹ and 2⁶² ([`crate::modular`]):
//!    a different value at a point proves them different, equal values at every point make
//!    them equal up to a probability below 2⁻²¹ per point (Schwartz–Zippel), with a loose
//!    floating-point cross-check at one real point against coefficients divisible by both
//!    primes. Each value is two machine words whatever the degree, so `(x^2+1)^{101}` costs
//!    microseconds instead of the milliseconds of 2,000-bit rationals. Anything else falls
//!    through to the next step.
//! 3. **Exact**: both sides are evaluated over the Gaussian rationals at a few seeded rational
//!    points, with π, e and every free variable replaced by the point's values. Equal at every
//!    point means equal (polynomial and rational-function identity by random evaluation, the
//!    Schwartz–Zippel lemma: a non-zero rational function of degree `d` vanishes at a random
//!    point of a set of size `N` with probability at most `d/N`). Not equal, with no decimal
//!    literal on either side, means **not equal** — no tolerance at all, which is what keeps
//!    `1/2004!` and `1/2006!` apart (Math-Verify's rounding says they are equal).
//! 4. **Numeric**: when a side cannot be evaluated exactly (irrational roots, trigonometry,
//!    logarithms) or a side holds a decimal literal (`0.333333`, `3.14159`), both are evaluated in
//!    `f64` at seeded points with the real π and e, and must agree within
//!    `|g − p| ≤ abs_tol + rel_tol·max(|g|, |p|)`. The tolerance is `rel_tol` (default 1e-6, the
//!    order of Math-Verify's 6-digit rounding) when a decimal literal is involved, and
//!    `exact_rel_tol` (1e-12: floating-point noise only) otherwise. Values that overflow or
//!    underflow `f64` are not compared numerically ("cannot compare"). Factorials and
//!    binomials of variables are evaluated through the gamma function; expressions with floor or
//!    ceiling (step functions) get four times the points.
//!
//! # Structures and the anti-hacking asymmetry
//!
//! - A single gold value is never matched by several candidates: a prediction that is a list,
//!   a set of more than one element, `±a`, an interval or a union is wrong against a scalar gold,
//!   even when it contains the gold value (`2021` vs `\pm 2021`, `3` vs `[2, 4]`).
//! - A one-element set or list is its element (`\{3\}` vs `3`).
//! - Lists and sets (`1, 2` and `\{2, 1\}`) compare as multisets, order-insensitively.
//! - Brackets compare in order with their end shapes: `(1, 2)` and `[1, 2)` differ (an open and a
//!   half-open interval); the same shape is a tuple or an interval alike.
//! - Unions compare as sets of their parts; matrices entry-wise with equal shapes.
//! - `a ± b` is the set `{a + b, a − b}`.
//! - A predicted equation (chain) `… = v` is compared by its last side `v` against a gold value
//!   (`x = 3` and `2 + 3 = 5` vs `3`, `5`); a gold `x = v` with a bare variable on the left is
//!   compared by `v` against a predicted value. Two equations compare side by side, or
//!   as `l₁ − r₁ = ±(l₂ − r₂)`.
//! - Inequalities in one variable become intervals (`x > 3` is `(3, ∞)`, `1 ≤ x < 2` is
//!   `[1, 2)`), so they match the interval they denote.
//! - `25\%` matches `25` and `0.25` (GSM8K stores percentages as the number, other sets as the
//!   fraction). Degrees are compared as their number (`90^\circ` vs `90`).

use num_rational::BigRational;
use num_traits::Signed;
use rewardkit_core::Meter;

use crate::eval::{self, EvalError, Point};
use crate::lex::RelOp;
use crate::modular::{self, ModError};
use crate::parse::{Expr, Func};
use crate::{Limits, MathOptions};

/// How a comparison ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Equivalent; the string says by which rule.
    Equal(String),
    /// Not equivalent; the string says why.
    NotEqual(String),
}

impl Decision {
    /// Whether the answers were judged equivalent.
    pub fn is_equal(&self) -> bool {
        matches!(self, Decision::Equal(_))
    }
}

/// A comparison that could not finish: a size limit, the budget, or values that cannot be
/// compared.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// Numbers over the size limits.
    TooLarge(&'static str),
    /// Step budget or deadline.
    Budget(rewardkit_core::Exhausted),
}

pub(crate) struct Comparer<'a> {
    pub options: &'a MathOptions,
    pub limits: &'a Limits,
    pub meter: &'a mut Meter,
}

type R = Result<Decision, Stop>;

fn eq(why: impl Into<String>) -> R {
    Ok(Decision::Equal(why.into()))
}

fn ne(why: impl Into<String>) -> R {
    Ok(Decision::NotEqual(why.into()))
}

/// A deterministic generator (SplitMix64) for the evaluation points.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Whether an expression is `±∞` (`Some(true)` for +∞).
fn infinity_sign(e: &Expr) -> Option<bool> {
    match e {
        Expr::Inf => Some(true),
        Expr::Neg(a) => infinity_sign(a).map(|s| !s),
        Expr::Mul(a, b) => match (a.as_ref(), infinity_sign(b)) {
            (Expr::Num { value, .. }, Some(s)) if value.is_positive() => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// The items of a set-like answer (list, set, `±`), or `None` for anything else.
fn as_collection(e: &Expr) -> Option<Vec<Expr>> {
    match e {
        Expr::List(items) | Expr::Set(items) => Some(items.clone()),
        Expr::PlusMinus(a, b) => {
            let a = a.as_deref().cloned().unwrap_or_else(|| Expr::int(0));
            Some(vec![
                Expr::Add(Box::new(a.clone()), b.clone()),
                Expr::Sub(Box::new(a), b.clone()),
            ])
        }
        // `\frac{2(\pm 2\sqrt6)}{2}`: one `±` inside arithmetic is the two values as well.
        _ if e.any(&|n| matches!(n, Expr::PlusMinus(..))) => {
            split_plus_minus(e).map(|(p, m)| vec![p, m])
        }
        _ => None,
    }
}

/// The two values of an arithmetic tree holding a `±` (the first one found), or `None` when the
/// `±` is not inside arithmetic.
fn split_plus_minus(e: &Expr) -> Option<(Expr, Expr)> {
    let b = |e: Expr| Box::new(e);
    Some(match e {
        Expr::PlusMinus(a, x) => {
            let a = a.as_deref().cloned().unwrap_or_else(|| Expr::int(0));
            (
                Expr::Add(b(a.clone()), x.clone()),
                Expr::Sub(b(a), x.clone()),
            )
        }
        Expr::Neg(a) => {
            let (p, m) = split_plus_minus(a)?;
            (Expr::Neg(b(p)), Expr::Neg(b(m)))
        }
        Expr::Func(f, a) => {
            let (p, m) = split_plus_minus(a)?;
            (Expr::Func(*f, b(p)), Expr::Func(*f, b(m)))
        }
        Expr::Add(x, y) | Expr::Sub(x, y) | Expr::Mul(x, y) | Expr::Div(x, y) | Expr::Pow(x, y) => {
            let rebuild = |x: Expr, y: Expr| match e {
                Expr::Add(..) => Expr::Add(b(x), b(y)),
                Expr::Sub(..) => Expr::Sub(b(x), b(y)),
                Expr::Mul(..) => Expr::Mul(b(x), b(y)),
                Expr::Div(..) => Expr::Div(b(x), b(y)),
                _ => Expr::Pow(b(x), b(y)),
            };
            let has = |e: &Expr| e.any(&|n| matches!(n, Expr::PlusMinus(..)));
            if has(x) {
                let (p, m) = split_plus_minus(x)?;
                (rebuild(p, (**y).clone()), rebuild(m, (**y).clone()))
            } else {
                let (p, m) = split_plus_minus(y)?;
                (rebuild((**x).clone(), p), rebuild((**x).clone(), m))
            }
        }
        _ => return None,
    })
}

/// A single-variable inequality as an interval `(lo, hi, lo_closed, hi_closed)`.
fn inequality_interval(items: &[Expr], ops: &[RelOp]) -> Option<Expr> {
    let is_var = |e: &Expr| matches!(e, Expr::Var(_));
    let bracket = |lo: Expr, lo_closed: bool, hi: Expr, hi_closed: bool| Expr::Bracket {
        open: if lo_closed { '[' } else { '(' },
        close: if hi_closed { ']' } else { ')' },
        items: vec![lo, hi],
    };
    let neg_inf = || Expr::Neg(Box::new(Expr::Inf));
    match (items, ops) {
        ([a, b], [op]) if *op != RelOp::Eq && *op != RelOp::Ne => {
            // Normalise to `var op value`.
            let (value, op) = if is_var(a) && !is_var(b) {
                (b.clone(), *op)
            } else if is_var(b) && !is_var(a) {
                (a.clone(), op.flipped())
            } else {
                return None;
            };
            Some(match op {
                RelOp::Gt => bracket(value, false, Expr::Inf, false),
                RelOp::Ge => bracket(value, true, Expr::Inf, false),
                RelOp::Lt => bracket(neg_inf(), false, value, false),
                RelOp::Le => bracket(neg_inf(), false, value, true),
                _ => return None,
            })
        }
        ([lo, v, hi], [o1, o2]) if is_var(v) => {
            let (o1, o2, lo, hi) = match (o1, o2) {
                (RelOp::Lt | RelOp::Le, RelOp::Lt | RelOp::Le) => (*o1, *o2, lo, hi),
                (RelOp::Gt | RelOp::Ge, RelOp::Gt | RelOp::Ge) => {
                    (o2.flipped(), o1.flipped(), hi, lo)
                }
                _ => return None,
            };
            Some(bracket(
                lo.clone(),
                o1 == RelOp::Le,
                hi.clone(),
                o2 == RelOp::Le,
            ))
        }
        _ => None,
    }
}

impl Comparer<'_> {
    fn step(&mut self, n: u64) -> Result<(), Stop> {
        self.meter.step(n).map_err(Stop::Budget)
    }

    /// Compares a gold answer with a prediction.
    pub fn compare(&mut self, gold: &Expr, pred: &Expr) -> R {
        self.step(1)?;
        if gold == pred {
            return eq("identical");
        }
        // Relations first: they may reduce to values or intervals.
        if let Expr::Rel(items, ops) = gold {
            if let Some(interval) = inequality_interval(items, ops) {
                return self.compare(&interval, pred);
            }
        }
        if let Expr::Rel(items, ops) = pred {
            if let Some(interval) = inequality_interval(items, ops) {
                return self.compare(gold, &interval);
            }
        }
        match (gold, pred) {
            (Expr::Rel(gi, go), Expr::Rel(pi, po)) => return self.relations(gi, go, pi, po),
            (Expr::Rel(items, ops), _) => {
                if let ([lhs, rhs], [RelOp::Eq]) = (items.as_slice(), ops.as_slice()) {
                    if matches!(lhs, Expr::Var(_)) {
                        return self.compare(rhs, pred);
                    }
                }
                return ne("gold is a relation, the prediction is not");
            }
            (_, Expr::Rel(items, ops)) => {
                // `x = 3`, `2 + 3 = 5`, `x = y = 3` against a value: the last side.
                if ops.iter().all(|op| *op == RelOp::Eq) {
                    return self.compare(gold, items.last().expect("a relation has two sides"));
                }
                return ne("the prediction is a relation, the gold is not");
            }
            _ => {}
        }
        // Collections: lists, sets, ±.
        match (as_collection(gold), as_collection(pred)) {
            (Some(g), Some(p)) => return self.multiset(&g, &p),
            (Some(g), None) => {
                if g.len() == 1 {
                    return self.compare(&g[0], pred);
                }
                return ne(format!("gold has {} values, the prediction one", g.len()));
            }
            (None, Some(p)) => {
                if p.len() == 1 {
                    return self.compare(gold, &p[0]);
                }
                return ne(format!(
                    "the prediction lists {} values against one gold value (anti-hacking rule)",
                    p.len()
                ));
            }
            (None, None) => {}
        }
        match (gold, pred) {
            (
                Expr::Bracket {
                    open: go,
                    close: gc,
                    items: gi,
                },
                Expr::Bracket {
                    open: po,
                    close: pc,
                    items: pi,
                },
            ) => {
                if go != po || gc != pc {
                    return ne(format!("brackets {go}…{gc} vs {po}…{pc}"));
                }
                self.in_order(gi, pi)
            }
            (Expr::Union(g), Expr::Union(p)) => self.multiset(g, p),
            (Expr::Matrix(g), Expr::Matrix(p)) => {
                if g.len() != p.len() || g[0].len() != p[0].len() {
                    return ne("matrix shapes differ");
                }
                let g: Vec<Expr> = g.iter().flatten().cloned().collect();
                let p: Vec<Expr> = p.iter().flatten().cloned().collect();
                self.in_order(&g, &p)
            }
            // A column or row matrix against a tuple.
            (
                Expr::Matrix(m),
                Expr::Bracket {
                    open: '(',
                    close: ')',
                    items,
                },
            )
            | (
                Expr::Bracket {
                    open: '(',
                    close: ')',
                    items,
                },
                Expr::Matrix(m),
            ) if m.len() == 1 || m.iter().all(|r| r.len() == 1) => {
                let flat: Vec<Expr> = m.iter().flatten().cloned().collect();
                self.in_order(&flat, items)
            }
            _ if gold.is_scalar() && pred.is_scalar() => self.scalar(gold, pred),
            _ => ne("different kinds of answer"),
        }
    }

    fn relations(&mut self, gi: &[Expr], go: &[RelOp], pi: &[Expr], po: &[RelOp]) -> R {
        if let ([gl, gr], [RelOp::Eq], [pl, pr], [RelOp::Eq]) = (gi, go, pi, po) {
            if let (Expr::Var(a), Expr::Var(b)) = (gl, pl) {
                if a == b {
                    return self.compare(gr, pr);
                }
            }
            let gd = Expr::Sub(Box::new(gl.clone()), Box::new(gr.clone()));
            let pd = Expr::Sub(Box::new(pl.clone()), Box::new(pr.clone()));
            if self.scalar(&gd, &pd)?.is_equal() {
                return eq("equations with equal sides");
            }
            let pn = Expr::Neg(Box::new(pd));
            return match self.scalar(&gd, &pn)? {
                Decision::Equal(_) => eq("equations with equal sides (swapped)"),
                Decision::NotEqual(_) => ne("the equations differ"),
            };
        }
        if go.len() != po.len() || gi.len() != pi.len() {
            return ne("relations of different shapes");
        }
        // Same relations side by side, or mirrored (`a < b` vs `b > a`).
        let same = go == po;
        let mirrored = go
            .iter()
            .zip(po.iter().rev())
            .all(|(g, p)| *g == p.flipped());
        if same && self.in_order(gi, pi)?.is_equal() {
            return eq("relations with equal sides");
        }
        if mirrored {
            let reversed: Vec<Expr> = pi.iter().rev().cloned().collect();
            if self.in_order(gi, &reversed)?.is_equal() {
                return eq("mirrored relations with equal sides");
            }
        }
        ne("the relations differ")
    }

    fn in_order(&mut self, g: &[Expr], p: &[Expr]) -> R {
        if g.len() != p.len() {
            return ne(format!("{} items vs {}", g.len(), p.len()));
        }
        for (k, (a, b)) in g.iter().zip(p).enumerate() {
            if let Decision::NotEqual(why) = self.compare(a, b)? {
                return ne(format!("item {} differs: {why}", k + 1));
            }
        }
        eq("equal item by item")
    }

    fn multiset(&mut self, g: &[Expr], p: &[Expr]) -> R {
        if g.len() != p.len() {
            return ne(format!("{} values vs {}", g.len(), p.len()));
        }
        let mut used = vec![false; p.len()];
        'gold: for a in g {
            for (k, b) in p.iter().enumerate() {
                if !used[k] && self.compare(a, b)?.is_equal() {
                    used[k] = true;
                    continue 'gold;
                }
            }
            return ne(format!("no match for {a}"));
        }
        eq("equal as sets")
    }

    /// Compares two scalars with free variables by [`modular`] evaluation at `points` random
    /// points per prime: `Some(true)` equal at all, `Some(false)` different at one (certainly
    /// different functions), `None` when a side is not a rational function or no point was
    /// defined.
    fn modular(
        &mut self,
        gold: &Expr,
        pred: &Expr,
        names: &[String],
        has_pi: bool,
        has_e: bool,
        points: usize,
    ) -> Result<Option<bool>, Stop> {
        let mut rng = SplitMix(self.options.seed ^ 0x3C3C_3C3C);
        for p in modular::PRIMES {
            let field = modular::Field::new(p);
            let mut defined = 0;
            let mut tries = 0;
            while defined < points && tries < points * 3 {
                tries += 1;
                let point = modular::ModPoint {
                    vars: names
                        .iter()
                        .map(|n| (n.clone(), field.sample(rng.next())))
                        .collect(),
                    pi: has_pi.then(|| field.sample(rng.next())),
                    e: has_e.then(|| field.sample(rng.next())),
                };
                let mut value = |e: &Expr| modular::eval(e, &point, field, self.limits, self.meter);
                let a = match value(gold) {
                    Ok((a, _)) => a,
                    Err(ModError::Budget(e)) => return Err(Stop::Budget(e)),
                    Err(ModError::NotApplicable) => return Ok(None),
                    Err(ModError::Undefined) => continue,
                };
                let b = match value(pred) {
                    Ok((b, _)) => b,
                    Err(ModError::Budget(e)) => return Err(Stop::Budget(e)),
                    Err(ModError::NotApplicable) => return Ok(None),
                    Err(ModError::Undefined) => continue,
                };
                if a != b {
                    return Ok(Some(false));
                }
                defined += 1;
            }
            if defined == 0 {
                return Ok(None);
            }
        }
        // Insurance against coefficients divisible by both primes (`x·p₁·p₂` against 0): the
        // two sides must also agree in floating point at one real point, loosely. A side that
        // does not evaluate to a finite double (`x^{5000}`) is left to the modular verdict;
        // a disagreement (or cancellation noise) sends the pair to exact rational points.
        let mut rng = SplitMix(self.options.seed ^ 0x5A5A);
        let mut point = Point::default();
        for name in names {
            let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
            point.numeric.insert(name.clone(), 0.5 + 2.0 * u);
        }
        let a = eval::numeric(gold, &point, self.meter);
        let b = eval::numeric(pred, &point, self.meter);
        match (a, b) {
            (Err(EvalError::Budget(e)), _) | (_, Err(EvalError::Budget(e))) => Err(Stop::Budget(e)),
            (Ok(a), Ok(b)) if a.is_finite() && b.is_finite() => {
                let scale = a.abs().max(b.abs());
                let diff = (a.re - b.re).hypot(a.im - b.im);
                if scale < 1e290 && diff > 1e-6 * scale + 1e-9 {
                    Ok(None)
                } else {
                    Ok(Some(true))
                }
            }
            _ => Ok(Some(true)),
        }
    }

    fn scalar(&mut self, gold: &Expr, pred: &Expr) -> R {
        if gold == pred {
            return eq("identical");
        }
        match (infinity_sign(gold), infinity_sign(pred)) {
            (Some(a), Some(b)) => {
                return if a == b {
                    eq("same infinity")
                } else {
                    ne("opposite infinities")
                }
            }
            (Some(_), None) | (None, Some(_)) => return ne("infinity vs a finite value"),
            _ => {}
        }
        // Percentages: `25%` against `25` or `0.25`.
        if let Expr::Percent(inner) = pred {
            if !matches!(gold, Expr::Percent(_)) && self.scalar(gold, inner)?.is_equal() {
                return eq("equal when the percent sign is dropped");
            }
        }
        if let Expr::Percent(inner) = gold {
            if !matches!(pred, Expr::Percent(_)) && self.scalar(inner, pred)?.is_equal() {
                return eq("equal when the percent sign is dropped");
            }
        }
        let approximate = gold.has_decimal() || pred.has_decimal();
        let mut names = gold.variables();
        names.extend(pred.variables());
        names.sort();
        names.dedup();
        let has_pi = gold.any(&|e| matches!(e, Expr::Pi)) || pred.any(&|e| matches!(e, Expr::Pi));
        let has_e = gold.any(&|e| matches!(e, Expr::E)) || pred.any(&|e| matches!(e, Expr::E));
        let constant = names.is_empty() && !has_pi && !has_e;
        // Floor and ceiling are step functions: different ones agree on whole intervals, so
        // they get four times the points.
        let steps = |e: &Expr| e.any(&|n| matches!(n, Expr::Func(Func::Floor | Func::Ceil, _)));
        let points = if constant {
            1
        } else if steps(gold) || steps(pred) {
            self.options.points.max(1) * 4
        } else {
            self.options.points.max(1)
        };
        // Identity of rational functions modulo two primes: cheap at any degree.
        let mut skip_exact = false;
        if !constant {
            match self.modular(gold, pred, &names, has_pi, has_e, points)? {
                Some(true) => {
                    return eq(format!(
                        "equal as rational functions (at {points} random points modulo two primes)"
                    ))
                }
                Some(false) if !approximate => {
                    return ne("different as rational functions (values differ modulo a prime)")
                }
                // Different exactly, but a decimal may be a rounded value: numeric comparison.
                Some(false) => skip_exact = true,
                None => {}
            }
        }
        let mut rng = SplitMix(self.options.seed);

        // Exact evaluation.
        let mut exact_ok = true;
        let mut defined_points = 0;
        let mut exact_equal = true;
        let mut shown = String::new();
        let mut tries = 0;
        // A side without variables has one value: evaluated once, not at every point.
        let free = |e: &Expr| e.any(&|n| matches!(n, Expr::Var(_) | Expr::Pi | Expr::E));
        let mut gold_cache = (!free(gold)).then_some(None);
        let mut pred_cache = (!free(pred)).then_some(None);
        while !skip_exact && defined_points < points && tries < points * 3 {
            tries += 1;
            let mut point = Point::default();
            for name in names.iter().map(String::as_str).chain(
                [(eval::PI_KEY, has_pi), (eval::E_KEY, has_e)]
                    .into_iter()
                    .filter(|(_, on)| *on)
                    .map(|(n, _)| n),
            ) {
                // A random rational in (1/2, 9/2) with a denominator up to 64: away from 0 and
                // small integers where special cases hide, and small in bits so that high
                // powers stay cheap. About 8,000 distinct values: a non-zero rational function
                // of degree d vanishes at one with probability at most d/8000, at all `points`
                // independent ones with that to the power `points` (Schwartz–Zippel).
                let den = 1 + (rng.next() % 64) as i64;
                let num = den / 2 + 1 + (rng.next() % (4 * den as u64)) as i64;
                point
                    .exact
                    .insert(name.to_string(), BigRational::new(num.into(), den.into()));
            }
            let a = exact_cached(gold, &mut gold_cache, &point, self.limits, self.meter);
            // The prediction only when the gold has a value or is undefined at this point.
            let b = match &a {
                Ok(_) | Err(EvalError::Undefined) => {
                    exact_cached(pred, &mut pred_cache, &point, self.limits, self.meter)
                }
                Err(e) => Err(e.clone()),
            };
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    defined_points += 1;
                    if a != b {
                        exact_equal = false;
                        if constant {
                            shown = format!(" ({} vs {})", show_exact(&a), show_exact(&b));
                        }
                        break;
                    } else if constant {
                        shown = format!(" ({})", show_exact(&a));
                    }
                }
                (Err(EvalError::Undefined), Err(EvalError::Undefined)) => continue,
                (Err(EvalError::Undefined), Ok(_)) | (Ok(_), Err(EvalError::Undefined)) => {
                    if constant {
                        return ne("defined on one side only");
                    }
                    continue;
                }
                (Err(EvalError::Budget(e)), _) | (_, Err(EvalError::Budget(e))) => {
                    return Err(Stop::Budget(e))
                }
                (Err(EvalError::TooLarge(what)), _) | (_, Err(EvalError::TooLarge(what))) => {
                    if constant {
                        return Err(Stop::TooLarge(what));
                    }
                    // Random points can make a polynomial's value large; try numerically.
                    exact_ok = false;
                    break;
                }
                _ => {
                    exact_ok = false;
                    break;
                }
            }
        }
        if exact_ok && defined_points > 0 {
            if exact_equal {
                return eq(format!("exactly equal{shown}"));
            }
            if !approximate {
                return ne(format!("exactly different{shown}"));
            }
        }
        // Numeric evaluation.
        let tolerance = if approximate {
            self.options.rel_tol
        } else {
            self.options.exact_rel_tol
        };
        let mut rng = SplitMix(self.options.seed ^ 0xA5A5);
        let mut compared = 0;
        for _ in 0..points * 3 {
            if compared >= points {
                break;
            }
            let mut point = Point::default();
            for name in &names {
                let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                point.numeric.insert(name.clone(), 0.5 + 2.0 * u);
            }
            let a = eval::numeric(gold, &point, self.meter);
            let b = eval::numeric(pred, &point, self.meter);
            let (a, b) = match (a, b) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(EvalError::Budget(e)), _) | (_, Err(EvalError::Budget(e))) => {
                    return Err(Stop::Budget(e))
                }
                _ => return ne("cannot evaluate"),
            };
            match (a.is_finite(), b.is_finite()) {
                (true, true) => {}
                (false, false) => continue,
                _ => return ne("finite on one side only"),
            }
            let scale = a.abs().max(b.abs());
            if scale != 0.0 && scale < 1e-290 {
                return Err(Stop::TooLarge("values too small to compare numerically"));
            }
            if scale > 1e290 {
                return Err(Stop::TooLarge("values too large to compare numerically"));
            }
            let diff = (a.re - b.re).hypot(a.im - b.im);
            if diff > self.options.abs_tol + tolerance * scale {
                return ne(format!(
                    "numerically different ({} vs {})",
                    show_approx(a),
                    show_approx(b)
                ));
            }
            compared += 1;
        }
        if compared == 0 {
            return ne("cannot evaluate");
        }
        eq(format!(
            "numerically equal within {tolerance:e} relative{}",
            if constant { "" } else { " at seeded points" }
        ))
    }
}

/// Exact evaluation, memoised in `cache` when it is `Some` (a side without variables).
fn exact_cached(
    e: &Expr,
    cache: &mut Option<Option<Result<eval::Exact, EvalError>>>,
    point: &Point,
    limits: &Limits,
    meter: &mut Meter,
) -> Result<eval::Exact, EvalError> {
    match cache {
        Some(Some(v)) => v.clone(),
        Some(slot) => {
            let v = eval::exact(e, point, limits, meter);
            *slot = Some(v.clone());
            v
        }
        None => eval::exact(e, point, limits, meter),
    }
}

fn show_exact(v: &eval::Exact) -> String {
    let cut = |s: String| {
        if s.len() > 60 {
            format!("{}…({} digits)", &s[..40], s.len())
        } else {
            s
        }
    };
    // Decimal conversion is quadratic: a big value is shown by its size only.
    let bits = v.re.numer().bits() + v.re.denom().bits() + v.im.numer().bits();
    if bits > 1024 {
        return format!("a {bits}-bit rational");
    }
    match v.as_real() {
        Some(r) => cut(r.to_string()),
        None => cut(format!("{} + {}i", v.re, v.im)),
    }
}

fn show_approx(v: eval::Approx) -> String {
    if v.im == 0.0 {
        format!("{:.10e}", v.re)
    } else {
        format!("{:.10e} + {:.10e}i", v.re, v.im)
    }
}
