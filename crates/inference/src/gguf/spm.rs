//! SentencePiece vocabularies in GGUF (`tokenizer.ggml.model = "llama"`: pieces with
//! scores, `<0xAB>` byte-fallback tokens), rebuilt as a tokenizers BPE that splits as
//! llama.cpp's SPM tokenizer: a space in front of the text and after every special token
//! (`add_space_prefix`), spaces as `▁`, adjacent symbols merged best score first, bytes of
//! characters outside the vocabulary as byte tokens. Merges come from the scores the way
//! transformers converts SentencePiece models: every split of a piece into two pieces,
//! ranked by the merged piece's score.

use std::collections::HashMap;

use serde_json::{json, Value as Json};

use super::Metadata;
use crate::error::{Error, Result};

const TOKEN_TYPE_UNKNOWN: i32 = 2;
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The merges implied by `tokens` and their `scores`, best first.
fn merges_from_scores(tokens: &[&str], scores: &[f32]) -> Vec<(String, String)> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut merges: Vec<(f32, usize, usize, &str, &str)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        let score = scores.get(i).copied().unwrap_or(0.0);
        let mut local: Vec<(usize, usize, &str, &str)> = piece
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = piece.split_at(at);
                Some((*ids.get(l)?, *ids.get(r)?, l, r))
            })
            .collect();
        local.sort();
        merges.extend(local.into_iter().map(|(a, b, l, r)| (score, a, b, l, r)));
    }
    // Stable: equal scores keep the per-piece order above.
    merges.sort_by(|x, y| y.0.total_cmp(&x.0));
    merges
        .into_iter()
        .map(|(_, _, _, l, r)| (l.to_string(), r.to_string()))
        .collect()
}

/// Builds the tokenizer of a SentencePiece GGUF vocabulary, plus its BOS id when the model
/// adds one (`add_bos_token`, default true as in llama.cpp).
pub fn spm_tokenizer(md: &Metadata) -> Result<(tokenizers::Tokenizer, Option<u32>)> {
    let tokens = md.strings("tokenizer.ggml.tokens")?;
    let scores = md.opt_f32s("tokenizer.ggml.scores")?.unwrap_or_default();
    let types = md
        .opt_i32s("tokenizer.ggml.token_type")?
        .unwrap_or_default();
    let vocab: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    let merges: Vec<Json> = merges_from_scores(&tokens, &scores)
        .into_iter()
        .map(|(l, r)| json!([l, r]))
        .collect();
    let added = super::tokenizer::special_tokens(
        &tokens,
        &types,
        &[
            TOKEN_TYPE_CONTROL,
            TOKEN_TYPE_USER_DEFINED,
            TOKEN_TYPE_UNKNOWN,
        ],
    );
    let unk = md
        .opt_u32("tokenizer.ggml.unknown_token_id")
        .and_then(|i| tokens.get(i as usize))
        .map(|t| t.to_string());
    let space = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
    let normalizer = if md
        .opt_bool("tokenizer.ggml.add_space_prefix")
        .unwrap_or(true)
    {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u{2581}"}, space]})
    } else {
        space
    };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                  "ignore_merges": false, "vocab": vocab, "merges": merges},
    });
    let tokenizer = tokenizers::Tokenizer::from_bytes(spec.to_string().as_bytes())
        .map_err(|e| Error::Tokenizer(format!("building the GGUF SentencePiece tokenizer: {e}")))?;
    let add_bos = md.opt_bool("tokenizer.ggml.add_bos_token").unwrap_or(true);
    let bos = md
        .opt_u32("tokenizer.ggml.bos_token_id")
        .filter(|_| add_bos);
    Ok((tokenizer, bos))
}

#[cfg(test)]
mod tests {
    use super::merges_from_scores;

    #[test]
    fn merges_rank_by_the_merged_piece_score() {
        let tokens = ["a", "b", "c", "ab", "bc", "abc"];
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, 3.0];
        let m = merges_from_scores(&tokens, &scores);
        let pairs: Vec<(&str, &str)> = m.iter().map(|(l, r)| (l.as_str(), r.as_str())).collect();
        assert_eq!(
            pairs,
            vec![("a", "bc"), ("ab", "c"), ("b", "c"), ("a", "b")]
        );
    }
}
