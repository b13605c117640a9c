//! OpenAI Chat Completions wire types (serde only) and their validation.

pub mod request;
pub mod response;
pub mod validate;
