//! Training data: preference pairs and ratings in the conventions users already have.
//!
//! * **TRL** (`RewardTrainer`): `prompt` (optional) + `chosen` + `rejected`, each a string or a
//!   chat list of `{role, content}` messages, and an optional numeric `margin` column.
//!   Without a `prompt`, the pair has an *implicit prompt*: the longest shared prefix of `chosen`
//!   and `rejected` (whole messages for chat lists).
//! * **HH-RLHF** (Anthropic): `chosen`/`rejected` are whole dialogues
//!   `\n\nHuman: …\n\nAssistant: …`; the implicit prompt is cut just after the last
//!   `\n\nAssistant:` the two share, so the response is the final assistant turn.
//! * **Ratings**: `prompt`, `response` and one numeric column per attribute (HelpSteer-style).
//!
//! Chat lists are rendered with one simple built-in template — `\n\n{Role}: {content}` per message,
//! roles `Human`/`Assistant`/`System` — chosen so that a chat list and the same dialogue written
//! HH-style give the model identical text.
//!
//! Every row yields a pair or an error naming the file, the line and the field.

use std::path::Path;

use rewardkit_core::{Completion, Prompt, Sample};
use rewardkit_data::RecordReader;
use serde_json::{Map, Value};

use crate::ModelError;

/// The text one reward is computed for: a prompt and the response to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RewardInput {
    /// The prompt (for dialogues: everything before the final response, ending in
    /// `\n\nAssistant:`).
    pub prompt: String,
    /// The response being rewarded.
    pub response: String,
}

impl RewardInput {
    /// A prompt and a response.
    pub fn new(prompt: impl Into<String>, response: impl Into<String>) -> RewardInput {
        RewardInput {
            prompt: prompt.into(),
            response: response.into(),
        }
    }

    /// The text a sample's reward is computed for; chat prompts and completions are rendered
    /// with the built-in template (see the module docs).
    pub fn from_sample(sample: &Sample) -> RewardInput {
        let prompt = match &sample.prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Chat(messages) => render_prompt(
                &messages
                    .iter()
                    .map(|m| (m.role.as_str(), m.content.as_str()))
                    .collect::<Vec<_>>(),
            ),
        };
        let response = match &sample.completion {
            Completion::Text(text) => text.clone(),
            Completion::Message(m) => render_response(&[(m.role.as_str(), m.content.as_str())]),
            Completion::Chat(messages) => render_response(
                &messages
                    .iter()
                    .map(|m| (m.role.as_str(), m.content.as_str()))
                    .collect::<Vec<_>>(),
            ),
        };
        RewardInput { prompt, response }
    }
}

/// One preference pair.
#[derive(Clone, Debug, PartialEq)]
pub struct PreferencePair {
    /// 1-based line of the row it came from.
    pub line: u64,
    /// The shared prompt.
    pub prompt: String,
    /// The preferred response.
    pub chosen: String,
    /// The other response.
    pub rejected: String,
    /// The margin (or preference magnitude), when the file has one.
    pub margin: Option<f64>,
}

impl PreferencePair {
    /// The chosen side as a model input.
    pub fn chosen_input(&self) -> RewardInput {
        RewardInput::new(self.prompt.clone(), self.chosen.clone())
    }

    /// The rejected side as a model input.
    pub fn rejected_input(&self) -> RewardInput {
        RewardInput::new(self.prompt.clone(), self.rejected.clone())
    }
}

/// One rated response.
#[derive(Clone, Debug, PartialEq)]
pub struct Rating {
    /// 1-based line.
    pub line: u64,
    /// The prompt and response.
    pub input: RewardInput,
    /// One target per attribute.
    pub targets: Vec<f64>,
}

/// Column names of a preference file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairFields {
    /// The prompt column (optional in a row: absent means an implicit prompt).
    pub prompt: String,
    /// The chosen column.
    pub chosen: String,
    /// The rejected column.
    pub rejected: String,
    /// The margin/magnitude column (optional in a row).
    pub margin: String,
}

impl Default for PairFields {
    fn default() -> Self {
        PairFields {
            prompt: "prompt".into(),
            chosen: "chosen".into(),
            rejected: "rejected".into(),
            margin: "margin".into(),
        }
    }
}

/// Reads every preference pair of a JSONL(.gz) or Parquet file; the first bad row stops with an
/// error naming its line and field.
pub fn read_pairs(path: &Path, fields: &PairFields) -> Result<Vec<PreferencePair>, ModelError> {
    let mut pairs = Vec::new();
    for record in RecordReader::open(path, None)? {
        let record = record?;
        pairs.push(pair_from_row(path, record.line, &record.fields, fields)?);
    }
    Ok(pairs)
}

/// Reads rated responses: `prompt`, `response` and the numeric `attributes` columns.
pub fn read_ratings(
    path: &Path,
    prompt: &str,
    response: &str,
    attributes: &[String],
) -> Result<Vec<Rating>, ModelError> {
    let mut ratings = Vec::new();
    for record in RecordReader::open(path, None)? {
        let record = record?;
        let (line, row) = (record.line, &record.fields);
        let field_error = |field: &str, expected: &str| ModelError::Field {
            file: path.to_path_buf(),
            line,
            field: field.to_owned(),
            expected: expected.to_owned(),
        };
        let prompt_text = match row.get(prompt) {
            None | Some(Value::Null) => String::new(),
            Some(value) => match text_or_chat(value) {
                Some(Text::Plain(text)) => text,
                Some(Text::Chat(messages)) => render_prompt(&as_pairs(&messages)),
                None => return Err(field_error(prompt, EXPECTED_TEXT)),
            },
        };
        let response_text = match row.get(response).and_then(text_or_chat) {
            Some(Text::Plain(text)) => text,
            Some(Text::Chat(messages)) => render_response(&as_pairs(&messages)),
            None => return Err(field_error(response, EXPECTED_TEXT)),
        };
        let mut targets = Vec::with_capacity(attributes.len());
        for attribute in attributes {
            match row.get(attribute).and_then(Value::as_f64) {
                Some(x) if x.is_finite() => targets.push(x),
                _ => return Err(field_error(attribute, "a finite number (the rating)")),
            }
        }
        ratings.push(Rating {
            line,
            input: RewardInput::new(prompt_text, response_text),
            targets,
        });
    }
    Ok(ratings)
}

const EXPECTED_TEXT: &str = "a string or a list of {\"role\", \"content\"} messages";

enum Text {
    Plain(String),
    Chat(Vec<(String, String)>),
}

fn text_or_chat(value: &Value) -> Option<Text> {
    match value {
        Value::String(text) => Some(Text::Plain(text.clone())),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let object = item.as_object()?;
                Some((
                    object.get("role")?.as_str()?.to_owned(),
                    object.get("content")?.as_str()?.to_owned(),
                ))
            })
            .collect::<Option<Vec<_>>>()
            .map(Text::Chat),
        _ => None,
    }
}

fn as_pairs(messages: &[(String, String)]) -> Vec<(&str, &str)> {
    messages
        .iter()
        .map(|(r, c)| (r.as_str(), c.as_str()))
        .collect()
}

fn pair_from_row(
    file: &Path,
    line: u64,
    row: &Map<String, Value>,
    fields: &PairFields,
) -> Result<PreferencePair, ModelError> {
    let field_error = |field: &str, expected: &str| ModelError::Field {
        file: file.to_path_buf(),
        line,
        field: field.to_owned(),
        expected: expected.to_owned(),
    };
    let side = |name: &str| match row.get(name) {
        None => Err(field_error(
            name,
            &format!("{EXPECTED_TEXT} (the field is missing)"),
        )),
        Some(value) => text_or_chat(value).ok_or_else(|| field_error(name, EXPECTED_TEXT)),
    };
    let chosen = side(&fields.chosen)?;
    let rejected = side(&fields.rejected)?;
    let prompt = match row.get(&fields.prompt) {
        None | Some(Value::Null) => None,
        Some(value) => {
            Some(text_or_chat(value).ok_or_else(|| field_error(&fields.prompt, EXPECTED_TEXT))?)
        }
    };
    let margin = match row.get(&fields.margin) {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_f64() {
            Some(x) if x.is_finite() => Some(x),
            _ => return Err(field_error(&fields.margin, "a finite number (the margin)")),
        },
    };
    let (prompt, chosen, rejected) = match (prompt, chosen, rejected) {
        (Some(prompt), chosen, rejected) => {
            let prompt = match prompt {
                Text::Plain(text) => text,
                Text::Chat(messages) => render_prompt(&as_pairs(&messages)),
            };
            let render = |side: Text| match side {
                Text::Plain(text) => text,
                Text::Chat(messages) => render_response(&as_pairs(&messages)),
            };
            (prompt, render(chosen), render(rejected))
        }
        (None, Text::Plain(chosen), Text::Plain(rejected)) => {
            let cut = implicit_prompt_len(&chosen, &rejected);
            (
                chosen[..cut].to_owned(),
                chosen[cut..].to_owned(),
                rejected[cut..].to_owned(),
            )
        }
        (None, Text::Chat(chosen), Text::Chat(rejected)) => {
            let shared = chosen
                .iter()
                .zip(&rejected)
                .take_while(|(a, b)| a == b)
                .count();
            // The response starts at the first differing message; a shared trailing assistant
            // message would leave nothing to compare, so back up to the last non-assistant one.
            let mut shared = shared
                .min(chosen.len().saturating_sub(1))
                .min(rejected.len().saturating_sub(1));
            while shared > 0 && chosen[shared - 1].0 == "assistant" {
                shared -= 1;
            }
            let prompt = render_prompt(&as_pairs(&chosen[..shared]));
            (
                prompt,
                render_response(&as_pairs(&chosen[shared..])),
                render_response(&as_pairs(&rejected[shared..])),
            )
        }
        _ => {
            return Err(field_error(
                &fields.rejected,
                &format!(
                    "the same shape as `{}` (both strings or both chat lists)",
                    fields.chosen
                ),
            ))
        }
    };
    Ok(PreferencePair {
        line,
        prompt,
        chosen,
        rejected,
        margin,
    })
}

/// The marker after which an HH-RLHF assistant turn starts.
const ASSISTANT_MARKER: &str = "\n\nAssistant:";

/// The length in bytes of the implicit prompt of two texts: their longest common prefix, cut
/// just after the last `\n\nAssistant:` in it when there is one (HH-RLHF dialogues), otherwise
/// backed up to a whitespace boundary (TRL's `extract_prompt` does the same), and never the whole
/// of either text.
pub fn implicit_prompt_len(chosen: &str, rejected: &str) -> usize {
    let mut common = chosen
        .char_indices()
        .zip(rejected.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| chosen.len().min(rejected.len()));
    while !rejected.is_char_boundary(common) {
        common -= 1;
    }
    let prefix = &chosen[..common];
    if let Some(at) = prefix.rfind(ASSISTANT_MARKER) {
        return at + ASSISTANT_MARKER.len();
    }
    prefix.rfind(char::is_whitespace).unwrap_or(0)
}

fn role_name(role: &str) -> String {
    match role {
        "user" | "human" => "Human".to_owned(),
        "assistant" => "Assistant".to_owned(),
        "system" => "System".to_owned(),
        other => {
            let mut chars = other.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        }
    }
}

/// Renders prompt messages, ending with the `\n\nAssistant:` that a response follows.
pub fn render_prompt(messages: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (role, content) in messages {
        out.push_str(&format!("\n\n{}: {content}", role_name(role)));
    }
    out.push_str(ASSISTANT_MARKER);
    out
}

/// Renders response messages: a leading assistant message as ` {content}` (it continues the
/// prompt's `\n\nAssistant:`), later messages with their role.
pub fn render_response(messages: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (role, content)) in messages.iter().enumerate() {
        if i == 0 && *role == "assistant" {
            out.push(' ');
            out.push_str(content);
        } else {
            out.push_str(&format!("\n\n{}: {content}", role_name(role)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(json: &str) -> Result<PreferencePair, ModelError> {
        let value: Value = serde_json::from_str(json).unwrap();
        pair_from_row(
            Path::new("pairs.jsonl"),
            7,
            value.as_object().unwrap(),
            &PairFields::default(),
        )
    }

    fn check(json: &str, prompt: &str, chosen: &str, rejected: &str) {
        let p = pair(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(
            (p.prompt.as_str(), p.chosen.as_str(), p.rejected.as_str()),
            (prompt, chosen, rejected),
            "{json}"
        );
    }

    fn check_error(json: &str, message: &str) {
        let error = pair(json).unwrap_err().to_string();
        assert!(
            error.contains(message),
            "{json}: `{error}` lacks `{message}`"
        );
    }

    #[test]
    fn pair_shapes() {
        check(
            r#"{"prompt":"Q?","chosen":"yes","rejected":"no"}"#,
            "Q?",
            "yes",
            "no",
        );
        // HH-RLHF: the implicit prompt ends at the last shared "\n\nAssistant:".
        check(
            r#"{"chosen":"\n\nHuman: hi\n\nAssistant: hello there","rejected":"\n\nHuman: hi\n\nAssistant: go away"}"#,
            "\n\nHuman: hi\n\nAssistant:",
            " hello there",
            " go away",
        );
        // Responses that start alike are not cut inside the assistant turn.
        check(
            r#"{"chosen":"\n\nHuman: hi\n\nAssistant: I can help","rejected":"\n\nHuman: hi\n\nAssistant: I cannot"}"#,
            "\n\nHuman: hi\n\nAssistant:",
            " I can help",
            " I cannot",
        );
        // Plain implicit prompt: cut at the last whitespace of the shared prefix (TRL).
        check(
            r#"{"chosen":"The sky is blue","rejected":"The sky is green"}"#,
            "The sky is",
            " blue",
            " green",
        );
        check(r#"{"chosen":"abc","rejected":"abd"}"#, "", "abc", "abd");
        // Identical texts: the prompt never swallows a whole side.
        check(r#"{"chosen":"same","rejected":"same"}"#, "", "same", "same");
        // Chat lists with an explicit prompt.
        check(
            r#"{"prompt":[{"role":"user","content":"hi"}],"chosen":[{"role":"assistant","content":"hello"}],"rejected":[{"role":"assistant","content":"bye"}]}"#,
            "\n\nHuman: hi\n\nAssistant:",
            " hello",
            " bye",
        );
        // Chat lists with an implicit prompt render exactly like the HH string.
        check(
            r#"{"chosen":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello there"}],"rejected":[{"role":"user","content":"hi"},{"role":"assistant","content":"go away"}]}"#,
            "\n\nHuman: hi\n\nAssistant:",
            " hello there",
            " go away",
        );
        // Multi-byte characters at the divergence point.
        check(
            r#"{"chosen":"née é","rejected":"née è"}"#,
            "née",
            " é",
            " è",
        );
    }

    #[test]
    fn margins() {
        assert_eq!(
            pair(r#"{"chosen":"a","rejected":"b","margin":2}"#)
                .unwrap()
                .margin,
            Some(2.0)
        );
        assert_eq!(
            pair(r#"{"chosen":"a","rejected":"b","margin":null}"#)
                .unwrap()
                .margin,
            None
        );
        check_error(
            r#"{"chosen":"a","rejected":"b","margin":"big"}"#,
            "pairs.jsonl:7: field `margin`: expected a finite number",
        );
    }

    #[test]
    fn bad_rows_name_line_and_field() {
        check_error(r#"{"rejected":"b"}"#, "pairs.jsonl:7: field `chosen`: expected a string or a list of {\"role\", \"content\"} messages (the field is missing)");
        check_error(
            r#"{"chosen":"a","rejected":5}"#,
            "field `rejected`: expected a string or a list",
        );
        check_error(
            r#"{"chosen":"a","rejected":[{"role":"user"}]}"#,
            "field `rejected`",
        );
        check_error(
            r#"{"chosen":"a","rejected":[{"role":"user","content":"b"}]}"#,
            "the same shape as `chosen`",
        );
        check_error(
            r#"{"prompt":3,"chosen":"a","rejected":"b"}"#,
            "field `prompt`",
        );
    }

    #[test]
    fn samples_render_like_training_rows() {
        let sample: Sample = serde_json::from_str(
            r#"{"prompt":[{"role":"user","content":"hi"}],"completion":{"role":"assistant","content":"hello"}}"#,
        )
        .unwrap();
        assert_eq!(
            RewardInput::from_sample(&sample),
            RewardInput::new("\n\nHuman: hi\n\nAssistant:", " hello")
        );
        let sample = Sample::new("p", "c");
        assert_eq!(
            RewardInput::from_sample(&sample),
            RewardInput::new("p", "c")
        );
    }
}
