//! Loading linear layers with or without bias.

use candle_core::Result;
use candle_nn::{Linear, VarBuilder};

/// Loads `{prefix}.weight` (and `{prefix}.bias` when `bias`) as an `(out, in)` linear layer.
pub fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    if bias {
        candle_nn::linear(in_dim, out_dim, vb)
    } else {
        candle_nn::linear_no_bias(in_dim, out_dim, vb)
    }
}
