//! Shared server state.

use std::sync::{Arc, OnceLock};

use vlm_inference::engine::Engine;
use vlm_inference::image::DecodeLimits;

use crate::images::ImageFetcher;
use crate::openai::validate::RequestLimits;

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Set once the model has loaded.
    pub engine: Arc<OnceLock<Engine>>,
    /// Names accepted in `model`; the first is reported.
    pub served_names: Arc<Vec<String>>,
    /// Accepted API keys (empty: no auth).
    pub api_keys: Arc<Vec<String>>,
    /// Fetches image URLs under the SSRF and size policy.
    pub fetcher: Arc<ImageFetcher>,
    /// Pixel limit for decoding.
    pub decode_limits: DecodeLimits,
    /// Request limits.
    pub limits: RequestLimits,
    /// Largest body in bytes.
    pub max_body_bytes: usize,
    /// Identifies model + build; set with the engine.
    pub system_fingerprint: Arc<OnceLock<String>>,
    /// Server start, unix seconds.
    pub started: u64,
}

impl AppState {
    /// The engine, or 503 while loading.
    pub fn engine(&self) -> Result<&Engine, crate::error::ApiError> {
        self.engine
            .get()
            .ok_or_else(crate::error::ApiError::not_ready)
    }

    /// The name reported in responses for a requested model name.
    pub fn is_served(&self, name: &str) -> bool {
        self.served_names.iter().any(|n| n == name)
    }
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
