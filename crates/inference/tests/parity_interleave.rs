//! Parity with transformers on the tiny llava-interleave-qwen layout
//! (models/reference/llava-interleave-qwen2-tiny): `LlavaForConditionalGeneration` with a
//! SigLIP tower (last layer, "full"), a gelu projector and Qwen2 (q/k/v bias, tied
//! embeddings) under a ChatML template. Same tolerances as the LLaVA-1.5 parity tests.

#[macro_use]
mod common;

use vlm_inference::config::{TextKind, VisionKind};

parity_suite!("llava-interleave-qwen2-tiny");

#[test]
fn config_selects_siglip_and_qwen2() {
    let c = model().vision_config().unwrap();
    assert_eq!(c.vision.kind, VisionKind::Siglip);
    assert_eq!(c.text.kind, TextKind::Qwen2);
    assert!(c.text.tie_word_embeddings && c.text.qkv_bias && !c.text.o_bias);
    // SigLIP has no class token; "full" keeps all 2×2 patches.
    assert_eq!(model().tokens_per_image(), 4);
    let names: Vec<&str> = cases().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["one_image", "two_aspect_ratios", "multi_turn"]);
}
