use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// One chat message, as in the Hugging Face / TRL chat format.
///
/// It deserialises only from an object with `role` and `content` (`content` may be null or absent
/// when the message carries `tool_calls`; unknown keys are ignored): serde's derived struct
/// deserialiser would also take a two-element list, which would silently read a list of two
/// completions `["a", "b"]` as one message from role "a".
///
/// The OpenAI / Hugging Face tool-use keys are kept: `tool_calls` on assistant messages (as given,
/// usually `[{"type": "function", "function": {"name", "arguments"}}]`), and `name` /
/// `tool_call_id` on tool results. [`Message::text`] renders the calls into the text verifiers
/// read, so a completion that calls tools through structured fields is scored on its calls
/// instead of on an empty string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool`, …
    pub role: String,
    /// The message text (empty when a tool-calling message has null content).
    pub content: String,
    /// Structured tool calls, as given (a JSON list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// The tool's name on a tool-result message (or a participant name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The call a tool-result message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Message, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            role: String,
            // Outer `None`: the key is absent; `Some(None)`: it is null.
            #[serde(default, deserialize_with = "present")]
            content: Option<Option<String>>,
            #[serde(default)]
            tool_calls: Option<Vec<serde_json::Value>>,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            tool_call_id: Option<String>,
        }

        fn present<'de, D: serde::Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Option<String>>, D::Error> {
            Option::<String>::deserialize(deserializer).map(Some)
        }

        struct MessageVisitor;

        impl<'de> serde::de::Visitor<'de> for MessageVisitor {
            type Value = Message;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a message object with string `role` and `content` (content may be null or \
                     absent only when `tool_calls` is present)",
                )
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Message, A::Error> {
                let fields =
                    Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                let content = match (fields.content, &fields.tool_calls) {
                    (Some(content), _) => content.unwrap_or_default(),
                    (None, Some(_)) => String::new(),
                    (None, None) => return Err(serde::de::Error::missing_field("content")),
                };
                Ok(Message {
                    role: fields.role,
                    content,
                    tool_calls: fields.tool_calls.map(serde_json::Value::Array),
                    name: fields.name,
                    tool_call_id: fields.tool_call_id,
                })
            }
        }

        deserializer.deserialize_map(MessageVisitor)
    }
}

impl Message {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            tool_calls: None,
            name: None,
            tool_call_id: None,
        }
    }

    /// The message as verifiers read it: its content, followed by each structured tool call
    /// rendered as the Hermes / Qwen chat templates render them —
    /// `<tool_call>\n{"name": …, "arguments": …}\n</tool_call>`, one block per call, blocks
    /// separated from the content and from each other by a newline. A call's name and arguments
    /// are read from its `function` object (OpenAI) or from the call itself; arguments given as a
    /// string holding JSON (the OpenAI wire format) are decoded, other strings are kept as
    /// strings. Without tool calls this is the content itself, borrowed.
    pub fn text(&self) -> Cow<'_, str> {
        let calls = match &self.tool_calls {
            Some(serde_json::Value::Array(calls)) if !calls.is_empty() => calls,
            _ => return Cow::Borrowed(&self.content),
        };
        let mut text = self.content.clone();
        for call in calls {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str("<tool_call>\n");
            text.push_str(&render_call(call));
            text.push_str("\n</tool_call>");
        }
        Cow::Owned(text)
    }
}

/// One structured tool call as `{"name": …, "arguments": …}` JSON (see [`Message::text`]); a call
/// of another shape is written as given, so a verifier sees (and rejects) exactly what came in.
fn render_call(call: &serde_json::Value) -> String {
    use serde_json::Value;
    let inner = match call.get("function") {
        Some(function @ Value::Object(_)) => function,
        _ => call,
    };
    let name = inner.get("name");
    let arguments = inner.get("arguments").or_else(|| inner.get("parameters"));
    match (name, call.is_object()) {
        (Some(name @ Value::String(_)), true) => {
            let arguments = match arguments {
                Some(Value::String(raw)) => serde_json::from_str::<Value>(raw)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| Value::String(raw.clone())),
                Some(other) => other.clone(),
                None => Value::Object(serde_json::Map::new()),
            };
            // Written by hand so `name` comes first whatever order serde_json's map keeps.
            format!("{{\"name\": {name}, \"arguments\": {arguments}}}")
        }
        _ => call.to_string(),
    }
}

/// The prompt a completion answers: plain text or a chat conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Plain text.
    Text(String),
    /// Chat messages, oldest first.
    Chat(Vec<Message>),
}

impl Default for Prompt {
    fn default() -> Self {
        Prompt::Text(String::new())
    }
}

impl Prompt {
    /// The prompt as one text: plain text as is, chat messages' contents joined by newlines.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Prompt::Text(text) => Cow::Borrowed(text),
            Prompt::Chat(messages) => join_contents(messages),
        }
    }
}

/// What the policy produced: plain text, one assistant message, or several messages (TRL passes
/// conversational completions as a list of messages).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Completion {
    /// Plain text.
    Text(String),
    /// One message (normally the assistant's).
    Message(Message),
    /// Several messages.
    Chat(Vec<Message>),
}

impl Default for Completion {
    fn default() -> Self {
        Completion::Text(String::new())
    }
}

impl Completion {
    /// The text verifiers look at: plain text as is; for messages, the contents of the assistant
    /// messages joined by newlines (all messages if none is marked `assistant`).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Completion::Text(text) => Cow::Borrowed(text),
            Completion::Message(message) => message.text(),
            Completion::Chat(messages) => {
                let assistant: Vec<&Message> =
                    messages.iter().filter(|m| m.role == "assistant").collect();
                if assistant.is_empty() {
                    join_contents(messages)
                } else if assistant.len() == 1 {
                    assistant[0].text()
                } else {
                    Cow::Owned(
                        assistant
                            .iter()
                            .map(|m| m.text())
                            .collect::<Vec<_>>()
                            .join("\n"),
                    )
                }
            }
        }
    }
}

fn join_contents(messages: &[Message]) -> Cow<'_, str> {
    match messages {
        [] => Cow::Borrowed(""),
        [one] => one.text(),
        many => Cow::Owned(many.iter().map(|m| m.text()).collect::<Vec<_>>().join("\n")),
    }
}

/// Ground truth for a sample: a string (an answer, a pattern) or structured JSON (expected tool
/// calls, a list of acceptable answers, …).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reference {
    /// A string.
    Text(String),
    /// Any other JSON value.
    Json(serde_json::Value),
}

impl Reference {
    /// The reference as text: a string as is, a number or boolean in its JSON spelling; `None`
    /// for arrays, objects and null.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Reference::Text(text) => Some(Cow::Borrowed(text)),
            Reference::Json(serde_json::Value::String(text)) => Some(Cow::Borrowed(text)),
            Reference::Json(
                value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)),
            ) => Some(Cow::Owned(value.to_string())),
            Reference::Json(_) => None,
        }
    }

    /// The reference as a JSON value.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Reference::Text(text) => serde_json::Value::String(text.clone()),
            Reference::Json(value) => value.clone(),
        }
    }
}

/// What a reward term scores.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The prompt.
    #[serde(default)]
    pub prompt: Prompt,
    /// The completion being rewarded.
    pub completion: Completion,
    /// Ground truth, if the task has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// Group id: samples answering the same prompt (GRPO/RLOO groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Free metadata carried along.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Sample {
    /// A sample with a plain-text prompt and completion and no reference.
    pub fn new(prompt: impl Into<String>, completion: impl Into<String>) -> Sample {
        Sample {
            prompt: Prompt::Text(prompt.into()),
            completion: Completion::Text(completion.into()),
            ..Sample::default()
        }
    }

    /// Sets a plain-text reference.
    pub fn with_reference(mut self, reference: impl Into<String>) -> Sample {
        self.reference = Some(Reference::Text(reference.into()));
        self
    }

    /// Sets the group id.
    pub fn with_group(mut self, group: impl Into<String>) -> Sample {
        self.group = Some(group.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_and_chat_shapes() {
        let sample: Sample = serde_json::from_str(
            r#"{"prompt":[{"role":"user","content":"2+2?"}],
                "completion":{"role":"assistant","content":"4"},
                "reference":4}"#,
        )
        .unwrap();
        assert_eq!(sample.prompt.text(), "2+2?");
        assert_eq!(sample.completion.text(), "4");
        assert_eq!(sample.reference.unwrap().text().unwrap(), "4");

        let sample: Sample = serde_json::from_str(
            r#"{"completion":[{"role":"user","content":"q"},{"role":"assistant","content":"a"},
                               {"role":"assistant","content":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(sample.completion.text(), "a\nb");
        assert_eq!(sample.prompt.text(), "");
    }

    #[test]
    fn a_list_of_strings_is_not_a_message() {
        // Regression: the derived deserialiser read `["a", "b"]` as role "a", content "b".
        assert!(serde_json::from_str::<Message>(r#"["a", "b"]"#).is_err());
        assert!(serde_json::from_str::<Completion>(r#"["a", "b"]"#).is_err());
        assert!(serde_json::from_str::<Prompt>(r#"["user", "hi"]"#).is_err());
        let message: Message =
            serde_json::from_str(r#"{"role": "user", "content": "hi", "other": "x"}"#).unwrap();
        assert_eq!(message, Message::new("user", "hi"));
        assert!(serde_json::from_str::<Message>(r#"{"role": "user"}"#).is_err());
    }

    #[test]
    fn tool_use_keys_are_kept_and_calls_are_rendered() {
        let message: Message = serde_json::from_str(
            r#"{"role": "assistant", "content": null, "tool_calls": [
                 {"id": "c1", "type": "function",
                  "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                 {"name": "now", "arguments": {}}]}"#,
        )
        .unwrap();
        assert_eq!(message.content, "");
        assert_eq!(message.tool_calls.as_ref().unwrap()[0]["id"], "c1");
        assert_eq!(
            message.text(),
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n\
             </tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"
        );
        // Content first; arguments that are not JSON stay a string; absent content with calls.
        let message: Message = serde_json::from_str(
            r#"{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "x"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            message.text(),
            "<tool_call>\n{\"name\": \"f\", \"arguments\": \"x\"}\n</tool_call>"
        );
        let with_text = Message {
            content: "Let me check.".to_owned(),
            ..message.clone()
        };
        assert!(with_text.text().starts_with("Let me check.\n<tool_call>\n"));
        // A call of another shape is written as given.
        let odd = Message {
            tool_calls: Some(serde_json::json!([42])),
            ..Message::new("assistant", "")
        };
        assert_eq!(odd.text(), "<tool_call>\n42\n</tool_call>");
        // Tool results keep their name and call id and round-trip through JSON.
        let result: Message = serde_json::from_str(
            r#"{"role": "tool", "content": "18C", "name": "get_weather", "tool_call_id": "c1"}"#,
        )
        .unwrap();
        assert_eq!(result.name.as_deref(), Some("get_weather"));
        assert_eq!(result.tool_call_id.as_deref(), Some("c1"));
        let back: Message = serde_json::from_str(&serde_json::to_string(&result).unwrap()).unwrap();
        assert_eq!(back, result);
        // Null content without calls is empty text; `tool_calls` must be a list.
        let null: Message = serde_json::from_str(r#"{"role": "user", "content": null}"#).unwrap();
        assert_eq!(null.text(), "");
        assert!(serde_json::from_str::<Message>(r#"{"role": "a", "tool_calls": {}}"#).is_err());
        // The completion text a verifier reads includes the calls.
        let completion = Completion::Chat(vec![Message::new("user", "q"), message]);
        assert!(completion.text().contains("{\"name\": \"f\""));
    }

    #[test]
    fn structured_reference_has_no_text() {
        let reference = Reference::Json(serde_json::json!([{"name": "f"}]));
        assert!(reference.text().is_none());
    }
}
