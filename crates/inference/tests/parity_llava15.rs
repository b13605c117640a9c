//! Parity with Hugging Face transformers on the tiny LLaVA-1.5 reference model
//! (models/reference/llava-1.5-tiny, made by models/make_reference.py).
//!
//! For every golden case: the chat template renders the same prompt, the processor yields the
//! same `input_ids`, our pixels are within one 8-bit step (after normalization) of the HF
//! processor's, the prompt logits given the golden pixels are within 1e-4 (f32), and greedy
//! decoding reproduces the 16 golden tokens.

#[macro_use]
mod common;

use candle_core::Device;
use common::{max_abs_diff, parity};

parity_suite!("llava-1.5-tiny");

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
fn kv_cache_decode_matches_full_forward() {
    // The last prompt logits from an incremental (cached) pass equal the full pass.
    let m = model();
    let case = &cases()[0];
    let n = case.input_ids.len();
    let batch = case.batch(m);
    let full = m
        .prompt_logits(&case.input_ids, Some(&batch))
        .expect("full");
    let mut cache = m.new_cache();
    m.model()
        .prefill(&case.input_ids[..n - 1], Some(&batch), &mut cache)
        .expect("prefill");
    let step = m
        .model()
        .decode_step(case.input_ids[n - 1], &mut cache)
        .expect("step");
    let last = full.get(n - 1).expect("row");
    assert!(max_abs_diff(&step, &last) <= parity::LOGIT_TOL);
    assert!(Device::Cpu.same_device(m.model().device()));
}

#[test]
fn detail_does_not_change_fixed_resolution_models() {
    use vlm_inference::ImageDetail;
    let m = model();
    let case = &cases()[0];
    let images = parity::decode_files(case);
    for detail in [ImageDetail::Low, ImageDetail::High, ImageDetail::Auto] {
        let p = m
            .prepare_with_detail(&case.messages, &images, &[detail])
            .expect("prepare");
        assert_eq!(p.input_ids, case.input_ids, "{detail:?}");
    }
}
