//! Evaluation of scalar trees: exactly over the Gaussian rationals `Q(i)`, or numerically in
//! complex `f64`.
//!
//! Exact evaluation substitutes a rational for every free variable and for the transcendental
//! constants π and e (sound: π and e are transcendental, so an identity of rational functions
//! holds at π iff it holds as an identity in a free variable — Lindemann 1882). Square roots and
//! `n`-th roots are exact when the radicand is a perfect power; otherwise, and for the elementary
//! functions, the exact evaluator gives up ([`EvalError::NotExact`]) and comparison falls back to
//! numeric evaluation. Every operation is charged to the [`Meter`] by the size of its operands,
//! and results are bounded in bits, exponents and factorial arguments ([`Limits`]), so power
//! towers stop with [`EvalError::TooLarge`] instead of allocating without bound.

use std::collections::BTreeMap;

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};
use rewardkit_core::{Exhausted, Meter};

use crate::parse::{Expr, Func};
use crate::Limits;

/// Why an evaluation stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalError {
    /// The exact evaluator cannot represent the value (an irrational root, a sine, …).
    NotExact,
    /// The value is undefined at this point (division by zero, log of zero).
    Undefined,
    /// The tree is not a scalar or holds ∞.
    NotScalar,
    /// A number would exceed the size limits.
    TooLarge(&'static str),
    /// The step budget or deadline ran out.
    Budget(Exhausted),
}

impl From<Exhausted> for EvalError {
    fn from(e: Exhausted) -> Self {
        EvalError::Budget(e)
    }
}

/// A Gaussian rational `re + im·i`.
#[derive(Clone, Debug, PartialEq)]
pub struct Exact {
    /// Real part.
    pub re: BigRational,
    /// Imaginary part.
    pub im: BigRational,
}

impl Exact {
    fn real(re: BigRational) -> Exact {
        Exact {
            re,
            im: BigRational::zero(),
        }
    }

    fn is_real(&self) -> bool {
        self.im.is_zero()
    }

    fn bits(&self) -> u64 {
        let b = |r: &BigRational| r.numer().bits() + r.denom().bits();
        b(&self.re) + b(&self.im)
    }

    fn add(&self, o: &Exact) -> Exact {
        Exact {
            re: radd(&self.re, &o.re),
            im: radd(&self.im, &o.im),
        }
    }

    fn sub(&self, o: &Exact) -> Exact {
        Exact {
            re: radd(&self.re, &-&o.re),
            im: radd(&self.im, &-&o.im),
        }
    }

    fn mul(&self, o: &Exact) -> Exact {
        if self.is_real() && o.is_real() {
            return Exact::real(rmul(&self.re, &o.re));
        }
        Exact {
            re: radd(&rmul(&self.re, &o.re), &-rmul(&self.im, &o.im)),
            im: radd(&rmul(&self.re, &o.im), &rmul(&self.im, &o.re)),
        }
    }

    fn div(&self, o: &Exact) -> Result<Exact, EvalError> {
        if o.re.is_zero() && o.im.is_zero() {
            return Err(EvalError::Undefined);
        }
        if self.is_real() && o.is_real() {
            return Ok(Exact::real(rdiv(&self.re, &o.re)));
        }
        let d = radd(&rmul(&o.re, &o.re), &rmul(&o.im, &o.im));
        Ok(Exact {
            re: rdiv(&radd(&rmul(&self.re, &o.re), &rmul(&self.im, &o.im)), &d),
            im: rdiv(&radd(&rmul(&self.im, &o.re), &-rmul(&self.re, &o.im)), &d),
        })
    }

    fn neg(&self) -> Exact {
        Exact {
            re: -&self.re,
            im: -&self.im,
        }
    }

    /// The value as a real rational if it has no imaginary part.
    pub fn as_real(&self) -> Option<&BigRational> {
        self.is_real().then_some(&self.re)
    }
}

/// The key of π in [`Point::exact`] (not a possible variable name).
pub const PI_KEY: &str = "\\pi";
/// The key of Euler's number in [`Point::exact`] (distinct from a variable named `E`).
pub const E_KEY: &str = "\\e";

/// Spends `n` steps in chunks, so that a large charge for work not yet done stops at most one
/// chunk past the budget (the work is then not done at all).
pub(crate) fn charge(meter: &mut Meter, mut n: u64) -> Result<(), Exhausted> {
    const CHUNK: u64 = 1 << 16;
    while n > CHUNK {
        meter.step(CHUNK)?;
        n -= CHUNK;
    }
    meter.step(n)
}

/// The cost in steps (about one per machine-word operation) of one exact `+ − × ÷` on `x` and
/// `y`: sums of integers are linear; products cross-reduce with a gcd of a big and a small part
/// (one Euclidean step, then a binary gcd on the smaller: 64 × words²); sums of fractions end
/// with a gcd of two results as large as the larger operand.
fn arithmetic_cost(e: &Expr, x: &Exact, y: &Exact) -> u64 {
    let (wx, wy) = (1 + x.bits() / 64, 1 + y.bits() / 64);
    let (small, large) = (wx.min(wy), wx.max(wy));
    let integers = x.re.is_integer() && x.im.is_integer() && y.re.is_integer() && y.im.is_integer();
    let cost = match e {
        Expr::Add(..) | Expr::Sub(..) if integers => large,
        Expr::Add(..) | Expr::Sub(..) => 64 * large.saturating_mul(large),
        Expr::Mul(..) if integers => small.saturating_mul(large),
        _ => 4 * small.saturating_mul(large) + 64 * small.saturating_mul(small),
    };
    1 + cost
}

/// The gcd of two integers. `num-integer`'s binary gcd shifts the whole of the larger number
/// once per bit, so `gcd(2004!, 1)` costs milliseconds; a Euclidean step first brings the larger
/// operand down to the size of the smaller (one division), which makes the usual case — a big
/// number against a small one — linear.
fn gcd(a: &BigInt, b: &BigInt) -> BigInt {
    let (mut x, mut y) = (a.abs(), b.abs());
    if x.bits() < y.bits() {
        std::mem::swap(&mut x, &mut y);
    }
    loop {
        if y.is_zero() {
            return x;
        }
        if y.is_one() {
            return y;
        }
        if x.bits() > y.bits() + 64 || y.bits() <= 64 {
            let r = &x % &y;
            x = y;
            y = r;
        } else {
            return num_integer::Integer::gcd(&x, &y);
        }
    }
}

/// `n / d` in lowest terms with a positive denominator (`d ≠ 0`).
fn ratio(n: BigInt, d: BigInt) -> BigRational {
    let g = gcd(&n, &d);
    let (n, d) = if g.is_one() { (n, d) } else { (n / &g, d / &g) };
    if d.is_negative() {
        BigRational::new_raw(-n, -d)
    } else {
        BigRational::new_raw(n, d)
    }
}

/// `a + b` (integers without any gcd).
fn radd(a: &BigRational, b: &BigRational) -> BigRational {
    if a.is_integer() && b.is_integer() {
        return BigRational::from_integer(a.numer() + b.numer());
    }
    ratio(
        a.numer() * b.denom() + b.numer() * a.denom(),
        a.denom() * b.denom(),
    )
}

/// `a · b`, cross-reducing first (integers without any gcd).
fn rmul(a: &BigRational, b: &BigRational) -> BigRational {
    if a.is_integer() && b.is_integer() {
        return BigRational::from_integer(a.numer() * b.numer());
    }
    let g1 = gcd(a.numer(), b.denom());
    let g2 = gcd(b.numer(), a.denom());
    let (an, bd) = (a.numer() / &g1, b.denom() / &g1);
    let (bn, ad) = (b.numer() / &g2, a.denom() / &g2);
    BigRational::new_raw(an * bn, ad * bd)
}

/// `a / b` for `b ≠ 0`.
fn rdiv(a: &BigRational, b: &BigRational) -> BigRational {
    let recip = if b.numer().is_negative() {
        BigRational::new_raw(-b.denom(), -b.numer())
    } else {
        BigRational::new_raw(b.denom().clone(), b.numer().clone())
    };
    rmul(a, &recip)
}

/// Values substituted for free variables and for π and e at one evaluation point.
#[derive(Clone, Debug, Default)]
pub struct Point {
    /// Exact values by name (π and e under [`PI_KEY`] and [`E_KEY`] when they are treated as
    /// unknowns).
    pub exact: BTreeMap<String, BigRational>,
    /// Numeric values by name.
    pub numeric: BTreeMap<String, f64>,
}

/// Evaluates exactly.
pub fn exact(
    e: &Expr,
    point: &Point,
    limits: &Limits,
    meter: &mut Meter,
) -> Result<Exact, EvalError> {
    meter.step(1)?;
    let v = match e {
        Expr::Num { value, .. } => Exact::real(value.clone()),
        Expr::Var(name) => Exact::real(point.exact.get(name).cloned().ok_or(EvalError::NotExact)?),
        Expr::Pi => Exact::real(
            point
                .exact
                .get(PI_KEY)
                .cloned()
                .ok_or(EvalError::NotExact)?,
        ),
        Expr::E => Exact::real(point.exact.get(E_KEY).cloned().ok_or(EvalError::NotExact)?),
        Expr::I => Exact {
            re: BigRational::zero(),
            im: BigRational::one(),
        },
        Expr::Inf => return Err(EvalError::NotScalar),
        Expr::Neg(a) => exact(a, point, limits, meter)?.neg(),
        Expr::Add(a, b) | Expr::Sub(a, b) | Expr::Mul(a, b) | Expr::Div(a, b) => {
            let x = exact(a, point, limits, meter)?;
            let y = exact(b, point, limits, meter)?;
            charge(meter, arithmetic_cost(e, &x, &y))?;
            let r = match e {
                Expr::Add(..) => x.add(&y),
                Expr::Sub(..) => x.sub(&y),
                Expr::Mul(..) => x.mul(&y),
                _ => x.div(&y)?,
            };
            if r.bits() > limits.max_bits {
                return Err(EvalError::TooLarge("number too large"));
            }
            r
        }
        Expr::Pow(a, b) => {
            let base = exact(a, point, limits, meter)?;
            let exponent = exact(b, point, limits, meter)?;
            pow_exact(&base, &exponent, limits, meter)?
        }
        Expr::Root(n, a) => {
            let n = exact(n, point, limits, meter)?;
            let a = exact(a, point, limits, meter)?;
            let n = n.as_real().ok_or(EvalError::NotExact)?;
            if n.is_zero() {
                return Err(EvalError::Undefined);
            }
            pow_exact(&a, &Exact::real(n.recip()), limits, meter)?
        }
        Expr::Func(Func::Sqrt, a) => {
            let a = exact(a, point, limits, meter)?;
            let half = BigRational::new(BigInt::one(), BigInt::from(2));
            pow_exact(&a, &Exact::real(half), limits, meter)?
        }
        Expr::Func(Func::Abs, a) => {
            let a = exact(a, point, limits, meter)?;
            match a.as_real() {
                Some(r) => Exact::real(r.abs()),
                None => return Err(EvalError::NotExact),
            }
        }
        Expr::Func(f @ (Func::Floor | Func::Ceil), a) => {
            let a = exact(a, point, limits, meter)?;
            let r = a.as_real().ok_or(EvalError::NotExact)?;
            Exact::real(if *f == Func::Floor {
                r.floor()
            } else {
                r.ceil()
            })
        }
        Expr::Func(Func::Factorial, a) => {
            let a = exact(a, point, limits, meter)?;
            let n = a
                .as_real()
                .filter(|r| r.is_integer())
                .ok_or(EvalError::NotExact)?;
            if n.is_negative() {
                return Err(EvalError::Undefined);
            }
            let n = n
                .to_integer()
                .to_u64()
                .filter(|n| *n <= limits.max_factorial)
                .ok_or(EvalError::TooLarge("factorial argument too large"))?;
            // About n·log2(n) bits of result; a product tree keeps the multiplications balanced
            // (Karatsuba-sized) instead of n growing-by-one-word steps.
            let words = 1 + n * (64 - n.leading_zeros() as u64) / 64;
            charge(meter, 1 + n + words.saturating_mul(words) / 4)?;
            Exact::real(BigRational::from_integer(product(2, n)))
        }
        Expr::Binom(n, k) => {
            let n = exact(n, point, limits, meter)?;
            let k = exact(k, point, limits, meter)?;
            let to_int = |v: &Exact| {
                v.as_real()
                    .filter(|r| r.is_integer())
                    .and_then(|r| r.to_integer().to_i64())
            };
            let (n, k) = match (to_int(&n), to_int(&k)) {
                (Some(n), Some(k)) => (n, k),
                _ => return Err(EvalError::NotExact),
            };
            if k < 0 || n < 0 || k > n {
                Exact::real(BigRational::zero())
            } else {
                let k = k.min(n - k) as u64;
                if k > limits.max_factorial {
                    return Err(EvalError::TooLarge("binomial too large"));
                }
                let mut acc = BigInt::one();
                for j in 0..k {
                    acc = acc * BigInt::from(n as u64 - j) / BigInt::from(j + 1);
                    meter.step(1 + acc.bits() / 64)?;
                }
                Exact::real(BigRational::from_integer(acc))
            }
        }
        Expr::Percent(a) => {
            let a = exact(a, point, limits, meter)?;
            a.div(&Exact::real(BigRational::from_integer(100.into())))?
        }
        Expr::Degree(a) => exact(a, point, limits, meter)?,
        Expr::Func(..) | Expr::Log(..) => return Err(EvalError::NotExact),
        _ => return Err(EvalError::NotScalar),
    };
    Ok(v)
}

/// `lo · (lo+1) · … · hi` (1 when empty) by binary splitting.
fn product(lo: u64, hi: u64) -> BigInt {
    if hi < lo {
        return BigInt::one();
    }
    if hi - lo < 16 {
        return (lo..=hi).fold(BigInt::one(), |acc, k| acc * k);
    }
    let mid = lo + (hi - lo) / 2;
    product(lo, mid) * product(mid + 1, hi)
}

/// The largest root degree taken exactly.
const MAX_ROOT_DEGREE: u32 = 64;

/// `base ^ exponent` exactly: integer exponents within the limits, and rational exponents `p/q`
/// when `base` is a perfect `q`-th power.
fn pow_exact(
    base: &Exact,
    exponent: &Exact,
    limits: &Limits,
    meter: &mut Meter,
) -> Result<Exact, EvalError> {
    let exponent = exponent.as_real().ok_or(EvalError::NotExact)?;
    let p = exponent.numer();
    let q = exponent.denom();
    if q > &BigInt::from(MAX_ROOT_DEGREE) {
        // `x^{p/q}` with a large `q` (a variable's random value in an exponent): not a root
        // worth taking exactly.
        return Err(EvalError::NotExact);
    }
    if p.abs() > BigInt::from(limits.max_exponent) {
        if base.is_real() && (base.re.is_zero() || base.re.is_one()) && p.is_positive() {
            return Ok(base.clone());
        }
        return Err(EvalError::TooLarge("exponent too large"));
    }
    let p = p.to_i64().expect("bounded by max_exponent, this is a bug");
    let q = q.to_u32().expect("bounded by max_exponent, this is a bug");
    // The q-th root first (only of real rationals).
    let root = if q == 1 {
        base.clone()
    } else {
        let r = base.as_real().ok_or(EvalError::NotExact)?;
        if r.is_negative() {
            if q % 2 == 1 {
                Exact::real(-exact_root(&-r, q).ok_or(EvalError::NotExact)?)
            } else if q == 2 {
                // sqrt(-a) = i sqrt(a)
                Exact {
                    re: BigRational::zero(),
                    im: exact_root(&-r, 2).ok_or(EvalError::NotExact)?,
                }
            } else {
                return Err(EvalError::NotExact);
            }
        } else {
            Exact::real(exact_root(r, q).ok_or(EvalError::NotExact)?)
        }
    };
    meter.step(1)?;
    if root.bits().saturating_mul(p.unsigned_abs()) > limits.max_bits {
        return Err(EvalError::TooLarge("power too large"));
    }
    // Repeated squaring up to a result of `words` machine words: quadratic like a product, and
    // a binary gcd per product (bits × words) unless the base is an integer.
    let words = 1 + root.bits().saturating_mul(p.unsigned_abs()) / 64;
    let integer = root.re.is_integer() && root.im.is_integer();
    charge(
        meter,
        1 + words
            .saturating_mul(words)
            .saturating_mul(if integer { 1 } else { 64 }),
    )?;
    let mut result = Exact::real(BigRational::one());
    let mut b = root;
    let mut n = p.unsigned_abs();
    while n > 0 {
        if n & 1 == 1 {
            result = result.mul(&b);
        }
        n >>= 1;
        if n > 0 {
            b = b.mul(&b);
        }
    }
    if p < 0 {
        result = Exact::real(BigRational::one()).div(&result)?;
    }
    Ok(result)
}

/// The exact `q`-th root of a non-negative rational, if it is rational.
fn exact_root(r: &BigRational, q: u32) -> Option<BigRational> {
    let root_int = |n: &BigInt| {
        let x = n.nth_root(q);
        (num_traits::pow(x.clone(), q as usize) == *n).then_some(x)
    };
    Some(BigRational::new(root_int(r.numer())?, root_int(r.denom())?))
}

/// A complex `f64`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Approx {
    /// Real part.
    pub re: f64,
    /// Imaginary part.
    pub im: f64,
}

impl Approx {
    fn real(re: f64) -> Approx {
        Approx { re, im: 0.0 }
    }

    /// Both parts finite.
    pub fn is_finite(&self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }

    /// The modulus.
    pub fn abs(&self) -> f64 {
        self.re.hypot(self.im)
    }

    fn mul(self, o: Approx) -> Approx {
        Approx {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }

    fn div(self, o: Approx) -> Approx {
        let d = o.re * o.re + o.im * o.im;
        Approx {
            re: (self.re * o.re + self.im * o.im) / d,
            im: (self.im * o.re - self.re * o.im) / d,
        }
    }

    fn ln(self) -> Approx {
        Approx {
            re: self.abs().ln(),
            im: self.im.atan2(self.re),
        }
    }

    fn exp(self) -> Approx {
        let m = self.re.exp();
        Approx {
            re: m * self.im.cos(),
            im: m * self.im.sin(),
        }
    }

    fn pow(self, e: Approx) -> Approx {
        if self.im == 0.0 && e.im == 0.0 && (self.re >= 0.0 || e.re.fract() == 0.0) {
            return Approx::real(self.re.powf(e.re));
        }
        if self.re == 0.0 && self.im == 0.0 {
            return Approx::real(0.0);
        }
        e.mul(self.ln()).exp()
    }

    fn real_fn(self, f: fn(f64) -> f64) -> Approx {
        if self.im.abs() > 1e-12 * self.re.abs().max(1.0) {
            return Approx::real(f64::NAN);
        }
        Approx::real(f(self.re))
    }
}

/// Evaluates numerically (principal branches; real functions of complex arguments are NaN).
pub fn numeric(e: &Expr, point: &Point, meter: &mut Meter) -> Result<Approx, EvalError> {
    meter.step(1)?;
    let r = |x: f64| Approx::real(x);
    Ok(match e {
        Expr::Num { value, .. } => r(value.to_f64().unwrap_or(f64::NAN)),
        Expr::Var(name) => r(*point.numeric.get(name).ok_or(EvalError::NotExact)?),
        Expr::Pi => r(std::f64::consts::PI),
        Expr::E => r(std::f64::consts::E),
        Expr::I => Approx { re: 0.0, im: 1.0 },
        Expr::Inf => return Err(EvalError::NotScalar),
        Expr::Neg(a) => {
            let a = numeric(a, point, meter)?;
            Approx {
                re: -a.re,
                im: -a.im,
            }
        }
        Expr::Add(a, b) => {
            let (a, b) = (numeric(a, point, meter)?, numeric(b, point, meter)?);
            Approx {
                re: a.re + b.re,
                im: a.im + b.im,
            }
        }
        Expr::Sub(a, b) => {
            let (a, b) = (numeric(a, point, meter)?, numeric(b, point, meter)?);
            Approx {
                re: a.re - b.re,
                im: a.im - b.im,
            }
        }
        Expr::Mul(a, b) => numeric(a, point, meter)?.mul(numeric(b, point, meter)?),
        Expr::Div(a, b) => numeric(a, point, meter)?.div(numeric(b, point, meter)?),
        Expr::Pow(a, b) => numeric(a, point, meter)?.pow(numeric(b, point, meter)?),
        Expr::Root(n, a) => {
            let n = numeric(n, point, meter)?;
            let a = numeric(a, point, meter)?;
            if a.im == 0.0
                && a.re < 0.0
                && n.im == 0.0
                && n.re.fract() == 0.0
                && n.re as i64 % 2 != 0
            {
                r(-(-a.re).powf(1.0 / n.re))
            } else {
                a.pow(Approx::real(1.0).div(n))
            }
        }
        Expr::Func(f, a) => {
            let a = numeric(a, point, meter)?;
            match f {
                Func::Sqrt => a.pow(r(0.5)),
                Func::Abs => r(a.abs()),
                Func::Exp => a.exp(),
                Func::Ln => a.ln(),
                Func::Sin => a.real_fn(f64::sin),
                Func::Cos => a.real_fn(f64::cos),
                Func::Tan => a.real_fn(f64::tan),
                Func::Cot => a.real_fn(|x| 1.0 / x.tan()),
                Func::Sec => a.real_fn(|x| 1.0 / x.cos()),
                Func::Csc => a.real_fn(|x| 1.0 / x.sin()),
                Func::Asin => a.real_fn(f64::asin),
                Func::Acos => a.real_fn(f64::acos),
                Func::Atan => a.real_fn(f64::atan),
                Func::Sinh => a.real_fn(f64::sinh),
                Func::Cosh => a.real_fn(f64::cosh),
                Func::Tanh => a.real_fn(f64::tanh),
                Func::Factorial => a.real_fn(factorial),
                Func::Floor => a.real_fn(f64::floor),
                Func::Ceil => a.real_fn(f64::ceil),
            }
        }
        Expr::Log(b, a) => {
            let b = numeric(b, point, meter)?;
            let a = numeric(a, point, meter)?;
            a.ln().div(b.ln())
        }
        Expr::Binom(n, k) => {
            let n = numeric(n, point, meter)?;
            let k = numeric(k, point, meter)?;
            if n.im != 0.0 || k.im != 0.0 {
                r(f64::NAN)
            } else if n.re.fract() != 0.0 || k.re.fract() != 0.0 {
                // `\binom{2n}{n}` at a non-integer point: n! / (k! (n-k)!) through Γ.
                r(factorial(n.re) / (factorial(k.re) * factorial(n.re - k.re)))
            } else if k.re < 0.0 || k.re > n.re {
                r(0.0)
            } else {
                let k = k.re.min(n.re - k.re) as u64;
                if k > 10_000 {
                    r(f64::INFINITY)
                } else {
                    r((0..k).fold(1.0, |acc, j| acc * (n.re - j as f64) / (j + 1) as f64))
                }
            }
        }
        Expr::Percent(a) => numeric(a, point, meter)?.div(r(100.0)),
        Expr::Degree(a) => numeric(a, point, meter)?,
        _ => return Err(EvalError::NotScalar),
    })
}

/// `x!` in `f64`: the exact product at integers up to 170, `Γ(x + 1)` elsewhere (so factorials
/// and binomials of variables — `(d-k)!`, `\binom{2n}{n}` — compare as functions at random real
/// points); NaN at the poles (negative integers).
fn factorial(x: f64) -> f64 {
    if x.fract() == 0.0 {
        return if (0.0..=170.0).contains(&x) {
            (1..=x as u64).map(|k| k as f64).product()
        } else if x > 170.0 {
            f64::INFINITY
        } else {
            f64::NAN
        };
    }
    gamma(x + 1.0)
}

/// The gamma function: the Lanczos approximation with g = 7 and nine coefficients (relative
/// error about 1e-15; Lanczos 1964, coefficients as tabulated by Press et al., Numerical
/// Recipes 3rd ed. §6.1), with the reflection formula `Γ(x) Γ(1−x) = π / sin(πx)` below 1/2.
fn gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return pi / ((pi * x).sin() * gamma(1.0 - x));
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (k, c) in C.iter().enumerate().skip(1) {
        a += c / (x + k as f64);
    }
    (2.0 * std::f64::consts::PI).sqrt() * t.powf(x + 0.5) * (-t).exp() * a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rational_helpers_match_num_rational() {
        let big = product(2, 300);
        let values = [
            BigRational::new(BigInt::from(3), BigInt::from(-4)),
            BigRational::from_integer(BigInt::from(7)),
            BigRational::new(big.clone(), BigInt::from(6)),
            BigRational::new(BigInt::from(-5), big.clone() + 1),
            BigRational::new(big.clone() * 3 + 1, big.clone() * 2),
            BigRational::from_integer(BigInt::zero()),
        ];
        for a in &values {
            for b in &values {
                assert_eq!(radd(a, b), a + b, "{a} + {b}");
                assert_eq!(rmul(a, b), a * b, "{a} * {b}");
                if !b.is_zero() {
                    assert_eq!(rdiv(a, b), a / b, "{a} / {b}");
                }
            }
        }
        assert_eq!(gcd(&big, &BigInt::from(1)), BigInt::one());
        assert_eq!(gcd(&(big.clone() * 6), &(big.clone() * 4)), big * 2);
        assert_eq!(product(1, 10), BigInt::from(3_628_800));
    }

    #[test]
    fn gamma_matches_known_values() {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-13 * b.abs().max(1.0);
        assert!(close(gamma(0.5), std::f64::consts::PI.sqrt()));
        assert!(close(gamma(5.0), 24.0));
        assert!(close(gamma(1.5), 0.886_226_925_452_758));
        assert!(close(gamma(-0.5), -2.0 * std::f64::consts::PI.sqrt()));
        assert!(close(factorial(2.5), 3.323_350_970_447_843));
        assert_eq!(factorial(5.0), 120.0);
        assert!(factorial(-1.0).is_nan());
    }
}
