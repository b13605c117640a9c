//! A per-sequence key/value cache, owned by the caller and passed into the model.

use candle_core::{Result, Tensor};

use super::cpu_attention::CpuKv;

/// Keys and values of one attention layer: tensors `(batch, kv_heads, seq, head_dim)`, or
/// for batch-1 f32 CPU inference a growable store the CPU attention reads in place.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    kv: Option<(Tensor, Tensor)>,
    cpu: Option<CpuKv>,
}

impl LayerCache {
    /// Appends new keys/values and returns everything cached so far.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match &self.kv {
            None => (k.clone(), v.clone()),
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 2)?, Tensor::cat(&[pv, v], 2)?),
        };
        self.kv = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    /// The CPU store (created empty on first use).
    pub fn cpu_mut(&mut self, kv_heads: usize, head_dim: usize) -> &mut CpuKv {
        self.cpu
            .get_or_insert_with(|| CpuKv::new(kv_heads, head_dim))
    }

    /// Keeps the first `len` positions.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if let Some(cpu) = &mut self.cpu {
            cpu.truncate(len);
        }
        if let Some((k, v)) = &self.kv {
            let keep = len.min(k.dim(2)?);
            self.kv = if keep == 0 {
                None
            } else {
                Some((k.narrow(2, 0, keep)?, v.narrow(2, 0, keep)?))
            };
        }
        Ok(())
    }

    /// A copy of the first `len` positions only.
    pub fn prefix(&self, len: usize) -> Result<Self> {
        let mut kv = None;
        if let Some((k, v)) = &self.kv {
            let keep = len.min(k.dim(2)?);
            if keep > 0 {
                kv = Some((k.narrow(2, 0, keep)?, v.narrow(2, 0, keep)?));
            }
        }
        Ok(Self {
            kv,
            cpu: self.cpu.as_ref().map(|c| c.prefix(len)),
        })
    }

    /// Bytes of memory the cached keys/values hold.
    pub fn bytes(&self) -> usize {
        let tensors = self.kv.as_ref().map_or(0, |(k, v)| {
            (k.elem_count() + v.elem_count()) * k.dtype().size_in_bytes()
        });
        tensors + self.cpu.as_ref().map_or(0, CpuKv::bytes)
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        if let Some(cpu) = &self.cpu {
            return cpu.len();
        }
        self.kv
            .as_ref()
            .and_then(|(k, _)| k.dim(2).ok())
            .unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cache of a whole decoder: one [`LayerCache`] per layer.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
}

impl KvCache {
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![LayerCache::default(); num_layers],
        }
    }

    /// Number of cached positions (the offset of the next token).
    pub fn seq_len(&self) -> usize {
        self.layers.first().map(LayerCache::len).unwrap_or(0)
    }

    /// Keeps the first `len` positions of every layer (reusing a prompt prefix).
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        self.layers.iter_mut().try_for_each(|l| l.truncate(len))
    }

    /// A copy of the first `len` positions of every layer (without the rest's storage).
    pub fn prefix(&self, len: usize) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|l| l.prefix(len))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// Bytes of memory held by every layer's keys/values.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(LayerCache::bytes).sum()
    }

    /// The cache of layer `i`.
    pub fn layer_mut(&mut self, i: usize) -> Option<&mut LayerCache> {
        self.layers.get_mut(i)
    }
}
