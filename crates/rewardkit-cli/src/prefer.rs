//! `rewardkit prefer`: preference labels from reward factors ranked by importance — HERON's
//! lexicographic comparator (Bukharin et al.; methods.md §10) as a command.
//!
//! Each input row is one trajectory with a value per factor (columns named by `--order`, most
//! important first) and a group (the prompt it answers). Within each group, every pair of rows is
//! compared level by level: the first factor whose difference exceeds its margin decides; if no
//! level decides, the pair is skipped. Each decided pair becomes one output row — with the prompt
//! and both completions when the input has them, which is the pair format `rewardkit train`
//! reads, so the labels can train a reward model as HERON does.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Args;
use rewardkit_data::{Format, RecordReader};
use rewardkit_shape::Lexicographic;
use serde::Serialize;
use serde_json::{json, Value};

/// Arguments of `rewardkit prefer`.
#[derive(Args)]
pub struct PreferArgs {
    /// Rows with the factor columns and a group column (JSONL, JSONL.gz or Parquet).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the preference pairs (JSONL; `-` for standard output). Without it, only
    /// the summary is printed.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Input format, when the file name does not tell.
    #[arg(long)]
    input_format: Option<Format>,
    /// The factor columns, most important first (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    order: Vec<String>,
    /// Factors where lower is better (e.g. a length), comma-separated.
    #[arg(long, value_delimiter = ',')]
    lower_is_better: Vec<String>,
    /// A margin δ_k ≥ 0 per factor, comma-separated (default 0 everywhere).
    #[arg(long, value_delimiter = ',', conflicts_with = "sigma_mult")]
    margins: Option<Vec<f64>>,
    /// HERON's margins instead: this multiple of each factor's std over the file, none at the
    /// first level (the authors' default is 1).
    #[arg(long)]
    sigma_mult: Option<f64>,
    /// The group column (a string or a number); rows without one are not compared.
    #[arg(long, default_value = "group")]
    group_field: String,
    /// The prompt column, copied to each pair when present.
    #[arg(long, default_value = "prompt")]
    prompt_field: String,
    /// The completion column, copied as `chosen`/`rejected` when present.
    #[arg(long, default_value = "completion")]
    completion_field: String,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// One usable row.
struct Row {
    line: u64,
    factors: Vec<f64>,
    prompt: Option<Value>,
    completion: Option<Value>,
}

/// The run's summary.
#[derive(Serialize)]
struct Report {
    input: String,
    output: Option<String>,
    rows: usize,
    rows_without_group: usize,
    rows_masked: usize,
    groups: usize,
    margins: Vec<f64>,
    pairs_compared: usize,
    pairs_decided: usize,
    pairs_skipped: usize,
}

pub fn run(args: PreferArgs) -> anyhow::Result<()> {
    let levels = args.order.len();
    for name in &args.lower_is_better {
        if !args.order.contains(name) {
            bail!("--lower-is-better {name}: not a factor in --order");
        }
    }
    if let Some(margins) = &args.margins {
        if margins.len() != levels {
            bail!(
                "--margins: {} values for {levels} factors in --order (one per factor)",
                margins.len()
            );
        }
    }
    let file = args.input.display().to_string();
    let reader = RecordReader::open(&args.input, args.input_format)?;
    let mut groups: Vec<(String, Vec<Row>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let (mut rows, mut without_group, mut masked) = (0, 0, 0);
    for record in reader {
        let record = record?;
        rows += 1;
        let at = |field: &str| format!("{file}:{}: field `{field}`", record.line);
        let mut factors = Vec::with_capacity(levels);
        for name in &args.order {
            factors.push(match record.fields.get(name) {
                Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
                Some(Value::Bool(b)) => f64::from(u8::from(*b)),
                Some(Value::Null) => f64::NAN,
                Some(other) => bail!("{}: expected a number (or null), found {other}", at(name)),
                None => bail!(
                    "{}: missing; every row needs each factor named by --order",
                    at(name)
                ),
            });
        }
        let group = match record.fields.get(&args.group_field) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            None | Some(Value::Null) => {
                without_group += 1;
                continue;
            }
            Some(other) => bail!(
                "{}: expected a string or a number as the group id, found {other}",
                at(&args.group_field)
            ),
        };
        if factors.iter().any(|x| !x.is_finite()) {
            masked += 1;
        }
        let slot = *index.entry(group.clone()).or_insert_with(|| {
            groups.push((group, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(Row {
            line: record.line,
            factors,
            prompt: record.fields.get(&args.prompt_field).cloned(),
            completion: record.fields.get(&args.completion_field).cloned(),
        });
    }
    if rows == 0 {
        bail!("{file}: no rows");
    }
    let higher: Vec<bool> = args
        .order
        .iter()
        .map(|name| !args.lower_is_better.contains(name))
        .collect();
    let comparator = match args.sigma_mult {
        Some(m) => {
            let columns: Vec<Vec<f64>> = (0..levels)
                .map(|k| {
                    groups
                        .iter()
                        .flat_map(|(_, rows)| rows.iter().map(move |r| r.factors[k]))
                        .collect()
                })
                .collect();
            let views: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
            Lexicographic::from_buffer(&views, m, higher)
        }
        None => Lexicographic::new(
            args.margins.clone().unwrap_or_else(|| vec![0.0; levels]),
            higher,
        ),
    }
    .context("the comparator")?;

    let mut out: Option<Box<dyn std::io::Write>> = match &args.output {
        None => None,
        Some(path) if path.as_os_str() == "-" => Some(Box::new(std::io::stdout().lock())),
        Some(path) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ))),
    };
    let (mut compared, mut decided) = (0, 0);
    for (group, members) in &groups {
        for i in 0..members.len() {
            for j in i + 1..members.len() {
                compared += 1;
                let (a, b) = (&members[i], &members[j]);
                let Some(order) = comparator.compare(&a.factors, &b.factors)? else {
                    continue;
                };
                decided += 1;
                let (chosen, rejected) = match order {
                    std::cmp::Ordering::Greater => (a, b),
                    _ => (b, a),
                };
                if let Some(out) = out.as_mut() {
                    let mut row = json!({
                        "group": group,
                        "chosen_line": chosen.line,
                        "rejected_line": rejected.line,
                    });
                    if let Some(prompt) = &chosen.prompt {
                        row["prompt"] = prompt.clone();
                    }
                    if let (Some(c), Some(r)) = (&chosen.completion, &rejected.completion) {
                        row["chosen"] = c.clone();
                        row["rejected"] = r.clone();
                    }
                    serde_json::to_writer(&mut *out, &row)?;
                    out.write_all(b"\n")?;
                }
            }
        }
    }
    if let Some(mut out) = out {
        out.flush()?;
    }
    let report = Report {
        input: file,
        output: args.output.as_ref().map(|p| p.display().to_string()),
        rows,
        rows_without_group: without_group,
        rows_masked: masked,
        groups: groups.len(),
        margins: comparator.margins().to_vec(),
        pairs_compared: compared,
        pairs_decided: decided,
        pairs_skipped: compared - decided,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let text = format!(
            "lexicographic preferences over {} ({}) with margins {:?}\n  {} rows in {} groups ({} without a group, {} with a non-finite factor, whose pairs are skipped)\n  {} pairs compared: {} decided, {} skipped (no level decided)\n{}",
            args.order.join(" > "),
            if args.lower_is_better.is_empty() {
                "higher is better".to_owned()
            } else {
                format!("lower is better: {}", args.lower_is_better.join(", "))
            },
            report.margins,
            report.rows,
            report.groups,
            report.rows_without_group,
            report.rows_masked,
            report.pairs_compared,
            report.pairs_decided,
            report.pairs_skipped,
            report
                .output
                .as_ref()
                .map_or(String::new(), |o| format!("wrote {o}\n"))
        );
        if args.output.as_deref() == Some("-".as_ref()) {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }
    Ok(())
}
