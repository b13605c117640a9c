//! Attention on the CPU in f32 straight over a growable key/value store: no per-step
//! concatenation of the cache, no repeated heads, no head merge copies. Used by the
//! decoder for batch-1 f32 CPU inference; other devices and dtypes use
//! [`super::attention::attention`].

/// Keys and values of one layer: `(kv_heads, capacity, head_dim)` each, the first `len`
/// positions filled.
#[derive(Debug, Clone, Default)]
pub struct CpuKv {
    k: Vec<f32>,
    v: Vec<f32>,
    kv_heads: usize,
    head_dim: usize,
    len: usize,
    capacity: usize,
}

impl CpuKv {
    /// An empty store for `kv_heads` heads of `head_dim`.
    pub fn new(kv_heads: usize, head_dim: usize) -> Self {
        Self {
            kv_heads,
            head_dim,
            ..Self::default()
        }
    }

    /// Keeps the first `len` positions (a shared prompt prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// A copy of the first `len` positions only (its own, tight storage).
    pub fn prefix(&self, len: usize) -> Self {
        let len = len.min(self.len);
        let mut out = Self::new(self.kv_heads, self.head_dim);
        out.grow(len);
        let d = self.head_dim;
        for h in 0..self.kv_heads {
            let (from, to) = (h * self.capacity * d, h * out.capacity * d);
            out.k[to..to + len * d].copy_from_slice(&self.k[from..from + len * d]);
            out.v[to..to + len * d].copy_from_slice(&self.v[from..from + len * d]);
        }
        out.len = len;
        out
    }

    /// Bytes of memory the store holds (its capacity, not only the filled positions).
    pub fn bytes(&self) -> usize {
        (self.k.capacity() + self.v.capacity()) * std::mem::size_of::<f32>()
    }

    /// Positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn grow(&mut self, needed: usize) {
        if needed <= self.capacity {
            return;
        }
        let capacity = needed.max(self.capacity * 2).max(64);
        let d = self.head_dim;
        let mut k = vec![0f32; self.kv_heads * capacity * d];
        let mut v = vec![0f32; self.kv_heads * capacity * d];
        for h in 0..self.kv_heads {
            let (from, to) = (h * self.capacity * d, h * capacity * d);
            let n = self.len * d;
            k[to..to + n].copy_from_slice(&self.k[from..from + n]);
            v[to..to + n].copy_from_slice(&self.v[from..from + n]);
        }
        (self.k, self.v, self.capacity) = (k, v, capacity);
    }

    /// Appends `seq` positions of keys and values laid out `(kv_heads, seq, head_dim)`.
    pub fn append(&mut self, k: &[f32], v: &[f32], seq: usize) {
        self.grow(self.len + seq);
        let d = self.head_dim;
        for h in 0..self.kv_heads {
            let src = h * seq * d..(h + 1) * seq * d;
            let dst = (h * self.capacity + self.len) * d;
            self.k[dst..dst + seq * d].copy_from_slice(&k[src.clone()]);
            self.v[dst..dst + seq * d].copy_from_slice(&v[src]);
        }
        self.len += seq;
    }

    fn key(&self, head: usize, pos: usize) -> &[f32] {
        let at = (head * self.capacity + pos) * self.head_dim;
        &self.k[at..at + self.head_dim]
    }

    fn value(&self, head: usize, pos: usize) -> &[f32] {
        let at = (head * self.capacity + pos) * self.head_dim;
        &self.v[at..at + self.head_dim]
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent partial sums so the compiler vectorizes (head_dim is a multiple
    // of 8 for every supported model; the tail loop covers the rest).
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (ca, cb) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks..a.len() {
        s += a[i] * b[i];
    }
    s
}

/// One query row of one head: softmax over the visible keys, weighted sum of values.
fn attend_one(
    q: &[f32],
    kv: &CpuKv,
    head: usize,
    visible: std::ops::Range<usize>,
    scale: f32,
    out: &mut [f32],
    scores: &mut Vec<f32>,
) {
    scores.clear();
    let mut max = f32::NEG_INFINITY;
    for t in visible.clone() {
        let s = dot(q, kv.key(head, t)) * scale;
        max = max.max(s);
        scores.push(s);
    }
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    for (p, t) in scores.iter().zip(visible) {
        let w = p / sum;
        for (o, v) in out.iter_mut().zip(kv.value(head, t)) {
            *o += w * v;
        }
    }
}

/// Causal attention of `seq` queries `(heads, seq, head_dim)` at positions
/// `offset..offset + seq` over `kv` (which already holds them); with a sliding `window`
/// a query at p sees keys `p - window + 1 ..= p`. Returns `(seq, heads * head_dim)`.
pub fn attend(
    q: &[f32],
    heads: usize,
    seq: usize,
    kv: &CpuKv,
    offset: usize,
    window: Option<usize>,
    scale: f32,
) -> Vec<f32> {
    let d = kv.head_dim;
    let n_rep = heads / kv.kv_heads.max(1);
    let mut out = vec![0f32; seq * heads * d];
    let out_addr = out.as_mut_ptr() as usize;
    let item = |idx: usize, scores: &mut Vec<f32>| {
        let (h, i) = (idx / seq, idx % seq);
        let pos = offset + i;
        let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let qrow = &q[(h * seq + i) * d..(h * seq + i + 1) * d];
        // SAFETY: item (h, i) alone writes row i's head-h slice of `out`.
        let dst = unsafe {
            std::slice::from_raw_parts_mut((out_addr as *mut f32).add((i * heads + h) * d), d)
        };
        attend_one(qrow, kv, h / n_rep, first..pos + 1, scale, dst, scores);
    };
    let items = heads * seq;
    // Below ~1k query·key pairs the pool hand-off costs more than it saves.
    if items < 2 || items * (offset + seq) < 1024 {
        let mut scores = Vec::with_capacity(offset + seq);
        (0..items).for_each(|idx| item(idx, &mut scores));
    } else {
        candle_core::utils::barrier_pool().execute_chunked(items, |range| {
            let mut scores = Vec::with_capacity(offset + seq);
            range.for_each(|idx| item(idx, &mut scores));
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::attention::{attention, causal_mask, merge_heads};
    use candle_core::{DType, Device, Tensor};

    #[test]
    fn a_prefix_copy_holds_the_same_positions_in_its_own_storage() {
        let (kv_heads, d) = (2, 4);
        let mut kv = CpuKv::new(kv_heads, d);
        // 70 positions: the store has grown past its first capacity.
        let seq = 70;
        let vals: Vec<f32> = (0..kv_heads * seq * d).map(|i| i as f32).collect();
        kv.append(&vals, &vals, seq);
        let copy = kv.prefix(33);
        assert_eq!(copy.len(), 33);
        assert!(copy.capacity < kv.capacity);
        for h in 0..kv_heads {
            for pos in 0..33 {
                assert_eq!(copy.key(h, pos), kv.key(h, pos));
                assert_eq!(copy.value(h, pos), kv.value(h, pos));
            }
        }
        assert_eq!(kv.prefix(500).len(), 70);
    }

    #[test]
    fn matches_the_tensor_attention_with_gqa_cache_and_window() {
        let dev = Device::Cpu;
        let (heads, kv_heads, d) = (4, 2, 8);
        // The last case is large enough to run on the worker pool.
        for (past, seq, window) in [
            (0usize, 5usize, None),
            (5, 1, None),
            (3, 4, Some(3)),
            (300, 2, Some(100)),
        ] {
            let total = past + seq;
            let q = Tensor::randn(0f32, 1., (1, heads, seq, d), &dev).unwrap();
            let k = Tensor::randn(0f32, 1., (1, kv_heads, total, d), &dev).unwrap();
            let v = Tensor::randn(0f32, 1., (1, kv_heads, total, d), &dev).unwrap();
            let mask = causal_mask(seq, past, window, DType::F32, &dev).unwrap();
            let want = merge_heads(&attention(&q, &k, &v, Some(&mask), 0.3).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let mut kv = CpuKv::new(kv_heads, d);
            let split = |t: &Tensor, from: usize, n: usize| -> Vec<f32> {
                t.narrow(2, from, n)
                    .unwrap()
                    .contiguous()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            };
            if past > 0 {
                kv.append(&split(&k, 0, past), &split(&v, 0, past), past);
            }
            kv.append(&split(&k, past, seq), &split(&v, past, seq), seq);
            let qv = q.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let got = attend(&qv, heads, seq, &kv, past, window, 0.3);
            let diff = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                diff < 1e-5,
                "past {past} seq {seq} window {window:?}: {diff}"
            );
        }
    }

    #[test]
    fn growing_keeps_what_was_stored() {
        let mut kv = CpuKv::new(2, 4);
        for step in 0..100 {
            let k: Vec<f32> = (0..8).map(|i| (step * 8 + i) as f32).collect();
            kv.append(&k, &k, 1);
        }
        assert_eq!(kv.len(), 100);
        assert_eq!(
            kv.key(1, 63),
            &[63. * 8. + 4., 63. * 8. + 5., 63. * 8. + 6., 63. * 8. + 7.]
        );
        assert_eq!(kv.value(0, 99)[0], 99. * 8.);
    }
}
