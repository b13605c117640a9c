//! Q4_1 weights repacked four rows at a time: for each block position, the four rows'
//! scales, minimums and nibbles side by side. One contiguous stream per four rows, the
//! four scales converted and scaled in one vector op.

use half::f16;

use super::q4_1::BlockQ4_1;
use super::q8::{BlockQ8, QK};

/// Block `b` of four consecutive rows (80 bytes).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ4_1x4 {
    /// The rows' scales.
    pub d: [f16; 4],
    /// The rows' minimums.
    pub m: [f16; 4],
    /// The rows' nibbles (as in [`BlockQ4_1::qs`]).
    pub qs: [[u8; QK / 2]; 4],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_1x4>() == 80);

/// Repacks `(n, kb)` row-major blocks (`n` a multiple of 4) into `(n / 4, kb)` groups.
pub fn repack(blocks: &[BlockQ4_1], n: usize, kb: usize) -> Vec<BlockQ4_1x4> {
    super::group_rows(blocks, n, kb, |r| BlockQ4_1x4 {
        d: r.map(|b| b.d),
        m: r.map(|b| b.m),
        qs: r.map(|b| b.qs),
    })
}

/// The four rows' dot products with `x`, scalar.
pub fn dot_scalar(g: &[BlockQ4_1x4], x: &[BlockQ8]) -> [f32; 4] {
    let mut out = [0f32; 4];
    for (gb, xb) in g.iter().zip(x) {
        for (r, acc) in out.iter_mut().enumerate() {
            let mut sum = 0i32;
            for j in 0..QK / 2 {
                sum += (gb.qs[r][j] & 0x0f) as i32 * xb.qs[j] as i32;
                sum += (gb.qs[r][j] >> 4) as i32 * xb.qs[j + QK / 2] as i32;
            }
            *acc += gb.d[r].to_f32() * xb.d * sum as f32 + gb.m[r].to_f32() * xb.s;
        }
    }
    out
}

/// The four rows' dot products with `x` (AVX2, F16C, FMA).
///
/// # Safety
/// The CPU must support AVX2, F16C and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_avx2(g: &[BlockQ4_1x4], x: &[BlockQ8]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let low_mask = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut offsets = _mm_setzero_ps();
    for (gb, xb) in g.iter().zip(x) {
        let qx = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        let d4 = _mm_mul_ps(
            _mm_cvtph_ps(_mm_loadl_epi64(gb.d.as_ptr() as *const __m128i)),
            _mm_set1_ps(xb.d),
        );
        let m4 = _mm_cvtph_ps(_mm_loadl_epi64(gb.m.as_ptr() as *const __m128i));
        offsets = _mm_fmadd_ps(m4, _mm_set1_ps(xb.s), offsets);
        let dd = _mm256_set_m128(d4, d4);
        macro_rules! row {
            ($r:literal, $imm:literal) => {{
                let packed = _mm_loadu_si128(gb.qs[$r].as_ptr() as *const __m128i);
                let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
                let qw = _mm256_and_si256(both, low_mask);
                let prod = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qx), ones);
                let d = _mm256_permute_ps(dd, $imm);
                acc[$r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(prod), acc[$r]);
            }};
        }
        row!(0, 0x00);
        row!(1, 0x55);
        row!(2, 0xaa);
        row!(3, 0xff);
    }
    let mut offs = [0f32; 4];
    _mm_storeu_ps(offs.as_mut_ptr(), offsets);
    [
        super::hsum_avx(acc[0]) + offs[0],
        super::hsum_avx(acc[1]) + offs[1],
        super::hsum_avx(acc[2]) + offs[2],
        super::hsum_avx(acc[3]) + offs[3],
    ]
}

/// [`dot_avx2`] for two activation rows at once: each weight block is unpacked once and
/// used twice (prefill, where many rows share the weights).
///
/// # Safety
/// The CPU must support AVX2, F16C and FMA; `x0` and `x1` have `g.len()` blocks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot2_avx2(g: &[BlockQ4_1x4], x0: &[BlockQ8], x1: &[BlockQ8]) -> [[f32; 4]; 2] {
    use std::arch::x86_64::*;
    let low_mask = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let mut acc0 = [_mm256_setzero_ps(); 4];
    let mut acc1 = [_mm256_setzero_ps(); 4];
    let mut off0 = _mm_setzero_ps();
    let mut off1 = _mm_setzero_ps();
    for (b, gb) in g.iter().enumerate() {
        let (xa, xb) = (x0.get_unchecked(b), x1.get_unchecked(b));
        let qa = _mm256_loadu_si256(xa.qs.as_ptr() as *const __m256i);
        let qb = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        let d4 = _mm_cvtph_ps(_mm_loadl_epi64(gb.d.as_ptr() as *const __m128i));
        let m4 = _mm_cvtph_ps(_mm_loadl_epi64(gb.m.as_ptr() as *const __m128i));
        off0 = _mm_fmadd_ps(m4, _mm_set1_ps(xa.s), off0);
        off1 = _mm_fmadd_ps(m4, _mm_set1_ps(xb.s), off1);
        let da = _mm_mul_ps(d4, _mm_set1_ps(xa.d));
        let db = _mm_mul_ps(d4, _mm_set1_ps(xb.d));
        let dda = _mm256_set_m128(da, da);
        let ddb = _mm256_set_m128(db, db);
        macro_rules! row {
            ($r:literal, $imm:literal) => {{
                let packed = _mm_loadu_si128(gb.qs[$r].as_ptr() as *const __m128i);
                let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
                let qw = _mm256_and_si256(both, low_mask);
                let pa = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qa), ones);
                let pb = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qb), ones);
                acc0[$r] = _mm256_fmadd_ps(
                    _mm256_permute_ps(dda, $imm),
                    _mm256_cvtepi32_ps(pa),
                    acc0[$r],
                );
                acc1[$r] = _mm256_fmadd_ps(
                    _mm256_permute_ps(ddb, $imm),
                    _mm256_cvtepi32_ps(pb),
                    acc1[$r],
                );
            }};
        }
        row!(0, 0x00);
        row!(1, 0x55);
        row!(2, 0xaa);
        row!(3, 0xff);
    }
    let (mut o0, mut o1) = ([0f32; 4], [0f32; 4]);
    _mm_storeu_ps(o0.as_mut_ptr(), off0);
    _mm_storeu_ps(o1.as_mut_ptr(), off1);
    let mut out = [[0f32; 4]; 2];
    for r in 0..4 {
        out[0][r] = super::hsum_avx(acc0[r]) + o0[r];
        out[1][r] = super::hsum_avx(acc1[r]) + o1[r];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::q4_1;
    use crate::kernels::q8::quantize_row;

    #[test]
    fn repacked_dots_equal_row_dots() {
        let (n, kb) = (8, 5);
        let blocks: Vec<BlockQ4_1> = (0..n * kb)
            .map(|i| {
                let mut qs = [0u8; 16];
                for (j, q) in qs.iter_mut().enumerate() {
                    *q = ((i * 11 + j * 29) % 256) as u8;
                }
                BlockQ4_1 {
                    d: f16::from_f32(0.01 + (i % 7) as f32 * 0.002),
                    m: f16::from_f32(-0.03 * (i % 4) as f32),
                    qs,
                }
            })
            .collect();
        let x: Vec<f32> = (0..kb * QK)
            .map(|i| ((i * 13) % 19) as f32 * 0.1 - 0.9)
            .collect();
        let mut xq = vec![BlockQ8::default(); kb];
        quantize_row(&x, &mut xq);
        let packed = repack(&blocks, n, kb);
        let x2: Vec<f32> = (0..kb * QK)
            .map(|i| ((i * 7) % 23) as f32 * 0.07 - 0.6)
            .collect();
        let mut xq2 = vec![BlockQ8::default(); kb];
        quantize_row(&x2, &mut xq2);
        for g in 0..n / 4 {
            let group = &packed[g * kb..(g + 1) * kb];
            let scalar = dot_scalar(group, &xq);
            #[cfg(target_arch = "x86_64")]
            let simd = if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c") {
                Some(unsafe { dot_avx2(group, &xq) })
            } else {
                None
            };
            for r in 0..4 {
                let row = &blocks[(4 * g + r) * kb..(4 * g + r + 1) * kb];
                let want = q4_1::dot_scalar(row, &xq);
                assert!((scalar[r] - want).abs() < 1e-4 * want.abs().max(1.0));
                #[cfg(target_arch = "x86_64")]
                if let Some(s) = simd {
                    assert!(
                        (s[r] - want).abs() < 1e-4 * want.abs().max(1.0),
                        "{} vs {want}",
                        s[r]
                    );
                }
            }
        }
    }
}
