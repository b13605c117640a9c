//! Whether a template wants `message['content']` as a string or as a list of parts, and
//! the rewrite of HF's `{% generation %}` tags.

use super::*;

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
pub(super) fn neutralize_generation_tags(source: &str) -> String {
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
