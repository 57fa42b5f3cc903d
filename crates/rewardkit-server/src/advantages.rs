//! `POST /v1/advantages`: advantages of rewards the trainer already has, with the estimators and
//! options of `rewardkit advantages` (both resolve them with
//! [`rewardkit_shape::AdvantageOptions::resolve`] and compute with the same library functions,
//! so a row's advantage is the one the CLI writes for it).
//!
//! ```json
//! {"estimator": "grpo", "options": {"epsilon": 0, "std": "population"},
//!  "rows": [{"reward": 1.0, "group": "q1"}, {"reward": 0.0, "group": "q1"}, …]}
//! ```
//!
//! A row is `{"reward", "group"}`; OPRL rows add `"steps"` (the step rewards, a list); GAE rows
//! are episodes with `"steps"`, `"values"` (one critic value per step) and optionally
//! `"bootstrap"` (the value of the state a truncated episode stopped in) and need no reward. A
//! `null` reward or step is masked; a row without a group is a group of its own (the CLI's
//! rules). The answer has one `advantages` entry per row (a list per row for OPRL and GAE, GAE
//! also `returns`), `null` wherever the value is masked — never NaN — and the estimator's counts.
//!
//! The estimators split inputs above 65,536 rows (or steps) over the *current* rayon pool. A
//! large body is answered on a blocking thread, where the current pool would be rayon's global
//! one (a thread per CPU, whatever `ServerConfig::workers` says), so [`answer`] runs the
//! computation inside the server's scoring pool with `install`. Results do not depend on the
//! pool: the estimators give the same bits on any number of threads.

use std::collections::HashMap;

use rewardkit_shape::{
    advantages, gae, oprl_advantages, AdvantageConfig, AdvantageMethod, AdvantageOptions,
    AdvantageSummary, Estimator, Groups, StdKind,
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{ServerConfig, ServerError};

/// A parsed request: the validated configuration and the columns the estimators read.
#[derive(Debug)]
pub(crate) struct AdvantageRequest {
    config: AdvantageConfig,
    rewards: Vec<f64>,
    /// Dense group ids: labelled groups first (in order of first appearance), then one fresh id
    /// per row without a group.
    group_ids: Vec<usize>,
    grouped_rows: usize,
    /// OPRL's step rewards or GAE's per-step rewards, row after row, and each row's count.
    steps: Vec<f64>,
    lengths: Vec<usize>,
    /// GAE: critic values (parallel to `steps`) and each episode's bootstrap value (0 if none).
    values: Vec<f64>,
    bootstrap: Vec<f64>,
}

impl AdvantageRequest {
    /// Rows in the request.
    pub(crate) fn rows(&self) -> usize {
        self.rewards.len()
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const ROW_FIELDS: &str = "`reward`, `group`, `steps`, `values` and `bootstrap`";

/// A number, or NaN (masked) for `null`.
fn number(value: &Value, field: impl FnOnce() -> String) -> Result<f64, ServerError> {
    match value {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        Value::Null => Ok(f64::NAN),
        other => Err(ServerError::shape(
            field(),
            format!("expected a number (or null), found {}", type_name(other)),
        )),
    }
}

fn number_list(
    row: &Map<String, Value>,
    key: &str,
    at: &str,
    what: &str,
    into: &mut Vec<f64>,
) -> Result<usize, ServerError> {
    match row.get(key) {
        Some(Value::Array(items)) => {
            for (k, item) in items.iter().enumerate() {
                into.push(number(item, || format!("{at}.{key}[{k}]"))?);
            }
            Ok(items.len())
        }
        Some(other) => Err(ServerError::shape(
            format!("{at}.{key}"),
            format!("expected a list of {what}, found {}", type_name(other)),
        )),
        None => Err(ServerError::shape(
            format!("{at}.{key}"),
            format!("missing; this estimator needs each row's {what}"),
        )),
    }
}

/// Parses and validates `POST /v1/advantages`. Errors name the field and row index.
pub(crate) fn parse(bytes: &[u8], config: &ServerConfig) -> Result<AdvantageRequest, ServerError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ServerError::BadJson {
        message: e.to_string(),
    })?;
    let Value::Object(mut object) = value else {
        return Err(ServerError::shape(
            "(body)",
            format!(
                r#"expected an object {{"estimator": …, "options": {{…}}, "rows": [...]}}, found {}"#,
                type_name(&value)
            ),
        ));
    };
    let method = match object.remove("estimator") {
        Some(Value::String(name)) => AdvantageMethod::from_name(&name).ok_or_else(|| {
            let names: Vec<&str> = AdvantageMethod::ALL.iter().map(|m| m.name()).collect();
            ServerError::shape(
                "estimator",
                format!(
                    "unknown estimator `{name}`; expected one of {}",
                    names.join(", ")
                ),
            )
        })?,
        None | Some(Value::Null) => {
            return Err(ServerError::shape(
                "estimator",
                "missing; expected the estimator's name, e.g. \"grpo\"",
            ))
        }
        Some(other) => {
            return Err(ServerError::shape(
                "estimator",
                format!("expected a string, found {}", type_name(&other)),
            ))
        }
    };
    let options: AdvantageOptions = match object.remove("options") {
        None | Some(Value::Null) => AdvantageOptions::default(),
        Some(value @ Value::Object(_)) => serde_json::from_value(value)
            .map_err(|e| ServerError::shape("options", e.to_string()))?,
        Some(other) => {
            return Err(ServerError::shape(
                "options",
                format!("expected an object, found {}", type_name(&other)),
            ))
        }
    };
    let resolved = options.resolve(method).map_err(|e| {
        let field = match &e {
            rewardkit_shape::ShapeError::NotApplicable { option, .. }
            | rewardkit_shape::ShapeError::InvalidOption { option, .. } => {
                format!("options.{option}")
            }
            _ => "options".to_owned(),
        };
        ServerError::shape(field, e.to_string())
    })?;
    let rows = match object.remove("rows") {
        Some(Value::Array(rows)) if rows.len() > config.max_advantage_rows => {
            return Err(ServerError::TooManySamples {
                field: "rows".into(),
                got: rows.len(),
                max: config.max_advantage_rows,
            })
        }
        Some(Value::Array(rows)) => rows,
        None | Some(Value::Null) => {
            return Err(ServerError::shape(
                "rows",
                "missing; expected an array of rows",
            ))
        }
        Some(other) => {
            return Err(ServerError::shape(
                "rows",
                format!("expected an array, found {}", type_name(&other)),
            ))
        }
    };
    if let Some(key) = object.keys().next() {
        return Err(ServerError::shape(
            key.as_str(),
            "unknown field; the body has `estimator`, `options` and `rows`",
        ));
    }
    if rows.is_empty() {
        return Err(ServerError::shape(
            "rows",
            "empty; expected at least one row",
        ));
    }
    let is_gae = method == AdvantageMethod::Gae;
    let with_steps = is_gae || method == AdvantageMethod::Oprl;
    let mut request = AdvantageRequest {
        config: resolved,
        rewards: Vec::with_capacity(rows.len()),
        group_ids: Vec::with_capacity(rows.len()),
        grouped_rows: 0,
        steps: Vec::new(),
        lengths: Vec::new(),
        values: Vec::new(),
        bootstrap: Vec::new(),
    };
    let mut labels: HashMap<String, usize> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let at = format!("rows[{i}]");
        let Value::Object(row) = row else {
            return Err(ServerError::shape(
                at,
                format!(
                    "expected an object with {ROW_FIELDS}, found {}",
                    type_name(row)
                ),
            ));
        };
        for key in row.keys() {
            let known = match key.as_str() {
                "reward" | "group" => true,
                "steps" => with_steps,
                "values" | "bootstrap" => is_gae,
                _ => false,
            };
            if !known {
                return Err(ServerError::shape(
                    format!("{at}.{key}"),
                    format!(
                        "unknown field for estimator {}; a row has {ROW_FIELDS} (steps for oprl and gae, values and bootstrap for gae)",
                        method.name()
                    ),
                ));
            }
        }
        let reward = match row.get("reward") {
            // GAE needs no outcome reward: the step rewards carry it.
            None if is_gae => f64::NAN,
            None => {
                return Err(ServerError::shape(
                    format!("{at}.reward"),
                    "missing; expected a number (or null for a non-score)",
                ))
            }
            Some(value) => number(value, || format!("{at}.reward"))?,
        };
        let label = match row.get("group") {
            Some(Value::String(s)) => Some(s.clone()),
            // As the CLI: a number and its text are the same group.
            Some(Value::Number(n)) => Some(n.to_string()),
            None | Some(Value::Null) => None,
            Some(other) => {
                return Err(ServerError::shape(
                    format!("{at}.group"),
                    format!(
                        "expected a string or a number as the group id, found {}",
                        type_name(other)
                    ),
                ))
            }
        };
        let id = match label {
            Some(label) => {
                request.grouped_rows += 1;
                let next = labels.len();
                *labels.entry(label).or_insert(next)
            }
            None => usize::MAX - i,
        };
        request.rewards.push(reward);
        request.group_ids.push(id);
        if with_steps {
            let n = number_list(row, "steps", &at, "step rewards", &mut request.steps)?;
            if is_gae {
                let m = number_list(row, "values", &at, "critic values", &mut request.values)?;
                if m != n {
                    return Err(ServerError::shape(
                        format!("{at}.values"),
                        format!("{m} values for {n} step rewards (one per step)"),
                    ));
                }
                request.bootstrap.push(match row.get("bootstrap") {
                    None | Some(Value::Null) => 0.0,
                    Some(value) => number(value, || format!("{at}.bootstrap"))?,
                });
            }
            request.lengths.push(n);
        }
    }
    // Rows without a group got ids from the top; make them dense after the labelled ones.
    let mut dense = labels.len();
    for id in request.group_ids.iter_mut() {
        if *id >= labels.len() {
            *id = dense;
            dense += 1;
        }
    }
    if !is_gae && request.grouped_rows == 0 && request.config.estimator.uses_groups() {
        return Err(ServerError::shape(
            "rows",
            "no row has a `group`, so every row would be a group of one with advantage 0; \
             give the rows group ids, or use the estimator reinforce_pp",
        ));
    }
    Ok(request)
}

/// The answer of `POST /v1/advantages`. Non-finite values are written as `null`.
#[derive(Serialize)]
pub(crate) struct AdvantageResponse {
    estimator: &'static str,
    /// The options in effect, defaults filled in.
    options: ResolvedOptions,
    /// One per row: a number, or a list per row for OPRL and GAE.
    advantages: Column,
    /// GAE: the returns (advantages + values), a list per row.
    #[serde(skip_serializing_if = "Option::is_none")]
    returns: Option<Column>,
    /// The estimator's counts (OPRL: of its GRPO part); for GAE the masked episodes.
    summary: Summary,
}

#[derive(Serialize)]
struct ResolvedOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    scale: Option<rewardkit_shape::StdScope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    std: Option<StdKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epsilon: Option<f64>,
    filter_zero_variance: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    alpha: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gamma: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lambda: Option<f64>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Summary {
    Groups(AdvantageSummary),
    Episodes {
        episodes: usize,
        steps: usize,
        masked_episodes: usize,
    },
}

/// A column of numbers, or of lists of numbers (`lengths[i]` per row), NaN/±∞ as `null`.
enum Column {
    Flat(Vec<f64>),
    Lists(Vec<f64>, Vec<usize>),
}

/// One number as JSON: `null` for NaN and ±∞ (NaN never reaches the wire).
struct Finite(f64);

impl Serialize for Finite {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f64(self.0)
        } else {
            s.serialize_none()
        }
    }
}

struct List<'a>(&'a [f64]);

impl Serialize for List<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|&x| Finite(x)))
    }
}

impl Serialize for Column {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Column::Flat(values) => List(values).serialize(s),
            Column::Lists(values, lengths) => {
                let mut start = 0;
                s.collect_seq(lengths.iter().map(|&n| {
                    let list = List(&values[start..start + n]);
                    start += n;
                    list
                }))
            }
        }
    }
}

/// Where [`compute`] ran, for the unit tests: per call the request's rows, the thread's name
/// and the size of the rayon pool it ran in.
#[cfg(test)]
pub(crate) static COMPUTED_ON: std::sync::Mutex<Vec<(usize, Option<String>, usize)>> =
    std::sync::Mutex::new(Vec::new());

/// Computes the advantages of a parsed request with the library's estimators.
pub(crate) fn compute(request: AdvantageRequest) -> Result<AdvantageResponse, ServerError> {
    #[cfg(test)]
    COMPUTED_ON.lock().unwrap_or_else(|p| p.into_inner()).push((
        request.rows(),
        std::thread::current().name().map(str::to_owned),
        rayon::current_num_threads(),
    ));
    let config = request.config;
    let library = |e: rewardkit_shape::ShapeError| ServerError::Internal {
        message: format!("the estimator refused a checked request: {e}"),
    };
    let (scale, std, epsilon) = match config.estimator {
        _ if config.gae.is_some() => (None, None, None),
        Estimator::Grpo {
            scale,
            std,
            epsilon,
        } => (
            config.oprl_alpha.is_none().then_some(scale),
            Some(std),
            Some(epsilon),
        ),
        Estimator::ReinforcePlusPlus { std, epsilon, .. } => (None, Some(std), Some(epsilon)),
        Estimator::DrGrpo | Estimator::Rloo => (None, None, None),
    };
    let options = ResolvedOptions {
        scale,
        std,
        epsilon,
        filter_zero_variance: config.filter_zero_variance,
        alpha: config.oprl_alpha,
        gamma: config.gae.map(|(g, _)| g),
        lambda: config.gae.map(|(_, l)| l),
    };
    if let Some((gamma, lambda)) = config.gae {
        let out = gae(
            &request.steps,
            &request.values,
            &request.lengths,
            Some(&request.bootstrap),
            gamma,
            lambda,
        )
        .map_err(library)?;
        return Ok(AdvantageResponse {
            estimator: config.method.name(),
            options,
            summary: Summary::Episodes {
                episodes: request.lengths.len(),
                steps: request.steps.len(),
                masked_episodes: out.masked_episodes,
            },
            advantages: Column::Lists(out.advantages, request.lengths.clone()),
            returns: Some(Column::Lists(out.returns, request.lengths)),
        });
    }
    let groups = Groups::from_ids(&request.group_ids);
    let result = advantages(
        &request.rewards,
        &groups,
        &config.estimator,
        config.filter_zero_variance,
    )
    .map_err(library)?;
    let advantages = match config.oprl_alpha {
        None => Column::Flat(result.values),
        Some(alpha) => {
            let (std, epsilon) = match config.estimator {
                Estimator::Grpo { std, epsilon, .. } => (std, epsilon),
                _ => (StdKind::Sample, 1e-6),
            };
            let steps = oprl_advantages(
                &request.rewards,
                &groups,
                &request.steps,
                &request.lengths,
                alpha,
                std,
                epsilon,
            )
            .map_err(library)?;
            Column::Lists(steps, request.lengths)
        }
    };
    Ok(AdvantageResponse {
        estimator: config.method.name(),
        options,
        advantages,
        returns: None,
        summary: Summary::Groups(result.summary),
    })
}

/// Parse, compute and encode in one go: the response body, the number of rows and the
/// estimator's name. With `pool` (the server's scoring pool) the computation runs inside it, so
/// that the estimators' parallel split uses that pool's threads; parsing and encoding stay on the
/// calling thread. Without it, everything runs on the calling thread (for bodies too small to
/// reach the estimators' parallel threshold).
pub(crate) fn answer(
    bytes: &[u8],
    config: &ServerConfig,
    pool: Option<&rayon::ThreadPool>,
) -> Result<(Vec<u8>, usize, &'static str), ServerError> {
    let request = parse(bytes, config)?;
    let rows = request.rows();
    let estimator = request.config.method.name();
    let response = match pool {
        Some(pool) => pool.install(|| compute(request)),
        None => compute(request),
    }?;
    let body = serde_json::to_vec(&response).map_err(|e| ServerError::Internal {
        message: format!("cannot encode the response: {e}"),
    })?;
    Ok((body, rows, estimator))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use rewardkit::{Pipeline, Registry, Spec};
    use serde_json::json;
    use tower::ServiceExt as _;

    use super::COMPUTED_ON;
    use crate::{app, AppState, ServerConfig};

    /// Sends `rows` GRPO rows and returns where the server computed them: the thread's name and
    /// the size of the rayon pool it saw. Each caller uses its own row count, so tests running
    /// at the same time do not read each other's entries.
    async fn computed_on(workers: usize, rows: usize) -> (Option<String>, usize) {
        let spec = Spec::from_toml_str(include_str!("../../../examples/math-rl.toml"), "test.toml")
            .unwrap();
        let registry = Registry::default();
        let pipeline = Pipeline::build_with(&spec, &registry).unwrap();
        let config = ServerConfig {
            workers,
            ..ServerConfig::default()
        };
        let router = app(AppState::new(pipeline, registry, config).unwrap());
        let rows: Vec<_> = (0..rows)
            .map(|i| json!({"reward": (i % 5) as f64, "group": i / 4}))
            .collect();
        let body = json!({"estimator": "grpo", "rows": rows}).to_string();
        let request = Request::post("/v1/advantages")
            .body(Body::from(body))
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        let calls = COMPUTED_ON.lock().unwrap();
        let (_, thread, threads) = calls
            .iter()
            .find(|(n, _, _)| *n == rows.len())
            .expect("the request was computed");
        (thread.clone(), *threads)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_requests_compute_on_the_scoring_pool() {
        // Regression: a large body was computed on a tokio blocking thread, where the
        // estimators' parallel split used rayon's global pool (one thread per CPU) instead of
        // the `workers` the server was given.
        let (thread, threads) = computed_on(3, 70_003).await;
        let thread = thread.unwrap_or_default();
        assert!(thread.starts_with("rewardkit-score-"), "{thread}");
        assert_eq!(threads, 3);
        // A body under 64 KiB is answered inline, on a runtime thread (too small to split).
        let (thread, _) = computed_on(3, 101).await;
        assert!(
            !thread.unwrap_or_default().starts_with("rewardkit-score-"),
            "small bodies are not sent to the pool"
        );
    }
}
