//! State that a transform carries from one batch to the next: running moments (PAR's running
//! "Meanstd", "Clip" and "Minmax" baselines) and message counts (ONI's count decay).
//!
//! Both are plain data with `serde` support, so a caller can save them between runs (the spec's
//! `state_file`) and restore them exactly: a restored state continues bit for bit where the saved
//! one stopped. The moments are rewardkit-core's [`RunningStats`] (Welford's update; its docs say
//! how its floats are saved exactly).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use rewardkit_core::RunningStats;

use crate::{ShapeError, StdKind};

/// The population or sample standard deviation of running statistics; `None` when undefined
/// (nothing seen, or a single value for the sample std).
pub fn running_std(stats: &RunningStats, kind: StdKind) -> Option<f64> {
    match kind {
        StdKind::Population => stats.population_variance(),
        StdKind::Sample => stats.sample_variance(),
    }
    .map(f64::sqrt)
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
    fn running_std_is_population_or_sample() {
        let mut m = RunningStats::new();
        assert_eq!(running_std(&m, StdKind::Sample), None);
        m.push(1e9 + 4.0);
        assert_eq!(running_std(&m, StdKind::Population), Some(0.0));
        assert_eq!(running_std(&m, StdKind::Sample), None);
        for x in [1e9 + 7.0, f64::NAN, 1e9 + 13.0, 1e9 + 16.0] {
            m.push(x);
        }
        assert_eq!(running_std(&m, StdKind::Sample), Some(30f64.sqrt()));
        assert_eq!(running_std(&m, StdKind::Population), Some(22.5f64.sqrt()));
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
