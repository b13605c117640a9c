//! The Chat Completions request, as OpenAI documents it. Every documented field parses;
//! unknown extra fields are accepted (clients send them). Message content stays JSON here and
//! is checked part by part in [`super::validate`], which gives precise error messages.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    /// Model name; must be one the server serves.
    pub model: String,
    /// The conversation.
    pub messages: Vec<RequestMessage>,
    /// Sampling temperature, 0–2.
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, 0–1.
    pub top_p: Option<f64>,
    /// Number of choices.
    pub n: Option<i64>,
    /// Stream chunks as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Stop sequences: a string or up to 4 strings.
    pub stop: Option<StopSequences>,
    /// Deprecated limit on generated tokens.
    pub max_tokens: Option<i64>,
    /// Limit on generated tokens (wins over `max_tokens`).
    pub max_completion_tokens: Option<i64>,
    /// −2…2.
    pub presence_penalty: Option<f64>,
    /// −2…2.
    pub frequency_penalty: Option<f64>,
    /// Token id (string) → bias −100…100.
    pub logit_bias: Option<BTreeMap<String, f64>>,
    /// Return log probabilities.
    pub logprobs: Option<bool>,
    /// 0–20 alternatives per position.
    pub top_logprobs: Option<i64>,
    /// Seed for deterministic sampling.
    pub seed: Option<i64>,
    /// End-user identifier (logged only).
    pub user: Option<String>,
    /// `{"type": "text" | "json_object" | "json_schema", ...}`.
    pub response_format: Option<Value>,
    /// Function tools.
    pub tools: Option<Vec<Value>>,
    /// `"none" | "auto" | "required" | {"type":"function","function":{"name"}}`.
    pub tool_choice: Option<Value>,
    /// Whether several tool calls may be made in one turn.
    pub parallel_tool_calls: Option<bool>,
    /// Deprecated function calling.
    pub functions: Option<Vec<Value>>,
    /// Deprecated function calling.
    pub function_call: Option<Value>,
    /// Output modalities (`["text"]`).
    pub modalities: Option<Vec<String>>,
    /// Audio output parameters.
    pub audio: Option<Value>,
    /// Predicted output.
    pub prediction: Option<Value>,
    /// Reasoning effort (reasoning models only).
    pub reasoning_effort: Option<String>,
    /// Web search (search models only).
    pub web_search_options: Option<Value>,
    /// Anything else the client sent (`store`, `metadata`, `service_tier`, vendor fields).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send one usage chunk before `[DONE]`.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopSequences {
    /// A single stop sequence.
    One(String),
    /// Up to four stop sequences.
    Many(Vec<String>),
}

impl StopSequences {
    /// The sequences as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// One message, tagged by `role`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum RequestMessage {
    /// Instructions.
    System {
        /// String or text parts.
        content: Value,
        /// Optional author name.
        name: Option<String>,
    },
    /// Instructions (newer name for system).
    Developer {
        /// String or text parts.
        content: Value,
        /// Optional author name.
        name: Option<String>,
    },
    /// The user's turn: text and images.
    User {
        /// String or text / image_url parts.
        content: Value,
        /// Optional author name.
        name: Option<String>,
    },
    /// An earlier model turn.
    Assistant {
        /// String, text/refusal parts, or null when only tool calls.
        #[serde(default)]
        content: Value,
        /// Tool calls made in that turn.
        tool_calls: Option<Vec<RequestToolCall>>,
        /// A refusal message.
        refusal: Option<String>,
        /// Optional author name.
        name: Option<String>,
    },
    /// A tool's result.
    Tool {
        /// String or text parts.
        content: Value,
        /// The call this answers.
        tool_call_id: String,
    },
}

/// An assistant tool call in the history.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestToolCall {
    /// Call id.
    pub id: String,
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function called.
    pub function: RequestFunctionCall,
}

/// Name and JSON arguments of a call.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestFunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments as JSON text.
    pub arguments: String,
}
