use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rewardkit_core::{Completion, Message, Prompt, Reference, Sample};
use serde_json::{Map, Value};

use crate::DataError;

/// A dotted path into a JSON row: `completion`, `response.text`, `messages.0.content`.
///
/// Each segment is an object key, or — where the value at that point is a list — an index into
/// it; negative indexes count from the end (`messages.-1` is the last message). A top-level key
/// that itself contains dots (`"6b.solution"`) is matched literally before the path is split.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldPath {
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Parses a dotted path; an empty path or an empty segment (`a..b`, `.a`) is an error.
    pub fn new(path: &str) -> Result<FieldPath, DataError> {
        let invalid = |reason: &str| DataError::InvalidFieldPath {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if path.is_empty() {
            return Err(invalid("the path is empty"));
        }
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(invalid(
                "it has an empty segment (two dots in a row, or a leading or trailing dot)",
            ));
        }
        Ok(FieldPath {
            text: path.to_owned(),
            segments,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The top-level key this path names as a whole in `row`, if it does: a one-segment path
    /// whose key is present, or a dotted path that is literally a key of the row.
    fn whole_key_in(&self, row: &Map<String, Value>) -> Option<String> {
        row.contains_key(&self.text).then(|| self.text.clone())
    }

    /// Follows the path through `row`.
    fn lookup<'a>(&self, row: &'a Map<String, Value>) -> Result<Found<'a>, MapError> {
        if let Some(value) = row.get(&self.text) {
            return Ok(Found::Value(value));
        }
        let Some((first, rest)) = self.segments.split_first() else {
            return Ok(Found::Missing {
                field: self.text.clone(),
                available: keys_of(row),
            });
        };
        let Some(mut current) = row.get(first) else {
            return Ok(Found::Missing {
                field: first.clone(),
                available: keys_of(row),
            });
        };
        for (depth, segment) in rest.iter().enumerate() {
            let container = self.segments[..=depth].join(".");
            let here = self.segments[..depth + 2].join(".");
            current = match current {
                Value::Object(map) => match map.get(segment) {
                    Some(value) => value,
                    None => {
                        return Ok(Found::Missing {
                            field: here,
                            available: keys_of(map),
                        })
                    }
                },
                Value::Array(items) => match list_index(segment, items.len()) {
                    ListIndex::At(index) => &items[index],
                    ListIndex::OutOfRange => {
                        return Ok(Found::Missing {
                            field: here,
                            available: indexes_of(items),
                        })
                    }
                    ListIndex::NotAnIndex => {
                        return Err(MapError::WrongType {
                            field: container,
                            expected: format!("an object with key `{segment}`"),
                            found: describe(current),
                        })
                    }
                },
                Value::Null => {
                    return Ok(Found::Missing {
                        field: here,
                        available: Vec::new(),
                    })
                }
                other => {
                    return Err(MapError::WrongType {
                        field: container,
                        expected: format!("an object or a list to look up `{segment}` in"),
                        found: describe(other),
                    })
                }
            };
        }
        Ok(Found::Value(current))
    }
}

impl FromStr for FieldPath {
    type Err = DataError;

    fn from_str(s: &str) -> Result<FieldPath, DataError> {
        FieldPath::new(s)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where the parts of a [`Sample`] live in an input row.
///
/// The defaults follow the TRL prompt/completion convention: `prompt` (required), `completion`
/// (required), `reference` (optional: absent or `null` gives no reference) and `group`
/// (optional). A reference set with [`FieldMap::with_reference`] is required, because naming it
/// says the data should have one.
///
/// # Shapes
///
/// * **prompt**: a string, a chat list `[{"role", "content"}, …]`, or one message object.
/// * **completion**: a string (one completion); a message object (one completion); a list whose
///   items are message objects (**one** chat completion); a list of strings, or a list of lists
///   of messages (**several** completions of the same prompt). The first item of a list decides
///   which, and every other item must have the same shape. Several completions become several
///   samples of one group, in list order: the group id is the row's group field if it has one,
///   else the row's 1-based line (or Parquet row) number as a string.
/// * **message**: an object with a string `role` and a `content` that is a string, `null` (read
///   as empty), or a list of content parts whose `text` parts are joined by newlines. `content`
///   may be absent only in a message with `tool_calls`. The tool-use keys `tool_calls` (a
///   list), `name` and `tool_call_id` (strings or null) are kept; other keys are not.
/// * **reference**: any JSON value; a string becomes [`Reference::Text`], anything else
///   [`Reference::Json`].
/// * **group**: a string or a number (numbers are written out as strings, `7` → `"7"`); `null`
///   is no group.
///
/// # Metadata
///
/// With [`FieldMap::keep_unmapped`] on (the default), each sample's metadata is the row's
/// top-level fields except those mapped as a whole: mapping `completion = "response.text"` keeps
/// `response` (with its other keys) in the metadata, mapping `completion = "response"` does not.
/// The row's line number is not added to the metadata; it is [`crate::InputRow::line`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldMap {
    /// Path of the prompt; `None` for datasets without one (samples get an empty prompt).
    pub prompt: Option<FieldPath>,
    /// Path of the completion.
    pub completion: FieldPath,
    /// Path of the reference; `None` never reads one.
    pub reference: Option<FieldPath>,
    /// Whether a row without a reference (absent or `null`) is an error.
    pub reference_required: bool,
    /// Path of the group id; `None` never reads one.
    pub group: Option<FieldPath>,
    /// Whether unmapped top-level fields are kept as sample metadata.
    pub keep_unmapped: bool,
}

impl Default for FieldMap {
    fn default() -> Self {
        FieldMap {
            prompt: Some(FieldPath::literal("prompt")),
            completion: FieldPath::literal("completion"),
            reference: Some(FieldPath::literal("reference")),
            reference_required: false,
            group: Some(FieldPath::literal("group")),
            keep_unmapped: true,
        }
    }
}

impl FieldPath {
    /// A one-segment path; for the known-good defaults.
    fn literal(key: &str) -> FieldPath {
        FieldPath {
            text: key.to_owned(),
            segments: vec![key.to_owned()],
        }
    }
}

impl FieldMap {
    /// Reads the prompt from `path`.
    pub fn with_prompt(mut self, path: &str) -> Result<FieldMap, DataError> {
        self.prompt = Some(FieldPath::new(path)?);
        Ok(self)
    }

    /// Reads no prompt: samples get an empty text prompt.
    pub fn without_prompt(mut self) -> FieldMap {
        self.prompt = None;
        self
    }

    /// Reads the completion from `path`.
    pub fn with_completion(mut self, path: &str) -> Result<FieldMap, DataError> {
        self.completion = FieldPath::new(path)?;
        Ok(self)
    }

    /// Reads the reference from `path`, and requires every row to have one.
    pub fn with_reference(mut self, path: &str) -> Result<FieldMap, DataError> {
        self.reference = Some(FieldPath::new(path)?);
        self.reference_required = true;
        Ok(self)
    }

    /// Reads the reference from `path` where a row has one (absent or `null` gives none).
    pub fn with_optional_reference(mut self, path: &str) -> Result<FieldMap, DataError> {
        self.reference = Some(FieldPath::new(path)?);
        self.reference_required = false;
        Ok(self)
    }

    /// Reads no reference.
    pub fn without_reference(mut self) -> FieldMap {
        self.reference = None;
        self.reference_required = false;
        self
    }

    /// Reads the group id from `path` (where a row has one).
    pub fn with_group(mut self, path: &str) -> Result<FieldMap, DataError> {
        self.group = Some(FieldPath::new(path)?);
        Ok(self)
    }

    /// Reads no group id.
    pub fn without_group(mut self) -> FieldMap {
        self.group = None;
        self
    }

    /// Whether unmapped top-level fields are kept as sample metadata.
    pub fn keep_unmapped(mut self, keep: bool) -> FieldMap {
        self.keep_unmapped = keep;
        self
    }

    /// Maps one row (a JSON object) to its samples: one, or several when the completion is a
    /// list of completions. Returns the samples and whether the row was expanded into a group.
    ///
    /// `file` and `line` only label errors.
    pub fn map_row(
        &self,
        mut row: Map<String, Value>,
        file: &Path,
        line: u64,
    ) -> Result<(Vec<Sample>, bool), DataError> {
        let label = |error: MapError| error.into_data_error(file, line);

        // Take the four fields out of the row. Paths that name a whole top-level key are moved
        // out (no copy of a long completion, and they leave the metadata); nested paths are
        // copied first, while every key is still in place.
        let paths = [
            self.prompt.as_ref(),
            Some(&self.completion),
            self.reference.as_ref(),
            self.group.as_ref(),
        ];
        let whole_keys: Vec<Option<String>> = paths
            .iter()
            .map(|path| path.and_then(|path| path.whole_key_in(&row)))
            .collect();
        let mut taken: [Option<Found<'static>>; 4] = [None, None, None, None];
        for (slot, path) in paths.iter().enumerate() {
            if let (Some(path), None) = (path, &whole_keys[slot]) {
                taken[slot] = Some(path.lookup(&row).map_err(label)?.into_owned());
            }
        }
        for (slot, key) in whole_keys.iter().enumerate() {
            let Some(key) = key else { continue };
            let shared = whole_keys
                .iter()
                .enumerate()
                .any(|(other, other_key)| other != slot && other_key.as_ref() == Some(key));
            let value = if shared {
                row.get(key).cloned()
            } else {
                row.remove(key)
            };
            taken[slot] = Some(match value {
                Some(value) => Found::Owned(value),
                None => Found::Missing {
                    field: key.clone(),
                    available: Vec::new(),
                },
            });
        }
        for key in whole_keys.iter().flatten() {
            row.remove(key);
        }
        let [prompt, completion, reference, group] = taken;

        let prompt = match (&self.prompt, prompt) {
            (Some(path), Some(found)) => {
                prompt_from(found.required(path).map_err(label)?, path.as_str()).map_err(label)?
            }
            _ => Prompt::default(),
        };
        let completion = completion
            .map(|found| found.required(&self.completion))
            .unwrap_or_else(|| Err(MapError::missing(&self.completion)))
            .map_err(label)?;
        let (completions, expanded) =
            completions_from(completion, self.completion.as_str()).map_err(label)?;
        let reference = match (&self.reference, reference) {
            (Some(path), Some(found)) => {
                reference_from(found, path, self.reference_required).map_err(label)?
            }
            _ => None,
        };
        let group = match (&self.group, group) {
            (Some(path), Some(found)) => group_from(found, path).map_err(label)?,
            _ => None,
        };
        let group = match (group, expanded) {
            (None, true) => Some(line.to_string()),
            (group, _) => group,
        };
        let metadata = if self.keep_unmapped { row } else { Map::new() };

        let mut samples = Vec::with_capacity(completions.len());
        let count = completions.len();
        let mut metadata = Some(metadata);
        for (index, completion) in completions.into_iter().enumerate() {
            let metadata = if index + 1 == count {
                metadata.take().unwrap_or_default()
            } else {
                metadata.clone().unwrap_or_default()
            };
            samples.push(Sample {
                prompt: prompt.clone(),
                completion,
                reference: reference.clone(),
                group: group.clone(),
                metadata,
            });
        }
        Ok((samples, expanded))
    }
}

/// The outcome of following a path.
enum Found<'a> {
    Value(&'a Value),
    Owned(Value),
    Missing {
        field: String,
        available: Vec<String>,
    },
}

impl Found<'_> {
    fn into_owned(self) -> Found<'static> {
        match self {
            Found::Value(value) => Found::Owned(value.clone()),
            Found::Owned(value) => Found::Owned(value),
            Found::Missing { field, available } => Found::Missing { field, available },
        }
    }

    /// The value of a required field: absent is a missing-field error, `null` a wrong type.
    fn required(self, path: &FieldPath) -> Result<Value, MapError> {
        match self {
            Found::Value(value) => Ok(value.clone()),
            Found::Owned(value) => Ok(value),
            Found::Missing { field, available } => Err(MapError::Missing {
                field: path.as_str().to_owned(),
                missing: field,
                available,
            }),
        }
    }

    /// The value of an optional field: absent and `null` are `None`.
    fn optional(self) -> Option<Value> {
        match self {
            Found::Value(Value::Null) | Found::Owned(Value::Null) | Found::Missing { .. } => None,
            Found::Value(value) => Some(value.clone()),
            Found::Owned(value) => Some(value),
        }
    }
}

/// A mapping error without its file and line.
#[derive(Debug)]
enum MapError {
    Missing {
        field: String,
        missing: String,
        available: Vec<String>,
    },
    WrongType {
        field: String,
        expected: String,
        found: String,
    },
}

impl MapError {
    fn missing(path: &FieldPath) -> MapError {
        MapError::Missing {
            field: path.as_str().to_owned(),
            missing: path.as_str().to_owned(),
            available: Vec::new(),
        }
    }

    /// A field of a message (or another object that is not a row) is absent.
    fn missing_key(field: String, available: Vec<String>) -> MapError {
        MapError::Missing {
            missing: field.clone(),
            field,
            available,
        }
    }

    fn wrong(field: &str, expected: &str, found: &Value) -> MapError {
        MapError::WrongType {
            field: field.to_owned(),
            expected: expected.to_owned(),
            found: describe(found),
        }
    }

    fn into_data_error(self, file: &Path, line: u64) -> DataError {
        match self {
            MapError::Missing {
                field,
                missing,
                available,
            } => DataError::MissingField {
                file: file.to_path_buf(),
                line,
                field,
                missing,
                available,
            },
            MapError::WrongType {
                field,
                expected,
                found,
            } => DataError::WrongType {
                file: file.to_path_buf(),
                line,
                field,
                expected,
                found,
            },
        }
    }
}

const PROMPT_EXPECTED: &str = "a string, a message object or a list of messages";
const COMPLETION_EXPECTED: &str =
    "a string, a message object, a list of messages, or a list of completions";

fn prompt_from(value: Value, field: &str) -> Result<Prompt, MapError> {
    match value {
        Value::String(text) => Ok(Prompt::Text(text)),
        value @ Value::Object(_) => Ok(Prompt::Chat(vec![message_from(value, field)?])),
        Value::Array(items) => Ok(Prompt::Chat(messages_from(items, field)?)),
        other => Err(MapError::wrong(field, PROMPT_EXPECTED, &other)),
    }
}

fn completions_from(value: Value, field: &str) -> Result<(Vec<Completion>, bool), MapError> {
    match value {
        Value::String(text) => Ok((vec![Completion::Text(text)], false)),
        value @ Value::Object(_) => Ok((
            vec![Completion::Message(message_from(value, field)?)],
            false,
        )),
        Value::Array(items) => match items.first() {
            None => Err(MapError::WrongType {
                field: field.to_owned(),
                expected: COMPLETION_EXPECTED.to_owned(),
                found: "an empty list".to_owned(),
            }),
            Some(Value::Object(_)) => {
                Ok((vec![Completion::Chat(messages_from(items, field)?)], false))
            }
            Some(Value::String(_)) => {
                let mut completions = Vec::with_capacity(items.len());
                for (index, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(text) => completions.push(Completion::Text(text)),
                        other => {
                            return Err(MapError::wrong(
                                &format!("{field}.{index}"),
                                "a string (the list starts with a string, so it is a list of completions)",
                                &other,
                            ))
                        }
                    }
                }
                Ok((completions, true))
            }
            Some(Value::Array(_)) => {
                let mut completions = Vec::with_capacity(items.len());
                for (index, item) in items.into_iter().enumerate() {
                    let item_field = format!("{field}.{index}");
                    match item {
                        Value::Array(messages) => completions
                            .push(Completion::Chat(messages_from(messages, &item_field)?)),
                        other => {
                            return Err(MapError::wrong(
                                &item_field,
                                "a list of messages (the list starts with a list, so it is a list of chat completions)",
                                &other,
                            ))
                        }
                    }
                }
                Ok((completions, true))
            }
            Some(other) => Err(MapError::wrong(
                &format!("{field}.0"),
                "a message object, a string or a list of messages",
                other,
            )),
        },
        other => Err(MapError::wrong(field, COMPLETION_EXPECTED, &other)),
    }
}

fn messages_from(items: Vec<Value>, field: &str) -> Result<Vec<Message>, MapError> {
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| message_from(item, &format!("{field}.{index}")))
        .collect()
}

fn message_from(value: Value, field: &str) -> Result<Message, MapError> {
    let mut object = match value {
        Value::Object(object) => object,
        other => {
            return Err(MapError::wrong(
                field,
                "a message object {\"role\", \"content\"}",
                &other,
            ))
        }
    };
    let role = match object.remove("role") {
        Some(Value::String(role)) => role,
        Some(other) => {
            return Err(MapError::wrong(
                &format!("{field}.role"),
                "a string",
                &other,
            ))
        }
        None => {
            return Err(MapError::missing_key(
                format!("{field}.role"),
                keys_of(&object),
            ))
        }
    };
    let content_field = || format!("{field}.content");
    let content = match object.remove("content") {
        Some(Value::String(content)) => content,
        Some(Value::Null) => String::new(),
        None if object.contains_key("tool_calls") => String::new(),
        Some(Value::Array(parts)) => content_parts(parts, &content_field())?,
        Some(other) => {
            return Err(MapError::wrong(
                &content_field(),
                "a string, null or a list of content parts",
                &other,
            ))
        }
        None => {
            let mut available = keys_of(&object);
            available.insert(0, "role".to_owned());
            return Err(MapError::missing_key(content_field(), available));
        }
    };
    let tool_calls = match object.remove("tool_calls") {
        None | Some(Value::Null) => None,
        Some(calls @ Value::Array(_)) => Some(calls),
        Some(other) => {
            return Err(MapError::wrong(
                &format!("{field}.tool_calls"),
                "a list of tool calls",
                &other,
            ))
        }
    };
    let mut optional_string = |key: &str| match object.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(MapError::wrong(
            &format!("{field}.{key}"),
            "a string",
            &other,
        )),
    };
    let name = optional_string("name")?;
    let tool_call_id = optional_string("tool_call_id")?;
    Ok(Message {
        role,
        content,
        tool_calls,
        name,
        tool_call_id,
    })
}

/// The text of OpenAI-style content parts: `[{"type": "text", "text": "…"}, {"type": "image_url",
/// …}]`. Text parts (and bare strings) are joined by newlines; other parts are left out.
fn content_parts(parts: Vec<Value>, field: &str) -> Result<String, MapError> {
    let mut texts = Vec::with_capacity(parts.len());
    for (index, part) in parts.into_iter().enumerate() {
        match part {
            Value::String(text) => texts.push(text),
            Value::Object(mut object) => match object.remove("text") {
                Some(Value::String(text)) => texts.push(text),
                Some(other) => {
                    return Err(MapError::wrong(
                        &format!("{field}.{index}.text"),
                        "a string",
                        &other,
                    ))
                }
                None => {}
            },
            other => {
                return Err(MapError::wrong(
                    &format!("{field}.{index}"),
                    "a content part object or a string",
                    &other,
                ))
            }
        }
    }
    Ok(texts.join("\n"))
}

fn reference_from(
    found: Found<'_>,
    path: &FieldPath,
    required: bool,
) -> Result<Option<Reference>, MapError> {
    let value = if required {
        match found.required(path)? {
            Value::Null => {
                return Err(MapError::wrong(
                    path.as_str(),
                    "a reference (any JSON value but null)",
                    &Value::Null,
                ))
            }
            value => value,
        }
    } else {
        match found.optional() {
            Some(value) => value,
            None => return Ok(None),
        }
    };
    Ok(Some(match value {
        Value::String(text) => Reference::Text(text),
        other => Reference::Json(other),
    }))
}

fn group_from(found: Found<'_>, path: &FieldPath) -> Result<Option<String>, MapError> {
    match found.optional() {
        None => Ok(None),
        Some(Value::String(group)) => Ok(Some(group)),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(other) => Err(MapError::wrong(
            path.as_str(),
            "a string or a number (a group id)",
            &other,
        )),
    }
}

enum ListIndex {
    At(usize),
    OutOfRange,
    NotAnIndex,
}

fn list_index(segment: &str, len: usize) -> ListIndex {
    let Ok(index) = segment.parse::<i64>() else {
        return ListIndex::NotAnIndex;
    };
    let at = if index >= 0 {
        usize::try_from(index).ok()
    } else {
        usize::try_from(index.unsigned_abs())
            .ok()
            .and_then(|back| len.checked_sub(back))
    };
    match at {
        Some(at) if at < len => ListIndex::At(at),
        _ => ListIndex::OutOfRange,
    }
}

const MAX_LISTED_KEYS: usize = 30;

fn keys_of(map: &Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<String> = map.keys().take(MAX_LISTED_KEYS).cloned().collect();
    if map.len() > MAX_LISTED_KEYS {
        keys.push(format!("… ({} more)", map.len() - MAX_LISTED_KEYS));
    }
    keys
}

fn indexes_of(items: &[Value]) -> Vec<String> {
    match items.len() {
        0 => Vec::new(),
        1 => vec!["index 0 (a list of 1 item)".to_owned()],
        n => vec![format!("indexes 0 to {} (or -1 to -{n})", n - 1)],
    }
}

/// A short description of a JSON value for error messages: its type, and a preview of scalars.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => {
            const PREVIEW: usize = 40;
            let preview: String = s.chars().take(PREVIEW).collect();
            if preview.len() < s.len() {
                format!("a string ({preview:?}…)")
            } else {
                format!("a string ({preview:?})")
            }
        }
        Value::Array(items) => match items.len() {
            1 => "a list of 1 item".to_owned(),
            n => format!("a list of {n} items"),
        },
        Value::Object(map) => {
            let keys = keys_of(map);
            if keys.is_empty() {
                "an empty object".to_owned()
            } else {
                format!("an object with keys {}", keys.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(fields: &FieldMap, row: Value) -> Result<(Vec<Sample>, bool), DataError> {
        let Value::Object(row) = row else {
            panic!("test rows are objects")
        };
        fields.map_row(row, Path::new("t.jsonl"), 3)
    }

    fn one(fields: &FieldMap, row: Value) -> Sample {
        let (mut samples, expanded) = map(fields, row).expect("row maps");
        assert!(!expanded);
        assert_eq!(samples.len(), 1);
        samples.remove(0)
    }

    fn error(fields: &FieldMap, row: Value) -> String {
        map(fields, row).expect_err("row must not map").to_string()
    }

    #[test]
    fn paths_parse_and_reject_empty_segments() {
        assert_eq!(FieldPath::new("a.b.0").unwrap().segments, ["a", "b", "0"]);
        for bad in ["", "a..b", ".a", "a."] {
            assert!(FieldPath::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_map_reads_trl_prompt_completion() {
        let fields = FieldMap::default();
        let sample = one(
            &fields,
            json!({"prompt": "2+2?", "completion": "4", "reference": 4, "group": 17, "id": "x"}),
        );
        assert_eq!(sample.prompt, Prompt::Text("2+2?".into()));
        assert_eq!(sample.completion, Completion::Text("4".into()));
        assert_eq!(sample.reference, Some(Reference::Json(json!(4))));
        assert_eq!(sample.group.as_deref(), Some("17"));
        assert_eq!(Value::Object(sample.metadata), json!({"id": "x"}));

        // Reference and group are optional by default; null is absent.
        let sample = one(
            &fields,
            json!({"prompt": "p", "completion": "c", "reference": null}),
        );
        assert_eq!(sample.reference, None);
        assert_eq!(sample.group, None);
    }

    #[test]
    fn dotted_paths_reach_into_objects_and_lists() {
        let fields = FieldMap::default()
            .with_prompt("messages.0.content")
            .unwrap()
            .with_completion("messages.-1")
            .unwrap()
            .with_reference("meta.answer.value")
            .unwrap();
        let sample = one(
            &fields,
            json!({
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"}
                ],
                "meta": {"answer": {"value": [1, 2]}, "source": "s"}
            }),
        );
        assert_eq!(sample.prompt, Prompt::Text("hi".into()));
        assert_eq!(
            sample.completion,
            Completion::Message(Message::new("assistant", "hello"))
        );
        assert_eq!(sample.reference, Some(Reference::Json(json!([1, 2]))));
        // Nested paths leave their top-level fields in the metadata.
        assert!(sample.metadata.contains_key("messages"));
        assert!(sample.metadata.contains_key("meta"));
    }

    #[test]
    fn a_dotted_top_level_key_matches_literally() {
        let fields = FieldMap::default().with_completion("a.b").unwrap();
        let sample = one(
            &fields,
            json!({"prompt": "p", "a.b": "literal", "a": {"b": "nested"}}),
        );
        assert_eq!(sample.completion.text(), "literal");
        assert!(!sample.metadata.contains_key("a.b"));
    }

    #[test]
    fn the_same_key_can_feed_two_fields() {
        let fields = FieldMap::default()
            .with_prompt("messages")
            .unwrap()
            .with_completion("messages.-1")
            .unwrap();
        let sample = one(
            &fields,
            json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
        );
        assert_eq!(sample.prompt.text(), "q\na");
        assert_eq!(sample.completion.text(), "a");
        assert!(sample.metadata.is_empty());
    }

    #[test]
    fn chat_shapes() {
        let fields = FieldMap::default();
        let sample = one(
            &fields,
            json!({
                "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}],
                "completion": [{"role": "assistant", "content": "a"}]
            }),
        );
        assert!(matches!(&sample.prompt, Prompt::Chat(m) if m.len() == 2));
        assert_eq!(
            sample.completion,
            Completion::Chat(vec![Message::new("assistant", "a")])
        );

        // Content parts, null content, tool-call messages without content.
        let sample = one(
            &fields,
            json!({
                "prompt": {"role": "user", "content": [{"type": "text", "text": "look"},
                                                       {"type": "image_url", "image_url": {}},
                                                       {"type": "text", "text": "here"}]},
                "completion": [{"role": "assistant", "content": null, "tool_calls": []},
                               {"role": "assistant", "tool_calls": []}]
            }),
        );
        assert_eq!(sample.prompt.text(), "look\nhere");
        let no_calls = Message {
            tool_calls: Some(json!([])),
            ..Message::new("assistant", "")
        };
        assert_eq!(
            sample.completion,
            Completion::Chat(vec![no_calls.clone(), no_calls])
        );

        // Tool-use keys are kept, and the calls reach the text verifiers read.
        let sample = one(
            &fields,
            json!({
                "prompt": "q",
                "completion": [
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "c1", "type": "function",
                         "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
                    {"role": "tool", "content": "2", "name": "f", "tool_call_id": "c1"},
                    {"role": "assistant", "content": "It is 2."}]
            }),
        );
        let Completion::Chat(messages) = &sample.completion else {
            panic!("{:?}", sample.completion)
        };
        assert_eq!(messages[0].tool_calls.as_ref().unwrap()[0]["id"], "c1");
        assert_eq!(messages[1].name.as_deref(), Some("f"));
        assert_eq!(messages[1].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(
            sample.completion.text(),
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\":1}}\n</tool_call>\nIt is 2."
        );
        for (bad, field) in [
            (
                json!({"role": "assistant", "tool_calls": {"name": "f"}}),
                "completion.0.tool_calls",
            ),
            (
                json!({"role": "tool", "content": "2", "name": 3}),
                "completion.0.name",
            ),
            (
                json!({"role": "tool", "content": "2", "tool_call_id": []}),
                "completion.0.tool_call_id",
            ),
        ] {
            let message = error(&fields, json!({"prompt": "q", "completion": [bad]}));
            assert!(message.contains(field), "{message}");
        }
    }

    #[test]
    fn a_list_of_completions_expands_into_a_group() {
        let fields = FieldMap::default();
        let (samples, expanded) = map(
            &fields,
            json!({"prompt": "p", "completion": ["a", "b", "c"], "k": 1}),
        )
        .unwrap();
        assert!(expanded);
        assert_eq!(samples.len(), 3);
        for (sample, text) in samples.iter().zip(["a", "b", "c"]) {
            assert_eq!(sample.completion.text(), text);
            assert_eq!(
                sample.group.as_deref(),
                Some("3"),
                "line number is the group id"
            );
            assert_eq!(sample.prompt.text(), "p");
            assert_eq!(Value::Object(sample.metadata.clone()), json!({"k": 1}));
        }

        let (samples, expanded) = map(
            &fields,
            json!({"prompt": "p", "group": "g1", "completion": [
                [{"role": "assistant", "content": "x"}],
                [{"role": "assistant", "content": "y"}]
            ]}),
        )
        .unwrap();
        assert!(expanded);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[1].completion.text(), "y");
        assert!(samples.iter().all(|s| s.group.as_deref() == Some("g1")));
    }

    #[test]
    fn missing_fields_name_the_path_and_the_keys_there() {
        let fields = FieldMap::default();
        let message = error(&fields, json!({"question": "q", "answer": "a"}));
        assert_eq!(
            message,
            "t.jsonl:3: missing field `prompt` (available: question, answer)"
        );

        let fields = FieldMap::default()
            .without_prompt()
            .with_completion("response.text")
            .unwrap();
        let message = error(&fields, json!({"response": {"txt": "a"}}));
        assert_eq!(
            message,
            "t.jsonl:3: missing field `response.text` (available: txt)"
        );
        let message = error(&fields, json!({"resp": {"text": "a"}}));
        assert!(message.contains("missing field `response.text`: `response` is absent"));
        assert!(message.contains("available: resp"));

        let fields = FieldMap::default()
            .without_prompt()
            .with_completion("m.5")
            .unwrap();
        let message = error(&fields, json!({"m": ["a", "b"]}));
        assert!(message.contains("missing field `m.5`"), "{message}");
        assert!(message.contains("indexes 0 to 1"), "{message}");

        let fields = FieldMap::default().with_reference("answer").unwrap();
        let message = error(&fields, json!({"prompt": "p", "completion": "c"}));
        assert!(message.contains("missing field `answer`"), "{message}");
    }

    #[test]
    fn wrong_types_say_what_was_found() {
        let fields = FieldMap::default();
        let check = |row: Value, expected: &str| {
            let message = error(&fields, row);
            assert!(
                message.contains(expected),
                "{message}\n  should contain {expected}"
            );
        };
        check(
            json!({"prompt": "p", "completion": 42}),
            "field `completion`: expected a string, a message object, a list of messages, or a list of completions, found a number (42)",
        );
        check(json!({"prompt": "p", "completion": null}), "found null");
        check(
            json!({"prompt": "p", "completion": []}),
            "found an empty list",
        );
        check(
            json!({"prompt": "p", "completion": ["a", 1]}),
            "field `completion.1`: expected a string",
        );
        check(
            json!({"prompt": "p", "completion": [{"role": "assistant", "content": "a"}, "b"]}),
            "field `completion.1`: expected a message object",
        );
        check(
            json!({"prompt": "p", "completion": {"content": "a"}}),
            "missing field `completion.role` (available: content)",
        );
        check(
            json!({"prompt": "p", "completion": {"role": "assistant", "text": "a"}}),
            "missing field `completion.content` (available: role, text)",
        );
        check(
            json!({"prompt": true, "completion": "c"}),
            "field `prompt`: expected a string, a message object or a list of messages, found a boolean (true)",
        );
        check(
            json!({"prompt": "p", "completion": "c", "group": [1]}),
            "field `group`: expected a string or a number",
        );
        let fields = FieldMap::default().with_completion("a.b").unwrap();
        let message = error(&fields, json!({"prompt": "p", "a": "text"}));
        assert!(
            message.contains("field `a`: expected an object or a list to look up `b` in, found a string (\"text\")"),
            "{message}"
        );
        let fields = FieldMap::default().with_completion("a.b").unwrap();
        let message = error(&fields, json!({"prompt": "p", "a": [1]}));
        assert!(message.contains("expected an object with key `b`, found a list of 1 item"));
    }

    #[test]
    fn required_reference_refuses_null_and_unmapped_fields_can_be_dropped() {
        let fields = FieldMap::default()
            .with_reference("answer")
            .unwrap()
            .keep_unmapped(false);
        let message = error(
            &fields,
            json!({"prompt": "p", "completion": "c", "answer": null}),
        );
        assert!(message.contains("expected a reference"), "{message}");
        let sample = one(
            &fields,
            json!({"prompt": "p", "completion": "c", "answer": "42", "extra": 1}),
        );
        assert_eq!(sample.reference, Some(Reference::Text("42".into())));
        assert!(sample.metadata.is_empty());
    }

    #[test]
    fn list_indexes() {
        assert!(matches!(list_index("0", 2), ListIndex::At(0)));
        assert!(matches!(list_index("-1", 2), ListIndex::At(1)));
        assert!(matches!(list_index("-2", 2), ListIndex::At(0)));
        assert!(matches!(list_index("-3", 2), ListIndex::OutOfRange));
        assert!(matches!(list_index("2", 2), ListIndex::OutOfRange));
        assert!(matches!(
            list_index(&i64::MIN.to_string(), 2),
            ListIndex::OutOfRange
        ));
        assert!(matches!(list_index("x", 2), ListIndex::NotAnIndex));
        assert!(matches!(
            list_index("99999999999999999999", 2),
            ListIndex::NotAnIndex
        ));
    }
}
