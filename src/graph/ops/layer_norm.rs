//! `Op::LayerNorm`: normalization of each sample's last axis with a learned scale
//! and shift (Keras' `LayerNormalization`, PyTorch's `nn.LayerNorm(features)`);
//! `Op::RmsNorm`, its uncentred form with a scale only (Keras'
//! `RMSNormalization`, PyTorch's `nn.RMSNorm`). GPU: `kernels::layer_norm` (the
//! forward keeps each row's mean and 1/std for the backward); the scale's and
//! shift's gradients are column sums of `dy·x̂` and `dy`.

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

    /// RMS normalization of `x` over its last per-sample axis with scale `gamma`
    /// (a parameter of that axis' length), or over each of the equal groups
    /// the axis holds side by side when `gamma` is one group long (Qwen3's
    /// normalization of each head of its queries and keys).
    pub fn rms_norm(&mut self, x: NodeId, gamma: NodeId, epsilon: f32, layer: &str) -> Result<NodeId> {
        let shape = self.shape(x).to_vec();
        let features = *shape.last().expect("per-sample shapes are non-empty");
        let fits = matches!(self.shape(gamma), &[g] if g > 0 && features.is_multiple_of(g));
        if !fits {
            return Err(shape_err(
                layer,
                format!(
                    "RMSNormalization of {shape:?} needs a scale of [{features}] (or of a length \
                     dividing it, one scale per group), got {:?}",
                    self.shape(gamma)
                ),
            ));
        }
        if !(epsilon > 0.0 && epsilon.is_finite()) {
            return Err(shape_err(
                layer,
                format!("epsilon must be positive and finite, got {epsilon}"),
            ));
        }
        Ok(self.push(Op::RmsNorm { x, gamma, epsilon }, shape, layer))
    }
}

/// `(rows, values)` of the rows normalised: `x`'s values in rows of the
/// scale's length (the last axis; for an RMS normalization, possibly each of
/// the heads side by side in it).
fn rows_of(graph: &Graph, batch: usize, x: NodeId, gamma: NodeId) -> (usize, usize) {
    let (rows, features) = super::rows_features(graph, batch, x);
    let width = graph.shape(gamma)[0];
    (rows * (features / width), width)
}

/// An `Op::LayerNorm`'s or `Op::RmsNorm`'s input, scale, shift (`None`:
/// RMS normalization) and epsilon.
fn fields(op: &Op) -> (NodeId, NodeId, Option<NodeId>, f32) {
    match op {
        Op::LayerNorm {
            x,
            gamma,
            beta,
            epsilon,
        } => (*x, *gamma, Some(*beta), *epsilon),
        Op::RmsNorm { x, gamma, epsilon } => (*x, *gamma, None, *epsilon),
        _ => unreachable!("a layer or RMS normalization"),
    }
}

pub(crate) fn forward(lw: &mut Lowering<'_>, id: NodeId, op: &Op) -> Result<Tensor> {
    let (x, gamma, beta, eps) = fields(op);
    let (rows, features) = rows_of(lw.graph, lw.batch, x, gamma);
    let y = lw.output(id)?;
    let stats = Tensor::zeros(lw.ctx, &[rows, 2], DType::F32)?;
    let view = [rows, features];
    let (xv, gamma, yv) = (lw.value(x).reshape(&view)?, lw.value(gamma), y.reshape(&view)?);
    lw.dispatches.push(match beta {
        Some(beta) => ln::layer_norm_forward(lw.ctx, &xv, &gamma, &lw.value(beta), eps, &yv, &stats)?,
        None => ln::rms_norm_forward(lw.ctx, &xv, &gamma, eps, &yv, &stats)?,
    });
    lw.aux.insert(id, vec![stats]);
    Ok(y)
}

pub(crate) fn backward(bw: &mut BackwardLowering<'_>, id: NodeId, dy: &Tensor, op: &Op) -> Result<()> {
    let (x, gamma, beta, eps) = fields(op);
    let (rows, features) = rows_of(bw.graph, bw.batch, x, gamma);
    let view = [rows, features];
    let (want_gamma, want_beta) = (bw.req[gamma], beta.is_some_and(|b| bw.req[b]));
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
    let (xv, gv, stats, dxv) = (
        bw.value(x).reshape(&view)?,
        bw.value(gamma),
        &bw.aux[&id][0],
        dx.reshape(&view)?,
    );
    bw.dispatches.push(match beta {
        Some(_) => ln::layer_norm_backward(ctx, &xv, &gv, stats, eps, &dy, &dxv, &dyx)?,
        None => ln::rms_norm_backward(ctx, &xv, &gv, stats, eps, &dy, &dxv, &dyx)?,
    });
    if want_gamma {
        let dg = bw.param_grad(gamma)?;
        bw.dispatches
            .push(reduce::sum_axis(ctx, &dyx, 1, rows, features, &dg)?);
    }
    if let Some(beta) = beta.filter(|_| want_beta) {
        let db = bw.param_grad(beta)?;
        bw.dispatches
            .push(reduce::sum_axis(ctx, &dy, 1, rows, features, &db)?);
    }
    Ok(())
}

pub(crate) fn reference_forward(rf: &mut RefForward<'_>, id: NodeId, op: &Op) -> Vec<f32> {
    let (x, gamma, beta, eps) = fields(op);
    let (rows, _) = rows_of(rf.graph, rf.batch, x, gamma);
    let mut y = vec![0.0; rf.numel(id)];
    let mut stats = vec![0.0; rows * 2];
    match beta {
        Some(beta) => r::layer_norm::layer_norm_forward(
            rf.value(x),
            rf.value(gamma),
            rf.value(beta),
            eps,
            &mut y,
            &mut stats,
        ),
        None => r::layer_norm::rms_norm_forward(rf.value(x), rf.value(gamma), eps, &mut y, &mut stats),
    }
    y
}

pub(crate) fn reference_backward(rb: &mut RefBackward<'_>, dy: &[f32], op: &Op) {
    let (x, gamma, beta, eps) = fields(op);
    let features = rb.graph.shape(gamma)[0];
    let mut dx = vec![0.0; rb.numel(x)];
    let (mut dg, mut db) = (vec![0.0; features], vec![0.0; features]);
    match beta {
        Some(_) => r::layer_norm::layer_norm_backward(
            rb.value(x),
            rb.value(gamma),
            eps,
            dy,
            &mut dx,
            &mut dg,
            &mut db,
        ),
        None => r::layer_norm::rms_norm_backward(rb.value(x), rb.value(gamma), eps, dy, &mut dx, &mut dg),
    }
    for (node, d) in [(Some(x), dx), (Some(gamma), dg), (beta, db)] {
        if let Some(node) = node.filter(|&n| rb.req[n]) {
            rb.add_grad(node, d);
        }
    }
}
