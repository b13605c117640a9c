//! A SentencePiece (`tokenizer.ggml.model = "llama"`) GGUF vocabulary against the ids
//! llama.cpp gives (`models/make_spm_gguf.py`: a tiny vocabulary with merges, byte fallback
//! and special tokens, and llama-cpp-python's `tokenize(add_bos=True, special=True)`).

use std::path::PathBuf;

use vlm_inference::gguf::tokenizer::tokenizer_from_gguf;
use vlm_inference::gguf::{read_content, Metadata};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/reference/spm-tiny")
}

#[test]
fn spm_vocabulary_tokenizes_like_llama_cpp() {
    let content = read_content(&dir().join("vocab.gguf")).expect("gguf");
    let (tok, bos) = tokenizer_from_gguf(&Metadata::new(&content)).expect("tokenizer");
    assert_eq!(bos, Some(1), "llama vocabularies add BOS");
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("llama_cpp_tokens.json")).expect("golden"),
    )
    .expect("json");
    let cases = golden["cases"].as_array().expect("cases");
    assert!(cases.len() >= 8);
    for c in cases {
        let text = c["text"].as_str().expect("text");
        let want: Vec<u32> = c["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|i| i.as_u64().expect("id") as u32)
            .collect();
        // llama.cpp's tokenize(add_bos=True) prepends BOS unconditionally.
        let mut ids = vec![1];
        ids.extend(tok.encode(text, false).expect("encode").get_ids());
        assert_eq!(ids, want, "{text:?}");
        // Decoding the pieces gives the text back (specials skipped).
        if !text.contains("<s>") {
            assert_eq!(tok.decode(&ids, true).expect("decode"), text, "{text:?}");
        }
    }
}
