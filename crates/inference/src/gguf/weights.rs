//! Tensors of a GGUF file, read on demand by llama.cpp name.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::QTensor;
use candle_core::Device;

use crate::error::{Error, Result};

/// An open GGUF file whose tensors are read one at a time.
pub struct GgufTensors {
    path: PathBuf,
    content: Content,
    file: Mutex<std::fs::File>,
    device: Device,
}

impl std::fmt::Debug for GgufTensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTensors")
            .field("path", &self.path)
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

impl GgufTensors {
    /// Opens `path` and reads its header; tensors go to `device` when read.
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        let content = super::read_content(path)?;
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
            file: Mutex::new(file),
            device: device.clone(),
        })
    }

    /// The file's metadata and tensor index.
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device tensors are read to.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether a tensor of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Reads tensor `name`, checking that its shape (in row-major, outermost first order,
    /// as candle reports GGUF shapes) is `dims`.
    pub fn get(&self, name: &str, dims: &[usize]) -> Result<QTensor> {
        if !self.contains(name) {
            return Err(Error::Weights(format!(
                "{}: tensor `{name}` is missing",
                self.path.display()
            )));
        }
        let mut file = self
            .file
            .lock()
            .map_err(|_| Error::Weights("GGUF reader poisoned".into()))?;
        let t = self
            .content
            .tensor(&mut *file, name, &self.device)
            .map_err(|e| Error::Weights(format!("{}: `{name}`: {e}", self.path.display())))?;
        if t.shape().dims() != dims {
            return Err(Error::Weights(format!(
                "{}: `{name}` has shape {:?}, expected {dims:?}",
                self.path.display(),
                t.shape().dims()
            )));
        }
        Ok(t)
    }
}
