//! The Chat Completions response and streaming chunk, as OpenAI sends them.

use serde::Serialize;

/// `chat.completion`.
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// Always `"chat.completion"`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The served model name.
    pub model: String,
    /// Identifies model + build.
    pub system_fingerprint: String,
    /// One per `n`.
    pub choices: Vec<Choice>,
    /// Token counts.
    pub usage: UsageBody,
}

/// One choice of a completion.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// Position in `choices`.
    pub index: usize,
    /// The answer.
    pub message: AssistantMessage,
    /// Log probabilities (null unless requested).
    pub logprobs: Option<ChoiceLogprobs>,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
}

/// The assistant's answer.
#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage {
    /// Always `"assistant"`.
    pub role: &'static str,
    /// The text.
    pub content: Option<String>,
    /// Always null here.
    pub refusal: Option<String>,
}

/// `usage`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct UsageBody {
    /// Prompt tokens, image tokens included.
    pub prompt_tokens: usize,
    /// Generated tokens over all choices.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
    /// Cache details.
    pub prompt_tokens_details: PromptTokensDetails,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the prefix cache (not recomputed).
    pub cached_tokens: usize,
}

impl From<&vlm_inference::engine::Usage> for UsageBody {
    fn from(u: &vlm_inference::engine::Usage) -> Self {
        let mut body = Self::new(u.prompt_tokens, u.completion_tokens);
        body.prompt_tokens_details.cached_tokens = u.cached_tokens;
        body
    }
}

impl UsageBody {
    /// Builds usage from prompt and completion counts.
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails::default(),
        }
    }
}

/// `chat.completion.chunk`.
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletionChunk {
    /// Same on every chunk of a stream.
    pub id: String,
    /// Always `"chat.completion.chunk"`.
    pub object: &'static str,
    /// Same on every chunk of a stream.
    pub created: u64,
    /// The served model name.
    pub model: String,
    /// Identifies model + build.
    pub system_fingerprint: String,
    /// Empty on the usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Present only with `include_usage`: null except on the usage chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<UsageBody>>,
}

/// One choice's delta.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice {
    /// Choice index.
    pub index: usize,
    /// What is new.
    pub delta: Delta,
    /// Log probabilities of the tokens in this delta (null unless requested).
    pub logprobs: Option<ChoiceLogprobs>,
    /// Null until the last chunk of the choice.
    pub finish_reason: Option<&'static str>,
}

/// A streamed delta.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta {
    /// `"assistant"` on the first chunk of a choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// New text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `GET /v1/models` item.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    /// The served name.
    pub id: String,
    /// Always `"model"`.
    pub object: &'static str,
    /// Unix seconds when the server started.
    pub created: u64,
    /// Always `"vlm-server"`.
    pub owned_by: &'static str,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    /// Always `"list"`.
    pub object: &'static str,
    /// The served models.
    pub data: Vec<ModelCard>,
}

/// `choices[].logprobs`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ChoiceLogprobs {
    /// One entry per generated token.
    pub content: Vec<LogprobContent>,
    /// Always null.
    pub refusal: Option<Vec<LogprobContent>>,
}

/// One token's log probability and alternatives.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogprobContent {
    /// The token text.
    pub token: String,
    /// Its log probability (−9999 stands for −∞, as OpenAI does).
    pub logprob: f32,
    /// Its UTF-8 bytes.
    pub bytes: Vec<u8>,
    /// The most likely alternatives.
    pub top_logprobs: Vec<TopLogprobBody>,
}

/// An alternative token.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TopLogprobBody {
    /// The token text.
    pub token: String,
    /// Its log probability.
    pub logprob: f32,
    /// Its UTF-8 bytes.
    pub bytes: Vec<u8>,
}

/// OpenAI reports impossible tokens with −9999 rather than −∞ (not representable in JSON).
fn finite(logprob: f32) -> f32 {
    if logprob.is_finite() {
        logprob
    } else {
        -9999.0
    }
}

impl From<&vlm_inference::engine::TokenLogprobs> for LogprobContent {
    fn from(t: &vlm_inference::engine::TokenLogprobs) -> Self {
        Self {
            token: t.chosen.token.clone(),
            logprob: finite(t.chosen.logprob),
            bytes: t.chosen.bytes.clone(),
            top_logprobs: t
                .top
                .iter()
                .map(|e| TopLogprobBody {
                    token: e.token.clone(),
                    logprob: finite(e.logprob),
                    bytes: e.bytes.clone(),
                })
                .collect(),
        }
    }
}
