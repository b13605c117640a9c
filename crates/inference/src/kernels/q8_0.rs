//! Q8_0 weights (ggml's `block_q8_0`: f16 scale `d`, 32 signed bytes; value = d * q) and
//! their dot product with [`BlockQ8`] activations.

use half::f16;

use super::q8::{BlockQ8, QK};

/// One Q8_0 block as stored in GGUF (34 bytes).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Values.
    pub qs: [i8; QK],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// Bytes of one block.
pub const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ8_0>();

/// Reads blocks from raw GGUF bytes.
pub fn blocks_from_bytes(bytes: &[u8]) -> Vec<BlockQ8_0> {
    bytes
        .chunks_exact(BLOCK_BYTES)
        .map(|b| {
            let mut qs = [0i8; QK];
            for (q, &byte) in qs.iter_mut().zip(&b[2..]) {
                *q = byte as i8;
            }
            BlockQ8_0 {
                d: f16::from_le_bytes([b[0], b[1]]),
                qs,
            }
        })
        .collect()
}

/// `Σ w·x` over matching blocks, scalar.
pub fn dot_scalar(w: &[BlockQ8_0], x: &[BlockQ8]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(wb, xb)| {
            let sum: i32 = wb
                .qs
                .iter()
                .zip(&xb.qs)
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum();
            wb.d.to_f32() * xb.d * sum as f32
        })
        .sum()
}

/// Four rows' dot products with the same activations (AVX2: |w| × sign(w)·x in u8×i8).
///
/// # Safety
/// The CPU must support AVX2 and FMA; every `w` row has `x.len()` blocks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot4_avx2(w: [&[BlockQ8_0]; 4], x: &[BlockQ8]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); 4];
    for (b, xb) in x.iter().enumerate() {
        let qx = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        for r in 0..4 {
            let wb = w[r].get_unchecked(b);
            let qw = _mm256_loadu_si256(wb.qs.as_ptr() as *const __m256i);
            let abs_w = _mm256_sign_epi8(qw, qw);
            let signed_x = _mm256_sign_epi8(qx, qw);
            let prod = _mm256_madd_epi16(_mm256_maddubs_epi16(abs_w, signed_x), ones);
            let d = _mm256_set1_ps(wb.d.to_f32() * xb.d);
            acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(prod), acc[r]);
        }
    }
    [
        super::hsum_avx(acc[0]),
        super::hsum_avx(acc[1]),
        super::hsum_avx(acc[2]),
        super::hsum_avx(acc[3]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::q8::quantize_row;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_dot4_equals_scalar_dot() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let rows: Vec<Vec<BlockQ8_0>> = (0..4)
            .map(|r| {
                (0..6)
                    .map(|b| {
                        let mut qs = [0i8; QK];
                        for (j, q) in qs.iter_mut().enumerate() {
                            *q = (((r * 31 + b * 7 + j * 13) % 255) as i32 - 127) as i8;
                        }
                        BlockQ8_0 {
                            d: f16::from_f32(0.002 * (b + 1) as f32),
                            qs,
                        }
                    })
                    .collect()
            })
            .collect();
        let x: Vec<f32> = (0..192)
            .map(|i| ((i * 29) % 41) as f32 * 0.05 - 1.0)
            .collect();
        let mut xq = vec![BlockQ8::default(); 6];
        quantize_row(&x, &mut xq);
        let four = unsafe { dot4_avx2([&rows[0], &rows[1], &rows[2], &rows[3]], &xq) };
        for r in 0..4 {
            let one = dot_scalar(&rows[r], &xq);
            assert!(
                (four[r] - one).abs() < 1e-4 * one.abs().max(1.0),
                "row {r}: {} vs {one}",
                four[r]
            );
        }
    }
}
