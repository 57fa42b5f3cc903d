//! The training loop: mini-batches in a seeded order, gradient accumulation, clipping, AdamW with
//! a warm-up/decay schedule, validation every N steps, early stopping, and atomic checkpoints
//! from which a run resumes bit-exactly.
//!
//! # Why resuming is exact
//!
//! Everything a step depends on is either derived from the configuration and the step number or
//! stored in the checkpoint. The data order of epoch `e` is a Fisher–Yates shuffle drawn from a
//! generator seeded by `(seed, e)`, so step `s` always sees the same pairs; the weights and both
//! AdamW moments are stored as the exact `f32` values (safetensors), with the optimizer step, the
//! early-stopping state and the best weights so far. Forward and backward passes are
//! deterministic on CPU for a fixed thread count. A resumed run therefore computes the same
//! floating-point operations in the same order as an uninterrupted one, and the test
//! `resume_is_bit_exact` holds it to that.
//!
//! # Frozen backbones: vectors computed once
//!
//! When the backbone has no trainable parameters (an encoder trained head-only), its vector for
//! an input never changes, so recomputing it every step and every epoch is wasted work — for
//! MiniLM it is nearly all of the work. With [`TrainConfig::cache_features`] (the default) the
//! trainer first runs the backbone once over every *distinct* training and validation input, in
//! batches sorted by [`Backbone::length`](crate::Backbone::length) to cut padding, keeps the
//! `[distinct, width]` matrix, and then trains and validates the head on rows gathered from it.
//! The only difference from the uncached path is the batch each vector was computed in, which
//! changes results by floating-point rounding alone (Architecture Invariant 2; the test
//! `frozen_encoder_cache_matches_the_uncached_path` holds both paths to 1e-5). The cache is
//! rebuilt identically on resume, so resuming stays bit-exact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::{PreferencePair, Rating, RewardInput};
use crate::model::{write_atomically, RewardModel};
use crate::objective::Objective;
use crate::optim::{clip_grad_norm, AdamW, AdamWConfig, Decay, Moments, Schedule};
use crate::rng::SplitMix64;
use crate::ModelError;

/// Training examples: preference pairs or ratings.
#[derive(Clone, Debug, PartialEq)]
pub enum Examples {
    /// Preference pairs, for the pairwise objectives.
    Pairs(Vec<PreferencePair>),
    /// Rated responses, for regression.
    Ratings(Vec<Rating>),
}

impl Examples {
    /// Number of examples.
    pub fn len(&self) -> usize {
        match self {
            Examples::Pairs(p) => p.len(),
            Examples::Ratings(r) => r.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Splits off the last `n` examples (for a validation set).
    pub fn split_last(mut self, n: usize) -> (Examples, Examples) {
        let at = self.len().saturating_sub(n);
        let tail = match &mut self {
            Examples::Pairs(p) => Examples::Pairs(p.split_off(at)),
            Examples::Ratings(r) => Examples::Ratings(r.split_off(at)),
        };
        (self, tail)
    }

    /// A stable fingerprint of the content, so that resuming on different data is refused.
    fn fingerprint(&self) -> u64 {
        let mut hash = 0u64;
        let mut mix = |parts: &[&str]| hash = hash.rotate_left(5) ^ crate::hashed::fnv1a(0, parts);
        match self {
            Examples::Pairs(pairs) => pairs.iter().for_each(|p| {
                let margin = p.margin.map(|m| m.to_string()).unwrap_or_default();
                mix(&[&p.prompt, &p.chosen, &p.rejected, &margin])
            }),
            Examples::Ratings(ratings) => ratings.iter().for_each(|r| {
                let targets = format!("{:?}", r.targets);
                mix(&[&r.input.prompt, &r.input.response, &targets])
            }),
        }
        hash
    }
}

/// Settings of a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The objective.
    pub objective: Objective,
    /// Centring regulariser coefficient `c` in `c·mean((r_c + r_r)²)` (0 = off).
    pub centring: f64,
    /// AdamW hyper-parameters.
    pub optimizer: AdamWConfig,
    /// Passes over the training data.
    pub epochs: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accumulation: usize,
    /// Fraction of the optimizer steps spent warming up.
    pub warmup_ratio: f64,
    /// Learning-rate shape after warm-up.
    pub decay: Decay,
    /// Gradient clipping: the largest global L2 norm (0 = off).
    pub max_grad_norm: f64,
    /// Validate every this many optimizer steps (0 = at the end of each epoch).
    pub eval_every: usize,
    /// Stop after this many validations without a lower validation loss (0 = never).
    pub patience: usize,
    /// Write a checkpoint every this many optimizer steps (0 = at each validation).
    pub checkpoint_every: usize,
    /// Seed for the initial weights and the data order.
    pub seed: u64,
    /// With a frozen backbone, compute each distinct input's vector once and train the head on
    /// the cached vectors (see the module docs); ignored when the backbone trains.
    #[serde(default = "yes")]
    pub cache_features: bool,
}

fn yes() -> bool {
    true
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            objective: Objective::Bt,
            centring: 0.0,
            optimizer: AdamWConfig::default(),
            epochs: 3,
            batch_size: 16,
            grad_accumulation: 1,
            warmup_ratio: 0.1,
            decay: Decay::Linear,
            max_grad_norm: 1.0,
            eval_every: 0,
            patience: 0,
            checkpoint_every: 0,
            seed: 42,
            cache_features: true,
        }
    }
}

impl TrainConfig {
    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.objective.validate()?;
        self.optimizer.validate()?;
        if self.epochs == 0 {
            return Err(ModelError::option("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(ModelError::option("batch-size", "must be at least 1"));
        }
        if self.grad_accumulation == 0 {
            return Err(ModelError::option(
                "grad-accumulation",
                "must be at least 1",
            ));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return Err(ModelError::option(
                "warmup-ratio",
                format!("must be in [0, 1), got {}", self.warmup_ratio),
            ));
        }
        if !(self.centring >= 0.0 && self.centring.is_finite()) {
            return Err(ModelError::option(
                "centring",
                "must be a non-negative number",
            ));
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm < 0.0 {
            return Err(ModelError::option(
                "max-grad-norm",
                "must be non-negative (0 turns clipping off)",
            ));
        }
        Ok(())
    }
}

/// Validation metrics at one point of training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Optimizer steps completed.
    pub step: usize,
    /// Mean training loss since the previous validation (`None` outside training).
    pub train_loss: Option<f64>,
    /// Mean validation loss.
    pub loss: f64,
    /// Pairs with `r_c > r_r` (pairwise objectives only).
    pub accuracy: Option<f64>,
    /// Mean reward over every validation response (both sides of each pair; output 0).
    pub reward_mean: f64,
    /// Population standard deviation of those rewards.
    pub reward_std: f64,
}

/// What the trainer reports as it goes.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Training starts (or resumes after `from_step` completed steps).
    Start {
        /// Total optimizer steps of the run.
        total_steps: usize,
        /// Steps already done (non-zero when resuming).
        from_step: usize,
    },
    /// An optimizer step finished.
    Step {
        /// Steps completed.
        step: usize,
        /// Mean loss of this step's examples.
        loss: f64,
        /// Accuracy of this step's pairs (pairwise objectives).
        accuracy: Option<f64>,
        /// Learning rate used.
        lr: f64,
        /// Training examples per second since this process started training.
        examples_per_sec: f64,
    },
    /// A validation finished.
    Eval {
        /// The metrics.
        metrics: EvalMetrics,
        /// Whether the validation loss is the best so far.
        improved: bool,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Steps completed.
        step: usize,
    },
    /// Early stopping ended the run.
    EarlyStop {
        /// Steps completed.
        step: usize,
    },
    /// Progress of the frozen-backbone vector cache, built before the first step.
    Caching {
        /// Distinct inputs encoded so far.
        done: usize,
        /// Distinct inputs to encode.
        total: usize,
    },
}

/// The outcome of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Optimizer steps completed.
    pub steps: usize,
    /// Optimizer steps the run was planned for.
    pub total_steps: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Every validation, in order (including those before a resume).
    pub history: Vec<EvalMetrics>,
    /// The validation the final weights come from (the lowest loss), if there was validation.
    pub best: Option<EvalMetrics>,
    /// Training examples per second in this process (pairs for pairwise objectives).
    pub examples_per_sec: f64,
    /// Whether the run stopped early on request (`stop_after`) and can be resumed.
    pub interrupted: bool,
    /// The frozen-backbone vector cache, when one was built.
    #[serde(default)]
    pub feature_cache: Option<CacheReport>,
}

/// What building the frozen-backbone vector cache took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheReport {
    /// Distinct inputs encoded (training and validation together).
    pub inputs: usize,
    /// Wall-clock seconds spent encoding them.
    pub seconds: f64,
}

/// Where checkpoints go and whether to resume.
#[derive(Clone, Debug, Default)]
pub struct CheckpointOptions {
    /// The checkpoint file (`None` = no checkpoints).
    pub path: Option<PathBuf>,
    /// Resume from the checkpoint if it exists.
    pub resume: bool,
    /// Stop (as if interrupted) once this many steps are complete; for tests and time-boxed runs.
    pub stop_after: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointState {
    fingerprint: String,
    step: usize,
    adam_step: u64,
    best_loss: Option<f64>,
    bad_evals: usize,
    history: Vec<EvalMetrics>,
    /// Sum and count of training losses since the last validation (so that the next
    /// validation's `train_loss` is the same after a resume).
    window: (f64, usize),
}

const CHECKPOINT_KEY: &str = "rewardkit_checkpoint";

/// Trains `model` in place. With validation data, the model ends with the weights of the
/// validation with the lowest loss.
pub fn train(
    model: &RewardModel,
    config: &TrainConfig,
    train: &Examples,
    validation: Option<&Examples>,
    checkpoint: &CheckpointOptions,
    observer: &mut dyn FnMut(&Event),
) -> Result<TrainReport, ModelError> {
    config.validate()?;
    check_examples(model, config, train, "training")?;
    if let Some(validation) = validation {
        check_examples(model, config, validation, "validation")?;
    }
    let n = train.len();
    let micro_per_epoch = n.div_ceil(config.batch_size);
    let steps_per_epoch = micro_per_epoch.div_ceil(config.grad_accumulation);
    let total_steps = steps_per_epoch * config.epochs;
    let warmup = (config.warmup_ratio * total_steps as f64).round() as usize;
    let schedule = Schedule {
        peak: config.optimizer.lr,
        warmup,
        total: total_steps,
        decay: config.decay,
    };

    let params = model.parameters();
    let decay: Vec<bool> = params.iter().map(|(_, var)| var.rank() >= 2).collect();
    let mut master: Vec<Vec<f32>> = params
        .iter()
        .map(|(_, var)| {
            var.as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
        })
        .collect::<Result<_, _>>()?;
    let sizes: Vec<usize> = master.iter().map(Vec::len).collect();
    let mut adam = AdamW::new(config.optimizer, &sizes);
    let fingerprint = format!(
        "{}|{}|{:016x}|{:016x}",
        serde_json::to_string(config).expect("a train config serialises: this is a bug"),
        serde_json::to_string(model.config()).expect("a model config serialises: this is a bug"),
        train.fingerprint(),
        validation.map(Examples::fingerprint).unwrap_or(0),
    );
    let mut state = CheckpointState {
        fingerprint,
        step: 0,
        adam_step: 0,
        best_loss: None,
        bad_evals: 0,
        history: Vec::new(),
        window: (0.0, 0),
    };
    let mut best: Option<Vec<Vec<f32>>> = None;

    if let (Some(path), true) = (&checkpoint.path, checkpoint.resume) {
        if path.exists() {
            let restored = load_checkpoint(path, &params, &sizes, &state.fingerprint)?;
            master = restored.params;
            adam.moments = restored.moments;
            adam.step = restored.state.adam_step;
            best = restored.best;
            state = restored.state;
            set_params(model, &params, &master)?;
        }
    }

    let caches = if config.cache_features && model.backbone().parameters().is_empty() {
        let started = Instant::now();
        let (train_cache, validation_cache, inputs) =
            FeatureCache::build(model, config.batch_size, train, validation, observer)?;
        let report = CacheReport {
            inputs,
            seconds: started.elapsed().as_secs_f64(),
        };
        Some((train_cache, validation_cache, report))
    } else {
        None
    };
    let train_cache = caches.as_ref().map(|c| &c.0);
    let validation_cache = caches.as_ref().and_then(|c| c.1.as_ref());

    observer(&Event::Start {
        total_steps,
        from_step: state.step,
    });
    let started = Instant::now();
    // One gradient buffer per parameter, zeroed at each step (not reallocated: the word
    // embeddings' alone is 47 MB for MiniLM, and fresh pages fault and zero-fill).
    let mut grads: Vec<Vec<f32>> = sizes.iter().map(|&s| vec![0.0; s]).collect();
    let mut seen = 0usize;
    let mut order: Option<(usize, Vec<usize>)> = None;
    let mut stopped_early = false;
    let mut interrupted = false;

    while state.step < total_steps {
        if checkpoint.stop_after.is_some_and(|stop| state.step >= stop) {
            interrupted = true;
            break;
        }
        let step = state.step;
        let epoch = step / steps_per_epoch;
        if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut indices: Vec<usize> = (0..n).collect();
            SplitMix64::derived(config.seed, 1000 + epoch as u64).shuffle(&mut indices);
            order = Some((epoch, indices));
        }
        let indices = &order.as_ref().expect("set above: this is a bug").1;
        let first_micro = (step % steps_per_epoch) * config.grad_accumulation;
        let last_micro = (first_micro + config.grad_accumulation).min(micro_per_epoch);
        let step_start = first_micro * config.batch_size;
        let step_end = (last_micro * config.batch_size).min(n);
        let step_len = step_end - step_start;

        grads.iter_mut().for_each(|g| g.fill(0.0));
        let (mut step_loss, mut step_correct) = (0.0, 0usize);
        for micro in first_micro..last_micro {
            let batch =
                &indices[micro * config.batch_size..((micro + 1) * config.batch_size).min(n)];
            let weight = batch.len() as f64 / step_len as f64;
            let (loss, correct) = micro_step(
                model,
                config,
                train,
                train_cache,
                batch,
                weight,
                &params,
                &mut grads,
            )?;
            step_loss += loss * weight;
            step_correct += correct;
        }
        if !step_loss.is_finite() {
            return Err(ModelError::Diverged {
                step: step + 1,
                loss: step_loss,
            });
        }
        if config.max_grad_norm > 0.0 {
            clip_grad_norm(&mut grads, config.max_grad_norm);
        }
        let lr = schedule.lr(step);
        adam.update(lr, &mut master, &grads, &decay);
        set_params(model, &params, &master)?;
        state.step += 1;
        state.adam_step = adam.step;
        seen += step_len;
        state.window.0 += step_loss * step_len as f64;
        state.window.1 += step_len;
        let pairwise = config.objective.is_pairwise();
        observer(&Event::Step {
            step: state.step,
            loss: step_loss,
            accuracy: pairwise.then(|| step_correct as f64 / step_len as f64),
            lr,
            examples_per_sec: seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
        });

        let end_of_epoch = state.step.is_multiple_of(steps_per_epoch);
        let eval_now = if config.eval_every == 0 {
            end_of_epoch
        } else {
            state.step.is_multiple_of(config.eval_every)
        } || state.step == total_steps;
        if let (true, Some(validation)) = (eval_now, validation) {
            let mut metrics = evaluate_with(model, config, validation, validation_cache)?;
            metrics.step = state.step;
            metrics.train_loss =
                (state.window.1 > 0).then(|| state.window.0 / state.window.1 as f64);
            state.window = (0.0, 0);
            let improved = state.best_loss.is_none_or(|b| metrics.loss < b);
            if improved {
                state.best_loss = Some(metrics.loss);
                state.bad_evals = 0;
                best = Some(master.clone());
            } else {
                state.bad_evals += 1;
            }
            state.history.push(metrics.clone());
            observer(&Event::Eval { metrics, improved });
            if config.patience > 0 && state.bad_evals >= config.patience {
                stopped_early = true;
            }
        }
        let checkpoint_now = match config.checkpoint_every {
            0 => eval_now,
            every => state.step.is_multiple_of(every),
        } || stopped_early;
        if let (true, Some(path)) = (checkpoint_now && state.step < total_steps, &checkpoint.path) {
            save_checkpoint(path, &params, &master, &adam, best.as_deref(), &state)?;
            observer(&Event::Checkpoint { step: state.step });
        }
        if stopped_early {
            observer(&Event::EarlyStop { step: state.step });
            break;
        }
    }

    if let Some(best) = &best {
        if !interrupted {
            set_params(model, &params, best)?;
        }
    }
    let best_metrics = state
        .best_loss
        .and_then(|b| state.history.iter().find(|m| m.loss == b).cloned());
    Ok(TrainReport {
        steps: state.step,
        total_steps,
        stopped_early,
        history: state.history,
        best: best_metrics,
        examples_per_sec: seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
        interrupted,
        feature_cache: caches.map(|c| c.2),
    })
}

fn check_examples(
    model: &RewardModel,
    config: &TrainConfig,
    examples: &Examples,
    what: &str,
) -> Result<(), ModelError> {
    if examples.is_empty() {
        return Err(ModelError::option(
            "data",
            format!("the {what} set is empty"),
        ));
    }
    match (examples, config.objective.is_pairwise()) {
        (Examples::Pairs(pairs), true) => {
            if model.config().num_labels != 1 {
                return Err(ModelError::option(
                    "objective",
                    "pairwise objectives train a model with one output",
                ));
            }
            if config.objective.needs_margin() {
                if let Some(pair) = pairs.iter().find(|p| p.margin.is_none()) {
                    return Err(ModelError::option(
                        "objective",
                        format!("`{}` needs a margin on every pair; the {what} pair from line {} has none", config.objective.name(), pair.line),
                    ));
                }
            }
            Ok(())
        }
        (Examples::Ratings(ratings), false) => {
            let width = model.config().num_labels;
            match ratings.iter().find(|r| r.targets.len() != width) {
                Some(r) => Err(ModelError::option(
                    "attributes",
                    format!(
                        "line {} has {} targets, the model {width} outputs",
                        r.line,
                        r.targets.len()
                    ),
                )),
                None => Ok(()),
            }
        }
        (Examples::Pairs(_), false) => Err(ModelError::option(
            "objective",
            "regression trains on ratings, not on preference pairs",
        )),
        (Examples::Ratings(_), true) => Err(ModelError::option(
            "objective",
            format!(
                "`{}` trains on preference pairs, not on ratings",
                config.objective.name()
            ),
        )),
    }
}

/// The inputs of example `i`: chosen and rejected for a pair, the rated input for a rating.
fn example_inputs(examples: &Examples, i: usize) -> Vec<RewardInput> {
    match examples {
        Examples::Pairs(pairs) => vec![pairs[i].chosen_input(), pairs[i].rejected_input()],
        Examples::Ratings(ratings) => vec![ratings[i].input.clone()],
    }
}

/// A frozen backbone's vectors of every distinct input of one example set, computed once.
struct FeatureCache {
    /// `[distinct, width]`.
    features: Tensor,
    /// Per example, the rows of its inputs (two for a pair, one for a rating), flattened.
    rows: Vec<u32>,
    /// Inputs per example.
    per_example: usize,
}

impl FeatureCache {
    /// Encodes the distinct inputs of the training and validation sets, longest first in
    /// batches of `2 × batch_size` (as many inputs as a pairwise micro-batch has).
    fn build(
        model: &RewardModel,
        batch_size: usize,
        train: &Examples,
        validation: Option<&Examples>,
        observer: &mut dyn FnMut(&Event),
    ) -> Result<(FeatureCache, Option<FeatureCache>, usize), ModelError> {
        let sets: Vec<&Examples> = std::iter::once(train).chain(validation).collect();
        let mut distinct: Vec<RewardInput> = Vec::new();
        let mut index: HashMap<RewardInput, u32> = HashMap::new();
        let mut rows: Vec<Vec<u32>> = Vec::new();
        for set in &sets {
            let mut set_rows = Vec::new();
            for i in 0..set.len() {
                for input in example_inputs(set, i) {
                    let next = distinct.len() as u32;
                    let row = *index.entry(input.clone()).or_insert_with(|| {
                        distinct.push(input);
                        next
                    });
                    set_rows.push(row);
                }
            }
            rows.push(set_rows);
        }
        let backbone = model.backbone();
        let mut order: Vec<usize> = (0..distinct.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(backbone.length(&distinct[i])));
        let width = backbone.width();
        let mut features = vec![0f32; distinct.len() * width];
        let total = distinct.len();
        observer(&Event::Caching { done: 0, total });
        let chunk = (2 * batch_size).max(1);
        for (k, batch) in order.chunks(chunk).enumerate() {
            let inputs: Vec<RewardInput> = batch.iter().map(|&i| distinct[i].clone()).collect();
            let vectors = backbone.forward(&inputs)?.detach().to_vec2::<f32>()?;
            for (&i, vector) in batch.iter().zip(vectors) {
                features[i * width..(i + 1) * width].copy_from_slice(&vector);
            }
            observer(&Event::Caching {
                done: (k * chunk + batch.len()).min(total),
                total,
            });
        }
        let features = Tensor::from_vec(features, (total, width), model.device())?;
        let mut caches = sets.iter().zip(rows).map(|(set, rows)| FeatureCache {
            features: features.clone(),
            rows,
            per_example: if matches!(set, Examples::Pairs(_)) {
                2
            } else {
                1
            },
        });
        let train_cache = caches
            .next()
            .expect("the training set is there: this is a bug");
        Ok((train_cache, caches.next(), total))
    }

    /// The cached vectors of input `k` (0 = chosen or the rated input, 1 = rejected) of each
    /// example of `batch`, as a `[batch.len(), width]` tensor.
    fn gather(&self, batch: &[usize], k: usize) -> Result<Tensor, ModelError> {
        let rows: Vec<u32> = batch
            .iter()
            .map(|&i| self.rows[i * self.per_example + k])
            .collect();
        let n = rows.len();
        let rows = Tensor::from_vec(rows, n, self.features.device())?;
        Ok(self.features.index_select(&rows, 0)?)
    }
}

/// Rewards of the examples `batch` as `[inputs, num_labels]`: for pairs every chosen input, then
/// every rejected one. Through the whole model, or through the head on cached vectors.
fn batch_rewards(
    model: &RewardModel,
    examples: &Examples,
    cache: Option<&FeatureCache>,
    batch: &[usize],
) -> Result<Tensor, ModelError> {
    let pairwise = matches!(examples, Examples::Pairs(_));
    if let Some(cache) = cache {
        let features = if pairwise {
            Tensor::cat(&[cache.gather(batch, 0)?, cache.gather(batch, 1)?], 0)?
        } else {
            cache.gather(batch, 0)?
        };
        return model.head(&features);
    }
    model.forward(&batch_inputs(examples, batch))
}

/// The inputs of the examples `batch`: for pairs every chosen input, then every rejected one.
fn batch_inputs(examples: &Examples, batch: &[usize]) -> Vec<RewardInput> {
    match examples {
        Examples::Pairs(pairs) => batch
            .iter()
            .map(|&i| pairs[i].chosen_input())
            .chain(batch.iter().map(|&i| pairs[i].rejected_input()))
            .collect(),
        Examples::Ratings(ratings) => batch.iter().map(|&i| ratings[i].input.clone()).collect(),
    }
}

/// The loss of a batch from its rewards (as [`batch_rewards`] orders them): mean loss,
/// `∂L/∂r` per reward, correct pairs.
fn batch_loss(
    config: &TrainConfig,
    examples: &Examples,
    batch: &[usize],
    values: &[f64],
) -> (f64, Vec<f64>, usize) {
    match examples {
        Examples::Pairs(pairs) => {
            let (chosen, rejected) = values.split_at(batch.len());
            let margins: Vec<f64> = batch
                .iter()
                .map(|&i| pairs[i].margin.unwrap_or(0.0))
                .collect();
            let loss = config
                .objective
                .pair_loss(chosen, rejected, &margins, config.centring);
            let mut g = loss.grad_chosen;
            g.extend(loss.grad_rejected);
            (loss.loss, g, loss.correct)
        }
        Examples::Ratings(ratings) => {
            let targets: Vec<f64> = batch
                .iter()
                .flat_map(|&i| ratings[i].targets.iter().copied())
                .collect();
            let (loss, g) = Objective::regression_loss(values, &targets);
            (loss, g, 0)
        }
    }
}

/// Forward and backward of one micro-batch; adds `weight × ∂L/∂θ` to `grads`. Returns the
/// micro-batch's mean loss and its correct pairs.
///
/// A backbone with its own backward pass ([`Backbone::forward_for_training`](crate::Backbone))
/// hands over its vectors as a leaf of candle's graph: the head and the loss are differentiated
/// by candle, the leaf's gradient goes back through the backbone's pass, which adds its
/// parameters' gradients into their buffers directly.
#[allow(clippy::too_many_arguments)]
fn micro_step(
    model: &RewardModel,
    config: &TrainConfig,
    examples: &Examples,
    cache: Option<&FeatureCache>,
    batch: &[usize],
    weight: f64,
    params: &[(String, candle_core::Var)],
    grads: &mut [Vec<f32>],
) -> Result<(f64, usize), ModelError> {
    let own_pass = match cache {
        Some(_) => None,
        None => model
            .backbone()
            .forward_for_training(&batch_inputs(examples, batch))?,
    };
    let (rewards, own_pass) = match own_pass {
        Some((vectors, pass)) => {
            let leaf = candle_core::Var::from_tensor(&vectors)?;
            (model.head(leaf.as_tensor())?, Some((leaf, pass)))
        }
        None => (batch_rewards(model, examples, cache, batch)?, None),
    };
    let values = to_f64(&rewards)?;
    let (loss, surrogate_grad, correct) = batch_loss(config, examples, batch, &values);
    // Back-propagate Σ r·(w·∂L/∂r): its gradient with respect to θ is w·∂L/∂θ.
    let g: Vec<f32> = surrogate_grad.iter().map(|g| (g * weight) as f32).collect();
    let g = Tensor::from_vec(g, rewards.dims(), rewards.device())?;
    let store = (rewards * g)?.sum_all()?.backward()?;
    for ((_, var), acc) in params.iter().zip(grads.iter_mut()) {
        if let Some(grad) = store.get(var.as_tensor()) {
            let grad = grad.flatten_all()?.to_vec1::<f32>()?;
            acc.iter_mut().zip(grad).for_each(|(a, g)| *a += g);
        }
    }
    if let Some((leaf, pass)) = own_pass {
        let grad = match store.get(leaf.as_tensor()) {
            Some(grad) => grad.flatten_all()?.to_vec1::<f32>()?,
            None => vec![0.0; leaf.elem_count()],
        };
        // The backbone's parameters come first (`RewardModel::parameters`).
        let backbone = model.backbone().parameters().len();
        pass.backward(&grad, &mut grads[..backbone])?;
    }
    Ok((loss, correct))
}

fn to_f64(tensor: &Tensor) -> Result<Vec<f64>, ModelError> {
    Ok(tensor
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect())
}

/// Validation loss, accuracy and reward statistics of `examples` with the current weights.
pub fn evaluate(
    model: &RewardModel,
    config: &TrainConfig,
    examples: &Examples,
) -> Result<EvalMetrics, ModelError> {
    evaluate_with(model, config, examples, None)
}

fn evaluate_with(
    model: &RewardModel,
    config: &TrainConfig,
    examples: &Examples,
    cache: Option<&FeatureCache>,
) -> Result<EvalMetrics, ModelError> {
    let batch_size = config.batch_size.max(1);
    let n = examples.len();
    let (mut loss, mut correct) = (0.0, 0usize);
    let mut stats = rewardkit_core::RunningStats::default();
    let indices: Vec<usize> = (0..n).collect();
    for batch in indices.chunks(batch_size) {
        let rewards = batch_rewards(model, examples, cache, batch)?.detach();
        let rows = rewards.to_vec2::<f32>()?;
        let values: Vec<f64> = rows.iter().flatten().map(|&v| f64::from(v)).collect();
        let (l, _, c) = batch_loss(config, examples, batch, &values);
        loss += l * batch.len() as f64;
        correct += c;
        rows.iter().for_each(|row| stats.push(f64::from(row[0])));
    }
    Ok(EvalMetrics {
        step: 0,
        train_loss: None,
        loss: loss / n.max(1) as f64,
        accuracy: config
            .objective
            .is_pairwise()
            .then(|| correct as f64 / n.max(1) as f64),
        reward_mean: stats.mean().unwrap_or(0.0),
        reward_std: stats.population_variance().map(f64::sqrt).unwrap_or(0.0),
    })
}

fn set_params(
    model: &RewardModel,
    params: &[(String, candle_core::Var)],
    values: &[Vec<f32>],
) -> Result<(), ModelError> {
    let device: &Device = model.device();
    for ((_, var), value) in params.iter().zip(values) {
        if device.is_cpu() {
            var.inplace_op1(&CopyInto(value))?;
        } else {
            var.set(&Tensor::from_slice(value, var.shape(), device)?)?;
        }
    }
    Ok(())
}

/// Copies a buffer into a CPU tensor's storage in place: setting the weights after each step
/// without a temporary tensor (MiniLM's word embeddings alone are 47 MB, a fresh allocation
/// whose pages fault in on every step).
struct CopyInto<'a>(&'a [f32]);

impl candle_core::InplaceOp1 for CopyInto<'_> {
    fn name(&self) -> &'static str {
        "rewardkit-copy-into"
    }

    fn cpu_fwd(
        &self,
        storage: &mut candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let candle_core::CpuStorage::F32(data) = storage else {
            return Err(candle_core::Error::Msg(format!(
                "{}: expected an f32 weight",
                self.name()
            )));
        };
        match layout.contiguous_offsets() {
            Some((start, end)) if end - start == self.0.len() => {
                data[start..end].copy_from_slice(self.0);
                Ok(())
            }
            _ => Err(candle_core::Error::Msg(format!(
                "{}: the weight is not a contiguous tensor of {} values",
                self.name(),
                self.0.len()
            ))),
        }
    }
}

fn save_checkpoint(
    path: &Path,
    params: &[(String, candle_core::Var)],
    master: &[Vec<f32>],
    adam: &AdamW,
    best: Option<&[Vec<f32>]>,
    state: &CheckpointState,
) -> Result<(), ModelError> {
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (i, (name, var)) in params.iter().enumerate() {
        let shape = var.shape();
        tensors.push((
            format!("param.{name}"),
            Tensor::from_slice(&master[i], shape, &Device::Cpu)?,
        ));
        tensors.push((
            format!("adam.m.{name}"),
            Tensor::from_slice(&adam.moments[i].m, shape, &Device::Cpu)?,
        ));
        tensors.push((
            format!("adam.v.{name}"),
            Tensor::from_slice(&adam.moments[i].v, shape, &Device::Cpu)?,
        ));
        if let Some(best) = best {
            tensors.push((
                format!("best.{name}"),
                Tensor::from_slice(&best[i], shape, &Device::Cpu)?,
            ));
        }
    }
    let metadata = HashMap::from([(
        CHECKPOINT_KEY.to_owned(),
        serde_json::to_string(state).expect("checkpoint state serialises: this is a bug"),
    )]);
    let bytes = safetensors::serialize(tensors, Some(metadata))
        .map_err(|e| ModelError::load(path, e.to_string()))?;
    write_atomically(path, &bytes)
}

struct Restored {
    params: Vec<Vec<f32>>,
    moments: Vec<Moments>,
    best: Option<Vec<Vec<f32>>>,
    state: CheckpointState,
}

fn load_checkpoint(
    path: &Path,
    params: &[(String, candle_core::Var)],
    sizes: &[usize],
    fingerprint: &str,
) -> Result<Restored, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let bad = |reason: String| ModelError::load(path, reason);
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a checkpoint: {e}")))?;
    let state: CheckpointState = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(CHECKPOINT_KEY))
        .ok_or_else(|| bad("not a rewardkit checkpoint (no training state)".into()))
        .and_then(|json| {
            serde_json::from_str(json).map_err(|e| bad(format!("unreadable training state: {e}")))
        })?;
    if state.fingerprint != fingerprint {
        return Err(bad(
            "the checkpoint was written by a run with other settings, model or data; \
             resume with the same command, or remove the checkpoint to start afresh"
                .into(),
        ));
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| bad(e.to_string()))?;
    let get = |key: String, size: usize| -> Result<Vec<f32>, ModelError> {
        let tensor = tensors
            .get(&key)
            .ok_or_else(|| bad(format!("missing tensor `{key}`")))?;
        let values = tensor.flatten_all()?.to_vec1::<f32>()?;
        if values.len() != size {
            return Err(bad(format!(
                "tensor `{key}` has {} values, expected {size}",
                values.len()
            )));
        }
        Ok(values)
    };
    let mut restored = Restored {
        params: Vec::new(),
        moments: Vec::new(),
        best: None,
        state,
    };
    let has_best = params
        .first()
        .is_some_and(|(name, _)| tensors.contains_key(&format!("best.{name}")));
    let mut best = Vec::new();
    for ((name, _), &size) in params.iter().zip(sizes) {
        restored.params.push(get(format!("param.{name}"), size)?);
        restored.moments.push(Moments {
            m: get(format!("adam.m.{name}"), size)?,
            v: get(format!("adam.v.{name}"), size)?,
        });
        if has_best {
            best.push(get(format!("best.{name}"), size)?);
        }
    }
    restored.best = has_best.then_some(best);
    Ok(restored)
}
