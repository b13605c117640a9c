//! Parity with transformers on the tiny llava-interleave-qwen layout
//! (models/reference/llava-interleave-qwen2-tiny): `LlavaForConditionalGeneration` with a
//! SigLIP tower (last layer, "full"), a gelu projector and Qwen2 (q/k/v bias, tied
//! embeddings) under a ChatML template. Same tolerances as the LLaVA-1.5 parity tests.

mod common;

use std::sync::OnceLock;

use common::parity;
use common::{load_cases, GoldenCase};
use vlm_inference::config::{TextKind, VisionKind};
use vlm_inference::VisionLanguageModel;

const MODEL: &str = "llava-interleave-qwen2-tiny";

fn model() -> &'static VisionLanguageModel {
    static M: OnceLock<VisionLanguageModel> = OnceLock::new();
    M.get_or_init(|| parity::load(MODEL))
}

fn cases() -> &'static [GoldenCase] {
    static C: OnceLock<Vec<GoldenCase>> = OnceLock::new();
    C.get_or_init(|| load_cases(MODEL))
}

#[test]
fn config_selects_siglip_and_qwen2() {
    let c = model().config();
    assert_eq!(c.vision.kind, VisionKind::Siglip);
    assert_eq!(c.text.kind, TextKind::Qwen2);
    assert!(c.text.tie_word_embeddings && c.text.qkv_bias && !c.text.o_bias);
    // SigLIP has no class token; "full" keeps all 2×2 patches.
    assert_eq!(model().tokens_per_image(), 4);
    let names: Vec<&str> = cases().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["one_image", "two_aspect_ratios", "multi_turn"]);
}

#[test]
fn chat_template_and_input_ids_match() {
    parity::template_and_ids(model(), cases());
}

#[test]
fn pixel_values_match_the_hf_processor() {
    parity::pixels(model(), cases());
}

#[test]
fn prompt_logits_match_given_golden_pixels() {
    parity::logits(model(), cases());
}

#[test]
fn greedy_tokens_match_end_to_end() {
    parity::greedy(model(), cases());
}
