//! The ViT vision towers of LLaVA models: CLIP (transformers' `modeling_clip.py`,
//! `CLIPVisionTransformer`: class token, bias-free patch conv, `pre_layrnorm`) and SigLIP
//! (`modeling_siglip.py`, `SiglipVisionTransformer`: no class token, patch conv with bias,
//! no pre-norm; the pooling head is not used). Both share the encoder layers. The tower returns
//! the hidden states the LLaVA projector selects (the post-layernorm is not applied to them).
//! Weight names mirror the checkpoint: `embeddings.*`, `pre_layrnorm`, `encoder.layers.*`.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{Conv2d, Conv2dConfig, Embedding, LayerNorm, Linear, VarBuilder};

use crate::config::{VisionConfig, VisionKind};
use crate::nn::activation::Activation;
use crate::nn::attention::{attention, merge_heads, split_heads};

#[derive(Debug, Clone)]
struct PatchEmbeddings {
    patch_embedding: Conv2d,
    /// CLIP's class token; SigLIP has none.
    class_embedding: Option<Tensor>,
    position_embedding: Embedding,
    num_positions: usize,
}

impl PatchEmbeddings {
    fn load(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let conv = Conv2dConfig {
            stride: cfg.patch_size,
            ..Default::default()
        };
        let (c, h, p) = (cfg.num_channels, cfg.hidden_size, cfg.patch_size);
        let (patch_embedding, class_embedding) = match cfg.kind {
            VisionKind::Clip => (
                candle_nn::conv2d_no_bias(c, h, p, conv, vb.pp("patch_embedding"))?,
                Some(vb.get(h, "class_embedding")?),
            ),
            VisionKind::Siglip => (
                candle_nn::conv2d(c, h, p, conv, vb.pp("patch_embedding"))?,
                None,
            ),
        };
        let num_positions = cfg.patches_per_side().pow(2) + usize::from(class_embedding.is_some());
        let position_embedding =
            candle_nn::embedding(num_positions, cfg.hidden_size, vb.pp("position_embedding"))?;
        Ok(Self {
            patch_embedding,
            class_embedding,
            position_embedding,
            num_positions,
        })
    }

    /// `(n, 3, H, W)` → `(n, [1 +] patches, hidden)`.
    fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let n = pixel_values.dim(0)?;
        let patches = self
            .patch_embedding
            .forward(pixel_values)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let embeds = match &self.class_embedding {
            Some(class) => {
                let hidden = class.dim(0)?;
                let class = class.reshape((1, 1, hidden))?.expand((n, 1, hidden))?;
                Tensor::cat(&[&class.to_dtype(patches.dtype())?, &patches], 1)?
            }
            None => patches,
        };
        let positions = Tensor::arange(0u32, self.num_positions as u32, embeds.device())?;
        let pos = self.position_embedding.forward(&positions)?.unsqueeze(0)?;
        embeds.broadcast_add(&pos)
    }
}

#[derive(Debug, Clone)]
struct VitAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
    head_dim: usize,
}

impl VitAttention {
    fn load(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            q_proj: candle_nn::linear(h, h, vb.pp("q_proj"))?,
            k_proj: candle_nn::linear(h, h, vb.pp("k_proj"))?,
            v_proj: candle_nn::linear(h, h, vb.pp("v_proj"))?,
            out_proj: candle_nn::linear(h, h, vb.pp("out_proj"))?,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let q = split_heads(&self.q_proj.forward(xs)?, self.heads, self.head_dim)?;
        let k = split_heads(&self.k_proj.forward(xs)?, self.heads, self.head_dim)?;
        let v = split_heads(&self.v_proj.forward(xs)?, self.heads, self.head_dim)?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let out = attention(&q, &k, &v, None, scale)?;
        self.out_proj.forward(&merge_heads(&out)?)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: VitAttention,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl EncoderLayer {
    fn load(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            layer_norm1: candle_nn::layer_norm(h, cfg.layer_norm_eps, vb.pp("layer_norm1"))?,
            self_attn: VitAttention::load(cfg, vb.pp("self_attn"))?,
            layer_norm2: candle_nn::layer_norm(h, cfg.layer_norm_eps, vb.pp("layer_norm2"))?,
            fc1: candle_nn::linear(h, cfg.intermediate_size, vb.pp("mlp").pp("fc1"))?,
            fc2: candle_nn::linear(cfg.intermediate_size, h, vb.pp("mlp").pp("fc2"))?,
            act: cfg.hidden_act,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let h = (xs + self.self_attn.forward(&self.layer_norm1.forward(xs)?)?)?;
        let m = self.fc2.forward(
            &self
                .act
                .apply(&self.fc1.forward(&self.layer_norm2.forward(&h)?)?)?,
        )?;
        h + m
    }
}

/// A CLIP or SigLIP vision transformer without the pooling head.
#[derive(Debug, Clone)]
pub struct VisionTransformer {
    embeddings: PatchEmbeddings,
    pre_layrnorm: Option<LayerNorm>,
    layers: Vec<EncoderLayer>,
}

impl VisionTransformer {
    /// Loads the tower from `vb` positioned at the tower's root (`…vision_tower`, with the
    /// `vision_model.` level already removed by the weight loader).
    pub fn load(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::load(cfg, vb.pp("encoder").pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let pre_layrnorm = match cfg.kind {
            VisionKind::Clip => Some(candle_nn::layer_norm(
                cfg.hidden_size,
                cfg.layer_norm_eps,
                vb.pp("pre_layrnorm"),
            )?),
            VisionKind::Siglip => None,
        };
        Ok(Self {
            embeddings: PatchEmbeddings::load(cfg, vb.pp("embeddings"))?,
            pre_layrnorm,
            layers,
        })
    }

    /// Whether the first position of every hidden state is a class token.
    pub fn has_class_token(&self) -> bool {
        self.embeddings.class_embedding.is_some()
    }

    /// Number of hidden states the tower produces (embeddings + one per layer).
    pub fn num_hidden_states(&self) -> usize {
        self.layers.len() + 1
    }

    /// Runs the tower and returns the hidden states at the given indices (non-negative,
    /// as in transformers' `hidden_states` tuple), each `(n, 1 + patches, hidden)`.
    /// Layers past the deepest requested state are skipped.
    pub fn hidden_states(&self, pixel_values: &Tensor, indices: &[usize]) -> Result<Vec<Tensor>> {
        let deepest = indices.iter().copied().max().unwrap_or(0);
        let mut states = Vec::with_capacity(deepest + 1);
        let mut xs = self.embeddings.forward(pixel_values)?;
        if let Some(norm) = &self.pre_layrnorm {
            xs = norm.forward(&xs)?;
        }
        states.push(xs.clone());
        for layer in self.layers.iter().take(deepest) {
            xs = layer.forward(&xs)?;
            states.push(xs.clone());
        }
        indices
            .iter()
            .map(|&i| {
                states
                    .get(i)
                    .cloned()
                    .ok_or_else(|| candle_core::Error::Msg(format!("no hidden state {i}")))
            })
            .collect()
    }
}

/// Concatenates selected hidden states along the feature dimension.
pub fn concat_features(states: &[Tensor]) -> Result<Tensor> {
    Tensor::cat(states, D::Minus1)
}
