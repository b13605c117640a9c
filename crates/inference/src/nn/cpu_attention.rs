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

    #[cfg(test)]
    fn key(&self, head: usize, pos: usize) -> &[f32] {
        let at = (head * self.capacity + pos) * self.head_dim;
        &self.k[at..at + self.head_dim]
    }

    #[cfg(test)]
    fn value(&self, head: usize, pos: usize) -> &[f32] {
        let at = (head * self.capacity + pos) * self.head_dim;
        &self.v[at..at + self.head_dim]
    }
}

/// Query rows per prefill work item (times the query heads sharing a KV head).
const BLOCK_ROWS: usize = 16;
/// Keys per tile of one score / value product.
const TILE_KEYS: usize = 128;
/// Keys per work item when few query rows (decode) are split over the keys instead.
const SPLIT_KEYS: usize = 256;
/// Fewer query rows than this (decode) split the work over keys, not over row blocks.
const SPLIT_BELOW_ROWS: usize = 4;
/// Up to this many rows per work item, scores and value sums are plain loops (a matrix
/// product call costs more than it saves for a decode step's few rows).
const SMALL_ROWS: usize = 8;
/// Below this many query·key pairs the worker-pool hand-off costs more than it saves.
const PARALLEL_MIN_PAIRS: usize = 1024;

/// `dst (m×n) = [dst +] a · b` for row-major f32 `dst` and `a` (rows `a_rs` apart), and
/// `b[kk][j]` at `b + kk·b_rs + j·b_cs`; single-threaded (work items run in parallel).
///
/// # Safety
/// The pointers must cover the extents given.
unsafe fn matmul(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    accumulate: bool,
    (a, a_rs): (*const f32, usize),
    (b, b_rs, b_cs): (*const f32, usize, usize),
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        n as isize,
        accumulate,
        a,
        1,
        a_rs as isize,
        b,
        b_cs as isize,
        b_rs as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// `Σ a·b`, eight partial sums at a time so the compiler vectorizes it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let whole = a.len() / 8 * 8;
    for (ca, cb) in a[..whole].chunks_exact(8).zip(b[..whole].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Softmax state of some query rows over some of their keys: running maximum, sum of
/// `exp(score − max)` and the value sum weighted the same way (flash attention's online
/// softmax), so that partial results over key ranges can be merged.
struct Partial {
    max: Vec<f32>,
    sum: Vec<f32>,
    acc: Vec<f32>,
}

/// The queries of one work item: rows `i0..i1` of every query head sharing KV head `g`.
struct Rows {
    g: usize,
    i0: usize,
    i1: usize,
}

/// The shapes and data every work item reads.
struct Problem<'a> {
    q: &'a [f32],
    heads: usize,
    seq: usize,
    kv: &'a CpuKv,
    offset: usize,
    window: Option<usize>,
    scale: f32,
}

impl Problem<'_> {
    fn n_rep(&self) -> usize {
        self.heads / self.kv.kv_heads
    }

    /// Keys visible to query row `i`: `lo..hi`.
    fn visible(&self, i: usize) -> (usize, usize) {
        let pos = self.offset + i;
        (
            self.window.map_or(0, |w| (pos + 1).saturating_sub(w)),
            pos + 1,
        )
    }

    /// Softmax state of `rows` over keys `keys` (each row masked to what it may see). Row
    /// `r` is query head `g·n_rep + r / (i1 − i0)` at position `i0 + r % (i1 − i0)`.
    fn partial(&self, rows: &Rows, keys: std::ops::Range<usize>) -> Partial {
        let (d, n_rep) = (self.kv.head_dim, self.n_rep());
        let per_head = rows.i1 - rows.i0;
        let r_total = n_rep * per_head;
        let mut qb = vec![0f32; r_total * d];
        for (r, dst) in qb.chunks_exact_mut(d).enumerate() {
            let (h, i) = (rows.g * n_rep + r / per_head, rows.i0 + r % per_head);
            let src = &self.q[(h * self.seq + i) * d..(h * self.seq + i + 1) * d];
            dst.iter_mut()
                .zip(src)
                .for_each(|(o, v)| *o = v * self.scale);
        }
        let mut p = Partial {
            max: vec![f32::NEG_INFINITY; r_total],
            sum: vec![0f32; r_total],
            acc: vec![0f32; r_total * d],
        };
        // Few rows (decode): plain loops, each key and value read once for all rows; a matrix
        // product call costs more than it saves there.
        let small = r_total <= SMALL_ROWS;
        let mut scores = vec![0f32; r_total * TILE_KEYS];
        let base = rows.g * self.kv.capacity * d;
        let (key_rows, value_rows) = (&self.kv.k[base..], &self.kv.v[base..]);
        let mut t0 = keys.start;
        while t0 < keys.end {
            let tk = TILE_KEYS.min(keys.end - t0);
            assert!((t0 + tk) * d <= key_rows.len() && t0 + tk <= self.kv.len);
            if small {
                for (j, key) in key_rows[t0 * d..(t0 + tk) * d].chunks_exact(d).enumerate() {
                    for (r, qrow) in qb.chunks_exact(d).enumerate() {
                        scores[r * tk + j] = dot(qrow, key);
                    }
                }
            } else {
                // SAFETY: keys t0..t0 + tk of head g are inside the store (asserted);
                // `scores` holds r_total × tk values and `qb` r_total × d.
                unsafe {
                    matmul(
                        [r_total, tk, d],
                        scores.as_mut_ptr(),
                        false,
                        (qb.as_ptr(), d),
                        (key_rows.as_ptr().add(t0 * d), 1, d),
                    );
                }
            }
            for r in 0..r_total {
                let (lo, hi) = self.visible(rows.i0 + r % per_head);
                let row = &mut scores[r * tk..(r + 1) * tk];
                let mut tile_max = f32::NEG_INFINITY;
                for (j, s) in row.iter_mut().enumerate() {
                    if (lo..hi).contains(&(t0 + j)) {
                        tile_max = tile_max.max(*s);
                    } else {
                        *s = f32::NEG_INFINITY;
                    }
                }
                let new_max = p.max[r].max(tile_max);
                if new_max == f32::NEG_INFINITY {
                    // Nothing visible to this row yet.
                    row.fill(0.0);
                    continue;
                }
                let correction = (p.max[r] - new_max).exp();
                let mut tile_sum = 0f32;
                for s in row.iter_mut() {
                    *s = (*s - new_max).exp();
                    tile_sum += *s;
                }
                p.sum[r] = p.sum[r] * correction + tile_sum;
                p.max[r] = new_max;
                if correction != 1.0 {
                    p.acc[r * d..(r + 1) * d]
                        .iter_mut()
                        .for_each(|a| *a *= correction);
                }
            }
            if small {
                let tile = &value_rows[t0 * d..(t0 + tk) * d];
                for (j, value) in tile.chunks_exact(d).enumerate() {
                    for (r, acc) in p.acc.chunks_exact_mut(d).enumerate() {
                        let w = scores[r * tk + j];
                        acc.iter_mut().zip(value).for_each(|(a, v)| *a += w * v);
                    }
                }
            } else {
                // SAFETY: values t0..t0 + tk of head g lie inside the store like the keys;
                // `acc` holds r_total × d values.
                unsafe {
                    matmul(
                        [r_total, d, tk],
                        p.acc.as_mut_ptr(),
                        true,
                        (scores.as_ptr(), tk),
                        (value_rows.as_ptr().add(t0 * d), d, 1),
                    );
                }
            }
            t0 += tk;
        }
        p
    }

    /// Writes the finished rows of `p` (one or several merged partials) into `out`,
    /// `(seq, heads · head_dim)`.
    fn write(&self, rows: &Rows, p: &Partial, out_addr: usize) {
        let (d, n_rep) = (self.kv.head_dim, self.n_rep());
        let per_head = rows.i1 - rows.i0;
        for r in 0..n_rep * per_head {
            let (h, i) = (rows.g * n_rep + r / per_head, rows.i0 + r % per_head);
            let inv = if p.sum[r] > 0.0 { 1.0 / p.sum[r] } else { 0.0 };
            // SAFETY: only the work item (or merge) owning `rows` writes these positions,
            // which lie inside the `seq · heads · d` output.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(
                    (out_addr as *mut f32).add((i * self.heads + h) * d),
                    d,
                )
            };
            dst.iter_mut()
                .zip(&p.acc[r * d..(r + 1) * d])
                .for_each(|(o, a)| *o = a * inv);
        }
    }
}

/// Merges partial softmax states over disjoint key ranges of the same rows.
fn merge(parts: Vec<Partial>) -> Option<Partial> {
    let mut it = parts.into_iter();
    let mut total = it.next()?;
    let d = total.acc.len() / total.max.len().max(1);
    for p in it {
        for r in 0..total.max.len() {
            let m = total.max[r].max(p.max[r]);
            if m == f32::NEG_INFINITY {
                continue;
            }
            let (a, b) = ((total.max[r] - m).exp(), (p.max[r] - m).exp());
            total.sum[r] = total.sum[r] * a + p.sum[r] * b;
            total.max[r] = m;
            let acc = &mut total.acc[r * d..(r + 1) * d];
            for (x, y) in acc.iter_mut().zip(&p.acc[r * d..(r + 1) * d]) {
                *x = *x * a + y * b;
            }
        }
    }
    Some(total)
}

/// Causal attention of `seq` queries `(heads, seq, head_dim)` at positions
/// `offset..offset + seq` over `kv` (which already holds them); with a sliding `window`
/// a query at p sees keys `p - window + 1 ..= p`. Returns `(seq, heads * head_dim)`.
///
/// Work items take one KV head and the query heads sharing it, so every key and value row
/// is read once for all of them; scores and value sums are tiled matrix products with an
/// online softmax (flash-attention style). Prefill splits the work over blocks of query
/// rows; decode (few rows) over ranges of keys, merged afterwards.
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
    let mut out = vec![0f32; seq * heads * d];
    if seq == 0 || kv.kv_heads == 0 || !heads.is_multiple_of(kv.kv_heads) {
        return out;
    }
    let problem = Problem {
        q,
        heads,
        seq,
        kv,
        offset,
        window,
        scale,
    };
    let out_addr = out.as_mut_ptr() as usize;
    let pool = candle_core::utils::barrier_pool();
    let parallel = heads * seq * (offset + seq) >= PARALLEL_MIN_PAIRS;
    if seq >= SPLIT_BELOW_ROWS {
        let blocks = seq.div_ceil(BLOCK_ROWS);
        let item = |idx: usize| {
            let (g, b) = (idx / blocks, idx % blocks);
            let rows = Rows {
                g,
                i0: b * BLOCK_ROWS,
                i1: ((b + 1) * BLOCK_ROWS).min(seq),
            };
            let keys = problem.visible(rows.i0).0..problem.visible(rows.i1 - 1).1;
            problem.write(&rows, &problem.partial(&rows, keys), out_addr);
        };
        let items = kv.kv_heads * blocks;
        if parallel {
            pool.execute_chunked(items, |range| range.for_each(item));
        } else {
            (0..items).for_each(item);
        }
        return out;
    }
    // Few rows: split each KV head's keys into ranges, then merge the partial states.
    let (k_start, k_end) = (problem.visible(0).0, problem.visible(seq - 1).1);
    let chunks = (k_end - k_start).div_ceil(SPLIT_KEYS).max(1);
    let slots: Vec<std::sync::Mutex<Option<Partial>>> = (0..kv.kv_heads * chunks)
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    let item = |idx: usize| {
        let (g, c) = (idx / chunks, idx % chunks);
        let rows = Rows { g, i0: 0, i1: seq };
        let lo = k_start + c * SPLIT_KEYS;
        let keys = lo..(lo + SPLIT_KEYS).min(k_end);
        let p = problem.partial(&rows, keys);
        if let Ok(mut slot) = slots[idx].lock() {
            *slot = Some(p);
        }
    };
    if parallel {
        pool.execute_chunked(slots.len(), |range| range.for_each(item));
    } else {
        (0..slots.len()).for_each(item);
    }
    let mut parts = slots
        .into_iter()
        .map(|m| m.into_inner().ok().flatten())
        .collect::<Vec<_>>();
    for g in 0..kv.kv_heads {
        let mine = parts[g * chunks..(g + 1) * chunks]
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        if let Some(p) = merge(mine) {
            problem.write(&Rows { g, i0: 0, i1: seq }, &p, out_addr);
        }
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
        // Under four rows (decode) the keys are split over work items and merged; from four
        // rows on, blocks of rows. The later cases span several key ranges, row blocks and
        // key tiles, with and without a window.
        for (past, seq, window) in [
            (0usize, 5usize, None),
            (5, 1, None),
            (3, 4, Some(3)),
            (300, 2, Some(100)),
            (0, 40, None),
            (150, 37, Some(60)),
            (10, 300, None),
            (200, 130, Some(129)),
            (700, 1, None),
            (700, 3, Some(300)),
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
