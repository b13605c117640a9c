//! The generation engine: one narrow seam between HTTP and the model.
//!
//! [`Engine::submit`] takes a validated [`GenerationRequest`] and returns a stream of
//! [`GenerationEvent`]s. Model work runs on a dedicated thread, never on the async runtime;
//! requests are served first-come first-served, and a request whose receiver is dropped
//! (the client went away) stops at its next token.

mod detokenizer;
mod prefix_cache;
mod worker;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

pub use detokenizer::Detokenizer;
pub use prefix_cache::PrefixCacheLimits;

use crate::image::RgbImage;
use crate::messages::ChatMessage;
use crate::sampling::SamplingParams;
use crate::vlm::{ImageDetail, VisionLanguageModel};

/// A request the engine can run: already validated by the caller.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Decoded images, in order of appearance in `messages`.
    pub images: Vec<RgbImage>,
    /// `image_url.detail` of each image (missing entries: auto).
    pub image_details: Vec<ImageDetail>,
    /// Upper bound on generated tokens per choice; `None`: until EOS or the context ends.
    pub max_new_tokens: Option<usize>,
    /// Number of choices generated from one prefill.
    pub n: usize,
    /// How to pick tokens, stop sequences and log probabilities.
    pub sampling: SamplingParams,
}

/// A token's text, bytes and log probability, for OpenAI's `logprobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogprobEntry {
    /// The token as text (lossy when it is part of a multi-byte character).
    pub token: String,
    /// The token's raw bytes.
    pub bytes: Vec<u8>,
    /// Log probability under the distribution sampled from (−∞ outside the nucleus).
    pub logprob: f32,
}

/// The chosen token's entry and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// The chosen token.
    pub chosen: LogprobEntry,
    /// `top_logprobs` alternatives, most likely first.
    pub top: Vec<LogprobEntry>,
}

/// Why a choice stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An EOS token was produced.
    Stop,
    /// `max_new_tokens` or the context length was reached.
    Length,
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens, image tokens included.
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys/values came from the prefix cache (not recomputed).
    pub cached_tokens: usize,
    /// Generated tokens over all choices.
    pub completion_tokens: usize,
}

/// A failure that ends a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The prompt (plus the requested completion) does not fit the model's context.
    #[error("this model's maximum context length is {max_context} tokens; the request needs {requested} ({prompt_tokens} in the prompt, image tokens included)")]
    ContextLengthExceeded {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Prompt plus requested completion tokens.
        requested: usize,
        /// The model's context length.
        max_context: usize,
    },
    /// The request cannot be run as given (e.g. template rejected the messages).
    #[error("{0}")]
    InvalidRequest(String),
    /// A fault in the engine or model.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a request produces, in order: `Started`, then `Token`s and one `ChoiceFinished` per
/// choice, then `Done` — or `Error` at any point, after which nothing follows.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// The prompt was prepared and prefilled.
    Started {
        /// Prompt tokens, image tokens included.
        prompt_tokens: usize,
    },
    /// A generated token and the text it completes (may be empty mid-character).
    Token {
        /// Choice index.
        choice: usize,
        /// The token id.
        id: u32,
        /// Newly released text (may be empty mid-character or while a possible stop
        /// sequence is held back).
        text: String,
        /// Log probabilities, when requested.
        logprobs: Option<TokenLogprobs>,
    },
    /// Text held back until the end of a choice (an incomplete character), not tied to a
    /// new token.
    Text {
        /// Choice index.
        choice: usize,
        /// The text.
        text: String,
    },
    /// A choice ended.
    ChoiceFinished {
        /// Choice index.
        choice: usize,
        /// Why.
        reason: FinishReason,
    },
    /// Every choice ended.
    Done {
        /// Token counts.
        usage: Usage,
    },
    /// The request failed.
    Error(EngineError),
}

/// Why a request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full.
    #[error("the server is at capacity ({0} requests in flight); retry later")]
    QueueFull(usize),
    /// The worker thread has stopped.
    #[error("the generation engine has stopped")]
    Stopped,
}

/// Receives the events of one request; dropping it cancels the request.
pub type EventReceiver = tokio::sync::mpsc::UnboundedReceiver<GenerationEvent>;

/// Decrements the in-flight count when a job is done, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Job {
    request: GenerationRequest,
    events: tokio::sync::mpsc::UnboundedSender<GenerationEvent>,
    _in_flight: InFlight,
}

/// Handle to the engine's worker thread; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    jobs: std::sync::mpsc::Sender<Job>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
    context_length: usize,
    vocab_size: usize,
    has_vision: bool,
    stats: Arc<EngineStats>,
}

/// Counters the worker keeps, for metrics and tests.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Tokens generated over all requests.
    pub generated_tokens: AtomicU64,
    /// Requests that finished (any outcome).
    pub finished_requests: AtomicU64,
    /// Prompt forward passes (one per request, shared by its `n` choices).
    pub prefills: AtomicU64,
    /// Prompt tokens run through the model (cached prefix tokens are not).
    pub prefilled_tokens: AtomicU64,
}

impl Engine {
    /// Starts the worker thread that owns `model`. At most `max_in_flight` requests are
    /// queued or running at once; more are refused with [`SubmitError::QueueFull`].
    pub fn start(model: VisionLanguageModel, max_in_flight: usize) -> Self {
        Self::start_with(model, max_in_flight, PrefixCacheLimits::default())
    }

    /// [`Self::start`], keeping the keys/values of recent text-only requests (prompt and
    /// the first choice's answer) within `prefix_limits`: a request whose prompt starts with
    /// kept tokens (the next turn of a chat, a repeat, a shared system prompt) computes only
    /// the rest.
    pub fn start_with(
        model: VisionLanguageModel,
        max_in_flight: usize,
        prefix_limits: PrefixCacheLimits,
    ) -> Self {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let context_length = model.context_length();
        let vocab_size = model.text_config().vocab_size;
        let has_vision = model.has_vision();
        let stats = Arc::new(EngineStats::default());
        let worker_stats = stats.clone();
        let spawned = std::thread::Builder::new()
            .name("vlm-engine".into())
            .spawn(move || worker::run(model, rx, worker_stats, prefix_limits));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the engine thread");
        }
        Self {
            jobs,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: max_in_flight.max(1),
            context_length,
            vocab_size,
            has_vision,
            stats,
        }
    }

    /// Queues a request; its events arrive on the returned receiver.
    pub fn submit(&self, request: GenerationRequest) -> Result<EventReceiver, SubmitError> {
        let prev = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.in_flight.clone());
        if prev >= self.max_in_flight {
            return Err(SubmitError::QueueFull(prev));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.jobs
            .send(Job {
                request,
                events: tx,
                _in_flight: guard,
            })
            .map_err(|_| SubmitError::Stopped)?;
        Ok(rx)
    }

    /// Requests queued or running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The worker's counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The model's context length in tokens.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Whether the model accepts images.
    pub fn has_vision(&self) -> bool {
        self.has_vision
    }

    /// Rows of the model's output layer (valid token ids are below this).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}
