//! In-process tests of every endpoint, status code and error, through `app()` and `oneshot`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use rewardkit::{BuiltTerm, Pipeline, Registry, Spec};
use rewardkit_core::{Meter, Outcome, Reward, RewardOutput, Sample};
use rewardkit_server::{app, AppState, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt as _;

const MATH_SPEC: &str = include_str!("../../../examples/math-rl.toml");

/// A test term that sleeps `ms` per sample, then scores 1.
struct Sleep(u64);

impl Reward for Sleep {
    fn kind(&self) -> &str {
        "sleep"
    }
    fn score(&self, _: &Sample, _: &mut Meter) -> RewardOutput {
        std::thread::sleep(Duration::from_millis(self.0));
        Outcome::scored(1.0).into()
    }
}

/// A broken test term that returns NaN, bypassing `Outcome::scored`.
struct Nan;

impl Reward for Nan {
    fn kind(&self) -> &str {
        "nan"
    }
    fn score(&self, _: &Sample, _: &mut Meter) -> RewardOutput {
        Outcome::Scored { value: f64::NAN }.into()
    }
}

fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.register("sleep", "test: sleeps `ms` per sample", |options| {
        let ms = options.get("ms").and_then(|v| v.as_integer()).unwrap_or(0) as u64;
        Ok(BuiltTerm {
            reward: Box::new(Sleep(ms)),
            resolved_options: format!("ms = {ms}"),
        })
    });
    registry.register("nan", "test: returns NaN", |_| {
        Ok(BuiltTerm {
            reward: Box::new(Nan),
            resolved_options: String::new(),
        })
    });
    registry
}

fn state_with(spec: &str, config: ServerConfig) -> AppState {
    let spec = Spec::from_toml_str(spec, "test.toml").unwrap();
    let registry = registry();
    let pipeline = Pipeline::build_with(&spec, &registry).unwrap();
    AppState::new(
        pipeline,
        registry,
        ServerConfig {
            workers: 2,
            ..config
        },
    )
    .unwrap()
}

fn math_state() -> AppState {
    state_with(MATH_SPEC, ServerConfig::default())
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no header {name}"))
            .to_str()
            .unwrap()
    }
}

async fn send(
    app: &Router,
    method: &str,
    path: &str,
    body: impl Into<Body>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn post(app: &Router, path: &str, body: &Value) -> Reply {
    send(app, "POST", path, body.to_string(), &[]).await
}

/// The example rollouts that are single samples (rows with several completions are a data-file
/// convention, expanded by `rewardkit score`, not a sample).
fn rollouts() -> Vec<Value> {
    let rows: Vec<Value> = include_str!("../../../examples/rollouts.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|row: &Value| serde_json::from_value::<Sample>(row.clone()).is_ok())
        .collect();
    assert!(rows.len() >= 5, "the example has single-sample rollouts");
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_spec_and_not_found() {
    let state = math_state();
    let app = app(state.clone());
    let reply = send(&app, "GET", "/health", Body::empty(), &[]).await;
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (StatusCode::OK, "ok\n")
    );
    assert!(reply.headers.contains_key("x-request-id"));
    assert_eq!(
        send(&app, "GET", "/ready", Body::empty(), &[]).await.status,
        StatusCode::OK
    );

    let spec = send(&app, "GET", "/v1/spec", Body::empty(), &[])
        .await
        .json();
    let names: Vec<&str> = spec["terms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["correct", "format", "overlong"]);
    assert_eq!(spec["generation"], 1);
    assert_eq!(spec["budget"]["timeout_ms"], 1000);

    let reply = send(&app, "GET", "/nope", Body::empty(), &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["error"]["code"], "not_found");

    let reply = send(
        &app,
        "GET",
        "/health",
        Body::empty(),
        &[("x-request-id", "abc-1")],
    )
    .await;
    assert_eq!(reply.header("x-request-id"), "abc-1");

    // Shutting down: not ready, and new scoring requests are refused with 503 + Retry-After.
    state.begin_shutdown();
    let reply = send(&app, "GET", "/ready", Body::empty(), &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let reply = post(
        &app,
        "/v1/score",
        &json!({"samples": [{"completion": "x"}]}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header("retry-after"), "1");
    assert_eq!(reply.json()["error"]["code"], "shutting_down");
    assert_eq!(
        send(&app, "GET", "/health", Body::empty(), &[])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_match_the_pipeline_and_batched_equals_single() {
    let app = app(math_state());
    let samples = rollouts();
    let all = post(&app, "/v1/score", &json!({ "samples": samples })).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    for header in [
        "x-queue-time",
        "x-compute-time",
        "x-batch-size",
        "x-spec-generation",
    ] {
        assert!(all.headers.contains_key(header), "{header}");
    }
    let all = all.json();
    let results = all["results"].as_array().unwrap();
    assert_eq!(results.len(), samples.len());

    // Against the pipeline in process.
    let pipeline = Pipeline::build(&Spec::from_toml_str(MATH_SPEC, "m.toml").unwrap()).unwrap();
    let typed: Vec<Sample> = samples
        .iter()
        .map(|s| serde_json::from_value(s.clone()).unwrap())
        .collect();
    let expected = pipeline.score_batch(&typed);
    for (i, (got, want)) in results.iter().zip(&expected).enumerate() {
        assert_eq!(got["kind"], want.reward.kind().as_str(), "sample {i}");
        assert_eq!(got["value"].as_f64(), want.reward.value(), "sample {i}");
        let terms = got["terms"].as_array().unwrap();
        assert_eq!(terms.len(), 3);
        for (term, output) in terms.iter().zip(&want.terms) {
            assert_eq!(term["value"].as_f64(), output.outcome.value(), "sample {i}");
            assert_eq!(term["kind"], output.outcome.kind().as_str(), "sample {i}");
        }
    }

    // Batched == single: each sample alone gives the identical JSON.
    for (i, sample) in samples.iter().enumerate() {
        let one = post(&app, "/v1/score", &json!({ "samples": [sample] }))
            .await
            .json();
        assert_eq!(one["results"][0], results[i], "sample {i}");
    }

    let empty = post(&app, "/v1/score", &json!({"samples": []})).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.json()["results"], json!([]));
}

/// One bad request: path, body, expected status, error code and a piece of the message.
async fn check(app: &Router, path: &str, body: &str, status: u16, code: &str, says: &str) {
    let reply = send(app, "POST", path, body.to_owned(), &[]).await;
    assert_eq!(
        reply.status.as_u16(),
        status,
        "{path} {body}: {}",
        reply.text
    );
    let error = &reply.json()["error"];
    assert_eq!(error["code"], code, "{path} {body}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(says),
        "{path} {body}: {message:?} lacks {says:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field() {
    let app = app(state_with(
        MATH_SPEC,
        ServerConfig {
            max_samples_per_request: 3,
            max_completion_bytes: 10,
            max_body_bytes: 1000,
            ..ServerConfig::default()
        },
    ));
    let s = "/v1/score";
    check(&app, s, "{", 400, "bad_json", "EOF while parsing").await;
    check(&app, s, "", 400, "bad_json", "line 1").await;
    check(
        &app,
        s,
        "[]",
        422,
        "bad_shape",
        "`(body)`: expected an object",
    )
    .await;
    check(&app, s, "{}", 422, "bad_shape", "`samples`: missing").await;
    check(
        &app,
        s,
        r#"{"samples":3}"#,
        422,
        "bad_shape",
        "`samples`: expected an array, found a number",
    )
    .await;
    check(
        &app,
        s,
        r#"{"samples":[],"x":1}"#,
        422,
        "bad_shape",
        "`x`: unknown field",
    )
    .await;
    check(
        &app,
        s,
        r#"{"samples":[7]}"#,
        422,
        "bad_shape",
        "`samples[0]`: expected a sample object",
    )
    .await;
    check(
        &app,
        s,
        r#"{"samples":[{"prompt":"q"}]}"#,
        422,
        "bad_shape",
        "`samples[0].completion`: missing",
    )
    .await;
    check(
        &app,
        s,
        r#"{"samples":[{"completion":"a"},{"completion":5}]}"#,
        422,
        "bad_shape",
        "`samples[1].completion`: expected a string",
    )
    .await;
    check(
        &app,
        s,
        r#"{"samples":[{"completion":"a","prompt":true}]}"#,
        422,
        "bad_shape",
        "`samples[0].prompt`",
    )
    .await;
    check(
        &app,
        s,
        r#"{"samples":[{"completion":"a","group":3}]}"#,
        422,
        "bad_shape",
        "`samples[0]`: invalid type",
    )
    .await;
    check(
        &app,
        s,
        r#"{"samples":[{"completion":[1]}]}"#,
        422,
        "bad_shape",
        "`samples[0].completion`: expected a string, a message",
    )
    .await;
    check(
        &app,
        s,
        r#"{"samples":[{"completion":"a","prompt":[1]}]}"#,
        422,
        "bad_shape",
        "`samples[0].prompt`: expected a string",
    )
    .await;
    check(&app, s, r#"{"samples":[{"completion":"a"},{"completion":"b"},{"completion":"c"},{"completion":"d"}]}"#, 422, "too_many_samples", "4 samples in one request; the limit is 3").await;
    check(
        &app,
        s,
        r#"{"samples":[{"completion":"a"},{"completion":"0123456789x"}]}"#,
        422,
        "completion_too_long",
        "`samples[1].completion`: the completion is 11 bytes",
    )
    .await;
    let big = format!(r#"{{"samples":[{{"completion":"{}"}}]}}"#, "a".repeat(2000));
    check(&app, s, &big, 413, "body_too_large", "limit of 1000 bytes").await;

    let g = "/get_reward";
    check(&app, g, "{}", 422, "bad_shape", "`query`: missing").await;
    check(
        &app,
        g,
        r#"{"query":"q"}"#,
        422,
        "bad_shape",
        "`query`: expected an array, found a string",
    )
    .await;
    check(
        &app,
        g,
        r#"{"query":["q",1]}"#,
        422,
        "bad_shape",
        "`query[1]`: expected a string, found a number",
    )
    .await;
    check(
        &app,
        g,
        r#"{"query":["q"],"prompts":["a","b"]}"#,
        422,
        "bad_shape",
        "`prompts`: has 2 entries but `query` has 1",
    )
    .await;
    check(
        &app,
        g,
        r#"{"query":["q"],"labels":[]}"#,
        422,
        "bad_shape",
        "`labels`: has 0 entries",
    )
    .await;
    check(
        &app,
        g,
        r#"{"query":["q"],"prompts":[3]}"#,
        422,
        "bad_shape",
        "`prompts[0]`: expected a string",
    )
    .await;
    check(
        &app,
        g,
        r#"{"query":["qq 0123456789x"],"prompts":["qq"]}"#,
        422,
        "completion_too_long",
        "`query[0]`",
    )
    .await;
    check(
        &app,
        g,
        r#"{"query":["a","b","c","d"]}"#,
        422,
        "too_many_samples",
        "`query`: 4 samples",
    )
    .await;

    let reply = send(
        &app,
        "POST",
        s,
        r#"{"samples":[]}"#,
        &[("x-deadline-ms", "soon")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("x-deadline-ms"));

    let reply = send(&app, "GET", s, Body::empty(), &[]).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_reward_speaks_openrlhf() {
    let app = app(math_state());
    let prompt = "<|im_start|>user\nWhat is 6 * 7?<|im_end|>\n<|im_start|>assistant\n";
    let good = "<think>6*7=42</think>\n#### 42<|im_end|><|endoftext|>";
    let wrong = "<think>6*7=41</think>\n#### 41<|im_end|>";
    let body = json!({
        "query": [format!("{prompt}{good}"), format!("{prompt}{wrong}"), "no marker at all", format!("<s>{prompt}{good}")],
        "prompts": [prompt, prompt, "absent", prompt],
        "labels": ["42", "42", "42", "42"],
    });
    let reply = post(&app, "/get_reward", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let out = reply.json();
    // 1.0 × correct + 0.2 × format + 0.5 × overlong (0: short).
    assert_eq!(out["rewards"], json!([1.2, 0.2, 0.0, 1.2]));
    assert_eq!(out["scores"], out["rewards"]);
    let logs = &out["extra_logs"];
    assert_eq!(logs["correct"], json!([1.0, 0.0, 0.0, 1.0]));
    assert_eq!(logs["outcome/scored"], json!([1.0, 1.0, 0.0, 1.0]));
    assert_eq!(logs["outcome/unscorable"], json!([0.0, 0.0, 1.0, 0.0]));
    assert_eq!(logs["outcome/timed_out"], json!([0.0, 0.0, 0.0, 0.0]));
    assert_eq!(logs["outcome/failed"], json!([0.0, 0.0, 0.0, 0.0]));

    // Without prompts, the ChatML assistant marker splits; without labels, GSM8K is unscorable
    // and the configured fallback (not a silent score) goes on the wire.
    let app = app_with_fallback(-5.0);
    let reply = post(
        &app,
        "/get_reward",
        &json!({"query": [format!("{prompt}{good}")]}),
    )
    .await;
    let out = reply.json();
    assert_eq!(out["rewards"], json!([-5.0]));
    assert_eq!(out["extra_logs"]["outcome/unscorable"], json!([1.0]));
    let reply = post(
        &app,
        "/get_reward",
        &json!({"query": [format!("{prompt}{good}")], "labels": ["42"]}),
    )
    .await;
    assert_eq!(reply.json()["rewards"], json!([1.2]));
    let metrics = send(&app, "GET", "/metrics", Body::empty(), &[]).await.text;
    assert!(
        metrics.contains("rewardkit_non_score_substitutions_total 1\n"),
        "{metrics}"
    );

    let reply = post(&app, "/get_reward", &json!({"query": []})).await;
    assert_eq!(
        reply.json(),
        json!({"rewards": [], "scores": [], "extra_logs": {
        "correct": [], "format": [], "overlong": [], "outcome/scored": [], "outcome/unscorable": [],
        "outcome/timed_out": [], "outcome/failed": []}})
    );
}

fn app_with_fallback(value: f64) -> Router {
    app(state_with(
        MATH_SPEC,
        ServerConfig {
            non_score_reward: value,
            ..ServerConfig::default()
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_never_reaches_the_wire() {
    let spec = "[[term]]\nname = \"broken\"\nkind = \"nan\"\n";
    let app = app(state_with(spec, ServerConfig::default()));
    let reply = post(
        &app,
        "/v1/score",
        &json!({"samples": [{"completion": "x"}]}),
    )
    .await;
    let result = &reply.json()["results"][0];
    assert_eq!(result["value"], Value::Null);
    assert_eq!(result["kind"], "failed");
    assert_eq!(result["terms"][0]["kind"], "failed");
    let reply = post(
        &app,
        "/get_reward",
        &json!({"query": ["<|im_start|>assistant\nx"]}),
    )
    .await;
    assert_eq!(reply.json()["rewards"], json!([0.0]));
    assert_eq!(reply.json()["extra_logs"]["outcome/failed"], json!([1.0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication() {
    let app = app(state_with(
        MATH_SPEC,
        ServerConfig {
            api_key: Some("s3cret".into()),
            ..ServerConfig::default()
        },
    ));
    let body = r#####"{"samples":[{"completion":"#### 1","reference":"1"}]}"#####;
    for (headers, status) in [
        (vec![], 401),
        (vec![("authorization", "Bearer wrong")], 401),
        (vec![("authorization", "Bearer s3cre")], 401),
        (vec![("authorization", "Bearer s3cret!")], 401),
        (vec![("authorization", "s3cret")], 401),
        (vec![("authorization", "Bearer s3cret")], 200),
    ] {
        let reply = send(&app, "POST", "/v1/score", body, &headers).await;
        assert_eq!(reply.status.as_u16(), status, "{headers:?}");
        if status == 401 {
            assert_eq!(reply.header("www-authenticate"), "Bearer");
            assert_eq!(reply.json()["error"]["code"], "unauthorized");
        }
    }
    for path in ["/v1/spec", "/metrics"] {
        assert_eq!(
            send(&app, "GET", path, Body::empty(), &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    for path in ["/health", "/ready"] {
        assert_eq!(
            send(&app, "GET", path, Body::empty(), &[]).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_spec_and_keeps_the_old_one_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, "[[term]]\nname = \"a\"\nkind = \"gsm8k\"\n").unwrap();
    let spec = std::fs::read_to_string(&path).unwrap();
    let config = ServerConfig {
        spec_path: Some(path.clone()),
        api_key: Some("k".into()),
        ..ServerConfig::default()
    };
    let app = app(state_with(&spec, config));
    let auth = [("authorization", "Bearer k")];
    let body = r#####"{"samples":[{"completion":"#### 3","reference":"3"}]}"#####;

    let reply = send(&app, "POST", "/v1/score", body, &auth).await.json();
    assert_eq!(
        (
            reply["generation"].clone(),
            reply["results"][0]["value"].clone()
        ),
        (json!(1), json!(1.0))
    );

    std::fs::write(
        &path,
        "[[term]]\nname = \"b\"\nkind = \"gsm8k\"\nweight = 2.0\n",
    )
    .unwrap();
    assert_eq!(
        send(&app, "POST", "/admin/reload", Body::empty(), &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let reply = send(&app, "POST", "/admin/reload", Body::empty(), &auth).await;
    assert_eq!(
        (reply.status, reply.json()),
        (StatusCode::OK, json!({"generation": 2}))
    );
    let reply = send(&app, "POST", "/v1/score", body, &auth).await;
    assert_eq!(reply.header("x-spec-generation"), "2");
    let reply = reply.json();
    assert_eq!(
        (
            reply["results"][0]["value"].clone(),
            reply["results"][0]["terms"][0]["name"].clone()
        ),
        (json!(2.0), json!("b"))
    );

    std::fs::write(&path, "[[term]]\nname = \"c\"\nkind = \"no_such_kind\"\n").unwrap();
    let reply = send(&app, "POST", "/admin/reload", Body::empty(), &auth).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.text.contains("no_such_kind"), "{}", reply.text);
    let reply = send(&app, "POST", "/v1/score", body, &auth).await.json();
    assert_eq!(reply["generation"], 2);
    let metrics = send(&app, "GET", "/metrics", Body::empty(), &auth)
        .await
        .text;
    assert!(
        metrics.contains("rewardkit_spec_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rewardkit_spec_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );

    // Without an API key the admin endpoint is off; without a spec file there is nothing to reload.
    let app = app_with_fallback(0.0);
    let reply = send(&app, "POST", "/admin/reload", Body::empty(), &[]).await;
    assert_eq!(
        (reply.status, reply.json()["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("admin_disabled"))
    );
    let state = state_with(
        &spec,
        ServerConfig {
            api_key: Some("k".into()),
            ..ServerConfig::default()
        },
    );
    let reply = send(
        &rewardkit_server::app(state),
        "POST",
        "/admin/reload",
        Body::empty(),
        &auth,
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
}

const SLOW_SPEC: &str = "[[term]]\nname = \"slow\"\nkind = \"sleep\"\n[term.options]\nms = 250\n";

/// Polls /metrics until it contains `needle` (the test's way to wait for the batcher).
async fn wait_for_metric(app: &Router, needle: &str) {
    let start = Instant::now();
    loop {
        let metrics = send(app, "GET", "/metrics", Body::empty(), &[]).await.text;
        if metrics.contains(needle) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never saw {needle}:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_429_with_retry_after() {
    let spec = "[[term]]\nname = \"slow\"\nkind = \"sleep\"\n[term.options]\nms = 500\n";
    let app = app(state_with(
        spec,
        ServerConfig {
            workers: 1,
            max_batch_samples: 1,
            max_queue_samples: 1,
            max_batch_wait: Duration::ZERO,
            ..ServerConfig::default()
        },
    ));
    let one = json!({"samples": [{"completion": "x"}]}).to_string();
    let a = tokio::spawn({
        let app = app.clone();
        let one = one.clone();
        async move { send(&app, "POST", "/v1/score", one, &[]).await }
    });
    // a's batch has started (it left the queue) …
    wait_for_metric(&app, "rewardkit_queue_seconds_count 1\n").await;
    let b = tokio::spawn({
        let app = app.clone();
        let one = one.clone();
        async move { send(&app, "POST", "/v1/score", one, &[]).await }
    });
    // … and b fills the queue while a is scored.
    wait_for_metric(&app, "rewardkit_queue_depth 1\n").await;
    let c = send(&app, "POST", "/v1/score", one.clone(), &[]).await;
    assert_eq!(c.status, StatusCode::TOO_MANY_REQUESTS, "{}", c.text);
    assert_eq!(c.header("retry-after"), "1");
    assert_eq!(c.json()["error"]["code"], "queue_full");
    assert_eq!(a.await.unwrap().status, StatusCode::OK);
    assert_eq!(b.await.unwrap().status, StatusCode::OK);
    let metrics = send(&app, "GET", "/metrics", Body::empty(), &[]).await.text;
    assert!(
        metrics.contains("rewardkit_queue_rejections_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rewardkit_requests_total{route=\"/v1/score\",status=\"429\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_returns_done_samples_and_typed_timeouts() {
    let app = app(state_with(
        SLOW_SPEC,
        ServerConfig {
            workers: 1,
            chunk_samples: 1,
            ..ServerConfig::default()
        },
    ));
    let samples: Vec<Value> = (0..6).map(|_| json!({"completion": "x"})).collect();
    let start = Instant::now();
    let reply = send(
        &app,
        "POST",
        "/v1/score",
        json!({ "samples": samples }).to_string(),
        &[("x-deadline-ms", "400")],
    )
    .await;
    let elapsed = start.elapsed();
    // All six would take 1.5 s; the answer comes at the 400 ms deadline.
    assert!(elapsed < Duration::from_millis(1200), "took {elapsed:?}");
    assert_eq!(reply.status, StatusCode::OK);
    let timed_out: usize = reply.header("x-timed-out").parse().unwrap();
    let out = reply.json();
    let kinds: Vec<&str> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 6);
    assert_eq!(kinds[0], "scored", "{kinds:?}");
    assert_eq!(kinds[5], "timed_out", "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "timed_out").count(),
        timed_out
    );
    // Done samples come first, in order: no scored sample after a timed-out one.
    assert!(
        kinds
            .windows(2)
            .all(|w| !(w[0] == "timed_out" && w[1] == "scored")),
        "{kinds:?}"
    );
    assert_eq!(out["results"][5]["terms"][0]["kind"], "timed_out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_single_sample_requests_are_coalesced() {
    let state = state_with(
        MATH_SPEC,
        ServerConfig {
            max_batch_wait: Duration::from_millis(50),
            ..ServerConfig::default()
        },
    );
    let app = app(state);
    let samples = rollouts();
    let alone: Vec<Value> = {
        let mut out = Vec::new();
        for s in &samples {
            out.push(
                post(&app, "/v1/score", &json!({"samples": [s]}))
                    .await
                    .json()["results"][0]
                    .clone(),
            );
        }
        out
    };
    let mut tasks = Vec::new();
    for round in 0..4 {
        for (i, s) in samples.iter().enumerate() {
            let app = app.clone();
            let body = json!({"samples": [s]}).to_string();
            tasks.push(tokio::spawn(async move {
                let reply = send(&app, "POST", "/v1/score", body, &[]).await;
                (round, i, reply)
            }));
        }
    }
    let mut biggest = 0;
    for task in tasks {
        let (_, i, reply) = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        biggest = biggest.max(reply.header("x-batch-size").parse::<usize>().unwrap());
        assert_eq!(reply.json()["results"][0], alone[i], "sample {i}");
    }
    assert!(biggest > 1, "no request was coalesced with another");
    let metrics = send(&app, "GET", "/metrics", Body::empty(), &[]).await.text;
    for needle in [
        "rewardkit_requests_total{route=\"/v1/score\",status=\"200\"}",
        "rewardkit_request_duration_seconds_bucket{route=\"/v1/score\",le=\"+Inf\"}",
        "rewardkit_batch_samples_count",
        "rewardkit_queue_depth 0\n",
        "rewardkit_outcomes_total{term=\"correct\",kind=\"scored\",reason=\"\"}",
        "rewardkit_outcomes_total{term=\"_reward\",kind=\"scored\",reason=\"\"}",
        "rewardkit_ready 1\n",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_request_does_not_wait_for_the_batch_window() {
    // A 2 s window: coalescing would make each of these requests wait for it.
    let app = app(state_with(
        MATH_SPEC,
        ServerConfig {
            max_batch_wait: Duration::from_secs(2),
            ..ServerConfig::default()
        },
    ));
    let body = json!({ "samples": rollouts() });
    let start = Instant::now();
    for _ in 0..3 {
        let reply = post(&app, "/v1/score", &body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let queued: f64 = reply.header("x-queue-time").parse().unwrap();
        assert!(queued < 1000.0, "a lone request waited {queued} ms");
    }
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shaping_spec_gets_its_batch_pass_over_the_request() {
    // The committed example: gate + clip transform + GRPO advantages per group. One request
    // holding every group must answer what `rewardkit score` writes for the whole file.
    let app = app(state_with(
        include_str!("../../../examples/shaping-gate-grpo.toml"),
        ServerConfig::default(),
    ));
    let rows: Vec<Value> = include_str!("../../../examples/rollouts.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<Value> = include_str!("../../../examples/shaping-gate-grpo.expected.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One sample per expected row: row `line`, completion `index` of a list of completions.
    let samples: Vec<Value> = expected
        .iter()
        .map(|e| {
            let mut row = rows[e["line"].as_u64().unwrap() as usize - 1].clone();
            if let Some(list) = row["completion"].as_array() {
                let one = list[e["index"].as_u64().unwrap() as usize].clone();
                row["completion"] = one;
            }
            row
        })
        .collect();
    let reply = post(&app, "/v1/score", &json!({ "samples": samples })).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let results = reply.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), expected.len());
    let close = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-12,
        _ => a.is_null() && b.is_null(),
    };
    for (i, (got, want)) in results.iter().zip(&expected).enumerate() {
        assert!(
            close(&got["value"], &want["reward"]),
            "sample {i}: {got} vs {want}"
        );
        assert!(
            close(&got["advantage"], &want["advantage"]),
            "sample {i}: {got} vs {want}"
        );
    }
    // A request that is one group alone gets that group's advantages, not pending rewards.
    let alone = post(&app, "/v1/score", &json!({ "samples": samples[..4] })).await;
    assert_eq!(alone.status, StatusCode::OK, "{}", alone.text);
    for (got, want) in alone.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&expected)
    {
        assert!(
            close(&got["advantage"], &want["advantage"]),
            "{got} vs {want}"
        );
    }
}
