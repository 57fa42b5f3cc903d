//! `rewardkit advantages`: turn a scored file (the output of `rewardkit score`) into advantages.
//!
//! Advantages need whole groups, and a group's rows need not be adjacent, so the file is read
//! twice: the first pass keeps only each row's group and reward (memory linear in the rows, a
//! few dozen bytes each) and learns the columns' types; the advantages are computed with
//! `rewardkit-shape`; the second pass copies every row to the output with an `advantage` column
//! appended, in input order. Standard input cannot be read twice, so it is refused.
//!
//! With `--estimator oprl` a row is a trajectory: besides its outcome reward it carries a list of
//! step rewards (`--steps-field`), and its advantage is a list too (one per step), written as a
//! JSON list in the output column. With `--estimator gae` a row is an episode with lists of step
//! rewards and critic values (and optionally a bootstrap value for a truncated episode); it gets
//! lists of advantages and returns.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, ValueEnum};
use rewardkit_data::{Cell, Column, ColumnKind, Format, RecordReader, TableWriter};
use rewardkit_shape::{
    advantages, gae, oprl_advantages, AdvantageMethod, AdvantageOptions, AdvantageSummary,
    Estimator, Groups, ShapeError, StdKind, StdScope,
};
use serde::Serialize;
use serde_json::Value;

/// Arguments of `rewardkit advantages`.
#[derive(Args)]
pub struct AdvantagesArgs {
    /// The scored file (JSONL, JSONL.gz or Parquet), e.g. the output of `rewardkit score`.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the rows with an advantage column (`.jsonl`, `.jsonl.gz`, `.parquet`; `-`
    /// is JSONL on standard output). Without it, only the summary is printed.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Input format, when the file name does not tell.
    #[arg(long)]
    input_format: Option<Format>,
    /// Output format, when the file name does not tell.
    #[arg(long)]
    output_format: Option<Format>,
    /// The advantage estimator.
    #[arg(long, value_enum, default_value_t = EstimatorName::Grpo)]
    estimator: EstimatorName,
    /// GRPO only: divide by the group's std, the batch's, or not at all (TRL's `scale_rewards`).
    #[arg(long, value_enum)]
    scale: Option<ScaleName>,
    /// GRPO and REINFORCE++: population (÷n) or sample (÷(n−1), PyTorch's default) std.
    #[arg(long, value_enum)]
    std: Option<StdName>,
    /// GRPO and REINFORCE++: added to the std before dividing (default 1e-6 for GRPO as in verl,
    /// 1e-8 for REINFORCE++ as in OpenRLHF).
    #[arg(long)]
    epsilon: Option<f64>,
    /// Mask the samples of zero-variance groups (advantage null) instead of giving them 0.
    #[arg(long)]
    filter_zero_variance: bool,
    /// The column holding the group id (a string or a number). Rows where it is null or absent
    /// are each a group of their own.
    #[arg(long, default_value = "group")]
    group_field: String,
    /// The column holding the reward (a number; null for a non-score, which is masked).
    #[arg(long, default_value = "reward")]
    reward_field: String,
    /// The name of the column to append.
    #[arg(long, default_value = "advantage")]
    advantage_column: String,
    /// OPRL only: the column holding each trajectory's step rewards (a list of numbers; null
    /// entries are masked).
    #[arg(long, default_value = "steps")]
    steps_field: String,
    /// OPRL only: the weight α of the step advantages (`A = A^E + α·A^S`; the paper uses 1).
    #[arg(long)]
    alpha: Option<f64>,
    /// GAE only: the column holding each episode's critic values (a list, one per step).
    #[arg(long, default_value = "values")]
    values_field: String,
    /// GAE only: the column holding the value of the state a truncated episode stopped in (a
    /// number; null or absent means the episode ended, value 0).
    #[arg(long)]
    bootstrap_field: Option<String>,
    /// GAE only: the discount γ (default 1.0, as verl).
    #[arg(long)]
    gamma: Option<f64>,
    /// GAE only: λ (default 1.0, as verl).
    #[arg(long)]
    lambda: Option<f64>,
    /// GAE only: the name of the returns column (advantages + values) to append.
    #[arg(long, default_value = "returns")]
    returns_column: String,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// The estimators the command offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum EstimatorName {
    /// (R − group mean) / (std + ε).
    Grpo,
    /// R − group mean.
    DrGrpo,
    /// R − mean of the other members of the group.
    Rloo,
    /// R normalised over the batch.
    ReinforcePp,
    /// (R − group mean) normalised over the batch.
    ReinforcePpBaseline,
    /// OPRL: GRPO of the outcome + α × step rewards normalised over the group's steps (a list
    /// per row).
    Oprl,
    /// Generalised advantage estimation over each row's step rewards and values (lists).
    Gae,
}

/// `--scale` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScaleName {
    /// The group's std.
    Group,
    /// The batch's std.
    Batch,
    /// No division (Dr.GRPO).
    None,
}

/// `--std` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StdName {
    /// Divide by n.
    Population,
    /// Divide by n − 1.
    Sample,
}

/// The validated configuration.
struct Config {
    estimator: Estimator,
    /// Mask zero-variance groups.
    filter_zero_variance: bool,
    /// OPRL's α, when the estimator is OPRL (then `estimator` is its GRPO part).
    oprl_alpha: Option<f64>,
    /// GAE's (γ, λ), when the estimator is GAE (then `estimator` is unused).
    gae: Option<(f64, f64)>,
}

impl Config {
    /// The estimator options are checked by [`AdvantageOptions::resolve`] (shared with the
    /// server's `POST /v1/advantages`); only what is about files and flags is checked here.
    fn from_args(args: &AdvantagesArgs) -> anyhow::Result<Config> {
        if args.input.as_os_str() == "-" {
            bail!("--input: advantages read the file twice (groups need not be adjacent); give a file name, not `-`");
        }
        let method = match args.estimator {
            EstimatorName::Grpo => AdvantageMethod::Grpo,
            EstimatorName::DrGrpo => AdvantageMethod::DrGrpo,
            EstimatorName::Rloo => AdvantageMethod::Rloo,
            EstimatorName::ReinforcePp => AdvantageMethod::ReinforcePp,
            EstimatorName::ReinforcePpBaseline => AdvantageMethod::ReinforcePpBaseline,
            EstimatorName::Oprl => AdvantageMethod::Oprl,
            EstimatorName::Gae => AdvantageMethod::Gae,
        };
        if method != AdvantageMethod::Gae
            && (args.gamma.is_some() || args.lambda.is_some() || args.bootstrap_field.is_some())
        {
            bail!("--gamma, --lambda and --bootstrap-field apply to --estimator gae only");
        }
        let options = AdvantageOptions {
            scale: args.scale.map(|s| match s {
                ScaleName::Group => StdScope::Group,
                ScaleName::Batch => StdScope::Batch,
                ScaleName::None => StdScope::None,
            }),
            std: args.std.map(|s| match s {
                StdName::Population => StdKind::Population,
                StdName::Sample => StdKind::Sample,
            }),
            epsilon: args.epsilon,
            filter_zero_variance: args.filter_zero_variance,
            alpha: args.alpha,
            gamma: args.gamma,
            lambda: args.lambda,
        };
        let flag = |option: &str| format!("--{}", option.replace('_', "-"));
        let config = options.resolve(method).map_err(|e| match e {
            ShapeError::NotApplicable {
                option,
                estimator,
                applies_to,
                why,
            } => anyhow!(
                "{} applies to --estimator {applies_to} only; {estimator} {why}",
                flag(option)
            ),
            ShapeError::InvalidOption {
                option,
                value,
                expected,
            } => anyhow!("{} {value}: expected {expected}", flag(option)),
            other => anyhow!(other),
        })?;
        Ok(Config {
            estimator: config.estimator,
            filter_zero_variance: config.filter_zero_variance,
            oprl_alpha: config.oprl_alpha,
            gae: config.gae,
        })
    }
}

/// What a column held in the first pass, to choose its output type.
///
/// The kinds form a join order ([`widen`]): `Null` below everything, `Int` below `F64`,
/// `EmptyList` below `IntList` below `List`, `Str` above everything; integers join by their
/// [`Ints`] flags. So the type a column gets does not depend on the order of its rows.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Seen {
    /// Only nulls (or missing values) so far: written as a float column of nulls.
    Null,
    /// Integers (or nulls) in every row so far (JSON integers, `n.is_u64() || n.is_i64()`; not
    /// `1.0` or `-0`, which are floats): written as an integer column ([`Ints::kind`]).
    Int(Ints),
    /// Numbers (or nulls), at least one a float: written as a float column.
    F64,
    /// Lists of numbers (or null elements), or null, at least one number a float: written as a
    /// list column of floats (a JSON array, a Parquet list of doubles), so that per-step columns
    /// can feed `--steps-field` again.
    List,
    /// Lists whose numbers are all integers (the [`Seen::Int`] rule; null elements allowed), or
    /// null: written as a list column of integers ([`Ints::kind`]; ids and counts stay integers).
    IntList(Ints),
    /// Lists without a number so far (empty, or only null elements), or null: they fit either
    /// list kind; a column of nothing else is written as a float list.
    EmptyList,
    /// Booleans (or nulls): written as a boolean column.
    Bool,
    /// Anything else: written as a string (JSON text for objects, mixed lists, and numbers,
    /// lists or booleans in a column that also holds another type).
    Str,
}

/// What the integers of an integer column (or of an integer-list column's lists) held: whether
/// one was negative, and whether one was above `i64::MAX`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Ints {
    negative: bool,
    above_i64: bool,
}

impl Ints {
    /// The flags of one JSON number; `None` for a float.
    fn of(n: &serde_json::Number) -> Option<Ints> {
        if let Some(n) = n.as_u64() {
            Some(Ints {
                negative: false,
                above_i64: i64::try_from(n).is_err(),
            })
        } else if n.is_i64() {
            Some(Ints {
                negative: true,
                above_i64: false,
            })
        } else {
            None
        }
    }

    /// The flags of two sets of integers together.
    fn join(self, other: Ints) -> Ints {
        Ints {
            negative: self.negative || other.negative,
            above_i64: self.above_i64 || other.above_i64,
        }
    }

    /// The column kind that holds these integers exactly: `unsigned` (`U64`, `U64List`) while
    /// none is negative, so that values up to `u64::MAX` round-trip; `signed` (`I64`, `I64List`)
    /// when one is negative and none is above `i64::MAX`.
    ///
    /// A column with both a negative integer and one above `i64::MAX` fits no 64-bit integer type.
    /// It is written as text (`"-1"`, `"18446744073709551615"`; a list as its JSON text), not as
    /// floats: integers that large are ids, hashes or seeds, and a float keeps only 53 bits
    /// (`u64::MAX` would read back as 2^64, and neighbouring ids would merge), whereas text keeps
    /// every digit and its type change is visible. (A column that also holds a float is a float
    /// column, as before: its author wrote floats.)
    fn kind(self, unsigned: ColumnKind, signed: ColumnKind) -> ColumnKind {
        match self {
            Ints {
                negative: false, ..
            } => unsigned,
            Ints {
                negative: true,
                above_i64: false,
            } => signed,
            Ints {
                negative: true,
                above_i64: true,
            } => ColumnKind::Str,
        }
    }
}

impl Seen {
    fn of(value: &Value) -> Seen {
        match value {
            Value::Null => Seen::Null,
            Value::Number(n) => Ints::of(n).map_or(Seen::F64, Seen::Int),
            Value::Bool(_) => Seen::Bool,
            Value::Array(items) => {
                let mut seen = Seen::EmptyList;
                for item in items {
                    seen = match (seen, item) {
                        (_, Value::Null) => seen,
                        (Seen::EmptyList, Value::Number(n)) => {
                            Ints::of(n).map_or(Seen::List, Seen::IntList)
                        }
                        (Seen::IntList(ints), Value::Number(n)) => {
                            Ints::of(n).map_or(Seen::List, |new| Seen::IntList(ints.join(new)))
                        }
                        (Seen::List, Value::Number(_)) => Seen::List,
                        _ => return Seen::Str,
                    };
                }
                seen
            }
            _ => Seen::Str,
        }
    }

    /// The output column kind for a column seen so.
    fn kind(self) -> ColumnKind {
        match self {
            Seen::Int(ints) => ints.kind(ColumnKind::U64, ColumnKind::I64),
            Seen::Null | Seen::F64 => ColumnKind::F64,
            Seen::List | Seen::EmptyList => ColumnKind::F64List,
            Seen::IntList(ints) => ints.kind(ColumnKind::U64List, ColumnKind::I64List),
            Seen::Bool => ColumnKind::Bool,
            Seen::Str => ColumnKind::Str,
        }
    }
}

/// The first pass's result.
struct Scan {
    rewards: Vec<f64>,
    /// GAE: every row's critic values (parallel to `steps`) and bootstrap value (0 if none).
    values: Vec<f64>,
    bootstrap: Vec<f64>,
    /// OPRL: every row's step rewards, row after row, and each row's count.
    steps: Vec<f64>,
    step_counts: Vec<usize>,
    group_ids: Vec<usize>,
    grouped_rows: usize,
    columns: Vec<(String, Seen)>,
}

/// Reads a list of numbers (null entries are NaN: masked) from a row's field; `flag` is the
/// option that names the field (`rewardkit advantages` and `rewardkit steps` share this).
pub(crate) fn number_list(
    value: Option<&Value>,
    at: &str,
    what: &str,
    flag: &str,
) -> anyhow::Result<Vec<f64>> {
    let list = match value {
        Some(Value::Array(list)) => list,
        Some(other) => bail!("{at}: expected a list of {what}, found {other}"),
        None => bail!("{at}: missing; each row needs its {what} here (see {flag})"),
    };
    list.iter()
        .enumerate()
        .map(|(k, item)| match item {
            Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
            Value::Null => Ok(f64::NAN),
            other => bail!("{at}[{k}]: expected a number (or null), found {other}"),
        })
        .collect()
}

fn scan(args: &AdvantagesArgs, oprl: bool, is_gae: bool) -> anyhow::Result<Scan> {
    let reader = RecordReader::open(&args.input, args.input_format)?;
    let mut labels: HashMap<String, usize> = HashMap::new();
    let mut rewards = Vec::new();
    let mut group_ids = Vec::new();
    let mut steps = Vec::new();
    let mut step_counts = Vec::new();
    let mut values = Vec::new();
    let mut bootstrap = Vec::new();
    let mut grouped_rows = 0;
    let mut columns: Vec<(String, Seen)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut present: Vec<usize> = Vec::new();
    let file = args.input.display().to_string();
    for record in reader {
        let record = record?;
        let at = |field: &str| format!("{file}:{}: field `{field}`", record.line);
        let reward = match record.fields.get(&args.reward_field) {
            // GAE needs no outcome reward; the per-step rewards carry it.
            None if is_gae => f64::NAN,
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(Value::Null) => f64::NAN,
            Some(other) => bail!(
                "{}: expected a number (or null for a non-score), found {other}",
                at(&args.reward_field)
            ),
            None => bail!(
                "{}: missing; the scored file needs a reward column (see --reward-field)",
                at(&args.reward_field)
            ),
        };
        let label = match record.fields.get(&args.group_field) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            None | Some(Value::Null) => None,
            Some(other) => bail!(
                "{}: expected a string or a number as the group id, found {other}",
                at(&args.group_field)
            ),
        };
        let id = match label {
            Some(label) => {
                grouped_rows += 1;
                let next = labels.len();
                *labels.entry(label).or_insert(next)
            }
            // A row without a group is a group of its own: a fresh number no label can take.
            None => usize::MAX - rewards.len(),
        };
        rewards.push(reward);
        group_ids.push(id);
        if oprl || is_gae {
            let row_steps = number_list(
                record.fields.get(&args.steps_field),
                &at(&args.steps_field),
                "step rewards",
                "--steps-field",
            )?;
            if is_gae {
                let row_values = number_list(
                    record.fields.get(&args.values_field),
                    &at(&args.values_field),
                    "critic values",
                    "--values-field",
                )?;
                if row_values.len() != row_steps.len() {
                    bail!(
                        "{}: {} values for {} step rewards (one per step)",
                        at(&args.values_field),
                        row_values.len(),
                        row_steps.len()
                    );
                }
                values.extend(row_values);
                bootstrap.push(match &args.bootstrap_field {
                    None => 0.0,
                    Some(field) => match record.fields.get(field) {
                        None | Some(Value::Null) => 0.0,
                        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
                        Some(other) => bail!(
                            "{}: expected a number (or null for an episode that ended), found {other}",
                            at(field)
                        ),
                    },
                });
            }
            step_counts.push(row_steps.len());
            steps.extend(row_steps);
        }
        for (key, value) in &record.fields {
            let seen = Seen::of(value);
            match index.get(key) {
                Some(&i) => {
                    present[i] += 1;
                    columns[i].1 = widen(columns[i].1, seen);
                }
                None => {
                    index.insert(key.clone(), columns.len());
                    columns.push((key.clone(), seen));
                    present.push(1);
                }
            }
        }
    }
    // A column missing from some rows is null there.
    let rows = rewards.len();
    for ((_, seen), &count) in columns.iter_mut().zip(&present) {
        if count < rows {
            *seen = widen(*seen, Seen::Null);
        }
    }
    // Rows without a group got numbers from the top; make them dense after the labelled ones.
    let mut dense = labels.len();
    for id in group_ids.iter_mut() {
        if *id >= labels.len() {
            *id = dense;
            dense += 1;
        }
    }
    Ok(Scan {
        rewards,
        values,
        bootstrap,
        steps,
        step_counts,
        group_ids,
        grouped_rows,
        columns,
    })
}

/// The narrowest type that holds both `old` and a new value of type `new` ([`Seen::Null`] for a
/// null or missing value; every kind holds nulls): integers stay integers, joining their
/// [`Ints`] flags (a negative one makes an unsigned column signed); a float makes an integer
/// column a float column, and a float list an integer-list column a float list; any two of
/// numbers, lists and booleans in one column fall back to text. Commutative and associative
/// (a join), so the row order does not matter.
fn widen(old: Seen, new: Seen) -> Seen {
    match (old, new) {
        (Seen::Str, _) | (_, Seen::Str) => Seen::Str,
        (Seen::Null, other) | (other, Seen::Null) => other,
        (Seen::Int(a), Seen::Int(b)) => Seen::Int(a.join(b)),
        (Seen::IntList(a), Seen::IntList(b)) => Seen::IntList(a.join(b)),
        (a, b) if a == b => a,
        (Seen::Int(_) | Seen::F64, Seen::Int(_) | Seen::F64) => Seen::F64,
        (Seen::EmptyList, list @ (Seen::IntList(_) | Seen::List))
        | (list @ (Seen::IntList(_) | Seen::List), Seen::EmptyList) => list,
        (Seen::IntList(_) | Seen::List, Seen::IntList(_) | Seen::List) => Seen::List,
        _ => Seen::Str,
    }
}

/// The run's report.
#[derive(Serialize)]
struct Report {
    input: String,
    output: Option<String>,
    estimator: &'static str,
    rows: usize,
    rows_without_group: usize,
    #[serde(flatten)]
    summary: AdvantageSummary,
    advantage_mean: Option<f64>,
    advantage_std: Option<f64>,
    advantage_min: Option<f64>,
    advantage_max: Option<f64>,
    seconds: f64,
}

impl Report {
    fn to_text(&self) -> String {
        let opt = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.6}"));
        let s = &self.summary;
        let mut text = format!(
            "advantages ({}) for {} rows in {} groups ({} rows without a group, each its own)\n",
            self.estimator, self.rows, s.groups, self.rows_without_group
        );
        text += &format!("  masked (reward null or non-finite)   {:>10}\n", s.masked);
        text += &format!(
            "  one-element groups (advantage 0)     {:>10}\n",
            s.singleton_groups
        );
        text += &format!(
            "  groups with no finite reward         {:>10}\n",
            s.empty_groups
        );
        text += &format!(
            "  zero-variance groups                 {:>10}\n",
            s.zero_variance_groups
        );
        text += &format!(
            "  filtered samples (zero variance)     {:>10}\n",
            s.filtered
        );
        text += &format!(
            "  advantage mean {} std {} min {} max {}\n",
            opt(self.advantage_mean),
            opt(self.advantage_std),
            opt(self.advantage_min),
            opt(self.advantage_max)
        );
        if let Some(output) = &self.output {
            text += &format!("wrote {output}\n");
        }
        text += &format!("{:.2}s\n", self.seconds);
        text
    }
}

pub fn run(args: AdvantagesArgs) -> anyhow::Result<()> {
    let config = Config::from_args(&args)?;
    let started = Instant::now();
    let scan = scan(&args, config.oprl_alpha.is_some(), config.gae.is_some())?;
    if scan.rewards.is_empty() {
        bail!("{}: no rows", args.input.display());
    }
    if let Some((gamma, lambda)) = config.gae {
        return run_gae(&args, &scan, gamma, lambda, started);
    }
    if scan.grouped_rows == 0 && config.estimator.uses_groups() {
        bail!(
            "{}: no row has a `{}` field, so every row would be a group of one with advantage 0; \
             name the group column with --group-field, or use --estimator reinforce_pp",
            args.input.display(),
            args.group_field
        );
    }
    if scan
        .columns
        .iter()
        .any(|(name, _)| *name == args.advantage_column)
    {
        bail!(
            "{}: already has a column `{}`; choose another name with --advantage-column",
            args.input.display(),
            args.advantage_column
        );
    }
    let groups = Groups::from_ids(&scan.group_ids);
    let result = advantages(
        &scan.rewards,
        &groups,
        &config.estimator,
        config.filter_zero_variance,
    )
    .context("computing advantages")?;

    // OPRL: the GRPO part above is per trajectory; the advantages are per step.
    let step_values = match config.oprl_alpha {
        Some(alpha) => Some(
            oprl_advantages(
                &scan.rewards,
                &groups,
                &scan.steps,
                &scan.step_counts,
                alpha,
                match config.estimator {
                    Estimator::Grpo { std, .. } => std,
                    _ => StdKind::Sample,
                },
                match config.estimator {
                    Estimator::Grpo { epsilon, .. } => epsilon,
                    _ => 1e-6,
                },
            )
            .context("computing OPRL advantages")?,
        ),
        None => None,
    };
    if let Some(output) = &args.output {
        let lists: Vec<&[f64]> = step_values.as_deref().into_iter().collect();
        let steps = step_values
            .as_ref()
            .map(|_| (scan.step_counts.as_slice(), lists.as_slice()));
        write(&args, output, &scan, &result.values, steps)?;
    }

    let mut stats = rewardkit_core::RunningStats::new();
    step_values
        .as_deref()
        .unwrap_or(&result.values)
        .iter()
        .for_each(|&a| stats.push(a));
    let report = Report {
        input: args.input.display().to_string(),
        output: args.output.as_ref().map(|p| p.display().to_string()),
        estimator: if config.oprl_alpha.is_some() {
            "oprl"
        } else {
            config.estimator.name()
        },
        rows: scan.rewards.len(),
        rows_without_group: scan.rewards.len() - scan.grouped_rows,
        summary: result.summary,
        advantage_mean: stats.mean(),
        advantage_std: stats.population_variance().map(f64::sqrt),
        advantage_min: stats.min(),
        advantage_max: stats.max(),
        seconds: started.elapsed().as_secs_f64(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.output.as_deref() == Some("-".as_ref()) {
        eprint!("{}", report.to_text());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// `--estimator gae`: advantages and returns per step of each row's episode.
fn run_gae(
    args: &AdvantagesArgs,
    scan: &Scan,
    gamma: f64,
    lambda: f64,
    started: Instant,
) -> anyhow::Result<()> {
    for name in [&args.advantage_column, &args.returns_column] {
        if scan.columns.iter().any(|(column, _)| column == name) {
            bail!(
                "{}: already has a column `{name}`; choose another name with --advantage-column or --returns-column",
                args.input.display()
            );
        }
    }
    let out = gae(
        &scan.steps,
        &scan.values,
        &scan.step_counts,
        Some(&scan.bootstrap),
        gamma,
        lambda,
    )
    .context("computing GAE")?;
    if let Some(output) = &args.output {
        let lists: [&[f64]; 2] = [&out.advantages, &out.returns];
        let nothing = vec![f64::NAN; scan.rewards.len()];
        write(
            args,
            output,
            scan,
            &nothing,
            Some((scan.step_counts.as_slice(), &lists)),
        )?;
    }
    let mut stats = rewardkit_core::RunningStats::new();
    out.advantages.iter().for_each(|&a| stats.push(a));
    let report = GaeReport {
        input: args.input.display().to_string(),
        output: args.output.as_ref().map(|p| p.display().to_string()),
        estimator: "gae",
        gamma,
        lambda,
        episodes: scan.rewards.len(),
        steps: scan.steps.len(),
        masked_episodes: out.masked_episodes,
        advantage_mean: stats.mean(),
        advantage_std: stats.population_variance().map(f64::sqrt),
        seconds: started.elapsed().as_secs_f64(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let text = format!(
            "gae (γ {gamma}, λ {lambda}) over {} episodes, {} steps; masked episodes (a non-finite reward, value or bootstrap) {}\n  advantage mean {} std {}\n{}{:.2}s\n",
            report.episodes,
            report.steps,
            report.masked_episodes,
            report.advantage_mean.map_or("-".into(), |v| format!("{v:.6}")),
            report.advantage_std.map_or("-".into(), |v| format!("{v:.6}")),
            report.output.as_ref().map_or(String::new(), |o| format!("wrote {o}\n")),
            report.seconds
        );
        if args.output.as_deref() == Some("-".as_ref()) {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }
    Ok(())
}

/// The report of `--estimator gae`.
#[derive(Serialize)]
struct GaeReport {
    input: String,
    output: Option<String>,
    estimator: &'static str,
    gamma: f64,
    lambda: f64,
    episodes: usize,
    steps: usize,
    masked_episodes: usize,
    advantage_mean: Option<f64>,
    advantage_std: Option<f64>,
    seconds: f64,
}

/// Writes every row with its advantage; with `steps` (OPRL's step advantages and each row's step
/// count) the advantage column holds each row's list (a JSON array or a Parquet list; null
/// elements where masked).
fn write(
    args: &AdvantagesArgs,
    output: &PathBuf,
    scan: &Scan,
    values: &[f64],
    steps: Option<(&[usize], &[&[f64]])>,
) -> anyhow::Result<()> {
    let mut columns: Vec<Column> = scan
        .columns
        .iter()
        .map(|(name, seen)| Column::new(name.clone(), seen.kind()))
        .collect();
    match steps {
        Some((_, lists)) => {
            columns.push(Column::f64_list(args.advantage_column.clone()));
            if lists.len() > 1 {
                columns.push(Column::f64_list(args.returns_column.clone()));
            }
        }
        None => columns.push(Column::f64(args.advantage_column.clone())),
    }
    let mut step_start = 0usize;
    let mut writer = match args.output_format {
        Some(format) => TableWriter::create_as(output, format, columns)?,
        None => TableWriter::create(output, columns)?,
    };
    let reader = RecordReader::open(&args.input, args.input_format)?;
    let kinds: Vec<ColumnKind> = scan.columns.iter().map(|(_, seen)| seen.kind()).collect();
    // Per column, this row's text, numbers or integers, owned for the cells.
    let mut owned: Vec<Owned> = Vec::with_capacity(scan.columns.len());
    let mut count = 0usize;
    for record in reader {
        let record = record?;
        let advantage = *values.get(count).ok_or_else(|| {
            anyhow!(
                "{}: the file grew between the two readings (more than {} rows)",
                args.input.display(),
                values.len()
            )
        })?;
        let changed = |name: &str| {
            anyhow!(
                "{}:{}: field `{name}` changed between the two readings",
                args.input.display(),
                record.line
            )
        };
        owned.clear();
        for ((name, _), &kind) in scan.columns.iter().zip(&kinds) {
            let value = record.fields.get(name);
            owned.push(Owned::of(kind, value).ok_or_else(|| changed(name))?);
        }
        let lists: Vec<&[f64]> = match steps {
            None => Vec::new(),
            Some((counts, lists)) => {
                let range = step_start..step_start + counts[count];
                step_start = range.end;
                lists.iter().map(|list| &list[range.clone()]).collect()
            }
        };
        let mut cells: Vec<Cell<'_>> = Vec::with_capacity(scan.columns.len() + 1);
        for (((name, _), &kind), owned) in scan.columns.iter().zip(&kinds).zip(&owned) {
            let value = record.fields.get(name);
            cells.push(owned.cell(kind, value).ok_or_else(|| changed(name))?);
        }
        if lists.is_empty() {
            cells.push(Cell::F64(advantage));
        }
        cells.extend(lists.iter().map(|list| Cell::F64List(list)));
        writer.write_row(&cells)?;
        count += 1;
    }
    if count != values.len() {
        bail!(
            "{}: the file changed between the two readings ({} rows, then {count})",
            args.input.display(),
            values.len()
        );
    }
    writer.finish()?;
    Ok(())
}

/// One row's value of a column whose cell borrows it: text (`Str` columns) or a list.
enum Owned {
    /// Nothing to own: the value is null or missing, or the column is of a scalar kind (its cell
    /// reads the value itself).
    Nothing,
    Text(String),
    Floats(Vec<f64>),
    Unsigned(Vec<Option<u64>>),
    Signed(Vec<Option<i64>>),
}

impl Owned {
    /// The owned part of `value` in a column of `kind`; `None` when the value does not fit the
    /// kind the first reading chose (the file changed in between).
    fn of(kind: ColumnKind, value: Option<&Value>) -> Option<Owned> {
        let value = match value {
            None | Some(Value::Null) => return Some(Owned::Nothing),
            Some(value) => value,
        };
        match (kind, value) {
            (ColumnKind::Str, Value::String(text)) => Some(Owned::Text(text.clone())),
            (ColumnKind::Str, other) => Some(Owned::Text(other.to_string())),
            (ColumnKind::F64List, Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::Null => Some(f64::NAN),
                    Value::Number(n) => Some(n.as_f64().unwrap_or(f64::NAN)),
                    _ => None,
                })
                .collect::<Option<_>>()
                .map(Owned::Floats),
            (ColumnKind::U64List, Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::Null => Some(None),
                    item => item.as_u64().map(Some),
                })
                .collect::<Option<_>>()
                .map(Owned::Unsigned),
            (ColumnKind::I64List, Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::Null => Some(None),
                    item => item.as_i64().map(Some),
                })
                .collect::<Option<_>>()
                .map(Owned::Signed),
            (ColumnKind::F64List | ColumnKind::U64List | ColumnKind::I64List, _) => None,
            _ => Some(Owned::Nothing),
        }
    }

    /// The cell for `value` in a column of `kind`, borrowing this row's owned part; `None` when
    /// the value does not fit the kind (the file changed between the readings).
    fn cell<'a>(&'a self, kind: ColumnKind, value: Option<&Value>) -> Option<Cell<'a>> {
        let Some(value) = value.filter(|value| !value.is_null()) else {
            return Some(Cell::Null);
        };
        match (kind, self) {
            (ColumnKind::U64, _) => value.as_u64().map(Cell::U64),
            (ColumnKind::I64, _) => value.as_i64().map(Cell::I64),
            (ColumnKind::F64, _) => value.as_f64().map(Cell::F64),
            (ColumnKind::Bool, _) => value.as_bool().map(Cell::Bool),
            (_, Owned::Text(text)) => Some(Cell::Str(text)),
            (_, Owned::Floats(list)) => Some(Cell::F64List(list)),
            (_, Owned::Unsigned(list)) => Some(Cell::U64List(list)),
            (_, Owned::Signed(list)) => Some(Cell::I64List(list)),
            (_, Owned::Nothing) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The kind a column gets from its values in order (`None`: the row lacks the field).
    fn kind_of(values: &[Option<Value>]) -> ColumnKind {
        let mut seen: Option<Seen> = None;
        for value in values {
            let new = value.as_ref().map_or(Seen::Null, Seen::of);
            seen = Some(seen.map_or(new, |old| widen(old, new)));
        }
        seen.unwrap().kind()
    }

    /// The kind of a column whose rows hold the elements of the JSON array `rows`, checked to be
    /// the same in every rotation of the rows and in reverse (the row order must not matter).
    fn kind_of_rows(rows: &str) -> ColumnKind {
        let rows: Vec<Option<Value>> = serde_json::from_str::<Vec<Value>>(rows)
            .unwrap()
            .into_iter()
            .map(Some)
            .collect();
        let kind = kind_of(&rows);
        for k in 0..rows.len() {
            let mut order = rows.clone();
            order.rotate_left(k);
            assert_eq!(kind_of(&order), kind, "{order:?}");
            order.reverse();
            assert_eq!(kind_of(&order), kind, "{order:?}");
        }
        kind
    }

    #[test]
    fn scalar_columns_keep_integers_signed_or_unsigned() {
        use ColumnKind::*;
        let cases: &[(&str, ColumnKind)] = &[
            ("[1, 2]", U64),
            ("[0, 18446744073709551615]", U64),
            ("[9223372036854775808]", U64), // i64::MAX + 1
            ("[9007199254740993]", U64),    // 2^53 + 1, which a float would round
            ("[-3, 4]", I64),
            ("[-1]", I64),
            ("[-9223372036854775808, 9223372036854775807]", I64),
            // Integers and nulls, in any position, stay integers.
            ("[1, null, 3]", U64),
            ("[null, 1]", U64),
            ("[-1, null]", I64),
            ("[null, -1, 2]", I64),
            ("[null, null]", F64), // nothing to tell: a float column of nulls
            // A negative integer and one above i64::MAX: no 64-bit integer type holds both.
            ("[-1, 9223372036854775808]", Str),
            ("[18446744073709551615, null, -1]", Str),
            // A float makes the column floats, whatever its integers.
            ("[1, 2.5]", F64),
            ("[-1, 2.5]", F64),
            ("[3, 1.0]", F64),
            ("[-1, 18446744073709551615, 0.5]", F64),
            ("[-0]", F64),                   // JSON's -0 is the float -0.0
            ("[-9223372036854775809]", F64), // below i64::MIN, JSON reads a float
            ("[true, null, false]", Bool),
            // Numbers next to another type: text.
            ("[1, true]", Str),
            ("[-1, \"a\"]", Str),
            ("[-1, [-1]]", Str),
            ("[2.5, [1]]", Str),
        ];
        for (rows, kind) in cases {
            assert_eq!(kind_of_rows(rows), *kind, "{rows}");
        }
        // A row without the field is a null.
        assert_eq!(kind_of(&[Some(json!(1)), None, Some(json!(3))]), U64);
        assert_eq!(kind_of(&[None, Some(json!(-2))]), I64);
        assert_eq!(kind_of(&[None, None]), F64);
    }

    #[test]
    fn list_columns_keep_integers_only_where_a_scalar_would() {
        use ColumnKind::*;
        let cases: &[(&str, ColumnKind)] = &[
            ("[[1, 2], [3]]", U64List),
            ("[[1, null], null, []]", U64List),
            ("[[18446744073709551615], null]", U64List),
            ("[[], [null], [0]]", U64List),
            ("[[-1, 2]]", I64List),
            ("[[3], [-1]]", I64List),
            ("[[], [-1], null]", I64List),
            ("[[null], [-5, null], null]", I64List),
            ("[[-9223372036854775808], [9223372036854775807]]", I64List),
            // A negative integer and one above i64::MAX, in one list or two: text.
            ("[[-1, 18446744073709551615]]", Str),
            ("[[-1], [18446744073709551615], []]", Str),
            // A float makes the column a float list.
            ("[[1, 2.5], [3]]", F64List),
            ("[[-1], [0.5]]", F64List),
            ("[[-1, 0.5]]", F64List),
            ("[[18446744073709551615], [-1], [0.5]]", F64List),
            ("[[0], [-0.0]]", F64List),
            ("[[], [0.5]]", F64List),
            // Nothing to tell: a float list.
            ("[[], null]", F64List),
            ("[[null]]", F64List),
            // Lists next to another type, or with a non-number: text.
            ("[[1], 1]", Str),
            ("[[-1], -1]", Str),
            ("[[], 2.5]", Str),
            ("[[1], [\"a\"]]", Str),
            ("[[-1, true]]", Str),
            ("[[1], true]", Str),
        ];
        for (rows, kind) in cases {
            assert_eq!(kind_of_rows(rows), *kind, "{rows}");
        }
        assert_eq!(kind_of(&[Some(json!([-1])), None]), I64List);
    }

    #[test]
    fn widening_is_a_join_so_row_order_never_matters() {
        let ints = [(false, false), (true, false), (false, true), (true, true)].map(
            |(negative, above_i64)| Ints {
                negative,
                above_i64,
            },
        );
        let mut all = vec![
            Seen::Null,
            Seen::F64,
            Seen::List,
            Seen::EmptyList,
            Seen::Bool,
            Seen::Str,
        ];
        all.extend(ints.map(Seen::Int));
        all.extend(ints.map(Seen::IntList));
        for &a in &all {
            assert_eq!(widen(a, a), a, "{a:?}");
            assert_eq!(widen(a, Seen::Null), a, "{a:?}");
            assert_eq!(widen(Seen::Str, a), Seen::Str, "{a:?}");
            for &b in &all {
                assert_eq!(widen(a, b), widen(b, a), "{a:?} {b:?}");
                for &c in &all {
                    assert_eq!(
                        widen(widen(a, b), c),
                        widen(a, widen(b, c)),
                        "{a:?} {b:?} {c:?}"
                    );
                }
            }
        }
        // The pairs named one by one.
        let u = Seen::Int(ints[0]);
        let i = Seen::Int(ints[1]);
        let big = Seen::Int(ints[2]);
        let ul = Seen::IntList(ints[0]);
        let il = Seen::IntList(ints[1]);
        let cases = [
            (u, i, ColumnKind::I64),
            (u, big, ColumnKind::U64),
            (i, big, ColumnKind::Str),
            (Seen::Null, i, ColumnKind::I64),
            (Seen::Null, u, ColumnKind::U64),
            (i, Seen::F64, ColumnKind::F64),
            (u, Seen::F64, ColumnKind::F64),
            (i, Seen::Bool, ColumnKind::Str),
            (i, il, ColumnKind::Str),
            (ul, il, ColumnKind::I64List),
            (il, Seen::IntList(ints[2]), ColumnKind::Str),
            (il, Seen::EmptyList, ColumnKind::I64List),
            (ul, Seen::EmptyList, ColumnKind::U64List),
            (il, Seen::List, ColumnKind::F64List),
            (Seen::Null, il, ColumnKind::I64List),
            (il, Seen::Bool, ColumnKind::Str),
        ];
        for (a, b, kind) in cases {
            assert_eq!(widen(a, b).kind(), kind, "{a:?} {b:?}");
        }
    }
}
