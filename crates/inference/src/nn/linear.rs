//! Linear layers: float weights (safetensors) or block-quantized weights (GGUF, or
//! safetensors quantized at load), behind one [`LinearLayer`] type the decoder calls.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::kernels::QuantMatmul;

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
    /// Wraps a GGUF tensor (and optional bias). F32/F16 tensors become float matmuls.
    pub fn from_qtensor(weight: QTensor, bias: Option<Tensor>) -> Result<Self> {
        let dtype = weight.dtype();
        if weight.device().is_cpu() && matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q8_0) {
            if let [n, k] = *weight.shape().dims() {
                let bytes = weight.data()?;
                let op = match dtype {
                    GgmlDType::Q4_1 => QuantMatmul::q4_1(&bytes, n, k),
                    _ => QuantMatmul::q8_0(&bytes, n, k),
                };
                if let Some(op) = op {
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
    /// type's block fall back to Q8_0 (32-wide blocks) and, failing that, stay float.
    pub fn quantize(linear: &Linear, dtype: GgmlDType) -> Result<Self> {
        let w = linear.weight().to_dtype(DType::F32)?;
        let in_dim = w.dim(1)?;
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
        Self::from_qtensor(QTensor::quantize(&w, chosen)?, bias)
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
