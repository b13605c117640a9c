//! A decoder-only transformer in the Llama family, driven by [`TextConfig`] switches
//! (q/k/v bias, MLP bias, tied head), following transformers' `modeling_llama.py`.
//! The KV cache is owned by the caller and passed into [`Decoder::forward`].

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::RmsNorm;

use super::decoder_weights::DecoderWeights;
use super::fused_cpu::{FusedCpuDecoder, LayerParts};
use crate::config::TextConfig;
use crate::nn::attention::{attention, causal_mask, merge_heads, split_heads};
use crate::nn::cpu_attention;
use crate::nn::embedding::TokenEmbedding;
use crate::nn::kv_cache::{KvCache, LayerCache};
use crate::nn::linear::LinearLayer;
use crate::nn::mlp::GatedMlp;
use crate::nn::rope::RotaryEmbedding;

#[derive(Debug, Clone)]
struct SelfAttention {
    q_proj: LinearLayer,
    k_proj: LinearLayer,
    v_proj: LinearLayer,
    o_proj: LinearLayer,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    fn load(cfg: &TextConfig, w: &DecoderWeights, prefix: &str) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let (nq, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let bias = cfg.qkv_bias;
        let p = |name: &str| format!("{prefix}.{name}");
        Ok(Self {
            q_proj: w.linear(&p("q_proj"), h, nq * d, bias)?,
            k_proj: w.linear(&p("k_proj"), h, nkv * d, bias)?,
            v_proj: w.linear(&p("v_proj"), h, nkv * d, bias)?,
            o_proj: w.linear(&p("o_proj"), nq * d, h, cfg.o_bias)?,
            heads: nq,
            kv_heads: nkv,
            head_dim: d,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        rope: &RotaryEmbedding,
        mask: &AttentionMask,
        cache: &mut LayerCache,
    ) -> Result<Tensor> {
        let offset = cache.len();
        let q = split_heads(&self.q_proj.forward(xs)?, self.heads, self.head_dim)?;
        let k = split_heads(&self.k_proj.forward(xs)?, self.kv_heads, self.head_dim)?;
        let v = split_heads(&self.v_proj.forward(xs)?, self.kv_heads, self.head_dim)?;
        let (q, k) = rope.apply(&q, &k, offset)?;
        let mask = match mask {
            AttentionMask::Cpu { window } => {
                let seq = xs.dim(1)?;
                let flat = |t: &Tensor| t.contiguous()?.flatten_all()?.to_vec1::<f32>();
                let kv = cache.cpu_mut(self.kv_heads, self.head_dim);
                kv.append(&flat(&k)?, &flat(&v)?, seq);
                let scale = (self.head_dim as f32).powf(-0.5);
                let out =
                    cpu_attention::attend(&flat(&q)?, self.heads, seq, kv, offset, *window, scale);
                let out = Tensor::from_vec(out, (1, seq, self.heads * self.head_dim), xs.device())?;
                return self.o_proj.forward(&out);
            }
            AttentionMask::Tensor(mask) => mask.as_ref(),
        };
        let (k, v) = cache.append(&k, &v.contiguous()?)?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let out = attention(&q, &k, &v, mask, scale)?;
        self.o_proj.forward(&merge_heads(&out)?)
    }
}

/// How a forward pass masks attention: through the CPU kernel (causal, optional sliding
/// window) or with an explicit mask tensor (`None`: nothing to mask).
enum AttentionMask {
    Cpu { window: Option<usize> },
    Tensor(Option<Tensor>),
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: SelfAttention,
    post_attention_layernorm: RmsNorm,
    mlp: GatedMlp,
    /// The two norms' weights (for the fused CPU path).
    norm_weights: (Tensor, Tensor),
}

impl DecoderLayer {
    fn load(cfg: &TextConfig, w: &DecoderWeights, layer: usize) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let p = |name: &str| format!("layers.{layer}.{name}");
        let attn_norm = w.vector(&p("input_layernorm"), h)?;
        let ffn_norm = w.vector(&p("post_attention_layernorm"), h)?;
        let bias = cfg.mlp_bias;
        Ok(Self {
            input_layernorm: RmsNorm::new(attn_norm.clone(), cfg.rms_norm_eps),
            self_attn: SelfAttention::load(cfg, w, &p("self_attn"))?,
            post_attention_layernorm: RmsNorm::new(ffn_norm.clone(), cfg.rms_norm_eps),
            norm_weights: (attn_norm, ffn_norm),
            mlp: GatedMlp::new(
                w.linear(&p("mlp.gate_proj"), h, i, bias)?,
                w.linear(&p("mlp.up_proj"), h, i, bias)?,
                w.linear(&p("mlp.down_proj"), i, h, bias)?,
                cfg.hidden_act,
            ),
        })
    }

    fn parts(&self) -> LayerParts<'_> {
        let a = &self.self_attn;
        let (gate, up, down) = self.mlp.projections();
        LayerParts {
            attn_norm: &self.norm_weights.0,
            qkv: [&a.q_proj, &a.k_proj, &a.v_proj],
            o: &a.o_proj,
            ffn_norm: &self.norm_weights.1,
            gate_up: [gate, up],
            down,
        }
    }

    fn forward(
        &self,
        xs: &Tensor,
        rope: &RotaryEmbedding,
        mask: &AttentionMask,
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
    embed_tokens: TokenEmbedding,
    /// The layers as candle modules (empty when `fused` replaced them).
    layers: Vec<DecoderLayer>,
    /// The fused CPU pass, when every projection runs on our quantized kernels.
    fused: Option<std::sync::Arc<FusedCpuDecoder>>,
    num_layers: usize,
    hidden: usize,
    norm: RmsNorm,
    lm_head: LinearLayer,
    rope: RotaryEmbedding,
    sliding_window: Option<usize>,
    dtype: DType,
    device: Device,
}

impl Decoder {
    /// Loads the decoder from `weights` (safetensors or GGUF).
    pub fn load(cfg: &TextConfig, weights: &DecoderWeights) -> Result<Self> {
        let (vocab, hidden) = (cfg.vocab_size, cfg.hidden_size);
        let embed_tokens = weights.token_embedding(vocab, hidden)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(cfg, weights, i))
            .collect::<Result<Vec<_>>>()?;
        let lm_head = weights.lm_head(vocab, hidden, cfg.tie_word_embeddings, &embed_tokens)?;
        let (dtype, device) = (weights.dtype(), weights.device());
        let rope = RotaryEmbedding::new(
            &cfg.rope,
            cfg.head_dim,
            cfg.max_position_embeddings,
            weights.rope_layout(),
            dtype,
            &device,
        )?;
        let norm_weight = weights.vector("norm", hidden)?;
        let fused = if device.is_cpu() && dtype == DType::F32 && weights.allow_fused() {
            let parts: Vec<LayerParts> = layers.iter().map(DecoderLayer::parts).collect();
            FusedCpuDecoder::build(cfg, &parts, &norm_weight, &rope)?.map(std::sync::Arc::new)
        } else {
            None
        };
        tracing::debug!(fused = fused.is_some(), "decoder loaded");
        let num_layers = layers.len();
        // The fused pass holds its own (concatenated) weights: drop the modules' copies.
        let layers = if fused.is_some() { Vec::new() } else { layers };
        Ok(Self {
            embed_tokens,
            layers,
            fused,
            num_layers,
            hidden,
            norm: RmsNorm::new(norm_weight, cfg.rms_norm_eps),
            lm_head,
            rope,
            sliding_window: cfg.sliding_window,
            dtype,
            device,
        })
    }

    /// Whether the layers run as the fused CPU pass.
    pub fn is_fused(&self) -> bool {
        self.fused.is_some()
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
        if let Some(fused) = &self.fused {
            if embeds.dim(0)? != 1 {
                candle_core::bail!("the fused CPU decoder runs one sequence at a time");
            }
            let x = embeds.flatten_all()?.to_vec1::<f32>()?;
            let out = fused.forward(x, seq, cache)?;
            return Tensor::from_vec(out, (1, seq, self.hidden), &self.device);
        }
        let window_reached = self.sliding_window.is_some_and(|w| offset + seq > w);
        let cpu_kernel = self.device.is_cpu() && self.dtype == DType::F32 && embeds.dim(0)? == 1;
        let mask = if cpu_kernel {
            AttentionMask::Cpu {
                window: self.sliding_window,
            }
        } else if seq > 1 || window_reached {
            AttentionMask::Tensor(Some(causal_mask(
                seq,
                offset,
                self.sliding_window,
                self.dtype,
                &self.device,
            )?))
        } else {
            AttentionMask::Tensor(None)
        };
        let mut xs = embeds.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache
                .layer_mut(i)
                .ok_or_else(|| candle_core::Error::Msg(format!("no cache for layer {i}")))?;
            xs = layer.forward(&xs, &self.rope, &mask, layer_cache)?;
        }
        self.norm.forward(&xs)
    }

    /// Projects hidden states to vocabulary logits.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The activation dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of layers (the size of a [`KvCache`] for this model).
    pub fn num_layers(&self) -> usize {
        self.num_layers
    }

    /// Context length (positions covered by the rotary tables).
    pub fn max_positions(&self) -> usize {
        self.rope.max_positions()
    }
}
