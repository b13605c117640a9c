//! Q4_1 weights (ggml's `block_q4_1`: f16 scale `d`, f16 minimum `m`, 32 4-bit values;
//! value = d * q + m) and their dot product with [`BlockQ8`] activations.

use half::f16;

use super::q8::{BlockQ8, QK};

/// One Q4_1 block as stored in GGUF (20 bytes).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum.
    pub m: f16,
    /// Low nibbles: values 0..16; high nibbles: values 16..32.
    pub qs: [u8; QK / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// Bytes of one block.
pub const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ4_1>();

/// Reads blocks from raw GGUF bytes.
pub fn blocks_from_bytes(bytes: &[u8]) -> Vec<BlockQ4_1> {
    bytes
        .chunks_exact(BLOCK_BYTES)
        .map(|b| {
            let mut qs = [0u8; QK / 2];
            qs.copy_from_slice(&b[4..]);
            BlockQ4_1 {
                d: f16::from_le_bytes([b[0], b[1]]),
                m: f16::from_le_bytes([b[2], b[3]]),
                qs,
            }
        })
        .collect()
}

/// The f32 values of a row of blocks.
pub fn dequantize(blocks: &[BlockQ4_1]) -> Vec<f32> {
    let mut out = Vec::with_capacity(blocks.len() * QK);
    for b in blocks {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        let lo = b.qs.iter().map(|q| d * (q & 0x0f) as f32 + m);
        let hi = b.qs.iter().map(|q| d * (q >> 4) as f32 + m);
        out.extend(lo.chain(hi).collect::<Vec<_>>());
    }
    out
}

/// `Σ w·x` over matching blocks, scalar.
pub fn dot_scalar(w: &[BlockQ4_1], x: &[BlockQ8]) -> f32 {
    let mut acc = 0f32;
    for (wb, xb) in w.iter().zip(x) {
        let mut sum = 0i32;
        for j in 0..QK / 2 {
            sum += (wb.qs[j] & 0x0f) as i32 * xb.qs[j] as i32;
            sum += (wb.qs[j] >> 4) as i32 * xb.qs[j + QK / 2] as i32;
        }
        acc += wb.d.to_f32() * xb.d * sum as f32 + wb.m.to_f32() * xb.s;
    }
    acc
}

/// `Σ w·x` over matching blocks, with AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_avx2(w: &[BlockQ4_1], x: &[BlockQ8]) -> f32 {
    use std::arch::x86_64::*;
    let low_mask = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    let mut offsets = 0f32;
    for (wb, xb) in w.iter().zip(x) {
        let d = wb.d.to_f32() * xb.d;
        offsets += wb.m.to_f32() * xb.s;
        let packed = _mm_loadu_si128(wb.qs.as_ptr() as *const __m128i);
        // [low nibbles (values 0..16) | high nibbles (values 16..32)]
        let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
        let qw = _mm256_and_si256(both, low_mask);
        let qx = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        // u8 × i8 → i16 pairs (no saturation: 15·127·2 < 2¹⁵), then i16 pairs → i32.
        let prod = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qx), ones);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(prod), acc);
    }
    super::hsum_avx(acc) + offsets
}

/// Four rows' dot products with the same activations: independent accumulators hide the
/// FMA latency and each activation block is loaded once for four weight blocks.
///
/// # Safety
/// The CPU must support AVX2 and FMA; every `w` row has `x.len()` blocks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot4_avx2(w: [&[BlockQ4_1]; 4], x: &[BlockQ8]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let low_mask = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut offsets = [0f32; 4];
    for (b, xb) in x.iter().enumerate() {
        let qx = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        for r in 0..4 {
            let wb = w[r].get_unchecked(b);
            offsets[r] += wb.m.to_f32() * xb.s;
            let packed = _mm_loadu_si128(wb.qs.as_ptr() as *const __m128i);
            let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
            let qw = _mm256_and_si256(both, low_mask);
            let prod = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qx), ones);
            let d = _mm256_set1_ps(wb.d.to_f32() * xb.d);
            acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(prod), acc[r]);
        }
    }
    let mut out = [0f32; 4];
    for r in 0..4 {
        out[r] = super::hsum_avx(acc[r]) + offsets[r];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::q8::quantize_row;

    fn sample_blocks(n: usize) -> Vec<BlockQ4_1> {
        (0..n)
            .map(|i| {
                let mut qs = [0u8; 16];
                for (j, q) in qs.iter_mut().enumerate() {
                    *q = ((i * 7 + j * 13) % 256) as u8;
                }
                BlockQ4_1 {
                    d: f16::from_f32(0.01 + i as f32 * 0.003),
                    m: f16::from_f32(-0.05 * (i % 3) as f32),
                    qs,
                }
            })
            .collect()
    }

    #[test]
    fn scalar_dot_equals_dequantized_dot_of_quantized_activations() {
        let w = sample_blocks(6);
        let x: Vec<f32> = (0..192)
            .map(|i| ((i * 31) % 17) as f32 * 0.1 - 0.8)
            .collect();
        let mut xq = vec![BlockQ8::default(); 6];
        quantize_row(&x, &mut xq);
        let wf = dequantize(&w);
        // Exact reference: dequantized weights · dequantized activations (offset term uses s).
        let mut want = 0f32;
        for (b, (wb, xb)) in w.iter().zip(&xq).enumerate() {
            let mut s = 0f32;
            for j in 0..QK {
                s += (wf[b * QK + j] - wb.m.to_f32()) * xb.d * xb.qs[j] as f32;
            }
            want += s + wb.m.to_f32() * xb.s;
        }
        let got = dot_scalar(&w, &xq);
        assert!(
            (got - want).abs() < 1e-3 * want.abs().max(1.0),
            "{got} vs {want}"
        );
        // And close to the f32 dot of the original activations.
        let f: f32 = wf.iter().zip(&x).map(|(a, b)| a * b).sum();
        assert!((got - f).abs() < 0.02 * f.abs().max(1.0), "{got} vs {f}");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_dot_equals_scalar_dot() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let w = sample_blocks(18);
        let x: Vec<f32> = (0..576)
            .map(|i| ((i * 29) % 41) as f32 * 0.05 - 1.0)
            .collect();
        let mut xq = vec![BlockQ8::default(); 18];
        quantize_row(&x, &mut xq);
        let a = dot_scalar(&w, &xq);
        let b = unsafe { dot_avx2(&w, &xq) };
        assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "{a} vs {b}");
        let rows: Vec<Vec<BlockQ4_1>> = (0..4)
            .map(|r| sample_blocks(18 + r)[r..].to_vec())
            .collect();
        let four = unsafe { dot4_avx2([&rows[0], &rows[1], &rows[2], &rows[3]], &xq) };
        for r in 0..4 {
            let one = dot_scalar(&rows[r], &xq);
            assert!((four[r] - one).abs() < 1e-4 * one.abs().max(1.0), "row {r}");
        }
    }
}
