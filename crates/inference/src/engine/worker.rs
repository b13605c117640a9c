//! The engine thread: runs queued jobs one at a time (batching comes later).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use candle_core::Tensor;

use super::{
    Detokenizer, EngineError, EngineStats, FinishReason, GenerationEvent, GenerationRequest, Job,
    Usage,
};
use crate::error::Error;
use crate::vlm::VisionLanguageModel;

pub(super) fn run(
    model: VisionLanguageModel,
    jobs: std::sync::mpsc::Receiver<Job>,
    stats: Arc<EngineStats>,
) {
    while let Ok(job) = jobs.recv() {
        if !job.events.is_closed() {
            let events = job.events.clone();
            let emit = |e: GenerationEvent| {
                if matches!(e, GenerationEvent::Token { .. }) {
                    stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
                }
                events.send(e).is_ok()
            };
            if let Err(e) = generate(&model, &job.request, &emit) {
                let _ = job.events.send(GenerationEvent::Error(e));
            }
        }
        stats.finished_requests.fetch_add(1, Ordering::SeqCst);
    }
    tracing::info!("engine thread stopped");
}

fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(e.to_string())
}

fn classify(e: Error) -> EngineError {
    match e {
        Error::InvalidInput(m) => EngineError::InvalidRequest(m),
        Error::Template(t) => EngineError::InvalidRequest(format!("chat template: {t}")),
        other => internal(other),
    }
}

/// Runs one request; returns early (Ok) when the client has gone away.
fn generate(
    model: &VisionLanguageModel,
    req: &GenerationRequest,
    emit: &dyn Fn(GenerationEvent) -> bool,
) -> Result<(), EngineError> {
    let prepared = model
        .prepare(&req.messages, &req.images)
        .map_err(classify)?;
    let prompt_tokens = prepared.input_ids.len();
    let max_context = model.context_length();
    let requested = prompt_tokens + req.max_new_tokens.unwrap_or(1);
    if requested > max_context {
        return Err(EngineError::ContextLengthExceeded {
            prompt_tokens,
            requested,
            max_context,
        });
    }
    let budget = req
        .max_new_tokens
        .unwrap_or(max_context - prompt_tokens)
        .min(max_context - prompt_tokens);
    let mut cache = model.new_cache();
    let last = model
        .prefill_last_logits(&prepared, &mut cache)
        .map_err(internal)?;
    if !emit(GenerationEvent::Started { prompt_tokens }) {
        return Ok(());
    }
    let mut completion_tokens = 0;
    for choice in 0..req.n.max(1) {
        let mut cache = cache.clone();
        let mut logits: Tensor = last.clone();
        let mut detok = Detokenizer::new();
        let mut generated = 0;
        let reason = loop {
            if generated >= budget {
                break FinishReason::Length;
            }
            let id = logits
                .argmax(0)
                .and_then(|t| t.to_scalar::<u32>())
                .map_err(internal)?;
            generated += 1;
            if model.tokenizer().is_eos(id) {
                break FinishReason::Stop;
            }
            let text = detok.push(model.tokenizer(), id).map_err(internal)?;
            if !emit(GenerationEvent::Token { choice, id, text }) {
                return Ok(());
            }
            if generated >= budget {
                break FinishReason::Length;
            }
            logits = model
                .model()
                .decode_step(id, &mut cache)
                .map_err(internal)?;
        };
        let tail = detok.flush(model.tokenizer()).map_err(internal)?;
        if !tail.is_empty() && !emit(GenerationEvent::Text { choice, text: tail }) {
            return Ok(());
        }
        completion_tokens += generated;
        if !emit(GenerationEvent::ChoiceFinished { choice, reason }) {
            return Ok(());
        }
    }
    emit(GenerationEvent::Done {
        usage: Usage {
            prompt_tokens,
            completion_tokens,
        },
    });
    Ok(())
}
