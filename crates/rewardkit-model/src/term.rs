//! The `model` reward term: scores samples with a saved model directory.

use std::path::{Path, PathBuf};

use candle_core::Device;
use rewardkit_core::{Budget, Meter, Outcome, Reward, RewardOutput, Sample};
use serde::{Deserialize, Serialize};

use crate::model::{RewardModel, RECORD_FILE};
use crate::record::TrainingRecord;
use crate::{ModelError, RewardInput};

/// Options of the `model` term in a spec.
///
/// ```toml
/// [[term]]
/// kind = "model"
/// [term.options]
/// path = "rm-out"        # a directory written by `rewardkit train`
/// batch_size = 32
/// normalize = true       # (r − mean) / std with the validation statistics saved at training
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelTermOptions {
    /// The model directory.
    pub path: PathBuf,
    /// Samples per forward pass.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Overrides the model's maximum input length (words for `hashed`).
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Normalise rewards by the validation mean/std saved in `rewardkit.json`.
    #[serde(default)]
    pub normalize: bool,
    /// Which output to use as the reward, for models with several (default 0).
    #[serde(default)]
    pub output: usize,
}

fn default_batch_size() -> usize {
    32
}

/// A learned reward model as a reward term.
#[derive(Debug)]
pub struct ModelTerm {
    model: RewardModel,
    options: ModelTermOptions,
    shift: f64,
    scale: f64,
}

impl ModelTerm {
    /// Loads the model directory named in the options.
    pub fn new(options: ModelTermOptions) -> Result<ModelTerm, ModelError> {
        if options.batch_size == 0 {
            return Err(ModelError::option("batch_size", "must be at least 1"));
        }
        let mut model_dir_config = RewardModel::load(&options.path, &Device::Cpu)?;
        if let Some(max_length) = options.max_length {
            model_dir_config = model_dir_config.with_max_length(max_length)?;
        }
        let model = model_dir_config;
        if options.output >= model.config().num_labels {
            return Err(ModelError::option(
                "output",
                format!(
                    "the model has {} output(s), so `output` must be below that",
                    model.config().num_labels
                ),
            ));
        }
        let (shift, scale) = if options.normalize {
            let record = TrainingRecord::load(&options.path)?;
            match (record.reward_mean, record.reward_std) {
                (Some(mean), Some(std)) if std > 0.0 => (mean, 1.0 / std),
                _ => {
                    return Err(ModelError::load(
                        Path::new(&options.path).join(RECORD_FILE),
                        "`normalize = true` needs the validation reward mean and std, which this model has not saved (train it with validation data)",
                    ))
                }
            }
        } else {
            (0.0, 1.0)
        };
        Ok(ModelTerm {
            model,
            options,
            shift,
            scale,
        })
    }

    fn score_inputs(&self, samples: &[&Sample]) -> Vec<Outcome> {
        let inputs: Vec<RewardInput> = samples
            .iter()
            .map(|s| RewardInput::from_sample(s))
            .collect();
        match self.model.score(&inputs) {
            Ok(rows) => rows
                .into_iter()
                .map(|row| {
                    Outcome::scored((f64::from(row[self.options.output]) - self.shift) * self.scale)
                })
                .collect(),
            Err(error) => samples
                .iter()
                .map(|_| Outcome::failed(error.to_string()))
                .collect(),
        }
    }
}

impl Reward for ModelTerm {
    fn kind(&self) -> &str {
        "model"
    }

    fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput {
        let size = sample.prompt.text().len() + sample.completion.text().len();
        if let Err(e) = meter.check_input(size) {
            return e.into_outcome().into();
        }
        self.score_inputs(&[sample]).remove(0).into()
    }

    fn score_batch(&self, samples: &[Sample], budget: &Budget) -> Vec<RewardOutput> {
        let mut outputs: Vec<Option<RewardOutput>> = vec![None; samples.len()];
        let mut admitted = Vec::new();
        for (i, sample) in samples.iter().enumerate() {
            let size = sample.prompt.text().len() + sample.completion.text().len();
            match budget.meter().check_input(size) {
                Ok(()) => admitted.push(i),
                Err(e) => outputs[i] = Some(e.into_outcome().into()),
            }
        }
        for chunk in admitted.chunks(self.options.batch_size) {
            let batch: Vec<&Sample> = chunk.iter().map(|&i| &samples[i]).collect();
            for (&i, outcome) in chunk.iter().zip(self.score_inputs(&batch)) {
                outputs[i] = Some(outcome.into());
            }
        }
        outputs
            .into_iter()
            .map(|o| o.expect("every sample is scored or refused: this is a bug"))
            .collect()
    }
}
