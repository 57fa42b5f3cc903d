//! `rewardkit train`: train a reward model from preference pairs (or ratings) and save it as a
//! Hugging Face–style directory that a spec's `model` term scores with.
//!
//! The output directory holds `config.json`, `model.safetensors` and `rewardkit.json` (objective,
//! settings, data, validation history, reward mean/std), plus `checkpoint.safetensors` while a
//! run is in progress; `--resume` continues an interrupted run from it, bit-exactly.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rewardkit_model::data::{read_pairs_with, read_ratings_with, PairFields};
use rewardkit_model::encoder::{EncoderConfig, Pooling};
use rewardkit_model::hashed::HashedConfig;
use rewardkit_model::optim::{AdamWConfig, Decay};
use rewardkit_model::{
    BackboneConfig, ChatTemplateConfig, CheckpointOptions, Device, Event, Examples, HeadConfig,
    ModelConfig, Objective, RewardModel, TrainConfig, TrainingRecord, Truncation,
};

/// Arguments of `rewardkit train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Training data: JSONL, JSONL.gz or Parquet. Pairs in the TRL convention (`prompt`
    /// optional, `chosen`, `rejected` as strings or chat lists, optional `margin`), HH-RLHF
    /// dialogues, or ratings for `--objective regression`.
    #[arg(long)]
    data: PathBuf,
    /// Validation data in the same format.
    #[arg(long, conflicts_with_all = ["val_last", "val_fraction"])]
    val_data: Option<PathBuf>,
    /// Validate on the last N rows of `--data` (and train on the rest).
    #[arg(long, conflicts_with = "val_fraction")]
    val_last: Option<usize>,
    /// Validate on this fraction of `--data`, drawn with the seed.
    #[arg(long)]
    val_fraction: Option<f64>,
    /// Use only the first N rows of `--data` (before the validation split).
    #[arg(long)]
    limit: Option<usize>,
    /// The backbone: `hashed` (built in, no download), or a Hugging Face BERT-family model
    /// directory (config.json, tokenizer.json, model.safetensors), e.g. all-MiniLM-L6-v2.
    #[arg(long, default_value = "hashed")]
    backbone: String,
    /// Start from the weights of a saved model directory instead of a fresh model; its
    /// backbone and head settings are used (`--backbone`, `--head`, `--pooling`, … are ignored).
    /// HelpSteer2-Preference trains scaled BT this way from a regression model.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Encoder backbones: how token vectors become one vector.
    #[arg(long, value_enum, default_value_t = PoolingKind::Mean)]
    pooling: PoolingKind,
    /// Encoder backbones: train the encoder's weights too (default: the head only).
    #[arg(long)]
    train_encoder: bool,
    /// The output model directory.
    #[arg(long)]
    out: PathBuf,
    /// Objective.
    #[arg(long, default_value = "bt", value_parser = ["bt", "bt-margin", "scaled-bt", "label-smoothing", "log-exp", "regression"])]
    objective: String,
    /// Label-smoothing α for `--objective label-smoothing` (default 0.1).
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// Centring regulariser coefficient c in c·mean((r_c + r_r)²).
    #[arg(long, default_value_t = 0.0)]
    centring: f64,
    /// Rating columns for `--objective regression` (comma-separated; one output each).
    #[arg(long, value_delimiter = ',')]
    attributes: Vec<String>,
    /// The head on the backbone.
    #[arg(long, value_enum, default_value_t = HeadKind::Mlp)]
    head: HeadKind,
    /// Hidden width of the MLP head.
    #[arg(long, default_value_t = 64)]
    head_hidden: usize,
    /// Passes over the training data.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Pairs (or ratings) per micro-batch.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accumulation: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Fraction of the steps spent warming up.
    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,
    /// Learning-rate decay after warm-up.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Linear)]
    schedule: ScheduleKind,
    /// Gradient clipping: largest global norm (0 turns it off).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Validate every N optimizer steps (0 = at the end of each epoch).
    #[arg(long, default_value_t = 0)]
    eval_every: usize,
    /// Stop after N validations without a lower validation loss (0 = never).
    #[arg(long, default_value_t = 0)]
    patience: usize,
    /// Write a checkpoint every N optimizer steps (0 = at each validation).
    #[arg(long, default_value_t = 0)]
    checkpoint_every: usize,
    /// Continue the interrupted run whose checkpoint is in `--out`.
    #[arg(long)]
    resume: bool,
    /// Seed for initial weights, data order and `--val-fraction`.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Hashed backbone: hash slots.
    #[arg(long, default_value_t = 1 << 16)]
    buckets: usize,
    /// Hashed backbone: output width.
    #[arg(long, default_value_t = 32)]
    width: usize,
    /// Maximum input length: words for `hashed` (default 512), tokens kept from the end for
    /// encoders (default 128).
    #[arg(long)]
    max_length: Option<usize>,
    /// Which end of an input longer than `--max-length` is cut: `left` cuts the start of the
    /// dialogue (the earliest turns of the prompt go first, the response is kept), `right` cuts
    /// its end (the end of the response goes first). Each side of a pair (prompt + chosen,
    /// prompt + rejected) is cut on its own. Saved with the model; scoring uses it. Default
    /// `left` (with `--init`: the initial model's).
    #[arg(long, value_enum)]
    truncation: Option<TruncationSide>,
    /// How chat-list rows become text: `builtin` (HH-style `\n\nHuman: …\n\nAssistant: …`),
    /// `none` (message texts joined by newlines), `tokenizer` (the backbone's own Jinja
    /// `chat_template` from its tokenizer_config.json or chat_template.jinja; `tokenizer:NAME`
    /// picks a named one), or the path of a .jinja file or tokenizer_config.json. Plain-string
    /// rows are used as they are; HH-RLHF dialogues are parsed into turns for Jinja templates.
    /// Saved with the model; scoring uses it. Default `builtin` (with `--init`: the initial
    /// model's).
    #[arg(long)]
    chat_template: Option<String>,
    /// Prompt column.
    #[arg(long, default_value = "prompt")]
    prompt_field: String,
    /// Chosen column.
    #[arg(long, default_value = "chosen")]
    chosen_field: String,
    /// Rejected column.
    #[arg(long, default_value = "rejected")]
    rejected_field: String,
    /// Margin (preference magnitude) column.
    #[arg(long, default_value = "margin")]
    margin_field: String,
    /// Response column of rating files.
    #[arg(long, default_value = "response")]
    response_field: String,
    /// Frozen encoders: recompute the encoder's vectors every step instead of encoding each
    /// distinct text once (same results within float rounding; much slower).
    #[arg(long)]
    no_feature_cache: bool,
    /// Stop once N optimizer steps are done, leaving a checkpoint to `--resume` from.
    #[arg(long, hide = true)]
    stop_after_steps: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Print the final report as JSON on standard output.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum HeadKind {
    Linear,
    Mlp,
    /// BERT's dense + tanh pooler and a linear classifier; with `--pooling cls` on an encoder
    /// the output directory is a `BertForSequenceClassification` checkpoint.
    BertPooler,
}

#[derive(Clone, Copy, ValueEnum)]
enum PoolingKind {
    Mean,
    Cls,
}

#[derive(Clone, Copy, ValueEnum)]
enum TruncationSide {
    /// Cut the start (the earliest turns).
    Left,
    /// Cut the end (the end of the response).
    Right,
}

impl From<TruncationSide> for Truncation {
    fn from(side: TruncationSide) -> Truncation {
        match side {
            TruncationSide::Left => Truncation::Left,
            TruncationSide::Right => Truncation::Right,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ScheduleKind {
    Constant,
    Linear,
    Cosine,
}

const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let objective = Objective::from_name(&args.objective, args.label_smoothing)?;
    let config = TrainConfig {
        objective,
        centring: args.centring,
        optimizer: AdamWConfig {
            lr: args.lr,
            weight_decay: args.weight_decay,
            ..AdamWConfig::default()
        },
        epochs: args.epochs,
        batch_size: args.batch_size,
        grad_accumulation: args.grad_accumulation,
        warmup_ratio: args.warmup_ratio,
        decay: match args.schedule {
            ScheduleKind::Constant => Decay::Constant,
            ScheduleKind::Linear => Decay::Linear,
            ScheduleKind::Cosine => Decay::Cosine,
        },
        max_grad_norm: args.max_grad_norm,
        eval_every: args.eval_every,
        patience: args.patience,
        checkpoint_every: args.checkpoint_every,
        seed: args.seed,
        cache_features: !args.no_feature_cache,
    };
    config.validate()?;
    let backbone = match args.backbone.as_str() {
        "hashed" => {
            let hashed = HashedConfig {
                buckets: args.buckets,
                width: args.width,
                max_length: args.max_length.unwrap_or(512),
                ..HashedConfig::default()
            };
            hashed.validate()?;
            BackboneConfig::Hashed(hashed)
        }
        path => {
            let source = PathBuf::from(path);
            if !source.join("config.json").is_file() {
                bail!(
                    "--backbone `{path}`: expected `hashed` or a model directory with config.json, tokenizer.json and model.safetensors"
                );
            }
            BackboneConfig::Encoder(EncoderConfig {
                source,
                pooling: match args.pooling {
                    PoolingKind::Mean => Pooling::Mean,
                    PoolingKind::Cls => Pooling::Cls,
                },
                max_length: args.max_length.unwrap_or(128),
                train_encoder: args.train_encoder,
                bert: serde_json::Value::Null,
            })
        }
    };
    let head = match args.head {
        HeadKind::Linear => HeadConfig::Linear,
        HeadKind::Mlp => HeadConfig::Mlp {
            hidden: args.head_hidden,
        },
        HeadKind::BertPooler => HeadConfig::BertPooler,
    };
    if objective.is_pairwise() && !args.attributes.is_empty() {
        bail!("--attributes only applies to --objective regression");
    }
    if !objective.is_pairwise() && args.attributes.is_empty() {
        bail!("--objective regression needs --attributes (the rating columns, comma-separated)");
    }
    if let Some(f) = args.val_fraction {
        if !(f > 0.0 && f < 1.0) {
            bail!("--val-fraction must be in (0, 1), got {f}");
        }
    }

    let checkpoint_path = args.out.join(CHECKPOINT_FILE);
    if checkpoint_path.exists() && !args.resume {
        bail!(
            "{} holds a checkpoint of an unfinished run: pass --resume to continue it, or choose another --out",
            args.out.display()
        );
    }

    let labels = if objective.is_pairwise() {
        Vec::new()
    } else {
        args.attributes.clone()
    };
    let mut model = match &args.init {
        Some(dir) => RewardModel::load(dir, &Device::Cpu)
            .and_then(|model| model.with_labels(&labels))
            .with_context(|| format!("--init {}", dir.display()))?,
        None => RewardModel::new(
            ModelConfig::new(backbone, head, &labels),
            args.seed,
            &Device::Cpu,
        )?,
    };
    if let Some(side) = args.truncation {
        model = model.with_truncation(side.into())?;
    }
    if let Some(value) = &args.chat_template {
        // `tokenizer` reads the backbone's directory (with --init: that model's directory first).
        let mut dirs: Vec<PathBuf> = args.init.iter().cloned().collect();
        dirs.extend(model.backbone_dir().map(Path::to_path_buf));
        let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        let chat_template = ChatTemplateConfig::resolve("--chat-template", value, &dirs)?;
        model = model.with_chat_template(chat_template)?;
    }
    let template = model.chat_template()?;
    let read = |path: &Path| -> anyhow::Result<Examples> {
        Ok(if objective.is_pairwise() {
            let fields = PairFields {
                prompt: args.prompt_field.clone(),
                chosen: args.chosen_field.clone(),
                rejected: args.rejected_field.clone(),
                margin: args.margin_field.clone(),
                ..PairFields::default()
            };
            Examples::Pairs(read_pairs_with(path, &fields, &template)?)
        } else {
            Examples::Ratings(read_ratings_with(
                path,
                &args.prompt_field,
                &args.response_field,
                &args.attributes,
                &template,
            )?)
        })
    };
    let mut data = read(&args.data)?;
    if let Some(limit) = args.limit {
        let extra = data.len().saturating_sub(limit);
        data = data.split_last(extra).0;
    }
    let (train_set, validation, validation_name) =
        match (&args.val_data, args.val_last, args.val_fraction) {
            (Some(path), _, _) => (data, Some(read(path)?), Some(path.display().to_string())),
            (None, Some(n), _) => {
                if n >= data.len() {
                    bail!(
                        "--val-last {n} leaves no training data ({} rows)",
                        data.len()
                    );
                }
                let (train_set, validation) = data.split_last(n);
                (
                    train_set,
                    Some(validation),
                    Some(format!("last {n} rows of {}", args.data.display())),
                )
            }
            (None, None, Some(fraction)) => {
                let (train_set, validation) = split_fraction(data, fraction, args.seed);
                (
                    train_set,
                    Some(validation),
                    Some(format!(
                        "{fraction} of {} drawn with seed {}",
                        args.data.display(),
                        args.seed
                    )),
                )
            }
            (None, None, None) => (data, None, None),
        };

    let progress = Progress::new(args.no_progress);
    let what = if objective.is_pairwise() {
        "pairs"
    } else {
        "ratings"
    };
    progress.println(format!(
        "training on {} {what}{} with backbone {} ({}, {}, truncation {}), objective {}",
        train_set.len(),
        validation
            .as_ref()
            .map(|v| format!(", validating on {}", v.len()))
            .unwrap_or_default(),
        args.init.as_ref().map_or_else(
            || args.backbone.clone(),
            |dir| format!("{} (--init)", dir.display())
        ),
        model.config().head.describe(),
        model.config().chat_template.describe(),
        model.config().truncation.name(),
        objective.name(),
    ));
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let started = Instant::now();
    let checkpoint = CheckpointOptions {
        path: Some(checkpoint_path.clone()),
        resume: args.resume,
        stop_after: args.stop_after_steps,
    };
    let report = rewardkit_model::train(
        &model,
        &config,
        &train_set,
        validation.as_ref(),
        &checkpoint,
        &mut |event| progress.event(event),
    )?;
    progress.finish();
    if report.interrupted {
        eprintln!(
            "stopped after {} of {} steps; continue with the same command and --resume",
            report.steps, report.total_steps
        );
        return Ok(());
    }

    // The trainer ends on the weights of the best validation, whose metrics it already has.
    let final_metrics = report.best.clone();
    model.save(&args.out)?;
    let record = TrainingRecord {
        rewardkit_version: env!("CARGO_PKG_VERSION").to_owned(),
        config: config.clone(),
        train_data: args.data.display().to_string(),
        train_examples: train_set.len(),
        validation_data: validation_name,
        validation_examples: validation.as_ref().map_or(0, Examples::len),
        reward_mean: final_metrics.as_ref().map(|m| m.reward_mean),
        reward_std: final_metrics.as_ref().map(|m| m.reward_std),
        final_metrics: final_metrics.clone(),
        report: report.clone(),
    };
    record.save(&args.out)?;
    rewardkit_model::curve::write_curve(
        &args.out,
        &report.history,
        &format!("{} on {}", objective.name(), args.data.display()),
    )?;
    if checkpoint_path.exists() {
        std::fs::remove_file(&checkpoint_path)
            .with_context(|| format!("removing {}", checkpoint_path.display()))?;
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        println!(
            "saved {} ({} steps{}, {:.1}s, {:.0} {what}/s)",
            args.out.display(),
            report.steps,
            if report.stopped_early {
                ", stopped early"
            } else {
                ""
            },
            started.elapsed().as_secs_f64(),
            report.examples_per_sec
        );
        if let Some(cache) = &report.feature_cache {
            println!(
                "frozen backbone: {} distinct texts encoded once in {:.1}s",
                cache.inputs, cache.seconds
            );
        }
        if let Some(m) = &final_metrics {
            let accuracy = m
                .accuracy
                .map(|a| format!("accuracy {:.2}%, ", 100.0 * a))
                .unwrap_or_default();
            println!(
                "validation: {accuracy}loss {:.4}, reward mean {:.4} std {:.4} (best at step {})",
                m.loss,
                m.reward_mean,
                m.reward_std,
                report.best.as_ref().map_or(0, |b| b.step)
            );
        }
    }
    Ok(())
}

/// Splits off a seeded random `fraction` of the examples (at least one), keeping file order in
/// both parts.
fn split_fraction(data: Examples, fraction: f64, seed: u64) -> (Examples, Examples) {
    let n = data.len();
    let take = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    // A seeded score per row; the `take` smallest go to validation.
    let mut keys: Vec<(u64, usize)> = (0..n)
        .map(|i| {
            let mut z = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31), i)
        })
        .collect();
    keys.sort_unstable();
    let mut is_val = vec![false; n];
    keys[..take].iter().for_each(|&(_, i)| is_val[i] = true);
    fn part<T: Clone>(items: &[T], is_val: &[bool], want: bool) -> Vec<T> {
        items
            .iter()
            .zip(is_val)
            .filter(|(_, &v)| v == want)
            .map(|(x, _)| x.clone())
            .collect()
    }
    match data {
        Examples::Pairs(p) => (
            Examples::Pairs(part(&p, &is_val, false)),
            Examples::Pairs(part(&p, &is_val, true)),
        ),
        Examples::Ratings(r) => (
            Examples::Ratings(part(&r, &is_val, false)),
            Examples::Ratings(part(&r, &is_val, true)),
        ),
    }
}

/// The progress bar (stderr, only on a terminal) and validation lines.
struct Progress {
    bar: ProgressBar,
    visible: bool,
}

impl Progress {
    fn new(disabled: bool) -> Progress {
        let visible = !disabled && std::io::stderr().is_terminal();
        let bar = if visible {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {prefix}  {msg}  ETA {eta}")
                    .expect("the template is valid: this is a bug"),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar, visible }
    }

    fn println(&self, line: String) {
        if self.visible {
            self.bar.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    fn event(&self, event: &Event) {
        match event {
            Event::Start {
                total_steps,
                from_step,
            } => {
                self.bar.set_prefix("steps");
                self.bar.set_length(*total_steps as u64);
                self.bar.set_position(*from_step as u64);
                if *from_step > 0 {
                    self.println(format!("resuming after step {from_step} of {total_steps}"));
                }
            }
            Event::Step {
                step,
                loss,
                accuracy,
                examples_per_sec,
                ..
            } => {
                self.bar.set_position(*step as u64);
                let accuracy = accuracy
                    .map(|a| format!(" acc {:.1}%", 100.0 * a))
                    .unwrap_or_default();
                self.bar
                    .set_message(format!("loss {loss:.4}{accuracy}  {examples_per_sec:.0}/s"));
            }
            Event::Eval { metrics, improved } => {
                let accuracy = metrics
                    .accuracy
                    .map(|a| format!(" accuracy {:.2}%", 100.0 * a))
                    .unwrap_or_default();
                let train = metrics
                    .train_loss
                    .map(|l| format!("train loss {l:.4}, "))
                    .unwrap_or_default();
                self.println(format!(
                    "step {}: {train}validation loss {:.4}{accuracy}{}",
                    metrics.step,
                    metrics.loss,
                    if *improved { " (best)" } else { "" }
                ));
            }
            Event::EarlyStop { step } => self.println(format!("early stopping at step {step}")),
            Event::Caching { done, total } => {
                if *done == 0 {
                    self.println(format!(
                        "frozen backbone: encoding {total} distinct texts once"
                    ));
                    self.bar.set_prefix("texts encoded");
                    self.bar.set_length(*total as u64);
                }
                self.bar.set_position(*done as u64);
            }
            _ => {}
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
