//! Parity with transformers on the tiny LLaVA-OneVision layout
//! (models/reference/llava-onevision-qwen2-tiny): SigLIP ("full", last layer), Qwen2 tied,
//! anyres on grids up to 112×112 of 28-px tiles with `anyres_max_9`; the `large_downscaled`
//! case (100×100 → 4×4 tiles → 8×8 features) exercises the bilinear feature downscale.

mod common;

use std::sync::OnceLock;

use common::parity;
use common::{load_cases, GoldenCase};
use vlm_inference::config::{Architecture, TextKind, VisionKind};
use vlm_inference::{ImageDetail, VisionLanguageModel};

const MODEL: &str = "llava-onevision-qwen2-tiny";

fn model() -> &'static VisionLanguageModel {
    static M: OnceLock<VisionLanguageModel> = OnceLock::new();
    M.get_or_init(|| parity::load(MODEL))
}

fn cases() -> &'static [GoldenCase] {
    static C: OnceLock<Vec<GoldenCase>> = OnceLock::new();
    C.get_or_init(|| load_cases(MODEL))
}

#[test]
fn config_selects_onevision_siglip_and_qwen2() {
    let c = model().config();
    assert_eq!(c.architecture, Architecture::LlavaOnevision);
    assert_eq!(c.vision.kind, VisionKind::Siglip);
    assert_eq!(c.text.kind, TextKind::Qwen2);
    assert_eq!(c.anyres_max_tiles, Some(9));
    let large = cases()
        .iter()
        .find(|c| c.name == "large_downscaled")
        .unwrap();
    // base 4 + 8×8 grid downscaled to 6×6 + 6 newlines.
    let image_token = c.image_token_id;
    assert_eq!(
        large
            .input_ids
            .iter()
            .filter(|&&t| t == image_token)
            .count(),
        46
    );
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
