//! The end-of-run summary: counts, statistics per term and component, non-scores by reason,
//! throughput. Accumulated chunk by chunk so that memory does not grow with the input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use rewardkit::{Outcome, OutcomeKind, Pipeline, ScoredSample};
use rewardkit_core::RunningStats;
use serde::Serialize;

/// Distinct reasons kept per column before the rest are lumped together, so that free-text
/// errors cannot grow the summary without bound.
const MAX_REASONS: usize = 32;

/// Statistics and outcome counts for one column (the reward, a term or a component).
#[derive(Default)]
struct Column {
    stats: RunningStats,
    non_scores: BTreeMap<(OutcomeKind, String), u64>,
}

impl Column {
    fn push(&mut self, outcome: &Outcome) {
        match outcome.value() {
            Some(value) => self.stats.push(value),
            None => {
                let key = (
                    outcome.kind(),
                    outcome.reason().unwrap_or_default().to_owned(),
                );
                let key = if self.non_scores.len() >= MAX_REASONS
                    && !self.non_scores.contains_key(&key)
                {
                    (outcome.kind(), "(other reasons)".to_owned())
                } else {
                    key
                };
                *self.non_scores.entry(key).or_default() += 1;
            }
        }
    }

    fn report(&self, name: &str) -> ColumnReport {
        let mut counts = BTreeMap::new();
        counts.insert(OutcomeKind::Scored.as_str().to_owned(), self.stats.count());
        for ((kind, _), n) in &self.non_scores {
            *counts.entry(kind.as_str().to_owned()).or_default() += n;
        }
        ColumnReport {
            name: name.to_owned(),
            scored: self.stats.count(),
            mean: self.stats.mean(),
            std: self.stats.population_variance().map(f64::sqrt),
            min: self.stats.min(),
            max: self.stats.max(),
            counts,
            non_scores: self
                .non_scores
                .iter()
                .map(|((kind, reason), count)| NonScoreCount {
                    kind: kind.as_str().to_owned(),
                    reason: reason.clone(),
                    count: *count,
                })
                .collect(),
        }
    }
}

/// A term's column and its components' columns, each with its display name.
struct TermColumns {
    name: String,
    column: Column,
    components: Vec<(String, Column)>,
}

/// Accumulates a run's results.
pub struct Summary {
    reward: Column,
    terms: Vec<TermColumns>,
    samples: u64,
    rows: u64,
    skipped: Vec<SkippedRow>,
    skipped_total: u64,
}

/// A bad input row that was skipped (`--skip-bad-rows`).
#[derive(Clone, Debug, Serialize)]
pub struct SkippedRow {
    /// The 1-based line or row number.
    pub line: u64,
    /// What was wrong.
    pub error: String,
}

/// Skipped rows listed individually in the summary; the rest are only counted.
const MAX_LISTED_SKIPS: usize = 20;

impl Summary {
    pub fn new(pipeline: &Pipeline) -> Summary {
        Summary {
            reward: Column::default(),
            terms: pipeline
                .terms()
                .iter()
                .map(|t| TermColumns {
                    name: t.name.clone(),
                    column: Column::default(),
                    components: t
                        .component_names
                        .iter()
                        .map(|c| (format!("{}.{c}", t.name), Column::default()))
                        .collect(),
                })
                .collect(),
            samples: 0,
            rows: 0,
            skipped: Vec::new(),
            skipped_total: 0,
        }
    }

    /// Counts one input row (which may hold several samples).
    pub fn add_row(&mut self) {
        self.rows += 1;
    }

    /// Counts a skipped bad row.
    pub fn add_skip(&mut self, line: u64, error: String) {
        self.skipped_total += 1;
        if self.skipped.len() < MAX_LISTED_SKIPS {
            self.skipped.push(SkippedRow { line, error });
        }
    }

    /// Folds in one scored sample.
    pub fn add(&mut self, scored: &ScoredSample) {
        self.samples += 1;
        self.reward.push(&scored.reward);
        for (term, output) in self.terms.iter_mut().zip(&scored.terms) {
            term.column.push(&output.outcome);
            for ((_, component), outcome) in term.components.iter_mut().zip(&output.components) {
                component.push(outcome);
            }
        }
    }

    pub fn report(&self, elapsed: Duration, input: &str, output: Option<&str>) -> Report {
        let seconds = elapsed.as_secs_f64();
        let mut columns = vec![self.reward.report("reward")];
        for term in &self.terms {
            columns.push(term.column.report(&term.name));
            for (name, component) in &term.components {
                columns.push(component.report(name));
            }
        }
        Report {
            input: input.to_owned(),
            output: output.map(str::to_owned),
            rows: self.rows,
            samples: self.samples,
            skipped_rows: self.skipped_total,
            skipped: self.skipped.clone(),
            seconds,
            samples_per_second: if seconds > 0.0 {
                self.samples as f64 / seconds
            } else {
                0.0
            },
            columns,
        }
    }
}

/// A non-score reason and how often it occurred.
#[derive(Debug, Serialize)]
pub struct NonScoreCount {
    pub kind: String,
    pub reason: String,
    pub count: u64,
}

/// One column of the report.
#[derive(Debug, Serialize)]
pub struct ColumnReport {
    pub name: String,
    pub scored: u64,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Count per outcome kind.
    pub counts: BTreeMap<String, u64>,
    pub non_scores: Vec<NonScoreCount>,
}

/// The machine-readable summary (`--json`).
#[derive(Debug, Serialize)]
pub struct Report {
    pub input: String,
    pub output: Option<String>,
    pub rows: u64,
    pub samples: u64,
    pub skipped_rows: u64,
    pub skipped: Vec<SkippedRow>,
    pub seconds: f64,
    pub samples_per_second: f64,
    pub columns: Vec<ColumnReport>,
}

fn num(x: Option<f64>) -> String {
    match x {
        Some(x) => format!("{x:.4}"),
        None => "-".to_owned(),
    }
}

impl Report {
    /// The terminal rendering.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scored {} samples from {} rows of {} in {:.2} s ({:.0} samples/s)",
            self.samples, self.rows, self.input, self.seconds, self.samples_per_second
        );
        if let Some(output) = &self.output {
            let _ = writeln!(out, "wrote {output}");
        }
        if self.skipped_rows > 0 {
            let _ = writeln!(out, "skipped {} bad rows:", self.skipped_rows);
            for skip in &self.skipped {
                let _ = writeln!(out, "  line {}: {}", skip.line, skip.error);
            }
            if self.skipped_rows as usize > self.skipped.len() {
                let _ = writeln!(
                    out,
                    "  … and {} more",
                    self.skipped_rows as usize - self.skipped.len()
                );
            }
        }
        let width = self
            .columns
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            out,
            "\n{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>10}  {:>9}  {:>6}",
            "column", "mean", "std", "min", "max", "scored", "unscorable", "timed_out", "failed"
        );
        for c in &self.columns {
            let count = |k: &str| c.counts.get(k).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>10}  {:>9}  {:>6}",
                c.name,
                num(c.mean),
                num(c.std),
                num(c.min),
                num(c.max),
                c.scored,
                count("unscorable"),
                count("timed_out"),
                count("failed"),
            );
        }
        let reasons: Vec<_> = self
            .columns
            .iter()
            .flat_map(|c| c.non_scores.iter().map(move |r| (&c.name, r)))
            .collect();
        if !reasons.is_empty() {
            let _ = writeln!(out, "\nnon-scores by reason:");
            for (name, r) in reasons {
                let _ = writeln!(out, "  {name}: {} × {} ({})", r.count, r.kind, r.reason);
            }
        }
        out
    }
}
