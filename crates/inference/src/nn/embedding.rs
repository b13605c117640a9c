//! Token embeddings: a dense table, or a block-quantized table (GGUF on the CPU) whose rows
//! are dequantized when looked up, as llama.cpp does. A quantized table stays at its file
//! size instead of growing to f32 (Llama 3's 128k × 4096 table: 0.6 GB in Q8_0, 2.1 GB f32).

use candle_core::quantized::{ggml_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::Embedding;

/// A `(vocab, hidden)` token embedding table.
#[derive(Debug, Clone)]
pub enum TokenEmbedding {
    /// Rows in the activation dtype.
    Dense(Embedding),
    /// Raw ggml blocks, one run of `hidden / block_size` blocks per row.
    Quantized {
        /// The table's bytes as stored in the file.
        data: Vec<u8>,
        /// Its ggml type.
        dtype: GgmlDType,
        /// Rows.
        vocab: usize,
        /// Values per row.
        hidden: usize,
    },
}

impl TokenEmbedding {
    /// A dense `(vocab, hidden)` table.
    pub fn dense(table: Tensor) -> Result<Self> {
        let hidden = table.dim(1)?;
        Ok(Self::Dense(Embedding::new(table, hidden)))
    }

    /// Keeps `table` quantized when it is block-quantized and on the CPU; dense otherwise.
    pub fn from_qtensor(table: QTensor, device: &Device) -> Result<Self> {
        let (vocab, hidden) = table.shape().dims2()?;
        let dtype = table.dtype();
        let blocked = !matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        if blocked && device.is_cpu() && hidden.is_multiple_of(dtype.block_size()) {
            let data = table.data()?.into_owned();
            if data.len() == vocab * hidden / dtype.block_size() * dtype.type_size() {
                return Ok(Self::Quantized {
                    data,
                    dtype,
                    vocab,
                    hidden,
                });
            }
        }
        Ok(Self::Dense(Embedding::new(
            table.dequantize(device)?,
            hidden,
        )))
    }

    /// The dense table, when the embedding keeps one.
    pub fn dense_table(&self) -> Option<&Tensor> {
        match self {
            Self::Dense(e) => Some(e.embeddings()),
            Self::Quantized { .. } => None,
        }
    }

    /// Embeds ids of any shape (`(batch, seq)`, `(seq,)`) → that shape + `(hidden,)`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Self::Dense(e) => e.forward(ids),
            Self::Quantized {
                data,
                dtype,
                vocab,
                hidden,
            } => {
                let mut out_dims = ids.dims().to_vec();
                out_dims.push(*hidden);
                let count = ids.elem_count();
                let row_bytes = hidden / dtype.block_size() * dtype.type_size();
                let mut rows = Vec::with_capacity(count * row_bytes);
                let ids = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
                for id in ids {
                    let id = id as usize;
                    if id >= *vocab {
                        candle_core::bail!("token id {id} is outside the vocabulary of {vocab}");
                    }
                    rows.extend_from_slice(&data[id * row_bytes..(id + 1) * row_bytes]);
                }
                if count == 0 {
                    return Tensor::zeros(out_dims, DType::F32, &Device::Cpu);
                }
                let shape = vec![count, *hidden];
                let q = ggml_file::qtensor_from_ggml(*dtype, &rows, shape, &Device::Cpu)?;
                q.dequantize(&Device::Cpu)?.reshape(out_dims)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(dtype: GgmlDType) -> (QTensor, Tensor) {
        let (vocab, hidden) = (40, 256);
        let vals: Vec<f32> = (0..vocab * hidden)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let t = Tensor::from_vec(vals, (vocab, hidden), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let dense = q.dequantize(&Device::Cpu).unwrap();
        (q, dense)
    }

    #[test]
    fn quantized_rows_equal_the_dequantized_table() {
        for dtype in [
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
            GgmlDType::Q4_1,
        ] {
            let (q, dense) = table(dtype);
            let emb = TokenEmbedding::from_qtensor(q, &Device::Cpu).unwrap();
            assert!(emb.dense_table().is_none(), "{dtype:?} stays quantized");
            let flat = Tensor::new(&[5u32, 1], &Device::Cpu).unwrap();
            assert_eq!(emb.forward(&flat).unwrap().dims(), &[2, 256]);
            let ids = Tensor::new(&[[3u32, 0, 39], [7, 7, 12]], &Device::Cpu).unwrap();
            let got = emb.forward(&ids).unwrap();
            let want = Embedding::new(dense, 256).forward(&ids).unwrap();
            assert_eq!(got.dims(), &[2, 3, 256]);
            let rows = |t: &Tensor| t.to_vec3::<f32>().unwrap();
            assert_eq!(rows(&got), rows(&want), "{dtype:?}");
        }
    }

    #[test]
    fn out_of_range_ids_are_errors_and_float_tables_stay_dense() {
        let (q, _) = table(GgmlDType::Q8_0);
        let emb = TokenEmbedding::from_qtensor(q, &Device::Cpu).unwrap();
        let ids = Tensor::new(&[[40u32]], &Device::Cpu).unwrap();
        assert!(emb.forward(&ids).is_err());
        let (f, _) = table(GgmlDType::F32);
        let emb = TokenEmbedding::from_qtensor(f, &Device::Cpu).unwrap();
        assert!(emb.dense_table().is_some());
    }
}
