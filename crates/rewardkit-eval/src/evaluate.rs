//! Evaluation: scores + benchmark → protocol scores with bootstrap intervals, diagnostics, and
//! paired comparisons.

use std::collections::{BTreeMap, HashMap, HashSet};

use rewardkit_core::{Budget, Outcome};
use serde::Serialize;

use crate::bench::{Benchmark, Item, Protocol, TiesRole};
use crate::protocol::{
    best_of_n_credit, pair_correct, ties_prompt_stats, ties_score, weighted_mean, Section,
    TiesPrompt, TiesScore,
};
use crate::stats::{
    bootstrap_p_value, pearson, percentile_interval, sigmoid, spearman, Interval, McNemar,
    SplitMix64, Summary,
};
use crate::EvalError;

/// What a candidate without a score does to its item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NonScores {
    /// The item counts as wrong (credit 0; in the Ties subset its margins are NaN), and the
    /// report counts such items. The default: a failure is never rewarded.
    #[default]
    Wrong,
    /// The item is left out of every number, and listed.
    Exclude,
    /// Stop with an error naming the item.
    Error,
}

/// How majority voting tells answers apart (for the best-of-N curve of labelled benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    /// The final number, extracted and normalised by the `gsm8k` verifier's rules (`18.00` =
    /// `$18`); a sample without one abstains.
    #[default]
    Number,
    /// The whole completion, whitespace-trimmed.
    Text,
    /// No majority vote.
    None,
}

/// Evaluation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalOptions {
    /// Bootstrap replicates (0 = no intervals).
    pub bootstrap: usize,
    /// Seed of the bootstrap's generator.
    pub seed: u64,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// Reliability-diagram bins.
    pub bins: usize,
    /// Sections of a pairwise benchmark (RewardBench v1's by default).
    pub sections: Vec<Section>,
    /// Non-score policy.
    pub non_scores: NonScores,
    /// Majority-vote answer keys.
    pub vote: Vote,
    /// B-STaR's `n*` (default: 8 as in the B-STaR code, capped at the samples per prompt).
    pub n_star: Option<usize>,
    /// The name of RewardBench 2's Ties subset.
    pub ties_subset: String,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            bootstrap: 1000,
            seed: 0,
            confidence: 0.95,
            bins: 10,
            sections: crate::protocol::rewardbench_v1_sections(),
            non_scores: NonScores::Wrong,
            vote: Vote::Number,
            n_star: None,
            ties_subset: "Ties".to_owned(),
        }
    }
}

impl EvalOptions {
    fn validate(&self) -> Result<(), EvalError> {
        let invalid = |option: &str, message: String| {
            Err(EvalError::Option {
                option: option.to_owned(),
                message,
            })
        };
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return invalid(
                "confidence",
                format!("expected a level in (0, 1), found {}", self.confidence),
            );
        }
        if self.bins == 0 || self.bins > 1000 {
            return invalid("bins", format!("expected 1 to 1000, found {}", self.bins));
        }
        if self.n_star == Some(0) {
            return invalid("n_star", "expected at least 1".to_owned());
        }
        Ok(())
    }
}

/// A number with its bootstrap interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// The value on the whole benchmark.
    pub value: f64,
    /// The percentile bootstrap interval (`None` without bootstrap).
    pub interval: Option<Interval>,
}

/// One subset's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SubsetResult {
    /// The subset's name.
    pub name: String,
    /// Prompts (units resampled by the bootstrap: Ties prompts count once for both versions).
    pub prompts: usize,
    /// The rule used: `pairwise`, `best_of_n`, `ties` or `labelled`.
    pub rule: &'static str,
    /// The score.
    pub score: Estimate,
    /// The section it counts in (pairwise benchmarks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
}

/// One section's result (pairwise benchmarks).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SectionResult {
    /// The section's name.
    pub name: String,
    /// Its subsets present in the benchmark.
    pub subsets: Vec<String>,
    /// Prompts in those subsets.
    pub prompts: usize,
    /// The prompt-count-weighted mean of its subsets.
    pub score: Estimate,
}

/// An item left out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeftOut {
    /// Its line in the benchmark.
    pub line: u64,
    /// Its id.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// Calibration of the Bradley–Terry probability `σ(r_c − r_r)`.
///
/// Each (correct, incorrect) pair contributes the point `(σ(Δ), 1)` and its mirror
/// `(1 − σ(Δ), 0)`, so the diagram is the classic one over [0, 1]; the expected calibration error
/// is `Σ_b (n_b / N) |accuracy_b − confidence_b|` (Guo et al. 2017, eq. 3) over those points.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Calibration {
    /// Pairs used.
    pub pairs: usize,
    /// Expected calibration error.
    pub ece: f64,
    /// Mean Bradley–Terry loss `−log σ(r_c − r_r)`.
    pub bt_loss: f64,
    /// The bins.
    pub bins: Vec<ReliabilityBin>,
}

/// One reliability-diagram bin.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReliabilityBin {
    /// Lower edge.
    pub low: f64,
    /// Upper edge.
    pub high: f64,
    /// Points in the bin.
    pub count: usize,
    /// Mean predicted probability.
    pub confidence: f64,
    /// Observed frequency of "the first is the preferred one".
    pub accuracy: f64,
}

/// Length bias.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LengthBias {
    /// Length unit.
    pub unit: &'static str,
    /// Pair accuracy when the correct answer is the longer one.
    pub chosen_longer: GroupAccuracy,
    /// Pair accuracy when the correct answer is the shorter one.
    pub chosen_shorter: GroupAccuracy,
    /// Pair accuracy at equal lengths.
    pub equal_length: GroupAccuracy,
    /// Pearson correlation of reward and length over all scored candidates.
    pub pearson: f64,
    /// Spearman correlation of reward and length.
    pub spearman: f64,
    /// Mean length of correct and incorrect candidates.
    pub mean_length_correct: f64,
    /// Mean length of incorrect candidates.
    pub mean_length_incorrect: f64,
}

/// Accuracy of the pairs in one group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupAccuracy {
    /// Pairs in the group.
    pub pairs: usize,
    /// Accuracy (`r_c > r_r`) with a bootstrap interval over the group's pairs.
    pub accuracy: Estimate,
}

/// Score distributions of correct and incorrect candidates on shared bins.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Distributions {
    /// Bin edges (one more than the counts).
    pub edges: Vec<f64>,
    /// Counts of correct (chosen) candidates.
    pub correct: Vec<usize>,
    /// Counts of incorrect (rejected) candidates.
    pub incorrect: Vec<usize>,
    /// Summary of correct candidates' scores.
    pub correct_summary: Summary,
    /// Summary of incorrect candidates' scores.
    pub incorrect_summary: Summary,
}

/// The best-of-N curve of a labelled benchmark: for each N, the mean over prompts and over all
/// N-subsets of its samples (enumerated, or 256 seeded random subsets when there are more).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BestOfNCurve {
    /// N.
    pub n: Vec<usize>,
    /// Prompts with at least N samples.
    pub prompts: Vec<usize>,
    /// Accuracy of the reward's choice (ties at the top broken uniformly at random).
    pub reward: Vec<f64>,
    /// Accuracy of the majority answer (`null` with `vote = none`).
    pub majority: Option<Vec<f64>>,
    /// Oracle pass@N: some sample is correct (Chen et al. 2021's unbiased pass@k).
    pub oracle: Vec<f64>,
    /// How majority votes tell answers apart.
    pub vote: Vote,
}

/// B-STaR's balance score (Zeng et al., ICLR 2025; methods.md §23) against the reward threshold.
///
/// Per prompt `s_i = min(1, n'_i / n*) · n'_i / n_i`, where the selected samples are those with
/// reward above τ, `n_i` counts them and `n'_i` counts the distinct correct ones (0 when none is
/// selected); the score is the mean over prompts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Balance {
    /// `n*`.
    pub n_star: usize,
    /// The best threshold (`null`: select everything) and its score.
    pub best_threshold: Option<f64>,
    /// The best balance score.
    pub best_score: f64,
    /// The curve: thresholds, scores and the fraction of samples selected.
    pub curve: Vec<BalancePoint>,
}

/// One point of the balance curve.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BalancePoint {
    /// The threshold (`null`: select everything).
    pub threshold: Option<f64>,
    /// The balance score.
    pub score: f64,
    /// Fraction of samples selected.
    pub selected: f64,
}

/// Bootstrap settings used.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BootstrapInfo {
    /// Replicates.
    pub replicates: usize,
    /// Seed.
    pub seed: u64,
    /// Confidence level.
    pub confidence: f64,
    /// What is resampled.
    pub unit: &'static str,
}

/// Everything an evaluation measured.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    /// The scoring rule.
    pub protocol: Protocol,
    /// How `overall` is computed.
    pub overall_rule: String,
    /// The headline number.
    pub overall: Estimate,
    /// Items evaluated.
    pub items: usize,
    /// Candidates (scored samples) in those items.
    pub candidates: usize,
    /// Candidates without a score.
    pub non_scores: usize,
    /// Items counted wrong because a candidate had no score (`wrong` policy).
    pub wrong_for_non_score: usize,
    /// Items left out (`exclude` policy).
    pub left_out: Vec<LeftOut>,
    /// Subsets with no score because every one of their items was left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub emptied_subsets: Vec<String>,
    /// Per subset.
    pub subsets: Vec<SubsetResult>,
    /// Per section (pairwise benchmarks whose subsets match sections).
    pub sections: Vec<SectionResult>,
    /// The Ties subset's parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ties: Option<TiesScore>,
    /// Calibration of `σ(r_c − r_r)`.
    pub calibration: Calibration,
    /// Length bias.
    pub length: LengthBias,
    /// Score distributions.
    pub distributions: Distributions,
    /// Best-of-N curve (labelled benchmarks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_of_n: Option<BestOfNCurve>,
    /// B-STaR balance score (labelled benchmarks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<Balance>,
    /// Bootstrap settings.
    pub bootstrap: BootstrapInfo,
}

/// A paired comparison of two rewards on the same benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Items compared (those both rewards could be judged on).
    pub items: usize,
    /// The first reward's overall score on them.
    pub first: f64,
    /// The second reward's overall score on them.
    pub second: f64,
    /// `first − second`, with the paired bootstrap interval (the same resampled prompts for
    /// both).
    pub difference: Estimate,
    /// Two-sided paired-bootstrap p-value for "no difference".
    pub p_bootstrap: f64,
    /// McNemar's test on per-item right/wrong (an item is right when its credit is 1; Ties-subset
    /// items are not per-item binary and are left out of it).
    pub mcnemar: McNemar,
    /// Whether the interval excludes 0 (at the evaluation's confidence level).
    pub significant: bool,
    /// One sentence saying what the numbers mean.
    pub verdict: String,
}

/// The scores of a benchmark's candidates: one outcome per candidate, item by item.
pub type ItemOutcomes = [Vec<Outcome>];

/// Evaluates one reward's outcomes on a benchmark.
pub fn evaluate(
    bench: &Benchmark,
    outcomes: &ItemOutcomes,
    options: &EvalOptions,
) -> Result<Evaluation, EvalError> {
    options.validate()?;
    let values = values_of(bench, outcomes, options.non_scores)?;
    let keep = kept(bench, &[&values], options.non_scores);
    let model = Model::build(bench, &values, &keep, options)?;
    let mut rng = SplitMix64::new(options.seed);
    let replicates = model.bootstrap(options.bootstrap, &mut rng, &[]);
    let pick = |f: &dyn Fn(&Replicate) -> f64| -> Option<Interval> {
        (options.bootstrap > 0).then(|| {
            let values: Vec<f64> = replicates.iter().map(f).collect();
            percentile_interval(&values, options.confidence)
        })
    };
    let point = model.point();
    let subsets = model
        .subsets
        .iter()
        .enumerate()
        .map(|(i, subset)| SubsetResult {
            name: subset.name.clone(),
            prompts: subset.len(),
            rule: subset.rule,
            score: Estimate {
                value: point.subsets[i],
                interval: pick(&|r| r.subsets[i]),
            },
            section: model.section_of[i].map(|s| model.sections[s].name.clone()),
        })
        .collect();
    let sections = model
        .sections
        .iter()
        .enumerate()
        .filter(|(_, section)| !section.members.is_empty())
        .map(|(s, section)| SectionResult {
            name: section.name.clone(),
            subsets: section
                .members
                .iter()
                .map(|&i| model.subsets[i].name.clone())
                .collect(),
            prompts: section
                .members
                .iter()
                .map(|&i| model.subsets[i].len())
                .sum(),
            score: Estimate {
                value: point.sections[s],
                interval: pick(&|r| r.sections[s]),
            },
        })
        .collect();
    let ties = model.subsets.iter().find_map(|subset| match &subset.units {
        Units::Ties(prompts) => Some(ties_score(prompts)),
        Units::Credit(_) => None,
    });

    let kept_items: Vec<usize> = (0..bench.items.len()).filter(|&i| keep[i]).collect();
    let diagnostics = Diagnostics::new(bench, &values, &kept_items);
    let mut rng_length = SplitMix64::new(options.seed ^ 0x6c65_6e67_7468);
    let (best_of_n, balance) = if bench.protocol == Protocol::Labelled {
        let mut rng_curve = SplitMix64::new(options.seed ^ 0x0063_7572_7665);
        (
            Some(best_of_n_curve(
                bench,
                &values,
                &kept_items,
                options.vote,
                &mut rng_curve,
            )),
            Some(balance_score(bench, &values, &kept_items, options.n_star)),
        )
    } else {
        (None, None)
    };
    let non_scores = kept_items
        .iter()
        .map(|&i| values[i].iter().filter(|v| v.is_nan()).count())
        .sum();
    let wrong_for_non_score = kept_items
        .iter()
        .filter(|&&i| values[i].iter().any(|v| v.is_nan()))
        .count();
    Ok(Evaluation {
        protocol: bench.protocol,
        overall_rule: model.overall_rule(),
        overall: Estimate {
            value: point.overall,
            interval: pick(&|r| r.overall),
        },
        items: kept_items.len(),
        candidates: kept_items
            .iter()
            .map(|&i| bench.items[i].candidates.len())
            .sum(),
        non_scores,
        wrong_for_non_score,
        left_out: left_out(bench, &keep),
        emptied_subsets: model.emptied.clone(),
        subsets,
        sections,
        ties,
        calibration: diagnostics.calibration(options.bins),
        length: diagnostics.length_bias(options, &mut rng_length),
        distributions: diagnostics.distributions(),
        best_of_n,
        balance,
        bootstrap: BootstrapInfo {
            replicates: options.bootstrap,
            seed: options.seed,
            confidence: options.confidence,
            unit: "prompts, within each subset",
        },
    })
}

/// Compares two rewards on the same benchmark: paired bootstrap (the same resampled prompts for
/// both) and McNemar's test.
pub fn compare(
    bench: &Benchmark,
    first: &ItemOutcomes,
    second: &ItemOutcomes,
    options: &EvalOptions,
) -> Result<Comparison, EvalError> {
    options.validate()?;
    let a = values_of(bench, first, options.non_scores)?;
    let b = values_of(bench, second, options.non_scores)?;
    let keep = kept(bench, &[&a, &b], options.non_scores);
    let model_a = Model::build(bench, &a, &keep, options)?;
    let model_b = Model::build(bench, &b, &keep, options)?;
    let mut rng = SplitMix64::new(options.seed);
    let paired = model_a.bootstrap(options.bootstrap, &mut rng, &[&model_b]);
    let differences: Vec<f64> = paired.iter().map(|r| r.overall - r.others[0]).collect();
    let (pa, pb) = (model_a.point().overall, model_b.point().overall);
    let interval =
        (options.bootstrap > 0).then(|| percentile_interval(&differences, options.confidence));
    let p_bootstrap = if options.bootstrap > 0 {
        bootstrap_p_value(&differences)
    } else {
        f64::NAN
    };
    let (mut first_only, mut second_only, mut both, mut neither) = (0, 0, 0, 0);
    for (sa, sb) in model_a.subsets.iter().zip(&model_b.subsets) {
        if let (Units::Credit(ca), Units::Credit(cb)) = (&sa.units, &sb.units) {
            for (x, y) in ca.iter().zip(cb) {
                match (*x == 1.0, *y == 1.0) {
                    (true, true) => both += 1,
                    (true, false) => first_only += 1,
                    (false, true) => second_only += 1,
                    (false, false) => neither += 1,
                }
            }
        }
    }
    let mcnemar = McNemar::new(first_only, second_only, both, neither);
    let significant = interval.is_some_and(|ci| ci.low > 0.0 || ci.high < 0.0);
    let level = format!("{:.0}%", options.confidence * 100.0);
    let verdict = match interval {
        None => "no bootstrap: run with --bootstrap > 0 for an interval".to_owned(),
        Some(ci) if significant => format!(
            "the first reward is {} by {:+.4} ({level} interval [{:+.4}, {:+.4}] excludes 0; \
             paired bootstrap p = {}, McNemar exact p = {})",
            if pa > pb { "better" } else { "worse" },
            pa - pb,
            ci.low,
            ci.high,
            p_text(p_bootstrap, options.bootstrap),
            p_text(mcnemar.p_exact, 0)
        ),
        Some(ci) => format!(
            "no significant difference: {:+.4} with {level} interval [{:+.4}, {:+.4}] \
             containing 0 (paired bootstrap p = {}, McNemar exact p = {})",
            pa - pb,
            ci.low,
            ci.high,
            p_text(p_bootstrap, options.bootstrap),
            p_text(mcnemar.p_exact, 0)
        ),
    };
    Ok(Comparison {
        items: keep.iter().filter(|&&k| k).count(),
        first: pa,
        second: pb,
        difference: Estimate {
            value: pa - pb,
            interval,
        },
        p_bootstrap,
        mcnemar,
        significant,
        verdict,
    })
}

/// A p-value for a sentence; a bootstrap p-value of 0 is "< 1/B".
fn p_text(p: f64, replicates: usize) -> String {
    if p == 0.0 && replicates > 0 {
        format!("< {:.0e}", 1.0 / replicates as f64)
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// Scores as numbers, NaN for a non-score; checks the shape and the `error` policy.
fn values_of(
    bench: &Benchmark,
    outcomes: &ItemOutcomes,
    policy: NonScores,
) -> Result<Vec<Vec<f64>>, EvalError> {
    if outcomes.len() != bench.items.len() {
        return Err(EvalError::Benchmark {
            file: bench.file.clone(),
            message: format!(
                "{} items but scores for {} (a bug in the caller)",
                bench.items.len(),
                outcomes.len()
            ),
        });
    }
    let mut values = Vec::with_capacity(outcomes.len());
    for (item, item_outcomes) in bench.items.iter().zip(outcomes) {
        if item_outcomes.len() != item.candidates.len() {
            return Err(EvalError::Benchmark {
                file: bench.file.clone(),
                message: format!(
                    "line {}: {} candidates but {} scores (a bug in the caller)",
                    item.line,
                    item.candidates.len(),
                    item_outcomes.len()
                ),
            });
        }
        let mut row = Vec::with_capacity(item_outcomes.len());
        for (candidate, outcome) in item_outcomes.iter().enumerate() {
            match outcome.value() {
                Some(value) => row.push(value),
                None if policy == NonScores::Error => {
                    return Err(EvalError::NonScore {
                        line: item.line,
                        id: item.id.clone(),
                        candidate,
                        reason: outcome.to_string(),
                    })
                }
                None => row.push(f64::NAN),
            }
        }
        values.push(row);
    }
    Ok(values)
}

/// Which items are evaluated: all, or under `exclude` those every reward scored fully.
fn kept(bench: &Benchmark, values: &[&Vec<Vec<f64>>], policy: NonScores) -> Vec<bool> {
    (0..bench.items.len())
        .map(|i| {
            policy != NonScores::Exclude || values.iter().all(|v| v[i].iter().all(|x| !x.is_nan()))
        })
        .collect()
}

fn left_out(bench: &Benchmark, keep: &[bool]) -> Vec<LeftOut> {
    bench
        .items
        .iter()
        .zip(keep)
        .filter(|(_, &k)| !k)
        .map(|(item, _)| LeftOut {
            line: item.line,
            id: item.id.clone(),
            reason: "a candidate has no score".to_owned(),
        })
        .collect()
}

/// The units the bootstrap resamples, per subset.
enum Units {
    /// One credit per prompt; the subset score is their mean.
    Credit(Vec<f64>),
    /// Ties prompts (ref + tied); the subset score is [`ties_score`].
    Ties(Vec<TiesPrompt>),
}

struct SubsetModel {
    name: String,
    rule: &'static str,
    units: Units,
}

impl SubsetModel {
    fn len(&self) -> usize {
        match &self.units {
            Units::Credit(c) => c.len(),
            Units::Ties(t) => t.len(),
        }
    }

    fn score(&self, draw: Option<&[usize]>) -> f64 {
        match (&self.units, draw) {
            (Units::Credit(credits), None) => mean(credits),
            (Units::Credit(credits), Some(draw)) => {
                draw.iter().map(|&i| credits[i]).sum::<f64>() / draw.len() as f64
            }
            (Units::Ties(prompts), None) => ties_score(prompts).score,
            (Units::Ties(prompts), Some(draw)) => {
                let sample: Vec<TiesPrompt> = draw.iter().map(|&i| prompts[i]).collect();
                ties_score(&sample).score
            }
        }
    }
}

struct SectionModel {
    name: String,
    members: Vec<usize>,
}

struct Model {
    protocol: Protocol,
    subsets: Vec<SubsetModel>,
    sections: Vec<SectionModel>,
    section_of: Vec<Option<usize>>,
    /// Subsets whose every item was left out.
    emptied: Vec<String>,
}

struct Replicate {
    subsets: Vec<f64>,
    sections: Vec<f64>,
    overall: f64,
    /// Overall scores of the other models on the same draw (paired bootstrap).
    others: Vec<f64>,
}

impl Model {
    fn build(
        bench: &Benchmark,
        values: &[Vec<f64>],
        keep: &[bool],
        options: &EvalOptions,
    ) -> Result<Model, EvalError> {
        let mut emptied = Vec::new();
        let mut subsets = Vec::new();
        for (name, indexes) in bench.subsets() {
            let indexes: Vec<usize> = indexes.into_iter().filter(|&i| keep[i]).collect();
            let is_ties = bench.protocol == Protocol::BestOfN && name == options.ties_subset;
            let (rule, units) = if is_ties {
                ("ties", Units::Ties(ties_prompts(bench, values, &indexes)?))
            } else {
                let credits = indexes
                    .iter()
                    .map(|&i| credit(bench.protocol, &bench.items[i], &values[i]))
                    .collect();
                let rule = match bench.protocol {
                    Protocol::Pairwise => "pairwise",
                    Protocol::BestOfN => "best_of_n",
                    Protocol::Labelled => "labelled",
                };
                (rule, Units::Credit(credits))
            };
            let model = SubsetModel { name, rule, units };
            if model.len() == 0 {
                // Every item of the subset was left out: it has no score at all (reported).
                emptied.push(model.name);
                continue;
            }
            subsets.push(model);
        }
        if subsets.is_empty() {
            return Err(EvalError::Benchmark {
                file: bench.file.clone(),
                message: "no item is left to evaluate (every one has a non-score)".to_owned(),
            });
        }
        let mut sections = Vec::new();
        let mut section_of = vec![None; subsets.len()];
        if bench.protocol == Protocol::Pairwise {
            for section in &options.sections {
                let members: Vec<usize> = subsets
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| section_of[*i].is_none() && section.subsets.contains(&s.name))
                    .map(|(i, _)| i)
                    .collect();
                for &i in &members {
                    section_of[i] = Some(sections.len());
                }
                sections.push(SectionModel {
                    name: section.name.clone(),
                    members,
                });
            }
        }
        Ok(Model {
            protocol: bench.protocol,
            subsets,
            sections,
            section_of,
            emptied,
        })
    }

    fn has_sections(&self) -> bool {
        self.sections.iter().any(|s| !s.members.is_empty())
    }

    fn overall_rule(&self) -> String {
        match self.protocol {
            Protocol::Pairwise if self.has_sections() => {
                let outside: Vec<&str> = self
                    .subsets
                    .iter()
                    .zip(&self.section_of)
                    .filter(|(_, s)| s.is_none())
                    .map(|(s, _)| s.name.as_str())
                    .collect();
                let mut rule = "mean of the sections; each section is the prompt-count-weighted \
                                mean of its subsets (RewardBench v1)"
                    .to_owned();
                if !outside.is_empty() {
                    rule.push_str(&format!(
                        "; subsets in no section are not in the overall: {}",
                        outside.join(", ")
                    ));
                }
                rule
            }
            Protocol::Pairwise => {
                "pair accuracy over all prompts (the prompt-count-weighted mean of the subsets; \
                 no subset belongs to a section); ties are wrong"
                    .to_owned()
            }
            Protocol::BestOfN => "unweighted mean of the subset scores (RewardBench 2)".to_owned(),
            Protocol::Labelled => "mean best-of-N credit over all prompts (the reward picks its \
                                   top sample; ties at the top share the credit)"
                .to_owned(),
        }
    }

    fn combine(&self, subset_scores: &[f64]) -> (Vec<f64>, f64) {
        let weighted = |members: &mut dyn Iterator<Item = usize>| {
            let pairs: Vec<(f64, usize)> = members
                .map(|i| (subset_scores[i], self.subsets[i].len()))
                .collect();
            weighted_mean(&pairs)
        };
        let sections: Vec<f64> = self
            .sections
            .iter()
            .map(|s| weighted(&mut s.members.iter().copied()))
            .collect();
        let overall = match self.protocol {
            Protocol::Pairwise if self.has_sections() => {
                let present: Vec<f64> = self
                    .sections
                    .iter()
                    .zip(&sections)
                    .filter(|(s, _)| !s.members.is_empty())
                    .map(|(_, v)| *v)
                    .collect();
                mean(&present)
            }
            Protocol::Pairwise | Protocol::Labelled => weighted(&mut (0..self.subsets.len())),
            Protocol::BestOfN => mean(subset_scores),
        };
        (sections, overall)
    }

    fn point(&self) -> Replicate {
        let subsets: Vec<f64> = self.subsets.iter().map(|s| s.score(None)).collect();
        let (sections, overall) = self.combine(&subsets);
        Replicate {
            subsets,
            sections,
            overall,
            others: Vec::new(),
        }
    }

    /// Stratified bootstrap: each replicate redraws every subset's prompts with replacement
    /// (keeping subset sizes, so weights stay fixed) and recomputes every score; `others` are
    /// evaluated on the very same draws.
    fn bootstrap(
        &self,
        replicates: usize,
        rng: &mut SplitMix64,
        others: &[&Model],
    ) -> Vec<Replicate> {
        let mut out = Vec::with_capacity(replicates);
        let mut draws: Vec<Vec<usize>> = self.subsets.iter().map(|s| vec![0; s.len()]).collect();
        for _ in 0..replicates {
            for (subset, draw) in self.subsets.iter().zip(draws.iter_mut()) {
                let n = subset.len();
                for slot in draw.iter_mut() {
                    *slot = rng.below(n);
                }
            }
            let scores: Vec<f64> = self
                .subsets
                .iter()
                .zip(&draws)
                .map(|(s, d)| s.score(Some(d)))
                .collect();
            let (sections, overall) = self.combine(&scores);
            let others = others
                .iter()
                .map(|other| {
                    let scores: Vec<f64> = other
                        .subsets
                        .iter()
                        .zip(&draws)
                        .map(|(s, d)| s.score(Some(d)))
                        .collect();
                    other.combine(&scores).1
                })
                .collect();
            out.push(Replicate {
                subsets: scores,
                sections,
                overall,
                others,
            });
        }
        out
    }
}

/// The per-prompt credit of an item (NaN scores are non-scores: the item is wrong).
fn credit(protocol: Protocol, item: &Item, values: &[f64]) -> f64 {
    match protocol {
        Protocol::Pairwise => f64::from(u8::from(pair_correct(values[0], values[1]))),
        Protocol::BestOfN | Protocol::Labelled => {
            let correct: Vec<bool> = item.candidates.iter().map(|c| c.correct).collect();
            best_of_n_credit(values, &correct)
        }
    }
}

/// Pairs the `ref:K` and `tied:K` rows of the Ties subset into prompts.
fn ties_prompts(
    bench: &Benchmark,
    values: &[Vec<f64>],
    indexes: &[usize],
) -> Result<Vec<TiesPrompt>, EvalError> {
    let mut by_key: BTreeMap<&str, (Option<usize>, Option<usize>)> = BTreeMap::new();
    // Every version present in the benchmark, before exclusions: a version missing from the
    // file is an error, one left out by `--non-scores exclude` drops its prompt.
    let present: HashSet<(TiesRole, &str)> = bench
        .items
        .iter()
        .filter_map(|item| item.ties.as_ref().map(|(role, key)| (*role, key.as_str())))
        .collect();
    for &i in indexes {
        let item = &bench.items[i];
        let (role, key) = item
            .ties
            .as_ref()
            .expect("the reader gives Ties rows a role; this is a bug");
        let slot = by_key.entry(key).or_default();
        let place = match role {
            TiesRole::Ref => &mut slot.0,
            TiesRole::Tied => &mut slot.1,
        };
        if place.is_some() {
            return Err(EvalError::Benchmark {
                file: bench.file.clone(),
                message: format!(
                    "line {}: a second `{}` row for Ties prompt {key}",
                    item.line, item.id
                ),
            });
        }
        *place = Some(i);
    }
    let mut prompts = Vec::with_capacity(by_key.len());
    let mut missing = Vec::new();
    for (key, slot) in by_key {
        match slot {
            (Some(r), Some(t)) => {
                let stats = |i: usize| {
                    let correct: Vec<bool> = bench.items[i]
                        .candidates
                        .iter()
                        .map(|c| c.correct)
                        .collect();
                    ties_prompt_stats(&values[i], &correct)
                };
                prompts.push(TiesPrompt {
                    reference: stats(r),
                    tied: stats(t),
                });
            }
            (Some(_), None) if !present.contains(&(TiesRole::Tied, key)) => {
                missing.push(format!("tied:{key}"))
            }
            (None, Some(_)) if !present.contains(&(TiesRole::Ref, key)) => {
                missing.push(format!("ref:{key}"))
            }
            _ => {}
        }
    }
    if !missing.is_empty() {
        return Err(EvalError::Benchmark {
            file: bench.file.clone(),
            message: format!(
                "the Ties rule needs both versions of every prompt; missing: {}",
                missing.join(", ")
            ),
        });
    }
    Ok(prompts)
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// A (correct, incorrect) pair of scored candidates.
struct Pair {
    correct: f64,
    incorrect: f64,
    correct_length: usize,
    incorrect_length: usize,
}

/// The diagnostics' view: scored pairs and candidates of the kept items.
struct Diagnostics {
    pairs: Vec<Pair>,
    /// (score, length, correct) of every scored candidate.
    candidates: Vec<(f64, usize, bool)>,
}

impl Diagnostics {
    fn new(bench: &Benchmark, values: &[Vec<f64>], kept: &[usize]) -> Diagnostics {
        let mut pairs = Vec::new();
        let mut candidates = Vec::new();
        for &i in kept {
            let item = &bench.items[i];
            let lengths: Vec<usize> = item
                .candidates
                .iter()
                .map(|c| c.completion.text().chars().count())
                .collect();
            for (j, candidate) in item.candidates.iter().enumerate() {
                if values[i][j].is_nan() {
                    continue;
                }
                candidates.push((values[i][j], lengths[j], candidate.correct));
                if !candidate.correct {
                    continue;
                }
                for (k, other) in item.candidates.iter().enumerate() {
                    if other.correct || values[i][k].is_nan() {
                        continue;
                    }
                    pairs.push(Pair {
                        correct: values[i][j],
                        incorrect: values[i][k],
                        correct_length: lengths[j],
                        incorrect_length: lengths[k],
                    });
                }
            }
        }
        Diagnostics { pairs, candidates }
    }

    fn calibration(&self, bins: usize) -> Calibration {
        let mut count = vec![0usize; bins];
        let mut confidence = vec![0.0f64; bins];
        let mut hits = vec![0.0f64; bins];
        let mut loss = 0.0;
        for pair in &self.pairs {
            let delta = pair.correct - pair.incorrect;
            let p = sigmoid(delta);
            // −log σ(Δ) = log(1 + e^(−Δ)), stably.
            loss += if delta > 0.0 {
                (-delta).exp().ln_1p()
            } else {
                -delta + delta.exp().ln_1p()
            };
            for (point, label) in [(p, 1.0), (1.0 - p, 0.0)] {
                let bin = ((point * bins as f64) as usize).min(bins - 1);
                count[bin] += 1;
                confidence[bin] += point;
                hits[bin] += label;
            }
        }
        let total = 2 * self.pairs.len();
        let mut ece = 0.0;
        let bins: Vec<ReliabilityBin> = (0..bins)
            .map(|b| {
                let n = count[b];
                let (conf, acc) = if n == 0 {
                    (f64::NAN, f64::NAN)
                } else {
                    (confidence[b] / n as f64, hits[b] / n as f64)
                };
                if n > 0 {
                    ece += n as f64 / total as f64 * (acc - conf).abs();
                }
                ReliabilityBin {
                    low: b as f64 / bins as f64,
                    high: (b + 1) as f64 / bins as f64,
                    count: n,
                    confidence: conf,
                    accuracy: acc,
                }
            })
            .collect();
        Calibration {
            pairs: self.pairs.len(),
            ece: if total == 0 { f64::NAN } else { ece },
            bt_loss: if self.pairs.is_empty() {
                f64::NAN
            } else {
                loss / self.pairs.len() as f64
            },
            bins,
        }
    }

    fn length_bias(&self, options: &EvalOptions, rng: &mut SplitMix64) -> LengthBias {
        let mut groups: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for pair in &self.pairs {
            let group = match pair.correct_length.cmp(&pair.incorrect_length) {
                std::cmp::Ordering::Greater => 0,
                std::cmp::Ordering::Less => 1,
                std::cmp::Ordering::Equal => 2,
            };
            groups[group].push(f64::from(u8::from(pair_correct(
                pair.correct,
                pair.incorrect,
            ))));
        }
        let mut accuracy = |hits: &[f64]| {
            let interval = (options.bootstrap > 0 && !hits.is_empty()).then(|| {
                let replicates: Vec<f64> = (0..options.bootstrap)
                    .map(|_| {
                        (0..hits.len())
                            .map(|_| hits[rng.below(hits.len())])
                            .sum::<f64>()
                            / hits.len() as f64
                    })
                    .collect();
                percentile_interval(&replicates, options.confidence)
            });
            GroupAccuracy {
                pairs: hits.len(),
                accuracy: Estimate {
                    value: mean(hits),
                    interval,
                },
            }
        };
        let chosen_longer = accuracy(&groups[0]);
        let chosen_shorter = accuracy(&groups[1]);
        let equal_length = accuracy(&groups[2]);
        let scores: Vec<f64> = self.candidates.iter().map(|c| c.0).collect();
        let lengths: Vec<f64> = self.candidates.iter().map(|c| c.1 as f64).collect();
        let mean_length = |want: bool| {
            let l: Vec<f64> = self
                .candidates
                .iter()
                .filter(|c| c.2 == want)
                .map(|c| c.1 as f64)
                .collect();
            mean(&l)
        };
        LengthBias {
            unit: "characters",
            chosen_longer,
            chosen_shorter,
            equal_length,
            pearson: pearson(&scores, &lengths),
            spearman: spearman(&scores, &lengths),
            mean_length_correct: mean_length(true),
            mean_length_incorrect: mean_length(false),
        }
    }

    fn distributions(&self) -> Distributions {
        let correct: Vec<f64> = self
            .candidates
            .iter()
            .filter(|c| c.2)
            .map(|c| c.0)
            .collect();
        let incorrect: Vec<f64> = self
            .candidates
            .iter()
            .filter(|c| !c.2)
            .map(|c| c.0)
            .collect();
        let all: Vec<f64> = self.candidates.iter().map(|c| c.0).collect();
        let min = all.iter().copied().fold(f64::INFINITY, f64::min);
        let max = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let distinct: HashSet<u64> = all.iter().map(|v| v.to_bits()).collect();
        let edges: Vec<f64> = if all.is_empty() {
            Vec::new()
        } else if max == min {
            vec![min - 0.5, max + 0.5]
        } else if distinct.len() <= 12 {
            // A few discrete values (a verifier): one bin centred on each value's grid step.
            let mut values: Vec<f64> = distinct.iter().map(|b| f64::from_bits(*b)).collect();
            values.sort_by(f64::total_cmp);
            let step = values
                .windows(2)
                .map(|w| w[1] - w[0])
                .fold(f64::INFINITY, f64::min);
            let bins = ((max - min) / step).round() as usize + 1;
            if bins <= 40 {
                (0..=bins)
                    .map(|k| min - step / 2.0 + k as f64 * step)
                    .collect()
            } else {
                even_edges(min, max, 30)
            }
        } else {
            even_edges(min, max, 30)
        };
        let histogram = |values: &[f64]| {
            let mut counts = vec![0usize; edges.len().saturating_sub(1)];
            if counts.is_empty() {
                return counts;
            }
            let (low, high) = (edges[0], edges[edges.len() - 1]);
            let width = (high - low) / counts.len() as f64;
            for v in values {
                let bin = (((v - low) / width) as usize).min(counts.len() - 1);
                counts[bin] += 1;
            }
            counts
        };
        Distributions {
            correct: histogram(&correct),
            incorrect: histogram(&incorrect),
            correct_summary: Summary::of(&correct),
            incorrect_summary: Summary::of(&incorrect),
            edges,
        }
    }
}

fn even_edges(min: f64, max: f64, bins: usize) -> Vec<f64> {
    (0..=bins)
        .map(|k| min + (max - min) * k as f64 / bins as f64)
        .collect()
}

/// Majority-vote answer keys of an item's candidates.
fn vote_keys(item: &Item, vote: Vote) -> Vec<Option<String>> {
    let budget = Budget::default();
    item.candidates
        .iter()
        .map(|c| match vote {
            Vote::None => None,
            Vote::Text => {
                let text = c.completion.text();
                let trimmed = text.trim();
                (!trimmed.is_empty()).then(|| trimmed.to_owned())
            }
            Vote::Number => {
                let mut meter = budget.meter();
                rewardkit_verify::numeric::extract_answer(&c.completion.text(), &mut meter)
                    .ok()
                    .flatten()
                    .map(|n| n.to_string())
            }
        })
        .collect()
}

/// Majority-vote credit of a subset of candidates: the answer given most often wins (ties among
/// answers split the credit), and an answer is as correct as the share of its samples labelled
/// correct; samples without an answer abstain.
fn majority_credit(keys: &[Option<String>], correct: &[bool], subset: &[usize]) -> f64 {
    let mut tally: HashMap<&str, (usize, usize)> = HashMap::new();
    for &i in subset {
        if let Some(key) = &keys[i] {
            let entry = tally.entry(key.as_str()).or_default();
            entry.0 += 1;
            entry.1 += usize::from(correct[i]);
        }
    }
    let Some(top) = tally.values().map(|v| v.0).max() else {
        return 0.0;
    };
    let winners: Vec<&(usize, usize)> = tally.values().filter(|v| v.0 == top).collect();
    winners
        .iter()
        .map(|(count, right)| *right as f64 / *count as f64)
        .sum::<f64>()
        / winners.len() as f64
}

/// All k-subsets of 0..n when there are at most `limit`, else `limit` seeded random ones.
fn subsets_of(n: usize, k: usize, limit: usize, rng: &mut SplitMix64) -> Vec<Vec<usize>> {
    let mut count = 1u128;
    for j in 0..k {
        count = count * (n - j) as u128 / (j + 1) as u128;
    }
    if count <= limit as u128 {
        let mut out = Vec::new();
        let mut current: Vec<usize> = (0..k).collect();
        loop {
            out.push(current.clone());
            // Next combination in lexicographic order.
            let Some(pos) = (0..k).rev().find(|&p| current[p] != p + n - k) else {
                break;
            };
            current[pos] += 1;
            for q in pos + 1..k {
                current[q] = current[q - 1] + 1;
            }
        }
        out
    } else {
        (0..limit)
            .map(|_| {
                // Partial Fisher–Yates.
                let mut pool: Vec<usize> = (0..n).collect();
                for j in 0..k {
                    let pick = j + rng.below(n - j);
                    pool.swap(j, pick);
                }
                pool.truncate(k);
                pool
            })
            .collect()
    }
}

fn best_of_n_curve(
    bench: &Benchmark,
    values: &[Vec<f64>],
    kept: &[usize],
    vote: Vote,
    rng: &mut SplitMix64,
) -> BestOfNCurve {
    let max_n = kept
        .iter()
        .map(|&i| bench.items[i].candidates.len())
        .max()
        .unwrap_or(0);
    let keys: Vec<Vec<Option<String>>> = kept
        .iter()
        .map(|&i| vote_keys(&bench.items[i], vote))
        .collect();
    let mut curve = BestOfNCurve {
        n: Vec::new(),
        prompts: Vec::new(),
        reward: Vec::new(),
        majority: (vote != Vote::None).then(Vec::new),
        oracle: Vec::new(),
        vote,
    };
    for n in 1..=max_n {
        let (mut reward, mut majority, mut oracle, mut prompts) = (0.0, 0.0, 0.0, 0usize);
        for (slot, &i) in kept.iter().enumerate() {
            let item = &bench.items[i];
            let size = item.candidates.len();
            if size < n {
                continue;
            }
            prompts += 1;
            let correct: Vec<bool> = item.candidates.iter().map(|c| c.correct).collect();
            let subsets = subsets_of(size, n, 256, rng);
            let (mut r, mut m, mut o) = (0.0, 0.0, 0.0);
            for subset in &subsets {
                let s: Vec<f64> = subset.iter().map(|&j| values[i][j]).collect();
                let c: Vec<bool> = subset.iter().map(|&j| correct[j]).collect();
                r += best_of_n_credit(&s, &c);
                m += majority_credit(&keys[slot], &correct, subset);
                o += f64::from(u8::from(c.iter().any(|&x| x)));
            }
            let k = subsets.len() as f64;
            reward += r / k;
            majority += m / k;
            oracle += o / k;
        }
        if prompts == 0 {
            continue;
        }
        let p = prompts as f64;
        curve.n.push(n);
        curve.prompts.push(prompts);
        curve.reward.push(reward / p);
        if let Some(list) = curve.majority.as_mut() {
            list.push(majority / p);
        }
        curve.oracle.push(oracle / p);
    }
    curve
}

fn balance_score(
    bench: &Benchmark,
    values: &[Vec<f64>],
    kept: &[usize],
    n_star: Option<usize>,
) -> Balance {
    let max_n = kept
        .iter()
        .map(|&i| bench.items[i].candidates.len())
        .max()
        .unwrap_or(1);
    let n_star = n_star.unwrap_or(8.min(max_n)).max(1);
    let mut thresholds: Vec<f64> = kept
        .iter()
        .flat_map(|&i| values[i].iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    if thresholds.len() > 400 {
        let n = thresholds.len();
        thresholds = (0..400).map(|k| thresholds[k * (n - 1) / 399]).collect();
        thresholds.dedup();
    }
    let texts: Vec<Vec<String>> = kept
        .iter()
        .map(|&i| {
            bench.items[i]
                .candidates
                .iter()
                .map(|c| c.completion.text().into_owned())
                .collect()
        })
        .collect();
    let total: usize = kept.iter().map(|&i| values[i].len()).sum();
    let point = |threshold: Option<f64>| {
        let mut sum = 0.0;
        let mut selected_total = 0usize;
        for (slot, &i) in kept.iter().enumerate() {
            let item = &bench.items[i];
            let mut selected = 0usize;
            let mut distinct_correct: HashSet<&str> = HashSet::new();
            for (j, candidate) in item.candidates.iter().enumerate() {
                let v = values[i][j];
                let chosen = !v.is_nan() && threshold.is_none_or(|t| v > t);
                if chosen {
                    selected += 1;
                    if candidate.correct {
                        distinct_correct.insert(texts[slot][j].as_str());
                    }
                }
            }
            selected_total += selected;
            if selected > 0 {
                let good = distinct_correct.len() as f64;
                sum += (good / n_star as f64).min(1.0) * good / selected as f64;
            }
        }
        BalancePoint {
            threshold,
            score: sum / kept.len().max(1) as f64,
            selected: selected_total as f64 / total.max(1) as f64,
        }
    };
    let mut curve = vec![point(None)];
    curve.extend(thresholds.iter().map(|&t| point(Some(t))));
    let best = curve
        .iter()
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .expect("the curve has the select-all point; this is a bug");
    Balance {
        n_star,
        best_threshold: best.threshold,
        best_score: best.score,
        curve: curve.clone(),
    }
}
