//! Helpers shared by the parity tests: reading the committed goldens.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::Value;
use vlm_inference::messages::{ChatMessage, ContentPart, MessageContent, Role};

/// `models/reference/<name>`.
pub fn reference_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/reference")
        .join(name)
}

/// SmolLM2-135M-Instruct's GGUF (`make test` fetches it; `VLM_SMOLLM2_GGUF` overrides).
pub fn smollm2_gguf() -> PathBuf {
    let path = std::env::var_os("VLM_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../models/.cache/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "{} is missing: run `make models/.cache/SmolLM2-135M-Instruct.Q4_1.gguf` (make test does)",
        path.display()
    );
    path
}

/// One golden case from `goldens/cases.json`.
pub struct GoldenCase {
    pub name: String,
    pub messages: Vec<ChatMessage>,
    pub image_files: Vec<PathBuf>,
    pub prompt: String,
    pub input_ids: Vec<u32>,
    pub greedy_tokens: Vec<u32>,
    pub pixel_values: Tensor,
    pub logits: Tensor,
    /// `(height, width)` of each image (from the processor for LLaVA-NeXT, else the files).
    pub image_sizes: Vec<(u32, u32)>,
}

impl GoldenCase {
    /// The processor's pixel values as the model's image batch.
    pub fn batch(&self, m: &vlm_inference::VisionLanguageModel) -> vlm_inference::ImageBatch {
        m.image_batch_from_processor(&self.pixel_values, &self.image_sizes)
            .expect("golden batch")
    }
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// Maps OpenAI-style golden messages (image URLs name files in goldens/images).
pub fn openai_messages(v: &Value, images_dir: &Path) -> (Vec<ChatMessage>, Vec<PathBuf>) {
    let mut files = Vec::new();
    let mut out = Vec::new();
    for m in v.as_array().expect("messages") {
        let role = match m["role"].as_str().expect("role") {
            "system" => Role::System,
            "user" => Role::User,
            "developer" => Role::Developer,
            "assistant" => Role::Assistant,
            other => panic!("unexpected role {other}"),
        };
        let content = match &m["content"] {
            Value::String(s) => MessageContent::Text(s.clone()),
            Value::Array(parts) => MessageContent::Parts(
                parts
                    .iter()
                    .map(|p| match p["type"].as_str().expect("type") {
                        "text" => ContentPart::Text(p["text"].as_str().expect("text").into()),
                        "image_url" => {
                            files.push(
                                images_dir.join(p["image_url"]["url"].as_str().expect("url")),
                            );
                            ContentPart::Image
                        }
                        other => panic!("unexpected part {other}"),
                    })
                    .collect(),
            ),
            other => panic!("unexpected content {other}"),
        };
        out.push(ChatMessage::new(role, content));
    }
    (out, files)
}

/// Every case of a reference model, in file order.
pub fn load_cases(model: &str) -> Vec<GoldenCase> {
    let gold = reference_dir(model).join("goldens");
    let text = std::fs::read_to_string(gold.join("cases.json")).expect("cases.json");
    let json: Value = serde_json::from_str(&text).expect("cases.json parses");
    let mut cases = Vec::new();
    for (name, case) in json["cases"].as_object().expect("cases") {
        let (messages, image_files) = openai_messages(&case["messages"], &gold.join("images"));
        let tensors =
            candle_core::safetensors::load(gold.join(format!("{name}.safetensors")), &Device::Cpu)
                .expect("golden tensors");
        let image_sizes: Vec<(u32, u32)> = match tensors.get("image_sizes") {
            Some(t) => t
                .to_vec2::<i64>()
                .expect("image_sizes")
                .into_iter()
                .map(|r| (r[0] as u32, r[1] as u32))
                .collect(),
            None => image_files
                .iter()
                .map(|f| {
                    let (w, h) = image::image_dimensions(f).expect("image size");
                    (h, w)
                })
                .collect(),
        };
        cases.push(GoldenCase {
            image_sizes,
            name: name.clone(),
            messages,
            image_files,
            prompt: case["prompt"].as_str().expect("prompt").to_string(),
            input_ids: ids(&case["input_ids"]),
            greedy_tokens: ids(&case["greedy_tokens"]),
            pixel_values: tensors["pixel_values"].clone(),
            logits: tensors["logits"].clone(),
        });
    }
    cases
}

/// Largest absolute element-wise difference.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .expect("sub")
        .abs()
        .expect("abs")
        .flatten_all()
        .expect("flatten")
        .max(0)
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar")
}

/// The parity checks every reference model must pass, as one reusable harness.
pub mod parity {
    use super::*;
    use vlm_inference::image::{decode_image, DecodeLimits};
    use vlm_inference::{LoadOptions, VisionLanguageModel};

    /// Logit tolerance in f32.
    pub const LOGIT_TOL: f32 = 1e-4;

    pub fn load(model: &str) -> VisionLanguageModel {
        VisionLanguageModel::load(&reference_dir(model), &LoadOptions::default())
            .expect("reference model loads")
    }

    pub fn decode_files(case: &GoldenCase) -> Vec<image::RgbImage> {
        case.image_files
            .iter()
            .map(|f| {
                let bytes = std::fs::read(f).expect("image file");
                decode_image(&bytes, &DecodeLimits::default()).expect("decodes")
            })
            .collect()
    }

    /// One 8-bit step after normalization: (1/255) / std, for the model's smallest std.
    pub fn pixel_tolerance(m: &VisionLanguageModel) -> f32 {
        let min_std = m
            .image_processor()
            .expect("a vision model")
            .image_std
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        ((1.0 / 255.0) / min_std) as f32 + 1e-6
    }

    pub fn template_and_ids(m: &VisionLanguageModel, cases: &[GoldenCase]) {
        for case in cases {
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

    pub fn pixels(m: &VisionLanguageModel, cases: &[GoldenCase]) {
        let tol = pixel_tolerance(m);
        for case in cases {
            let ours = m
                .preprocess_images(&decode_files(case))
                .expect("preprocess")
                .expect("has images");
            let golden = case.batch(m);
            assert_eq!(
                ours.tiles_per_image, golden.tiles_per_image,
                "{}",
                case.name
            );
            assert_eq!(ours.image_sizes, golden.image_sizes, "{}", case.name);
            let diff = max_abs_diff(&ours.pixel_values, &golden.pixel_values);
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

    pub fn logits(m: &VisionLanguageModel, cases: &[GoldenCase]) {
        for case in cases {
            let logits = m
                .prompt_logits(&case.input_ids, Some(&case.batch(m)))
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

    /// Image tokens per image equal the HF processor's (counted in the golden input_ids).
    pub fn image_token_counts(m: &VisionLanguageModel, cases: &[GoldenCase]) {
        let image_token = m.vision_config().unwrap().image_token_id;
        for case in cases {
            let expected = case.input_ids.iter().filter(|&&t| t == image_token).count();
            let ours: usize = case
                .image_sizes
                .iter()
                .map(|&(h, w)| {
                    m.image_tokens_for(h, w, vlm_inference::ImageDetail::Auto)
                        .expect("token count")
                })
                .sum();
            assert_eq!(ours, expected, "{}", case.name);
        }
    }

    pub fn greedy(m: &VisionLanguageModel, cases: &[GoldenCase]) {
        for case in cases {
            let prepared = m
                .prepare(&case.messages, &decode_files(case))
                .expect("prepare");
            let tokens = m
                .generate_greedy(&prepared, case.greedy_tokens.len(), false)
                .expect("generate");
            assert_eq!(tokens, case.greedy_tokens, "{}: greedy tokens", case.name);
        }
    }
}

/// Declares `model()`, `cases()` and the parity tests every reference model must pass:
/// template and `input_ids`, pixels, logits, greedy tokens, and image-token counts.
#[allow(unused_macros)] // used by the parity test crates, not by every crate including this module
macro_rules! parity_suite {
    ($model:expr) => {
        fn model() -> &'static vlm_inference::VisionLanguageModel {
            static M: std::sync::OnceLock<vlm_inference::VisionLanguageModel> =
                std::sync::OnceLock::new();
            M.get_or_init(|| common::parity::load($model))
        }

        fn cases() -> &'static [common::GoldenCase] {
            static C: std::sync::OnceLock<Vec<common::GoldenCase>> = std::sync::OnceLock::new();
            C.get_or_init(|| common::load_cases($model))
        }

        #[test]
        fn chat_template_and_input_ids_match() {
            common::parity::template_and_ids(model(), cases());
        }

        #[test]
        fn pixel_values_match_the_hf_processor() {
            common::parity::pixels(model(), cases());
        }

        #[test]
        fn prompt_logits_match_given_golden_pixels() {
            common::parity::logits(model(), cases());
        }

        #[test]
        fn greedy_tokens_match_end_to_end() {
            common::parity::greedy(model(), cases());
        }

        #[test]
        fn image_token_counts_match_the_processor() {
            common::parity::image_token_counts(model(), cases());
        }
    };
}
