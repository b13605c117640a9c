//! Model families: vision towers, projector, decoders and their composition.

pub mod clip;
pub mod decoder;
pub mod llava;
pub mod projector;
