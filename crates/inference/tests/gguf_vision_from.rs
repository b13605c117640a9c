//! A quantized LLaVA: a GGUF language model (`--vision-from`) and in-situ quantization
//! (`--quantize`), both checked against the transformers goldens of llava-1.5-tiny.
//!
//! The GGUF file is written here from the tiny model's own language-model weights, the
//! way llama.cpp's converter does it: llama.cpp tensor names, q/k rows permuted for
//! interleaved rope, `output.weight` for the untied head.

#[macro_use]
mod common;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use common::{load_cases, max_abs_diff, reference_dir};
use vlm_inference::config::ModelConfig;
use vlm_inference::weights::{find_weight_files, load_var_builder};
use vlm_inference::{LoadOptions, VisionLanguageModel};

const MODEL: &str = "llava-1.5-tiny";

/// llama.cpp's `permute`: rows of each head reordered so rotated pairs are adjacent.
fn permute(w: &Tensor, heads: usize) -> Tensor {
    let (out, inp) = w.dims2().expect("2-D");
    w.reshape((heads, 2, out / heads / 2, inp))
        .and_then(|t| t.transpose(1, 2))
        .and_then(|t| t.reshape((out, inp)))
        .expect("permute")
}

/// Writes the tiny model's language model as a llama GGUF with matrices in `matrices`.
fn write_gguf(path: &std::path::Path, matrices: GgmlDType) {
    write_model_gguf(MODEL, "llama", path, matrices)
}

/// Writes `model`'s language model as a GGUF of architecture `arch` (`llama`: q/k rows
/// permuted as llama.cpp's converter does; `qwen2`: q/k/v biases, no permutation).
fn write_model_gguf(model: &str, arch: &str, path: &std::path::Path, matrices: GgmlDType) {
    let dir = reference_dir(model);
    let cfg = ModelConfig::from_file(&dir.join("config.json")).expect("config");
    let t = &cfg.text;
    let vb = load_var_builder(
        &find_weight_files(&dir).expect("weights"),
        DType::F32,
        &Device::Cpu,
    )
    .expect("var builder");
    let get = |name: &str| -> Tensor {
        vb.get_unchecked_dtype(name, DType::F32)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let lm = "model.language_model";
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut put = |name: String, w: Tensor, dtype: GgmlDType| {
        tensors.push((name, QTensor::quantize(&w, dtype).expect("quantize")));
    };
    put(
        "token_embd.weight".into(),
        get(&format!("{lm}.embed_tokens.weight")),
        GgmlDType::F32,
    );
    put(
        "output_norm.weight".into(),
        get(&format!("{lm}.norm.weight")),
        GgmlDType::F32,
    );
    if !t.tie_word_embeddings {
        put("output.weight".into(), get("lm_head.weight"), matrices);
    }
    let llama = arch == "llama";
    for i in 0..t.num_hidden_layers {
        let p = format!("{lm}.layers.{i}");
        let b = format!("blk.{i}");
        let w = |m: &str| get(&format!("{p}.{m}.weight"));
        let (q, k) = (w("self_attn.q_proj"), w("self_attn.k_proj"));
        let (q, k) = if llama {
            (
                permute(&q, t.num_attention_heads),
                permute(&k, t.num_key_value_heads),
            )
        } else {
            (q, k)
        };
        put(format!("{b}.attn_q.weight"), q, matrices);
        put(format!("{b}.attn_k.weight"), k, matrices);
        if t.qkv_bias {
            for (g, h) in [
                ("attn_q", "q_proj"),
                ("attn_k", "k_proj"),
                ("attn_v", "v_proj"),
            ] {
                put(
                    format!("{b}.{g}.bias"),
                    get(&format!("{p}.self_attn.{h}.bias")),
                    GgmlDType::F32,
                );
            }
        }
        put(
            format!("{b}.attn_v.weight"),
            w("self_attn.v_proj"),
            matrices,
        );
        put(
            format!("{b}.attn_output.weight"),
            w("self_attn.o_proj"),
            matrices,
        );
        put(format!("{b}.ffn_gate.weight"), w("mlp.gate_proj"), matrices);
        put(format!("{b}.ffn_up.weight"), w("mlp.up_proj"), matrices);
        put(format!("{b}.ffn_down.weight"), w("mlp.down_proj"), matrices);
        put(
            format!("{b}.attn_norm.weight"),
            w("input_layernorm"),
            GgmlDType::F32,
        );
        put(
            format!("{b}.ffn_norm.weight"),
            w("post_attention_layernorm"),
            GgmlDType::F32,
        );
    }
    let u = |v: usize| Value::U32(v as u32);
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String(arch.into())),
        ("block_count", u(t.num_hidden_layers)),
        ("context_length", u(t.max_position_embeddings)),
        ("embedding_length", u(t.hidden_size)),
        ("feed_forward_length", u(t.intermediate_size)),
        ("attention.head_count", u(t.num_attention_heads)),
        ("attention.head_count_kv", u(t.num_key_value_heads)),
        ("rope.dimension_count", u(t.head_dim)),
        ("vocab_size", u(t.vocab_size)),
        ("rope.freq_base", Value::F32(t.rope.theta as f32)),
        (
            "attention.layer_norm_rms_epsilon",
            Value::F32(t.rms_norm_eps as f32),
        ),
    ];
    let keys: Vec<String> = metadata
        .iter()
        .map(|(k, _)| {
            if k.starts_with("general.") {
                k.to_string()
            } else {
                format!("{arch}.{k}")
            }
        })
        .collect();
    let md: Vec<(&str, &Value)> = keys
        .iter()
        .zip(&metadata)
        .map(|(k, (_, v))| (k.as_str(), v))
        .collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).expect("create gguf");
    gguf_file::write(&mut f, &md, &ts).expect("write gguf");
}

fn temp_gguf(tag: &str, matrices: GgmlDType) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("vlm-tiny-lm-{tag}-{}.gguf", std::process::id()));
    write_gguf(&path, matrices);
    path
}

fn worst_logit_diff(m: &VisionLanguageModel) -> f32 {
    load_cases(MODEL)
        .iter()
        .map(|case| {
            let logits = m
                .prompt_logits(&case.input_ids, Some(&case.batch(m)))
                .expect("forward");
            max_abs_diff(&logits, &case.logits)
        })
        .fold(0f32, f32::max)
}

/// Largest |logit| over the golden cases: quantization error scales with it.
fn logit_scale() -> f32 {
    load_cases(MODEL)
        .iter()
        .map(|case| {
            case.logits
                .abs()
                .and_then(|t| t.max_all())
                .and_then(|t| t.to_scalar::<f32>())
                .expect("max")
        })
        .fold(0f32, f32::max)
}

#[test]
fn f32_gguf_language_model_with_vision_from_matches_transformers() {
    let path = temp_gguf("f32", GgmlDType::F32);
    let opts = LoadOptions {
        vision_from: Some(reference_dir(MODEL)),
        ..LoadOptions::default()
    };
    let m = VisionLanguageModel::load(&path, &opts).expect("GGUF + vision tower");
    let _ = std::fs::remove_file(&path);
    assert!(m.has_vision());
    let diff = worst_logit_diff(&m);
    eprintln!("GGUF f32 LM + safetensors vision: logits max abs diff {diff:e}");
    assert!(diff <= common::parity::LOGIT_TOL, "{diff}");
    common::parity::greedy(&m, &load_cases(MODEL));
}

#[test]
fn qwen2_gguf_language_model_with_vision_from_matches_transformers() {
    // llava-interleave-qwen2-tiny: SigLIP tower, Qwen2 with q/k/v biases and tied embeddings.
    let model = "llava-interleave-qwen2-tiny";
    let path = std::env::temp_dir().join(format!("vlm-tiny-qwen2-{}.gguf", std::process::id()));
    write_model_gguf(model, "qwen2", &path, GgmlDType::F32);
    let opts = LoadOptions {
        vision_from: Some(reference_dir(model)),
        ..LoadOptions::default()
    };
    let m = VisionLanguageModel::load(&path, &opts).expect("qwen2 GGUF + vision tower");
    let _ = std::fs::remove_file(&path);
    let cases = load_cases(model);
    let diff = cases
        .iter()
        .map(|case| {
            let logits = m
                .prompt_logits(&case.input_ids, Some(&case.batch(&m)))
                .expect("forward");
            max_abs_diff(&logits, &case.logits)
        })
        .fold(0f32, f32::max);
    eprintln!("qwen2 GGUF f32 LM + safetensors vision: logits max abs diff {diff:e}");
    assert!(diff <= common::parity::LOGIT_TOL, "{diff}");
    common::parity::greedy(&m, &cases);
}

#[test]
fn q8_0_gguf_language_model_with_vision_from_stays_close() {
    let path = temp_gguf("q8", GgmlDType::Q8_0);
    let opts = LoadOptions {
        vision_from: Some(reference_dir(MODEL)),
        ..LoadOptions::default()
    };
    let m = VisionLanguageModel::load(&path, &opts).expect("GGUF + vision tower");
    let _ = std::fs::remove_file(&path);
    let diff = worst_logit_diff(&m) / logit_scale();
    eprintln!(
        "GGUF Q8_0 LM + safetensors vision: logits max abs diff {diff:.4} of the largest logit"
    );
    assert!(diff > 0.0 && diff < 0.05, "{diff}");
}

#[test]
fn fused_cpu_pass_equals_the_op_by_op_decoder() {
    // Q8_0 matrices run on our kernels, so the decoder takes its fused CPU pass; the
    // unfused load runs the same kernels through candle modules.
    let path = temp_gguf("fused", GgmlDType::Q8_0);
    let load = |unfused: bool| {
        let opts = LoadOptions {
            vision_from: Some(reference_dir(MODEL)),
            unfused,
            ..LoadOptions::default()
        };
        VisionLanguageModel::load(&path, &opts).expect("GGUF + vision tower")
    };
    let (fused, unfused) = (load(false), load(true));
    let _ = std::fs::remove_file(&path);
    for case in load_cases(MODEL) {
        let logits = |m: &VisionLanguageModel| {
            m.prompt_logits(&case.input_ids, Some(&case.batch(m)))
                .expect("forward")
        };
        let diff = max_abs_diff(&logits(&fused), &logits(&unfused));
        assert!(diff < 1e-4, "{}: {diff}", case.name);
        let prepared = fused
            .prepare(&case.messages, &common::parity::decode_files(&case))
            .expect("prepare");
        assert_eq!(
            fused.generate_greedy(&prepared, 8, true).expect("fused"),
            unfused
                .generate_greedy(&prepared, 8, true)
                .expect("unfused"),
            "{}",
            case.name
        );
    }
}

#[test]
fn vision_from_a_different_language_model_is_refused() {
    let path = temp_gguf("mismatch", GgmlDType::F32);
    let opts = LoadOptions {
        vision_from: Some(reference_dir("llava-interleave-qwen2-tiny")),
        ..LoadOptions::default()
    };
    let err = VisionLanguageModel::load(&path, &opts)
        .expect_err("mismatched")
        .to_string();
    let _ = std::fs::remove_file(&path);
    assert!(err.contains("does not match --vision-from"), "{err}");
}

fn quantized(dtype: GgmlDType) -> VisionLanguageModel {
    let opts = LoadOptions {
        quantize: Some(dtype),
        ..LoadOptions::default()
    };
    VisionLanguageModel::load(&reference_dir(MODEL), &opts).expect("quantized")
}

#[test]
fn in_situ_quantization_keeps_logits_close() {
    // Relative to the largest logit (the tiny model's head is scaled ×8, so logits are
    // large). 4-bit blocks of random 64-wide rows are coarse; 8-bit ones are not.
    let q8 = worst_logit_diff(&quantized(GgmlDType::Q8_0)) / logit_scale();
    let q4 = worst_logit_diff(&quantized(GgmlDType::Q4_0)) / logit_scale();
    eprintln!("--quantize: logits max abs diff q8_0 {q8:.4}, q4_0 {q4:.4} of the largest logit");
    assert!(q8 > 0.0 && q8 < 0.05, "q8_0: {q8}");
    assert!(q4 > q8 && q4 < 0.5, "q4_0: {q4}");
}

#[test]
fn k_quants_fall_back_to_q8_0_for_narrow_rows() {
    // Every row of the tiny model is 64 or 128 wide, narrower than Q4K's 256-wide blocks.
    let case = &load_cases(MODEL)[0];
    let logits = |m: &VisionLanguageModel| {
        m.prompt_logits(&case.input_ids, Some(&case.batch(m)))
            .expect("forward")
    };
    let q4k = logits(&quantized(GgmlDType::Q4K));
    let q8 = logits(&quantized(GgmlDType::Q8_0));
    assert_eq!(max_abs_diff(&q4k, &q8), 0.0);
}
