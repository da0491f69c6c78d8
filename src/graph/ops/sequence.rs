//! Ops on sequences (`[tokens, features]` per sample): `Op::SequenceMean`, the mean
//! over the tokens (Keras' `GlobalAveragePooling1D`), and `Op::AddBroadcast`, a
//! parameter of the sample's shape added to every sample (a learned position
//! embedding). GPU: `kernels::reduce::sum_axis`, `kernels::elementwise` and, for the
//! mean's backward, `kernels::swap_axes`.

use crate::error::Result;
use crate::gpu::Tensor;
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::elementwise as ew;
use crate::kernels::matmul::Activation;
use crate::kernels::reduce;
use crate::kernels::swap_axes::{SwapView, swap_axes};
use crate::reference as r;

impl Graph {
    /// The mean of `x` (`[tokens, features]` per sample) over its tokens: `[features]`.
    pub fn sequence_mean(&mut self, x: NodeId, layer: &str) -> Result<NodeId> {
        let shape = self.shape(x).to_vec();
        if shape.len() != 2 {
            return Err(shape_err(
                layer,
                format!("GlobalAveragePooling1D expects a sequence [tokens, features], got {shape:?}"),
            ));
        }
        Ok(self.push(Op::SequenceMean { x }, vec![shape[1]], layer))
    }

    /// `x + p` for every sample, `p` a parameter of `x`'s per-sample shape.
    pub fn add_broadcast(&mut self, x: NodeId, p: NodeId, layer: &str) -> Result<NodeId> {
        let shape = self.shape(x).to_vec();
        if self.shape(p) != shape.as_slice() {
            return Err(shape_err(
                layer,
                format!(
                    "the added parameter has shape {:?}, not the sample's {shape:?}",
                    self.shape(p)
                ),
            ));
        }
        Ok(self.push(Op::AddBroadcast { x, p }, shape, layer))
    }
}

/// `(tokens, features)` of a sequence node.
fn steps(graph: &Graph, x: NodeId) -> (usize, usize) {
    let s = graph.shape(x);
    (s[0], s[1])
}

pub(crate) fn mean_forward(lw: &mut Lowering<'_>, id: NodeId, x: NodeId) -> Result<Tensor> {
    let (t, f) = steps(lw.graph, x);
    let y = lw.output(id)?;
    lw.dispatches
        .push(reduce::sum_axis(lw.ctx, &lw.value(x), lw.batch, t, f, &y)?);
    lw.dispatches.push(ew::scale(lw.ctx, &y, 1.0 / t as f32, &y)?);
    Ok(y)
}

pub(crate) fn mean_backward(bw: &mut BackwardLowering<'_>, dy: &Tensor, x: NodeId) -> Result<()> {
    let Some(dx) = bw.dx_for(x)? else {
        return Ok(());
    };
    let (t, f) = steps(bw.graph, x);
    // dx[b, t, f] = dy[b, f] / T: every value repeated T times ([B, F, T]), then the
    // last two axes swapped.
    let repeated = bw.temporary(&[bw.batch * f * t])?;
    let ctx = bw.ctx;
    bw.dispatches
        .push(ew::repeat_scale(ctx, dy, t, 1.0 / t as f32, &repeated)?);
    let view = SwapView {
        outer: bw.batch,
        a: f,
        b: t,
        inner: 1,
    };
    bw.dispatches.push(swap_axes(ctx, &repeated, 0, &dx, 0, view)?);
    Ok(())
}

pub(crate) fn add_broadcast_forward(
    lw: &mut Lowering<'_>,
    id: NodeId,
    x: NodeId,
    p: NodeId,
) -> Result<Tensor> {
    let y = lw.output(id)?;
    let n = lw.graph.shape(x).iter().product::<usize>();
    let rows = [lw.batch, n];
    lw.dispatches.push(ew::bias_add_rows(
        lw.ctx,
        &lw.value(x).reshape(&rows)?,
        &lw.value(p).reshape(&[n])?,
        Activation::Identity,
        &y.reshape(&rows)?,
    )?);
    Ok(y)
}

pub(crate) fn add_broadcast_backward(
    bw: &mut BackwardLowering<'_>,
    dy: &Tensor,
    x: NodeId,
    p: NodeId,
) -> Result<()> {
    if bw.req[p] {
        let n = bw.graph.shape(x).iter().product::<usize>();
        let dp = bw.param_grad(p)?;
        let ctx = bw.ctx;
        bw.dispatches
            .push(reduce::sum_axis(ctx, dy, 1, bw.batch, n, &dp)?);
    }
    bw.pass_through(x, dy)
}

pub(crate) fn reference_mean_forward(rf: &RefForward<'_>, x: NodeId) -> Vec<f32> {
    let (t, f) = steps(rf.graph, x);
    let mut y = vec![0.0; rf.batch * f];
    r::reduce::sum_axis(rf.value(x), rf.batch, t, f, &mut y);
    y.iter_mut().for_each(|v| *v /= t as f32);
    y
}

pub(crate) fn reference_mean_backward(rb: &mut RefBackward<'_>, dy: &[f32], x: NodeId) {
    if !rb.req[x] {
        return;
    }
    let (t, f) = steps(rb.graph, x);
    let dx = (0..rb.batch * t * f)
        .map(|i| dy[(i / (t * f)) * f + i % f] / t as f32)
        .collect();
    rb.add_grad(x, dx);
}

pub(crate) fn reference_add_broadcast_forward(rf: &RefForward<'_>, x: NodeId, p: NodeId) -> Vec<f32> {
    let pv = rf.value(p);
    rf.value(x)
        .iter()
        .enumerate()
        .map(|(i, v)| v + pv[i % pv.len()])
        .collect()
}

pub(crate) fn reference_add_broadcast_backward(rb: &mut RefBackward<'_>, dy: &[f32], x: NodeId, p: NodeId) {
    if rb.req[p] {
        let n = rb.graph.shape(p).iter().product::<usize>();
        let mut dp = vec![0.0; n];
        r::reduce::sum_axis(dy, 1, rb.batch, n, &mut dp);
        rb.add_grad(p, dp);
    }
    if rb.req[x] {
        rb.add_grad(x, dy.to_vec());
    }
}
