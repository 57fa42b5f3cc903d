//! A reward model: a backbone, a head, and the Hugging Face–style directory it is saved in.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write as _;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::backbone::Backbone;
use crate::decoder::{DecoderBackbone, DecoderConfig};
use crate::encoder::{EncoderBackbone, EncoderConfig};
use crate::hashed::{HashedBackbone, HashedConfig};
use crate::rng::SplitMix64;
use crate::template::{ChatTemplate, ChatTemplateConfig};
use crate::{ModelError, RewardInput, Truncation};

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
    /// BERT's pooler and classifier: `Linear(width, width) → tanh → Linear(width, outputs)`.
    /// With an encoder and `[CLS]` pooling this is exactly `BertForSequenceClassification`, and
    /// the model is saved in that format (see [`RewardModel::save`]).
    BertPooler,
}

impl HeadConfig {
    /// A short description for logs (`linear head`, `MLP head, 64 hidden`, …).
    pub fn describe(&self) -> String {
        match self {
            HeadConfig::Linear => "linear head".to_owned(),
            HeadConfig::Mlp { hidden } => format!("MLP head, {hidden} hidden"),
            HeadConfig::BertPooler => "BERT pooler head (dense + tanh, classifier)".to_owned(),
        }
    }
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
    /// A Qwen2/Qwen3/Llama decoder (see [`crate::decoder`]), frozen.
    Decoder(DecoderConfig),
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
    /// Which end of an input longer than the backbone's `max_length` is cut. Models saved before
    /// this setting existed have no such key and get `left`, what they were trained with.
    #[serde(default)]
    pub truncation: Truncation,
    /// How chat lists become text before tokenisation (see [`crate::template`]); a Jinja template
    /// is saved whole, so the directory renders the same way wherever it goes. Absent in models
    /// saved before this setting existed: the built-in template, what they were trained with.
    #[serde(default)]
    pub chat_template: ChatTemplateConfig,
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
            _ if bert_compatible(&backbone, head) => ("BertForSequenceClassification", "bert"),
            BackboneConfig::Hashed(_) => (
                "RewardkitHashedForSequenceClassification",
                "rewardkit-hashed",
            ),
            BackboneConfig::Encoder(_) => (
                "RewardkitEncoderForSequenceClassification",
                "rewardkit-encoder",
            ),
            BackboneConfig::Decoder(_) => (
                "RewardkitDecoderForSequenceClassification",
                "rewardkit-decoder",
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
            truncation: Truncation::default(),
            chat_template: ChatTemplateConfig::default(),
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
            BackboneConfig::Decoder(decoder) => {
                // A frozen decoder under a fresh head (head-only training).
                let tensors = crate::decoder::load_safetensors(&decoder.source, device)?;
                Box::new(DecoderBackbone::from_tensors(
                    decoder.clone(),
                    &decoder.source.join("tokenizer.json"),
                    &tensors,
                    device,
                )?)
            }
        };
        RewardModel::with_backbone(config, backbone, seed, device)
    }

    /// A model around a given backbone, with a freshly initialised head.
    fn with_backbone(
        config: ModelConfig,
        mut backbone: Box<dyn Backbone>,
        seed: u64,
        device: &Device,
    ) -> Result<RewardModel, ModelError> {
        backbone.set_truncation(config.truncation)?;
        let mut rng = SplitMix64::derived(seed, 2);
        let width = backbone.width();
        let layers = match config.head {
            HeadConfig::Linear => vec![(
                "score".to_owned(),
                Linear::new(width, config.num_labels, &mut rng, device)?,
            )],
            HeadConfig::BertPooler => vec![
                (
                    "score.dense".to_owned(),
                    Linear::new(width, width, &mut rng, device)?,
                ),
                (
                    "score.out_proj".to_owned(),
                    Linear::new(width, config.num_labels, &mut rng, device)?,
                ),
            ],
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
            BackboneConfig::Decoder(decoder) => Box::new(DecoderBackbone::from_tensors(
                decoder.clone(),
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
                // A BERT-compatible save names the head as transformers does.
                let bert_key = bert_name(&key);
                let tensor = tensors
                    .get(&key)
                    .or_else(|| tensors.get(&bert_key))
                    .ok_or_else(|| {
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
            BackboneConfig::Decoder(decoder) => decoder.max_length = max_length,
        }
        self.backbone.set_max_length(max_length)?;
        Ok(self)
    }

    /// The same model cutting the other end of too-long inputs (see [`Truncation`]).
    pub fn with_truncation(mut self, truncation: Truncation) -> Result<RewardModel, ModelError> {
        self.backbone.set_truncation(truncation)?;
        self.config.truncation = truncation;
        Ok(self)
    }

    /// The same model rendering chat lists with another template (checked to compile).
    pub fn with_chat_template(
        mut self,
        chat_template: ChatTemplateConfig,
    ) -> Result<RewardModel, ModelError> {
        ChatTemplate::new(&chat_template)?;
        self.config.chat_template = chat_template;
        Ok(self)
    }

    /// The compiled chat template of the configuration.
    pub fn chat_template(&self) -> Result<ChatTemplate, ModelError> {
        ChatTemplate::new(&self.config.chat_template)
    }

    /// The directory of the backbone's files (an encoder's or decoder's source), where a
    /// `tokenizer` chat template is looked for; `None` for the hashed backbone.
    pub fn backbone_dir(&self) -> Option<&Path> {
        match &self.config.backbone {
            BackboneConfig::Hashed(_) => None,
            BackboneConfig::Encoder(encoder) => Some(&encoder.source),
            BackboneConfig::Decoder(decoder) => Some(&decoder.source),
        }
    }

    /// The same model with its outputs renamed (one output named `reward` if `labels` is
    /// empty), for training a loaded model on another objective: a Bradley–Terry model started
    /// from a one-attribute regression model (HelpSteer2-Preference). The number of outputs
    /// cannot change.
    pub fn with_labels(mut self, labels: &[String]) -> Result<RewardModel, ModelError> {
        let labels: Vec<String> = if labels.is_empty() {
            vec!["reward".to_owned()]
        } else {
            labels.to_vec()
        };
        if labels.len() != self.config.num_labels {
            return Err(ModelError::option(
                "init",
                format!(
                    "the model has {} output(s) ({}), the objective needs {} ({})",
                    self.config.num_labels,
                    self.config
                        .id2label
                        .values()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    labels.len(),
                    labels.join(", ")
                ),
            ));
        }
        self.config.id2label = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.clone()))
            .collect();
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
        self.head(&self.backbone.forward(inputs)?)
    }

    /// The head alone: rewards `[rows, num_labels]` from backbone vectors `[rows, width]` (what
    /// [`Backbone::forward`] returns). The trainer calls it on cached vectors of a frozen
    /// backbone.
    pub fn head(&self, features: &Tensor) -> Result<Tensor, ModelError> {
        let mut x = features.clone();
        let last = self.layers.len() - 1;
        for (i, (_, layer)) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if i < last {
                x = match self.config.head {
                    HeadConfig::BertPooler => x.tanh()?,
                    _ => x.gelu()?,
                };
            }
        }
        Ok(x)
    }

    /// Rewards for a batch as numbers: one row of `num_labels` values per input.
    pub fn score(&self, inputs: &[RewardInput]) -> Result<Vec<Vec<f32>>, ModelError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        // No autograd graph: the encoder takes its inference path (see `encoder::without_grad`).
        let rewards = crate::encoder::without_grad(|| self.forward(inputs))?;
        Ok(rewards.detach().to_vec2::<f32>()?)
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

    /// Whether [`RewardModel::save`] writes this model in `BertForSequenceClassification`
    /// format (an encoder with `[CLS]` pooling under the `bert-pooler` head).
    pub fn is_bert_compatible(&self) -> bool {
        bert_compatible(&self.config.backbone, self.config.head)
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if needed), each through
    /// a temporary file renamed into place.
    ///
    /// When [`RewardModel::is_bert_compatible`], the directory is also a
    /// `BertForSequenceClassification` checkpoint: `config.json` carries the encoder's BERT keys
    /// at top level (with `architectures = ["BertForSequenceClassification"]`, `model_type =
    /// "bert"`, `num_labels`, `id2label`, `label2id`) next to rewardkit's own, and the tensors
    /// have transformers' names (`bert.…`, `bert.pooler.dense.…`, `classifier.…`), so
    /// `AutoModelForSequenceClassification.from_pretrained(dir)` computes the same scores.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let mut config =
            serde_json::to_value(&self.config).expect("a model config serialises: this is a bug");
        let mut tensors = self.named_tensors();
        if let (true, BackboneConfig::Encoder(encoder), Some(object)) = (
            self.is_bert_compatible(),
            &self.config.backbone,
            config.as_object_mut(),
        ) {
            if let Some(bert) = encoder.bert.as_object() {
                for (key, value) in bert {
                    if !object.contains_key(key) {
                        object.insert(key.clone(), value.clone());
                    }
                }
            }
            let label2id: serde_json::Map<String, serde_json::Value> = self
                .config
                .id2label
                .iter()
                .filter_map(|(i, l)| Some((l.clone(), serde_json::json!(i.parse::<u64>().ok()?))))
                .collect();
            object.insert("label2id".to_owned(), label2id.into());
            for (name, _) in &mut tensors {
                *name = bert_name(name);
            }
        }
        let config =
            serde_json::to_vec_pretty(&config).expect("a model config serialises: this is a bug");
        write_atomically(&dir.join(CONFIG_FILE), &config)?;
        let bytes = safetensors::serialize(tensors, None)
            .map_err(|e| ModelError::load(dir.join(WEIGHTS_FILE), e.to_string()))?;
        write_atomically(&dir.join(WEIGHTS_FILE), &bytes)?;
        self.backbone.save_files(dir)
    }

    /// Loads a model directory written by [`RewardModel::save`], or a Hugging Face
    /// sequence-classification reward model whose `config.json` names one of
    /// [`crate::decoder::ARCHITECTURES`] (see [`RewardModel::load_hf_decoder`]).
    pub fn load(dir: &Path, device: &Device) -> Result<RewardModel, ModelError> {
        let config_path = dir.join(CONFIG_FILE);
        let text = fs::read_to_string(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::load(&config_path, format!("not JSON: {e}")))?;
        if json.get("backbone").is_none() {
            let architectures: Vec<&str> = json
                .get("architectures")
                .and_then(|a| a.as_array())
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            if architectures
                .iter()
                .any(|a| crate::decoder::ARCHITECTURES.contains(a))
            {
                return RewardModel::load_hf_decoder(dir, None, device);
            }
            return Err(ModelError::load(
                &config_path,
                format!(
                    "not a rewardkit model config (no `backbone`) and `architectures` {architectures:?} names none of the Hugging Face reward models rewardkit loads ({}); expected the config.json `rewardkit train` writes, or one of those",
                    crate::decoder::ARCHITECTURES.join(", ")
                ),
            ));
        }
        let config: ModelConfig = serde_json::from_value(json).map_err(|e| {
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

impl RewardModel {
    /// Loads a Hugging Face `Qwen2ForSequenceClassification`, `Qwen3ForSequenceClassification`
    /// or `LlamaForSequenceClassification` directory (see [`crate::decoder`]): the decoder, and
    /// its bias-free `score` head as this crate's linear head with a zero bias. Output names come
    /// from `id2label`.
    pub fn load_hf_decoder(
        dir: &Path,
        max_length: Option<usize>,
        device: &Device,
    ) -> Result<RewardModel, ModelError> {
        let decoder_config = DecoderBackbone::config_for(dir, max_length)?;
        let tensors = crate::decoder::load_safetensors(dir, device)?;
        let backbone = DecoderBackbone::from_tensors(
            decoder_config.clone(),
            &dir.join("tokenizer.json"),
            &tensors,
            device,
        )?;
        let num_labels = backbone.shape().num_labels;
        let score = tensors.get("score.weight").ok_or_else(|| {
            ModelError::load(dir, "missing tensor `score.weight` (the reward head)")
        })?;
        if score.dims() != [num_labels, backbone.shape().hidden_size] {
            return Err(ModelError::load(
                dir,
                format!(
                    "tensor `score.weight` has shape {:?}, config.json implies [{num_labels}, {}]",
                    score.dims(),
                    backbone.shape().hidden_size
                ),
            ));
        }
        let labels: Vec<String> = (0..num_labels)
            .map(|i| {
                decoder_config
                    .hf
                    .get("id2label")
                    .and_then(|m| m.get(i.to_string()))
                    .and_then(|v| v.as_str())
                    .map_or_else(|| format!("LABEL_{i}"), str::to_owned)
            })
            .collect();
        let config = ModelConfig::new(
            BackboneConfig::Decoder(decoder_config),
            HeadConfig::Linear,
            &labels,
        );
        let mut model = RewardModel::with_backbone(config, Box::new(backbone), 0, device)?;
        let layer = &mut model.layers[0].1;
        layer.weight = Var::from_tensor(&score.to_dtype(DType::F32)?.to_device(device)?)?;
        layer.bias = Var::zeros(num_labels, DType::F32, device)?;
        // A published reward model is scored with its own chat template, as `transformers` users
        // apply it before scoring: the default when the directory has one (a spec's
        // `chat_template` still overrides it). Without one, chat lists use the built-in template.
        if let Some(template) = crate::template::tokenizer_template("chat_template", dir)? {
            model = model.with_chat_template(template)?;
        }
        Ok(model)
    }
}

/// Whether a configuration is exactly `BertForSequenceClassification`: the BERT pooler reads the
/// `[CLS]` vector (`pooled = tanh(W_p·h_cls + b_p)`) and the classifier is linear
/// (`logits = W_c·pooled + b_c`), which is this crate's encoder with `[CLS]` pooling under the
/// `bert-pooler` head. Mean pooling has no BERT counterpart (the pooler only sees `[CLS]`), and
/// the linear and MLP heads lack the tanh layer or use GELU, so those are saved in rewardkit's
/// own format only.
fn bert_compatible(backbone: &BackboneConfig, head: HeadConfig) -> bool {
    matches!(
        (backbone, head),
        (BackboneConfig::Encoder(encoder), HeadConfig::BertPooler)
            if encoder.pooling == crate::encoder::Pooling::Cls
    )
}

/// The transformers name of a tensor of a BERT-compatible model.
fn bert_name(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("backbone.") {
        format!("bert.{rest}")
    } else if let Some(rest) = name.strip_prefix("score.dense.") {
        format!("bert.pooler.dense.{rest}")
    } else if let Some(rest) = name.strip_prefix("score.out_proj.") {
        format!("classifier.{rest}")
    } else {
        name.to_owned()
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
