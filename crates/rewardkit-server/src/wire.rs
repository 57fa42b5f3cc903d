//! Request parsing and response shapes. Parsing goes through `serde_json::Value` first so that
//! every error names the field and index it is about (`samples[3].completion: …`).

use rewardkit::ScoredSample;
use rewardkit_core::{Outcome, OutcomeKind, Reference, Sample};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{ServerConfig, ServerError};

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

fn parse_object(bytes: &[u8], expected: &str) -> Result<Map<String, Value>, ServerError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ServerError::BadJson {
        message: e.to_string(),
    })?;
    match value {
        Value::Object(object) => Ok(object),
        other => Err(ServerError::shape(
            "(body)",
            format!("expected an object {expected}, found {}", type_name(&other)),
        )),
    }
}

fn take_array(
    object: &mut Map<String, Value>,
    field: &str,
    required: bool,
    max: usize,
) -> Result<Option<Vec<Value>>, ServerError> {
    match object.remove(field) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(ServerError::shape(field, "missing; expected an array")),
        Some(Value::Array(items)) if items.len() > max => Err(ServerError::TooManySamples {
            field: field.to_owned(),
            got: items.len(),
            max,
        }),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(other) => Err(ServerError::shape(
            field,
            format!("expected an array, found {}", type_name(&other)),
        )),
    }
}

fn check_length(field: String, completion: &str, config: &ServerConfig) -> Result<(), ServerError> {
    if completion.len() > config.max_completion_bytes {
        return Err(ServerError::CompletionTooLong {
            field,
            bytes: completion.len(),
            max: config.max_completion_bytes,
        });
    }
    Ok(())
}

/// `POST /v1/score`: `{"samples": [Sample, …]}`.
pub(crate) fn parse_score(bytes: &[u8], config: &ServerConfig) -> Result<Vec<Sample>, ServerError> {
    let mut object = parse_object(bytes, r#"{"samples": [...]}"#)?;
    let items = take_array(&mut object, "samples", true, config.max_samples_per_request)?
        .expect("required arrays are present; this is a bug");
    if let Some(key) = object.keys().next() {
        return Err(ServerError::shape(
            key.as_str(),
            "unknown field; the body has only `samples`",
        ));
    }
    let mut samples = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let field = format!("samples[{i}]");
        let Value::Object(fields) = &item else {
            return Err(ServerError::shape(
                field,
                format!("expected a sample object, found {}", type_name(&item)),
            ));
        };
        for (key, ok) in [("completion", true), ("prompt", false)] {
            match fields.get(key) {
                None if ok => {
                    return Err(ServerError::shape(
                        format!("{field}.{key}"),
                        "missing; expected a string, a message or a list of messages",
                    ))
                }
                Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                    return Err(ServerError::shape(
                        format!("{field}.{key}"),
                        format!(
                            "expected a string, a message or a list of messages, found {}",
                            type_name(v)
                        ),
                    ))
                }
                _ => {}
            }
        }
        let sample: Sample = serde_json::from_value(item).map_err(|e| {
            let message = e.to_string();
            // Untagged enums say only "did not match any variant"; say which field and what fits.
            for (key, name) in [("completion", "Completion"), ("prompt", "Prompt")] {
                if message.contains(&format!("untagged enum {name}")) {
                    return ServerError::shape(
                        format!("{field}.{key}"),
                        "expected a string, a message {\"role\", \"content\"} or a list of messages",
                    );
                }
            }
            ServerError::shape(field.clone(), message)
        })?;
        check_length(
            format!("{field}.completion"),
            &sample.completion.text(),
            config,
        )?;
        samples.push(sample);
    }
    Ok(samples)
}

/// One OpenRLHF sample: split into a [`Sample`], or the reason it could not be.
pub(crate) type OpenRlhfSample = Result<Sample, String>;

/// `POST /get_reward`: `{"query": [str], "prompts": [str]?, "labels": [str]?}` (OpenRLHF's
/// `remote_rm_utils`). Unknown top-level keys are ignored, as OpenRLHF's own server does.
pub(crate) fn parse_get_reward(
    bytes: &[u8],
    config: &ServerConfig,
) -> Result<Vec<OpenRlhfSample>, ServerError> {
    let mut object = parse_object(
        bytes,
        r#"{"query": [...], "prompts": [...], "labels": [...]}"#,
    )?;
    let max = config.max_samples_per_request;
    let query = take_array(&mut object, "query", true, max)?
        .expect("required arrays are present; this is a bug");
    let prompts = take_array(&mut object, "prompts", false, max)?;
    let labels = take_array(&mut object, "labels", false, max)?;
    for (name, array) in [("prompts", &prompts), ("labels", &labels)] {
        if let Some(array) = array {
            if array.len() != query.len() {
                return Err(ServerError::shape(
                    name,
                    format!(
                        "has {} entries but `query` has {}; expected one per query",
                        array.len(),
                        query.len()
                    ),
                ));
            }
        }
    }
    let string = |field: &str, i: usize, value: &Value| -> Result<Option<String>, ServerError> {
        match value {
            Value::String(s) => Ok(Some(s.clone())),
            Value::Null if field != "query" => Ok(None),
            other => Err(ServerError::shape(
                format!("{field}[{i}]"),
                format!("expected a string, found {}", type_name(other)),
            )),
        }
    };
    let mut samples = Vec::with_capacity(query.len());
    for (i, q) in query.iter().enumerate() {
        let q = string("query", i, q)?.expect("query entries are strings; this is a bug");
        let prompt = match &prompts {
            Some(p) => string("prompts", i, &p[i])?,
            None => None,
        };
        let reference = match labels.as_ref().map(|l| &l[i]) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(Reference::Text(s.clone())),
            Some(other) => Some(Reference::Json(other.clone())),
        };
        let Some((prompt, completion)) = config.split.split(&q, prompt.as_deref()) else {
            samples.push(Err(format!(
                "query not split: query[{i}] contains neither its prompt nor an assistant marker"
            )));
            continue;
        };
        check_length(format!("query[{i}]"), completion, config)?;
        let mut sample = Sample::new(prompt, completion);
        sample.reference = reference;
        samples.push(Ok(sample));
    }
    Ok(samples)
}

/// An outcome on the wire: a finite value or `null`, its kind, and the reason of a non-score.
#[derive(Debug, Serialize)]
pub(crate) struct WireOutcome {
    /// The score; `null` for non-scores (and for a non-finite value, which is reported as failed).
    pub value: Option<f64>,
    /// `scored`, `unscorable`, `timed_out` or `failed`.
    pub kind: &'static str,
    /// Why there is no score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl WireOutcome {
    /// The one place outcomes become wire values: NaN and infinities never get out.
    pub(crate) fn new(outcome: &Outcome) -> WireOutcome {
        match outcome.value() {
            Some(value) if value.is_finite() => WireOutcome {
                value: Some(value),
                kind: OutcomeKind::Scored.as_str(),
                reason: None,
            },
            Some(value) => WireOutcome {
                value: None,
                kind: OutcomeKind::Failed.as_str(),
                reason: Some(format!("non-finite score {value}")),
            },
            None => WireOutcome {
                value: None,
                kind: outcome.kind().as_str(),
                reason: outcome.reason().map(str::to_owned),
            },
        }
    }
}

/// One sample's answer on `/v1/score`.
#[derive(Debug, Serialize)]
pub(crate) struct WireResult {
    /// The combined reward.
    #[serde(flatten)]
    pub reward: WireOutcome,
    /// Every term, in spec order.
    pub terms: Vec<WireTerm>,
}

/// One term's answer.
#[derive(Debug, Serialize)]
pub(crate) struct WireTerm {
    /// The term's name.
    pub name: String,
    /// Its outcome.
    #[serde(flatten)]
    pub outcome: WireOutcome,
    /// Its sub-components, if it has any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<WireComponent>,
}

/// One sub-component's answer.
#[derive(Debug, Serialize)]
pub(crate) struct WireComponent {
    /// The component's name.
    pub name: String,
    /// Its outcome.
    #[serde(flatten)]
    pub outcome: WireOutcome,
}

/// The `/v1/score` response.
#[derive(Debug, Serialize)]
pub(crate) struct ScoreResponse {
    /// The spec generation that scored the request.
    pub generation: u64,
    /// One result per sample, in request order.
    pub results: Vec<WireResult>,
}

pub(crate) fn score_response(
    pipeline: &rewardkit::Pipeline,
    generation: u64,
    results: &[ScoredSample],
) -> ScoreResponse {
    let terms = pipeline.terms();
    ScoreResponse {
        generation,
        results: results
            .iter()
            .map(|scored| WireResult {
                reward: WireOutcome::new(&scored.reward),
                terms: terms
                    .iter()
                    .zip(&scored.terms)
                    .map(|(term, output)| WireTerm {
                        name: term.name.clone(),
                        outcome: WireOutcome::new(&output.outcome),
                        components: term
                            .component_names
                            .iter()
                            .zip(&output.components)
                            .map(|(name, outcome)| WireComponent {
                                name: name.clone(),
                                outcome: WireOutcome::new(outcome),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The `/get_reward` response, OpenRLHF's shape: every number a finite float.
#[derive(Debug, Serialize)]
pub(crate) struct GetRewardResponse {
    /// The reward per query (the fallback for non-scores).
    pub rewards: Vec<f64>,
    /// The same numbers (OpenRLHF uses `scores` for dynamic filtering).
    pub scores: Vec<f64>,
    /// Per-sample logs OpenRLHF averages into its metrics: every term's value (the fallback for
    /// its non-scores) and, per outcome kind `k`, `outcome/k` = 1.0 if the reward is of kind `k`.
    pub extra_logs: Map<String, Value>,
}

pub(crate) fn get_reward_response(
    pipeline: &rewardkit::Pipeline,
    outcomes: &[ScoredSample],
    fallback: f64,
) -> (GetRewardResponse, u64) {
    let value = |outcome: &Outcome| WireOutcome::new(outcome).value.unwrap_or(fallback);
    let rewards: Vec<f64> = outcomes.iter().map(|s| value(&s.reward)).collect();
    let substituted = outcomes
        .iter()
        .filter(|s| WireOutcome::new(&s.reward).value.is_none())
        .count() as u64;
    let mut extra_logs = Map::new();
    for (t, term) in pipeline.terms().iter().enumerate() {
        let values: Vec<Value> = outcomes
            .iter()
            .map(|s| {
                s.terms
                    .get(t)
                    .map_or(fallback, |o| value(&o.outcome))
                    .into()
            })
            .collect();
        extra_logs.insert(term.name.clone(), Value::Array(values));
    }
    for kind in [
        OutcomeKind::Scored,
        OutcomeKind::Unscorable,
        OutcomeKind::TimedOut,
        OutcomeKind::Failed,
    ] {
        let flags: Vec<Value> = outcomes
            .iter()
            .map(|s| {
                let k = WireOutcome::new(&s.reward).kind;
                if k == kind.as_str() { 1.0 } else { 0.0 }.into()
            })
            .collect();
        extra_logs.insert(format!("outcome/{kind}"), Value::Array(flags));
    }
    (
        GetRewardResponse {
            scores: rewards.clone(),
            rewards,
            extra_logs,
        },
        substituted,
    )
}
