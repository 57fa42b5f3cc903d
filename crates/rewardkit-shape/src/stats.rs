//! Stable location and spread of a set of finite values, the building block of every group
//! statistic in this crate.
//!
//! Values are first shifted by a *pivot* (the first finite value), then averaged in two passes
//! (a mean, then a correction by the mean of the residuals, with the sum of squares taken in the
//! same pass). When the values are close together
//! relative to their magnitude — rewards of `1e9 + u` — the shift is exact (Sterbenz's lemma), so
//! the centred values `x − mean` carry full precision instead of the ~1e-7 absolute error a
//! mean of the raw values leaves behind. This is what makes leave-one-out means and GRPO
//! advantages exact to the last few bits on offset data (peers.md: NeMo-RL PR #4158).

use crate::StdKind;

/// Location and spread of the finite values among some indices of a slice.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Centre {
    /// Number of finite values.
    pub count: usize,
    /// The pivot the values were shifted by.
    pub pivot: f64,
    /// Mean of `x − pivot`.
    pub shifted_mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
    /// Whether all finite values are equal (so every centred value is exactly 0).
    pub constant: bool,
}

/// The two passes of [`Centre::of_slice`], each over four lanes: lane `j` accumulates element
/// `4c + j` of every whole chunk `c` of four, in chunk order and starting from 0; the elements
/// after the last whole chunk (the tail) join lane 0, in order; and the lanes are combined as
/// `(l₀ + l₁) + (l₂ + l₃)`. Every implementation computes exactly these sums, so all give the
/// same bits.
pub(crate) trait LanePasses: Copy {
    /// `Σ (x − pivot)`, and whether some `x ≠ pivot`.
    fn first(self, values: &[f64], pivot: f64) -> (f64, bool);
    /// `Σ e` and `Σ e²` for the residuals `e = (x − pivot) − mean`.
    fn second(self, values: &[f64], pivot: f64, mean: f64) -> (f64, f64);
}

/// Combines four lane sums as `(l₀ + l₁) + (l₂ + l₃)`.
#[inline(always)]
pub(crate) fn combine(lanes: [f64; 4]) -> f64 {
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

/// The two passes in portable code (four independent accumulators, which the compiler may
/// vectorise for its build target).
#[derive(Clone, Copy)]
pub(crate) struct PortableLanes;

impl LanePasses for PortableLanes {
    #[inline(always)]
    fn first(self, values: &[f64], pivot: f64) -> (f64, bool) {
        let (chunks, tail) = values.as_chunks::<4>();
        let mut sum = [0.0f64; 4];
        let mut differ = [false; 4];
        for chunk in chunks {
            for lane in 0..4 {
                let x = chunk[lane];
                sum[lane] += x - pivot;
                differ[lane] |= x != pivot;
            }
        }
        for &x in tail {
            sum[0] += x - pivot;
            differ[0] |= x != pivot;
        }
        (combine(sum), differ.contains(&true))
    }

    #[inline(always)]
    fn second(self, values: &[f64], pivot: f64, mean: f64) -> (f64, f64) {
        let (chunks, tail) = values.as_chunks::<4>();
        let mut residual = [0.0f64; 4];
        let mut squares = [0.0f64; 4];
        for chunk in chunks {
            for lane in 0..4 {
                let e = (chunk[lane] - pivot) - mean;
                residual[lane] += e;
                squares[lane] += e * e;
            }
        }
        for &x in tail {
            let e = (x - pivot) - mean;
            residual[0] += e;
            squares[0] += e * e;
        }
        (combine(residual), combine(squares))
    }
}

impl Centre {
    /// Statistics of the finite values among `values[i]` for `i` in `indices`.
    pub fn of_indices(values: &[f64], indices: &[usize]) -> Centre {
        Centre::of_fn(indices.len(), |j| values[indices[j]])
    }

    /// Statistics of the finite values of an iterator.
    pub fn of(values: impl Iterator<Item = f64> + Clone) -> Centre {
        let values: Vec<f64> = values.collect();
        Centre::of_slice(&values)
    }

    /// Statistics of the finite values of a slice.
    ///
    /// The common case — every value finite — takes a branch-free path: one pass for the shifted
    /// sum and whether any value differs from the pivot (none does: a constant slice, exactly),
    /// one for the residuals and squares, four lanes each ([`LanePasses`]), which the compiler
    /// turns into SIMD. A non-finite value makes the sum non-finite (nothing added to ±∞ or NaN
    /// is finite); then (or if the sum overflowed) the slice is redone by [`Centre::of_fn`],
    /// which skips non-finite values one by one. Both compute the same sums in the same lane
    /// order, so they agree to the bit on finite data.
    #[inline]
    pub fn of_slice(values: &[f64]) -> Centre {
        Centre::of_slice_inline(values)
    }

    /// [`Centre::of_slice`], always inlined: for callers that know the length at compile time
    /// (a fixed group size), where the inlined copy is fully unrolled.
    #[inline(always)]
    pub fn of_slice_inline(values: &[f64]) -> Centre {
        Centre::of_slice_with(values, PortableLanes)
    }

    /// [`Centre::of_slice`] with the two passes supplied by the caller ([`PortableLanes`], or a
    /// SIMD copy that computes the same sums, `crate::simd`).
    #[inline(always)]
    pub fn of_slice_with(values: &[f64], passes: impl LanePasses) -> Centre {
        let Some(&pivot) = values.first() else {
            return Centre::of_fn(0, |_| 0.0);
        };
        let (total, differ) = passes.first(values, pivot);
        if !total.is_finite() || !differ {
            return Centre::finish(values, pivot, total, differ, (0.0, 0.0));
        }
        let mean = total / values.len() as f64;
        let sums = passes.second(values, pivot, mean);
        Centre::finish(values, pivot, total, differ, sums)
    }

    /// The statistics from the passes' sums: `total = Σ (x − pivot)`, `differ` (some
    /// `x ≠ pivot`), and the second pass's `(Σ e, Σ e²)`, used only for a finite total and
    /// `differ`.
    #[inline(always)]
    fn finish(values: &[f64], pivot: f64, total: f64, differ: bool, (r, q): (f64, f64)) -> Centre {
        if !total.is_finite() {
            return Centre::of_fn(values.len(), |j| values[j]);
        }
        let count = values.len();
        // Every value finite, so `x − pivot = 0` exactly when `x = pivot` (gradual underflow):
        // the same test as `of_fn`'s.
        if !differ {
            return Centre {
                count,
                pivot,
                shifted_mean: 0.0,
                m2: 0.0,
                constant: true,
            };
        }
        let n = count as f64;
        let mean = total / n;
        Centre {
            count,
            pivot,
            shifted_mean: mean + r / n,
            m2: (q - r * r / n).max(0.0),
            constant: false,
        }
    }

    /// Statistics of the finite values among `get(0), …, get(len − 1)`.
    ///
    /// Two passes, each with four independent accumulators so that the additions overlap
    /// instead of waiting on each other (the sums are still exact to a few ulps: each lane is an
    /// ordinary running sum of a quarter of the values), and non-finite values are skipped by a
    /// select rather than a branch. The second pass sums the residuals `e = (x − pivot) − mean`
    /// and their squares at once: `mean += Σe/n` corrects the mean, and `m2 = Σe² − (Σe)²/n` is
    /// the corrected two-pass sum of squares (Chan, Golub & LeVeque 1983, eq. 1.7).
    #[inline]
    pub fn of_fn(len: usize, get: impl Fn(usize) -> f64) -> Centre {
        let Some(pivot) = (0..len).map(&get).find(|x| x.is_finite()) else {
            return Centre {
                constant: true,
                ..Centre::default()
            };
        };
        let lanes = len / 4 * 4;
        let mut sum = [0.0f64; 4];
        let mut counts = [0usize; 4];
        let mut differ = false;
        let mut first = |j: usize, lane: usize| {
            let x = get(j);
            let finite = x.is_finite();
            let d = if finite { x - pivot } else { 0.0 };
            sum[lane] += d;
            counts[lane] += finite as usize;
            differ |= d != 0.0;
        };
        for j in (0..lanes).step_by(4) {
            first(j, 0);
            first(j + 1, 1);
            first(j + 2, 2);
            first(j + 3, 3);
        }
        for j in lanes..len {
            first(j, 0);
        }
        let count = counts.iter().sum::<usize>();
        if !differ {
            return Centre {
                count,
                pivot,
                shifted_mean: 0.0,
                m2: 0.0,
                constant: true,
            };
        }
        let n = count as f64;
        let mean = ((sum[0] + sum[1]) + (sum[2] + sum[3])) / n;
        let mut residual = [0.0f64; 4];
        let mut squares = [0.0f64; 4];
        let mut second = |j: usize, lane: usize| {
            let x = get(j);
            let e = if x.is_finite() {
                (x - pivot) - mean
            } else {
                0.0
            };
            residual[lane] += e;
            squares[lane] += e * e;
        };
        for j in (0..lanes).step_by(4) {
            second(j, 0);
            second(j + 1, 1);
            second(j + 2, 2);
            second(j + 3, 3);
        }
        for j in lanes..len {
            second(j, 0);
        }
        let r = (residual[0] + residual[1]) + (residual[2] + residual[3]);
        let q = (squares[0] + squares[1]) + (squares[2] + squares[3]);
        Centre {
            count,
            pivot,
            shifted_mean: mean + r / n,
            m2: (q - r * r / n).max(0.0),
            constant: false,
        }
    }

    /// `x − mean`, computed from the shifted values.
    pub fn centred(&self, x: f64) -> f64 {
        if self.constant {
            // Every finite value equals the pivot; exact 0 without rounding noise.
            return if x == self.pivot { 0.0 } else { x - self.pivot };
        }
        (x - self.pivot) - self.shifted_mean
    }

    /// The mean (rounded once).
    pub fn mean(&self) -> f64 {
        self.pivot + self.shifted_mean
    }

    /// The standard deviation of the given kind; `None` when undefined (no values, or one value
    /// with the sample kind).
    pub fn std(&self, kind: StdKind) -> Option<f64> {
        let divisor = match kind {
            StdKind::Population if self.count >= 1 => self.count as f64,
            StdKind::Sample if self.count >= 2 => (self.count - 1) as f64,
            _ => return None,
        };
        Some((self.m2 / divisor).sqrt())
    }
}

/// The `q`-quantile of the finite values (linear interpolation between order statistics, NumPy's
/// default `method="linear"`, Hyndman & Fan type 7); `None` without finite values.
pub(crate) fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let fraction = position - below as f64;
    let (a, b) = (sorted[below], sorted[above]);
    // NumPy's lerp: a + (b − a)·t, switched to b − (b − a)·(1 − t) for t ≥ 0.5.
    let diff = b - a;
    Some(if fraction >= 0.5 {
        b - diff * (1.0 - fraction)
    } else {
        a + diff * fraction
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_values_centre_exactly() {
        let values = [1e9 + 1.0, 1e9 + 2.0, 1e9 + 6.0, f64::NAN];
        let centre = Centre::of(values.iter().copied());
        assert_eq!(centre.count, 3);
        assert_eq!(centre.centred(values[0]), -2.0);
        assert_eq!(centre.centred(values[2]), 3.0);
        assert_eq!(centre.mean(), 1e9 + 3.0);
        assert_eq!(centre.std(StdKind::Sample), Some(7.0f64.sqrt()));
    }

    #[test]
    fn slice_path_equals_the_general_path() {
        // The branch-free slice path and the skipping path agree to the bit on finite data, and
        // the slice path falls back on non-finite values and on overflowing sums.
        let check = |values: &[f64]| {
            let a = Centre::of_slice(values);
            let b = Centre::of_fn(values.len(), |j| values[j]);
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{values:?}");
        };
        let data: Vec<f64> = (0..37).map(|i| (i as f64 * 0.37).sin() * 1e3).collect();
        for len in 0..data.len() {
            check(&data[..len]);
        }
        check(&[1.0, f64::NAN, 3.0, 4.0, 5.0]);
        check(&[f64::INFINITY, 1.0, 2.0]);
        check(&[1e308, 1e308, -1e308, 1e308, 0.5]);
        check(&[2.5; 9]);
        check(&[f64::NAN; 3]);
    }

    #[test]
    fn empty_and_constant() {
        let centre = Centre::of([f64::NAN].into_iter());
        assert_eq!(centre.count, 0);
        assert_eq!(centre.std(StdKind::Population), None);
        let centre = Centre::of([0.1, 0.1, 0.1].into_iter());
        assert!(centre.constant);
        assert_eq!(centre.centred(0.1), 0.0);
        assert_eq!(centre.std(StdKind::Sample), Some(0.0));
    }

    #[test]
    fn quantiles_match_numpy_linear() {
        let check = |values: &[f64], q: f64, expected: Option<f64>| {
            assert_eq!(quantile(values, q), expected, "{values:?} q={q}");
        };
        check(&[], 0.5, None);
        check(&[3.0], 0.85, Some(3.0));
        check(&[1.0, 2.0, 3.0, 4.0], 0.5, Some(2.5));
        check(&[4.0, 1.0, 3.0, 2.0], 0.0, Some(1.0));
        check(&[4.0, 1.0, 3.0, 2.0], 1.0, Some(4.0));
        check(&[0.0, 10.0], 0.85, Some(8.5));
        check(&[f64::NAN, 0.0, 10.0], 0.25, Some(2.5));
    }
}
