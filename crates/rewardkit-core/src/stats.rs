use serde::{Deserialize, Serialize};

/// Mean, variance, minimum and maximum of a stream of values by Welford's algorithm, which stays
/// accurate when values are large and close together (no `Σx² − (Σx)²/n` cancellation).
///
/// Non-finite values are not folded in; they are counted in [`RunningStats::non_finite`].
///
/// The statistics are plain serde data, so a caller can save them between runs (a spec's
/// `state_file`) and restore them exactly: a restored state continues bit for bit where the saved
/// one stopped. For that, the floats are written as strings of their shortest round-trip decimal
/// (`"-79.47133784175435"`) and read back with Rust's correctly rounded parser: a JSON *number*
/// goes through serde_json's fast float parser, which may be one ulp off, and a running mean one
/// ulp off drifts away from the uninterrupted run. Plain numbers are accepted when reading (a
/// state written by hand); a state read from outside should be checked with
/// [`RunningStats::validate`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunningStats {
    count: u64,
    #[serde(with = "exact")]
    mean: f64,
    #[serde(with = "exact")]
    m2: f64,
    #[serde(with = "exact")]
    min: f64,
    #[serde(with = "exact")]
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

    /// Checks statistics read from outside (a state file): `Err` says what was expected.
    pub fn validate(&self) -> Result<(), String> {
        let ok = self.mean.is_finite()
            && self.m2.is_finite()
            && self.m2 >= 0.0
            && (self.count == 0
                || (self.min.is_finite() && self.max.is_finite() && self.min <= self.max));
        if ok {
            Ok(())
        } else {
            Err(format!(
                "finite mean and m2 ≥ 0, and min ≤ max once a value was seen (got {self:?})"
            ))
        }
    }
}

/// Floats as strings of their shortest round-trip decimal; read from a string or a number.
mod exact {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{x:?}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        struct Exact;
        impl de::Visitor<'_> for Exact {
            type Value = f64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number, or a string holding one")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<f64, E> {
                text.parse()
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(text), &self))
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<f64, E> {
                Ok(x)
            }
            fn visit_i64<E: de::Error>(self, x: i64) -> Result<f64, E> {
                Ok(x as f64)
            }
            fn visit_u64<E: de::Error>(self, x: u64) -> Result<f64, E> {
                Ok(x as f64)
            }
        }
        deserializer.deserialize_any(Exact)
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

    /// The workspace builds serde_json with `float_roundtrip`: every f64 printed as a JSON number
    /// parses back to itself (rewards sent to the server, saved multipliers). These values are
    /// ones the default fast parser reads one ulp off.
    #[test]
    fn json_numbers_parse_back_exactly() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = f64::from_bits(state >> 2) * if state & 1 == 0 { 1.0 } else { -1.0 };
            if !x.is_finite() {
                continue;
            }
            let back: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{x:e}");
        }
    }

    #[test]
    fn a_saved_state_reads_back_exactly_and_is_checked() {
        let mut stats = RunningStats::new();
        for x in [1e9 + 4.0, 1e9 + 7.0, f64::NAN, 1e9 + 13.0, 0.1 + 0.2] {
            stats.push(x);
        }
        let text = serde_json::to_string(&stats).unwrap();
        let back: RunningStats = serde_json::from_str(&text).unwrap();
        assert_eq!(back, stats);
        back.validate().unwrap();
        // Plain numbers are accepted; unknown or missing fields are not.
        let by_hand: RunningStats = serde_json::from_str(
            r#"{"count": 1, "mean": 2, "m2": 0.0, "min": 2, "max": 2, "non_finite": 0}"#,
        )
        .unwrap();
        assert_eq!(by_hand.mean(), Some(2.0));
        assert!(serde_json::from_str::<RunningStats>(r#"{"count": 1}"#).is_err());
        let bad: RunningStats = serde_json::from_str(
            r#"{"count": 2, "mean": 0, "m2": -1, "min": 0, "max": 0, "non_finite": 0}"#,
        )
        .unwrap();
        assert!(bad.validate().unwrap_err().contains("m2 ≥ 0"));
    }
}
