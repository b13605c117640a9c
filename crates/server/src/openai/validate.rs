//! Parse, don't validate: turns a wire request into what the engine runs, refusing every
//! value that is out of range or that would change the output in a way not yet supported
//! (a 400 naming the `param`), instead of silently ignoring it.

use serde_json::Value;
use vlm_inference::messages::{ChatMessage, ContentPart, MessageContent, Role, ToolCall};
use vlm_inference::sampling::SamplingParams;
use vlm_inference::ImageDetail;

use super::request::{ChatCompletionRequest, RequestMessage};
use crate::error::ApiError;

/// An image referenced by the request, in order of appearance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `image_url.url`.
    pub url: String,
    /// `image_url.detail` (`auto` when absent).
    pub detail: ImageDetail,
    /// Where it sits, e.g. `messages[0].content[1]`.
    pub param: String,
}

/// A request ready for image loading and the engine.
#[derive(Debug, Clone)]
pub struct ValidatedChat {
    /// Engine-side messages; `ContentPart::Image` refers to `images` in order.
    pub messages: Vec<ChatMessage>,
    /// Images to fetch and decode.
    pub images: Vec<ImageRef>,
    /// Token limit per choice.
    pub max_new_tokens: Option<usize>,
    /// Number of choices.
    pub n: usize,
    /// SSE streaming.
    pub stream: bool,
    /// Send a usage chunk at the end of the stream.
    pub include_usage: bool,
    /// Sampling, stop sequences and log probabilities.
    pub sampling: SamplingParams,
}

/// Request limits that validation enforces.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Most images in one request.
    pub max_images: usize,
    /// Largest `n`.
    pub max_n: usize,
}

fn not_supported(param: &str, what: &str) -> ApiError {
    ApiError::invalid(
        param,
        format!("{what} is not supported by this server yet; the request was refused rather than answered differently"),
    )
}

fn check_range(param: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<(), ApiError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) || x.is_nan() => Err(ApiError::invalid(
            param,
            format!("`{param}` must be between {lo} and {hi}, got {x}"),
        )),
        _ => Ok(()),
    }
}

/// Validates `req` against `limits`.
pub fn validate(
    req: ChatCompletionRequest,
    limits: RequestLimits,
) -> Result<ValidatedChat, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must not be empty",
        ));
    }
    check_range("temperature", req.temperature, 0.0, 2.0)?;
    check_range("top_p", req.top_p, 0.0, 1.0)?;
    if req.top_p.is_some_and(|p| p <= 0.0) {
        return Err(ApiError::invalid("top_p", "`top_p` must be greater than 0"));
    }
    check_range("presence_penalty", req.presence_penalty, -2.0, 2.0)?;
    check_range("frequency_penalty", req.frequency_penalty, -2.0, 2.0)?;
    let mut logit_bias = Vec::new();
    if let Some(bias) = &req.logit_bias {
        for (k, v) in bias {
            let id = k.parse::<u32>().map_err(|_| {
                ApiError::invalid(
                    "logit_bias",
                    format!("`logit_bias` keys must be token ids, got {k:?}"),
                )
            })?;
            check_range("logit_bias", Some(*v), -100.0, 100.0)?;
            logit_bias.push((id, *v as f32));
        }
    }
    let logprobs = req.logprobs.unwrap_or(false);
    let top_logprobs = match req.top_logprobs {
        None => 0,
        Some(t) if !(0..=20).contains(&t) => {
            return Err(ApiError::invalid(
                "top_logprobs",
                "`top_logprobs` must be between 0 and 20",
            ))
        }
        Some(_) if !logprobs => {
            return Err(ApiError::invalid(
                "top_logprobs",
                "`top_logprobs` requires `logprobs` to be true",
            ))
        }
        Some(t) => t as usize,
    };
    let n = match req.n {
        None => 1,
        Some(n) if n >= 1 && (n as u64) <= limits.max_n as u64 => n as usize,
        Some(n) => {
            return Err(ApiError::invalid(
                "n",
                format!(
                    "`n` must be between 1 and {} (--max-n), got {n}",
                    limits.max_n
                ),
            ))
        }
    };
    let stop = req.stop.as_ref().map(|s| s.to_vec()).unwrap_or_default();
    if stop.len() > 4 {
        return Err(ApiError::invalid(
            "stop",
            "`stop` takes at most 4 sequences",
        ));
    }
    let max_new_tokens = match (req.max_completion_tokens, req.max_tokens) {
        (Some(m), _) => Some(("max_completion_tokens", m)),
        (None, Some(m)) => Some(("max_tokens", m)),
        (None, None) => None,
    };
    let max_new_tokens = match max_new_tokens {
        None => None,
        Some((_, m)) if m >= 1 => Some(m as usize),
        Some((param, m)) => {
            return Err(ApiError::invalid(
                param,
                format!("`{param}` must be at least 1, got {m}"),
            ))
        }
    };
    if let Some(rf) = &req.response_format {
        match rf.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some(t @ ("json_object" | "json_schema")) => {
                return Err(not_supported(
                    "response_format",
                    &format!("`response_format` {t:?}"),
                ))
            }
            _ => {
                return Err(ApiError::invalid(
                    "response_format",
                    "`response_format.type` must be \"text\", \"json_object\" or \"json_schema\"",
                ))
            }
        }
    }
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(not_supported("tools", "tool calling (`tools`)"));
    }
    if let Some(choice) = &req.tool_choice {
        match choice.as_str() {
            Some("none" | "auto") => {}
            Some("required") => {
                return Err(not_supported("tool_choice", "`tool_choice` \"required\""))
            }
            Some(other) => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("unknown `tool_choice` {other:?}"),
                ))
            }
            None => {
                return Err(not_supported(
                    "tool_choice",
                    "forcing a function with `tool_choice`",
                ))
            }
        }
    }
    if req.functions.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(not_supported("functions", "function calling (`functions`)"));
    }
    if req.function_call.is_some() {
        return Err(not_supported("function_call", "`function_call`"));
    }
    if let Some(m) = &req.modalities {
        if let Some(other) = m.iter().find(|m| m.as_str() != "text") {
            return Err(not_supported(
                "modalities",
                &format!("output modality {other:?}"),
            ));
        }
    }
    if req.audio.is_some() {
        return Err(not_supported("audio", "audio output"));
    }
    if req.prediction.is_some() {
        return Err(not_supported("prediction", "predicted outputs"));
    }
    if req.web_search_options.is_some() {
        return Err(not_supported("web_search_options", "web search"));
    }
    let stream = req.stream.unwrap_or(false);
    if req.stream_options.is_some() && !stream {
        return Err(ApiError::invalid(
            "stream_options",
            "`stream_options` is only allowed when `stream` is true",
        ));
    }
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);

    let mut images = Vec::new();
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.into_iter().enumerate() {
        messages.push(convert_message(m, i, &mut images)?);
    }
    if images.len() > limits.max_images {
        return Err(ApiError::invalid(
            "messages",
            format!(
                "the request has {} images; at most {} are allowed (--max-images-per-request)",
                images.len(),
                limits.max_images
            ),
        ));
    }
    let sampling = SamplingParams {
        temperature: req.temperature.unwrap_or(0.0) as f32,
        top_p: req.top_p.unwrap_or(1.0) as f32,
        presence_penalty: req.presence_penalty.unwrap_or(0.0) as f32,
        frequency_penalty: req.frequency_penalty.unwrap_or(0.0) as f32,
        logit_bias,
        // Any i64 is a valid seed; its bits seed the request's RNG.
        seed: req.seed.map(|s| s as u64),
        logprobs,
        top_logprobs,
        stop,
    };
    Ok(ValidatedChat {
        messages,
        images,
        max_new_tokens,
        n,
        stream,
        include_usage,
        sampling,
    })
}

fn convert_message(
    m: RequestMessage,
    i: usize,
    images: &mut Vec<ImageRef>,
) -> Result<ChatMessage, ApiError> {
    let at = format!("messages[{i}]");
    Ok(match m {
        RequestMessage::System { content, name } => {
            let mut msg = ChatMessage::new(Role::System, text_content(&content, &at)?);
            msg.name = name;
            msg
        }
        RequestMessage::Developer { content, name } => {
            let mut msg = ChatMessage::new(Role::Developer, text_content(&content, &at)?);
            msg.name = name;
            msg
        }
        RequestMessage::User { content, name } => {
            let mut msg = ChatMessage::new(Role::User, user_content(&content, &at, images)?);
            msg.name = name;
            msg
        }
        RequestMessage::Assistant {
            content,
            tool_calls,
            refusal: _,
            name,
        } => {
            let calls: Vec<ToolCall> = tool_calls
                .unwrap_or_default()
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.function.name,
                    arguments: c.function.arguments,
                })
                .collect();
            let content = if content.is_null() {
                None
            } else {
                Some(text_content(&content, &at)?)
            };
            if content.is_none() && calls.is_empty() {
                return Err(ApiError::invalid(
                    format!("{at}.content"),
                    "an assistant message needs `content` or `tool_calls`",
                ));
            }
            let mut msg = ChatMessage::assistant_tool_calls(calls);
            msg.content = content;
            msg.name = name;
            msg
        }
        RequestMessage::Tool {
            content,
            tool_call_id,
        } => ChatMessage::tool(tool_call_id, text_content(&content, &at)?),
    })
}

/// String content, or a list of text parts (joined).
fn text_content(v: &Value, at: &str) -> Result<MessageContent, ApiError> {
    match v {
        Value::String(s) => Ok(MessageContent::Text(s.clone())),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                let here = format!("{at}.content[{j}]");
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => out.push(ContentPart::Text(part_text(p, &here)?)),
                    Some("refusal") => out.push(ContentPart::Text(
                        p.get("refusal")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    )),
                    Some("image_url") => {
                        return Err(ApiError::invalid(
                            here,
                            "image parts are only allowed in user messages",
                        ))
                    }
                    other => return Err(unknown_part(&here, other)),
                }
            }
            Ok(MessageContent::Parts(out))
        }
        _ => Err(ApiError::invalid(
            format!("{at}.content"),
            "`content` must be a string or an array of content parts",
        )),
    }
}

fn part_text(p: &Value, here: &str) -> Result<String, ApiError> {
    p.get("text")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::invalid(format!("{here}.text"), "a text part needs a string `text`")
        })
}

fn unknown_part(here: &str, kind: Option<&str>) -> ApiError {
    match kind {
        Some(k @ ("input_audio" | "file" | "video_url" | "input_video")) => ApiError::invalid(
            format!("{here}.type"),
            format!("content parts of type {k:?} are not supported by this model"),
        ),
        Some(k) => ApiError::invalid(
            format!("{here}.type"),
            format!("unknown content part type {k:?}"),
        ),
        None => ApiError::invalid(format!("{here}.type"), "a content part needs a `type`"),
    }
}

fn user_content(
    v: &Value,
    at: &str,
    images: &mut Vec<ImageRef>,
) -> Result<MessageContent, ApiError> {
    let Value::Array(parts) = v else {
        return text_content(v, at);
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let here = format!("{at}.content[{j}]");
        match p.get("type").and_then(Value::as_str) {
            Some("text") => out.push(ContentPart::Text(part_text(p, &here)?)),
            Some("image_url") => {
                let image_url = p.get("image_url");
                // Both the object form and a bare string (accepted by vLLM) are taken.
                let (url, detail) = match image_url {
                    Some(Value::String(s)) => (s.clone(), None),
                    Some(Value::Object(o)) => (
                        o.get("url")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| {
                                ApiError::invalid(
                                    format!("{here}.image_url.url"),
                                    "`image_url.url` must be a string",
                                )
                            })?,
                        o.get("detail").cloned(),
                    ),
                    _ => {
                        return Err(ApiError::invalid(
                            format!("{here}.image_url"),
                            "an image part needs `image_url: {\"url\": ...}`",
                        ))
                    }
                };
                let detail = match detail {
                    None | Some(Value::Null) => ImageDetail::Auto,
                    Some(Value::String(d)) if d == "auto" => ImageDetail::Auto,
                    Some(Value::String(d)) if d == "low" => ImageDetail::Low,
                    Some(Value::String(d)) if d == "high" => ImageDetail::High,
                    Some(other) => {
                        return Err(ApiError::invalid(
                            format!("{here}.image_url.detail"),
                            format!("`detail` must be \"auto\", \"low\" or \"high\", got {other}"),
                        ))
                    }
                };
                images.push(ImageRef {
                    url,
                    detail,
                    param: here,
                });
                out.push(ContentPart::Image);
            }
            other => return Err(unknown_part(&here, other)),
        }
    }
    Ok(MessageContent::Parts(out))
}
