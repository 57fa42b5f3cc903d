//! Where the scores come from: a reward spec (scored here, with a cache) or a file of
//! precomputed scores.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rewardkit::{Pipeline, Spec};
use rewardkit_core::{Outcome, Sample};
use rewardkit_data::{Format, RecordReader};
use serde_json::Value;

use crate::bench::{describe, Benchmark};
use crate::EvalError;

/// Reads a file of precomputed scores and lines it up with the benchmark.
///
/// One JSONL (or Parquet) row per benchmark item with `scores`: a list of numbers in candidate
/// order — `[chosen, rejected]` for a pair; the chosen list then the rejected list for best-of-N;
/// the samples in order for labelled data. `null` is a non-score (counted, and treated by the
/// non-score policy). Rows are matched by `id` (the benchmark's id, or its line number when the
/// benchmark has no ids), else by `index` (0-based item position), else by order. Every item must
/// get exactly one row and every row must match an item; anything else is an error naming the
/// row.
pub fn read_scores(
    path: impl AsRef<Path>,
    bench: &Benchmark,
    format: Option<Format>,
) -> Result<Vec<Vec<Outcome>>, EvalError> {
    let path = path.as_ref();
    let fail = |line: Option<u64>, message: String| EvalError::Scores {
        file: path.to_path_buf(),
        line,
        message,
    };
    let by_id: HashMap<&str, usize> = bench
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| (item.id.as_str(), i))
        .collect();
    let mut slots: Vec<Option<(u64, Vec<Outcome>)>> = vec![None; bench.items.len()];
    let mut rows = 0usize;
    let mut keyed_by: Option<&'static str> = None;
    for record in RecordReader::open(path, format)? {
        let record = record?;
        let line = record.line;
        let position = rows;
        rows += 1;
        let (key, target) = if let Some(id) = record.fields.get("id") {
            let id = match id {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(fail(
                        Some(line),
                        format!(
                            "`id`: expected a string or a number, found {}",
                            describe(other)
                        ),
                    ))
                }
            };
            let Some(&target) = by_id.get(id.as_str()) else {
                return Err(fail(
                    Some(line),
                    format!("id `{id}` is not in the benchmark {}", bench.file.display()),
                ));
            };
            ("id", target)
        } else if let Some(index) = record.fields.get("index") {
            let Some(index) = index.as_u64().map(|i| i as usize) else {
                return Err(fail(
                    Some(line),
                    format!(
                        "`index`: expected a non-negative integer, found {}",
                        describe(index)
                    ),
                ));
            };
            if index >= bench.items.len() {
                return Err(fail(
                    Some(line),
                    format!(
                        "index {index} is past the benchmark's {} items",
                        bench.items.len()
                    ),
                ));
            }
            ("index", index)
        } else {
            if position >= bench.items.len() {
                return Err(fail(
                    Some(line),
                    format!(
                        "more score rows than the benchmark's {} items",
                        bench.items.len()
                    ),
                ));
            }
            ("order", position)
        };
        match keyed_by {
            None => keyed_by = Some(key),
            Some(previous) if previous != key => {
                return Err(fail(
                    Some(line),
                    format!(
                        "rows are matched by {previous} before this line but by {key} here; \
                         key every row the same way"
                    ),
                ))
            }
            Some(_) => {}
        }
        let item = &bench.items[target];
        let scores = match record.fields.get("scores") {
            Some(Value::Array(scores)) => scores,
            Some(other) => {
                return Err(fail(
                    Some(line),
                    format!(
                        "`scores`: expected a list of numbers, found {}",
                        describe(other)
                    ),
                ))
            }
            None => {
                return Err(fail(
                    Some(line),
                    format!(
                        "missing field `scores` (a list of {} numbers for id `{}`)",
                        item.candidates.len(),
                        item.id
                    ),
                ))
            }
        };
        if scores.len() != item.candidates.len() {
            return Err(fail(
                Some(line),
                format!(
                    "{} scores for benchmark id `{}` (line {}), which has {} candidates",
                    scores.len(),
                    item.id,
                    item.line,
                    item.candidates.len()
                ),
            ));
        }
        let mut outcomes = Vec::with_capacity(scores.len());
        for (k, score) in scores.iter().enumerate() {
            outcomes.push(match score {
                Value::Null => Outcome::unscorable("null in the score file"),
                Value::Number(n) => match n.as_f64() {
                    Some(v) if v.is_finite() => Outcome::scored(v),
                    _ => {
                        return Err(fail(
                            Some(line),
                            format!("`scores.{k}`: expected a finite number, found {n}"),
                        ))
                    }
                },
                other => {
                    return Err(fail(
                        Some(line),
                        format!(
                            "`scores.{k}`: expected a finite number or null, found {}",
                            describe(other)
                        ),
                    ))
                }
            });
        }
        if let Some((previous, _)) = &slots[target] {
            return Err(fail(
                Some(line),
                format!(
                    "a second score row for benchmark id `{}` (the first is line {previous})",
                    item.id
                ),
            ));
        }
        slots[target] = Some((line, outcomes));
    }
    let missing: Vec<&str> = slots
        .iter()
        .zip(&bench.items)
        .filter(|(slot, _)| slot.is_none())
        .map(|(_, item)| item.id.as_str())
        .collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(5).copied().collect();
        return Err(fail(
            None,
            format!(
                "{rows} score rows for {} benchmark items: no scores for {} item(s), ids {}{}",
                bench.items.len(),
                missing.len(),
                shown.join(", "),
                if missing.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(slots
        .into_iter()
        .map(|slot| slot.expect("every slot was checked; this is a bug").1)
        .collect())
}

/// Writes scores in the format [`read_scores`] reads (`id`, `line`, `scores`, and `reasons` for
/// non-scores), so a spec's scores can be kept and re-evaluated or shared.
pub fn write_scores(
    path: impl AsRef<Path>,
    bench: &Benchmark,
    outcomes: &[Vec<Outcome>],
) -> Result<(), EvalError> {
    let path = path.as_ref();
    let mut text = String::new();
    for (item, outcomes) in bench.items.iter().zip(outcomes) {
        let scores: Vec<Value> = outcomes
            .iter()
            .map(|o| o.value().map_or(Value::Null, Value::from))
            .collect();
        let mut row = serde_json::json!({"id": item.id, "line": item.line, "scores": scores});
        if outcomes.iter().any(|o| o.value().is_none()) {
            row["reasons"] = outcomes
                .iter()
                .map(|o| o.reason().map_or(Value::Null, Value::from))
                .collect();
        }
        text.push_str(&row.to_string());
        text.push('\n');
    }
    write_atomically(path, text.as_bytes())
}

/// Writes a file through a temporary file in the same directory and a rename, so a reader never
/// sees half of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    let io = |source| EvalError::Io {
        file: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_owned());
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    fs::write(&temporary, bytes).map_err(io)?;
    fs::rename(&temporary, path).map_err(|e| {
        let _ = fs::remove_file(&temporary);
        io(e)
    })
}

/// FNV-1a with a 128-bit state (Fowler–Noll–Vo; the parameters of the IETF draft): stable across
/// builds and platforms, which `std`'s hasher is not, so cache keys survive upgrades.
pub fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = OFFSET;
    for &byte in bytes {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// A reward spec built into a pipeline, with a fingerprint for the score cache.
pub struct SpecReward {
    pipeline: Pipeline,
    fingerprint: String,
    label: String,
}

impl SpecReward {
    /// Builds the spec (with the default registry, which includes every kind compiled in).
    pub fn new(spec: &Spec) -> Result<SpecReward, EvalError> {
        let pipeline = Pipeline::build(spec)?;
        Ok(SpecReward {
            fingerprint: spec_fingerprint(spec),
            label: spec.source.clone(),
            pipeline,
        })
    }

    /// Loads and builds a spec file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<SpecReward, EvalError> {
        SpecReward::new(&Spec::from_path(path)?)
    }

    /// The fingerprint: a hash of the rewardkit version, the spec's content (not its file name)
    /// and the size and modification time of every file or directory its options name (a
    /// tokenizer, a model directory), so retraining a model in place invalidates the cache.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Where the spec came from.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Scores every candidate of the benchmark (in parallel on the current rayon pool), taking
    /// what it can from `cache` and adding the rest to it. `progress(done, total)` is called as
    /// samples finish. Returns the outcomes item by item and how many came from the cache.
    pub fn score(
        &self,
        bench: &Benchmark,
        mut cache: Option<&mut ScoreCache>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Vec<Vec<Outcome>>, usize), EvalError> {
        let samples: Vec<Sample> = bench.items.iter().flat_map(|item| item.samples()).collect();
        let keys: Vec<u128> = samples.iter().map(sample_key).collect();
        let mut outcomes: Vec<Option<Outcome>> = match cache.as_deref() {
            Some(cache) => keys.iter().map(|k| cache.get(*k).cloned()).collect(),
            None => vec![None; samples.len()],
        };
        let cached = outcomes.iter().filter(|o| o.is_some()).count();
        let missing: Vec<usize> = (0..samples.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        let total = samples.len();
        let mut done = cached;
        progress(done, total);
        for chunk in missing.chunks(512) {
            let batch: Vec<Sample> = chunk.iter().map(|&i| samples[i].clone()).collect();
            let scored = self.pipeline.score_batch(&batch);
            for (&i, result) in chunk.iter().zip(scored) {
                if let Some(cache) = cache.as_deref_mut() {
                    cache.insert(keys[i], &result.reward);
                }
                outcomes[i] = Some(result.reward);
            }
            done += chunk.len();
            progress(done, total);
            if let Some(cache) = cache.as_deref_mut() {
                cache.flush()?;
            }
        }
        let mut flat = outcomes
            .into_iter()
            .map(|o| o.expect("every sample was scored or cached; this is a bug"));
        let per_item = bench
            .items
            .iter()
            .map(|item| flat.by_ref().take(item.candidates.len()).collect())
            .collect();
        Ok((per_item, cached))
    }
}

/// The cache key of a sample: a hash of its JSON form (prompt, completion, reference, group).
pub fn sample_key(sample: &Sample) -> u128 {
    let json = serde_json::to_vec(sample).expect("a sample serialises; this is a bug");
    fnv1a_128(&json)
}

fn spec_fingerprint(spec: &Spec) -> String {
    let mut text = format!(
        "rewardkit-eval score cache v1\nrewardkit {}\n",
        env!("CARGO_PKG_VERSION")
    );
    text.push_str(&serde_json::to_string(spec).expect("a spec serialises; this is a bug"));
    for term in &spec.terms {
        for value in term.options.values() {
            stamp_paths(value, &mut text);
        }
    }
    format!("{:032x}", fnv1a_128(text.as_bytes()))
}

/// Appends the size and modification time of files an option names (a directory: its files).
fn stamp_paths(value: &toml::Value, out: &mut String) {
    match value {
        toml::Value::String(s) => {
            let path = Path::new(s);
            let Ok(meta) = fs::metadata(path) else { return };
            let mut stamp = |p: &Path, m: &fs::Metadata| {
                let modified = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                out.push_str(&format!("\n{} {} {modified}", p.display(), m.len()));
            };
            if meta.is_dir() {
                let mut entries: Vec<PathBuf> = fs::read_dir(path)
                    .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
                    .unwrap_or_default();
                entries.sort();
                for entry in entries {
                    if let Ok(m) = fs::metadata(&entry) {
                        stamp(&entry, &m);
                    }
                }
            } else {
                stamp(path, &meta);
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|v| stamp_paths(v, out)),
        toml::Value::Table(table) => table.values().for_each(|v| stamp_paths(v, out)),
        _ => {}
    }
}

/// A persistent cache of outcomes per (reward fingerprint, sample), one JSONL file per reward:
/// `DIR/<fingerprint>.jsonl`, lines `{"sample": "<hash>", "outcome": {…}}`.
///
/// Timed-out outcomes are not cached (a time-out depends on the machine's load, not on the
/// sample). A line that does not parse (a run killed mid-write) is ignored, so its sample is
/// scored again.
pub struct ScoreCache {
    file: PathBuf,
    entries: HashMap<u128, Outcome>,
    pending: Vec<(u128, Outcome)>,
    /// Entries read from disk.
    pub loaded: usize,
    /// Lines ignored because they did not parse.
    pub ignored_lines: usize,
}

impl ScoreCache {
    /// Opens (or prepares to create) the cache of one reward under `dir`.
    pub fn open(dir: impl AsRef<Path>, fingerprint: &str) -> Result<ScoreCache, EvalError> {
        let file = dir.as_ref().join(format!("{fingerprint}.jsonl"));
        let mut cache = ScoreCache {
            file,
            entries: HashMap::new(),
            pending: Vec::new(),
            loaded: 0,
            ignored_lines: 0,
        };
        let text = match fs::read_to_string(&cache.file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(cache),
            Err(source) => {
                return Err(EvalError::Io {
                    file: cache.file.clone(),
                    source,
                })
            }
        };
        #[derive(serde::Deserialize)]
        struct Line {
            sample: String,
            outcome: Outcome,
        }
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Line>(line).ok().and_then(|l| {
                u128::from_str_radix(&l.sample, 16)
                    .ok()
                    .map(|k| (k, l.outcome))
            }) {
                Some((key, outcome)) => {
                    cache.entries.insert(key, outcome);
                }
                None => cache.ignored_lines += 1,
            }
        }
        cache.loaded = cache.entries.len();
        Ok(cache)
    }

    /// The cache file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The cached outcome of a sample key.
    pub fn get(&self, key: u128) -> Option<&Outcome> {
        self.entries.get(&key)
    }

    /// Records an outcome (not written until [`ScoreCache::flush`]); time-outs are skipped.
    pub fn insert(&mut self, key: u128, outcome: &Outcome) {
        if matches!(outcome, Outcome::TimedOut) || self.entries.contains_key(&key) {
            return;
        }
        self.entries.insert(key, outcome.clone());
        self.pending.push((key, outcome.clone()));
    }

    /// Appends the new entries to the cache file (one write).
    pub fn flush(&mut self) -> Result<(), EvalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let io = |source| EvalError::Io {
            file: self.file.clone(),
            source,
        };
        if let Some(dir) = self.file.parent() {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let mut text = String::new();
        for (key, outcome) in self.pending.drain(..) {
            let line = serde_json::json!({"sample": format!("{key:032x}"), "outcome": outcome});
            text.push_str(&line.to_string());
            text.push('\n');
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)
    }
}

/// The default cache directory: `$REWARDKIT_CACHE_DIR`, else `$XDG_CACHE_HOME/rewardkit/eval`,
/// else `$HOME/.cache/rewardkit/eval`, else `.rewardkit-cache/eval`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("REWARDKIT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("rewardkit").join("eval");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home)
            .join(".cache")
            .join("rewardkit")
            .join("eval");
    }
    PathBuf::from(".rewardkit-cache").join("eval")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_values() {
        // FNV-1a 128 test vectors (draft-eastlake-fnv): "" and "a".
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
    }
}
