//! Command-line flags; every flag can also be set with a `VLM_*` environment variable.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use vlm_inference::engine::PrefixCacheLimits;

/// OpenAI-compatible server for LLaVA-style vision-language models.
#[derive(Debug, Clone, Parser)]
#[command(name = "vlm-server", version, about)]
pub struct Args {
    /// Model: a local directory in Hugging Face layout, a GGUF file (or a directory holding
    /// one), a Hub id (e.g. llava-hf/llava-1.5-7b-hf) or one GGUF file of a Hub repository
    /// (owner/name/file.gguf).
    #[arg(long, env = "VLM_MODEL")]
    pub model: String,
    /// Hub revision (branch, tag or commit) when --model is a Hub id.
    #[arg(long, env = "VLM_REVISION")]
    pub revision: Option<String>,
    /// With a GGUF language model: a LLaVA directory in Hugging Face layout (or Hub id) whose
    /// vision tower, projector, tokenizer, chat template and image processor are used.
    #[arg(long, env = "VLM_VISION_FROM")]
    pub vision_from: Option<String>,
    /// Quantize the language model's linear layers at load (safetensors models; the vision
    /// tower stays in float).
    #[arg(long, env = "VLM_QUANTIZE", value_enum)]
    pub quantize: Option<QuantizeArg>,
    /// Dequantize GGUF weights to f32 at load: exact f32 math (what transformers computes),
    /// at several times the memory and a slower CPU decode.
    #[arg(long, env = "VLM_DEQUANTIZE_GGUF")]
    pub dequantize_gguf: bool,
    /// Run GGUF block types we have no CPU kernel for (Q4_0, Q4_K, Q5_x, Q6_K) on candle's
    /// kernels as stored, instead of converting them at load to Q4_1 / Q8_0 for ours
    /// (faster; Q4_0 and Q5_0 convert exactly, Q4_K up to f16 rounding of its scales, Q5_1,
    /// Q5_K and Q6_K are requantized to Q8_0). Also keeps `--quantize q5k|q6k` as asked
    /// instead of Q8_0.
    #[arg(long, env = "VLM_KEEP_QUANT_TYPES")]
    pub keep_quant_types: bool,
    /// Names clients use in `model`; the first is reported. Default: the --model value.
    #[arg(
        long = "served-model-name",
        env = "VLM_SERVED_MODEL_NAME",
        value_delimiter = ','
    )]
    pub served_model_names: Vec<String>,
    /// Address to bind.
    #[arg(long, env = "VLM_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to bind (0 picks a free one).
    #[arg(long, env = "VLM_PORT", default_value_t = 8000)]
    pub port: u16,
    /// API keys accepted as `Authorization: Bearer KEY` (repeatable). No keys: no auth.
    #[arg(long = "api-key", env = "VLM_API_KEY", value_delimiter = ',')]
    pub api_keys: Vec<String>,
    /// A file with one API key per line (blank lines and `#` comments ignored).
    #[arg(long, env = "VLM_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Compute device: cpu, cuda, cuda:N or metal.
    #[arg(long, env = "VLM_DEVICE", default_value = "cpu")]
    pub device: String,
    /// CPU threads for the model's kernels (default: physical cores).
    #[arg(long, env = "VLM_THREADS")]
    pub threads: Option<usize>,
    /// Weight dtype; auto is f32 on CPU and bf16 on GPUs.
    #[arg(long, env = "VLM_DTYPE", value_enum, default_value_t = DtypeArg::Auto)]
    pub dtype: DtypeArg,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, env = "VLM_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Recent text-only requests whose keys/values are kept for reuse by a request that
    /// starts with the same tokens (the next turn of a chat, a shared system prompt); least
    /// recently used dropped first.
    #[arg(long, env = "VLM_PREFIX_CACHE_SLOTS", default_value_t = PrefixCacheLimits::default().slots)]
    pub prefix_cache_slots: usize,
    /// Memory the kept keys/values may hold in all, in MiB (least recently used dropped
    /// first; a conversation larger than this is not kept).
    #[arg(long, env = "VLM_PREFIX_CACHE_MIB", default_value_t = PrefixCacheLimits::default().max_bytes >> 20)]
    pub prefix_cache_mib: usize,
    /// Keep no keys/values between requests (same as --prefix-cache-slots 0).
    #[arg(long, env = "VLM_NO_PREFIX_CACHE")]
    pub no_prefix_cache: bool,
    /// Most images in one request.
    #[arg(long, env = "VLM_MAX_IMAGES_PER_REQUEST", default_value_t = 8)]
    pub max_images_per_request: usize,
    /// Largest encoded image in bytes (data: URL, download or file).
    #[arg(long, env = "VLM_MAX_IMAGE_BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_image_bytes: usize,
    /// Largest decoded image in pixels (width × height), checked before decoding.
    #[arg(long, env = "VLM_MAX_IMAGE_PIXELS", default_value_t = 40_000_000)]
    pub max_image_pixels: u64,
    /// Seconds allowed for fetching one image URL.
    #[arg(long, env = "VLM_IMAGE_FETCH_TIMEOUT_SECS", default_value_t = 10.0)]
    pub image_fetch_timeout_secs: f64,
    /// Most redirects followed when fetching an image URL.
    #[arg(long, env = "VLM_IMAGE_FETCH_MAX_REDIRECTS", default_value_t = 3)]
    pub image_fetch_max_redirects: usize,
    /// Allow image URLs that resolve to loopback, private or link-local addresses.
    #[arg(long, env = "VLM_ALLOW_PRIVATE_IMAGE_URLS")]
    pub allow_private_image_urls: bool,
    /// Allow `file://` image URLs under this directory.
    #[arg(long, env = "VLM_ALLOWED_LOCAL_MEDIA_PATH")]
    pub allowed_local_media_path: Option<PathBuf>,
    /// Most requests queued or running at once (429 beyond).
    #[arg(long, env = "VLM_MAX_QUEUE", default_value_t = 64)]
    pub max_queue: usize,
    /// Largest `n` (choices per request).
    #[arg(long, env = "VLM_MAX_N", default_value_t = 16)]
    pub max_n: usize,
}

/// `--quantize` values (ggml block types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuantizeArg {
    /// 8-bit, 32-wide blocks with one scale.
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit, 32-wide blocks with one scale.
    #[value(name = "q4_0")]
    Q4_0,
    /// 4-bit K-quant (256-wide super-blocks).
    #[value(name = "q4k")]
    Q4K,
    /// 5-bit K-quant.
    #[value(name = "q5k")]
    Q5K,
    /// 6-bit K-quant.
    #[value(name = "q6k")]
    Q6K,
}

impl QuantizeArg {
    /// The ggml type.
    pub fn ggml(self) -> candle_core::quantized::GgmlDType {
        use candle_core::quantized::GgmlDType;
        match self {
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q4K => GgmlDType::Q4K,
            Self::Q5K => GgmlDType::Q5K,
            Self::Q6K => GgmlDType::Q6K,
        }
    }
}

/// `--dtype` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    /// f32 on CPU, bf16 on CUDA/Metal.
    Auto,
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// bfloat16.
    Bf16,
}

impl Args {
    /// All accepted API keys: --api-key values plus the lines of --api-key-file.
    pub fn all_api_keys(&self) -> anyhow::Result<Vec<String>> {
        let mut keys: Vec<String> = self
            .api_keys
            .iter()
            .filter(|k| !k.is_empty())
            .cloned()
            .collect();
        if let Some(path) = &self.api_key_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--api-key-file {}: {e}", path.display()))?;
            keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string),
            );
        }
        Ok(keys)
    }

    /// The served names, defaulting to the --model value.
    pub fn served_names(&self) -> Vec<String> {
        if self.served_model_names.is_empty() {
            vec![self.model.clone()]
        } else {
            self.served_model_names.clone()
        }
    }
}
