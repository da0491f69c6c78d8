//! Lowering a [`Graph`] for one batch size to prepared dispatches.
//!
//! A [`Plan`] owns every activation, gradient and scratch buffer of one batch
//! size and every bind group that touches them, all created here, once. Training
//! then only writes the batch (`queue.write_buffer`) and the per-step optimizer
//! uniform, and records [`Plan::record_train`] into one compute pass.
//!
//! Memory: forward activations live for the whole step (backward reads them).
//! Gradient buffers of activations are short-lived: each is released after the
//! backward rule that reads it and reused by a later rule that needs the same
//! size (see `Pool`).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::graph::Loss;
use crate::graph::autodiff::{backward_order, consumers, requires_grad};
use crate::graph::{Graph, NodeId, Op, ParamStore, batch_norm_desc, pool_desc};
use crate::kernels::batchnorm::{
    batchnorm_backward, batchnorm_eval, batchnorm_eval_backward, batchnorm_train,
};
use crate::kernels::clip::clip_by_global_norm;
use crate::kernels::conv::{Conv2dDesc, conv2d_backward, conv2d_forward};
use crate::kernels::conv_pool::{self, ConvPoolDesc};
use crate::kernels::matmul::{Activation, MatmulDesc, matmul};
use crate::kernels::optim::{Optimizer, StepUniform, optimizer_step};
use crate::kernels::{dropout, elementwise, loss, pool, reduce, softmax};

/// What to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlanOptions {
    /// Number of samples per batch.
    pub batch: usize,
    /// Build backward and the optimizer update too.
    pub train: bool,
    /// Lower `Conv2D → MaxPool2D(2)` to the fused kernels of
    /// [`crate::kernels::conv_pool`] where the planner's `fusable_conv_pools` allows.
    pub fuse: bool,
    /// Clip the step's gradients to this global norm before the optimizer update
    /// ([`crate::kernels::clip`]); the optimizer then never runs inside backward.
    pub clip_norm: Option<ClipNorm>,
}

/// A largest global gradient norm: finite and positive (held as its bits, so plan
/// options stay hashable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClipNorm(u32);

impl ClipNorm {
    /// The norm `max_norm`; errors unless it is finite and positive.
    pub fn new(max_norm: f32) -> Result<ClipNorm> {
        if !(max_norm.is_finite() && max_norm > 0.0) {
            return Err(Error::invalid(format!(
                "the largest gradient norm must be a positive number, got {max_norm}"
            )));
        }
        Ok(ClipNorm(max_norm.to_bits()))
    }

    /// The largest norm, as an `f32`.
    pub fn get(self) -> f32 {
        f32::from_bits(self.0)
    }
}

/// GPU-resident sums over many steps, read once per epoch.
#[derive(Debug)]
pub struct Accumulators {
    /// Σ per-sample loss.
    pub loss_sum: Tensor,
    /// Σ correct predictions (classification losses only).
    pub correct: Tensor,
}

impl Accumulators {
    /// Both sums, zeroed, on `ctx`.
    pub fn new(ctx: &Context) -> Result<Accumulators> {
        Ok(Accumulators {
            loss_sum: Tensor::zeros(ctx, &[1], DType::F32)?,
            correct: Tensor::zeros(ctx, &[1], DType::F32)?,
        })
    }

    /// Zeroes both sums (queued).
    pub fn reset(&self, ctx: &Context) -> Result<()> {
        self.loss_sum.write(ctx, &[0.0f32])?;
        self.correct.write(ctx, &[0.0f32])
    }

    /// Reads `(loss sum, correct count)`.
    pub fn read(&self, ctx: &Context) -> Result<(f64, f64)> {
        let l = self.loss_sum.to_f32(ctx)?[0] as f64;
        let c = self.correct.to_f32(ctx)?[0] as f64;
        Ok((l, c))
    }
}

/// Everything one batch size needs, prepared once.
#[derive(Debug)]
pub struct Plan {
    /// What was built.
    pub options: PlanOptions,
    /// The batch of samples, `[B, sample shape...]`.
    pub input: Tensor,
    /// Targets: u32 `[B]` for categorical cross-entropy, f32 `[B, D]` otherwise.
    pub targets: Tensor,
    /// The model's output before the loss' folded activation (logits), `[B, D]`.
    pub output: Tensor,
    /// Per-sample losses of the batch.
    pub losses: Tensor,
    /// Probabilities (softmax or sigmoid of the logits; the output itself for MSE).
    pub probabilities: Tensor,
    /// Arg-max class per sample (classification).
    pub predictions: Tensor,
    /// The forward pass, input to output.
    pub forward: Vec<Dispatch>,
    /// Loss, its gradient, and accumulation into the [`Accumulators`].
    pub loss_train: Vec<Dispatch>,
    /// Loss and accumulation, no gradient.
    pub loss_eval: Vec<Dispatch>,
    /// Backward, then the gradient clipping when the options ask for it.
    pub backward: Vec<Dispatch>,
    /// `[scale, global norm]` of the last step's gradients, when they are clipped.
    pub clip_factor: Option<Tensor>,
    /// Optimizer steps of the trainable parameters not already updated inside backward.
    pub update: Vec<Dispatch>,
    /// Probabilities and predictions from the output.
    pub predict: Vec<Dispatch>,
    /// Kernel names of every dispatch, in `record_train` order (for profiles).
    pub labels: Vec<&'static str>,
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

fn batched(batch: usize, shape: &[usize]) -> Vec<usize> {
    let mut s = Vec::with_capacity(shape.len() + 1);
    s.push(batch);
    s.extend_from_slice(shape);
    s
}

fn conv_desc(
    batch: usize,
    xs: &[usize],
    ws: &[usize],
    stride: (usize, usize),
    padding: crate::kernels::conv::Padding,
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

impl Plan {
    /// Builds the plan of `graph` whose output node is `output`, with loss `loss`.
    /// Parameters, gradients and optimizer state come from `store` and are shared
    /// by every plan of the model. Inside [`Context::deferring_pipelines`] (as
    /// `Model::plan` in the nn layer calls it) the plan's pipelines are
    /// compiled together, in parallel, when the deferral ends.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        ctx: &Context,
        graph: &Graph,
        output: NodeId,
        loss_kind: Loss,
        store: &ParamStore,
        optimizer: &Optimizer,
        step: &StepUniform,
        acc: &Accumulators,
        options: PlanOptions,
    ) -> Result<Plan> {
        let b = options.batch;
        if b == 0 {
            return Err(Error::invalid("batch size must be at least 1"));
        }
        let mut values: Vec<Option<Tensor>> = vec![None; graph.nodes.len()];
        // What forward keeps for a node's backward: max-pool arg-max indices, a
        // batch normalization's [mean | 1/std] per channel.
        let mut aux: HashMap<NodeId, Tensor> = HashMap::new();
        let mut forward = Vec::new();
        let mut input = None;
        let fused = if options.fuse {
            fusable_conv_pools(ctx, graph, output, b)
        } else {
            HashMap::new()
        };

        for (id, node) in graph.nodes.iter().enumerate().take(output + 1) {
            if runs_in_fused_pair(&fused, id) {
                continue; // computed by the max-pool that reads it
            }
            let shape = batched(b, &node.shape);
            let value = |i: NodeId| values[i].clone().expect("inputs precede their consumers");
            let t = match &node.op {
                Op::Input => {
                    let t = Tensor::zeros(ctx, &shape, DType::F32)?;
                    input = Some(t.clone());
                    t
                }
                Op::Param { name, .. } => store
                    .by_node(id)
                    .ok_or_else(|| Error::invalid(format!("parameter {name} is not in the store")))?
                    .value
                    .clone(),
                Op::Dense { x, w, b: bias, act } => {
                    let y = Tensor::zeros(ctx, &shape, DType::F32)?;
                    let ws = graph.shape(*w);
                    let mut d = MatmulDesc::new(b, ws[0], ws[1]);
                    d.trans_b = true;
                    d.activation = *act;
                    let bias = bias.map(value);
                    forward.extend(matmul(ctx, &d, &value(*x), &value(*w), bias.as_ref(), &y)?);
                    y
                }
                Op::Conv2d {
                    x,
                    w,
                    b: bias,
                    stride,
                    padding,
                    act,
                } => {
                    let y = Tensor::zeros(ctx, &shape, DType::F32)?;
                    let desc = conv_desc(b, graph.shape(*x), graph.shape(*w), *stride, *padding);
                    let bias = bias.map(value);
                    forward.extend(conv2d_forward(
                        ctx,
                        &desc,
                        &value(*x),
                        &value(*w),
                        bias.as_ref(),
                        *act,
                        &y,
                    )?);
                    y
                }
                Op::MaxPool2d { .. } if fused.contains_key(&id) => {
                    let f = &fused[&id];
                    let y = Tensor::zeros(ctx, &shape, DType::F32)?;
                    let idx = Tensor::zeros(ctx, &f.desc.index_shape()?, DType::U32)?;
                    forward.push(conv_pool::conv_pool_forward(
                        ctx,
                        &f.desc,
                        &value(f.x),
                        &value(f.w),
                        &value(f.b),
                        &y,
                        &idx,
                    )?);
                    aux.insert(id, idx);
                    y
                }
                Op::MaxPool2d { x, window } => {
                    let y = Tensor::zeros(ctx, &shape, DType::F32)?;
                    let idx = Tensor::zeros(ctx, &shape, DType::U32)?;
                    let desc = pool_desc(b, graph.shape(*x), *window)?;
                    forward.push(pool::max_pool2d_forward(ctx, &desc, &value(*x), &y, &idx)?);
                    aux.insert(id, idx);
                    y
                }
                Op::AvgPool2d { x, window } => {
                    let y = Tensor::zeros(ctx, &shape, DType::F32)?;
                    let desc = pool_desc(b, graph.shape(*x), *window)?;
                    forward.push(pool::avg_pool2d_forward(ctx, &desc, &value(*x), &y)?);
                    y
                }
                Op::Reshape { x } => value(*x).reshape(&shape)?,
                Op::Act { x, act } => {
                    let y = Tensor::zeros(ctx, &shape, DType::F32)?;
                    forward.push(elementwise::activation_forward(ctx, *act, &value(*x), &y)?);
                    y
                }
                Op::Dropout { x, rate, seed } if options.train => {
                    let y = Tensor::zeros(ctx, &shape, DType::F32)?;
                    forward.push(dropout::dropout(ctx, &value(*x), &y, *rate, *seed, step)?);
                    y
                }
                // Evaluating: the identity, a view of the input.
                Op::Dropout { x, .. } => value(*x),
                Op::BatchNorm {
                    x,
                    gamma,
                    beta,
                    moving_mean,
                    moving_var,
                    momentum,
                    epsilon,
                    act,
                    frozen,
                } => {
                    let y = Tensor::zeros(ctx, &shape, DType::F32)?;
                    let d = batch_norm_desc(b, graph.shape(*x), *momentum, *epsilon, *act);
                    let (g, bt) = (value(*gamma), value(*beta));
                    let (mm, mv) = (value(*moving_mean), value(*moving_var));
                    if options.train && !frozen {
                        let stats = Tensor::zeros(ctx, &[2, d.c], DType::F32)?;
                        forward.push(batchnorm_train(
                            ctx,
                            &d,
                            &value(*x),
                            &g,
                            &bt,
                            &y,
                            &stats,
                            &mm,
                            &mv,
                        )?);
                        aux.insert(id, stats);
                    } else {
                        forward.push(batchnorm_eval(ctx, &d, &value(*x), &g, &bt, &mm, &mv, &y)?);
                    }
                    y
                }
            };
            values[id] = Some(t);
        }
        let input = input.ok_or_else(|| Error::invalid("the model has no input"))?;
        let out = values[output].clone().expect("output was built");
        let out_dim = graph.shape(output).iter().product::<usize>();
        let out2 = out.reshape(&[b, out_dim])?;

        // Loss.
        let scale = 1.0 / b as f32;
        let losses = Tensor::zeros(ctx, &[b], DType::F32)?;
        let targets = match loss_kind {
            Loss::SparseCategoricalCrossentropy => Tensor::zeros(ctx, &[b], DType::U32)?,
            _ => Tensor::zeros(ctx, &[b, out_dim], DType::F32)?,
        };
        let dlogits = if options.train {
            Some(Tensor::zeros(ctx, &[b, out_dim], DType::F32)?)
        } else {
            None
        };
        let loss_dispatches = |grad: Option<&Tensor>| -> Result<Vec<Dispatch>> {
            let mut v = Vec::new();
            match loss_kind {
                Loss::SparseCategoricalCrossentropy => {
                    v.push(loss::softmax_cross_entropy(
                        ctx, &out2, &targets, &losses, grad, scale,
                    )?);
                    v.push(reduce::accumulate_sum(ctx, &losses, &acc.loss_sum)?);
                    v.push(reduce::count_correct(ctx, &out2, &targets, &acc.correct)?);
                }
                Loss::BinaryCrossentropy => {
                    v.push(loss::bce_with_logits(ctx, &out2, &targets, &losses, grad, scale)?);
                    v.push(reduce::accumulate_sum(ctx, &losses, &acc.loss_sum)?);
                    if out_dim == 1 {
                        v.push(reduce::count_correct_binary(ctx, &out2, &targets, &acc.correct)?);
                    }
                }
                Loss::MeanSquaredError => {
                    v.push(loss::mse(ctx, &out2, &targets, &losses, grad, scale)?);
                    v.push(reduce::accumulate_sum(ctx, &losses, &acc.loss_sum)?);
                }
            }
            Ok(v)
        };
        let loss_eval = loss_dispatches(None)?;
        let loss_train = match &dlogits {
            Some(g) => loss_dispatches(Some(g))?,
            None => Vec::new(),
        };

        // Probabilities and predictions.
        let predictions = Tensor::zeros(ctx, &[b], DType::U32)?;
        let mut predict = Vec::new();
        let probabilities = match loss_kind {
            Loss::SparseCategoricalCrossentropy => {
                let p = Tensor::zeros(ctx, &[b, out_dim], DType::F32)?;
                predict.push(softmax::softmax(ctx, &out2, &p)?);
                predict.push(reduce::argmax_rows(ctx, &out2, &predictions)?);
                p
            }
            Loss::BinaryCrossentropy => {
                let p = Tensor::zeros(ctx, &[b, out_dim], DType::F32)?;
                predict.push(elementwise::activation_forward(
                    ctx,
                    Activation::Sigmoid,
                    &out2,
                    &p,
                )?);
                p
            }
            Loss::MeanSquaredError => out2.clone(),
        };

        let (backward, clip_factor, update) = match dlogits {
            Some(dl) => {
                let lowered = lower_backward(
                    ctx,
                    graph,
                    output,
                    b,
                    &values,
                    &aux,
                    &fused,
                    store,
                    dl.reshape(out.shape())?,
                    step,
                    (options.fuse && options.clip_norm.is_none()).then_some((optimizer, step)),
                )?;
                let mut backward = lowered.dispatches;
                let mut clip_factor = None;
                if let Some(c) = options.clip_norm {
                    let grads: Vec<&Tensor> = store
                        .params
                        .iter()
                        .filter(|p| p.trainable)
                        .map(|p| &p.grad)
                        .collect();
                    let clip = clip_by_global_norm(ctx, &grads, c.get())?;
                    backward.extend(clip.dispatches);
                    clip_factor = Some(clip.factor);
                }
                let update = store
                    .params
                    .iter()
                    .filter(|p| p.trainable && !lowered.updated.contains(&p.node))
                    .map(|p| optimizer_step(ctx, optimizer, step, &p.value, &p.grad, &p.state))
                    .collect::<Result<Vec<_>>>()?;
                (backward, clip_factor, update)
            }
            None => (Vec::new(), None, Vec::new()),
        };
        let labels = forward
            .iter()
            .chain(&loss_train)
            .chain(&backward)
            .chain(&update)
            .map(|d| d.kernel.label())
            .collect();
        Ok(Plan {
            options,
            input,
            targets,
            output: out2,
            losses,
            probabilities,
            predictions,
            forward,
            loss_train,
            loss_eval,
            backward,
            clip_factor,
            update,
            predict,
            labels,
        })
    }

    /// Every dispatch of one training step, in order.
    pub fn train_dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.forward
            .iter()
            .chain(&self.loss_train)
            .chain(&self.backward)
            .chain(&self.update)
    }

    /// Makes sure the dispatches of a training step (`train`) or an evaluation
    /// step have their pipelines ([`Context::ready`]); no work and no allocation
    /// when they do, which is every step but those inside a deferral.
    pub fn ready(&self, ctx: &Context, train: bool) -> Result<()> {
        let compiled = |d: &Dispatch| d.pipeline.get().is_some();
        if train && self.train_dispatches().all(compiled) || !train && self.eval_dispatches().all(compiled) {
            return Ok(());
        }
        let all: Vec<&Dispatch> = if train {
            self.train_dispatches().collect()
        } else {
            self.eval_dispatches().collect()
        };
        ctx.ready(&all)
    }

    /// Records one training step (forward, loss, backward, update) into `pass`.
    pub fn record_train(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>) {
        let all: Vec<&Dispatch> = self.train_dispatches().collect();
        ctx.record(pass, &all);
    }

    /// Every dispatch of one evaluation step, in order.
    pub fn eval_dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.forward.iter().chain(&self.loss_eval).chain(&self.predict)
    }

    /// Records forward + loss (no gradient) + predictions into `pass`.
    pub fn record_eval(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>) {
        let all: Vec<&Dispatch> = self.eval_dispatches().collect();
        ctx.record(pass, &all);
    }
}

/// A `Conv2D → MaxPool2D(2)` pair lowered to the fused kernels, keyed by the pool.
#[derive(Debug)]
struct FusedConvPool {
    conv: NodeId,
    x: NodeId,
    w: NodeId,
    b: NodeId,
    desc: ConvPoolDesc,
}

/// Whether convolution `conv` runs inside the fused kernels of the max-pool that
/// reads it (so it has no lowering, forward or backward, of its own).
fn runs_in_fused_pair(fused: &HashMap<NodeId, FusedConvPool>, conv: NodeId) -> bool {
    fused.values().any(|f| f.conv == conv)
}

/// The max-pools (up to `output`) that run fused with the convolution they read:
/// on CPU adapters that can run [`conv_pool`] (there it removes most of the conv
/// layer's memory traffic; GPUs keep the im2col path and its tiled matmul), for a
/// 2×2/2 unpadded max-pool whose input is a convolution with a bias, read by nothing
/// else, whose own input needs no gradient (the fused backward gives none).
fn fusable_conv_pools(
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
        let pool_2x2 = window.kernel == (2, 2)
            && window.stride == (2, 2)
            && matches!(window.padding, crate::kernels::conv::Padding::Valid);
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

/// The backward pass as lowered.
struct Backward {
    dispatches: Vec<Dispatch>,
    /// Parameters whose optimizer step already ran inside the backward pass (a
    /// Dense weight gradient with the Adam epilogue): the update list skips them.
    updated: Vec<NodeId>,
}

/// Whether the Dense weight gradient `d` (into parameter node `w`) runs with the
/// fused Adam epilogue: on CPU adapters whose register kernels take the shape,
/// with Adam, when the planner may fuse (`fuse_adam` is given).
fn adam_in_epilogue(ctx: &Context, d: &MatmulDesc, fuse_adam: Option<(&Optimizer, &StepUniform)>) -> bool {
    matches!(fuse_adam, Some((Optimizer::Adam { .. }, _)))
        && d.n.is_multiple_of(4)
        && ctx.is_cpu()
        && crate::kernels::matmul::auto_variant(ctx, d).needs_subgroups()
}

/// Lowers the backward rules of every node on the path from the parameters to
/// `output`, whose gradient is `d_output`. With `fuse_adam`, Dense weight
/// gradients may apply the optimizer step themselves (see [`adam_in_epilogue`]).
#[allow(clippy::too_many_arguments)]
fn lower_backward(
    ctx: &Context,
    graph: &Graph,
    output: NodeId,
    b: usize,
    values: &[Option<Tensor>],
    aux: &HashMap<NodeId, Tensor>,
    fused: &HashMap<NodeId, FusedConvPool>,
    store: &ParamStore,
    d_output: Tensor,
    step: &StepUniform,
    fuse_adam: Option<(&Optimizer, &StepUniform)>,
) -> Result<Backward> {
    let mut updated = Vec::new();
    let req = requires_grad(graph);
    let uses = consumers(graph);
    let mut grads: Vec<Option<Tensor>> = vec![None; graph.nodes.len()];
    grads[output] = Some(d_output);
    let mut pool = Pool::default();
    let mut out = Vec::new();
    // Nodes whose gradient already includes their fused activation's derivative.
    let mut pre_activated = vec![false; graph.nodes.len()];
    let value = |i: NodeId| values[i].clone().expect("forward value");
    let param_grad = |i: NodeId| -> Result<Tensor> {
        if uses[i] > 1 {
            return Err(Error::invalid(format!(
                "parameter '{}' is used by {} ops; shared parameters are not supported",
                graph.nodes[i].layer, uses[i]
            )));
        }
        Ok(store
            .by_node(i)
            .expect("every Param node is in the store")
            .grad
            .clone())
    };

    for id in backward_order(graph, output) {
        if runs_in_fused_pair(fused, id) {
            continue; // its gradients came with the max-pool's rule
        }
        let dy = grads[id]
            .take()
            .expect("gradient of a node is complete before its rule runs");
        // Where the gradient of input `x` goes: a fresh buffer for the first
        // contribution, a temporary summed in for later ones.
        let mut targets: Vec<(NodeId, Tensor, bool)> = Vec::new();
        let mut dx_for =
            |x: NodeId, pool: &mut Pool, grads: &mut Vec<Option<Tensor>>| -> Result<Option<Tensor>> {
                if !req[x] {
                    return Ok(None);
                }
                let shape = batched(b, &graph.nodes[x].shape);
                let t = pool.take(ctx, &shape)?;
                let accumulate = grads[x].is_some();
                targets.push((x, t.clone(), accumulate));
                if !accumulate {
                    grads[x] = Some(t.clone());
                }
                Ok(Some(t))
            };
        // Gradient before the op's fused activation.
        let already = pre_activated[id];
        let pre_activation = |act: Activation, pool: &mut Pool, out: &mut Vec<Dispatch>| -> Result<Tensor> {
            if act == Activation::Identity || already {
                return Ok(dy.clone());
            }
            let dz = pool.take(ctx, dy.shape())?;
            out.push(elementwise::activation_backward(ctx, act, &value(id), &dy, &dz)?);
            Ok(dz)
        };
        let mut temporaries = Vec::new();
        let mut alias = false;
        match &graph.nodes[id].op {
            Op::Input | Op::Param { .. } => unreachable!("not in backward order"),
            Op::Dense { x, w, b: bias, act } => {
                let dz = pre_activation(*act, &mut pool, &mut out)?;
                let ws = graph.shape(*w);
                let (units, fan_in) = (ws[0], ws[1]);
                // dW[out, in] = dzᵀ · x
                let mut dw_desc = MatmulDesc::new(units, fan_in, b);
                dw_desc.trans_a = true;
                // A frozen layer (its weights take no gradient) runs here only for
                // the gradient of its input.
                let adam_here = req[*w] && adam_in_epilogue(ctx, &dw_desc, fuse_adam);
                if req[*w] && !adam_here {
                    out.extend(matmul(ctx, &dw_desc, &dz, &value(*x), None, &param_grad(*w)?)?);
                }
                // db[out] = Σ over the batch's rows (one invocation per column for
                // short batches: no workgroup reduction and its barriers).
                if let Some(bias) = bias.filter(|b| req[*b]) {
                    out.push(reduce::sum_axis(ctx, &dz, 1, b, units, &param_grad(bias)?)?);
                }
                if let Some(dx) = dx_for(*x, &mut pool, &mut grads)? {
                    // dx[B, in] = dz · W (before W's update below).
                    let d = MatmulDesc::new(b, fan_in, units);
                    out.extend(matmul(ctx, &d, &dz, &value(*w), None, &dx)?);
                }
                if let (true, Some((optimizer, step))) = (adam_here, fuse_adam) {
                    param_grad(*w)?; // the same sharing check as the unfused path
                    let p = store.by_node(*w).expect("every Param node is in the store");
                    out.push(crate::kernels::matmul::matmul_adam(
                        ctx,
                        &dw_desc,
                        &dz,
                        &value(*x),
                        &p.value,
                        &p.state[0],
                        &p.state[1],
                        optimizer,
                        step,
                    )?);
                    updated.push(*w);
                }
                if *act != Activation::Identity && !already {
                    temporaries.push(dz);
                }
            }
            Op::Conv2d {
                x,
                w,
                b: bias,
                stride,
                padding,
                act,
            } => {
                let dz = pre_activation(*act, &mut pool, &mut out)?;
                let desc = conv_desc(b, graph.shape(*x), graph.shape(*w), *stride, *padding);
                let dx = dx_for(*x, &mut pool, &mut grads)?;
                out.extend(conv2d_backward(
                    ctx,
                    &desc,
                    &value(*x),
                    &value(*w),
                    &dz,
                    dx.as_ref(),
                    &param_grad(*w)?,
                    bias.map(param_grad).transpose()?.as_ref(),
                )?);
                if *act != Activation::Identity && !already {
                    temporaries.push(dz);
                }
            }
            Op::MaxPool2d { .. } if fused.contains_key(&id) => {
                let f = &fused[&id];
                out.extend(conv_pool::conv_pool_backward(
                    ctx,
                    &f.desc,
                    &value(f.x),
                    &dy,
                    &value(id),
                    &aux[&id],
                    &param_grad(f.w)?,
                    &param_grad(f.b)?,
                )?);
            }
            Op::MaxPool2d { x, window } => {
                if let Some(dx) = dx_for(*x, &mut pool, &mut grads)? {
                    let desc = pool_desc(b, graph.shape(*x), *window)?;
                    // ReLU then max-pool: the gradient reaches only each window's
                    // arg-max, where ReLU's mask (y > 0) equals the pooled output's,
                    // so mask the small pooled gradient and hand the producer a
                    // gradient that is already before its activation.
                    if relu_before_pool(graph, *x, uses[*x]) {
                        let masked = pool.take(ctx, dy.shape())?;
                        out.push(elementwise::activation_backward(
                            ctx,
                            Activation::Relu,
                            &value(id),
                            &dy,
                            &masked,
                        )?);
                        out.extend(pool::max_pool2d_backward(ctx, &desc, &masked, &aux[&id], &dx)?);
                        temporaries.push(masked);
                        pre_activated[*x] = true;
                    } else {
                        out.extend(pool::max_pool2d_backward(ctx, &desc, &dy, &aux[&id], &dx)?);
                    }
                }
            }
            Op::AvgPool2d { x, window } => {
                if let Some(dx) = dx_for(*x, &mut pool, &mut grads)? {
                    let desc = pool_desc(b, graph.shape(*x), *window)?;
                    out.push(pool::avg_pool2d_backward(ctx, &desc, &dy, &dx)?);
                }
            }
            Op::Reshape { x } => {
                if req[*x] {
                    let shape = batched(b, &graph.nodes[*x].shape);
                    if grads[*x].is_none() {
                        grads[*x] = Some(dy.reshape(&shape)?);
                        alias = true;
                    } else {
                        let t = pool.take(ctx, &shape)?;
                        out.push(elementwise::scale(ctx, &dy.reshape(&shape)?, 1.0, &t)?);
                        targets.push((*x, t, true));
                    }
                }
            }
            Op::Act { x, act } => {
                if let Some(dx) = dx_for(*x, &mut pool, &mut grads)? {
                    out.push(elementwise::activation_backward(ctx, *act, &value(id), &dy, &dx)?);
                }
            }
            Op::BatchNorm {
                x,
                gamma,
                beta,
                moving_mean,
                moving_var,
                momentum,
                epsilon,
                act,
                frozen: true,
            } => {
                // Inference mode: only the input's gradient.
                let d = batch_norm_desc(b, graph.shape(*x), *momentum, *epsilon, *act);
                if let Some(dx) = dx_for(*x, &mut pool, &mut grads)? {
                    out.push(batchnorm_eval_backward(
                        ctx,
                        &d,
                        &value(*x),
                        &value(*gamma),
                        &value(*beta),
                        &value(*moving_mean),
                        &value(*moving_var),
                        &dy,
                        &dx,
                    )?);
                }
            }
            Op::BatchNorm {
                x,
                gamma,
                beta,
                momentum,
                epsilon,
                act,
                ..
            } => {
                let d = batch_norm_desc(b, graph.shape(*x), *momentum, *epsilon, *act);
                let dx = dx_for(*x, &mut pool, &mut grads)?;
                out.push(batchnorm_backward(
                    ctx,
                    &d,
                    &value(*x),
                    &value(*gamma),
                    &value(*beta),
                    &aux[&id],
                    &dy,
                    dx.as_ref(),
                    &param_grad(*gamma)?,
                    &param_grad(*beta)?,
                )?);
            }
            Op::Dropout { x, rate, seed } => {
                // The same mask (same seed, same step) applied to the gradient.
                if let Some(dx) = dx_for(*x, &mut pool, &mut grads)? {
                    out.push(dropout::dropout(ctx, &dy, &dx, *rate, *seed, step)?);
                }
            }
        }
        // Sum later contributions into the input's gradient.
        for (x, t, accumulate) in targets {
            if accumulate {
                let g = grads[x].as_ref().expect("first contribution exists");
                out.push(elementwise::axpy(ctx, 1.0, &t, g)?);
                temporaries.push(t);
            }
        }
        for t in temporaries {
            pool.give(t);
        }
        if !alias && id != output {
            pool.give(dy);
        }
    }
    Ok(Backward {
        dispatches: out,
        updated,
    })
}
