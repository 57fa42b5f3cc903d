//! Request parsing and response shapes. A `/v1/score` body is tried by the direct reader
//! (`crate::direct`), then by a one-pass serde path, and only when both decline by the checked
//! path through `serde_json::Value`, so that every error names the field and index it is about
//! (`samples[3].completion: …`); the three agree on every body the faster ones accept. The
//! `/v1/score` answer is written by hand into one buffer (`ScoreResponse::to_vec`), byte for byte
//! what serde would write.

use std::borrow::Cow;

use rewardkit::ScoredSample;
#[cfg(test)]
use rewardkit_core::RewardOutput;
use rewardkit_core::{Outcome, OutcomeKind, Reference, Sample};
#[cfg(test)]
use serde::ser::{SerializeMap, Serializer};
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
///
/// Three tiers, each accepting only what the next accepts, with the same result: the direct
/// reader (`crate::direct`: every field a string, no serde), then the fast path (serde straight
/// into samples, one pass, no `serde_json::Value` in between), then the checked path, whose
/// error names the field and index (`direct_agrees_with_the_checked_parser` and
/// `fast_and_checked_parsers_agree` hold the first two to that).
pub(crate) fn parse_score(bytes: &[u8], config: &ServerConfig) -> Result<Vec<Sample>, ServerError> {
    if let Some(samples) = crate::direct::parse_score(bytes, config) {
        return Ok(samples);
    }
    if let Ok(samples) = fast::parse_score(bytes, config) {
        return Ok(samples);
    }
    parse_score_checked(bytes, config)
}

/// The checked path of [`parse_score`]: through `serde_json::Value`, so that every error can name
/// its field and index.
pub(crate) fn parse_score_checked(
    bytes: &[u8],
    config: &ServerConfig,
) -> Result<Vec<Sample>, ServerError> {
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
            // One fixed reason (no index): it becomes a metrics label, whose values must stay few.
            samples.push(Err(
                "query not split: it contains neither its prompt nor an assistant marker".into(),
            ));
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
#[derive(Debug)]
pub(crate) struct WireOutcome<'a> {
    /// The score; `null` for non-scores (and for a non-finite value, which is reported as failed).
    pub value: Option<f64>,
    /// `scored`, `unscorable`, `timed_out` or `failed`.
    pub kind: &'static str,
    /// Why there is no score.
    pub reason: Option<Cow<'a, str>>,
}

impl<'a> WireOutcome<'a> {
    /// The one place outcomes become wire values: NaN and infinities never get out.
    pub(crate) fn new(outcome: &'a Outcome) -> WireOutcome<'a> {
        match outcome.value() {
            Some(value) if value.is_finite() => WireOutcome {
                value: Some(value),
                kind: OutcomeKind::Scored.as_str(),
                reason: None,
            },
            Some(value) => WireOutcome {
                value: None,
                kind: OutcomeKind::Failed.as_str(),
                reason: Some(Cow::Owned(format!("non-finite score {value}"))),
            },
            None => WireOutcome {
                value: None,
                kind: outcome.kind().as_str(),
                reason: outcome.reason().map(Cow::Borrowed),
            },
        }
    }

    /// Writes the value, then `,"kind":…` and, for non-scores, `,"reason":…`: what follows an
    /// object's `"value":` key on the wire.
    fn write_rest(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        write_number(out, self.value)?;
        out.extend_from_slice(b",\"kind\":\"");
        // Outcome kinds are fixed snake_case words: nothing to escape.
        out.extend_from_slice(self.kind.as_bytes());
        out.push(b'"');
        if let Some(reason) = &self.reason {
            out.extend_from_slice(b",\"reason\":");
            serde_json::to_writer(&mut *out, reason.as_ref())?;
        }
        Ok(())
    }

    /// Writes `value`, `kind` and (for non-scores) `reason` into an object being serialised.
    #[cfg(test)]
    fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("value", &self.value)?;
        map.serialize_entry("kind", self.kind)?;
        if let Some(reason) = &self.reason {
            map.serialize_entry("reason", reason)?;
        }
        Ok(())
    }
}

/// The `/v1/score` response, serialised straight from the scored samples (no per-sample copies):
///
/// ```json
/// {"generation": 1, "results": [{"value": 1.2, "kind": "scored", "terms": [
///     {"name": "correct", "value": 1.0, "kind": "scored", "components": [...]}, ...]}]}
/// ```
///
/// Each outcome is `value` (a finite number or `null`), `kind` and, for non-scores, `reason`;
/// `components` appears only for terms that have sub-components.
pub(crate) struct ScoreResponse<'a> {
    /// The pipeline that scored the samples (term and component names).
    pub pipeline: &'a rewardkit::Pipeline,
    /// The spec generation that scored the request.
    pub generation: u64,
    /// One result per sample, in request order.
    pub results: &'a [ScoredSample],
    /// One advantage per sample, when the spec has an `[advantages]` table (NaN: masked, sent
    /// as `null`).
    pub advantages: Option<&'a [f64]>,
}

impl ScoreResponse<'_> {
    /// The response as JSON bytes, written straight into one buffer sized up front: the same
    /// bytes serde_json would write for the shape above (numbers and strings are formatted by
    /// serde_json itself), without a serializer call per field. Each term's
    /// `{"name":"…","value":` prefix is escaped once per response, not once per sample.
    pub(crate) fn to_vec(&self) -> Result<Vec<u8>, serde_json::Error> {
        let terms = self.pipeline.terms();
        // About 60 bytes per outcome: sized once instead of grown by doubling.
        let outcomes = 1 + terms.len();
        let mut out = Vec::with_capacity(64 + self.results.len() * outcomes * 64);
        let prefixes: Vec<Vec<u8>> = terms
            .iter()
            .map(|t| name_prefix(&t.name))
            .collect::<Result<_, _>>()?;
        out.extend_from_slice(b"{\"generation\":");
        serde_json::to_writer(&mut out, &self.generation)?;
        out.extend_from_slice(b",\"results\":[");
        for (i, result) in self.results.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"value\":");
            WireOutcome::new(&result.reward).write_rest(&mut out)?;
            if let Some(advantage) = self.advantages.and_then(|a| a.get(i).copied()) {
                out.extend_from_slice(b",\"advantage\":");
                write_number(&mut out, Some(advantage).filter(|a| a.is_finite()))?;
            }
            out.extend_from_slice(b",\"terms\":[");
            for (k, ((term, output), prefix)) in
                terms.iter().zip(&result.terms).zip(&prefixes).enumerate()
            {
                if k > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(prefix);
                WireOutcome::new(&output.outcome).write_rest(&mut out)?;
                if !term.component_names.is_empty() && !output.components.is_empty() {
                    out.extend_from_slice(b",\"components\":[");
                    for (c, (name, outcome)) in term
                        .component_names
                        .iter()
                        .zip(&output.components)
                        .enumerate()
                    {
                        if c > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(&name_prefix(name)?);
                        WireOutcome::new(outcome).write_rest(&mut out)?;
                        out.push(b'}');
                    }
                    out.push(b']');
                }
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
        Ok(out)
    }
}

/// The serde form of the response: the oracle `ScoreResponse::to_vec` must match byte for byte.
#[cfg(test)]
impl Serialize for ScoreResponse<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Results<'a>(&'a ScoreResponse<'a>);
        struct One<'a>(&'a [rewardkit::Term], &'a ScoredSample, Option<f64>);
        struct Terms<'a>(&'a [rewardkit::Term], &'a ScoredSample);
        struct Term<'a>(&'a rewardkit::Term, &'a RewardOutput);
        struct Components<'a>(&'a rewardkit::Term, &'a RewardOutput);
        struct Component<'a>(&'a str, &'a Outcome);

        impl Serialize for Results<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let terms = self.0.pipeline.terms();
                let advantage = |i: usize| self.0.advantages.and_then(|a| a.get(i).copied());
                s.collect_seq(
                    self.0
                        .results
                        .iter()
                        .enumerate()
                        .map(|(i, r)| One(terms, r, advantage(i))),
                )
            }
        }
        impl Serialize for One<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(None)?;
                WireOutcome::new(&self.1.reward).write(&mut map)?;
                if let Some(advantage) = self.2 {
                    map.serialize_entry("advantage", &Some(advantage).filter(|a| a.is_finite()))?;
                }
                map.serialize_entry("terms", &Terms(self.0, self.1))?;
                map.end()
            }
        }
        impl Serialize for Terms<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().zip(&self.1.terms).map(|(t, o)| Term(t, o)))
            }
        }
        impl Serialize for Term<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(None)?;
                map.serialize_entry("name", &self.0.name)?;
                WireOutcome::new(&self.1.outcome).write(&mut map)?;
                if !self.0.component_names.is_empty() && !self.1.components.is_empty() {
                    map.serialize_entry("components", &Components(self.0, self.1))?;
                }
                map.end()
            }
        }
        impl Serialize for Components<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let names = self.0.component_names.iter();
                s.collect_seq(names.zip(&self.1.components).map(|(n, o)| Component(n, o)))
            }
        }
        impl Serialize for Component<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(None)?;
                map.serialize_entry("name", self.0)?;
                WireOutcome::new(self.1).write(&mut map)?;
                map.end()
            }
        }

        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("generation", &self.generation)?;
        map.serialize_entry("results", &Results(self))?;
        map.end()
    }
}

/// `{"name":"<name, escaped>","value":`
fn name_prefix(name: &str) -> Result<Vec<u8>, serde_json::Error> {
    let mut prefix = Vec::with_capacity(name.len() + 20);
    prefix.extend_from_slice(b"{\"name\":");
    serde_json::to_writer(&mut prefix, name)?;
    prefix.extend_from_slice(b",\"value\":");
    Ok(prefix)
}

/// A number (shortest round-trip form, serde_json's) or `null`.
fn write_number(out: &mut Vec<u8>, value: Option<f64>) -> Result<(), serde_json::Error> {
    match value {
        Some(value) => serde_json::to_writer(out, &value),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
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

/// The fast path of [`parse_score`]: serde straight from the bytes into [`Sample`]s, without the
/// `serde_json::Value` tree and without the buffering serde's untagged enums do (each string is
/// copied once, into its sample). It mirrors `Sample`'s own `Deserialize` (untagged `Prompt`,
/// `Completion` and `Reference`, unknown keys ignored) and gives up on anything else — a
/// duplicate key, a wrong type, a limit — leaving the message to the checked path.
mod fast {
    use std::fmt;

    use rewardkit_core::{Completion, Message, Prompt, Reference, Sample};
    use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
    use serde::de::{Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde::Deserialize;
    use serde_json::{Map, Value};

    use crate::ServerConfig;

    /// The fast path declined; the checked path will say why (or accept it).
    #[derive(Debug)]
    pub(super) struct Declined;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        samples: Vec<FastSample>,
    }

    pub(super) fn parse_score(
        bytes: &[u8],
        config: &ServerConfig,
    ) -> Result<Vec<Sample>, Declined> {
        // One UTF-8 check of the whole body, then a parser that need not check each string.
        let text = std::str::from_utf8(bytes).map_err(|_| Declined)?;
        let request: Request = serde_json::from_str(text).map_err(|_| Declined)?;
        if request.samples.len() > config.max_samples_per_request
            || request
                .samples
                .iter()
                .any(|s| s.0.completion.text().len() > config.max_completion_bytes)
        {
            return Err(Declined);
        }
        Ok(request.samples.into_iter().map(|s| s.0).collect())
    }

    struct FastSample(Sample);

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "lowercase")]
    enum Field {
        Prompt,
        Completion,
        Reference,
        Group,
        Metadata,
        #[serde(other)]
        Other,
    }

    impl<'de> Deserialize<'de> for FastSample {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_map(SampleVisitor)
        }
    }

    struct SampleVisitor;

    impl<'de> Visitor<'de> for SampleVisitor {
        type Value = FastSample;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sample object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FastSample, A::Error> {
            let mut prompt: Option<Prompt> = None;
            let mut completion: Option<Completion> = None;
            let mut reference: Option<Option<Reference>> = None;
            let mut group: Option<Option<String>> = None;
            let mut metadata: Option<Map<String, Value>> = None;
            fn once<T, E: serde::de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
                match slot.replace(value) {
                    None => Ok(()),
                    Some(_) => Err(E::custom("duplicate key")),
                }
            }
            while let Some(key) = map.next_key::<Field>()? {
                match key {
                    Field::Prompt => once(&mut prompt, map.next_value::<FastPrompt>()?.0)?,
                    Field::Completion => {
                        once(&mut completion, map.next_value::<FastCompletion>()?.0)?
                    }
                    Field::Reference => once(
                        &mut reference,
                        map.next_value::<Option<FastReference>>()?.map(|r| r.0),
                    )?,
                    Field::Group => once(&mut group, map.next_value::<Option<String>>()?)?,
                    Field::Metadata => once(&mut metadata, map.next_value()?)?,
                    Field::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(FastSample(Sample {
                prompt: prompt.unwrap_or_default(),
                completion: completion.ok_or_else(|| A::Error::missing_field("completion"))?,
                reference: reference.flatten(),
                group: group.flatten(),
                metadata: metadata.unwrap_or_default(),
            }))
        }
    }

    /// `Prompt`: a string, or a list of messages.
    struct FastPrompt(Prompt);

    impl<'de> Deserialize<'de> for FastPrompt {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = FastPrompt;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string or a list of messages")
                }
                fn visit_str<E>(self, v: &str) -> Result<FastPrompt, E> {
                    Ok(FastPrompt(Prompt::Text(v.to_owned())))
                }
                fn visit_string<E>(self, v: String) -> Result<FastPrompt, E> {
                    Ok(FastPrompt(Prompt::Text(v)))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<FastPrompt, A::Error> {
                    let messages = Vec::<Message>::deserialize(SeqAccessDeserializer::new(seq))?;
                    Ok(FastPrompt(Prompt::Chat(messages)))
                }
            }
            deserializer.deserialize_any(V)
        }
    }

    /// `Completion`: a string, one message, or a list of messages.
    struct FastCompletion(Completion);

    impl<'de> Deserialize<'de> for FastCompletion {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = FastCompletion;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string, a message or a list of messages")
                }
                fn visit_str<E>(self, v: &str) -> Result<FastCompletion, E> {
                    Ok(FastCompletion(Completion::Text(v.to_owned())))
                }
                fn visit_string<E>(self, v: String) -> Result<FastCompletion, E> {
                    Ok(FastCompletion(Completion::Text(v)))
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FastCompletion, A::Error> {
                    let message = Message::deserialize(MapAccessDeserializer::new(map))?;
                    Ok(FastCompletion(Completion::Message(message)))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<FastCompletion, A::Error> {
                    let messages = Vec::<Message>::deserialize(SeqAccessDeserializer::new(seq))?;
                    Ok(FastCompletion(Completion::Chat(messages)))
                }
            }
            deserializer.deserialize_any(V)
        }
    }

    /// `Reference`: a string as text, any other JSON value as JSON (`null` is no reference,
    /// handled by the `Option` around it).
    struct FastReference(Reference);

    impl<'de> Deserialize<'de> for FastReference {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = FastReference;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_str<E>(self, v: &str) -> Result<FastReference, E> {
                    Ok(FastReference(Reference::Text(v.to_owned())))
                }
                fn visit_string<E>(self, v: String) -> Result<FastReference, E> {
                    Ok(FastReference(Reference::Text(v)))
                }
                fn visit_bool<E>(self, v: bool) -> Result<FastReference, E> {
                    Ok(FastReference(Reference::Json(Value::Bool(v))))
                }
                fn visit_i64<E>(self, v: i64) -> Result<FastReference, E> {
                    Ok(FastReference(Reference::Json(Value::from(v))))
                }
                fn visit_u64<E>(self, v: u64) -> Result<FastReference, E> {
                    Ok(FastReference(Reference::Json(Value::from(v))))
                }
                fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<FastReference, E> {
                    serde_json::Number::from_f64(v)
                        .map(|n| FastReference(Reference::Json(Value::Number(n))))
                        .ok_or_else(|| E::custom("a non-finite number"))
                }
                fn visit_unit<E>(self) -> Result<FastReference, E> {
                    Ok(FastReference(Reference::Json(Value::Null)))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<FastReference, A::Error> {
                    let value = Value::deserialize(SeqAccessDeserializer::new(seq))?;
                    Ok(FastReference(Reference::Json(value)))
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FastReference, A::Error> {
                    let value = Value::deserialize(MapAccessDeserializer::new(map))?;
                    Ok(FastReference(Reference::Json(value)))
                }
            }
            deserializer.deserialize_any(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len() as u64) as usize]
        }
    }

    fn random_number(rng: &mut Rng) -> f64 {
        match rng.below(6) {
            0 => rng.pick(&[0.0, -0.0, 1.0, -1.0, 0.5, 1e300, -1e-300, 5e-324, f64::MAX]),
            1 => rng.pick(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
            2 => (rng.next() % 2001) as f64 / 1000.0 - 1.0,
            3 => rng.next() as f64 / 3.0,
            _ => f64::from_bits(rng.next()),
        }
    }

    fn random_outcome(rng: &mut Rng) -> Outcome {
        let text = |rng: &mut Rng| {
            rng.pick(&[
                "no answer",
                "quote \" and \\ back",
                "line\nbreak\t",
                "\u{1}ctl",
                "é ✓ 😀",
                "",
            ])
            .to_owned()
        };
        match rng.below(5) {
            0 | 1 => Outcome::Scored {
                value: random_number(rng),
            },
            2 => Outcome::Unscorable { reason: text(rng) },
            3 => Outcome::TimedOut,
            _ => Outcome::Failed { error: text(rng) },
        }
    }

    #[test]
    fn the_direct_encoder_writes_what_serde_writes() {
        let spec = r#"
            [[term]]
            name = "correct"
            kind = "gsm8k"

            [[term]]
            name = "tool-call"
            kind = "tool_call"

            [[term]]
            name = "think"
            kind = "think_format"
        "#;
        let spec = rewardkit::Spec::from_toml_str(spec, "test.toml").unwrap();
        let pipeline = rewardkit::Pipeline::build(&spec).unwrap();
        let terms = pipeline.terms();
        assert!(terms.iter().any(|t| !t.component_names.is_empty()));
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for case in 0..300 {
            let n = rng.below(6) as usize;
            let results: Vec<ScoredSample> = (0..n)
                .map(|_| ScoredSample {
                    reward: random_outcome(&mut rng),
                    terms: terms
                        .iter()
                        .map(|t| RewardOutput {
                            outcome: random_outcome(&mut rng),
                            // Sometimes no components, as `RewardOutput::new` makes.
                            components: if rng.below(4) == 0 {
                                Vec::new()
                            } else {
                                (0..t.component_names.len())
                                    .map(|_| random_outcome(&mut rng))
                                    .collect()
                            },
                        })
                        .collect(),
                })
                .collect();
            let advantages: Option<Vec<f64>> =
                (rng.below(2) == 0).then(|| (0..n).map(|_| random_number(&mut rng)).collect());
            let response = ScoreResponse {
                pipeline: &pipeline,
                generation: rng.next(),
                results: &results,
                advantages: advantages.as_deref(),
            };
            let direct = response.to_vec().unwrap();
            let serde = serde_json::to_vec(&response).unwrap();
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                String::from_utf8(serde).unwrap(),
                "case {case}"
            );
        }
    }

    /// `body` through the fast and the checked parser: when the fast one accepts, both must give
    /// the same samples; `fast_ok` says whether the fast one should accept at all.
    fn check(body: &str, fast_ok: bool) {
        let config = ServerConfig {
            max_samples_per_request: 3,
            max_completion_bytes: 16,
            ..ServerConfig::default()
        };
        let fast = fast::parse_score(body.as_bytes(), &config);
        let checked = parse_score_checked(body.as_bytes(), &config);
        assert_eq!(fast.is_ok(), fast_ok, "{body}: fast path {fast:?}");
        if let Ok(fast) = fast {
            assert_eq!(
                Ok::<_, String>(fast),
                checked.map_err(|e| e.to_string()),
                "{body}"
            );
        }
        // And the combined parser is the checked one's answer, either way.
        assert_eq!(
            parse_score(body.as_bytes(), &config).map_err(|e| e.to_string()),
            parse_score_checked(body.as_bytes(), &config).map_err(|e| e.to_string()),
            "{body}"
        );
    }

    #[test]
    fn fast_and_checked_parsers_agree() {
        check(r#"{"samples": []}"#, true);
        check(r#"{"samples": [{"completion": "x"}]}"#, true);
        check(
            r#"{"samples": [{"prompt": "p", "completion": "x", "reference": "4"}]}"#,
            true,
        );
        check(r#"{"samples": [{"completion": "a\"\\u00e9b"}]}"#, true);
        check(
            r#"{"samples": [{"completion": "x", "reference": 4}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"completion": "x", "reference": -4.5}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"completion": "x", "reference": 18446744073709551615}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"completion": "x", "reference": true}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"completion": "x", "reference": null}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"completion": "x", "reference": ["a", {"b": [1]}]}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"completion": "x", "reference": {"name": "f"}}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"completion": "x", "group": "g", "metadata": {"k": [1]}}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"completion": "x", "group": null, "extra": {"y": 1}}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"completion": {"role": "assistant", "content": "c"}}]}"#,
            true,
        );
        check(
            r#"{"samples": [{"prompt": [{"role": "user", "content": "q"}],
                "completion": [{"role": "assistant", "content": "c", "x": 1}]}]}"#,
            true,
        );
        check(r#"{"samples": [{"comp\u006cetion": "escaped key"}]}"#, true);
        // Declined by the fast path; the checked path answers (accepts or names the field).
        check(
            r#"{"samples": [{"completion": "x", "completion": "y"}]}"#,
            false,
        );
        check(
            r#"{"samples": [{"completion": "x"}], "samples": []}"#,
            false,
        );
        check(r#"{"samples": [{"completion": "x"}], "other": 1}"#, false);
        check(r#"{"samples": [{"prompt": "p"}]}"#, false);
        check(r#"{"samples": [{"completion": 5}]}"#, false);
        check(r#"{"samples": [{"completion": null}]}"#, false);
        check(r#"{"samples": [{"completion": ["a", "b"]}]}"#, false);
        check(
            r#"{"samples": [{"completion": {"role": "assistant"}}]}"#,
            false,
        );
        check(
            r#"{"samples": [{"prompt": {"role": "u", "content": "c"}, "completion": "x"}]}"#,
            false,
        );
        check(
            r#"{"samples": [{"prompt": null, "completion": "x"}]}"#,
            false,
        );
        check(
            r#"{"samples": [{"completion": "x", "metadata": null}]}"#,
            false,
        );
        check(r#"{"samples": [{"completion": "x", "group": 3}]}"#, false);
        check(r#"{"samples": [7]}"#, false);
        check(r#"{"samples": {}}"#, false);
        check(r#"{"samples": null}"#, false);
        check(r#"[]"#, false);
        check(r#"{"samples": [{"completion": "x"}"#, false);
        check(
            r#"{"samples": [{"completion": "x"}, {"completion": "x"}, {"completion": "x"}, {"completion": "x"}]}"#,
            false,
        );
        check(
            r#"{"samples": [{"completion": "this is longer than sixteen"}]}"#,
            false,
        );
    }
}
