//! `Op::MaxPool2d` and `Op::AvgPool2d` over `[C, H, W]` samples (`kernels::pool`);
//! a max-pool that reads a fusable convolution lowers through [`super::conv_pool`].

use crate::error::{Error, Result};
use crate::gpu::{DType, Tensor};
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward, conv_pool};
use crate::graph::{Graph, NodeId, Op, Window, shape_err};
use crate::kernels::conv::Padding;
use crate::kernels::elementwise as ew;
use crate::kernels::matmul::Activation;
use crate::kernels::pool::{self, Pool2dDesc};
use crate::reference as r;

impl Graph {
    fn pool_out(&self, x: NodeId, window: Window, layer: &str) -> Result<Vec<usize>> {
        let xs = self.shape(x).to_vec();
        if xs.len() != 3 {
            return Err(shape_err(
                layer,
                format!("pooling expects [channels, height, width] per sample, got {xs:?}"),
            ));
        }
        let desc = pool_desc(1, &xs, window).map_err(|e| shape_err(layer, e.to_string()))?;
        let (oh, ow) = desc
            .out_hw()
            .map_err(|e| shape_err(layer, format!("input {xs:?}: {e}")))?;
        Ok(vec![xs[0], oh, ow])
    }

    /// Max pooling of `x` (per-sample shape `[C, H, W]`) over `window`.
    pub fn max_pool2d(&mut self, x: NodeId, window: Window, layer: &str) -> Result<NodeId> {
        let shape = self.pool_out(x, window, layer)?;
        Ok(self.push(Op::MaxPool2d { x, window }, shape, layer))
    }

    /// Average pooling of `x` (per-sample shape `[C, H, W]`) over `window`.
    pub fn avg_pool2d(&mut self, x: NodeId, window: Window, layer: &str) -> Result<NodeId> {
        let shape = self.pool_out(x, window, layer)?;
        Ok(self.push(Op::AvgPool2d { x, window }, shape, layer))
    }
}

/// Pooling geometry for a batch of `n` samples of per-sample shape `[C, H, W]`.
/// 'same' padding is only offered for convolutions; pooling takes explicit padding.
pub fn pool_desc(n: usize, xs: &[usize], window: Window) -> Result<Pool2dDesc> {
    let padding = match window.padding {
        Padding::Valid => (0, 0),
        Padding::Explicit(ph, pw) => (ph, pw),
        Padding::Same => {
            return Err(Error::invalid(
                "pooling supports 'valid' or explicit padding, not 'same'",
            ));
        }
    };
    Ok(Pool2dDesc {
        n,
        c: xs[0],
        h: xs[1],
        w: xs[2],
        kh: window.kernel.0,
        kw: window.kernel.1,
        stride: window.stride,
        padding,
    })
}

/// True when `x` (read only by one max-pool) is a Dense or Conv2d with a fused ReLU.
fn relu_before_pool(graph: &Graph, x: NodeId, uses: usize) -> bool {
    uses == 1
        && matches!(
            graph.nodes[x].op,
            Op::Conv2d {
                act: Activation::Relu,
                ..
            } | Op::Dense {
                act: Activation::Relu,
                ..
            }
        )
}

pub(crate) fn max_forward(lw: &mut Lowering<'_>, id: NodeId, x: NodeId, window: Window) -> Result<Tensor> {
    if lw.fused.contains_key(&id) {
        return conv_pool::forward(lw, id);
    }
    let y = lw.output(id)?;
    let idx = Tensor::zeros(lw.ctx, y.shape(), DType::U32)?;
    let desc = pool_desc(lw.batch, lw.shape(x), window)?;
    lw.dispatches
        .push(pool::max_pool2d_forward(lw.ctx, &desc, &lw.value(x), &y, &idx)?);
    lw.aux.insert(id, vec![idx]);
    Ok(y)
}

pub(crate) fn avg_forward(lw: &mut Lowering<'_>, id: NodeId, x: NodeId, window: Window) -> Result<Tensor> {
    let y = lw.output(id)?;
    let desc = pool_desc(lw.batch, lw.shape(x), window)?;
    lw.dispatches
        .push(pool::avg_pool2d_forward(lw.ctx, &desc, &lw.value(x), &y)?);
    Ok(y)
}

pub(crate) fn max_backward(
    bw: &mut BackwardLowering<'_>,
    id: NodeId,
    dy: &Tensor,
    x: NodeId,
    window: Window,
) -> Result<()> {
    if bw.fused.contains_key(&id) {
        return conv_pool::backward(bw, id, dy);
    }
    let Some(dx) = bw.dx_for(x)? else {
        return Ok(());
    };
    let desc = pool_desc(bw.batch, bw.shape(x), window)?;
    let indices = bw.aux[&id][0].clone();
    // ReLU then max-pool: the gradient reaches only each window's arg-max, where
    // ReLU's mask (y > 0) equals the pooled output's, so mask the small pooled
    // gradient and hand the producer a gradient that is already before its
    // activation.
    if relu_before_pool(bw.graph, x, bw.uses[x]) {
        let masked = bw.temporary(dy.shape())?;
        bw.dispatches.push(ew::activation_backward(
            bw.ctx,
            Activation::Relu,
            &bw.value(id),
            dy,
            &masked,
        )?);
        let dispatches = pool::max_pool2d_backward(bw.ctx, &desc, &masked, &indices, &dx)?;
        bw.dispatches.extend(dispatches);
        bw.pre_activated[x] = true;
    } else {
        let dispatches = pool::max_pool2d_backward(bw.ctx, &desc, dy, &indices, &dx)?;
        bw.dispatches.extend(dispatches);
    }
    Ok(())
}

pub(crate) fn avg_backward(
    bw: &mut BackwardLowering<'_>,
    dy: &Tensor,
    x: NodeId,
    window: Window,
) -> Result<()> {
    if let Some(dx) = bw.dx_for(x)? {
        let desc = pool_desc(bw.batch, bw.shape(x), window)?;
        bw.dispatches
            .push(pool::avg_pool2d_backward(bw.ctx, &desc, dy, &dx)?);
    }
    Ok(())
}

pub(crate) fn reference_max_forward(
    rf: &mut RefForward<'_>,
    id: NodeId,
    x: NodeId,
    window: Window,
) -> Result<Vec<f32>> {
    let desc = pool_desc(rf.batch, rf.graph.shape(x), window)?;
    let mut y = vec![0.0; rf.numel(id)];
    let mut idx = vec![0u32; rf.numel(id)];
    r::pool::max_pool2d_forward(&desc, rf.value(x), &mut y, &mut idx);
    rf.aux[id] = idx;
    Ok(y)
}

pub(crate) fn reference_avg_forward(
    rf: &mut RefForward<'_>,
    id: NodeId,
    x: NodeId,
    window: Window,
) -> Result<Vec<f32>> {
    let desc = pool_desc(rf.batch, rf.graph.shape(x), window)?;
    let mut y = vec![0.0; rf.numel(id)];
    r::pool::avg_pool2d_forward(&desc, rf.value(x), &mut y);
    Ok(y)
}

pub(crate) fn reference_max_backward(
    rb: &mut RefBackward<'_>,
    id: NodeId,
    dy: &[f32],
    x: NodeId,
    window: Window,
) -> Result<()> {
    if rb.req[x] {
        let desc = pool_desc(rb.batch, rb.graph.shape(x), window)?;
        let mut dx = vec![0.0; rb.numel(x)];
        r::pool::max_pool2d_backward(&desc, dy, &rb.aux[id], &mut dx);
        rb.add_grad(x, dx);
    }
    Ok(())
}

pub(crate) fn reference_avg_backward(
    rb: &mut RefBackward<'_>,
    dy: &[f32],
    x: NodeId,
    window: Window,
) -> Result<()> {
    if rb.req[x] {
        let desc = pool_desc(rb.batch, rb.graph.shape(x), window)?;
        let mut dx = vec![0.0; rb.numel(x)];
        r::pool::avg_pool2d_backward(&desc, dy, &mut dx);
        rb.add_grad(x, dx);
    }
    Ok(())
}
