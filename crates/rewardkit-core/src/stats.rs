/// Mean, variance, minimum and maximum of a stream of values by Welford's algorithm, which stays
/// accurate when values are large and close together (no `Σx² − (Σx)²/n` cancellation).
///
/// Non-finite values are not folded in; they are counted in [`RunningStats::non_finite`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunningStats {
    count: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    non_finite: u64,
}

impl RunningStats {
    /// Empty statistics.
    pub fn new() -> RunningStats {
        RunningStats::default()
    }

    /// Adds one value.
    pub fn push(&mut self, x: f64) {
        if !x.is_finite() {
            self.non_finite += 1;
            return;
        }
        self.count += 1;
        if self.count == 1 {
            self.mean = x;
            self.min = x;
            self.max = x;
            self.m2 = 0.0;
            return;
        }
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Merges another set of statistics into this one (Chan et al.'s parallel update).
    pub fn merge(&mut self, other: &RunningStats) {
        self.non_finite += other.non_finite;
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            let non_finite = self.non_finite;
            *self = *other;
            self.non_finite = non_finite;
            return;
        }
        let n = (self.count + other.count) as f64;
        let delta = other.mean - self.mean;
        self.mean += delta * other.count as f64 / n;
        self.m2 += other.m2 + delta * delta * self.count as f64 * other.count as f64 / n;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Number of finite values seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Number of non-finite values refused.
    pub fn non_finite(&self) -> u64 {
        self.non_finite
    }

    /// The mean, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }

    /// The population variance, `None` when empty.
    pub fn population_variance(&self) -> Option<f64> {
        (self.count > 0).then(|| self.m2 / self.count as f64)
    }

    /// The sample (Bessel-corrected) variance, `None` with fewer than two values.
    pub fn sample_variance(&self) -> Option<f64> {
        (self.count > 1).then(|| self.m2 / (self.count - 1) as f64)
    }

    /// The minimum, `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The maximum, `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_survives_a_large_offset() {
        let mut stats = RunningStats::new();
        for x in [1e9 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0] {
            stats.push(x);
        }
        assert_eq!(stats.mean(), Some(1e9 + 10.0));
        assert_eq!(stats.sample_variance(), Some(30.0));
        assert_eq!(stats.min(), Some(1e9 + 4.0));
        assert_eq!(stats.max(), Some(1e9 + 16.0));
    }

    #[test]
    fn merge_equals_one_pass_and_counts_non_finite() {
        let values = [3.0, -1.0, f64::NAN, 2.5, 8.0, f64::INFINITY, 0.0];
        let mut whole = RunningStats::new();
        values.iter().for_each(|&x| whole.push(x));
        let mut left = RunningStats::new();
        let mut right = RunningStats::new();
        values[..3].iter().for_each(|&x| left.push(x));
        values[3..].iter().for_each(|&x| right.push(x));
        left.merge(&right);
        assert_eq!(left.count(), 5);
        assert_eq!(left.non_finite(), 2);
        assert!((left.mean().unwrap() - whole.mean().unwrap()).abs() < 1e-12);
        assert!((left.sample_variance().unwrap() - whole.sample_variance().unwrap()).abs() < 1e-12);
        assert_eq!(RunningStats::new().mean(), None);
    }
}
