//! Prefix reuse over HTTP: a text-only request whose prompt starts like the previous one
//! (a repeat, the next chat turn) computes only the new tokens, reports the reused ones in
//! `usage.prompt_tokens_details.cached_tokens`, and answers exactly as without reuse.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use serde_json::{json, Value};

fn chat(messages: Value) -> Value {
    json!({"model": MODEL_NAME, "max_tokens": 10, "temperature": 0, "messages": messages})
}

fn answer(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

fn cached(v: &Value) -> u64 {
    v["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn repeated_and_follow_up_prompts_reuse_the_prefix_and_answer_the_same() {
    let with = start(&[]).await;
    let without = start(&["--no-prefix-cache"]).await;
    let engine = with.state.engine.get().unwrap().clone();
    let first = json!([{"role": "user", "content": "Describe the colors you can see."}]);

    let (st, a) = post(&with, &chat(first.clone())).await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(cached(&a), 0);

    // The same request again: everything but the last prompt token comes from the cache.
    let before = engine.stats().prefilled_tokens.load(Ordering::SeqCst);
    let (_, b) = post(&with, &chat(first.clone())).await;
    let prompt = b["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(cached(&b), prompt - 1);
    assert_eq!(
        engine.stats().prefilled_tokens.load(Ordering::SeqCst) - before,
        1
    );
    assert_eq!(answer(&a), answer(&b));

    // The next turn of the chat: the earlier turn (and the answer's tokens) are reused.
    let follow = json!([
        {"role": "user", "content": "Describe the colors you can see."},
        {"role": "assistant", "content": answer(&a)},
        {"role": "user", "content": "And the shapes?"}
    ]);
    let (_, c) = post(&with, &chat(follow.clone())).await;
    let (_, d) = post(&without, &chat(follow)).await;
    assert!(cached(&c) >= prompt - 1, "{c}");
    assert_eq!(cached(&d), 0);
    assert_eq!(answer(&c), answer(&d));
    assert_eq!(c["usage"]["prompt_tokens"], d["usage"]["prompt_tokens"]);

    // A different prompt shares only the template's opening tokens at most, and still
    // answers as a fresh computation does.
    let other = json!([{"role": "user", "content": "Count to five."}]);
    let (_, e) = post(&with, &chat(other.clone())).await;
    let (_, f) = post(&without, &chat(other)).await;
    assert!(cached(&e) < prompt - 1);
    assert_eq!(answer(&e), answer(&f));
}

#[tokio::test]
async fn requests_with_images_never_reuse() {
    let s = start(&[]).await;
    let img = data_url(&golden_image("square_50.png"));
    let (st, a) = post(&s, &one_image_request(&img, 4)).await;
    assert_eq!(st, 200, "{a}");
    let (_, b) = post(&s, &one_image_request(&img, 4)).await;
    assert_eq!(cached(&a), 0);
    assert_eq!(cached(&b), 0);
    assert_eq!(answer(&a), answer(&b));
}

#[tokio::test]
async fn interleaved_conversations_keep_their_own_prefixes() {
    let s = start(&["--prefix-cache-slots", "2"]).await;
    let one_slot = start(&["--prefix-cache-slots", "1"]).await;
    let turn = |q: &str| json!([{"role": "user", "content": q}]);
    let next = |q: &str, a: &str, r: &str| {
        json!([
            {"role": "user", "content": q},
            {"role": "assistant", "content": a},
            {"role": "user", "content": r}
        ])
    };
    let (qa, qb) = ("Describe the colors you can see.", "Count to five slowly.");
    for server in [&s, &one_slot] {
        let (_, a) = post(server, &chat(turn(qa))).await;
        let (_, b) = post(server, &chat(turn(qb))).await;
        let a_prompt = a["usage"]["prompt_tokens"].as_u64().unwrap();
        // Conversation A's second turn, after B's first turn came in between.
        let (st, a2) = post(server, &chat(next(qa, &answer(&a), "And the shapes?"))).await;
        assert_eq!(st, 200, "{a2}");
        let b_prompt = b["usage"]["prompt_tokens"].as_u64().unwrap();
        if std::ptr::eq(server, &s) {
            assert!(cached(&a2) >= a_prompt - 1, "two slots keep A: {a2}");
            let (_, b2) = post(server, &chat(next(qb, &answer(&b), "Now backwards."))).await;
            assert!(cached(&b2) >= b_prompt - 1, "and B: {b2}");
        } else {
            assert!(cached(&a2) < a_prompt - 1, "one slot: B evicted A: {a2}");
        }
    }
}

#[tokio::test]
async fn the_memory_budget_bounds_what_is_kept() {
    let s = start(&["--prefix-cache-mib", "0"]).await;
    let first = json!([{"role": "user", "content": "Describe the colors you can see."}]);
    let (st, a) = post(&s, &chat(first.clone())).await;
    assert_eq!(st, 200, "{a}");
    let (_, b) = post(&s, &chat(first)).await;
    assert_eq!(cached(&b), 0, "nothing fits a zero budget: {b}");
    assert_eq!(answer(&a), answer(&b));
}
