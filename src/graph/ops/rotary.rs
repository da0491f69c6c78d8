//! `Op::Rotary`: rotary position embedding of a sequence of queries or keys
//! (Llama's, Hugging Face's `apply_rotary_pos_emb`): each token's heads, side by
//! side as a Dense projection writes them, have their halves rotated by the
//! token's angles (position × a frequency per pair). GPU: `kernels::rotary` with
//! an angle table made on the CPU for the plan's tokens; the backward pass rotates
//! the gradient back (the rotation's transpose).
//!
//! `Op::RepeatHeads`: each head of a sequence repeated `times` times in a row
//! (grouped-query attention: a key or value head shared by `times` query heads,
//! Hugging Face's `repeat_kv`). GPU: `elementwise::repeat_blocks`; the backward
//! pass sums each head's copies (`elementwise::sum_blocks`).

use crate::error::Result;
use crate::gpu::Tensor;
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::elementwise as ew;
use crate::kernels::rotary::{Turn, rotary};
use crate::reference as r;

impl Graph {
    /// Rotary position embedding of `x`, a sequence `[T, heads·d]`, with one
    /// frequency per pair of each head's values (`d / 2` of them) and the
    /// cosines and sines multiplied by `scale` (YaRN's attention factor; 1 for
    /// a plain turn).
    pub fn rotary(
        &mut self,
        x: NodeId,
        heads: usize,
        (frequencies, scale): (&[f32], f32),
        layer: &str,
    ) -> Result<NodeId> {
        let shape = self.shape(x).to_vec();
        let fits = heads > 0
            && shape.len() == 2
            && shape[1] == heads * 2 * frequencies.len()
            && !frequencies.is_empty()
            && scale.is_finite();
        if !fits {
            return Err(shape_err(
                layer,
                format!(
                    "rotary position embedding of {heads} heads with {} frequencies needs a sequence \
                     [tokens, {heads}·{}], got {shape:?}",
                    frequencies.len(),
                    2 * frequencies.len()
                ),
            ));
        }
        Ok(self.push(
            Op::Rotary {
                x,
                heads,
                frequencies: frequencies.to_vec(),
                scale,
            },
            shape,
            layer,
        ))
    }

    /// Each head of `heads` in `x`, a sequence `[T, heads·d]`, repeated `times`
    /// times in a row: `[T, heads·times·d]`.
    pub fn repeat_heads(&mut self, x: NodeId, heads: usize, times: usize, layer: &str) -> Result<NodeId> {
        let shape = self.shape(x).to_vec();
        if heads == 0 || times == 0 || shape.len() != 2 || shape[1] == 0 || !shape[1].is_multiple_of(heads) {
            return Err(shape_err(
                layer,
                format!(
                    "repeating {heads} heads {times} times needs a sequence [tokens, {heads}·d], got {shape:?}"
                ),
            ));
        }
        let head_dim = shape[1] / heads;
        Ok(self.push(
            Op::RepeatHeads { x, head_dim, times },
            vec![shape[0], shape[1] * times],
            layer,
        ))
    }
}

/// The angle table of `frequencies` for positions `start .. start + tokens`
/// (`r::rotary::angle_table`), its cosines and sines multiplied by `scale`.
pub(crate) fn scaled_table(frequencies: &[f32], scale: f32, start: usize, tokens: usize) -> Vec<f32> {
    let mut table = r::rotary::angle_table(frequencies, start, tokens);
    if scale != 1.0 {
        table.iter_mut().for_each(|v| *v *= scale);
    }
    table
}

/// The angle table of `frequencies` for the tokens of node `x`'s sequence.
fn table(graph: &Graph, x: NodeId, frequencies: &[f32], scale: f32) -> (usize, Vec<f32>) {
    let tokens = graph.shape(x)[0];
    (tokens, scaled_table(frequencies, scale, 0, tokens))
}

pub(crate) fn forward(
    lw: &mut Lowering<'_>,
    id: NodeId,
    x: NodeId,
    heads: usize,
    (frequencies, scale): (&[f32], f32),
) -> Result<Tensor> {
    let y = lw.output(id)?;
    let (tokens, values) = table(lw.graph, x, frequencies, scale);
    let angles = Tensor::from_f32(lw.ctx, &values, &[values.len()])?;
    lw.dispatches.push(rotary(
        lw.ctx,
        &lw.value(x),
        &angles,
        (tokens, heads),
        Turn::Forward,
        &y,
    )?);
    lw.aux.insert(id, vec![angles]);
    Ok(y)
}

pub(crate) fn backward(
    bw: &mut BackwardLowering<'_>,
    id: NodeId,
    dy: &Tensor,
    x: NodeId,
    heads: usize,
) -> Result<()> {
    let Some(dx) = bw.dx_for(x)? else {
        return Ok(());
    };
    let tokens = bw.graph.shape(x)[0];
    let angles = &bw.aux[&id][0];
    bw.dispatches.push(rotary(
        bw.ctx,
        &dy.reshape(dx.shape())?,
        angles,
        (tokens, heads),
        Turn::Back,
        &dx,
    )?);
    Ok(())
}

pub(crate) fn reference_forward(
    rf: &RefForward<'_>,
    x: NodeId,
    heads: usize,
    (frequencies, scale): (&[f32], f32),
) -> Vec<f32> {
    let (tokens, values) = table(rf.graph, x, frequencies, scale);
    r::rotary::rotary(rf.value(x), &values, (tokens, heads), false)
}

pub(crate) fn reference_backward(
    rb: &mut RefBackward<'_>,
    dy: &[f32],
    x: NodeId,
    heads: usize,
    (frequencies, scale): (&[f32], f32),
) {
    if rb.req[x] {
        let (tokens, values) = table(rb.graph, x, frequencies, scale);
        let dx = r::rotary::rotary(dy, &values, (tokens, heads), true);
        rb.add_grad(x, dx);
    }
}

pub(crate) fn repeat_forward(
    lw: &mut Lowering<'_>,
    id: NodeId,
    x: NodeId,
    head_dim: usize,
    times: usize,
) -> Result<Tensor> {
    let y = lw.output(id)?;
    lw.dispatches
        .push(ew::repeat_blocks(lw.ctx, &lw.value(x), head_dim, times, &y)?);
    Ok(y)
}

pub(crate) fn repeat_backward(
    bw: &mut BackwardLowering<'_>,
    dy: &Tensor,
    x: NodeId,
    head_dim: usize,
    times: usize,
) -> Result<()> {
    if let Some(dx) = bw.dx_for(x)? {
        bw.dispatches
            .push(ew::sum_blocks(bw.ctx, dy, head_dim, times, &dx)?);
    }
    Ok(())
}

pub(crate) fn reference_repeat_backward(
    rb: &mut RefBackward<'_>,
    dy: &[f32],
    x: NodeId,
    head_dim: usize,
    times: usize,
) {
    if rb.req[x] {
        rb.add_grad(x, r::elementwise::sum_blocks(dy, head_dim, times));
    }
}
