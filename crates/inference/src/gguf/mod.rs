//! GGUF files (llama.cpp's format): metadata access and the tokenizer they carry.

pub mod tokenizer;

use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};

use crate::error::{Error, Result};

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
