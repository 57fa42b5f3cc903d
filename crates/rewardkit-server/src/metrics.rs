//! Prometheus metrics, rendered by hand in the text exposition format (version 0.0.4): a few
//! counters and histograms do not justify a metrics dependency.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rewardkit::ScoredSample;
use rewardkit_core::Outcome;

/// Latency buckets in seconds (1 ms … 60 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Batch-size buckets in samples.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// What the server counts. Cheap to update from any thread.
#[derive(Debug)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    queue_time: Mutex<Histogram>,
    compute_time: Mutex<Histogram>,
    batch_size: Mutex<Histogram>,
    samples: AtomicU64,
    rejected_full: AtomicU64,
    non_score_substituted: AtomicU64,
    reloads: Mutex<BTreeMap<&'static str, u64>>,
    /// `POST /v1/advantages` rows answered, by estimator.
    advantage_rows: Mutex<BTreeMap<&'static str, u64>>,
    /// (term, kind, reason) → count; the combined reward is term `_reward`.
    outcomes: Mutex<BTreeMap<(String, &'static str, String), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            latency: Mutex::default(),
            queue_time: Mutex::new(Histogram::new(LATENCY_BUCKETS)),
            compute_time: Mutex::new(Histogram::new(LATENCY_BUCKETS)),
            batch_size: Mutex::new(Histogram::new(BATCH_BUCKETS)),
            samples: AtomicU64::new(0),
            rejected_full: AtomicU64::new(0),
            non_score_substituted: AtomicU64::new(0),
            reloads: Mutex::default(),
            advantage_rows: Mutex::default(),
            outcomes: Mutex::default(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock cannot leave the counters inconsistent in a way that
    // matters; keep counting.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Label values escaped as the exposition format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Unscorable reasons are short stable phrases and make good labels; errors are free text, so
/// their reason label is cut to keep the series count bounded.
fn reason_label(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Unscorable { reason } => match reason.char_indices().nth(48) {
            Some((end, _)) => &reason[..end],
            None => reason,
        },
        _ => "",
    }
}

impl Metrics {
    pub(crate) fn request(&self, route: &str, status: u16, latency: Duration) {
        *lock(&self.requests)
            .entry((route.to_owned(), status))
            .or_default() += 1;
        lock(&self.latency)
            .entry(route.to_owned())
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
            .observe(latency.as_secs_f64());
    }

    pub(crate) fn batch(&self, samples: usize, compute: Duration) {
        lock(&self.batch_size).observe(samples as f64);
        lock(&self.compute_time).observe(compute.as_secs_f64());
    }

    pub(crate) fn queued(&self, wait: Duration) {
        lock(&self.queue_time).observe(wait.as_secs_f64());
    }

    pub(crate) fn rejected_full(&self) {
        self.rejected_full.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn substituted(&self, n: u64) {
        self.non_score_substituted.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn advantage_rows(&self, estimator: &'static str, rows: usize) {
        *lock(&self.advantage_rows).entry(estimator).or_default() += rows as u64;
    }

    pub(crate) fn reload(&self, ok: bool) {
        *lock(&self.reloads)
            .entry(if ok { "ok" } else { "failed" })
            .or_default() += 1;
    }

    /// Counts the outcomes of answered samples: the combined reward and every term (`terms` are
    /// the term names, in spec order). Tallied locally first, so the shared map is touched once
    /// per distinct (term, kind, reason), not once per sample.
    pub(crate) fn outcomes(&self, terms: &[String], results: &[ScoredSample]) {
        // Distinct (term, kind, reason) keys are few: a linear scan beats hashing each one.
        let mut tally: Vec<((usize, &'static str, &str), u64)> = Vec::new();
        for scored in results {
            let outcomes = std::iter::once(&scored.reward)
                .chain(scored.terms.iter().take(terms.len()).map(|o| &o.outcome));
            for (t, outcome) in outcomes.enumerate() {
                let key = (t, outcome.kind().as_str(), reason_label(outcome));
                match tally.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, n)) => *n += 1,
                    None => tally.push((key, 1)),
                }
            }
        }
        let mut outcomes = lock(&self.outcomes);
        for ((t, kind, reason), n) in tally {
            let term = if t == 0 { "_reward" } else { &terms[t - 1] };
            *outcomes
                .entry((term.to_owned(), kind, reason.to_owned()))
                .or_default() += n;
        }
        self.samples
            .fetch_add(results.len() as u64, Ordering::Relaxed);
    }

    /// The exposition text; `queue_depth` and `generation` are sampled by the caller.
    pub(crate) fn render(&self, queue_depth: usize, generation: u64, ready: bool) -> String {
        let mut out = String::new();
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "rewardkit_requests_total",
            "counter",
            "HTTP requests by route and status.",
        );
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "rewardkit_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        family(
            &mut out,
            "rewardkit_request_duration_seconds",
            "histogram",
            "Request latency by route, from the first byte to the response.",
        );
        for (route, histogram) in lock(&self.latency).iter() {
            histogram.render(
                &mut out,
                "rewardkit_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }
        family(
            &mut out,
            "rewardkit_samples_total",
            "counter",
            "Samples answered (scored or not).",
        );
        let _ = writeln!(
            out,
            "rewardkit_samples_total {}",
            self.samples.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "rewardkit_outcomes_total",
            "counter",
            "Outcomes of answered samples by term (`_reward` is the combined reward), kind and unscorable reason.",
        );
        for ((term, kind, reason), n) in lock(&self.outcomes).iter() {
            let _ = writeln!(
                out,
                "rewardkit_outcomes_total{{term=\"{}\",kind=\"{kind}\",reason=\"{}\"}} {n}",
                escape(term),
                escape(reason)
            );
        }
        family(
            &mut out,
            "rewardkit_queue_depth",
            "gauge",
            "Samples waiting for a batch.",
        );
        let _ = writeln!(out, "rewardkit_queue_depth {queue_depth}");
        family(
            &mut out,
            "rewardkit_queue_rejections_total",
            "counter",
            "Requests refused with 429 because the queue was full.",
        );
        let _ = writeln!(
            out,
            "rewardkit_queue_rejections_total {}",
            self.rejected_full.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "rewardkit_queue_seconds",
            "histogram",
            "Time a request waited before its batch started.",
        );
        lock(&self.queue_time).render(&mut out, "rewardkit_queue_seconds", "");
        family(
            &mut out,
            "rewardkit_batch_compute_seconds",
            "histogram",
            "Scoring time per batch.",
        );
        lock(&self.compute_time).render(&mut out, "rewardkit_batch_compute_seconds", "");
        family(
            &mut out,
            "rewardkit_batch_samples",
            "histogram",
            "Samples per batch (coalesced across requests).",
        );
        lock(&self.batch_size).render(&mut out, "rewardkit_batch_samples", "");
        family(
            &mut out,
            "rewardkit_non_score_substitutions_total",
            "counter",
            "Non-score rewards sent as the configured fallback number on /get_reward.",
        );
        let _ = writeln!(
            out,
            "rewardkit_non_score_substitutions_total {}",
            self.non_score_substituted.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "rewardkit_advantage_rows_total",
            "counter",
            "Rows answered by POST /v1/advantages, by estimator.",
        );
        for (estimator, n) in lock(&self.advantage_rows).iter() {
            let _ = writeln!(
                out,
                "rewardkit_advantage_rows_total{{estimator=\"{estimator}\"}} {n}"
            );
        }
        family(
            &mut out,
            "rewardkit_spec_reloads_total",
            "counter",
            "Spec reloads by result.",
        );
        for (result, n) in lock(&self.reloads).iter() {
            let _ = writeln!(
                out,
                "rewardkit_spec_reloads_total{{result=\"{result}\"}} {n}"
            );
        }
        family(
            &mut out,
            "rewardkit_spec_generation",
            "gauge",
            "Generation of the serving spec (1 at start, +1 per successful reload).",
        );
        let _ = writeln!(out, "rewardkit_spec_generation {generation}");
        family(
            &mut out,
            "rewardkit_ready",
            "gauge",
            "1 when the pool runs and the server takes work.",
        );
        let _ = writeln!(out, "rewardkit_ready {}", u8::from(ready));
        out
    }
}
