//! Q8_0 weights repacked four rows at a time (as [`super::q4_1x4`] does for Q4_1): one
//! contiguous stream per four rows, four scales converted in one vector op.

use half::f16;

use super::q8::{BlockQ8, QK};
use super::q8_0::BlockQ8_0;

/// Block `b` of four consecutive rows (136 bytes).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ8_0x4 {
    /// The rows' scales.
    pub d: [f16; 4],
    /// The rows' values.
    pub qs: [[i8; QK]; 4],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0x4>() == 136);

/// Repacks `(n, kb)` row-major blocks (`n` a multiple of 4) into `(n / 4, kb)` groups.
pub fn repack(blocks: &[BlockQ8_0], n: usize, kb: usize) -> Vec<BlockQ8_0x4> {
    super::group_rows(blocks, n, kb, |r| BlockQ8_0x4 {
        d: r.map(|b| b.d),
        qs: r.map(|b| b.qs),
    })
}

/// The four rows' dot products with `x`, scalar.
pub fn dot_scalar(g: &[BlockQ8_0x4], x: &[BlockQ8]) -> [f32; 4] {
    let mut out = [0f32; 4];
    for (gb, xb) in g.iter().zip(x) {
        for (r, acc) in out.iter_mut().enumerate() {
            let sum: i32 = gb.qs[r]
                .iter()
                .zip(&xb.qs)
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum();
            *acc += gb.d[r].to_f32() * xb.d * sum as f32;
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
pub unsafe fn dot_avx2(g: &[BlockQ8_0x4], x: &[BlockQ8]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); 4];
    for (gb, xb) in g.iter().zip(x) {
        let qx = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        let d4 = _mm_mul_ps(
            _mm_cvtph_ps(_mm_loadl_epi64(gb.d.as_ptr() as *const __m128i)),
            _mm_set1_ps(xb.d),
        );
        let dd = _mm256_set_m128(d4, d4);
        macro_rules! row {
            ($r:literal, $imm:literal) => {{
                let qw = _mm256_loadu_si256(gb.qs[$r].as_ptr() as *const __m256i);
                // |w| (u8) × sign(w)·x (i8): maddubs needs an unsigned first operand.
                let prod = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw)),
                    ones,
                );
                let d = _mm256_permute_ps(dd, $imm);
                acc[$r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(prod), acc[$r]);
            }};
        }
        row!(0, 0x00);
        row!(1, 0x55);
        row!(2, 0xaa);
        row!(3, 0xff);
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
    use crate::kernels::q8_0;

    #[test]
    fn repacked_dots_equal_row_dots() {
        let (n, kb) = (8, 3);
        let blocks: Vec<BlockQ8_0> = (0..n * kb)
            .map(|i| {
                let mut qs = [0i8; QK];
                for (j, q) in qs.iter_mut().enumerate() {
                    *q = (((i * 37 + j * 11) % 255) as i32 - 127) as i8;
                }
                BlockQ8_0 {
                    d: f16::from_f32(0.001 * (1 + i % 5) as f32),
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
        for g in 0..n / 4 {
            let group = &packed[g * kb..(g + 1) * kb];
            let scalar = dot_scalar(group, &xq);
            #[cfg(target_arch = "x86_64")]
            let simd = (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c"))
                .then(|| unsafe { dot_avx2(group, &xq) });
            for r in 0..4 {
                let row = &blocks[(4 * g + r) * kb..(4 * g + r + 1) * kb];
                let want = q8_0::dot_scalar(row, &xq);
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
