//! The language-model configuration of a llama-architecture GGUF file.

use candle_core::quantized::gguf_file::Content;

use super::Metadata;
use crate::config::{RopeConfig, RopeScaling, TextConfig, TextKind};
use crate::error::{Error, Result};
use crate::nn::activation::Activation;

/// Builds a [`TextConfig`] from `general.architecture` = `llama` or `qwen2` metadata
/// (`{arch}.block_count`, `{arch}.embedding_length`, …). Other architectures are refused.
pub fn text_config(content: &Content) -> Result<TextConfig> {
    let md = Metadata::new(content);
    let arch = md.string("general.architecture")?;
    let kind = match arch {
        "llama" => TextKind::Llama,
        "qwen2" => TextKind::Qwen2,
        other => {
            return Err(Error::Unsupported {
                what: "GGUF architecture (llama and qwen2 are supported)",
                name: other.to_string(),
            })
        }
    };
    let need = |key: &str| -> Result<usize> {
        md.opt_u32(&format!("{arch}.{key}"))
            .map(|v| v as usize)
            .ok_or_else(|| Error::Weights(format!("GGUF metadata `{arch}.{key}` is missing")))
    };
    let hidden_size = need("embedding_length")?;
    let num_attention_heads = need("attention.head_count")?;
    let num_key_value_heads = md
        .opt_u32(&format!("{arch}.attention.head_count_kv"))
        .map(|v| v as usize)
        .unwrap_or(num_attention_heads);
    let head_dim = md
        .opt_u32(&format!("{arch}.attention.key_length"))
        .or_else(|| md.opt_u32(&format!("{arch}.rope.dimension_count")))
        .map(|v| v as usize)
        .unwrap_or(hidden_size / num_attention_heads.max(1));
    if num_attention_heads == 0
        || num_key_value_heads == 0
        || !num_attention_heads.is_multiple_of(num_key_value_heads)
        || head_dim == 0
        || !head_dim.is_multiple_of(2)
        || hidden_size == 0
    {
        return Err(Error::Weights(format!(
            "GGUF metadata: {num_attention_heads} attention heads, {num_key_value_heads} key/value \
             heads, head size {head_dim} and width {hidden_size} do not form a valid model"
        )));
    }
    let vocab_size = match md.opt_u32(&format!("{arch}.vocab_size")) {
        Some(v) => v as usize,
        None => md.strings("tokenizer.ggml.tokens")?.len(),
    };
    let theta = md
        .opt_f64(&format!("{arch}.rope.freq_base"))
        .unwrap_or(10_000.0);
    let scaling = match md.opt_string(&format!("{arch}.rope.scaling.type")) {
        None | Some("none") => RopeScaling::None,
        Some("linear") => RopeScaling::Linear {
            factor: md
                .opt_f64(&format!("{arch}.rope.scaling.factor"))
                .unwrap_or(1.0),
        },
        Some(other) => {
            return Err(Error::Unsupported {
                what: "GGUF rope scaling type",
                name: other.to_string(),
            })
        }
    };
    let eps = md
        .opt_f64(&format!("{arch}.attention.layer_norm_rms_epsilon"))
        .unwrap_or(1e-5);
    Ok(TextConfig {
        kind,
        vocab_size,
        hidden_size,
        intermediate_size: need("feed_forward_length")?,
        num_hidden_layers: need("block_count")?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps: eps,
        rope: RopeConfig { theta, scaling },
        max_position_embeddings: need("context_length")?,
        qkv_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
        o_bias: content.tensor_infos.contains_key("blk.0.attn_output.bias"),
        sliding_window: None,
        mlp_bias: false,
        hidden_act: Activation::Silu,
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        eos_token_ids: md
            .opt_u32("tokenizer.ggml.eos_token_id")
            .into_iter()
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};

    use super::text_config;

    fn content(arch: &str, heads: u32, kv_heads: u32) -> Content {
        let mut metadata = HashMap::new();
        metadata.insert("general.architecture".into(), Value::String(arch.into()));
        for (k, v) in [
            ("block_count", 2),
            ("context_length", 128),
            ("embedding_length", 64),
            ("feed_forward_length", 128),
            ("attention.head_count", heads),
            ("attention.head_count_kv", kv_heads),
            ("vocab_size", 100),
        ] {
            metadata.insert(format!("{arch}.{k}"), Value::U32(v));
        }
        Content {
            magic: VersionedMagic::GgufV3,
            metadata,
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        }
    }

    #[test]
    fn reads_llama_and_qwen2_and_refuses_the_rest() {
        let c = text_config(&content("llama", 4, 2)).expect("llama");
        assert_eq!(
            (c.head_dim, c.num_key_value_heads, c.vocab_size),
            (16, 2, 100)
        );
        assert!(c.tie_word_embeddings, "no output.weight: tied");
        let q = text_config(&content("qwen2", 4, 4)).expect("qwen2");
        assert_eq!(q.kind, crate::config::TextKind::Qwen2);
        let err = text_config(&content("gemma", 4, 4))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gemma"), "{err}");
    }

    #[test]
    fn impossible_head_counts_are_errors_not_panics() {
        for (heads, kv) in [(4, 3), (0, 1), (4, 0), (2, 4)] {
            let err = text_config(&content("llama", heads, kv))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("do not form a valid model"),
                "{heads}/{kv}: {err}"
            );
        }
    }
}
