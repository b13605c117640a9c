//! Conversion of GGUF block types we have no kernel for into the two we do, at load:
//! Q4_0 and Q4_K become Q4_1, Q5_0 becomes Q8_0. Each value is kept: Q4_0 and Q5_0
//! exactly, Q4_K up to rounding its per-32 scale and minimum (`d·sc`, `dmin·m`, computed
//! in f32 by ggml) to f16, at most 2⁻¹¹ of each. All functions take and return raw
//! little-endian GGUF bytes and return `None` when the length is not whole blocks or a
//! converted scale does not fit f16 (the caller then keeps the type as stored).

use half::f16;

use super::q4_1;
use super::q8::QK;
use super::q8_0;

/// Bytes of a Q4_0 block: f16 scale, 16 bytes of nibbles.
const Q4_0_BYTES: usize = 18;
/// Bytes of a Q5_0 block: f16 scale, 32 high bits, 16 bytes of nibbles.
const Q5_0_BYTES: usize = 22;
/// Values in a K-quant super-block.
const QK_K: usize = 256;
/// Bytes of a Q4_K super-block: f16 scale, f16 minimum scale, 12 bytes of 6-bit
/// sub-block scales and minima, 128 bytes of nibbles.
const Q4K_BYTES: usize = 144;

fn f16_at(b: &[u8], at: usize) -> f16 {
    f16::from_le_bytes([b[at], b[at + 1]])
}

/// Appends one Q4_1 block: `d`, `m` and 32 values `0..16` (value = d·q + m).
fn push_q4_1(out: &mut Vec<u8>, d: f16, m: f16, q: &[u8; QK]) {
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&m.to_le_bytes());
    out.extend((0..QK / 2).map(|j| q[j] | (q[j + QK / 2] << 4)));
}

/// Appends one Q8_0 block: `d` and 32 signed values (value = d·q).
fn push_q8_0(out: &mut Vec<u8>, d: f16, q: &[i8; QK]) {
    out.extend_from_slice(&d.to_le_bytes());
    out.extend(q.iter().map(|&v| v as u8));
}

/// Q4_0 (value = d·(q − 8)) as Q4_1 with minimum `−8d`: exact.
pub fn q4_0_to_q4_1(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.len().is_multiple_of(Q4_0_BYTES) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / Q4_0_BYTES * q4_1::BLOCK_BYTES);
    for b in bytes.chunks_exact(Q4_0_BYTES) {
        let d = f16_at(b, 0);
        let m = f16::from_f32(-8.0 * d.to_f32());
        if !m.is_finite() {
            return None;
        }
        out.extend_from_slice(&d.to_le_bytes());
        out.extend_from_slice(&m.to_le_bytes());
        // Same nibble order as Q4_1: low nibbles values 0..16, high nibbles 16..32.
        out.extend_from_slice(&b[2..]);
    }
    Some(out)
}

/// Q5_0 (value = d·(q − 16), q five bits) as Q8_0 with the same scale: exact.
pub fn q5_0_to_q8_0(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.len().is_multiple_of(Q5_0_BYTES) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / Q5_0_BYTES * q8_0::BLOCK_BYTES);
    for b in bytes.chunks_exact(Q5_0_BYTES) {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..];
        let mut q = [0i8; QK];
        for j in 0..QK / 2 {
            let lo = (qs[j] & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
            let hi = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
            q[j] = lo as i8 - 16;
            q[j + QK / 2] = hi as i8 - 16;
        }
        push_q8_0(&mut out, f16_at(b, 0), &q);
    }
    Some(out)
}

/// Sub-block `j`'s 6-bit scale and minimum from a Q4_K/Q5_K `scales` field (ggml's
/// `get_scale_min_k4`).
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Q4_K (per 32 values: value = d·sc·q − dmin·m) as Q4_1 blocks with `d = d·sc` and
/// `m = −dmin·m` rounded to f16.
pub fn q4k_to_q4_1(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.len().is_multiple_of(Q4K_BYTES) {
        return None;
    }
    let sub_blocks = QK_K / QK;
    let mut out = Vec::with_capacity(bytes.len() / Q4K_BYTES * sub_blocks * q4_1::BLOCK_BYTES);
    for b in bytes.chunks_exact(Q4K_BYTES) {
        let (d, dmin) = (f16_at(b, 0).to_f32(), f16_at(b, 2).to_f32());
        let scales = &b[4..16];
        let qs = &b[16..];
        // Each 32 bytes of nibbles hold two sub-blocks: low nibbles, then high nibbles.
        for (pair, chunk) in qs.chunks_exact(QK).enumerate() {
            for (half, shift) in [(0, 0), (1, 4)] {
                let (sc, m) = scale_min_k4(2 * pair + half, scales);
                let mut q = [0u8; QK];
                for (v, byte) in q.iter_mut().zip(chunk) {
                    *v = (byte >> shift) & 0x0f;
                }
                let scale = f16::from_f32(d * sc as f32);
                let min = f16::from_f32(-(dmin * m as f32));
                if !scale.is_finite() || !min.is_finite() {
                    return None;
                }
                push_q4_1(&mut out, scale, min, &q);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{ggml_file, GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    use super::*;

    /// A fixed pseudo-random `(rows, cols)` matrix with row-varying ranges and offsets.
    fn matrix(rows: usize, cols: usize) -> Tensor {
        let mut state = 0x2545_f491u32;
        let vals: Vec<f32> = (0..rows * cols)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let r = (state % 20_000) as f32 / 10_000.0 - 1.0;
                let row = (i / cols) as f32;
                r * (0.5 + row * 0.25) + 0.1 * row
            })
            .collect();
        Tensor::from_vec(vals, (rows, cols), &Device::Cpu).unwrap()
    }

    fn dequantized(dtype: GgmlDType, bytes: &[u8], rows: usize, cols: usize) -> Vec<f32> {
        let blocks = bytes.len() / dtype.type_size();
        assert_eq!(blocks * dtype.block_size(), rows * cols);
        let q = ggml_file::qtensor_from_ggml(dtype, bytes, vec![rows, cols], &Device::Cpu).unwrap();
        q.dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// Quantizes a matrix to `from`, converts it, and returns the largest difference of the
    /// two dequantizations relative to the largest value.
    fn conversion_error(
        from: GgmlDType,
        to: GgmlDType,
        convert: fn(&[u8]) -> Option<Vec<u8>>,
    ) -> f32 {
        let (rows, cols) = (8, 512);
        let q = QTensor::quantize(&matrix(rows, cols), from).unwrap();
        let bytes = q.data().unwrap();
        let converted = convert(&bytes).unwrap();
        let a = dequantized(from, &bytes, rows, cols);
        let b = dequantized(to, &converted, rows, cols);
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        diff / scale
    }

    #[test]
    fn q4_0_becomes_q4_1_exactly() {
        let err = conversion_error(GgmlDType::Q4_0, GgmlDType::Q4_1, q4_0_to_q4_1);
        assert_eq!(err, 0.0);
    }

    #[test]
    fn q5_0_becomes_q8_0_exactly() {
        let err = conversion_error(GgmlDType::Q5_0, GgmlDType::Q8_0, q5_0_to_q8_0);
        assert_eq!(err, 0.0);
    }

    #[test]
    fn q4k_becomes_q4_1_up_to_f16_scales() {
        let err = conversion_error(GgmlDType::Q4K, GgmlDType::Q4_1, q4k_to_q4_1);
        // f16 rounding of d·sc and dmin·m: ≤ 2⁻¹¹ of a value's size, far below a 4-bit step.
        assert!(err < 1e-3, "relative error {err}");
    }

    #[test]
    fn scales_beyond_f16_are_refused() {
        // Q4_0 with d = 10000: its minimum −8d = −80000 does not fit f16.
        let mut block = vec![0u8; Q4_0_BYTES];
        block[..2].copy_from_slice(&f16::from_f32(10_000.0).to_le_bytes());
        assert!(q4_0_to_q4_1(&block).is_none());
    }

    #[test]
    fn partial_blocks_are_refused() {
        assert!(q4_0_to_q4_1(&[0; 17]).is_none());
        assert!(q5_0_to_q8_0(&[0; 23]).is_none());
        assert!(q4k_to_q4_1(&[0; 143]).is_none());
    }
}
