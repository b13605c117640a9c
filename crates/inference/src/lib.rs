//! vlm-inference: loading LLaVA-style vision-language models in Hugging Face layout and
//! running them with candle — image preprocessing equal to transformers' processors, the
//! vision tower and projector, the language model with a KV cache, chat templates and
//! generation. No HTTP here; the server crate drives this one.

pub mod chat_template;
pub mod config;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod hub;
pub mod image;
pub mod kernels;
pub mod messages;
pub mod model_dir;
pub mod models;
pub mod nn;
pub mod sampling;
pub mod threads;
pub mod tokenizer;
pub mod vlm;
pub mod weights;

pub use error::{Error, Result};
pub use models::llava::ImageBatch;
pub use vlm::{ImageDetail, LoadOptions, PreparedPrompt, VisionLanguageModel};
