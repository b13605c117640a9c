//! A decoder-only transformer in the Llama family, driven by [`TextConfig`] switches
//! (q/k/v bias, MLP bias, tied head), following transformers' `modeling_llama.py`.
//! The KV cache is owned by the caller and passed into [`Decoder::forward`].

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder};

use crate::config::TextConfig;
use crate::nn::attention::{attention, causal_mask, merge_heads, split_heads};
use crate::nn::kv_cache::{KvCache, LayerCache};
use crate::nn::linear::linear;
use crate::nn::mlp::GatedMlp;
use crate::nn::rope::RotaryEmbedding;

#[derive(Debug, Clone)]
struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    fn load(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let (nq, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let bias = cfg.qkv_bias;
        Ok(Self {
            q_proj: linear(h, nq * d, bias, vb.pp("q_proj"))?,
            k_proj: linear(h, nkv * d, bias, vb.pp("k_proj"))?,
            v_proj: linear(h, nkv * d, bias, vb.pp("v_proj"))?,
            o_proj: linear(nq * d, h, cfg.o_bias, vb.pp("o_proj"))?,
            heads: nq,
            kv_heads: nkv,
            head_dim: d,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        rope: &RotaryEmbedding,
        mask: Option<&Tensor>,
        cache: &mut LayerCache,
    ) -> Result<Tensor> {
        let offset = cache.len();
        let q = split_heads(&self.q_proj.forward(xs)?, self.heads, self.head_dim)?;
        let k = split_heads(&self.k_proj.forward(xs)?, self.kv_heads, self.head_dim)?;
        let v = split_heads(&self.v_proj.forward(xs)?, self.kv_heads, self.head_dim)?;
        let (q, k) = rope.apply(&q, &k, offset)?;
        let (k, v) = cache.append(&k, &v.contiguous()?)?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let out = attention(&q, &k, &v, mask, scale)?;
        self.o_proj.forward(&merge_heads(&out)?)
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: SelfAttention,
    post_attention_layernorm: RmsNorm,
    mlp: GatedMlp,
}

impl DecoderLayer {
    fn load(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            input_layernorm: candle_nn::rms_norm(h, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            self_attn: SelfAttention::load(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: candle_nn::rms_norm(
                h,
                cfg.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp: GatedMlp::load(
                h,
                cfg.intermediate_size,
                cfg.mlp_bias,
                cfg.hidden_act,
                vb.pp("mlp"),
            )?,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        rope: &RotaryEmbedding,
        mask: Option<&Tensor>,
        cache: &mut LayerCache,
    ) -> Result<Tensor> {
        let attn = self
            .self_attn
            .forward(&self.input_layernorm.forward(xs)?, rope, mask, cache)?;
        let h = (xs + attn)?;
        let m = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?)?;
        h + m
    }
}

/// The language model: embeddings, decoder layers, final norm and LM head.
#[derive(Debug, Clone)]
pub struct Decoder {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: RotaryEmbedding,
    sliding_window: Option<usize>,
    dtype: DType,
    device: Device,
}

impl Decoder {
    /// Loads the decoder; `vb` points at the text model's root (`…language_model`) and
    /// `head_vb` at the LM head (`lm_head`).
    pub fn load(cfg: &TextConfig, vb: VarBuilder, head_vb: VarBuilder) -> Result<Self> {
        let embed_tokens =
            candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("embed_tokens"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(cfg, vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(embed_tokens.embeddings().clone(), None)
        } else {
            candle_nn::linear_no_bias(cfg.hidden_size, cfg.vocab_size, head_vb)?
        };
        let rope = RotaryEmbedding::new(
            &cfg.rope,
            cfg.head_dim,
            cfg.max_position_embeddings,
            vb.dtype(),
            vb.device(),
        )?;
        Ok(Self {
            embed_tokens,
            layers,
            norm: candle_nn::rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("norm"))?,
            lm_head,
            rope,
            sliding_window: cfg.sliding_window,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// Embeds token ids `(batch, seq)` → `(batch, seq, hidden)`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed_tokens.forward(ids)
    }

    /// Runs the layers over `(batch, seq, hidden)` input embeddings after the positions
    /// already in `cache`, appending to it; returns the final-norm hidden states.
    pub fn forward(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let seq = embeds.dim(1)?;
        let offset = cache.seq_len();
        if offset + seq > self.rope.max_positions() {
            candle_core::bail!(
                "sequence of {} positions exceeds the model's context of {}",
                offset + seq,
                self.rope.max_positions()
            );
        }
        let window_reached = self.sliding_window.is_some_and(|w| offset + seq > w);
        let mask = if seq > 1 || window_reached {
            Some(causal_mask(
                seq,
                offset,
                self.sliding_window,
                self.dtype,
                &self.device,
            )?)
        } else {
            None
        };
        let mut xs = embeds.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache
                .layer_mut(i)
                .ok_or_else(|| candle_core::Error::Msg(format!("no cache for layer {i}")))?;
            xs = layer.forward(&xs, &self.rope, mask.as_ref(), layer_cache)?;
        }
        self.norm.forward(&xs)
    }

    /// Projects hidden states to vocabulary logits.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)
    }

    /// Number of layers (the size of a [`KvCache`] for this model).
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Context length (positions covered by the rotary tables).
    pub fn max_positions(&self) -> usize {
        self.rope.max_positions()
    }
}
