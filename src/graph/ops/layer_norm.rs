//! `Op::LayerNorm`: normalization of each sample's last axis with a learned scale
//! and shift (Keras' `LayerNormalization`, PyTorch's `nn.LayerNorm(features)`).
//! GPU: `kernels::layer_norm` (the forward keeps each row's mean and 1/std for the
//! backward); the scale's and shift's gradients are column sums of `dy·x̂` and `dy`.

use crate::error::Result;
use crate::gpu::{DType, Tensor};
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::layer_norm as ln;
use crate::kernels::reduce;
use crate::reference as r;

impl Graph {
    /// Layer normalization of `x` over its last per-sample axis with scale `gamma`
    /// and shift `beta` (parameters of that axis' length).
    pub fn layer_norm(
        &mut self,
        x: NodeId,
        gamma: NodeId,
        beta: NodeId,
        epsilon: f32,
        layer: &str,
    ) -> Result<NodeId> {
        let shape = self.shape(x).to_vec();
        let features = *shape.last().expect("per-sample shapes are non-empty");
        if self.shape(gamma) != [features] || self.shape(beta) != [features] {
            return Err(shape_err(
                layer,
                format!(
                    "LayerNormalization of {shape:?} needs a scale and shift of [{features}], got {:?} and {:?}",
                    self.shape(gamma),
                    self.shape(beta)
                ),
            ));
        }
        if !(epsilon > 0.0 && epsilon.is_finite()) {
            return Err(shape_err(
                layer,
                format!("epsilon must be positive and finite, got {epsilon}"),
            ));
        }
        Ok(self.push(
            Op::LayerNorm {
                x,
                gamma,
                beta,
                epsilon,
            },
            shape,
            layer,
        ))
    }
}

fn fields(op: &Op) -> (NodeId, NodeId, NodeId, f32) {
    match op {
        Op::LayerNorm {
            x,
            gamma,
            beta,
            epsilon,
        } => (*x, *gamma, *beta, *epsilon),
        _ => unreachable!("a layer normalization"),
    }
}

pub(crate) fn forward(lw: &mut Lowering<'_>, id: NodeId, op: &Op) -> Result<Tensor> {
    let (x, gamma, beta, eps) = fields(op);
    let (rows, features) = super::rows_features(lw.graph, lw.batch, x);
    let y = lw.output(id)?;
    let stats = Tensor::zeros(lw.ctx, &[rows, 2], DType::F32)?;
    let view = [rows, features];
    lw.dispatches.push(ln::layer_norm_forward(
        lw.ctx,
        &lw.value(x).reshape(&view)?,
        &lw.value(gamma),
        &lw.value(beta),
        eps,
        &y.reshape(&view)?,
        &stats,
    )?);
    lw.aux.insert(id, vec![stats]);
    Ok(y)
}

pub(crate) fn backward(bw: &mut BackwardLowering<'_>, id: NodeId, dy: &Tensor, op: &Op) -> Result<()> {
    let (x, gamma, beta, eps) = fields(op);
    let (rows, features) = super::rows_features(bw.graph, bw.batch, x);
    let view = [rows, features];
    let (want_gamma, want_beta) = (bw.req[gamma], bw.req[beta]);
    if !bw.req[x] && !want_gamma && !want_beta {
        return Ok(());
    }
    let dx = match bw.dx_for(x)? {
        Some(dx) => dx,
        None => bw.temporary(&view)?,
    };
    let dyx = bw.temporary(&view)?;
    let ctx = bw.ctx;
    let dy = dy.reshape(&view)?;
    bw.dispatches.push(ln::layer_norm_backward(
        ctx,
        &bw.value(x).reshape(&view)?,
        &bw.value(gamma),
        &bw.aux[&id][0],
        eps,
        &dy,
        &dx.reshape(&view)?,
        &dyx,
    )?);
    if want_gamma {
        let dg = bw.param_grad(gamma)?;
        bw.dispatches
            .push(reduce::sum_axis(ctx, &dyx, 1, rows, features, &dg)?);
    }
    if want_beta {
        let db = bw.param_grad(beta)?;
        bw.dispatches
            .push(reduce::sum_axis(ctx, &dy, 1, rows, features, &db)?);
    }
    Ok(())
}

pub(crate) fn reference_forward(rf: &mut RefForward<'_>, id: NodeId, op: &Op) -> Vec<f32> {
    let (x, gamma, beta, eps) = fields(op);
    let (rows, _) = super::rows_features(rf.graph, rf.batch, x);
    let mut y = vec![0.0; rf.numel(id)];
    let mut stats = vec![0.0; rows * 2];
    r::layer_norm::layer_norm_forward(
        rf.value(x),
        rf.value(gamma),
        rf.value(beta),
        eps,
        &mut y,
        &mut stats,
    );
    y
}

pub(crate) fn reference_backward(rb: &mut RefBackward<'_>, dy: &[f32], op: &Op) {
    let (x, gamma, beta, eps) = fields(op);
    let features = rb.graph.shape(gamma)[0];
    let mut dx = vec![0.0; rb.numel(x)];
    let (mut dg, mut db) = (vec![0.0; features], vec![0.0; features]);
    r::layer_norm::layer_norm_backward(rb.value(x), rb.value(gamma), eps, dy, &mut dx, &mut dg, &mut db);
    for (node, d) in [(x, dx), (gamma, dg), (beta, db)] {
        if rb.req[node] {
            rb.add_grad(node, d);
        }
    }
}
