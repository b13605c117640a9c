//! `x Wᵀ` for block-quantized `W` on the CPU, as a candle custom op: activations are
//! quantized per row to [`BlockQ8`], output columns are shared out over candle's worker pool.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};

use super::q4_1::{self, BlockQ4_1};
use super::q8::{quantize_row, BlockQ8, QK};

/// Output columns per work item.
const COLS_PER_ITEM: usize = 8;

type DotQ4_1 = unsafe fn(&[BlockQ4_1], &[BlockQ8]) -> f32;

fn best_q4_1_dot() -> DotQ4_1 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        return q4_1::dot_avx2;
    }
    q4_1::dot_scalar
}

/// A `(n, k)` Q4_1 weight matrix with the fastest dot product this CPU has.
pub struct QuantMatmul {
    blocks: Vec<BlockQ4_1>,
    n: usize,
    k: usize,
    dot: DotQ4_1,
}

impl std::fmt::Debug for QuantMatmul {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QuantMatmul(Q4_1, {}x{})", self.n, self.k)
    }
}

impl QuantMatmul {
    /// Wraps raw GGUF Q4_1 data of an `(n, k)` matrix; `None` unless `k` is a multiple of 32
    /// and the byte count fits.
    pub fn q4_1(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        if k % QK != 0 || bytes.len() != n * (k / QK) * q4_1::BLOCK_BYTES {
            return None;
        }
        Some(Self {
            blocks: q4_1::blocks_from_bytes(bytes),
            n,
            k,
            dot: best_q4_1_dot(),
        })
    }

    /// Forces the portable scalar dot product (tests compare it with the SIMD one).
    pub fn with_scalar_kernel(mut self) -> Self {
        self.dot = q4_1::dot_scalar;
        self
    }

    /// `(rows, k)` f32 activations → `(rows, n)`.
    fn run(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let (n, kb) = (self.n, self.k / QK);
        let mut xq = vec![BlockQ8::default(); rows * kb];
        for (row, out) in x.chunks_exact(self.k).zip(xq.chunks_exact_mut(kb)) {
            quantize_row(row, out);
        }
        let mut dst = vec![0f32; rows * n];
        let dst_addr = dst.as_mut_ptr() as usize;
        let (blocks, xq, dot) = (&self.blocks, &xq, self.dot);
        candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(COLS_PER_ITEM), |items| {
            let cols = items.start * COLS_PER_ITEM..(items.end * COLS_PER_ITEM).min(n);
            for j in cols {
                let w = &blocks[j * kb..(j + 1) * kb];
                for (i, xr) in xq.chunks_exact(kb).enumerate() {
                    // SAFETY: `dot` was chosen for this CPU's features; each (i, j) is
                    // written by exactly one work item, inside `dst`'s `rows * n` values.
                    unsafe {
                        let v = dot(w, xr);
                        *(dst_addr as *mut f32).add(i * n + j) = v;
                    }
                }
            }
        });
        dst
    }
}

impl CustomOp1 for QuantMatmul {
    fn name(&self) -> &'static str {
        "vlm-quant-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("quantized matmul: activations must be f32");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("quantized matmul: activations must be contiguous");
        };
        let dims = layout.shape().dims();
        let k = dims.last().copied().unwrap_or(0);
        if k != self.k {
            candle_core::bail!(
                "quantized matmul: inner size {k}, weights expect {}",
                self.k
            );
        }
        let rows = layout.shape().elem_count() / k.max(1);
        let out = self.run(&data[start..end], rows);
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = self.n;
        }
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    #[test]
    fn matches_candle_qmatmul_and_f32_on_q4_1_weights() {
        let dev = Device::Cpu;
        let (n, k) = (40, 128);
        let w = Tensor::randn(0f32, 1., (n, k), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let bytes = q.data().unwrap().to_vec();
        let ours = QuantMatmul::q4_1(&bytes, n, k).unwrap();
        let wf = q.dequantize(&dev).unwrap();
        let candle = QMatMul::from_qtensor(q).unwrap();
        for rows in [1usize, 5] {
            let x = Tensor::randn(0f32, 1., (1, rows, k), &dev).unwrap();
            let got = x.apply_op1_no_bwd(&ours).unwrap();
            assert_eq!(got.dims(), &[1, rows, n]);
            let theirs = candle.forward(&x).unwrap();
            let exact = x.broadcast_matmul(&wf.t().unwrap()).unwrap();
            let d_candle = (&got - &theirs).unwrap().abs().unwrap().max_all().unwrap();
            let d_exact = (&got - &exact).unwrap().abs().unwrap().max_all().unwrap();
            let (d_candle, d_exact) = (
                d_candle.to_scalar::<f32>().unwrap(),
                d_exact.to_scalar::<f32>().unwrap(),
            );
            // Same math as candle's Q4_1×Q8_1 up to rounding of the f16 scales; within
            // activation-rounding error of the dequantized f32 product.
            assert!(d_candle < 0.05, "vs candle {d_candle}");
            assert!(d_exact < 0.3, "vs f32 {d_exact}");
            let scalar = QuantMatmul::q4_1(&bytes, n, k)
                .unwrap()
                .with_scalar_kernel();
            let s = x.apply_op1_no_bwd(&scalar).unwrap();
            let d = (&got - &s).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-3);
        }
    }

    #[test]
    fn refuses_shapes_that_are_not_whole_blocks() {
        assert!(QuantMatmul::q4_1(&[0u8; 20], 1, 30).is_none());
        assert!(QuantMatmul::q4_1(&[0u8; 19], 1, 32).is_none());
    }
}
