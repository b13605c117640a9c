//! 8-bit activation blocks (ggml's `block_q8_1`) and the quantization of f32 rows into them.

use half::f16;

/// Values per block.
pub const QK: usize = 32;

/// 32 activations as `d * qs[i]`, with `s = d * Σ qs` kept for offset terms. `d` and `s`
/// are rounded through f16 as ggml stores them, so products match llama.cpp's.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(4))]
pub struct BlockQ8 {
    /// Scale.
    pub d: f32,
    /// `d * Σ qs`.
    pub s: f32,
    /// Quantized values.
    pub qs: [i8; QK],
}

fn through_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// Quantizes `x` (a multiple of 32 long) into `out` (`x.len() / 32` blocks).
pub fn quantize_row(x: &[f32], out: &mut [BlockQ8]) {
    for (block, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in block.qs.iter_mut().zip(xs) {
            // Round half to even, as ggml's AVX2 quantizer (`_mm256_round_ps`) does.
            let r = (v * id).round_ties_even() as i32;
            *q = r as i8;
            sum += r;
        }
        block.d = through_f16(d);
        block.s = through_f16(d * sum as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_row_reconstructs_within_half_a_step() {
        let x: Vec<f32> = (0..64).map(|i| ((i * 37) % 23) as f32 - 11.3).collect();
        let mut b = vec![BlockQ8::default(); 2];
        quantize_row(&x, &mut b);
        for (blk, xs) in b.iter().zip(x.chunks(QK)) {
            let sum: i32 = blk.qs.iter().map(|&q| q as i32).sum();
            assert!((blk.s - blk.d * sum as f32).abs() <= 1e-2 * blk.s.abs().max(1.0));
            for (q, v) in blk.qs.iter().zip(xs) {
                assert!((blk.d * *q as f32 - v).abs() <= blk.d * 0.51);
            }
        }
    }
}
