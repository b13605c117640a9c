//! The files of a model directory in Hugging Face layout, read and validated up front so
//! that a missing or malformed file is reported by name before any weight is touched.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chat_template::{find_chat_template, load_special_tokens, SpecialTokens};
use crate::config::{token_ids, ModelConfig};
use crate::error::{Error, Result};
use crate::image::ImageProcessorConfig;

/// Everything but the weights, parsed from a model directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// The directory.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: ModelConfig,
    /// The image processor settings.
    pub image_processor: ImageProcessorConfig,
    /// `tokenizer.json`.
    pub tokenizer_file: PathBuf,
    /// The chat template source.
    pub chat_template: String,
    /// BOS/EOS strings from `tokenizer_config.json`.
    pub special_tokens: SpecialTokens,
    /// EOS ids from `generation_config.json` and `config.json` (token strings are resolved
    /// against the tokenizer later).
    pub eos_ids: Vec<u32>,
    /// The safetensors files.
    pub weight_files: Vec<PathBuf>,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn require(path: PathBuf, what: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingFile {
            path,
            what: what.to_string(),
        })
    }
}

impl ModelDir {
    /// Reads and validates every non-weight file of `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Config {
                path: dir.to_path_buf(),
                message: "not a directory".into(),
            });
        }
        let config_path = require(dir.join("config.json"), "the model configuration")?;
        let config = ModelConfig::from_file(&config_path)?;
        let image_processor = read_image_processor(dir)?;
        let tokenizer_file = require(dir.join("tokenizer.json"), "the tokenizer")?;
        let chat_template = find_chat_template(dir)?.ok_or_else(|| Error::MissingFile {
            path: dir.join("chat_template.jinja"),
            what:
                "a chat template (chat_template.jinja, chat_template.json, processor_config.json \
                   or tokenizer_config.json `chat_template`)"
                    .into(),
        })?;
        let special_tokens = load_special_tokens(dir)?;
        let mut eos_ids = config.text.eos_token_ids.clone();
        let gen = dir.join("generation_config.json");
        if gen.is_file() {
            let value = read_json(&gen)?;
            if let Some(v) = value.get("eos_token_id").filter(|v| !v.is_null()) {
                let ids = token_ids(v).ok_or_else(|| Error::Config {
                    path: gen.clone(),
                    message: "`eos_token_id` must be an id or a list of ids".into(),
                })?;
                for id in ids {
                    if !eos_ids.contains(&id) {
                        eos_ids.push(id);
                    }
                }
            }
        }
        let weight_files = crate::weights::find_weight_files(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            image_processor,
            tokenizer_file,
            chat_template,
            special_tokens,
            eos_ids,
            weight_files,
        })
    }
}

/// `preprocessor_config.json`, or the `image_processor` section of `processor_config.json`.
fn read_image_processor(dir: &Path) -> Result<ImageProcessorConfig> {
    let pre = dir.join("preprocessor_config.json");
    let proc = dir.join("processor_config.json");
    let (path, value) = if pre.is_file() {
        let v = read_json(&pre)?;
        (pre, v)
    } else if proc.is_file() {
        let v = read_json(&proc)?;
        match v.get("image_processor") {
            Some(section) => (proc, section.clone()),
            None => {
                return Err(Error::Config {
                    path: proc,
                    message: "has no `image_processor` section (and preprocessor_config.json is \
                              missing)"
                        .into(),
                })
            }
        }
    } else {
        return Err(Error::MissingFile {
            path: pre,
            what: "the image processor configuration (preprocessor_config.json or \
                   processor_config.json)"
                .into(),
        });
    };
    ImageProcessorConfig::from_json_value(&value).map_err(|e| Error::Config {
        path,
        message: e.to_string(),
    })
}
