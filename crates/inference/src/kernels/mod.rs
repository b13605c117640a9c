//! CPU kernels of our own where candle's are the bottleneck: block-quantized matrix
//! products with AVX2 (scalar fallback elsewhere), run on candle's CPU worker pool.
//!
//! Layouts follow ggml so GGUF tensors are used as stored: a weight row is a run of
//! blocks of 32 values; activations are quantized per row into [`BlockQ8`] blocks
//! (ggml's `block_q8_1`: scale, scaled sum, 32 signed bytes), as llama.cpp does.

pub mod matmul;
pub mod q4_1;
pub mod q4_1x4;
pub mod q8;
pub mod q8_0;
pub mod q8_0x4;
pub mod transcode;

pub use matmul::QuantMatmul;

/// Regroups `(n, kb)` row-major blocks (`n` a multiple of 4) into `(n / 4, kb)` groups:
/// group `g`, position `b` is `pack` of block `b` of rows `4g .. 4g + 4`.
fn group_rows<T, G>(blocks: &[T], n: usize, kb: usize, pack: impl Fn([&T; 4]) -> G) -> Vec<G> {
    let mut out = Vec::with_capacity(blocks.len() / 4);
    for g in 0..n / 4 {
        for b in 0..kb {
            let row = |r: usize| &blocks[(4 * g + r) * kb + b];
            out.push(pack([row(0), row(1), row(2), row(3)]));
        }
    }
    out
}

/// Sum of the eight lanes.
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum_avx(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}
