//! `Op::Conv2d`: a 2-D convolution over `[C, H, W]` samples with OIHW weights,
//! optional bias and a fused activation. GPU: im2col and the tiled matmul
//! (`kernels::conv`); backward: weight, bias and input gradients in one launcher.

use crate::error::Result;
use crate::gpu::Tensor;
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::conv::{Conv2dDesc, Padding, conv2d_backward, conv2d_forward};
use crate::kernels::matmul::Activation;
use crate::reference as r;

impl Graph {
    /// Conv2D layer on `x` (per-sample shape `[C, H, W]`).
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &mut self,
        x: NodeId,
        w: NodeId,
        b: Option<NodeId>,
        stride: (usize, usize),
        padding: Padding,
        act: Activation,
        layer: &str,
    ) -> Result<NodeId> {
        let (xs, ws) = self.conv_operands("Conv2D", x, w, b, (1, 0), layer)?;
        let (oh, ow) = conv_desc(1, &xs, &ws, stride, padding)
            .out_hw()
            .map_err(|e| shape_err(layer, format!("input {xs:?}, weight {ws:?}: {e}")))?;
        Ok(self.push(
            Op::Conv2d {
                x,
                w,
                b,
                stride,
                padding,
                act,
            },
            vec![ws[0], oh, ow],
            layer,
        ))
    }
}

impl Graph {
    /// The shapes of a convolution's input `x` (`[C, H, W]` per sample) and weights
    /// `w` (4-D), checked: the weight axis `axes.0` holds the input's channels, axis
    /// `axes.1` the output's, which the bias `b` (if any) has; errors name `layer`.
    pub(crate) fn conv_operands(
        &self,
        kind: &str,
        x: NodeId,
        w: NodeId,
        b: Option<NodeId>,
        axes: (usize, usize),
        layer: &str,
    ) -> Result<(Vec<usize>, Vec<usize>)> {
        let xs = self.shape(x).to_vec();
        let ws = self.shape(w).to_vec();
        if xs.len() != 3 {
            return Err(shape_err(
                layer,
                format!("{kind} expects [channels, height, width] per sample, got {xs:?}"),
            ));
        }
        let bias_fits = b.is_none_or(|b| ws.len() == 4 && self.shape(b) == [ws[axes.1]]);
        if ws.len() != 4 || ws[axes.0] != xs[0] || !bias_fits {
            return Err(shape_err(
                layer,
                format!("input has {} channels but the weight is {ws:?}", xs[0]),
            ));
        }
        Ok((xs, ws))
    }
}

/// The kernel view of a convolution of `batch` samples of shape `xs` (`[C, H, W]`)
/// by weights of shape `ws` (`[O, C, kh, kw]`).
pub fn conv_desc(
    batch: usize,
    xs: &[usize],
    ws: &[usize],
    stride: (usize, usize),
    padding: Padding,
) -> Conv2dDesc {
    Conv2dDesc {
        n: batch,
        c_in: xs[0],
        h: xs[1],
        w: xs[2],
        c_out: ws[0],
        kh: ws[2],
        kw: ws[3],
        stride,
        padding,
    }
}

/// The fields of an `Op::Conv2d`.
struct Fields {
    x: NodeId,
    w: NodeId,
    bias: Option<NodeId>,
    stride: (usize, usize),
    padding: Padding,
    act: Activation,
}

fn fields(op: &Op) -> Fields {
    match op {
        Op::Conv2d {
            x,
            w,
            b,
            stride,
            padding,
            act,
        } => Fields {
            x: *x,
            w: *w,
            bias: *b,
            stride: *stride,
            padding: *padding,
            act: *act,
        },
        other => unreachable!("not a convolution: {other:?}"),
    }
}

pub(crate) fn forward(lw: &mut Lowering<'_>, id: NodeId, op: &Op) -> Result<Tensor> {
    let f = fields(op);
    let y = lw.output(id)?;
    let desc = conv_desc(lw.batch, lw.shape(f.x), lw.shape(f.w), f.stride, f.padding);
    let bias = f.bias.map(|b| lw.value(b));
    let dispatches = conv2d_forward(
        lw.ctx,
        &desc,
        &lw.value(f.x),
        &lw.value(f.w),
        bias.as_ref(),
        f.act,
        &y,
    )?;
    lw.dispatches.extend(dispatches);
    Ok(y)
}

pub(crate) fn backward(bw: &mut BackwardLowering<'_>, id: NodeId, dy: &Tensor, op: &Op) -> Result<()> {
    let f = fields(op);
    let dz = bw.pre_activation(id, f.act, dy)?;
    let desc = conv_desc(bw.batch, bw.shape(f.x), bw.shape(f.w), f.stride, f.padding);
    let dx = bw.dx_for(f.x)?;
    let dw = bw.param_grad(f.w)?;
    let db = f.bias.map(|b| bw.param_grad(b)).transpose()?;
    let dispatches = conv2d_backward(
        bw.ctx,
        &desc,
        &bw.value(f.x),
        &bw.value(f.w),
        &dz,
        dx.as_ref(),
        &dw,
        db.as_ref(),
    )?;
    bw.dispatches.extend(dispatches);
    Ok(())
}

pub(crate) fn reference_forward(rf: &mut RefForward<'_>, id: NodeId, op: &Op) -> Result<Vec<f32>> {
    let f = fields(op);
    let desc = conv_desc(
        rf.batch,
        rf.graph.shape(f.x),
        rf.graph.shape(f.w),
        f.stride,
        f.padding,
    );
    let mut y = vec![0.0; rf.numel(id)];
    let bias = f.bias.map(|b| rf.value(b));
    r::conv::conv2d_forward(&desc, rf.value(f.x), rf.value(f.w), bias, f.act, &mut y);
    Ok(y)
}

pub(crate) fn reference_backward(rb: &mut RefBackward<'_>, id: NodeId, dy: &[f32], op: &Op) -> Result<()> {
    let f = fields(op);
    let dz = rb.pre_activation(id, f.act, dy);
    let desc = conv_desc(
        rb.batch,
        rb.graph.shape(f.x),
        rb.graph.shape(f.w),
        f.stride,
        f.padding,
    );
    let mut dw = vec![0.0; rb.value(f.w).len()];
    let mut db = f.bias.map(|b| vec![0.0; rb.value(b).len()]);
    let mut dx = rb.req[f.x].then(|| vec![0.0; rb.numel(f.x)]);
    r::conv::conv2d_backward(
        &desc,
        rb.value(f.x),
        rb.value(f.w),
        &dz,
        dx.as_deref_mut(),
        &mut dw,
        db.as_deref_mut(),
    );
    if let Some(dx) = dx {
        rb.add_grad(f.x, dx);
    }
    rb.add_grad(f.w, dw);
    if let (Some(bias), Some(db)) = (f.bias, db) {
        rb.add_grad(bias, db);
    }
    Ok(())
}
