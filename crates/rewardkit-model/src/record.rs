//! `rewardkit.json`: how a saved model was trained and how it did.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::{write_atomically, RECORD_FILE};
use crate::train::{EvalMetrics, TrainConfig, TrainReport};
use crate::ModelError;

/// The training record saved next to the weights. `reward_mean`/`reward_std` are the statistics
/// of the validation rewards (both sides of each pair) of the final weights, which the `model`
/// term's `normalize` option uses (OpenRLHF saves the same pair into its model config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// The rewardkit version that trained the model.
    pub rewardkit_version: String,
    /// The training settings (objective, optimizer, schedule, seed, …).
    pub config: TrainConfig,
    /// The training data file.
    pub train_data: String,
    /// Training examples.
    pub train_examples: usize,
    /// Where validation came from (a file, or `last N of the training file`), if any.
    pub validation_data: Option<String>,
    /// Validation examples.
    pub validation_examples: usize,
    /// The run's report: steps, early stopping, history of validations, the best one.
    pub report: TrainReport,
    /// Validation metrics of the saved weights.
    pub final_metrics: Option<EvalMetrics>,
    /// Mean validation reward of the saved weights.
    pub reward_mean: Option<f64>,
    /// Standard deviation of the validation rewards of the saved weights.
    pub reward_std: Option<f64>,
}

impl TrainingRecord {
    /// Writes `rewardkit.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let json =
            serde_json::to_vec_pretty(self).expect("a training record serialises: this is a bug");
        write_atomically(&dir.join(RECORD_FILE), &json)
    }

    /// Reads `rewardkit.json` from `dir`.
    pub fn load(dir: &Path) -> Result<TrainingRecord, ModelError> {
        let path = dir.join(RECORD_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| ModelError::load(&path, format!("unreadable training record: {e}")))
    }
}
