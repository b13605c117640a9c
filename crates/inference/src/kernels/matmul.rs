//! `x Wᵀ` for block-quantized `W` on the CPU, as a candle custom op: activations are
//! quantized per row to [`BlockQ8`], output columns are shared out over candle's worker pool.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};

use super::q4_1::{self, BlockQ4_1};
use super::q4_1x4::{self, BlockQ4_1x4};
use super::q8::{quantize_row, BlockQ8, QK};
use super::q8_0::{self, BlockQ8_0};
use super::q8_0x4::{self, BlockQ8_0x4};

/// Output columns per work item (a multiple of 4: the kernels do four rows at a time).
const COLS_PER_ITEM: usize = 8;

/// A dot product of one weight row with activations.
type DotOne<T> = unsafe fn(&[T], &[BlockQ8]) -> f32;
/// Four weight rows' dot products with the same activations.
type DotFour<T> = unsafe fn([&[T]; 4], &[BlockQ8]) -> [f32; 4];

/// Dot products of one weight format: one row, or four rows at once.
struct Kernel<T: 'static> {
    one: DotOne<T>,
    four: Option<DotFour<T>>,
}

impl<T> Clone for Kernel<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Kernel<T> {}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn q4_1_kernel(simd: bool) -> Kernel<BlockQ4_1> {
    #[cfg(target_arch = "x86_64")]
    if simd && has_avx2() {
        return Kernel {
            one: q4_1::dot_avx2,
            four: Some(q4_1::dot4_avx2),
        };
    }
    let _ = simd;
    Kernel {
        one: q4_1::dot_scalar,
        four: None,
    }
}

fn q8_0_kernel(simd: bool) -> Kernel<BlockQ8_0> {
    #[cfg(target_arch = "x86_64")]
    if simd && has_avx2() {
        return Kernel {
            one: q8_0::dot_scalar,
            four: Some(q8_0::dot4_avx2),
        };
    }
    let _ = simd;
    Kernel {
        one: q8_0::dot_scalar,
        four: None,
    }
}

/// Four rows' dot products from a repacked group.
type DotGroup<G> = unsafe fn(&[G], &[BlockQ8]) -> [f32; 4];
/// The same for two activation rows at once.
type DotGroup2<G> = unsafe fn(&[G], &[BlockQ8], &[BlockQ8]) -> [[f32; 4]; 2];

/// Kernels for repacked four-row groups: one activation row, and two when available.
struct GroupKernel<G: 'static> {
    one: DotGroup<G>,
    two: Option<DotGroup2<G>>,
}

impl<G> Clone for GroupKernel<G> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<G> Copy for GroupKernel<G> {}

fn q8_0x4_kernel(simd: bool) -> GroupKernel<BlockQ8_0x4> {
    #[cfg(target_arch = "x86_64")]
    if simd && has_avx2() && is_x86_feature_detected!("f16c") {
        return GroupKernel {
            one: q8_0x4::dot_avx2,
            two: None,
        };
    }
    let _ = simd;
    GroupKernel {
        one: q8_0x4::dot_scalar,
        two: None,
    }
}

fn q4_1x4_kernel(simd: bool) -> GroupKernel<BlockQ4_1x4> {
    #[cfg(target_arch = "x86_64")]
    if simd && has_avx2() && is_x86_feature_detected!("f16c") {
        return GroupKernel {
            one: q4_1x4::dot_avx2,
            two: Some(q4_1x4::dot2_avx2),
        };
    }
    let _ = simd;
    GroupKernel {
        one: q4_1x4::dot_scalar,
        two: None,
    }
}

/// The weights in one of the formats we have kernels for.
enum Weights {
    Q4_1(Vec<BlockQ4_1>, Kernel<BlockQ4_1>),
    /// Q4_1 repacked four rows at a time (row count a multiple of 4).
    Q4_1x4(Vec<BlockQ4_1x4>, GroupKernel<BlockQ4_1x4>),
    /// Q8_0 repacked four rows at a time.
    Q8_0x4(Vec<BlockQ8_0x4>, GroupKernel<BlockQ8_0x4>),
    Q8_0(Vec<BlockQ8_0>, Kernel<BlockQ8_0>),
}

/// A `(n, k)` block-quantized weight matrix with the fastest kernel this CPU has.
pub struct QuantMatmul {
    weights: Weights,
    n: usize,
    k: usize,
}

impl std::fmt::Debug for QuantMatmul {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.weights {
            Weights::Q4_1(..) | Weights::Q4_1x4(..) => "Q4_1",
            Weights::Q8_0(..) | Weights::Q8_0x4(..) => "Q8_0",
        };
        write!(f, "QuantMatmul({kind}, {}x{})", self.n, self.k)
    }
}

fn whole_blocks(bytes: &[u8], n: usize, k: usize, block_bytes: usize) -> bool {
    k.is_multiple_of(QK) && bytes.len() == n * (k / QK) * block_bytes
}

impl QuantMatmul {
    /// Wraps raw GGUF Q4_1 data of an `(n, k)` matrix; `None` unless `k` is a multiple of 32
    /// and the byte count fits.
    pub fn q4_1(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        if !whole_blocks(bytes, n, k, q4_1::BLOCK_BYTES) {
            return None;
        }
        let blocks = q4_1::blocks_from_bytes(bytes);
        let weights = if n.is_multiple_of(4) {
            Weights::Q4_1x4(q4_1x4::repack(&blocks, n, k / QK), q4_1x4_kernel(true))
        } else {
            Weights::Q4_1(blocks, q4_1_kernel(true))
        };
        Some(Self { weights, n, k })
    }

    /// Wraps raw GGUF Q8_0 data of an `(n, k)` matrix (same conditions as [`Self::q4_1`]).
    pub fn q8_0(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        if !whole_blocks(bytes, n, k, q8_0::BLOCK_BYTES) {
            return None;
        }
        let blocks = q8_0::blocks_from_bytes(bytes);
        let weights = if n.is_multiple_of(4) {
            Weights::Q8_0x4(q8_0x4::repack(&blocks, n, k / QK), q8_0x4_kernel(true))
        } else {
            Weights::Q8_0(blocks, q8_0_kernel(true))
        };
        Some(Self { weights, n, k })
    }

    /// Forces the portable scalar kernels (tests compare them with the SIMD ones).
    pub fn with_scalar_kernel(mut self) -> Self {
        self.weights = match self.weights {
            Weights::Q4_1(b, _) => Weights::Q4_1(b, q4_1_kernel(false)),
            Weights::Q8_0(b, _) => Weights::Q8_0(b, q8_0_kernel(false)),
            Weights::Q4_1x4(b, _) => Weights::Q4_1x4(b, q4_1x4_kernel(false)),
            Weights::Q8_0x4(b, _) => Weights::Q8_0x4(b, q8_0x4_kernel(false)),
        };
        self
    }

    /// Stacks matrices with the same input width and format into one `(Σn, k)` matrix, so
    /// that e.g. q/k/v projections run as one product. `None` if they differ.
    pub fn concat(parts: &[&QuantMatmul]) -> Option<Self> {
        let first = parts.first()?;
        let k = first.k;
        if parts.iter().any(|p| p.k != k) {
            return None;
        }
        let n = parts.iter().map(|p| p.n).sum();
        /// Every part's blocks, in order, when all hold the variant `pick` selects.
        fn stacked<T: Clone>(
            parts: &[&QuantMatmul],
            pick: impl Fn(&Weights) -> Option<&Vec<T>>,
        ) -> Option<Vec<T>> {
            let mut all = Vec::new();
            for p in parts {
                all.extend_from_slice(pick(&p.weights)?);
            }
            Some(all)
        }
        let weights = match &first.weights {
            Weights::Q4_1(_, kernel) => Weights::Q4_1(
                stacked(parts, |w| match w {
                    Weights::Q4_1(b, _) => Some(b),
                    _ => None,
                })?,
                *kernel,
            ),
            Weights::Q8_0(_, kernel) => Weights::Q8_0(
                stacked(parts, |w| match w {
                    Weights::Q8_0(b, _) => Some(b),
                    _ => None,
                })?,
                *kernel,
            ),
            Weights::Q4_1x4(_, kernel) => Weights::Q4_1x4(
                stacked(parts, |w| match w {
                    Weights::Q4_1x4(b, _) => Some(b),
                    _ => None,
                })?,
                *kernel,
            ),
            Weights::Q8_0x4(_, kernel) => Weights::Q8_0x4(
                stacked(parts, |w| match w {
                    Weights::Q8_0x4(b, _) => Some(b),
                    _ => None,
                })?,
                *kernel,
            ),
        };
        Some(Self { weights, n, k })
    }

    /// Whether [`Self::concat`] can stack `other` under `self` (same format and width).
    pub fn stacks_with(&self, other: &QuantMatmul) -> bool {
        self.k == other.k
            && std::mem::discriminant(&self.weights) == std::mem::discriminant(&other.weights)
    }

    /// Output features (rows of the weight matrix).
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.k
    }

    /// `(rows, k)` f32 activations → `(rows, n)`.
    pub fn run(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let kb = self.k / QK;
        let mut xq = vec![BlockQ8::default(); rows * kb];
        if rows < 8 {
            for (row, out) in x.chunks_exact(self.k).zip(xq.chunks_exact_mut(kb)) {
                quantize_row(row, out);
            }
        } else {
            let (xq_addr, k) = (xq.as_mut_ptr() as usize, self.k);
            candle_core::utils::barrier_pool().execute_chunked(rows, |range| {
                for i in range {
                    // SAFETY: row i's blocks are written by this work item only.
                    let out = unsafe {
                        std::slice::from_raw_parts_mut((xq_addr as *mut BlockQ8).add(i * kb), kb)
                    };
                    quantize_row(&x[i * k..(i + 1) * k], out);
                }
            });
        }
        let mut dst = vec![0f32; rows * self.n];
        match &self.weights {
            Weights::Q4_1(blocks, kernel) => products(blocks, *kernel, &xq, kb, self.n, &mut dst),
            Weights::Q8_0(blocks, kernel) => products(blocks, *kernel, &xq, kb, self.n, &mut dst),
            Weights::Q4_1x4(groups, kernel) => {
                grouped_products(groups, *kernel, &xq, kb, self.n, &mut dst)
            }
            Weights::Q8_0x4(groups, kernel) => {
                grouped_products(groups, *kernel, &xq, kb, self.n, &mut dst)
            }
        }
        dst
    }
}

/// [`products`] for weights repacked in groups of four rows.
fn grouped_products<G: Sync>(
    groups: &[G],
    kernel: GroupKernel<G>,
    xq: &[BlockQ8],
    kb: usize,
    n: usize,
    dst: &mut [f32],
) {
    let dst_addr = dst.as_mut_ptr() as usize;
    const GROUPS_PER_ITEM: usize = COLS_PER_ITEM / 4;
    let n_groups = n / 4;
    candle_core::utils::barrier_pool().execute_chunked(
        n_groups.div_ceil(GROUPS_PER_ITEM),
        |items| {
            let end = (items.end * GROUPS_PER_ITEM).min(n_groups);
            for g in items.start * GROUPS_PER_ITEM..end {
                let group = &groups[g * kb..(g + 1) * kb];
                let rows = xq.len() / kb;
                let x = |i: usize| &xq[i * kb..(i + 1) * kb];
                // SAFETY: the kernels were chosen for this CPU; columns 4g..4g+4 of each row
                // are written by this work item only, inside `dst`'s `rows * n` values.
                unsafe {
                    let out = |i: usize| (dst_addr as *mut f32).add(i * n + 4 * g);
                    let mut i = 0;
                    if let Some(two) = kernel.two {
                        while i + 2 <= rows {
                            let v = two(group, x(i), x(i + 1));
                            std::ptr::copy_nonoverlapping(v[0].as_ptr(), out(i), 4);
                            std::ptr::copy_nonoverlapping(v[1].as_ptr(), out(i + 1), 4);
                            i += 2;
                        }
                    }
                    for i in i..rows {
                        let v = (kernel.one)(group, x(i));
                        std::ptr::copy_nonoverlapping(v.as_ptr(), out(i), 4);
                    }
                }
            }
        },
    );
}

/// `dst[i * n + j] = w_j · x_i`, columns shared out over candle's worker pool.
fn products<T: Sync>(
    blocks: &[T],
    kernel: Kernel<T>,
    xq: &[BlockQ8],
    kb: usize,
    n: usize,
    dst: &mut [f32],
) {
    let dst_addr = dst.as_mut_ptr() as usize;
    let row = |j: usize| &blocks[j * kb..(j + 1) * kb];
    candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(COLS_PER_ITEM), |items| {
        let end = (items.end * COLS_PER_ITEM).min(n);
        let mut j = items.start * COLS_PER_ITEM;
        // SAFETY: the kernels were chosen for this CPU's features and get rows of `kb`
        // blocks; each (i, j) of `dst` (`rows * n` values) is written by one work item.
        unsafe {
            let out = dst_addr as *mut f32;
            if let Some(four) = kernel.four {
                while j + 4 <= end {
                    let w = [row(j), row(j + 1), row(j + 2), row(j + 3)];
                    for (i, xr) in xq.chunks_exact(kb).enumerate() {
                        let v = four(w, xr);
                        std::ptr::copy_nonoverlapping(v.as_ptr(), out.add(i * n + j), 4);
                    }
                    j += 4;
                }
            }
            for j in j..end {
                for (i, xr) in xq.chunks_exact(kb).enumerate() {
                    *out.add(i * n + j) = (kernel.one)(row(j), xr);
                }
            }
        }
    });
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

    /// Fixed pseudo-random values in [-2, 2) (tests must not depend on a random draw).
    fn values(dims: (usize, usize), seed: u64) -> Tensor {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let v: Vec<f32> = (0..dims.0 * dims.1)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            })
            .collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    #[test]
    fn matches_candle_qmatmul_and_f32_on_q4_1_weights() {
        let dev = Device::Cpu;
        let (n, k) = (42, 128);
        let w = values((n, k), 1);
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let bytes = q.data().unwrap().to_vec();
        let ours = QuantMatmul::q4_1(&bytes, n, k).unwrap();
        let wf = q.dequantize(&dev).unwrap();
        let candle = QMatMul::from_qtensor(q).unwrap();
        for rows in [1usize, 5, 9] {
            let x = values((rows, k), 2).unsqueeze(0).unwrap();
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
    fn q8_0_matches_f32_and_scalar() {
        // 43 rows: row by row; 44 rows: repacked four at a time.
        for n in [43usize, 44] {
            q8_0_case(n);
        }
    }

    fn q8_0_case(n: usize) {
        let dev = Device::Cpu;
        let k = 96;
        let w = values((n, k), 1);
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let bytes = q.data().unwrap().to_vec();
        let ours = QuantMatmul::q8_0(&bytes, n, k).unwrap();
        let scalar = QuantMatmul::q8_0(&bytes, n, k)
            .unwrap()
            .with_scalar_kernel();
        let wf = q.dequantize(&dev).unwrap();
        let x = values((3, k), 3);
        let got = x.apply_op1_no_bwd(&ours).unwrap();
        let exact = x.matmul(&wf.t().unwrap()).unwrap();
        let s = x.apply_op1_no_bwd(&scalar).unwrap();
        let max = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(max(&got, &exact) < 0.3, "vs f32 {}", max(&got, &exact));
        assert!(max(&got, &s) < 1e-3);
    }

    #[test]
    fn refuses_shapes_that_are_not_whole_blocks() {
        assert!(QuantMatmul::q4_1(&[0u8; 20], 1, 30).is_none());
        assert!(QuantMatmul::q4_1(&[0u8; 19], 1, 32).is_none());
    }
}
