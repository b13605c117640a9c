//! Parity with transformers on the tiny LLaVA-NeXT layout with a SigLIP tower ("full", last
//! layer, no class token) and a tied Qwen2 (models/reference/llava-next-qwen2-tiny), anyres on the
//! same 56×56 grid of 28-px tiles as the Mistral variant.

#[macro_use]
mod common;

use vlm_inference::config::{Architecture, TextKind, VisionKind};

parity_suite!("llava-next-qwen2-tiny");

#[test]
fn config_selects_next_siglip_and_qwen2() {
    let c = model().vision_config().unwrap();
    assert_eq!(c.architecture, Architecture::LlavaNext);
    assert_eq!(c.vision.kind, VisionKind::Siglip);
    assert_eq!(c.text.kind, TextKind::Qwen2);
    assert!(c.text.tie_word_embeddings);
}
