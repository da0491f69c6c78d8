//! `Op::Constant`: the same value for every element of every sample (the targets
//! 1 and 0 of a GAN's binary cross-entropy terms). Filled once when a plan is
//! built; no dispatch per step and no gradient.

use crate::error::Result;
use crate::gpu::Tensor;
use crate::graph::ops::{Lowering, RefForward, batched};
use crate::graph::{Graph, NodeId, Op, shape_err};

impl Graph {
    /// `value` everywhere, of per-sample shape `shape`.
    pub fn constant(&mut self, shape: &[usize], value: f32, layer: &str) -> Result<NodeId> {
        if !value.is_finite() || shape.is_empty() || shape.contains(&0) {
            return Err(shape_err(
                layer,
                format!("a constant needs a finite value and a non-empty shape, got {value} of {shape:?}"),
            ));
        }
        Ok(self.push(Op::Constant { value }, shape.to_vec(), layer))
    }
}

pub(crate) fn forward(lw: &mut Lowering<'_>, id: NodeId, value: f32) -> Result<Tensor> {
    let shape = batched(lw.batch, lw.shape(id));
    Tensor::from_f32(lw.ctx, &vec![value; shape.iter().product()], &shape)
}

pub(crate) fn reference_forward(rf: &mut RefForward<'_>, id: NodeId, value: f32) -> Vec<f32> {
    vec![value; rf.numel(id)]
}
