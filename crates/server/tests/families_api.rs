//! The server with the other reference families: SigLIP + Qwen2 (ChatML) — template, image
//! tokens and the golden greedy answer over HTTP — and LLaVA-NeXT, where `image_url.detail`
//! changes how many image tokens an image costs.

use serde_json::{json, Value};
use vlm_server::{Args, RunningServer};

fn reference(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/reference")
        .join(name)
}

fn model_dir() -> std::path::PathBuf {
    reference("llava-interleave-qwen2-tiny")
}

async fn start() -> RunningServer {
    start_with(model_dir()).await
}

async fn start_with(dir: std::path::PathBuf) -> RunningServer {
    use clap::Parser;
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

#[tokio::test]
async fn detail_low_costs_fewer_tokens_on_a_tiling_model() {
    use base64::Engine as _;
    let dir = reference("llava-next-mistral-tiny");
    let png = std::fs::read(dir.join("goldens/images/square_50.png")).unwrap();
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    );
    let s = start_with(dir).await;
    let mut prompt_tokens = Vec::new();
    for detail in ["low", "high", "auto"] {
        let body = json!({"model": "qwen", "max_tokens": 2, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url, "detail": detail}},
            {"type": "text", "text": "What is shown in this image?"}
        ]}]});
        let v: Value = reqwest::Client::new()
            .post(format!("http://{}/v1/chat/completions", s.addr))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        prompt_tokens.push(v["usage"]["prompt_tokens"].as_u64().unwrap());
    }
    // 50×50 on the 56×56 grid: 24 image tokens at high/auto, 5 (base + newline) at low.
    assert_eq!(prompt_tokens[1], prompt_tokens[2]);
    assert_eq!(prompt_tokens[1] - prompt_tokens[0], 24 - 5);
}
