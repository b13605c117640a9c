//! Where a model keeps its chat template and special tokens, and reading them.

use super::*;

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

    pub(super) fn insert_into(&self, ctx: &mut BTreeMap<String, Value>) {
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
