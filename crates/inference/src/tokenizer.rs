//! The model's tokenizer (`tokenizer.json`) and the ids that end generation.

use std::path::Path;

use crate::error::{Error, Result};

/// A Hugging Face tokenizer plus the EOS ids collected from the model's configs.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    eos_ids: Vec<u32>,
    /// BOS prepended by `encode` (GGUF models with `add_bos_token`).
    bos: Option<u32>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("eos_ids", &self.eos_ids)
            .finish()
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json`; `eos_ids` are the ids that end generation.
    pub fn from_file(path: &Path, eos_ids: Vec<u32>) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::MissingFile {
                path: path.to_path_buf(),
                what: "the tokenizer".into(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Self {
            inner,
            eos_ids,
            bos: None,
        })
    }

    /// Wraps an already built tokenizer; `encode` prepends `bos` when set (unless the text
    /// already starts with it), as llama.cpp does for models with `add_bos_token`.
    pub fn from_parts(inner: tokenizers::Tokenizer, eos_ids: Vec<u32>, bos: Option<u32>) -> Self {
        Self {
            inner,
            eos_ids,
            bos,
        }
    }

    /// Encodes text, adding the tokenizer's own special tokens (e.g. BOS) as transformers'
    /// processors do.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self
            .inner
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        if let Some(bos) = self.bos {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Decodes ids to text, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The raw bytes a token stands for: byte-level BPE symbols mapped back to bytes,
    /// SentencePiece byte-fallback tokens (`<0xAB>`) to their byte, `▁` to a space.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(token) = self.inner.id_to_token(id) else {
            return Vec::new();
        };
        if let Some(hex) = token.strip_prefix("<0x").and_then(|t| t.strip_suffix('>')) {
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                return vec![b];
            }
        }
        let map = byte_level_inverse();
        let bytes: Option<Vec<u8>> = token.chars().map(|c| map.get(&c).copied()).collect();
        match bytes {
            Some(b) if !token.contains('\u{2581}') => b,
            _ => token.replace('\u{2581}', " ").into_bytes(),
        }
    }

    /// The ids that end generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether `id` ends generation.
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }
}

/// GPT-2's byte ↔ unicode table, inverted: the printable character each byte is shown as in
/// byte-level BPE vocabularies, mapped back to the byte.
fn byte_level_inverse() -> &'static std::collections::HashMap<char, u8> {
    static MAP: std::sync::OnceLock<std::collections::HashMap<char, u8>> =
        std::sync::OnceLock::new();
    MAP.get_or_init(|| {
        let mut printable: Vec<u32> = (u32::from('!')..=u32::from('~')).collect();
        printable.extend(u32::from('\u{a1}')..=u32::from('\u{ac}'));
        printable.extend(u32::from('\u{ae}')..=u32::from('\u{ff}'));
        let mut map = std::collections::HashMap::new();
        let mut extra = 0;
        for b in 0..=255u32 {
            let shown = if printable.contains(&b) {
                b
            } else {
                extra += 1;
                255 + extra
            };
            if let Some(c) = char::from_u32(shown) {
                map.insert(c, b as u8);
            }
        }
        map
    })
}

#[cfg(test)]
mod tests {
    use super::byte_level_inverse;

    #[test]
    fn byte_level_table_is_gpt2s() {
        let m = byte_level_inverse();
        assert_eq!(m.len(), 256);
        assert_eq!(m[&'\u{120}'], b' '); // 'Ġ'
        assert_eq!(m[&'\u{10a}'], b'\n'); // 'Ċ'
        assert_eq!(m[&'A'], b'A');
        assert_eq!(m[&'\u{100}'], 0);
    }
}
