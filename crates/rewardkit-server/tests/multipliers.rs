//! Constrained-combination multipliers carried between requests: they rise while a constraint
//! is violated and fall once it holds, concurrent requests never lose an update, the admin
//! endpoint replaces them, a reload keeps or resets them, and shutdown saves them.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use http_body_util::BodyExt as _;
use rewardkit::{BuiltTerm, Pipeline, Registry, Spec};
use rewardkit_core::{Meter, Outcome, Reward, RewardOutput, Sample};
use rewardkit_server::{app, AppState, ServerConfig};
use rewardkit_shape::{LagrangeMultipliers, LagrangeState, Squash};
use serde_json::{json, Value};
use tower::ServiceExt as _;

/// A term whose score is the sample's metadata field of its name.
struct Field(String);

impl Reward for Field {
    fn kind(&self) -> &str {
        "field"
    }
    fn score(&self, sample: &Sample, _: &mut Meter) -> RewardOutput {
        if let Some(ms) = sample.metadata.get("sleep_ms").and_then(Value::as_u64) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        match sample.metadata.get(&self.0).and_then(Value::as_f64) {
            Some(v) => Outcome::scored(v).into(),
            None => Outcome::unscorable("no field").into(),
        }
    }
}

fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.register("field", "test: a metadata field", |options| {
        let field = options
            .get("field")
            .and_then(|v| v.as_str())
            .unwrap_or("x")
            .to_owned();
        Ok(BuiltTerm {
            reward: Box::new(Field(field.clone())),
            resolved_options: field,
        })
    });
    registry
}

fn spec_text(threshold: f64, learning_rate: f64, state_file: Option<&str>) -> String {
    let file = state_file.map_or(String::new(), |f| format!("state_file = {f:?}\n"));
    format!(
        "[[term]]\nname = \"task\"\nkind = \"field\"\noptions = {{ field = \"task\" }}\n\
         [[term]]\nname = \"safe\"\nkind = \"field\"\noptions = {{ field = \"safe\" }}\n\
         [combine]\nmethod = \"constrained\"\nbase = \"task\"\nthresholds = {{ safe = {threshold:?} }}\n\
         learning_rate = {learning_rate:?}\nmomentum = 0.5\n{file}"
    )
}

fn state(text: &str, config: ServerConfig) -> AppState {
    let spec = Spec::from_toml_str(text, "test.toml").unwrap();
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

async fn send(app: &Router, method: &str, path: &str, body: String, key: bool) -> (u16, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if key {
        request = request.header("authorization", "Bearer k");
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Scores samples with the given `safe` values (task = 1) and returns their rewards.
async fn score(app: &Router, safe: &[f64], key: bool) -> Vec<f64> {
    let samples: Vec<Value> = safe
        .iter()
        .map(|s| json!({"completion": "x", "metadata": {"task": 1.0, "safe": s}}))
        .collect();
    let (status, reply) = send(
        app,
        "POST",
        "/v1/score",
        json!({ "samples": samples }).to_string(),
        key,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect()
}

/// `state` as it reads back from the wire (serde_json's default parser may be one ulp off the
/// printed text, the same way for both sides of a comparison).
fn wire<T: serde::Serialize>(state: &T) -> Value {
    serde_json::from_str(&serde_json::to_string(state).unwrap()).unwrap()
}

async fn lambda(app: &Router, key: bool) -> (f64, Value) {
    let (status, view) = send(app, "GET", "/v1/multipliers", String::new(), key).await;
    assert_eq!(status, 200, "{view}");
    (view["lambda"][0].as_f64().unwrap(), view)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipliers_rise_while_violated_and_fall_once_satisfied() {
    let app = app(state(&spec_text(0.5, 0.5, None), ServerConfig::default()));
    let (mut last, view) = lambda(&app, false).await;
    assert_eq!(last, 0.5, "σ(0) before any request: {view}");
    assert_eq!(view["constraints"], json!(["safe"]));
    // The replay of what the server must do, request by request.
    let mut replay = LagrangeMultipliers::new(vec![0.5], Squash::Sigmoid, 0.5, 0.5, 0.0).unwrap();
    for round in 0..6 {
        // Violated: mean of `safe` is 0.1 < 0.5.
        let used = replay.multipliers()[0];
        let rewards = score(&app, &[0.0, 0.2], false).await;
        // Each reward is combined with the multiplier before this request's update:
        // (1 − λ)·task + λ·safe.
        for (r, s) in rewards.iter().zip([0.0, 0.2]) {
            assert!(
                (r - ((1.0 - used) + used * s)).abs() < 1e-12,
                "round {round}: {r}"
            );
        }
        replay.update(&[0.1]).unwrap();
        let (now, view) = lambda(&app, false).await;
        assert!(
            now > last,
            "round {round}: λ {now} did not rise from {last}"
        );
        assert_eq!(view["state"], wire(replay.state()));
        last = now;
    }
    let peak = last;
    for round in 0..12 {
        score(&app, &[0.9, 1.0, 0.95], false).await;
        replay.update(&[(0.9 + 1.0 + 0.95) / 3.0]).unwrap();
        let (now, view) = lambda(&app, false).await;
        assert_eq!(view["state"], wire(replay.state()));
        // Momentum carries the rise one step further; then it falls every request.
        if round >= 1 {
            assert!(
                now < last,
                "round {round}: λ {now} did not fall from {last}"
            );
        }
        last = now;
    }
    assert!(last < peak);
    let (_, view) = lambda(&app, false).await;
    assert_eq!(view["updates"], 18);
    // A request whose constraint has no finite value cannot update: counted, state unchanged.
    let (status, reply) = send(
        &app,
        "POST",
        "/v1/score",
        json!({"samples": [{"completion": "x", "metadata": {"task": 1.0}}]}).to_string(),
        false,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let (_, after) = lambda(&app, false).await;
    assert_eq!(after["state"], view["state"]);
    assert_eq!(after["skipped_updates"], 1);
    let (_, metrics) = send(&app, "GET", "/metrics", String::new(), false).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains("rewardkit_multiplier{constraint=\"safe\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("rewardkit_multiplier_updates_total{result=\"applied\"} 18"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_lose_an_update() {
    // Many one-sample requests at once, coalesced into batches by the batcher: each must update
    // the state exactly once. With the same mean in every request the order does not matter,
    // so the final state must equal n sequential updates exactly.
    let app = app(state(
        &spec_text(0.5, 0.1, None),
        ServerConfig {
            max_batch_wait: Duration::from_millis(5),
            ..ServerConfig::default()
        },
    ));
    let n = 64;
    let mut tasks = Vec::new();
    for _ in 0..n {
        let app = app.clone();
        tasks.push(tokio::spawn(
            async move { score(&app, &[0.25], false).await },
        ));
    }
    let mut lambdas_used = Vec::new();
    for task in tasks {
        let reward = task.await.unwrap()[0];
        // reward = (1 − λ) + 0.25·λ, so λ = (1 − reward)/0.75.
        lambdas_used.push((1.0 - reward) / 0.75);
    }
    let mut replay = LagrangeMultipliers::new(vec![0.5], Squash::Sigmoid, 0.1, 0.5, 0.0).unwrap();
    let mut expected_used = Vec::new();
    for _ in 0..n {
        expected_used.push(replay.multipliers()[0]);
        replay.update(&[0.25]).unwrap();
    }
    let (_, view) = lambda(&app, false).await;
    assert_eq!(view["updates"], n);
    assert_eq!(view["state"], wire(replay.state()));
    // Every request saw a distinct state of the sequence (none combined twice with the same).
    lambdas_used.sort_by(f64::total_cmp);
    expected_used.sort_by(f64::total_cmp);
    for (got, want) in lambdas_used.iter().zip(&expected_used) {
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_replaces_them_with_authentication() {
    let open = app(state(&spec_text(0.5, 0.1, None), ServerConfig::default()));
    let new = LagrangeState {
        thresholds: vec![0.5],
        squash: Squash::Sigmoid,
        learning_rate: 0.1,
        momentum: 0.5,
        mu: vec![2.0],
        velocity: vec![0.0],
        steps: 7,
    };
    let body = serde_json::to_string(&new).unwrap();
    // Without an API key the admin endpoints are off.
    let (status, reply) = send(&open, "POST", "/admin/multipliers", body.clone(), false).await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (403, &json!("admin_disabled"))
    );
    let app = app(state(
        &spec_text(0.5, 0.1, None),
        ServerConfig {
            api_key: Some("k".into()),
            ..ServerConfig::default()
        },
    ));
    let (status, _) = send(&app, "POST", "/admin/multipliers", body.clone(), false).await;
    assert_eq!(status, 401);
    let (status, _) = send(&app, "GET", "/v1/multipliers", String::new(), false).await;
    assert_eq!(status, 401);
    for (bad, status, says) in [
        ("{", 400, "bad_json"),
        (r#"{"mu": [1]}"#, 422, "missing field"),
        (&body.replace("[0.5]", "[0.7]"), 422, "thresholds"),
        (&body.replace("sigmoid", "tanh"), 422, "squash"),
        (
            &body.replace("\"momentum\":0.5", "\"momentum\":1.5"),
            422,
            "momentum",
        ),
        (&body.replace("\"mu\":[2.0]", "\"mu\":[2.0,1.0]"), 422, "mu"),
    ] {
        let (got, reply) = send(&app, "POST", "/admin/multipliers", bad.to_owned(), true).await;
        assert_eq!(got, status, "{bad}: {reply}");
        assert!(reply.to_string().contains(says), "{bad}: {reply}");
    }
    let (status, reply) = send(&app, "POST", "/admin/multipliers", body, true).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["state"]["mu"], json!([2.0]));
    assert_eq!(reply["replacements"], 1);
    // The next request is combined with σ(2).
    let used = 1.0 / (1.0 + (-2.0f64).exp());
    let rewards = score(&app, &[0.0], true).await;
    assert!((rewards[0] - (1.0 - used)).abs() < 1e-12, "{rewards:?}");
    let (_, view) = lambda(&app, true).await;
    assert_eq!(view["state"]["steps"], 8);
    // A spec without a constrained combination has none.
    let plain = app_without_constraints();
    let (status, reply) = send(&plain, "GET", "/v1/multipliers", String::new(), false).await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (409, &json!("no_multipliers"))
    );
}

fn app_without_constraints() -> Router {
    let text = "[[term]]\nname = \"task\"\nkind = \"field\"\noptions = { field = \"task\" }\n";
    app(state(text, ServerConfig::default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_fitting_multipliers_and_shutdown_saves_them() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("spec.toml");
    let state_path = dir.path().join("lagrange.json");
    let start = LagrangeMultipliers::new(vec![0.5], Squash::Sigmoid, 0.1, 0.5, 0.0).unwrap();
    std::fs::write(&state_path, serde_json::to_string(start.state()).unwrap()).unwrap();
    std::fs::write(&spec_path, spec_text(0.5, 0.1, Some("lagrange.json"))).unwrap();
    let spec = Spec::from_path(&spec_path).unwrap();
    let registry1 = registry();
    let app_state = AppState::new(
        Pipeline::build_with(&spec, &registry1).unwrap(),
        registry1,
        ServerConfig {
            workers: 1,
            spec_path: Some(spec_path.clone()),
            api_key: Some("k".into()),
            save_multipliers_every: Some(0),
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let app = app(app_state.clone());
    for _ in 0..3 {
        score(&app, &[0.0], true).await;
    }
    let (before, view) = lambda(&app, true).await;
    assert_eq!(view["state"]["steps"], 3);
    // The same constraint: the carried state is kept (not the older one in the state file).
    let (status, reply) = send(&app, "POST", "/admin/reload", String::new(), true).await;
    assert_eq!(status, 200, "{reply}");
    let (after, view) = lambda(&app, true).await;
    assert_eq!(after, before);
    assert_eq!(view["state"]["steps"], 3);
    assert_eq!(view["generation"], 2);
    // The reload saved the carried state first.
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert_eq!(saved, view["state"]);
    score(&app, &[0.0], true).await;
    let (_, view) = lambda(&app, true).await;
    assert_eq!(view["state"]["steps"], 4);
    // Shutdown writes the state where the spec reads it from on the next start.
    let closing = app_state.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .unwrap();
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert_eq!(saved, view["state"]);
    // A spec without a state file, reloaded twice.
    let app2_path = dir.path().join("spec2.toml");
    std::fs::write(&app2_path, spec_text(0.5, 0.1, None)).unwrap();
    let registry2 = registry();
    let second = AppState::new(
        Pipeline::build_with(&Spec::from_path(&app2_path).unwrap(), &registry2).unwrap(),
        registry2,
        ServerConfig {
            workers: 1,
            spec_path: Some(app2_path.clone()),
            api_key: Some("k".into()),
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let app2 = rewardkit_server::app(second);
    score(&app2, &[0.0], true).await;
    // A new learning rate, same constraint: the state is kept, the new rate taken.
    std::fs::write(&app2_path, spec_text(0.5, 0.3, None)).unwrap();
    let (status, _) = send(&app2, "POST", "/admin/reload", String::new(), true).await;
    assert_eq!(status, 200);
    let (_, view) = lambda(&app2, true).await;
    assert_eq!(view["state"]["steps"], 1);
    assert_eq!(view["state"]["learning_rate"], 0.3);
    // Another threshold: the carried state does not mean the same any more.
    std::fs::write(&app2_path, spec_text(0.8, 0.1, None)).unwrap();
    let (status, _) = send(&app2, "POST", "/admin/reload", String::new(), true).await;
    assert_eq!(status, 200);
    let (now, view) = lambda(&app2, true).await;
    assert_eq!(now, 0.5, "the new spec's start (initial_mu 0)");
    assert_eq!(view["state"]["thresholds"], json!([0.8]));
    assert_eq!(view["state"]["steps"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_by_its_deadline_neither_updates_nor_gets_a_stale_reward() {
    // One sample per chunk: the first is scored at once, the second sleeps past the deadline.
    // The first has its terms but no combined reward (the pass did not run, and a reward
    // combined with the spec's starting multipliers would be wrong without saying so).
    let app = app(state(
        &spec_text(0.5, 0.5, None),
        ServerConfig {
            chunk_samples: 1,
            ..ServerConfig::default()
        },
    ));
    let body = json!({"samples": [
        {"completion": "x", "metadata": {"task": 1.0, "safe": 0.0}},
        {"completion": "x", "metadata": {"task": 1.0, "safe": 0.0, "sleep_ms": 1200}},
    ]});
    let request = Request::builder()
        .method("POST")
        .uri("/v1/score")
        .header("x-deadline-ms", "300")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let reply: Value = serde_json::from_slice(&bytes).unwrap();
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results[0]["kind"], "timed_out", "{reply}");
    assert_eq!(results[0]["terms"][0]["kind"], "scored", "{reply}");
    assert_eq!(results[1]["kind"], "timed_out", "{reply}");
    // Let the batcher finish the slow sample, then check nothing was updated.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (now, view) = lambda(&app, false).await;
    assert_eq!(now, 0.5, "{view}");
    assert_eq!(view["updates"], 0);
}
