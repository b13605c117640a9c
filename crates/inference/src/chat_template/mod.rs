//! Rendering a model's own Hugging Face chat template with minijinja.
//!
//! This mirrors `transformers.utils.chat_template_utils` (`_compile_jinja_template`
//! and `render_jinja_template`):
//!
//! * the environment uses `trim_blocks = true`, `lstrip_blocks = true` and drops
//!   the trailing newline, like HF's `ImmutableSandboxedEnvironment`;
//! * Python string/dict methods (`.upper()`, `.strip()`, `.startswith()`,
//!   `.items()`, `.get()`, `.split()` ...) come from minijinja-contrib's pycompat
//!   unknown-method callback;
//! * `raise_exception(msg)` aborts rendering with [`TemplateError::Raised`];
//! * `strftime_now(fmt)` formats the current time (UTC, see [`strftime_utc`]);
//! * booleans and `none` print as `True` / `False` / `None` in `{{ }}` output;
//! * `tojson` behaves like HF's override (`json.dumps` with `ensure_ascii=False`,
//!   optional `indent`/`separators`/`sort_keys`, no HTML escaping);
//! * variables: `messages`, `add_generation_prompt`, `tools` (`none` when not
//!   given, like HF), `documents` (`none`), the special tokens that are set
//!   (`bos_token`, `eos_token`, `unk_token`, `pad_token`) and any extra kwargs;
//! * HF's `{% generation %}` / `{% endgeneration %}` tags (only used by
//!   transformers for assistant-token masks) are rewritten to a no-op
//!   `{% if true %}` / `{% endif %}` so templates such as llava-1.5's compile.
//!
//! Messages are handed to the template in one of two shapes, chosen once per
//! template by [`detect_content_format`] (see [`ContentFormat`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, ErrorKind, Value};
use serde_json::{json, Map as JsonMap, Value as JsonValue};

use crate::messages::{ChatMessage, ContentPart, MessageContent, ToolCall};

/// Name under which the compiled template is registered in the environment.
mod content_format;
mod filters;
mod source;
#[cfg(test)]
mod tests;

use content_format::neutralize_generation_tags;
pub use content_format::{detect_content_format, ContentFormat};
pub use filters::strftime_utc;
use filters::{strftime_now, tojson};
pub use source::{find_chat_template, load_special_tokens, SpecialTokens};

const TEMPLATE_NAME: &str = "chat_template";

/// Errors from loading, compiling or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template source does not parse.
    #[error("chat template syntax error{}: {message}", fmt_line(*line))]
    Syntax {
        /// 1-based line of the error, when known.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// The template called `raise_exception(message)`; usually a client error
    /// (e.g. roles not alternating).
    #[error("chat template raised an exception: {0}")]
    Raised(String),
    /// Any other failure while rendering.
    #[error("chat template render error{}: {message}", fmt_line(*line))]
    Render {
        /// 1-based line of the error, when known.
        line: Option<usize>,
        /// The engine's message.
        message: String,
    },
    /// A file could not be read.
    #[error("failed to read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not valid JSON.
    #[error("malformed JSON in {}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A config file is valid JSON but its chat template entry is unusable.
    #[error("invalid chat template in {}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn fmt_line(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

/// Options for one [`ChatTemplate::render`] call.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Append the assistant turn header (`add_generation_prompt`).
    pub add_generation_prompt: bool,
    /// Tool definitions, passed as `tools` (HF passes the list of
    /// `{"type": "function", "function": {...}}` schemas). `None` → `none`.
    pub tools: Option<JsonValue>,
    /// Text substituted for an image part when the template takes string
    /// content ([`ContentFormat::String`]); unused for list templates.
    pub image_token: String,
    /// Extra template variables (HF's `**kwargs`, e.g. `enable_thinking`).
    /// They override special tokens but not `messages`,
    /// `add_generation_prompt` or `tools`.
    pub extra: JsonMap<String, JsonValue>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            add_generation_prompt: true,
            tools: None,
            image_token: "<image>".to_owned(),
            extra: JsonMap::new(),
        }
    }
}

/// A compiled chat template, cheap to render many times and shareable
/// between threads.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    format: ContentFormat,
    special: SpecialTokens,
}

impl ChatTemplate {
    /// Compiles `source` once, in an environment configured like HF's.
    pub fn from_source(source: String, special: SpecialTokens) -> Result<Self, TemplateError> {
        let format = detect_content_format(&source);
        let source = neutralize_generation_tags(&source);
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python_formatter);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", |fmt: String| strftime_now(&fmt));
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source)
            .map_err(|e| TemplateError::Syntax {
                line: e.line(),
                message: e.detail().map_or_else(|| e.to_string(), str::to_owned),
            })?;
        Ok(Self {
            env,
            format,
            special,
        })
    }

    /// The content format detected for this template.
    pub fn content_format(&self) -> ContentFormat {
        self.format
    }

    /// The special tokens this template renders with.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// Renders `messages` into the prompt text.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
    ) -> Result<String, TemplateError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(map_render_error)?;
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        self.special.insert_into(&mut ctx);
        ctx.insert("documents".to_owned(), Value::from(()));
        for (key, value) in &opts.extra {
            ctx.insert(key.clone(), Value::from_serialize(value));
        }
        let messages = template_messages(messages, self.format, &opts.image_token);
        ctx.insert("messages".to_owned(), Value::from_serialize(&messages));
        ctx.insert(
            "add_generation_prompt".to_owned(),
            Value::from(opts.add_generation_prompt),
        );
        ctx.insert(
            "tools".to_owned(),
            opts.tools
                .as_ref()
                .map_or_else(|| Value::from(()), Value::from_serialize),
        );
        template
            .render(Value::from_iter(ctx))
            .map_err(map_render_error)
    }
}

/// Builds the `messages` list in the shape the template expects (HF/OpenAI
/// dicts): `role`, `content` (string, list of parts or `null`), and when
/// present `tool_calls` (`[{"id", "type": "function", "function": {"name",
/// "arguments"}}]`, with `arguments` parsed into JSON when it parses),
/// `tool_call_id` and `name`.
pub fn template_messages(
    messages: &[ChatMessage],
    format: ContentFormat,
    image_token: &str,
) -> Vec<JsonValue> {
    messages
        .iter()
        .map(|m| {
            let mut obj = JsonMap::new();
            obj.insert("role".to_owned(), JsonValue::from(m.role.as_str()));
            let content = match &m.content {
                None => JsonValue::Null,
                Some(content) => content_value(content, format, image_token),
            };
            obj.insert("content".to_owned(), content);
            if !m.tool_calls.is_empty() {
                let calls = m.tool_calls.iter().map(tool_call_value).collect();
                obj.insert("tool_calls".to_owned(), JsonValue::Array(calls));
            }
            if let Some(id) = &m.tool_call_id {
                obj.insert("tool_call_id".to_owned(), JsonValue::from(id.as_str()));
            }
            if let Some(name) = &m.name {
                obj.insert("name".to_owned(), JsonValue::from(name.as_str()));
            }
            JsonValue::Object(obj)
        })
        .collect()
}

fn content_value(content: &MessageContent, format: ContentFormat, image_token: &str) -> JsonValue {
    match format {
        ContentFormat::OpenAi => JsonValue::Array(
            content
                .to_parts()
                .into_iter()
                .map(|part| match part {
                    ContentPart::Text(text) => json!({"type": "text", "text": text}),
                    ContentPart::Image => json!({"type": "image"}),
                })
                .collect(),
        ),
        ContentFormat::String => match content {
            MessageContent::Text(text) => JsonValue::from(text.as_str()),
            MessageContent::Parts(parts) => {
                let pieces: Vec<&str> = parts
                    .iter()
                    .map(|part| match part {
                        ContentPart::Text(text) => text.as_str(),
                        ContentPart::Image => image_token,
                    })
                    .collect();
                JsonValue::from(pieces.join("\n"))
            }
        },
    }
}

fn tool_call_value(call: &ToolCall) -> JsonValue {
    let arguments = serde_json::from_str::<JsonValue>(&call.arguments)
        .unwrap_or_else(|_| JsonValue::from(call.arguments.as_str()));
    json!({
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    })
}

/// Prints booleans and `none` the way Python does (`True`, `False`, `None`)
/// in `{{ ... }}` output; everything else as minijinja's default (no escaping
/// since auto-escape is off).
fn python_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    let python = match value.kind() {
        ValueKind::Bool if value.is_true() => "True",
        ValueKind::Bool => "False",
        ValueKind::None => "None",
        _ => return minijinja::escape_formatter(out, state, value),
    };
    out.write_str(python)
        .map_err(|e| minijinja::Error::new(ErrorKind::WriteFailure, e.to_string()))
}

/// Marker carried as the source of the error produced by `raise_exception`.
#[derive(Debug)]
struct RaisedException(String);

impl std::fmt::Display for RaisedException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(
        minijinja::Error::new(ErrorKind::InvalidOperation, message.clone())
            .with_source(RaisedException(message)),
    )
}

fn map_render_error(err: minijinja::Error) -> TemplateError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<RaisedException>() {
            return TemplateError::Raised(raised.0.clone());
        }
        source = e.source();
    }
    TemplateError::Render {
        line: err.line(),
        message: err.to_string(),
    }
}
