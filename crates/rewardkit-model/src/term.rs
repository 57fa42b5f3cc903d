//! The `model` reward term: scores samples with a saved model directory.
//!
//! Batches are formed after sorting the admitted samples by length (the backbone's measure:
//! tokens for the decoder, characters for the other backbones), so that texts of similar length
//! share a batch and little of each batch is padding; `max_batch_tokens` also caps the padded size
//! of a batch (its size times its longest member), so that a few very long texts do not make one
//! huge batch. Either way every sample's score is the one it gets alone (batched == single), so
//! the order and the budget change speed and memory, never results.

use std::path::{Path, PathBuf};

use candle_core::Device;
use rewardkit_core::{Budget, Meter, Outcome, Reward, RewardOutput, Sample};
use serde::{Deserialize, Serialize};

use crate::model::{RewardModel, RECORD_FILE};
use crate::record::TrainingRecord;
use crate::template::{template_dirs, ChatTemplate, ChatTemplateConfig};
use crate::{ModelError, RewardInput, Truncation};

/// Options of the `model` term in a spec.
///
/// ```toml
/// [[term]]
/// kind = "model"
/// [term.options]
/// path = "rm-out"        # a directory written by `rewardkit train`
/// batch_size = 32
/// normalize = true       # (r − mean) / std with the validation statistics saved at training
/// max_batch_tokens = 8192 # optional: cap on samples × longest sample per batch
/// truncation = "left"    # optional: overrides the side the model was trained with
/// chat_template = "tokenizer" # optional: overrides the model's saved chat template
/// ```
///
/// `truncation` and `chat_template` default to what the model directory's `config.json` saved
/// at training (`left` and `builtin` for models saved before these settings existed, and for
/// Hugging Face decoder reward models). Overriding them scores texts unlike those the model was
/// trained on; the override exists for published reward models, whose card names a template.
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
    /// Largest padded size of a batch — samples × the longest one, in the backbone's length
    /// unit (tokens for decoders, characters otherwise); `None` = only `batch_size` limits it.
    /// A sample longer than the budget is scored alone.
    #[serde(default)]
    pub max_batch_tokens: Option<usize>,
    /// Which end of a too-long input is cut: `left` or `right` (default: the model's own).
    #[serde(default)]
    pub truncation: Option<Truncation>,
    /// How chat samples become text: `builtin`, `none`, `tokenizer` (`tokenizer:NAME`), or the
    /// path of a `.jinja` file or `tokenizer_config.json` (default: the model's own). `tokenizer`
    /// looks in the model directory, then in its backbone's source directory.
    #[serde(default)]
    pub chat_template: Option<String>,
}

/// Splits samples into batches: indices sorted by length (stable, so equal lengths keep their
/// order), then cut greedily where the next sample would exceed `batch_size` samples or make
/// `samples × longest` exceed `budget`. Every index appears in exactly one batch.
pub fn plan_batches(
    lengths: &[usize],
    batch_size: usize,
    budget: Option<usize>,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Sorted ascending: the newcomer is the longest of the batch it joins.
        let padded = (current.len() + 1) * lengths[i].max(1);
        let fits = current.len() < batch_size.max(1) && budget.is_none_or(|b| padded <= b);
        if !fits && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

fn default_batch_size() -> usize {
    32
}

/// A learned reward model as a reward term.
#[derive(Debug)]
pub struct ModelTerm {
    model: RewardModel,
    template: ChatTemplate,
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
        if options.max_batch_tokens == Some(0) {
            return Err(ModelError::option("max_batch_tokens", "must be at least 1"));
        }
        let mut model_dir_config = RewardModel::load(&options.path, &Device::Cpu)?;
        if let Some(max_length) = options.max_length {
            model_dir_config = model_dir_config.with_max_length(max_length)?;
        }
        if let Some(truncation) = options.truncation {
            model_dir_config = model_dir_config.with_truncation(truncation)?;
        }
        if let Some(value) = &options.chat_template {
            let source = model_dir_config.backbone_dir().map(Path::to_path_buf);
            let dirs = template_dirs(&options.path, source.as_deref());
            let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
            let config = ChatTemplateConfig::resolve("chat_template", value, &dirs)?;
            model_dir_config = model_dir_config.with_chat_template(config)?;
        }
        let model = model_dir_config;
        let template = model.chat_template()?;
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
            template,
            options,
            shift,
            scale,
        })
    }

    /// The model's text for a sample (its chat template applied).
    fn input(&self, sample: &Sample) -> Result<RewardInput, ModelError> {
        RewardInput::render_sample(sample, &self.template)
    }

    fn score_inputs(&self, inputs: &[RewardInput]) -> Vec<Outcome> {
        match self.model.score(inputs) {
            Ok(rows) => rows
                .into_iter()
                .map(|row| {
                    Outcome::scored((f64::from(row[self.options.output]) - self.shift) * self.scale)
                })
                .collect(),
            Err(error) => inputs
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
        match self.input(sample) {
            Ok(input) => self.score_inputs(&[input]).remove(0).into(),
            Err(error) => Outcome::failed(error.to_string()).into(),
        }
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
        // Render each admitted sample once; a sample its template refuses fails alone.
        let mut rendered: Vec<(usize, RewardInput)> = Vec::with_capacity(admitted.len());
        for i in admitted {
            match self.input(&samples[i]) {
                Ok(input) => rendered.push((i, input)),
                Err(error) => outputs[i] = Some(Outcome::failed(error.to_string()).into()),
            }
        }
        let lengths: Vec<usize> = rendered
            .iter()
            .map(|(_, input)| self.model.backbone().length(input))
            .collect();
        for plan in plan_batches(
            &lengths,
            self.options.batch_size,
            self.options.max_batch_tokens,
        ) {
            let batch: Vec<RewardInput> = plan.iter().map(|&k| rendered[k].1.clone()).collect();
            for (&k, outcome) in plan.iter().zip(self.score_inputs(&batch)) {
                outputs[rendered[k].0] = Some(outcome.into());
            }
        }
        outputs
            .into_iter()
            .map(|o| o.expect("every sample is scored or refused: this is a bug"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::plan_batches;

    fn check(lengths: &[usize], batch_size: usize, budget: Option<usize>, expected: &[&[usize]]) {
        let plan = plan_batches(lengths, batch_size, budget);
        assert_eq!(
            plan, expected,
            "{lengths:?} batch {batch_size} budget {budget:?}"
        );
    }

    #[test]
    fn batches_are_sorted_by_length_and_cut_by_size_and_budget() {
        check(&[], 4, None, &[]);
        check(&[5], 4, Some(1), &[&[0]]);
        check(&[3, 1, 2], 8, None, &[&[1, 2, 0]]);
        check(&[3, 1, 2], 2, None, &[&[1, 2], &[0]]);
        check(&[4, 4, 4, 4], 8, Some(8), &[&[0, 1], &[2, 3]]);
        check(&[4, 4, 4, 4], 8, Some(7), &[&[0], &[1], &[2], &[3]]);
        // A sample over the budget is scored alone; the short ones still share a batch.
        check(&[100, 2, 3, 2], 8, Some(10), &[&[1, 3, 2], &[0]]);
        // Sorted 2, 2, 5, 9: 3×5 = 15 fits a budget of 16, 4×9 = 36 does not.
        check(&[2, 5, 9, 2], 8, Some(16), &[&[0, 3, 1], &[2]]);
        // With 14, 3×5 = 15 no longer fits: 5 starts a batch, and 2×9 = 18 sends 9 on alone.
        check(&[2, 5, 9, 2], 8, Some(14), &[&[0, 3], &[1], &[2]]);
        check(&[1, 1, 1, 1, 1], 2, Some(100), &[&[0, 1], &[2, 3], &[4]]);
        // Empty texts count as length 1, so a budget still bounds the batch.
        check(&[0, 0, 0], 8, Some(2), &[&[0, 1], &[2]]);
    }
}
