//! The `math` reward term.

use rewardkit_core::{Meter, Outcome, Reward, RewardOutput, Sample};

use crate::{verify, MathError, MathOptions};

/// The `math` verifier: the sample's reference is the gold answer, the completion the
/// prediction; see the crate documentation for extraction and equivalence.
#[derive(Clone, Debug)]
pub struct Math {
    options: MathOptions,
}

impl Math {
    /// Builds the verifier after validating its options.
    pub fn new(options: MathOptions) -> Result<Math, MathError> {
        options.validate()?;
        Ok(Math { options })
    }

    /// The options in use.
    pub fn options(&self) -> &MathOptions {
        &self.options
    }
}

impl Reward for Math {
    fn kind(&self) -> &str {
        "math"
    }

    fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput {
        let Some(reference) = sample.reference.as_ref() else {
            return Outcome::unscorable("missing reference").into();
        };
        let Some(gold) = reference.text() else {
            return Outcome::unscorable("reference is not text").into();
        };
        let completion = sample.completion.text();
        verify(&gold, &completion, &self.options, meter)
            .outcome(&self.options)
            .into()
    }
}
