//! A graph compiled for training or evaluation without the `Sequential` wrapper:
//! its objective (loss terms computed inside the graph, or forward only), its
//! parameters (its own, or views of another model's), one optimizer and per-step
//! uniform, the term sums, and a plan per batch size built on first use. The
//! variational autoencoder and the GAN's two alternating steps are each one.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::graph::plan::{Accumulators, Plan, PlanOptions};
use crate::graph::reference::ReferenceExecutor;
use crate::graph::{Graph, Init, Objective, ParamStore};
use crate::kernels::matmul::Activation;
use crate::kernels::optim::{Optimizer, StepUniform};

/// See the module documentation.
#[derive(Debug)]
pub struct GraphModel {
    /// The graph.
    pub graph: Graph,
    /// What its plans compute and train.
    pub objective: Objective,
    /// Its parameters (possibly views of another store's tensors).
    pub store: ParamStore,
    /// The optimizer updating its trainable parameters.
    pub optimizer: Optimizer,
    /// The per-step uniform (step number, learning rate; noise reads the step).
    pub step_uniform: StepUniform,
    /// The loss sums: total and per term, read once per epoch.
    pub acc: Accumulators,
    plans: HashMap<PlanOptions, Plan>,
    /// Optimizer steps taken.
    pub step: u32,
    /// The moving average its training steps keep of its trainable weights
    /// ([`GraphModel::set_ema`]).
    ema: Option<crate::graph::Ema>,
}

impl GraphModel {
    /// A model of `graph` trained towards `objective` with `optimizer`, its
    /// parameters in `store`.
    pub fn new(
        ctx: &Context,
        graph: Graph,
        objective: Objective,
        store: ParamStore,
        optimizer: Optimizer,
    ) -> Result<Self> {
        optimizer.validate()?;
        let terms = match &objective {
            Objective::Terms(t) => t.len(),
            _ => 0,
        };
        Ok(GraphModel {
            acc: Accumulators::with_terms(ctx, terms)?,
            step_uniform: StepUniform::new(ctx)?,
            graph,
            objective,
            store,
            optimizer,
            plans: HashMap::new(),
            step: 0,
            ema: None,
        })
    }

    /// Its training steps update a moving average of each trainable weight with this
    /// momentum, from the next step on (which takes the weights themselves), as
    /// `Model::set_ema`; `None` keeps none. The averages are made now (so a backup
    /// read next restores them); a change drops the ones kept so far and the plans
    /// built for the old setting.
    pub fn set_ema(&mut self, ctx: &Context, ema: Option<crate::graph::Ema>) -> Result<()> {
        if ema == self.ema {
            return Ok(());
        }
        for p in &mut self.store.params {
            p.ema = None;
        }
        self.ema = ema;
        self.plans.clear();
        if ema.is_some() {
            self.store.ensure_averages(ctx, self.step + 1)?;
        }
        Ok(())
    }

    /// Replaces each trainable weight with its moving average; nothing when none
    /// is kept. Queued, nothing read back.
    pub fn finalize_ema(&self, ctx: &Context) -> Result<()> {
        self.store.finalize_averages(ctx)
    }

    /// The moving average kept, if any.
    pub fn ema(&self) -> Option<crate::graph::Ema> {
        self.ema
    }

    /// The plan for batches of `batch` (training or not), built on first use with
    /// its pipelines compiled together.
    pub fn plan(&mut self, ctx: &Context, batch: usize, train: bool) -> Result<&Plan> {
        let options = PlanOptions {
            batch,
            train,
            fuse: true,
            clip_norm: None,
            accumulate: false,
            label_smoothing: None,
            ema: self.ema.filter(|_| train),
            top_k: None,
            tokens: None,
        };
        if !self.plans.contains_key(&options) {
            let plan = ctx.deferring_pipelines(|| {
                Plan::build(
                    ctx,
                    &self.graph,
                    &self.objective,
                    &self.store,
                    &self.optimizer,
                    &self.step_uniform,
                    &self.acc,
                    options,
                )
            })?;
            self.plans.insert(options, plan);
        }
        Ok(&self.plans[&options])
    }

    /// Values per sample of the graph's input.
    pub fn sample_len(&self) -> usize {
        self.graph
            .nodes
            .iter()
            .find(|node| matches!(node.op, crate::graph::Op::Input))
            .map_or(0, |node| node.shape.iter().product())
    }

    fn check_input(&self, x: &[f32], n: usize) -> Result<()> {
        let sample = self.sample_len();
        if n == 0 || x.len() != n * sample {
            return Err(Error::shape(
                "graph model",
                format!(
                    "{} values given for {n} samples of {sample} (at least one sample)",
                    x.len()
                ),
            ));
        }
        Ok(())
    }

    /// Queues one training step on the `n` samples `x` with learning rate `lr`: one
    /// submission, nothing read back; the term sums accumulate.
    pub fn train_step(&mut self, ctx: &Context, x: &[f32], n: usize, lr: f32) -> Result<()> {
        self.check_input(x, n)?;
        let t = self.step + 1;
        self.step_uniform.write(ctx, &self.optimizer, t, lr)?;
        let plan = self.plan(ctx, n, true)?;
        plan.ready(ctx, true)?;
        plan.input.write(ctx, x)?;
        super::model::submit_plan(ctx, plan, true, |_| {})?;
        self.step = t;
        Ok(())
    }

    /// Forward pass and terms on the `n` samples `x` (no update); returns the plan,
    /// whose `values` hold every node's result for the batch.
    pub fn eval_step(&mut self, ctx: &Context, x: &[f32], n: usize) -> Result<&Plan> {
        self.check_input(x, n)?;
        let plan = self.plan(ctx, n, false)?;
        plan.ready(ctx, false)?;
        plan.input.write(ctx, x)?;
        super::model::submit_plan(ctx, plan, false, |_| {})?;
        Ok(plan)
    }

    /// The values of node `node` for the samples `x`, evaluated in batches of `batch`.
    pub fn values(
        &mut self,
        ctx: &Context,
        node: usize,
        x: &[f32],
        sample: usize,
        batch: usize,
    ) -> Result<Vec<f32>> {
        let n = x.len() / sample.max(1);
        let mut out = Vec::new();
        for start in (0..n).step_by(batch.max(1)) {
            let len = (n - start).min(batch.max(1));
            let plan = self.eval_step(ctx, &x[start * sample..(start + len) * sample], len)?;
            let t = plan.values[node]
                .clone()
                .ok_or_else(|| Error::invalid(format!("node {node} is not computed by the plan")))?;
            out.extend(t.to_f32(ctx)?);
        }
        Ok(out)
    }

    /// The names of the objective's terms, in the order [`GraphModel::read_terms`]
    /// gives them (none unless the objective is [`Objective::Terms`]).
    pub fn term_names(&self) -> Vec<String> {
        match &self.objective {
            Objective::Terms(terms) => terms.iter().map(|t| t.name.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// One epoch over the samples `x` in batches of `batch`, in the order of
    /// `order` (indices of samples, e.g. a permutation of them): one submission per
    /// step, the term sums read once at the end; returns each term's mean per sample.
    pub fn train_epoch(
        &mut self,
        ctx: &Context,
        x: &[f32],
        order: &[usize],
        batch: usize,
        lr: f32,
    ) -> Result<Vec<f64>> {
        let d = self.sample_len();
        let n = x.len() / d.max(1);
        if let Some(&bad) = order.iter().find(|&&i| i >= n) {
            return Err(Error::invalid(format!(
                "sample {bad} is out of range: the data holds {n} samples"
            )));
        }
        self.acc.reset(ctx)?;
        let mut buf = Vec::with_capacity(batch * d);
        for chunk in order.chunks(batch.max(1)) {
            buf.clear();
            for &i in chunk {
                buf.extend_from_slice(&x[i * d..(i + 1) * d]);
            }
            self.train_step(ctx, &buf, chunk.len(), lr)?;
        }
        self.read_terms(ctx, order.len())
    }

    /// Each term's mean per sample over the samples `x`, evaluated in batches of
    /// `batch` at the current step (noise is drawn as in a training step).
    pub fn evaluate(&mut self, ctx: &Context, x: &[f32], batch: usize) -> Result<Vec<f64>> {
        let d = self.sample_len();
        let n = x.len() / d.max(1);
        self.acc.reset(ctx)?;
        for start in (0..n).step_by(batch.max(1)) {
            let len = (n - start).min(batch.max(1));
            self.eval_step(ctx, &x[start * d..(start + len) * d], len)?;
        }
        self.read_terms(ctx, n)
    }

    /// Each term's sum since the last reset, divided by `samples`.
    pub fn read_terms(&self, ctx: &Context, samples: usize) -> Result<Vec<f64>> {
        let n = samples.max(1) as f64;
        Ok(self.acc.read_terms(ctx)?.into_iter().map(|t| t / n).collect())
    }

    /// A Dense layer `name` (PyTorch's `nn.Linear` tensor names) of `units` on `x`,
    /// Glorot-uniform weights and a zero bias, trainable or frozen.
    pub fn dense(
        g: &mut Graph,
        x: usize,
        name: &str,
        units: usize,
        act: Activation,
        trainable: bool,
    ) -> Result<usize> {
        let fan_in = g.shape(x)[0];
        let init = Init::GlorotUniform {
            fan_in,
            fan_out: units,
        };
        let param = |g: &mut Graph, suffix: &str, shape: &[usize], init| {
            let full = format!("{name}.{suffix}");
            if trainable {
                g.param(&full, shape, init, name)
            } else {
                g.frozen_param(&full, shape, init, name)
            }
        };
        let w = param(g, "weight", &[units, fan_in], init);
        let b = param(g, "bias", &[units], Init::Zeros);
        g.dense(x, w, Some(b), act, name)
    }

    /// A CPU executor of the same graph and objective from the current parameters
    /// and optimizer state (for tests and checks).
    pub fn reference(&self, ctx: &Context) -> Result<ReferenceExecutor> {
        let (params, state) = self.store.to_cpu(ctx, self.graph.nodes.len())?;
        Ok(ReferenceExecutor::new(
            self.graph.clone(),
            self.objective.clone(),
            self.optimizer.clone(),
            None,
            params,
            state,
            self.step,
        ))
    }
}
