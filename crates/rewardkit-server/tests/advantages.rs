//! `POST /v1/advantages` in process: every status code, and results equal to the library (and to
//! the committed output of `rewardkit advantages`) on the same input.

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use http_body_util::BodyExt as _;
use rewardkit::{Pipeline, Registry, Spec};
use rewardkit_server::{app, AppState, ServerConfig};
use rewardkit_shape::{
    advantages, gae, oprl_advantages, AdvantageMethod, AdvantageOptions, Groups, StdKind,
};
use serde_json::{json, Value};
use tower::ServiceExt as _;

const MATH_SPEC: &str = include_str!("../../../examples/math-rl.toml");

fn router(config: ServerConfig) -> Router {
    router_with_workers(config, 1)
}

fn router_with_workers(config: ServerConfig, workers: usize) -> Router {
    let spec = Spec::from_toml_str(MATH_SPEC, "test.toml").unwrap();
    let registry = Registry::default();
    let pipeline = Pipeline::build_with(&spec, &registry).unwrap();
    app(AppState::new(pipeline, registry, ServerConfig { workers, ..config }).unwrap())
}

async fn send(app: &Router, path: &str, body: String, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = Request::builder().method("POST").uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// A number from the wire: `null` is NaN (masked).
fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// `got` (read from the wire) is exactly `want`: the text the server wrote is the shortest
/// round-trip text of `want`. serde_json's default parser may be one ulp off on some texts, so
/// `want` goes through the same text and parser before comparing.
fn same(got: f64, want: f64) -> bool {
    let want =
        serde_json::from_str::<f64>(&serde_json::to_string(&want).unwrap()).unwrap_or(f64::NAN);
    got == want || (got.is_nan() && want.is_nan())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equals_the_cli_worked_example() {
    // examples/advantages-*.expected.jsonl is what `rewardkit advantages` writes for
    // examples/advantages-scored.jsonl (a CLI test keeps it so): the server must send the same
    // numbers, bit for bit.
    let app = router(ServerConfig::default());
    let input: Vec<Value> = include_str!("../../../examples/advantages-scored.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rows: Vec<Value> = input
        .iter()
        .map(|r| json!({"reward": r["reward"], "group": r["group"]}))
        .collect();
    for (estimator, expected) in [
        (
            "grpo",
            include_str!("../../../examples/advantages-grpo.expected.jsonl"),
        ),
        (
            "rloo",
            include_str!("../../../examples/advantages-rloo.expected.jsonl"),
        ),
    ] {
        let body = json!({"estimator": estimator, "rows": rows}).to_string();
        let (status, reply) = send(&app, "/v1/advantages", body, &[]).await;
        assert_eq!(status, 200, "{reply}");
        let got = reply["advantages"].as_array().unwrap();
        let want: Vec<f64> = expected
            .lines()
            .map(|l| num(&serde_json::from_str::<Value>(l).unwrap()["advantage"]))
            .collect();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(same(num(g), *w), "{estimator} row {i}: {g} vs {w}");
        }
        assert_eq!(reply["estimator"], estimator);
        assert_eq!(reply["summary"]["samples"], rows.len());
    }
}

/// A small deterministic generator (no dependency for a few random numbers).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Mostly a number, sometimes NaN (sent as null), sometimes offset by 1e9. Each number is
    /// what the server reads back from its JSON text (serde_json's default parser may be one ulp
    /// off the printed value), so the library sees the server's inputs exactly.
    fn value(&mut self) -> f64 {
        let x = match (self.next() * 20.0) as u32 {
            0 => f64::NAN,
            1 => 1e9 + self.next(),
            _ => (self.next() * 4.0).round() / 2.0,
        };
        read_back(x)
    }

    fn unit(&mut self) -> f64 {
        read_back(self.next())
    }
}

fn read_back(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap()
}

fn wire(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_estimator_equals_the_library() {
    let app = router(ServerConfig::default());
    let mut rng = Lcg(7);
    let n = 300;
    let rewards: Vec<f64> = (0..n).map(|_| rng.value()).collect();
    // Groups of 1 to 5, some rows without a group, group labels as strings and numbers.
    let labels: Vec<Option<String>> = (0..n)
        .map(|i| (i % 17 != 3).then(|| format!("{}", (i * 7919) % 61)))
        .collect();
    let lengths: Vec<usize> = (0..n).map(|i| i % 4).collect();
    let steps: Vec<f64> = (0..lengths.iter().sum::<usize>())
        .map(|_| rng.value())
        .collect();
    let values: Vec<f64> = steps.iter().map(|_| rng.unit()).collect();
    let bootstrap: Vec<f64> = (0..n)
        .map(|i| if i % 5 == 0 { rng.unit() } else { 0.0 })
        .collect();
    let mut ids = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for label in &labels {
        ids.push(match label {
            Some(l) => match seen.iter().position(|s| s == l) {
                Some(p) => p,
                None => {
                    seen.push(l.clone());
                    seen.len() - 1
                }
            },
            None => usize::MAX,
        });
    }
    for (fresh, id) in (seen.len()..).zip(ids.iter_mut().filter(|id| **id == usize::MAX)) {
        *id = fresh;
    }
    let groups = Groups::from_ids(&ids);
    let mut start = 0;
    let rows: Vec<Value> = (0..n)
        .map(|i| {
            let range = start..start + lengths[i];
            start = range.end;
            let group = match &labels[i] {
                // Numbers and their text are one group (the CLI's rule).
                Some(l) if i % 2 == 0 => json!(l.parse::<u64>().unwrap()),
                Some(l) => json!(l),
                None => Value::Null,
            };
            json!({
                "reward": wire(rewards[i]),
                "group": group,
                "steps": steps[range.clone()].iter().map(|&x| wire(x)).collect::<Vec<_>>(),
                "values": values[range].iter().map(|&x| wire(x)).collect::<Vec<_>>(),
                "bootstrap": bootstrap[i],
            })
        })
        .collect();
    let strip = |keep: &[&str]| -> Vec<Value> {
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut()
                    .unwrap()
                    .retain(|k, _| keep.contains(&k.as_str()));
                r
            })
            .collect()
    };
    let flat = |reply: &Value, want: &[f64]| {
        let got = reply["advantages"].as_array().unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(same(num(g), *w), "{reply:.80} [{i}]: {g} vs {w}");
        }
    };
    let lists = |column: &Value, want: &[f64]| {
        let got: Vec<f64> = column
            .as_array()
            .unwrap()
            .iter()
            .zip(&lengths)
            .flat_map(|(list, &len)| {
                let list = list.as_array().unwrap();
                assert_eq!(list.len(), len);
                list.iter().map(num).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(same(*g, *w), "[{i}]: {g} vs {w}");
        }
    };
    let cases = [
        ("grpo", json!({})),
        (
            "grpo",
            json!({"scale": "batch", "std": "population", "epsilon": 0.0}),
        ),
        (
            "grpo",
            json!({"scale": "none", "filter_zero_variance": true}),
        ),
        ("dr_grpo", json!({})),
        ("rloo", json!({"filter_zero_variance": true})),
        ("reinforce_pp", json!({"std": "population"})),
        ("reinforce_pp_baseline", json!({"epsilon": 1e-3})),
    ];
    for (name, options) in cases {
        let body =
            json!({"estimator": name, "options": options, "rows": strip(&["reward", "group"])});
        let (status, reply) = send(&app, "/v1/advantages", body.to_string(), &[]).await;
        assert_eq!(status, 200, "{name} {options}: {reply}");
        let config = serde_json::from_value::<AdvantageOptions>(options.clone())
            .unwrap()
            .resolve(AdvantageMethod::from_name(name).unwrap())
            .unwrap();
        let want = advantages(
            &rewards,
            &groups,
            &config.estimator,
            config.filter_zero_variance,
        )
        .unwrap();
        flat(&reply, &want.values);
        assert_eq!(
            reply["summary"],
            serde_json::to_value(want.summary).unwrap(),
            "{name}"
        );
    }
    // OPRL: a list per row.
    let body = json!({"estimator": "oprl", "options": {"alpha": 0.5, "std": "population"},
        "rows": strip(&["reward", "group", "steps"])});
    let (status, reply) = send(&app, "/v1/advantages", body.to_string(), &[]).await;
    assert_eq!(status, 200, "{reply}");
    let want = oprl_advantages(
        &rewards,
        &groups,
        &steps,
        &lengths,
        0.5,
        StdKind::Population,
        1e-6,
    )
    .unwrap();
    lists(&reply["advantages"], &want);
    assert_eq!(reply["options"]["alpha"], 0.5);
    // GAE: advantages and returns per step, with bootstrap values.
    let body = json!({"estimator": "gae", "options": {"gamma": 0.9, "lambda": 0.8},
        "rows": strip(&["steps", "values", "bootstrap"])});
    let (status, reply) = send(&app, "/v1/advantages", body.to_string(), &[]).await;
    assert_eq!(status, 200, "{reply}");
    let want = gae(&steps, &values, &lengths, Some(&bootstrap), 0.9, 0.8).unwrap();
    lists(&reply["advantages"], &want.advantages);
    lists(&reply["returns"], &want.returns);
    assert_eq!(reply["summary"]["masked_episodes"], want.masked_episodes);
    assert!(want.masked_episodes > 0, "the case has masked episodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_requests_equal_the_library_bit_for_bit() {
    // Above 65,536 rows (or steps) the estimators split the work over the current rayon pool;
    // the server runs that on its own scoring pool (two workers here). The answer must be the
    // library's, bit for bit, whatever the pool.
    let app = router_with_workers(ServerConfig::default(), 2);
    let n = 70_001;
    let mut rng = Lcg(11);
    let rewards: Vec<f64> = (0..n).map(|_| rng.value()).collect();
    let ids: Vec<usize> = (0..n).map(|i| i / 8).collect();
    let rows: Vec<Value> = (0..n)
        .map(|i| json!({"reward": wire(rewards[i]), "group": ids[i]}))
        .collect();
    let bits = |got: &Value, want: &[f64], what: &str| {
        let got = got.as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let w = if w.is_finite() {
                Some(w.to_bits())
            } else {
                None
            };
            assert_eq!(g.as_f64().map(f64::to_bits), w, "{what} [{i}]: {g}");
        }
    };
    for (name, options) in [
        ("grpo", json!({})),
        ("rloo", json!({})),
        ("reinforce_pp_baseline", json!({})),
    ] {
        let body = json!({"estimator": name, "options": options, "rows": rows});
        let (status, reply) = send(&app, "/v1/advantages", body.to_string(), &[]).await;
        assert_eq!(status, 200, "{name}: {reply:.200}");
        let config = serde_json::from_value::<AdvantageOptions>(options)
            .unwrap()
            .resolve(AdvantageMethod::from_name(name).unwrap())
            .unwrap();
        let want = advantages(&rewards, &Groups::from_ids(&ids), &config.estimator, false).unwrap();
        bits(&reply["advantages"], &want.values, name);
    }
    // GAE over 70,000 steps in episodes of 1 to 9 steps.
    let lengths: Vec<usize> = (0..14_000).map(|i| 1 + i % 9).collect();
    let steps: Vec<f64> = (0..lengths.iter().sum::<usize>())
        .map(|_| rng.value())
        .collect();
    assert!(steps.len() > 65_536);
    let values: Vec<f64> = steps.iter().map(|_| rng.unit()).collect();
    let mut start = 0;
    let episodes: Vec<Value> = lengths
        .iter()
        .map(|&len| {
            let range = start..start + len;
            start = range.end;
            json!({
                "steps": steps[range.clone()].iter().map(|&x| wire(x)).collect::<Vec<_>>(),
                "values": values[range].iter().map(|&x| wire(x)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = json!({"estimator": "gae", "options": {"gamma": 0.99, "lambda": 0.95},
        "rows": episodes});
    let (status, reply) = send(&app, "/v1/advantages", body.to_string(), &[]).await;
    assert_eq!(status, 200, "{reply:.200}");
    let want = gae(&steps, &values, &lengths, None, 0.99, 0.95).unwrap();
    let flatten = |column: &Value| -> Value {
        Value::Array(
            column
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|list| list.as_array().unwrap().clone())
                .collect(),
        )
    };
    bits(&flatten(&reply["advantages"]), &want.advantages, "gae");
    bits(&flatten(&reply["returns"]), &want.returns, "gae returns");
}

async fn check(app: &Router, body: &str, status: u16, code: &str, says: &str) {
    let (got, reply) = send(app, "/v1/advantages", body.to_owned(), &[]).await;
    assert_eq!(got, status, "{body}: {reply}");
    assert_eq!(reply["error"]["code"], code, "{body}: {reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{body}: {message:?} lacks {says:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field_and_index() {
    let app = router(ServerConfig {
        max_advantage_rows: 4,
        max_body_bytes: 2000,
        ..ServerConfig::default()
    });
    let g = r#"{"reward":1,"group":"a"}"#;
    for (body, status, code, says) in [
        ("{", 400, "bad_json", "EOF"),
        ("[]", 422, "bad_shape", "expected an object"),
        (r#"{"rows":[]}"#, 422, "bad_shape", "`estimator`: missing"),
        (
            r#"{"estimator":"ppo","rows":[]}"#,
            422,
            "bad_shape",
            "unknown estimator `ppo`",
        ),
        (
            r#"{"estimator":3,"rows":[]}"#,
            422,
            "bad_shape",
            "expected a string",
        ),
        (
            r#"{"estimator":"grpo"}"#,
            422,
            "bad_shape",
            "`rows`: missing",
        ),
        (
            r#"{"estimator":"grpo","rows":{}}"#,
            422,
            "bad_shape",
            "expected an array",
        ),
        (
            r#"{"estimator":"grpo","rows":[]}"#,
            422,
            "bad_shape",
            "`rows`: empty",
        ),
        (
            r#"{"estimator":"grpo","rows":[1,1,1,1,1]}"#,
            422,
            "too_many_samples",
            "limit is 4",
        ),
        (
            r#"{"estimator":"grpo","rows":[],"extra":1}"#,
            422,
            "bad_shape",
            "`extra`: unknown field",
        ),
        (
            r#"{"estimator":"grpo","options":{"epsilom":1},"rows":[]}"#,
            422,
            "bad_shape",
            "unknown field `epsilom`",
        ),
        (
            r#"{"estimator":"grpo","options":{"std":"bessel"},"rows":[]}"#,
            422,
            "bad_shape",
            "`options`",
        ),
        (
            r#"{"estimator":"grpo","options":{"epsilon":-1},"rows":[]}"#,
            422,
            "bad_shape",
            "`options.epsilon`",
        ),
        (
            r#"{"estimator":"rloo","options":{"scale":"group"},"rows":[]}"#,
            422,
            "bad_shape",
            "applies to estimator grpo only",
        ),
        (
            r#"{"estimator":"dr_grpo","options":{"std":"sample"},"rows":[]}"#,
            422,
            "bad_shape",
            "dr_grpo does not divide by a std",
        ),
        (
            r#"{"estimator":"grpo","options":{"gamma":0.5},"rows":[]}"#,
            422,
            "bad_shape",
            "`options.gamma`",
        ),
        (
            r#"{"estimator":"gae","options":{"lambda":2},"rows":[]}"#,
            422,
            "bad_shape",
            "a number in [0, 1]",
        ),
        (
            r#"{"estimator":"grpo","rows":[1]}"#,
            422,
            "bad_shape",
            "`rows[0]`: expected an object",
        ),
        (
            &format!(r#"{{"estimator":"grpo","rows":[{g},{{"reward":"1"}}]}}"#),
            422,
            "bad_shape",
            "`rows[1].reward`: expected a number",
        ),
        (
            &format!(r#"{{"estimator":"grpo","rows":[{g},{{"group":"a"}}]}}"#),
            422,
            "bad_shape",
            "`rows[1].reward`: missing",
        ),
        (
            &format!(r#"{{"estimator":"grpo","rows":[{g},{{"reward":1,"group":true}}]}}"#),
            422,
            "bad_shape",
            "`rows[1].group`",
        ),
        (
            &format!(r#"{{"estimator":"grpo","rows":[{g},{{"reward":1,"rewards":[1]}}]}}"#),
            422,
            "bad_shape",
            "`rows[1].rewards`: unknown field",
        ),
        (
            r#"{"estimator":"grpo","rows":[{"reward":1,"steps":[1]}]}"#,
            422,
            "bad_shape",
            "`rows[0].steps`: unknown field for estimator grpo",
        ),
        (
            r#"{"estimator":"grpo","rows":[{"reward":1},{"reward":2}]}"#,
            422,
            "bad_shape",
            "no row has a `group`",
        ),
        (
            r#"{"estimator":"oprl","rows":[{"reward":1,"group":"a"}]}"#,
            422,
            "bad_shape",
            "`rows[0].steps`: missing",
        ),
        (
            r#"{"estimator":"oprl","rows":[{"reward":1,"group":"a","steps":[1,"x"]}]}"#,
            422,
            "bad_shape",
            "`rows[0].steps[1]`",
        ),
        (
            r#"{"estimator":"gae","rows":[{"steps":[1,2],"values":[0]}]}"#,
            422,
            "bad_shape",
            "`rows[0].values`: 1 values for 2 step rewards",
        ),
        (
            r#"{"estimator":"gae","rows":[{"steps":[1],"values":[0],"bootstrap":"x"}]}"#,
            422,
            "bad_shape",
            "`rows[0].bootstrap`",
        ),
        (
            &format!(
                r#"{{"estimator":"grpo","rows":[{}]}}"#,
                vec![g; 100].join(",")
            ),
            413,
            "body_too_large",
            "2000 bytes",
        ),
    ] {
        check(&app, body, status, code, says).await;
    }
    // Rows without a group are allowed where the estimator needs none.
    let (status, reply) = send(
        &app,
        "/v1/advantages",
        r#"{"estimator":"reinforce_pp","rows":[{"reward":1},{"reward":3},{"reward":null}]}"#.into(),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["advantages"][2], Value::Null, "masked, not NaN");
    assert_eq!(reply["summary"]["masked"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_metrics_and_shutdown() {
    let spec = Spec::from_toml_str(MATH_SPEC, "test.toml").unwrap();
    let registry = Registry::default();
    let state = AppState::new(
        Pipeline::build_with(&spec, &registry).unwrap(),
        registry,
        ServerConfig {
            workers: 1,
            api_key: Some("k".into()),
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let app = app(state.clone());
    let body = r#"{"estimator":"grpo","rows":[{"reward":1,"group":"a"},{"reward":0,"group":"a"}]}"#;
    let (status, reply) = send(&app, "/v1/advantages", body.into(), &[]).await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (401, &json!("unauthorized"))
    );
    let auth = [("authorization", "Bearer k")];
    let (status, reply) = send(&app, "/v1/advantages", body.into(), &auth).await;
    assert_eq!(status, 200, "{reply}");
    // Sample std of [1, 0] is √½; ε = 1e-6.
    let a = 0.5 / (0.5f64.sqrt() + 1e-6);
    assert_eq!(reply["advantages"], json!([a, -a]));
    let response = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .header("authorization", "Bearer k")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(
        text.contains("rewardkit_advantage_rows_total{estimator=\"grpo\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("rewardkit_requests_total{route=\"/v1/advantages\",status=\"200\"} 1"),
        "{text}"
    );
    state.begin_shutdown();
    let (status, reply) = send(&app, "/v1/advantages", body.into(), &auth).await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (503, &json!("shutting_down"))
    );
}
