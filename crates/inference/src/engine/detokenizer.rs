//! Incremental detokenization: turns a growing list of token ids into text deltas without
//! splitting multi-byte characters or byte-level BPE sequences (the prefix/read-offset
//! scheme used by TGI and vLLM).

use crate::error::Result;
use crate::tokenizer::TextTokenizer;

/// Streams text out of generated token ids.
#[derive(Debug, Default, Clone)]
pub struct Detokenizer {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl Detokenizer {
    /// An empty detokenizer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token and returns the text it completes (possibly empty while a multi-byte
    /// character is still incomplete).
    pub fn push(&mut self, tokenizer: &TextTokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = tokenizer.decode(&self.ids[self.prefix_offset..])?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.starts_with(&prefix) {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(delta)
        } else {
            Ok(String::new())
        }
    }

    /// Text held back at the end of generation (an incomplete character), decoded as is.
    pub fn flush(&mut self, tokenizer: &TextTokenizer) -> Result<String> {
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = tokenizer.decode(&self.ids[self.prefix_offset..])?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        Ok(full.get(prefix.len()..).unwrap_or_default().to_string())
    }

    /// All ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}
