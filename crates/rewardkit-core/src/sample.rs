use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// One chat message, as in the Hugging Face / TRL chat format.
///
/// It deserialises only from an object with `role` and `content` (other keys are ignored): serde's
/// derived struct deserialiser would also take a two-element list, which would silently read a
/// list of two completions `["a", "b"]` as one message from role "a".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool`, …
    pub role: String,
    /// The message text.
    pub content: String,
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Message, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            role: String,
            content: String,
        }

        struct MessageVisitor;

        impl<'de> serde::de::Visitor<'de> for MessageVisitor {
            type Value = Message;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a message object with string `role` and `content`")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Message, A::Error> {
                let fields =
                    Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Message {
                    role: fields.role,
                    content: fields.content,
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
        }
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
            Completion::Message(message) => Cow::Borrowed(&message.content),
            Completion::Chat(messages) => {
                let assistant: Vec<&Message> =
                    messages.iter().filter(|m| m.role == "assistant").collect();
                if assistant.is_empty() {
                    join_contents(messages)
                } else if assistant.len() == 1 {
                    Cow::Borrowed(&assistant[0].content)
                } else {
                    Cow::Owned(
                        assistant
                            .iter()
                            .map(|m| m.content.as_str())
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
        [one] => Cow::Borrowed(&one.content),
        many => Cow::Owned(
            many.iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
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
            serde_json::from_str(r#"{"role": "user", "content": "hi", "name": "x"}"#).unwrap();
        assert_eq!(message, Message::new("user", "hi"));
        assert!(serde_json::from_str::<Message>(r#"{"role": "user"}"#).is_err());
    }

    #[test]
    fn structured_reference_has_no_text() {
        let reference = Reference::Json(serde_json::json!([{"name": "f"}]));
        assert!(reference.text().is_none());
    }
}
