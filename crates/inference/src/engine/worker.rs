//! The engine thread: runs queued jobs one at a time (batching comes later).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use candle_core::Tensor;

use crate::nn::kv_cache::KvCache;
use crate::sampling::{Sampler, StopMatcher, StopOutcome};

use super::prefix_cache::{PrefixCache, PrefixCacheLimits};
use super::{
    Detokenizer, EngineError, EngineStats, FinishReason, GenerationEvent, GenerationRequest, Job,
    LogprobEntry, TokenLogprobs, Usage,
};
use crate::error::Error;
use crate::vlm::{PreparedPrompt, VisionLanguageModel};

pub(super) fn run(
    model: VisionLanguageModel,
    jobs: std::sync::mpsc::Receiver<Job>,
    stats: Arc<EngineStats>,
    prefix_limits: PrefixCacheLimits,
) {
    let mut prefix = PrefixCache::new(prefix_limits);
    while let Ok(job) = jobs.recv() {
        if !job.events.is_closed() {
            let events = job.events.clone();
            let emit = |e: GenerationEvent| {
                if matches!(e, GenerationEvent::Token { .. }) {
                    stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
                }
                events.send(e).is_ok()
            };
            if let Err(e) = generate(&model, &job.request, &stats, &emit, &mut prefix) {
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
    stats: &EngineStats,
    emit: &dyn Fn(GenerationEvent) -> bool,
    prefix: &mut PrefixCache,
) -> Result<(), EngineError> {
    let prepared = model
        .prepare_with_detail(&req.messages, &req.images, &req.image_details)
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
    // Image features are not identified by their placeholder ids: only text-only prompts
    // take part in prefix reuse.
    let text_only = prepared.images.is_none();
    let reused = if text_only {
        prefix.lookup(&prepared.input_ids)
    } else {
        None
    };
    // One prefill, shared by every choice: each choice continues from a copy of its cache.
    let (mut cache, cached_tokens) = reused.unwrap_or_else(|| (model.new_cache(), 0));
    let rest = PreparedPrompt {
        prompt: String::new(),
        input_ids: prepared.input_ids[cached_tokens..].to_vec(),
        images: prepared.images.clone(),
    };
    let last = model
        .prefill_last_logits(&rest, &mut cache)
        .map_err(internal)?;
    stats.prefills.fetch_add(1, Ordering::Relaxed);
    stats
        .prefilled_tokens
        .fetch_add(rest.input_ids.len() as u64, Ordering::Relaxed);
    if !emit(GenerationEvent::Started { prompt_tokens }) {
        return Ok(());
    }
    let mut completion_tokens = 0;
    for choice in 0..req.n.max(1) {
        let outcome = run_choice(
            model,
            req,
            choice,
            cache.clone(),
            last.clone(),
            budget,
            emit,
        )?;
        let Some(done) = outcome else {
            return Ok(());
        };
        let (reason, generated) = (done.reason, done.generated);
        if choice == 0 && text_only {
            let mut ids = prepared.input_ids.clone();
            ids.extend(&done.fed);
            prefix.insert(ids, prepared.input_ids.len(), done.cache);
        }
        completion_tokens += generated;
        if !emit(GenerationEvent::ChoiceFinished { choice, reason }) {
            return Ok(());
        }
    }
    emit(GenerationEvent::Done {
        usage: Usage {
            prompt_tokens,
            cached_tokens,
            completion_tokens,
        },
    });
    Ok(())
}

fn entry(model: &VisionLanguageModel, id: u32, logprob: f32) -> LogprobEntry {
    let bytes = model.tokenizer().token_bytes(id);
    LogprobEntry {
        token: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
        logprob,
    }
}

/// A finished choice.
struct ChoiceDone {
    reason: FinishReason,
    /// Tokens generated (counted in usage).
    generated: usize,
    /// The cache after the choice, and the generated tokens it holds (fed back to the model).
    cache: KvCache,
    fed: Vec<u32>,
}

/// Generates one choice; `None` when the client has gone away.
fn run_choice(
    model: &VisionLanguageModel,
    req: &GenerationRequest,
    choice: usize,
    mut cache: KvCache,
    mut logits: Tensor,
    budget: usize,
    emit: &dyn Fn(GenerationEvent) -> bool,
) -> Result<Option<ChoiceDone>, EngineError> {
    let mut fed = Vec::new();
    let mut sampler = Sampler::new(req.sampling.clone(), choice as u64);
    let mut stop = StopMatcher::new(&req.sampling.stop);
    let mut detok = Detokenizer::new();
    let mut generated = 0;
    let reason = loop {
        if generated >= budget {
            break FinishReason::Length;
        }
        let values = logits.to_vec1::<f32>().map_err(internal)?;
        let sampled = sampler.sample(&values);
        generated += 1;
        if model.tokenizer().is_eos(sampled.id) {
            break FinishReason::Stop;
        }
        let logprobs = req.sampling.logprobs.then(|| TokenLogprobs {
            chosen: entry(model, sampled.id, sampled.logprob),
            top: sampled
                .top
                .iter()
                .map(|t| entry(model, t.id, t.logprob))
                .collect(),
        });
        let text = detok
            .push(model.tokenizer(), sampled.id)
            .map_err(internal)?;
        let (text, stopped) = match stop.push(&text) {
            StopOutcome::Continue(t) => (t, false),
            StopOutcome::Stopped(t) => (t, true),
        };
        let event = GenerationEvent::Token {
            choice,
            id: sampled.id,
            text,
            logprobs,
        };
        if !emit(event) {
            return Ok(None);
        }
        if stopped {
            return Ok(Some(ChoiceDone {
                reason: FinishReason::Stop,
                generated,
                cache,
                fed,
            }));
        }
        if generated >= budget {
            break FinishReason::Length;
        }
        logits = model
            .model()
            .decode_step(sampled.id, &mut cache)
            .map_err(internal)?;
        fed.push(sampled.id);
    };
    // Release what was held back: an incomplete character, a possible stop sequence.
    let tail = detok.flush(model.tokenizer()).map_err(internal)?;
    let (mut text, reason) = match stop.push(&tail) {
        StopOutcome::Continue(t) => (t, reason),
        StopOutcome::Stopped(t) => (t, FinishReason::Stop),
    };
    text.push_str(&stop.flush());
    if !text.is_empty() && !emit(GenerationEvent::Text { choice, text }) {
        return Ok(None);
    }
    Ok(Some(ChoiceDone {
        reason,
        generated,
        cache,
        fed,
    }))
}
