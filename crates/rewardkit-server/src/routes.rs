//! The HTTP side: state, router, middleware and handlers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rewardkit::{Pipeline, Registry, ScoredSample, Spec};
use rewardkit_core::{Outcome, RewardOutput};
use tracing::Instrument as _;

use crate::metrics::Metrics;
use crate::queue::{Arrival, QueueConfig, Scheduler, Scored};
use crate::wire;
use crate::{ServerConfig, ServerError};

/// The request header that sets a request's deadline in milliseconds.
pub const DEADLINE_HEADER: &str = "x-deadline-ms";
/// The request/response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Bodies above this size are parsed and answered on a blocking thread, not the runtime.
const INLINE_JSON_BYTES: usize = 64 << 10;

/// The server's shared state: configuration, the scheduler (queue, batcher, pool), metrics.
/// Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServerConfig,
    scheduler: Scheduler,
    metrics: Arc<Metrics>,
    registry: Registry,
    shutting_down: AtomicBool,
    reload: tokio::sync::Mutex<()>,
}

impl AppState {
    /// Starts the scoring pool and batcher over a built pipeline. `registry` is what reloads
    /// build new specs with.
    pub fn new(
        pipeline: Pipeline,
        registry: Registry,
        config: ServerConfig,
    ) -> Result<AppState, ServerError> {
        let metrics = Arc::new(Metrics::default());
        let scheduler = Scheduler::start(
            pipeline,
            QueueConfig {
                max_batch_samples: config.max_batch_samples.max(1),
                max_batch_wait: config.max_batch_wait,
                max_queue_samples: config.max_queue_samples.max(1),
                chunk_samples: config.chunk_samples.max(1),
                workers: config.workers,
            },
            metrics.clone(),
            config.save_multipliers_every,
        )?;
        Ok(AppState {
            inner: Arc::new(Inner {
                config,
                scheduler,
                metrics,
                registry,
                shutting_down: AtomicBool::new(false),
                reload: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Whether the server takes work: the pool runs and no shutdown has begun.
    pub fn is_ready(&self) -> bool {
        self.inner.scheduler.running() && !self.inner.shutting_down.load(Ordering::Relaxed)
    }

    /// Refuses new work from now on (503); requests already queued finish.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Closes the queue and waits for the batcher to finish what it holds. Blocks: call it from
    /// a blocking thread.
    pub fn close(&self) {
        self.begin_shutdown();
        self.inner.scheduler.close();
    }

    /// The generation of the serving spec (1 at start, +1 per successful reload).
    pub fn generation(&self) -> u64 {
        self.inner.scheduler.serving().1
    }

    /// Re-reads the spec file and swaps the new pipeline in; requests already queued finish
    /// under the spec they arrived with. On error the old spec keeps serving.
    pub async fn reload(&self) -> Result<u64, ServerError> {
        let _one_at_a_time = self.inner.reload.lock().await;
        let path = self
            .inner
            .config
            .spec_path
            .clone()
            .ok_or(ServerError::NoSpecFile)?;
        let state = self.clone();
        let built = tokio::task::spawn_blocking(move || {
            let spec = Spec::from_path(&path)?;
            Pipeline::build_with(&spec, &state.inner.registry)
        })
        .await
        .map_err(|e| ServerError::Internal {
            message: format!("the reload task failed: {e}"),
        })?;
        match built {
            Ok(pipeline) => {
                let generation = self.inner.scheduler.replace(pipeline);
                self.inner.metrics.reload(true);
                tracing::info!(generation, "spec reloaded");
                Ok(generation)
            }
            Err(e) => {
                self.inner.metrics.reload(false);
                tracing::warn!(error = %e, "spec reload failed; the previous spec keeps serving");
                Err(ServerError::Reload {
                    message: e.to_string(),
                })
            }
        }
    }

    fn refuse_if_shutting_down(&self) -> Result<(), ServerError> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(ServerError::ShuttingDown);
        }
        Ok(())
    }

    fn deadline(&self, headers: &HeaderMap) -> Result<Instant, ServerError> {
        let config = &self.inner.config;
        let wanted = match headers.get(DEADLINE_HEADER) {
            None => config.default_deadline,
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
                .ok_or_else(|| ServerError::BadHeader {
                    header: DEADLINE_HEADER,
                    message: "expected a whole number of milliseconds".into(),
                })?,
        };
        Ok(Instant::now() + wanted.min(config.max_deadline))
    }

    /// The prologue every scoring route shares: refuse while shutting down, read the deadline,
    /// announce the arrival to the batcher (so it waits for this request), read the body within
    /// its limit and parse it off the async runtime with `parse`. Returns the body's size too: it
    /// decides where the answer is encoded.
    async fn accept<T: Send + 'static>(
        &self,
        headers: &HeaderMap,
        body: Body,
        parse: fn(&[u8], &ServerConfig) -> Result<T, ServerError>,
    ) -> Result<(Instant, Arrival, usize, T), ServerError> {
        self.refuse_if_shutting_down()?;
        let deadline = self.deadline(headers)?;
        let arrival = self.inner.scheduler.arriving();
        let bytes = self.read_body(body).await?;
        let size = bytes.len();
        let parsing = self.clone();
        let parsed = json_work(size, move || parse(&bytes, &parsing.inner.config)).await??;
        Ok((deadline, arrival, size, parsed))
    }

    async fn read_body(&self, body: Body) -> Result<Bytes, ServerError> {
        let config = &self.inner.config;
        let limit = config.max_body_bytes;
        // A declared Content-Length over the limit is refused before reading a byte.
        if body.size_hint().lower() > limit as u64 {
            return Err(ServerError::BodyTooLarge { max: limit });
        }
        match tokio::time::timeout(config.body_timeout, axum::body::to_bytes(body, limit)).await {
            Err(_) => Err(ServerError::BodyTimeout {
                ms: config.body_timeout.as_millis(),
            }),
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => {
                let inner = e.into_inner();
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*inner);
                while let Some(error) = source {
                    if error.is::<http_body_util::LengthLimitError>() {
                        return Err(ServerError::BodyTooLarge { max: limit });
                    }
                    source = error.source();
                }
                Err(ServerError::BodyRead {
                    message: inner.to_string(),
                })
            }
        }
    }

    /// Queues samples and waits for them (or for the deadline).
    async fn score(
        &self,
        samples: Vec<rewardkit_core::Sample>,
        deadline: Instant,
        arrival: Arrival,
    ) -> Result<Scored, ServerError> {
        let ticket = self
            .inner
            .scheduler
            .submit(samples, deadline, arrival)
            .inspect_err(|e| {
                if matches!(e, ServerError::QueueFull { .. }) {
                    self.inner.metrics.rejected_full();
                }
            })?;
        let scored = ticket.wait().await;
        let names: Vec<String> = scored
            .serving
            .0
            .terms()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        self.inner.metrics.outcomes(&names, &scored.results);
        Ok(scored)
    }
}

/// Runs small JSON work inline and large JSON work on a blocking thread.
async fn json_work<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServerError> {
    if size <= INLINE_JSON_BYTES {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServerError::Internal {
            message: format!("a JSON task failed: {e}"),
        })
}

/// The router over `state`: every endpoint, authentication, request ids, logs and metrics.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/score", post(score))
        .route("/get_reward", post(get_reward))
        .route("/v1/advantages", post(advantages))
        .route("/v1/spec", get(spec))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(admin_reload))
        .route("/v1/multipliers", get(multipliers))
        .route("/admin/multipliers", post(admin_multipliers))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        // Bodies are read by the handlers with the configured limit and a time-out.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Constant-time comparison, so that the time to refuse a token says nothing about how much of
/// it was right (only its length can leak).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        difference |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    difference == 0
}

async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.inner.config.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.trim().as_bytes(), key.as_bytes()) {
            return ServerError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(given) = headers.get(REQUEST_ID_HEADER) {
        let ok = given.len() <= 128
            && given
                .as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b));
        if ok && !given.is_empty() {
            return given.clone();
        }
    }
    static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let boot = *BOOT.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("rk-{boot:x}-{n:x}"))
        .expect("hex digits make a valid header; this is a bug")
}

/// Request ids, a span per request, a log line per response and the request metrics.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(request.headers());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "request",
        id = %id.to_str().unwrap_or(""),
        method = %request.method(),
        route = %route
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let latency = start.elapsed();
    let status = response.status();
    state
        .inner
        .metrics
        .request(&route, status.as_u16(), latency);
    span.in_scope(|| {
        let ms = latency.as_secs_f64() * 1e3;
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), ms, "response");
        } else if status.is_client_error() {
            tracing::info!(status = status.as_u16(), ms, "response");
        } else {
            tracing::debug!(status = status.as_u16(), ms, "response");
        }
    });
    response
        .headers_mut()
        .insert(HeaderName::from_static(REQUEST_ID_HEADER), id);
    response
}

fn timing_headers(response: &mut Response, scored: &Scored) {
    let headers = response.headers_mut();
    let ms = |d: Duration| {
        HeaderValue::from_str(&format!("{:.3}", d.as_secs_f64() * 1e3))
            .expect("a number makes a valid header; this is a bug")
    };
    headers.insert("x-queue-time", ms(scored.timing.queue));
    headers.insert("x-compute-time", ms(scored.timing.compute));
    headers.insert(
        "x-batch-size",
        HeaderValue::from(scored.timing.batch_samples),
    );
    headers.insert("x-spec-generation", HeaderValue::from(scored.serving.1));
    headers.insert("x-timed-out", HeaderValue::from(scored.timed_out));
}

async fn score(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServerError> {
    let (deadline, arrival, size, samples) =
        state.accept(&headers, body, wire::parse_score).await?;
    if samples.is_empty() {
        let (pipeline, generation) = state.inner.scheduler.serving();
        let body = wire::ScoreResponse {
            pipeline: &pipeline,
            generation,
            results: &[],
            advantages: None,
        }
        .to_vec()
        .map_err(encode_error)?;
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let mut scored = state.score(samples, deadline, arrival).await?;
    let advantages = apply_shaping(&mut scored)?;
    let (scored, body) = json_work(size, move || {
        let written = wire::ScoreResponse {
            pipeline: &scored.serving.0,
            generation: scored.serving.1,
            results: &scored.results,
            advantages: advantages.as_deref(),
        }
        .to_vec();
        (scored, written)
    })
    .await?;
    let body = body.map_err(encode_error)?;
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    timing_headers(&mut response, &scored);
    Ok(response)
}

/// Puts the batch pass's rewards in place of the pending ones and returns the advantages, for
/// specs that have a batch pass; its error (e.g. a group-scope stage and no group ids) is a 422.
fn apply_shaping(scored: &mut Scored) -> Result<Option<Vec<f64>>, ServerError> {
    match scored.shaped.take() {
        None => Ok(None),
        Some(Err(message)) => Err(ServerError::shape("samples", message)),
        Some(Ok(shaped)) => {
            for (result, reward) in scored.results.iter_mut().zip(shaped.rewards) {
                result.reward = reward;
            }
            Ok(shaped.advantages)
        }
    }
}

fn encode_error(e: serde_json::Error) -> ServerError {
    ServerError::Internal {
        message: format!("cannot encode the response: {e}"),
    }
}

async fn get_reward(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServerError> {
    let (deadline, arrival, _, parsed) =
        state.accept(&headers, body, wire::parse_get_reward).await?;
    let split: Vec<_> = parsed.iter().map(|p| p.as_ref().ok().cloned()).collect();
    let samples: Vec<_> = split.iter().flatten().cloned().collect();
    let scored = if samples.is_empty() {
        let serving = state.inner.scheduler.serving();
        Scored {
            results: Vec::new(),
            serving,
            timing: Default::default(),
            timed_out: 0,
            shaped: None,
        }
    } else {
        let mut scored = state.score(samples, deadline, arrival).await?;
        apply_shaping(&mut scored)?;
        scored
    };
    // Put the unsplit queries back in their places as unscorable samples.
    let terms = scored.serving.0.terms();
    let mut done = scored.results.iter();
    let all: Vec<ScoredSample> = parsed
        .iter()
        .map(|p| match p {
            Ok(_) => done
                .next()
                .cloned()
                .expect("one result per queued sample; this is a bug"),
            Err(reason) => ScoredSample {
                reward: Outcome::unscorable(reason.clone()),
                terms: terms
                    .iter()
                    .map(|t| {
                        RewardOutput::all(
                            Outcome::unscorable("query not split"),
                            t.component_names.len(),
                        )
                    })
                    .collect(),
            },
        })
        .collect();
    let (body, substituted) =
        wire::get_reward_response(&scored.serving.0, &all, state.inner.config.non_score_reward);
    state.inner.metrics.substituted(substituted);
    let mut response = Json(body).into_response();
    timing_headers(&mut response, &scored);
    Ok(response)
}

/// `POST /v1/advantages` (see [`crate::advantages`]): no queue — the work is linear and small
/// next to parsing, so it is not batched or refused with 429 — and never on the async runtime
/// for large bodies. A large body is parsed on a blocking thread and its advantages computed on
/// the scoring pool (`install`), so `workers` bounds the CPU threads it uses; there it waits only
/// for a free pool thread (at most the scoring chunk in progress), not behind the sample queue.
/// A body of at most `INLINE_JSON_BYTES` (64 KiB) is answered inline: it holds fewer than 32,768
/// rows or steps (each takes at least two bytes), under the 65,536 at which the estimators split
/// work over threads, so it computes on the current thread alone.
async fn advantages(State(state): State<AppState>, body: Body) -> Result<Response, ServerError> {
    state.refuse_if_shutting_down()?;
    let bytes = state.read_body(body).await?;
    let answering = state.clone();
    let inline = bytes.len() <= INLINE_JSON_BYTES;
    let (body, rows, estimator) = json_work(bytes.len(), move || {
        let pool = (!inline).then(|| answering.inner.scheduler.pool());
        crate::advantages::answer(&bytes, &answering.inner.config, pool)
    })
    .await??;
    state.inner.metrics.advantage_rows(estimator, rows);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn spec(State(state): State<AppState>) -> Json<serde_json::Value> {
    let (pipeline, generation) = state.inner.scheduler.serving();
    let budget = pipeline.budget();
    let terms: Vec<serde_json::Value> = pipeline
        .terms()
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "kind": t.kind,
                "weight": t.weight,
                "non_score": t.policy,
                "components": t.component_names,
                "options": t.resolved_options,
            })
        })
        .collect();
    Json(serde_json::json!({
        "generation": generation,
        "source": pipeline.spec().source,
        "combine": pipeline.spec().combine,
        "budget": {
            "max_input_bytes": budget.max_input_bytes,
            "max_steps": budget.max_steps,
            "timeout_ms": budget.timeout.map(|t| t.as_millis() as u64),
        },
        "terms": terms,
        "description": pipeline.describe(),
        "get_reward": {
            "non_score_reward": state.inner.config.non_score_reward,
            "assistant_markers": state.inner.config.split.assistant_markers,
            "strip_suffixes": state.inner.config.split.strip_suffixes,
        },
    }))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.inner.metrics.render(
        state.inner.scheduler.depth(),
        state.generation(),
        state.is_ready(),
    );
    state.inner.scheduler.carried.render(&mut text);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn admin_reload(State(state): State<AppState>) -> Result<Response, ServerError> {
    if state.inner.config.api_key.is_none() {
        return Err(ServerError::AdminDisabled);
    }
    let generation = state.reload().await?;
    Ok(Json(serde_json::json!({ "generation": generation })).into_response())
}

/// `GET /v1/multipliers`: the carried Lagrange multipliers (see [`crate::multipliers`]).
async fn multipliers(State(state): State<AppState>) -> Result<Response, ServerError> {
    let view = state.inner.scheduler.carried.view()?;
    Ok(Json(view).into_response())
}

/// `POST /admin/multipliers`: replaces the carried state with the body (a state as `GET` shows
/// it under `state`, or as `rewardkit score --multipliers-out` writes it). Needs an API key.
async fn admin_multipliers(
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, ServerError> {
    if state.inner.config.api_key.is_none() {
        return Err(ServerError::AdminDisabled);
    }
    let bytes = state.read_body(body).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ServerError::BadJson {
            message: e.to_string(),
        })?;
    let new: rewardkit_shape::LagrangeState =
        serde_json::from_value(value).map_err(|e| ServerError::shape("(body)", e.to_string()))?;
    let view = state.inner.scheduler.carried.replace(new)?;
    tracing::info!("multipliers replaced through /admin/multipliers");
    Ok(Json(view).into_response())
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn not_found(method: Method, uri: Uri) -> ServerError {
    ServerError::NotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
