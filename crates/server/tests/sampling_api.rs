//! Sampling and decoding controls over HTTP: seed, n with one prefill, stop sequences
//! (streaming too), logprobs, logit_bias and penalties.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use serde_json::{json, Value};

fn text_request(extra: Value) -> Value {
    let mut body = json!({
        "model": MODEL_NAME,
        "max_tokens": 12,
        "messages": [{"role": "user", "content": "Describe the colors, shapes and objects you can see."}]
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn content(v: &Value, i: usize) -> String {
    v["choices"][i]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn same_seed_same_output_different_seed_differs() {
    let s = start(&[]).await;
    let req = |seed: i64| text_request(json!({"temperature": 1.0, "seed": seed, "max_tokens": 16}));
    let (_, a) = post(&s, &req(42)).await;
    let (_, b) = post(&s, &req(42)).await;
    let (_, c) = post(&s, &req(43)).await;
    assert_eq!(content(&a, 0), content(&b, 0));
    assert_ne!(content(&a, 0), content(&c, 0));
    assert_eq!(a["system_fingerprint"], b["system_fingerprint"]);
    let (_, neg) = post(&s, &req(-5)).await;
    assert_eq!(neg["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn n_choices_share_one_prefill() {
    let s = start(&[]).await;
    let engine = s.state.engine.get().unwrap().clone();
    let before = engine.stats().prefills.load(Ordering::SeqCst);
    let (st, v) = post(
        &s,
        &text_request(json!({"n": 4, "temperature": 1.0, "seed": 1, "max_tokens": 8})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(engine.stats().prefills.load(Ordering::SeqCst) - before, 1);
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
    }
    let distinct: std::collections::HashSet<String> = (0..4).map(|i| content(&v, i)).collect();
    assert!(distinct.len() > 1, "sampled choices should differ: {v}");
    if choices.iter().all(|c| c["finish_reason"] == "length") {
        assert_eq!(v["usage"]["completion_tokens"], 32);
    }
}

#[tokio::test]
async fn stop_sequences_are_cut_across_tokens_in_both_modes() {
    let s = start(&[]).await;
    let (_, full) = post(&s, &text_request(json!({"max_tokens": 16}))).await;
    let text = content(&full, 0);
    // A stop sequence from the middle of the greedy answer, spanning several tokens.
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() > 12, "{text}");
    let stop: String = chars[6..11].iter().collect();
    let expected = text[..text.find(&stop).unwrap()].to_string();
    let (st, v) = post(
        &s,
        &text_request(json!({"max_tokens": 16, "stop": [stop.clone(), "never-appears"]})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(content(&v, 0), expected);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let r = client()
        .post(url(&s, "/v1/chat/completions"))
        .json(&text_request(
            json!({"max_tokens": 16, "stop": stop, "stream": true}),
        ))
        .send()
        .await
        .unwrap();
    let events = sse_events(r).await;
    let mut streamed = String::new();
    let mut finish = Vec::new();
    for e in &events[..events.len() - 1] {
        let c: Value = serde_json::from_str(e).unwrap();
        if let Some(t) = c["choices"][0]["delta"]["content"].as_str() {
            streamed.push_str(t);
        }
        if let Some(f) = c["choices"][0]["finish_reason"].as_str() {
            finish.push(f.to_string());
        }
    }
    assert_eq!(streamed, expected);
    assert_eq!(finish, vec!["stop"]);
}

#[tokio::test]
async fn logprobs_have_openais_shape_and_are_consistent() {
    let s = start(&[]).await;
    let (st, v) = post(
        &s,
        &text_request(json!({"max_tokens": 5, "logprobs": true, "top_logprobs": 3})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let content_lp = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content_lp.len(), 5);
    assert!(v["choices"][0]["logprobs"]["refusal"].is_null());
    for e in content_lp {
        let lp = e["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0);
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(top[0]["token"], e["token"]);
        assert_eq!(top[0]["logprob"], e["logprob"]);
        let mass: f64 = top
            .iter()
            .map(|t| t["logprob"].as_f64().unwrap().exp())
            .sum();
        assert!(mass <= 1.0 + 1e-4);
        assert!(e["bytes"].as_array().is_some_and(|b| !b.is_empty()));
    }
    // Without logprobs: null.
    let (_, plain) = post(&s, &text_request(json!({"max_tokens": 2}))).await;
    assert!(plain["choices"][0]["logprobs"].is_null());
    // Streaming carries the same entries, spread over the chunks.
    let r = client()
        .post(url(&s, "/v1/chat/completions"))
        .json(&text_request(
            json!({"max_tokens": 5, "logprobs": true, "top_logprobs": 3, "stream": true}),
        ))
        .send()
        .await
        .unwrap();
    let events = sse_events(r).await;
    let mut streamed = Vec::new();
    for e in &events[..events.len() - 1] {
        let c: Value = serde_json::from_str(e).unwrap();
        if let Some(entries) = c["choices"][0]["logprobs"]["content"].as_array() {
            streamed.extend(entries.iter().cloned());
        }
    }
    // Same tokens; values equal up to float summation order (the second request reuses the
    // first one's prompt keys/values, computed in a different split).
    assert_eq!(streamed.len(), content_lp.len());
    for (a, b) in streamed.iter().zip(content_lp) {
        assert_eq!(a["token"], b["token"]);
        assert_eq!(a["bytes"], b["bytes"]);
        let (x, y) = (
            a["logprob"].as_f64().unwrap(),
            b["logprob"].as_f64().unwrap(),
        );
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        let tokens = |e: &Value| -> Vec<Value> {
            e["top_logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["token"].clone())
                .collect()
        };
        assert_eq!(tokens(a), tokens(b));
    }
}

#[tokio::test]
async fn logit_bias_forces_and_bans() {
    let s = start(&[]).await;
    let (_, greedy) = post(
        &s,
        &text_request(json!({"max_tokens": 4, "logprobs": true})),
    )
    .await;
    let first = &greedy["choices"][0]["logprobs"]["content"][0]["token"];
    // +100 on token 300 makes every step choose it.
    let (st, v) = post(
        &s,
        &text_request(json!({"max_tokens": 4, "logprobs": true, "logit_bias": {"300": 100}})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let tok = tokenizers::Tokenizer::from_file(model_dir().join("tokenizer.json")).unwrap();
    let forced = tok.decode(&[300], false).unwrap();
    for e in v["choices"][0]["logprobs"]["content"].as_array().unwrap() {
        assert_eq!(e["token"], forced.as_str());
    }
    // −100 on the greedy first token changes the first token.
    let ids: Vec<u32> = (0..1000u32)
        .filter(|i| tok.decode(&[*i], false).unwrap() == first.as_str().unwrap())
        .collect();
    assert!(!ids.is_empty());
    let bias: serde_json::Map<String, Value> =
        ids.iter().map(|i| (i.to_string(), json!(-100))).collect();
    let (_, banned) = post(
        &s,
        &text_request(json!({"max_tokens": 1, "logprobs": true, "logit_bias": bias})),
    )
    .await;
    assert_ne!(
        &banned["choices"][0]["logprobs"]["content"][0]["token"],
        first
    );
}

#[tokio::test]
async fn frequency_penalty_discourages_repeats() {
    let s = start(&[]).await;
    let count_repeats = |v: &Value| -> usize {
        let toks: Vec<String> = v["choices"][0]["logprobs"]["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["token"].as_str().unwrap().to_string())
            .collect();
        toks.len() - toks.iter().collect::<std::collections::HashSet<_>>().len()
    };
    let (_, plain) = post(
        &s,
        &text_request(json!({"max_tokens": 40, "logprobs": true})),
    )
    .await;
    let (_, penalized) = post(&s, &text_request(json!({"max_tokens": 40, "logprobs": true, "frequency_penalty": 2.0, "presence_penalty": 2.0}))).await;
    assert!(
        count_repeats(&penalized) <= count_repeats(&plain),
        "{} vs {}",
        count_repeats(&penalized),
        count_repeats(&plain)
    );
    assert_ne!(content(&plain, 0), content(&penalized, 0));
}
