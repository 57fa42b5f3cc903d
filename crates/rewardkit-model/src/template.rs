//! Chat templates: how a conversation (a list of `{role, content}` messages) becomes the one
//! text a reward model reads.
//!
//! Three kinds, chosen with `rewardkit train --chat-template` or the `chat_template` option of a
//! spec's `model` term, and saved in the model's `config.json` so that scoring renders exactly as
//! training did:
//!
//! * **`builtin`** (the default) — `\n\n{Role}: {content}` per message, roles `Human`,
//!   `Assistant`, `System` (others capitalised), and a prompt ends with `\n\nAssistant:`. This is
//!   Anthropic's HH-RLHF format, so a chat list and the same dialogue written HH-style give the
//!   model identical text. A response that starts with an assistant message continues that
//!   `\n\nAssistant:` as ` {content}`.
//! * **`none`** — no role markup: message texts joined by `\n`; a prompt ends with `\n` so that
//!   the response starts on its own line.
//! * **Jinja** — a Hugging Face `chat_template`: `tokenizer` reads it from the backbone's (or the
//!   model directory's) `tokenizer_config.json` (the `chat_template` string, or the list of named
//!   templates, taking `default`, or `tokenizer:NAME` for another), falling back to the
//!   `chat_template.jinja` file newer `transformers` versions write; a `PATH` names a `.jinja`
//!   file or another `tokenizer_config.json`. It is rendered the way `transformers`'
//!   `apply_chat_template(..., tokenize=False)` does: Jinja with `trim_blocks` and
//!   `lstrip_blocks`, loop controls, Python string/dict methods (`strip`, `startswith`, `items`,
//!   … through minijinja-contrib's `pycompat`), a `tojson` filter that writes what Python's
//!   `json.dumps(ensure_ascii=False)` writes, `raise_exception(msg)`, `strftime_now(fmt)`
//!   (today's date in UTC), and the variables `messages`, `add_generation_prompt`, `tools` (when
//!   the row has them), and the tokenizer's special tokens (`bos_token`, `eos_token`, `unk_token`,
//!   `pad_token`, …) as `transformers` passes them.
//!
//! # Prompt and response from one rendering
//!
//! Rewards are computed for (prompt, response) pairs. With a Jinja template the split follows
//! TRL (`maybe_apply_chat_template`): the prompt is the prompt messages rendered with
//! `add_generation_prompt = true`, the full text is prompt + response messages rendered without
//! it, and the response is what the full text adds after the prompt. When a template does not
//! render the prompt as a prefix of the full text (some templates drop earlier reasoning, for
//! instance), the whole text becomes the response and the prompt is empty, so that the model still
//! reads exactly what the template wrote.
//!
//! # Known differences from `transformers`
//!
//! JSON objects reach the template with their keys in the file's order, as in Python, so `tojson`
//! prints tool schemas and tool-call arguments as `transformers` does. The `{% generation %}` tag (assistant masks) is not
//! supported. `strftime_now` makes the text depend on the day it is rendered, as it does in
//! `transformers`; templates that use it (Llama 3.1's system header) therefore give inputs that
//! change at midnight UTC.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, Serde};
use minijinja::{Environment, Error, ErrorKind, Value as JinjaValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ModelError;

/// The values `--chat-template` and the `chat_template` term option accept, for error messages.
pub const ACCEPTED: &str =
    "`builtin`, `none`, `tokenizer`, `tokenizer:NAME` (a named template of the list form), or the path of a .jinja file or a tokenizer_config.json";

/// Where the `tokenizer` template is read from, and the fallback file.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// The separate template file newer `transformers` versions save.
pub const TEMPLATE_FILE: &str = "chat_template.jinja";

/// The special-token variables `transformers` passes to a template (its `special_tokens_map`).
const SPECIAL_TOKENS: &[&str] = &[
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// A chat template as saved in a model's `config.json` (`chat_template`): the kind, and for Jinja
/// templates the template text itself, so that a saved model renders the same way wherever it
/// is moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum ChatTemplateConfig {
    /// `\n\n{Role}: {content}` per message (HH-RLHF's format); see the module docs.
    #[default]
    Builtin,
    /// Message texts joined by newlines, no role markup.
    None,
    /// A Hugging Face Jinja `chat_template`.
    Jinja {
        /// Where it came from (`…/tokenizer_config.json, field chat_template`), for messages.
        origin: String,
        /// The template.
        template: String,
        /// The tokenizer's special tokens by variable name (`bos_token` → `<s>`).
        #[serde(default)]
        special_tokens: BTreeMap<String, String>,
    },
}

impl ChatTemplateConfig {
    /// Resolves a `--chat-template` / `chat_template` value. `tokenizer` looks in each of `dirs`
    /// in turn (the model or backbone directory first). `option` names the flag or field in
    /// errors.
    pub fn resolve(
        option: &str,
        value: &str,
        dirs: &[&Path],
    ) -> Result<ChatTemplateConfig, ModelError> {
        match value {
            "builtin" => Ok(ChatTemplateConfig::Builtin),
            "none" => Ok(ChatTemplateConfig::None),
            "" => Err(ModelError::option(
                option,
                format!("empty value; expected {ACCEPTED}"),
            )),
            _ => {
                match value.strip_prefix("tokenizer") {
                    Some("") => return from_tokenizer_dirs(option, dirs, None),
                    Some(rest) if rest.starts_with(':') => {
                        return from_tokenizer_dirs(option, dirs, Some(&rest[1..]))
                    }
                    _ => {}
                }
                let path = Path::new(value);
                if !path.is_file() {
                    return Err(ModelError::option(
                        option,
                        format!("`{value}` is neither a known value nor an existing file; expected {ACCEPTED}"),
                    ));
                }
                from_file(option, path)
            }
        }
    }

    /// A short description for logs.
    pub fn describe(&self) -> String {
        match self {
            ChatTemplateConfig::Builtin => "builtin chat template".to_owned(),
            ChatTemplateConfig::None => "no chat template".to_owned(),
            ChatTemplateConfig::Jinja { origin, .. } => format!("chat template from {origin}"),
        }
    }
}

/// The Hugging Face chat template of a model directory, if it has one: the non-null
/// `chat_template` of its `tokenizer_config.json`, else its `chat_template.jinja` file — what
/// `resolve(option, "tokenizer", &[dir])` gives — or `None` when it has neither. An unreadable or
/// malformed `tokenizer_config.json` is an error. The file is read once.
pub(crate) fn tokenizer_template(
    option: &str,
    dir: &Path,
) -> Result<Option<ChatTemplateConfig>, ModelError> {
    from_tokenizer_dir(option, dir, None, &mut Vec::new())
}

/// The template of the first of `dirs` that has one.
fn from_tokenizer_dirs(
    option: &str,
    dirs: &[&Path],
    name: Option<&str>,
) -> Result<ChatTemplateConfig, ModelError> {
    if dirs.is_empty() {
        return Err(ModelError::option(
            option,
            "`tokenizer` reads the chat_template of the backbone's tokenizer_config.json, and this backbone has no directory (the hashed backbone): give a .jinja file or tokenizer_config.json path instead",
        ));
    }
    let mut looked = Vec::new();
    for dir in dirs {
        if let Some(config) = from_tokenizer_dir(option, dir, name, &mut looked)? {
            return Ok(config);
        }
    }
    Err(ModelError::option(
        option,
        format!("no chat template found; looked in {}", looked.join(", ")),
    ))
}

/// The template of one directory (`name`: a named template of the list form), reading its
/// `tokenizer_config.json` once: its `chat_template`, else (unnamed) `chat_template.jinja` with
/// the special tokens of the config. `None`, with the places looked at added to `looked`, when
/// it has neither.
fn from_tokenizer_dir(
    option: &str,
    dir: &Path,
    name: Option<&str>,
    looked: &mut Vec<String>,
) -> Result<Option<ChatTemplateConfig>, ModelError> {
    let config = dir.join(TOKENIZER_CONFIG_FILE);
    let json = if config.is_file() {
        Some(read_json(&config)?)
    } else {
        None
    };
    if let Some(json) = &json {
        if json.get("chat_template").is_some_and(|t| !t.is_null()) {
            return from_tokenizer_json(&config, json, name).map(Some);
        }
    }
    looked.push(format!("{} (field `chat_template`)", config.display()));
    let file = dir.join(TEMPLATE_FILE);
    if file.is_file() && name.is_none() {
        let tokens = json.as_ref().map(|json| (config.as_path(), json));
        return from_jinja(option, &file, tokens).map(Some);
    }
    looked.push(file.display().to_string());
    Ok(None)
}

fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::load(path, format!("not JSON: {e}")))
}

/// A `.jinja` file or a tokenizer_config.json.
fn from_file(option: &str, path: &Path) -> Result<ChatTemplateConfig, ModelError> {
    if path.extension().is_some_and(|e| e == "json") {
        return from_tokenizer_json(path, &read_json(path)?, None);
    }
    from_jinja(option, path, None)
}

/// A `.jinja` file, with the special tokens of `tokens_from` (a tokenizer_config.json already
/// read: its path and content) if given.
fn from_jinja(
    option: &str,
    path: &Path,
    tokens_from: Option<(&Path, &Value)>,
) -> Result<ChatTemplateConfig, ModelError> {
    let template = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let special_tokens = match tokens_from {
        Some((config, json)) => special_tokens(config, json),
        None => BTreeMap::new(),
    };
    let config = ChatTemplateConfig::Jinja {
        origin: path.display().to_string(),
        template,
        special_tokens,
    };
    ChatTemplate::new(&config).map_err(|e| match e {
        ModelError::Template { origin, reason } => {
            ModelError::option(option, format!("{origin}: {reason}"))
        }
        other => other,
    })?;
    Ok(config)
}

/// `chat_template` of a parsed tokenizer_config.json: a string, or a list of
/// `{"name", "template"}` of which `name` (default `default`) is taken.
fn from_tokenizer_json(
    path: &Path,
    json: &Value,
    name: Option<&str>,
) -> Result<ChatTemplateConfig, ModelError> {
    let field_error =
        |reason: String| ModelError::load(path, format!("field `chat_template`: {reason}"));
    let (template, origin) = match (json.get("chat_template"), name) {
        (Some(Value::String(template)), None) => (
            template.clone(),
            format!("{}, field chat_template", path.display()),
        ),
        (Some(Value::String(_)), Some(name)) => {
            return Err(field_error(format!(
                "is one template, not a list of named ones, so `tokenizer:{name}` names nothing (use `tokenizer`)"
            )))
        }
        (Some(Value::Array(items)), _) => {
            let wanted = name.unwrap_or("default");
            let mut names = Vec::new();
            let mut found = None;
            for item in items {
                let (Some(Value::String(n)), Some(Value::String(t))) =
                    (item.get("name"), item.get("template"))
                else {
                    return Err(field_error(
                        "expected a string or a list of {\"name\": string, \"template\": string}"
                            .to_owned(),
                    ));
                };
                if n == wanted {
                    found = Some(t.clone());
                }
                names.push(format!("`{n}`"));
            }
            match found {
                Some(t) => (
                    t,
                    format!("{}, field chat_template (`{wanted}`)", path.display()),
                ),
                None => {
                    return Err(field_error(format!(
                        "has no template named `{wanted}` (it has {})",
                        names.join(", ")
                    )))
                }
            }
        }
        (None | Some(Value::Null), _) => {
            return Err(field_error("missing (this tokenizer has no chat template)".to_owned()))
        }
        (Some(_), _) => {
            return Err(field_error(
                "expected a string or a list of {\"name\": string, \"template\": string}"
                    .to_owned(),
            ))
        }
    };
    let config = ChatTemplateConfig::Jinja {
        origin,
        template,
        special_tokens: special_tokens(path, json),
    };
    ChatTemplate::new(&config)?;
    Ok(config)
}

/// The special tokens of a tokenizer_config.json (strings, or `AddedToken` objects with a
/// `content`), completed from `special_tokens_map.json` beside it.
fn special_tokens(path: &Path, json: &Value) -> BTreeMap<String, String> {
    let token = |value: Option<&Value>| match value {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    let map = path
        .parent()
        .map(|dir| dir.join("special_tokens_map.json"))
        .filter(|p| p.is_file())
        .and_then(|p| read_json(&p).ok());
    SPECIAL_TOKENS
        .iter()
        .filter_map(|name| {
            let value = token(json.get(*name))
                .or_else(|| token(map.as_ref().and_then(|m| m.get(*name))))?;
            Some(((*name).to_owned(), value))
        })
        .collect()
}

/// A compiled chat template, ready to render.
pub struct ChatTemplate {
    config: ChatTemplateConfig,
    environment: Option<Environment<'static>>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("config", &self.config)
            .finish()
    }
}

/// The template's name inside its environment, as minijinja's messages show it.
const NAME: &str = "chat_template";

impl ChatTemplate {
    /// The built-in template.
    pub fn builtin() -> ChatTemplate {
        ChatTemplate {
            config: ChatTemplateConfig::Builtin,
            environment: None,
        }
    }

    /// Compiles a template; a Jinja syntax error names the template's origin and line.
    pub fn new(config: &ChatTemplateConfig) -> Result<ChatTemplate, ModelError> {
        let environment = match config {
            ChatTemplateConfig::Jinja {
                origin, template, ..
            } => {
                let mut env = Environment::new();
                env.set_syntax(
                    minijinja::syntax::SyntaxConfig::builder()
                        .trim_blocks(true)
                        .lstrip_blocks(true)
                        .build()
                        .expect("the default delimiters are valid: this is a bug"),
                );
                env.set_unknown_method_callback(
                    minijinja_contrib::pycompat::unknown_method_callback,
                );
                env.add_function("raise_exception", raise_exception);
                env.add_function("strftime_now", strftime_now);
                env.add_filter("tojson", tojson);
                env.add_template_owned(NAME, template.clone())
                    .map_err(|e| template_error(origin, template, "compiling", &e))?;
                Some(env)
            }
            _ => None,
        };
        Ok(ChatTemplate {
            config: config.clone(),
            environment,
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &ChatTemplateConfig {
        &self.config
    }

    /// Whether this is a Jinja template (HH-RLHF dialogues are parsed into turns for those; see
    /// [`crate::data`]).
    pub fn is_jinja(&self) -> bool {
        self.environment.is_some()
    }

    /// Renders whole conversation `messages` (objects with `role`, `content` and whatever else
    /// the template reads), appending the assistant header when `add_generation_prompt`.
    pub fn render(
        &self,
        messages: &[Value],
        add_generation_prompt: bool,
        tools: Option<&Value>,
    ) -> Result<String, ModelError> {
        match (&self.config, &self.environment) {
            (
                ChatTemplateConfig::Jinja {
                    origin,
                    template,
                    special_tokens,
                },
                Some(env),
            ) => {
                let mut context: BTreeMap<String, JinjaValue> = special_tokens
                    .iter()
                    .map(|(k, v)| (k.clone(), JinjaValue::from(v.as_str())))
                    .collect();
                // As transformers does (`_normalize_chat_messages`): keys whose value is null are
                // dropped, so `content: null` next to `tool_calls` is absent, not "None".
                let messages: Vec<Value> = messages
                    .iter()
                    .map(|m| match m {
                        Value::Object(map) => Value::Object(
                            map.iter()
                                .filter(|(_, v)| !v.is_null())
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect(),
                        ),
                        other => other.clone(),
                    })
                    .collect();
                context.insert("messages".into(), JinjaValue::from(Serde(&messages)));
                context.insert(
                    "add_generation_prompt".into(),
                    JinjaValue::from(add_generation_prompt),
                );
                if let Some(tools) = tools.filter(|t| !t.is_null()) {
                    context.insert("tools".into(), JinjaValue::from(Serde(tools)));
                }
                env.get_template(NAME)
                    .and_then(|t| t.render(context))
                    .map_err(|e| template_error(origin, template, "rendering", &e))
            }
            (ChatTemplateConfig::None, _) => {
                let mut out = messages
                    .iter()
                    .map(message_text)
                    .collect::<Vec<_>>()
                    .join("\n");
                if add_generation_prompt && !messages.is_empty() {
                    out.push('\n');
                }
                Ok(out)
            }
            _ => {
                let mut out = String::new();
                for message in messages {
                    out.push_str(&format!(
                        "\n\n{}: {}",
                        role_name(message_role(message)),
                        message_text(message)
                    ));
                }
                if add_generation_prompt {
                    out.push_str(ASSISTANT_MARKER);
                }
                Ok(out)
            }
        }
    }

    /// The (prompt, response) texts of prompt messages answered by response messages (see the
    /// module docs for the split).
    pub fn render_turns(
        &self,
        prompt: &[Value],
        response: &[Value],
        tools: Option<&Value>,
    ) -> Result<(String, String), ModelError> {
        if !self.is_jinja() && !matches!(self.config, ChatTemplateConfig::None) {
            // The built-in template, exactly as rewardkit has always rendered it.
            let prompt_text = self.render(prompt, true, None)?;
            let mut response_text = String::new();
            for (i, message) in response.iter().enumerate() {
                let role = message_role(message);
                if i == 0 && role == "assistant" {
                    response_text.push(' ');
                    response_text.push_str(&message_text(message));
                } else {
                    response_text.push_str(&format!(
                        "\n\n{}: {}",
                        role_name(role),
                        message_text(message)
                    ));
                }
            }
            return Ok((prompt_text, response_text));
        }
        let prompt_text = if prompt.is_empty() && !self.is_jinja() {
            String::new()
        } else {
            self.render(prompt, true, tools)?
        };
        let all: Vec<Value> = prompt.iter().chain(response).cloned().collect();
        let full = self.render(&all, false, tools)?;
        Ok(match full.strip_prefix(prompt_text.as_str()) {
            Some(rest) => (prompt_text, rest.to_owned()),
            None => (String::new(), full),
        })
    }
}

/// The marker after which an HH-RLHF assistant turn starts.
pub(crate) const ASSISTANT_MARKER: &str = "\n\nAssistant:";

fn message_role(message: &Value) -> &str {
    message.get("role").and_then(Value::as_str).unwrap_or("")
}

/// A message's text as verifiers read it ([`rewardkit_core::Message::text`]: the content, then
/// any structured tool calls).
fn message_text(message: &Value) -> String {
    let calls = message.get("tool_calls");
    if calls.is_none_or(|c| c.as_array().is_none_or(Vec::is_empty)) {
        // No tool calls: the content itself (the common case, without a round trip).
        return message
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
    }
    match serde_json::from_value::<rewardkit_core::Message>(message.clone()) {
        Ok(m) => m.text().into_owned(),
        Err(_) => message
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    }
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

/// A minijinja error as a [`ModelError::Template`] naming the origin, what failed, and the
/// template line it points at.
fn template_error(origin: &str, template: &str, doing: &str, error: &Error) -> ModelError {
    let mut reason = format!("{doing} the chat template failed: {}", error.kind());
    if let Some(detail) = error.detail() {
        reason.push_str(": ");
        reason.push_str(detail);
    }
    if let Some(line) = error.line() {
        let text = template.lines().nth(line.saturating_sub(1)).unwrap_or("");
        let text = if text.chars().count() > 160 {
            format!("{}…", text.chars().take(160).collect::<String>())
        } else {
            text.to_owned()
        };
        reason.push_str(&format!(" (template line {line}: `{}`)", text.trim()));
    }
    ModelError::Template {
        origin: origin.to_owned(),
        reason,
    }
}

/// `raise_exception(message)`: templates call it to refuse a conversation (`transformers`
/// raises a `TemplateError` with the message).
fn raise_exception(message: String) -> Result<JinjaValue, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `tojson`: Python's `json.dumps(value, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`, as `transformers` defines the filter.
fn tojson(value: &JinjaValue, kwargs: Kwargs) -> Result<JinjaValue, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let (item, key) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair of strings",
            ))
        }
        None if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        None => (", ".to_owned(), ": ".to_owned()),
    };
    let json = serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    let style = JsonStyle {
        indent,
        item: &item,
        key: &key,
        sort_keys: sort_keys.unwrap_or(false),
    };
    write_json(&mut out, &json, &style, 0);
    Ok(JinjaValue::from_safe_string(out))
}

struct JsonStyle<'a> {
    indent: Option<usize>,
    item: &'a str,
    key: &'a str,
    sort_keys: bool,
}

fn write_json(out: &mut String, value: &Value, style: &JsonStyle<'_>, depth: usize) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = style.indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(style.item);
                }
                newline(out, depth + 1);
                write_json(out, item, style, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(style.item);
                }
                newline(out, depth + 1);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(style.key);
                write_json(out, v, style, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
        Value::Number(n) if n.is_f64() => {
            // Python's repr of a float: `1.0`, `1e-07`, `1e+20`.
            let x = n.as_f64().unwrap_or(0.0);
            out.push_str(&python_float(x));
        }
        // Python prints empty containers, integers, strings (ensure_ascii=False keeps non-ASCII
        // characters; control characters are escaped like serde_json does), booleans and null the
        // same way serde_json does.
        other => out.push_str(&other.to_string()),
    }
}

/// Python's `repr(float)`: the shortest round-tripping digits, in exponent form below 1e-4 or
/// from 1e16 on.
fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let abs = x.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // `{:e}` gives the shortest digits as `1.5e-7`; Python writes `1.5e-07`.
        let s = format!("{x:e}");
        let (mantissa, exponent) = s.split_once('e').expect("`{:e}` has an exponent");
        let exponent: i32 = exponent.parse().expect("`{:e}` exponent is an integer");
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let s = format!("{x:?}");
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

/// `strftime_now(format)`: the current UTC time formatted with the C `strftime` directives
/// templates use (`%d %m %Y %y %b %B %a %A %H %I %M %S %p %j %e %%`).
fn strftime_now(format: String) -> Result<JinjaValue, Error> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime(&format, seconds).map(JinjaValue::from)
}

/// Formats a Unix time (seconds, UTC).
fn strftime(format: &str, seconds: i64) -> Result<String, Error> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let month_name = MONTHS[(month - 1) as usize];
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('b') => out.push_str(&month_name[..3]),
            Some('B') => out.push_str(month_name),
            Some('a') => out.push_str(&weekday[..3]),
            Some('A') => out.push_str(weekday),
            Some('H') => out.push_str(&format!("{hour:02}")),
            Some('I') => out.push_str(&format!("{:02}", (hour + 11) % 12 + 1)),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('M') => out.push_str(&format!("{minute:02}")),
            Some('S') => out.push_str(&format!("{second:02}")),
            Some('j') => out.push_str(&format!("{day_of_year:03}")),
            Some('%') => out.push('%'),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: unsupported directive `%{}`",
                        other.map(String::from).unwrap_or_default()
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01 (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The directory paths a `tokenizer` template is looked for in, for a model directory: the
/// directory itself, then its backbone's source directory when the backbone has one.
pub fn template_dirs(model_dir: &Path, backbone_source: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = vec![model_dir.to_path_buf()];
    if let Some(source) = backbone_source {
        if source != model_dir {
            dirs.push(source.to_path_buf());
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strftime_matches_known_dates() {
        let check = |format: &str, seconds: i64, expected: &str| {
            assert_eq!(
                strftime(format, seconds).unwrap(),
                expected,
                "{format} {seconds}"
            );
        };
        check("%d %b %Y", 0, "01 Jan 1970");
        // 2024-07-26 (Llama 3.1's fallback date), a Friday, day 208 of a leap year.
        check("%d %b %Y %A %j", 1_721_952_000, "26 Jul 2024 Friday 208");
        check(
            "%Y-%m-%d %H:%M:%S %p %I",
            1_721_952_000 + 13 * 3600 + 62,
            "2024-07-26 13:01:02 PM 01",
        );
        check("%B %e, %y %%", 951_782_400, "February 29, 00 %");
        assert!(strftime("%Q", 0).is_err());
    }

    #[test]
    fn python_floats() {
        for (x, expected) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (1e-7, "1e-07"),
            (1.5e20, "1.5e+20"),
            (0.0001, "0.0001"),
            (123456.0, "123456.0"),
        ] {
            assert_eq!(python_float(x), expected, "{x}");
        }
    }

    fn jinja(template: &str) -> ChatTemplate {
        ChatTemplate::new(&ChatTemplateConfig::Jinja {
            origin: "test.jinja".into(),
            template: template.into(),
            special_tokens: BTreeMap::new(),
        })
        .unwrap()
    }

    #[test]
    fn tojson_writes_what_python_writes() {
        // `transformers`' tojson is `json.dumps(x, ensure_ascii=False, indent=…, separators=…,
        // sort_keys=False)`: keys in the order the object was written.
        let t = jinja("{{ messages[0] | tojson }}|{{ messages[0] | tojson(indent=2) }}|{{ messages[1] | tojson }}|{{ messages[0] | tojson(separators=(',', ':')) }}");
        let messages = [json!({"b": [1, 2.5, true, null], "a": {}}), json!("é<\"\n")];
        assert_eq!(
            t.render(&messages, false, None).unwrap(),
            "{\"b\": [1, 2.5, true, null], \"a\": {}}|{\n  \"b\": [\n    1,\n    2.5,\n    true,\n    null\n  ],\n  \"a\": {}\n}|\"é<\\\"\\n\"|{\"b\":[1,2.5,true,null],\"a\":{}}"
        );
    }

    #[test]
    fn errors_name_origin_and_template_line() {
        let error = ChatTemplate::new(&ChatTemplateConfig::Jinja {
            origin: "t.jinja".into(),
            template: "ok\n{% if %}".into(),
            special_tokens: BTreeMap::new(),
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("t.jinja: compiling the chat template failed: syntax error")
                && error.contains("(template line 2: `{% if %}`)"),
            "{error}"
        );
        let t = jinja("{% for m in messages %}\n{% if m.role == 'tool' %}{{ raise_exception('no tools here') }}{% endif %}\n{% endfor %}");
        let error = t
            .render(&[json!({"role": "tool", "content": "x"})], false, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("rendering the chat template failed: invalid operation: no tools here")
                && error.contains("template line 2"),
            "{error}"
        );
    }

    #[test]
    fn builtin_and_none_render_turns() {
        let user = || json!({"role": "user", "content": "hi"});
        let assistant = || json!({"role": "assistant", "content": "hello"});
        let check =
            |t: &ChatTemplate, prompt: &[Value], response: &[Value], expected: (&str, &str)| {
                let (p, r) = t.render_turns(prompt, response, None).unwrap();
                assert_eq!((p.as_str(), r.as_str()), expected, "{:?}", t.config());
            };
        let builtin = ChatTemplate::builtin();
        check(
            &builtin,
            &[user()],
            &[assistant()],
            ("\n\nHuman: hi\n\nAssistant:", " hello"),
        );
        check(&builtin, &[], &[assistant()], ("\n\nAssistant:", " hello"));
        check(
            &builtin,
            &[user()],
            &[assistant(), user()],
            ("\n\nHuman: hi\n\nAssistant:", " hello\n\nHuman: hi"),
        );
        let none = ChatTemplate::new(&ChatTemplateConfig::None).unwrap();
        check(&none, &[user()], &[assistant()], ("hi\n", "hello"));
        check(&none, &[], &[assistant()], ("", "hello"));
        // Tool calls are rendered as verifiers read them.
        let call = json!({"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]});
        check(
            &builtin,
            &[user()],
            &[call],
            (
                "\n\nHuman: hi\n\nAssistant:",
                " <tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\":1}}\n</tool_call>",
            ),
        );
        // A Jinja template whose prompt is not a prefix of the full text: all of it is the response.
        let odd = jinja("{% for m in messages %}[{{ m.content }}]{% endfor %}{% if add_generation_prompt %}>{% endif %}");
        check(&odd, &[user()], &[assistant()], ("", "[hi][hello]"));
        let plain = jinja("{% for m in messages %}[{{ m.content }}]{% endfor %}");
        check(&plain, &[user()], &[assistant()], ("[hi]", "[hello]"));
    }

    #[test]
    fn resolving_values() {
        let dir = tempfile::tempdir().unwrap();
        let bad = |value: &str, dirs: &[&Path], needle: &str| {
            let error = ChatTemplateConfig::resolve("--chat-template", value, dirs)
                .unwrap_err()
                .to_string();
            assert!(error.contains(needle), "{value}: {error}");
        };
        assert_eq!(
            ChatTemplateConfig::resolve("--chat-template", "builtin", &[]).unwrap(),
            ChatTemplateConfig::Builtin
        );
        assert_eq!(
            ChatTemplateConfig::resolve("x", "none", &[]).unwrap(),
            ChatTemplateConfig::None
        );
        bad("chatml", &[], "option `--chat-template`: `chatml` is neither a known value nor an existing file; expected `builtin`, `none`, `tokenizer`");
        bad("tokenizer", &[], "this backbone has no directory");
        bad(
            "tokenizer",
            &[dir.path()],
            "no chat template found; looked in",
        );
        bad(
            "tokenizer",
            &[dir.path()],
            "tokenizer_config.json (field `chat_template`)",
        );
        let config = dir.path().join(TOKENIZER_CONFIG_FILE);
        std::fs::write(&config, r#"{"bos_token": "<s>"}"#).unwrap();
        bad("tokenizer", &[dir.path()], "chat_template.jinja");
        std::fs::write(
            dir.path().join(TEMPLATE_FILE),
            "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}",
        )
        .unwrap();
        let found = ChatTemplateConfig::resolve("x", "tokenizer", &[dir.path()]).unwrap();
        let t = ChatTemplate::new(&found).unwrap();
        assert_eq!(
            t.render(&[json!({"role": "user", "content": "a"})], false, None)
                .unwrap(),
            "<s>a"
        );
        std::fs::write(
            &config,
            r#"{"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}], "eos_token": {"content": "</s>", "__type": "AddedToken"}}"#,
        )
        .unwrap();
        let render = |value: &str| {
            let config = ChatTemplateConfig::resolve("x", value, &[dir.path()]).unwrap();
            ChatTemplate::new(&config)
                .unwrap()
                .render(&[], false, None)
                .unwrap()
        };
        assert_eq!(render("tokenizer"), "D");
        assert_eq!(render("tokenizer:tool_use"), "T");
        bad(
            "tokenizer:rag",
            &[dir.path()],
            "field `chat_template`: has no template named `rag` (it has `default`, `tool_use`)",
        );
        std::fs::write(&config, r#"{"chat_template": 3}"#).unwrap();
        bad(
            "tokenizer",
            &[dir.path()],
            "field `chat_template`: expected a string or a list",
        );
        std::fs::write(&config, r#"{"chat_template": "{% for %}"}"#).unwrap();
        bad(
            "tokenizer",
            &[dir.path()],
            "compiling the chat template failed: syntax error",
        );
        bad(
            config.to_str().unwrap(),
            &[],
            "tokenizer_config.json, field chat_template: compiling",
        );
        // The special tokens come along, in either spelling.
        std::fs::write(&config, r#"{"chat_template": "{{ bos_token }}|{{ eos_token }}", "bos_token": "<s>", "eos_token": {"content": "</s>"}}"#).unwrap();
        assert_eq!(render("tokenizer"), "<s>|</s>");
    }

    #[test]
    fn a_model_directory_template_is_what_resolving_gives() {
        // `tokenizer_template` (a model directory's default) reads tokenizer_config.json once and
        // must agree with `resolve(…, "tokenizer", …)` wherever the directory has a template,
        // and be `None` where it has none.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join(TOKENIZER_CONFIG_FILE);
        let jinja = dir.path().join(TEMPLATE_FILE);
        let check = |case: &str, has: bool| {
            let got = tokenizer_template("chat_template", dir.path()).unwrap();
            let want = has.then(|| {
                ChatTemplateConfig::resolve("chat_template", "tokenizer", &[dir.path()]).unwrap()
            });
            assert_eq!(got, want, "{case}");
        };
        check("empty directory", false);
        std::fs::write(&config, r#"{"bos_token": "<s>", "chat_template": null}"#).unwrap();
        check("config without a template", false);
        std::fs::write(&jinja, "{{ bos_token }}{{ messages | length }}").unwrap();
        check("jinja file, tokens from the config", true);
        let Some(ChatTemplateConfig::Jinja { special_tokens, .. }) =
            tokenizer_template("x", dir.path()).unwrap()
        else {
            panic!("a Jinja template")
        };
        assert_eq!(special_tokens["bos_token"], "<s>");
        std::fs::write(&config, r#"{"chat_template": "C"}"#).unwrap();
        check("the config's template wins over the file", true);
        std::fs::remove_file(&config).unwrap();
        check("jinja file alone", true);
        // A malformed config is an error, with or without the .jinja file, as resolving says.
        std::fs::write(&config, "{not json").unwrap();
        for case in ["with the file", "without it"] {
            let error = tokenizer_template("chat_template", dir.path())
                .unwrap_err()
                .to_string();
            assert!(error.contains("not JSON"), "{case}: {error}");
            let _ = std::fs::remove_file(&jinja);
        }
    }
}
