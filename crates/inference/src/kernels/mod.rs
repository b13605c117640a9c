//! CPU kernels of our own where candle's are the bottleneck: block-quantized matrix
//! products with AVX2 (scalar fallback elsewhere), run on candle's CPU worker pool.
//!
//! Layouts follow ggml so GGUF tensors are used as stored: a weight row is a run of
//! blocks of 32 values; activations are quantized per row into [`BlockQ8`] blocks
//! (ggml's `block_q8_1`: scale, scaled sum, 32 signed bytes), as llama.cpp does.

pub mod matmul;
pub mod q4_1;
pub mod q8;

pub use matmul::QuantMatmul;
