//! Linear layers: float weights (safetensors) or block-quantized weights (GGUF, or
//! safetensors quantized at load), behind one [`LinearLayer`] type the decoder calls.

use std::sync::Arc;

use candle_core::quantized::{ggml_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::kernels::{transcode, QuantMatmul};

/// Which block-quantized types run on our CPU kernels (`crate::kernels`), which only
/// exist for Q4_1 and Q8_0; the rest run on candle's kernel for their type.
/// `--quantize` follows it too: under `Convert`, q5k/q6k become Q8_0 at quantization.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QuantKernels {
    /// Convert at load: Q4_0 and Q4_K to Q4_1, Q5_0 to Q8_0 (values kept, up to f16
    /// rounding of Q4_K's sub-block scales); Q5_1, Q5_K and Q6_K requantized to Q8_0
    /// (rounding ≤ half a Q8_0 step, a quarter of a 6-bit one). Q2_K, Q3_K stay on candle.
    #[default]
    Convert,
    /// Only Q4_1 and Q8_0 on our kernels; every other type as stored, on candle's kernels.
    AsStored,
}

/// Types our kernels take only by requantizing them to Q8_0 (no lossless conversion).
fn requantized_to_q8_0(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q5_1 | GgmlDType::Q5K | GgmlDType::Q6K)
}

/// Rows requantized at a time (bounds the f32 copy of a large matrix).
const REQUANT_ROWS: usize = 256;

/// `(n, k)` weights of a type without a lossless conversion, as Q8_0 blocks.
fn requantize_q8_0(weight: &QTensor, n: usize, k: usize) -> Result<Option<QuantMatmul>> {
    let dtype = weight.dtype();
    if !k.is_multiple_of(dtype.block_size()) || !k.is_multiple_of(32) {
        return Ok(None);
    }
    let row_bytes = k / dtype.block_size() * dtype.type_size();
    if row_bytes == 0 {
        return Ok(None);
    }
    let data = weight.data()?;
    let mut out = Vec::with_capacity(n * k / 32 * 34);
    for (i, chunk) in data.chunks(REQUANT_ROWS * row_bytes).enumerate() {
        let rows = chunk.len() / row_bytes;
        let q = ggml_file::qtensor_from_ggml(dtype, chunk, vec![rows, k], &Device::Cpu)?;
        let f = q.dequantize(&Device::Cpu)?;
        out.extend_from_slice(&QTensor::quantize(&f, GgmlDType::Q8_0)?.data()?);
        tracing::trace!(chunk = i, rows, "requantized");
    }
    Ok(QuantMatmul::q8_0(&out, n, k))
}

/// Our kernel for `(n, k)` weights on the CPU, converting the type when `kernels` allows.
fn cpu_kernel(
    weight: &QTensor,
    n: usize,
    k: usize,
    kernels: QuantKernels,
) -> Result<Option<QuantMatmul>> {
    let convert = kernels == QuantKernels::Convert;
    let data = || weight.data();
    Ok(match weight.dtype() {
        GgmlDType::Q4_1 => QuantMatmul::q4_1(&data()?, n, k),
        GgmlDType::Q8_0 => QuantMatmul::q8_0(&data()?, n, k),
        GgmlDType::Q4_0 if convert => {
            transcode::q4_0_to_q4_1(&data()?).and_then(|b| QuantMatmul::q4_1(&b, n, k))
        }
        GgmlDType::Q4K if convert => {
            transcode::q4k_to_q4_1(&data()?).and_then(|b| QuantMatmul::q4_1(&b, n, k))
        }
        GgmlDType::Q5_0 if convert => {
            transcode::q5_0_to_q8_0(&data()?).and_then(|b| QuantMatmul::q8_0(&b, n, k))
        }
        t if convert && requantized_to_q8_0(t) => requantize_q8_0(weight, n, k)?,
        _ => None,
    })
}

/// Loads `{prefix}.weight` (and `{prefix}.bias` when `bias`) as an `(out, in)` linear layer.
pub fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    if bias {
        candle_nn::linear(in_dim, out_dim, vb)
    } else {
        candle_nn::linear_no_bias(in_dim, out_dim, vb)
    }
}

/// A projection `x Wᵀ (+ b)` with float or quantized weights.
#[derive(Debug, Clone)]
pub enum LinearLayer {
    /// Float weights in the model dtype.
    Float(Linear),
    /// Block-quantized weights; the activations are f32 and the bias (if any) f32.
    Quantized {
        /// The `(out, in)` weight matrix.
        weight: QMatMul,
        /// Optional `(out,)` bias.
        bias: Option<Tensor>,
        /// The ggml type the weights are stored in.
        dtype: GgmlDType,
    },
    /// Block-quantized weights on the CPU, run by our own kernels (`crate::kernels`).
    Kernel {
        /// The weights and kernel.
        op: Arc<QuantMatmul>,
        /// Optional `(out,)` bias.
        bias: Option<Tensor>,
        /// The ggml type the weights are stored in.
        dtype: GgmlDType,
    },
}

impl LinearLayer {
    /// Wraps a GGUF tensor (and optional bias): on the CPU our kernels where `kernels`
    /// allows (see [`QuantKernels`]), otherwise candle's quantized matmul.
    pub fn from_qtensor(
        weight: QTensor,
        bias: Option<Tensor>,
        kernels: QuantKernels,
    ) -> Result<Self> {
        let dtype = weight.dtype();
        if weight.device().is_cpu() {
            if let [n, k] = *weight.shape().dims() {
                if let Some(op) = cpu_kernel(&weight, n, k, kernels)? {
                    return Ok(Self::Kernel {
                        op: Arc::new(op),
                        bias,
                        dtype,
                    });
                }
            }
        }
        Ok(Self::Quantized {
            weight: QMatMul::from_qtensor(weight)?,
            bias,
            dtype,
        })
    }

    /// Quantizes a float layer to `dtype`. Rows whose width is not a multiple of the
    /// type's block fall back to Q8_0 (32-wide blocks) and, failing that, stay float. With
    /// [`QuantKernels::Convert`] on the CPU, types our kernels would take only by
    /// requantizing to Q8_0 (Q5_1, Q5_K, Q6_K) are quantized to Q8_0 directly: one rounding
    /// instead of two.
    pub fn quantize(linear: &Linear, dtype: GgmlDType, kernels: QuantKernels) -> Result<Self> {
        let w = linear.weight().to_dtype(DType::F32)?;
        let in_dim = w.dim(1)?;
        let convert = kernels == QuantKernels::Convert && w.device().is_cpu();
        let dtype = if convert && requantized_to_q8_0(dtype) {
            GgmlDType::Q8_0
        } else {
            dtype
        };
        let chosen = [dtype, GgmlDType::Q8_0]
            .into_iter()
            .find(|t| in_dim % t.block_size() == 0);
        let Some(chosen) = chosen else {
            return Ok(Self::Float(linear.clone()));
        };
        if chosen != dtype {
            tracing::debug!(?dtype, ?chosen, in_dim, "row width not a block multiple");
        }
        let bias = match linear.bias() {
            Some(b) => Some(b.to_dtype(DType::F32)?),
            None => None,
        };
        Self::from_qtensor(QTensor::quantize(&w, chosen)?, bias, kernels)
    }

    /// Our CPU kernel and bias, when the weights run on one.
    pub fn kernel(&self) -> Option<(&Arc<QuantMatmul>, Option<&Tensor>)> {
        match self {
            Self::Kernel { op, bias, .. } => Some((op, bias.as_ref())),
            _ => None,
        }
    }

    /// The ggml type of quantized weights, `None` for float ones.
    pub fn quant_type(&self) -> Option<GgmlDType> {
        match self {
            Self::Float(_) => None,
            Self::Quantized { dtype, .. } | Self::Kernel { dtype, .. } => Some(*dtype),
        }
    }
}

impl From<Linear> for LinearLayer {
    fn from(l: Linear) -> Self {
        Self::Float(l)
    }
}

impl Module for LinearLayer {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Float(l) => l.forward(xs),
            Self::Quantized { weight, bias, .. } => {
                let ys = weight.forward(xs)?;
                match bias {
                    Some(b) => ys.broadcast_add(b),
                    None => Ok(ys),
                }
            }
            Self::Kernel { op, bias, .. } => {
                let ys = xs.contiguous()?.apply_op1_no_bwd(op.as_ref())?;
                match bias {
                    Some(b) => ys.broadcast_add(b),
                    None => Ok(ys),
                }
            }
        }
    }
}
