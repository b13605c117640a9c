//! Shared neural-network building blocks, used by every model family.

pub mod activation;
pub mod attention;
pub mod cpu_attention;
pub mod embedding;
pub mod kv_cache;
pub mod linear;
pub mod mlp;
pub mod rope;
