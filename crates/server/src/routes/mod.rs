//! HTTP routes.

pub mod chat;
pub mod health;
pub mod models;
