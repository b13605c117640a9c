//! The router, the model loading, and a running server handle (used by `main` and tests).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use candle_core::{DType, Device};
use tokio::task::JoinHandle;
use vlm_inference::engine::{Engine, PrefixCacheLimits};
use vlm_inference::hub::ModelSource;
use vlm_inference::image::DecodeLimits;
use vlm_inference::nn::linear::QuantKernels;
use vlm_inference::{LoadOptions, VisionLanguageModel};

use crate::auth::require_api_key;
use crate::cli::{Args, DtypeArg};
use crate::error::ApiError;
use crate::images::{ImageFetchPolicy, ImageFetcher};
use crate::openai::validate::RequestLimits;
use crate::routes::{chat, health, models};
use crate::state::{unix_now, AppState};

/// Builds the router over `state`.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/{id}", get(models::get_model))
        .route_layer(from_fn_with_state(state.clone(), require_api_key));
    Router::new()
        .merge(api)
        .route("/health", get(health::health))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

/// Parses `--device`.
pub fn parse_device(spec: &str) -> anyhow::Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        "metal" => Device::new_metal(0).context("--device metal"),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .with_context(|| format!("--device {s}: bad ordinal"))?,
                None => 0,
            };
            Device::new_cuda(ordinal).with_context(|| format!("--device {s}"))
        }
        other => anyhow::bail!("--device {other}: expected cpu, cuda, cuda:N or metal"),
    }
}

/// Resolves `--dtype` for `device`.
pub fn dtype_for(arg: DtypeArg, device: &Device) -> anyhow::Result<DType> {
    Ok(match arg {
        DtypeArg::F32 => DType::F32,
        DtypeArg::F16 => DType::F16,
        DtypeArg::Bf16 if device.is_cpu() => anyhow::bail!(
            "--dtype bf16 is not supported on the CPU (candle's CPU backend has no bf16 matmul); \
             use f32 or f16"
        ),
        DtypeArg::Bf16 => DType::BF16,
        DtypeArg::Auto if device.is_cpu() => DType::F32,
        DtypeArg::Auto => DType::BF16,
    })
}

/// FNV-1a over what determines outputs: the config, the weight sizes, dtype, device, version.
fn fingerprint(dir: &Path, dtype: DType, device: &Device) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    feed(&std::fs::read(dir.join("config.json")).unwrap_or_default());
    if dir.is_file() {
        // A GGUF file: its size stands for its weights.
        feed(
            &std::fs::metadata(dir)
                .map(|m| m.len())
                .unwrap_or(0)
                .to_le_bytes(),
        );
    }
    if let Ok(files) = vlm_inference::weights::find_weight_files(dir) {
        for f in files {
            feed(
                &std::fs::metadata(&f)
                    .map(|m| m.len())
                    .unwrap_or(0)
                    .to_le_bytes(),
            );
        }
    }
    feed(
        format!(
            "{dtype:?}{:?}{}",
            device.location(),
            env!("CARGO_PKG_VERSION")
        )
        .as_bytes(),
    );
    format!("fp_{:012x}", h & 0xffff_ffff_ffff)
}

/// The server state for `args`, with no model loaded yet.
pub fn build_state(args: &Args) -> anyhow::Result<AppState> {
    let api_keys = args.all_api_keys()?;
    let policy = ImageFetchPolicy {
        timeout: Duration::from_secs_f64(args.image_fetch_timeout_secs.max(0.001)),
        max_bytes: args.max_image_bytes,
        max_redirects: args.image_fetch_max_redirects,
        allow_private: args.allow_private_image_urls,
        allowed_local_path: args.allowed_local_media_path.clone(),
    };
    let fetcher = ImageFetcher::new(policy).context("image fetching")?;
    Ok(AppState {
        engine: Arc::new(OnceLock::new()),
        served_names: Arc::new(args.served_names()),
        api_keys: Arc::new(api_keys),
        fetcher: Arc::new(fetcher),
        decode_limits: DecodeLimits {
            max_pixels: args.max_image_pixels,
        },
        limits: RequestLimits {
            max_images: args.max_images_per_request,
            max_n: args.max_n.max(1),
        },
        max_body_bytes: args.max_body_bytes,
        system_fingerprint: Arc::new(OnceLock::new()),
        started: unix_now(),
    })
}

/// A bound, serving server; the model may still be loading.
pub struct RunningServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// Shared state (tests read the engine's counters through it).
    pub state: AppState,
    loading: Option<JoinHandle<anyhow::Result<()>>>,
    serving: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Binds, starts serving (`/health` answers 503 meanwhile) and starts loading the model.
    pub async fn start(args: &Args) -> anyhow::Result<Self> {
        let state = build_state(args)?;
        let device = parse_device(&args.device)?;
        let dtype = dtype_for(args.dtype, &device)?;
        let listener = tokio::net::TcpListener::bind((args.host, args.port))
            .await
            .with_context(|| format!("binding {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        let serving = tokio::spawn(async move { axum::serve(listener, app).await });
        let source = ModelSource::parse(&args.model, args.revision.as_deref());
        let vision_source = args
            .vision_from
            .as_deref()
            .map(|v| ModelSource::parse(v, args.revision.as_deref()));
        let quantize = args.quantize.map(|q| q.ggml());
        let dequantize_gguf = args.dequantize_gguf;
        let quant_kernels = if args.keep_quant_types {
            QuantKernels::AsStored
        } else {
            QuantKernels::Convert
        };
        let max_queue = args.max_queue;
        let prefix_limits = PrefixCacheLimits {
            slots: if args.no_prefix_cache {
                0
            } else {
                args.prefix_cache_slots
            },
            max_bytes: args.prefix_cache_mib.saturating_mul(1 << 20),
        };
        let load_state = state.clone();
        let loading = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            tracing::info!(model = ?source, "resolving model");
            let dir = source.resolve(true)?;
            let vision_from = match &vision_source {
                Some(v) => Some(v.resolve(true)?),
                None => None,
            };
            tracing::info!(path = %dir.display(), ?dtype, ?quantize, "loading model");
            let started = std::time::Instant::now();
            let model = VisionLanguageModel::load(
                &dir,
                &LoadOptions {
                    device: device.clone(),
                    dtype,
                    quantize,
                    vision_from,
                    dequantize_gguf,
                    unfused: false,
                    quant_kernels,
                },
            )?;
            tracing::info!(secs = started.elapsed().as_secs_f32(), "model loaded");
            let _ = load_state
                .system_fingerprint
                .set(fingerprint(&dir, dtype, &device));
            let _ = load_state
                .engine
                .set(Engine::start_with(model, max_queue, prefix_limits));
            Ok(())
        });
        Ok(Self {
            addr,
            state,
            loading: Some(loading),
            serving,
        })
    }

    /// Waits until the model is loaded (or failed to load).
    pub async fn ready(&mut self) -> anyhow::Result<()> {
        if let Some(loading) = self.loading.take() {
            loading.await.context("model loading task")??;
        }
        Ok(())
    }

    /// Serves until the server stops.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.serving.await??;
        Ok(())
    }

    /// Stops serving.
    pub fn abort(&self) {
        self.serving.abort();
    }
}
