//! `Conv2D → MaxPool2D(2)` lowered as one pair of fused kernels
//! (`kernels::conv_pool`) on CPU adapters, where it removes most of the conv layer's
//! memory traffic (GPUs keep the im2col path and its tiled matmul). The pair is two
//! graph ops; the max-pool's lowering computes both, and the convolution has no
//! lowering of its own. The reference executor runs the two ops as they are.

use std::collections::HashMap;

use crate::error::Result;
use crate::gpu::{Context, DType, Tensor};
use crate::graph::autodiff::{consumers, requires_grad};
use crate::graph::ops::conv::conv_desc;
use crate::graph::ops::{BackwardLowering, Lowering};
use crate::graph::{Graph, NodeId, Op};
use crate::kernels::conv::Padding;
use crate::kernels::conv_pool::{self, ConvPoolDesc};

/// A `Conv2D → MaxPool2D(2)` pair lowered to the fused kernels, keyed by the pool.
#[derive(Debug)]
pub(crate) struct FusedConvPool {
    conv: NodeId,
    x: NodeId,
    w: NodeId,
    b: NodeId,
    desc: ConvPoolDesc,
}

/// Whether convolution `conv` runs inside the fused kernels of the max-pool that
/// reads it (so it has no lowering, forward or backward, of its own).
pub(crate) fn runs_in_fused_pair(fused: &HashMap<NodeId, FusedConvPool>, conv: NodeId) -> bool {
    fused.values().any(|f| f.conv == conv)
}

/// The max-pools (up to `output`) that run fused with the convolution they read:
/// on CPU adapters that can run [`conv_pool`], for a 2×2/2 unpadded max-pool whose
/// input is a convolution with a bias, read by nothing else, whose own input needs
/// no gradient (the fused backward gives none).
pub(crate) fn fusable_conv_pools(
    ctx: &Context,
    graph: &Graph,
    output: NodeId,
    batch: usize,
) -> HashMap<NodeId, FusedConvPool> {
    let mut found = HashMap::new();
    if !ctx.is_cpu() || !conv_pool::supported(ctx) {
        return found;
    }
    let req = requires_grad(graph);
    let uses = consumers(graph);
    for (id, node) in graph.nodes.iter().enumerate().take(output + 1) {
        let Op::MaxPool2d { x: conv, window } = &node.op else {
            continue;
        };
        let pool_2x2 =
            window.kernel == (2, 2) && window.stride == (2, 2) && matches!(window.padding, Padding::Valid);
        let Op::Conv2d {
            x,
            w,
            b,
            stride,
            padding,
            act,
        } = &graph.nodes[*conv].op
        else {
            continue;
        };
        // The fused kernels add a bias (a convolution without one takes the im2col path).
        let Some(bias) = *b else {
            continue;
        };
        if !pool_2x2 || uses[*conv] != 1 || req[*x] {
            continue;
        }
        let desc = ConvPoolDesc {
            conv: conv_desc(batch, graph.shape(*x), graph.shape(*w), *stride, *padding),
            activation: *act,
        };
        if desc.pooled_shape().is_ok() {
            found.insert(
                id,
                FusedConvPool {
                    conv: *conv,
                    x: *x,
                    w: *w,
                    b: bias,
                    desc,
                },
            );
        }
    }
    found
}

/// The fused forward of max-pool `id` (a key of `lw.fused`): the convolution and
/// the pooling, keeping the arg-max indices for backward.
pub(crate) fn forward(lw: &mut Lowering<'_>, id: NodeId) -> Result<Tensor> {
    let f = &lw.fused[&id];
    let y = lw.output(id)?;
    let idx = Tensor::zeros(lw.ctx, &f.desc.index_shape()?, DType::U32)?;
    let dispatch = conv_pool::conv_pool_forward(
        lw.ctx,
        &f.desc,
        &lw.value(f.x),
        &lw.value(f.w),
        &lw.value(f.b),
        &y,
        &idx,
    )?;
    lw.dispatches.push(dispatch);
    lw.aux.insert(id, vec![idx]);
    Ok(y)
}

/// The fused backward of max-pool `id`: the convolution's weight and bias gradients.
pub(crate) fn backward(bw: &mut BackwardLowering<'_>, id: NodeId, dy: &Tensor) -> Result<()> {
    let f = &bw.fused[&id];
    let (w, b) = (f.w, f.b);
    let (dw, db) = (bw.param_grad(w)?, bw.param_grad(b)?);
    let f = &bw.fused[&id];
    let dispatches = conv_pool::conv_pool_backward(
        bw.ctx,
        &f.desc,
        &bw.value(f.x),
        dy,
        &bw.value(id),
        &bw.aux[&id][0],
        &dw,
        &db,
    )?;
    bw.dispatches.extend(dispatches);
    Ok(())
}
