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
use crate::graph::autodiff::backward_order;
use crate::graph::ops::conv_pool::{FusedConvPool, fusable_conv_pools, runs_in_fused_pair};
use crate::graph::ops::{BackwardLowering, Lowering, batched, lower_forward};
use crate::graph::{Graph, NodeId, Objective, Op, ParamStore, WeightedTerm};
use crate::kernels::clip::clip_by_global_norm;
use crate::kernels::matmul::Activation;
use crate::kernels::optim::{
    AccumulatePass, Optimizer, StepUniform, accumulate_gradient, ema_update, optimizer_step,
};
use crate::kernels::{elementwise, loss, reduce, softmax};

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
    /// Build the passes of gradient accumulation too ([`Plan::record_pass`]): an
    /// optimizer step may then sum several batches' gradients. The optimizer then
    /// never runs inside backward, and the store must hold accumulators
    /// ([`ParamStore::ensure_accumulators`]).
    pub accumulate: bool,
    /// Smooth the labels of a sparse categorical cross-entropy by this much
    /// ([`crate::kernels::loss::softmax_cross_entropy_with`]); the plan is
    /// refused for other losses.
    pub label_smoothing: Option<LabelSmoothing>,
    /// Keep an exponential moving average of the trained weights, updated after
    /// every step ([`crate::kernels::optim::ema_update`]); the store must hold the
    /// averages ([`ParamStore::ensure_averages`]).
    pub ema: Option<Ema>,
    /// Evaluation plans of a sparse categorical cross-entropy also count the
    /// labels among the top k logits into [`Accumulators::top_k`] (Keras'
    /// `SparseTopKCategoricalAccuracy`); the plan is refused for other losses.
    pub top_k: Option<usize>,
    /// Run the graph on sequences cut to this many tokens, `None` for the
    /// graph's own: the plan is built on the graph of that length
    /// ([`crate::nn::dynamic_padding`]), which the caller gives.
    pub tokens: Option<usize>,
}

/// The momentum of an exponential moving average of the weights, in [0, 1) (held
/// as its bits, so plan options stay hashable): Keras' `ema_momentum`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ema(u32);

impl Ema {
    /// The momentum `m`; errors unless it is in [0, 1).
    pub fn new(m: f32) -> Result<Ema> {
        if !(0.0..1.0).contains(&m) {
            return Err(Error::invalid(format!(
                "the moving average's momentum {m} is outside [0, 1) (Keras' default is 0.99)"
            )));
        }
        Ok(Ema(m.to_bits()))
    }

    /// The momentum, as an `f32`.
    pub fn get(self) -> f32 {
        f32::from_bits(self.0)
    }
}

/// A label smoothing ε in (0, 1) (held as its bits, so plan options stay hashable):
/// the target of a sparse categorical cross-entropy becomes `(1 − ε)·onehot + ε/C`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LabelSmoothing(u32);

impl LabelSmoothing {
    /// The smoothing `e`; `None` for 0 (no smoothing); errors unless `e` is in [0, 1).
    pub fn new(e: f32) -> Result<Option<LabelSmoothing>> {
        if !(0.0..1.0).contains(&e) {
            return Err(Error::invalid(format!(
                "label smoothing {e} is outside [0, 1): it is the share of the target spread over \
                 every class"
            )));
        }
        Ok((e > 0.0).then_some(LabelSmoothing(e.to_bits())))
    }

    /// The smoothing, as an `f32`.
    pub fn get(self) -> f32 {
        f32::from_bits(self.0)
    }
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
    /// Σ of each loss term of an [`Objective::Terms`], in its order (empty otherwise).
    pub terms: Vec<Tensor>,
    /// Σ labels among the top k logits (evaluation plans with [`PlanOptions::top_k`]).
    pub top_k: Tensor,
}

impl Accumulators {
    /// Both sums, zeroed, on `ctx`.
    pub fn new(ctx: &Context) -> Result<Accumulators> {
        Self::with_terms(ctx, 0)
    }

    /// Both sums and one per loss term of an [`Objective::Terms`] of `terms` terms.
    pub fn with_terms(ctx: &Context, terms: usize) -> Result<Accumulators> {
        Ok(Accumulators {
            loss_sum: Tensor::zeros(ctx, &[1], DType::F32)?,
            correct: Tensor::zeros(ctx, &[1], DType::F32)?,
            top_k: Tensor::zeros(ctx, &[1], DType::F32)?,
            terms: (0..terms)
                .map(|_| Tensor::zeros(ctx, &[1], DType::F32))
                .collect::<Result<_>>()?,
        })
    }

    /// Zeroes every sum (queued).
    pub fn reset(&self, ctx: &Context) -> Result<()> {
        for t in &self.terms {
            t.write(ctx, &[0.0f32])?;
        }
        self.loss_sum.write(ctx, &[0.0f32])?;
        self.top_k.write(ctx, &[0.0f32])?;
        self.correct.write(ctx, &[0.0f32])
    }

    /// Reads the top-k count.
    pub fn read_top_k(&self, ctx: &Context) -> Result<f64> {
        Ok(self.top_k.to_f32(ctx)?[0] as f64)
    }

    /// Reads each loss term's sum.
    pub fn read_terms(&self, ctx: &Context) -> Result<Vec<f64>> {
        self.terms.iter().map(|t| Ok(t.to_f32(ctx)?[0] as f64)).collect()
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
    /// Every node's value for the batch (`None` for nodes after the objective's
    /// last and for a convolution computed inside a fused pair): read one to see a
    /// hidden layer, a VAE's latent means or its reconstruction.
    pub values: Vec<Option<Tensor>>,
    /// The batch of samples, `[B, sample shape...]`.
    pub input: Tensor,
    /// Targets: u32 `[B]` for categorical cross-entropy, f32 `[B, D]` otherwise
    /// (an unused `[1]` for [`Objective::Terms`], whose targets are in the graph).
    pub targets: Tensor,
    /// The model's output before the loss' folded activation (logits), `[B, D]`
    /// ([`Objective::Terms`]: the per-sample weighted sum of the terms, `[B, 1]`).
    pub output: Tensor,
    /// Per-sample losses of the batch.
    pub losses: Tensor,
    /// Probabilities (softmax or sigmoid of the logits; the output itself for MSE
    /// and for [`Objective::Terms`]).
    pub probabilities: Tensor,
    /// Arg-max class per sample (classification; zeros otherwise).
    pub predictions: Tensor,
    /// The forward pass, input to output.
    pub forward: Vec<Dispatch>,
    /// Loss, its gradient, and accumulation into the [`Accumulators`].
    pub loss_train: Vec<Dispatch>,
    /// Loss and accumulation, no gradient.
    pub loss_eval: Vec<Dispatch>,
    /// Backward.
    pub backward: Vec<Dispatch>,
    /// Gradient clipping, when the options ask for it.
    pub clip: Vec<Dispatch>,
    /// `[scale, global norm]` of the last step's gradients, when they are clipped.
    pub clip_factor: Option<Tensor>,
    /// With [`PlanOptions::accumulate`]: each trainable gradient into its
    /// accumulator on the first pass of an optimizer step (empty otherwise).
    pub accumulate_first: Vec<Dispatch>,
    /// With [`PlanOptions::accumulate`]: each trainable gradient added to its
    /// accumulator on a middle pass (empty otherwise).
    pub accumulate_add: Vec<Dispatch>,
    /// With [`PlanOptions::accumulate`]: the accumulator added to each trainable
    /// gradient on the last pass, before clipping and the update.
    pub accumulate_finish: Vec<Dispatch>,
    /// Optimizer steps of the trainable parameters not already updated inside backward.
    pub update: Vec<Dispatch>,
    /// Probabilities and predictions from the output.
    pub predict: Vec<Dispatch>,
    /// Kernel names of every dispatch, in `record_train` order (for profiles).
    pub labels: Vec<&'static str>,
}

impl Plan {
    /// Builds the plan of `graph` trained towards `objective`.
    /// Parameters, gradients and optimizer state come from `store` and are shared
    /// by every plan of the model. Inside [`Context::deferring_pipelines`] (as
    /// `Model::plan` in the nn layer calls it) the plan's pipelines are
    /// compiled together, in parallel, when the deferral ends.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        ctx: &Context,
        graph: &Graph,
        objective: &Objective,
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
        let mut lw = Lowering {
            ctx,
            graph,
            batch: b,
            train: options.train,
            step,
            values: vec![None; graph.nodes.len()],
            aux: HashMap::new(),
            fused: if options.fuse {
                fusable_conv_pools(ctx, graph, objective.last_node(), b)
            } else {
                HashMap::new()
            },
            dispatches: Vec::new(),
        };
        let mut input = None;
        for (id, node) in graph.nodes.iter().enumerate().take(objective.last_node() + 1) {
            if runs_in_fused_pair(&lw.fused, id) {
                continue; // computed by the max-pool that reads it
            }
            let t = match &node.op {
                Op::Input => {
                    let t = Tensor::zeros(ctx, &batched(b, &node.shape), DType::F32)?;
                    input = Some(t.clone());
                    t
                }
                Op::Param { name, .. } => {
                    let value = &store
                        .by_node(id)
                        .ok_or_else(|| Error::invalid(format!("parameter {name} is not in the store")))?
                        .value;
                    // A shortened graph's position table: its first rows.
                    match value.shape() == node.shape.as_slice() {
                        true => value.clone(),
                        false => value.prefix(&node.shape)?,
                    }
                }
                _ => lower_forward(&mut lw, id)?,
            };
            lw.values[id] = Some(t);
        }
        let Lowering {
            values,
            aux,
            fused,
            dispatches: forward,
            ..
        } = lw;
        let input = input.ok_or_else(|| Error::invalid("the model has no input"))?;
        let parts = match objective {
            Objective::Supervised {
                output,
                loss,
                class_weights,
            } => supervised(
                ctx,
                graph,
                (*output, *loss, class_weights.as_deref()),
                &values,
                acc,
                options,
            )?,
            Objective::Terms(terms) => loss_terms(ctx, terms, &values, acc, options)?,
            Objective::Forward(outputs) => forward_only(ctx, graph, outputs, &values, options)?,
        };

        let mut accumulate = [Vec::new(), Vec::new(), Vec::new()];
        let (backward, clip, clip_factor, update) = if options.train {
            let lowered = lower_backward(
                ctx,
                graph,
                b,
                &values,
                &aux,
                &fused,
                store,
                parts.roots.clone(),
                step,
                (options.fuse && options.clip_norm.is_none() && !options.accumulate)
                    .then_some((optimizer, step)),
            )?;
            if options.accumulate {
                accumulate = accumulation(ctx, store, step)?;
            }
            let (mut clip, mut clip_factor) = (Vec::new(), None);
            if let Some(c) = options.clip_norm {
                let grads: Vec<&Tensor> = store
                    .params
                    .iter()
                    .filter(|p| p.trainable)
                    .map(|p| &p.grad)
                    .collect();
                let clipped = clip_by_global_norm(ctx, &grads, c.get())?;
                clip = clipped.dispatches;
                clip_factor = Some(clipped.factor);
            }
            let mut update = store
                .params
                .iter()
                .filter(|p| p.trainable && !lowered.updated.contains(&p.node))
                .map(|p| optimizer_step(ctx, &p.optimizer(optimizer), step, &p.value, &p.grad, &p.state))
                .collect::<Result<Vec<_>>>()?;
            // The moving averages follow the step's updates (fused ones included).
            if let Some(ema) = options.ema {
                for p in store.params.iter().filter(|p| p.trainable) {
                    let average = p.ema.as_ref().ok_or_else(|| {
                        Error::invalid(format!(
                            "parameter {} has no moving average: call ParamStore::ensure_averages \
                             before building a plan that keeps them",
                            p.name
                        ))
                    })?;
                    update.push(ema_update(
                        ctx,
                        step,
                        &p.value,
                        average,
                        ema.get(),
                        store.ema_start,
                    )?);
                }
            }
            (lowered.dispatches, clip, clip_factor, update)
        } else {
            (Vec::new(), Vec::new(), None, Vec::new())
        };
        let [accumulate_first, accumulate_add, accumulate_finish] = accumulate;
        let LossParts {
            targets,
            output: out2,
            losses,
            probabilities,
            predictions,
            loss_train,
            loss_eval,
            predict,
            ..
        } = parts;
        let labels = forward
            .iter()
            .chain(&loss_train)
            .chain(&backward)
            .chain(&clip)
            .chain(&update)
            .map(|d| d.kernel.label())
            .collect();
        Ok(Plan {
            options,
            values,
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
            clip,
            clip_factor,
            accumulate_first,
            accumulate_add,
            accumulate_finish,
            update,
            predict,
            labels,
        })
    }

    /// Every dispatch of one training step, in order.
    pub fn train_dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.pass_dispatches(Pass::Whole)
    }

    /// The dispatches of one pass of a training step, in order: forward, loss and
    /// backward, then what `pass` adds (see [`Pass`]). Every pass but
    /// [`Pass::Whole`] needs a plan built with [`PlanOptions::accumulate`].
    pub(crate) fn pass_dispatches(&self, pass: Pass) -> impl Iterator<Item = &Dispatch> {
        let (accumulate, step): (&[Dispatch], bool) = match pass {
            Pass::Whole => (&[], true),
            Pass::First => (&self.accumulate_first, false),
            Pass::Middle => (&self.accumulate_add, false),
            Pass::Last => (&self.accumulate_finish, true),
        };
        let update: &[Dispatch] = if step { &self.update } else { &[] };
        let clip: &[Dispatch] = if step { &self.clip } else { &[] };
        self.forward
            .iter()
            .chain(&self.loss_train)
            .chain(&self.backward)
            .chain(accumulate)
            .chain(clip)
            .chain(update)
    }

    /// Records one pass of a training step into `pass` (see [`Pass`]); errors for
    /// an accumulating pass of a plan built without [`PlanOptions::accumulate`].
    pub fn record_pass(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, which: Pass) -> Result<()> {
        if which != Pass::Whole && !self.options.accumulate {
            return Err(Error::invalid(
                "this plan was built without gradient accumulation (PlanOptions::accumulate)",
            ));
        }
        let all: Vec<&Dispatch> = self.pass_dispatches(which).collect();
        ctx.record(pass, &all);
        Ok(())
    }

    /// Makes sure the dispatches of a training step (`train`) or an evaluation
    /// step have their pipelines ([`Context::ready`]); no work and no allocation
    /// when they do, which is every step but those inside a deferral. A training
    /// step of an accumulating plan includes its accumulation kernels.
    pub fn ready(&self, ctx: &Context, train: bool) -> Result<()> {
        let compiled = |d: &Dispatch| d.pipeline.get().is_some();
        let accumulation = || {
            self.accumulate_first
                .iter()
                .chain(&self.accumulate_add)
                .chain(&self.accumulate_finish)
        };
        let all: Vec<&Dispatch> = if train {
            if self.train_dispatches().chain(accumulation()).all(compiled) {
                return Ok(());
            }
            self.train_dispatches().chain(accumulation()).collect()
        } else {
            if self.eval_dispatches().all(compiled) {
                return Ok(());
            }
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

/// Which pass of a training step [`Plan::record_pass`] records. A step that sums
/// the gradients of several batches (gradient accumulation) is one `First`
/// pass, any number of `Middle` ones and one `Last`, each on its own batch and
/// weighted by the per-step uniform's `grad_scale`; a step on one batch is `Whole`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Forward, loss, backward, clipping and the update: a step on one batch.
    Whole,
    /// Forward, loss, backward, and the weighted gradient into the accumulators.
    First,
    /// As `First`, added to the accumulators.
    Middle,
    /// Forward, loss, backward, the accumulators added to the gradients, clipping
    /// and the update.
    Last,
}

/// The three lists of gradient accumulation (first, middle and last pass), one
/// dispatch per trainable parameter each; the store must hold accumulators.
fn accumulation(ctx: &Context, store: &ParamStore, step: &StepUniform) -> Result<[Vec<Dispatch>; 3]> {
    let mut lists = [Vec::new(), Vec::new(), Vec::new()];
    for p in store.params.iter().filter(|p| p.trainable) {
        let acc = p.accum.as_ref().ok_or_else(|| {
            Error::invalid(format!(
                "parameter {} has no gradient accumulator: call ParamStore::ensure_accumulators \
                 before building an accumulating plan",
                p.name
            ))
        })?;
        for (list, pass) in
            lists
                .iter_mut()
                .zip([AccumulatePass::First, AccumulatePass::Add, AccumulatePass::Finish])
        {
            list.push(accumulate_gradient(ctx, pass, step, acc, &p.grad)?);
        }
    }
    Ok(lists)
}

/// The backward pass as lowered.
struct Backward {
    dispatches: Vec<Dispatch>,
    /// Parameters whose optimizer step already ran inside the backward pass (a
    /// Dense weight gradient with the Adam epilogue): the update list skips them.
    updated: Vec<NodeId>,
}

/// Lowers the backward rules of every node on the path from the parameters to
/// the objective's `roots`, each with its gradient, in reverse order. With
/// `fuse_adam`, Dense weight gradients may apply the optimizer step themselves.
#[allow(clippy::too_many_arguments)]
fn lower_backward(
    ctx: &Context,
    graph: &Graph,
    b: usize,
    values: &[Option<Tensor>],
    aux: &HashMap<NodeId, Vec<Tensor>>,
    fused: &HashMap<NodeId, FusedConvPool>,
    store: &ParamStore,
    roots: Vec<(NodeId, Tensor)>,
    step: &StepUniform,
    fuse_adam: Option<(&Optimizer, &StepUniform)>,
) -> Result<Backward> {
    let ids: Vec<NodeId> = roots.iter().map(|(id, _)| *id).collect();
    let mut bw = BackwardLowering::new(ctx, graph, b, values, aux, fused, store, step, fuse_adam, roots);
    for id in backward_order(graph, &ids) {
        if runs_in_fused_pair(fused, id) {
            continue; // its gradients came with the max-pool's rule
        }
        bw.run_rule(id)?;
    }
    Ok(Backward {
        dispatches: bw.dispatches,
        updated: bw.updated,
    })
}

/// The loss part of a plan: its tensors (see [`Plan`]'s fields of the same names),
/// its dispatches, and where the gradient starts (empty unless training).
struct LossParts {
    targets: Tensor,
    output: Tensor,
    losses: Tensor,
    probabilities: Tensor,
    predictions: Tensor,
    loss_train: Vec<Dispatch>,
    loss_eval: Vec<Dispatch>,
    predict: Vec<Dispatch>,
    roots: Vec<(NodeId, Tensor)>,
}

/// `loss` of node `output` against the targets fed with each batch.
fn supervised(
    ctx: &Context,
    graph: &Graph,
    (output, loss_kind, class_weights): (NodeId, Loss, Option<&[f32]>),
    values: &[Option<Tensor>],
    acc: &Accumulators,
    options: PlanOptions,
) -> Result<LossParts> {
    let out = values[output].clone().expect("output was built");
    let smoothing = match options.label_smoothing {
        Some(e) if loss_kind != Loss::SparseCategoricalCrossentropy => {
            return Err(Error::invalid(format!(
                "label smoothing ({}) applies to sparse categorical cross-entropy; this model \
                 trains with {}",
                e.get(),
                loss_kind.name()
            )));
        }
        e => e.map_or(0.0, LabelSmoothing::get),
    };
    // One row per label: a sample's, or each position's of a sequence output
    // (the loss is the mean over all of them).
    let positions = loss_kind.label_positions(graph.shape(output));
    let rows = options.batch * positions;
    let out_dim = graph.shape(output).iter().product::<usize>() / positions;
    let out2 = out.reshape(&[rows, out_dim])?;
    let scale = 1.0 / rows as f32;
    let losses = Tensor::zeros(ctx, &[rows], DType::F32)?;
    let targets = match loss_kind {
        Loss::SparseCategoricalCrossentropy => Tensor::zeros(ctx, &[rows], DType::U32)?,
        _ => Tensor::zeros(ctx, &[rows, out_dim], DType::F32)?,
    };
    let dlogits = if options.train {
        Some(Tensor::zeros(ctx, &[rows, out_dim], DType::F32)?)
    } else {
        None
    };
    // A sequence's gradient is the mean over the positions with a target (a
    // token classifier's padding, special tokens and word continuations have
    // none), as PyTorch's CrossEntropyLoss(ignore_index) takes it; the count
    // is each batch's, made on the GPU.
    // With class weights each labelled row's term is weighted, the sum still
    // divided by the labelled rows' count.
    let label_mean = if options.train && positions > 1 && loss_kind == Loss::SparseCategoricalCrossentropy {
        Some(Tensor::zeros(ctx, &[1], DType::F32)?)
    } else {
        None
    };
    // Class weights weigh training steps only (as Keras' class_weight).
    let weights = match class_weights.filter(|_| options.train) {
        Some(w) => Some(Tensor::from_f32(ctx, w, &[w.len()])?),
        None => None,
    };
    let loss_dispatches = |grad: Option<&Tensor>| -> Result<Vec<Dispatch>> {
        let mut v = Vec::new();
        // Weights only with a gradient: the training step's loss.
        let class_weights = weights.as_ref().filter(|_| grad.is_some());
        match loss_kind {
            Loss::SparseCategoricalCrossentropy => {
                let label_mean = label_mean.as_ref().filter(|_| grad.is_some());
                if let Some(scale) = label_mean {
                    v.push(loss::label_scale(ctx, &targets, out_dim, scale)?);
                }
                let options = loss::LossOptions {
                    smoothing,
                    class_weights,
                    label_mean,
                };
                v.push(loss::softmax_cross_entropy_with(
                    ctx, &out2, &targets, &losses, grad, scale, options,
                )?);
                v.push(reduce::accumulate_sum(ctx, &losses, &acc.loss_sum)?);
                v.push(reduce::count_correct(ctx, &out2, &targets, &acc.correct)?);
            }
            Loss::BinaryCrossentropy => {
                v.push(loss::bce_with_logits_weighted(
                    ctx,
                    &out2,
                    &targets,
                    &losses,
                    grad,
                    scale,
                    class_weights,
                )?);
                v.push(reduce::accumulate_sum(ctx, &losses, &acc.loss_sum)?);
                if out_dim == 1 {
                    v.push(reduce::count_correct_binary(ctx, &out2, &targets, &acc.correct)?);
                } else {
                    // Multi-label: the rows whose every class is right.
                    v.push(reduce::count_correct_sets(ctx, &out2, &targets, &acc.correct)?);
                }
            }
            Loss::MeanSquaredError => {
                if class_weights.is_some() {
                    return Err(Error::invalid(
                        "class weights apply to classification losses, not mean squared error",
                    ));
                }
                v.push(loss::mse(ctx, &out2, &targets, &losses, grad, scale)?);
                v.push(reduce::accumulate_sum(ctx, &losses, &acc.loss_sum)?);
            }
        }
        Ok(v)
    };
    let mut loss_eval = loss_dispatches(None)?;
    if let Some(k) = options.top_k.filter(|_| !options.train) {
        if loss_kind != Loss::SparseCategoricalCrossentropy {
            return Err(Error::invalid(format!(
                "top-{k} accuracy applies to sparse categorical cross-entropy; this model trains \
                 with {}",
                loss_kind.name()
            )));
        }
        loss_eval.push(reduce::count_in_top_k(ctx, &out2, &targets, k, &acc.top_k)?);
    }
    let loss_train = match &dlogits {
        Some(g) => loss_dispatches(Some(g))?,
        None => Vec::new(),
    };

    // Probabilities and predictions.
    let predictions = Tensor::zeros(ctx, &[rows], DType::U32)?;
    let mut predict = Vec::new();
    let probabilities = match loss_kind {
        Loss::SparseCategoricalCrossentropy => {
            let p = Tensor::zeros(ctx, &[rows, out_dim], DType::F32)?;
            predict.push(softmax::softmax(ctx, &out2, &p)?);
            predict.push(reduce::argmax_rows(ctx, &out2, &predictions)?);
            p
        }
        Loss::BinaryCrossentropy => {
            let p = Tensor::zeros(ctx, &[rows, out_dim], DType::F32)?;
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
    let roots = match dlogits {
        Some(g) => vec![(output, g.reshape(out.shape())?)],
        None => Vec::new(),
    };
    Ok(LossParts {
        targets,
        output: out2,
        losses,
        probabilities,
        predictions,
        loss_train,
        loss_eval,
        predict,
        roots,
    })
}

/// No loss: the first output as the plan's `output`, nothing to train.
fn forward_only(
    ctx: &Context,
    graph: &Graph,
    outputs: &[NodeId],
    values: &[Option<Tensor>],
    options: PlanOptions,
) -> Result<LossParts> {
    let b = options.batch;
    if options.train {
        return Err(Error::invalid(
            "a forward-only objective has no loss to train; build an evaluation plan",
        ));
    }
    let &first = outputs
        .first()
        .ok_or_else(|| Error::invalid("a forward-only objective needs an output"))?;
    let dim = graph.shape(first).iter().product::<usize>();
    let output = values[first]
        .clone()
        .expect("outputs were built")
        .reshape(&[b, dim])?;
    Ok(LossParts {
        targets: Tensor::zeros(ctx, &[1], DType::F32)?,
        probabilities: output.clone(),
        output,
        losses: Tensor::zeros(ctx, &[b], DType::F32)?,
        predictions: Tensor::zeros(ctx, &[b], DType::U32)?,
        loss_train: Vec::new(),
        loss_eval: Vec::new(),
        predict: Vec::new(),
        roots: Vec::new(),
    })
}

/// The weighted sum of the graph's loss terms, averaged over the batch: each term's
/// gradient is the constant `weight / B`; the per-sample total goes to `losses`
/// and the accumulators' loss sum, each term's sum to its own accumulator.
fn loss_terms(
    ctx: &Context,
    terms: &[WeightedTerm],
    values: &[Option<Tensor>],
    acc: &Accumulators,
    options: PlanOptions,
) -> Result<LossParts> {
    let b = options.batch;
    if terms.is_empty() {
        return Err(Error::invalid("the objective has no loss terms"));
    }
    if acc.terms.len() != terms.len() {
        return Err(Error::invalid(format!(
            "the accumulators hold {} term sums but the objective has {} terms",
            acc.terms.len(),
            terms.len()
        )));
    }
    let losses = Tensor::zeros(ctx, &[b], DType::F32)?;
    let mut sums = vec![elementwise::fill(ctx, &losses, 0.0)?];
    let mut roots = Vec::new();
    // Each term's gradient, weight / B everywhere, is written anew every step: the
    // backward pass hands it on as a view (Reshape, Add) and gives it back to its
    // pool of scratch buffers once read, so a later rule may overwrite it.
    let mut gradients = Vec::new();
    for (t, sum) in terms.iter().zip(&acc.terms) {
        let value = values[t.node].clone().expect("terms were built").reshape(&[b])?;
        sums.push(elementwise::axpy(ctx, t.weight, &value, &losses)?);
        sums.push(reduce::accumulate_sum(ctx, &value, sum)?);
        if options.train && t.weight != 0.0 {
            let g = Tensor::zeros(ctx, &[b, 1], DType::F32)?;
            gradients.push(elementwise::fill(ctx, &g, t.weight / b as f32)?);
            roots.push((t.node, g));
        }
    }
    sums.push(reduce::accumulate_sum(ctx, &losses, &acc.loss_sum)?);
    let output = losses.reshape(&[b, 1])?;
    Ok(LossParts {
        targets: Tensor::zeros(ctx, &[1], DType::F32)?,
        probabilities: output.clone(),
        output,
        losses,
        predictions: Tensor::zeros(ctx, &[b], DType::U32)?,
        loss_train: if options.train {
            sums.iter().cloned().chain(gradients).collect()
        } else {
            Vec::new()
        },
        loss_eval: sums,
        predict: Vec::new(),
        roots,
    })
}
