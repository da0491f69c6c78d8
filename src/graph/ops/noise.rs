//! `Op::Noise`: values drawn anew every step from a seeded stream (`kernels::noise`),
//! the ε of a variational autoencoder's sample or a GAN generator's input. It has no
//! inputs and so no backward rule.

use crate::error::Result;
use crate::gpu::Tensor;
use crate::graph::ops::{Lowering, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::dropout::layer_seed;
use crate::kernels::noise::{self, Distribution};
use crate::reference as r;

impl Graph {
    /// Values of `dist` of per-sample shape `shape`, drawn anew every step. Its seed
    /// derives from seed 0 and the node's position until a model is compiled
    /// ([`Graph::seed_random`] with the model's seed).
    pub fn noise(&mut self, shape: &[usize], dist: Distribution, layer: &str) -> Result<NodeId> {
        dist.validate().map_err(|e| shape_err(layer, e.to_string()))?;
        if shape.is_empty() || shape.contains(&0) {
            return Err(shape_err(
                layer,
                format!("noise shape {shape:?} must be non-empty with no zero"),
            ));
        }
        let seed = layer_seed(0, self.nodes.len());
        Ok(self.push(Op::Noise { dist, seed }, shape.to_vec(), layer))
    }
}

pub(crate) fn forward(lw: &mut Lowering<'_>, id: NodeId, dist: Distribution, seed: u32) -> Result<Tensor> {
    let y = lw.output(id)?;
    lw.dispatches.push(noise::noise(lw.ctx, &y, dist, seed, lw.step)?);
    Ok(y)
}

/// The reference draws at the executor's draw number (the pass about to be taken
/// while training, the last one taken when evaluating), as the GPU's per-step
/// uniform holds.
pub(crate) fn reference_forward(
    rf: &mut RefForward<'_>,
    id: NodeId,
    dist: Distribution,
    seed: u32,
) -> Vec<f32> {
    let mut y = vec![0.0; rf.numel(id)];
    r::noise::noise(&mut y, dist, seed, rf.draw);
    y
}
