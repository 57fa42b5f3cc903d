//! The bounded queue in front of the scoring pool, and the batcher thread that coalesces
//! requests into batches.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rewardkit::{Pipeline, ScoredSample, Shaped};
use rewardkit_core::{Outcome, RewardOutput, Sample};
use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::multipliers::Carried;
use crate::ServerError;

/// The pipeline now serving and its generation (1 at start, +1 per reload).
pub(crate) type Serving = (Arc<Pipeline>, u64);

/// One request's samples on their way through the queue.
struct Job {
    samples: Vec<Sample>,
    /// The pipeline serving when the request arrived: a request is scored by one spec, even
    /// across a reload.
    serving: Serving,
    shared: Arc<JobShared>,
    deadline: Instant,
    enqueued: Instant,
    done: oneshot::Sender<()>,
}

/// What the batcher and the waiting handler share.
#[derive(Default)]
struct JobShared {
    /// One slot per sample, filled as chunks finish.
    slots: Mutex<Vec<Option<ScoredSample>>>,
    /// Set by the handler when it stops waiting (deadline, client gone): skip the rest.
    cancelled: AtomicBool,
    timing: Mutex<Timing>,
    /// The batch pass over this request's samples, for specs that need one (see [`shape`]).
    shaped: Mutex<Option<Result<Shaped, String>>>,
}

/// Where a request's time went.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Timing {
    /// From enqueueing to the start of its batch.
    pub queue: Duration,
    /// Scoring time of its batch.
    pub compute: Duration,
    /// Samples in its batch (its own and other requests').
    pub batch_samples: usize,
}

/// A request's results: every sample in order, those not done by the deadline as time-outs.
pub(crate) struct Scored {
    pub results: Vec<ScoredSample>,
    /// The pipeline that scored them (term names, generation).
    pub serving: Serving,
    pub timing: Timing,
    /// Samples answered as timed out because the request's deadline passed.
    pub timed_out: usize,
    /// The batch pass over the request (rewards that pool over groups or the request, and
    /// advantages), when the spec has one and every sample was scored in time.
    pub shaped: Option<Result<Shaped, String>>,
}

/// The batch pass of a spec that pools over groups or the batch, or asks for advantages
/// ([`Pipeline::needs_batch_pass`]): over exactly one request's samples, which is the batch its
/// client chose (send whole groups together). `None` for specs without one.
pub(crate) fn shape(
    pipeline: &Pipeline,
    samples: &[Sample],
    results: &[ScoredSample],
) -> Option<Result<Shaped, String>> {
    if !pipeline.needs_batch_pass() {
        return None;
    }
    let inputs: Vec<_> = samples.iter().map(|s| pipeline.shape_input(s)).collect();
    Some(pipeline.shape(results, &inputs).map_err(|e| e.to_string()))
}

/// A handle on a queued request; dropping it (the client went away) cancels what is left.
pub(crate) struct Ticket {
    shared: Arc<JobShared>,
    done: oneshot::Receiver<()>,
    deadline: Instant,
    serving: Serving,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.cancelled.store(true, Ordering::Relaxed);
    }
}

impl Ticket {
    /// Waits for the results or the deadline, whichever comes first; never longer.
    pub(crate) async fn wait(mut self) -> Scored {
        // Ends early on the deadline, or if the batcher dropped the job (shutdown): either way
        // the samples without a result are answered as time-outs, never waited on.
        let _ = tokio::time::timeout_at(self.deadline.into(), &mut self.done).await;
        self.shared.cancelled.store(true, Ordering::Relaxed);
        let slots = std::mem::take(&mut *lock(&self.shared.slots));
        let mut timed_out = 0;
        let results: Vec<ScoredSample> = slots
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| {
                    timed_out += 1;
                    ScoredSample {
                        reward: Outcome::TimedOut,
                        terms: self
                            .serving
                            .0
                            .terms()
                            .iter()
                            .map(|t| RewardOutput::all(Outcome::TimedOut, t.component_names.len()))
                            .collect(),
                    }
                })
            })
            .collect();
        let timing = *lock(&self.shared.timing);
        let shaped = lock(&self.shared.shaped).take();
        let mut results: Vec<ScoredSample> = results;
        if shaped.is_none() && Carried::applies(&self.serving.0) {
            // Constrained combination and no pass (deadline): the rewards at hand were combined
            // with the spec's starting multipliers, not the carried ones; say so instead.
            for result in &mut results {
                result.reward = Outcome::TimedOut;
            }
        }
        Scored {
            results,
            serving: self.serving.clone(),
            timing,
            timed_out,
            shaped,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Tuning of the batcher, from the server config.
#[derive(Clone, Debug)]
pub(crate) struct QueueConfig {
    pub max_batch_samples: usize,
    pub max_batch_wait: Duration,
    pub max_queue_samples: usize,
    pub chunk_samples: usize,
    pub workers: usize,
}

/// The queue, the batcher thread and the scoring pool.
pub(crate) struct Scheduler {
    sender: RwLock<Option<mpsc::Sender<Job>>>,
    queued: Arc<AtomicUsize>,
    /// Scoring requests between the start of their handling and their submission (reading and
    /// parsing their bodies): the batcher waits for company only while some are on the way.
    arriving: Arc<AtomicUsize>,
    capacity: usize,
    serving: Arc<RwLock<Serving>>,
    running: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The constrained combination's multipliers, carried between requests.
    pub(crate) carried: Arc<Carried>,
    /// The scoring pool, shared with the batcher.
    pool: Arc<rayon::ThreadPool>,
}

impl Scheduler {
    /// Starts the batcher thread and its pool.
    pub(crate) fn start(
        pipeline: Pipeline,
        config: QueueConfig,
        metrics: Arc<Metrics>,
        save_multipliers_every: Option<u64>,
    ) -> Result<Scheduler, ServerError> {
        let carried = Arc::new(Carried::new(&pipeline, save_multipliers_every));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.workers)
            .thread_name(|i| format!("rewardkit-score-{i}"))
            .build()
            .map_err(|e| ServerError::Internal {
                message: format!("cannot start the scoring pool: {e}"),
            })?;
        let pool = Arc::new(pool);
        let (sender, receiver) = mpsc::channel::<Job>();
        let queued = Arc::new(AtomicUsize::new(0));
        let arriving = Arc::new(AtomicUsize::new(0));
        let serving = Arc::new(RwLock::new((Arc::new(pipeline), 1)));
        let running = Arc::new(AtomicBool::new(true));
        let batcher = Batcher {
            receiver,
            queued: queued.clone(),
            arriving: arriving.clone(),
            running: running.clone(),
            config: config.clone(),
            metrics,
            pool: pool.clone(),
            carried: carried.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("rewardkit-batcher".into())
            .spawn(move || batcher.run())
            .map_err(|e| ServerError::Internal {
                message: format!("cannot start the batcher thread: {e}"),
            })?;
        Ok(Scheduler {
            sender: RwLock::new(Some(sender)),
            queued,
            arriving,
            capacity: config.max_queue_samples,
            serving,
            running,
            thread: Mutex::new(Some(thread)),
            carried,
            pool,
        })
    }

    /// The scoring pool (`ServerConfig::workers` threads). Other CPU work that may spread over
    /// threads (a large `POST /v1/advantages`; the batcher's batch pass) runs here through
    /// `install`, so the server's CPU use stays within the configured workers instead of also
    /// using rayon's global pool.
    pub(crate) fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }

    /// Marks a scoring request as on its way to the queue until the returned guard is dropped
    /// (by [`Scheduler::submit`], or when the request fails before it).
    pub(crate) fn arriving(&self) -> Arrival {
        self.arriving.fetch_add(1, Ordering::AcqRel);
        Arrival(self.arriving.clone())
    }

    /// Queues samples, or refuses at once (429) when the queue cannot take them all. The
    /// request's [`Arrival`] ends only once its job is in the channel, so the batcher always sees
    /// either the job or the arrival.
    pub(crate) fn submit(
        &self,
        samples: Vec<Sample>,
        deadline: Instant,
        arrival: Arrival,
    ) -> Result<Ticket, ServerError> {
        let result = self.enqueue(samples, deadline);
        drop(arrival);
        result
    }

    fn enqueue(&self, samples: Vec<Sample>, deadline: Instant) -> Result<Ticket, ServerError> {
        let n = samples.len();
        // Reserve room first, so the count never exceeds the capacity.
        let reserved = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued + n <= self.capacity).then_some(queued + n)
            });
        if let Err(queued) = reserved {
            return Err(ServerError::QueueFull {
                queued,
                capacity: self.capacity,
                retry_after_s: 1,
            });
        }
        let shared = Arc::new(JobShared {
            slots: Mutex::new(vec![None; n]),
            ..JobShared::default()
        });
        let serving = self.serving();
        let (done, receiver) = oneshot::channel();
        let job = Job {
            samples,
            serving: serving.clone(),
            shared: shared.clone(),
            deadline,
            enqueued: Instant::now(),
            done,
        };
        let sender = self.sender.read().unwrap_or_else(|p| p.into_inner());
        let sent = match sender.as_ref() {
            Some(sender) => sender.send(job).is_ok(),
            None => false,
        };
        if !sent {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(ServerError::ShuttingDown);
        }
        Ok(Ticket {
            shared,
            done: receiver,
            deadline,
            serving,
        })
    }

    /// Samples waiting.
    pub(crate) fn depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Whether the batcher thread runs.
    pub(crate) fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// The pipeline now serving and its generation.
    pub(crate) fn serving(&self) -> Serving {
        self.serving
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swaps in a new pipeline; batches already started finish with the old one.
    pub(crate) fn replace(&self, pipeline: Pipeline) -> u64 {
        let mut serving = self.serving.write().unwrap_or_else(|p| p.into_inner());
        self.carried.reload(&pipeline, serving.1 + 1);
        serving.1 += 1;
        serving.0 = Arc::new(pipeline);
        serving.1
    }

    /// Stops taking work, lets the batcher finish what is queued, and joins it.
    pub(crate) fn close(&self) {
        self.sender
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
            self.carried.shutdown();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.close();
    }
}

/// A scoring request on its way to the queue (see [`Scheduler::arriving`]).
pub(crate) struct Arrival(Arc<AtomicUsize>);

impl Drop for Arrival {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How often a waiting batcher re-checks whether requests are still on the way.
const ARRIVAL_POLL: Duration = Duration::from_micros(250);

struct Batcher {
    receiver: mpsc::Receiver<Job>,
    queued: Arc<AtomicUsize>,
    arriving: Arc<AtomicUsize>,
    running: Arc<AtomicBool>,
    config: QueueConfig,
    metrics: Arc<Metrics>,
    pool: Arc<rayon::ThreadPool>,
    carried: Arc<Carried>,
}

impl Batcher {
    fn run(self) {
        while let Ok(first) = self.receiver.recv() {
            let mut n = first.samples.len();
            let mut jobs = vec![first];
            let until = Instant::now() + self.config.max_batch_wait;
            // Adaptive window: whatever is already queued joins at once; then the batcher waits
            // (up to `max_batch_wait`) only while other requests are on their way — a lone
            // client's request is scored at once, concurrent ones are coalesced.
            while n < self.config.max_batch_samples {
                let next = match self.receiver.try_recv() {
                    Ok(job) => Ok(job),
                    Err(_) => {
                        let now = Instant::now();
                        if now >= until || self.arriving.load(Ordering::Acquire) == 0 {
                            break;
                        }
                        self.receiver.recv_timeout((until - now).min(ARRIVAL_POLL))
                    }
                };
                match next {
                    Ok(job) => {
                        n += job.samples.len();
                        jobs.push(job);
                    }
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            self.queued.fetch_sub(n, Ordering::AcqRel);
            // Requests queued across a reload are scored by the spec they arrived under.
            while !jobs.is_empty() {
                let generation = jobs[0].serving.1;
                let (now, later): (Vec<Job>, Vec<Job>) =
                    jobs.into_iter().partition(|j| j.serving.1 == generation);
                let n = now.iter().map(|j| j.samples.len()).sum();
                self.score(now, n);
                jobs = later;
            }
        }
        self.running.store(false, Ordering::Relaxed);
    }

    /// Scores one batch in chunks, skipping samples whose request gave up.
    fn score(&self, mut jobs: Vec<Job>, n: usize) {
        let start = Instant::now();
        let pipeline = jobs[0].serving.0.clone();
        let mut samples = Vec::with_capacity(n);
        // owner[i] = (job, index in job) of flat sample i.
        let mut owner = Vec::with_capacity(n);
        // Where each job's samples start in the flat list.
        let mut starts = Vec::with_capacity(jobs.len());
        for (j, job) in jobs.iter_mut().enumerate() {
            starts.push(samples.len());
            self.metrics.queued(start - job.enqueued);
            for (k, sample) in std::mem::take(&mut job.samples).into_iter().enumerate() {
                samples.push(sample);
                owner.push((j, k));
            }
        }
        let alive = |job: &Job| {
            !job.shared.cancelled.load(Ordering::Relaxed) && Instant::now() < job.deadline
        };
        let chunk = self.config.chunk_samples.max(1);
        let mut begin = 0;
        while begin < samples.len() {
            let end = (begin + chunk).min(samples.len());
            let wanted = owner[begin..end].iter().any(|(j, _)| alive(&jobs[*j]));
            if wanted {
                let results = self
                    .pool
                    .install(|| pipeline.score_batch(&samples[begin..end]));
                for (result, (j, k)) in results.into_iter().zip(&owner[begin..end]) {
                    if let Some(slot) = lock(&jobs[*j].shared.slots).get_mut(*k) {
                        *slot = Some(result);
                    }
                }
            }
            begin = end;
        }
        if pipeline.needs_batch_pass() || Carried::applies(&pipeline) {
            // Only requests whose every sample was scored; a request cut by its deadline keeps
            // its per-sample outcomes (its reward stays pending, or is a time-out under carried
            // multipliers). In queue order: carried multipliers are updated request after
            // request (see `multipliers`). Inside the scoring pool, which this thread waits on:
            // the estimators split inputs above 65,536 samples over the *current* rayon pool,
            // which from this thread would be rayon's global one (a thread per CPU, whatever
            // `workers` says).
            let generation = jobs[0].serving.1;
            // Borrowed apart: the batcher holds the queue's receiver, which is not `Sync`.
            let carried = &self.carried;
            self.pool.install(|| {
                for (j, job) in jobs.iter().enumerate() {
                    let results: Option<Vec<ScoredSample>> =
                        lock(&job.shared.slots).iter().cloned().collect();
                    if let Some(results) = results.filter(|r| !r.is_empty()) {
                        let own = &samples[starts[j]..starts[j] + results.len()];
                        #[cfg(test)]
                        lock(&tests::SHAPED_ON).push((
                            own.len(),
                            std::thread::current().name().map(str::to_owned),
                            rayon::current_num_threads(),
                        ));
                        *lock(&job.shared.shaped) =
                            carried.pass(&pipeline, generation, own, &results);
                    }
                }
            });
        }
        let compute = start.elapsed();
        self.metrics.batch(n, compute);
        for job in jobs {
            *lock(&job.shared.timing) = Timing {
                queue: start - job.enqueued,
                compute,
                batch_samples: n,
            };
            let _ = job.done.send(());
        }
        // Freeing the batch's strings is work too: on the pool, so the next batch starts now.
        self.pool.spawn(move || drop(samples));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use rewardkit::{Pipeline, Registry, Spec};
    use rewardkit_core::Sample;
    use serde_json::{json, Value};
    use tower::ServiceExt as _;

    use crate::{app, AppState, ServerConfig};

    /// Where the batcher's batch pass ran: per request its samples, the thread's name and the
    /// size of the rayon pool it ran in.
    pub(crate) static SHAPED_ON: Mutex<Vec<(usize, Option<String>, usize)>> =
        Mutex::new(Vec::new());

    /// A length penalty normalised per group, then GRPO advantages: cheap to score, with a
    /// pooled stage and an estimator that splits its input above 65,536 samples.
    const SPEC: &str = "[[term]]\nname = \"len\"\nkind = \"soft_overlong\"\n\
        transform = [{ kind = \"normalize\", scope = \"group\" }]\n\
        [term.options]\nmax_length = 30\ncache = 20\nunit = \"words\"\n\
        [advantages]\nestimator = \"grpo\"\n";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_batch_pass_runs_on_the_scoring_pool() {
        // Regression: the batch pass ran on the batcher thread, where the estimators' split
        // above 65,536 samples used rayon's global pool (one thread per CPU) instead of the
        // `workers` the server was given.
        let n = 70_001;
        let spec = Spec::from_toml_str(SPEC, "test.toml").unwrap();
        let registry = Registry::default();
        let pipeline = Pipeline::build_with(&spec, &registry).unwrap();
        let config = ServerConfig {
            workers: 3,
            max_samples_per_request: n,
            ..ServerConfig::default()
        };
        let router = app(AppState::new(pipeline, registry, config).unwrap());
        // Groups of 8 samples (the last one alone), completions of 0 to 36 words.
        let group = |i: usize| format!("g{}", i / 8);
        let completion = |i: usize| "w ".repeat((i * 7) % 37);
        let rows: Vec<Value> = (0..n)
            .map(|i| json!({"prompt": "p", "completion": completion(i), "group": group(i)}))
            .collect();
        let body = json!({ "samples": rows }).to_string();
        let request = Request::post("/v1/score")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "{:.300}", String::from_utf8_lossy(&bytes));

        let (thread, threads) = {
            let calls = SHAPED_ON.lock().unwrap();
            let (_, thread, threads) = calls
                .iter()
                .find(|(samples, _, _)| *samples == n)
                .expect("the request had its batch pass");
            (thread.clone().unwrap_or_default(), *threads)
        };
        assert!(thread.starts_with("rewardkit-score-"), "ran on {thread}");
        assert_eq!(threads, 3);

        // The same numbers as the library's batch pass over the same samples (the CLI's path).
        let pipeline = Pipeline::build_with(&spec, &Registry::default()).unwrap();
        let samples: Vec<Sample> = (0..n)
            .map(|i| Sample::new("p", completion(i)).with_group(group(i)))
            .collect();
        let scored = pipeline.score_batch(&samples);
        let inputs: Vec<_> = samples.iter().map(|s| pipeline.shape_input(s)).collect();
        let shaped = pipeline.shape(&scored, &inputs).unwrap();
        let advantages = shaped.advantages.expect("the spec has advantages");
        let reply: Value = serde_json::from_slice(&bytes).unwrap();
        let results = reply["results"].as_array().unwrap();
        assert_eq!(results.len(), n);
        let bits = |x: f64| x.is_finite().then(|| x.to_bits());
        let mut signal = 0;
        for (i, got) in results.iter().enumerate() {
            let want = shaped.rewards[i].value().map(f64::to_bits);
            assert_eq!(
                got["value"].as_f64().map(f64::to_bits),
                want,
                "reward [{i}]"
            );
            let got = got["advantage"].as_f64();
            assert_eq!(
                got.map(f64::to_bits),
                bits(advantages[i]),
                "advantage [{i}]"
            );
            signal += usize::from(got.is_some_and(|a| a != 0.0));
        }
        assert!(signal > n / 2, "the case has nonzero advantages: {signal}");
    }
}
