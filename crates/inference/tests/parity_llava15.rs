//! Parity with Hugging Face transformers on the tiny LLaVA-1.5 reference model
//! (models/reference/llava-1.5-tiny, made by models/make_reference.py).
//!
//! For every golden case: the chat template renders the same prompt, the processor yields the
//! same `input_ids`, our pixels are within one 8-bit step (after normalization) of the HF
//! processor's, the prompt logits given the golden pixels are within 1e-4 (f32), and greedy
//! decoding reproduces the 16 golden tokens.

mod common;

use std::sync::OnceLock;

use candle_core::Device;
use common::{load_cases, max_abs_diff, reference_dir, GoldenCase};
use vlm_inference::image::{decode_image, DecodeLimits};
use vlm_inference::{LoadOptions, VisionLanguageModel};

const MODEL: &str = "llava-1.5-tiny";
const LOGIT_TOL: f32 = 1e-4;

fn model() -> &'static VisionLanguageModel {
    static M: OnceLock<VisionLanguageModel> = OnceLock::new();
    M.get_or_init(|| {
        VisionLanguageModel::load(&reference_dir(MODEL), &LoadOptions::default())
            .expect("reference model loads")
    })
}

fn cases() -> &'static [GoldenCase] {
    static C: OnceLock<Vec<GoldenCase>> = OnceLock::new();
    C.get_or_init(|| load_cases(MODEL))
}

fn decode_files(case: &GoldenCase) -> Vec<image::RgbImage> {
    case.image_files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).expect("image file");
            decode_image(&bytes, &DecodeLimits::default()).expect("decodes")
        })
        .collect()
}

/// One 8-bit step after normalization: (1/255) / std, for the model's smallest std.
fn pixel_tolerance() -> f32 {
    let min_std = model()
        .image_processor()
        .image_std
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    ((1.0 / 255.0) / min_std) as f32 + 1e-6
}

#[test]
fn cases_cover_the_required_inputs() {
    let names: Vec<&str> = cases().iter().map(|c| c.name.as_str()).collect();
    for required in [
        "one_image",
        "two_images",
        "wide",
        "tall",
        "grayscale",
        "rgba",
    ] {
        assert!(
            names.contains(&required),
            "missing case {required}: {names:?}"
        );
    }
}

#[test]
fn chat_template_and_input_ids_match() {
    let m = model();
    for case in cases() {
        let images = decode_files(case);
        let prepared = m.prepare(&case.messages, &images).expect("prepare");
        assert_eq!(prepared.prompt, case.prompt, "{}: prompt", case.name);
        assert_eq!(
            prepared.input_ids, case.input_ids,
            "{}: input_ids",
            case.name
        );
    }
}

#[test]
fn pixel_values_match_the_hf_processor() {
    let m = model();
    let tol = pixel_tolerance();
    for case in cases() {
        let images = decode_files(case);
        let ours = m
            .preprocess_images(&images)
            .expect("preprocess")
            .expect("has images");
        let diff = max_abs_diff(&ours, &case.pixel_values);
        eprintln!(
            "{}: pixel max abs diff {diff:e} (tolerance {tol:e})",
            case.name
        );
        assert!(
            diff <= tol,
            "{}: pixel max abs diff {diff} > {tol}",
            case.name
        );
    }
}

#[test]
fn prompt_logits_match_given_golden_pixels() {
    let m = model();
    for case in cases() {
        let logits = m
            .prompt_logits(&case.input_ids, Some(&case.pixel_values))
            .expect("forward");
        let diff = max_abs_diff(&logits, &case.logits);
        eprintln!("{}: logits max abs diff {diff:e}", case.name);
        assert!(
            diff <= LOGIT_TOL,
            "{}: logits max abs diff {diff}",
            case.name
        );
    }
}

#[test]
fn greedy_tokens_match_end_to_end() {
    let m = model();
    for case in cases() {
        let images = decode_files(case);
        let prepared = m.prepare(&case.messages, &images).expect("prepare");
        let tokens = m
            .generate_greedy(&prepared, case.greedy_tokens.len(), false)
            .expect("generate");
        assert_eq!(tokens, case.greedy_tokens, "{}: greedy tokens", case.name);
    }
}

#[test]
fn kv_cache_decode_matches_full_forward() {
    // The last prompt logits from an incremental (cached) pass equal the full pass.
    let m = model();
    let case = &cases()[0];
    let n = case.input_ids.len();
    let full = m
        .prompt_logits(&case.input_ids, Some(&case.pixel_values))
        .expect("full");
    let mut cache = m.new_cache();
    m.model()
        .prefill(
            &case.input_ids[..n - 1],
            Some(&case.pixel_values),
            &mut cache,
        )
        .expect("prefill");
    let step = m
        .model()
        .decode_step(case.input_ids[n - 1], &mut cache)
        .expect("step");
    let last = full.get(n - 1).expect("row");
    assert!(max_abs_diff(&step, &last) <= LOGIT_TOL);
    assert!(Device::Cpu.same_device(m.model().device()));
}
