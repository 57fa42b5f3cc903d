//! `rewardkit serve`: the reward server (`rewardkit-server`) behind command-line flags.

use std::io::{IsTerminal as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use rewardkit::{Pipeline, Registry, Spec};
use rewardkit_server::{AppState, QuerySplit, ServerConfig};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The reward spec (TOML) to serve; re-read on SIGHUP and `POST /admin/reload`.
    #[arg(long, env = "REWARDKIT_SPEC")]
    spec: PathBuf,
    /// Address to bind. The default accepts local connections only; bind 0.0.0.0 behind a
    /// firewall or TLS proxy, with --api-key.
    #[arg(long, env = "REWARDKIT_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to bind; 0 picks a free one (the address is printed on stdout).
    #[arg(long, env = "REWARDKIT_PORT", default_value_t = 8000)]
    port: u16,
    /// Require `Authorization: Bearer <KEY>` on every endpoint but /health and /ready; also
    /// enables `POST /admin/reload`.
    #[arg(long, env = "REWARDKIT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Scoring threads (0: one per CPU).
    #[arg(long, env = "REWARDKIT_WORKERS", default_value_t = 0)]
    workers: usize,
    /// Threads for HTTP and JSON I/O (scoring has its own pool).
    #[arg(long, env = "REWARDKIT_HTTP_THREADS", default_value_t = 2)]
    http_threads: usize,
    /// Close a batch once it holds this many samples (requests are coalesced up to it).
    #[arg(long, default_value_t = 256)]
    max_batch_samples: usize,
    /// … or once its first request has waited this many milliseconds for company.
    #[arg(long, default_value_t = 2)]
    max_batch_wait_ms: u64,
    /// Samples allowed to wait in the queue; beyond it requests get 429 with Retry-After.
    #[arg(long, env = "REWARDKIT_MAX_QUEUE_SAMPLES", default_value_t = 65_536)]
    max_queue_samples: usize,
    /// Samples scored between two deadline checks.
    #[arg(long, default_value_t = 256)]
    chunk_samples: usize,
    /// Largest accepted request body in bytes (413 beyond).
    #[arg(long, default_value_t = 64 << 20)]
    max_body_bytes: usize,
    /// Most samples in one request (422 beyond).
    #[arg(long, default_value_t = 4096)]
    max_samples_per_request: usize,
    /// Longest accepted completion in bytes (422 beyond, naming the sample).
    #[arg(long, default_value_t = 1 << 20)]
    max_completion_bytes: usize,
    /// Most rows in one `POST /v1/advantages` request (422 beyond).
    #[arg(long, default_value_t = 1 << 20)]
    max_advantage_rows: usize,
    /// For a spec with `[combine] method = "constrained"`: save the multipliers the server
    /// carries between requests to the spec's `state_file` every N updates (0: only before a
    /// reload and at shutdown). Without it they live in memory only (GET /v1/multipliers).
    #[arg(long, value_name = "N")]
    save_multipliers_every: Option<u64>,
    /// Deadline of a request without an `x-deadline-ms` header, in milliseconds; samples not
    /// done by then are answered as timed out.
    #[arg(long, env = "REWARDKIT_DEADLINE_MS", default_value_t = 60_000)]
    deadline_ms: u64,
    /// Longest deadline a client may ask for, in milliseconds.
    #[arg(long, default_value_t = 600_000)]
    max_deadline_ms: u64,
    /// The whole request body must arrive within this many milliseconds (408 beyond).
    #[arg(long, default_value_t = 30_000)]
    body_timeout_ms: u64,
    /// The request line and headers must arrive within this many milliseconds, else the
    /// connection is closed (slow-header clients); idle keep-alive connections close after it too.
    #[arg(long, default_value_t = 30_000)]
    header_timeout_ms: u64,
    /// The number /get_reward sends for a sample without a score (OpenRLHF needs a float for
    /// every query). Each such sample is flagged in `extra_logs` (`outcome/<kind>`) and counted
    /// in /metrics. The spec's own `non_score` policy applies first.
    #[arg(
        long,
        env = "REWARDKIT_NON_SCORE_REWARD",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    non_score_reward: f64,
    /// Where the completion starts in an OpenRLHF query without a matching `prompts` entry: text
    /// after the last occurrence of any of these markers (repeat the flag; replaces the
    /// defaults: ChatML, Llama 3 and DeepSeek assistant headers).
    #[arg(long = "assistant-marker", value_name = "TEXT")]
    assistant_markers: Vec<String>,
    /// End-of-turn tokens stripped from the end of an OpenRLHF completion (repeat the flag;
    /// replaces the defaults: <|im_end|>, <|endoftext|>, <|eot_id|>, </s>, …).
    #[arg(long = "strip-suffix", value_name = "TEXT")]
    strip_suffixes: Vec<String>,
    /// Log format; the level comes from RUST_LOG (default `info`).
    #[arg(long, env = "REWARDKIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The validated configuration `run` works from.
struct Serve {
    address: SocketAddr,
    http_threads: usize,
    log_format: LogFormat,
    config: ServerConfig,
}

impl ServeArgs {
    fn validate(self) -> anyhow::Result<Serve> {
        if !self.non_score_reward.is_finite() {
            bail!("--non-score-reward must be a finite number (OpenRLHF needs floats)");
        }
        for (flag, value) in [
            ("--max-batch-samples", self.max_batch_samples),
            ("--max-queue-samples", self.max_queue_samples),
            ("--chunk-samples", self.chunk_samples),
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-samples-per-request", self.max_samples_per_request),
            ("--max-advantage-rows", self.max_advantage_rows),
            ("--http-threads", self.http_threads),
        ] {
            if value == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        if self.deadline_ms == 0 || self.body_timeout_ms == 0 || self.header_timeout_ms == 0 {
            bail!("--deadline-ms, --body-timeout-ms and --header-timeout-ms must be at least 1");
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            bail!("--api-key is empty; leave it out to serve without authentication");
        }
        let mut split = QuerySplit::default();
        if !self.assistant_markers.is_empty() {
            split.assistant_markers = self.assistant_markers;
        }
        if !self.strip_suffixes.is_empty() {
            split.strip_suffixes = self.strip_suffixes;
        }
        Ok(Serve {
            address: SocketAddr::new(self.host, self.port),
            http_threads: self.http_threads,
            log_format: self.log_format,
            config: ServerConfig {
                spec_path: Some(self.spec),
                max_body_bytes: self.max_body_bytes,
                max_samples_per_request: self.max_samples_per_request,
                max_completion_bytes: self.max_completion_bytes,
                max_advantage_rows: self.max_advantage_rows,
                save_multipliers_every: self.save_multipliers_every,
                max_batch_samples: self.max_batch_samples,
                max_batch_wait: Duration::from_millis(self.max_batch_wait_ms),
                max_queue_samples: self.max_queue_samples,
                chunk_samples: self.chunk_samples,
                workers: self.workers,
                default_deadline: Duration::from_millis(self.deadline_ms),
                max_deadline: Duration::from_millis(self.max_deadline_ms.max(self.deadline_ms)),
                body_timeout: Duration::from_millis(self.body_timeout_ms),
                header_timeout: Duration::from_millis(self.header_timeout_ms),
                api_key: self.api_key,
                split,
                non_score_reward: self.non_score_reward,
            },
        })
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second initialisation (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let serve = args.validate()?;
    init_logs(serve.log_format);
    let path = serve
        .config
        .spec_path
        .clone()
        .expect("the CLI always serves a spec file; this is a bug");
    let spec = Spec::from_path(&path)?;
    let pipeline = Pipeline::build(&spec).context("the spec is valid TOML but does not build")?;
    if serve.config.save_multipliers_every.is_some() {
        match &spec.combine {
            rewardkit::Combine::Constrained {
                state_file: Some(_),
                ..
            } => {}
            rewardkit::Combine::Constrained { .. } => bail!(
                "--save-multipliers-every: {} has no [combine] state_file to save to (create one with `rewardkit score --multipliers-out`)",
                path.display()
            ),
            _ => bail!(
                "--save-multipliers-every: {} has no constrained combination, so no multipliers",
                path.display()
            ),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(serve.http_threads)
        .thread_name("rewardkit-http")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let loopback = serve.address.ip().is_loopback();
    let authenticated = serve.config.api_key.is_some();
    let state = AppState::new(pipeline, Registry::default(), serve.config)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(serve.address)
            .await
            .with_context(|| format!("cannot bind {}", serve.address))?;
        let address = listener.local_addr().context("no local address")?;
        if !loopback && !authenticated {
            tracing::warn!(%address, "serving beyond localhost without --api-key");
        }
        tracing::info!(%address, spec = %path.display(), "serving");
        // The address on stdout, for scripts that start the server on port 0.
        println!("rewardkit serve: listening on http://{address}");
        let _ = std::io::stdout().flush();
        rewardkit_server::reload_on_sighup(state.clone()).context("cannot watch SIGHUP")?;
        rewardkit_server::serve(listener, state, rewardkit_server::shutdown_signal())
            .await
            .context("the server failed")
    })
}
