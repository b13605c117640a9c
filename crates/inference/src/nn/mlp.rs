//! The gated MLP of Llama-family decoders: `down(act(gate(x)) * up(x))`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::activation::Activation;
use super::linear::linear;

/// `gate_proj`, `up_proj`, `down_proj` with an activation on the gate.
#[derive(Debug, Clone)]
pub struct GatedMlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    act: Activation,
}

impl GatedMlp {
    /// Loads the three projections under `vb` (`mlp.*`).
    pub fn load(
        hidden: usize,
        intermediate: usize,
        bias: bool,
        act: Activation,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            gate_proj: linear(hidden, intermediate, bias, vb.pp("gate_proj"))?,
            up_proj: linear(hidden, intermediate, bias, vb.pp("up_proj"))?,
            down_proj: linear(intermediate, hidden, bias, vb.pp("down_proj"))?,
            act,
        })
    }
}

impl Module for GatedMlp {
    /// `(batch, seq, hidden)` → `(batch, seq, hidden)`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let gate = self.act.apply(&self.gate_proj.forward(xs)?)?;
        let up = self.up_proj.forward(xs)?;
        self.down_proj.forward(&(gate * up)?)
    }
}
