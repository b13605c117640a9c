//! Validated sampling parameters of one request.

/// How to pick each next token. Ranges are validated by the caller (the server maps
/// OpenAI's fields onto this and refuses out-of-range values with a 400).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy; otherwise logits are divided by it before the softmax.
    pub temperature: f32,
    /// Nucleus mass in (0, 1]; 1 keeps every token.
    pub top_p: f32,
    /// Subtracted once from the logit of every token already generated (−2…2).
    pub presence_penalty: f32,
    /// Subtracted per occurrence from the logit of every token generated so far (−2…2).
    pub frequency_penalty: f32,
    /// Added to the logits of the given token ids (−100…100).
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the request's own RNG; `None`: fresh entropy.
    pub seed: Option<u64>,
    /// Return the chosen token's log probability.
    pub logprobs: bool,
    /// How many alternatives to return per position (0…20).
    pub top_logprobs: usize,
    /// Stop sequences, matched on the decoded text (not returned).
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: None,
            logprobs: false,
            top_logprobs: 0,
            stop: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// Whether decoding is greedy (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}
