//! `Op::Permute`: the per-sample axes of `x` reordered (Keras' `Permute`, numpy's
//! `transpose` without the batch axis): output axis `k` is input axis `perm[k]`.
//!
//! GPU: a chain of at most `rank − 1` `kernels::swap_axes` dispatches, each moving
//! one axis into place by swapping two adjacent blocks of axes. The backward pass
//! permutes the gradient back by the inverse permutation. The reference executor
//! moves every value directly by its index, so the chain is checked against it.

use crate::error::Result;
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::swap_axes::{SwapView, swap_axes};

impl Graph {
    /// `x` with its per-sample axes reordered: output axis `k` is input axis
    /// `perm[k]` (`perm` a permutation of `0..rank`).
    pub fn permute(&mut self, x: NodeId, perm: &[usize], layer: &str) -> Result<NodeId> {
        let shape = self.shape(x).to_vec();
        let mut seen = vec![false; shape.len()];
        let valid = perm.len() == shape.len()
            && perm
                .iter()
                .all(|&p| p < seen.len() && !std::mem::replace(&mut seen[p], true));
        if !valid {
            let one_based: Vec<usize> = perm.iter().map(|p| p.wrapping_add(1)).collect();
            return Err(shape_err(
                layer,
                format!(
                    "Permute({one_based:?}) is not a permutation of the {} axes of {shape:?} \
                     (give each of 1..={} once; the batch axis is not counted)",
                    shape.len(),
                    shape.len()
                ),
            ));
        }
        let out = perm.iter().map(|&p| shape[p]).collect();
        Ok(self.push(
            Op::Permute {
                x,
                perm: perm.to_vec(),
            },
            out,
            layer,
        ))
    }
}

/// The swaps that reorder `shape` (per sample, `batch` samples) by `perm`: each
/// moves the next wanted axis into place.
fn swaps(batch: usize, shape: &[usize], perm: &[usize]) -> Vec<SwapView> {
    let mut order: Vec<usize> = (0..shape.len()).collect();
    let mut views = Vec::new();
    for (i, &want) in perm.iter().enumerate() {
        let j = order.iter().position(|&a| a == want).expect("a permutation");
        if j == i {
            continue;
        }
        let dims: Vec<usize> = order.iter().map(|&a| shape[a]).collect();
        views.push(SwapView {
            outer: batch * dims[..i].iter().product::<usize>(),
            a: dims[i..j].iter().product(),
            b: dims[j],
            inner: dims[j + 1..].iter().product(),
        });
        let moved = order.remove(j);
        order.insert(i, moved);
    }
    views
}

/// `perm`'s inverse.
fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (k, &p) in perm.iter().enumerate() {
        inv[p] = k;
    }
    inv
}

/// The dispatches of the swaps from `x` into `y`, through `temps` (one per swap
/// but the last); no swap at all (the identity) is one plain copy.
fn record(
    ctx: &Context,
    views: &[SwapView],
    x: &Tensor,
    y: &Tensor,
    temps: Vec<Tensor>,
) -> Result<Vec<Dispatch>> {
    if views.is_empty() {
        let copy = SwapView {
            outer: 1,
            a: 1,
            b: 1,
            inner: x.numel(),
        };
        return Ok(vec![swap_axes(ctx, x, 0, y, 0, copy)?]);
    }
    let targets = temps.into_iter().chain(std::iter::once(y.clone()));
    let mut from = x.clone();
    let mut out = Vec::new();
    for (view, to) in views.iter().zip(targets) {
        out.push(swap_axes(ctx, &from, 0, &to, 0, *view)?);
        from = to;
    }
    Ok(out)
}

pub(crate) fn forward(lw: &mut Lowering<'_>, id: NodeId, x: NodeId, perm: &[usize]) -> Result<Tensor> {
    let y = lw.output(id)?;
    let xv = lw.value(x);
    let views = swaps(lw.batch, lw.graph.shape(x), perm);
    let temps = (1..views.len())
        .map(|_| Tensor::zeros(lw.ctx, &[xv.numel()], DType::F32))
        .collect::<Result<_>>()?;
    let dispatches = record(lw.ctx, &views, &xv, &y, temps)?;
    lw.dispatches.extend(dispatches);
    Ok(y)
}

pub(crate) fn backward(bw: &mut BackwardLowering<'_>, dy: &Tensor, x: NodeId, perm: &[usize]) -> Result<()> {
    let Some(dx) = bw.dx_for(x)? else {
        return Ok(());
    };
    let out_shape: Vec<usize> = perm.iter().map(|&p| bw.graph.shape(x)[p]).collect();
    let views = swaps(bw.batch, &out_shape, &inverse(perm));
    let temps = (1..views.len())
        .map(|_| bw.temporary(&[dy.numel()]))
        .collect::<Result<_>>()?;
    let dispatches = record(bw.ctx, &views, dy, &dx, temps)?;
    bw.dispatches.extend(dispatches);
    Ok(())
}

/// Moves every value of `x` (`batch` samples of `shape`) to its place under `perm`.
fn permute_cpu(x: &[f32], batch: usize, shape: &[usize], perm: &[usize]) -> Vec<f32> {
    let rank = shape.len();
    let per_sample: usize = shape.iter().product();
    let mut strides = vec![1; rank];
    for a in (0..rank.saturating_sub(1)).rev() {
        strides[a] = strides[a + 1] * shape[a + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut y = vec![0.0; x.len()];
    let mut index = vec![0usize; rank];
    for b in 0..batch {
        for (o, out) in y[b * per_sample..(b + 1) * per_sample].iter_mut().enumerate() {
            // `index`: output position `o` as a multi-index of out_shape.
            let mut rest = o;
            for k in (0..rank).rev() {
                index[k] = rest % out_shape[k];
                rest /= out_shape[k];
            }
            let src: usize = (0..rank).map(|k| index[k] * strides[perm[k]]).sum();
            *out = x[b * per_sample + src];
        }
    }
    y
}

pub(crate) fn reference_forward(rf: &mut RefForward<'_>, x: NodeId, perm: &[usize]) -> Vec<f32> {
    permute_cpu(rf.value(x), rf.batch, rf.graph.shape(x), perm)
}

pub(crate) fn reference_backward(rb: &mut RefBackward<'_>, dy: &[f32], x: NodeId, perm: &[usize]) {
    if rb.req[x] {
        let out_shape: Vec<usize> = perm.iter().map(|&p| rb.graph.shape(x)[p]).collect();
        let dx = permute_cpu(dy, rb.batch, &out_shape, &inverse(perm));
        rb.add_grad(x, dx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_reorder_every_permutation_of_three_axes_as_direct_indexing_does() {
        let shape = [2, 3, 4];
        let x: Vec<f32> = (0..2 * 24).map(|v| v as f32).collect();
        let perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        for perm in perms {
            let views = swaps(2, &shape, &perm);
            assert!(views.len() <= 2, "{perm:?}: {views:?}");
            let mut cur = x.clone();
            for v in &views {
                let mut next = vec![0.0; cur.len()];
                crate::reference::swap_axes::swap_axes(&cur, 0, &mut next, 0, *v);
                cur = next;
            }
            assert_eq!(cur, permute_cpu(&x, 2, &shape, &perm), "{perm:?}");
            let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            assert_eq!(permute_cpu(&cur, 2, &out, &inverse(&perm)), x, "{perm:?} back");
        }
    }
}
