//! `Op::Conv2dTranspose`: the transposed 2-D convolution (Keras' `Conv2DTranspose`,
//! PyTorch's `nn.ConvTranspose2d` with `output_padding` 0) of `[C_in, H, W]`
//! samples by weights `[C_in, C_out, kh, kw]` (PyTorch's layout), optional bias
//! and a fused activation.
//!
//! It is the input gradient of the convolution `V` that maps `[C_out, H_out, W_out]`
//! to `[C_in, H, W]` with the same weights, stride and padding, so it runs on the
//! convolution kernels: forward `conv2d_backward_input` of `V`; backward the
//! input gradient is `V`'s forward and the weight gradient `V`'s weight gradient
//! with the roles of input and output swapped; the bias gradient is a channel sum.
//! Output size: 'valid' `(H − 1)·s + kh`; 'same' `H·s` (TensorFlow's); explicit
//! padding `p` `(H − 1)·s + kh − 2p` (PyTorch's).

use crate::error::Result;
use crate::gpu::{DType, Tensor};
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::conv::{Conv2dDesc, Padding, conv2d_backward, conv2d_backward_input, conv2d_forward};
use crate::kernels::elementwise as ew;
use crate::kernels::matmul::Activation;
use crate::kernels::reduce;
use crate::reference as r;

/// Output height or width of a transposed convolution of `size` by a kernel of
/// `k` with stride `s` and `padding` side `p` (`None` when nothing is left).
fn out_side(size: usize, k: usize, s: usize, padding: Padding, p: usize) -> Option<usize> {
    let full = size.checked_sub(1)?.checked_mul(s)?.checked_add(k)?;
    match padding {
        Padding::Valid => Some(full),
        Padding::Same => size.checked_mul(s),
        Padding::Explicit(..) => full.checked_sub(p.checked_mul(2)?).filter(|&o| o > 0),
    }
}

impl Graph {
    /// Conv2DTranspose layer on `x` (per-sample shape `[C_in, H, W]`), weights `w`
    /// `[C_in, C_out, kh, kw]`, bias `b` `[C_out]`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_transpose(
        &mut self,
        x: NodeId,
        w: NodeId,
        b: Option<NodeId>,
        stride: (usize, usize),
        padding: Padding,
        act: Activation,
        layer: &str,
    ) -> Result<NodeId> {
        let (xs, ws) = self.conv_operands("Conv2DTranspose", x, w, b, (0, 1), layer)?;
        let bad = |why: String| {
            shape_err(
                layer,
                format!("input {xs:?}, weight {ws:?}, stride {stride:?}: {why}"),
            )
        };
        if stride.0 == 0 || stride.1 == 0 {
            return Err(bad("the stride has a zero component".into()));
        }
        let (ph, pw) = match padding {
            Padding::Explicit(ph, pw) => (ph, pw),
            _ => (0, 0),
        };
        let oh = out_side(xs[1], ws[2], stride.0, padding, ph);
        let ow = out_side(xs[2], ws[3], stride.1, padding, pw);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(bad(format!("padding {padding:?} leaves no output")));
        };
        let out = vec![ws[1], oh, ow];
        // The convolution it transposes must map the output back to the input's size.
        let back = transposed_desc(1, &xs, &ws, &out, stride, padding)
            .out_hw()
            .map_err(|e| bad(e.to_string()))?;
        if back != (xs[1], xs[2]) {
            return Err(bad(format!(
                "padding {padding:?} gives an output {out:?} that the convolution maps back to {back:?}, \
                 not the input's size"
            )));
        }
        Ok(self.push(
            Op::Conv2dTranspose {
                x,
                w,
                b,
                stride,
                padding,
                act,
            },
            out,
            layer,
        ))
    }
}

/// The convolution `V` a transposed convolution of `batch` samples of shape `xs`
/// by weights `ws` with output shape `out` (per sample) is the input gradient of:
/// input `out`, output `xs`, weights `ws` read as `[O = C_in, C = C_out, kh, kw]`.
pub fn transposed_desc(
    batch: usize,
    xs: &[usize],
    ws: &[usize],
    out: &[usize],
    stride: (usize, usize),
    padding: Padding,
) -> Conv2dDesc {
    Conv2dDesc {
        n: batch,
        c_in: out[0],
        h: out[1],
        w: out[2],
        c_out: xs[0],
        kh: ws[2],
        kw: ws[3],
        stride,
        padding,
    }
}

/// The fields of an `Op::Conv2dTranspose`.
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
        Op::Conv2dTranspose {
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
        other => unreachable!("not a transposed convolution: {other:?}"),
    }
}

pub(crate) fn forward(lw: &mut Lowering<'_>, id: NodeId, op: &Op) -> Result<Tensor> {
    let f = fields(op);
    let y = lw.output(id)?;
    let desc = transposed_desc(
        lw.batch,
        lw.shape(f.x),
        lw.shape(f.w),
        lw.shape(id),
        f.stride,
        f.padding,
    );
    let plain = f.bias.is_none() && f.act == Activation::Identity;
    let z = if plain {
        y.clone()
    } else {
        Tensor::zeros(lw.ctx, y.shape(), DType::F32)?
    };
    let dispatches = conv2d_backward_input(lw.ctx, &desc, &lw.value(f.w), &lw.value(f.x), &z)?;
    lw.dispatches.extend(dispatches);
    match f.bias {
        Some(b) => lw
            .dispatches
            .push(ew::bias_add_channels(lw.ctx, &z, &lw.value(b), f.act, &y)?),
        None if !plain => lw.dispatches.push(ew::activation_forward(lw.ctx, f.act, &z, &y)?),
        None => {}
    }
    Ok(y)
}

pub(crate) fn backward(bw: &mut BackwardLowering<'_>, id: NodeId, dy: &Tensor, op: &Op) -> Result<()> {
    let f = fields(op);
    let dz = bw.pre_activation(id, f.act, dy)?;
    let out = bw.shape(id);
    let desc = transposed_desc(bw.batch, bw.shape(f.x), bw.shape(f.w), out, f.stride, f.padding);
    if let Some(b) = f.bias {
        let db = bw.param_grad(b)?;
        let d = reduce::channel_sum(bw.ctx, &dz, bw.batch, out[0], out[1] * out[2], &db, false)?;
        bw.dispatches.push(d);
    }
    // V's weight gradient with V's input dz and output gradient x.
    let dw = bw.param_grad(f.w)?;
    let d = conv2d_backward(
        bw.ctx,
        &desc,
        &dz,
        &bw.value(f.w),
        &bw.value(f.x),
        None,
        &dw,
        None,
    )?;
    bw.dispatches.extend(d);
    if let Some(dx) = bw.dx_for(f.x)? {
        let d = conv2d_forward(
            bw.ctx,
            &desc,
            &dz,
            &bw.value(f.w),
            None,
            Activation::Identity,
            &dx,
        )?;
        bw.dispatches.extend(d);
    }
    Ok(())
}

pub(crate) fn reference_forward(rf: &mut RefForward<'_>, id: NodeId, op: &Op) -> Result<Vec<f32>> {
    let f = fields(op);
    let out = rf.graph.shape(id);
    let desc = transposed_desc(
        rf.batch,
        rf.graph.shape(f.x),
        rf.graph.shape(f.w),
        out,
        f.stride,
        f.padding,
    );
    let mut y = vec![0.0; rf.numel(id)];
    r::conv::conv2d_backward_input(&desc, rf.value(f.w), rf.value(f.x), &mut y);
    let plane = out[1] * out[2];
    let bias = f.bias.map(|b| rf.value(b));
    for (i, v) in y.iter_mut().enumerate() {
        let b = bias.map_or(0.0, |b| b[(i / plane) % out[0]]);
        *v = r::elementwise::activate(f.act, *v + b);
    }
    Ok(y)
}

pub(crate) fn reference_backward(rb: &mut RefBackward<'_>, id: NodeId, dy: &[f32], op: &Op) -> Result<()> {
    let f = fields(op);
    let dz = rb.pre_activation(id, f.act, dy);
    let out = rb.graph.shape(id).to_vec();
    let desc = transposed_desc(
        rb.batch,
        rb.graph.shape(f.x),
        rb.graph.shape(f.w),
        &out,
        f.stride,
        f.padding,
    );
    if let Some(b) = f.bias {
        let plane = out[1] * out[2];
        let mut db = vec![0.0f64; out[0]];
        for (i, g) in dz.iter().enumerate() {
            db[(i / plane) % out[0]] += f64::from(*g);
        }
        rb.add_grad(b, db.into_iter().map(|v| v as f32).collect());
    }
    let mut dw = vec![0.0; rb.value(f.w).len()];
    r::conv::conv2d_backward(&desc, &dz, rb.value(f.w), rb.value(f.x), None, &mut dw, None);
    if rb.req[f.x] {
        let mut dx = vec![0.0; rb.numel(f.x)];
        r::conv::conv2d_forward(&desc, &dz, rb.value(f.w), None, Activation::Identity, &mut dx);
        rb.add_grad(f.x, dx);
    }
    rb.add_grad(f.w, dw);
    Ok(())
}
