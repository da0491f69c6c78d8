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
use crate::graph::{Graph, NodeId, Op, ParamStore};
use crate::kernels::clip::clip_by_global_norm;
use crate::kernels::matmul::Activation;
use crate::kernels::optim::{Optimizer, StepUniform, optimizer_step};
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
        let mut lw = Lowering {
            ctx,
            graph,
            batch: b,
            train: options.train,
            step,
            values: vec![None; graph.nodes.len()],
            aux: HashMap::new(),
            fused: if options.fuse {
                fusable_conv_pools(ctx, graph, output, b)
            } else {
                HashMap::new()
            },
            dispatches: Vec::new(),
        };
        let mut input = None;
        for (id, node) in graph.nodes.iter().enumerate().take(output + 1) {
            if runs_in_fused_pair(&lw.fused, id) {
                continue; // computed by the max-pool that reads it
            }
            let t = match &node.op {
                Op::Input => {
                    let t = Tensor::zeros(ctx, &batched(b, &node.shape), DType::F32)?;
                    input = Some(t.clone());
                    t
                }
                Op::Param { name, .. } => store
                    .by_node(id)
                    .ok_or_else(|| Error::invalid(format!("parameter {name} is not in the store")))?
                    .value
                    .clone(),
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

/// The backward pass as lowered.
struct Backward {
    dispatches: Vec<Dispatch>,
    /// Parameters whose optimizer step already ran inside the backward pass (a
    /// Dense weight gradient with the Adam epilogue): the update list skips them.
    updated: Vec<NodeId>,
}

/// Lowers the backward rules of every node on the path from the parameters to
/// `output`, whose gradient is `d_output`, in reverse order. With `fuse_adam`,
/// Dense weight gradients may apply the optimizer step themselves.
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
    let mut bw = BackwardLowering::new(
        ctx, graph, b, values, aux, fused, store, step, fuse_adam, output, d_output,
    );
    for id in backward_order(graph, output) {
        if runs_in_fused_pair(fused, id) {
            continue; // its gradients came with the max-pool's rule
        }
        bw.run_rule(id, output)?;
    }
    Ok(Backward {
        dispatches: bw.dispatches,
        updated: bw.updated,
    })
}
