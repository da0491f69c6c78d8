//! Ops that move values without computing: `Op::Concat` (inputs side by side along
//! the first per-sample axis), `Op::Slice` (a range of that axis) and the builder of
//! `Op::Reshape` for any shape (Flatten is one). GPU: block copies
//! (`kernels::copy`); the backward passes copy the other way.

use crate::error::Result;
use crate::gpu::Tensor;
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::copy::{Block, copy_blocks};
use crate::kernels::elementwise as ew;
use crate::reference as r;

impl Graph {
    /// `xs` side by side along the first per-sample axis (features of `[D]`,
    /// channels of `[C, H, W]`); the other axes must agree.
    pub fn concat(&mut self, xs: &[NodeId], layer: &str) -> Result<NodeId> {
        let first = xs
            .first()
            .ok_or_else(|| shape_err(layer, "Concatenate needs at least one input".into()))?;
        let rest = self.shape(*first)[1..].to_vec();
        let mut axis = 0;
        for &x in xs {
            let s = self.shape(x);
            if s[1..] != rest[..] {
                return Err(shape_err(
                    layer,
                    format!(
                        "Concatenate joins along the first axis; the others must agree, got {:?} and {s:?}",
                        self.shape(*first)
                    ),
                ));
            }
            axis += s[0];
        }
        let mut shape = vec![axis];
        shape.extend(rest);
        Ok(self.push(Op::Concat { xs: xs.to_vec() }, shape, layer))
    }

    /// Entries `start..start + len` of `x`'s first per-sample axis.
    pub fn slice(&mut self, x: NodeId, start: usize, len: usize, layer: &str) -> Result<NodeId> {
        let s = self.shape(x).to_vec();
        if len == 0 || start.checked_add(len).is_none_or(|end| end > s[0]) {
            return Err(shape_err(
                layer,
                format!("slice of {len} from {start} on the first axis of {s:?} is empty or out of range"),
            ));
        }
        let mut shape = s.clone();
        shape[0] = len;
        Ok(self.push(Op::Slice { x, start, len }, shape, layer))
    }

    /// `x` with per-sample shape `shape` (the same number of values).
    pub fn reshape(&mut self, x: NodeId, shape: &[usize], layer: &str) -> Result<NodeId> {
        let from: usize = self.shape(x).iter().product();
        if shape.iter().product::<usize>() != from || shape.is_empty() {
            return Err(shape_err(
                layer,
                format!("cannot reshape {:?} ({from} values) to {shape:?}", self.shape(x)),
            ));
        }
        Ok(self.push(Op::Reshape { x }, shape.to_vec(), layer))
    }
}

/// Values per sample of node `id`.
fn per_sample(graph: &Graph, id: NodeId) -> usize {
    graph.shape(id).iter().product()
}

/// Values per entry of the first per-sample axis of node `id`.
fn per_entry(graph: &Graph, id: NodeId) -> usize {
    graph.shape(id)[1..].iter().product()
}

/// Each input's block in a concatenation's rows: `(input, offset, length)`.
fn blocks(graph: &Graph, xs: &[NodeId]) -> Vec<(NodeId, usize, usize)> {
    let mut offset = 0;
    xs.iter()
        .map(|&x| {
            let len = per_sample(graph, x);
            offset += len;
            (x, offset - len, len)
        })
        .collect()
}

pub(crate) fn concat_forward(lw: &mut Lowering<'_>, id: NodeId, xs: &[NodeId]) -> Result<Tensor> {
    let y = lw.output(id)?;
    let dy = per_sample(lw.graph, id);
    for (x, offset, len) in blocks(lw.graph, xs) {
        let src = Block {
            stride: len,
            offset: 0,
        };
        let dst = Block { stride: dy, offset };
        let d = copy_blocks(lw.ctx, &lw.value(x), src, &y, dst, lw.batch, len)?;
        lw.dispatches.push(d);
    }
    Ok(y)
}

pub(crate) fn concat_backward(
    bw: &mut BackwardLowering<'_>,
    id: NodeId,
    dy: &Tensor,
    xs: &[NodeId],
) -> Result<()> {
    let stride = per_sample(bw.graph, id);
    for (x, offset, len) in blocks(bw.graph, xs) {
        if let Some(dx) = bw.dx_for(x)? {
            let src = Block { stride, offset };
            let dst = Block {
                stride: len,
                offset: 0,
            };
            let d = copy_blocks(bw.ctx, dy, src, &dx, dst, bw.batch, len)?;
            bw.dispatches.push(d);
        }
    }
    Ok(())
}

pub(crate) fn slice_forward(lw: &mut Lowering<'_>, id: NodeId, x: NodeId, start: usize) -> Result<Tensor> {
    let y = lw.output(id)?;
    let len = per_sample(lw.graph, id);
    let src = Block {
        stride: per_sample(lw.graph, x),
        offset: start * per_entry(lw.graph, x),
    };
    let dst = Block {
        stride: len,
        offset: 0,
    };
    let d = copy_blocks(lw.ctx, &lw.value(x), src, &y, dst, lw.batch, len)?;
    lw.dispatches.push(d);
    Ok(y)
}

/// Zeros outside the slice, the output's gradient inside.
pub(crate) fn slice_backward(
    bw: &mut BackwardLowering<'_>,
    id: NodeId,
    dy: &Tensor,
    x: NodeId,
    start: usize,
) -> Result<()> {
    let Some(dx) = bw.dx_for(x)? else {
        return Ok(());
    };
    let len = per_sample(bw.graph, id);
    bw.dispatches.push(ew::fill(bw.ctx, &dx, 0.0)?);
    let src = Block {
        stride: len,
        offset: 0,
    };
    let dst = Block {
        stride: per_sample(bw.graph, x),
        offset: start * per_entry(bw.graph, x),
    };
    let d = copy_blocks(bw.ctx, dy, src, &dx, dst, bw.batch, len)?;
    bw.dispatches.push(d);
    Ok(())
}

pub(crate) fn reference_concat_forward(rf: &mut RefForward<'_>, id: NodeId, xs: &[NodeId]) -> Vec<f32> {
    let mut y = vec![0.0; rf.numel(id)];
    let stride = per_sample(rf.graph, id);
    for (x, offset, len) in blocks(rf.graph, xs) {
        let src = Block {
            stride: len,
            offset: 0,
        };
        r::copy::copy_blocks(rf.value(x), src, &mut y, Block { stride, offset }, rf.batch, len);
    }
    y
}

pub(crate) fn reference_concat_backward(rb: &mut RefBackward<'_>, id: NodeId, dy: &[f32], xs: &[NodeId]) {
    let stride = per_sample(rb.graph, id);
    for (x, offset, len) in blocks(rb.graph, xs) {
        if rb.req[x] {
            let mut dx = vec![0.0; rb.numel(x)];
            let dst = Block {
                stride: len,
                offset: 0,
            };
            r::copy::copy_blocks(dy, Block { stride, offset }, &mut dx, dst, rb.batch, len);
            rb.add_grad(x, dx);
        }
    }
}

pub(crate) fn reference_slice_forward(
    rf: &mut RefForward<'_>,
    id: NodeId,
    x: NodeId,
    start: usize,
) -> Vec<f32> {
    let mut y = vec![0.0; rf.numel(id)];
    let len = per_sample(rf.graph, id);
    let src = Block {
        stride: per_sample(rf.graph, x),
        offset: start * per_entry(rf.graph, x),
    };
    r::copy::copy_blocks(
        rf.value(x),
        src,
        &mut y,
        Block {
            stride: len,
            offset: 0,
        },
        rf.batch,
        len,
    );
    y
}

pub(crate) fn reference_slice_backward(
    rb: &mut RefBackward<'_>,
    id: NodeId,
    dy: &[f32],
    x: NodeId,
    start: usize,
) {
    if !rb.req[x] {
        return;
    }
    let len = per_sample(rb.graph, id);
    let mut dx = vec![0.0; rb.numel(x)];
    let dst = Block {
        stride: per_sample(rb.graph, x),
        offset: start * per_entry(rb.graph, x),
    };
    r::copy::copy_blocks(
        dy,
        Block {
            stride: len,
            offset: 0,
        },
        &mut dx,
        dst,
        rb.batch,
        len,
    );
    rb.add_grad(x, dx);
}
