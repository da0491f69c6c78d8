//! Arithmetic ops: `Op::Add`, `Op::Mul` (equal shapes), `Op::Scale` (`factor · x`)
//! and `Op::Exp` (`exp(scale · x)`), the pieces of a variational autoencoder's sample `mean + exp(log_var / 2) ·
//! ε`; `Op::Log`, `Op::Square`, and `Op::Sum` (a sample's sum or mean, `[1]`), the
//! pieces of losses written as ops (`kernels::elementwise`, `kernels::reduce`).

use crate::error::Result;
use crate::gpu::Tensor;
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::elementwise::{self as ew, GatedUnit};
use crate::kernels::reduce;
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

    /// `factor · x` elementwise (`factor` finite).
    pub fn scale(&mut self, x: NodeId, factor: f32, layer: &str) -> Result<NodeId> {
        if !factor.is_finite() {
            return Err(shape_err(
                layer,
                format!("the scale factor {factor} must be finite"),
            ));
        }
        let shape = self.shape(x).to_vec();
        Ok(self.push(Op::Scale { x, factor }, shape, layer))
    }

    /// `ln(x)` elementwise (the caller keeps `x` positive: an exponential, a
    /// sigmoid, a softplus).
    pub fn log(&mut self, x: NodeId, layer: &str) -> NodeId {
        let shape = self.shape(x).to_vec();
        self.push(Op::Log { x }, shape, layer)
    }

    /// The activation `x·g(x)` `form` elementwise: GELU, exact (`x·Φ(x)`) or its
    /// tanh approximation, or SiLU (`x·σ(x)`).
    pub fn gated_unit(&mut self, x: NodeId, form: GatedUnit, layer: &str) -> NodeId {
        let shape = self.shape(x).to_vec();
        self.push(Op::GatedUnit { x, form }, shape, layer)
    }

    /// `x²` elementwise.
    pub fn square(&mut self, x: NodeId, layer: &str) -> NodeId {
        let shape = self.shape(x).to_vec();
        self.push(Op::Square { x }, shape, layer)
    }

    /// The sum (or, with `mean`, the mean) of each sample's values: `[1]` per
    /// sample, usable as a loss term.
    pub fn sum(&mut self, x: NodeId, mean: bool, layer: &str) -> NodeId {
        self.push(Op::Sum { x, mean }, vec![1], layer)
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

pub(crate) fn scale_forward(lw: &mut Lowering<'_>, id: NodeId, x: NodeId, factor: f32) -> Result<Tensor> {
    let y = lw.output(id)?;
    lw.dispatches.push(ew::scale(lw.ctx, &lw.value(x), factor, &y)?);
    Ok(y)
}

pub(crate) fn log_forward(lw: &mut Lowering<'_>, id: NodeId, x: NodeId) -> Result<Tensor> {
    let y = lw.output(id)?;
    lw.dispatches.push(ew::log(lw.ctx, &lw.value(x), &y)?);
    Ok(y)
}

pub(crate) fn gated_unit_forward(
    lw: &mut Lowering<'_>,
    id: NodeId,
    x: NodeId,
    form: GatedUnit,
) -> Result<Tensor> {
    let y = lw.output(id)?;
    lw.dispatches
        .push(ew::gated_unit(lw.ctx, &lw.value(x), &y, form)?);
    Ok(y)
}

pub(crate) fn square_forward(lw: &mut Lowering<'_>, id: NodeId, x: NodeId) -> Result<Tensor> {
    let y = lw.output(id)?;
    let x = lw.value(x);
    lw.dispatches.push(ew::mul(lw.ctx, &x, &x, &y)?);
    Ok(y)
}

/// Values per sample of node `x` (a sum's group size).
fn per_sample(graph: &crate::graph::Graph, x: NodeId) -> usize {
    graph.shape(x).iter().product()
}

pub(crate) fn sum_forward(lw: &mut Lowering<'_>, id: NodeId, x: NodeId, mean: bool) -> Result<Tensor> {
    let y = lw.output(id)?;
    let d = per_sample(lw.graph, x);
    lw.dispatches
        .push(reduce::sum_axis(lw.ctx, &lw.value(x), lw.batch, d, 1, &y)?);
    if mean {
        lw.dispatches.push(ew::scale(lw.ctx, &y, 1.0 / d as f32, &y)?);
    }
    Ok(y)
}

/// `dx = dy / x`.
pub(crate) fn log_backward(bw: &mut BackwardLowering<'_>, dy: &Tensor, x: NodeId) -> Result<()> {
    if let Some(dx) = bw.dx_for(x)? {
        bw.dispatches.push(ew::div(bw.ctx, dy, &bw.value(x), &dx)?);
    }
    Ok(())
}

/// `dx = factor · dy`.
pub(crate) fn scale_backward(
    bw: &mut BackwardLowering<'_>,
    dy: &Tensor,
    x: NodeId,
    factor: f32,
) -> Result<()> {
    if let Some(dx) = bw.dx_for(x)? {
        bw.dispatches.push(ew::scale(bw.ctx, dy, factor, &dx)?);
    }
    Ok(())
}

/// `dx = dy · (x·g(x))'`.
pub(crate) fn gated_unit_backward(
    bw: &mut BackwardLowering<'_>,
    dy: &Tensor,
    x: NodeId,
    form: GatedUnit,
) -> Result<()> {
    if let Some(dx) = bw.dx_for(x)? {
        bw.dispatches
            .push(ew::gated_unit_backward(bw.ctx, dy, &bw.value(x), &dx, form)?);
    }
    Ok(())
}

/// `dx = 2 · x · dy`.
pub(crate) fn square_backward(bw: &mut BackwardLowering<'_>, dy: &Tensor, x: NodeId) -> Result<()> {
    if let Some(dx) = bw.dx_for(x)? {
        bw.dispatches
            .push(ew::mul_scale(bw.ctx, 2.0, &bw.value(x), dy, &dx)?);
    }
    Ok(())
}

/// Every value of a sample takes its sum's gradient (over the count for a mean).
pub(crate) fn sum_backward(bw: &mut BackwardLowering<'_>, dy: &Tensor, x: NodeId, mean: bool) -> Result<()> {
    let d = per_sample(bw.graph, x);
    if let Some(dx) = bw.dx_for(x)? {
        let alpha = if mean { 1.0 / d as f32 } else { 1.0 };
        bw.dispatches.push(ew::repeat_scale(bw.ctx, dy, d, alpha, &dx)?);
    }
    Ok(())
}

/// Both inputs take the output's gradient as it is: the first that needs one as a
/// view of it (summed in if it has a gradient already), the other as a copy (one
/// buffer cannot be two gradients that later rules sum into apart).
pub(crate) fn add_backward(bw: &mut BackwardLowering<'_>, dy: &Tensor, a: NodeId, b: NodeId) -> Result<()> {
    let (a, b) = if bw.req[a] { (a, b) } else { (b, a) };
    bw.pass_through(a, dy)?;
    if let Some(dx) = bw.dx_for(b)? {
        bw.dispatches
            .push(ew::scale(bw.ctx, dy, 1.0, &dx.reshape(dy.shape())?)?);
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
        Op::Log { x } => r::elementwise::log(rf.value(x), &mut y),
        Op::Scale { x, factor } => r::elementwise::scale(rf.value(x), factor, &mut y),
        Op::GatedUnit { x, form } => r::elementwise::gated_unit(rf.value(x), &mut y, form),
        Op::Square { x } => r::elementwise::mul(rf.value(x), rf.value(x), &mut y),
        Op::Sum { x, mean } => {
            let d = per_sample(rf.graph, x);
            for (o, row) in y.iter_mut().zip(rf.value(x).chunks(d)) {
                let s: f64 = row.iter().map(|&v| v as f64).sum();
                *o = if mean { s / d as f64 } else { s } as f32;
            }
        }
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
        Op::Scale { x, factor } => {
            if rb.req[x] {
                let mut dx = vec![0.0; dy.len()];
                r::elementwise::scale(dy, factor, &mut dx);
                rb.add_grad(x, dx);
            }
        }
        Op::Log { x } => {
            if rb.req[x] {
                let mut dx = vec![0.0; dy.len()];
                r::elementwise::div(dy, rb.value(x), &mut dx);
                rb.add_grad(x, dx);
            }
        }
        Op::GatedUnit { x, form } => {
            if rb.req[x] {
                let mut dx = vec![0.0; dy.len()];
                r::elementwise::gated_unit_backward(dy, rb.value(x), &mut dx, form);
                rb.add_grad(x, dx);
            }
        }
        Op::Square { x } => {
            if rb.req[x] {
                let mut dx = vec![0.0; dy.len()];
                r::elementwise::mul_scale(2.0, rb.value(x), dy, &mut dx);
                rb.add_grad(x, dx);
            }
        }
        Op::Sum { x, mean } => {
            if rb.req[x] {
                let d = per_sample(rb.graph, x);
                let alpha = if mean { 1.0 / d as f32 } else { 1.0 };
                let mut dx = vec![0.0; dy.len() * d];
                r::elementwise::repeat_scale(dy, d, alpha, &mut dx);
                rb.add_grad(x, dx);
            }
        }
        ref other => unreachable!("not arithmetic: {other:?}"),
    }
}
