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
//! Chat lists are rendered to text with the model's chat template ([`crate::template`]): by
//! default the built-in `\n\n{Role}: {content}` template (roles `Human`/`Assistant`/`System`),
//! chosen so that a chat list and the same dialogue written HH-style give the model identical
//! text; or none, or a Hugging Face Jinja `chat_template`.
//!
//! # What a template applies to
//!
//! * **Chat lists** are rendered with the template (TRL's `maybe_apply_chat_template` does the
//!   same).
//! * **Plain strings** are taken as already-rendered text and used as they are, under every
//!   template: a string has no roles for a template to mark up, and wrapping it in, say, a user
//!   turn would be a guess. Where a row mixes a plain prompt with chat responses (or the
//!   reverse), a Jinja template sees the string as one `user` message (prompt) or one
//!   `assistant` message (response); the built-in and `none` templates keep it as it is.
//! * **HH-RLHF dialogues** (strings starting with `\n\nHuman:`) are parsed into turns
//!   (`Human` → `user`, `Assistant` → `assistant`, one space after the colon dropped) and
//!   rendered *when the template is a Jinja one*, so that a model trained on HH-RLHF with a
//!   tokenizer's template reads the same format as the chat samples it later scores with that
//!   template. Under the built-in template they are left as they are — that template *is* the
//!   HH format, so parsing would only risk changing spacing — and under `none` they are plain
//!   strings like any other.
//!
//! Every row yields a pair or an error naming the file, the line and the field.

use std::path::Path;

use rewardkit_core::{Completion, Prompt, Sample};
use rewardkit_data::RecordReader;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::template::{ChatTemplate, ASSISTANT_MARKER};
use crate::ModelError;

/// Which end of an input is cut when it is longer than the backbone's `max_length`.
///
/// The input is the prompt followed by the response, one sequence (each side of a preference pair
/// separately: prompt + chosen, prompt + rejected).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Truncation {
    /// Cut the start: the earliest part of the dialogue goes first (the prompt's first turns,
    /// and with a chat template its system message), so the response — the part being judged —
    /// is kept whole unless it alone is longer than `max_length`. The default, as it always was.
    /// The tokenizer's special tokens (`[CLS]`, `[SEP]`, BOS) are added after cutting and kept.
    /// The `hashed` backbone gives the response its first `max_length` words and the prompt
    /// what is left, from its end.
    #[default]
    Left,
    /// Cut the end: the end of the response goes first, then the prompt's end, so a prompt longer
    /// than `max_length` leaves no response at all. For the `hashed` backbone: the first
    /// `max_length` words of prompt + response.
    Right,
}

impl Truncation {
    /// The accepted values, for messages.
    pub const ACCEPTED: &'static str = "`left` or `right`";

    /// Parses `left` / `right`; `option` names the flag or field in the error.
    pub fn parse(option: &str, value: &str) -> Result<Truncation, ModelError> {
        match value {
            "left" => Ok(Truncation::Left),
            "right" => Ok(Truncation::Right),
            other => Err(ModelError::option(
                option,
                format!(
                    "`{other}` is not a truncation side; expected {}",
                    Truncation::ACCEPTED
                ),
            )),
        }
    }

    /// `left` or `right`.
    pub fn name(self) -> &'static str {
        match self {
            Truncation::Left => "left",
            Truncation::Right => "right",
        }
    }

    /// The `tokenizers` direction.
    pub(crate) fn direction(self) -> tokenizers::TruncationDirection {
        match self {
            Truncation::Left => tokenizers::TruncationDirection::Left,
            Truncation::Right => tokenizers::TruncationDirection::Right,
        }
    }
}

/// Sets a tokenizer to keep `max_length` tokens cut at `side`; `None` keeps that setting as it
/// is. (The special tokens are added after cutting, within `max_length`.)
pub(crate) fn set_truncation(
    tokenizer: &mut tokenizers::Tokenizer,
    max_length: Option<usize>,
    side: Option<Truncation>,
) -> Result<(), String> {
    let current = tokenizer.get_truncation().cloned().unwrap_or_default();
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: max_length.unwrap_or(current.max_length),
            direction: side.map_or(current.direction, Truncation::direction),
            ..current
        }))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

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

    /// The text a sample's reward is computed for, chat prompts and completions rendered with
    /// the built-in template (see the module docs).
    pub fn from_sample(sample: &Sample) -> RewardInput {
        RewardInput::render_sample(sample, &ChatTemplate::builtin())
            .expect("the built-in template cannot fail: this is a bug")
    }

    /// The text a sample's reward is computed for, chat prompts and completions rendered with
    /// `template` (a sample's `metadata.tools`, if any, is the templates' `tools`). Fails only
    /// when a Jinja template fails (it raised an exception, or read something that is not there).
    pub fn render_sample(
        sample: &Sample,
        template: &ChatTemplate,
    ) -> Result<RewardInput, ModelError> {
        let message = |m: &rewardkit_core::Message| {
            serde_json::to_value(m).expect("a message serialises: this is a bug")
        };
        let prompt = match &sample.prompt {
            Prompt::Text(text) => Text::Plain(text.clone()),
            Prompt::Chat(messages) => Text::Chat(messages.iter().map(message).collect()),
        };
        let response = match &sample.completion {
            Completion::Text(text) => Text::Plain(text.clone()),
            Completion::Message(m) => Text::Chat(vec![message(m)]),
            Completion::Chat(messages) => Text::Chat(messages.iter().map(message).collect()),
        };
        let (prompt, response) = render_side(
            template,
            Some(prompt),
            response,
            sample.metadata.get("tools"),
        )?;
        Ok(RewardInput { prompt, response })
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
    /// The tool-definitions column (optional; a Jinja chat template's `tools`).
    pub tools: String,
}

impl Default for PairFields {
    fn default() -> Self {
        PairFields {
            prompt: "prompt".into(),
            chosen: "chosen".into(),
            rejected: "rejected".into(),
            margin: "margin".into(),
            tools: "tools".into(),
        }
    }
}

/// Reads every preference pair of a JSONL(.gz) or Parquet file, chat lists rendered with the
/// built-in template; the first bad row stops with an error naming its line and field.
pub fn read_pairs(path: &Path, fields: &PairFields) -> Result<Vec<PreferencePair>, ModelError> {
    read_pairs_with(path, fields, &ChatTemplate::builtin())
}

/// [`read_pairs`] with chat lists rendered by `template`.
pub fn read_pairs_with(
    path: &Path,
    fields: &PairFields,
    template: &ChatTemplate,
) -> Result<Vec<PreferencePair>, ModelError> {
    let mut pairs = Vec::new();
    for record in RecordReader::open(path, None)? {
        let record = record?;
        pairs.push(pair_from_row(
            path,
            record.line,
            &record.fields,
            fields,
            template,
        )?);
    }
    Ok(pairs)
}

/// Reads rated responses: `prompt`, `response` and the numeric `attributes` columns (chat lists
/// rendered with the built-in template).
pub fn read_ratings(
    path: &Path,
    prompt: &str,
    response: &str,
    attributes: &[String],
) -> Result<Vec<Rating>, ModelError> {
    read_ratings_with(path, prompt, response, attributes, &ChatTemplate::builtin())
}

/// [`read_ratings`] with chat lists rendered by `template` (a `tools` column, if any, is the
/// templates' `tools`).
pub fn read_ratings_with(
    path: &Path,
    prompt: &str,
    response: &str,
    attributes: &[String],
    template: &ChatTemplate,
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
            None | Some(Value::Null) => None,
            Some(value) => {
                Some(text_or_chat(value).ok_or_else(|| field_error(prompt, EXPECTED_TEXT))?)
            }
        };
        let response_text = row
            .get(response)
            .and_then(text_or_chat)
            .ok_or_else(|| field_error(response, EXPECTED_TEXT))?;
        let (prompt_text, response_text) =
            render_side(template, prompt_text, response_text, row.get("tools"))
                .map_err(|e| in_row(e, path, line, response))?;
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

/// A template error while rendering a row, located at the row.
fn in_row(error: ModelError, file: &Path, line: u64, field: &str) -> ModelError {
    match error {
        ModelError::Template { origin, reason } => ModelError::Template {
            origin,
            reason: format!(
                "{reason}; while rendering {}:{line} (field `{field}`)",
                file.display()
            ),
        },
        other => other,
    }
}

const EXPECTED_TEXT: &str = "a string or a list of {\"role\", \"content\"} messages";

/// One side of a row before rendering: plain text, or chat messages (JSON objects that
/// deserialise as [`rewardkit_core::Message`], kept whole so a Jinja template sees every key).
#[derive(Clone, Debug, PartialEq)]
enum Text {
    Plain(String),
    Chat(Vec<Value>),
}

fn text_or_chat(value: &Value) -> Option<Text> {
    match value {
        Value::String(text) => Some(Text::Plain(text.clone())),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                serde_json::from_value::<rewardkit_core::Message>(item.clone()).ok()?;
                Some(item.clone())
            })
            .collect::<Option<Vec<_>>>()
            .map(Text::Chat),
        _ => None,
    }
}

/// An HH-RLHF dialogue (`\n\nHuman: …\n\nAssistant: …`) as chat messages, `None` for other
/// text. Roles: `Human` → `user`, `Assistant` → `assistant`; one space after each colon is
/// dropped; an empty final assistant turn (a prompt ending in `\n\nAssistant:`) is dropped.
pub fn parse_hh_dialogue(text: &str) -> Option<Vec<Value>> {
    const HUMAN: &str = "\n\nHuman:";
    if !text.starts_with(HUMAN) {
        return None;
    }
    let mut messages: Vec<Value> = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (role, marker) = if rest.starts_with(HUMAN) {
            ("user", HUMAN)
        } else {
            ("assistant", ASSISTANT_MARKER)
        };
        rest = &rest[marker.len()..];
        let end = [rest.find(HUMAN), rest.find(ASSISTANT_MARKER)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(rest.len());
        let content = &rest[..end];
        let content = content.strip_prefix(' ').unwrap_or(content);
        messages.push(serde_json::json!({"role": role, "content": content}));
        rest = &rest[end..];
    }
    if messages
        .last()
        .is_some_and(|m| m["role"] == "assistant" && m["content"] == "")
    {
        messages.pop();
    }
    Some(messages)
}

/// Under a Jinja template, an HH-RLHF dialogue becomes chat messages (see the module docs).
fn parse_if_jinja(template: &ChatTemplate, text: Text) -> Text {
    match text {
        Text::Plain(plain) if template.is_jinja() => match parse_hh_dialogue(&plain) {
            Some(messages) => Text::Chat(messages),
            None => Text::Plain(plain),
        },
        other => other,
    }
}

/// Renders a prompt (if any) and the response to it: (prompt text, response text). Plain
/// strings stay as they are; chat lists go through the template (see the module docs).
fn render_side(
    template: &ChatTemplate,
    prompt: Option<Text>,
    response: Text,
    tools: Option<&Value>,
) -> Result<(String, String), ModelError> {
    let hh_prompt = matches!(&prompt, Some(Text::Plain(p)) if template.is_jinja() && parse_hh_dialogue(p).is_some());
    let prompt = prompt.map(|p| parse_if_jinja(template, p));
    let response = match (hh_prompt, response) {
        // The final assistant turn of an HH prompt: " answer" continues "Assistant:".
        (true, Text::Plain(r)) if parse_hh_dialogue(&r).is_none() => Text::Chat(vec![
            serde_json::json!({"role": "assistant", "content": r.strip_prefix(' ').unwrap_or(&r)}),
        ]),
        (_, r) => parse_if_jinja(template, r),
    };
    let message = |role: &str, content: &str| serde_json::json!({"role": role, "content": content});
    match (prompt, response) {
        (None, Text::Plain(r)) => Ok((String::new(), r)),
        (Some(Text::Plain(p)), Text::Plain(r)) => Ok((p, r)),
        (Some(Text::Chat(p)), Text::Plain(r)) if template.is_jinja() => {
            template.render_turns(&p, &[message("assistant", &r)], tools)
        }
        (Some(Text::Chat(p)), Text::Plain(r)) => Ok((template.render(&p, true, None)?, r)),
        (Some(Text::Plain(p)), Text::Chat(r)) if template.is_jinja() => {
            let p = if p.is_empty() {
                vec![]
            } else {
                vec![message("user", &p)]
            };
            template.render_turns(&p, &r, tools)
        }
        (Some(Text::Plain(p)), Text::Chat(r)) => Ok((p, template.render_turns(&[], &r, None)?.1)),
        (None, Text::Chat(r)) if template.is_jinja() => template.render_turns(&[], &r, tools),
        (None, Text::Chat(r)) => Ok((String::new(), template.render_turns(&[], &r, None)?.1)),
        (Some(Text::Chat(p)), Text::Chat(r)) => template.render_turns(&p, &r, tools),
    }
}

fn pair_from_row(
    file: &Path,
    line: u64,
    row: &Map<String, Value>,
    fields: &PairFields,
    template: &ChatTemplate,
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
    let tools = row.get(&fields.tools);
    let in_row = |e: ModelError, field: &str| in_row(e, file, line, field);
    // Implicit prompts need HH dialogues as turns before the shared prefix is found; with an
    // explicit prompt `render_side` parses them.
    let (chosen, rejected) = if prompt.is_none() {
        (
            parse_if_jinja(template, chosen),
            parse_if_jinja(template, rejected),
        )
    } else {
        (chosen, rejected)
    };
    let (prompt, chosen, rejected) = match (prompt, chosen, rejected) {
        (Some(prompt), chosen, rejected) => {
            let (p_chosen, chosen) = render_side(template, Some(prompt.clone()), chosen, tools)
                .map_err(|e| in_row(e, &fields.chosen))?;
            let (p_rejected, rejected) = render_side(template, Some(prompt), rejected, tools)
                .map_err(|e| in_row(e, &fields.rejected))?;
            join_prompts(p_chosen, chosen, p_rejected, rejected)
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
            while shared > 0
                && chosen[shared - 1].get("role").and_then(Value::as_str) == Some("assistant")
            {
                shared -= 1;
            }
            let prompt = Text::Chat(chosen[..shared].to_vec());
            let (p_chosen, chosen_text) = render_side(
                template,
                Some(prompt.clone()),
                Text::Chat(chosen[shared..].to_vec()),
                tools,
            )
            .map_err(|e| in_row(e, &fields.chosen))?;
            let (p_rejected, rejected_text) = render_side(
                template,
                Some(prompt),
                Text::Chat(rejected[shared..].to_vec()),
                tools,
            )
            .map_err(|e| in_row(e, &fields.rejected))?;
            join_prompts(p_chosen, chosen_text, p_rejected, rejected_text)
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

/// One prompt for both sides of a pair. A Jinja template may fail to render the prompt as a
/// prefix of one side (see [`crate::template`]); then that side's whole text is its response, and
/// the pair keeps the prompt only if both sides agree on it (otherwise each side carries its own
/// full text and the prompt is empty — the model reads the same text either way).
fn join_prompts(
    p_chosen: String,
    chosen: String,
    p_rejected: String,
    rejected: String,
) -> (String, String, String) {
    if p_chosen == p_rejected {
        (p_chosen, chosen, rejected)
    } else {
        (String::new(), p_chosen + &chosen, p_rejected + &rejected)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(json: &str) -> Result<PreferencePair, ModelError> {
        pair_with(json, &ChatTemplate::builtin())
    }

    fn pair_with(json: &str, template: &ChatTemplate) -> Result<PreferencePair, ModelError> {
        let value: Value = serde_json::from_str(json).unwrap();
        pair_from_row(
            Path::new("pairs.jsonl"),
            7,
            value.as_object().unwrap(),
            &PairFields::default(),
            template,
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

    /// Qwen2-Instruct's template (ChatML with a default system message), as published.
    pub(crate) const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /// Meta-Llama-3-Instruct's template, as published (note `bos_token` and `| trim`).
    pub(crate) const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

    fn jinja(template: &str) -> ChatTemplate {
        ChatTemplate::new(&crate::ChatTemplateConfig::Jinja {
            origin: "test".into(),
            template: template.into(),
            special_tokens: [("bos_token".to_owned(), "<|begin_of_text|>".to_owned())].into(),
        })
        .unwrap()
    }

    fn check_with(template: &ChatTemplate, json: &str, prompt: &str, chosen: &str, rejected: &str) {
        let p = pair_with(json, template).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(
            (p.prompt.as_str(), p.chosen.as_str(), p.rejected.as_str()),
            (prompt, chosen, rejected),
            "{json}"
        );
    }

    #[test]
    fn jinja_templates_render_chat_rows() {
        let chatml = jinja(CHATML);
        let llama = jinja(LLAMA3);
        let explicit = r#"{"prompt":[{"role":"user","content":"hi"}],"chosen":[{"role":"assistant","content":"hello"}],"rejected":[{"role":"assistant","content":" bye "}]}"#;
        let implicit = r#"{"chosen":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}],"rejected":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"},{"role":"assistant","content":" bye "}]}"#;
        let chatml_prompt = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
        check_with(
            &chatml,
            explicit,
            chatml_prompt,
            "hello<|im_end|>\n",
            " bye <|im_end|>\n",
        );
        check_with(
            &chatml,
            implicit,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
            "hello<|im_end|>\n",
            " bye <|im_end|>\n",
        );
        let llama_prompt = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
        check_with(
            &llama,
            explicit,
            llama_prompt,
            "hello<|eot_id|>",
            "bye<|eot_id|>",
        );
        // HH-RLHF dialogues are parsed into turns for a Jinja template...
        let hh = r#"{"chosen":"\n\nHuman: hi\n\nAssistant: hello","rejected":"\n\nHuman: hi\n\nAssistant:  bye "}"#;
        check_with(&llama, hh, llama_prompt, "hello<|eot_id|>", "bye<|eot_id|>");
        check_with(
            &chatml,
            hh,
            chatml_prompt,
            "hello<|im_end|>\n",
            " bye <|im_end|>\n",
        );
        // ... also with an explicit HH prompt and plain responses.
        check_with(
            &chatml,
            r#"{"prompt":"\n\nHuman: hi\n\nAssistant:","chosen":" hello","rejected":" bye"}"#,
            chatml_prompt,
            "hello<|im_end|>\n",
            "bye<|im_end|>\n",
        );
        // ... but left alone by the built-in template, which is their format.
        check(hh, "\n\nHuman: hi\n\nAssistant:", " hello", "  bye ");
        // Plain strings are never templated.
        check_with(
            &chatml,
            r#"{"prompt":"Q?","chosen":"yes","rejected":"no"}"#,
            "Q?",
            "yes",
            "no",
        );
        check_with(
            &chatml,
            r#"{"chosen":"The sky is blue","rejected":"The sky is green"}"#,
            "The sky is",
            " blue",
            " green",
        );
        // A plain prompt with chat responses: the prompt is the user's message.
        check_with(
            &chatml,
            r#"{"prompt":"hi","chosen":[{"role":"assistant","content":"hello"}],"rejected":[{"role":"assistant","content":" bye "}]}"#,
            chatml_prompt,
            "hello<|im_end|>\n",
            " bye <|im_end|>\n",
        );
        // `none`: texts only.
        let none = ChatTemplate::new(&crate::ChatTemplateConfig::None).unwrap();
        check_with(&none, explicit, "hi\n", "hello", " bye ");
        check_with(&none, hh, "\n\nHuman: hi\n\nAssistant:", " hello", "  bye ");
    }

    #[test]
    fn ratings_render_like_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ratings.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"prompt":[{"role":"user","content":"hi"}],"response":[{"role":"assistant","content":"hello"}],"score":3}"#,
                "\n",
                r#"{"response":[{"role":"assistant","content":"hello"}],"score":1}"#,
                "\n",
                r#"{"prompt":"\n\nHuman: hi\n\nAssistant:","response":" hello","score":2}"#,
                "\n",
            ),
        )
        .unwrap();
        let read = |template: &ChatTemplate| -> Vec<(String, String)> {
            read_ratings_with(&path, "prompt", "response", &["score".to_owned()], template)
                .unwrap()
                .into_iter()
                .map(|r| (r.input.prompt, r.input.response))
                .collect()
        };
        let own = |p: &str, r: &str| (p.to_owned(), r.to_owned());
        let hh = own("\n\nHuman: hi\n\nAssistant:", " hello");
        assert_eq!(
            read(&ChatTemplate::builtin()),
            [hh.clone(), own("", " hello"), hh]
        );
        let chatml = own(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
            "hello<|im_end|>\n",
        );
        let whole = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n";
        assert_eq!(read(&jinja(CHATML))[0], chatml);
        assert_eq!(read(&jinja(CHATML))[2], chatml);
        // Qwen2's template writes its default system message only before a first message, so
        // the empty prompt is no prefix of the full text: all of it is the response.
        assert_eq!(read(&jinja(CHATML))[1], own("", whole));
    }

    #[test]
    fn template_errors_name_the_row() {
        let strict = jinja("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ m.content }}{% endfor %}");
        let error = pair_with(
            r#"{"prompt":[{"role":"system","content":"s"}],"chosen":[{"role":"assistant","content":"a"}],"rejected":[{"role":"assistant","content":"b"}]}"#,
            &strict,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("test: rendering the chat template failed: invalid operation: System role not supported (template line 1:")
                && error.ends_with("while rendering pairs.jsonl:7 (field `chosen`)"),
            "{error}"
        );
    }

    #[test]
    fn hh_dialogues_parse_into_turns() {
        let check = |text: &str, expected: Option<&[(&str, &str)]>| {
            let got = parse_hh_dialogue(text).map(|messages| {
                messages
                    .iter()
                    .map(|m| {
                        (
                            m["role"].as_str().unwrap().to_owned(),
                            m["content"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect::<Vec<_>>()
            });
            let expected = expected.map(|e| {
                e.iter()
                    .map(|(r, c)| (r.to_string(), c.to_string()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, expected, "{text:?}");
        };
        check("plain text", None);
        check("Human: no leading blank line", None);
        check(
            "\n\nHuman: hi\n\nAssistant: hello",
            Some(&[("user", "hi"), ("assistant", "hello")]),
        );
        check("\n\nHuman: hi\n\nAssistant:", Some(&[("user", "hi")]));
        check(
            "\n\nHuman: a\nb\n\nAssistant:  x\n\nHuman:y\n\nAssistant: z ",
            Some(&[
                ("user", "a\nb"),
                ("assistant", " x"),
                ("user", "y"),
                ("assistant", "z "),
            ]),
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
