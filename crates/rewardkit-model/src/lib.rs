//! Learned reward models for rewardkit: train a reward model from preference pairs or ratings,
//! save it as a Hugging Face–style directory, and score with it as a reward term.
//!
//! # The pieces
//!
//! * [`Backbone`] — the narrow seam (TEI's `Backend` idea): a batch of (prompt, response) in, a
//!   `[batch, width]` tensor out, plus the named trainable parameters. The built-in
//!   [`hashed::HashedBackbone`] needs no download: hashed word and character n-grams projected to
//!   a fixed width. [`encoder::EncoderBackbone`] runs BERT-family encoders (MiniLM, BERT) from a
//!   Hugging Face directory, frozen or trained (its LayerNorm is differentiable, unlike candle's
//!   fused one). [`decoder::DecoderBackbone`] runs published Qwen2/Qwen3/Llama
//!   `*ForSequenceClassification` reward models (inference): [`RewardModel::load`] recognises
//!   their directories, so a spec's `model` term scores with them directly.
//! * [`RewardModel`] — a backbone plus a linear, two-layer MLP or BERT-pooler head with one
//!   output (a reward) or several (rating attributes), saved as `config.json` +
//!   `model.safetensors` + `rewardkit.json` (see [`TrainingRecord`]). An encoder with `[CLS]`
//!   pooling under the BERT-pooler head is exactly `BertForSequenceClassification` and is saved
//!   in that format, so `transformers` loads the directory too ([`RewardModel::save`]).
//! * [`expo`] — ExPO weight extrapolation `θ_from + α(θ_to − θ_from)` between two checkpoints,
//!   the last step of the HelpSteer2-Preference recipe.
//! * [`Objective`] — Bradley–Terry and its variants (margin, scaled, label smoothing, log-exp,
//!   the centring regulariser) and regression. Each computes the loss *and its gradient with
//!   respect to the rewards* in `f64`, outside the autograd graph; the trainer back-propagates
//!   `Σ r·∂L/∂r` through the network. That keeps every objective a small pure function tested
//!   against hand-computed values and finite differences.
//! * [`train()`] — seeded data order, gradient accumulation, clipping, AdamW with warm-up and
//!   linear/cosine decay, validation every N steps, early stopping on validation loss, and
//!   checkpoints (weights, both AdamW moments, the best weights, the early-stopping state) in one
//!   safetensors file written atomically. Resuming is bit-exact; the module docs say why.
//! * [`ModelTerm`] — the `model` kind of a reward spec: loads a directory once, scores batches
//!   (batched == single), and optionally normalises by the saved validation mean/std.
//! * [`data`] — TRL preference rows (strings or chat lists, implicit prompts, a margin column),
//!   HH-RLHF dialogues and rating files, read through `rewardkit-data` so a bad row is named by
//!   file, line and field.
//!
//! # Why candle, and where the arithmetic lives
//!
//! candle provides tensors, CPU kernels and reverse-mode autodiff without a Python runtime, and
//! the same code runs on CUDA behind this crate's `cuda` feature. The optimizer, though, works
//! on plain `f32` buffers: AdamW is one fused loop per parameter (a tensor-level AdamW costs a
//! dozen full passes with an allocation each), and buffers are what a checkpoint stores bit for
//! bit.

#![deny(missing_docs)]

mod backbone;
pub mod curve;
pub mod data;
pub mod decoder;
pub mod encoder;
mod error;
pub mod expo;
pub mod hashed;
mod model;
pub mod objective;
pub mod optim;
mod record;
mod rng;
pub mod template;
mod term;
pub mod train;

pub use backbone::{Backbone, BackwardPass, TrainingPass};
pub use candle_core::Device;
pub use data::{PreferencePair, Rating, RewardInput, Truncation};
pub use error::ModelError;
pub use model::{
    write_atomically, BackboneConfig, HeadConfig, ModelConfig, RewardModel, CONFIG_FILE,
    RECORD_FILE, WEIGHTS_FILE,
};
pub use objective::Objective;
pub use record::TrainingRecord;
pub use template::{ChatTemplate, ChatTemplateConfig};
pub use term::{ModelTerm, ModelTermOptions};
pub use train::{train, CheckpointOptions, EvalMetrics, Event, Examples, TrainConfig, TrainReport};
