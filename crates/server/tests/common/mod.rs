//! Test harness: an in-process server on an ephemeral port with the tiny reference model,
//! and a tiny HTTP server for image URLs.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Parser;
use serde_json::{json, Value};
use vlm_server::{Args, RunningServer};

pub const MODEL_NAME: &str = "tiny";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn model_dir() -> PathBuf {
    repo_root().join("models/reference/llava-1.5-tiny")
}

pub fn golden_image(name: &str) -> PathBuf {
    model_dir().join("goldens/images").join(name)
}

pub fn data_url(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("image");
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

pub fn cases() -> Value {
    let text = std::fs::read_to_string(model_dir().join("goldens/cases.json")).expect("cases");
    serde_json::from_str(&text).expect("json")
}

/// Starts a server with the reference model and extra flags; waits until it is ready.
pub async fn start(extra: &[&str]) -> RunningServer {
    let model = model_dir();
    let mut argv = vec![
        "vlm-server".to_string(),
        "--model".into(),
        model.to_string_lossy().into_owned(),
        "--served-model-name".into(),
        MODEL_NAME.into(),
        "--port".into(),
        "0".into(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    let args = Args::try_parse_from(argv).expect("args");
    let mut server = RunningServer::start(&args).await.expect("starts");
    server.ready().await.expect("model loads");
    server
}

pub fn url(server: &RunningServer, path: &str) -> String {
    format!("http://{}{}", server.addr, path)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// The `one_image` golden request as OpenAI JSON, with a given image URL.
pub fn one_image_request(image_url: &str, max_tokens: u32) -> Value {
    json!({
        "model": MODEL_NAME,
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_url}},
            {"type": "text", "text": "What is shown in this image?"}
        ]}]
    })
}

pub async fn post(server: &RunningServer, body: &Value) -> (u16, Value) {
    let resp = client()
        .post(url(server, "/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, value)
}

/// Asserts an OpenAI error body with all four keys; returns it.
pub fn assert_error_shape(v: &Value) -> &Value {
    let e = v.get("error").unwrap_or_else(|| panic!("no error: {v}"));
    for key in ["message", "type", "param", "code"] {
        assert!(e.get(key).is_some(), "missing {key} in {v}");
    }
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    e
}

/// Collects the SSE `data:` payloads of a streaming response.
pub async fn sse_events(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.expect("stream body");
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: ").map(str::to_string))
        .collect()
}

/// A one-route HTTP server on 127.0.0.1 answering every request with `body`, optionally
/// after `delay`.
pub async fn serve_bytes(body: Vec<u8>, delay: std::time::Duration) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    addr
}
