//! Parity with transformers on the tiny LLaVA-NeXT layout with a SigLIP tower ("full", last
//! layer, no class token) and a tied Qwen2 (models/reference/llava-next-qwen2-tiny), anyres on the
//! same 56×56 grid of 28-px tiles as the Mistral variant.

mod common;

use std::sync::OnceLock;

use common::parity;
use common::{load_cases, GoldenCase};
use vlm_inference::config::{Architecture, TextKind, VisionKind};
use vlm_inference::{ImageDetail, VisionLanguageModel};

const MODEL: &str = "llava-next-qwen2-tiny";

fn model() -> &'static VisionLanguageModel {
    static M: OnceLock<VisionLanguageModel> = OnceLock::new();
    M.get_or_init(|| parity::load(MODEL))
}

fn cases() -> &'static [GoldenCase] {
    static C: OnceLock<Vec<GoldenCase>> = OnceLock::new();
    C.get_or_init(|| load_cases(MODEL))
}

#[test]
fn config_selects_next_siglip_and_qwen2() {
    let c = model().config();
    assert_eq!(c.architecture, Architecture::LlavaNext);
    assert_eq!(c.vision.kind, VisionKind::Siglip);
    assert_eq!(c.text.kind, TextKind::Qwen2);
    assert!(c.text.tie_word_embeddings);
    // Image tokens per image equal the HF processor's (counted in the golden input_ids).
    for case in cases() {
        let image_token = c.image_token_id;
        let expected = case.input_ids.iter().filter(|&&t| t == image_token).count();
        let ours: usize = case
            .image_sizes
            .iter()
            .map(|&(h, w)| model().image_tokens_for(h, w, ImageDetail::Auto).unwrap())
            .sum();
        assert_eq!(ours, expected, "{}", case.name);
    }
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
