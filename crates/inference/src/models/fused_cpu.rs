//! The decoder as one fused CPU pass for batch-1 f32 inference on quantized weights:
//! every layer runs on plain slices (our quantized kernels, RMSNorm, rope, attention and
//! SiLU-gating written out), with q/k/v and gate/up each fused into one matrix product.
//! This removes candle's per-op allocation and dispatch, which dominate small models.
//! Numerically it is the candle path (same kernels, same f32 formulas).

use std::sync::Arc;

use candle_core::{Result, Tensor};

use crate::config::TextConfig;
use crate::kernels::QuantMatmul;
use crate::nn::activation::Activation;
use crate::nn::cpu_attention;
use crate::nn::kv_cache::KvCache;
use crate::nn::linear::LinearLayer;
use crate::nn::rope::{RopeLayout, RotaryEmbedding};

/// A projection with an optional bias, as slices: one matrix, or several side by side
/// where the parts' formats do not stack into one (e.g. q/k in Q4_1 and v in Q8_0).
struct Proj {
    parts: Vec<Arc<QuantMatmul>>,
    bias: Option<Vec<f32>>,
}

impl Proj {
    fn run(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut y = match self.parts.as_slice() {
            [op] => op.run(x, rows),
            parts => {
                let outs: Vec<Vec<f32>> = parts.iter().map(|p| p.run(x, rows)).collect();
                let width: usize = parts.iter().map(|p| p.out_features()).sum();
                let mut y = Vec::with_capacity(rows * width);
                for r in 0..rows {
                    for (p, out) in parts.iter().zip(&outs) {
                        let n = p.out_features();
                        y.extend_from_slice(&out[r * n..(r + 1) * n]);
                    }
                }
                y
            }
        };
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(b.len()) {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
        }
        y
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    qkv: Proj,
    o: Proj,
    ffn_norm: Vec<f32>,
    gate_up: Proj,
    down: Proj,
}

/// One layer's projections and norms as [`LinearLayer`]s and norm weights.
pub struct LayerParts<'a> {
    /// `input_layernorm` weight.
    pub attn_norm: &'a Tensor,
    /// q, k, v projections.
    pub qkv: [&'a LinearLayer; 3],
    /// Output projection.
    pub o: &'a LinearLayer,
    /// `post_attention_layernorm` weight.
    pub ffn_norm: &'a Tensor,
    /// Gate and up projections.
    pub gate_up: [&'a LinearLayer; 2],
    /// Down projection.
    pub down: &'a LinearLayer,
}

/// The fused decoder; built only when every projection runs on our CPU kernels.
pub struct FusedCpuDecoder {
    layers: Vec<Layer>,
    final_norm: Vec<f32>,
    eps: f32,
    cos: Vec<f32>,
    sin: Vec<f32>,
    layout: RopeLayout,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    hidden: usize,
    intermediate: usize,
    window: Option<usize>,
}

impl std::fmt::Debug for FusedCpuDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FusedCpuDecoder({} layers)", self.layers.len())
    }
}

fn vec1(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

fn fuse(parts: &[&LinearLayer]) -> Result<Option<Proj>> {
    let Some(kernels) = parts.iter().map(|p| p.kernel()).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    // Consecutive parts in the same format become one matrix; all read the same input.
    let ops: Vec<&Arc<QuantMatmul>> = kernels.iter().map(|(op, _)| *op).collect();
    if ops
        .iter()
        .any(|op| op.in_features() != ops[0].in_features())
    {
        return Ok(None);
    }
    let mut parts = Vec::new();
    let mut start = 0;
    while start < ops.len() {
        let mut end = start + 1;
        while end < ops.len() && ops[start].stacks_with(ops[end]) {
            end += 1;
        }
        let op = if end - start == 1 {
            Arc::clone(ops[start])
        } else {
            let run: Vec<&QuantMatmul> = ops[start..end].iter().map(|op| op.as_ref()).collect();
            match QuantMatmul::concat(&run) {
                Some(op) => Arc::new(op),
                None => return Ok(None),
            }
        };
        parts.push(op);
        start = end;
    }
    // One bias over the stacked outputs; zeros for the parts that have none.
    let bias = if kernels.iter().any(|(_, b)| b.is_some()) {
        let mut all = Vec::new();
        for (op, b) in &kernels {
            match b {
                Some(b) => all.extend(vec1(b)?),
                None => all.extend(std::iter::repeat_n(0f32, op.out_features())),
            }
        }
        Some(all)
    } else {
        None
    };
    Ok(Some(Proj { parts, bias }))
}

impl FusedCpuDecoder {
    /// Builds the fused decoder, or `None` when a projection is not on our kernels or the
    /// activation is not SiLU.
    pub fn build(
        cfg: &TextConfig,
        layers: &[LayerParts],
        final_norm: &Tensor,
        rope: &RotaryEmbedding,
    ) -> Result<Option<Self>> {
        if cfg.hidden_act != Activation::Silu {
            return Ok(None);
        }
        let mut fused = Vec::with_capacity(layers.len());
        for l in layers {
            let (Some(qkv), Some(o), Some(gate_up), Some(down)) = (
                fuse(&l.qkv)?,
                fuse(&[l.o])?,
                fuse(&l.gate_up)?,
                fuse(&[l.down])?,
            ) else {
                return Ok(None);
            };
            fused.push(Layer {
                attn_norm: vec1(l.attn_norm)?,
                qkv,
                o,
                ffn_norm: vec1(l.ffn_norm)?,
                gate_up,
                down,
            });
        }
        let (cos, sin, layout) = rope.tables();
        Ok(Some(Self {
            layers: fused,
            final_norm: vec1(final_norm)?,
            eps: cfg.rms_norm_eps as f32,
            cos: vec1(cos)?,
            sin: vec1(sin)?,
            layout,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
            hidden: cfg.hidden_size,
            intermediate: cfg.intermediate_size,
            window: cfg.sliding_window,
        }))
    }

    /// candle's RMSNorm: `x / sqrt(mean(x²) + eps) * w`, row by row.
    fn rms_norm(&self, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; x.len()];
        for (row, dst) in x
            .chunks_exact(self.hidden)
            .zip(out.chunks_exact_mut(self.hidden))
        {
            let sum2: f32 = row.iter().map(|v| v * v).sum();
            let m = (sum2 / self.hidden as f32 + self.eps).sqrt();
            for ((d, v), w) in dst.iter_mut().zip(row).zip(w) {
                *d = v / m * w;
            }
        }
        out
    }

    /// Rotates one head vector in place for position `pos`.
    fn rope(&self, x: &mut [f32], pos: usize) {
        let half = self.head_dim / 2;
        let cos = &self.cos[pos * half..(pos + 1) * half];
        let sin = &self.sin[pos * half..(pos + 1) * half];
        match self.layout {
            RopeLayout::Half => {
                for i in 0..half {
                    let (a, b) = (x[i], x[i + half]);
                    x[i] = a * cos[i] - b * sin[i];
                    x[i + half] = a * sin[i] + b * cos[i];
                }
            }
            RopeLayout::Interleaved => {
                for i in 0..half {
                    let (a, b) = (x[2 * i], x[2 * i + 1]);
                    x[2 * i] = a * cos[i] - b * sin[i];
                    x[2 * i + 1] = a * sin[i] + b * cos[i];
                }
            }
        }
    }

    /// Runs the layers over `(seq, hidden)` embeddings after the cached positions and
    /// returns the final-norm hidden states `(seq, hidden)`.
    pub fn forward(&self, embeds: Vec<f32>, seq: usize, cache: &mut KvCache) -> Result<Vec<f32>> {
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
        let offset = cache.seq_len();
        let scale = (d as f32).powf(-0.5);
        let mut x = embeds;
        let mut q = vec![0f32; h * seq * d];
        let mut k = vec![0f32; kvh * seq * d];
        let mut v = vec![0f32; kvh * seq * d];
        for (i, layer) in self.layers.iter().enumerate() {
            let normed = self.rms_norm(&x, &layer.attn_norm);
            let qkv = layer.qkv.run(&normed, seq);
            let width = (h + 2 * kvh) * d;
            // (seq, [q heads | k heads | v heads]) → head-major (heads, seq, d), roped.
            for t in 0..seq {
                let row = &qkv[t * width..(t + 1) * width];
                for hh in 0..h {
                    let dst = &mut q[(hh * seq + t) * d..(hh * seq + t + 1) * d];
                    dst.copy_from_slice(&row[hh * d..(hh + 1) * d]);
                    self.rope(dst, offset + t);
                }
                for hh in 0..kvh {
                    let dst = &mut k[(hh * seq + t) * d..(hh * seq + t + 1) * d];
                    dst.copy_from_slice(&row[(h + hh) * d..(h + hh + 1) * d]);
                    self.rope(dst, offset + t);
                    v[(hh * seq + t) * d..(hh * seq + t + 1) * d]
                        .copy_from_slice(&row[(h + kvh + hh) * d..(h + kvh + hh + 1) * d]);
                }
            }
            let layer_cache = cache
                .layer_mut(i)
                .ok_or_else(|| candle_core::Error::Msg(format!("no cache for layer {i}")))?;
            let kv = layer_cache.cpu_mut(kvh, d);
            kv.append(&k, &v, seq);
            let attn = cpu_attention::attend(&q, h, seq, kv, offset, self.window, scale);
            let o = layer.o.run(&attn, seq);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let normed = self.rms_norm(&x, &layer.ffn_norm);
            let gu = layer.gate_up.run(&normed, seq);
            let n = self.intermediate;
            let mut act = vec![0f32; seq * n];
            for (row, dst) in gu.chunks_exact(2 * n).zip(act.chunks_exact_mut(n)) {
                let (gate, up) = row.split_at(n);
                for ((a, g), u) in dst.iter_mut().zip(gate).zip(up) {
                    *a = g / (1.0 + (-g).exp()) * u;
                }
            }
            let down = layer.down.run(&act, seq);
            x.iter_mut().zip(&down).for_each(|(a, b)| *a += b);
        }
        Ok(self.rms_norm(&x, &self.final_norm))
    }
}
