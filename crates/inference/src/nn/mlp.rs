//! The gated MLP of Llama-family decoders: `down(act(gate(x)) * up(x))`.

use candle_core::{Module, Result, Tensor};

use super::activation::Activation;
use super::linear::LinearLayer;

/// `gate_proj`, `up_proj`, `down_proj` with an activation on the gate.
#[derive(Debug, Clone)]
pub struct GatedMlp {
    gate_proj: LinearLayer,
    up_proj: LinearLayer,
    down_proj: LinearLayer,
    act: Activation,
}

impl GatedMlp {
    /// Assembles the MLP from its three projections.
    pub fn new(
        gate_proj: LinearLayer,
        up_proj: LinearLayer,
        down_proj: LinearLayer,
        act: Activation,
    ) -> Self {
        Self {
            gate_proj,
            up_proj,
            down_proj,
            act,
        }
    }
}

impl GatedMlp {
    /// The gate, up and down projections.
    pub fn projections(&self) -> (&LinearLayer, &LinearLayer, &LinearLayer) {
        (&self.gate_proj, &self.up_proj, &self.down_proj)
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
