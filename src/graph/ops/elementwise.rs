//! Ops that map each value on its own: `Op::Reshape` (a view; Flatten),
//! `Op::Act` (an activation) and `Op::Dropout` (inverted dropout while training,
//! its mask from the seed and the pass (draw) number, `kernels::dropout`).

use crate::error::{Error, Result};
use crate::gpu::Tensor;
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op};
use crate::kernels::dropout;
use crate::kernels::elementwise as ew;
use crate::kernels::matmul::Activation;
use crate::reference as r;

impl Graph {
    /// Flatten to `[features]`.
    pub fn flatten(&mut self, x: NodeId, layer: &str) -> NodeId {
        let n = self.shape(x).iter().product();
        self.push(Op::Reshape { x }, vec![n], layer)
    }

    /// Elementwise activation `act` of `x`.
    pub fn activation(&mut self, x: NodeId, act: Activation, layer: &str) -> NodeId {
        let shape = self.shape(x).to_vec();
        self.push(Op::Act { x, act }, shape, layer)
    }

    /// Dropout of a fraction `rate` (in [0, 1)) of `x`'s units while training.
    /// Its mask seed derives from seed 0 and the node's position until a model is
    /// compiled ([`Graph::seed_random`] with the model's seed).
    pub fn dropout(&mut self, x: NodeId, rate: f32, layer: &str) -> Result<NodeId> {
        dropout::DropoutRate::new(rate).map_err(|e| Error::invalid(format!("layer '{layer}': {e}")))?;
        let shape = self.shape(x).to_vec();
        let seed = dropout::layer_seed(0, self.nodes.len());
        Ok(self.push(Op::Dropout { x, rate, seed }, shape, layer))
    }

    /// Gives every dropout, attention (its weights' dropout) and noise node its own
    /// stream seed, derived from `seed` and the node's position.
    pub fn seed_random(&mut self, seed: u64) {
        for (id, node) in self.nodes.iter_mut().enumerate() {
            if let Op::Dropout { seed: s, .. } | Op::Noise { seed: s, .. } | Op::Attention { seed: s, .. } =
                &mut node.op
            {
                *s = dropout::layer_seed(seed, id);
            }
        }
    }
}

/// A view of the input with the node's shape.
pub(crate) fn reshape_forward(lw: &mut Lowering<'_>, id: NodeId, x: NodeId) -> Result<Tensor> {
    lw.value(x).reshape(&super::batched(lw.batch, lw.shape(id)))
}

pub(crate) fn act_forward(lw: &mut Lowering<'_>, id: NodeId, x: NodeId, act: Activation) -> Result<Tensor> {
    let y = lw.output(id)?;
    lw.dispatches
        .push(ew::activation_forward(lw.ctx, act, &lw.value(x), &y)?);
    Ok(y)
}

/// Training: the masked, rescaled input. Evaluating: the identity, a view of the input.
pub(crate) fn dropout_forward(
    lw: &mut Lowering<'_>,
    id: NodeId,
    x: NodeId,
    rate: f32,
    seed: u32,
) -> Result<Tensor> {
    if !lw.train {
        return Ok(lw.value(x));
    }
    let y = lw.output(id)?;
    lw.dispatches
        .push(dropout::dropout(lw.ctx, &lw.value(x), &y, rate, seed, lw.step)?);
    Ok(y)
}

pub(crate) fn act_backward(
    bw: &mut BackwardLowering<'_>,
    id: NodeId,
    dy: &Tensor,
    x: NodeId,
    act: Activation,
) -> Result<()> {
    if let Some(dx) = bw.dx_for(x)? {
        bw.dispatches
            .push(ew::activation_backward(bw.ctx, act, &bw.value(id), dy, &dx)?);
    }
    Ok(())
}

/// The same mask (same seed, same step) applied to the gradient.
pub(crate) fn dropout_backward(
    bw: &mut BackwardLowering<'_>,
    dy: &Tensor,
    x: NodeId,
    rate: f32,
    seed: u32,
) -> Result<()> {
    if let Some(dx) = bw.dx_for(x)? {
        bw.dispatches
            .push(dropout::dropout(bw.ctx, dy, &dx, rate, seed, bw.step)?);
    }
    Ok(())
}

pub(crate) fn reference_act_forward(
    rf: &mut RefForward<'_>,
    id: NodeId,
    x: NodeId,
    act: Activation,
) -> Vec<f32> {
    let mut y = vec![0.0; rf.numel(id)];
    r::elementwise::activation_forward(act, rf.value(x), &mut y);
    y
}

pub(crate) fn reference_dropout_forward(
    rf: &mut RefForward<'_>,
    id: NodeId,
    x: NodeId,
    rate: f32,
    seed: u32,
) -> Result<Vec<f32>> {
    match rf.train {
        Some(t) => {
            let mut y = vec![0.0; rf.numel(id)];
            r::dropout::dropout(rf.value(x), &mut y, rate, seed, t)?;
            Ok(y)
        }
        None => Ok(rf.value(x).to_vec()),
    }
}

pub(crate) fn reference_act_backward(
    rb: &mut RefBackward<'_>,
    id: NodeId,
    dy: &[f32],
    x: NodeId,
    act: Activation,
) {
    if rb.req[x] {
        let mut dx = vec![0.0; dy.len()];
        r::elementwise::activation_backward(act, rb.value(id), dy, &mut dx);
        rb.add_grad(x, dx);
    }
}

pub(crate) fn reference_dropout_backward(
    rb: &mut RefBackward<'_>,
    dy: &[f32],
    x: NodeId,
    rate: f32,
    seed: u32,
) -> Result<()> {
    if rb.req[x] {
        let mut dx = vec![0.0; dy.len()];
        r::dropout::dropout(dy, &mut dx, rate, seed, rb.draw)?;
        rb.add_grad(x, dx);
    }
    Ok(())
}
