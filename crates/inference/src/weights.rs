//! Safetensors weights (single file or sharded with an index), memory-mapped, with the
//! tensor names of every known checkpoint layout mapped onto one canonical layout.
//!
//! Canonical names are those of transformers 5's in-memory modules:
//! `model.vision_tower.*` (no `vision_model.` level), `model.multi_modal_projector.*`,
//! `model.language_model.*` and `lm_head.*`. Hub checkpoints converted with transformers 4
//! use `vision_tower.vision_model.*`, `language_model.model.*` and `language_model.lm_head.*`;
//! transformers 5's `save_pretrained` writes `vision_tower.*` and `language_model.model.*`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::error::{Error, Result};

/// Maps a checkpoint tensor name to its canonical name.
pub fn canonical_name(name: &str) -> String {
    const RULES: &[(&str, &str)] = &[
        ("vision_tower.vision_model.", "model.vision_tower."),
        ("language_model.model.", "model.language_model."),
        ("language_model.lm_head.", "lm_head."),
        ("vision_tower.", "model.vision_tower."),
        ("multi_modal_projector.", "model.multi_modal_projector."),
    ];
    if name.starts_with("model.") || name.starts_with("lm_head.") {
        if let Some(rest) = name.strip_prefix("model.vision_tower.vision_model.") {
            return format!("model.vision_tower.{rest}");
        }
        return name.to_string();
    }
    if name == "image_newline" {
        return "model.image_newline".to_string();
    }
    for (from, to) in RULES {
        if let Some(rest) = name.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    name.to_string()
}

/// The safetensors files of a model directory: the shards named by
/// `model.safetensors.index.json`, else `model.safetensors`, else every `*.safetensors`.
pub fn find_weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|source| Error::Io {
            path: index.clone(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| Error::Json {
                path: index.clone(),
                source,
            })?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::Config {
                path: index.clone(),
                message: "`weight_map` is missing or not an object".into(),
            })?;
        let mut files: Vec<PathBuf> = Vec::new();
        for file in map.values() {
            let name = file.as_str().ok_or_else(|| Error::Config {
                path: index.clone(),
                message: "`weight_map` values must be file names".into(),
            })?;
            let path = dir.join(name);
            if !files.contains(&path) {
                if !path.is_file() {
                    return Err(Error::MissingFile {
                        path,
                        what: format!("a weight shard named by {}", index.display()),
                    });
                }
                files.push(path);
            }
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::MissingFile {
            path: single,
            what:
                "model weights (model.safetensors, model.safetensors.index.json or *.safetensors)"
                    .into(),
        });
    }
    Ok(files)
}

/// A var-builder backend over memory-mapped safetensors that answers canonical names.
struct CanonicalSafetensors {
    inner: MmapedSafetensors,
    /// canonical name → name in the files
    names: HashMap<String, String>,
}

impl CanonicalSafetensors {
    fn resolve(&self, name: &str) -> candle_core::Result<&str> {
        self.names.get(name).map(String::as_str).ok_or_else(|| {
            candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            }
        })
    }
}

impl SimpleBackend for CanonicalSafetensors {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!(
                "shape mismatch for {name}: the checkpoint has {:?}, the config implies {:?}",
                t.shape(),
                s
            );
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.inner.load(self.resolve(name)?, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }
}

/// Opens the weight files and returns a var builder that answers canonical names.
pub fn load_var_builder(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    for f in files {
        if !f.is_file() {
            return Err(Error::MissingFile {
                path: f.clone(),
                what: "model weights".into(),
            });
        }
    }
    // SAFETY: the files are memory-mapped read-only; like every safetensors loader we
    // assume they are not modified while the model is loaded.
    let inner = unsafe { MmapedSafetensors::multi(files) }
        .map_err(|e| Error::Weights(format!("{}: {e}", display_files(files))))?;
    let mut names = HashMap::new();
    for (name, _) in inner.tensors() {
        names.insert(canonical_name(&name), name);
    }
    let backend: Box<dyn SimpleBackend> = Box::new(CanonicalSafetensors { inner, names });
    Ok(VarBuilder::from_backend(backend, dtype, device.clone()))
}

fn display_files(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::canonical_name;

    #[test]
    fn maps_every_known_layout() {
        let cases = [
            (
                "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
                "model.vision_tower.encoder.layers.0.mlp.fc1.weight",
            ),
            (
                "vision_tower.encoder.layers.0.mlp.fc1.weight",
                "model.vision_tower.encoder.layers.0.mlp.fc1.weight",
            ),
            (
                "model.vision_tower.vision_model.pre_layrnorm.bias",
                "model.vision_tower.pre_layrnorm.bias",
            ),
            (
                "model.vision_tower.pre_layrnorm.bias",
                "model.vision_tower.pre_layrnorm.bias",
            ),
            (
                "language_model.model.norm.weight",
                "model.language_model.norm.weight",
            ),
            ("language_model.lm_head.weight", "lm_head.weight"),
            (
                "model.language_model.norm.weight",
                "model.language_model.norm.weight",
            ),
            ("lm_head.weight", "lm_head.weight"),
            (
                "multi_modal_projector.linear_1.weight",
                "model.multi_modal_projector.linear_1.weight",
            ),
            ("image_newline", "model.image_newline"),
        ];
        for (from, to) in cases {
            assert_eq!(canonical_name(from), to, "{from}");
        }
    }
}
