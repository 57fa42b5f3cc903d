//! `rewardkit eval`: evaluate a reward (a spec, a model directory or precomputed scores) on a
//! benchmark with the RewardBench protocols, bootstrap intervals and diagnostics; optionally
//! compare it with a second reward. Glue over `rewardkit-eval`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rewardkit::{Registry, Spec};
use rewardkit_core::Outcome;
use rewardkit_data::Format;
use rewardkit_eval::protocol::{rewardbench_v1_sections, Section};
use rewardkit_eval::report::{BenchInfo, Report, RewardInfo};
use rewardkit_eval::{
    compare, default_cache_dir, evaluate, read_scores, write_atomically, write_scores,
    BenchOptions, Benchmark, EvalOptions, Layout, NonScores, Protocol, ScoreCache, SpecReward,
    Vote,
};

/// Arguments of `rewardkit eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// The reward to evaluate: a reward spec (TOML). Each candidate is scored as a sample with
    /// the benchmark row's prompt and its reference (gold answer) when the row has one.
    #[arg(long, group = "reward")]
    spec: Option<PathBuf>,
    /// The reward to evaluate: a learned reward-model directory (scored through the `model`
    /// reward kind, when this build has it).
    #[arg(long, group = "reward")]
    model: Option<PathBuf>,
    /// The reward to evaluate: a JSONL file of precomputed scores, one row per benchmark item
    /// with `scores` (a list in candidate order; `null` = no score), keyed by `id`, `index`
    /// (0-based) or row order.
    #[arg(long, group = "reward")]
    scores: Option<PathBuf>,
    /// The benchmark: JSONL, JSONL.gz or Parquet.
    #[arg(long)]
    bench: PathBuf,
    /// A second reward to compare with on the same benchmark (paired bootstrap and McNemar's
    /// test): a spec (`.toml`), a model directory, or a score file.
    #[arg(long)]
    compare: Option<PathBuf>,

    /// How benchmark rows are laid out.
    #[arg(long, value_enum, default_value_t = LayoutArg::Pairwise)]
    layout: LayoutArg,
    /// The scoring rule (default: the layout's own). `--layout labelled --protocol pairwise`
    /// scores each prompt's first correct against its first incorrect sample.
    #[arg(long, value_enum)]
    protocol: Option<ProtocolArg>,
    /// Dotted path of the prompt (`none`: rows without one).
    #[arg(long, default_value = "prompt")]
    prompt_field: String,
    /// Dotted path of the chosen completion (a list for `best-of-n`).
    #[arg(long, default_value = "chosen")]
    chosen_field: String,
    /// Dotted path of the rejected completion (a list for `best-of-n`).
    #[arg(long, default_value = "rejected")]
    rejected_field: String,
    /// Labelled layout: the field(s) holding samples, comma-separated; each is a list of sample
    /// objects or one sample object.
    #[arg(long, default_value = "samples", value_delimiter = ',')]
    samples_field: Vec<String>,
    /// Labelled layout: the text inside a sample object.
    #[arg(long, default_value = "completion")]
    sample_text_field: String,
    /// Labelled layout: the label (true/false or 1/0) inside a sample object.
    #[arg(long, default_value = "correct")]
    sample_label_field: String,
    /// Dotted path of the subset name (rows without one are in subset `all`).
    #[arg(long, default_value = "subset")]
    subset_field: String,
    /// Dotted path of the row id (default: the line number).
    #[arg(long, default_value = "id")]
    id_field: String,
    /// Dotted path of the reference handed to the reward (`none`: never).
    #[arg(long, default_value = "reference")]
    reference_field: String,
    /// Split chosen/rejected full dialogues at the last occurrence of this marker: the part
    /// before is the prompt, the rest the completion (HH-RLHF: $'\n\nAssistant:').
    #[arg(long)]
    split_marker: Option<String>,
    /// The name of RewardBench 2's Ties subset.
    #[arg(long, default_value = "Ties")]
    ties_subset: String,
    /// Keep only the first N rows of the benchmark.
    #[arg(long)]
    first: Option<usize>,
    /// Keep only the last N rows of the benchmark.
    #[arg(long)]
    last: Option<usize>,
    /// Skip benchmark rows that cannot be read or mapped (each is listed in the report) instead
    /// of stopping at the first one.
    #[arg(long)]
    skip_bad_rows: bool,
    /// Benchmark format, when the name does not tell (`jsonl`, `jsonl.gz`, `parquet`).
    #[arg(long)]
    bench_format: Option<Format>,
    /// Pairwise sections as `NAME=subset,subset` (repeatable; default: RewardBench v1's Chat,
    /// Chat Hard, Safety and Reasoning; `none` for no sections).
    #[arg(long)]
    section: Vec<String>,

    /// Bootstrap replicates (0: no intervals).
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// Reliability-diagram bins.
    #[arg(long, default_value_t = 10)]
    bins: usize,
    /// What a candidate without a score does to its item: `wrong` (counted), `exclude`, `error`.
    #[arg(long, value_enum, default_value_t = NonScoresArg::Wrong)]
    non_scores: NonScoresArg,
    /// How majority voting tells answers apart (labelled data): the final `number`, the whole
    /// `text`, or `none`.
    #[arg(long, value_enum, default_value_t = VoteArg::Number)]
    vote: VoteArg,
    /// B-STaR's n* (default: min(8, samples per prompt)).
    #[arg(long)]
    n_star: Option<usize>,

    /// Print the report as JSON on standard output.
    #[arg(long)]
    json: bool,
    /// Write a self-contained HTML report (inline SVG plots, no network).
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write the evaluated reward's scores in the `--scores` format.
    #[arg(long)]
    save_scores: Option<PathBuf>,
    /// Where spec and model scores are cached, one file per reward fingerprint (default:
    /// $REWARDKIT_CACHE_DIR, else $XDG_CACHE_HOME/rewardkit/eval, else ~/.cache/rewardkit/eval).
    #[arg(long, env = "REWARDKIT_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the score cache.
    #[arg(long)]
    no_cache: bool,
    /// Worker threads for scoring (default: all cores).
    #[arg(long, env = "REWARDKIT_THREADS")]
    threads: Option<usize>,
    /// Never show a progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum LayoutArg {
    Pairwise,
    BestOfN,
    Labelled,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProtocolArg {
    Pairwise,
    BestOfN,
    Labelled,
}

#[derive(Clone, Copy, ValueEnum)]
enum NonScoresArg {
    Wrong,
    Exclude,
    Error,
}

#[derive(Clone, Copy, ValueEnum)]
enum VoteArg {
    Number,
    Text,
    None,
}

/// A reward to score the benchmark with.
enum RewardSource {
    Spec(PathBuf),
    Model(PathBuf),
    Scores(PathBuf),
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if let Some(threads) = args.threads {
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("cannot start the scoring threads")?;
    }
    let source = match (&args.spec, &args.model, &args.scores) {
        (Some(spec), None, None) => RewardSource::Spec(spec.clone()),
        (None, Some(model), None) => RewardSource::Model(model.clone()),
        (None, None, Some(scores)) => RewardSource::Scores(scores.clone()),
        _ => bail!("give the reward to evaluate: one of --spec, --model or --scores"),
    };
    let compared = args.compare.as_ref().map(|path| {
        if path.is_dir() {
            RewardSource::Model(path.clone())
        } else if path.extension().is_some_and(|e| e == "toml") {
            RewardSource::Spec(path.clone())
        } else {
            RewardSource::Scores(path.clone())
        }
    });
    let bench_options = bench_options(&args)?;
    let eval_options = eval_options(&args)?;
    let bench = Benchmark::read(&args.bench, &bench_options)?;

    let (outcomes, reward) = score(&source, &bench, &args)?;
    let evaluation = evaluate(&bench, &outcomes, &eval_options)?;
    let (compared_with, compared_evaluation, comparison) = match &compared {
        Some(other) => {
            let (other_outcomes, info) = score(other, &bench, &args)?;
            let other_evaluation = evaluate(&bench, &other_outcomes, &eval_options)?;
            let comparison = compare(&bench, &outcomes, &other_outcomes, &eval_options)?;
            (Some(info), Some(other_evaluation), Some(comparison))
        }
        None => (None, None, None),
    };
    if let Some(path) = &args.save_scores {
        write_scores(path, &bench, &outcomes)?;
    }
    let report = Report {
        benchmark: BenchInfo::of(&bench),
        reward,
        evaluation,
        compared_with,
        compared_evaluation,
        comparison,
    };
    if let Some(path) = &args.html {
        write_atomically(path, report.to_html().as_bytes())?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
        if let Some(path) = &args.html {
            println!("html report: {}", path.display());
        }
    }
    Ok(())
}

fn bench_options(args: &EvalArgs) -> anyhow::Result<BenchOptions> {
    let none_or = |field: &str| (field != "none").then(|| field.to_owned());
    Ok(BenchOptions {
        layout: match args.layout {
            LayoutArg::Pairwise => Layout::Pairwise,
            LayoutArg::BestOfN => Layout::BestOfN,
            LayoutArg::Labelled => Layout::Labelled,
        },
        protocol: args.protocol.map(|p| match p {
            ProtocolArg::Pairwise => Protocol::Pairwise,
            ProtocolArg::BestOfN => Protocol::BestOfN,
            ProtocolArg::Labelled => Protocol::Labelled,
        }),
        prompt: none_or(&args.prompt_field),
        chosen: args.chosen_field.clone(),
        rejected: args.rejected_field.clone(),
        samples: args.samples_field.clone(),
        sample_text: args.sample_text_field.clone(),
        sample_label: args.sample_label_field.clone(),
        subset: args.subset_field.clone(),
        id: args.id_field.clone(),
        reference: none_or(&args.reference_field),
        split_marker: args.split_marker.clone(),
        ties_subset: args.ties_subset.clone(),
        first: args.first,
        last: args.last,
        format: args.bench_format,
        skip_bad_rows: args.skip_bad_rows,
    })
}

fn eval_options(args: &EvalArgs) -> anyhow::Result<EvalOptions> {
    let sections = if args.section.is_empty() {
        rewardbench_v1_sections()
    } else if args.section.len() == 1 && args.section[0] == "none" {
        Vec::new()
    } else {
        let mut sections = Vec::new();
        for text in &args.section {
            let Some((name, subsets)) = text.split_once('=') else {
                bail!("--section {text:?}: expected NAME=subset,subset");
            };
            let subsets: Vec<String> = subsets
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if name.trim().is_empty() || subsets.is_empty() {
                bail!("--section {text:?}: expected NAME=subset,subset");
            }
            sections.push(Section {
                name: name.trim().to_owned(),
                subsets,
            });
        }
        sections
    };
    Ok(EvalOptions {
        bootstrap: args.bootstrap,
        seed: args.seed,
        confidence: args.confidence,
        bins: args.bins,
        sections,
        non_scores: match args.non_scores {
            NonScoresArg::Wrong => NonScores::Wrong,
            NonScoresArg::Exclude => NonScores::Exclude,
            NonScoresArg::Error => NonScores::Error,
        },
        vote: match args.vote {
            VoteArg::Number => Vote::Number,
            VoteArg::Text => Vote::Text,
            VoteArg::None => Vote::None,
        },
        n_star: args.n_star,
        ties_subset: args.ties_subset.clone(),
    })
}

/// Scores the benchmark with a reward: from its file, or by running a spec (through the cache).
fn score(
    source: &RewardSource,
    bench: &Benchmark,
    args: &EvalArgs,
) -> anyhow::Result<(Vec<Vec<Outcome>>, RewardInfo)> {
    let (spec, label, kind) = match source {
        RewardSource::Scores(path) => {
            let outcomes = read_scores(path, bench, None)?;
            let info = RewardInfo {
                source: "scores".to_owned(),
                path: path.display().to_string(),
                fingerprint: None,
                cache_file: None,
                cached: 0,
                scored: 0,
            };
            return Ok((outcomes, info));
        }
        RewardSource::Spec(path) => (Spec::from_path(path)?, path, "spec"),
        RewardSource::Model(path) => (model_spec(path)?, path, "model"),
    };
    let reward = SpecReward::new(&spec)?;
    let mut cache = if args.no_cache {
        None
    } else {
        let dir = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
        Some(ScoreCache::open(dir, reward.fingerprint())?)
    };
    let total = bench.candidate_count();
    let bar = progress_bar(
        args.no_progress || args.json,
        total,
        &label.display().to_string(),
    );
    let (outcomes, cached) = reward.score(bench, cache.as_mut(), &mut |done, _| {
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let info = RewardInfo {
        source: kind.to_owned(),
        path: label.display().to_string(),
        fingerprint: Some(reward.fingerprint().to_owned()),
        cache_file: cache.as_ref().map(|c| c.file().display().to_string()),
        cached,
        scored: total - cached,
    };
    Ok((outcomes, info))
}

/// A one-term spec scoring with the `model` kind, when this build registers it.
fn model_spec(dir: &Path) -> anyhow::Result<Spec> {
    if Registry::default().get("model").is_none() {
        bail!(
            "--model needs the `model` reward kind, which this build does not have \
             (`rewardkit spec kinds` lists the kinds); score the model elsewhere and pass \
             --scores, or use a spec"
        );
    }
    if !dir.is_dir() {
        bail!("--model {}: not a directory", dir.display());
    }
    let path = dir
        .canonicalize()
        .with_context(|| format!("--model {}", dir.display()))?;
    let toml = format!(
        "[[term]]\nname = \"model\"\nkind = \"model\"\n[term.options]\npath = {}\n",
        toml_string(&path.display().to_string())
    );
    Ok(Spec::from_toml_str(&toml, &dir.display().to_string())?)
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn progress_bar(disabled: bool, total: usize, label: &str) -> ProgressBar {
    if disabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {bar:40} {human_pos}/{human_len} samples  {per_sec}  eta {eta}",
        )
        .expect("the progress template is valid; this is a bug"),
    );
    bar.set_message(format!("scoring {label}"));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::toml_string;

    #[test]
    fn paths_become_toml_strings() {
        assert_eq!(toml_string("a/b"), "\"a/b\"");
        assert_eq!(toml_string("C:\\x \"y\""), "\"C:\\\\x \\\"y\\\"\"");
        assert_eq!(toml_string("a\u{1}b"), "\"a\\u0001b\"");
    }
}
