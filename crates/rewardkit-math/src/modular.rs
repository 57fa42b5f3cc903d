//! Identity of rational functions by evaluation modulo large primes.
//!
//! Two answers with free variables (or π and e, which are transcendental and so behave as free
//! variables — Lindemann 1882) are compared by evaluating both at random points. Over the
//! rationals that is exact but the numbers grow with the degree: `(x^2+1)^{101}` at `x = 37/29`
//! is a fraction of about 2,000 bits, and a few of those per call cost milliseconds. This module
//! evaluates instead in the finite field `F_p[i] = F_{p²}` for two fixed primes `p ≡ 3 (mod 4)`
//! near 2⁶¹ and 2⁶² (so `−1` is not a square mod `p` and `i` extends the field, which also
//! covers answers with `i`): every value is two machine words and every operation a few
//! 128-bit multiplications, whatever the degree.
//!
//! # Why this is sound
//!
//! Let `R` be the rational functions over `Q(i)` whose denominators do not vanish at the point
//! mod `p`. Reduction mod `p` followed by evaluation is a ring homomorphism `R → F_{p²}`, and the
//! evaluator below follows the tree with it: a division by a value that is zero mod `p` stops
//! with [`ModError::Undefined`] (the caller takes another point) instead of producing a value.
//! So when the evaluation finishes, its result is the homomorphic image of the answer's rational
//! function, and:
//!
//! - **different values at a point ⇒ different functions** (a homomorphism maps equal elements
//!   to equal values) — always right;
//! - **equal values at every point ⇒ equal functions**, except with small probability: if
//!   `f ≠ g`, the numerator of `f − g` is a non-zero polynomial of degree at most `D` (tracked
//!   below as a bound and capped at [`MAX_DEGREE`]); unless `p` divides all its coefficients it
//!   vanishes at a uniformly random point with probability at most `D/p` (Schwartz–Zippel,
//!   Schwartz 1980, Lemma 1) — at most 2⁻²¹ per point — and the two primes are independent
//!   chances. Coefficients divisible by both primes need integers above 2¹²² in the answer.
//!
//! Only the operations of rational functions are evaluated here: `+ − × ÷`, integer powers
//! (the exponent a constant integer up to `max_exponent`), `%` and degrees (as numbers). A
//! sub-expression without variables (`\sqrt{4}`, `12!`, `\binom{10}{3}`) is evaluated exactly
//! by [`crate::eval::exact`] and reduced. Anything else — a function, an irrational constant, a
//! root of a variable, an absolute value — returns [`ModError::NotApplicable`], and the
//! comparison uses exact rational points and then floating point as before.

use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{Signed, ToPrimitive};
use rewardkit_core::{Exhausted, Meter};

use crate::eval::{self, EvalError, Point};
use crate::parse::{Expr, Func};
use crate::Limits;

/// The two primes (both `≡ 3 mod 4`): the Mersenne prime 2⁶¹ − 1 and 2⁶² − 57.
pub const PRIMES: [u64; 2] = [(1 << 61) - 1, (1 << 62) - 57];

/// The largest degree bound evaluated; larger answers fall back to the other evaluators.
pub const MAX_DEGREE: u64 = 1 << 40;

/// Why a modular evaluation stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum ModError {
    /// The answer is not a rational function of its variables (or a constant that does not
    /// reduce mod `p`): use another evaluator.
    NotApplicable,
    /// A division by zero mod `p` at this point: take another point.
    Undefined,
    /// The step budget or deadline ran out.
    Budget(Exhausted),
}

impl From<Exhausted> for ModError {
    fn from(e: Exhausted) -> Self {
        ModError::Budget(e)
    }
}

/// An element `re + im·i` of `F_{p²}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elem {
    /// Real part, in `0..p`.
    pub re: u64,
    /// Imaginary part, in `0..p`.
    pub im: u64,
}

impl Elem {
    fn real(re: u64) -> Elem {
        Elem { re, im: 0 }
    }

    fn is_zero(self) -> bool {
        self.re == 0 && self.im == 0
    }
}

/// Arithmetic in `F_{p²}` for one prime `p = 2^k − c ≡ 3 (mod 4)` below 2⁶³ (reduction by
/// folding the high bits: `2^k ≡ c`).
#[derive(Clone, Copy, Debug)]
pub struct Field {
    p: u64,
    k: u32,
    c: u64,
}

impl Field {
    /// The field for prime `p`, one of [`PRIMES`].
    pub fn new(p: u64) -> Field {
        let k = 64 - p.leading_zeros();
        let c = (1u64 << k) - p;
        debug_assert!(k <= 63 && c < 1 << 7, "p must be 2^k - c with a small c");
        Field { p, k, c }
    }

    fn add_u(self, a: u64, b: u64) -> u64 {
        let s = a + b; // both < 2^63: no overflow
        if s >= self.p {
            s - self.p
        } else {
            s
        }
    }

    fn sub_u(self, a: u64, b: u64) -> u64 {
        if a >= b {
            a - b
        } else {
            a + self.p - b
        }
    }

    fn mul_u(self, a: u64, b: u64) -> u64 {
        let mask = (1u128 << self.k) - 1;
        let x = a as u128 * b as u128; // < 2^(2k)
        let x = (x >> self.k) * self.c as u128 + (x & mask); // < 2^(k+7) + 2^k
        let x = (x >> self.k) * self.c as u128 + (x & mask); // < 2^k + 2^14
        let mut r = x as u64;
        while r >= self.p {
            r -= self.p;
        }
        r
    }

    /// `1/a` for `a ≠ 0` by the extended Euclidean algorithm.
    fn inv_u(self, a: u64) -> u64 {
        let (mut t, mut new_t) = (0i64, 1i64);
        let (mut r, mut new_r) = (self.p as i64, a as i64);
        while new_r != 0 {
            let q = r / new_r;
            (t, new_t) = (new_t, t - q * new_t);
            (r, new_r) = (new_r, r - q * new_r);
        }
        if t < 0 {
            (t + self.p as i64) as u64
        } else {
            t as u64
        }
    }

    /// `n! mod p` for `n` below `p` (never zero then), one multiplication per factor.
    fn factorial(self, n: u64, meter: &mut Meter) -> Result<u64, ModError> {
        meter.step(1 + n / 8)?;
        Ok((2..=n).fold(1, |acc, k| self.mul_u(acc, k)))
    }

    fn add(self, a: Elem, b: Elem) -> Elem {
        Elem {
            re: self.add_u(a.re, b.re),
            im: self.add_u(a.im, b.im),
        }
    }

    fn sub(self, a: Elem, b: Elem) -> Elem {
        Elem {
            re: self.sub_u(a.re, b.re),
            im: self.sub_u(a.im, b.im),
        }
    }

    fn neg(self, a: Elem) -> Elem {
        self.sub(Elem::real(0), a)
    }

    fn mul(self, a: Elem, b: Elem) -> Elem {
        if a.im == 0 && b.im == 0 {
            return Elem::real(self.mul_u(a.re, b.re));
        }
        Elem {
            re: self.sub_u(self.mul_u(a.re, b.re), self.mul_u(a.im, b.im)),
            im: self.add_u(self.mul_u(a.re, b.im), self.mul_u(a.im, b.re)),
        }
    }

    /// `1/a`, or `None` for zero: `(re − im·i)/(re² + im²)`, where `re² + im² ≠ 0` for a non-zero
    /// element because −1 is not a square mod `p`.
    fn inv(self, a: Elem) -> Option<Elem> {
        if a.is_zero() {
            return None;
        }
        let norm = self.add_u(self.mul_u(a.re, a.re), self.mul_u(a.im, a.im));
        let n = self.inv_u(norm);
        Some(Elem {
            re: self.mul_u(a.re, n),
            im: self.mul_u(self.sub_u(0, a.im), n),
        })
    }

    fn pow(self, mut b: Elem, mut n: u64) -> Elem {
        let mut r = Elem::real(1);
        while n > 0 {
            if n & 1 == 1 {
                r = self.mul(r, b);
            }
            b = self.mul(b, b);
            n >>= 1;
        }
        r
    }

    fn int(self, n: &BigInt) -> u64 {
        if let Some(small) = n.to_i64() {
            return small.rem_euclid(self.p as i64) as u64;
        }
        n.mod_floor(&BigInt::from(self.p))
            .to_u64()
            .expect("a residue mod p fits in u64, this is a bug")
    }

    /// A rational mod `p`, or `None` when its denominator is divisible by `p`.
    fn rational(self, r: &BigRational) -> Option<u64> {
        let d = self.int(r.denom());
        if d == 0 {
            return None;
        }
        let n = self.int(r.numer());
        Some(if d == 1 {
            n
        } else {
            self.mul_u(n, self.inv_u(d))
        })
    }

    /// A uniformly random non-zero residue from a 64-bit random word (bias below 2⁻⁶⁰).
    pub fn sample(self, word: u64) -> Elem {
        Elem::real(1 + word % (self.p - 1))
    }
}

/// Values of the free variables (and of π and e) at one point.
#[derive(Clone, Debug, Default)]
pub struct ModPoint {
    /// Values by variable name.
    pub vars: Vec<(String, Elem)>,
    /// The value substituted for π.
    pub pi: Option<Elem>,
    /// The value substituted for e.
    pub e: Option<Elem>,
}

fn is_constant(e: &Expr) -> bool {
    !e.any(&|n| matches!(n, Expr::Var(_) | Expr::Pi | Expr::E))
}

/// A constant integer argument of a factorial or binomial, within `max_factorial`.
fn small_int(e: &Expr, limits: &Limits, meter: &mut Meter) -> Result<i64, ModError> {
    let v = match eval::exact(e, &Point::default(), limits, meter) {
        Ok(v) => v,
        Err(EvalError::Budget(b)) => return Err(ModError::Budget(b)),
        Err(_) => return Err(ModError::NotApplicable),
    };
    v.as_real()
        .filter(|r| r.is_integer())
        .and_then(|r| r.to_integer().to_i64())
        .filter(|n| n.unsigned_abs() <= limits.max_factorial)
        .ok_or(ModError::NotApplicable)
}

/// Evaluates a constant (variable-free) sub-expression exactly and reduces it mod `p`.
fn constant(e: &Expr, field: Field, limits: &Limits, meter: &mut Meter) -> Result<Elem, ModError> {
    let v = match eval::exact(e, &Point::default(), limits, meter) {
        Ok(v) => v,
        Err(EvalError::Budget(b)) => return Err(ModError::Budget(b)),
        Err(_) => return Err(ModError::NotApplicable),
    };
    match (field.rational(&v.re), field.rational(&v.im)) {
        (Some(re), Some(im)) => Ok(Elem { re, im }),
        _ => Err(ModError::NotApplicable),
    }
}

/// Evaluates `e` at `point` in `F_{p²}`; returns the value and a bound on the degree of the
/// rational function it is the image of.
pub fn eval(
    e: &Expr,
    point: &ModPoint,
    field: Field,
    limits: &Limits,
    meter: &mut Meter,
) -> Result<(Elem, u64), ModError> {
    meter.step(1)?;
    let degree = |d: u64| {
        if d > MAX_DEGREE {
            Err(ModError::NotApplicable)
        } else {
            Ok(d)
        }
    };
    Ok(match e {
        Expr::Num { value, .. } => (
            Elem::real(field.rational(value).ok_or(ModError::NotApplicable)?),
            0,
        ),
        Expr::Var(name) => {
            let v = point
                .vars
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .ok_or(ModError::NotApplicable)?;
            (v, 1)
        }
        Expr::Pi => (point.pi.ok_or(ModError::NotApplicable)?, 1),
        Expr::E => (point.e.ok_or(ModError::NotApplicable)?, 1),
        Expr::I => (Elem { re: 0, im: 1 }, 0),
        Expr::Neg(a) => {
            let (a, d) = eval(a, point, field, limits, meter)?;
            (field.neg(a), d)
        }
        Expr::Add(a, b) | Expr::Sub(a, b) | Expr::Mul(a, b) | Expr::Div(a, b) => {
            let (x, dx) = eval(a, point, field, limits, meter)?;
            let (y, dy) = eval(b, point, field, limits, meter)?;
            let d = degree(dx.saturating_add(dy))?;
            let v = match e {
                Expr::Add(..) => field.add(x, y),
                Expr::Sub(..) => field.sub(x, y),
                Expr::Mul(..) => field.mul(x, y),
                _ => field.mul(x, field.inv(y).ok_or(ModError::Undefined)?),
            };
            (v, d)
        }
        Expr::Pow(a, b) => {
            if is_constant(e) {
                return Ok((constant(e, field, limits, meter)?, 0));
            }
            if !is_constant(b) {
                return Err(ModError::NotApplicable);
            }
            let n = match eval::exact(b, &Point::default(), limits, meter) {
                Ok(v) => v,
                Err(EvalError::Budget(x)) => return Err(ModError::Budget(x)),
                Err(_) => return Err(ModError::NotApplicable),
            };
            let n = n
                .as_real()
                .filter(|r| r.is_integer())
                .map(|r| r.to_integer())
                .ok_or(ModError::NotApplicable)?;
            if n.abs() > BigInt::from(limits.max_exponent) {
                return Err(ModError::NotApplicable);
            }
            let n = n.to_i64().expect("bounded by max_exponent, this is a bug");
            let (x, dx) = eval(a, point, field, limits, meter)?;
            let d = degree(dx.saturating_mul(n.unsigned_abs()))?;
            meter.step(1 + 64 - n.unsigned_abs().leading_zeros() as u64)?;
            let v = field.pow(x, n.unsigned_abs());
            let v = if n < 0 {
                field.inv(v).ok_or(ModError::Undefined)?
            } else {
                v
            };
            (v, d)
        }
        Expr::Percent(a) => {
            let (x, d) = eval(a, point, field, limits, meter)?;
            let hundred = field
                .inv(Elem::real(100))
                .expect("100 is not zero mod a large prime, this is a bug");
            (field.mul(x, hundred), d)
        }
        Expr::Degree(a) => eval(a, point, field, limits, meter)?,
        Expr::Func(Func::Factorial, a) if is_constant(a) => {
            let n = small_int(a, limits, meter)?;
            if n < 0 {
                return Err(ModError::NotApplicable);
            }
            (Elem::real(field.factorial(n as u64, meter)?), 0)
        }
        Expr::Binom(n, k) if is_constant(n) && is_constant(k) => {
            let (n, k) = (small_int(n, limits, meter)?, small_int(k, limits, meter)?);
            if k < 0 || n < 0 || k > n {
                return Ok((Elem::real(0), 0));
            }
            let (n, k) = (n as u64, k as u64);
            let top = field.factorial(n, meter)?;
            let bottom = field.mul_u(field.factorial(k, meter)?, field.factorial(n - k, meter)?);
            (Elem::real(field.mul_u(top, field.inv_u(bottom))), 0)
        }
        Expr::Func(..) | Expr::Log(..) | Expr::Root(..) | Expr::Binom(..) if is_constant(e) => {
            (constant(e, field, limits, meter)?, 0)
        }
        _ => return Err(ModError::NotApplicable),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_reduction_matches_u128_remainder() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for p in PRIMES {
            let f = Field::new(p);
            for _ in 0..10_000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let (a, b) = (x % p, x.rotate_left(29) % p);
                assert_eq!(f.mul_u(a, b), ((a as u128 * b as u128) % p as u128) as u64);
                if a != 0 {
                    assert_eq!(f.mul_u(a, f.inv_u(a)), 1);
                }
            }
            assert_eq!(f.mul_u(p - 1, p - 1), 1);
        }
    }

    #[test]
    fn field_inverse_and_i() {
        for p in PRIMES {
            let f = Field::new(p);
            let i = Elem { re: 0, im: 1 };
            // i^2 = -1
            assert_eq!(f.mul(i, i), f.neg(Elem::real(1)));
            for a in [
                Elem::real(2),
                Elem { re: 3, im: 7 },
                Elem {
                    re: p - 1,
                    im: p - 2,
                },
            ] {
                let inv = f.inv(a).unwrap();
                assert_eq!(f.mul(a, inv), Elem::real(1), "p {p}, a {a:?}");
            }
            assert_eq!(f.inv(Elem::real(0)), None);
            let half = BigRational::new(1.into(), 2.into());
            assert_eq!(f.mul_u(f.rational(&half).unwrap(), 2), 1);
            let minus = BigRational::from_integer((-3).into());
            assert_eq!(f.add_u(f.rational(&minus).unwrap(), 3), 0);
        }
    }
}
