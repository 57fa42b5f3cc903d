//! Stable location and spread of a set of finite values, the building block of every group
//! statistic in this crate.
//!
//! Values are first shifted by a *pivot* (the first finite value), then averaged in two passes
//! (a mean, then a correction by the mean of the residuals). When the values are close together
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

impl Centre {
    /// Statistics of the finite values among `values[i]` for `i` in `indices`.
    pub fn of_indices(values: &[f64], indices: impl Iterator<Item = usize> + Clone) -> Centre {
        Centre::of(indices.map(|i| values[i]))
    }

    /// Statistics of the finite values of an iterator (iterated three times).
    pub fn of(values: impl Iterator<Item = f64> + Clone) -> Centre {
        let finite = values.filter(|x| x.is_finite());
        let mut count = 0usize;
        let mut pivot = 0.0;
        let mut sum = 0.0;
        let mut constant = true;
        for x in finite.clone() {
            if count == 0 {
                pivot = x;
            } else if x != pivot {
                constant = false;
            }
            sum += x - pivot;
            count += 1;
        }
        if count == 0 {
            return Centre {
                constant: true,
                ..Centre::default()
            };
        }
        let n = count as f64;
        let mut mean = sum / n;
        let residual: f64 = finite.clone().map(|x| (x - pivot) - mean).sum();
        mean += residual / n;
        let m2 = if constant {
            0.0
        } else {
            finite
                .map(|x| {
                    let d = (x - pivot) - mean;
                    d * d
                })
                .sum()
        };
        Centre {
            count,
            pivot,
            shifted_mean: if constant { 0.0 } else { mean },
            m2,
            constant,
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
