//! State that a transform carries from one batch to the next: running moments (PAR's running
//! "Meanstd", "Clip" and "Minmax" baselines) and message counts (ONI's count decay).
//!
//! Both are plain data with `serde` support, so a caller can save them between runs (the spec's
//! `state_file`) and restore them exactly: a restored state continues bit for bit where the saved
//! one stopped. For that, the floats of [`RunningMoments`] are written as strings of their
//! shortest round-trip decimal (`"-79.47133784175435"`) and read back with Rust's correctly
//! rounded parser: a JSON *number* goes through serde_json's fast float parser, which may be one
//! ulp off (its `float_roundtrip` feature is off in this workspace), and a running mean one ulp
//! off drifts from the uninterrupted run. Plain numbers are accepted when reading (a state
//! written by hand).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ShapeError, StdKind};

/// Count, mean, spread and extremes of every finite value seen so far, by Welford's update
/// (accurate when values are large and close together: no `Σx² − (Σx)²/n` cancellation).
/// Non-finite values are not folded in; they are counted in `non_finite`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunningMoments {
    /// Number of finite values seen.
    pub count: u64,
    /// Their mean (0 while `count` is 0).
    #[serde(with = "exact")]
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    #[serde(with = "exact")]
    pub m2: f64,
    /// The smallest (meaningless while `count` is 0).
    #[serde(with = "exact")]
    pub min: f64,
    /// The largest (meaningless while `count` is 0).
    #[serde(with = "exact")]
    pub max: f64,
    /// Number of non-finite values refused.
    pub non_finite: u64,
}

impl RunningMoments {
    /// Nothing seen yet.
    pub fn new() -> RunningMoments {
        RunningMoments::default()
    }

    /// Adds one value (a non-finite one is only counted).
    pub fn push(&mut self, x: f64) {
        if !x.is_finite() {
            self.non_finite += 1;
            return;
        }
        self.count += 1;
        if self.count == 1 {
            (self.mean, self.m2, self.min, self.max) = (x, 0.0, x, x);
            return;
        }
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Checks a state read from outside (a state file): the error names what is wrong.
    pub fn validate(&self) -> Result<(), ShapeError> {
        let ok = self.mean.is_finite()
            && self.m2.is_finite()
            && self.m2 >= 0.0
            && (self.count == 0
                || (self.min.is_finite() && self.max.is_finite() && self.min <= self.max));
        if ok {
            Ok(())
        } else {
            Err(ShapeError::invalid(
                "running state",
                format!("{self:?}"),
                "finite mean and m2 ≥ 0, and min ≤ max once a value was seen",
            ))
        }
    }

    /// The mean, `None` when nothing was seen.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }

    /// The population or sample std; `None` when undefined (nothing seen, or one value for the
    /// sample std).
    pub fn std(&self, kind: StdKind) -> Option<f64> {
        let divisor = match kind {
            StdKind::Population => self.count,
            StdKind::Sample => self.count.saturating_sub(1),
        };
        (divisor > 0).then(|| (self.m2 / divisor as f64).sqrt())
    }

    /// The smallest and largest values, `None` when nothing was seen.
    pub fn range(&self) -> Option<(f64, f64)> {
        (self.count > 0).then_some((self.min, self.max))
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

/// How often each message (any string key: a caption, a prompt id, a hashed state) was seen —
/// ONI's `N(msg)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageCounts {
    /// The count of each key seen so far (sorted, so a saved state is stable).
    pub counts: BTreeMap<String, u64>,
}

impl MessageCounts {
    /// No message seen yet.
    pub fn new() -> MessageCounts {
        MessageCounts::default()
    }

    /// Adds one batch of messages (`None`: a sample without a key, not counted) and returns each
    /// sample's count *including the whole batch*: a key's count is the number of times it was
    /// seen before the batch plus its occurrences in the batch, the same for every occurrence.
    /// This makes a batch's result independent of the order of its samples (a choice
    /// **\[recon\]**: ONI's learner counts messages as they stream in). A sample without a key
    /// gets 0.
    pub fn add_batch<S: AsRef<str>>(&mut self, keys: &[Option<S>]) -> Vec<u64> {
        for key in keys.iter().flatten() {
            *self.counts.entry(key.as_ref().to_owned()).or_insert(0) += 1;
        }
        keys.iter()
            .map(|key| key.as_ref().map_or(0, |k| self.counts[k.as_ref()]))
            .collect()
    }

    /// What [`MessageCounts::add_batch`] would return, without adding: a caller that must keep
    /// the counts unchanged until a whole pass succeeds peeks first and adds at the end (no copy
    /// of the table per batch).
    pub fn batch_counts<S: AsRef<str>>(&self, keys: &[Option<S>]) -> Vec<u64> {
        let mut in_batch: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        for key in keys.iter().flatten() {
            *in_batch.entry(key.as_ref()).or_insert(0) += 1;
        }
        keys.iter()
            .map(|key| {
                key.as_ref().map_or(0, |k| {
                    self.counts.get(k.as_ref()).copied().unwrap_or(0) + in_batch[k.as_ref()]
                })
            })
            .collect()
    }
}

/// ONI's count decay (Zheng et al. 2024, facebookresearch/oni `learner.py`; methods.md §15) for a
/// batch: `r_int / N^β`, with `N` each sample's count after [`MessageCounts::add_batch`]. With the
/// extrinsic reward as another term, a weighted sum `α_ext·r_ext + α_int·(r_int/N^β)` is ONI's
/// total reward. NaN for a non-finite value or a sample without a key (`N = 0`); the message is
/// counted either way.
pub fn count_decay<S: AsRef<str>>(
    values: &[f64],
    keys: &[Option<S>],
    counts: &mut MessageCounts,
    beta: f64,
) -> Result<Vec<f64>, ShapeError> {
    ShapeError::check_len("keys", keys.len(), values.len(), "value")?;
    if !beta.is_finite() {
        return Err(ShapeError::invalid("beta", beta, "a finite exponent"));
    }
    decay_by_counts(values, &counts.add_batch(keys), beta)
}

/// The decay of [`count_decay`] with the counts given: `x / N^β`, NaN for a non-finite value or
/// `N = 0`.
pub fn decay_by_counts(values: &[f64], counts: &[u64], beta: f64) -> Result<Vec<f64>, ShapeError> {
    ShapeError::check_len("counts", counts.len(), values.len(), "value")?;
    if !beta.is_finite() {
        return Err(ShapeError::invalid("beta", beta, "a finite exponent"));
    }
    Ok(values
        .iter()
        .zip(counts)
        .map(|(&x, &n)| {
            if x.is_finite() && n > 0 {
                x / (n as f64).powf(beta)
            } else {
                f64::NAN
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_match_hand_values_and_survive_a_round_trip() {
        let mut m = RunningMoments::new();
        assert_eq!(
            (m.mean(), m.std(StdKind::Sample), m.range()),
            (None, None, None)
        );
        for x in [1e9 + 4.0, 1e9 + 7.0, f64::NAN, 1e9 + 13.0, 1e9 + 16.0] {
            m.push(x);
        }
        assert_eq!(m.mean(), Some(1e9 + 10.0));
        assert_eq!(m.std(StdKind::Sample), Some(30f64.sqrt()));
        assert_eq!(m.std(StdKind::Population), Some(22.5f64.sqrt()));
        assert_eq!(m.range(), Some((1e9 + 4.0, 1e9 + 16.0)));
        assert_eq!(m.non_finite, 1);
        let text = serde_json::to_string(&m).unwrap();
        let back: RunningMoments = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        back.validate().unwrap();
        let bad = RunningMoments {
            count: 2,
            m2: -1.0,
            ..m
        };
        assert!(bad.validate().is_err());
        assert!(serde_json::from_str::<RunningMoments>(r#"{"count": 1}"#).is_err());
    }

    #[test]
    fn counts_include_the_whole_batch() {
        let mut counts = MessageCounts::new();
        let keys = [Some("a"), Some("b"), Some("a"), None];
        assert_eq!(counts.batch_counts(&keys), [2, 1, 2, 0]);
        assert!(counts.counts.is_empty());
        assert_eq!(counts.add_batch(&keys), [2, 1, 2, 0]);
        assert_eq!(counts.batch_counts(&[Some("a"), Some("z")]), [3, 1]);
        assert_eq!(counts.add_batch(&[Some("a")]), [3]);
        let out = count_decay(
            &[1.0, 1.0, f64::NAN],
            &[Some("a"), Some("c"), Some("c")],
            &mut counts,
            3.0,
        )
        .unwrap();
        assert_eq!(out[0], 1.0 / 64.0);
        assert_eq!(out[1], 1.0 / 8.0);
        assert!(out[2].is_nan());
        assert_eq!(counts.counts["c"], 2);
        assert!(count_decay(&[1.0], &[Some("a"), None], &mut counts, 3.0).is_err());
        assert!(count_decay(&[1.0], &[None::<&str>], &mut counts, f64::NAN).is_err());
    }
}
