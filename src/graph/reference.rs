//! The CPU twin of the executor: the same graph, forward, loss, backward and
//! optimizer update, computed with the reference kernels. Slow and obviously
//! right; tests train a model for a few steps on both paths and compare losses.

use crate::error::{Error, Result};
use crate::graph::Loss;
use crate::graph::autodiff::{backward_order, requires_grad};
use crate::graph::ops::{RefBackward, RefForward, reference_backward, reference_forward};
use crate::graph::{Graph, Objective, Op};
use crate::kernels::optim::Optimizer;
use crate::reference as r;

/// Parameters and optimizer state on the CPU, stepping a graph with reference kernels.
#[derive(Clone, Debug)]
pub struct ReferenceExecutor {
    graph: Graph,
    objective: Objective,
    optimizer: Optimizer,
    /// Clip the gradients to this global norm before the update (the model's).
    clip_norm: Option<f32>,
    /// Parameter values by node id (empty for non-parameters).
    params: Vec<Vec<f32>>,
    state: Vec<Vec<Vec<f32>>>,
    step: u32,
    /// Forward/backward passes taken (the random streams' counter; equal to
    /// `step` unless gradients were accumulated).
    draws: u32,
    /// Parameters (by node id) the optimizer's weight decay skips.
    no_decay: Vec<usize>,
    /// The sparse categorical cross-entropy's label smoothing (0: none).
    label_smoothing: f32,
    /// The moving average of the weights, when kept: its momentum, the step it
    /// starts at, and the averages by node id.
    ema: Option<(f32, u32, Vec<Vec<f32>>)>,
}

/// Whether node `id` of `g` is a trainable parameter (one the optimizer updates).
fn trainable(g: &Graph, id: usize) -> bool {
    matches!(g.nodes[id].op, Op::Param { trainable: true, .. })
}

/// One batch of [`ReferenceExecutor::train_step_accumulated`]: samples, class
/// labels or target values, and the number of samples.
#[derive(Clone, Copy, Debug)]
pub struct RefBatch<'a> {
    /// `b × sample` values.
    pub x: &'a [f32],
    /// Class labels (categorical cross-entropy), else empty.
    pub labels: &'a [u32],
    /// Target values (other losses), else empty.
    pub values: &'a [f32],
    /// Samples.
    pub b: usize,
}

/// The forward pass' values, pooling indices and batch normalizations' saved
/// `[mean | 1/std]`, by node id.
struct Forward {
    values: Vec<Vec<f32>>,
    aux: Vec<Vec<u32>>,
    saved: Vec<Vec<f32>>,
}

impl ReferenceExecutor {
    /// An executor of `graph` (trained towards `objective` with `optimizer`,
    /// gradients clipped to `clip_norm`) from parameter values and optimizer
    /// state by node id, after `step` steps. The nn layer builds one from
    /// a model's current state (`ReferenceExecutor::from_model`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        graph: Graph,
        objective: Objective,
        optimizer: Optimizer,
        clip_norm: Option<f32>,
        params: Vec<Vec<f32>>,
        state: Vec<Vec<Vec<f32>>>,
        step: u32,
    ) -> ReferenceExecutor {
        ReferenceExecutor {
            graph,
            objective,
            optimizer,
            clip_norm,
            params,
            state,
            step,
            draws: step,
            no_decay: Vec::new(),
            label_smoothing: 0.0,
            ema: None,
        }
    }

    /// This executor keeping a moving average of the weights of momentum
    /// `momentum` from step `start` on, starting from `averages` (by node id).
    pub fn with_ema(mut self, momentum: f32, start: u32, averages: Vec<Vec<f32>>) -> ReferenceExecutor {
        self.ema = Some((momentum, start, averages));
        self
    }

    /// The moving averages by node id, when kept.
    pub fn ema_values(&self) -> Option<&[Vec<f32>]> {
        self.ema.as_ref().map(|(_, _, a)| a.as_slice())
    }

    /// This executor with the sparse categorical cross-entropy's labels smoothed by
    /// `e` (the model's `label_smoothing`).
    pub fn with_label_smoothing(mut self, e: f32) -> ReferenceExecutor {
        self.label_smoothing = e;
        self
    }

    /// This executor with the parameters of nodes `nodes` excluded from the
    /// optimizer's weight decay (as the model's store marks them).
    pub fn with_decay_excluded(mut self, nodes: Vec<usize>) -> ReferenceExecutor {
        self.no_decay = nodes;
        self
    }

    /// This executor with `draws` passes taken (a model whose gradients were
    /// accumulated has taken more passes than optimizer steps).
    pub fn with_draws(mut self, draws: u32) -> ReferenceExecutor {
        self.draws = draws;
        self
    }

    /// Parameter values by node id.
    pub fn params(&self) -> &[Vec<f32>] {
        &self.params
    }

    /// Parameter values by node id, to change (finite-difference checks).
    pub fn params_mut(&mut self) -> &mut [Vec<f32>] {
        &mut self.params
    }

    /// The model's output (before the loss' folded activation) for a batch of `b`
    /// samples, evaluating: dropout is the identity and batch normalization uses
    /// its moving statistics. For [`Objective::Terms`], the last term's values.
    pub fn eval_output(&mut self, x: &[f32], b: usize) -> Result<Vec<f32>> {
        let last = self.objective.last_node();
        let mut f = self.forward(x, b, None)?;
        Ok(std::mem::take(&mut f.values[last]))
    }

    /// The value of every node up to the objective's last for a batch of `b`
    /// samples, evaluating (empty for parameters).
    pub fn eval_values(&mut self, x: &[f32], b: usize) -> Result<Vec<Vec<f32>>> {
        Ok(self.forward(x, b, None)?.values)
    }

    /// The forward pass; `train` holds the draw number while training (dropout
    /// masks; batch normalization on batch statistics, moving its moving ones).
    fn forward(&mut self, x: &[f32], b: usize, train: Option<u32>) -> Result<Forward> {
        let g = &self.graph;
        let n = g.nodes.len();
        let mut rf = RefForward {
            graph: g,
            batch: b,
            train,
            draw: train.unwrap_or(self.draws),
            params: &mut self.params,
            values: vec![Vec::new(); n],
            aux: vec![Vec::new(); n],
            saved: vec![Vec::new(); n],
        };
        for id in 0..=self.objective.last_node() {
            let v = match &g.nodes[id].op {
                Op::Input => {
                    if x.len() != rf.numel(id) {
                        return Err(Error::shape(
                            "reference",
                            format!("batch has {} values, expected {}", x.len(), rf.numel(id)),
                        ));
                    }
                    x.to_vec()
                }
                Op::Param { .. } => rf.params[id].clone(),
                _ => reference_forward(&mut rf, id)?,
            };
            rf.values[id] = v;
        }
        Ok(Forward {
            values: rf.values,
            aux: rf.aux,
            saved: rf.saved,
        })
    }

    /// One training step on a batch of `b` samples; returns the mean loss.
    pub fn train_step(
        &mut self,
        x: &[f32],
        labels: &[u32],
        values: &[f32],
        b: usize,
        lr: f32,
    ) -> Result<f64> {
        let batch = RefBatch { x, labels, values, b };
        self.train_step_accumulated(&[batch], lr)
    }

    /// One optimizer step on the gradient accumulated over `batches`, each weighted
    /// by its share of their samples (so the mean gradient over all of them), summed
    /// in the GPU's order; each batch is one pass with its own draw number. Returns
    /// the mean loss per label over all batches.
    pub fn train_step_accumulated(&mut self, batches: &[RefBatch<'_>], lr: f32) -> Result<f64> {
        let total: usize = batches.iter().map(|b| b.b).sum();
        if batches.is_empty() || batches.iter().any(|b| b.b == 0) {
            return Err(Error::invalid(
                "an accumulated step needs at least one batch, each of at least one sample",
            ));
        }
        let last = batches.len() - 1;
        let mut sum: Vec<Option<Vec<f32>>> = Vec::new();
        let mut loss = 0.0;
        for (i, batch) in batches.iter().enumerate() {
            let (l, grads) = self.gradients(batch)?;
            loss += l * batch.b as f64 / total as f64;
            if last == 0 {
                sum = grads;
                break;
            }
            let w = (batch.b as f64 / total as f64) as f32;
            sum.resize(grads.len(), None);
            for (id, (acc, g)) in sum.iter_mut().zip(grads).enumerate() {
                if !trainable(&self.graph, id) {
                    continue;
                }
                let g = g.unwrap_or_else(|| vec![0.0; self.params[id].len()]);
                match acc {
                    None => *acc = Some(r::optim::accumulate_first(&g, w)),
                    Some(a) if i < last => r::optim::accumulate_add(a, &g, w),
                    Some(a) => *acc = Some(r::optim::accumulate_finish(a, &g, w)),
                }
            }
        }
        self.apply(sum, lr);
        Ok(loss)
    }

    /// The mean loss per label of one pass over `batch` and every node's gradient
    /// (`None` where none flows); counts the pass.
    fn gradients(&mut self, batch: &RefBatch<'_>) -> Result<(f64, Vec<Option<Vec<f32>>>)> {
        let RefBatch { x, labels, values, b } = *batch;
        // This pass' number, as the GPU's per-step uniform holds it (dropout masks).
        let draw = self.draws + 1;
        let Forward {
            values: vals,
            aux,
            saved,
        } = self.forward(x, b, Some(draw))?;
        self.draws = draw;
        let g = &self.graph;
        let n = g.nodes.len();
        let mut grads: Vec<Option<Vec<f32>>> = vec![None; n];
        let mean_loss = match &self.objective {
            Objective::Supervised {
                output,
                loss,
                class_weights,
            } => {
                let out = &vals[*output];
                // One row per label (see Loss::label_positions).
                let positions = loss.label_positions(g.shape(*output));
                let rows = b * positions;
                let cols = out.len() / rows;
                let mut losses = vec![0.0; rows];
                let mut dout = vec![0.0; out.len()];
                // A sequence's mean is over its positions with a target (as the
                // GPU plan's label_scale counts them).
                let per_label = positions > 1 && *loss == Loss::SparseCategoricalCrossentropy;
                let labelled = if per_label {
                    labels.iter().filter(|&&l| (l as usize) < cols).count().max(1)
                } else {
                    rows
                };
                let scale = 1.0 / labelled as f32;
                match loss {
                    Loss::SparseCategoricalCrossentropy => r::loss::softmax_cross_entropy_with(
                        out,
                        cols,
                        labels,
                        &mut losses,
                        Some(&mut dout),
                        scale,
                        self.label_smoothing,
                        class_weights.as_deref(),
                    ),
                    Loss::BinaryCrossentropy => {
                        let w = class_weights.as_deref().map(|w| [w[0], w[1]]);
                        r::loss::bce_with_logits_weighted(
                            out,
                            values,
                            cols,
                            &mut losses,
                            Some(&mut dout),
                            scale,
                            w.as_ref(),
                        )
                    }
                    Loss::MeanSquaredError => {
                        r::loss::mse(out, values, cols, &mut losses, Some(&mut dout), scale)
                    }
                }
                grads[*output] = Some(dout);
                losses.iter().map(|&l| l as f64).sum::<f64>() / labelled as f64
            }
            Objective::Forward(_) => {
                return Err(Error::invalid("a forward-only objective has no loss to train"));
            }
            Objective::Terms(terms) => {
                let mut total = 0.0;
                for t in terms {
                    let sum: f64 = vals[t.node].iter().map(|&v| v as f64).sum();
                    total += t.weight as f64 * sum / b as f64;
                    if t.weight != 0.0 {
                        grads[t.node] = Some(vec![t.weight / b as f32; b]);
                    }
                }
                total
            }
        };

        // Backward.
        let mut rb = RefBackward {
            graph: g,
            batch: b,
            draw,
            params: &self.params,
            values: &vals,
            aux: &aux,
            saved: &saved,
            req: requires_grad(g),
            grads,
        };
        for id in backward_order(g, &self.objective.roots()) {
            let dy = rb.grads[id].take().expect("gradient complete");
            reference_backward(&mut rb, id, dy)?;
        }
        Ok((mean_loss, rb.grads))
    }

    /// Clips `grads` when the model does and steps the optimizer with them.
    fn apply(&mut self, mut grads: Vec<Option<Vec<f32>>>, lr: f32) {
        let g = &self.graph;
        grads.resize(g.nodes.len(), None);
        // Clipping, over every trainable parameter's gradient, as the GPU plan.
        if let Some(max_norm) = self.clip_norm {
            let mut views: Vec<&mut [f32]> = grads
                .iter_mut()
                .enumerate()
                .filter(|(id, _)| trainable(g, *id))
                .map(|(id, d)| {
                    d.get_or_insert_with(|| vec![0.0; self.params[id].len()])
                        .as_mut_slice()
                })
                .collect();
            r::clip::clip_by_global_norm(&mut views, max_norm);
        }
        // Update, in node order like the GPU plan.
        self.step += 1;
        for id in 0..g.nodes.len() {
            if trainable(g, id) {
                let grad = grads[id]
                    .take()
                    .unwrap_or_else(|| vec![0.0; self.params[id].len()]);
                let optimizer = if self.no_decay.contains(&id) {
                    self.optimizer.without_weight_decay()
                } else {
                    self.optimizer.clone()
                };
                r::optim::optimizer_step(
                    &optimizer,
                    self.step,
                    lr,
                    &mut self.params[id],
                    &grad,
                    &mut self.state[id],
                );
                if let Some((momentum, start, averages)) = &mut self.ema {
                    let first = self.step == *start;
                    r::optim::ema_update(&mut averages[id], &self.params[id], *momentum, first);
                }
            }
        }
    }
}
