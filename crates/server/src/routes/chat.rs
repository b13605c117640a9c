//! `POST /v1/chat/completions`: validation, image loading, the engine, and the response as
//! one JSON `chat.completion` or a stream of `chat.completion.chunk` events.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use rand::Rng;
use tokio_stream::wrappers::ReceiverStream;
use vlm_inference::engine::{
    EngineError, EventReceiver, FinishReason, GenerationEvent, GenerationRequest, SubmitError,
};
use vlm_inference::image::{decode_image, RgbImage};

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::openai::request::ChatCompletionRequest;
use crate::openai::response::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, ChoiceLogprobs, ChunkChoice,
    Delta, LogprobContent, UsageBody,
};
use crate::openai::validate::{validate, ImageRef, ValidatedChat};
use crate::state::{unix_now, AppState};

/// The chat completions handler.
pub async fn chat_completions(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    if !state.is_served(&req.model) {
        return Err(ApiError::model_not_found(&req.model));
    }
    let model_name = req.model.clone();
    let chat = validate(req, state.limits)?;
    let engine = state.engine()?.clone();
    let vocab = engine.vocab_size();
    if let Some((id, _)) = chat
        .sampling
        .logit_bias
        .iter()
        .find(|(id, _)| *id as usize >= vocab)
    {
        return Err(ApiError::invalid(
            "logit_bias",
            format!("token id {id} in `logit_bias` is outside the vocabulary (0..{vocab})"),
        ));
    }
    if !chat.images.is_empty() && !engine.has_vision() {
        return Err(ApiError::invalid("messages", vlm_inference::vlm::NO_VISION)
            .with_code("model_has_no_vision"));
    }
    let images = load_images(&state, &chat.images).await?;
    let request = GenerationRequest {
        messages: chat.messages.clone(),
        image_details: chat.images.iter().map(|r| r.detail).collect(),
        images,
        max_new_tokens: chat.max_new_tokens,
        n: chat.n,
        sampling: chat.sampling.clone(),
    };
    let mut events = engine.submit(request).map_err(|e| match e {
        SubmitError::QueueFull(_) => ApiError::overloaded(e.to_string()),
        SubmitError::Stopped => ApiError::internal(e.to_string()),
    })?;
    // Wait until the prompt is accepted, so that prompt errors are proper HTTP errors.
    let prompt_tokens = match events.recv().await {
        Some(GenerationEvent::Started { prompt_tokens }) => prompt_tokens,
        Some(GenerationEvent::Error(e)) => return Err(engine_error(e)),
        _ => {
            return Err(ApiError::internal(
                "the engine ended the request without an answer",
            ))
        }
    };
    let meta = ResponseMeta {
        id: format!("chatcmpl-{}", random_id()),
        created: unix_now(),
        model: model_name,
        system_fingerprint: state.system_fingerprint.get().cloned().unwrap_or_default(),
    };
    if chat.stream {
        Ok(stream_response(meta, chat, events).into_response())
    } else {
        Ok(Json(collect_response(meta, &chat, prompt_tokens, &mut events).await?).into_response())
    }
}

struct ResponseMeta {
    id: String,
    created: u64,
    model: String,
    system_fingerprint: String,
}

fn random_id() -> String {
    let mut rng = rand::rng();
    (0..24)
        .map(|_| char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[rng.random_range(0..36)]))
        .collect()
}

fn finish_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// The one map from engine failures to HTTP errors.
fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::ContextLengthExceeded { .. } => {
            ApiError::invalid("messages", e.to_string()).with_code("context_length_exceeded")
        }
        EngineError::InvalidRequest(m) => ApiError::invalid("messages", m),
        EngineError::Internal(m) => ApiError::internal(m),
    }
}

/// Fetches and decodes every image concurrently; decoding runs off the async runtime.
async fn load_images(state: &AppState, refs: &[ImageRef]) -> Result<Vec<RgbImage>, ApiError> {
    let loads = refs.iter().enumerate().map(|(i, r)| async move {
        let bytes = state.fetcher.fetch(&r.url).await.map_err(|e| {
            ApiError::invalid(
                format!("{}.image_url.url", r.param),
                format!("image {} ({}): {e}", i + 1, r.param),
            )
            .with_code(if e.is_timeout() {
                "image_fetch_timeout"
            } else {
                "invalid_image_url"
            })
        })?;
        let limits = state.decode_limits;
        let decoded = tokio::task::spawn_blocking(move || decode_image(&bytes, &limits))
            .await
            .map_err(|e| ApiError::internal(format!("image decoding task failed: {e}")))?;
        decoded.map_err(|e| {
            ApiError::invalid(
                format!("{}.image_url.url", r.param),
                format!("image {} ({}): {e}", i + 1, r.param),
            )
            .with_code("invalid_image_format")
        })
    });
    futures::future::try_join_all(loads).await
}

async fn collect_response(
    meta: ResponseMeta,
    chat: &ValidatedChat,
    prompt_tokens: usize,
    events: &mut EventReceiver,
) -> Result<ChatCompletion, ApiError> {
    let mut texts = vec![String::new(); chat.n];
    let mut reasons = vec!["stop"; chat.n];
    let mut logprobs = vec![ChoiceLogprobs::default(); chat.n];
    let usage = loop {
        match events.recv().await {
            Some(GenerationEvent::Token {
                choice,
                text,
                logprobs: lp,
                ..
            }) => {
                if let Some(t) = texts.get_mut(choice) {
                    t.push_str(&text);
                }
                if let (Some(lp), Some(acc)) = (lp, logprobs.get_mut(choice)) {
                    acc.content.push(LogprobContent::from(&lp));
                }
            }
            Some(GenerationEvent::Text { choice, text }) => {
                if let Some(t) = texts.get_mut(choice) {
                    t.push_str(&text);
                }
            }
            Some(GenerationEvent::ChoiceFinished { choice, reason }) => {
                if let Some(r) = reasons.get_mut(choice) {
                    *r = finish_reason(reason);
                }
            }
            Some(GenerationEvent::Done { usage }) => break usage,
            Some(GenerationEvent::Error(e)) => return Err(engine_error(e)),
            Some(GenerationEvent::Started { .. }) => {}
            None => return Err(ApiError::internal("the engine stopped mid-request")),
        }
    };
    debug_assert_eq!(usage.prompt_tokens, prompt_tokens);
    Ok(ChatCompletion {
        id: meta.id,
        object: "chat.completion",
        created: meta.created,
        model: meta.model,
        system_fingerprint: meta.system_fingerprint,
        choices: texts
            .into_iter()
            .zip(reasons)
            .zip(logprobs)
            .enumerate()
            .map(|(index, ((text, finish_reason), lp))| Choice {
                index,
                message: AssistantMessage {
                    role: "assistant",
                    content: Some(text),
                    refusal: None,
                },
                logprobs: chat.sampling.logprobs.then_some(lp),
                finish_reason,
            })
            .collect(),
        usage: UsageBody::from(&usage),
    })
}

/// Builds chunks that share the stream's id, timestamps and usage convention.
struct ChunkWriter {
    meta: ResponseMeta,
    include_usage: bool,
}

impl ChunkWriter {
    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<UsageBody>) -> Event {
        let chunk = ChatCompletionChunk {
            id: self.meta.id.clone(),
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: self.meta.model.clone(),
            system_fingerprint: self.meta.system_fingerprint.clone(),
            choices,
            usage: self.include_usage.then_some(usage),
        };
        Event::default().data(serde_json::to_string(&chunk).unwrap_or_default())
    }

    fn delta(
        &self,
        index: usize,
        delta: Delta,
        logprobs: Option<ChoiceLogprobs>,
        finish_reason: Option<&'static str>,
    ) -> Event {
        self.chunk(
            vec![ChunkChoice {
                index,
                delta,
                logprobs,
                finish_reason,
            }],
            None,
        )
    }
}

fn stream_response(
    meta: ResponseMeta,
    chat: ValidatedChat,
    mut events: EventReceiver,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let writer = ChunkWriter {
        meta,
        include_usage: chat.include_usage,
    };
    tokio::spawn(async move {
        // Every send failing means the client went away: returning drops `events`, which
        // cancels the generation at its next token.
        for index in 0..chat.n {
            let role = Delta {
                role: Some("assistant"),
                content: Some(String::new()),
            };
            if tx
                .send(writer.delta(index, role, None, None))
                .await
                .is_err()
            {
                return;
            }
        }
        // Log probabilities of tokens whose text is still held back ride on the next chunk.
        let mut pending: Vec<Vec<LogprobContent>> = vec![Vec::new(); chat.n];
        let want_logprobs = chat.sampling.logprobs;
        let take = |pending: &mut Vec<Vec<LogprobContent>>, choice: usize| {
            want_logprobs.then(|| ChoiceLogprobs {
                content: pending
                    .get_mut(choice)
                    .map(std::mem::take)
                    .unwrap_or_default(),
                refusal: None,
            })
        };
        while let Some(ev) = events.recv().await {
            let event = match ev {
                GenerationEvent::Token {
                    choice,
                    text,
                    logprobs,
                    ..
                } => {
                    if let (Some(lp), Some(p)) = (logprobs, pending.get_mut(choice)) {
                        p.push(LogprobContent::from(&lp));
                    }
                    if text.is_empty() {
                        continue;
                    }
                    let delta = Delta {
                        role: None,
                        content: Some(text),
                    };
                    writer.delta(choice, delta, take(&mut pending, choice), None)
                }
                GenerationEvent::Text { choice, text } => {
                    let delta = Delta {
                        role: None,
                        content: Some(text),
                    };
                    writer.delta(choice, delta, take(&mut pending, choice), None)
                }
                GenerationEvent::ChoiceFinished { choice, reason } => {
                    if pending.get(choice).is_some_and(|p| !p.is_empty()) {
                        let lp = take(&mut pending, choice);
                        if tx
                            .send(writer.delta(choice, Delta::default(), lp, None))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    writer.delta(choice, Delta::default(), None, Some(finish_reason(reason)))
                }
                GenerationEvent::Done { usage } => {
                    if writer.include_usage {
                        let usage = UsageBody::from(&usage);
                        if tx
                            .send(writer.chunk(Vec::new(), Some(usage)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    break;
                }
                GenerationEvent::Error(e) => {
                    let body = engine_error(e).body();
                    Event::default().data(body.to_string())
                }
                GenerationEvent::Started { .. } => continue,
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Event::default().data("[DONE]")).await;
    });
    Sse::new(ReceiverStream::new(rx).map(Ok::<_, Infallible>)).keep_alive(KeepAlive::default())
}
