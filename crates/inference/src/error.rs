//! The inference crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading a model or running it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the model needs is not present.
    #[error("{path}: missing ({what})")]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
        /// What the file would have provided.
        what: String,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is not valid JSON or does not have the expected shape.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file being parsed.
        path: PathBuf,
        /// serde's explanation.
        #[source]
        source: serde_json::Error,
    },
    /// A configuration value is present but not usable.
    #[error("{path}: {message}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The model's architecture, vision tower or text model is not supported.
    #[error("unsupported {what}: {name}")]
    Unsupported {
        /// Which component (architecture, vision tower, text model, ...).
        what: &'static str,
        /// The name found in the config.
        name: String,
    },
    /// A weight is missing or has the wrong shape.
    #[error("weights: {0}")]
    Weights(String),
    /// Resolving a model through the Hugging Face Hub failed.
    #[error("hub: {0}")]
    Hub(String),
    /// The tokenizer failed to load or to encode/decode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed to load or render.
    #[error("chat template: {0}")]
    Template(#[from] crate::chat_template::TemplateError),
    /// An image could not be decoded or preprocessed.
    #[error("image: {0}")]
    Image(#[from] crate::image::ImageDecodeError),
    /// The request does not fit the model (image count mismatch, prompt too long, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
