//! Model families: vision towers, projector, decoders and their composition.

pub mod decoder;
pub mod decoder_weights;
pub mod fused_cpu;
pub mod llava;
pub mod projector;
pub mod vit;
