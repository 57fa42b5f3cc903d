//! A reward model: a backbone, a head, and the Hugging Face–style directory it is saved in.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write as _;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::backbone::Backbone;
use crate::encoder::{EncoderBackbone, EncoderConfig};
use crate::hashed::{HashedBackbone, HashedConfig};
use crate::rng::SplitMix64;
use crate::{ModelError, RewardInput};

/// The head on top of the backbone's vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum HeadConfig {
    /// One linear layer to the outputs (`score`, as in `*ForSequenceClassification`).
    Linear,
    /// Two layers, `Linear(width, hidden) → GELU → Linear(hidden, outputs)` (the MLP head
    /// BaseReward recommends; RoBERTa's classification head has the same shape).
    Mlp {
        /// Hidden width.
        hidden: usize,
    },
}

/// Which backbone, with its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
#[non_exhaustive]
pub enum BackboneConfig {
    /// Hashed n-gram features (see [`crate::hashed`]).
    Hashed(HashedConfig),
    /// A BERT-family encoder (see [`crate::encoder`]).
    Encoder(EncoderConfig),
}

/// `config.json` of a saved model: the keys `transformers` reads for any model
/// (`architectures`, `model_type`, `num_labels`, `id2label`) plus the backbone and head settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Class names in the Hugging Face manner.
    pub architectures: Vec<String>,
    /// `rewardkit-hashed`.
    pub model_type: String,
    /// Number of outputs (1 for a single reward; one per attribute for regression).
    pub num_labels: usize,
    /// Output names by index.
    pub id2label: BTreeMap<String, String>,
    /// The backbone.
    pub backbone: BackboneConfig,
    /// The head.
    pub head: HeadConfig,
    /// The rewardkit version that wrote the file.
    pub rewardkit_version: String,
}

impl ModelConfig {
    /// A configuration with outputs named `labels` (one output named `reward` if empty).
    pub fn new(backbone: BackboneConfig, head: HeadConfig, labels: &[String]) -> ModelConfig {
        let labels: Vec<String> = if labels.is_empty() {
            vec!["reward".to_owned()]
        } else {
            labels.to_vec()
        };
        let (architecture, model_type) = match &backbone {
            BackboneConfig::Hashed(_) => (
                "RewardkitHashedForSequenceClassification",
                "rewardkit-hashed",
            ),
            BackboneConfig::Encoder(_) => (
                "RewardkitEncoderForSequenceClassification",
                "rewardkit-encoder",
            ),
        };
        ModelConfig {
            architectures: vec![architecture.to_owned()],
            model_type: model_type.to_owned(),
            num_labels: labels.len(),
            id2label: labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), l.clone()))
                .collect(),
            backbone,
            head,
            rewardkit_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

struct Linear {
    weight: Var, // [out, in], as torch.nn.Linear
    bias: Var,   // [out]
}

impl Linear {
    fn new(
        inputs: usize,
        outputs: usize,
        rng: &mut SplitMix64,
        device: &Device,
    ) -> Result<Linear, ModelError> {
        // torch.nn.Linear's scale: U(−1/√in, 1/√in) has std 1/√(3·in); a normal with that std.
        let std = 1.0 / (3.0 * inputs as f64).sqrt();
        let data: Vec<f32> = (0..inputs * outputs)
            .map(|_| (rng.normal() * std) as f32)
            .collect();
        Ok(Linear {
            weight: Var::from_tensor(&Tensor::from_vec(data, (outputs, inputs), device)?)?,
            bias: Var::zeros(outputs, DType::F32, device)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        Ok(x.matmul(&self.weight.as_tensor().t()?)?
            .broadcast_add(self.bias.as_tensor())?)
    }
}

/// The model: backbone, head and configuration.
pub struct RewardModel {
    config: ModelConfig,
    backbone: Box<dyn Backbone>,
    layers: Vec<(String, Linear)>,
    device: Device,
}

impl std::fmt::Debug for RewardModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewardModel")
            .field("config", &self.config)
            .finish()
    }
}

/// The file names of a saved model directory.
pub const CONFIG_FILE: &str = "config.json";
/// Weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// rewardkit's training record (objective, data, metrics, reward statistics).
pub const RECORD_FILE: &str = "rewardkit.json";

impl RewardModel {
    /// A freshly initialised model; the same seed gives the same weights.
    pub fn new(
        mut config: ModelConfig,
        seed: u64,
        device: &Device,
    ) -> Result<RewardModel, ModelError> {
        if config.num_labels == 0 {
            return Err(ModelError::option(
                "num-labels",
                "a model needs at least one output",
            ));
        }
        let backbone: Box<dyn Backbone> = match &config.backbone {
            BackboneConfig::Hashed(hashed) => {
                Box::new(HashedBackbone::new(hashed.clone(), seed, device)?)
            }
            BackboneConfig::Encoder(encoder) => {
                let encoder = EncoderBackbone::load(encoder.clone(), device)?;
                // Keep the encoder's own config.json in ours, so the saved model stands alone.
                config.backbone = BackboneConfig::Encoder(encoder.config().clone());
                Box::new(encoder)
            }
        };
        RewardModel::with_backbone(config, backbone, seed, device)
    }

    /// A model around a given backbone, with a freshly initialised head.
    fn with_backbone(
        config: ModelConfig,
        backbone: Box<dyn Backbone>,
        seed: u64,
        device: &Device,
    ) -> Result<RewardModel, ModelError> {
        let mut rng = SplitMix64::derived(seed, 2);
        let width = backbone.width();
        let layers = match config.head {
            HeadConfig::Linear => vec![(
                "score".to_owned(),
                Linear::new(width, config.num_labels, &mut rng, device)?,
            )],
            HeadConfig::Mlp { hidden } => {
                if hidden == 0 {
                    return Err(ModelError::option(
                        "head-hidden",
                        "the MLP head needs a hidden width of at least 1",
                    ));
                }
                vec![
                    (
                        "score.dense".to_owned(),
                        Linear::new(width, hidden, &mut rng, device)?,
                    ),
                    (
                        "score.out_proj".to_owned(),
                        Linear::new(hidden, config.num_labels, &mut rng, device)?,
                    ),
                ]
            }
        };
        Ok(RewardModel {
            config,
            backbone,
            layers,
            device: device.clone(),
        })
    }

    /// Builds a model with the given named weights (as saved by [`RewardModel::named_tensors`]).
    /// `dir` is the model directory, where backbones with files of their own (a tokenizer) find
    /// them.
    pub fn from_tensors(
        config: ModelConfig,
        tensors: &HashMap<String, Tensor>,
        dir: &Path,
        device: &Device,
    ) -> Result<RewardModel, ModelError> {
        let backbone: Box<dyn Backbone> = match &config.backbone {
            BackboneConfig::Hashed(hashed) => Box::new(HashedBackbone::from_tensors(
                hashed.clone(),
                tensors,
                device,
            )?),
            BackboneConfig::Encoder(encoder) => Box::new(EncoderBackbone::from_tensors(
                encoder.clone(),
                &dir.join("tokenizer.json"),
                tensors,
                device,
            )?),
        };
        // The head starts with placeholder weights of the right shapes, then is overwritten.
        let mut model = RewardModel::with_backbone(config, backbone, 0, device)?;
        for (name, layer) in &mut model.layers {
            for (suffix, var) in [("weight", &mut layer.weight), ("bias", &mut layer.bias)] {
                let key = format!("{name}.{suffix}");
                let tensor = tensors.get(&key).ok_or_else(|| {
                    ModelError::load(WEIGHTS_FILE, format!("missing tensor `{key}`"))
                })?;
                if tensor.dims() != var.dims() {
                    return Err(ModelError::load(
                        WEIGHTS_FILE,
                        format!(
                            "tensor `{key}` has shape {:?}, config.json implies {:?}",
                            tensor.dims(),
                            var.dims()
                        ),
                    ));
                }
                *var = Var::from_tensor(&tensor.to_dtype(DType::F32)?.to_device(device)?)?;
            }
        }
        Ok(model)
    }

    /// The same model with another maximum input length (words for `hashed`).
    pub fn with_max_length(mut self, max_length: usize) -> Result<RewardModel, ModelError> {
        match &mut self.config.backbone {
            BackboneConfig::Hashed(hashed) => hashed.max_length = max_length,
            BackboneConfig::Encoder(encoder) => encoder.max_length = max_length,
        }
        self.backbone.set_max_length(max_length)?;
        Ok(self)
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The backbone.
    pub fn backbone(&self) -> &dyn Backbone {
        self.backbone.as_ref()
    }

    /// Rewards for a batch: a `[inputs.len(), num_labels]` tensor in the autograd graph.
    pub fn forward(&self, inputs: &[RewardInput]) -> Result<Tensor, ModelError> {
        let mut x = self.backbone.forward(inputs)?;
        let last = self.layers.len() - 1;
        for (i, (_, layer)) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if i < last {
                x = x.gelu()?;
            }
        }
        Ok(x)
    }

    /// Rewards for a batch as numbers: one row of `num_labels` values per input.
    pub fn score(&self, inputs: &[RewardInput]) -> Result<Vec<Vec<f32>>, ModelError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.forward(inputs)?.detach().to_vec2::<f32>()?)
    }

    /// Trainable parameters in a fixed order, with their names in `model.safetensors`.
    pub fn parameters(&self) -> Vec<(String, Var)> {
        let mut params = self.backbone.parameters();
        for (name, layer) in &self.layers {
            params.push((format!("{name}.weight"), layer.weight.clone()));
            params.push((format!("{name}.bias"), layer.bias.clone()));
        }
        params
    }

    /// The current weights by name.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut state = self.backbone.state();
        for (name, layer) in &self.layers {
            state.push((format!("{name}.weight"), layer.weight.clone()));
            state.push((format!("{name}.bias"), layer.bias.clone()));
        }
        state
            .into_iter()
            .map(|(name, var)| (name, var.as_detached_tensor()))
            .collect()
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if needed), each through
    /// a temporary file renamed into place.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let config = serde_json::to_vec_pretty(&self.config)
            .expect("a model config serialises: this is a bug");
        write_atomically(&dir.join(CONFIG_FILE), &config)?;
        let bytes = safetensors::serialize(self.named_tensors(), None)
            .map_err(|e| ModelError::load(dir.join(WEIGHTS_FILE), e.to_string()))?;
        write_atomically(&dir.join(WEIGHTS_FILE), &bytes)?;
        self.backbone.save_files(dir)
    }

    /// Loads a model directory written by [`RewardModel::save`].
    pub fn load(dir: &Path, device: &Device) -> Result<RewardModel, ModelError> {
        let config_path = dir.join(CONFIG_FILE);
        let text = fs::read_to_string(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
        let config: ModelConfig = serde_json::from_str(&text).map_err(|e| {
            ModelError::load(&config_path, format!("not a rewardkit model config ({e}); expected the config.json `rewardkit train` writes"))
        })?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = fs::read(&weights_path).map_err(|e| ModelError::io(&weights_path, e))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|e| ModelError::load(&weights_path, e.to_string()))?;
        RewardModel::from_tensors(config, &tensors, dir, device).map_err(|e| match e {
            ModelError::Load { reason, .. } => ModelError::load(&weights_path, reason),
            other => other,
        })
    }
}

/// Writes a file through a temporary file in the same directory, flushed to disk, then renamed
/// over the destination: a reader (or a crash) sees the old file or the new one, never half.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        ModelError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(head: HeadConfig) -> ModelConfig {
        let hashed = HashedConfig {
            buckets: 64,
            width: 4,
            ..HashedConfig::default()
        };
        ModelConfig::new(BackboneConfig::Hashed(hashed), head, &[])
    }

    #[test]
    fn same_seed_same_weights_and_save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = [
            RewardInput::new("q", "a fine answer"),
            RewardInput::new("q", "no"),
        ];
        for head in [HeadConfig::Linear, HeadConfig::Mlp { hidden: 3 }] {
            let a = RewardModel::new(tiny(head), 5, &Device::Cpu).unwrap();
            let b = RewardModel::new(tiny(head), 5, &Device::Cpu).unwrap();
            let c = RewardModel::new(tiny(head), 6, &Device::Cpu).unwrap();
            let scores = a.score(&inputs).unwrap();
            assert_eq!(scores, b.score(&inputs).unwrap());
            assert_ne!(scores, c.score(&inputs).unwrap());
            a.save(dir.path()).unwrap();
            let loaded = RewardModel::load(dir.path(), &Device::Cpu).unwrap();
            assert_eq!(loaded.score(&inputs).unwrap(), scores);
            assert_eq!(loaded.config(), a.config());
        }
    }

    #[test]
    fn broken_directories_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let error = RewardModel::load(dir.path(), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(error.contains("config.json"), "{error}");
        let model = RewardModel::new(tiny(HeadConfig::Linear), 1, &Device::Cpu).unwrap();
        model.save(dir.path()).unwrap();
        // A config whose width disagrees with the weights.
        let mut config = tiny(HeadConfig::Linear);
        config.backbone = BackboneConfig::Hashed(HashedConfig {
            buckets: 64,
            width: 5,
            ..HashedConfig::default()
        });
        fs::write(
            dir.path().join(CONFIG_FILE),
            serde_json::to_vec(&config).unwrap(),
        )
        .unwrap();
        let error = RewardModel::load(dir.path(), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("model.safetensors") && error.contains("shape"),
            "{error}"
        );
        fs::write(dir.path().join(CONFIG_FILE), "{\"model_type\": \"bert\"}").unwrap();
        let error = RewardModel::load(dir.path(), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a rewardkit model config"), "{error}");
    }
}
