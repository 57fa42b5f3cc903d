//! Shaping in a spec: per-term transforms, the combination methods of `rewardkit-shape`, and
//! advantages, evaluated column by column over a batch.
//!
//! A spec's reward is computed in three stages, each over *columns* (one value per sample):
//!
//! 1. **term values**: a term's score, or its non-score policy's substitute; a sample whose term
//!    excludes or propagates gets NaN in every column (masked: left out of every statistic) and
//!    that outcome as its reward;
//! 2. **transforms**, per term, in the order the spec lists them (`transform = [...]`);
//! 3. **the combination** (`[combine] method = ...`) into one reward per sample; then, if the spec
//!    has an `[advantages]` table, an advantage per sample over the reward column and the groups.
//!
//! Some stages look only at the sample itself (clip, ceiling, PAR, log-sigmoid centring, weighted
//! sum, min, product, gate, hybrid, constrained with fixed multipliers); others pool statistics
//! over a group or the batch (normalisation, min-max, sum-then-normalise, normalise-then-sum,
//! advantages). A spec with only per-sample stages is computed inside `Pipeline::score_one`, and
//! "batched == single" holds. A spec with a pooled stage cannot be: its reward is defined only
//! for a whole batch, so `score_one`/`score_batch` leave the reward *pending* (an unscorable
//! outcome that says so) and the caller runs [`crate::Pipeline::shape`] over the whole batch —
//! never silently per sample.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

use rewardkit_core::{Outcome, Sample};
use rewardkit_shape::combine;
use rewardkit_shape::transform::{self, ReferenceQuantile, Scope};
use rewardkit_shape::{
    advantages, AdvantageMethod, AdvantageOptions, AdvantageSummary, Estimator, Groups,
    LagrangeMultipliers, LagrangeState, MessageCounts, RunningStats, ShapeError, Squash, StdKind,
    StdScope,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ScoredSample;

/// Which samples a pooled stage takes its statistics over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolScope {
    /// Each group (the samples with the same group id; a sample without one is its own group).
    #[default]
    Group,
    /// The whole batch (for `rewardkit score`: the whole input file).
    Batch,
}

fn sample_std() -> StdKind {
    StdKind::Sample
}

fn default_epsilon() -> f64 {
    1e-6
}

fn default_k() -> f64 {
    1.0
}

/// One entry of a term's `transform = [...]` list, applied to the term's value.
///
/// ```toml
/// transform = [
///   { kind = "clip", low = -5.0, high = 5.0 },
///   { kind = "log_sigmoid", reference_field = "ref_rewards", reference_quantile = { method = "normal", q = 0.85 } },
///   { kind = "normalize", scope = "group" },
/// ]
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformSpec {
    /// `clamp(x, low, high)`.
    Clip {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// `min(x, max)` (PAR's "Ceil" baseline).
    Ceiling {
        /// The ceiling.
        max: f64,
    },
    /// `(x − mean)/(std + ε)` over the group or the batch (pooled).
    Normalize {
        /// Group or batch.
        #[serde(default)]
        scope: PoolScope,
        /// Population or sample std.
        #[serde(default = "sample_std")]
        std: StdKind,
        /// Added to the std.
        #[serde(default = "default_epsilon")]
        epsilon: f64,
    },
    /// `(x − min)/(max − min)` over the group or the batch (pooled).
    MinMax {
        /// Group or batch.
        #[serde(default)]
        scope: PoolScope,
    },
    /// Preference As Reward (Fu et al. 2025, eq. 4): `(1/M) Σ_m σ(k·(x − r_ref,m))`, the
    /// references a fixed list or read from a sample field (a number or a list of numbers).
    Par {
        /// The slope `k`.
        #[serde(default = "default_k")]
        k: f64,
        /// Fixed reference rewards.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        references: Option<Vec<f64>>,
        /// The sample field (dotted path into the row's other fields) holding the references.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference_field: Option<String>,
        /// A JSONL file of reference samples' rewards (relative to the spec), one object per line
        /// with the key field (`reference_key`) and `reward` (a number or a list); lines with
        /// the same key add up to that key's references.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference_file: Option<String>,
        /// With `reference_file`: the field that keys both the file's lines and the samples
        /// (default `group`: the sample's group id).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference_key: Option<String>,
    },
    /// Log-sigmoid centring (Wang et al. 2024, eq. 5): `log σ(x − r_ref)`, with `r_ref` fixed or
    /// read from a sample field: a number is the reference itself, a list of reference-sample
    /// rewards is reduced by `reference_quantile`.
    LogSigmoid {
        /// A fixed reference reward.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<f64>,
        /// The sample field holding the reference reward or the reference samples' rewards.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference_field: Option<String>,
        /// A JSONL file of reference samples' rewards, as for `par`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference_file: Option<String>,
        /// With `reference_file`: the key field (default `group`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference_key: Option<String>,
        /// How a list of reference rewards becomes one (`{ method = "empirical" | "normal", q }`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference_quantile: Option<ReferenceQuantile>,
    },
    /// Running mean/std normalisation, PAR's "Meanstd" baseline (Fu et al. 2025 §5): the batch's
    /// values join running statistics kept across batches, then `(x − μ_run)/(σ_run + ε)`.
    NormalizeRunning {
        /// Population or sample std.
        #[serde(default = "sample_std")]
        std: StdKind,
        /// Added to the std.
        #[serde(default = "default_epsilon")]
        epsilon: f64,
        /// Where the running statistics are restored from (if the file exists) and saved to
        /// (`rewardkit score --save-state`); relative to the spec.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state_file: Option<String>,
    },
    /// PAR's "Clip" baseline: `clip(x, μ_run − σ_run, μ_run + σ_run)` with running statistics.
    ClipRunning {
        /// Population or sample std.
        #[serde(default = "sample_std")]
        std: StdKind,
        /// As for `normalize_running`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state_file: Option<String>,
    },
    /// PAR's "Minmax" baseline: `(x − min_run)/(max_run − min_run)` with running extremes.
    MinMaxRunning {
        /// As for `normalize_running`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state_file: Option<String>,
    },
    /// ONI's count decay (Zheng et al. 2024, methods.md §15): `x / N^β`, `N` the number of times
    /// the sample's message (the value of `key_field`) has been seen, this batch included. With
    /// the term's weight as `α_int` and an extrinsic term, the weighted sum is ONI's reward.
    CountDecay {
        /// The sample field whose value is the message (a string or a number).
        key_field: String,
        /// The exponent β (ONI: 3).
        #[serde(default = "three")]
        beta: f64,
        /// Where the counts are restored from and saved to, as for `normalize_running`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state_file: Option<String>,
    },
    /// MM-RLHF dynamic reward scaling (Zhang et al. 2025, MM-DPO; methods.md §22): the term's
    /// value is a reward margin `δ`, the result `β(δ) = β·(1 + w·(1 − e^{−kδ}))`, clamped below at
    /// 1e-3 — the per-pair β of the DPO loss.
    DynamicBeta {
        /// β_ori (the authors: 0.1).
        #[serde(default = "point_one")]
        beta: f64,
        /// w (the authors: 0.1).
        #[serde(default = "point_one")]
        w: f64,
        /// k (not published **\[recon\]**).
        #[serde(default = "default_k")]
        k: f64,
    },
}

fn three() -> f64 {
    3.0
}

impl TransformSpec {
    /// Whether the transform pools statistics over a group or the batch.
    pub fn pooled(&self) -> Option<PoolScope> {
        match self {
            TransformSpec::Normalize { scope, .. } | TransformSpec::MinMax { scope } => {
                Some(*scope)
            }
            _ => None,
        }
    }

    /// Makes relative `reference_file` and `state_file` paths relative to `dir` (the spec's).
    pub(crate) fn resolve_paths(&mut self, dir: &std::path::Path) {
        let files: Vec<&mut String> = match self {
            TransformSpec::Par { reference_file, .. }
            | TransformSpec::LogSigmoid { reference_file, .. } => {
                reference_file.iter_mut().collect()
            }
            TransformSpec::NormalizeRunning { state_file, .. }
            | TransformSpec::ClipRunning { state_file, .. }
            | TransformSpec::MinMaxRunning { state_file }
            | TransformSpec::CountDecay { state_file, .. } => state_file.iter_mut().collect(),
            _ => Vec::new(),
        };
        for file in files {
            if std::path::Path::new(file.as_str()).is_relative() && !file.is_empty() {
                *file = dir.join(file.as_str()).display().to_string();
            }
        }
    }

    /// Whether the transform keeps state from batch to batch (running statistics, counts), and
    /// its state file if it has one.
    pub fn state_file(&self) -> Option<Option<&str>> {
        match self {
            TransformSpec::NormalizeRunning { state_file, .. }
            | TransformSpec::ClipRunning { state_file, .. }
            | TransformSpec::MinMaxRunning { state_file }
            | TransformSpec::CountDecay { state_file, .. } => Some(state_file.as_deref()),
            _ => None,
        }
    }

    /// Whether the transform can run only in the batch pass (it pools, or it carries state).
    pub fn batch_only(&self) -> bool {
        self.pooled().is_some() || self.state_file().is_some()
    }

    /// Where a reference-reading transform reads: `(field, file, key)`.
    fn reference_source(&self) -> Option<(Option<&str>, Option<&str>, Option<&str>)> {
        match self {
            TransformSpec::Par {
                references: None,
                reference_field,
                reference_file,
                reference_key,
                ..
            }
            | TransformSpec::LogSigmoid {
                reference: None,
                reference_field,
                reference_file,
                reference_key,
                ..
            } => Some((
                reference_field.as_deref(),
                reference_file.as_deref(),
                reference_key.as_deref(),
            )),
            _ => None,
        }
    }

    /// Checks the options; the error says what was expected.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let finite = |name: &str, x: f64| {
            if x.is_finite() {
                Ok(())
            } else {
                Err(format!("`{name}`: expected a finite number (got {x})"))
            }
        };
        match self {
            TransformSpec::Clip { low, high } => {
                finite("low", *low)?;
                finite("high", *high)?;
                if low > high {
                    return Err(format!("`low` {low} is above `high` {high}"));
                }
            }
            TransformSpec::Ceiling { max } => finite("max", *max)?,
            TransformSpec::Normalize { epsilon, .. } => {
                if !(epsilon.is_finite() && *epsilon >= 0.0) {
                    return Err(format!(
                        "`epsilon`: expected a finite number ≥ 0 (got {epsilon})"
                    ));
                }
            }
            TransformSpec::MinMax { .. } | TransformSpec::MinMaxRunning { .. } => {}
            TransformSpec::NormalizeRunning { epsilon, .. } => {
                if !(epsilon.is_finite() && *epsilon >= 0.0) {
                    return Err(format!(
                        "`epsilon`: expected a finite number ≥ 0 (got {epsilon})"
                    ));
                }
            }
            TransformSpec::ClipRunning { .. } => {}
            TransformSpec::CountDecay {
                key_field, beta, ..
            } => {
                check_field("key_field", key_field)?;
                finite("beta", *beta)?;
            }
            TransformSpec::DynamicBeta { beta, w, k } => {
                if !(beta.is_finite() && *beta >= 0.0) {
                    return Err(format!("`beta`: expected a finite number ≥ 0 (got {beta})"));
                }
                finite("w", *w)?;
                finite("k", *k)?;
            }
            TransformSpec::Par {
                k,
                references,
                reference_field,
                reference_file,
                reference_key,
            } => {
                if !(k.is_finite() && *k > 0.0) {
                    return Err(format!("`k`: expected a finite slope > 0 (got {k})"));
                }
                check_sources(
                    "references",
                    references.is_some(),
                    reference_field.as_deref(),
                    reference_file.as_deref(),
                    reference_key.as_deref(),
                )?;
                if let Some(refs) = references {
                    if refs.is_empty() || refs.iter().any(|r| !r.is_finite()) {
                        return Err(
                            "`references`: expected a non-empty list of finite numbers".into()
                        );
                    }
                }
            }
            TransformSpec::LogSigmoid {
                reference,
                reference_field,
                reference_file,
                reference_key,
                reference_quantile,
            } => {
                check_sources(
                    "reference",
                    reference.is_some(),
                    reference_field.as_deref(),
                    reference_file.as_deref(),
                    reference_key.as_deref(),
                )?;
                if let Some(r) = reference {
                    finite("reference", *r)?;
                }
                if let Some(q) = reference_quantile {
                    if reference.is_some() {
                        return Err(
                            "`reference_quantile` applies to a `reference_field` or `reference_file` only".into()
                        );
                    }
                    // Validates q by asking for the reference of one value.
                    q.reference(&[0.0])
                        .map_err(|e| format!("`reference_quantile`: {e}"))?;
                }
            }
        }
        Ok(())
    }

    /// The formula, for `rewardkit spec check`.
    pub fn describe(&self) -> String {
        let scope = |s: &PoolScope| match s {
            PoolScope::Group => "per group",
            PoolScope::Batch => "over the batch",
        };
        let std = |s: &StdKind| match s {
            StdKind::Population => "population",
            StdKind::Sample => "sample",
        };
        match self {
            TransformSpec::Clip { low, high } => format!("clip to [{low}, {high}]"),
            TransformSpec::Ceiling { max } => format!("min(x, {max})"),
            TransformSpec::Normalize {
                scope: s,
                std: k,
                epsilon,
            } => format!(
                "(x − mean)/({} std + {epsilon}) {} [pooled]",
                std(k),
                scope(s)
            ),
            TransformSpec::MinMax { scope: s } => {
                format!("(x − min)/(max − min) {} [pooled]", scope(s))
            }
            TransformSpec::Par {
                k, references, ..
            } => match references {
                Some(refs) => format!("PAR: mean σ({k}·(x − r_ref)) over r_ref in {refs:?}"),
                None => format!(
                    "PAR: mean σ({k}·(x − r_ref)) over r_ref {}",
                    self.describe_source()
                ),
            },
            TransformSpec::LogSigmoid {
                reference,
                reference_quantile,
                ..
            } => match reference {
                Some(r) => format!("log σ(x − {r})"),
                None => format!(
                    "log σ(x − r_ref), r_ref {}{}",
                    self.describe_source(),
                    match reference_quantile {
                        Some(ReferenceQuantile::Empirical { q }) =>
                            format!(" (a list: empirical {q}-quantile)"),
                        Some(ReferenceQuantile::Normal { q }) =>
                            format!(" (a list: {q}-quantile of a normal fit)"),
                        None => " (a number)".to_owned(),
                    }
                ),
            },
            TransformSpec::NormalizeRunning {
                std: k,
                epsilon,
                state_file,
            } => format!(
                "(x − μ_run)/({} σ_run + {epsilon}), running over every batch so far{} [stateful]",
                std(k),
                describe_state(state_file.as_deref())
            ),
            TransformSpec::ClipRunning { std: k, state_file } => format!(
                "clip(x, μ_run − σ_run, μ_run + σ_run), {} std, running{} [stateful]",
                std(k),
                describe_state(state_file.as_deref())
            ),
            TransformSpec::MinMaxRunning { state_file } => format!(
                "(x − min_run)/(max_run − min_run), running{} [stateful]",
                describe_state(state_file.as_deref())
            ),
            TransformSpec::CountDecay {
                key_field,
                beta,
                state_file,
            } => format!(
                "x / N^{beta}, N = times field `{key_field}` was seen (this batch included){} [stateful]",
                describe_state(state_file.as_deref())
            ),
            TransformSpec::DynamicBeta { beta, w, k } => format!(
                "MM-RLHF β(δ = x) = max({beta}·(1 + {w}·(1 − e^(−{k}·x))), 1e-3)"
            ),
        }
    }

    fn describe_source(&self) -> String {
        match self.reference_source() {
            Some((Some(field), _, _)) => format!("from field `{field}`"),
            Some((_, Some(file), key)) => format!("from {file} by `{}`", key.unwrap_or("group")),
            _ => "?".to_owned(),
        }
    }
}

fn describe_state(file: Option<&str>) -> String {
    match file {
        None => " (state kept in this process only)".to_owned(),
        Some(file) if std::path::Path::new(file).exists() => format!(" (state from {file})"),
        Some(file) => format!(" (state file {file}: not there yet, starts empty)"),
    }
}

fn check_field(key: &str, field: &str) -> Result<(), String> {
    if field.is_empty() || field.split('.').any(str::is_empty) {
        Err(format!(
            "`{key}`: expected a dotted field path (got {field:?})"
        ))
    } else {
        Ok(())
    }
}

/// Exactly one source of reference rewards: fixed values (`fixed`), a sample field or a file.
fn check_sources(
    fixed: &str,
    has_fixed: bool,
    field: Option<&str>,
    file: Option<&str>,
    key: Option<&str>,
) -> Result<(), String> {
    let given = [has_fixed, field.is_some(), file.is_some()]
        .iter()
        .filter(|&&x| x)
        .count();
    if given != 1 {
        return Err(format!(
            "give exactly one of `{fixed}`, `reference_field` and `reference_file`"
        ));
    }
    if let Some(field) = field {
        check_field("reference_field", field)?;
    }
    if let Some(file) = file {
        if file.is_empty() {
            return Err("`reference_file`: expected a file name".into());
        }
    }
    match (key, file) {
        (Some(_), None) => Err("`reference_key` applies to a `reference_file` only".into()),
        (Some(key), Some(_)) => check_field("reference_key", key),
        _ => Ok(()),
    }
}

/// The `[combine]` table: how the (transformed) term values become one reward.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Combine {
    /// `Σ_i w_i·u_i`.
    #[default]
    WeightedSum,
    /// `min_i w_i·u_i` (the weakest property decides).
    Min,
    /// Conjunction (Wang et al. 2024, eq. 6; methods.md §1): `Σ_i log σ(r_i − r_ref,i)`, the log
    /// of the probability that every property is good, so one property far below its reference
    /// cannot be bought back by another far above. Every term must end its transforms with
    /// `log_sigmoid` (which supplies its reference) and keep weight 1.
    Conjunction,
    /// `Π_i w_i·u_i` (for terms in [0, 1]: the probability that all hold).
    Product,
    /// A gate: `Σ_{i≠gate} w_i·u_i` where the gate term's value is at least `threshold`, else
    /// `otherwise` (e.g. correctness counts only with a valid format).
    Gate {
        /// The gating term's name.
        gate: String,
        /// The gate passes at values ≥ this.
        threshold: f64,
        /// The reward when the gate fails.
        #[serde(default)]
        otherwise: f64,
    },
    /// Hybrid rule-plus-model (HARMO's `R_hyb`, methods.md §19): the rule term's weighted value
    /// where the rule is confident — it scored — and the model term's elsewhere, plus every
    /// other term's weighted value. The rule term's non-scores fall back to the model instead
    /// of following its non-score policy.
    Hybrid {
        /// The rule-based verifier term.
        rule: String,
        /// The model (or any fallback) term.
        model: String,
    },
    /// Sum, then normalise: `normalize(Σ_i w_i·u_i)` over the group or batch (pooled).
    SumThenNormalize {
        /// Group or batch.
        #[serde(default)]
        scope: PoolScope,
        /// Population or sample std.
        #[serde(default = "sample_std")]
        std: StdKind,
        /// Added to the std.
        #[serde(default = "default_epsilon")]
        epsilon: f64,
    },
    /// Normalise, then sum: `Σ_i w_i·normalize(u_i)` over the group or batch (pooled).
    NormalizeThenSum {
        /// Group or batch.
        #[serde(default)]
        scope: PoolScope,
        /// Population or sample std.
        #[serde(default = "sample_std")]
        std: StdKind,
        /// Added to the std.
        #[serde(default = "default_epsilon")]
        epsilon: f64,
    },
    /// Lexicographic priority with margins, scalarised (HERON, Bukharin et al., methods.md §10):
    /// each sample's reward is its net win rate `(wins − losses)/(K − 1)` against the other
    /// `K − 1` samples of its group (or the batch) under HERON's comparator — compare the terms
    /// in `order`, the first whose difference exceeds its margin decides (pooled). Weights do not
    /// apply.
    Lexicographic {
        /// Every term, most important first.
        order: Vec<String>,
        /// Margin per level (default 0 everywhere).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        margins: Option<Vec<f64>>,
        /// HERON's margins instead: `sigma_mult × std` of each level over the batch, none at the
        /// first level.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sigma_mult: Option<f64>,
        /// Terms where lower is better (e.g. a length).
        #[serde(default)]
        lower_is_better: Vec<String>,
        /// Compare within each group or across the batch.
        #[serde(default)]
        scope: PoolScope,
    },
    /// Constrained combination with Lagrange multipliers (Moskovitz et al. 2024, methods.md §8):
    /// `Σ_i (1 − λ_i)·u_base + Σ_i λ_i·u_i` over the constraint terms `i`, with
    /// `λ_i = squash(μ_i)`. The multipliers are fixed while a batch is scored; the batch pass
    /// reports them updated from the batch's constraint means (one SGD step).
    Constrained {
        /// The task term.
        base: String,
        /// The constraint terms and their thresholds `θ_i`.
        thresholds: BTreeMap<String, f64>,
        /// `sigmoid` (inequality constraints) or `tanh` (equality).
        #[serde(default = "default_squash")]
        squash: Squash,
        /// SGD learning rate (the authors: 0.1).
        #[serde(default = "point_one")]
        learning_rate: f64,
        /// SGD momentum (the authors: 0.1).
        #[serde(default = "point_one")]
        momentum: f64,
        /// The starting `μ` of every multiplier.
        #[serde(default)]
        initial_mu: f64,
        /// A saved multiplier state (JSON, as `rewardkit score --multipliers-out` writes it) to
        /// start from instead of `initial_mu`; relative to the spec's directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state_file: Option<String>,
    },
}

fn default_squash() -> Squash {
    Squash::Sigmoid
}

fn point_one() -> f64 {
    0.1
}

/// The advantage estimators a spec can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EstimatorName {
    /// GRPO.
    Grpo,
    /// Dr.GRPO.
    DrGrpo,
    /// RLOO.
    Rloo,
    /// REINFORCE++ without a baseline.
    ReinforcePp,
    /// REINFORCE++ with the group-mean baseline.
    ReinforcePpBaseline,
}

fn advantage_column() -> String {
    "advantage".to_owned()
}

/// The `[advantages]` table: an advantage per sample, computed over the reward column and the
/// groups by the batch pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvantagesSpec {
    /// The estimator.
    pub estimator: EstimatorName,
    /// GRPO only: group, batch or no std scaling (default group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<StdScope>,
    /// GRPO and REINFORCE++: population or sample std (default sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<StdKind>,
    /// GRPO and REINFORCE++: added to the std (default 1e-6 for GRPO, 1e-8 for REINFORCE++).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// Mask the samples of zero-variance groups instead of giving them 0.
    #[serde(default)]
    pub filter_zero_variance: bool,
    /// The output column.
    #[serde(default = "advantage_column")]
    pub column: String,
}

impl AdvantagesSpec {
    /// The estimator with defaults filled in; the error names the key and what was expected.
    ///
    /// The checks and defaults are `rewardkit-shape`'s [`AdvantageOptions::resolve`], the same as
    /// `rewardkit advantages` and the server's `/v1/advantages` use.
    pub fn estimator(&self) -> Result<Estimator, (String, String)> {
        let method = match self.estimator {
            EstimatorName::Grpo => AdvantageMethod::Grpo,
            EstimatorName::DrGrpo => AdvantageMethod::DrGrpo,
            EstimatorName::Rloo => AdvantageMethod::Rloo,
            EstimatorName::ReinforcePp => AdvantageMethod::ReinforcePp,
            EstimatorName::ReinforcePpBaseline => AdvantageMethod::ReinforcePpBaseline,
        };
        let options = AdvantageOptions {
            scale: self.scale,
            std: self.std,
            epsilon: self.epsilon,
            filter_zero_variance: self.filter_zero_variance,
            ..AdvantageOptions::default()
        };
        match options.resolve(method) {
            Ok(config) => Ok(config.estimator),
            Err(error) => {
                let key = match &error {
                    ShapeError::InvalidOption { option, .. }
                    | ShapeError::NotApplicable { option, .. } => format!("advantages.{option}"),
                    _ => "advantages".to_owned(),
                };
                Err((key, error.to_string()))
            }
        }
    }
}

/// What the batch pass needs from one sample besides its scores: its group id and the reference
/// rewards the spec reads from its fields. Small: the completion is not kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShapeInput {
    /// The sample's group id.
    pub group: Option<String>,
    /// One entry per reference-reading transform (a field or a reference file), in spec order:
    /// the numbers, or why there are none.
    references: Vec<Result<Vec<f64>, String>>,
    /// One entry per `count_decay` transform, in spec order: the message key, or why there is
    /// none.
    keys: Vec<Result<String, String>>,
}

/// The state a stateful transform (running statistics, message counts) carries to the next batch.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformState {
    /// The term's name.
    pub term: String,
    /// The transform's index in the term's `transform` list.
    pub transform: usize,
    /// Where it is saved (`state_file`), if anywhere.
    pub state_file: Option<String>,
    /// The state after this batch, as its file holds it (JSON).
    pub state: Value,
}

/// The result of the batch pass, one entry per sample (in input order) unless said otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Shaped {
    /// The combined reward.
    pub rewards: Vec<Outcome>,
    /// Per term (spec order), the value after its transforms (NaN where masked); empty for a
    /// term without transforms.
    pub shaped_terms: Vec<Vec<f64>>,
    /// The advantages (NaN where masked), when the spec has an `[advantages]` table.
    pub advantages: Option<Vec<f64>>,
    /// What the estimator could not use.
    pub advantage_summary: Option<AdvantageSummary>,
    /// For a constrained combination: the multipliers used, and their state after one update
    /// from this batch's constraint means (`None` when a constraint had no finite value).
    pub multipliers: Option<MultiplierReport>,
}

/// The multipliers of a constrained combination around one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiplierReport {
    /// The constraint terms, in the order of the lists below.
    pub constraints: Vec<String>,
    /// `λ_i` used for this batch.
    pub used: Vec<f64>,
    /// The batch means of the constraint terms' (transformed) values.
    pub means: Vec<f64>,
    /// The state after one update, to save for the next batch.
    pub next: Option<LagrangeState>,
}

/// A term as the shaping stages see it.
pub(crate) struct ShapeTerm {
    pub name: String,
    pub weight: f64,
    pub policy: crate::NonScorePolicy,
    pub transforms: Vec<TransformSpec>,
}

/// The shaping stages of a built pipeline.
pub(crate) struct Shaping {
    pub terms: Vec<ShapeTerm>,
    pub combine: ResolvedCombine,
    pub advantages: Option<(Estimator, AdvantagesSpec)>,
    /// Where each reference-reading transform gets its references, in spec order.
    sources: Vec<Source>,
    /// The key field path of each `count_decay` transform, in spec order.
    key_fields: Vec<Vec<String>>,
    /// `(term, transform, state file)` of each stateful transform, in spec order.
    slots: Vec<(usize, usize, Option<String>)>,
    /// Their states, carried from batch to batch (locked for a whole batch pass, so concurrent
    /// passes — the server's — see each other's updates one after the other).
    states: Mutex<Vec<State>>,
}

/// Where a reference-reading transform gets a sample's reference rewards.
enum Source {
    /// A field of the sample (a dotted path).
    Field(Vec<String>),
    /// A reference file, loaded when the pipeline is built.
    File {
        file: String,
        /// The key's name, for messages.
        key_name: String,
        /// `None`: the sample's group id; else a field path.
        key: Option<Vec<String>>,
        table: HashMap<String, Vec<f64>>,
    },
}

/// One stateful transform's state.
#[derive(Clone, Debug, PartialEq)]
enum State {
    Moments(RunningStats),
    Counts(MessageCounts),
}

impl State {
    fn to_json(&self) -> Value {
        match self {
            State::Moments(m) => serde_json::to_value(m),
            State::Counts(c) => serde_json::to_value(c),
        }
        .unwrap_or(Value::Null)
    }
}

/// A combination with term names resolved to indices.
pub(crate) enum ResolvedCombine {
    WeightedSum,
    Conjunction,
    Min,
    Product,
    Gate {
        gate: usize,
        threshold: f64,
        otherwise: f64,
    },
    Hybrid {
        rule: usize,
        model: usize,
    },
    SumThenNormalize {
        scope: PoolScope,
        std: StdKind,
        epsilon: f64,
    },
    NormalizeThenSum {
        scope: PoolScope,
        std: StdKind,
        epsilon: f64,
    },
    Constrained {
        base: usize,
        constraints: Vec<usize>,
        multipliers: LagrangeMultipliers,
    },
    Lexicographic {
        order: Vec<usize>,
        margins: Option<Vec<f64>>,
        sigma_mult: Option<f64>,
        higher_is_better: Vec<bool>,
        scope: PoolScope,
    },
}

impl Shaping {
    /// Builds the shaping stages, loading reference files and saved states; the error is
    /// `(key, expected)`.
    pub fn new(
        terms: Vec<ShapeTerm>,
        combine: ResolvedCombine,
        advantages: Option<(Estimator, AdvantagesSpec)>,
    ) -> Result<Shaping, (String, String)> {
        let path = |f: &str| f.split('.').map(str::to_owned).collect::<Vec<_>>();
        let mut sources = Vec::new();
        let mut key_fields = Vec::new();
        let mut slots = Vec::new();
        let mut states = Vec::new();
        for (t, term) in terms.iter().enumerate() {
            for (k, transform) in term.transforms.iter().enumerate() {
                let key = || format!("term[{t}].transform[{k}]");
                match transform.reference_source() {
                    Some((Some(field), _, _)) => sources.push(Source::Field(path(field))),
                    Some((None, Some(file), key_name)) => {
                        let key_name = key_name.unwrap_or("group");
                        let table = load_references(file, key_name)
                            .map_err(|expected| (format!("{}.reference_file", key()), expected))?;
                        sources.push(Source::File {
                            file: file.to_owned(),
                            key_name: key_name.to_owned(),
                            key: (key_name != "group").then(|| path(key_name)),
                            table,
                        });
                    }
                    _ => {}
                }
                if let TransformSpec::CountDecay { key_field, .. } = transform {
                    key_fields.push(path(key_field));
                }
                if let Some(file) = transform.state_file() {
                    let counts = matches!(transform, TransformSpec::CountDecay { .. });
                    let state = load_state(file, counts)
                        .map_err(|expected| (format!("{}.state_file", key()), expected))?;
                    slots.push((t, k, file.map(str::to_owned)));
                    states.push(state);
                }
            }
        }
        Ok(Shaping {
            terms,
            combine,
            advantages,
            sources,
            key_fields,
            slots,
            states: Mutex::new(states),
        })
    }

    /// The stateful transforms' current states, in spec order (serialised on demand: a table of
    /// message counts can be large).
    pub fn states(&self) -> Vec<TransformState> {
        if self.slots.is_empty() {
            return Vec::new();
        }
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        self.slots
            .iter()
            .zip(states.iter())
            .map(|((t, k, file), state)| TransformState {
                term: self.terms[*t].name.clone(),
                transform: *k,
                state_file: file.clone(),
                state: state.to_json(),
            })
            .collect()
    }

    /// The pooled stages, described; empty when the reward is computable per sample.
    pub fn pooled_stages(&self) -> Vec<String> {
        let mut stages = Vec::new();
        for term in &self.terms {
            for t in &term.transforms {
                if t.batch_only() {
                    stages.push(format!("term `{}`: {}", term.name, t.describe()));
                }
            }
        }
        match &self.combine {
            ResolvedCombine::SumThenNormalize { .. } => {
                stages.push("combine: sum_then_normalize".into())
            }
            ResolvedCombine::NormalizeThenSum { .. } => {
                stages.push("combine: normalize_then_sum".into())
            }
            ResolvedCombine::Lexicographic { .. } => stages.push("combine: lexicographic".into()),
            _ => {}
        }
        stages
    }

    fn uses_groups(&self, with_advantages: bool) -> bool {
        let group = |s: &PoolScope| *s == PoolScope::Group;
        self.terms
            .iter()
            .flat_map(|t| &t.transforms)
            .any(|t| t.pooled().as_ref().is_some_and(group))
            || matches!(
                &self.combine,
                ResolvedCombine::SumThenNormalize { scope, .. }
                    | ResolvedCombine::NormalizeThenSum { scope, .. }
                    | ResolvedCombine::Lexicographic { scope, .. } if group(scope)
            )
            || (with_advantages
                && self
                    .advantages
                    .as_ref()
                    .is_some_and(|(e, _)| e.uses_groups()))
    }

    /// The sample's shape input; `with_group` false leaves the group out (for the per-sample
    /// path, which never pools).
    pub fn input(&self, sample: &Sample, with_group: bool) -> ShapeInput {
        ShapeInput {
            group: if with_group {
                sample.group.clone()
            } else {
                None
            },
            references: self
                .sources
                .iter()
                .map(|source| match source {
                    Source::Field(path) => read_numbers(&sample.metadata, path),
                    Source::File {
                        file,
                        key_name,
                        key,
                        table,
                    } => {
                        let found = match key {
                            None => sample.group.clone().ok_or_else(|| {
                                format!("no group id to look up in {file} (keyed by `group`)")
                            }),
                            Some(path) => read_key(&sample.metadata, path),
                        };
                        found.and_then(|k| {
                            table.get(&k).cloned().ok_or_else(|| {
                                format!("{file} has no reference rewards for `{key_name}` = {k:?}")
                            })
                        })
                    }
                })
                .collect(),
            keys: self
                .key_fields
                .iter()
                .map(|path| read_key(&sample.metadata, path))
                .collect(),
        }
    }

    /// The whole computation over a batch. `inputs[s]` belongs to `scored[s]`. `carried`
    /// replaces a constrained combination's multipliers (a server carrying them between batches,
    /// [`crate::Pipeline::shape_with_multipliers`]).
    pub fn run(
        &self,
        scored: &[ScoredSample],
        inputs: &[ShapeInput],
        with_advantages: bool,
        carried: Option<&LagrangeMultipliers>,
    ) -> Result<Shaped, String> {
        let n = scored.len();
        if inputs.len() != n {
            return Err(format!(
                "{} shape inputs for {n} scored samples (one per sample)",
                inputs.len()
            ));
        }
        if let Some(s) = scored
            .iter()
            .position(|s| s.terms.len() != self.terms.len())
        {
            return Err(format!(
                "sample {s} has {} term outputs, the spec has {} terms",
                scored[s].terms.len(),
                self.terms.len()
            ));
        }
        if let Some(s) = inputs.iter().position(|i| {
            i.references.len() != self.sources.len() || i.keys.len() != self.key_fields.len()
        }) {
            return Err(format!(
                "shape input {s} was made for another spec ({} reference sources and {} keys, expected {} and {})",
                inputs[s].references.len(),
                inputs[s].keys.len(),
                self.sources.len(),
                self.key_fields.len()
            ));
        }
        if self.uses_groups(with_advantages) && n > 0 && inputs.iter().all(|i| i.group.is_none()) {
            return Err(
                "the spec pools per group (a group-scope stage or a group-based \
                 estimator) but no sample has a group id; give the rows a group field or a \
                 list of completions"
                    .into(),
            );
        }
        let groups = group_table(inputs);
        let scope = |s: PoolScope| match s {
            PoolScope::Group => Scope::Groups(&groups),
            PoolScope::Batch => Scope::Batch,
        };
        // Stage 1: term values, and the outcome of samples whose reward is not a number.
        let mut verdict: Vec<Option<Outcome>> = vec![None; n];
        // Under a hybrid combination, the rule's non-scores fall back to the model, and the
        // model's non-score policy applies only where the model is used (decided in stage 3).
        let (hybrid_rule, hybrid_model) = match self.combine {
            ResolvedCombine::Hybrid { rule, model } => (Some(rule), Some(model)),
            _ => (None, None),
        };
        let mut columns: Vec<Vec<f64>> = Vec::with_capacity(self.terms.len());
        for (t, term) in self.terms.iter().enumerate() {
            let mut column = Vec::with_capacity(n);
            for (s, sample) in scored.iter().enumerate() {
                let outcome = &sample.terms[t].outcome;
                column.push(match outcome.value() {
                    Some(v) => v,
                    None if hybrid_rule == Some(t) => f64::NAN,
                    None => match &term.policy {
                        crate::NonScorePolicy::Exclude | crate::NonScorePolicy::Propagate
                            if hybrid_model == Some(t) =>
                        {
                            f64::NAN
                        }
                        crate::NonScorePolicy::Value { value } => *value,
                        crate::NonScorePolicy::Exclude => {
                            verdict[s].get_or_insert_with(|| {
                                Outcome::unscorable(format!(
                                    "excluded: {}: {}",
                                    term.name,
                                    outcome.reason().unwrap_or("no score")
                                ))
                            });
                            f64::NAN
                        }
                        crate::NonScorePolicy::Propagate => {
                            verdict[s].get_or_insert_with(|| {
                                crate::pipeline::propagate(&term.name, outcome)
                            });
                            f64::NAN
                        }
                    },
                });
            }
            columns.push(column);
        }
        // A sample with a verdict is masked in every column, so it is left out of every pooled
        // statistic (its reward is not a number).
        for column in &mut columns {
            for (value, v) in column.iter_mut().zip(&verdict) {
                if v.is_some() {
                    *value = f64::NAN;
                }
            }
        }
        // Stage 2: transforms. Stateful ones work on a copy of the states, kept only if the whole
        // pass succeeds; the lock is held to the end so passes update the state one at a time.
        // Specs without stateful transforms (every per-sample pipeline) never take the lock.
        let mut state_guard =
            (!self.slots.is_empty()).then(|| self.states.lock().unwrap_or_else(|e| e.into_inner()));
        // Running moments are small: copied, and written back at the end. Message counts can be
        // large: read in place, and the batch's keys added at the end.
        let mut moments: Vec<Option<RunningStats>> = state_guard
            .as_deref()
            .map(|states| {
                states
                    .iter()
                    .map(|s| match s {
                        State::Moments(m) => Some(*m),
                        State::Counts(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut pending_keys: Vec<(usize, Vec<Option<String>>)> = Vec::new();
        let mut state_slot = 0;
        let mut key_slot = 0;
        let mut slot = 0;
        let mut shaped_terms = Vec::with_capacity(self.terms.len());
        for (t, term) in self.terms.iter().enumerate() {
            for transform in &term.transforms {
                let column = &mut columns[t];
                let next = match transform {
                    TransformSpec::Clip { low, high } => transform::clip(column, *low, *high),
                    TransformSpec::Ceiling { max } => transform::ceiling(column, *max),
                    TransformSpec::Normalize {
                        scope: s,
                        std,
                        epsilon,
                    } => transform::normalize(column, scope(*s), *std, *epsilon),
                    TransformSpec::MinMax { scope: s } => transform::min_max(column, scope(*s)),
                    TransformSpec::Par { k, references, .. } => {
                        let mut out = Vec::with_capacity(n);
                        for s in 0..n {
                            out.push(match references {
                                Some(refs) => transform::par(column[s], refs, *k),
                                None => match inputs[s].references.get(slot) {
                                    Some(Ok(refs)) if !refs.is_empty() => {
                                        transform::par(column[s], refs, *k)
                                    }
                                    found => {
                                        let why = match found {
                                            Some(Err(why)) => why.as_str(),
                                            _ => "the reference list is empty",
                                        };
                                        note(&mut verdict[s], &term.name, "par", why, column[s]);
                                        f64::NAN
                                    }
                                },
                            });
                        }
                        if references.is_none() {
                            slot += 1;
                        }
                        Ok(out)
                    }
                    TransformSpec::LogSigmoid {
                        reference,
                        reference_quantile,
                        ..
                    } => {
                        let mut out = Vec::with_capacity(n);
                        for s in 0..n {
                            let r = match reference {
                                Some(r) => Ok(*r),
                                None => reference_of(
                                    inputs[s].references.get(slot),
                                    reference_quantile.as_ref(),
                                ),
                            };
                            out.push(match r {
                                Ok(r) => transform::log_sigmoid_centred(column[s], r),
                                Err(why) => {
                                    note(
                                        &mut verdict[s],
                                        &term.name,
                                        "log_sigmoid",
                                        &why,
                                        column[s],
                                    );
                                    f64::NAN
                                }
                            });
                        }
                        if reference.is_none() {
                            slot += 1;
                        }
                        Ok(out)
                    }
                    TransformSpec::DynamicBeta { beta, w, k } => Ok(column
                        .iter()
                        .map(|&x| transform::dynamic_beta(x, *beta, *w, *k))
                        .collect()),
                    TransformSpec::NormalizeRunning { std, epsilon, .. } => {
                        state_slot += 1;
                        match &mut moments[state_slot - 1] {
                            Some(m) => transform::normalize_running(column, m, *std, *epsilon),
                            None => unreachable_state(),
                        }
                    }
                    TransformSpec::ClipRunning { std, .. } => {
                        state_slot += 1;
                        match &mut moments[state_slot - 1] {
                            Some(m) => Ok(transform::clip_running(column, m, *std)),
                            None => unreachable_state(),
                        }
                    }
                    TransformSpec::MinMaxRunning { .. } => {
                        state_slot += 1;
                        match &mut moments[state_slot - 1] {
                            Some(m) => Ok(transform::min_max_running(column, m)),
                            None => unreachable_state(),
                        }
                    }
                    TransformSpec::CountDecay { beta, .. } => {
                        state_slot += 1;
                        key_slot += 1;
                        let keys: Vec<Option<String>> = inputs
                            .iter()
                            .map(|i| i.keys[key_slot - 1].as_ref().ok().cloned())
                            .collect();
                        for (s, input) in inputs.iter().enumerate() {
                            if let Err(why) = &input.keys[key_slot - 1] {
                                note(&mut verdict[s], &term.name, "count_decay", why, column[s]);
                            }
                        }
                        match state_guard.as_deref().map(|states| &states[state_slot - 1]) {
                            Some(State::Counts(c)) => {
                                let seen = c.batch_counts(&keys);
                                pending_keys.push((state_slot - 1, keys));
                                rewardkit_shape::decay_by_counts(column, &seen, *beta)
                            }
                            _ => unreachable_state(),
                        }
                    }
                };
                *column = next.map_err(|e| format!("term `{}`: {e}", term.name))?;
            }
            shaped_terms.push(if term.transforms.is_empty() {
                Vec::new()
            } else {
                columns[t].clone()
            });
        }
        // Stage 3: the combination.
        let weights: Vec<f64> = self.terms.iter().map(|t| t.weight).collect();
        let views: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
        let weighted = |cols: &[&[f64]]| -> Vec<Vec<f64>> {
            cols.iter()
                .zip(&weights)
                .map(|(c, w)| c.iter().map(|x| w * x).collect())
                .collect()
        };
        let mut multipliers = None;
        let combined = match &self.combine {
            ResolvedCombine::WeightedSum => combine::weighted_sum(&views, &weights),
            // The terms are already log σ(r_i − r_ref,i) (validated), the weights 1.
            ResolvedCombine::Conjunction => combine::weighted_sum(&views, &weights),
            ResolvedCombine::Min => {
                let w = weighted(&views);
                combine::minimum(&w.iter().map(Vec::as_slice).collect::<Vec<_>>())
            }
            ResolvedCombine::Product => {
                let w = weighted(&views);
                combine::product(&w.iter().map(Vec::as_slice).collect::<Vec<_>>())
            }
            ResolvedCombine::Gate {
                gate,
                threshold,
                otherwise,
            } => {
                let (others, w): (Vec<&[f64]>, Vec<f64>) = views
                    .iter()
                    .zip(&weights)
                    .enumerate()
                    .filter(|(i, _)| i != gate)
                    .map(|(_, (c, w))| (*c, *w))
                    .unzip();
                combine::weighted_sum(&others, &w)
                    .and_then(|value| combine::gate(views[*gate], *threshold, &value, *otherwise))
            }
            ResolvedCombine::Hybrid { rule, model } => {
                let rule_scored: Vec<bool> = scored
                    .iter()
                    .map(|sample| sample.terms[*rule].outcome.value().is_some())
                    .collect();
                let hybrid = combine::hybrid(
                    views[*rule],
                    &rule_scored,
                    views[*model],
                    weights[*rule],
                    weights[*model],
                )
                .map_err(|e| format!("combine: {e}"))?;
                let mut cols: Vec<&[f64]> = vec![&hybrid];
                let mut w = vec![1.0];
                for (i, c) in views.iter().enumerate() {
                    if i != *rule && i != *model {
                        cols.push(c);
                        w.push(weights[i]);
                    }
                }
                // The model term's own non-score matters only where it is used.
                let model_term = &self.terms[*model];
                for s in 0..n {
                    let model_outcome = &scored[s].terms[*model].outcome;
                    if scored[s].terms[*rule].outcome.value().is_some()
                        || model_outcome.value().is_some()
                        || verdict[s].is_some()
                    {
                        continue;
                    }
                    verdict[s] = match &model_term.policy {
                        crate::NonScorePolicy::Value { .. } => None,
                        crate::NonScorePolicy::Exclude => Some(Outcome::unscorable(format!(
                            "excluded: {}: {}",
                            model_term.name,
                            model_outcome.reason().unwrap_or("no score")
                        ))),
                        crate::NonScorePolicy::Propagate => {
                            Some(crate::pipeline::propagate(&model_term.name, model_outcome))
                        }
                    };
                }
                combine::weighted_sum(&cols, &w)
            }
            ResolvedCombine::SumThenNormalize {
                scope: s,
                std,
                epsilon,
            } => combine::sum_then_normalize(&views, &weights, scope(*s), *std, *epsilon),
            ResolvedCombine::NormalizeThenSum {
                scope: s,
                std,
                epsilon,
            } => combine::normalize_then_sum(&views, &weights, scope(*s), *std, *epsilon),
            ResolvedCombine::Lexicographic {
                order,
                margins,
                sigma_mult,
                higher_is_better,
                scope: s,
            } => {
                let factors: Vec<&[f64]> = order.iter().map(|&t| views[t]).collect();
                let comparator = match sigma_mult {
                    Some(m) => rewardkit_shape::Lexicographic::from_buffer(
                        &factors,
                        *m,
                        higher_is_better.clone(),
                    ),
                    None => rewardkit_shape::Lexicographic::new(
                        margins.clone().unwrap_or_else(|| vec![0.0; order.len()]),
                        higher_is_better.clone(),
                    ),
                };
                let single = Groups::single(n);
                let pool = match s {
                    PoolScope::Group => &groups,
                    PoolScope::Batch => &single,
                };
                comparator.and_then(|c| c.group_scores(&factors, pool))
            }
            ResolvedCombine::Constrained {
                base,
                constraints,
                multipliers: from_spec,
            } => {
                let lagrange = carried.unwrap_or(from_spec);
                let terms: Vec<&[f64]> = constraints.iter().map(|&c| views[c]).collect();
                let means: Vec<f64> = terms
                    .iter()
                    .map(|c| {
                        let finite: Vec<f64> =
                            c.iter().copied().filter(|x| x.is_finite()).collect();
                        if finite.is_empty() {
                            f64::NAN
                        } else {
                            finite.iter().sum::<f64>() / finite.len() as f64
                        }
                    })
                    .collect();
                let mut next = lagrange.clone();
                let next = next.update(&means).ok().map(|()| next.state().clone());
                multipliers = Some(MultiplierReport {
                    constraints: constraints
                        .iter()
                        .map(|&c| self.terms[c].name.clone())
                        .collect(),
                    used: lagrange.multipliers(),
                    means,
                    next,
                });
                lagrange.combine(views[*base], &terms)
            }
        }
        .map_err(|e| format!("combine: {e}"))?;
        let rewards: Vec<Outcome> = combined
            .iter()
            .zip(verdict)
            .map(|(&value, verdict)| match verdict {
                Some(outcome) => outcome,
                None if value.is_finite() => Outcome::scored(value),
                None => Outcome::failed(format!(
                    "the combination gave {value} (an infinite or overflowing term value)"
                )),
            })
            .collect();
        // Stage 4: advantages over the reward column.
        let (advantages, advantage_summary) = match &self.advantages {
            Some((estimator, spec)) if with_advantages => {
                let column: Vec<f64> = rewards
                    .iter()
                    .map(|o| o.value().unwrap_or(f64::NAN))
                    .collect();
                let result = advantages(&column, &groups, estimator, spec.filter_zero_variance)
                    .map_err(|e| format!("advantages: {e}"))?;
                (Some(result.values), Some(result.summary))
            }
            _ => (None, None),
        };
        if let Some(states) = state_guard.as_deref_mut() {
            for (slot, m) in moments.into_iter().enumerate() {
                if let Some(m) = m {
                    states[slot] = State::Moments(m);
                }
            }
            for (slot, keys) in pending_keys {
                if let State::Counts(c) = &mut states[slot] {
                    c.add_batch(&keys);
                }
            }
        }
        Ok(Shaped {
            rewards,
            shaped_terms,
            advantages,
            advantage_summary,
            multipliers,
        })
    }
}

fn unreachable_state() -> Result<Vec<f64>, rewardkit_shape::ShapeError> {
    Err(rewardkit_shape::ShapeError::InvalidOption {
        option: "state",
        value: "of another kind".into(),
        expected: "the state kind of the transform (a bug)",
    })
}

/// Reads a reference file: JSONL, each line an object with the key field and `reward` (a number
/// or a list of numbers; null — a reference sample that did not score — is skipped); lines with
/// the same key add up. The error names file, line and field.
fn load_references(file: &str, key: &str) -> Result<HashMap<String, Vec<f64>>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("a readable JSONL file of reference rewards ({file}: {e})"))?;
    let mut table: HashMap<String, Vec<f64>> = HashMap::new();
    let key_path: Vec<String> = key.split('.').map(str::to_owned).collect();
    let reward_path = vec!["reward".to_owned()];
    for (number, line) in text.lines().enumerate() {
        let at = number + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(fields)) => fields,
            Ok(other) => {
                return Err(format!(
                    "one JSON object per line ({file}:{at}: found {})",
                    kind_of(&other)
                ))
            }
            Err(e) => return Err(format!("one JSON object per line ({file}:{at}: {e})")),
        };
        // A reference sample that did not score (`rewardkit score` writes null) is no reference.
        if fields.get("reward") == Some(&Value::Null) {
            continue;
        }
        let k =
            read_key(&fields, &key_path).map_err(|why| format!("a key ({file}:{at}: {why})"))?;
        let rewards = read_numbers(&fields, &reward_path)
            .map_err(|why| format!("reference rewards ({file}:{at}: {why})"))?;
        table.entry(k).or_default().extend(rewards);
    }
    if table.is_empty() {
        return Err(format!("at least one reference reward ({file} has none)"));
    }
    Ok(table)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A saved state, or an empty one when the file does not exist (yet).
fn load_state(file: Option<&str>, counts: bool) -> Result<State, String> {
    let empty = if counts {
        State::Counts(MessageCounts::new())
    } else {
        State::Moments(RunningStats::new())
    };
    let Some(file) = file else { return Ok(empty) };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty),
        Err(e) => return Err(format!("a readable state file ({file}: {e})")),
    };
    if counts {
        serde_json::from_str::<MessageCounts>(&text)
            .map(State::Counts)
            .map_err(|e| {
                format!("message counts in JSON, as --save-state writes them ({file}: {e})")
            })
    } else {
        let moments: RunningStats = serde_json::from_str(&text).map_err(|e| {
            format!("running statistics in JSON, as --save-state writes them ({file}: {e})")
        })?;
        moments
            .validate()
            .map_err(|e| format!("a valid running state ({file}: {e})"))?;
        Ok(State::Moments(moments))
    }
}

/// Reads a string or number at a dotted path of the sample's fields, as a key.
fn read_key(fields: &serde_json::Map<String, Value>, path: &[String]) -> Result<String, String> {
    let display = path.join(".");
    let mut value = fields.get(&path[0]);
    for key in &path[1..] {
        value = value.and_then(|v| v.get(key));
    }
    match value {
        None | Some(Value::Null) => Err(format!("field `{display}` is missing")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(format!(
            "field `{display}`: expected a string or a number as the key, found {}",
            kind_of(other)
        )),
    }
}

/// Records why a sample's term has no shaped value (the first reason wins).
fn note(verdict: &mut Option<Outcome>, term: &str, transform: &str, why: &str, value: f64) {
    if !value.is_finite() {
        return; // already masked for its own reason
    }
    verdict.get_or_insert_with(|| Outcome::unscorable(format!("{term}: {transform}: {why}")));
}

fn reference_of(
    found: Option<&Result<Vec<f64>, String>>,
    quantile: Option<&ReferenceQuantile>,
) -> Result<f64, String> {
    match (found, quantile) {
        (None, _) => Err("no reference".into()),
        (Some(Err(why)), _) => Err(why.clone()),
        (Some(Ok(values)), Some(q)) => q
            .reference(values)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no finite reference reward".to_owned()),
        (Some(Ok(values)), None) if values.len() == 1 => Ok(values[0]),
        (Some(Ok(_)), None) => {
            Err("the field holds a list; set `reference_quantile` to reduce it".into())
        }
    }
}

/// Reads a number or a list of numbers at a dotted path of the sample's other fields.
fn read_numbers(
    fields: &serde_json::Map<String, Value>,
    path: &[String],
) -> Result<Vec<f64>, String> {
    let display = path.join(".");
    let mut value = fields.get(&path[0]);
    for key in &path[1..] {
        value = value.and_then(|v| v.get(key));
    }
    let number = |v: &Value| v.as_f64();
    match value {
        None | Some(Value::Null) => Err(format!("field `{display}` is missing")),
        Some(Value::Number(n)) => Ok(vec![n.as_f64().unwrap_or(f64::NAN)]),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                number(v).ok_or_else(|| {
                    format!("field `{display}`: expected a number or a list of numbers, found {v}")
                })
            })
            .collect(),
        Some(other) => Err(format!(
            "field `{display}`: expected a number or a list of numbers, found {other}"
        )),
    }
}

/// Groups from the samples' ids; a sample without one is a group of its own.
fn group_table(inputs: &[ShapeInput]) -> Groups {
    let mut numbers: HashMap<&str, usize> = HashMap::new();
    let mut ids = Vec::with_capacity(inputs.len());
    let mut next = 0;
    for input in inputs {
        ids.push(match input.group.as_deref() {
            Some(label) => *numbers.entry(label).or_insert_with(|| {
                next += 1;
                next - 1
            }),
            None => {
                next += 1;
                next - 1
            }
        });
    }
    Groups::from_ids(&ids)
}

/// Describes the combination for `rewardkit spec check`.
pub(crate) fn describe_combine(combine: &Combine, terms: &[(String, f64)]) -> String {
    let weighted = |skip: &[&str]| {
        terms
            .iter()
            .filter(|(name, _)| !skip.contains(&name.as_str()))
            .map(|(name, w)| format!("{w} × {name}"))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let std = |s: &StdKind| match s {
        StdKind::Population => "population",
        StdKind::Sample => "sample",
    };
    let scope = |s: &PoolScope| match s {
        PoolScope::Group => "per group",
        PoolScope::Batch => "over the batch",
    };
    let mut out = String::new();
    let _ = match combine {
        Combine::WeightedSum => write!(out, "{}", weighted(&[])),
        Combine::Conjunction => write!(
            out,
            "conjunction: {} (each log σ(r − r_ref); log Π P(good))",
            terms
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        Combine::Min => write!(out, "min({})", weighted(&[]).replace(" + ", ", ")),
        Combine::Product => write!(out, "product({})", weighted(&[]).replace(" + ", ", ")),
        Combine::Gate {
            gate,
            threshold,
            otherwise,
        } => write!(
            out,
            "if {gate} ≥ {threshold}: {} else {otherwise}",
            weighted(&[gate])
        ),
        Combine::Hybrid { rule, model } => {
            let rest = weighted(&[rule, model]);
            let w = |n: &str| terms.iter().find(|(t, _)| t == n).map_or(1.0, |t| t.1);
            write!(
                out,
                "({} × {rule} where {rule} scored, else {} × {model}){}",
                w(rule),
                w(model),
                if rest.is_empty() {
                    String::new()
                } else {
                    format!(" + {rest}")
                }
            )
        }
        Combine::SumThenNormalize {
            scope: s,
            std: k,
            epsilon,
        } => write!(
            out,
            "normalize({}) {} ({} std, ε {epsilon}) [pooled]",
            weighted(&[]),
            scope(s),
            std(k)
        ),
        Combine::NormalizeThenSum {
            scope: s,
            std: k,
            epsilon,
        } => write!(
            out,
            "Σ w × normalize(term) {} ({} std, ε {epsilon}) over {} [pooled]",
            scope(s),
            std(k),
            weighted(&[])
        ),
        Combine::Lexicographic {
            order,
            margins,
            sigma_mult,
            lower_is_better,
            scope: s,
        } => write!(
            out,
            "net win rate {} under the lexicographic order {} (margins {}) [pooled]",
            scope(s),
            order
                .iter()
                .map(|t| if lower_is_better.contains(t) {
                    format!("{t}↓")
                } else {
                    t.clone()
                })
                .collect::<Vec<_>>()
                .join(" > "),
            match (margins, sigma_mult) {
                (_, Some(m)) => format!("{m} × batch std per level, none at the first"),
                (Some(m), None) => format!("{m:?}"),
                (None, None) => "0".to_owned(),
            }
        ),
        Combine::Constrained {
            base,
            thresholds,
            squash,
            ..
        } => write!(
            out,
            "Σ(1 − λ_i) × {base} + Σ λ_i × term_i, λ = {} (μ); constraints: {}",
            match squash {
                Squash::Sigmoid => "sigmoid",
                Squash::Tanh => "tanh",
            },
            thresholds
                .iter()
                .map(|(t, th)| format!("{t} ≥ {th}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    out
}

/// Options of the `field` term kind.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldOptions {
    /// The sample field (dotted path into the row's other fields) holding the value.
    pub field: String,
}

/// A number carried with the sample (kind `field`): a precomputed reward, a reward margin for
/// `dynamic_beta`, ONI's intrinsic label for `count_decay`. `true`/`false` count as 1/0; a
/// missing or null field does not score.
#[derive(Clone, Debug)]
pub struct FieldReward {
    path: Vec<String>,
}

impl FieldReward {
    /// Checks the path.
    pub fn new(options: FieldOptions) -> Result<FieldReward, String> {
        check_field("field", &options.field)?;
        Ok(FieldReward {
            path: options.field.split('.').map(str::to_owned).collect(),
        })
    }
}

fn field_value<'a>(sample: &'a Sample, path: &[String]) -> Option<&'a Value> {
    let mut value = sample.metadata.get(&path[0]);
    for key in &path[1..] {
        value = value.and_then(|v| v.get(key));
    }
    value.filter(|v| !v.is_null())
}

impl rewardkit_core::Reward for FieldReward {
    fn kind(&self) -> &str {
        "field"
    }

    fn score(
        &self,
        sample: &Sample,
        _meter: &mut rewardkit_core::Meter,
    ) -> rewardkit_core::RewardOutput {
        let display = self.path.join(".");
        match field_value(sample, &self.path) {
            None => Outcome::unscorable(format!("field `{display}` is missing")),
            Some(Value::Number(n)) => Outcome::scored(n.as_f64().unwrap_or(f64::NAN)),
            Some(Value::Bool(b)) => Outcome::scored(if *b { 1.0 } else { 0.0 }),
            Some(other) => Outcome::unscorable(format!(
                "field `{display}`: expected a number or a boolean, found {}",
                kind_of(other)
            )),
        }
        .into()
    }
}

/// Options of the `self_aligned_reward` term kind.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfAlignedOptions {
    /// The field with the answer's token log-probabilities scored *without* the query.
    pub logprobs_without_query: String,
    /// The field with the answer's token log-probabilities scored *with* the query.
    pub logprobs_with_query: String,
}

/// The Self-Aligned Reward (Han et al. 2025; methods.md §12) from token log-probabilities carried
/// with the sample (kind `self_aligned_reward`): `clip((ppl(a) − ppl(a|q))/ppl(a), −1, 1)`,
/// positive when the query makes the answer more likely. The paper adds it to the task reward
/// with weight 0.2.
#[derive(Clone, Debug)]
pub struct SelfAlignedReward {
    without: Vec<String>,
    with: Vec<String>,
}

impl SelfAlignedReward {
    /// Checks the paths.
    pub fn new(options: SelfAlignedOptions) -> Result<SelfAlignedReward, String> {
        check_field("logprobs_without_query", &options.logprobs_without_query)?;
        check_field("logprobs_with_query", &options.logprobs_with_query)?;
        let path = |f: &str| f.split('.').map(str::to_owned).collect();
        Ok(SelfAlignedReward {
            without: path(&options.logprobs_without_query),
            with: path(&options.logprobs_with_query),
        })
    }
}

impl rewardkit_core::Reward for SelfAlignedReward {
    fn kind(&self) -> &str {
        "self_aligned_reward"
    }

    fn score(
        &self,
        sample: &Sample,
        meter: &mut rewardkit_core::Meter,
    ) -> rewardkit_core::RewardOutput {
        let list = |path: &[String]| -> Result<Vec<f64>, String> {
            let display = path.join(".");
            match field_value(sample, path) {
                None => Err(format!("field `{display}` is missing")),
                Some(Value::Array(items)) if items.is_empty() => {
                    Err(format!("field `{display}` is an empty list"))
                }
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(k, v)| {
                        v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                            format!("field `{display}`[{k}]: expected a finite log-probability")
                        })
                    })
                    .collect(),
                Some(other) => Err(format!(
                    "field `{display}`: expected a list of token log-probabilities, found {}",
                    kind_of(other)
                )),
            }
        };
        let lists = list(&self.without).and_then(|a| Ok((a, list(&self.with)?)));
        match lists {
            Err(why) => Outcome::unscorable(why).into(),
            Ok((without, with)) => {
                if let Err(e) = meter.step((without.len() + with.len()) as u64) {
                    return e.into_outcome().into();
                }
                Outcome::scored(transform::self_aligned_reward(&without, &with)).into()
            }
        }
    }
}
