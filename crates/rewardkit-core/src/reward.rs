use crate::{Budget, Meter, Outcome, Sample};

/// What a reward term says about one sample: its outcome, plus one outcome per named
/// sub-component (in the order of [`Reward::component_names`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RewardOutput {
    /// The term's outcome.
    pub outcome: Outcome,
    /// Sub-component outcomes, aligned with [`Reward::component_names`]; empty if it has none.
    pub components: Vec<Outcome>,
}

impl RewardOutput {
    /// An output with no sub-components.
    pub fn new(outcome: Outcome) -> RewardOutput {
        RewardOutput {
            outcome,
            components: Vec::new(),
        }
    }

    /// An output whose term and every one of `n` components share the same non-score (used when
    /// the whole term could not run).
    pub fn all(outcome: Outcome, n: usize) -> RewardOutput {
        RewardOutput {
            components: vec![outcome.clone(); n],
            outcome,
        }
    }
}

impl From<Outcome> for RewardOutput {
    fn from(outcome: Outcome) -> Self {
        RewardOutput::new(outcome)
    }
}

/// A reward term: something that turns samples into outcomes.
///
/// This seam is deliberately small (TEI's `Backend` idea): rule-based verifiers implement
/// [`Reward::score`] for one sample; batched back-ends (learned models) override
/// [`Reward::score_batch`]. Implementations must be deterministic for a given sample whatever the
/// batch it arrives in (Architecture Invariant 2), must not panic, and must respect the budget.
pub trait Reward: Send + Sync {
    /// The kind of term (`gsm8k`, `tool_call`, …), for reports.
    fn kind(&self) -> &str;

    /// Names of the sub-components this term reports besides its total (e.g. `format`,
    /// `correctness`); empty by default.
    fn component_names(&self) -> &[&'static str] {
        &[]
    }

    /// Scores one sample, spending from `meter`.
    fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput;

    /// Scores a batch; each sample gets a fresh meter from `budget`, so a sample scores the same
    /// alone or in any batch.
    fn score_batch(&self, samples: &[Sample], budget: &Budget) -> Vec<RewardOutput> {
        samples
            .iter()
            .map(|sample| self.score(sample, &mut budget.meter()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Length;

    impl Reward for Length {
        fn kind(&self) -> &str {
            "length"
        }

        fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput {
            let text = sample.completion.text();
            if let Err(e) = meter.check_input(text.len()) {
                return e.into_outcome().into();
            }
            Outcome::scored(text.len() as f64).into()
        }
    }

    #[test]
    fn default_batch_scores_each_sample_with_its_own_meter() {
        let budget = Budget {
            max_input_bytes: 3,
            ..Budget::default()
        };
        let samples = [Sample::new("", "abc"), Sample::new("", "abcd")];
        let outputs = Length.score_batch(&samples, &budget);
        assert_eq!(outputs[0].outcome, Outcome::scored(3.0));
        assert_eq!(outputs[1].outcome, Outcome::unscorable("input too large"));
    }
}
