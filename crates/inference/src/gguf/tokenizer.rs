//! The tokenizer inside a GGUF file (`tokenizer.ggml.*`), rebuilt so that it splits text as
//! llama.cpp does. For byte-level BPE (`tokenizer.ggml.model = "gpt2"`) the pre-tokenizer
//! depends on `tokenizer.ggml.pre`, following llama.cpp's `llama-vocab.cpp`:
//! `smollm` / `starcoder` / `refact`: every digit on its own, then GPT-2's split;
//! `llama-bpe` / `llama3` and `qwen2`: their own split regexes; `gpt2` and unknown: GPT-2's.
//! Control and user-defined tokens are special and matched in the text (llama.cpp's
//! `parse_special`). No space is added in front of the text and none after special tokens
//! (candle 0.11's own GGUF tokenizer gets both wrong for these models).

use serde_json::{json, Value as Json};

use super::Metadata;
use crate::error::{Error, Result};

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// llama-bpe (Llama 3) split regex, from llama.cpp.
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2 split regex, from llama.cpp.
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// tokenizers `added_tokens` entries (special, matched in text) for the tokens whose
/// llama.cpp type is one of `kinds`.
pub(super) fn special_tokens(tokens: &[&str], types: &[i32], kinds: &[i32]) -> Vec<Json> {
    tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| types.get(*i).is_some_and(|t| kinds.contains(t)))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect()
}

/// The pre-tokenizer of a byte-level BPE vocabulary, as tokenizers JSON.
fn byte_level_pre_tokenizer(pre: &str) -> Json {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": use_regex});
    let split = |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
    match pre {
        "smollm" | "starcoder" | "refact" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level(true),
        ]}),
        "llama-bpe" | "llama3" => {
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]})
        }
        "qwen2" => {
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]})
        }
        _ => byte_level(true),
    }
}

/// Builds the tokenizer of a GGUF file, plus its BOS id when the model adds one.
pub fn tokenizer_from_gguf(md: &Metadata) -> Result<(tokenizers::Tokenizer, Option<u32>)> {
    let model = md.string("tokenizer.ggml.model")?;
    if model == "llama" {
        return super::spm::spm_tokenizer(md);
    }
    if model != "gpt2" {
        return Err(Error::Unsupported {
            what: "GGUF tokenizer model",
            name: model.to_string(),
        });
    }
    let pre = md.opt_string("tokenizer.ggml.pre").unwrap_or("default");
    let tokens = md.strings("tokenizer.ggml.tokens")?;
    let types = md
        .opt_i32s("tokenizer.ggml.token_type")?
        .unwrap_or_default();
    let merges = md.strings("tokenizer.ggml.merges")?;
    let vocab: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    let added = special_tokens(
        &tokens,
        &types,
        &[TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED],
    );
    let bos = md.opt_u32("tokenizer.ggml.bos_token_id");
    let add_bos = md.opt_bool("tokenizer.ggml.add_bos_token").unwrap_or(false);
    let bos = if add_bos { bos } else { None };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level_pre_tokenizer(pre),
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges},
    });
    let tokenizer = tokenizers::Tokenizer::from_bytes(spec.to_string().as_bytes())
        .map_err(|e| Error::Tokenizer(format!("building the GGUF tokenizer: {e}")))?;
    Ok((tokenizer, bos))
}
