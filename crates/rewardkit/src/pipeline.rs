use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

use rayon::prelude::*;
use rewardkit_core::{Budget, Outcome, Reward, RewardOutput, Sample};

use crate::registry::BuiltTerm;
use crate::shaping::{
    describe_combine, AdvantagesSpec, Combine, ResolvedCombine, ShapeInput, ShapeTerm, Shaped,
    Shaping, TransformSpec,
};
use crate::spec::{NonScorePolicy, Spec};
use crate::{Registry, SpecError};

/// One built reward term of a pipeline.
pub struct Term {
    /// The term's name (unique in the spec).
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its weight in the combination.
    pub weight: f64,
    /// What happens when it does not score.
    pub policy: NonScorePolicy,
    /// Its sub-component names.
    pub component_names: Vec<String>,
    /// Its options with defaults filled in, for display.
    pub resolved_options: String,
    /// Its transforms, in order.
    pub transforms: Vec<TransformSpec>,
    reward: Box<dyn Reward>,
}

/// The combined reward of one sample and every term's output, in spec order.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredSample {
    /// The combined reward.
    pub reward: Outcome,
    /// One output per term.
    pub terms: Vec<RewardOutput>,
}

/// A spec built into something that scores samples.
pub struct Pipeline {
    terms: Vec<Term>,
    budget: Budget,
    shaping: Shaping,
    /// Why the reward needs the batch pass (the pooled stages); empty when it does not.
    pooled: Vec<String>,
    spec: Spec,
}

/// Samples handed to a term at once; small enough to balance work over threads, large enough for
/// batched terms to amortise their overhead.
const MAX_CHUNK: usize = 64;

impl Pipeline {
    /// Builds a spec with the default registry (every verifier).
    pub fn build(spec: &Spec) -> Result<Pipeline, SpecError> {
        Pipeline::build_with(spec, &Registry::default())
    }

    /// Builds a spec with the given registry.
    pub fn build_with(spec: &Spec, registry: &Registry) -> Result<Pipeline, SpecError> {
        let mut terms = Vec::with_capacity(spec.terms.len());
        for (index, term) in spec.terms.iter().enumerate() {
            let builder = registry
                .get(&term.kind)
                .ok_or_else(|| SpecError::UnknownKind {
                    file: spec.source.clone(),
                    index,
                    kind: term.kind.clone(),
                    known: registry
                        .kinds()
                        .map(|(k, _)| k)
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let BuiltTerm {
                reward,
                resolved_options,
            } = builder(&term.options).map_err(|message| SpecError::Options {
                file: spec.source.clone(),
                index,
                name: term.name.clone(),
                kind: term.kind.clone(),
                message,
            })?;
            terms.push(Term {
                name: term.name.clone(),
                kind: term.kind.clone(),
                weight: term.weight,
                policy: spec.policy_for(index).clone(),
                component_names: reward
                    .component_names()
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
                resolved_options,
                transforms: term.transform.clone(),
                reward,
            });
        }
        let invalid = |(key, expected): (String, String)| SpecError::Invalid {
            file: spec.source.clone(),
            key,
            expected,
        };
        let shaping = Shaping::new(
            terms
                .iter()
                .map(|t| ShapeTerm {
                    name: t.name.clone(),
                    weight: t.weight,
                    policy: t.policy.clone(),
                    transforms: t.transforms.clone(),
                })
                .collect(),
            resolve_combine(spec)?,
            match &spec.advantages {
                None => None,
                Some(a) => Some((
                    a.estimator()
                        .map_err(|(key, expected)| SpecError::Invalid {
                            file: spec.source.clone(),
                            key,
                            expected,
                        })?,
                    a.clone(),
                )),
            },
        )
        .map_err(invalid)?;
        Ok(Pipeline {
            terms,
            budget: spec.budget.to_budget(),
            pooled: shaping.pooled_stages(),
            shaping,
            spec: spec.clone(),
        })
    }

    /// The stages that pool statistics over a group or the batch, described; when there are
    /// any, [`Pipeline::score_batch`] leaves the reward pending and [`Pipeline::shape`] over the
    /// whole batch computes it.
    pub fn pooled_stages(&self) -> &[String] {
        &self.pooled
    }

    /// Whether results need [`Pipeline::shape`] over the whole batch: the reward pools over
    /// groups or the batch, or the spec asks for advantages.
    pub fn needs_batch_pass(&self) -> bool {
        !self.pooled.is_empty() || self.spec.advantages.is_some()
    }

    /// The `[advantages]` table, if any.
    pub fn advantages(&self) -> Option<&AdvantagesSpec> {
        self.spec.advantages.as_ref()
    }

    /// What [`Pipeline::shape`] needs from a sample besides its scores (its group id and the
    /// reference rewards the spec's transforms read from its fields).
    pub fn shape_input(&self, sample: &Sample) -> ShapeInput {
        self.shaping.input(sample, true)
    }

    /// The batch pass: transforms, combination and advantages over a whole batch of scored
    /// samples (`inputs[i]` from [`Pipeline::shape_input`] of the sample of `scored[i]`). Group
    /// and batch statistics are taken over exactly these samples, so give it whole groups.
    ///
    /// Errors when the inputs do not fit the spec or the batch (a group-scope stage with no
    /// group id anywhere); values never cause an error (non-finite ones are masked).
    pub fn shape(
        &self,
        scored: &[ScoredSample],
        inputs: &[ShapeInput],
    ) -> Result<Shaped, SpecError> {
        self.shaping
            .run(scored, inputs, true, None)
            .map_err(|message| SpecError::Batch {
                file: self.spec.source.clone(),
                message,
            })
    }

    /// The multipliers of a constrained combination (`[combine] method = "constrained"`) as the
    /// spec starts them (from `initial_mu` or its `state_file`); `None` for other combinations.
    pub fn multipliers(&self) -> Option<&rewardkit_shape::LagrangeMultipliers> {
        match &self.shaping.combine {
            ResolvedCombine::Constrained { multipliers, .. } => Some(multipliers),
            _ => None,
        }
    }

    /// [`Pipeline::shape`] with a constrained combination's multipliers taken from
    /// `multipliers` instead of the spec's, for a caller that carries them from batch to batch
    /// (the server): the rewards use them, and [`Shaped::multipliers`]' `next` is their state
    /// after this batch's update. Errors as `shape` does, and when `multipliers` has another
    /// number of constraints than the spec.
    pub fn shape_with_multipliers(
        &self,
        scored: &[ScoredSample],
        inputs: &[ShapeInput],
        multipliers: &rewardkit_shape::LagrangeMultipliers,
    ) -> Result<Shaped, SpecError> {
        self.shaping
            .run(scored, inputs, true, Some(multipliers))
            .map_err(|message| SpecError::Batch {
                file: self.spec.source.clone(),
                message,
            })
    }

    /// The current states of the stateful transforms (running statistics, message counts), in
    /// spec order; they change with every batch pass.
    pub fn transform_states(&self) -> Vec<crate::TransformState> {
        self.shaping.states()
    }

    /// Writes the current states of the stateful transforms (after the batch passes so far) to
    /// their `state_file`s, each atomically (a temporary file renamed over the old one); returns
    /// the files written. Transforms without a `state_file` keep their state in this pipeline
    /// only.
    pub fn save_state(&self) -> Result<Vec<String>, SpecError> {
        let mut written = Vec::new();
        for state in &self.shaping.states() {
            let Some(file) = &state.state_file else {
                continue;
            };
            let fail = |e: std::io::Error| SpecError::Invalid {
                file: self.spec.source.clone(),
                key: format!(
                    "term `{}` transform[{}].state_file",
                    state.term, state.transform
                ),
                expected: format!("a writable state file ({file}: {e})"),
            };
            let text = serde_json::to_string_pretty(&state.state).unwrap_or_default() + "\n";
            let temporary = format!("{file}.tmp-{}", std::process::id());
            std::fs::write(&temporary, text).map_err(fail)?;
            std::fs::rename(&temporary, file).map_err(|e| {
                let _ = std::fs::remove_file(&temporary);
                fail(e)
            })?;
            written.push(file.clone());
        }
        Ok(written)
    }

    /// The terms, in spec order.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// The per-sample, per-term budget.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The spec this pipeline was built from.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Scores samples in parallel (on the current rayon pool); outputs are in input order and each
    /// sample's result does not depend on the batch it came in (Architecture Invariant 2).
    pub fn score_batch(&self, samples: &[Sample]) -> Vec<ScoredSample> {
        let threads = rayon::current_num_threads().max(1);
        let chunk = (samples.len() / (threads * 4)).clamp(1, MAX_CHUNK);
        let chunks: Vec<Vec<ScoredSample>> = samples
            .par_chunks(chunk)
            .map(|chunk| self.score_chunk(chunk))
            .collect();
        chunks.into_iter().flatten().collect()
    }

    /// Scores one sample on the calling thread.
    pub fn score_one(&self, sample: &Sample) -> ScoredSample {
        self.score_chunk(std::slice::from_ref(sample))
            .pop()
            .expect("one output per sample; this is a bug")
    }

    fn score_chunk(&self, samples: &[Sample]) -> Vec<ScoredSample> {
        // One output list per term, each exactly `samples.len()` long (`run_term` ensures it);
        // transposed into one list per sample by moving, not cloning, the outputs.
        let mut per_term: Vec<std::vec::IntoIter<RewardOutput>> = self
            .terms
            .iter()
            .map(|term| run_term(term, samples, &self.budget).into_iter())
            .collect();
        let mut scored: Vec<ScoredSample> = (0..samples.len())
            .map(|_| {
                let terms: Vec<RewardOutput> = per_term
                    .iter_mut()
                    .map(|outputs| {
                        outputs
                            .next()
                            .expect("one output per sample and term; this is a bug")
                    })
                    .collect();
                ScoredSample {
                    reward: Outcome::unscorable(""),
                    terms,
                }
            })
            .collect();
        if !self.pooled.is_empty() {
            let pending = Outcome::unscorable(format!(
                "pending: the reward pools over a group or the batch ({}); run Pipeline::shape over the whole batch",
                self.pooled.join("; ")
            ));
            scored.iter_mut().for_each(|s| s.reward = pending.clone());
            return scored;
        }
        // Every stage is per sample: the chunk's result for a sample is its result alone.
        let inputs: Vec<ShapeInput> = samples
            .iter()
            .map(|s| self.shaping.input(s, false))
            .collect();
        match self.shaping.run(&scored, &inputs, false, None) {
            Ok(shaped) => {
                for (sample, reward) in scored.iter_mut().zip(shaped.rewards) {
                    sample.reward = reward;
                }
            }
            Err(error) => {
                let failed = Outcome::failed(format!("shaping: {error} (a bug)"));
                scored.iter_mut().for_each(|s| s.reward = failed.clone());
            }
        }
        scored
    }

    /// A human-readable account of what this pipeline computes (`rewardkit spec check`).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let b = &self.budget;
        let _ = writeln!(out, "spec: {}", self.spec.source);
        let names: Vec<(String, f64)> = self
            .terms
            .iter()
            .map(|t| {
                let name = if t.transforms.is_empty() {
                    t.name.clone()
                } else {
                    format!("{}′", t.name)
                };
                (name, t.weight)
            })
            .collect();
        let mut combine = self.spec.combine.clone();
        rename_shaped(&mut combine, &self.terms);
        let _ = writeln!(out, "reward = {}", describe_combine(&combine, &names));
        if self.pooled.is_empty() {
            let _ = writeln!(out, "  computed per sample");
        } else {
            let _ = writeln!(
                out,
                "  pooled stages (computed over whole groups/batches after scoring): {}",
                self.pooled.join("; ")
            );
        }
        if let Some((estimator, spec)) = &self.shaping.advantages {
            let _ = writeln!(
                out,
                "advantages → column `{}`: {estimator:?}{}",
                spec.column,
                if spec.filter_zero_variance {
                    ", zero-variance groups masked"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            out,
            "budget per sample and term: {} input bytes, {} steps, {}",
            b.max_input_bytes,
            b.max_steps,
            b.timeout.map_or("no deadline".to_owned(), |t| format!(
                "{} ms deadline",
                t.as_millis()
            ))
        );
        let _ = writeln!(out, "terms:");
        for term in &self.terms {
            let _ = writeln!(
                out,
                "  {} (kind {}, weight {}, non-scores: {})",
                term.name,
                term.kind,
                term.weight,
                describe_policy(&term.policy)
            );
            if !term.component_names.is_empty() {
                let _ = writeln!(out, "    components: {}", term.component_names.join(", "));
            }
            let _ = writeln!(out, "    options: {}", term.resolved_options);
            for (k, transform) in term.transforms.iter().enumerate() {
                let _ = writeln!(out, "    transform {}: {}", k + 1, transform.describe());
            }
            if !term.transforms.is_empty() {
                let _ = writeln!(out, "    → {}′", term.name);
            }
        }
        out
    }
}

/// Term names in a combination as they appear after their transforms (`name′`).
fn rename_shaped(combine: &mut Combine, terms: &[Term]) {
    let shaped = |name: &mut String| {
        if terms
            .iter()
            .any(|t| t.name == *name && !t.transforms.is_empty())
        {
            name.push('′');
        }
    };
    match combine {
        Combine::Gate { gate, .. } => shaped(gate),
        Combine::Hybrid { rule, model } => {
            shaped(rule);
            shaped(model);
        }
        Combine::Lexicographic {
            order,
            lower_is_better,
            ..
        } => {
            order.iter_mut().for_each(shaped);
            lower_is_better.iter_mut().for_each(shaped);
        }
        Combine::Constrained {
            base, thresholds, ..
        } => {
            shaped(base);
            *thresholds = std::mem::take(thresholds)
                .into_iter()
                .map(|(mut k, v)| {
                    shaped(&mut k);
                    (k, v)
                })
                .collect();
        }
        _ => {}
    }
}

/// The combination with term names turned into indices and the multipliers built.
fn resolve_combine(spec: &Spec) -> Result<ResolvedCombine, SpecError> {
    let index = |name: &str| {
        spec.terms
            .iter()
            .position(|t| t.name == name)
            .expect("combine names are validated with the spec; this is a bug")
    };
    let invalid = |key: &str, expected: String| SpecError::Invalid {
        file: spec.source.clone(),
        key: key.to_owned(),
        expected,
    };
    Ok(match &spec.combine {
        Combine::WeightedSum => ResolvedCombine::WeightedSum,
        Combine::Conjunction => ResolvedCombine::Conjunction,
        Combine::Min => ResolvedCombine::Min,
        Combine::Product => ResolvedCombine::Product,
        Combine::Gate {
            gate,
            threshold,
            otherwise,
        } => ResolvedCombine::Gate {
            gate: index(gate),
            threshold: *threshold,
            otherwise: *otherwise,
        },
        Combine::Hybrid { rule, model } => ResolvedCombine::Hybrid {
            rule: index(rule),
            model: index(model),
        },
        Combine::SumThenNormalize {
            scope,
            std,
            epsilon,
        } => ResolvedCombine::SumThenNormalize {
            scope: *scope,
            std: *std,
            epsilon: *epsilon,
        },
        Combine::NormalizeThenSum {
            scope,
            std,
            epsilon,
        } => ResolvedCombine::NormalizeThenSum {
            scope: *scope,
            std: *std,
            epsilon: *epsilon,
        },
        Combine::Lexicographic {
            order,
            margins,
            sigma_mult,
            lower_is_better,
            scope,
        } => ResolvedCombine::Lexicographic {
            order: order.iter().map(|name| index(name)).collect(),
            margins: margins.clone(),
            sigma_mult: *sigma_mult,
            higher_is_better: order.iter().map(|t| !lower_is_better.contains(t)).collect(),
            scope: *scope,
        },
        Combine::Constrained {
            base,
            thresholds,
            squash,
            learning_rate,
            momentum,
            initial_mu,
            state_file,
        } => {
            let constraints: Vec<usize> = thresholds.keys().map(|name| index(name)).collect();
            let multipliers = match state_file {
                Some(file) => {
                    let text = std::fs::read_to_string(file).map_err(|e| {
                        invalid(
                            "combine.state_file",
                            format!("a readable state file ({file}: {e})"),
                        )
                    })?;
                    let state: rewardkit_shape::LagrangeState = serde_json::from_str(&text)
                        .map_err(|e| {
                            invalid(
                                "combine.state_file",
                                format!("a multiplier state in JSON ({file}: {e})"),
                            )
                        })?;
                    let mut state = state;
                    if state.thresholds != thresholds.values().copied().collect::<Vec<_>>() {
                        return Err(invalid(
                            "combine.state_file",
                            format!(
                                "a state for these thresholds ({file} has {:?}, the spec {:?})",
                                state.thresholds,
                                thresholds.values().collect::<Vec<_>>()
                            ),
                        ));
                    }
                    // μ means a different λ under another squash: refuse rather than jump.
                    if state.squash != *squash {
                        return Err(invalid(
                            "combine.state_file",
                            format!(
                                "a state for squash {:?} ({file} has {:?}); start from a fresh \
                                 state or keep the squash",
                                squash, state.squash
                            ),
                        ));
                    }
                    // The file carries where the multipliers are (μ, momentum buffers, steps);
                    // how they move next is the spec's, so a tuned learning rate takes effect.
                    state.learning_rate = *learning_rate;
                    state.momentum = *momentum;
                    rewardkit_shape::LagrangeMultipliers::from_state(state)
                }
                None => rewardkit_shape::LagrangeMultipliers::new(
                    thresholds.values().copied().collect(),
                    *squash,
                    *learning_rate,
                    *momentum,
                    *initial_mu,
                ),
            }
            .map_err(|e| invalid("combine", e.to_string()))?;
            ResolvedCombine::Constrained {
                base: index(base),
                constraints,
                multipliers,
            }
        }
    })
}

fn describe_policy(policy: &NonScorePolicy) -> String {
    match policy {
        NonScorePolicy::Propagate => "propagate".to_owned(),
        NonScorePolicy::Exclude => "exclude the sample".to_owned(),
        NonScorePolicy::Value { value } => format!("count as {value}"),
    }
}

pub(crate) fn propagate(term: &str, outcome: &Outcome) -> Outcome {
    match outcome {
        Outcome::Unscorable { reason } => Outcome::unscorable(format!("{term}: {reason}")),
        Outcome::Failed { error } => Outcome::failed(format!("{term}: {error}")),
        other => other.clone(),
    }
}

/// Runs one term over a chunk, isolating panics: a term that panics (a bug — verifiers must not)
/// yields `Failed` for the samples it panicked on instead of taking the run down.
fn run_term(term: &Term, samples: &[Sample], budget: &Budget) -> Vec<RewardOutput> {
    let n = term.component_names.len();
    let batch = catch_unwind(AssertUnwindSafe(|| {
        term.reward.score_batch(samples, budget)
    }));
    let outputs = match batch {
        Ok(outputs) if outputs.len() == samples.len() => outputs,
        Ok(outputs) => {
            let error = format!(
                "term `{}` returned {} outputs for {} samples (a bug)",
                term.name,
                outputs.len(),
                samples.len()
            );
            return vec![RewardOutput::all(Outcome::failed(error), n); samples.len()];
        }
        Err(_) if samples.len() > 1 => {
            return samples
                .iter()
                .flat_map(|s| run_term(term, std::slice::from_ref(s), budget))
                .collect()
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            let error = format!("term `{}` panicked (a bug): {message}", term.name);
            return vec![RewardOutput::all(Outcome::failed(error), n)];
        }
    };
    outputs
        .into_iter()
        .map(|mut output| {
            if output.components.len() != n {
                output.components = vec![
                    Outcome::failed(format!(
                        "term `{}` returned a wrong number of components (a bug)",
                        term.name
                    ));
                    n
                ];
            }
            output
        })
        .collect()
}
