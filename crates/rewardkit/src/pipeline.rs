use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

use rayon::prelude::*;
use rewardkit_core::{Budget, Outcome, Reward, RewardOutput, Sample};

use crate::registry::BuiltTerm;
use crate::spec::{Combine, NonScorePolicy, Spec};
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
    combine: Combine,
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
                reward,
            });
        }
        Ok(Pipeline {
            terms,
            budget: spec.budget.to_budget(),
            combine: spec.combine.clone(),
            spec: spec.clone(),
        })
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
        (0..samples.len())
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
                    reward: self.combine(&terms),
                    terms,
                }
            })
            .collect()
    }

    /// Combines term outputs into one reward under each term's non-score policy.
    fn combine(&self, outputs: &[RewardOutput]) -> Outcome {
        match self.combine {
            Combine::WeightedSum => {
                let mut total = 0.0;
                for (term, output) in self.terms.iter().zip(outputs) {
                    let value = match output.outcome.value() {
                        Some(value) => value,
                        None => match &term.policy {
                            NonScorePolicy::Value { value } => *value,
                            NonScorePolicy::Exclude => {
                                return Outcome::unscorable(format!(
                                    "excluded: {}: {}",
                                    term.name,
                                    output.outcome.reason().unwrap_or("no score")
                                ))
                            }
                            NonScorePolicy::Propagate => {
                                return propagate(&term.name, &output.outcome)
                            }
                        },
                    };
                    total += term.weight * value;
                }
                Outcome::scored(total)
            }
        }
    }

    /// A human-readable account of what this pipeline computes (`rewardkit spec check`).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let b = &self.budget;
        let _ = writeln!(out, "spec: {}", self.spec.source);
        let _ = writeln!(
            out,
            "reward = {}",
            self.terms
                .iter()
                .map(|t| format!("{} × {}", t.weight, t.name))
                .collect::<Vec<_>>()
                .join(" + ")
        );
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
        }
        out
    }
}

fn describe_policy(policy: &NonScorePolicy) -> String {
    match policy {
        NonScorePolicy::Propagate => "propagate".to_owned(),
        NonScorePolicy::Exclude => "exclude the sample".to_owned(),
        NonScorePolicy::Value { value } => format!("count as {value}"),
    }
}

fn propagate(term: &str, outcome: &Outcome) -> Outcome {
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
