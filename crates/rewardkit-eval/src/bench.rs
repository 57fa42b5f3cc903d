//! Benchmark files: what a row looks like, and how it becomes an [`Item`] with scored candidates.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rewardkit_core::{Completion, Prompt, Reference, Sample};
use rewardkit_data::{FieldMap, Format, Record, RecordReader};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::EvalError;

/// How the rows of a benchmark file are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// RewardBench v1 / TRL: `prompt` (optional), `chosen`, `rejected` (one completion each),
    /// `subset` (optional).
    Pairwise,
    /// RewardBench 2: `prompt`, `chosen: [..]`, `rejected: [..]` (lists, the chosen ones
    /// correct), `subset`, `id` (`ref:K` / `tied:K` in the Ties subset).
    BestOfN,
    /// N samples per prompt, each with a gold label (`samples: [{completion, correct}]`, or
    /// several fields each holding one sample, as in GSM8K's `example_model_solutions.jsonl`).
    Labelled,
}

/// The scoring rule applied to the items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// RewardBench v1: a pair is right iff `score(chosen) > score(rejected)`; ties are wrong.
    Pairwise,
    /// RewardBench 2: best-of-N with shared credit for ties at the maximum; the Ties subset has
    /// its own rule; overall = unweighted mean of subsets.
    BestOfN,
    /// Labelled N samples: best-of-N credit (correct at the maximum / all at the maximum), plus
    /// the best-of-N curve and B-STaR's balance score.
    Labelled,
}

impl Protocol {
    /// The protocol's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Pairwise => "pairwise",
            Protocol::BestOfN => "best_of_n",
            Protocol::Labelled => "labelled",
        }
    }
}

/// Where the fields of a benchmark row live (dotted paths, as in `rewardkit score`), and how rows
/// become items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchOptions {
    /// The row layout.
    pub layout: Layout,
    /// The scoring rule; `None` takes the layout's own (a labelled benchmark may also be scored
    /// as pairs: the first correct against the first incorrect sample of each prompt).
    pub protocol: Option<Protocol>,
    /// Path of the prompt; `None` for rows without one (empty prompt).
    pub prompt: Option<String>,
    /// Path of the chosen completion(s).
    pub chosen: String,
    /// Path of the rejected completion(s).
    pub rejected: String,
    /// Paths of the labelled samples: each names a list of sample objects or one sample object.
    pub samples: Vec<String>,
    /// Path of the text inside a sample object.
    pub sample_text: String,
    /// Path of the label (a boolean, or 0/1) inside a sample object.
    pub sample_label: String,
    /// Path of the subset name; rows without it are in subset `all`.
    pub subset: String,
    /// Path of the row id; rows without it are identified by their line number.
    pub id: String,
    /// Path of the reference (gold answer) passed to the reward; optional per row.
    pub reference: Option<String>,
    /// Split each chosen/rejected text at the last occurrence of this marker: what comes before
    /// (marker included) is the prompt and must be the same in both, the rest is the completion.
    /// For HH-RLHF's full dialogues use `"\n\nAssistant:"`.
    pub split_marker: Option<String>,
    /// The name of RewardBench 2's Ties subset, which has its own rule.
    pub ties_subset: String,
    /// Keep only the first N rows.
    pub first: Option<usize>,
    /// Keep only the last N rows (after `first`).
    pub last: Option<usize>,
    /// Input format override.
    pub format: Option<Format>,
    /// Skip rows that cannot be read or mapped (counted and listed in the report) instead of
    /// stopping at the first one.
    pub skip_bad_rows: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            layout: Layout::Pairwise,
            protocol: None,
            prompt: Some("prompt".to_owned()),
            chosen: "chosen".to_owned(),
            rejected: "rejected".to_owned(),
            samples: vec!["samples".to_owned()],
            sample_text: "completion".to_owned(),
            sample_label: "correct".to_owned(),
            subset: "subset".to_owned(),
            id: "id".to_owned(),
            reference: Some("reference".to_owned()),
            split_marker: None,
            ties_subset: "Ties".to_owned(),
            first: None,
            last: None,
            format: None,
            skip_bad_rows: false,
        }
    }
}

impl BenchOptions {
    /// The protocol actually used.
    pub fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or(match self.layout {
            Layout::Pairwise => Protocol::Pairwise,
            Layout::BestOfN => Protocol::BestOfN,
            Layout::Labelled => Protocol::Labelled,
        })
    }

    fn validate(&self) -> Result<(), EvalError> {
        let invalid = |option: &str, message: &str| {
            Err(EvalError::Option {
                option: option.to_owned(),
                message: message.to_owned(),
            })
        };
        match (self.layout, self.protocol()) {
            (Layout::Pairwise, Protocol::Pairwise)
            | (Layout::BestOfN, Protocol::BestOfN)
            | (Layout::Labelled, _) => {}
            (Layout::Pairwise, _) => {
                return invalid("protocol", "a pairwise benchmark is scored as pairs")
            }
            (Layout::BestOfN, _) => {
                return invalid(
                    "protocol",
                    "a best-of-N benchmark is scored best-of-N (RewardBench 2)",
                )
            }
        }
        if self.layout == Layout::Labelled && self.samples.is_empty() {
            return invalid("samples", "name at least one field holding samples");
        }
        if self.split_marker.as_deref() == Some("") {
            return invalid("split_marker", "the marker is empty");
        }
        if self.first == Some(0) || self.last == Some(0) {
            return invalid("first/last", "keep at least one row");
        }
        Ok(())
    }
}

/// One candidate answer of an item, with its gold label.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The completion.
    pub completion: Completion,
    /// Whether it is a correct (chosen) answer.
    pub correct: bool,
}

/// The role of a row of RewardBench 2's Ties subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TiesRole {
    /// `ref:K`: the prompt with one correct answer.
    Ref,
    /// `tied:K`: the prompt with several correct answers.
    Tied,
}

/// One benchmark prompt with its candidates.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// 1-based line (or Parquet row) in the benchmark file.
    pub line: u64,
    /// The row id (the id field, else the line number).
    pub id: String,
    /// The subset.
    pub subset: String,
    /// The prompt.
    pub prompt: Prompt,
    /// The gold reference handed to the reward, if the row has one.
    pub reference: Option<Reference>,
    /// The candidates: for pairwise and best-of-N the chosen ones first.
    pub candidates: Vec<Candidate>,
    /// In the Ties subset: the row's role and prompt key (`ref:12` → (Ref, "12")).
    pub ties: Option<(TiesRole, String)>,
}

impl Item {
    /// The candidates as samples for a reward: prompt, completion and reference of this item;
    /// the group is the item id.
    pub fn samples(&self) -> Vec<Sample> {
        self.candidates
            .iter()
            .map(|candidate| Sample {
                prompt: self.prompt.clone(),
                completion: candidate.completion.clone(),
                reference: self.reference.clone(),
                group: Some(self.id.clone()),
                metadata: Map::new(),
            })
            .collect()
    }

    /// How many candidates are correct.
    pub fn correct_count(&self) -> usize {
        self.candidates.iter().filter(|c| c.correct).count()
    }
}

/// A benchmark read from a file.
#[derive(Clone, Debug)]
pub struct Benchmark {
    /// The file it was read from.
    pub file: PathBuf,
    /// The layout of its rows.
    pub layout: Layout,
    /// The scoring rule.
    pub protocol: Protocol,
    /// The items, in file order.
    pub items: Vec<Item>,
    /// Rows read (before conversion).
    pub rows: u64,
    /// Rows kept by `first`/`last` (all rows without them).
    pub selected_rows: u64,
    /// Rows left out by a conversion, with why (a labelled row without both a correct and an
    /// incorrect sample cannot be a pair).
    pub left_out: Vec<(u64, String)>,
    /// Bad rows skipped with [`BenchOptions::skip_bad_rows`], with their errors.
    pub skipped: Vec<(u64, String)>,
}

impl Benchmark {
    /// Reads a benchmark file (JSONL, JSONL.gz or Parquet). The first bad row stops reading with
    /// an error naming its line and field, unless [`BenchOptions::skip_bad_rows`] is set.
    pub fn read(path: impl AsRef<Path>, options: &BenchOptions) -> Result<Benchmark, EvalError> {
        options.validate()?;
        let path = path.as_ref();
        // Rows in order, bad ones included (they count for `first`/`last`); a fatal error (I/O,
        // a corrupt stream) ends reading in any mode.
        let mut records = Vec::new();
        for record in RecordReader::open(path, options.format)? {
            match record {
                Err(error) if !error.is_row_error() => return Err(error.into()),
                record => records.push(record),
            }
            if options.first.is_some_and(|first| records.len() >= first) {
                break;
            }
        }
        let rows = records.len() as u64;
        if let Some(last) = options.last {
            let skip = records.len().saturating_sub(last);
            records.drain(..skip);
        }
        let selected_rows = records.len() as u64;
        let reader = RowReader::new(path, options)?;
        let protocol = options.protocol();
        let mut items = Vec::with_capacity(records.len());
        let mut left_out = Vec::new();
        let mut skipped = Vec::new();
        for record in records {
            let item = record.map_err(EvalError::from).and_then(|r| {
                let line = r.line;
                reader.item(r).map(|item| (line, item))
            });
            let (line, item) = match item {
                Ok(found) => found,
                Err(error) if options.skip_bad_rows && error.is_row_error() => {
                    skipped.push((error.line().unwrap_or(0), error.to_string()));
                    continue;
                }
                Err(error) => return Err(error),
            };
            match (options.layout, protocol) {
                (Layout::Labelled, Protocol::Pairwise) => match labelled_pair(item) {
                    Ok(pair) => items.push(pair),
                    Err(why) => left_out.push((line, why)),
                },
                _ => items.push(item),
            }
        }
        let bench = Benchmark {
            file: path.to_path_buf(),
            layout: options.layout,
            protocol,
            items,
            rows,
            selected_rows,
            left_out,
            skipped,
        };
        bench.check(&options.ties_subset)?;
        Ok(bench)
    }

    /// Builds a benchmark from items in memory (tests, converters); checks it like a file.
    pub fn from_items(
        file: impl Into<PathBuf>,
        layout: Layout,
        protocol: Protocol,
        items: Vec<Item>,
        ties_subset: &str,
    ) -> Result<Benchmark, EvalError> {
        let bench = Benchmark {
            file: file.into(),
            layout,
            protocol,
            rows: items.len() as u64,
            selected_rows: items.len() as u64,
            items,
            left_out: Vec::new(),
            skipped: Vec::new(),
        };
        bench.check(ties_subset)?;
        Ok(bench)
    }

    /// The subsets in order of first appearance, with their item indexes.
    pub fn subsets(&self) -> Vec<(String, Vec<usize>)> {
        let mut order: Vec<(String, Vec<usize>)> = Vec::new();
        let mut position: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, item) in self.items.iter().enumerate() {
            let slot = *position.entry(&item.subset).or_insert_with(|| {
                order.push((item.subset.clone(), Vec::new()));
                order.len() - 1
            });
            order[slot].1.push(index);
        }
        order
    }

    /// Total number of candidates (samples a reward scores).
    pub fn candidate_count(&self) -> usize {
        self.items.iter().map(|item| item.candidates.len()).sum()
    }

    fn check(&self, ties_subset: &str) -> Result<(), EvalError> {
        let fail = |message: String| {
            Err(EvalError::Benchmark {
                file: self.file.clone(),
                message,
            })
        };
        if self.items.is_empty() {
            return fail(if self.left_out.is_empty() {
                "no items".to_owned()
            } else {
                format!(
                    "no items: all {} rows were left out ({})",
                    self.left_out.len(),
                    self.left_out[0].1
                )
            });
        }
        let mut ids = HashSet::new();
        for item in &self.items {
            if !ids.insert(item.id.as_str()) {
                return fail(format!(
                    "line {}: duplicate id `{}` (ids key score files and Ties prompts)",
                    item.line, item.id
                ));
            }
            let correct = item.correct_count();
            let incorrect = item.candidates.len() - correct;
            let needs_both = match self.protocol {
                Protocol::Pairwise | Protocol::BestOfN => true,
                Protocol::Labelled => false,
            };
            if item.candidates.is_empty() {
                return fail(format!("line {}: no candidates", item.line));
            }
            if needs_both && (correct == 0 || incorrect == 0) {
                return fail(format!(
                    "line {}: needs at least one chosen and one rejected completion, found {} \
                     and {}",
                    item.line, correct, incorrect
                ));
            }
            if self.protocol == Protocol::BestOfN
                && item.subset == ties_subset
                && item.ties.is_none()
            {
                return fail(format!(
                    "line {}: a `{ties_subset}` row needs an id `ref:K` or `tied:K`, found `{}`",
                    item.line, item.id
                ));
            }
        }
        Ok(())
    }
}

/// Turns a labelled item into a pair: its first correct against its first incorrect sample.
fn labelled_pair(mut item: Item) -> Result<Item, String> {
    let chosen = item.candidates.iter().position(|c| c.correct);
    let rejected = item.candidates.iter().position(|c| !c.correct);
    match (chosen, rejected) {
        (Some(c), Some(r)) => {
            let rejected = item.candidates[r].clone();
            let chosen = item.candidates.swap_remove(c);
            item.candidates = vec![chosen, rejected];
            Ok(item)
        }
        (None, _) => Err("no correct sample".to_owned()),
        (_, None) => Err("no incorrect sample".to_owned()),
    }
}

/// Maps records to items.
struct RowReader<'a> {
    file: &'a Path,
    options: &'a BenchOptions,
    /// Reads `chosen` (completion) with the prompt and reference.
    chosen: FieldMap,
    /// Reads `rejected` (completion) alone.
    rejected: FieldMap,
}

impl<'a> RowReader<'a> {
    fn new(file: &'a Path, options: &'a BenchOptions) -> Result<RowReader<'a>, EvalError> {
        let base = FieldMap::default().without_group().keep_unmapped(false);
        let mut chosen = base.clone().with_completion(&options.chosen)?;
        chosen = match &options.prompt {
            Some(prompt) => chosen.with_prompt(prompt)?,
            None => chosen.without_prompt(),
        };
        chosen = match &options.reference {
            Some(reference) => chosen.with_optional_reference(reference)?,
            None => chosen.without_reference(),
        };
        let rejected = base
            .with_completion(&options.rejected)?
            .without_prompt()
            .without_reference();
        Ok(RowReader {
            file,
            options,
            chosen,
            rejected,
        })
    }

    fn field_error(&self, line: u64, field: &str, expected: &str, found: &Value) -> EvalError {
        EvalError::Field {
            file: self.file.to_path_buf(),
            line,
            field: field.to_owned(),
            expected: expected.to_owned(),
            found: describe(found),
        }
    }

    /// An optional string-ish field (string or number); absent or null is `None`.
    fn text_field(
        &self,
        fields: &Map<String, Value>,
        line: u64,
        path: &str,
    ) -> Result<Option<String>, EvalError> {
        match lookup(fields, path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(other) => Err(self.field_error(line, path, "a string or a number", other)),
        }
    }

    fn item(&self, record: Record) -> Result<Item, EvalError> {
        let Record { line, fields } = record;
        let subset = self
            .text_field(&fields, line, &self.options.subset)?
            .unwrap_or_else(|| "all".to_owned());
        if subset.is_empty() {
            return Err(self.field_error(
                line,
                &self.options.subset,
                "a non-empty subset name",
                &Value::String(String::new()),
            ));
        }
        let id = self
            .text_field(&fields, line, &self.options.id)?
            .unwrap_or_else(|| line.to_string());
        let (prompt, reference, candidates) = match self.options.layout {
            Layout::Pairwise | Layout::BestOfN => self.chosen_rejected(fields, line)?,
            Layout::Labelled => self.labelled(fields, line)?,
        };
        let ties = if self.options.layout == Layout::BestOfN && subset == self.options.ties_subset {
            let parsed = id.split_once(':').and_then(|(role, key)| {
                let role = match role {
                    "ref" => TiesRole::Ref,
                    "tied" => TiesRole::Tied,
                    _ => return None,
                };
                (!key.is_empty()).then(|| (role, key.to_owned()))
            });
            match parsed {
                Some(parsed) => Some(parsed),
                None => {
                    return Err(self.field_error(
                        line,
                        &self.options.id,
                        "`ref:K` or `tied:K` in the Ties subset",
                        &Value::String(id),
                    ))
                }
            }
        } else {
            None
        };
        Ok(Item {
            line,
            id,
            subset,
            prompt,
            reference,
            candidates,
            ties,
        })
    }

    #[allow(clippy::type_complexity)]
    fn chosen_rejected(
        &self,
        fields: Map<String, Value>,
        line: u64,
    ) -> Result<(Prompt, Option<Reference>, Vec<Candidate>), EvalError> {
        let (chosen, chosen_expanded) = self.chosen.map_row(fields.clone(), self.file, line)?;
        let (rejected, rejected_expanded) = self.rejected.map_row(fields, self.file, line)?;
        if self.options.layout == Layout::Pairwise {
            for (expanded, count, field) in [
                (chosen_expanded, chosen.len(), &self.options.chosen),
                (rejected_expanded, rejected.len(), &self.options.rejected),
            ] {
                if expanded {
                    return Err(EvalError::Field {
                        file: self.file.to_path_buf(),
                        line,
                        field: field.clone(),
                        expected: "one completion (a pairwise benchmark; use the best-of-N \
                                   layout for lists)"
                            .to_owned(),
                        found: format!("a list of {count} completions"),
                    });
                }
            }
        }
        let first = chosen
            .first()
            .expect("map_row yields at least one sample; this is a bug");
        let mut prompt = first.prompt.clone();
        let reference = first.reference.clone();
        let mut candidates: Vec<Candidate> = chosen
            .into_iter()
            .map(|s| Candidate {
                completion: s.completion,
                correct: true,
            })
            .chain(rejected.into_iter().map(|s| Candidate {
                completion: s.completion,
                correct: false,
            }))
            .collect();
        if let Some(marker) = &self.options.split_marker {
            prompt = self.split(&mut candidates, prompt, marker, line)?;
        }
        Ok((prompt, reference, candidates))
    }

    /// Splits full dialogues at the last `marker`: the shared part becomes the prompt.
    fn split(
        &self,
        candidates: &mut [Candidate],
        prompt: Prompt,
        marker: &str,
        line: u64,
    ) -> Result<Prompt, EvalError> {
        let mut shared: Option<String> = None;
        for (index, candidate) in candidates.iter_mut().enumerate() {
            let field = if candidate.correct {
                &self.options.chosen
            } else {
                &self.options.rejected
            };
            let Completion::Text(text) = &candidate.completion else {
                return Err(EvalError::Field {
                    file: self.file.to_path_buf(),
                    line,
                    field: field.clone(),
                    expected: "plain text to split at the marker".to_owned(),
                    found: "a chat message or list".to_owned(),
                });
            };
            let Some(at) = text.rfind(marker) else {
                return Err(EvalError::Field {
                    file: self.file.to_path_buf(),
                    line,
                    field: field.clone(),
                    expected: format!("a text containing the split marker {marker:?}"),
                    found: format!("candidate {index} without it"),
                });
            };
            let (head, tail) = text.split_at(at + marker.len());
            match &shared {
                None => shared = Some(head.to_owned()),
                Some(previous) if previous == head => {}
                Some(_) => {
                    return Err(EvalError::Field {
                        file: self.file.to_path_buf(),
                        line,
                        field: field.clone(),
                        expected: format!(
                            "the same dialogue before the last {marker:?} in every candidate"
                        ),
                        found: format!("candidate {index} with a different one"),
                    })
                }
            }
            candidate.completion = Completion::Text(tail.trim_start().to_owned());
        }
        let head = shared.unwrap_or_default();
        Ok(match prompt {
            Prompt::Text(text) if !text.is_empty() => Prompt::Text(format!("{text}{head}")),
            Prompt::Text(_) => Prompt::Text(head),
            chat => chat,
        })
    }

    #[allow(clippy::type_complexity)]
    fn labelled(
        &self,
        fields: Map<String, Value>,
        line: u64,
    ) -> Result<(Prompt, Option<Reference>, Vec<Candidate>), EvalError> {
        // Every sample path is resolved to concrete paths: `samples.0.completion`, or
        // `6b_finetuning.solution` for a field holding one sample object.
        let mut concrete: Vec<(String, String)> = Vec::new();
        for path in &self.options.samples {
            match lookup(&fields, path) {
                Some(Value::Array(items)) => {
                    if items.is_empty() {
                        return Err(self.field_error(
                            line,
                            path,
                            "a non-empty list of samples",
                            &Value::Array(Vec::new()),
                        ));
                    }
                    for index in 0..items.len() {
                        concrete.push((
                            format!("{path}.{index}.{}", self.options.sample_text),
                            format!("{path}.{index}.{}", self.options.sample_label),
                        ));
                    }
                }
                Some(Value::Object(_)) => concrete.push((
                    format!("{path}.{}", self.options.sample_text),
                    format!("{path}.{}", self.options.sample_label),
                )),
                Some(other) => {
                    return Err(self.field_error(
                        line,
                        path,
                        "a list of sample objects or one sample object",
                        other,
                    ))
                }
                None => {
                    return Err(EvalError::Field {
                        file: self.file.to_path_buf(),
                        line,
                        field: path.clone(),
                        expected: "samples (a list of objects or one object)".to_owned(),
                        found: format!("no such field (available: {})", keys(&fields)),
                    })
                }
            }
        }
        let mut prompt = Prompt::default();
        let mut reference = None;
        let mut candidates = Vec::with_capacity(concrete.len());
        for (index, (text_path, label_path)) in concrete.iter().enumerate() {
            let mut map = FieldMap::default()
                .without_group()
                .keep_unmapped(false)
                .with_completion(text_path)?;
            if index == 0 {
                map = match &self.options.prompt {
                    Some(p) => map.with_prompt(p)?,
                    None => map.without_prompt(),
                };
                map = match &self.options.reference {
                    Some(r) => map.with_optional_reference(r)?,
                    None => map.without_reference(),
                };
            } else {
                map = map.without_prompt().without_reference();
            }
            let (mut samples, expanded) = map.map_row(fields.clone(), self.file, line)?;
            if expanded {
                return Err(EvalError::Field {
                    file: self.file.to_path_buf(),
                    line,
                    field: text_path.clone(),
                    expected: "one completion per sample".to_owned(),
                    found: format!("a list of {} completions", samples.len()),
                });
            }
            let sample = samples.pop().expect("one sample per row; this is a bug");
            if index == 0 {
                prompt = sample.prompt;
                reference = sample.reference;
            }
            let correct = match lookup(&fields, label_path) {
                Some(Value::Bool(b)) => *b,
                Some(Value::Number(n)) if n.as_f64() == Some(1.0) => true,
                Some(Value::Number(n)) if n.as_f64() == Some(0.0) => false,
                Some(other) => {
                    return Err(self.field_error(
                        line,
                        label_path,
                        "a label: true/false or 1/0",
                        other,
                    ))
                }
                None => {
                    return Err(EvalError::Field {
                        file: self.file.to_path_buf(),
                        line,
                        field: label_path.clone(),
                        expected: "a label: true/false or 1/0".to_owned(),
                        found: "nothing".to_owned(),
                    })
                }
            };
            candidates.push(Candidate {
                completion: sample.completion,
                correct,
            });
        }
        Ok((prompt, reference, candidates))
    }
}

/// Follows a dotted path (object keys, list indexes) through a row; a top-level key containing
/// dots is matched literally first.
pub(crate) fn lookup<'v>(fields: &'v Map<String, Value>, path: &str) -> Option<&'v Value> {
    if let Some(value) = fields.get(path) {
        return Some(value);
    }
    let mut segments = path.split('.');
    let mut current = fields.get(segments.next()?)?;
    for segment in segments {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

fn keys(fields: &Map<String, Value>) -> String {
    if fields.is_empty() {
        "nothing".to_owned()
    } else {
        fields.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// A short description of a JSON value for error messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) if s.is_empty() => "an empty string".to_owned(),
        Value::String(s) => {
            let short: String = s.chars().take(40).collect();
            format!("a string ({short:?})")
        }
        Value::Array(items) => format!("a list of {} items", items.len()),
        Value::Object(_) => "an object".to_owned(),
    }
}
