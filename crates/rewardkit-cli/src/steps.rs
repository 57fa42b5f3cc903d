//! `rewardkit steps`: build per-step rewards from episode-level signals, row by row, for a
//! per-step estimator (`rewardkit advantages --estimator gae --steps-field step_rewards`).
//!
//! Three constructions (`rewardkit-shape`; formulas and sources in docs/shaping.md):
//!
//! * `dense_turn`: a multi-turn episode's environment score after each turn becomes per-turn
//!   increments, normalised so a win sums to 1 (the Practitioner's Guide to Multi-turn Agentic
//!   RL, methods.md §16); `--sparse` puts the outcome on the last turn instead;
//! * `mixed_grained`: item rewards on their items plus the sequence reward on the last item
//!   (Fine-Grained RLHF's placement, a reconstruction);
//! * `potential`: potential-based shaping `r + γ·Φ(s') − Φ(s)` of existing step rewards (Ng et
//!   al. 1999), which leaves the optimal policies unchanged.
//!
//! Rows are independent, so the file is streamed: each row is written back with the new column
//! (a JSON list; null where a step is masked) appended. Output is JSONL.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use rewardkit_data::{Format, RecordReader};
use rewardkit_shape::{dense_turn_rewards, mixed_grained_rewards, potential_shaping};
use serde::Serialize;
use serde_json::Value;

use crate::advantages::number_list;

/// Arguments of `rewardkit steps`.
#[derive(Args)]
pub struct StepsArgs {
    /// Episodes, one per row (JSONL, JSONL.gz or Parquet).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the rows with the step-reward column (JSONL; `-` for standard output).
    #[arg(long)]
    output: PathBuf,
    /// Input format, when the file name does not tell.
    #[arg(long)]
    input_format: Option<Format>,
    /// How the step rewards are built.
    #[arg(long, value_enum)]
    method: StepMethod,
    /// The name of the list column to append.
    #[arg(long, default_value = "step_rewards")]
    column: String,
    /// dense_turn: the column with the environment's score after each turn (a list).
    #[arg(long, default_value = "turn_scores")]
    scores_field: String,
    /// dense_turn: the column saying whether the episode was won (a boolean, or a number > 0).
    #[arg(long, default_value = "won")]
    won_field: String,
    /// dense_turn: the environment's largest total score (a loss divides by it).
    #[arg(long)]
    max_total: Option<f64>,
    /// dense_turn: put the outcome (1 win, 0 loss) on the last turn instead of dense increments.
    #[arg(long)]
    sparse: bool,
    /// mixed_grained: the column with the sequence-level reward (a number).
    #[arg(long, default_value = "reward")]
    reward_field: String,
    /// mixed_grained: the column with the item-level rewards (a list).
    #[arg(long, default_value = "items")]
    items_field: String,
    /// mixed_grained: the weight of the sequence reward.
    #[arg(long, default_value_t = 1.0)]
    w_seq: f64,
    /// mixed_grained: the weight of the item rewards.
    #[arg(long, default_value_t = 1.0)]
    w_item: f64,
    /// potential: the column with the step rewards to shape (a list).
    #[arg(long, default_value = "steps")]
    steps_field: String,
    /// potential: the column with the potential Φ of each step's state (a list, one per step;
    /// the state after the last step is terminal, Φ = 0).
    #[arg(long, default_value = "potentials")]
    potentials_field: String,
    /// potential: the discount γ.
    #[arg(long, default_value_t = 1.0)]
    gamma: f64,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// The constructions `rewardkit steps` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[value(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum StepMethod {
    /// Per-turn increments of the environment's score (normalised to sum to 1 on a win).
    DenseTurn,
    /// Item rewards plus the sequence reward on the last item.
    MixedGrained,
    /// Potential-based shaping of existing step rewards.
    Potential,
}

#[derive(Serialize)]
struct Report {
    input: String,
    output: String,
    method: StepMethod,
    rows: usize,
    steps: usize,
    rows_with_masked_steps: usize,
    rows_without_steps: usize,
}

pub fn run(args: StepsArgs) -> anyhow::Result<()> {
    let max_total = match (args.method, args.max_total) {
        (StepMethod::DenseTurn, None) => {
            bail!("--method dense_turn needs --max-total (the environment's largest total score)")
        }
        (StepMethod::DenseTurn, Some(m)) if !(m.is_finite() && m > 0.0) => {
            bail!("--max-total {m}: expected a finite total score > 0")
        }
        (_, m) => m.unwrap_or(1.0),
    };
    if !(0.0..=1.0).contains(&args.gamma) {
        bail!("--gamma {}: expected a number in [0, 1]", args.gamma);
    }
    for (flag, w) in [("--w-seq", args.w_seq), ("--w-item", args.w_item)] {
        if !w.is_finite() {
            bail!("{flag} {w}: expected a finite weight");
        }
    }
    let file = args.input.display().to_string();
    let reader = RecordReader::open(&args.input, args.input_format)?;
    let to_stdout = args.output.as_os_str() == "-";
    let mut out: Box<dyn std::io::Write> = if to_stdout {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&args.output)
                .with_context(|| format!("cannot create {}", args.output.display()))?,
        ))
    };
    let (mut rows, mut steps, mut masked, mut empty) = (0, 0, 0, 0);
    for record in reader {
        let record = record?;
        let at = |field: &str| format!("{file}:{}: field `{field}`", record.line);
        if record.fields.contains_key(&args.column) {
            bail!(
                "{}: already there; choose another name with --column",
                at(&args.column)
            );
        }
        let rewards = match args.method {
            StepMethod::DenseTurn => {
                let scores = number_list(
                    record.fields.get(&args.scores_field),
                    &at(&args.scores_field),
                    "turn scores",
                    "--scores-field",
                )?;
                let won = match record.fields.get(&args.won_field) {
                    Some(Value::Bool(b)) => *b,
                    Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x > 0.0),
                    Some(other) => bail!(
                        "{}: expected a boolean (or a number, > 0 for a win), found {other}",
                        at(&args.won_field)
                    ),
                    None => bail!(
                        "{}: missing; dense_turn needs the outcome",
                        at(&args.won_field)
                    ),
                };
                dense_turn_rewards(&scores, &[scores.len()], &[won], max_total, args.sparse)?
            }
            StepMethod::MixedGrained => {
                let sequence = match record.fields.get(&args.reward_field) {
                    Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
                    Some(Value::Null) => f64::NAN,
                    Some(other) => bail!(
                        "{}: expected a number (or null), found {other}",
                        at(&args.reward_field)
                    ),
                    None => bail!(
                        "{}: missing; mixed_grained needs the sequence reward",
                        at(&args.reward_field)
                    ),
                };
                let items = number_list(
                    record.fields.get(&args.items_field),
                    &at(&args.items_field),
                    "item rewards",
                    "--items-field",
                )?;
                let (rewards, _) = mixed_grained_rewards(
                    &[sequence],
                    &items,
                    &[items.len()],
                    args.w_seq,
                    args.w_item,
                )?;
                rewards
            }
            StepMethod::Potential => {
                let rewards = number_list(
                    record.fields.get(&args.steps_field),
                    &at(&args.steps_field),
                    "step rewards",
                    "--steps-field",
                )?;
                let potentials = number_list(
                    record.fields.get(&args.potentials_field),
                    &at(&args.potentials_field),
                    "potentials",
                    "--potentials-field",
                )?;
                if potentials.len() != rewards.len() {
                    bail!(
                        "{}: {} potentials for {} step rewards (one per step)",
                        at(&args.potentials_field),
                        potentials.len(),
                        rewards.len()
                    );
                }
                potential_shaping(&rewards, &potentials, &[rewards.len()], args.gamma)?
            }
        };
        rows += 1;
        steps += rewards.len();
        masked += usize::from(rewards.iter().any(|r| !r.is_finite()));
        empty += usize::from(rewards.is_empty());
        let list: Vec<Value> = rewards
            .iter()
            .map(|&r| serde_json::Number::from_f64(r).map_or(Value::Null, Value::Number))
            .collect();
        let mut fields = record.fields;
        fields.insert(args.column.clone(), Value::Array(list));
        serde_json::to_writer(&mut out, &fields)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    let report = Report {
        input: file,
        output: args.output.display().to_string(),
        method: args.method,
        rows,
        steps,
        rows_with_masked_steps: masked,
        rows_without_steps: empty,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let text = format!(
            "{} step rewards for {} rows, {} steps ({} rows with a masked step, {} with no steps)\nwrote {}\n",
            match report.method {
                StepMethod::DenseTurn => "dense_turn",
                StepMethod::MixedGrained => "mixed_grained",
                StepMethod::Potential => "potential",
            },
            report.rows, report.steps, report.rows_with_masked_steps,
            report.rows_without_steps, report.output
        );
        if to_stdout {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }
    Ok(())
}
