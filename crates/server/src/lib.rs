//! vlm-server: an OpenAI-compatible HTTP front end over `vlm-inference`.

pub mod app;
pub mod auth;
pub mod body;
pub mod cli;
pub mod error;
pub mod images;
pub mod openai;
pub mod routes;
pub mod state;

pub use app::RunningServer;
pub use cli::Args;
