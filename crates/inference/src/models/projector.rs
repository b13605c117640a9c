//! The LLaVA multi-modal projector: `linear_2(act(linear_1(x)))`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::nn::activation::Activation;
use crate::nn::linear::linear;

/// Maps vision features into the language model's embedding space.
#[derive(Debug, Clone)]
pub struct MultiModalProjector {
    linear_1: Linear,
    linear_2: Linear,
    act: Activation,
}

impl MultiModalProjector {
    /// Loads `linear_1` (`vision_dim → text_dim`) and `linear_2` (`text_dim → text_dim`).
    pub fn load(
        vision_dim: usize,
        text_dim: usize,
        act: Activation,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            linear_1: linear(vision_dim, text_dim, bias, vb.pp("linear_1"))?,
            linear_2: linear(text_dim, text_dim, bias, vb.pp("linear_2"))?,
            act,
        })
    }
}

impl Module for MultiModalProjector {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.linear_2
            .forward(&self.act.apply(&self.linear_1.forward(xs)?)?)
    }
}
