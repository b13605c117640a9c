//! SmolLM2-135M-Instruct requantized to llama.cpp's Q4_K_M mix (the type most hub GGUFs
//! ship): Q5_0 for the 576-wide rows (llama.cpp's fallback where rows are not a multiple
//! of 256), Q4_K / Q6_K for `ffn_down`, Q8_0 / Q5_0 for `attn_v`, Q8_0 for the tied table.
//! Loaded by default these types are converted to our Q4_1 / Q8_0 kernels and take the
//! fused pass; with `QuantKernels::AsStored` they run on candle's kernel for each type.
//! Both must compute the same model: greedy tokens identical up to the first step where
//! the as-stored run's own top two logits are nearly tied, and the answers right.

#[macro_use]
mod common;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, IndexOp};
use vlm_inference::gguf::weights::GgufTensors;
use vlm_inference::messages::ChatMessage;
use vlm_inference::nn::linear::QuantKernels;
use vlm_inference::{LoadOptions, VisionLanguageModel};

/// Steps whose top-2 logit gap is below this are ties that rounding may flip.
const TIE_GAP: f32 = 1.0;
/// Greedy tokens compared per question.
const TOKENS: usize = 16;

/// The type llama.cpp's Q4_K_M gives each SmolLM2 tensor (as its quantizer reports).
fn q4_k_m_type(name: &str, layer: u32) -> GgmlDType {
    if name.ends_with("_norm.weight") {
        GgmlDType::F32
    } else if name == "token_embd.weight" {
        GgmlDType::Q8_0
    } else if name.contains("ffn_down") {
        if layer.is_multiple_of(3) {
            GgmlDType::Q6K
        } else {
            GgmlDType::Q4K
        }
    } else if name.contains("attn_v") && layer.is_multiple_of(2) {
        GgmlDType::Q8_0
    } else {
        GgmlDType::Q5_0
    }
}

fn write_q4_k_m(path: &std::path::Path) {
    let src = GgufTensors::open(&common::smollm2_gguf(), &Device::Cpu).expect("open");
    let content = src.content();
    let mut tensors = Vec::new();
    for (name, info) in &content.tensor_infos {
        let layer = name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let dims = info.shape.dims().to_vec();
        let f = src
            .get(name, &dims)
            .expect("tensor")
            .dequantize(&Device::Cpu)
            .expect("dequantize");
        let q = QTensor::quantize(&f, q4_k_m_type(name, layer)).expect("quantize");
        tensors.push((name.clone(), q));
    }
    let md: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(path).expect("create");
    gguf_file::write(&mut out, &md, &ts).expect("write");
}

fn ask(m: &VisionLanguageModel, q: &str) -> vlm_inference::PreparedPrompt {
    m.prepare(&[ChatMessage::user(q)], &[]).expect("prepare")
}

#[test]
fn q4_k_m_converted_to_our_kernels_answers_as_candles_kernels_do() {
    let path = std::env::temp_dir().join(format!("vlm-smollm2-q4km-{}.gguf", std::process::id()));
    write_q4_k_m(&path);
    let load = |quant_kernels| {
        let opts = LoadOptions {
            quant_kernels,
            ..LoadOptions::default()
        };
        VisionLanguageModel::load(&path, &opts).expect("loads")
    };
    let (converted, stored) = (load(QuantKernels::Convert), load(QuantKernels::AsStored));
    let _ = std::fs::remove_file(&path);
    let questions = [
        ("What is the capital of Japan?", Some("Tokyo")),
        ("What is the largest ocean on Earth?", Some("Pacific")),
        ("What is the chemical symbol for gold?", Some("Au")),
        ("How many days are in a week?", Some("7")),
        ("What color is the sky on a clear day?", None),
    ];
    for (q, answer) in questions {
        let prompt = ask(&stored, q);
        let want = stored
            .generate_greedy(&prompt, TOKENS, true)
            .expect("as stored");
        let got = converted
            .generate_greedy(&prompt, TOKENS, true)
            .expect("converted");
        // The as-stored run's top-2 gap at each of its own greedy steps.
        let mut ids = prompt.input_ids.clone();
        ids.extend(&want);
        let logits = stored.prompt_logits(&ids, None).expect("logits");
        let first_tie = (0..want.len())
            .position(|i| {
                let row = logits
                    .i(prompt.input_ids.len() - 1 + i)
                    .and_then(|r| r.to_vec1::<f32>())
                    .expect("row");
                let mut top = [f32::MIN; 2];
                for v in row {
                    if v > top[0] {
                        top = [v, top[0]];
                    } else if v > top[1] {
                        top[1] = v;
                    }
                }
                top[0] - top[1] < TIE_GAP
            })
            .unwrap_or(want.len());
        let agreed = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        let text = converted.tokenizer().decode(&got).expect("decode");
        println!("{q:45} agreed {agreed:2}/{TOKENS} (first near-tie {first_tie:2}): {text:?}");
        assert!(
            agreed >= first_tie.min(want.len()),
            "{q}: parted at {agreed}, before the first near-tie at {first_tie}"
        );
        if let Some(answer) = answer {
            assert!(text.contains(answer), "{q}: {text:?}");
        }
    }
}
