//! The `decoder` backbone (inference): published Hugging Face sequence-classification reward
//! models on Qwen2, Qwen3 and Llama — `Qwen2ForSequenceClassification`,
//! `Qwen3ForSequenceClassification`, `LlamaForSequenceClassification` — loaded from their model
//! directory (`config.json`, `tokenizer.json`, `model.safetensors` or sharded safetensors with
//! `model.safetensors.index.json`).
//!
//! # What is computed
//!
//! `transformers`' `GenericForSequenceClassification`: the decoder's final hidden states (after
//! the last RMSNorm), a linear `score` head without bias, read at the **last non-padding token**
//! of each input. `transformers` finds that token as the rightmost position whose id differs from
//! `pad_token_id` (any position when the config has none); this backbone does the same within the
//! real tokens of each input, so a text that ends with the padding token's id (Qwen's
//! `<|endoftext|>`) is read where `transformers` reads it.
//!
//! The decoder layer is the Llama layer (Touvron et al. 2023): pre-norm RMSNorm (Zhang & Sennrich
//! 2019, `x / √(mean(x²) + ε) · γ`), grouped-query attention (Ainslie et al. 2023) with rotary
//! position embeddings in the `rotate_half` layout (Su et al. 2021, RoFormer eq. 34), and a SwiGLU
//! feed-forward `down(silu(gate(x)) ⊙ up(x))` (Shazeer 2020). The three families differ only in
//! details read from `config.json`: Qwen2 has biases on the query/key/value projections; Qwen3
//! has none but normalises each head's queries and keys with an RMSNorm before the rotation, and
//! may set `head_dim` independently of the hidden size; Llama may have `attention_bias` and
//! `mlp_bias`, and Llama 3.1 rescales the rotary frequencies (`rope_type = "llama3"`). Other
//! rotary scalings (linear, dynamic, YaRN) and sliding-window attention are refused with an
//! error rather than approximated.
//!
//! # Batching
//!
//! Inputs are padded on the right. Attention is causal, so a real token never sees the padding
//! that follows it and a row's score does not depend on its batch (Architecture Invariant 2:
//! batched == single up to floating-point rounding). Only the rows' last tokens reach the final
//! norm and the head.
//!
//! # Precision and memory
//!
//! Weights are converted to `f32` when loaded (published checkpoints are usually `bfloat16`),
//! so a model takes four bytes per parameter in memory: an 8-billion-parameter reward model needs
//! about 32 GB. Inference only: the weights are frozen ([`Backbone::parameters`] is empty).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var, D};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::backbone::Backbone;
use crate::{ModelError, RewardInput};

/// The `architectures` names this backbone loads.
pub const ARCHITECTURES: &[&str] = &[
    "Qwen2ForSequenceClassification",
    "Qwen3ForSequenceClassification",
    "LlamaForSequenceClassification",
];

/// Longest default input (tokens) when neither the spec nor the model says less.
const DEFAULT_MAX_LENGTH: usize = 4096;

/// Settings of the decoder backbone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderConfig {
    /// The Hugging Face model directory.
    pub source: PathBuf,
    /// Tokens kept per input (from the end: the response is what is judged).
    pub max_length: usize,
    /// The model's own `config.json`.
    #[serde(default)]
    pub hf: Value,
}

/// Which model family a config describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Llama 2/3/3.1 (`model_type = "llama"`).
    Llama,
    /// Qwen2 / Qwen2.5 (`model_type = "qwen2"`).
    Qwen2,
    /// Qwen3 (`model_type = "qwen3"`).
    Qwen3,
}

/// Rotary frequency scaling of Llama 3.1 (`rope_type = "llama3"`).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Llama3Scaling {
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original_max_position_embeddings: f64,
}

/// The parts of a decoder `config.json` the forward pass needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderShape {
    /// The family.
    pub family: Family,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm ε.
    pub rms_norm_eps: f64,
    /// Rotary base θ.
    pub rope_theta: f64,
    llama3: Option<Llama3Scaling>,
    /// Positions the model was trained for.
    pub max_position_embeddings: usize,
    /// The padding token's id, if the config names one.
    pub pad_token_id: Option<u32>,
    /// Number of outputs of the `score` head.
    pub num_labels: usize,
    qkv_bias: bool,
    o_bias: bool,
    mlp_bias: bool,
    qk_norm: bool,
}

fn get<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    config.get(key).filter(|v| !v.is_null())
}

impl DecoderShape {
    /// Reads and checks a `config.json` (`path` names the file in errors).
    pub fn from_config(config: &Value, path: &Path) -> Result<DecoderShape, ModelError> {
        let bad = |reason: String| ModelError::load(path, reason);
        let usize_field = |key: &str| -> Result<usize, ModelError> {
            get(config, key)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| bad(format!("field `{key}`: expected a non-negative integer")))
        };
        let float_or = |key: &str, default: f64| -> Result<f64, ModelError> {
            match get(config, key) {
                None => Ok(default),
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| bad(format!("field `{key}`: expected a number"))),
            }
        };
        let bool_or = |key: &str, default: bool| -> Result<bool, ModelError> {
            match get(config, key) {
                None => Ok(default),
                Some(v) => v
                    .as_bool()
                    .ok_or_else(|| bad(format!("field `{key}`: expected true or false"))),
            }
        };
        let model_type = get(config, "model_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let family = match model_type {
            "llama" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            other => {
                return Err(bad(format!(
                    "field `model_type`: expected `llama`, `qwen2` or `qwen3`, got `{other}`"
                )))
            }
        };
        let act = get(config, "hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("silu");
        if act != "silu" {
            return Err(bad(format!(
                "field `hidden_act`: only `silu` is supported, got `{act}`"
            )));
        }
        if bool_or("use_sliding_window", false)? {
            return Err(bad(
                "field `use_sliding_window`: sliding-window attention is not supported".into(),
            ));
        }
        let hidden_size = usize_field("hidden_size")?;
        let num_attention_heads = usize_field("num_attention_heads")?;
        let num_key_value_heads = match get(config, "num_key_value_heads") {
            None => num_attention_heads,
            Some(_) => usize_field("num_key_value_heads")?,
        };
        if num_attention_heads == 0
            || num_key_value_heads == 0
            || num_attention_heads % num_key_value_heads != 0
        {
            return Err(bad(format!(
                "field `num_key_value_heads`: expected a divisor of num_attention_heads ({num_attention_heads}), got {num_key_value_heads}"
            )));
        }
        let head_dim =
            match get(config, "head_dim") {
                Some(_) => usize_field("head_dim")?,
                None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
                None => return Err(bad(
                    "field `hidden_size`: not a multiple of num_attention_heads (and no head_dim)"
                        .into(),
                )),
            };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(bad(format!(
                "field `head_dim`: rotary embeddings need an even head width, got {head_dim}"
            )));
        }
        // Rotary settings: `rope_parameters` (transformers ≥ 5) or `rope_theta` + `rope_scaling`.
        let rope = get(config, "rope_parameters").or_else(|| get(config, "rope_scaling"));
        let rope_theta = match rope.and_then(|r| get(r, "rope_theta")) {
            Some(v) => v.as_f64().ok_or_else(|| {
                bad("field `rope_parameters.rope_theta`: expected a number".into())
            })?,
            None => float_or("rope_theta", 10_000.0)?,
        };
        let rope_type = rope
            .and_then(|r| get(r, "rope_type").or_else(|| get(r, "type")))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let llama3 = match rope_type {
            "default" => None,
            "llama3" => {
                let r = rope.expect("a rope type was read from it");
                let f = |key: &str| -> Result<f64, ModelError> {
                    get(r, key).and_then(Value::as_f64).ok_or_else(|| {
                        bad(format!(
                            "rope scaling `llama3`: field `{key}`: expected a number"
                        ))
                    })
                };
                let scaling = Llama3Scaling {
                    factor: f("factor")?,
                    low_freq_factor: f("low_freq_factor")?,
                    high_freq_factor: f("high_freq_factor")?,
                    original_max_position_embeddings: f("original_max_position_embeddings")?,
                };
                if scaling.high_freq_factor <= scaling.low_freq_factor {
                    return Err(bad(
                        "rope scaling `llama3`: high_freq_factor must exceed low_freq_factor"
                            .into(),
                    ));
                }
                Some(scaling)
            }
            other => {
                return Err(bad(format!(
                    "rope type `{other}` is not supported (only `default` and `llama3`)"
                )))
            }
        };
        let pad_token_id = match get(config, "pad_token_id") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| bad("field `pad_token_id`: expected a token id".into()))?,
            ),
        };
        let num_labels = match (get(config, "num_labels"), get(config, "id2label")) {
            (Some(_), _) => usize_field("num_labels")?,
            (None, Some(Value::Object(map))) => map.len(),
            (None, _) => 2, // transformers' default
        };
        let attention_bias = bool_or("attention_bias", false)?;
        let (qkv_bias, o_bias, qk_norm) = match family {
            Family::Llama => (attention_bias, attention_bias, false),
            Family::Qwen2 => (true, false, false),
            Family::Qwen3 => (attention_bias, attention_bias, true),
        };
        Ok(DecoderShape {
            family,
            vocab_size: usize_field("vocab_size")?,
            hidden_size,
            intermediate_size: usize_field("intermediate_size")?,
            num_hidden_layers: usize_field("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: float_or("rms_norm_eps", 1e-6)?,
            rope_theta,
            llama3,
            max_position_embeddings: usize_field("max_position_embeddings")?,
            pad_token_id,
            num_labels,
            qkv_bias,
            o_bias,
            mlp_bias: family == Family::Llama && bool_or("mlp_bias", false)?,
            qk_norm,
        })
    }

    /// The rotary inverse frequencies, `θ^(−2i/d)` for `i < d/2`, in `f32` as `transformers`
    /// computes them, with Llama 3.1's rescaling when configured.
    fn inverse_frequencies(&self) -> Vec<f32> {
        let d = self.head_dim;
        (0..d / 2)
            .map(|i| {
                let inv = 1.0 / self.rope_theta.powf((2 * i) as f64 / d as f64);
                let inv = f64::from(inv as f32);
                match self.llama3 {
                    None => inv as f32,
                    Some(s) => {
                        // transformers' `_compute_llama3_parameters`.
                        let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
                        let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
                        let wavelen = 2.0 * std::f64::consts::PI / inv;
                        let scaled = if wavelen > low_wavelen {
                            inv / s.factor
                        } else {
                            inv
                        };
                        // Neither high nor low frequency (wavelengths are finite and positive).
                        let medium = (high_wavelen..=low_wavelen).contains(&wavelen);
                        if medium {
                            let smooth = (s.original_max_position_embeddings / wavelen
                                - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            ((1.0 - smooth) * scaled / s.factor + smooth * scaled) as f32
                        } else {
                            scaled as f32
                        }
                    }
                }
            })
            .collect()
    }
}

/// Looks up a named weight of a given shape.
type GetTensor<'a> = dyn FnMut(&str, &[usize]) -> Result<Tensor, ModelError> + 'a;

struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let y = x.broadcast_matmul(&self.weight.t()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

struct Layer {
    input_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// RMSNorm over the last dimension: `x / √(mean(x²) + ε) · γ` (Zhang & Sennrich 2019, eq. 4).
fn rms_norm(x: &Tensor, gamma: &Tensor, eps: f64) -> Result<Tensor, ModelError> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(x.broadcast_div(&(ms + eps)?.sqrt()?)?
        .broadcast_mul(gamma)?)
}

fn softmax_last(x: &Tensor) -> Result<Tensor, ModelError> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// Rotary embedding in the `rotate_half` layout: `x·cos + [−x₂, x₁]·sin` on `[b, heads, len, d]`.
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor, ModelError> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
}

/// A Llama-family decoder with its tokenizer.
pub struct DecoderBackbone {
    config: DecoderConfig,
    shape: DecoderShape,
    tokenizer: Tokenizer,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    inverse_frequencies: Vec<f32>,
    named: Vec<(String, Var)>,
    device: Device,
}

impl std::fmt::Debug for DecoderBackbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecoderBackbone")
            .field("shape", &self.shape)
            .finish()
    }
}

/// Reads every tensor of a model directory: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`.
pub fn load_safetensors(
    dir: &Path,
    device: &Device,
) -> Result<HashMap<String, Tensor>, ModelError> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if single.exists() {
        vec![single]
    } else if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::load(&index, format!("not JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                ModelError::load(
                    &index,
                    "field `weight_map`: expected an object of file names",
                )
            })?;
        let mut files: Vec<PathBuf> = Vec::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| {
                ModelError::load(
                    &index,
                    format!("field `weight_map.{tensor}`: expected a file name"),
                )
            })?;
            let path = dir.join(file);
            if !files.contains(&path) {
                files.push(path);
            }
        }
        files
    } else {
        return Err(ModelError::load(
            dir,
            "no model.safetensors and no model.safetensors.index.json",
        ));
    };
    let mut tensors = HashMap::new();
    for file in files {
        // candle maps the file read-only; the f32 conversion in `from_tensors` copies.
        let shard = candle_core::safetensors::load(&file, device)
            .map_err(|e| ModelError::load(&file, e.to_string()))?;
        tensors.extend(shard);
    }
    Ok(tensors)
}

fn read_config(dir: &Path) -> Result<Value, ModelError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::load(&path, format!("not JSON: {e}")))
}

impl DecoderBackbone {
    /// The settings for a model directory: its `config.json`, and `max_length` if given
    /// (default: the model's positions, at most 4096).
    pub fn config_for(dir: &Path, max_length: Option<usize>) -> Result<DecoderConfig, ModelError> {
        let hf = read_config(dir)?;
        let shape = DecoderShape::from_config(&hf, &dir.join("config.json"))?;
        Ok(DecoderConfig {
            source: dir.to_path_buf(),
            max_length: max_length
                .unwrap_or_else(|| shape.max_position_embeddings.min(DEFAULT_MAX_LENGTH)),
            hf,
        })
    }

    /// Builds the decoder from loaded tensors named as `*ForSequenceClassification` saves them
    /// (`model.embed_tokens.weight`, `model.layers.0.…`, `model.norm.weight`).
    pub fn from_tensors(
        config: DecoderConfig,
        tokenizer_path: &Path,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<DecoderBackbone, ModelError> {
        let config_path = config.source.join("config.json");
        let shape = DecoderShape::from_config(&config.hf, &config_path)?;
        check_max_length(config.max_length, &shape)?;
        let mut tokenizer = Tokenizer::from_file(tokenizer_path)
            .map_err(|e| ModelError::load(tokenizer_path, e.to_string()))?;
        tokenizer.with_padding(None);
        crate::data::set_truncation(
            &mut tokenizer,
            Some(config.max_length),
            Some(crate::Truncation::Left),
        )
        .map_err(|e| ModelError::load(tokenizer_path, e))?;

        let weights = config.source.join("model.safetensors");
        let mut named = Vec::new();
        let mut get = |name: &str, dims: &[usize]| -> Result<Tensor, ModelError> {
            let key = format!("model.{name}");
            let tensor = tensors
                .get(&key)
                .ok_or_else(|| ModelError::load(&weights, format!("missing tensor `{key}`")))?;
            if tensor.dims() != dims {
                return Err(ModelError::load(
                    &weights,
                    format!(
                        "tensor `{key}` has shape {:?}, config.json implies {dims:?}",
                        tensor.dims()
                    ),
                ));
            }
            let tensor = tensor.to_dtype(DType::F32)?.to_device(device)?;
            named.push((key, Var::from_tensor(&tensor)?));
            Ok(tensor)
        };
        let (h, hd, i) = (shape.hidden_size, shape.head_dim, shape.intermediate_size);
        let (qw, kvw) = (
            shape.num_attention_heads * hd,
            shape.num_key_value_heads * hd,
        );
        let linear = |get: &mut GetTensor<'_>,
                      prefix: &str,
                      out: usize,
                      inp: usize,
                      bias: bool|
         -> Result<Linear, ModelError> {
            Ok(Linear {
                weight: get(&format!("{prefix}.weight"), &[out, inp])?,
                bias: if bias {
                    Some(get(&format!("{prefix}.bias"), &[out])?)
                } else {
                    None
                },
            })
        };
        let embed = get("embed_tokens.weight", &[shape.vocab_size, h])?;
        let mut layers = Vec::with_capacity(shape.num_hidden_layers);
        for l in 0..shape.num_hidden_layers {
            let p = format!("layers.{l}");
            let a = format!("{p}.self_attn");
            let m = format!("{p}.mlp");
            layers.push(Layer {
                input_norm: get(&format!("{p}.input_layernorm.weight"), &[h])?,
                q: linear(&mut get, &format!("{a}.q_proj"), qw, h, shape.qkv_bias)?,
                k: linear(&mut get, &format!("{a}.k_proj"), kvw, h, shape.qkv_bias)?,
                v: linear(&mut get, &format!("{a}.v_proj"), kvw, h, shape.qkv_bias)?,
                o: linear(&mut get, &format!("{a}.o_proj"), h, qw, shape.o_bias)?,
                q_norm: if shape.qk_norm {
                    Some(get(&format!("{a}.q_norm.weight"), &[hd])?)
                } else {
                    None
                },
                k_norm: if shape.qk_norm {
                    Some(get(&format!("{a}.k_norm.weight"), &[hd])?)
                } else {
                    None
                },
                post_norm: get(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
                gate: linear(&mut get, &format!("{m}.gate_proj"), i, h, shape.mlp_bias)?,
                up: linear(&mut get, &format!("{m}.up_proj"), i, h, shape.mlp_bias)?,
                down: linear(&mut get, &format!("{m}.down_proj"), h, i, shape.mlp_bias)?,
            });
        }
        let norm = get("norm.weight", &[h])?;
        Ok(DecoderBackbone {
            inverse_frequencies: shape.inverse_frequencies(),
            config,
            shape,
            tokenizer,
            embed,
            layers,
            norm,
            named,
            device: device.clone(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// The validated model shape.
    pub fn shape(&self) -> &DecoderShape {
        &self.shape
    }

    /// Token ids of each input (prompt + response as one text, the tokenizer's special tokens
    /// added, truncated to `max_length` at the model's truncation side). A text that already
    /// starts with the BOS token the tokenizer adds — a chat template wrote it — does not get a
    /// second one: `transformers`' `apply_chat_template(tokenize=True)` does not add special
    /// tokens either.
    pub fn token_ids(&self, inputs: &[RewardInput]) -> Result<Vec<Vec<u32>>, ModelError> {
        inputs
            .iter()
            .map(|input| {
                let text = format!("{}{}", input.prompt, input.response);
                let encode = |special: bool| {
                    self.tokenizer.encode(text.as_str(), special).map_err(|e| {
                        ModelError::load(
                            self.config.source.join("tokenizer.json"),
                            format!("tokenising: {e}"),
                        )
                    })
                };
                let encoding = encode(true)?;
                let (ids, added) = (encoding.get_ids(), encoding.get_special_tokens_mask());
                if ids.len() > 1 && added.first() == Some(&1) && ids[0] == ids[1] {
                    // Cut again without the added token, so max_length counts the text's own.
                    return Ok(encode(false)?.get_ids().to_vec());
                }
                Ok(ids.to_vec())
            })
            .collect()
    }

    /// Where `transformers` reads a row's score: the rightmost token that is not the padding
    /// token (the last token when the config names none, position 0 when every token is it).
    fn read_position(&self, ids: &[u32]) -> usize {
        match self.shape.pad_token_id {
            None => ids.len().saturating_sub(1),
            Some(pad) => ids.iter().rposition(|&t| t != pad).unwrap_or(0),
        }
    }

    /// Final hidden states (after the last norm) at each input's read position: `[batch, hidden]`.
    pub fn pooled(&self, inputs: &[RewardInput]) -> Result<Tensor, ModelError> {
        let rows = self.token_ids(inputs)?;
        let b = rows.len();
        let len = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let (h, hd) = (self.shape.hidden_size, self.shape.head_dim);
        let (heads, kv_heads) = (
            self.shape.num_attention_heads,
            self.shape.num_key_value_heads,
        );
        let mut ids = Vec::with_capacity(b * len);
        let mut read = Vec::with_capacity(b);
        for (r, row) in rows.iter().enumerate() {
            if row.is_empty() {
                return Err(ModelError::option(
                    "input",
                    "the tokenizer produced no token for an input (an empty text without a BOS token)",
                ));
            }
            if let Some(&bad) = row.iter().find(|&&t| t as usize >= self.shape.vocab_size) {
                return Err(ModelError::load(
                    self.config.source.join("tokenizer.json"),
                    format!(
                        "token id {bad} is outside the model's vocabulary ({} ids)",
                        self.shape.vocab_size
                    ),
                ));
            }
            ids.extend(
                row.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, len - row.len())),
            );
            read.push((r * len + self.read_position(row)) as u32);
        }
        let ids = Tensor::from_vec(ids, b * len, &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?.reshape((b, len, h))?;

        // Rotary tables [len, hd]: angle = position · inverse frequency, in f32 as transformers.
        let mut angles = Vec::with_capacity(len * hd);
        for p in 0..len {
            let half: Vec<f32> = self
                .inverse_frequencies
                .iter()
                .map(|&f| p as f32 * f)
                .collect();
            angles.extend(half.iter().chain(half.iter()).copied());
        }
        let angles = Tensor::from_vec(angles, (len, hd), &self.device)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);
        // Causal mask: a token attends to itself and what precedes it.
        let mask: Vec<f32> = (0..len)
            .flat_map(|q| (0..len).map(move |k| if k <= q { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (1, 1, len, len), &self.device)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let eps = self.shape.rms_norm_eps;
        let group = heads / kv_heads;
        for layer in &self.layers {
            let normed = rms_norm(&x, &layer.input_norm, eps)?;
            let split =
                |t: Tensor, n: usize, norm: &Option<Tensor>| -> Result<Tensor, ModelError> {
                    let t = t.reshape((b, len, n, hd))?;
                    let t = match norm {
                        Some(g) => rms_norm(&t, g, eps)?,
                        None => t,
                    };
                    Ok(t.transpose(1, 2)?.contiguous()?)
                };
            let q = split(layer.q.forward(&normed)?, heads, &layer.q_norm)?;
            let k = split(layer.k.forward(&normed)?, kv_heads, &layer.k_norm)?;
            let v = split(layer.v.forward(&normed)?, kv_heads, &None)?;
            let q = rotate(&q, &cos, &sin)?;
            let k = rotate(&k, &cos, &sin)?;
            // Grouped-query attention: each key/value head serves `group` query heads.
            let (k, v) = if group == 1 {
                (k, v)
            } else {
                let repeat = |t: Tensor| -> Result<Tensor, ModelError> {
                    Ok(Tensor::cat(&vec![&t; group], 2)?.reshape((b, heads, len, hd))?)
                };
                (repeat(k)?, repeat(v)?)
            };
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            let context = softmax_last(&scores)?
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, len, heads * hd))?;
            x = (x + layer.o.forward(&context)?)?;
            let normed = rms_norm(&x, &layer.post_norm, eps)?;
            let gated = (layer.gate.forward(&normed)?.silu()? * layer.up.forward(&normed)?)?;
            x = (x + layer.down.forward(&gated)?)?;
        }
        let read = Tensor::from_vec(read, b, &self.device)?;
        let last = x.reshape((b * len, h))?.index_select(&read, 0)?;
        rms_norm(&last, &self.norm, eps)
    }
}

fn check_max_length(max_length: usize, shape: &DecoderShape) -> Result<(), ModelError> {
    if max_length == 0 || max_length > shape.max_position_embeddings {
        return Err(ModelError::option(
            "max_length",
            format!(
                "must be in 1..={} (the decoder's positions), got {max_length}",
                shape.max_position_embeddings
            ),
        ));
    }
    Ok(())
}

impl Backbone for DecoderBackbone {
    fn width(&self) -> usize {
        self.shape.hidden_size
    }

    fn forward(&self, inputs: &[RewardInput]) -> Result<Tensor, ModelError> {
        self.pooled(inputs)
    }

    fn parameters(&self) -> Vec<(String, Var)> {
        Vec::new()
    }

    /// Tokens after truncation (what a batch is padded to).
    fn length(&self, input: &RewardInput) -> usize {
        self.token_ids(std::slice::from_ref(input))
            .map(|rows| rows[0].len())
            .unwrap_or(input.prompt.len() + input.response.len())
    }

    fn set_max_length(&mut self, max_length: usize) -> Result<(), ModelError> {
        check_max_length(max_length, &self.shape)?;
        crate::data::set_truncation(&mut self.tokenizer, Some(max_length), None)
            .map_err(|e| ModelError::option("max_length", e))?;
        self.config.max_length = max_length;
        Ok(())
    }

    fn set_truncation(&mut self, truncation: crate::Truncation) -> Result<(), ModelError> {
        crate::data::set_truncation(&mut self.tokenizer, None, Some(truncation))
            .map_err(|e| ModelError::option("truncation", e))
    }

    fn state(&self) -> Vec<(String, Var)> {
        self.named.clone()
    }

    fn save_files(&self, dir: &Path) -> Result<(), ModelError> {
        let bytes = self
            .tokenizer
            .to_string(false)
            .map_err(|e| ModelError::load(dir.join("tokenizer.json"), e.to_string()))?;
        crate::model::write_atomically(&dir.join("tokenizer.json"), bytes.as_bytes())
    }
}

/// Test support: tiny random decoder reward models in Hugging Face format, for tests of this
/// crate and of the command line (not part of the supported API).
#[doc(hidden)]
pub mod testing {
    use std::path::Path;

    use candle_core::Tensor;

    use super::Family;

    /// Words of the tiny tokenizer; id = index. `<pad>` (1) is the padding token.
    pub const WORDS: &[&str] = &[
        "<unk>",
        "<pad>",
        "<s>",
        "human",
        "assistant",
        "sure",
        "here",
        "is",
        "help",
        "go",
        "away",
        "no",
        "the",
        "answer",
        "thanks",
        "rude",
        "stupid",
        "please",
        "question",
        ":",
        "?",
        ".",
        ",",
    ];

    /// Writes config.json, tokenizer.json (word level, `<s>` prepended when `bos`) and
    /// model.safetensors (or two shards and an index when `sharded`) with seeded random weights.
    pub fn write_tiny_decoder(dir: &Path, family: Family, bos: bool, sharded: bool) {
        let (vocab, hidden, layers, inter, heads, kv_heads, positions) =
            (WORDS.len(), 16, 2, 24, 4, 2, 64);
        let head_dim = if family == Family::Qwen3 {
            6
        } else {
            hidden / heads
        };
        let (arch, model_type) = match family {
            Family::Llama => ("LlamaForSequenceClassification", "llama"),
            Family::Qwen2 => ("Qwen2ForSequenceClassification", "qwen2"),
            Family::Qwen3 => ("Qwen3ForSequenceClassification", "qwen3"),
        };
        let mut config = serde_json::json!({
            "architectures": [arch], "model_type": model_type, "vocab_size": vocab,
            "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "max_position_embeddings": positions, "rms_norm_eps": 1e-6, "hidden_act": "silu",
            "rope_theta": 10000.0, "pad_token_id": 1, "num_labels": 1,
            "id2label": {"0": "LABEL_0"}, "tie_word_embeddings": false
        });
        if family == Family::Qwen3 {
            config["head_dim"] = serde_json::json!(head_dim);
        }
        if family == Family::Llama {
            config["rope_scaling"] = serde_json::json!({
                "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 16
            });
        }
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let vocab_map: serde_json::Map<String, serde_json::Value> = WORDS
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
            .collect();
        let post_processor = if bos {
            serde_json::json!({"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [2], "tokens": ["<s>"]}}})
        } else {
            serde_json::Value::Null
        };
        let tokenizer = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [
                {"id": 1, "content": "<pad>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                {"id": 2, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
            ],
            "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": post_processor, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab_map, "unk_token": "<unk>"}
        });
        std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();

        let mut state = 987654321u64 ^ (family as u64);
        let mut random = |shape: &[usize], scale: f32, offset: f32| {
            crate::encoder::testing::seeded_tensor(&mut state, shape, scale, offset)
        };
        let (q, kv) = (heads * head_dim, kv_heads * head_dim);
        let mut tensors: Vec<(String, Tensor)> = vec![
            (
                "model.embed_tokens.weight".into(),
                random(&[vocab, hidden], 1.0, 0.0),
            ),
            ("model.norm.weight".into(), random(&[hidden], 0.2, 1.0)),
            ("score.weight".into(), random(&[1, hidden], 0.5, 0.0)),
        ];
        for l in 0..layers {
            let p = format!("model.layers.{l}");
            for (name, out, inp) in [
                ("self_attn.q_proj", q, hidden),
                ("self_attn.k_proj", kv, hidden),
                ("self_attn.v_proj", kv, hidden),
                ("self_attn.o_proj", hidden, q),
                ("mlp.gate_proj", inter, hidden),
                ("mlp.up_proj", inter, hidden),
                ("mlp.down_proj", hidden, inter),
            ] {
                tensors.push((format!("{p}.{name}.weight"), random(&[out, inp], 0.4, 0.0)));
            }
            if family == Family::Qwen2 {
                for (name, out) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                    tensors.push((
                        format!("{p}.self_attn.{name}.bias"),
                        random(&[out], 0.2, 0.0),
                    ));
                }
            }
            if family == Family::Qwen3 {
                for name in ["q_norm", "k_norm"] {
                    tensors.push((
                        format!("{p}.self_attn.{name}.weight"),
                        random(&[head_dim], 0.2, 1.0),
                    ));
                }
            }
            for name in ["input_layernorm", "post_attention_layernorm"] {
                tensors.push((format!("{p}.{name}.weight"), random(&[hidden], 0.2, 1.0)));
            }
        }
        if sharded {
            let half = tensors.len() / 2;
            let second = tensors.split_off(half);
            let mut map = serde_json::Map::new();
            for (file, part) in [
                ("model-00001-of-00002.safetensors", tensors),
                ("model-00002-of-00002.safetensors", second),
            ] {
                for (name, _) in &part {
                    map.insert(name.clone(), serde_json::json!(file));
                }
                std::fs::write(dir.join(file), safetensors::serialize(part, None).unwrap())
                    .unwrap();
            }
            let index = serde_json::json!({"metadata": {}, "weight_map": map});
            std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
        } else {
            std::fs::write(
                dir.join("model.safetensors"),
                safetensors::serialize(tensors, None).unwrap(),
            )
            .unwrap();
        }
    }
}
