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

/// Special tokens exposed to the template (HF passes `tokenizer.special_tokens_map`).
/// Only the tokens that are `Some` are defined as template variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `bos_token`.
    pub bos_token: Option<String>,
    /// `eos_token`.
    pub eos_token: Option<String>,
    /// `unk_token`.
    pub unk_token: Option<String>,
    /// `pad_token`.
    pub pad_token: Option<String>,
}

impl SpecialTokens {
    /// Reads the special tokens from a parsed `tokenizer_config.json`; each may
    /// be a string or an AddedToken object `{"content": "...", ...}`. Missing
    /// or `null` entries are `None`.
    pub fn from_tokenizer_config(config: &JsonValue) -> Self {
        let get = |key: &str| -> Option<String> {
            match config.get(key)? {
                JsonValue::String(s) => Some(s.clone()),
                JsonValue::Object(obj) => obj.get("content")?.as_str().map(str::to_owned),
                _ => None,
            }
        };
        Self {
            bos_token: get("bos_token"),
            eos_token: get("eos_token"),
            unk_token: get("unk_token"),
            pad_token: get("pad_token"),
        }
    }

    fn insert_into(&self, ctx: &mut BTreeMap<String, Value>) {
        let tokens = [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("unk_token", &self.unk_token),
            ("pad_token", &self.pad_token),
        ];
        for (key, token) in tokens {
            if let Some(token) = token {
                ctx.insert(key.to_owned(), Value::from(token.as_str()));
            }
        }
    }
}

/// Reads [`SpecialTokens`] from `dir/tokenizer_config.json`; a missing file
/// gives all-`None` tokens, an unreadable or malformed one an error.
pub fn load_special_tokens(dir: &Path) -> Result<SpecialTokens, TemplateError> {
    let path = dir.join("tokenizer_config.json");
    match read_json_if_exists(&path)? {
        Some(config) => Ok(SpecialTokens::from_tokenizer_config(&config)),
        None => Ok(SpecialTokens::default()),
    }
}

/// Finds a model's chat template source in `dir`, checking in order:
///
/// 1. `chat_template.jinja` (raw template text);
/// 2. `chat_template.json` (`{"chat_template": "..."}`);
/// 3. `processor_config.json` (key `chat_template`);
/// 4. `tokenizer_config.json` (key `chat_template`: a string, or a list of
///    `{"name", "template"}` from which the one named `"default"` is taken).
///
/// Returns `Ok(None)` when none of the files provides a template; errors name
/// the offending file (unreadable file, malformed JSON, wrong value type, a
/// template list without `"default"`).
pub fn find_chat_template(dir: &Path) -> Result<Option<String>, TemplateError> {
    let jinja = dir.join("chat_template.jinja");
    if let Some(text) = read_if_exists(&jinja)? {
        return Ok(Some(text));
    }

    let json_path = dir.join("chat_template.json");
    if let Some(config) = read_json_if_exists(&json_path)? {
        return match config.get("chat_template") {
            Some(JsonValue::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(&json_path, "`chat_template` is not a string")),
            None => Err(invalid(&json_path, "missing `chat_template` key")),
        };
    }

    let processor = dir.join("processor_config.json");
    if let Some(config) = read_json_if_exists(&processor)? {
        match config.get("chat_template") {
            Some(JsonValue::String(s)) => return Ok(Some(s.clone())),
            None | Some(JsonValue::Null) => {}
            Some(_) => return Err(invalid(&processor, "`chat_template` is not a string")),
        }
    }

    let tokenizer = dir.join("tokenizer_config.json");
    if let Some(config) = read_json_if_exists(&tokenizer)? {
        match config.get("chat_template") {
            Some(JsonValue::String(s)) => return Ok(Some(s.clone())),
            Some(JsonValue::Array(list)) => {
                let default = list
                    .iter()
                    .find(|entry| entry.get("name").and_then(JsonValue::as_str) == Some("default"));
                return match default.map(|entry| entry.get("template")) {
                    Some(Some(JsonValue::String(s))) => Ok(Some(s.clone())),
                    Some(_) => Err(invalid(
                        &tokenizer,
                        "the `default` chat template has no string `template`",
                    )),
                    None => Err(invalid(
                        &tokenizer,
                        "`chat_template` is a list without an entry named `default`",
                    )),
                };
            }
            None | Some(JsonValue::Null) => {}
            Some(_) => {
                return Err(invalid(
                    &tokenizer,
                    "`chat_template` is neither a string nor a list",
                ))
            }
        }
    }
    Ok(None)
}

fn invalid(path: &Path, message: &str) -> TemplateError {
    TemplateError::Invalid {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

fn read_if_exists(path: &Path) -> Result<Option<String>, TemplateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TemplateError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn read_json_if_exists(path: &Path) -> Result<Option<JsonValue>, TemplateError> {
    let Some(text) = read_if_exists(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| TemplateError::Json {
            path: path.to_owned(),
            source,
        })
}

/// How a template expects `message['content']`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentFormat {
    /// A plain string (ChatML, Llama, ...). Multi-part content is flattened:
    /// parts are joined with `"\n"` and each image part becomes
    /// [`RenderOptions::image_token`] at its position (vLLM's interleaved
    /// string format).
    String,
    /// A list of OpenAI-like parts: `{"type": "text", "text": ...}` and
    /// `{"type": "image"}` (llava-1.5, llava-onevision, Qwen2-VL, ...). Plain
    /// string content becomes a single text part.
    OpenAi,
}

/// Decides how a template consumes message content, like vLLM's
/// `_detect_content_format` but on the source text instead of the Jinja AST.
///
/// The template is [`ContentFormat::OpenAi`] if some `{% for ... in EXPR %}`
/// iterates over a content access, where `EXPR` is `IDENT['content']`,
/// `IDENT["content"]` or `IDENT.content`, optionally followed by filters
/// (`| selectattr(...)`), a loop condition (`if ...`) or `recursive` - but not
/// by a method call such as `.split(...)`. Variables assigned from a content
/// access (`{% set c = message['content'] %}`) count as content accesses too.
/// Everything else is [`ContentFormat::String`].
pub fn detect_content_format(source: &str) -> ContentFormat {
    let mut content_vars: Vec<String> = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("%}") else {
            break;
        };
        let stmt = after[..end]
            .trim_start_matches(['-', '+'])
            .trim_end_matches(['-', '+'])
            .trim();
        rest = &after[end + 2..];

        if let Some(body) = strip_keyword(stmt, "for") {
            if let Some(pos) = body.find(" in ") {
                if is_content_iteration(body[pos + 4..].trim(), &content_vars) {
                    return ContentFormat::OpenAi;
                }
            }
        } else if let Some(body) = strip_keyword(stmt, "set") {
            if let Some((name, value)) = body.split_once('=') {
                let name = name.trim();
                let value = value.trim();
                if is_identifier(name) && content_access_rest(value, &[]) == Some("") {
                    content_vars.push(name.to_owned());
                }
            }
        }
    }
    ContentFormat::String
}

fn strip_keyword<'a>(stmt: &'a str, keyword: &str) -> Option<&'a str> {
    let rest = stmt.strip_prefix(keyword)?;
    rest.starts_with(char::is_whitespace).then_some(rest)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// If `expr` starts with a content access, returns what follows it.
fn content_access_rest<'a>(expr: &'a str, content_vars: &[String]) -> Option<&'a str> {
    let ident_len = expr
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(expr.len());
    let ident = &expr[..ident_len];
    if !is_identifier(ident) {
        return None;
    }
    let rest = expr[ident_len..].trim_start();
    if let Some(inner) = rest.strip_prefix('[') {
        let close = inner.find(']')?;
        let key = inner[..close].trim();
        if key == "'content'" || key == "\"content\"" {
            return Some(inner[close + 1..].trim());
        }
    } else if let Some(after) = rest.strip_prefix('.') {
        let after = after.trim_start();
        if let Some(tail) = after.strip_prefix("content") {
            if !tail.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                return Some(tail.trim());
            }
        }
    }
    if content_vars.iter().any(|v| v == ident) {
        return Some(rest.trim());
    }
    None
}

fn is_content_iteration(expr: &str, content_vars: &[String]) -> bool {
    content_access_rest(expr, content_vars).is_some_and(|rest| {
        rest.is_empty()
            || rest.starts_with('|')
            || strip_keyword(rest, "if").is_some()
            || rest == "recursive"
    })
}

/// Rewrites HF's `{% generation %}` / `{% endgeneration %}` tags into an
/// equivalent no-op block, keeping whitespace-control modifiers and line
/// numbers intact.
fn neutralize_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("%}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        let (left, body) = match inner.chars().next() {
            Some('-' | '+') => inner.split_at(1),
            _ => ("", inner),
        };
        let (body, right) = match body.chars().last() {
            Some('-' | '+') => body.split_at(body.len() - 1),
            _ => (body, ""),
        };
        let word = body.trim();
        if word == "generation" || word == "endgeneration" {
            let replacement = if word == "generation" {
                "if true"
            } else {
                "endif"
            };
            let _ = write!(out, "{{%{left} {replacement} {right}%}}");
        } else {
            out.push_str(&rest[start..start + 2 + end + 2]);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
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

// ---------------------------------------------------------------------------
// tojson: Python's json.dumps as HF's filter calls it.

struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

/// `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`
/// like HF's override; the first three arguments may be positional or keyword,
/// `sort_keys` only by keyword.
fn tojson(
    value: &Value,
    ensure_ascii: Option<Value>,
    indent: Option<Value>,
    separators: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, minijinja::Error> {
    let pick = |pos: Option<Value>, name: &str| -> Result<Option<Value>, minijinja::Error> {
        match pos {
            Some(v) => Ok(Some(v)),
            None => kwargs.get::<Option<Value>>(name),
        }
    };
    let ensure_ascii = pick(ensure_ascii, "ensure_ascii")?.is_some_and(|v| v.is_true());
    let sort_keys = pick(None, "sort_keys")?.is_some_and(|v| v.is_true());
    let indent = match pick(indent, "indent")? {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_owned()),
            None => {
                let n = i64::try_from(v).map_err(|_| {
                    minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent must be an integer or a string",
                    )
                })?;
                Some(" ".repeat(usize::try_from(n).unwrap_or(0)))
            }
        },
    };
    let (mut item_sep, mut key_sep) = if indent.is_some() {
        (",".to_owned(), ": ".to_owned())
    } else {
        (", ".to_owned(), ": ".to_owned())
    };
    if let Some(seps) = pick(separators, "separators")? {
        if !seps.is_none() && !seps.is_undefined() {
            let parts: Vec<Value> = seps.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] if a.as_str().is_some() && b.as_str().is_some() => {
                    item_sep = a.as_str().unwrap_or_default().to_owned();
                    key_sep = b.as_str().unwrap_or_default().to_owned();
                }
                _ => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a pair of strings",
                    ))
                }
            }
        }
    }
    kwargs.assert_all_used()?;
    let style = JsonStyle {
        ensure_ascii,
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    let mut out = String::new();
    write_json(value, &style, 0, &mut out)?;
    Ok(Value::from(out))
}

fn write_newline_indent(style: &JsonStyle, level: usize, out: &mut String) {
    if let Some(indent) = &style.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(indent);
        }
    }
}

fn write_json(
    value: &Value,
    style: &JsonStyle,
    level: usize,
    out: &mut String,
) -> Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(value, out),
        ValueKind::String => write_json_string(value.as_str().unwrap_or_default(), style, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                write_newline_indent(style, level + 1, out);
                write_json(item, style, level + 1, out)?;
            }
            write_newline_indent(style, level, out);
            out.push(']');
        }
        ValueKind::Map => {
            let mut entries: Vec<(String, Value)> = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                let key = match key.as_str() {
                    Some(s) => s.to_owned(),
                    None if key.is_none() => "null".to_owned(),
                    None => key.to_string(),
                };
                entries.push((key, item));
            }
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                write_newline_indent(style, level + 1, out);
                write_json_string(key, style, out);
                out.push_str(&style.key_sep);
                write_json(item, style, level + 1, out)?;
            }
            write_newline_indent(style, level, out);
            out.push('}');
        }
        // Bytes, plain objects, invalid values: Python would fail; emit the
        // string form rather than aborting the render.
        _ => write_json_string(&value.to_string(), style, out),
    }
    Ok(())
}

fn write_number(value: &Value, out: &mut String) {
    if !value.is_integer() {
        if let Ok(f) = f64::try_from(value.clone()) {
            if f.is_nan() {
                out.push_str("NaN");
                return;
            }
            if f.is_infinite() {
                out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
                return;
            }
        }
    }
    let _ = write!(out, "{value}");
}

fn write_json_string(s: &str, style: &JsonStyle, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if style.ensure_ascii && !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------
// strftime_now

fn strftime_now(format: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0);
    strftime_utc(secs, format)
}

/// Formats a Unix timestamp (UTC) with a C/Python `strftime` format.
///
/// Supported: `%a %A %b %B %d %e %m %y %Y %H %I %M %S %p %j %Z %z %F %T %D %%`
/// and glibc's `%-d %-m %-H %-I %-M %-S %-j` (no padding). Unknown directives
/// are copied verbatim. Python's `datetime.now()` uses local time; this is
/// always UTC (`%Z` = `UTC`, `%z` = `+0000`).
pub fn strftime_utc(unix_secs: i64, format: &str) -> String {
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
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
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (hour, minute, second) = (
        secs_of_day / 3600,
        (secs_of_day % 3600) / 60,
        secs_of_day % 60,
    );
    let (year, month, day) = civil_from_days(days);
    let weekday = usize::try_from((days + 4).rem_euclid(7)).unwrap_or(0);
    let month_idx = usize::try_from(month - 1).unwrap_or(0).min(11);
    let day_name = DAYS[weekday.min(6)];
    let month_name = MONTHS[month_idx];
    let yday = days - days_from_civil(year, 1, 1) + 1;
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };

    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let no_pad = chars.peek() == Some(&'-');
        if no_pad {
            chars.next();
        }
        let Some(d) = chars.next() else {
            out.push('%');
            break;
        };
        let num = |v: i64, width: usize| {
            if no_pad {
                v.to_string()
            } else {
                format!("{v:0width$}")
            }
        };
        match d {
            'a' => out.push_str(&day_name[..3]),
            'A' => out.push_str(day_name),
            'b' | 'h' => out.push_str(&month_name[..3]),
            'B' => out.push_str(month_name),
            'd' => out.push_str(&num(day, 2)),
            'e' => out.push_str(&format!("{day:2}")),
            'm' => out.push_str(&num(month, 2)),
            'y' => out.push_str(&num(year.rem_euclid(100), 2)),
            'Y' => out.push_str(&year.to_string()),
            'H' => out.push_str(&num(hour, 2)),
            'I' => out.push_str(&num(hour12, 2)),
            'M' => out.push_str(&num(minute, 2)),
            'S' => out.push_str(&num(second, 2)),
            'p' => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            'j' => out.push_str(&num(yday, 3)),
            'Z' => out.push_str("UTC"),
            'z' => out.push_str("+0000"),
            'F' => out.push_str(&format!("{year:04}-{month:02}-{day:02}")),
            'T' => out.push_str(&format!("{hour:02}:{minute:02}:{second:02}")),
            'D' => out.push_str(&format!("{month:02}/{day:02}/{:02}", year.rem_euclid(100))),
            '%' => out.push('%'),
            other => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                out.push(other);
            }
        }
    }
    out
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Day count since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{ChatMessage, ContentPart, Role, ToolCall};

    // Expected strings below were cross-checked by rendering the same
    // templates with Python jinja2 3.1 configured like transformers
    // (ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
    // extensions=[loopcontrols]) plus HF's tojson / raise_exception).

    /// llava-hf/llava-1.5-7b-hf's template, minus the `{% generation %}` tags.
    const LLAVA: &str = r#"{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"#;

    /// ChatML with a default system prompt, laid out over several lines so
    /// that the output depends on trim_blocks / lstrip_blocks.
    const CHATML: &str = r#"{% if messages[0]['role'] != 'system' %}
<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
{% endif %}
{% for message in messages %}
    {% if message['role'] == 'user' %}
<|im_start|>user
{{ message['content'] }}<|im_end|>
    {% elif message['role'] == 'assistant' %}
<|im_start|>assistant
{{ message['content'] }}<|im_end|>
    {% else %}
<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}
"#;

    /// Qwen2-VL-style template: iterates content parts, handles strings too.
    const QWEN2VL: &str = r#"{% set image_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system
You are a helpful assistant.<|im_end|>
{% endif %}<|im_start|>{{ message['role'] }}
{% if message['content'] is string %}{{ message['content'] }}<|im_end|>
{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>
{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"#;

    const TOOLS: &str = r#"{%- if tools %}
{{- '<tools>' + tools | tojson + '</tools>\n' }}
{%- endif %}
{%- for message in messages %}
  {%- if message.role == 'assistant' and message.tool_calls %}
    {%- for tool_call in message.tool_calls %}
      {%- if tool_call.function is defined %}{% set tool_call = tool_call.function %}{% endif %}
{{- '<tool_call>{"name": "' + tool_call.name + '", "arguments": ' + tool_call.arguments | tojson + '}</tool_call>' }}
    {%- endfor %}
{{- '[content=' }}{{ message.content is none }}{{ ']\n' }}
  {%- elif message.role == 'tool' %}
{{- '<tool_response id=' + message.tool_call_id + '>' + message.content + '</tool_response>\n' }}
  {%- else %}
{{- message.role.upper() + ': ' + message.content.strip() + '\n' }}
  {%- endif %}
{%- endfor %}
{{- bos_token ~ '|' }}{{ eos_token is defined }}|{{ tools is none }}|{{ none }}"#;

    fn text(s: &str) -> ContentPart {
        ContentPart::Text(s.to_owned())
    }

    fn compile(source: &str) -> ChatTemplate {
        match ChatTemplate::from_source(source.to_owned(), SpecialTokens::default()) {
            Ok(t) => t,
            Err(e) => panic!("template failed to compile: {e}"),
        }
    }

    fn render(source: &str, messages: &[ChatMessage], opts: &RenderOptions) -> String {
        match compile(source).render(messages, opts) {
            Ok(s) => s,
            Err(e) => panic!("render failed: {e}"),
        }
    }

    fn llava_conversation() -> Vec<ChatMessage> {
        vec![
            ChatMessage::system("You are helpful."),
            ChatMessage::user(vec![ContentPart::Image, text("What is shown?")]),
            ChatMessage::assistant("A cat."),
            ChatMessage::user(vec![text("What color?")]),
        ]
    }

    #[test]
    fn llava_list_template() {
        let tpl = compile(LLAVA);
        assert_eq!(tpl.content_format(), ContentFormat::OpenAi);
        let out = tpl
            .render(&llava_conversation(), &RenderOptions::default())
            .expect("render");
        assert_eq!(
            out,
            "You are helpful. USER: <image>\nWhat is shown? ASSISTANT: A cat. USER: What color? ASSISTANT:"
        );
    }

    #[test]
    fn generation_tags_are_accepted() {
        let with_tags = LLAVA.replacen(
            "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% endif %}",
            "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}",
            1,
        );
        assert_ne!(with_tags, LLAVA);
        let opts = RenderOptions::default();
        let conv = llava_conversation();
        assert_eq!(
            render(&with_tags, &conv, &opts),
            render(LLAVA, &conv, &opts)
        );
        assert_eq!(
            neutralize_generation_tags("a\n  {%- generation +%}\nb{%endgeneration-%} c"),
            "a\n  {%- if true +%}\nb{% endif -%} c"
        );
    }

    #[test]
    fn chatml_text_template_with_trim_and_lstrip() {
        let tpl = compile(CHATML);
        assert_eq!(tpl.content_format(), ContentFormat::String);
        let conv = vec![
            ChatMessage::user("Hi"),
            ChatMessage::assistant("Hello!"),
            ChatMessage::user("Bye"),
        ];
        let out = tpl
            .render(&conv, &RenderOptions::default())
            .expect("render");
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
        );
        // Without trim_blocks/lstrip_blocks jinja2 gives a different string:
        let without_flags = "\n<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\n\n    \n<|im_start|>user\nHi<|im_end|>\n    \n\n    \n<|im_start|>assistant\nHello!<|im_end|>\n    \n\n    \n<|im_start|>user\nBye<|im_end|>\n    \n\n\n<|im_start|>assistant\n";
        assert_ne!(out, without_flags);

        // System present, images flattened to the image token, parts joined by "\n".
        let conv = vec![
            ChatMessage::system("S"),
            ChatMessage::user(vec![ContentPart::Image, text("First"), text("second")]),
        ];
        let opts = RenderOptions {
            add_generation_prompt: false,
            ..RenderOptions::default()
        };
        assert_eq!(
            tpl.render(&conv, &opts).expect("render"),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n<image>\nFirst\nsecond<|im_end|>\n"
        );
    }

    #[test]
    fn qwen2vl_style_parts_and_extra_kwargs() {
        let tpl = compile(QWEN2VL);
        assert_eq!(tpl.content_format(), ContentFormat::OpenAi);
        let conv = vec![
            ChatMessage::user(vec![
                text("Compare "),
                ContentPart::Image,
                text(" and "),
                ContentPart::Image,
            ]),
            ChatMessage::assistant("Same."),
        ];
        let mut opts = RenderOptions::default();
        opts.extra
            .insert("add_vision_id".to_owned(), JsonValue::Bool(true));
        assert_eq!(
            tpl.render(&conv, &opts).expect("render"),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nCompare Picture 1: <|vision_start|><|image_pad|><|vision_end|> and Picture 2: <|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\nSame.<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn tools_tool_calls_and_special_tokens() {
        let special = SpecialTokens {
            bos_token: Some("<s>".into()),
            eos_token: Some("</s>".into()),
            ..SpecialTokens::default()
        };
        let tpl = ChatTemplate::from_source(TOOLS.to_owned(), special).expect("compile");
        let conv = vec![
            ChatMessage::user("  weather?  "),
            ChatMessage::assistant_tool_calls(vec![ToolCall {
                id: "c1".into(),
                name: "get_weather".into(),
                arguments: r#"{"city": "Zürich"}"#.into(),
            }]),
            ChatMessage::tool("c1", "sunny"),
        ];
        let opts = RenderOptions {
            add_generation_prompt: false,
            tools: Some(json!([{
                "function": {
                    "description": "Weather <now> & 'later' in Zürich",
                    "name": "get_weather",
                    "parameters": {"properties": {"city": {"type": "string"}}, "type": "object"}
                },
                "type": "function"
            }])),
            ..RenderOptions::default()
        };
        assert_eq!(
            tpl.render(&conv, &opts).expect("render"),
            "<tools>[{\"function\": {\"description\": \"Weather <now> & 'later' in Zürich\", \"name\": \"get_weather\", \"parameters\": {\"properties\": {\"city\": {\"type\": \"string\"}}, \"type\": \"object\"}}, \"type\": \"function\"}]</tools>\nUSER: weather?\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}</tool_call>[content=True]\n<tool_response id=c1>sunny</tool_response>\n<s>|True|False|None"
        );

        let tpl = ChatTemplate::from_source(
            TOOLS.to_owned(),
            SpecialTokens {
                bos_token: Some("<s>".into()),
                ..SpecialTokens::default()
            },
        )
        .expect("compile");
        let opts = RenderOptions {
            add_generation_prompt: false,
            ..RenderOptions::default()
        };
        assert_eq!(
            tpl.render(&conv[..1], &opts).expect("render"),
            "USER: weather?\n<s>|False|True|None"
        );
    }

    #[test]
    fn unparseable_tool_arguments_stay_a_string() {
        let msgs = template_messages(
            &[ChatMessage::assistant_tool_calls(vec![ToolCall {
                id: "x".into(),
                name: "f".into(),
                arguments: "not json".into(),
            }])],
            ContentFormat::String,
            "<image>",
        );
        assert_eq!(
            msgs[0],
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "x", "type": "function", "function": {"name": "f", "arguments": "not json"}}
            ]})
        );
    }

    #[test]
    fn raise_exception_fails_render() {
        let tpl = compile(
            "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}ok",
        );
        let err = tpl
            .render(&[ChatMessage::assistant("x")], &RenderOptions::default())
            .expect_err("must fail");
        match err {
            TemplateError::Raised(msg) => assert_eq!(
                msg,
                "Conversation roles must alternate user/assistant/user/assistant/..."
            ),
            other => panic!("unexpected error: {other}"),
        }
        assert_eq!(
            tpl.render(&[ChatMessage::user("x")], &RenderOptions::default())
                .expect("render"),
            "ok"
        );
    }

    #[test]
    fn python_string_methods() {
        let tpl = compile(
            "{{ messages[0].content.upper() }}|{{ messages[0].content.strip() }}|{{ messages[0].content.strip().startswith('he') }}|{{ messages[0].content.split() | join(',') }}{% for k, v in {'a': 1}.items() %}|{{ k }}={{ v }}{% endfor %}",
        );
        assert_eq!(
            tpl.render(
                &[ChatMessage::user(" hello world ")],
                &RenderOptions::default()
            )
            .expect("render"),
            " HELLO WORLD |hello world|True|hello,world|a=1"
        );
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let tpl = compile(
            "{{ x | tojson(indent=2) }}|{{ x | tojson(separators=(',', ':'), sort_keys=True) }}|{{ x|tojson(ensure_ascii=True) }}|{{ [] | tojson(indent=2) }}|{{ 1.5 | tojson }}",
        );
        let mut opts = RenderOptions::default();
        opts.extra.insert(
            "x".to_owned(),
            json!({"a": "<&'>\n", "b": [1, {"é": null}]}),
        );
        assert_eq!(
            tpl.render(&[], &opts).expect("render"),
            "{\n  \"a\": \"<&'>\\n\",\n  \"b\": [\n    1,\n    {\n      \"é\": null\n    }\n  ]\n}|{\"a\":\"<&'>\\n\",\"b\":[1,{\"é\":null}]}|{\"a\": \"<&'>\\n\", \"b\": [1, {\"\\u00e9\": null}]}|[]|1.5"
        );
        let tpl = compile("{{ '<b>\"x\" & \\'y\\'' | tojson }}");
        assert_eq!(
            tpl.render(&[], &opts).expect("render"),
            r#""<b>\"x\" & 'y'""#
        );
    }

    #[test]
    fn syntax_error_has_line() {
        let err = ChatTemplate::from_source(
            "line one\n{% if x %}\n{{ y }\n".to_owned(),
            SpecialTokens::default(),
        )
        .expect_err("must fail");
        match &err {
            TemplateError::Syntax { line, .. } => assert_eq!(*line, Some(3)),
            other => panic!("unexpected error: {other}"),
        }
        assert!(err.to_string().contains("at line 3"), "{err}");
    }

    #[test]
    fn content_format_detection() {
        use ContentFormat::*;
        let cases = [
            (
                "{% for m in messages %}{{ m['content'] }}{% endfor %}",
                String,
            ),
            ("{%- for c in message.content %}{% endfor %}", OpenAi),
            (
                "{% for c in message[\"content\"] if c.type == 'text' %}{% endfor %}",
                OpenAi,
            ),
            (
                "{% for line in message['content'].split('\\n') %}{% endfor %}",
                String,
            ),
            (
                "{% set parts = msg['content'] %}{% for p in parts %}{% endfor %}",
                OpenAi,
            ),
            ("{% for c in message.contents %}{% endfor %}", String),
        ];
        for (src, expected) in cases {
            assert_eq!(detect_content_format(src), expected, "{src}");
        }
    }

    #[test]
    fn strftime_formats_utc() {
        assert_eq!(
            strftime_utc(1_721_952_000, "%d %b %Y|%A %B %j %I%p %y-%m-%d %H:%M:%S"),
            "26 Jul 2024|Friday July 208 12AM 24-07-26 00:00:00"
        );
        assert_eq!(
            strftime_utc(
                951_782_400 + 86_399,
                "%d %b %Y|%A %B %j %I%p %y-%m-%d %H:%M:%S"
            ),
            "29 Feb 2000|Tuesday February 060 11PM 00-02-29 23:59:59"
        );
        assert_eq!(strftime_utc(0, "%-d/%-m %% %Q"), "1/1 % %Q");
        let tpl = compile("{{ strftime_now('%Y') | length }}");
        assert_eq!(
            tpl.render(&[], &RenderOptions::default()).expect("render"),
            "4"
        );
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "chat_template_test_{tag}_{}_{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            Self(dir)
        }

        fn write(&self, name: &str, contents: &str) {
            std::fs::write(self.0.join(name), contents).expect("write file");
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn find_chat_template_precedence() {
        let dir = TempDir::new("precedence");
        assert_eq!(find_chat_template(&dir.0).expect("empty dir"), None);

        dir.write(
            "tokenizer_config.json",
            r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
                "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null}"#,
        );
        assert_eq!(
            find_chat_template(&dir.0).expect("tok").as_deref(),
            Some("D")
        );
        let special = load_special_tokens(&dir.0).expect("special");
        assert_eq!(special.bos_token.as_deref(), Some("<s>"));
        assert_eq!(special.eos_token.as_deref(), Some("</s>"));
        assert_eq!(special.pad_token, None);

        dir.write("processor_config.json", r#"{"chat_template": "P"}"#);
        assert_eq!(
            find_chat_template(&dir.0).expect("proc").as_deref(),
            Some("P")
        );

        dir.write("chat_template.json", r#"{"chat_template": "J"}"#);
        assert_eq!(
            find_chat_template(&dir.0).expect("json").as_deref(),
            Some("J")
        );

        dir.write("chat_template.jinja", "RAW{{ x }}\n");
        assert_eq!(
            find_chat_template(&dir.0).expect("jinja").as_deref(),
            Some("RAW{{ x }}\n")
        );
    }

    #[test]
    fn find_chat_template_errors_name_the_file() {
        let dir = TempDir::new("errors");
        dir.write("tokenizer_config.json", r#"{"chat_template": "x", "#);
        let err = find_chat_template(&dir.0).expect_err("malformed");
        assert!(matches!(err, TemplateError::Json { .. }), "{err}");
        assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
        assert!(load_special_tokens(&dir.0).is_err());

        dir.write(
            "tokenizer_config.json",
            r#"{"chat_template": [{"name": "rag", "template": "R"}]}"#,
        );
        let err = find_chat_template(&dir.0).expect_err("no default");
        assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
        assert!(err.to_string().contains("default"), "{err}");

        dir.write("processor_config.json", r#"{"chat_template": 3}"#);
        let err = find_chat_template(&dir.0).expect_err("not a string");
        assert!(err.to_string().contains("processor_config.json"), "{err}");
    }

    #[test]
    fn role_names_reach_template() {
        let tpl = compile("{% for m in messages %}{{ m.role }};{% endfor %}");
        let conv = [
            ChatMessage::new(Role::Developer, "d"),
            ChatMessage::new(Role::Tool, "t"),
        ];
        assert_eq!(
            tpl.render(&conv, &RenderOptions::default())
                .expect("render"),
            "developer;tool;"
        );
    }
}
