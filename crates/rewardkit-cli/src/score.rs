//! `rewardkit score`: read rows, score them in parallel, write one output row per sample in input
//! order, print a summary.
//!
//! Reading and scoring overlap: a reader thread parses chunks of rows and hands them over a
//! bounded channel (two chunks in flight, so memory stays flat); the main thread scores each chunk
//! on the rayon pool and writes the results in order.
//!
//! A spec whose reward pools over groups or the batch (normalisation, min-max, sum-then-normalise,
//! normalise-then-sum) or that asks for advantages needs whole groups, and a group's rows may lie
//! anywhere in the file, in any chunk. So such a spec switches to *batch mode*: the whole file is
//! the batch. Every chunk is scored as it arrives, but only the scores (not the samples) are kept;
//! after the last row the batch pass (`Pipeline::shape`) runs over all of them and the rows are
//! written. Memory is then linear in the rows (the term outcomes, group id and reference rewards
//! of each sample, not its text).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rewardkit::{Outcome, Pipeline, ScoredSample, ShapeInput, Shaped, Spec};
use rewardkit_core::Sample;
use rewardkit_data::{
    Cell, Column, DataError, FieldMap, Format, Progress, RecordReader, RowEvent, SampleReader,
    SkipBadRows, TableWriter,
};

use crate::summary::Summary;

/// Arguments of `rewardkit score`.
#[derive(Args)]
pub struct ScoreArgs {
    /// The reward spec (TOML).
    #[arg(long)]
    spec: PathBuf,
    /// The rollouts: JSONL, JSONL.gz or Parquet (`-` reads JSONL from standard input).
    #[arg(long)]
    input: PathBuf,
    /// Where to write one row per sample (`.jsonl`, `.jsonl.gz`, `.parquet`; `-` is JSONL on
    /// standard output). Without it, only the summary is printed.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Input format, when the file name does not tell (`jsonl`, `jsonl.gz`, `parquet`).
    #[arg(long)]
    input_format: Option<Format>,
    /// Output format, when the file name does not tell.
    #[arg(long)]
    output_format: Option<Format>,
    /// Dotted path of the prompt in each row (`none` for rows without a prompt).
    #[arg(long, default_value = "prompt")]
    prompt_field: String,
    /// Dotted path of the completion (a string, a message, a chat list, or a list of several
    /// completions, which is expanded into a group).
    #[arg(long, default_value = "completion")]
    completion_field: String,
    /// Dotted path of the reference (ground truth); rows without one get none.
    #[arg(long, default_value = "reference")]
    reference_field: String,
    /// Dotted path of the group id; rows without one get none.
    #[arg(long, default_value = "group")]
    group_field: String,
    /// Count and report malformed rows instead of stopping at the first one.
    #[arg(long)]
    skip_bad_rows: bool,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
    /// Worker threads for scoring (default: all cores).
    #[arg(long, env = "REWARDKIT_THREADS")]
    threads: Option<usize>,
    /// Rows read and scored per chunk.
    #[arg(long, default_value_t = 4096)]
    chunk_rows: usize,
    /// Never show a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// For a spec with `[combine] method = "constrained"`: write the multipliers' state after
    /// one update from this file's constraint means (JSON; point the spec's `state_file` at it
    /// to continue from there).
    #[arg(long)]
    multipliers_out: Option<PathBuf>,
    /// For a spec with stateful transforms (`normalize_running`, `clip_running`,
    /// `min_max_running`, `count_decay`) that name a `state_file`: write their state after this
    /// file's batch pass back to those files, so the next run continues from it.
    #[arg(long)]
    save_state: bool,
}

/// What the reader thread sends: a chunk of rows (or skips), or the error that ended reading.
enum Chunk {
    Rows(Vec<RowEvent>, Progress),
    Fatal(DataError),
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    if args.chunk_rows == 0 {
        bail!("--chunk-rows must be at least 1");
    }
    if let Some(threads) = args.threads {
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("cannot start the scoring threads")?;
    }
    let spec = Spec::from_path(&args.spec)?;
    let pipeline = Pipeline::build(&spec)?;
    let constrained = matches!(spec.combine, rewardkit::Combine::Constrained { .. });
    if args.multipliers_out.is_some() && !constrained {
        bail!("--multipliers-out needs a spec with [combine] method = \"constrained\"");
    }
    if args.save_state
        && !pipeline
            .terms()
            .iter()
            .flat_map(|t| &t.transforms)
            .any(|t| matches!(t.state_file(), Some(Some(_))))
    {
        bail!("--save-state needs a spec with a stateful transform (normalize_running, clip_running, min_max_running, count_decay) that names a `state_file`");
    }
    let shapes_terms = pipeline.terms().iter().any(|t| !t.transforms.is_empty());
    let batch_mode = pipeline.needs_batch_pass() || constrained;
    let fields = field_map(&args)?;
    let records = RecordReader::open(&args.input, args.input_format)?;
    let reader = SampleReader::new(records, fields);

    let mut writer = match &args.output {
        Some(path) => {
            let columns = output_columns(&pipeline);
            Some(match args.output_format {
                Some(format) => TableWriter::create_as(path, format, columns)?,
                None => TableWriter::create(path, columns)?,
            })
        }
        None => None,
    };

    let mut progress =
        progress_display(args.no_progress || args.output.as_deref() == Some("-".as_ref()));
    let started = Instant::now();
    let mut summary = Summary::new(&pipeline);

    let (sender, receiver) = mpsc::sync_channel::<Chunk>(2);
    let rows = if args.skip_bad_rows {
        Rows::Skipping(reader.skip_bad_rows())
    } else {
        Rows::Strict(reader)
    };
    let chunk_rows = args.chunk_rows;
    let reader_thread = std::thread::spawn(move || read_chunks(rows, chunk_rows, sender));

    let mut fatal = None;
    // Batch mode: everything the batch pass and the writer need, per sample in input order.
    let mut kept = Kept::default();
    let mut last_shaped: Option<Shaped> = None;
    for chunk in receiver {
        let events = match chunk {
            Chunk::Rows(events, position) => {
                progress.update(&position);
                events
            }
            Chunk::Fatal(error) => {
                fatal = Some(error);
                break;
            }
        };
        // Move the samples out of their rows (no copies: a completion can be 100 MB) and keep
        // each row's line and sample count to write the results back in order.
        let mut samples: Vec<Sample> = Vec::with_capacity(events.len());
        let mut layout: Vec<(u64, Option<usize>)> = Vec::with_capacity(events.len());
        for event in events {
            match event {
                RowEvent::Row(row) => {
                    layout.push((row.line, Some(row.samples.len())));
                    samples.extend(row.samples);
                }
                RowEvent::Skipped(skip) => {
                    summary.add_skip(skip.line, skip.error.to_string());
                    layout.push((skip.line, None));
                }
            }
        }
        let scored = pipeline.score_batch(&samples);
        let inputs: Vec<ShapeInput> = if batch_mode || shapes_terms {
            samples.iter().map(|s| pipeline.shape_input(s)).collect()
        } else {
            Vec::new()
        };
        if batch_mode {
            for (line, count) in layout {
                let Some(count) = count else { continue };
                summary.add_row();
                kept.positions
                    .extend((0..count).map(|index| (line, index as u32)));
            }
            kept.scored.extend(scored);
            kept.inputs.extend(inputs);
            continue;
        }
        // Per-sample shaping: the transformed term values for the `.shaped` columns.
        let shaped = if shapes_terms {
            Some(pipeline.shape(&scored, &inputs)?)
        } else {
            None
        };
        let mut results = samples.iter().zip(&scored).enumerate();
        for (line, count) in layout {
            let Some(count) = count else { continue };
            summary.add_row();
            for index in 0..count {
                let (s, (sample, result)) = results
                    .next()
                    .expect("one scored sample per sample; this is a bug");
                summary.add(result);
                if let Some(writer) = writer.as_mut() {
                    let extra = Extra::of(shaped.as_ref(), s);
                    write_row(writer, line, index, sample.group.as_deref(), result, &extra)?;
                }
            }
        }
    }
    if batch_mode && fatal.is_none() {
        let mut shaped = pipeline.shape(&kept.scored, &kept.inputs)?;
        for (s, result) in kept.scored.iter_mut().enumerate() {
            result.reward = std::mem::replace(&mut shaped.rewards[s], Outcome::TimedOut);
            summary.add(result);
            if let Some(writer) = writer.as_mut() {
                let (line, index) = kept.positions[s];
                let extra = Extra::of(Some(&shaped), s);
                let group = kept.inputs[s].group.as_deref();
                write_row(writer, line, index as usize, group, result, &extra)?;
            }
        }
        last_shaped = Some(shaped);
    }
    reader_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked (a bug)"))?;
    progress.bar.finish_and_clear();
    if let Some(error) = fatal {
        // The writer is dropped unfinished: its temporary file is removed, any previous output
        // at the destination is left as it was.
        drop(writer);
        return Err(error.into());
    }
    if let Some(writer) = writer {
        writer.finish()?;
    }

    let report = summary.report(
        started.elapsed(),
        &args.input.display().to_string(),
        args.output
            .as_ref()
            .map(|p| p.display().to_string())
            .as_deref(),
    );
    let multipliers = last_shaped.as_ref().and_then(|s| s.multipliers.as_ref());
    if let (Some(path), Some(report)) = (&args.multipliers_out, multipliers) {
        let Some(next) = &report.next else {
            bail!(
                "--multipliers-out: no update (a constraint term has no finite value in this file); {} not written",
                path.display()
            );
        };
        std::fs::write(path, serde_json::to_string_pretty(next)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.save_state && last_shaped.is_some() {
        for file in pipeline.save_state()? {
            eprintln!("saved state to {file}");
        }
    }
    let batch_text = batch_report_text(&pipeline, last_shaped.as_ref());
    if args.json {
        let mut json = serde_json::to_value(&report)?;
        if let Some(shaped) = &last_shaped {
            if let Some(summary) = &shaped.advantage_summary {
                json["advantages"] = serde_json::to_value(summary)?;
            }
            if let Some(m) = &shaped.multipliers {
                json["multipliers"] = serde_json::json!({
                    "constraints": m.constraints,
                    "used": m.used,
                    "constraint_means": m.means,
                    "next_mu": m.next.as_ref().map(|n| n.mu.clone()),
                });
            }
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else if args.output.as_deref() == Some("-".as_ref()) {
        eprint!("{}{batch_text}", report.to_text());
    } else {
        print!("{}{batch_text}", report.to_text());
    }
    Ok(())
}

/// What batch mode keeps of each sample until the batch pass.
#[derive(Default)]
struct Kept {
    scored: Vec<ScoredSample>,
    inputs: Vec<ShapeInput>,
    positions: Vec<(u64, u32)>,
}

/// The shaping columns of one output row.
struct Extra {
    /// Per term: its value after its transforms, for terms that have transforms.
    shaped: Vec<Option<f64>>,
    advantage: Option<f64>,
}

impl Extra {
    fn of(shaped: Option<&Shaped>, s: usize) -> Extra {
        match shaped {
            None => Extra {
                shaped: Vec::new(),
                advantage: None,
            },
            Some(shaped) => Extra {
                shaped: shaped
                    .shaped_terms
                    .iter()
                    .map(|column| column.get(s).copied())
                    .collect(),
                advantage: shaped.advantages.as_ref().map(|a| a[s]),
            },
        }
    }
}

/// The batch pass's counts for the text summary.
fn batch_report_text(pipeline: &Pipeline, shaped: Option<&Shaped>) -> String {
    let Some(shaped) = shaped else {
        return String::new();
    };
    let mut text = String::new();
    if let (Some(a), Some(spec)) = (&shaped.advantage_summary, pipeline.advantages()) {
        text += &format!(
            "advantages (column `{}`): {} samples in {} groups; masked {}, one-element groups {}, \
             zero-variance groups {}, filtered {}\n",
            spec.column,
            a.samples,
            a.groups,
            a.masked,
            a.singleton_groups,
            a.zero_variance_groups,
            a.filtered
        );
    }
    if let Some(m) = &shaped.multipliers {
        text += &format!(
            "multipliers: {}\n",
            m.constraints
                .iter()
                .zip(&m.used)
                .zip(&m.means)
                .map(|((c, l), mean)| format!("{c}: λ {l:.6}, batch mean {mean:.6}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    text
}

fn field_map(args: &ScoreArgs) -> anyhow::Result<FieldMap> {
    let mut fields = FieldMap::default().with_completion(&args.completion_field)?;
    fields = if args.prompt_field == "none" {
        fields.without_prompt()
    } else {
        fields.with_prompt(&args.prompt_field)?
    };
    fields = fields.with_optional_reference(&args.reference_field)?;
    fields = fields.with_group(&args.group_field)?;
    Ok(fields)
}

/// The reader in either mode, as one stream of row events.
enum Rows {
    /// Stop at the first bad row: it arrives as an error.
    Strict(SampleReader),
    /// Bad rows arrive as [`RowEvent::Skipped`]; only fatal errors are errors.
    Skipping(SkipBadRows),
}

impl Rows {
    fn next(&mut self) -> Option<Result<RowEvent, DataError>> {
        match self {
            Rows::Strict(reader) => reader.next().map(|row| row.map(RowEvent::Row)),
            Rows::Skipping(reader) => reader.next(),
        }
    }

    fn progress(&self) -> Progress {
        match self {
            Rows::Strict(reader) => reader.progress(),
            Rows::Skipping(reader) => reader.progress(),
        }
    }
}

/// Runs on the reader thread: parses rows into chunks and sends them, then ends. An error ends
/// the stream after the rows before it have been sent, so they are still scored and counted.
fn read_chunks(mut rows: Rows, chunk_rows: usize, sender: mpsc::SyncSender<Chunk>) {
    let mut chunk = Vec::with_capacity(chunk_rows);
    loop {
        let next = rows.next();
        let end = match next {
            Some(Ok(event)) => {
                chunk.push(event);
                None
            }
            Some(Err(error)) => Some(Some(error)),
            None => Some(None),
        };
        if chunk.len() >= chunk_rows || (end.is_some() && !chunk.is_empty()) {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_rows));
            if sender.send(Chunk::Rows(full, rows.progress())).is_err() {
                return;
            }
        }
        match end {
            None => {}
            Some(None) => return,
            Some(Some(error)) => {
                let _ = sender.send(Chunk::Fatal(error));
                return;
            }
        }
    }
}

fn output_columns(pipeline: &Pipeline) -> Vec<Column> {
    let mut columns = vec![
        Column::u64("line"),
        Column::u64("index"),
        Column::str("group"),
        Column::f64("reward"),
        Column::str("outcome"),
        Column::str("reason"),
    ];
    for term in pipeline.terms() {
        columns.push(Column::f64(term.name.clone()));
        columns.push(Column::str(format!("{}.outcome", term.name)));
        columns.push(Column::str(format!("{}.reason", term.name)));
        for component in &term.component_names {
            columns.push(Column::f64(format!("{}.{component}", term.name)));
        }
        if !term.transforms.is_empty() {
            columns.push(Column::f64(format!("{}.shaped", term.name)));
        }
    }
    if let Some(advantages) = pipeline.advantages() {
        columns.push(Column::f64(advantages.column.clone()));
    }
    columns
}

/// A finite value, or null (masked samples are NaN in the shaping columns).
fn finite_cell<'a>(value: f64) -> Cell<'a> {
    if value.is_finite() {
        Cell::F64(value)
    } else {
        Cell::Null
    }
}

fn outcome_cells<'a>(cells: &mut Vec<Cell<'a>>, outcome: &'a Outcome) {
    cells.push(outcome.value().map_or(Cell::Null, Cell::F64));
    cells.push(Cell::Str(outcome.kind().as_str()));
    cells.push(outcome.reason().map_or(Cell::Null, Cell::Str));
}

fn write_row(
    writer: &mut TableWriter,
    line: u64,
    index: usize,
    group: Option<&str>,
    result: &ScoredSample,
    extra: &Extra,
) -> anyhow::Result<()> {
    let mut cells = Vec::with_capacity(writer.columns().len());
    cells.push(Cell::U64(line));
    cells.push(Cell::U64(index as u64));
    cells.push(group.map_or(Cell::Null, Cell::Str));
    outcome_cells(&mut cells, &result.reward);
    for (t, output) in result.terms.iter().enumerate() {
        outcome_cells(&mut cells, &output.outcome);
        for component in &output.components {
            cells.push(component.value().map_or(Cell::Null, Cell::F64));
        }
        // Terms with transforms have a `.shaped` column (`shaped_terms` is empty for the others).
        if let Some(Some(value)) = extra.shaped.get(t) {
            cells.push(finite_cell(*value));
        }
    }
    if let Some(advantage) = extra.advantage {
        cells.push(finite_cell(advantage));
    }
    writer.write_row(&cells)?;
    Ok(())
}

/// The progress display: by rows when the input's row count is known (Parquet), by bytes when its
/// size is (JSONL files), a spinner otherwise (standard input).
struct ProgressDisplay {
    bar: ProgressBar,
    styled: bool,
}

impl ProgressDisplay {
    fn update(&mut self, progress: &Progress) {
        if self.bar.is_hidden() {
            return;
        }
        let (position, length, template) = match (progress.rows_total, progress.bytes_total) {
            (Some(rows), _) => (
                progress.rows_read,
                Some(rows),
                "{bar:40} {human_pos}/{human_len} rows  {per_sec}  eta {eta}",
            ),
            (None, Some(bytes)) if progress.bytes_read > 0 => (
                progress.bytes_read,
                Some(bytes),
                "{bar:40} {bytes}/{total_bytes}  {bytes_per_sec}  eta {eta}",
            ),
            _ => (
                progress.rows_read,
                None,
                "{spinner} {human_pos} rows  {per_sec}  {elapsed}",
            ),
        };
        if !self.styled {
            self.styled = true;
            self.bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("the progress templates are valid; this is a bug"),
            );
        }
        if let Some(length) = length {
            self.bar.set_length(length);
        }
        self.bar.set_position(position);
    }
}

fn progress_display(disabled: bool) -> ProgressDisplay {
    let bar = if disabled || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} reading…")
                .expect("the progress templates are valid; this is a bug"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    };
    ProgressDisplay { bar, styled: false }
}
