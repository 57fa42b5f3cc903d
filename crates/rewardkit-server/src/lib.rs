//! `rewardkit-server`: an HTTP reward server over a built [`rewardkit::Pipeline`], for RL
//! trainers that ask for rewards millions of times per run from many workers at once.
//!
//! # Endpoints
//!
//! | endpoint            | what                                                                 |
//! |---------------------|----------------------------------------------------------------------|
//! | `POST /v1/score`    | `{"samples": [Sample…]}` → per sample the combined reward, every term and component, each with its outcome kind, in order |
//! | `POST /get_reward`  | OpenRLHF's protocol: `{"query", "prompts", "labels"}` → `{"rewards", "scores", "extra_logs"}` |
//! | `GET /health`       | liveness: the process answers                                         |
//! | `GET /ready`        | readiness: the scoring pool runs and no shutdown has begun            |
//! | `GET /metrics`      | Prometheus text: requests, latencies, queue depth and time, batch sizes, outcomes by term, kind and reason |
//! | `POST /v1/advantages` | rewards (+ group ids, step lists) → advantages with the estimators and options of `rewardkit advantages` |
//! | `GET /v1/spec`      | what the server computes (terms, weights, policies, budget)           |
//! | `POST /admin/reload`| re-reads the spec file (needs an API key); SIGHUP does the same       |
//! | `GET /v1/multipliers` | a constrained combination's Lagrange multipliers, carried between requests |
//! | `POST /admin/multipliers` | replaces them (needs an API key)                                |
//!
//! # Execution: a queue, a batcher, a pool
//!
//! Scoring is CPU work and never runs on the async runtime (Architecture Invariant 4). A handler
//! parses its body, puts the samples in a **bounded queue** and awaits a oneshot signal. One
//! batcher thread takes the first waiting request, then everything else already queued, then
//! waits up to `max_batch_wait` (a few milliseconds) for more, until `max_batch_samples` — so
//! OpenRLHF's one-sample-per-request traffic from hundreds of rollout workers is scored in
//! batches, the way text-embeddings-inference batches across clients. The batch is scored on a
//! dedicated rayon pool in chunks of `chunk_samples`; a large request is spread over every
//! worker by [`rewardkit::Pipeline::score_batch`]. Because a sample's reward does not depend on
//! its batch (Architecture Invariant 2), coalescing changes latency, never results.
//!
//! The queue is bounded in *samples*, not requests: when it is full the request is refused at
//! once with **429** and `Retry-After`, instead of queueing without end. Every request has a
//! deadline (`x-deadline-ms`, else the default). Between chunks the batcher skips samples whose
//! request is past its deadline or whose client went away, and a handler never waits past its
//! deadline: it answers the samples that are done and a typed `timed_out` outcome for the rest.
//!
//! # Specs with a batch pass
//!
//! A spec whose reward pools over groups or the batch (group normalisation, some combinations)
//! or that asks for `[advantages]` needs [`rewardkit::Pipeline::shape`] over a whole batch. The
//! server takes **one request as that batch** — a trainer sends a step's groups together — and
//! runs the pass in the batcher after the request's samples are scored (coalescing with other
//! requests changes nothing: the pass sees only this request's samples), inside the scoring pool,
//! so the estimators' split of a request above 65,536 samples over threads stays within
//! `workers` instead of spreading over rayon's global pool. `/v1/score` then carries
//! the shaped reward and, with `[advantages]`, an `advantage` per sample; a pass that cannot run
//! (a group-scope stage and no group ids) is a 422. A request cut by its deadline keeps its
//! per-sample outcomes and no pass.
//!
//! # Constrained combinations: multipliers carried between requests
//!
//! A spec with `[combine] method = "constrained"` gets a pass per request too: its rewards are
//! combined with multipliers the server carries from request to request, each request applying
//! one update from its constraint means, in queue order, under one lock — none is lost, and a
//! request's rewards do not depend on coalescing. `GET /v1/multipliers` shows them,
//! `POST /admin/multipliers` replaces them, a reload keeps them when the constraints are
//! unchanged, and `ServerConfig::save_multipliers_every` persists them to the spec's
//! `state_file`. The details are in the `multipliers` module.
//!
//! # Non-scores on the wire
//!
//! A sample that could not be scored is never a number in `/v1/score`: its `value` is `null` and
//! its `kind` says why (`unscorable`, `timed_out`, `failed`). NaN and infinities are turned into
//! `failed` in one place ([`wire`](crate)'s `WireOutcome::new`). OpenRLHF, however, needs a float
//! for every query: `/get_reward` sends [`ServerConfig::non_score_reward`] for non-scores
//! (configurable; the spec's own `non_score` policy applies first), counts each substitution in
//! `rewardkit_non_score_substitutions_total`, and reports every sample's outcome kind in
//! `extra_logs` as `outcome/scored`, `outcome/unscorable`, `outcome/timed_out`, `outcome/failed`
//! (1.0 or 0.0), which OpenRLHF averages into its logged metrics — a non-score is visible, never
//! silently 0.
//!
//! # Splitting OpenRLHF's `query`
//!
//! OpenRLHF sends the decoded prompt and response as one string. See [`QuerySplit`]: the prompt
//! given in `prompts[i]` is cut off when present, else the text after the last assistant marker
//! of the chat template is the completion, else the sample is unscorable (`query not split`).
//!
//! # Safety and operations
//!
//! Body size (413), samples per request and completion length (422) are limited; bodies must
//! arrive within a time-out (408, against slow-body clients); malformed JSON is 400 and a wrong
//! shape 422, with a message naming the field and index. Status codes come from one function,
//! [`ServerError::status`]. An optional bearer token guards every endpoint but `/health` and
//! `/ready`, compared in constant time. Every response carries an `x-request-id` (the client's,
//! or a fresh one), scoring responses `x-queue-time` / `x-compute-time` (ms), `x-batch-size` and
//! `x-spec-generation`. A reload builds the new pipeline off the runtime and swaps it in; a
//! request is always scored by the spec it arrived under. [`serve`] shuts down gracefully: it
//! stops accepting, answers 503 to new requests on open connections, finishes in-flight ones,
//! then drains the queue. TLS is left to a reverse proxy (see the README).

#![deny(missing_docs)]

mod advantages;
mod config;
mod direct;
mod error;
mod metrics;
mod multipliers;
mod queue;
mod routes;
mod wire;

use std::future::Future;

pub use config::{QuerySplit, ServerConfig};
pub use error::ServerError;
pub use routes::{app, AppState, DEADLINE_HEADER, REQUEST_ID_HEADER};

/// Serves `state` on `listener` until `shutdown` resolves, then shuts down gracefully: no new
/// connections, 503 for new requests, in-flight requests finished, the queue drained.
///
/// Each connection is HTTP/1.1 (what OpenRLHF's `requests` and every trainer client speak) with a
/// header-read time-out ([`ServerConfig::header_timeout`]): a client that opens a connection and
/// trickles its request line and headers (slowloris) is disconnected, as is a keep-alive
/// connection idle for that long. Bodies have their own time-out (408).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = app(state.clone());
    let header_timeout = state.config().header_timeout;
    // `stop` tells connections to finish; each holds a `closed` receiver until it ends.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (closed_tx, closed_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        let closed = closed_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let connection =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    changed = stop.changed(), if !stopping => {
                        stopping = true;
                        if changed.is_ok() {
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            drop(closed);
        });
    }
    tracing::info!("shutting down: finishing in-flight requests");
    state.begin_shutdown();
    drop(listener);
    let _ = stop_tx.send(true);
    drop(closed_rx);
    closed_tx.closed().await;
    let closing = state.clone();
    let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    tracing::info!("stopped");
    Ok(())
}

/// What `POST /v1/score` answers for `body`, computed in process: the same parsing (and errors),
/// the same scoring and the same JSON, without HTTP, queue or batcher; scoring runs on the
/// caller's rayon pool, and `generation` is reported as 1. A constrained combination uses the
/// spec's starting multipliers here (nothing is carried between calls). For embedding the wire
/// format, and for measuring what HTTP adds (`examples/http_overhead.rs`).
pub fn score_body(
    pipeline: &rewardkit::Pipeline,
    body: &[u8],
    config: &ServerConfig,
) -> Result<Vec<u8>, ServerError> {
    let samples = wire::parse_score(body, config)?;
    let mut results = pipeline.score_batch(&samples);
    let advantages = match queue::shape(pipeline, &samples, &results) {
        None => None,
        Some(Err(message)) => return Err(ServerError::shape("samples", message)),
        Some(Ok(shaped)) => {
            for (result, reward) in results.iter_mut().zip(shaped.rewards) {
                result.reward = reward;
            }
            shaped.advantages
        }
    };
    wire::ScoreResponse {
        pipeline,
        generation: 1,
        results: &results,
        advantages: advantages.as_deref(),
    }
    .to_vec()
    .map_err(|e| ServerError::Internal {
        message: format!("cannot encode the response: {e}"),
    })
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Reloads the spec on every SIGHUP (Unix), for as long as the runtime lives. Errors are logged;
/// the previous spec keeps serving.
pub fn reload_on_sighup(state: AppState) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while signal.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the spec");
                let _ = state.reload().await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = state;
    Ok(())
}
