//! Parity with transformers on the tiny LLaVA-NeXT layout (models/reference/llava-next-mistral-tiny):
//! `LlavaNextForConditionalGeneration` with a CLIP tower, anyres tiling on a 56×56 grid of 28-px
//! tiles (base image + tiles, unpadding to the original aspect ratio, `image_newline`) and a
//! Mistral text model whose 16-token sliding window is shorter than every prompt.

#[macro_use]
mod common;

use common::parity;
use vlm_inference::config::{Architecture, TextKind, VisionKind};
use vlm_inference::ImageDetail;

parity_suite!("llava-next-mistral-tiny");

#[test]
fn config_selects_next_clip_and_mistral() {
    let c = model().vision_config().unwrap();
    assert_eq!(c.architecture, Architecture::LlavaNext);
    assert_eq!(c.vision.kind, VisionKind::Clip);
    assert_eq!(c.text.kind, TextKind::Mistral);
    assert_eq!(c.text.sliding_window, Some(16));
    assert!(cases().iter().all(|c| c.input_ids.len() > 16));
}

#[test]
fn detail_low_encodes_only_the_base_image() {
    let m = model();
    let case = &cases()[0];
    let images = parity::decode_files(case);
    let image_token = m.vision_config().unwrap().image_token_id;
    let count = |details: &[ImageDetail]| {
        let p = m
            .prepare_with_detail(&case.messages, &images, details)
            .expect("prepare");
        let tokens = p.input_ids.iter().filter(|&&t| t == image_token).count();
        let tiles = p.images.expect("images").tiles_per_image;
        (tokens, tiles)
    };
    // 50×50 on the 56×56 grid: base 4 + 4×4 unpadded + 4 newlines; low: base 4 + 1 newline.
    assert_eq!(count(&[ImageDetail::Auto]), (24, vec![5]));
    assert_eq!(count(&[ImageDetail::High]), (24, vec![5]));
    assert_eq!(count(&[ImageDetail::Low]), (5, vec![1]));
    // The low-detail prompt runs end to end (features and placeholders agree).
    let p = m
        .prepare_with_detail(&case.messages, &images, &[ImageDetail::Low])
        .expect("prepare");
    assert_eq!(m.generate_greedy(&p, 4, true).expect("generate").len(), 4);
}
