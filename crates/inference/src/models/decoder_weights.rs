//! Where a [`Decoder`](super::decoder::Decoder)'s weights come from: float safetensors
//! (optionally quantized at load) under Hugging Face names, or a GGUF file under
//! llama.cpp names. Callers ask by the Hugging Face name relative to the text model root
//! (`layers.3.self_attn.q_proj`, `norm`, `embed_tokens`).

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use crate::gguf::weights::GgufTensors;
use crate::nn::embedding::TokenEmbedding;
use crate::nn::linear::{linear, LinearLayer, QuantKernels};
use crate::nn::rope::RopeLayout;

/// A source of decoder weights.
pub enum DecoderWeights<'a> {
    /// Safetensors through a var builder rooted at the text model (`…language_model`),
    /// the LM head at `head`; linears quantized to `quantize` when set.
    Float {
        /// The text model root.
        vb: VarBuilder<'a>,
        /// The LM head (`lm_head`).
        head: VarBuilder<'a>,
        /// In-situ quantization of every decoder linear and the head.
        quantize: Option<GgmlDType>,
        /// Which quantized types run on our CPU kernels.
        kernels: QuantKernels,
    },
    /// A llama- or qwen2-architecture GGUF file.
    Gguf {
        /// The open file.
        file: &'a GgufTensors,
        /// How its q/k rows are laid out for rope.
        rope: RopeLayout,
        /// Dequantize every matrix to f32 (exact f32 math instead of quantized kernels).
        dequantize: bool,
        /// Allow the fused CPU decoder pass.
        fuse: bool,
        /// Which block types run on our CPU kernels.
        kernels: QuantKernels,
    },
}

fn err(e: crate::Error) -> candle_core::Error {
    // The caller wraps the message as a weights error again: keep only the inner text.
    match e {
        crate::Error::Weights(m) => candle_core::Error::Msg(m),
        other => candle_core::Error::Msg(other.to_string()),
    }
}

/// llama.cpp's tensor name for a Hugging Face module path (without `.weight`).
fn gguf_name(hf: &str) -> String {
    const MAP: [(&str, &str); 9] = [
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
        ("input_layernorm", "attn_norm"),
        ("post_attention_layernorm", "ffn_norm"),
    ];
    match hf {
        "embed_tokens" => return "token_embd".into(),
        "norm" => return "output_norm".into(),
        "lm_head" => return "output".into(),
        _ => {}
    }
    if let Some(rest) = hf.strip_prefix("layers.") {
        if let Some((layer, module)) = rest.split_once('.') {
            if let Some((_, g)) = MAP.iter().find(|(h, _)| *h == module) {
                return format!("blk.{layer}.{g}");
            }
        }
    }
    hf.to_string()
}

impl DecoderWeights<'_> {
    /// The dtype activations run in.
    pub fn dtype(&self) -> DType {
        match self {
            Self::Float { vb, .. } => vb.dtype(),
            Self::Gguf { .. } => DType::F32,
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        match self {
            Self::Float { vb, .. } => vb.device().clone(),
            Self::Gguf { file, .. } => file.device().clone(),
        }
    }

    /// Whether the decoder may use its fused CPU pass.
    pub fn allow_fused(&self) -> bool {
        match self {
            Self::Float { .. } => true,
            Self::Gguf { fuse, .. } => *fuse,
        }
    }

    /// How q/k are laid out for rotary embeddings.
    pub fn rope_layout(&self) -> RopeLayout {
        match self {
            Self::Float { .. } => RopeLayout::Half,
            Self::Gguf { rope, .. } => *rope,
        }
    }

    /// The q/k layout of a GGUF text model: llama.cpp's converter permutes llama's q/k rows
    /// so that rotated pairs are adjacent (GPT-J style); qwen2 keeps Hugging Face's halves.
    pub fn gguf_rope_layout(kind: crate::config::TextKind) -> RopeLayout {
        match kind {
            crate::config::TextKind::Llama | crate::config::TextKind::Mistral => {
                RopeLayout::Interleaved
            }
            crate::config::TextKind::Qwen2 => RopeLayout::Half,
        }
    }

    /// A linear layer `name` mapping `in_dim` → `out_dim`.
    pub fn linear(
        &self,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<LinearLayer> {
        match self {
            Self::Float {
                vb,
                quantize,
                kernels,
                ..
            } => {
                let l = linear(in_dim, out_dim, bias, vb.pp(name))?;
                match quantize {
                    Some(q) => LinearLayer::quantize(&l, *q, *kernels),
                    None => Ok(LinearLayer::Float(l)),
                }
            }
            Self::Gguf {
                file,
                dequantize,
                kernels,
                ..
            } => Self::gguf_linear(
                file,
                &gguf_name(name),
                [in_dim, out_dim],
                bias,
                *dequantize,
                *kernels,
            ),
        }
    }

    fn gguf_linear(
        g: &GgufTensors,
        name: &str,
        [in_dim, out_dim]: [usize; 2],
        bias: bool,
        dequantize: bool,
        kernels: QuantKernels,
    ) -> Result<LinearLayer> {
        let w = g
            .get(&format!("{name}.weight"), &[out_dim, in_dim])
            .map_err(err)?;
        let b = if bias {
            let b = g.get(&format!("{name}.bias"), &[out_dim]).map_err(err)?;
            Some(b.dequantize(g.device())?)
        } else {
            None
        };
        if dequantize {
            let w = w.dequantize(g.device())?;
            return Ok(LinearLayer::Float(candle_nn::Linear::new(w, b)));
        }
        LinearLayer::from_qtensor(w, b, kernels)
    }

    /// A float vector `name.weight` of `size` (norm weights), in the activation dtype.
    pub fn vector(&self, name: &str, size: usize) -> Result<Tensor> {
        match self {
            Self::Float { vb, .. } => vb.pp(name).get(size, "weight"),
            Self::Gguf { file: g, .. } => g
                .get(&format!("{}.weight", gguf_name(name)), &[size])
                .map_err(err)?
                .dequantize(g.device()),
        }
    }

    /// The `(vocab, hidden)` token embeddings: in the activation dtype, or for a
    /// block-quantized GGUF table on the CPU kept quantized (rows dequantized on lookup).
    pub fn token_embedding(&self, vocab: usize, hidden: usize) -> Result<TokenEmbedding> {
        match self {
            Self::Float { vb, .. } => {
                TokenEmbedding::dense(vb.pp("embed_tokens").get((vocab, hidden), "weight")?)
            }
            Self::Gguf {
                file: g,
                dequantize,
                ..
            } => {
                let table = g.get("token_embd.weight", &[vocab, hidden]).map_err(err)?;
                if *dequantize {
                    return TokenEmbedding::dense(table.dequantize(g.device())?);
                }
                TokenEmbedding::from_qtensor(table, g.device())
            }
        }
    }

    /// The LM head; with `tied` it reuses the embedding (`embeddings`' table, or for GGUF
    /// the quantized `token_embd` itself).
    pub fn lm_head(
        &self,
        vocab: usize,
        hidden: usize,
        tied: bool,
        embeddings: &TokenEmbedding,
    ) -> Result<LinearLayer> {
        match self {
            Self::Float {
                head,
                quantize,
                kernels,
                ..
            } => {
                let l = if tied {
                    let table = embeddings.dense_table().ok_or_else(|| {
                        candle_core::Error::Msg("tied LM head without a dense table".into())
                    })?;
                    candle_nn::Linear::new(table.clone(), None)
                } else {
                    candle_nn::linear_no_bias(hidden, vocab, head.clone())?
                };
                match quantize {
                    Some(q) => LinearLayer::quantize(&l, *q, *kernels),
                    None => Ok(LinearLayer::Float(l)),
                }
            }
            Self::Gguf {
                file,
                dequantize,
                kernels,
                ..
            } => {
                let name = if tied { "token_embd" } else { "output" };
                Self::gguf_linear(file, name, [hidden, vocab], false, *dequantize, *kernels)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::gguf_name;

    #[test]
    fn maps_hf_names_to_llama_cpp() {
        assert_eq!(
            gguf_name("layers.12.self_attn.o_proj"),
            "blk.12.attn_output"
        );
        assert_eq!(gguf_name("layers.0.mlp.down_proj"), "blk.0.ffn_down");
        assert_eq!(
            gguf_name("layers.3.post_attention_layernorm"),
            "blk.3.ffn_norm"
        );
        assert_eq!(gguf_name("norm"), "output_norm");
        assert_eq!(gguf_name("embed_tokens"), "token_embd");
    }
}
