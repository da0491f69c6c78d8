//! Ops on sequences (`[tokens, features]` per sample): `Op::SequencePool`, the mean
//! over the tokens (Keras' `GlobalAveragePooling1D`) or the last token, and
//! `Op::AddBroadcast`, a parameter of the sample's shape added to every sample (a
//! learned position embedding); and padding: `Op::SequenceLengths`, each sample's
//! unpadded length from its ids, which an Embedding that masks padding carries
//! and pools and attention read ([`Graph::lengths_of`]). GPU:
//! `kernels::sequence` and `kernels::elementwise`.

use crate::error::Result;
use crate::gpu::Tensor;
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::elementwise as ew;
use crate::kernels::matmul::Activation;
use crate::kernels::reduce;
use crate::kernels::sequence::{self as kernel, SequenceDims, SequencePool};
use crate::reference as r;

impl Graph {
    /// `x` (`[tokens, features]` per sample) read down to `[features]` by `pool`:
    /// the mean of its tokens or its last one, over its real tokens when it is
    /// padded ([`Graph::lengths_of`]).
    pub fn sequence_pool(&mut self, x: NodeId, pool: SequencePool, layer: &str) -> Result<NodeId> {
        let shape = self.shape(x).to_vec();
        if shape.len() != 2 {
            let what = match pool {
                SequencePool::Mean => "GlobalAveragePooling1D",
                SequencePool::Last => "LastTokenPooling1D",
                SequencePool::First => "FirstTokenPooling1D",
            };
            return Err(shape_err(
                layer,
                format!("{what} expects a sequence [tokens, features], got {shape:?}"),
            ));
        }
        let lengths = self.lengths_of(x);
        Ok(self.push(Op::SequencePool { x, pool, lengths }, vec![shape[1]], layer))
    }

    /// Each sample's unpadded length (`[1]`) from its token ids `ids` (`[T]`):
    /// padding is the run of `pad` ids ending a sample.
    pub fn sequence_lengths(&mut self, ids: NodeId, pad: u32, layer: &str) -> Result<NodeId> {
        let shape = self.shape(ids).to_vec();
        if shape.len() != 1 {
            return Err(shape_err(
                layer,
                format!("masking padding (mask_id {pad}) needs token ids [tokens] per sample, got {shape:?}"),
            ));
        }
        if pad as f32 as u32 != pad {
            return Err(shape_err(
                layer,
                format!("mask_id {pad} is not exact as an f32 id (ids above 2^24 are not)"),
            ));
        }
        Ok(self.push(Op::SequenceLengths { ids, pad }, vec![1], layer))
    }

    /// Each token's type from the token ids `ids` (`[T]` per sample): the number
    /// of `separator` ids before it, at most `types − 1`, as BERT's tokenizer
    /// types the tokens of `[CLS] A [SEP] B [SEP]`. With `pad`, the ids' padding
    /// (as an Embedding masking `pad` finds it) is the types' too, so they
    /// combine with that Embedding's sequence and shorten with it.
    pub fn token_types(
        &mut self,
        ids: NodeId,
        separator: u32,
        types: usize,
        pad: Option<u32>,
        layer: &str,
    ) -> Result<NodeId> {
        let shape = self.shape(ids).to_vec();
        if shape.len() != 1 {
            return Err(shape_err(
                layer,
                format!("token types need token ids [tokens] per sample, got {shape:?}"),
            ));
        }
        let types = match u32::try_from(types) {
            Ok(t) if t >= 1 => t,
            _ => return Err(shape_err(layer, format!("{types} token types; give at least 1"))),
        };
        if separator as f32 as u32 != separator {
            return Err(shape_err(
                layer,
                format!("separator {separator} is not exact as an f32 id (ids above 2^24 are not)"),
            ));
        }
        let lengths = pad.map(|pad| self.lengths_node(ids, pad, layer)).transpose()?;
        Ok(self.push(
            Op::TokenTypes {
                ids,
                separator,
                types,
                lengths,
            },
            shape,
            layer,
        ))
    }

    /// The [`Op::SequenceLengths`] of `ids` padded with `pad`: one node per ids
    /// and padding id, shared by every reader.
    pub(crate) fn lengths_node(&mut self, ids: NodeId, pad: u32, layer: &str) -> Result<NodeId> {
        match self
            .nodes
            .iter()
            .position(|n| n.op == Op::SequenceLengths { ids, pad })
        {
            Some(existing) => Ok(existing),
            None => self.sequence_lengths(ids, pad, layer),
        }
    }

    /// The lengths of the padded sequence `x` is, if it is one: `x` is an
    /// Embedding that masks padding, or computed from one token by token (Dense
    /// and layer normalization over the features, elementwise ops, dropout, a
    /// position embedding, attention's output for its queries); `None` otherwise.
    pub fn lengths_of(&self, x: NodeId) -> Option<NodeId> {
        self.padding(x)[x]
    }

    /// [`Graph::lengths_of`] of nodes `0..=last`, in one pass over them.
    fn padding(&self, last: NodeId) -> Vec<Option<NodeId>> {
        let mut out: Vec<Option<NodeId>> = Vec::with_capacity(last + 1);
        for node in &self.nodes[..=last] {
            let lengths = match &node.op {
                Op::Embedding { lengths, .. } | Op::TokenTypes { lengths, .. } => *lengths,
                op => match token_wise(op) {
                    TokenWise::One(x) => out[x],
                    TokenWise::Two(a, b) => out[a].or(out[b]),
                    TokenWise::No => None,
                },
            };
            out.push(lengths);
        }
        out
    }

    /// Checks that padded sequences reach only ops that keep each token apart
    /// (the padding then stays padding), pools and attention, which skip it;
    /// equal lengths where two padded sequences meet. Errors name the layer and
    /// what to do. `scored_positions`, the output of a categorical
    /// cross-entropy, may be a padded `[T, C]` sequence turned `[C, T]`
    /// (`Permute([2, 1])`, which masks the padding: [`Op::MaskPositions`]):
    /// each of its C rows a softmax over the real positions, as a
    /// question-answering head scores where an answer starts and ends. Such a
    /// model runs every batch at its whole window.
    pub(crate) fn check_padding(&self, scored_positions: Option<NodeId>) -> Result<()> {
        let Some(last) = self.nodes.len().checked_sub(1) else {
            return Ok(());
        };
        let padding = self.padding(last);
        for (id, node) in self.nodes.iter().enumerate() {
            let padded = |x: NodeId| padding[x].is_some();
            let differ = |a: NodeId, b: NodeId| padded(a) && padded(b) && padding[a] != padding[b];
            match &node.op {
                // Token by token: an Embedding of padded ids (token types) is
                // padded as they are.
                Op::SequencePool { .. } | Op::Embedding { .. } => {}
                Op::Attention { k, v, .. } if differ(*k, *v) => {
                    return Err(shape_err(
                        &node.layer,
                        "its keys and values are sequences padded differently; give them one padding".into(),
                    ));
                }
                Op::Attention { .. } => {}
                Op::Permute { x, perm }
                    if perm == &[1, 0]
                        && self.shape(*x).len() == 2
                        && scored_positions.is_some_and(
                            |s| matches!(self.nodes[s].op, Op::MaskPositions { x: m, .. } if m == id),
                        ) => {}
                op => match token_wise(op) {
                    TokenWise::Two(a, b) if differ(a, b) => {
                        return Err(shape_err(
                            &node.layer,
                            "it combines two sequences padded differently (from different Embeddings' \
                             ids); give them one padding"
                                .into(),
                        ));
                    }
                    TokenWise::One(_) | TokenWise::Two(..) => {}
                    TokenWise::No => {
                        if self.inputs(id).into_iter().any(padded) {
                            return Err(padded_input(&node.layer, reads(op)));
                        }
                    }
                },
            }
        }
        Ok(())
    }

    /// `x` (`[R, T]` per sample: a padded sequence `[T, R]` turned) with each
    /// row's scores at the padding of `lengths` masked ([`Op::MaskPositions`]).
    pub fn mask_positions(&mut self, x: NodeId, lengths: NodeId, layer: &str) -> Result<NodeId> {
        let shape = self.shape(x).to_vec();
        if shape.len() != 2 {
            return Err(shape_err(
                layer,
                format!("masks the positions of [rows, positions] per sample, not {shape:?}"),
            ));
        }
        Ok(self.push(Op::MaskPositions { x, lengths }, shape, layer))
    }

    /// An error when `x` is a padded sequence: `what` would read its padding as
    /// real tokens (a loss over every token).
    pub(crate) fn refuse_padded(&self, x: NodeId, what: &str, layer: &str) -> Result<()> {
        match self.lengths_of(x) {
            None => Ok(()),
            Some(_) => Err(padded_input(layer, what)),
        }
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

/// How an op treats tokens: each apart (its output is padded where its input
/// is; `One` the input, `Two` two inputs of one shape), or not.
enum TokenWise {
    One(NodeId),
    Two(NodeId, NodeId),
    No,
}

/// Whether `op` computes each token of its (sequence) input apart.
fn token_wise(op: &Op) -> TokenWise {
    match op {
        Op::Dense { x, .. }
        | Op::LayerNorm { x, .. }
        | Op::RmsNorm { x, .. }
        | Op::Rotary { x, .. }
        | Op::RepeatHeads { x, .. }
        | Op::Act { x, .. }
        | Op::GatedUnit { x, .. }
        | Op::Dropout { x, .. }
        | Op::Exp { x, .. }
        | Op::Log { x }
        | Op::Scale { x, .. }
        | Op::Square { x }
        | Op::AddBroadcast { x, .. }
        | Op::Attention { q: x, .. } => TokenWise::One(*x),
        Op::Add { a, b } | Op::Mul { a, b } => TokenWise::Two(*a, *b),
        _ => TokenWise::No,
    }
}

/// What an op that does not keep tokens apart would do with a padded input.
fn reads(op: &Op) -> &'static str {
    match op {
        Op::Reshape { .. } => "a reshape (Flatten, Reshape)",
        Op::Permute { .. } => "a permutation",
        Op::Slice { .. } => "a slice",
        Op::Concat { .. } => "a concatenation",
        Op::BatchNorm { .. } => "a batch normalization (its statistics)",
        Op::Sum { .. } => "a sum or mean over the sample",
        Op::LossTerm { .. } => "a loss term",
        _ => "this op",
    }
}

/// The error for layer `layer` reading a padded sequence with `what`.
fn padded_input(layer: &str, what: &str) -> crate::error::Error {
    shape_err(
        layer,
        format!(
            "its input is a padded sequence (an Embedding with mask_id) and {what} would read the \
             padding as real tokens; pool it first (GlobalAveragePooling1D, LastTokenPooling1D or FirstTokenPooling1D), \
             or drop the Embedding's mask_id"
        ),
    )
}

/// `(tokens, features)` of a sequence node.
fn steps(graph: &Graph, x: NodeId) -> (usize, usize) {
    let s = graph.shape(x);
    (s[0], s[1])
}

fn dims(graph: &Graph, batch: usize, x: NodeId) -> SequenceDims {
    let (tokens, features) = steps(graph, x);
    SequenceDims {
        batch,
        tokens,
        features,
    }
}

pub(crate) fn pool_forward(
    lw: &mut Lowering<'_>,
    id: NodeId,
    x: NodeId,
    pool: SequencePool,
    lengths: Option<NodeId>,
) -> Result<Tensor> {
    let y = lw.output(id)?;
    let d = dims(lw.graph, lw.batch, x);
    let lengths = lengths.map(|l| lw.value(l));
    lw.dispatches.push(kernel::sequence_pool(
        lw.ctx,
        &d,
        pool,
        &lw.value(x),
        lengths.as_ref(),
        &y,
    )?);
    Ok(y)
}

pub(crate) fn pool_backward(
    bw: &mut BackwardLowering<'_>,
    dy: &Tensor,
    x: NodeId,
    pool: SequencePool,
    lengths: Option<NodeId>,
) -> Result<()> {
    let Some(dx) = bw.dx_for(x)? else {
        return Ok(());
    };
    let d = dims(bw.graph, bw.batch, x);
    let lengths = lengths.map(|l| bw.value(l));
    bw.dispatches.push(kernel::sequence_pool_backward(
        bw.ctx,
        &d,
        pool,
        dy,
        lengths.as_ref(),
        &dx,
    )?);
    Ok(())
}

pub(crate) fn lengths_forward(lw: &mut Lowering<'_>, id: NodeId, ids: NodeId, pad: u32) -> Result<Tensor> {
    let y = lw.output(id)?;
    let tokens = lw.graph.shape(ids)[0];
    lw.dispatches
        .push(kernel::sequence_lengths(lw.ctx, &lw.value(ids), tokens, pad, &y)?);
    Ok(y)
}

pub(crate) fn token_types_forward(
    lw: &mut Lowering<'_>,
    id: NodeId,
    ids: NodeId,
    separator: u32,
    types: u32,
) -> Result<Tensor> {
    let y = lw.output(id)?;
    let tokens = lw.graph.shape(ids)[0];
    lw.dispatches.push(kernel::token_types(
        lw.ctx,
        &lw.value(ids),
        tokens,
        separator,
        types as usize,
        &y,
    )?);
    Ok(y)
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
        // A shortened graph's table (dynamic padding) keeps more rows than the
        // sequence: theirs get no gradient, as padded positions' get none.
        let dp = if dp.numel() > n {
            bw.dispatches.push(ew::fill(ctx, &dp, 0.0)?);
            dp.prefix(&[n])?
        } else {
            dp
        };
        bw.dispatches
            .push(reduce::sum_axis(ctx, dy, 1, bw.batch, n, &dp)?);
    }
    bw.pass_through(x, dy)
}

pub(crate) fn reference_pool_forward(
    rf: &RefForward<'_>,
    x: NodeId,
    pool: SequencePool,
    lengths: Option<NodeId>,
) -> Vec<f32> {
    let d = dims(rf.graph, rf.batch, x);
    r::sequence::sequence_pool(&d, pool, rf.value(x), lengths.map(|l| rf.value(l)))
}

pub(crate) fn reference_pool_backward(
    rb: &mut RefBackward<'_>,
    dy: &[f32],
    x: NodeId,
    pool: SequencePool,
    lengths: Option<NodeId>,
) {
    if !rb.req[x] {
        return;
    }
    let d = dims(rb.graph, rb.batch, x);
    let dx = r::sequence::sequence_pool_backward(&d, pool, dy, lengths.map(|l| rb.value(l)));
    rb.add_grad(x, dx);
}

pub(crate) fn reference_lengths_forward(rf: &RefForward<'_>, ids: NodeId, pad: u32) -> Vec<f32> {
    r::sequence::sequence_lengths(rf.value(ids), rf.graph.shape(ids)[0], pad)
}

pub(crate) fn reference_token_types_forward(
    rf: &RefForward<'_>,
    ids: NodeId,
    separator: u32,
    types: u32,
) -> Vec<f32> {
    r::sequence::token_types(rf.value(ids), rf.graph.shape(ids)[0], separator, types as usize)
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

/// `[batch, rows, positions]` of node `x` (`[rows, positions]` per sample).
fn position_dims(graph: &Graph, batch: usize, x: NodeId) -> SequenceDims {
    let s = graph.shape(x);
    SequenceDims {
        batch,
        tokens: s[1],
        features: s[0],
    }
}

pub(crate) fn mask_forward(lw: &mut Lowering<'_>, id: NodeId, x: NodeId, lengths: NodeId) -> Result<Tensor> {
    let y = lw.output(id)?;
    let d = position_dims(lw.graph, lw.batch, x);
    lw.dispatches.push(kernel::mask_positions(
        lw.ctx,
        &d,
        &lw.value(x),
        &lw.value(lengths),
        kernel::MASKED_SCORE,
        &y,
    )?);
    Ok(y)
}

pub(crate) fn mask_backward(
    bw: &mut BackwardLowering<'_>,
    dy: &Tensor,
    x: NodeId,
    lengths: NodeId,
) -> Result<()> {
    let Some(dx) = bw.dx_for(x)? else {
        return Ok(());
    };
    let d = position_dims(bw.graph, bw.batch, x);
    bw.dispatches.push(kernel::mask_positions(
        bw.ctx,
        &d,
        dy,
        &bw.value(lengths),
        0.0,
        &dx,
    )?);
    Ok(())
}

/// The twin of [`Op::MaskPositions`] on `values` of node `x`'s shape, padding
/// scored `fill`.
pub(crate) fn reference_mask(
    graph: &Graph,
    batch: usize,
    values: &[f32],
    lengths: &[f32],
    x: NodeId,
    fill: f32,
) -> Vec<f32> {
    let d = position_dims(graph, batch, x);
    r::sequence::mask_positions(values, d.features, d.tokens, lengths, fill)
}
