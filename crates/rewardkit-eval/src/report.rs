//! Reports: the terminal table, JSON (the [`Report`] serialised) and a self-contained HTML page.

use std::fmt::Write as _;

use serde::Serialize;

use crate::bench::{Benchmark, Layout, Protocol};
use crate::evaluate::{Comparison, Estimate, Evaluation};
use crate::svg;

/// What was evaluated on what, and the results.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The benchmark.
    pub benchmark: BenchInfo,
    /// The reward evaluated.
    pub reward: RewardInfo,
    /// Its evaluation.
    pub evaluation: Evaluation,
    /// The reward it is compared with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared_with: Option<RewardInfo>,
    /// That reward's own evaluation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared_evaluation: Option<Evaluation>,
    /// The paired comparison (first = the reward evaluated, second = `compared_with`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

/// The benchmark, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct BenchInfo {
    /// The file.
    pub file: String,
    /// Row layout.
    pub layout: Layout,
    /// Scoring rule.
    pub protocol: Protocol,
    /// Rows read.
    pub rows: u64,
    /// Rows kept by `--first`/`--last`.
    pub selected_rows: u64,
    /// Items built from them.
    pub items: usize,
    /// Rows left out by a conversion (count).
    pub rows_left_out: usize,
    /// Why, for the first few.
    pub left_out_examples: Vec<String>,
    /// Bad rows skipped (`--skip-bad-rows`), each with its error.
    pub skipped_rows: Vec<String>,
}

impl BenchInfo {
    /// Describes a benchmark.
    pub fn of(bench: &Benchmark) -> BenchInfo {
        BenchInfo {
            file: bench.file.display().to_string(),
            layout: bench.layout,
            protocol: bench.protocol,
            rows: bench.rows,
            selected_rows: bench.selected_rows,
            items: bench.items.len(),
            rows_left_out: bench.left_out.len(),
            left_out_examples: bench
                .left_out
                .iter()
                .take(3)
                .map(|(line, why)| format!("line {line}: {why}"))
                .collect(),
            skipped_rows: bench
                .skipped
                .iter()
                .map(|(line, why)| format!("line {line}: {why}"))
                .collect(),
        }
    }
}

/// A reward, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct RewardInfo {
    /// `spec`, `model` or `scores`.
    pub source: String,
    /// The spec, model directory or score file.
    pub path: String,
    /// The cache fingerprint (specs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The score cache file (specs with the cache on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_file: Option<String>,
    /// Samples taken from the cache.
    pub cached: usize,
    /// Samples scored in this run.
    pub scored: usize,
}

fn fmt(x: f64) -> String {
    if x.is_nan() {
        "—".to_owned()
    } else {
        format!("{x:.4}")
    }
}

/// A p-value: four decimals, or scientific notation below 0.0001.
fn fmt_p(p: f64) -> String {
    if p.is_nan() {
        "—".to_owned()
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

fn fmt_estimate(e: &Estimate) -> (String, String) {
    (
        fmt(e.value),
        e.interval.map_or(String::new(), |ci| {
            format!("[{}, {}]", fmt(ci.low), fmt(ci.high))
        }),
    )
}

impl Report {
    /// The terminal rendering.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let b = &self.benchmark;
        let e = &self.evaluation;
        let rows = if b.selected_rows == b.rows {
            format!("{} rows", b.rows)
        } else {
            format!("{} of {} rows", b.selected_rows, b.rows)
        };
        let _ = writeln!(
            out,
            "benchmark  {} ({} layout, {} protocol; {rows} → {} items, {} candidates)",
            b.file,
            layout_name(b.layout),
            b.protocol.as_str(),
            b.items,
            e.candidates
        );
        if b.rows_left_out > 0 {
            let _ = writeln!(
                out,
                "           {} rows left out by the conversion (e.g. {})",
                b.rows_left_out,
                b.left_out_examples.join("; ")
            );
        }
        if !b.skipped_rows.is_empty() {
            let _ = writeln!(out, "           {} bad rows skipped:", b.skipped_rows.len());
            for row in b.skipped_rows.iter().take(10) {
                let _ = writeln!(out, "             {row}");
            }
        }
        write_reward(&mut out, "reward", &self.reward);
        if let Some(other) = &self.compared_with {
            write_reward(&mut out, "compared", other);
        }
        if e.non_scores > 0 {
            let _ = writeln!(
                out,
                "non-scores {} candidates without a score: {} items counted wrong, {} left out",
                e.non_scores,
                e.wrong_for_non_score,
                e.left_out.len()
            );
        } else if !e.left_out.is_empty() {
            let _ = writeln!(
                out,
                "left out   {} items (a candidate had no score)",
                e.left_out.len()
            );
        }
        if !e.emptied_subsets.is_empty() {
            let _ = writeln!(
                out,
                "no score   subsets whose every item was left out: {}",
                e.emptied_subsets.join(", ")
            );
        }
        let level = format!("{:.0}% CI", e.bootstrap.confidence * 100.0);
        let _ = writeln!(out);
        let width = e
            .subsets
            .iter()
            .map(|s| s.name.chars().count())
            .chain(e.sections.iter().map(|s| s.name.chars().count()))
            .chain(["overall".len(), "subset".len()])
            .max()
            .unwrap_or(7);
        let compared = self.compared_evaluation.as_ref();
        let _ = write!(
            out,
            "{:<width$}  {:>7}  {:>9}  {:<18}",
            "subset", "prompts", "score", level
        );
        if compared.is_some() {
            let _ = write!(out, "  {:>9}  {:<18}", "compared", level);
        }
        let _ = writeln!(out);
        for (k, subset) in e.subsets.iter().enumerate() {
            let (value, ci) = fmt_estimate(&subset.score);
            let _ = write!(
                out,
                "{:<width$}  {:>7}  {:>9}  {:<18}",
                subset.name, subset.prompts, value, ci
            );
            if let Some(other) = compared.and_then(|c| c.subsets.get(k)) {
                let (value, ci) = fmt_estimate(&other.score);
                let _ = write!(out, "  {value:>9}  {ci:<18}");
            }
            let _ = writeln!(out);
        }
        for (k, section) in e.sections.iter().enumerate() {
            let (value, ci) = fmt_estimate(&section.score);
            let _ = write!(
                out,
                "{:<width$}  {:>7}  {:>9}  {:<18}",
                format!("[{}]", section.name),
                section.prompts,
                value,
                ci
            );
            if let Some(other) = compared.and_then(|c| c.sections.get(k)) {
                let (value, ci) = fmt_estimate(&other.score);
                let _ = write!(out, "  {value:>9}  {ci:<18}");
            }
            let _ = writeln!(out);
        }
        let (value, ci) = fmt_estimate(&e.overall);
        // With sections, the overall averages only the sections, so it counts only their prompts
        // (subsets in no section are listed above but are not in it).
        let overall_prompts = if e.sections.is_empty() {
            e.items
        } else {
            e.sections.iter().map(|s| s.prompts).sum()
        };
        let _ = write!(
            out,
            "{:<width$}  {:>7}  {:>9}  {:<18}",
            "overall", overall_prompts, value, ci
        );
        if let Some(other) = compared {
            let (value, ci) = fmt_estimate(&other.overall);
            let _ = write!(out, "  {value:>9}  {ci:<18}");
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "overall = {}", e.overall_rule);
        if let Some(t) = &e.ties {
            let _ = writeln!(
                out,
                "ties: acc tied {} ref {}, correctness preferred {} (hard {}), margin {}",
                fmt(t.tied_accuracy),
                fmt(t.ref_accuracy),
                fmt(t.correctness_preferred),
                fmt(t.correctness_preferred_hard),
                fmt(t.margin_score)
            );
        }

        let _ = writeln!(out);
        let c = &e.calibration;
        let _ = writeln!(
            out,
            "calibration  σ(r_c − r_r) over {} pairs: ECE {}, Bradley–Terry loss {}",
            c.pairs,
            fmt(c.ece),
            fmt(c.bt_loss)
        );
        let l = &e.length;
        let group = |g: &crate::evaluate::GroupAccuracy| {
            let (value, ci) = fmt_estimate(&g.accuracy);
            format!("{value} {ci} ({} pairs)", g.pairs)
        };
        let _ = writeln!(
            out,
            "length       accuracy when chosen is longer {}; shorter {}; equal {}",
            group(&l.chosen_longer),
            group(&l.chosen_shorter),
            group(&l.equal_length)
        );
        let _ = writeln!(
            out,
            "             reward–length correlation: Pearson {}, Spearman {}; mean length \
             correct {:.0}, incorrect {:.0} {}",
            fmt(l.pearson),
            fmt(l.spearman),
            l.mean_length_correct,
            l.mean_length_incorrect,
            l.unit
        );
        let d = &e.distributions;
        let _ = writeln!(
            out,
            "scores       correct: mean {} sd {} median {} | incorrect: mean {} sd {} median {}",
            fmt(d.correct_summary.mean),
            fmt(d.correct_summary.std),
            fmt(d.correct_summary.median),
            fmt(d.incorrect_summary.mean),
            fmt(d.incorrect_summary.std),
            fmt(d.incorrect_summary.median)
        );
        if let Some(curve) = &e.best_of_n {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "best-of-N  {:>3}  {:>7}  {:>9}  {:>9}  {:>9}",
                "N", "prompts", "reward", "majority", "oracle"
            );
            for k in 0..curve.n.len() {
                let majority = curve
                    .majority
                    .as_ref()
                    .map_or("—".to_owned(), |m| fmt(m[k]));
                let _ = writeln!(
                    out,
                    "           {:>3}  {:>7}  {:>9}  {:>9}  {:>9}",
                    curve.n[k],
                    curve.prompts[k],
                    fmt(curve.reward[k]),
                    majority,
                    fmt(curve.oracle[k])
                );
            }
        }
        if let Some(balance) = &e.balance {
            let _ = writeln!(
                out,
                "B-STaR balance score {} at threshold {} (n* = {}; select everything: {})",
                fmt(balance.best_score),
                balance
                    .best_threshold
                    .map_or("none (all)".to_owned(), |t| format!("> {t}")),
                balance.n_star,
                fmt(balance.curve[0].score)
            );
        }
        if let Some(cmp) = &self.comparison {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "comparison on {} items: {} vs {}; McNemar: {} only first right, {} only second \
                 right (exact p {}, χ² {} p {})",
                cmp.items,
                fmt(cmp.first),
                fmt(cmp.second),
                cmp.mcnemar.first_only,
                cmp.mcnemar.second_only,
                fmt_p(cmp.mcnemar.p_exact),
                fmt(cmp.mcnemar.chi_square),
                fmt_p(cmp.mcnemar.p_chi_square)
            );
            let _ = writeln!(out, "verdict: {}", cmp.verdict);
        }
        out
    }

    /// A self-contained HTML page: the tables and inline SVG plots (per-subset bars with their
    /// intervals, the reliability diagram, score distributions, length bias and, for labelled
    /// data, the best-of-N and balance curves). No network, no external scripts; one small inline
    /// script counts the plots into `data-plots` on `<body>` for headless checks.
    pub fn to_html(&self) -> String {
        let e = &self.evaluation;
        let mut plots: Vec<(String, String, String)> = Vec::new();
        // Per-subset bars with whiskers (two series when comparing).
        let mut labels: Vec<String> = e.subsets.iter().map(|s| s.name.clone()).collect();
        let mut first: Vec<svg::Bar> = e
            .subsets
            .iter()
            .map(|s| (s.score.value, s.score.interval.map(|c| (c.low, c.high))))
            .collect();
        let mut second: Option<Vec<svg::Bar>> = self.compared_evaluation.as_ref().map(|c| {
            c.subsets
                .iter()
                .map(|s| (s.score.value, s.score.interval.map(|c| (c.low, c.high))))
                .collect()
        });
        for section in &e.sections {
            labels.push(format!("[{}]", section.name));
            first.push((
                section.score.value,
                section.score.interval.map(|c| (c.low, c.high)),
            ));
        }
        if let (Some(second), Some(c)) = (second.as_mut(), self.compared_evaluation.as_ref()) {
            for section in &c.sections {
                second.push((
                    section.score.value,
                    section.score.interval.map(|c| (c.low, c.high)),
                ));
            }
        }
        // With one subset and no sections the overall bar would repeat the subset's.
        if e.subsets.len() > 1 || !e.sections.is_empty() {
            labels.push("overall".to_owned());
            first.push((e.overall.value, e.overall.interval.map(|c| (c.low, c.high))));
            if let (Some(second), Some(c)) = (second.as_mut(), self.compared_evaluation.as_ref()) {
                second.push((c.overall.value, c.overall.interval.map(|c| (c.low, c.high))));
            }
        }
        let mut series = vec![(self.reward.path.clone(), first)];
        if let (Some(second), Some(info)) = (second, &self.compared_with) {
            series.push((info.path.clone(), second));
        }
        let level = format!("{:.0}%", e.bootstrap.confidence * 100.0);
        plots.push((
            "subsets".to_owned(),
            format!("Score per subset with {level} bootstrap intervals"),
            svg::bars(&labels, &series),
        ));
        plots.push((
            "reliability".to_owned(),
            format!(
                "Reliability of σ(r_c − r_r) — ECE {} over {} pairs",
                fmt(e.calibration.ece),
                e.calibration.pairs
            ),
            svg::reliability(&e.calibration.bins),
        ));
        plots.push((
            "distributions".to_owned(),
            "Score distributions: correct (chosen) vs incorrect (rejected)".to_owned(),
            svg::histogram(
                &e.distributions.edges,
                &[
                    ("correct", &e.distributions.correct),
                    ("incorrect", &e.distributions.incorrect),
                ],
            ),
        ));
        let l = &e.length;
        let length_bars: Vec<svg::Bar> = [&l.chosen_longer, &l.chosen_shorter, &l.equal_length]
            .iter()
            .map(|g| {
                (
                    g.accuracy.value,
                    g.accuracy.interval.map(|c| (c.low, c.high)),
                )
            })
            .collect();
        plots.push((
            "length".to_owned(),
            format!(
                "Length bias — pair accuracy by which answer is longer (Pearson r(reward, length) \
                 = {}, Spearman {})",
                fmt(l.pearson),
                fmt(l.spearman)
            ),
            svg::bars(
                &[
                    format!("chosen longer ({})", l.chosen_longer.pairs),
                    format!("chosen shorter ({})", l.chosen_shorter.pairs),
                    format!("equal ({})", l.equal_length.pairs),
                ],
                &[("accuracy".to_owned(), length_bars)],
            ),
        ));
        if let Some(curve) = &e.best_of_n {
            let x: Vec<f64> = curve.n.iter().map(|&n| n as f64).collect();
            let mut lines = vec![("reward's pick", curve.reward.clone())];
            if let Some(m) = &curve.majority {
                lines.push(("majority vote", m.clone()));
            }
            lines.push(("oracle pass@N", curve.oracle.clone()));
            plots.push((
                "best-of-n".to_owned(),
                "Best-of-N: accuracy as N grows".to_owned(),
                svg::lines(&x, &lines, "N", true),
            ));
        }
        if let Some(balance) = &e.balance {
            let points: Vec<&crate::evaluate::BalancePoint> = balance
                .curve
                .iter()
                .filter(|p| p.threshold.is_some())
                .collect();
            if points.len() >= 2 {
                let x: Vec<f64> = points.iter().map(|p| p.threshold.unwrap_or(0.0)).collect();
                plots.push((
                    "balance".to_owned(),
                    format!(
                        "B-STaR balance score vs reward threshold τ (n* = {}; best {})",
                        balance.n_star,
                        fmt(balance.best_score)
                    ),
                    svg::lines(
                        &x,
                        &[
                            ("balance score", points.iter().map(|p| p.score).collect()),
                            (
                                "fraction selected",
                                points.iter().map(|p| p.selected).collect(),
                            ),
                        ],
                        "τ (select reward > τ)",
                        true,
                    ),
                ));
            }
        }

        let mut html = String::new();
        let title = format!("rewardkit eval — {}", self.reward.path);
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{}</style>\n</head>\n<body data-plots=\"0\">\n",
            escape(&title),
            STYLE
        );
        let _ = writeln!(html, "<h1>{}</h1>", escape(&title));
        let _ = writeln!(
            html,
            "<p class=\"meta\">benchmark <code>{}</code> · {} layout · {} protocol · {} items · {} \
             candidates · overall <b>{}</b> {}</p>",
            escape(&self.benchmark.file),
            layout_name(self.benchmark.layout),
            self.benchmark.protocol.as_str(),
            e.items,
            e.candidates,
            fmt(e.overall.value),
            e.overall
                .interval
                .map_or(String::new(), |c| format!("[{}, {}]", fmt(c.low), fmt(c.high)))
        );
        let _ = writeln!(
            html,
            "<p class=\"meta\">overall = {}. Intervals: {} percentile bootstrap, {} replicates, \
             seed {}, resampling {}.</p>",
            escape(&e.overall_rule),
            level,
            e.bootstrap.replicates,
            e.bootstrap.seed,
            e.bootstrap.unit
        );
        let _ = writeln!(
            html,
            "<pre class=\"table\">{}</pre>",
            escape(&self.to_text())
        );
        for (id, caption, svg) in &plots {
            let _ = writeln!(
                html,
                "<figure class=\"plot\" id=\"plot-{id}\">\n<figcaption>{}</figcaption>\n{svg}\n</figure>",
                escape(caption)
            );
        }
        let _ = writeln!(
            html,
            "<script>document.body.dataset.plots = \
             String(document.querySelectorAll('figure.plot > svg').length);</script>"
        );
        html.push_str("</body>\n</html>\n");
        html
    }
}

fn write_reward(out: &mut String, label: &str, info: &RewardInfo) {
    let _ = write!(out, "{label:<10} {} {}", info.source, info.path);
    if let Some(file) = &info.cache_file {
        let _ = write!(
            out,
            " (score cache {file}: {} cached, {} scored now)",
            info.cached, info.scored
        );
    }
    let _ = writeln!(out);
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Pairwise => "pairwise",
        Layout::BestOfN => "best-of-N",
        Layout::Labelled => "labelled",
    }
}

/// Escapes text for HTML (and SVG) content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;\
max-width:1100px;padding:0 1em;color:#1d2330;background:#fff}h1{font-size:1.4em}\
.meta{color:#4a5263;font-size:.92em}code{font-size:.95em}\
pre.table{background:#f5f6f8;border:1px solid #dde1e7;padding:1em;overflow-x:auto;font-size:12.5px;\
line-height:1.35}figure.plot{margin:1.5em 0;border:1px solid #e3e6eb;border-radius:6px;padding:.5em 1em}\
figcaption{font-weight:600;margin:.3em 0 .6em}svg{max-width:100%;height:auto;display:block}\
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#333}";
