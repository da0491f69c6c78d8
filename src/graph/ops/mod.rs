//! The ops, one module per family. Each module holds everything about its ops side
//! by side: the [`Graph`] builder that checks shapes, the GPU forward lowering, the
//! GPU backward rule, and the CPU reference forward and backward. The planner
//! ([`crate::graph::plan`]) and the reference executor
//! ([`crate::graph::reference`]) only walk the graph and call the rules through
//! the four matches below, so adding an op touches its own module, one line in
//! each match, and its test.
//!
//! Contexts: `Lowering` (a plan's forward pass being built), `BackwardLowering`
//! (its backward pass), `RefForward` and `RefBackward` (the reference
//! executor's step).

pub mod arith;
pub mod attention;
pub mod batchnorm;
pub mod constant;
pub mod conv;
pub mod conv_pool;
pub mod conv_transpose;
pub mod dense;
pub mod elementwise;
pub mod embedding;
pub mod layer_norm;
pub mod loss_terms;
pub mod noise;
pub mod permute;
pub mod pool;
pub mod rotary;
pub mod sequence;
pub mod shape;

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::graph::{Graph, NodeId, Op, ParamStore};
use crate::kernels::elementwise as ew;
use crate::kernels::matmul::Activation;
use crate::kernels::optim::{Optimizer, StepUniform};
use crate::kernels::sequence::MASKED_SCORE;
use crate::reference as r;

use conv_pool::FusedConvPool;

/// `[batch, shape...]`.
pub(crate) fn batched(batch: usize, shape: &[usize]) -> Vec<usize> {
    let mut s = Vec::with_capacity(shape.len() + 1);
    s.push(batch);
    s.extend_from_slice(shape);
    s
}

/// A plan's forward pass while it is built: every node's value so far, what
/// forward keeps for backward, the dispatches in order.
pub(crate) struct Lowering<'a> {
    pub ctx: &'a Context,
    pub graph: &'a Graph,
    /// Samples per batch.
    pub batch: usize,
    /// Whether the plan trains (dropout draws masks, batch normalization uses batch
    /// statistics).
    pub train: bool,
    /// The per-step uniform (dropout masks read its draw number).
    pub step: &'a StepUniform,
    /// Each node's value, `None` until lowered.
    pub values: Vec<Option<Tensor>>,
    /// What forward keeps for a node's backward: max-pool arg-max indices, a batch
    /// normalization's `[mean | 1/std]` per channel, a layer normalization's per
    /// row, attention's weights `P` per head (and, with dropout, `P ⊙ M`).
    pub aux: HashMap<NodeId, Vec<Tensor>>,
    /// Conv → max-pool pairs lowered to the fused kernels, keyed by the pool.
    pub fused: HashMap<NodeId, FusedConvPool>,
    /// The forward dispatches, in order.
    pub dispatches: Vec<Dispatch>,
}

impl Lowering<'_> {
    /// The value of node `i`, lowered before its consumers.
    pub fn value(&self, i: NodeId) -> Tensor {
        self.values[i].clone().expect("inputs precede their consumers")
    }

    /// A new f32 buffer for node `id`'s batched value.
    pub fn output(&self, id: NodeId) -> Result<Tensor> {
        Tensor::zeros(self.ctx, &batched(self.batch, self.graph.shape(id)), DType::F32)
    }

    /// The per-sample shape of node `i`.
    pub fn shape(&self, i: NodeId) -> &[usize] {
        self.graph.shape(i)
    }
}

/// `(rows, features)` of node `x`'s batched value seen as rows of its last axis:
/// one row per sample, or per token of a sequence (Dense and LayerNorm work per row).
pub(crate) fn rows_features(graph: &Graph, batch: usize, x: NodeId) -> (usize, usize) {
    let shape = graph.shape(x);
    let (features, leading) = shape.split_last().expect("per-sample shapes are non-empty");
    (batch * leading.iter().product::<usize>(), *features)
}

/// Lowers node `id`'s forward op (not the input or a parameter) and returns its value.
pub(crate) fn lower_forward(lw: &mut Lowering<'_>, id: NodeId) -> Result<Tensor> {
    match &lw.graph.nodes[id].op {
        Op::Input | Op::Param { .. } => unreachable!("the planner places inputs and parameters"),
        Op::Dense { x, w, b, act } => dense::forward(lw, id, *x, *w, *b, *act),
        op @ Op::Conv2d { .. } => conv::forward(lw, id, op),
        op @ Op::Conv2dTranspose { .. } => conv_transpose::forward(lw, id, op),
        Op::MaxPool2d { x, window } => pool::max_forward(lw, id, *x, *window),
        Op::AvgPool2d { x, window } => pool::avg_forward(lw, id, *x, *window),
        Op::Reshape { x } => elementwise::reshape_forward(lw, id, *x),
        Op::Act { x, act } => elementwise::act_forward(lw, id, *x, *act),
        Op::Dropout { x, rate, seed } => elementwise::dropout_forward(lw, id, *x, *rate, *seed),
        op @ Op::BatchNorm { .. } => batchnorm::forward(lw, id, op),
        Op::Add { a, b } => arith::add_forward(lw, id, *a, *b),
        Op::Mul { a, b } => arith::mul_forward(lw, id, *a, *b),
        Op::Exp { x, scale } => arith::exp_forward(lw, id, *x, *scale),
        Op::Log { x } => arith::log_forward(lw, id, *x),
        Op::Scale { x, factor } => arith::scale_forward(lw, id, *x, *factor),
        Op::GatedUnit { x, form } => arith::gated_unit_forward(lw, id, *x, *form),
        Op::Square { x } => arith::square_forward(lw, id, *x),
        Op::Sum { x, mean } => arith::sum_forward(lw, id, *x, *mean),
        Op::Noise { dist, seed } => noise::forward(lw, id, *dist, *seed),
        Op::Constant { value } => constant::forward(lw, id, *value),
        Op::Concat { xs } => shape::concat_forward(lw, id, xs),
        Op::Slice { x, start, .. } => shape::slice_forward(lw, id, *x, *start),
        Op::LossTerm { term, a, b } => loss_terms::forward(lw, id, *term, *a, *b),
        op @ (Op::LayerNorm { .. } | Op::RmsNorm { .. }) => layer_norm::forward(lw, id, op),
        op @ Op::Attention { .. } => attention::forward(lw, id, op),
        Op::SequencePool { x, pool, lengths } => sequence::pool_forward(lw, id, *x, *pool, *lengths),
        Op::MaskPositions { x, lengths } => sequence::mask_forward(lw, id, *x, *lengths),
        Op::SequenceLengths { ids, pad } => sequence::lengths_forward(lw, id, *ids, *pad),
        Op::TokenTypes {
            ids,
            separator,
            types,
            ..
        } => sequence::token_types_forward(lw, id, *ids, *separator, *types),
        Op::AddBroadcast { x, p } => sequence::add_broadcast_forward(lw, id, *x, *p),
        Op::Permute { x, perm } => permute::forward(lw, id, *x, perm),
        Op::Rotary {
            x,
            heads,
            frequencies,
            scale,
        } => rotary::forward(lw, id, *x, *heads, (frequencies, *scale)),
        Op::RepeatHeads { x, head_dim, times } => rotary::repeat_forward(lw, id, *x, *head_dim, *times),
        Op::Embedding { ids, table, .. } => embedding::forward(lw, id, *ids, *table),
    }
}

/// A plan's backward pass while it is built: the gradients so far, a pool of free
/// gradient buffers, the dispatches in order. A rule asks for the gradient buffer
/// of each input with [`BackwardLowering::dx_for`] (fresh for the first
/// contribution, summed in for later ones) and the gradient before the op's fused
/// activation with [`BackwardLowering::pre_activation`].
pub(crate) struct BackwardLowering<'a> {
    pub ctx: &'a Context,
    pub graph: &'a Graph,
    /// Samples per batch.
    pub batch: usize,
    /// The forward pass' values and what it kept.
    pub values: &'a [Option<Tensor>],
    pub aux: &'a HashMap<NodeId, Vec<Tensor>>,
    pub fused: &'a HashMap<NodeId, FusedConvPool>,
    pub store: &'a ParamStore,
    /// The per-step uniform (dropout masks read its draw number).
    pub step: &'a StepUniform,
    /// Given when Dense weight gradients may apply Adam in their epilogue.
    pub fuse_adam: Option<(&'a Optimizer, &'a StepUniform)>,
    /// Which nodes need a gradient, and how many ops read each node.
    pub req: Vec<bool>,
    pub uses: Vec<usize>,
    /// Each node's gradient (complete once every consumer's rule ran).
    pub grads: Vec<Option<Tensor>>,
    /// Nodes whose gradient already includes their fused activation's derivative.
    pub pre_activated: Vec<bool>,
    /// Parameters whose optimizer step already ran inside backward.
    pub updated: Vec<NodeId>,
    /// The backward dispatches, in order.
    pub dispatches: Vec<Dispatch>,
    pool: Pool,
    /// This rule's input gradients: (input, buffer, whether to sum it into the
    /// input's existing gradient).
    targets: Vec<(NodeId, Tensor, bool)>,
    /// Buffers this rule used and gives back when it ends.
    temporaries: Vec<Tensor>,
    /// The rule handed its output gradient on as its input's (a view): keep it.
    alias: bool,
    /// The nodes the gradient starts from; their gradients are the objective's,
    /// never given back to the pool.
    roots: Vec<NodeId>,
    /// Parameters whose gradient buffer an earlier rule already wrote.
    param_written: Vec<bool>,
    /// This rule's later contributions to shared parameters: (gradient buffer,
    /// temporary summed into it when the rule ends).
    param_targets: Vec<(Tensor, Tensor)>,
}

/// Free gradient buffers by element count, reused by later backward rules.
#[derive(Default)]
struct Pool {
    free: HashMap<usize, Vec<Tensor>>,
}

impl Pool {
    fn take(&mut self, ctx: &Context, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        match self.free.get_mut(&n).and_then(|v| v.pop()) {
            Some(t) => t.reshape(shape),
            None => Tensor::zeros(ctx, shape, DType::F32),
        }
    }

    fn give(&mut self, t: Tensor) {
        self.free.entry(t.numel()).or_default().push(t);
    }
}

impl<'a> BackwardLowering<'a> {
    /// The backward pass of `graph` from the forward pass' `values` and `aux`,
    /// before any rule ran; each of `roots` has the gradient given with it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &'a Context,
        graph: &'a Graph,
        batch: usize,
        values: &'a [Option<Tensor>],
        aux: &'a HashMap<NodeId, Vec<Tensor>>,
        fused: &'a HashMap<NodeId, FusedConvPool>,
        store: &'a ParamStore,
        step: &'a StepUniform,
        fuse_adam: Option<(&'a Optimizer, &'a StepUniform)>,
        roots: Vec<(NodeId, Tensor)>,
    ) -> BackwardLowering<'a> {
        let mut grads = vec![None; graph.nodes.len()];
        let root_ids = roots.iter().map(|(id, _)| *id).collect();
        for (id, g) in roots {
            grads[id] = Some(g);
        }
        BackwardLowering {
            ctx,
            graph,
            batch,
            values,
            aux,
            fused,
            store,
            step,
            fuse_adam,
            req: crate::graph::autodiff::requires_grad(graph),
            uses: crate::graph::autodiff::consumers(graph),
            grads,
            pre_activated: vec![false; graph.nodes.len()],
            updated: Vec::new(),
            dispatches: Vec::new(),
            pool: Pool::default(),
            targets: Vec::new(),
            temporaries: Vec::new(),
            alias: false,
            roots: root_ids,
            param_written: vec![false; graph.nodes.len()],
            param_targets: Vec::new(),
        }
    }

    /// The forward value of node `i`.
    pub fn value(&self, i: NodeId) -> Tensor {
        self.values[i].clone().expect("forward value")
    }

    /// The per-sample shape of node `i`.
    pub fn shape(&self, i: NodeId) -> &'a [usize] {
        self.graph.shape(i)
    }

    /// Where this rule writes the gradient of parameter node `i`: the parameter's
    /// gradient buffer for the first (or only) op using it; for a parameter shared by
    /// several ops (a discriminator applied to real and generated images), a
    /// temporary summed into that buffer when the rule ends.
    pub fn param_grad(&mut self, i: NodeId) -> Result<Tensor> {
        let grad = self
            .store
            .by_node(i)
            .ok_or_else(|| Error::invalid(format!("parameter node {i} is not in the store")))?
            .grad
            .clone();
        if self.uses[i] <= 1 || !self.param_written[i] {
            self.param_written[i] = true;
            return Ok(grad);
        }
        let t = self.pool.take(self.ctx, grad.shape())?;
        self.param_targets.push((grad, t.clone()));
        Ok(t)
    }

    /// Where this rule writes the gradient of its input `x`: `None` when `x` needs
    /// none; a fresh buffer for `x`'s first contribution, else a temporary summed
    /// into it when the rule ends.
    pub fn dx_for(&mut self, x: NodeId) -> Result<Option<Tensor>> {
        if !self.req[x] {
            return Ok(None);
        }
        let shape = batched(self.batch, self.graph.shape(x));
        let t = self.pool.take(self.ctx, &shape)?;
        let accumulate = self.grads[x].is_some();
        self.targets.push((x, t.clone(), accumulate));
        if !accumulate {
            self.grads[x] = Some(t.clone());
        }
        Ok(Some(t))
    }

    /// Hands `dy` on unchanged as the gradient of `x` (reshaped to `x`'s shape): a
    /// view when it is `x`'s first contribution, else summed in.
    pub fn pass_through(&mut self, x: NodeId, dy: &Tensor) -> Result<()> {
        if !self.req[x] {
            return Ok(());
        }
        let shape = batched(self.batch, self.graph.shape(x));
        if self.grads[x].is_none() {
            self.grads[x] = Some(dy.reshape(&shape)?);
            self.alias = true;
        } else {
            let t = self.pool.take(self.ctx, &shape)?;
            self.dispatches
                .push(ew::scale(self.ctx, &dy.reshape(&shape)?, 1.0, &t)?);
            self.targets.push((x, t, true));
        }
        Ok(())
    }

    /// The gradient of node `id` before its fused activation `act`, from `dy`
    /// (after it): `dy` itself for the identity or when an earlier rule already
    /// applied the derivative, else a temporary buffer.
    pub fn pre_activation(&mut self, id: NodeId, act: Activation, dy: &Tensor) -> Result<Tensor> {
        if act == Activation::Identity || self.pre_activated[id] {
            return Ok(dy.clone());
        }
        let dz = self.temporary(dy.shape())?;
        self.dispatches
            .push(ew::activation_backward(self.ctx, act, &self.value(id), dy, &dz)?);
        Ok(dz)
    }

    /// A scratch buffer of `shape` that goes back to the pool when this rule ends.
    pub fn temporary(&mut self, shape: &[usize]) -> Result<Tensor> {
        let t = self.pool.take(self.ctx, shape)?;
        self.temporaries.push(t.clone());
        Ok(t)
    }

    /// Runs node `id`'s backward rule on its complete gradient, then sums later
    /// contributions into their inputs' gradients and frees what the rule used.
    pub fn run_rule(&mut self, id: NodeId) -> Result<()> {
        let dy = self.grads[id]
            .take()
            .expect("gradient of a node is complete before its rule runs");
        self.alias = false;
        lower_backward_rule(self, id, &dy)?;
        for (x, t, accumulate) in std::mem::take(&mut self.targets) {
            if accumulate {
                let g = self.grads[x].as_ref().expect("first contribution exists");
                self.dispatches.push(ew::axpy(self.ctx, 1.0, &t, g)?);
                self.pool.give(t);
            }
        }
        for (grad, t) in std::mem::take(&mut self.param_targets) {
            self.dispatches.push(ew::axpy(self.ctx, 1.0, &t, &grad)?);
            self.pool.give(t);
        }
        for t in std::mem::take(&mut self.temporaries) {
            self.pool.give(t);
        }
        if !self.alias && !self.roots.contains(&id) {
            self.pool.give(dy);
        }
        Ok(())
    }
}

/// Lowers node `id`'s backward rule, `dy` being its output's gradient.
fn lower_backward_rule(bw: &mut BackwardLowering<'_>, id: NodeId, dy: &Tensor) -> Result<()> {
    let graph = bw.graph;
    match &graph.nodes[id].op {
        Op::Input | Op::Param { .. } => unreachable!("not in backward order"),
        Op::Dense { x, w, b, act } => dense::backward(bw, id, dy, *x, *w, *b, *act),
        op @ Op::Conv2d { .. } => conv::backward(bw, id, dy, op),
        op @ Op::Conv2dTranspose { .. } => conv_transpose::backward(bw, id, dy, op),
        Op::MaxPool2d { x, window } => pool::max_backward(bw, id, dy, *x, *window),
        Op::AvgPool2d { x, window } => pool::avg_backward(bw, dy, *x, *window),
        Op::Reshape { x } => bw.pass_through(*x, dy),
        Op::Act { x, act } => elementwise::act_backward(bw, id, dy, *x, *act),
        Op::Dropout { x, rate, seed } => elementwise::dropout_backward(bw, dy, *x, *rate, *seed),
        op @ Op::BatchNorm { .. } => batchnorm::backward(bw, id, dy, op),
        Op::Add { a, b } => arith::add_backward(bw, dy, *a, *b),
        Op::Mul { a, b } => arith::mul_backward(bw, dy, *a, *b),
        Op::Exp { x, scale } => arith::exp_backward(bw, id, dy, *x, *scale),
        Op::Log { x } => arith::log_backward(bw, dy, *x),
        Op::Scale { x, factor } => arith::scale_backward(bw, dy, *x, *factor),
        Op::GatedUnit { x, form } => arith::gated_unit_backward(bw, dy, *x, *form),
        Op::Square { x } => arith::square_backward(bw, dy, *x),
        Op::Sum { x, mean } => arith::sum_backward(bw, dy, *x, *mean),
        Op::Noise { .. } | Op::Constant { .. } => unreachable!("no inputs, no gradient"),
        Op::LossTerm { term, a, b } => loss_terms::backward(bw, dy, *term, *a, *b),
        Op::Concat { xs } => shape::concat_backward(bw, id, dy, xs),
        Op::Slice { x, start, .. } => shape::slice_backward(bw, id, dy, *x, *start),
        op @ (Op::LayerNorm { .. } | Op::RmsNorm { .. }) => layer_norm::backward(bw, id, dy, op),
        op @ Op::Attention { .. } => attention::backward(bw, id, dy, op),
        Op::SequencePool { x, pool, lengths } => sequence::pool_backward(bw, dy, *x, *pool, *lengths),
        Op::MaskPositions { x, lengths } => sequence::mask_backward(bw, dy, *x, *lengths),
        Op::SequenceLengths { .. } | Op::TokenTypes { .. } => Ok(()),
        Op::AddBroadcast { x, p } => sequence::add_broadcast_backward(bw, dy, *x, *p),
        Op::Permute { x, perm } => permute::backward(bw, dy, *x, perm),
        Op::Rotary { x, heads, .. } => rotary::backward(bw, id, dy, *x, *heads),
        Op::RepeatHeads { x, head_dim, times } => rotary::repeat_backward(bw, dy, *x, *head_dim, *times),
        Op::Embedding { ids, table, .. } => embedding::backward(bw, id, dy, *ids, *table),
    }
}

/// The reference executor's forward pass while it runs.
pub(crate) struct RefForward<'a> {
    pub graph: &'a Graph,
    /// Samples per batch.
    pub batch: usize,
    /// The pass (draw) number while training (dropout masks; batch statistics),
    /// `None` when evaluating.
    pub train: Option<u32>,
    /// The draw number noise draws at: the pass being taken, or when evaluating
    /// the last one taken (what the GPU's per-step uniform holds).
    pub draw: u32,
    /// Parameter values by node id (batch normalization moves its statistics).
    pub params: &'a mut [Vec<f32>],
    /// Values by node id.
    pub values: Vec<Vec<f32>>,
    /// Max-pool arg-max indices by node id.
    pub aux: Vec<Vec<u32>>,
    /// What ops keep for their backward by node id: batch normalizations' `[mean |
    /// 1/std]`, attention's weights.
    pub saved: Vec<Vec<f32>>,
}

impl RefForward<'_> {
    /// Number of values of node `id` for the whole batch.
    pub fn numel(&self, id: NodeId) -> usize {
        self.batch * self.graph.shape(id).iter().product::<usize>()
    }

    /// The value of node `i`: a parameter's, or an earlier node's.
    pub fn value(&self, i: NodeId) -> &[f32] {
        match self.graph.nodes[i].op {
            Op::Param { .. } => &self.params[i],
            _ => &self.values[i],
        }
    }
}

/// Computes node `id` (not the input or a parameter) on the CPU.
pub(crate) fn reference_forward(rf: &mut RefForward<'_>, id: NodeId) -> Result<Vec<f32>> {
    let graph = rf.graph;
    match &graph.nodes[id].op {
        Op::Input | Op::Param { .. } => unreachable!("the executor places inputs and parameters"),
        Op::Dense { x, w, b, act } => dense::reference_forward(rf, id, *x, *w, *b, *act),
        op @ Op::Conv2d { .. } => conv::reference_forward(rf, id, op),
        op @ Op::Conv2dTranspose { .. } => conv_transpose::reference_forward(rf, id, op),
        Op::MaxPool2d { x, window } => pool::reference_max_forward(rf, id, *x, *window),
        Op::AvgPool2d { x, window } => pool::reference_avg_forward(rf, id, *x, *window),
        Op::Reshape { x } => Ok(rf.values[*x].clone()),
        Op::Act { x, act } => Ok(elementwise::reference_act_forward(rf, id, *x, *act)),
        Op::Dropout { x, rate, seed } => elementwise::reference_dropout_forward(rf, id, *x, *rate, *seed),
        op @ Op::BatchNorm { .. } => batchnorm::reference_forward(rf, id, op),
        op @ (Op::Add { .. }
        | Op::Mul { .. }
        | Op::Exp { .. }
        | Op::Log { .. }
        | Op::Scale { .. }
        | Op::GatedUnit { .. }
        | Op::Square { .. }
        | Op::Sum { .. }) => Ok(arith::reference_forward(rf, id, op)),
        Op::Noise { dist, seed } => Ok(noise::reference_forward(rf, id, *dist, *seed)),
        Op::Constant { value } => Ok(constant::reference_forward(rf, id, *value)),
        Op::Concat { xs } => Ok(shape::reference_concat_forward(rf, id, xs)),
        Op::Slice { x, start, .. } => Ok(shape::reference_slice_forward(rf, id, *x, *start)),
        Op::LossTerm { term, a, b } => Ok(loss_terms::reference_forward(rf, id, *term, *a, *b)),
        op @ (Op::LayerNorm { .. } | Op::RmsNorm { .. }) => Ok(layer_norm::reference_forward(rf, id, op)),
        op @ Op::Attention { .. } => attention::reference_forward(rf, id, op),
        Op::SequencePool { x, pool, lengths } => {
            Ok(sequence::reference_pool_forward(rf, *x, *pool, *lengths))
        }
        Op::MaskPositions { x, lengths } => Ok(sequence::reference_mask(
            rf.graph,
            rf.batch,
            rf.value(*x),
            rf.value(*lengths),
            *x,
            MASKED_SCORE,
        )),
        Op::SequenceLengths { ids, pad } => Ok(sequence::reference_lengths_forward(rf, *ids, *pad)),
        Op::TokenTypes {
            ids,
            separator,
            types,
            ..
        } => Ok(sequence::reference_token_types_forward(
            rf, *ids, *separator, *types,
        )),
        Op::AddBroadcast { x, p } => Ok(sequence::reference_add_broadcast_forward(rf, *x, *p)),
        Op::Permute { x, perm } => Ok(permute::reference_forward(rf, *x, perm)),
        Op::Rotary {
            x,
            heads,
            frequencies,
            scale,
        } => Ok(rotary::reference_forward(rf, *x, *heads, (frequencies, *scale))),
        Op::RepeatHeads { x, head_dim, times } => {
            Ok(r::elementwise::repeat_blocks(rf.value(*x), *head_dim, *times))
        }
        Op::Embedding { ids, table, .. } => Ok(embedding::reference_forward(rf, id, *ids, *table)),
    }
}

/// The reference executor's backward pass while it runs.
pub(crate) struct RefBackward<'a> {
    pub graph: &'a Graph,
    /// Samples per batch.
    pub batch: usize,
    /// This pass' draw number (dropout masks).
    pub draw: u32,
    /// Parameter values by node id.
    pub params: &'a [Vec<f32>],
    /// The forward pass' values, arg-max indices and saved statistics by node id.
    pub values: &'a [Vec<f32>],
    pub aux: &'a [Vec<u32>],
    pub saved: &'a [Vec<f32>],
    /// Which nodes need a gradient.
    pub req: Vec<bool>,
    /// Each node's gradient so far.
    pub grads: Vec<Option<Vec<f32>>>,
}

impl RefBackward<'_> {
    /// Number of values of node `id` for the whole batch.
    pub fn numel(&self, id: NodeId) -> usize {
        self.batch * self.graph.shape(id).iter().product::<usize>()
    }

    /// The forward value of node `i`: a parameter's, or a computed one.
    pub fn value(&self, i: NodeId) -> &[f32] {
        match self.graph.nodes[i].op {
            Op::Param { .. } => &self.params[i],
            _ => &self.values[i],
        }
    }

    /// Sums `d` into node `i`'s gradient.
    pub fn add_grad(&mut self, i: NodeId, d: Vec<f32>) {
        match &mut self.grads[i] {
            Some(acc) => acc.iter_mut().zip(&d).for_each(|(a, v)| *a += v),
            slot => *slot = Some(d),
        }
    }

    /// The gradient before node `id`'s fused activation `act`, from `dy` (after it).
    pub fn pre_activation(&self, id: NodeId, act: Activation, dy: &[f32]) -> Vec<f32> {
        if act == Activation::Identity {
            return dy.to_vec();
        }
        let mut dz = vec![0.0; dy.len()];
        r::elementwise::activation_backward(act, &self.values[id], dy, &mut dz);
        dz
    }
}

/// Runs node `id`'s backward rule on the CPU, `dy` being its output's gradient.
pub(crate) fn reference_backward(rb: &mut RefBackward<'_>, id: NodeId, dy: Vec<f32>) -> Result<()> {
    let graph = rb.graph;
    match &graph.nodes[id].op {
        Op::Input | Op::Param { .. } => unreachable!("not in backward order"),
        Op::Dense { x, w, b, act } => dense::reference_backward(rb, id, &dy, *x, *w, *b, *act),
        op @ Op::Conv2d { .. } => conv::reference_backward(rb, id, &dy, op),
        op @ Op::Conv2dTranspose { .. } => conv_transpose::reference_backward(rb, id, &dy, op),
        Op::MaxPool2d { x, window } => pool::reference_max_backward(rb, id, &dy, *x, *window),
        Op::AvgPool2d { x, window } => pool::reference_avg_backward(rb, &dy, *x, *window),
        Op::Reshape { x } => {
            if rb.req[*x] {
                rb.add_grad(*x, dy);
            }
            Ok(())
        }
        Op::Act { x, act } => {
            elementwise::reference_act_backward(rb, id, &dy, *x, *act);
            Ok(())
        }
        Op::Dropout { x, rate, seed } => elementwise::reference_dropout_backward(rb, &dy, *x, *rate, *seed),
        op @ Op::BatchNorm { .. } => batchnorm::reference_backward(rb, id, &dy, op),
        op @ (Op::Add { .. }
        | Op::Mul { .. }
        | Op::Exp { .. }
        | Op::Log { .. }
        | Op::Scale { .. }
        | Op::GatedUnit { .. }
        | Op::Square { .. }
        | Op::Sum { .. }) => {
            arith::reference_backward(rb, id, &dy, op);
            Ok(())
        }
        Op::Noise { .. } | Op::Constant { .. } => unreachable!("no inputs, no gradient"),
        Op::Concat { xs } => {
            shape::reference_concat_backward(rb, id, &dy, xs);
            Ok(())
        }
        Op::Slice { x, start, .. } => {
            shape::reference_slice_backward(rb, id, &dy, *x, *start);
            Ok(())
        }
        Op::LossTerm { term, a, b } => {
            loss_terms::reference_backward(rb, &dy, *term, *a, *b);
            Ok(())
        }
        op @ (Op::LayerNorm { .. } | Op::RmsNorm { .. }) => {
            layer_norm::reference_backward(rb, &dy, op);
            Ok(())
        }
        op @ Op::Attention { .. } => attention::reference_backward(rb, id, &dy, op),
        Op::SequencePool { x, pool, lengths } => {
            sequence::reference_pool_backward(rb, &dy, *x, *pool, *lengths);
            Ok(())
        }
        Op::MaskPositions { x, lengths } => {
            if rb.req[*x] {
                let dx = sequence::reference_mask(rb.graph, rb.batch, &dy, rb.value(*lengths), *x, 0.0);
                rb.add_grad(*x, dx);
            }
            Ok(())
        }
        Op::SequenceLengths { .. } | Op::TokenTypes { .. } => Ok(()),
        Op::Rotary {
            x,
            heads,
            frequencies,
            scale,
        } => {
            rotary::reference_backward(rb, &dy, *x, *heads, (frequencies, *scale));
            Ok(())
        }
        Op::RepeatHeads { x, head_dim, times } => {
            rotary::reference_repeat_backward(rb, &dy, *x, *head_dim, *times);
            Ok(())
        }
        Op::Permute { x, perm } => {
            permute::reference_backward(rb, &dy, *x, perm);
            Ok(())
        }
        Op::Embedding { ids, table, .. } => embedding::reference_backward(rb, id, &dy, *ids, *table),
        Op::AddBroadcast { x, p } => {
            sequence::reference_add_broadcast_backward(rb, &dy, *x, *p);
            Ok(())
        }
    }
}
