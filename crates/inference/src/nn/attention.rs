//! Scaled dot-product attention with grouped-query heads and an optional causal mask:
//! the one attention entry point every model calls.

use candle_core::{DType, Device, Result, Tensor};

/// Repeats each key/value head `n_rep` times: `(b, kv, s, d)` → `(b, kv * n_rep, s, d)`.
pub fn repeat_kv(xs: &Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(xs.clone());
    }
    let (b, kv, s, d) = xs.dims4()?;
    xs.unsqueeze(2)?
        .expand((b, kv, n_rep, s, d))?
        .reshape((b, kv * n_rep, s, d))
}

/// A causal mask for `q_len` new positions after `offset` cached ones:
/// `(q_len, offset + q_len)` with `-inf` above the diagonal, and, with a sliding `window`,
/// also for keys `window` or more positions behind the query (Mistral's rule: a query at
/// position p sees keys p - window + 1 ..= p).
pub fn causal_mask(
    q_len: usize,
    offset: usize,
    window: Option<usize>,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let kv_len = offset + q_len;
    let mask: Vec<f32> = (0..q_len)
        .flat_map(|i| {
            let pos = offset + i;
            (0..kv_len).map(move |j| {
                let future = j > pos;
                let too_old = window.is_some_and(|w| pos >= w && j <= pos - w);
                if future || too_old {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (q_len, kv_len), device)?.to_dtype(dtype)
}

/// `softmax(q kᵀ · scale + mask) v` for `(b, heads, s, d)` inputs; `k`/`v` may have fewer
/// heads (GQA). The softmax runs in f32 whatever the input dtype, as transformers does.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    let n_rep = q.dim(1)? / k.dim(1)?;
    let k = repeat_kv(k, n_rep)?.contiguous()?;
    let v = repeat_kv(v, n_rep)?.contiguous()?;
    let q = q.contiguous()?;
    let dtype = q.dtype();
    let scores = (q.matmul(&k.t()?)? * scale)?.to_dtype(DType::F32)?;
    let scores = match mask {
        Some(m) => scores.broadcast_add(&m.to_dtype(DType::F32)?)?,
        None => scores,
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
    probs.matmul(&v)
}

/// Splits `(b, s, heads * d)` into `(b, heads, s, d)`.
pub fn split_heads(xs: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    let (b, s, _) = xs.dims3()?;
    xs.reshape((b, s, heads, head_dim))?.transpose(1, 2)
}

/// Merges `(b, heads, s, d)` back into `(b, s, heads * d)`.
pub fn merge_heads(xs: &Tensor) -> Result<Tensor> {
    let (b, h, s, d) = xs.dims4()?;
    xs.transpose(1, 2)?.reshape((b, s, h * d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_mask_blocks_future_only() {
        let m = causal_mask(2, 3, None, DType::F32, &Device::Cpu).unwrap();
        let rows: Vec<Vec<f32>> = m.to_vec2().unwrap();
        assert_eq!(rows[0][..4], [0.0, 0.0, 0.0, 0.0]);
        assert!(rows[0][4].is_infinite());
        assert_eq!(rows[1], vec![0.0; 5]);
    }

    #[test]
    fn sliding_window_hides_old_keys() {
        // Query at position 4 with window 3 sees keys 2, 3, 4 only.
        let m = causal_mask(1, 4, Some(3), DType::F32, &Device::Cpu).unwrap();
        let row: Vec<Vec<f32>> = m.to_vec2().unwrap();
        let visible: Vec<bool> = row[0].iter().map(|v| v.is_finite()).collect();
        assert_eq!(visible, vec![false, false, true, true, true]);
    }

    #[test]
    fn attention_with_one_key_returns_its_value() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1., (1, 4, 1, 8), &dev).unwrap();
        let k = Tensor::randn(0f32, 1., (1, 2, 1, 8), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (1, 2, 1, 8), &dev).unwrap();
        let out = attention(&q, &k, &v, None, 0.5).unwrap();
        let expect = repeat_kv(&v, 2).unwrap();
        let diff = (out - expect).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
