//! GGUF files (llama.cpp's format): metadata access and the tokenizer they carry.

pub mod config;
pub mod spm;
pub mod tokenizer;
pub mod weights;

use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};

use crate::error::{Error, Result};

/// The GGUF file `path` names: the path itself when it ends in `.gguf`, or the one `.gguf`
/// file of a directory without `config.json`. `None` for a Hugging Face directory.
pub fn find_gguf(path: &Path) -> Result<Option<std::path::PathBuf>> {
    let is_gguf = |p: &Path| {
        p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    };
    if path.is_file() {
        return Ok(is_gguf(path).then(|| path.to_path_buf()));
    }
    if !path.is_dir() || path.join("config.json").is_file() {
        return Ok(None);
    }
    let entries = std::fs::read_dir(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut found: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_gguf(p))
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(Error::Config {
            path: path.to_path_buf(),
            message: format!(
                "holds several GGUF files ({}); pass the one to serve with --model",
                found
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Reads a GGUF file's header, metadata and tensor index (not the tensor data).
pub fn read_content(path: &Path) -> Result<Content> {
    let mut file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Content::read(&mut file).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: format!("not a readable GGUF file: {e}"),
    })
}

/// Typed access to GGUF metadata with errors that name the key.
pub struct Metadata<'a> {
    content: &'a Content,
}

impl<'a> Metadata<'a> {
    /// Wraps a file's content.
    pub fn new(content: &'a Content) -> Self {
        Self { content }
    }

    fn get(&self, key: &str) -> Result<&'a Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| Error::Tokenizer(format!("GGUF metadata `{key}` is missing")))
    }

    fn bad(key: &str, e: impl std::fmt::Display) -> Error {
        Error::Tokenizer(format!("GGUF metadata `{key}`: {e}"))
    }

    /// A string value.
    pub fn string(&self, key: &str) -> Result<&'a str> {
        self.get(key)?
            .to_string()
            .map(String::as_str)
            .map_err(|e| Self::bad(key, e))
    }

    /// An optional string value.
    pub fn opt_string(&self, key: &str) -> Option<&'a str> {
        self.content
            .metadata
            .get(key)
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
    }

    /// An optional unsigned integer (any integer width).
    pub fn opt_u32(&self, key: &str) -> Option<u32> {
        self.content.metadata.get(key).and_then(|v| v.to_u32().ok())
    }

    /// An optional float (stored as f32 or f64).
    pub fn opt_f64(&self, key: &str) -> Option<f64> {
        let v = self.content.metadata.get(key)?;
        v.to_f64().ok().or_else(|| v.to_f32().ok().map(f64::from))
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Option<bool> {
        self.content
            .metadata
            .get(key)
            .and_then(|v| v.to_bool().ok())
    }

    /// An array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<&'a str>> {
        self.get(key)?
            .to_vec()
            .map_err(|e| Self::bad(key, e))?
            .iter()
            .map(|v| {
                v.to_string()
                    .map(String::as_str)
                    .map_err(|e| Self::bad(key, e))
            })
            .collect()
    }

    /// An optional array of floats.
    pub fn opt_f32s(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let Some(v) = self.content.metadata.get(key) else {
            return Ok(None);
        };
        v.to_vec()
            .map_err(|e| Self::bad(key, e))?
            .iter()
            .map(|v| v.to_f32().map_err(|e| Self::bad(key, e)))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An optional array of integers.
    pub fn opt_i32s(&self, key: &str) -> Result<Option<Vec<i32>>> {
        let Some(v) = self.content.metadata.get(key) else {
            return Ok(None);
        };
        v.to_vec()
            .map_err(|e| Self::bad(key, e))?
            .iter()
            .map(|v| v.to_i32().map_err(|e| Self::bad(key, e)))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}
