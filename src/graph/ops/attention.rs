//! `Op::Attention`: scaled dot-product attention over several heads, the core of
//! Keras' `MultiHeadAttention` (whose projections are Dense ops around it).
//!
//! Per sample, with `q` `[Tq, H·dk]`, `k` `[Tk, H·dk]` and `v` `[Tk, H·dv]` (each
//! token's heads side by side, as a Dense projection writes them), for each head h:
//! `P_h = softmax(Q_h·K_hᵀ / √dk)` (causal: query i sees keys j ≤ i) and the output's
//! head h is `P_h·V_h`: `[Tq, H·dv]`. While training, dropout of a fraction of
//! the weights (Keras' MultiHeadAttention `dropout`) makes it `(P_h ⊙ M)·V_h`, the
//! mask `M` drawn from the node's seed and the pass (draw) number. When the keys
//! are a padded sequence ([`Graph::lengths_of`]), each sample's keys from its
//! length on are excluded from every query's softmax (a query left with no key
//! gets a zero output).
//!
//! GPUs, heads of at most `kernels::attention::MAX_HEAD_DIM` values: the fused
//! kernels (`kernels::attention`) read the projections in place and never store
//! the weights; the forward pass keeps each query row's log-sum-exp for the
//! backward pass (one dispatch forward, three backward).
//!
//! CPU adapters and larger heads: `kernels::swap_axes` turns `[B, T, H, d]` into per-head
//! matrices `[B·H, T, d]`, two batched matmuls (`B·H` products each) compute the
//! scores and the output, `softmax_attention` the weights in place between them; the
//! weights `P` are kept for the backward pass, which recomputes the per-head copies
//! of `q`, `k` and `v` instead of keeping them: `dV = Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ⊙
//! (dP − Σ dP ⊙ P) / √dk`, `dQ = dS·K`, `dK = dSᵀ·Q`. With dropout, the dropout
//! kernel masks `P` before `P·V` (the kept `P` stays unmasked), and in the backward
//! pass masks `P` again for `dV` and `dP` for the softmax's backward.
//!
//! The reference executor computes the unfused formulas on the CPU, so the GPU
//! tests compare the fused kernels with them too.

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward, batched};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::attention::{self as fused, AttentionDims, AttentionGrads, AttentionPath};
use crate::kernels::dropout::{self, DropoutRate, layer_seed};
use crate::kernels::matmul::{self, MatmulDesc};
use crate::kernels::optim::StepUniform;
use crate::kernels::softmax;
use crate::kernels::swap_axes::{SwapView, swap_axes};
use crate::reference as r;

impl Graph {
    /// Attention of queries `q` to keys `k` and values `v` over `heads` heads (see
    /// the module docs); `causal` lets query `i` see keys `j ≤ i` only; `dropout`
    /// is the fraction of the weights dropped while training, in `[0, 1)`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        q: NodeId,
        k: NodeId,
        v: NodeId,
        heads: usize,
        causal: bool,
        dropout: f32,
        layer: &str,
    ) -> Result<NodeId> {
        DropoutRate::new(dropout).map_err(|e| Error::invalid(format!("layer '{layer}': attention {e}")))?;
        let (qs, ks, vs) = (
            self.shape(q).to_vec(),
            self.shape(k).to_vec(),
            self.shape(v).to_vec(),
        );
        let fits = heads > 0
            && qs.len() == 2
            && ks.len() == 2
            && vs.len() == 2
            && qs[1] == ks[1]
            && ks[0] == vs[0]
            && qs[1] % heads == 0
            && vs[1] % heads == 0;
        if !fits {
            return Err(shape_err(
                layer,
                format!(
                    "attention over {heads} heads needs queries [Tq, H·dk], keys [Tk, H·dk] and values \
                     [Tk, H·dv]; got {qs:?}, {ks:?} and {vs:?}"
                ),
            ));
        }
        if causal && qs[0] != ks[0] {
            return Err(shape_err(
                layer,
                format!(
                    "a causal mask needs as many queries as keys, got {} and {}",
                    qs[0], ks[0]
                ),
            ));
        }
        let seed = layer_seed(0, self.nodes.len());
        // Keras masks the keys by the value's mask, the key defaulting to the value.
        let lengths = self.lengths_of(k).or_else(|| self.lengths_of(v));
        Ok(self.push(
            Op::Attention {
                q,
                k,
                v,
                heads,
                causal,
                dropout,
                seed,
                lengths,
            },
            vec![qs[0], vs[1]],
            layer,
        ))
    }
}

struct Fields {
    q: NodeId,
    k: NodeId,
    v: NodeId,
    /// Each sample's key count, when the keys are padded.
    lengths: Option<NodeId>,
    d: AttentionDims,
}

/// The op's inputs and dims, with its dropout when `train` (evaluating runs none).
fn fields(graph: &Graph, batch: usize, op: &Op, train: bool) -> Fields {
    let Op::Attention {
        q,
        k,
        v,
        heads,
        causal,
        dropout,
        seed,
        lengths,
    } = *op
    else {
        unreachable!("an attention op")
    };
    let (qs, vs) = (graph.shape(q), graph.shape(v));
    let tokens = (qs[0], graph.shape(k)[0]);
    let d = AttentionDims::new(batch, heads, tokens, (qs[1] / heads, vs[1] / heads), causal);
    let d = if train { d.with_dropout(dropout, seed) } else { d };
    Fields { q, k, v, lengths, d }
}

/// The unfused softmax's key lengths: `lengths` with the `[B·H·Tq, Tk]` scores'
/// rows per sample.
fn key_rows<'t>(d: &AttentionDims, lengths: Option<&'t Tensor>) -> Option<(&'t Tensor, usize)> {
    lengths.map(|l| (l, d.heads * d.tq))
}

/// `p` through the dropout of `d`'s weights (the same mask as the fused kernels').
fn drop_weights(
    ctx: &Context,
    d: &AttentionDims,
    p: &Tensor,
    into: &Tensor,
    step: &StepUniform,
) -> Result<Dispatch> {
    let drop = d.dropout.expect("called with dropout");
    dropout::dropout(ctx, p, into, drop.rate, drop.seed, step)
}

/// The fused kernels' dims when the plan fuses this attention
/// ([`AttentionPath`]: by default when the heads fit and the plan is for a GPU).
/// CPU adapters run the unfused path: on lavapipe the fused kernels'
/// per-invocation loops over private arrays cost more than the copies, matmuls
/// and row softmax they replace (the example transformer's step 1.6–2× slower,
/// BENCHMARKS.md); GPUs save the `[B·H, Tq, Tk]` weights' memory and 15
/// dispatches a step. `WGML_ATTENTION` forces either path.
fn fuses(d: &AttentionDims, ctx: &Context) -> Result<bool> {
    Ok(AttentionPath::from_env()?.fuses(ctx, d))
}

/// The unfused path's per-head views and products of an attention.
trait Heads {
    fn split(&self, tokens: usize, width: usize) -> SwapView;
    fn merge(&self, tokens: usize, width: usize) -> SwapView;
    fn product(&self, m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> MatmulDesc;
    fn scores(&self) -> MatmulDesc;
    fn output(&self) -> MatmulDesc;
}

impl Heads for AttentionDims {
    /// `[B, T, H, d]` → `[B, H, T, d]`.
    fn split(&self, tokens: usize, width: usize) -> SwapView {
        SwapView {
            outer: self.batch,
            a: tokens,
            b: self.heads,
            inner: width,
        }
    }

    /// `[B, H, T, d]` → `[B, T, H, d]`.
    fn merge(&self, tokens: usize, width: usize) -> SwapView {
        SwapView {
            outer: self.batch,
            a: self.heads,
            b: tokens,
            inner: width,
        }
    }

    /// `bh` products `[m, k]·[k, n]` (transposed operands as flagged).
    fn product(&self, m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> MatmulDesc {
        let mut d = MatmulDesc::new(m, n, k);
        d.batch = self.bh();
        d.trans_a = trans_a;
        d.trans_b = trans_b;
        d
    }

    /// Scores `Q·Kᵀ` (`[Tq, Tk]` per head).
    fn scores(&self) -> MatmulDesc {
        self.product(self.tq, self.tk, self.dk, false, true)
    }

    /// Output `P·V` (`[Tq, dv]` per head).
    fn output(&self) -> MatmulDesc {
        self.product(self.tq, self.dv, self.tk, false, false)
    }
}

pub(crate) fn forward(lw: &mut Lowering<'_>, id: NodeId, op: &Op) -> Result<Tensor> {
    let Fields { q, k, v, lengths, d } = fields(lw.graph, lw.batch, op, lw.train);
    let ctx = lw.ctx;
    let lengths = lengths.map(|l| lw.value(l));
    if fuses(&d, ctx)? {
        let y = lw.output(id)?;
        let stats = Tensor::zeros(ctx, &[d.stats_len()], DType::F32)?;
        let input = |n: NodeId| lw.values[n].clone().expect("input lowered");
        let (qt, kt, vt) = (input(q), input(k), input(v));
        lw.dispatches.push(fused::attention_forward(
            ctx,
            &d,
            (&qt, &kt, &vt),
            lengths.as_ref(),
            &y,
            &stats,
            Some(lw.step),
        )?);
        lw.aux.insert(id, vec![stats]);
        return Ok(y);
    }
    let mut heads_of = |node: NodeId, tokens: usize, width: usize| -> Result<Tensor> {
        let t = Tensor::zeros(ctx, &[d.bh(), tokens, width], DType::F32)?;
        lw.dispatches.push(swap_axes(
            ctx,
            &lw.values[node].clone().expect("input lowered"),
            0,
            &t,
            0,
            d.split(tokens, width),
        )?);
        Ok(t)
    };
    let qh = heads_of(q, d.tq, d.dk)?;
    let kh = heads_of(k, d.tk, d.dk)?;
    let vh = heads_of(v, d.tk, d.dv)?;
    let p = Tensor::zeros(ctx, &[d.bh() * d.tq, d.tk], DType::F32)?;
    lw.dispatches
        .extend(matmul::matmul(ctx, &d.scores(), &qh, &kh, None, &p)?);
    lw.dispatches.push(softmax::softmax_attention(
        ctx,
        &p,
        d.scale,
        d.causal_rows(),
        key_rows(&d, lengths.as_ref()),
    )?);
    let dropped = match d.dropout {
        None => p.clone(),
        Some(_) => {
            let t = Tensor::zeros(ctx, p.shape(), DType::F32)?;
            lw.dispatches.push(drop_weights(ctx, &d, &p, &t, lw.step)?);
            t
        }
    };
    let oh = Tensor::zeros(ctx, &[d.bh(), d.tq, d.dv], DType::F32)?;
    lw.dispatches
        .extend(matmul::matmul(ctx, &d.output(), &dropped, &vh, None, &oh)?);
    let y = lw.output(id)?;
    lw.dispatches
        .push(swap_axes(ctx, &oh, 0, &y, 0, d.merge(d.tq, d.dv))?);
    // P for the softmax's backward and, with dropout, P ⊙ M for dV's.
    let saved = match d.dropout {
        None => vec![p],
        Some(_) => vec![p, dropped],
    };
    lw.aux.insert(id, saved);
    Ok(y)
}

pub(crate) fn backward(bw: &mut BackwardLowering<'_>, id: NodeId, dy: &Tensor, op: &Op) -> Result<()> {
    let Fields { q, k, v, lengths, d } = fields(bw.graph, bw.batch, op, true);
    let (want_q, want_k, want_v) = (bw.req[q], bw.req[k], bw.req[v]);
    if !want_q && !want_k && !want_v {
        return Ok(());
    }
    let ctx = bw.ctx;
    if fuses(&d, ctx)? {
        return fused_backward(bw, id, dy, (q, k, v, lengths), &d);
    }
    let p = bw.aux[&id][0].clone();
    // Per-head copies of an input (or of the output's gradient).
    let heads_of =
        |bw: &mut BackwardLowering<'_>, x: &Tensor, tokens: usize, width: usize| -> Result<Tensor> {
            let t = bw.temporary(&[d.bh(), tokens, width])?;
            bw.dispatches
                .push(swap_axes(ctx, x, 0, &t, 0, d.split(tokens, width))?);
            Ok(t)
        };
    // Writes per-head gradients `gh` into input `x`'s gradient.
    let merge_into =
        |bw: &mut BackwardLowering<'_>, x: NodeId, gh: &Tensor, tokens: usize, width: usize| -> Result<()> {
            if let Some(dx) = bw.dx_for(x)? {
                bw.dispatches
                    .push(swap_axes(ctx, gh, 0, &dx, 0, d.merge(tokens, width))?);
            }
            Ok(())
        };
    let doh = heads_of(bw, dy, d.tq, d.dv)?;
    if want_v {
        // dV = (P ⊙ M)ᵀ·dO, with the forward's masked weights.
        let dropped = bw.aux[&id].last().expect("the forward saved P").clone();
        let dvh = bw.temporary(&[d.bh(), d.tk, d.dv])?;
        let desc = d.product(d.tk, d.dv, d.tq, true, false);
        bw.dispatches
            .extend(matmul::matmul(ctx, &desc, &dropped, &doh, None, &dvh)?);
        merge_into(bw, v, &dvh, d.tk, d.dv)?;
    }
    if !want_q && !want_k {
        return Ok(());
    }
    let vh = heads_of(bw, &bw.value(v), d.tk, d.dv)?;
    let mut ds = bw.temporary(&[d.bh() * d.tq, d.tk])?;
    let desc = d.product(d.tq, d.tk, d.dv, false, true);
    bw.dispatches
        .extend(matmul::matmul(ctx, &desc, &doh, &vh, None, &ds)?);
    if d.dropout.is_some() {
        // The gradient of the weights before dropout: dP ⊙ M.
        let masked = bw.temporary(ds.shape())?;
        bw.dispatches.push(drop_weights(ctx, &d, &ds, &masked, bw.step)?);
        ds = masked;
    }
    bw.dispatches
        .push(softmax::softmax_backward_rows(ctx, &p, &ds, d.scale)?);
    if want_q {
        let kh = heads_of(bw, &bw.value(k), d.tk, d.dk)?;
        let dqh = bw.temporary(&[d.bh(), d.tq, d.dk])?;
        let desc = d.product(d.tq, d.dk, d.tk, false, false);
        bw.dispatches
            .extend(matmul::matmul(ctx, &desc, &ds, &kh, None, &dqh)?);
        merge_into(bw, q, &dqh, d.tq, d.dk)?;
    }
    if want_k {
        let qh = heads_of(bw, &bw.value(q), d.tq, d.dk)?;
        let dkh = bw.temporary(&[d.bh(), d.tk, d.dk])?;
        let desc = d.product(d.tk, d.dk, d.tq, true, false);
        bw.dispatches
            .extend(matmul::matmul(ctx, &desc, &ds, &qh, None, &dkh)?);
        merge_into(bw, k, &dkh, d.tk, d.dk)?;
    }
    Ok(())
}

/// The fused backward pass: `dq` into q's gradient, `dk` and `dv` (computed
/// together) into k's and v's, a temporary standing in for the one not needed.
fn fused_backward(
    bw: &mut BackwardLowering<'_>,
    id: NodeId,
    dy: &Tensor,
    (q, k, v, lengths): (NodeId, NodeId, NodeId, Option<NodeId>),
    fd: &AttentionDims,
) -> Result<()> {
    let dq = bw.dx_for(q)?;
    let (want_k, want_v) = (bw.req[k], bw.req[v]);
    let dkv = if want_k || want_v {
        let mut grad = |node: NodeId, wanted: bool| -> Result<Tensor> {
            match bw.dx_for(node)? {
                Some(t) => Ok(t),
                None => {
                    debug_assert!(!wanted);
                    let shape = batched(bw.batch, bw.graph.shape(node));
                    bw.temporary(&shape)
                }
            }
        };
        Some((grad(k, want_k)?, grad(v, want_v)?))
    } else {
        None
    };
    let grads = AttentionGrads {
        dq: dq.as_ref(),
        dkv: dkv.as_ref().map(|(a, b)| (a, b)),
    };
    let (qt, kt, vt, o) = (bw.value(q), bw.value(k), bw.value(v), bw.value(id));
    let stats = bw.aux[&id][0].clone();
    let lengths = lengths.map(|l| bw.value(l));
    let dispatches = fused::attention_backward(
        bw.ctx,
        fd,
        (&qt, &kt, &vt),
        lengths.as_ref(),
        &o,
        &stats,
        dy,
        grads,
        Some(bw.step),
    )?;
    bw.dispatches.extend(dispatches);
    Ok(())
}

/// `x` (`[B, T, H, d]`) as per-head matrices `[B·H, T, d]` on the CPU.
fn split_cpu(d: &AttentionDims, x: &[f32], tokens: usize, width: usize) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    r::swap_axes::swap_axes(x, 0, &mut y, 0, d.split(tokens, width));
    y
}

fn merge_cpu(d: &AttentionDims, x: &[f32], tokens: usize, width: usize) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    r::swap_axes::swap_axes(x, 0, &mut y, 0, d.merge(tokens, width));
    y
}

/// Weights (or their gradient) `p` through `d`'s dropout at step `t`; `p` itself
/// without dropout.
fn drop_cpu(d: &AttentionDims, p: &[f32], t: u32) -> Result<Vec<f32>> {
    let mut y = p.to_vec();
    if let Some(drop) = d.dropout {
        r::dropout::dropout(p, &mut y, drop.rate, drop.seed, t)?;
    }
    Ok(y)
}

fn product_cpu(desc: &MatmulDesc, a: &[f32], b: &[f32]) -> Result<Vec<f32>> {
    let mut c = vec![0.0; desc.batch * desc.m * desc.n];
    r::matmul::matmul(desc, a, b, None, &mut c)?;
    Ok(c)
}

pub(crate) fn reference_forward(rf: &mut RefForward<'_>, id: NodeId, op: &Op) -> Result<Vec<f32>> {
    let Fields { q, k, v, lengths, d } = fields(rf.graph, rf.batch, op, rf.train.is_some());
    let qh = split_cpu(&d, rf.value(q), d.tq, d.dk);
    let kh = split_cpu(&d, rf.value(k), d.tk, d.dk);
    let vh = split_cpu(&d, rf.value(v), d.tk, d.dv);
    let mut p = product_cpu(&d.scores(), &qh, &kh)?;
    let lengths = lengths.map(|l| (rf.value(l), d.heads * d.tq));
    r::softmax::softmax_attention(&mut p, d.tk, d.scale, d.causal_rows(), lengths);
    let oh = product_cpu(&d.output(), &drop_cpu(&d, &p, rf.draw)?, &vh)?;
    rf.saved[id] = p;
    Ok(merge_cpu(&d, &oh, d.tq, d.dv))
}

pub(crate) fn reference_backward(rb: &mut RefBackward<'_>, id: NodeId, dy: &[f32], op: &Op) -> Result<()> {
    let Fields { q, k, v, d, .. } = fields(rb.graph, rb.batch, op, true);
    let p = &rb.saved[id];
    let doh = split_cpu(&d, dy, d.tq, d.dv);
    let qh = split_cpu(&d, rb.value(q), d.tq, d.dk);
    let kh = split_cpu(&d, rb.value(k), d.tk, d.dk);
    let vh = split_cpu(&d, rb.value(v), d.tk, d.dv);
    let dvh = product_cpu(
        &d.product(d.tk, d.dv, d.tq, true, false),
        &drop_cpu(&d, p, rb.draw)?,
        &doh,
    )?;
    let ds = product_cpu(&d.product(d.tq, d.tk, d.dv, false, true), &doh, &vh)?;
    let mut ds = drop_cpu(&d, &ds, rb.draw)?;
    r::softmax::softmax_backward_rows(p, &mut ds, d.tk, d.scale);
    let dqh = product_cpu(&d.product(d.tq, d.dk, d.tk, false, false), &ds, &kh)?;
    let dkh = product_cpu(&d.product(d.tk, d.dk, d.tq, true, false), &ds, &qh)?;
    for (node, gh, tokens, width) in [(q, dqh, d.tq, d.dk), (k, dkh, d.tk, d.dk), (v, dvh, d.tk, d.dv)] {
        if rb.req[node] {
            let g = merge_cpu(&d, &gh, tokens, width);
            rb.add_grad(node, g);
        }
    }
    Ok(())
}
