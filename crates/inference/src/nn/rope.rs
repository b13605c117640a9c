//! Rotary position embeddings (the "rotate half" layout used by Llama-family checkpoints
//! in Hugging Face format).

use candle_core::{DType, Device, Result, Tensor};

use crate::config::{RopeConfig, RopeScaling};

/// Which dimensions of a head are rotated together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RopeLayout {
    /// Dimension `i` pairs with `i + head_dim / 2` (Hugging Face checkpoints).
    #[default]
    Half,
    /// Dimension `2i` pairs with `2i + 1` (llama.cpp's GGUF llama weights, whose q/k rows
    /// the converter permuted).
    Interleaved,
}

/// Precomputed cos/sin tables for every position up to the context length.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
    layout: RopeLayout,
}

impl RotaryEmbedding {
    /// Builds tables of shape `(max_positions, head_dim / 2)` in `dtype`.
    pub fn new(
        cfg: &RopeConfig,
        head_dim: usize,
        max_positions: usize,
        layout: RopeLayout,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let position_scale = match cfg.scaling {
            RopeScaling::None => 1.0,
            RopeScaling::Linear { factor } => 1.0 / factor,
        };
        // Computed in f32 like transformers (inv_freq is f32, positions are f32).
        let inv_freq: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / (cfg.theta as f32).powf(i as f32 / head_dim as f32))
            .collect();
        let half = inv_freq.len();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions: Vec<f32> = (0..max_positions)
            .map(|p| p as f32 * position_scale as f32)
            .collect();
        let positions = Tensor::from_vec(positions, (max_positions, 1), device)?;
        let freqs = positions.broadcast_mul(&inv_freq)?;
        Ok(Self {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
            layout,
        })
    }

    /// Rotates `q` and `k` of shape `(batch, heads, seq, head_dim)` for positions
    /// `offset..offset + seq`.
    pub fn apply(&self, q: &Tensor, k: &Tensor, offset: usize) -> Result<(Tensor, Tensor)> {
        let seq = q.dim(2)?;
        let cos = self.cos.narrow(0, offset, seq)?;
        let sin = self.sin.narrow(0, offset, seq)?;
        let rotate = match self.layout {
            RopeLayout::Half => candle_nn::rotary_emb::rope,
            RopeLayout::Interleaved => candle_nn::rotary_emb::rope_i,
        };
        let q = rotate(&q.contiguous()?, &cos, &sin)?;
        let k = rotate(&k.contiguous()?, &cos, &sin)?;
        Ok((q, k))
    }

    /// The `(max_positions, head_dim / 2)` cos and sin tables and the pairing layout.
    pub fn tables(&self) -> (&Tensor, &Tensor, RopeLayout) {
        (&self.cos, &self.sin, self.layout)
    }

    /// Number of positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }
}
