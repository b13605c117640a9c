//! Activation functions named as in Hugging Face configs.

use candle_core::{Result, Tensor};

/// An activation parsed from a config string (`hidden_act`, `projector_hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU with erf (`"gelu"`).
    Gelu,
    /// GELU with the tanh approximation (`"gelu_pytorch_tanh"`, `"gelu_new"`, `"gelu_fast"`).
    GeluTanh,
    /// `x * sigmoid(1.702 x)` (`"quick_gelu"`, OpenAI CLIP).
    QuickGelu,
    /// `x * sigmoid(x)` (`"silu"`, `"swish"`).
    Silu,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// Maps a transformers `ACT2FN` key to an activation; `None` when unknown.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Self::Gelu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Self::GeluTanh,
            "quick_gelu" => Self::QuickGelu,
            "silu" | "swish" => Self::Silu,
            "relu" => Self::Relu,
            _ => return None,
        })
    }

    /// Applies the activation element-wise.
    pub fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Gelu => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
            Self::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Self::Silu => xs.silu(),
            Self::Relu => xs.relu(),
        }
    }
}
