//! End-to-end tests of the HTTP API against the tiny reference model, on an ephemeral port.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn health_models_and_route_errors() {
    let s = start(&[]).await;
    let r = client().get(url(&s, "/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = client()
        .get(url(&s, "/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], MODEL_NAME);
    assert_eq!(v["data"][0]["object"], "model");
    let r = client()
        .get(url(&s, "/v1/models/tiny"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(url(&s, "/v1/models/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(assert_error_shape(&v)["code"], "model_not_found");
    let r = client().get(url(&s, "/v2/whatever")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_error_shape(&r.json().await.unwrap());
    let r = client()
        .get(url(&s, "/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_error_shape(&r.json().await.unwrap());
}

#[tokio::test]
async fn greedy_answer_matches_the_golden_tokens() {
    let s = start(&[]).await;
    let cases = cases();
    let case = &cases["cases"]["one_image"];
    let body = one_image_request(&data_url(&golden_image("square_50.png")), 16);
    let (status, v) = post(&s, &body).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], MODEL_NAME);
    assert!(v["system_fingerprint"].as_str().unwrap().starts_with("fp_"));
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["refusal"].is_null());
    assert!(choice["logprobs"].is_null());
    assert_eq!(choice["finish_reason"], "length");
    let prompt_len = case["input_ids"].as_array().unwrap().len() as u64;
    assert_eq!(v["usage"]["prompt_tokens"], prompt_len);
    assert_eq!(v["usage"]["completion_tokens"], 16);
    assert_eq!(v["usage"]["total_tokens"], prompt_len + 16);
    // Same text as decoding the golden greedy tokens with the model's tokenizer.
    let tok = tokenizers::Tokenizer::from_file(model_dir().join("tokenizer.json")).unwrap();
    let ids: Vec<u32> = case["greedy_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let expected = tok.decode(&ids, true).unwrap();
    assert_eq!(choice["message"]["content"], expected.as_str());
}

#[tokio::test]
async fn roles_tool_history_and_unknown_fields_are_accepted() {
    let s = start(&[]).await;
    let body = json!({
        "model": MODEL_NAME, "max_completion_tokens": 2, "max_tokens": 50,
        "some_vendor_field": {"x": 1}, "store": false, "metadata": {"a": "b"}, "user": "u1",
        "seed": 7, "n": 2, "tool_choice": "none", "response_format": {"type": "text"},
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "system", "content": [{"type": "text", "text": "Really brief."}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            {"role": "user", "content": "Thanks"}
        ]
    });
    let (status, v) = post(&s, &body).await;
    assert_eq!(status, 200, "{v}");
    // max_completion_tokens wins over max_tokens; n choices, usage counts all of them.
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        v["choices"][1]["message"]["content"]
    );
}

#[tokio::test]
async fn bad_requests_get_openai_errors_naming_the_param() {
    let s = start(&["--max-n", "4"]).await;
    let img = data_url(&golden_image("square_50.png"));
    let base = one_image_request(&img, 4);
    let with = |patch: Value| {
        let mut b = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(json!({"temperature": 2.5})), "temperature"),
        (with(json!({"top_p": 1.5})), "top_p"),
        (with(json!({"top_p": 0})), "top_p"),
        (with(json!({"n": 0})), "n"),
        (with(json!({"n": 5})), "n"),
        (with(json!({"max_tokens": 0})), "max_tokens"),
        (with(json!({"presence_penalty": 3})), "presence_penalty"),
        (with(json!({"logit_bias": {"x": 5}})), "logit_bias"),
        (with(json!({"top_logprobs": 3})), "top_logprobs"),
        (
            with(json!({"logprobs": true, "top_logprobs": 21})),
            "top_logprobs",
        ),
        (with(json!({"logit_bias": {"5000": 1}})), "logit_bias"),
        (with(json!({"logit_bias": {"3": 101}})), "logit_bias"),
        (
            with(json!({"frequency_penalty": -2.5})),
            "frequency_penalty",
        ),
        (with(json!({"stop": ["a", "b", "c", "d", "e"]})), "stop"),
        (
            with(json!({"response_format": {"type": "json_object"}})),
            "response_format",
        ),
        (
            with(json!({"tools": [{"type": "function", "function": {"name": "f"}}]})),
            "tools",
        ),
        (with(json!({"tool_choice": "required"})), "tool_choice"),
        (
            with(json!({"stream_options": {"include_usage": true}})),
            "stream_options",
        ),
        (with(json!({"messages": []})), "messages"),
        (
            with(json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]})),
            "messages[0].content[0].type",
        ),
        (
            with(
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": img, "detail": "ultra"}}]}]}),
            ),
            "messages[0].content[0].image_url.detail",
        ),
        (
            with(
                json!({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": img}}]}]}),
            ),
            "messages[0].content[0]",
        ),
        (
            with(json!({"messages": [{"role": "wizard", "content": "x"}]})),
            "messages[0].role",
        ),
        (with(json!({"model": 12})), "model"),
    ];
    for (body, param) in cases {
        let (status, v) = post(&s, &body).await;
        assert_eq!(status, 400, "{param}: {v}");
        let e = assert_error_shape(&v);
        assert_eq!(e["type"], "invalid_request_error", "{v}");
        assert_eq!(e["param"], param, "{v}");
    }
}

#[tokio::test]
async fn malformed_json_is_a_400_with_serde_explanation() {
    let s = start(&[]).await;
    let r = client()
        .post(url(&s, "/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{\"model\": \"tiny\", \"messages\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    let msg = assert_error_shape(&v)["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("parse the JSON") && msg.contains("line 1"),
        "{msg}"
    );
}

#[tokio::test]
async fn unknown_model_is_404() {
    let s = start(&[]).await;
    let mut body = one_image_request("data:,", 1);
    body["model"] = json!("gpt-4o");
    let (status, v) = post(&s, &body).await;
    assert_eq!(status, 404);
    assert_eq!(assert_error_shape(&v)["code"], "model_not_found");
}

#[tokio::test]
async fn auth_is_required_everywhere_but_health() {
    let s = start(&["--api-key", "sk-a", "--api-key", "sk-b"]).await;
    let r = client().get(url(&s, "/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for key in [None, Some("sk-wrong"), Some("SK-A")] {
        let mut req = client().get(url(&s, "/v1/models"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{key:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(assert_error_shape(&v)["code"], "invalid_api_key");
        let r = client()
            .post(url(&s, "/v1/chat/completions"))
            .json(&one_image_request("data:,", 1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = client()
        .get(url(&s, "/v1/models"))
        .bearer_auth("sk-b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn api_key_file_is_read() {
    let path = std::env::temp_dir().join(format!("vlm-keys-{}", std::process::id()));
    std::fs::write(&path, "# keys\nsk-file\n\n").unwrap();
    let s = start(&["--api-key-file", path.to_str().unwrap()]).await;
    let ok = client()
        .get(url(&s, "/v1/models"))
        .bearer_auth("sk-file")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let no = client()
        .get(url(&s, "/v1/models"))
        .bearer_auth("# keys")
        .send()
        .await
        .unwrap();
    assert_eq!(no.status(), 401);
}

#[tokio::test]
async fn health_and_chat_are_503_before_the_model_loads() {
    use clap::Parser;
    use tower::ServiceExt;
    let args = vlm_server::Args::try_parse_from([
        "vlm-server",
        "--model",
        "unused",
        "--served-model-name",
        MODEL_NAME,
    ])
    .unwrap();
    let state = vlm_server::app::build_state(&args).unwrap();
    let app = vlm_server::app::router(state);
    let r = app
        .clone()
        .oneshot(
            axum::http::Request::get("/health")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body = one_image_request("data:,", 1).to_string();
    let r = app
        .oneshot(
            axum::http::Request::post("/v1/chat/completions")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn images_from_http_and_files_follow_the_policy() {
    let png = std::fs::read(golden_image("square_50.png")).unwrap();
    let img_addr = serve_bytes(png, Duration::ZERO).await;
    let http_url = format!("http://{img_addr}/square_50.png");
    let expected = {
        let s = start(&[]).await;
        let (st, v) = post(
            &s,
            &one_image_request(&data_url(&golden_image("square_50.png")), 8),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        v["choices"][0]["message"]["content"].clone()
    };
    // Loopback refused by default (SSRF), allowed with the flag.
    let s = start(&[]).await;
    let (st, v) = post(&s, &one_image_request(&http_url, 8)).await;
    assert_eq!(st, 400, "{v}");
    let e = assert_error_shape(&v);
    assert_eq!(e["param"], "messages[0].content[0].image_url.url");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("--allow-private-image-urls"),
        "{v}"
    );
    let dir = common::model_dir().join("goldens/images");
    let s = start(&[
        "--allow-private-image-urls",
        "--allowed-local-media-path",
        dir.to_str().unwrap(),
    ])
    .await;
    let (st, v) = post(&s, &one_image_request(&http_url, 8)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], expected);
    // file:// inside the allowed directory works, outside it is refused.
    let inside = format!(
        "file://{}",
        golden_image("square_50.png")
            .canonicalize()
            .unwrap()
            .display()
    );
    let (st, v) = post(&s, &one_image_request(&inside, 8)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], expected);
    let outside = format!(
        "file://{}",
        common::model_dir()
            .join("config.json")
            .canonicalize()
            .unwrap()
            .display()
    );
    let (st, v) = post(&s, &one_image_request(&outside, 8)).await;
    assert_eq!(st, 400, "{v}");
    assert_error_shape(&v);
}

#[tokio::test]
async fn image_failures_are_client_errors_never_500() {
    let png = std::fs::read(golden_image("square_50.png")).unwrap();
    let slow = serve_bytes(png.clone(), Duration::from_secs(5)).await;
    let s = start(&[
        "--allow-private-image-urls",
        "--image-fetch-timeout-secs",
        "0.3",
        "--max-image-bytes",
        "4000",
        "--max-image-pixels",
        "2000",
    ])
    .await;
    // Timeout.
    let (st, v) = post(&s, &one_image_request(&format!("http://{slow}/x.png"), 4)).await;
    assert_eq!(st, 400, "{v}");
    let e = assert_error_shape(&v);
    assert_eq!(e["code"], "image_fetch_timeout");
    assert!(e["message"].as_str().unwrap().contains("timed out"), "{v}");
    // Not an image.
    let garbage = "data:image/png;base64,aGVsbG8gd29ybGQ=";
    let (st, v) = post(&s, &one_image_request(garbage, 4)).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(assert_error_shape(&v)["code"], "invalid_image_format");
    // Bad base64.
    let (st, v) = post(&s, &one_image_request("data:image/png;base64,@@@", 4)).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(assert_error_shape(&v)["code"], "invalid_image_url");
    // Too many pixels (100×100 = 10000 > 2000, but few bytes), checked before decoding.
    let flat = image::RgbImage::from_pixel(100, 100, image::Rgb([9, 99, 199]));
    let mut png_bytes = std::io::Cursor::new(Vec::new());
    flat.write_to(&mut png_bytes, image::ImageFormat::Png)
        .unwrap();
    assert!(png_bytes.get_ref().len() < 4000);
    let flat_url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png_bytes.get_ref())
    );
    let (st, v) = post(&s, &one_image_request(&flat_url, 4)).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        assert_error_shape(&v)["message"]
            .as_str()
            .unwrap()
            .contains("pixels"),
        "{v}"
    );
    // Too many bytes (the 64×40 PNG is larger than 4000 bytes).
    assert!(std::fs::read(golden_image("wide_64x40.png")).unwrap().len() > 4000);
    let (st, v) = post(
        &s,
        &one_image_request(&data_url(&golden_image("wide_64x40.png")), 4),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(
        assert_error_shape(&v)["message"]
            .as_str()
            .unwrap()
            .contains("larger than"),
        "{v}"
    );
    // Unsupported scheme.
    let (st, v) = post(&s, &one_image_request("ftp://example.com/a.png", 4)).await;
    assert_eq!(st, 400, "{v}");
}

#[tokio::test]
async fn limits_on_body_images_and_context() {
    let s = start(&["--max-body-bytes", "20000", "--max-images-per-request", "2"]).await;
    // Body over the limit: 413 in OpenAI's shape.
    let big = "x".repeat(30_000);
    let mut body = one_image_request("data:,", 1);
    body["messages"][0]["content"][1]["text"] = json!(big);
    let (st, v) = post(&s, &body).await;
    assert_eq!(st, 413, "{v}");
    assert_error_shape(&v);
    // Three images when two are allowed.
    let img = data_url(&golden_image("gray_20x24.png"));
    let part = json!({"type": "image_url", "image_url": {"url": img}});
    let body = json!({"model": MODEL_NAME, "max_tokens": 1, "messages": [{"role": "user", "content": [part, part, part]}]});
    let (st, v) = post(&s, &body).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        assert_error_shape(&v)["message"]
            .as_str()
            .unwrap()
            .contains("at most 2"),
        "{v}"
    );
    // Prompt + max_tokens beyond the 512-token context.
    let (st, v) = post(&s, &one_image_request(&img, 600)).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(assert_error_shape(&v)["code"], "context_length_exceeded");
    // A prompt alone longer than the context.
    let long = "What is shown in this image? ".repeat(200);
    let body = json!({"model": MODEL_NAME, "messages": [{"role": "user", "content": long}]});
    let (st, v) = post(&s, &body).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(assert_error_shape(&v)["code"], "context_length_exceeded");
    // The image token typed as text cannot smuggle in a placeholder.
    let body = json!({"model": MODEL_NAME, "max_tokens": 1, "messages": [{"role": "user", "content": "<image> hi"}]});
    let (st, v) = post(&s, &body).await;
    assert_eq!(st, 400, "{v}");
}

#[tokio::test]
async fn streaming_chunks_follow_openai() {
    let s = start(&[]).await;
    let img = data_url(&golden_image("square_50.png"));
    let (_, full) = post(&s, &one_image_request(&img, 16)).await;
    let expected = full["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    for include_usage in [false, true] {
        let mut body = one_image_request(&img, 16);
        body["stream"] = json!(true);
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let r = client()
            .post(url(&s, "/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let events = sse_events(r).await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let id = chunks[0]["id"].clone();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let mut text = String::new();
        let mut usage_chunks = 0;
        for c in &chunks {
            assert_eq!(c["id"], id);
            assert_eq!(c["object"], "chat.completion.chunk");
            if include_usage {
                assert!(c.get("usage").is_some(), "{c}");
                if !c["usage"].is_null() {
                    usage_chunks += 1;
                    assert_eq!(c["choices"].as_array().unwrap().len(), 0);
                }
            } else {
                assert!(
                    c.get("usage").is_none(),
                    "usage sent without include_usage: {c}"
                );
            }
            if let Some(t) = c["choices"][0]["delta"]["content"].as_str() {
                text.push_str(t);
            }
        }
        assert_eq!(text, expected);
        let finish: Vec<&Value> = chunks
            .iter()
            .filter(|c| {
                !c["choices"][0]["finish_reason"].is_null()
                    && c["choices"].as_array().is_some_and(|a| !a.is_empty())
            })
            .collect();
        assert_eq!(finish.len(), 1);
        assert_eq!(finish[0]["choices"][0]["finish_reason"], "length");
        if include_usage {
            assert_eq!(usage_chunks, 1);
            let last = chunks.last().unwrap();
            assert_eq!(last["usage"]["completion_tokens"], 16);
            assert_eq!(
                last["usage"]["prompt_tokens"],
                full["usage"]["prompt_tokens"]
            );
        }
    }
}

#[tokio::test]
async fn a_client_that_disconnects_stops_its_generation() {
    let s = start(&["--max-n", "16"]).await;
    let engine = s.state.engine.get().unwrap().clone();
    let body = json!({"model": MODEL_NAME, "n": 8, "max_tokens": 300, "messages": [{"role": "user", "content": "Hi"}]});
    // The full answer, for reference.
    let (st, full) = post(&s, &body).await;
    assert_eq!(st, 200, "{full}");
    let full_tokens = full["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(
        full_tokens > 200,
        "the reference answer is too short to observe cancellation"
    );
    let before = engine
        .stats()
        .generated_tokens
        .load(std::sync::atomic::Ordering::SeqCst);
    let finished = engine
        .stats()
        .finished_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let mut stream_body = body.clone();
    stream_body["stream"] = json!(true);
    let mut r = client()
        .post(url(&s, "/v1/chat/completions"))
        .json(&stream_body)
        .send()
        .await
        .unwrap();
    let first = r.chunk().await.unwrap();
    assert!(first.is_some());
    drop(r);
    // Wait for the worker to finish the request, however it ends.
    for _ in 0..1000 {
        if engine
            .stats()
            .finished_requests
            .load(std::sync::atomic::Ordering::SeqCst)
            > finished
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let generated = engine
        .stats()
        .generated_tokens
        .load(std::sync::atomic::Ordering::SeqCst)
        - before;
    assert!(
        generated < full_tokens,
        "generated {generated} of {full_tokens} after disconnect"
    );
}

#[tokio::test]
async fn a_full_queue_answers_429() {
    let s = start(&["--max-queue", "1", "--max-n", "16"]).await;
    // A long request occupies the only slot (16 choices to the end of the context).
    let long = json!({"model": MODEL_NAME, "n": 8, "max_tokens": 300, "messages": [{"role": "user", "content": "Hi"}]});
    let addr = url(&s, "/v1/chat/completions");
    let engine = s.state.engine.get().unwrap().clone();
    let first = tokio::spawn(async move { client().post(addr).json(&long).send().await });
    for _ in 0..1000 {
        if engine.in_flight() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let short = json!({"model": MODEL_NAME, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]});
    let (st, v) = post(&s, &short).await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(assert_error_shape(&v)["code"], "rate_limit_exceeded");
    let done = first.await.unwrap().unwrap();
    assert_eq!(done.status(), 200);
}

#[test]
fn device_and_dtype_flags_are_checked() {
    use vlm_server::app::{dtype_for, parse_device};
    use vlm_server::cli::DtypeArg;
    let cpu = parse_device("cpu").unwrap();
    assert!(dtype_for(DtypeArg::Bf16, &cpu)
        .unwrap_err()
        .to_string()
        .contains("bf16"));
    assert_eq!(
        dtype_for(DtypeArg::Auto, &cpu).unwrap(),
        candle_core::DType::F32
    );
    assert_eq!(
        dtype_for(DtypeArg::F16, &cpu).unwrap(),
        candle_core::DType::F16
    );
    assert!(parse_device("tpu")
        .unwrap_err()
        .to_string()
        .contains("expected cpu"));
    assert!(parse_device("cuda:x").is_err());
}

#[tokio::test]
async fn f16_serves_on_cpu() {
    let s = start(&["--dtype", "f16"]).await;
    let (st, v) = post(
        &s,
        &one_image_request(&data_url(&golden_image("square_50.png")), 4),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn detail_is_the_same_on_a_fixed_resolution_model() {
    let s = start(&[]).await;
    let img = data_url(&golden_image("square_50.png"));
    let mut counts = Vec::new();
    for detail in ["low", "high", "auto"] {
        let mut body = one_image_request(&img, 1);
        body["messages"][0]["content"][0]["image_url"]["detail"] = json!(detail);
        let (st, v) = post(&s, &body).await;
        assert_eq!(st, 200, "{v}");
        counts.push(v["usage"]["prompt_tokens"].clone());
    }
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
}
