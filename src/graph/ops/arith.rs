//! Elementwise ops of several inputs or with a parameter: `Op::Add`, `Op::Mul`
//! (equal shapes) and `Op::Exp` (`exp(scale · x)`), the pieces of a variational
//! autoencoder's sample `mean + exp(log_var / 2) · ε` (`kernels::elementwise`).

use crate::error::Result;
use crate::gpu::Tensor;
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::elementwise as ew;
use crate::reference as r;

impl Graph {
    fn same_shapes(&self, a: NodeId, b: NodeId, what: &str, layer: &str) -> Result<Vec<usize>> {
        if self.shape(a) != self.shape(b) {
            return Err(shape_err(
                layer,
                format!(
                    "{what} needs inputs of one shape, got {:?} and {:?}",
                    self.shape(a),
                    self.shape(b)
                ),
            ));
        }
        Ok(self.shape(a).to_vec())
    }

    /// `a + b` (equal per-sample shapes; a parameter is not broadcast).
    pub fn add(&mut self, a: NodeId, b: NodeId, layer: &str) -> Result<NodeId> {
        let shape = self.same_shapes(a, b, "Add", layer)?;
        Ok(self.push(Op::Add { a, b }, shape, layer))
    }

    /// `a · b` elementwise (equal per-sample shapes).
    pub fn mul(&mut self, a: NodeId, b: NodeId, layer: &str) -> Result<NodeId> {
        let shape = self.same_shapes(a, b, "Multiply", layer)?;
        Ok(self.push(Op::Mul { a, b }, shape, layer))
    }

    /// `exp(scale · x)` elementwise.
    pub fn exp(&mut self, x: NodeId, scale: f32, layer: &str) -> Result<NodeId> {
        if !scale.is_finite() {
            return Err(shape_err(
                layer,
                format!("the exponential's scale {scale} must be finite"),
            ));
        }
        let shape = self.shape(x).to_vec();
        Ok(self.push(Op::Exp { x, scale }, shape, layer))
    }
}

pub(crate) fn add_forward(lw: &mut Lowering<'_>, id: NodeId, a: NodeId, b: NodeId) -> Result<Tensor> {
    let y = lw.output(id)?;
    lw.dispatches
        .push(ew::add(lw.ctx, &lw.value(a), &lw.value(b), &y)?);
    Ok(y)
}

pub(crate) fn mul_forward(lw: &mut Lowering<'_>, id: NodeId, a: NodeId, b: NodeId) -> Result<Tensor> {
    let y = lw.output(id)?;
    lw.dispatches
        .push(ew::mul(lw.ctx, &lw.value(a), &lw.value(b), &y)?);
    Ok(y)
}

pub(crate) fn exp_forward(lw: &mut Lowering<'_>, id: NodeId, x: NodeId, scale: f32) -> Result<Tensor> {
    let y = lw.output(id)?;
    lw.dispatches
        .push(ew::exp_scale(lw.ctx, &lw.value(x), scale, &y)?);
    Ok(y)
}

/// Both inputs take the output's gradient as it is.
pub(crate) fn add_backward(bw: &mut BackwardLowering<'_>, dy: &Tensor, a: NodeId, b: NodeId) -> Result<()> {
    for x in [a, b] {
        if let Some(dx) = bw.dx_for(x)? {
            bw.dispatches
                .push(ew::scale(bw.ctx, dy, 1.0, &dx.reshape(dy.shape())?)?);
        }
    }
    Ok(())
}

/// `da = dy · b`, `db = dy · a`.
pub(crate) fn mul_backward(bw: &mut BackwardLowering<'_>, dy: &Tensor, a: NodeId, b: NodeId) -> Result<()> {
    for (x, other) in [(a, b), (b, a)] {
        if let Some(dx) = bw.dx_for(x)? {
            bw.dispatches
                .push(ew::mul(bw.ctx, dy, &bw.value(other), &dx.reshape(dy.shape())?)?);
        }
    }
    Ok(())
}

/// `dx = scale · y · dy` through the forward output `y`.
pub(crate) fn exp_backward(
    bw: &mut BackwardLowering<'_>,
    id: NodeId,
    dy: &Tensor,
    x: NodeId,
    scale: f32,
) -> Result<()> {
    if let Some(dx) = bw.dx_for(x)? {
        bw.dispatches
            .push(ew::mul_scale(bw.ctx, scale, &bw.value(id), dy, &dx)?);
    }
    Ok(())
}

pub(crate) fn reference_forward(rf: &mut RefForward<'_>, id: NodeId, op: &Op) -> Vec<f32> {
    let mut y = vec![0.0; rf.numel(id)];
    match *op {
        Op::Add { a, b } => r::elementwise::add(rf.value(a), rf.value(b), &mut y),
        Op::Mul { a, b } => r::elementwise::mul(rf.value(a), rf.value(b), &mut y),
        Op::Exp { x, scale } => r::elementwise::exp_scale(rf.value(x), scale, &mut y),
        ref other => unreachable!("not arithmetic: {other:?}"),
    }
    y
}

pub(crate) fn reference_backward(rb: &mut RefBackward<'_>, id: NodeId, dy: &[f32], op: &Op) {
    match *op {
        Op::Add { a, b } => {
            for x in [a, b] {
                if rb.req[x] {
                    rb.add_grad(x, dy.to_vec());
                }
            }
        }
        Op::Mul { a, b } => {
            for (x, other) in [(a, b), (b, a)] {
                if rb.req[x] {
                    let mut dx = vec![0.0; dy.len()];
                    r::elementwise::mul(dy, rb.value(other), &mut dx);
                    rb.add_grad(x, dx);
                }
            }
        }
        Op::Exp { x, scale } => {
            if rb.req[x] {
                let mut dx = vec![0.0; dy.len()];
                r::elementwise::mul_scale(scale, rb.value(id), dy, &mut dx);
                rb.add_grad(x, dx);
            }
        }
        ref other => unreachable!("not arithmetic: {other:?}"),
    }
}
