//! Sampling with OpenAI's semantics: temperature, nucleus (top_p), presence and frequency
//! penalties, logit bias, per-request seeds, log probabilities and stop sequences.
//! Everything here works on plain `f32` slices on the CPU and knows nothing of tensors.

mod params;
mod sampler;
mod stop;

pub use params::SamplingParams;
pub use sampler::{top_p_cutoff, Sampled, Sampler, TopLogprob};
pub use stop::{StopMatcher, StopOutcome};
