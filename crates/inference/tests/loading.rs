//! Loading: both weight namings, sharded checkpoints, and clear errors for missing or
//! malformed files.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::{load_cases, max_abs_diff, reference_dir};
use vlm_inference::{LoadOptions, VisionLanguageModel};

const MODEL: &str = "llava-1.5-tiny";

/// A fresh copy of the reference model (all files but the weights) in a temp dir.
fn copy_without_weights(tag: &str) -> PathBuf {
    let src = reference_dir(MODEL);
    let dst = std::env::temp_dir().join(format!("vlm-load-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).expect("mkdir");
    for entry in std::fs::read_dir(&src).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_file() && path.extension().is_none_or(|e| e != "safetensors") {
            std::fs::copy(&path, dst.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    dst
}

fn reference_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(reference_dir(MODEL).join("model.safetensors"), &Device::Cpu)
        .expect("weights")
}

fn first_case_logits_diff(dir: &Path) -> f32 {
    let m = VisionLanguageModel::load(dir, &LoadOptions::default()).expect("loads");
    let case = &load_cases(MODEL)[0];
    let logits = m
        .prompt_logits(&case.input_ids, Some(&case.batch(&m)))
        .expect("forward");
    max_abs_diff(&logits, &case.logits)
}

#[test]
fn hub_layout_with_vision_model_level_in_two_shards() {
    let dir = copy_without_weights("hub");
    let mut shard_a = HashMap::new();
    let mut shard_b = HashMap::new();
    let mut weight_map = serde_json::Map::new();
    for (name, t) in reference_tensors() {
        // transformers 4 / hub naming: vision_tower.vision_model.*
        let renamed = match name.strip_prefix("vision_tower.") {
            Some(rest) => format!("vision_tower.vision_model.{rest}"),
            None => name,
        };
        let (shard, file) = if renamed.starts_with("language_model.") {
            (&mut shard_b, "model-00002-of-00002.safetensors")
        } else {
            (&mut shard_a, "model-00001-of-00002.safetensors")
        };
        weight_map.insert(renamed.clone(), serde_json::Value::String(file.into()));
        shard.insert(renamed, t);
    }
    candle_core::safetensors::save(&shard_a, dir.join("model-00001-of-00002.safetensors"))
        .expect("save a");
    candle_core::safetensors::save(&shard_b, dir.join("model-00002-of-00002.safetensors"))
        .expect("save b");
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).expect("index");
    let diff = first_case_logits_diff(&dir);
    assert!(diff <= 1e-4, "hub-layout logits differ by {diff}");
}

#[test]
fn transformers5_in_memory_layout() {
    let dir = copy_without_weights("v5");
    let renamed: HashMap<String, Tensor> = reference_tensors()
        .into_iter()
        .map(|(name, t)| {
            let n = if let Some(rest) = name.strip_prefix("language_model.model.") {
                format!("model.language_model.{rest}")
            } else if let Some(rest) = name.strip_prefix("language_model.lm_head.") {
                format!("lm_head.{rest}")
            } else {
                format!("model.{name}")
            };
            (n, t)
        })
        .collect();
    candle_core::safetensors::save(&renamed, dir.join("model.safetensors")).expect("save");
    let diff = first_case_logits_diff(&dir);
    assert!(diff <= 1e-4, "v5-layout logits differ by {diff}");
}

fn load_error(dir: &Path) -> String {
    VisionLanguageModel::load(dir, &LoadOptions::default())
        .expect_err("must fail")
        .to_string()
}

fn with_weights(tag: &str) -> PathBuf {
    let dir = copy_without_weights(tag);
    std::fs::copy(
        reference_dir(MODEL).join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .expect("copy weights");
    dir
}

#[test]
fn missing_files_are_named() {
    for (file, expect) in [
        ("config.json", "config.json: missing"),
        ("tokenizer.json", "tokenizer.json: missing"),
        ("model.safetensors", "model.safetensors: missing"),
        ("processor_config.json", "preprocessor_config.json: missing"),
        ("chat_template.jinja", "chat template"),
    ] {
        let dir = with_weights(&format!("missing-{file}"));
        std::fs::remove_file(dir.join(file)).expect("remove");
        let err = load_error(&dir);
        assert!(err.contains(expect), "removing {file}: {err}");
    }
}

#[test]
fn malformed_files_are_named_with_the_problem() {
    let dir = with_weights("bad-json");
    std::fs::write(dir.join("config.json"), "{\"architectures\": [").expect("write");
    let err = load_error(&dir);
    assert!(
        err.contains("config.json") && err.contains("invalid JSON"),
        "{err}"
    );

    let dir = with_weights("bad-field");
    let cfg = std::fs::read_to_string(dir.join("config.json")).expect("read");
    let cfg = cfg.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": \"two\"");
    std::fs::write(dir.join("config.json"), cfg).expect("write");
    let err = load_error(&dir);
    assert!(
        err.contains("config.json") && err.contains("text_config"),
        "{err}"
    );

    let dir = with_weights("bad-weights");
    std::fs::write(dir.join("model.safetensors"), b"not safetensors").expect("write");
    let err = load_error(&dir);
    assert!(err.contains("model.safetensors"), "{err}");

    let dir = with_weights("bad-shape");
    let cfg = std::fs::read_to_string(dir.join("config.json")).expect("read");
    let cfg = cfg.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96");
    std::fs::write(dir.join("config.json"), cfg).expect("write");
    let err = load_error(&dir);
    assert!(err.contains("shape mismatch"), "{err}");

    let dir = with_weights("bad-tokenizer");
    std::fs::write(dir.join("tokenizer.json"), "{}").expect("write");
    let err = load_error(&dir);
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn unsupported_architecture_names_itself() {
    let dir = with_weights("arch");
    let cfg = std::fs::read_to_string(dir.join("config.json")).expect("read");
    let cfg = cfg.replace("LlavaForConditionalGeneration", "FancyVisionModel");
    std::fs::write(dir.join("config.json"), cfg).expect("write");
    let err = load_error(&dir);
    assert!(err.contains("FancyVisionModel"), "{err}");
}

#[test]
fn preprocessor_config_json_is_read_when_present() {
    // Older checkpoints keep the image processor in preprocessor_config.json.
    let dir = with_weights("preproc");
    let proc_path = dir.join("processor_config.json");
    let proc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&proc_path).expect("read")).expect("json");
    let mut section = proc["image_processor"].clone();
    // A different crop proves which file was used: the load must follow it.
    std::fs::write(dir.join("preprocessor_config.json"), section.to_string()).expect("write");
    std::fs::remove_file(&proc_path).expect("remove");
    let m = VisionLanguageModel::load(&dir, &LoadOptions::default()).expect("loads");
    let case = &load_cases(MODEL)[0];
    let img = vlm_inference::image::decode_image(
        &std::fs::read(&case.image_files[0]).expect("image"),
        &Default::default(),
    )
    .expect("decode");
    let px = m
        .preprocess_images(std::slice::from_ref(&img))
        .expect("ok")
        .expect("some");
    assert!(max_abs_diff(&px.pixel_values, &case.pixel_values) < 1e-6);
    section["image_mean"] = serde_json::json!([0.0, 0.0, 0.0]);
    std::fs::write(dir.join("preprocessor_config.json"), section.to_string()).expect("write");
    let m = VisionLanguageModel::load(&dir, &LoadOptions::default()).expect("loads");
    let px = m.preprocess_images(&[img]).expect("ok").expect("some");
    assert!(max_abs_diff(&px.pixel_values, &case.pixel_values) > 0.5);
}

#[test]
fn half_precision_runs_close_to_f32() {
    // f16 keeps 11 mantissa bits (relative error ~5e-4); logits of magnitude ~10 may move by a
    // few hundredths. The argmax of the last position must not move (gap there > 0.03).
    // (candle's CPU backend has no bf16 matmul; the server refuses --dtype bf16 on CPU.)
    {
        let dtype = candle_core::DType::F16;
        let opts = LoadOptions {
            device: Device::Cpu,
            dtype,
            ..LoadOptions::default()
        };
        let m = VisionLanguageModel::load(&reference_dir(MODEL), &opts).expect("loads");
        for case in load_cases(MODEL) {
            let logits = m
                .prompt_logits(&case.input_ids, Some(&case.batch(&m)))
                .expect("forward");
            let diff = max_abs_diff(&logits, &case.logits);
            assert!(diff < 0.25, "{dtype:?} {}: {diff}", case.name);
            let n = case.input_ids.len();
            let ours = logits
                .get(n - 1)
                .unwrap()
                .argmax(0)
                .unwrap()
                .to_scalar::<u32>()
                .unwrap();
            assert_eq!(ours, case.greedy_tokens[0], "{dtype:?} {}", case.name);
        }
    }
}

#[test]
fn any_eos_id_from_generation_config_ends_generation() {
    // generation_config.json may list several EOS ids; the golden first greedy token is made
    // one of them, so greedy generation must stop right after it.
    let case = &load_cases(MODEL)[0];
    let first = case.greedy_tokens[0];
    let dir = with_weights("eos");
    let gen = serde_json::json!({"eos_token_id": [2, first], "bos_token_id": 1});
    std::fs::write(dir.join("generation_config.json"), gen.to_string()).expect("write");
    let m = VisionLanguageModel::load(&dir, &LoadOptions::default()).expect("loads");
    assert!(m.tokenizer().is_eos(2) && m.tokenizer().is_eos(first));
    let images: Vec<_> = case
        .image_files
        .iter()
        .map(|f| {
            vlm_inference::image::decode_image(
                &std::fs::read(f).expect("read"),
                &Default::default(),
            )
            .expect("decode")
        })
        .collect();
    let prepared = m.prepare(&case.messages, &images).expect("prepare");
    assert_eq!(
        m.generate_greedy(&prepared, 16, false).expect("gen"),
        vec![first]
    );
    assert_eq!(
        m.generate_greedy(&prepared, 16, true).expect("gen"),
        case.greedy_tokens
    );
}
