//! The server with the SigLIP + Qwen2 (ChatML) reference model: template, image tokens and the
//! golden greedy answer over HTTP, so the second family is served, not just computed.

use serde_json::{json, Value};
use vlm_server::{Args, RunningServer};

fn model_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/reference/llava-interleave-qwen2-tiny")
}

async fn start() -> RunningServer {
    use clap::Parser;
    let dir = model_dir();
    let args = Args::try_parse_from([
        "vlm-server",
        "--model",
        dir.to_str().unwrap(),
        "--served-model-name",
        "qwen",
        "--port",
        "0",
    ])
    .unwrap();
    let mut s = RunningServer::start(&args).await.unwrap();
    s.ready().await.unwrap();
    s
}

#[tokio::test]
async fn multi_turn_with_an_earlier_image_matches_the_golden() {
    use base64::Engine as _;
    let s = start().await;
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir().join("goldens/cases.json")).unwrap(),
    )
    .unwrap();
    let case = &cases["cases"]["multi_turn"];
    // The golden messages name image files; send them as data URLs.
    let mut messages = case["messages"].clone();
    for m in messages.as_array_mut().unwrap() {
        if let Some(parts) = m["content"].as_array_mut() {
            for p in parts {
                if p["type"] == "image_url" {
                    let file = model_dir()
                        .join("goldens/images")
                        .join(p["image_url"]["url"].as_str().unwrap());
                    let b64 = base64::engine::general_purpose::STANDARD
                        .encode(std::fs::read(file).unwrap());
                    p["image_url"]["url"] = json!(format!("data:image/png;base64,{b64}"));
                }
            }
        }
    }
    let body = json!({"model": "qwen", "max_tokens": 16, "messages": messages});
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", s.addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let prompt_len = case["input_ids"].as_array().unwrap().len() as u64;
    assert_eq!(v["usage"]["prompt_tokens"], prompt_len);
    let tok = tokenizers::Tokenizer::from_file(model_dir().join("tokenizer.json")).unwrap();
    let ids: Vec<u32> = case["greedy_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        tok.decode(&ids, true).unwrap().as_str()
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}
