//! Parity with transformers on the tiny LLaVA-OneVision layout
//! (models/reference/llava-onevision-qwen2-tiny): SigLIP ("full", last layer), Qwen2 tied,
//! anyres on grids up to 112×112 of 28-px tiles with `anyres_max_9`; the `large_downscaled`
//! case (100×100 → 4×4 tiles → 8×8 features) exercises the bilinear feature downscale.

#[macro_use]
mod common;

use vlm_inference::config::{Architecture, TextKind, VisionKind};

parity_suite!("llava-onevision-qwen2-tiny");

#[test]
fn config_selects_onevision_siglip_and_qwen2() {
    let c = model().vision_config().unwrap();
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
}
